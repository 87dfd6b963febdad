//! A settled batch's postings as one record: the batch's journal (issue 14, ADR 0006).
//!
//! A settlement batch used to write one `postings` row per posting (eleven columns, a text id in
//! the primary-key index): four rows per remittance, the largest share of the settler's time in
//! the one database writer. Since migration 19 a batch stores its postings as one binary value
//! in `settlement_batches.journal`, beside one narrow `posting_ids` row per settlement (for
//! idempotency across restarts) and a `pending_postings` row per open two-phase posting (to
//! restore them at start-up). The journal is the ledger's record: the balances of
//! `ledger_accounts` equal its replay ([`replay`]).
//!
//! The encoding is fixed-width big-endian: a version byte, the entry count (u32), then per entry
//! a tag byte and its fields. Decoding is strict: an unknown version or tag, a count the bytes
//! cannot hold, or bytes left over are [`StorageError::Corrupt`], never a shorter history.

use std::collections::BTreeMap;

use crate::ledger_store::{BalanceRow, PendingPosting};
use crate::StorageError;

/// The journal format written today.
const VERSION: u8 = 1;

const TAG_TRANSFER: u8 = 0;
const TAG_PENDING: u8 = 1;
const TAG_POST: u8 = 2;
const TAG_VOID: u8 = 3;
const TAG_EXPIRE: u8 = 4;

/// The shortest entry (a transfer or an expiry: tag, id, two accounts, amount), to bound a
/// claimed count by the bytes present.
const ENTRY_LEN_MIN: usize = 1 + 16 + 8 + 8 + 16;

/// One posting of a settled batch, as the journal records it. Amounts are base units of the
/// accounts' asset (both accounts of a posting hold the same asset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEntry {
    /// Moves `amount` from `debit_account_id` to `credit_account_id`; pending (two-phase) until
    /// posted, voided or expired when it has a time-out.
    Transfer {
        /// The posting's client-chosen id.
        id: u128,
        /// Debited account row id.
        debit_account_id: i64,
        /// Credited account row id.
        credit_account_id: i64,
        /// Amount in base units.
        amount: u128,
        /// For a pending posting: when it expires (Unix seconds).
        timeout_s: Option<i64>,
    },
    /// Posts a pending posting: its amount moves from pending to posted.
    Post {
        /// This posting's id.
        id: u128,
        /// The pending posting it resolves.
        pending: PendingRef,
    },
    /// Voids a pending posting: its amount leaves pending.
    Void {
        /// This posting's id.
        id: u128,
        /// The pending posting it resolves.
        pending: PendingRef,
    },
    /// A pending posting expired: its amount leaves pending.
    Expire {
        /// The pending posting that expired.
        pending: PendingRef,
    },
}

/// The pending posting a resolution resolves, with what it holds: a journal replays on its
/// own, without the postings made before it (balances are checkpointed, [`crate::ledger_store`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRef {
    /// The pending posting's id.
    pub pending_id: u128,
    /// Its debited account row id.
    pub debit_account_id: i64,
    /// Its credited account row id.
    pub credit_account_id: i64,
    /// Its amount in base units.
    pub amount: u128,
}

impl JournalEntry {
    /// The pending (two-phase) posting this entry opens, if it opens one.
    pub fn opens(&self) -> Option<PendingPosting> {
        match *self {
            JournalEntry::Transfer {
                id,
                debit_account_id,
                credit_account_id,
                amount,
                timeout_s: Some(timeout_s),
            } => Some(PendingPosting {
                id,
                debit_account_id,
                credit_account_id,
                amount,
                timeout_s,
            }),
            _ => None,
        }
    }

    /// The pending posting this entry resolves, if it resolves one.
    pub fn resolves(&self) -> Option<u128> {
        match self {
            JournalEntry::Post { pending, .. }
            | JournalEntry::Void { pending, .. }
            | JournalEntry::Expire { pending } => Some(pending.pending_id),
            JournalEntry::Transfer { .. } => None,
        }
    }
}

