//! Transfer settlement: quoted transfers become linked postings on the ledger, settled in batches
//! by the [`SettlementEngine`] (parallel executor, one database transaction per batch), and move
//! to `settled` — or to `rejected` with the executor's reason.
//!
//! The ledger per asset: `external` (the chains' side, no balance rule), `escrow` (what the
//! source escrow holds; cannot give more than it got), `fee`, `transit` (between hops), and
//! `payout` (owed to recipients until delivery). Per corridor: a liquidity account on each
//! side; the destination side cannot pay out more than it holds. A transfer of `amount` over
//! hops h₁…hₙ posts, all or nothing:
//!
//! ```text
//! external[A] → escrow[A]             amount          (the lock seen on the source chain)
//! escrow[A]   → liquidity[h₁][A]      amount − fee₁
//! escrow[A]   → fee[A]                fee₁
//! liquidity[h₁][B] → transit[B] …     out₁            (payout[Z] after the last hop)
//! ```
//!
//! Posting ids derive from the transfer id, so a transfer settled by a run that crashed before
//! recording it is recognised (`IdExists` on its first posting) instead of settled twice.

use crate::TransferError;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use meridian_executor::{AccountIx, Posting, PostingError, Settlement, SettlementResult};
use meridian_storage::{Store, TransferMove, Transition};
use meridian_types::config::CorridorConfig;
use meridian_types::{QuotedHop, Transfer, TransferState};
use tokio::sync::watch;

use crate::handoff::QuotedReceiver;
use crate::settlement::{AccountSpec, SettlementEngine};

/// Transfers settled per batch at most.
const BATCH_MAX: u64 = 4_096;

/// A client-chosen posting id derived from `key` (FNV-1a, 128 bits); never zero.
pub fn posting_id(key: &str) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in key.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h.max(1)
}

/// The id of posting `k` of transfer `t`'s settlement. The high 64 bits are the block height of
/// the transfer's source event, the low 64 bits an FNV-1a hash of the transfer id and `k` (never
/// zero). Transfers settle in about the order their blocks came, so a batch's postings go to the
/// end of the postings' primary-key index and dirty a few of its pages; with fully hashed ids
/// every batch wrote into almost every page of that index, so each commit rewrote more of it
/// the longer the history (issue 14: a per-transfer cost bounded whatever the history).
/// Deterministic: a settlement tried again after a restart finds the postings it stored.
pub fn transfer_posting_id(t: &Transfer, k: u32) -> u128 {
    let height = t
        .source_event_uid
        .split('/')
        .nth(1)
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.id.bytes().chain(k.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (u128::from(height) << 64) | u128::from(h.max(1))
}

/// The accounts of one asset and corridor side, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    External,
    Escrow,
    Fee,
    Transit,
    Payout,
    /// Liquidity of a corridor; which side is the asset's.
    Liquidity,
}

