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

use std::collections::{BTreeMap, HashMap};

use crate::ledger_store::BalanceRow;
use crate::StorageError;

/// The journal format written today.
const VERSION: u8 = 1;

const TAG_TRANSFER: u8 = 0;
const TAG_PENDING: u8 = 1;
const TAG_POST: u8 = 2;
const TAG_VOID: u8 = 3;
const TAG_EXPIRE: u8 = 4;

/// The shortest entry (an expiry: tag and id), to bound a claimed count by the bytes present.
const ENTRY_LEN_MIN: usize = 1 + 16;

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
    /// Posts pending posting `pending_id` (its amount moves from pending to posted).
    Post {
        /// This posting's id.
        id: u128,
        /// The pending posting it resolves.
        pending_id: u128,
    },
    /// Voids pending posting `pending_id` (its amount leaves pending).
    Void {
        /// This posting's id.
        id: u128,
        /// The pending posting it resolves.
        pending_id: u128,
    },
    /// Pending posting `pending_id` expired (its amount leaves pending).
    Expire {
        /// The pending posting that expired.
        pending_id: u128,
    },
}

impl JournalEntry {
    /// The pending posting this entry resolves, if it resolves one.
    pub fn resolves(&self) -> Option<u128> {
        match *self {
            JournalEntry::Post { pending_id, .. }
            | JournalEntry::Void { pending_id, .. }
            | JournalEntry::Expire { pending_id } => Some(pending_id),
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
            JournalEntry::Post { id, pending_id } | JournalEntry::Void { id, pending_id } => {
                out.push(if matches!(e, JournalEntry::Post { .. }) {
                    TAG_POST
                } else {
                    TAG_VOID
                });
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&pending_id.to_be_bytes());
            }
            JournalEntry::Expire { pending_id } => {
                out.push(TAG_EXPIRE);
                out.extend_from_slice(&pending_id.to_be_bytes());
            }
        }
    }
    out
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
                pending_id: r.u128()?,
            },
            TAG_VOID => JournalEntry::Void {
                id: r.u128()?,
                pending_id: r.u128()?,
            },
            TAG_EXPIRE => JournalEntry::Expire {
                pending_id: r.u128()?,
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

/// The balances a history of entries gives each account it names, applied in order:
/// `[debits_posted, credits_posted, debits_pending, credits_pending]`. An entry resolving a
/// pending posting that is not open, or a sum that overflows, is an error: the history is not a
/// ledger's.
#[derive(Debug, Default, Clone)]
pub struct LedgerReplay {
    balances: BTreeMap<i64, BalanceRow>,
    open: HashMap<u128, (i64, i64, u128)>,
    postings: u64,
}

impl LedgerReplay {
    fn add(
        &mut self,
        account: i64,
        slot: usize,
        amount: u128,
        sub: bool,
    ) -> Result<(), StorageError> {
        let b = &mut self.balances.entry(account).or_insert([0; 4])[slot];
        *b = if sub {
            b.checked_sub(amount)
        } else {
            b.checked_add(amount)
        }
        .ok_or_else(|| corrupt(format!("replaying the journal overflows account {account}")))?;
        Ok(())
    }

    /// Applies one entry.
    pub fn apply(&mut self, e: &JournalEntry) -> Result<(), StorageError> {
        match *e {
            JournalEntry::Transfer {
                id,
                debit_account_id,
                credit_account_id,
                amount,
                timeout_s,
            } => {
                self.postings += 1;
                if timeout_s.is_some() {
                    self.add(debit_account_id, 2, amount, false)?;
                    self.add(credit_account_id, 3, amount, false)?;
                    self.open
                        .insert(id, (debit_account_id, credit_account_id, amount));
                } else {
                    self.add(debit_account_id, 0, amount, false)?;
                    self.add(credit_account_id, 1, amount, false)?;
                }
            }
            JournalEntry::Post { pending_id, .. }
            | JournalEntry::Void { pending_id, .. }
            | JournalEntry::Expire { pending_id } => {
                if !matches!(e, JournalEntry::Expire { .. }) {
                    self.postings += 1;
                }
                let (debit, credit, amount) = self.open.remove(&pending_id).ok_or_else(|| {
                    corrupt(format!(
                        "the journal resolves pending posting {pending_id:032x}, which is not open"
                    ))
                })?;
                self.add(debit, 2, amount, true)?;
                self.add(credit, 3, amount, true)?;
                if matches!(e, JournalEntry::Post { .. }) {
                    self.add(debit, 0, amount, false)?;
                    self.add(credit, 1, amount, false)?;
                }
            }
        }
        Ok(())
    }

    /// The balances of `account` (zero if no entry named it).
    pub fn balances(&self, account: i64) -> BalanceRow {
        self.balances.get(&account).copied().unwrap_or([0; 4])
    }

    /// Every account an entry named, with its balances.
    pub fn accounts(&self) -> &BTreeMap<i64, BalanceRow> {
        &self.balances
    }

    /// Postings applied (transfers, posts and voids; expiries are not postings).
    pub fn postings(&self) -> u64 {
        self.postings
    }

    /// Pending postings still open after the history.
    pub fn open_pending(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                pending_id: (7 << 64) | 3,
            },
            JournalEntry::Void {
                id: 5,
                pending_id: 9,
            },
            JournalEntry::Expire { pending_id: 10 },
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
                pending_id: 2,
            },
            JournalEntry::Void {
                id: 6,
                pending_id: 3,
            },
        ];
        let mut r = LedgerReplay::default();
        for e in &entries {
            r.apply(e).unwrap();
        }
        assert_eq!(r.balances(1), [100, 0, 5, 0]);
        assert_eq!(r.balances(2), [30, 100, 0, 0]);
        assert_eq!(r.balances(3), [0, 30, 0, 5]);
        assert_eq!(r.balances(4), [0; 4]);
        assert_eq!((r.postings(), r.open_pending()), (6, 1));
        r.apply(&JournalEntry::Expire { pending_id: 4 }).unwrap();
        assert_eq!(r.balances(3), [0, 30, 0, 0]);
        assert_eq!(r.open_pending(), 0);
        // Resolving a posting twice, or one never made, is not a ledger's history.
        assert!(r.apply(&JournalEntry::Expire { pending_id: 4 }).is_err());
        assert!(r
            .apply(&JournalEntry::Post {
                id: 7,
                pending_id: 99
            })
            .is_err());
    }
}