/// Encodes a batch's entries.
pub fn encode(entries: &[JournalEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + entries.len() * 49);
    out.push(VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        match *e {
            JournalEntry::Transfer {
                id,
                debit_account_id,
                credit_account_id,
                amount,
                timeout_s,
            } => {
                out.push(if timeout_s.is_some() {
                    TAG_PENDING
                } else {
                    TAG_TRANSFER
                });
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&debit_account_id.to_be_bytes());
                out.extend_from_slice(&credit_account_id.to_be_bytes());
                out.extend_from_slice(&amount.to_be_bytes());
                if let Some(t) = timeout_s {
                    out.extend_from_slice(&t.to_be_bytes());
                }
            }
            JournalEntry::Post { id, pending } | JournalEntry::Void { id, pending } => {
                out.push(if matches!(e, JournalEntry::Post { .. }) {
                    TAG_POST
                } else {
                    TAG_VOID
                });
                out.extend_from_slice(&id.to_be_bytes());
                push_pending(&mut out, &pending);
            }
            JournalEntry::Expire { pending } => {
                out.push(TAG_EXPIRE);
                push_pending(&mut out, &pending);
            }
        }
    }
    out
}

fn push_pending(out: &mut Vec<u8>, p: &PendingRef) {
    out.extend_from_slice(&p.pending_id.to_be_bytes());
    out.extend_from_slice(&p.debit_account_id.to_be_bytes());
    out.extend_from_slice(&p.credit_account_id.to_be_bytes());
    out.extend_from_slice(&p.amount.to_be_bytes());
}

fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt {
        table: "settlement_batches",
        message,
    }
}

/// Reads fixed-width fields off the front of a journal.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt("journal ends in the middle of an entry".into()))?;
        self.bytes = rest;
        Ok(*head)
    }
    fn u128(&mut self) -> Result<u128, StorageError> {
        self.take::<16>().map(u128::from_be_bytes)
    }
    fn i64(&mut self) -> Result<i64, StorageError> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn pending(&mut self) -> Result<PendingRef, StorageError> {
        Ok(PendingRef {
            pending_id: self.u128()?,
            debit_account_id: self.i64()?,
            credit_account_id: self.i64()?,
            amount: self.u128()?,
        })
    }
}