impl Role {
    fn spec(self, asset: &str, corridor: &str) -> AccountSpec {
        let (owner, kind, flags) = match self {
            Role::External => ("external".to_owned(), "suspense", 0),
            Role::Escrow => ("escrow".to_owned(), "escrow", 1),
            Role::Fee => ("fee".to_owned(), "fee", 0),
            Role::Transit => ("transit".to_owned(), "suspense", 0),
            Role::Payout => ("payout".to_owned(), "escrow", 0),
            Role::Liquidity => (format!("liquidity:{corridor}"), "liquidity", 1),
        };
        AccountSpec {
            asset: asset.to_owned(),
            owner,
            kind,
            flags,
        }
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettleSummary {
    /// Transfers moved, with their new state.
    pub moved: Vec<(String, TransferState)>,
}

/// Settles quoted transfers.
pub struct TransferSettler {
    store: Store,
    engine: SettlementEngine,
    accounts: HashMap<(String, String, Role), AccountIx>,
    handoff: Option<QuotedReceiver>,
}

impl TransferSettler {
    /// A settler over `engine`; puts each corridor's configured liquidity in once (the funding
    /// posting's id derives from the corridor, so a restart does not fund it again).
    pub async fn new(
        store: Store,
        engine: SettlementEngine,
        corridors: &[CorridorConfig],
    ) -> Result<TransferSettler, TransferError> {
        let mut s = TransferSettler {
            store,
            engine,
            accounts: HashMap::new(),
            handoff: None,
        };
        let mut funding = Vec::new();
        for c in corridors.iter().filter(|c| c.liquidity.0 > 0) {
            let dest = c.dest_asset.to_string();
            let from = s.account(&dest, "", Role::External).await?;
            let to = s.account(&dest, &c.id, Role::Liquidity).await?;
            let asset = s.asset_code(&dest)?;
            funding.push(Settlement::single(Posting::Transfer {
                id: posting_id(&format!("fund:{}", c.id)),
                debit: from,
                credit: to,
                asset,
                amount: c.liquidity.0,
                timeout: None,
            }));
        }
        if !funding.is_empty() {
            let settled = s.engine.settle_batch(funding, 0).await?;
            for (c, r) in corridors
                .iter()
                .filter(|c| c.liquidity.0 > 0)
                .zip(&settled.results)
            {
                match r {
                    Ok(()) => {
                        tracing::info!(corridor = %c.id, amount = %c.liquidity.0, "corridor liquidity funded")
                    }
                    Err(e) if e.error == PostingError::IdExists => {}
                    Err(e) => {
                        return Err(TransferError::config(
                            "corridors",
                            format!("funding {} failed: {e}", c.id),
                        ))
                    }
                }
            }
        }
        Ok(s)
    }

    /// Settles first what the intake hands over in memory (then, as always, what the database
    /// holds as quoted).
    pub fn receive_from(mut self, intake: QuotedReceiver) -> TransferSettler {
        self.handoff = Some(intake);
        self
    }

    fn asset_code(&self, asset: &str) -> Result<u32, TransferError> {
        self.engine
            .asset_code_of(asset)
            .ok_or_else(|| TransferError::Ledger(format!("no ledger account holds {asset}")))
    }

    async fn account(
        &mut self,
        asset: &str,
        corridor: &str,
        role: Role,
    ) -> Result<AccountIx, TransferError> {
        let key = (asset.to_owned(), corridor.to_owned(), role);
        if let Some(&ix) = self.accounts.get(&key) {
            return Ok(ix);
        }
        let ix = self
            .engine
            .ensure_accounts(&[role.spec(asset, corridor)])
            .await?[0];
        self.accounts.insert(key, ix);
        Ok(ix)
    }

    /// The balances of a role's account, for checks and tests.
    pub async fn balances(
        &mut self,
        asset: &str,
        corridor: &str,
        role: &str,
    ) -> Result<Option<meridian_executor::Balances>, TransferError> {
        let role = match role {
            "external" => Role::External,
            "escrow" => Role::Escrow,
            "fee" => Role::Fee,
            "transit" => Role::Transit,
            "payout" => Role::Payout,
            "liquidity" => Role::Liquidity,
            other => return Err(TransferError::Ledger(format!("unknown role {other}"))),
        };
        let ix = self.account(asset, corridor, role).await?;
        Ok(self.engine.balances(ix))
    }

    /// The linked postings of one transfer.
    async fn postings(
        &mut self,
        t: &Transfer,
        hops: &[QuotedHop],
    ) -> Result<Settlement, TransferError> {
        let amount = t.amount;
        let source = t.source_asset.as_str();
        let mut postings = Vec::new();
        let mut next_id = {
            let mut k = 0u32;
            move || {
                k += 1;
                transfer_posting_id(t, k)
            }
        };
        let lock = Posting::Transfer {
            id: next_id(),
            debit: self.account(source, "", Role::External).await?,
            credit: self.account(source, "", Role::Escrow).await?,
            asset: self.asset_code(source)?,
            amount,
            timeout: None,
        };
        postings.push(lock);
        let mut holder = self.account(source, "", Role::Escrow).await?;
        for (i, h) in hops.iter().enumerate() {
            let (s_asset, d_asset) = (self.asset_code(h.source_asset.as_str())?, {
                // The destination side may have no account yet (first transfer this way).
                self.account(h.dest_asset.as_str(), &h.corridor, Role::Liquidity)
                    .await?;
                self.asset_code(h.dest_asset.as_str())?
            });
            let net = h.amount_in.saturating_sub(h.fee);
            if net > 0 {
                postings.push(Posting::Transfer {
                    id: next_id(),
                    debit: holder,
                    credit: self
                        .account(h.source_asset.as_str(), &h.corridor, Role::Liquidity)
                        .await?,
                    asset: s_asset,
                    amount: net,
                    timeout: None,
                });
            }
            if h.fee > 0 {
                postings.push(Posting::Transfer {
                    id: next_id(),
                    debit: holder,
                    credit: self.account(h.source_asset.as_str(), "", Role::Fee).await?,
                    asset: s_asset,
                    amount: h.fee,
                    timeout: None,
                });
            }
            let last = i + 1 == hops.len();
            let to = self
                .account(
                    h.dest_asset.as_str(),
                    "",
                    if last { Role::Payout } else { Role::Transit },
                )
                .await?;
            postings.push(Posting::Transfer {
                id: next_id(),
                debit: self
                    .account(h.dest_asset.as_str(), &h.corridor, Role::Liquidity)
                    .await?,
                credit: to,
                asset: d_asset,
                amount: h.amount_out,
                timeout: None,
            });
            holder = to;
        }
        Ok(Settlement { postings })
    }

    /// Settles every quoted transfer once, and reverses the ledger entries of settled transfers
    /// whose delivery failed (they go back to `rejected`, and delivery refunds the sender).
    pub async fn pass(&mut self, now: DateTime<Utc>) -> Result<SettleSummary, TransferError> {
        let mut summary = self.settle_quoted(now).await?;
        summary.moved.extend(self.reverse_failed(now).await?.moved);
        Ok(summary)
    }

    /// Reverses, in one batch, every settled transfer whose delivery failed: the same postings
    /// backwards (payout back to the corridor, the corridor and fee back to escrow, escrow back
    /// to the chain), then `failed → rejected` so that the sender is refunded on the source
    /// chain. Posting ids derive from the transfer, so a reversal is never posted twice.
    async fn reverse_failed(&mut self, now: DateTime<Utc>) -> Result<SettleSummary, TransferError> {
        let mut summary = SettleSummary::default();
        let failed = self
            .store
            .transfers_in_state(TransferState::Failed, BATCH_MAX)
            .await?;
        let mut batch = Vec::new();
        let mut which = Vec::new();
        for t in failed.into_iter().filter(|t| t.batch_id.is_some()) {
            // Only failures of delivery: a failed refund stays failed for an operator.
            let Some(rec) = self.store.transfer(&t.id).await? else {
                continue;
            };
            let from_delivery = rec.history.last().and_then(|h| h.from).is_some_and(|f| {
                matches!(
                    f,
                    TransferState::Settled | TransferState::Delivering | TransferState::Delivered
                )
            });
            let Some(quote) = t.quote.as_ref() else {
                continue;
            };
            if !from_delivery {
                continue;
            }
            let forward = self.postings(&t, &quote.hops).await?;
            let postings: Vec<Posting> = forward
                .postings
                .iter()
                .rev()
                .enumerate()
                .map(|(k, p)| match *p {
                    Posting::Transfer {
                        debit,
                        credit,
                        asset,
                        amount,
                        ..
                    } => Posting::Transfer {
                        id: posting_id(&format!("{}/reverse/{k}", t.id)),
                        debit: credit,
                        credit: debit,
                        asset,
                        amount,
                        timeout: None,
                    },
                    ref other => other.clone(),
                })
                .collect();
            batch.push(Settlement { postings });
            which.push(t);
        }
        if batch.is_empty() {
            return Ok(summary);
        }
        // A transfer whose source deposit a reorg removed has nothing to refund: read before
        // the batch, so its reversal and its move commit in one transaction.
        let mut retracted = Vec::with_capacity(which.len());
        for t in &which {
            retracted.push(self.store.source_retracted(&t.source_event_uid).await?);
        }
        let moves_of = |results: &[SettlementResult], batch_id: i64| {
            let mut moves = Vec::new();
            for ((t, r), retracted) in which.iter().zip(results).zip(&retracted) {
                let (to, then) = if *retracted {
                    (
                        TransferState::Cancelled,
                        "cancelled: its source deposit was retracted by a reorg",
                    )
                } else {
                    (TransferState::Rejected, "refund follows")
                };
                let reason = match r {
                    Ok(()) => format!("ledger entries reversed in batch {batch_id}; {then}"),
                    Err(e) if e.posting == 0 && e.error == PostingError::IdExists => {
                        format!("ledger entries reversed by an earlier run; {then}")
                    }
                    Err(e) => {
                        tracing::error!(transfer = %t.id, error = %e, "reversal refused; left failed for an operator");
                        continue;
                    }
                };
                moves.push(TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Failed,
                    path: vec![Transition {
                        from: Some(TransferState::Failed),
                        to,
                        reason: Some(reason),
                        actor: "executor".into(),
                        at: now,
                    }],
                    // The reversal's batch is the reversal's, not the transfer's settlement.
                    batch_id: None,
                });
            }
            moves
        };
        // The reversal and the transfers' moves commit together: a crash between them can no
        // longer leave entries reversed with the transfer still failed.
        let settled = self
            .engine
            .settle_batch_moving(batch, now.timestamp().max(0) as u64, &moves_of)
            .await?;
        for m in settled
            .moves
            .iter()
            .filter(|m| settled.moved.contains(&m.id))
        {
            let to = m.path.last().map_or(TransferState::Rejected, |p| p.to);
            metrics::counter!("meridian_transfers_total", "state" => to.as_str()).increment(1);
            summary.moved.push((m.id.clone(), to));
        }
        Ok(summary)
    }

    async fn settle_quoted(&mut self, now: DateTime<Utc>) -> Result<SettleSummary, TransferError> {
        let mut summary = SettleSummary::default();
        loop {
            // What the intake handed over first; once that is drained, what the database holds
            // (a restart's leftovers, an overflowing hand-off, transfers quoted elsewhere).
            let handed = match self.handoff.as_mut() {
                Some(h) => h.take(BATCH_MAX as usize),
                None => Vec::new(),
            };
            let from_db = handed.is_empty();
            let quoted = if from_db {
                self.store
                    .transfers_in_state(TransferState::Quoted, BATCH_MAX)
                    .await?
            } else {
                // A transfer handed over twice is settled once per batch (a later copy is
                // refused by its posting ids and its guarded move).
                let mut seen = std::collections::HashSet::with_capacity(handed.len());
                handed
                    .into_iter()
                    .filter(|t| seen.insert(t.id.clone()))
                    .collect()
            };
            if quoted.is_empty() {
                return Ok(summary);
            }
            let unix = now.timestamp().max(0) as u64;
            let step = |from, to, reason: Option<String>| Transition {
                from: Some(from),
                to,
                reason,
                actor: "executor".into(),
                at: now,
            };
            let mut moves = Vec::new();
            let mut batch = Vec::new();
            let mut in_batch = Vec::new();
            for t in &quoted {
                let refuse = |why: String| TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Quoted,
                    path: vec![step(
                        TransferState::Quoted,
                        TransferState::Rejected,
                        Some(why),
                    )],
                    batch_id: None,
                };
                let hops = match t.quote.as_ref() {
                    Some(q) if q.expires_at >= unix => &q.hops,
                    Some(q) => {
                        let expires = q.expires_at;
                        let at = Utc
                            .timestamp_opt(i64::try_from(expires).unwrap_or(i64::MAX), 0)
                            .single()
                            .map_or_else(|| expires.to_string(), |t| t.to_rfc3339());
                        moves.push(refuse(format!("quote expired at {at} before settlement")));
                        continue;
                    }
                    None => {
                        moves.push(refuse("quoted without a stored quote".into()));
                        continue;
                    }
                };
                if t.deadline.is_some_and(|d| d <= now) {
                    moves.push(refuse("deadline passed before settlement".into()));
                    continue;
                }
                batch.push(self.postings(t, hops).await?);
                in_batch.push(t);
            }
            // The ledger batch and every transfer's new state commit in one transaction.
            let (moves, moved) = if batch.is_empty() {
                let moved = self.store.advance_transfers_which(&moves).await?;
                (moves, moved)
            } else {
                let refused = moves;
                let moves_of = |results: &[SettlementResult], batch_id: i64| {
                    let mut all = refused.clone();
                    all.extend(
                        in_batch
                            .iter()
                            .zip(results)
                            .map(|(t, r)| outcome(t, r, batch_id, &step)),
                    );
                    all
                };
                let settled = self
                    .engine
                    .settle_batch_moving(batch, unix, &moves_of)
                    .await?;
                crate::failpoint::crash_point("transfers-settled");
                for (t, r) in in_batch.iter().zip(&settled.results) {
                    if r.is_ok() && !settled.moved.contains(&t.id) {
                        tracing::error!(transfer = %t.id, batch = settled.batch_id, "settled on the ledger, but the transfer had left `quoted` meanwhile; left for an operator");
                    }
                }
                (settled.moves, settled.moved)
            };
            // Only what moved: a transfer handed over and also read from the database (or
            // changed by someone else meanwhile) is counted once, by whoever moved it.
            for m in moves.iter().filter(|m| moved.contains(&m.id)) {
                let state = m.path.last().map_or(TransferState::Quoted, |p| p.to);
                metrics::counter!("meridian_transfers_total", "state" => state.as_str())
                    .increment(1);
                summary.moved.push((m.id.clone(), state));
            }
            if from_db && (quoted.len() as u64) < BATCH_MAX {
                return Ok(summary);
            }
        }
    }