/// Decodes a batch's journal; `batch_id` names it in errors.
pub fn decode(batch_id: i64, bytes: &[u8]) -> Result<Vec<JournalEntry>, StorageError> {
    let mut r = Reader { bytes };
    let [version] = r.take::<1>()?;
    if version != VERSION {
        return Err(corrupt(format!(
            "batch {batch_id}: journal version {version} is not {VERSION}"
        )));
    }
    let count = u32::from_be_bytes(r.take::<4>()?) as usize;
    if count > r.bytes.len() / ENTRY_LEN_MIN {
        return Err(corrupt(format!(
            "batch {batch_id}: journal claims {count} entries in {} bytes",
            r.bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let [tag] = r.take::<1>()?;
        let entry = match tag {
            TAG_TRANSFER | TAG_PENDING => {
                let id = r.u128()?;
                let debit_account_id = r.i64()?;
                let credit_account_id = r.i64()?;
                let amount = r.u128()?;
                let timeout_s = if tag == TAG_PENDING {
                    Some(r.i64()?)
                } else {
                    None
                };
                JournalEntry::Transfer {
                    id,
                    debit_account_id,
                    credit_account_id,
                    amount,
                    timeout_s,
                }
            }
            TAG_POST => JournalEntry::Post {
                id: r.u128()?,
                pending: r.pending()?,
            },
            TAG_VOID => JournalEntry::Void {
                id: r.u128()?,
                pending: r.pending()?,
            },
            TAG_EXPIRE => JournalEntry::Expire {
                pending: r.pending()?,
            },
            other => {
                return Err(corrupt(format!(
                    "batch {batch_id}: unknown journal entry tag {other}"
                )))
            }
        };
        out.push(entry);
    }
    if !r.bytes.is_empty() {
        return Err(corrupt(format!(
            "batch {batch_id}: {} bytes after the journal's last entry",
            r.bytes.len()
        )));
    }
    Ok(out)
}

/// What a run of entries changes in each account it names, applied in order:
/// `[debits_posted, credits_posted, debits_pending, credits_pending]`. Replayed from the first
/// batch these are the balances; from a checkpoint, what to add to the checkpoint's. Each entry
/// carries what it moves, so no earlier entry is needed. A pending amount resolved more than
/// was made pending, or a sum that overflows, is an error: the history is not a ledger's.
#[derive(Debug, Default, Clone)]
pub struct LedgerReplay {
    /// Per account: amounts added to each balance, and amounts taken from its pending ones.
    moved: BTreeMap<i64, ([u128; 4], [u128; 2])>,
    postings: u64,
}

impl LedgerReplay {
    fn add(&mut self, account: i64, slot: usize, amount: u128) -> Result<(), StorageError> {
        let b = &mut self.moved.entry(account).or_default().0[slot];
        *b = b
            .checked_add(amount)
            .ok_or_else(|| corrupt(format!("replaying the journal overflows account {account}")))?;
        Ok(())
    }

    fn release(&mut self, p: &PendingRef) -> Result<(), StorageError> {
        for (account, slot) in [(p.debit_account_id, 0), (p.credit_account_id, 1)] {
            let b = &mut self.moved.entry(account).or_default().1[slot];
            *b = b.checked_add(p.amount).ok_or_else(|| {
                corrupt(format!("replaying the journal overflows account {account}"))
            })?;
        }
        Ok(())
    }

    /// Applies one entry.
    pub fn apply(&mut self, e: &JournalEntry) -> Result<(), StorageError> {
        match e {
            JournalEntry::Transfer {
                debit_account_id,
                credit_account_id,
                amount,
                timeout_s,
                ..
            } => {
                self.postings += 1;
                let (d, c) = if timeout_s.is_some() { (2, 3) } else { (0, 1) };
                self.add(*debit_account_id, d, *amount)?;
                self.add(*credit_account_id, c, *amount)?;
            }
            JournalEntry::Post { pending, .. } => {
                self.postings += 1;
                self.release(pending)?;
                self.add(pending.debit_account_id, 0, pending.amount)?;
                self.add(pending.credit_account_id, 1, pending.amount)?;
            }
            JournalEntry::Void { pending, .. } => {
                self.postings += 1;
                self.release(pending)?;
            }
            JournalEntry::Expire { pending } => self.release(pending)?,
        }
        Ok(())
    }

    /// `start` (an account's balances before the entries) with the entries applied.
    pub fn applied_to(&self, account: i64, start: BalanceRow) -> Result<BalanceRow, StorageError> {
        let Some((added, released)) = self.moved.get(&account) else {
            return Ok(start);
        };
        let mut b = start;
        for k in 0..4 {
            b[k] = b[k].checked_add(added[k]).ok_or_else(|| {
                corrupt(format!("replaying the journal overflows account {account}"))
            })?;
        }
        for (k, r) in released.iter().enumerate() {
            b[2 + k] = b[2 + k].checked_sub(*r).ok_or_else(|| {
                corrupt(format!(
                    "the journal resolves more pending amount of account {account} than it holds"
                ))
            })?;
        }
        Ok(b)
    }

    /// The balances the entries give `account` replayed from an empty ledger.
    pub fn balances(&self, account: i64) -> Result<BalanceRow, StorageError> {
        self.applied_to(account, [0; 4])
    }

    /// Every account an entry named.
    pub fn accounts(&self) -> impl Iterator<Item = i64> + '_ {
        self.moved.keys().copied()
    }

    /// Postings applied (transfers, posts and voids; expiries are not postings).
    pub fn postings(&self) -> u64 {
        self.postings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(pending_id: u128, d: i64, c: i64, amount: u128) -> PendingRef {
        PendingRef {
            pending_id,
            debit_account_id: d,
            credit_account_id: c,
            amount,
        }
    }

    fn sample() -> Vec<JournalEntry> {
        vec![
            JournalEntry::Transfer {
                id: 1,
                debit_account_id: 1,
                credit_account_id: 2,
                amount: u128::MAX,
                timeout_s: None,
            },
            JournalEntry::Transfer {
                id: (7 << 64) | 3,
                debit_account_id: 2,
                credit_account_id: 3,
                amount: 40,
                timeout_s: Some(1_800_000_000),
            },
            JournalEntry::Post {
                id: 4,
                pending: pending((7 << 64) | 3, 2, 3, 40),
            },
            JournalEntry::Void {
                id: 5,
                pending: pending(9, -1, i64::MAX, 1),
            },
            JournalEntry::Expire {
                pending: pending(10, 4, 5, 6),
            },
        ]
    }

    #[test]
    fn entries_survive_encoding() {
        let bytes = encode(&sample());
        assert_eq!(decode(1, &bytes).unwrap(), sample());
        assert_eq!(decode(1, &encode(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn damaged_journals_are_errors() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(1, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(1, &extra).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(decode(1, &version).is_err());
        let mut tag = bytes.clone();
        tag[5] = 9;
        assert!(decode(1, &tag).is_err());
        // A count far beyond the bytes is refused before anything is reserved.
        let mut count = bytes;
        count[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(1, &count),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn replay_moves_pending_amounts_when_resolved() {
        let t = |id, d, c, amount, pending: bool| JournalEntry::Transfer {
            id,
            debit_account_id: d,
            credit_account_id: c,
            amount,
            timeout_s: pending.then_some(100),
        };
        let entries = [
            t(1, 1, 2, 100, false),
            t(2, 2, 3, 30, true),
            t(3, 2, 3, 20, true),
            t(4, 1, 3, 5, true),
            JournalEntry::Post {
                id: 5,
                pending: pending(2, 2, 3, 30),
            },
            JournalEntry::Void {
                id: 6,
                pending: pending(3, 2, 3, 20),
            },
        ];
        let mut r = LedgerReplay::default();
        for e in &entries {
            r.apply(e).unwrap();
        }
        assert_eq!(r.balances(1).unwrap(), [100, 0, 5, 0]);
        assert_eq!(r.balances(2).unwrap(), [30, 100, 0, 0]);
        assert_eq!(r.balances(3).unwrap(), [0, 30, 0, 5]);
        assert_eq!(r.balances(4).unwrap(), [0; 4]);
        assert_eq!(r.postings(), 6);
        let expired = JournalEntry::Expire {
            pending: pending(4, 1, 3, 5),
        };
        r.apply(&expired).unwrap();
        assert_eq!(r.balances(3).unwrap(), [0, 30, 0, 0]);
        // From a checkpoint: a resolution of a posting made pending before it.
        let mut later = LedgerReplay::default();
        later
            .apply(&JournalEntry::Post {
                id: 8,
                pending: pending(7, 1, 3, 9),
            })
            .unwrap();
        assert_eq!(later.applied_to(1, [0, 0, 9, 0]).unwrap(), [9, 0, 0, 0]);
        assert_eq!(later.applied_to(3, [0, 0, 0, 9]).unwrap(), [0, 9, 0, 0]);
        assert_eq!(later.applied_to(2, [1, 2, 3, 4]).unwrap(), [1, 2, 3, 4]);
        // Resolving more than is pending is not a ledger's history.
        r.apply(&expired).unwrap();
        assert!(r.balances(3).is_err());
        assert!(later.balances(1).is_err());
    }
}