    /// Runs a pass whenever work for it is committed, and every `interval` anyway, until
    /// `shutdown`; then writes a balance checkpoint, so the next start replays no journal.
    pub async fn run(mut self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "settlement pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.store.work_for(meridian_storage::Stage::Settlement) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        // Not needed for correctness (the journals since the last checkpoint are the record);
        // a refused write (the lease already moved on) only leaves them to be replayed.
        match self.engine.checkpoint().await {
            Ok(true) => tracing::info!("balances checkpointed at stop"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "no balance checkpoint at stop; the next start replays the journals since the last one")
            }
        }
    }
}

/// The move a settlement result means for its transfer.
fn outcome(
    t: &Transfer,
    r: &SettlementResult,
    batch_id: i64,
    step: &dyn Fn(TransferState, TransferState, Option<String>) -> Transition,
) -> TransferMove {
    // The batch is named on the step's outcome, so that `quoted → settling → …` is one history
    // row (storage merges steps without a reason of their own).
    let settling = step(TransferState::Quoted, TransferState::Settling, None);
    let (path, batch) = match r {
        Ok(()) => (
            vec![
                settling,
                step(
                    TransferState::Settling,
                    TransferState::Settled,
                    Some(format!("settlement batch {batch_id}")),
                ),
            ],
            Some(batch_id),
        ),
        // Its first posting is known: an earlier run settled it and stopped before saying so.
        Err(e) if e.posting == 0 && e.error == PostingError::IdExists => (
            vec![
                settling,
                step(
                    TransferState::Settling,
                    TransferState::Settled,
                    Some("settled by an earlier run".into()),
                ),
            ],
            None,
        ),
        Err(e) => (
            vec![
                settling,
                step(
                    TransferState::Settling,
                    TransferState::Rejected,
                    Some(format!("settlement refused in batch {batch_id}: {e}")),
                ),
            ],
            None,
        ),
    };
    TransferMove {
        id: t.id.clone(),
        from: TransferState::Quoted,
        path,
        batch_id: batch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_types::{transfer_id, AccountId, AssetId, ChainId};

    fn transfer(height: u64, index: u32) -> Transfer {
        let uid = format!("eip155:1/{height}/0x{height:064x}/0x{index:064x}/{index}");
        let at = chrono::DateTime::UNIX_EPOCH;
        Transfer {
            id: transfer_id(&uid),
            source_event_uid: uid,
            source_chain: "eip155:1".parse::<ChainId>().unwrap(),
            sender: "eip155:1:0x0000000000000000000000000000000000000001"
                .parse::<AccountId>()
                .unwrap(),
            source_asset: "eip155:1/erc20:0x0000000000000000000000000000000000000002"
                .parse::<AssetId>()
                .unwrap(),
            amount: 1,
            dest_chain: "eip155:2".into(),
            dest_asset: "eip155:2/erc20:0x0000000000000000000000000000000000000003".into(),
            recipient: "eip155:2:0x0000000000000000000000000000000000000004".into(),
            state: TransferState::Quoted,
            quote: None,
            batch_id: None,
            deadline: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn transfer_posting_ids_follow_the_source_blocks() {
        let (a, b) = (transfer(41, 0), transfer(42, 7));
        // The same transfer and leg always give the same id (a retried settlement finds it).
        assert_eq!(
            transfer_posting_id(&a, 1),
            transfer_posting_id(&a.clone(), 1)
        );
        // Legs and transfers differ.
        assert_ne!(transfer_posting_id(&a, 1), transfer_posting_id(&a, 2));
        assert_ne!(
            transfer_posting_id(&a, 1),
            transfer_posting_id(&transfer(41, 1), 1)
        );
        // A later block's postings sort after an earlier block's, whatever the hash: the
        // postings index grows at its end.
        for k in 1..=4 {
            for j in 1..=4 {
                assert!(transfer_posting_id(&a, k) < transfer_posting_id(&b, j));
            }
        }
        assert_eq!(transfer_posting_id(&b, 1) >> 64, 42);
        // Stored keys keep that order (16 big-endian bytes).
        assert!(
            transfer_posting_id(&a, 4).to_be_bytes() < transfer_posting_id(&b, 1).to_be_bytes()
        );
    }
}
