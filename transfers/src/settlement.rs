//! The durable settlement path the node uses: the parallel executor on its own thread pool (one
//! worker or all for each batch, whichever the last batches measured faster), then one database
//! transaction per batch.
//!
//! The in-memory ledger is a cache of the stored one. If a commit fails, the cache is rebuilt
//! from the database, so memory never runs ahead of what is durable.
//!
//! Balances are checkpointed (`meridian_storage::ledger_store`): every
//! [`CHECKPOINT_BATCHES_MAX`]th batch also writes the balances of every account changed since
//! the previous checkpoint; the others write only their journal. The engine tracks those
//! accounts, and a restarted engine learns them from the stored journals after the checkpoint.

use crate::TransferError;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use meridian_executor::ledger::{PendingRecord, PendingState};
use meridian_executor::{
    AccountFlags, AccountIx, AccountKind, AccountMeta, AdaptiveExecutor, AssetCode, Balances,
    ExecutionStats, Ledger, Posting, PostingError, Settlement, SettlementResult,
};
use meridian_storage::posting_journal::{JournalEntry, PendingRef};
use meridian_storage::{
    BalanceUpdate, LedgerAccountRow, SettlementRecord, StorageError, Store, TransferMove,
};
use serde_json::json;

struct Core {
    ledger: Ledger,
    executor: AdaptiveExecutor,
}

/// Posting ids the in-memory id table is sized for at start (32 MiB): it then grows only
/// after a million postings in one run, not during the first batches.
pub const POSTING_IDS_RESERVED: usize = 1 << 20;

/// Batches between two balance checkpoints at most: a restart replays at most this many
/// journals on top of the checkpoint.
pub const CHECKPOINT_BATCHES_MAX: u64 = 16;

/// A batch made durable.
#[derive(Debug)]
pub struct SettledBatch {
    /// Per settlement, in batch order.
    pub results: Vec<SettlementResult>,
    /// How the executor ran it.
    pub stats: ExecutionStats,
    /// The stored batch.
    pub batch_id: i64,
    /// The transfer moves committed with it.
    pub moves: Vec<TransferMove>,
    /// The ids among them that moved (the others had left their expected state meanwhile).
    pub moved: std::collections::HashSet<String>,
}

/// An account by what it is: asset, owner, kind and balance flags (executor bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// CAIP-19 asset.
    pub asset: String,
    /// Owner: CAIP-10 account or a system name (`escrow`, `fee`, `liquidity:<corridor>`…).
    pub owner: String,
    /// `user`, `escrow`, `liquidity`, `fee`, `suspense`.
    pub kind: &'static str,
    /// 1: debits must not exceed credits; 2: credits must not exceed debits.
    pub flags: i32,
}

/// Settles batches in parallel and makes each durable in one transaction.
pub struct SettlementEngine {
    store: Store,
    threads: usize,
    core: Arc<Mutex<Core>>,
    /// Account rows by executor index.
    accounts: Vec<LedgerAccountRow>,
    row_to_ix: HashMap<i64, AccountIx>,
    assets: Vec<String>,
    /// Accounts changed since the newest checkpoint (executor indexes).
    unchecked: HashSet<AccountIx>,
    /// Batches committed since the newest checkpoint.
    batches_since_checkpoint: u64,
    /// The in-memory ledger may hold a batch that was not stored (set before executing,
    /// cleared by its commit or a reload): the next batch or checkpoint reloads first.
    stale: bool,
}

fn kind_of(s: &str) -> AccountKind {
    match s {
        "escrow" => AccountKind::Escrow,
        "liquidity" => AccountKind::Liquidity,
        "fee" => AccountKind::Fee,
        "suspense" => AccountKind::Suspense,
        _ => AccountKind::User,
    }
}

fn flags_of(bits: i32) -> AccountFlags {
    let mut f = AccountFlags::NONE;
    if bits & 1 != 0 {
        f = f.union(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    }
    if bits & 2 != 0 {
        f = f.union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS);
    }
    f
}

fn balances_of(b: &Balances) -> [u128; 4] {
    [
        b.debits_posted,
        b.credits_posted,
        b.debits_pending,
        b.credits_pending,
    ]
}

impl SettlementEngine {
    /// Loads every ledger account and open pending posting from `store`; batches then run on
    /// one executor worker or on `threads`.
    pub async fn load(store: Store, threads: usize) -> Result<SettlementEngine, TransferError> {
        let executor = AdaptiveExecutor::new(threads).map_err(|e| {
            TransferError::Ledger(format!("building the executor thread pool: {e}"))
        })?;
        let mut engine = SettlementEngine {
            store,
            threads,
            core: Arc::new(Mutex::new(Core {
                ledger: Ledger::new(),
                executor,
            })),
            accounts: Vec::new(),
            row_to_ix: HashMap::new(),
            assets: Vec::new(),
            unchecked: HashSet::new(),
            batches_since_checkpoint: 0,
            stale: false,
        };
        engine.reload().await?;
        Ok(engine)
    }

    /// The most executor workers a batch gets.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn asset_code(&mut self, asset: &str) -> AssetCode {
        match self.assets.iter().position(|a| a == asset) {
            Some(i) => i as AssetCode,
            None => {
                self.assets.push(asset.to_owned());
                (self.assets.len() - 1) as AssetCode
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a stored account to `ledger` and to the index maps.
    fn cache_account(
        &mut self,
        ledger: &mut Ledger,
        row: LedgerAccountRow,
    ) -> Result<AccountIx, TransferError> {
        let asset = self.asset_code(&row.asset_id);
        let [debits_posted, credits_posted, debits_pending, credits_pending] = row.balances;
        let ix = ledger.restore_account(
            AccountMeta {
                asset,
                kind: kind_of(&row.kind),
                flags: flags_of(row.flags),
            },
            Balances {
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
            },
        )?;
        self.row_to_ix.insert(row.id, ix);
        self.accounts.push(row);
        Ok(ix)
    }

    /// Rebuilds the in-memory ledger from the database.
    pub async fn reload(&mut self) -> Result<(), TransferError> {
        let state = self.store.ledger_state().await?;
        let rows = state.accounts;
        let pending = state.pending;
        let mut ledger = Ledger::new();
        ledger.reserve_postings(POSTING_IDS_RESERVED);
        self.accounts.clear();
        self.row_to_ix.clear();
        for row in rows {
            self.cache_account(&mut ledger, row)?;
        }
        for p in pending {
            let (Some(&debit), Some(&credit)) = (
                self.row_to_ix.get(&p.debit_account_id),
                self.row_to_ix.get(&p.credit_account_id),
            ) else {
                return Err(TransferError::Ledger(format!(
                    "pending posting {:032x} refers to unknown accounts",
                    p.id
                )));
            };
            let timeout = p.timeout_s.max(0) as u64;
            ledger.restore_pending(
                p.id,
                PendingRecord {
                    debit,
                    credit,
                    amount: p.amount,
                    timeout,
                    state: PendingState::Open,
                },
            );
        }
        self.lock().ledger = ledger;
        // The accounts the batches after the checkpoint changed: the next checkpoint writes
        // them too, or their rows would fall behind the checkpoint that names a later batch.
        self.unchecked = state
            .changed_since_checkpoint
            .iter()
            .filter_map(|id| self.row_to_ix.get(id).copied())
            .collect();
        self.batches_since_checkpoint = state.batches_since_checkpoint;
        self.stale = false;
        Ok(())
    }

    /// Opens accounts (stored first, then cached); returns their executor indexes.
    pub async fn open_accounts(
        &mut self,
        rows: &[LedgerAccountRow],
    ) -> Result<Vec<AccountIx>, TransferError> {
        let created = self.store.create_ledger_accounts(rows).await?;
        let mut out = Vec::with_capacity(created.len());
        let core = self.core.clone();
        let mut core = core.lock().unwrap_or_else(|e| e.into_inner());
        for row in created {
            out.push(self.cache_account(&mut core.ledger, row)?);
        }
        Ok(out)
    }

    /// The executor indexes of `specs`, opening (storing) the accounts that do not exist yet.
    pub async fn ensure_accounts(
        &mut self,
        specs: &[AccountSpec],
    ) -> Result<Vec<AccountIx>, TransferError> {
        let find = |accounts: &[LedgerAccountRow], s: &AccountSpec| {
            accounts
                .iter()
                .position(|a| a.asset_id == s.asset && a.owner == s.owner && a.kind == s.kind)
                .map(|i| i as AccountIx)
        };
        let mut missing: Vec<LedgerAccountRow> = Vec::new();
        for s in specs {
            let known = find(&self.accounts, s).is_some()
                || missing
                    .iter()
                    .any(|m| m.asset_id == s.asset && m.owner == s.owner && m.kind == s.kind);
            if !known {
                missing.push(LedgerAccountRow {
                    id: 0,
                    asset_id: s.asset.clone(),
                    owner: s.owner.clone(),
                    kind: s.kind.to_owned(),
                    flags: s.flags,
                    balances: [0; 4],
                });
            }
        }
        if !missing.is_empty() {
            self.open_accounts(&missing).await?;
        }
        specs
            .iter()
            .map(|s| {
                find(&self.accounts, s).ok_or_else(|| {
                    TransferError::Ledger(format!(
                        "account {}/{}/{} was not created",
                        s.asset, s.owner, s.kind
                    ))
                })
            })
            .collect()
    }

    /// The executor's code for an asset that has accounts.
    pub fn asset_code_of(&self, asset: &str) -> Option<AssetCode> {
        self.assets
            .iter()
            .position(|a| a == asset)
            .map(|i| i as AssetCode)
    }

    /// Balances of an account as the engine sees them.
    pub fn balances(&self, ix: AccountIx) -> Option<Balances> {
        self.lock().ledger.balances(ix).copied()
    }

    /// Settles `batch` at clock `now` (unix seconds): executes it in parallel off the async
    /// runtime, then commits accepted postings and changed balances in one transaction.
    pub async fn settle(
        &mut self,
        batch: Vec<Settlement>,
        now: u64,
    ) -> Result<(Vec<SettlementResult>, ExecutionStats), TransferError> {
        let settled = self.settle_batch(batch, now).await?;
        Ok((settled.results, settled.stats))
    }

    /// [`SettlementEngine::settle`], also returning the stored batch's id.
    pub async fn settle_batch(
        &mut self,
        batch: Vec<Settlement>,
        now: u64,
    ) -> Result<SettledBatch, TransferError> {
        self.settle_batch_moving(batch, now, &|_, _| Vec::new())
            .await
    }

    /// [`SettlementEngine::settle_batch`] that also moves transfers on, in the batch's own
    /// transaction: `moves_of(results, batch_id)` names the moves once the results are known.
    /// A crash leaves the postings and the transfers' new states durable together or neither.
    pub async fn settle_batch_moving(
        &mut self,
        batch: Vec<Settlement>,
        now: u64,
        moves_of: &(dyn Fn(&[SettlementResult], i64) -> Vec<TransferMove> + Send + Sync),
    ) -> Result<SettledBatch, TransferError> {
        // Across restarts a settlement is known by its first posting's id (`posting_ids` holds
        // one per settlement); within a run the executor's id table refuses every posting id.
        // Later postings' ids are not stored: the settler derives all of a transfer's posting
        // ids from the transfer, so no other settlement reuses them.
        // Settlements an earlier run stored (the in-memory id table knows only this run's) are
        // refused at commit by the `posting_ids` index, and rarely there are any (a restart
        // replaying them): so the batch goes without a look-up first, and only when the commit
        // is refused is it executed again with its ids looked up. The look-up cost 5-14 ms of a
        // 16 384-settlement batch on every batch.
        match self.attempt(batch, now, moves_of, false).await? {
            Ok(settled) => Ok(settled),
            Err(batch) => match self.attempt(batch, now, moves_of, true).await? {
                Ok(settled) => Ok(settled),
                Err(_) => Err(TransferError::Ledger(
                    "the database refused settlements as stored before, though none were \
                     found stored"
                        .into(),
                )),
            },
        }
    }

    /// Executes and commits `batch`, looking up first which settlements an earlier run stored
    /// if `lookup`. `Ok(Err(batch))`: the commit was refused because some were; the in-memory
    /// ledger was reloaded and the batch is handed back.
    async fn attempt(
        &mut self,
        batch: Vec<Settlement>,
        now: u64,
        moves_of: &(dyn Fn(&[SettlementResult], i64) -> Vec<TransferMove> + Send + Sync),
        lookup: bool,
    ) -> Result<Result<SettledBatch, Vec<Settlement>>, TransferError> {
        if self.stale {
            self.reload().await?;
        }
        // A settlement's postings are committed together, so its first posting tells whether
        // an earlier run stored it: one look-up per settlement, not one per posting.
        let started = std::time::Instant::now();
        let known = if lookup {
            let keys: Vec<u128> = batch
                .iter()
                .filter_map(|s| s.postings.first())
                .map(|p| p.id())
                .collect();
            self.store.existing_posting_ids(&keys).await?
        } else {
            Vec::new()
        };
        let lookup_ms = started.elapsed().as_millis() as u64;
        let core = self.core.clone();
        self.stale = true;
        let (batch, results, stats, changed, resolved) = tokio::task::spawn_blocking(move || {
            let mut core = core.lock().unwrap_or_else(|e| e.into_inner());
            for id in &known {
                core.ledger.mark_posting_known(*id);
            }
            let Core { ledger, executor } = &mut *core;
            let (results, stats) = executor.execute(ledger, &batch, now);
            // What each resolved pending posting held, for the journal.
            let mut resolved: HashMap<u128, (AccountIx, AccountIx, u128)> = HashMap::new();
            let mut resolve = |pending_id: u128| {
                ledger.pending(pending_id).map(|r| {
                    resolved.insert(pending_id, (r.debit, r.credit, r.amount));
                    [r.debit, r.credit]
                })
            };
            let mut changed: Vec<AccountIx> = Vec::new();
            for id in &stats.expired {
                changed.extend(resolve(*id).into_iter().flatten());
            }
            for (s, r) in batch.iter().zip(&results) {
                if r.is_err() {
                    continue;
                }
                for p in &s.postings {
                    match *p {
                        Posting::Transfer { debit, credit, .. } => changed.extend([debit, credit]),
                        Posting::PostPending { pending_id, .. }
                        | Posting::VoidPending { pending_id, .. } => {
                            changed.extend(resolve(pending_id).into_iter().flatten());
                        }
                    }
                }
            }
            (batch, results, stats, changed, resolved)
        })
        .await
        .map_err(|e| TransferError::Ledger(format!("executor task panicked: {e}")))?;

        // A settlement an earlier run stored but that this execution refused for another reason
        // (funds, an expired pending posting) writes no id, so the commit cannot refuse it:
        // refusals are rare, so their ids are looked up, and if any was stored the batch runs
        // again with every id looked up.
        if !lookup {
            let refused: Vec<u128> = batch
                .iter()
                .zip(&results)
                .filter(|(_, r)| matches!(r, Err(e) if e.error != PostingError::IdExists))
                .filter_map(|(s, _)| s.postings.first().map(|p| p.id()))
                .collect();
            if !refused.is_empty() && !self.store.existing_posting_ids(&refused).await?.is_empty() {
                self.reload().await?;
                return Ok(Err(batch));
            }
        }
        let (settlements, entries) = match self.journal(&batch, &results, &stats, &resolved) {
            Ok(journal) => journal,
            Err(e) => {
                // The in-memory ledger applied a batch that will not be stored.
                self.reload().await?;
                return Err(e);
            }
        };
        // A checkpoint every CHECKPOINT_BATCHES_MAX batches: the balances now of every account
        // changed since the last one.
        self.unchecked.extend(changed);
        let checkpoint = (self.batches_since_checkpoint + 1 >= CHECKPOINT_BATCHES_MAX)
            .then(|| self.unchecked_balances());
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let prepared_ms = started.elapsed().as_millis() as u64;
        let summary = json!({
            "id_lookup_ms": lookup_ms,
            "execute_ms": (stats.id_time + stats.schedule_time + stats.execute_time).as_millis() as u64,
            "prepared_ms": prepared_ms,
            "settlements": batch.len(),
            "accepted": accepted,
            "rejected": batch.len() - accepted,
            "rounds": stats.rounds,
            "parallel": stats.parallel,
            "serial": stats.serial,
            "sequential_reason": stats.sequential_reason,
        });
        let moves_of_batch = |batch_id: i64| moves_of(&results, batch_id);
        crate::failpoint::crash_point("settlement-executed");
        let committed = match self
            .store
            .commit_settlement_batch_moving(
                SettlementRecord {
                    size: batch.len(),
                    settlements: &settlements,
                    entries: &entries,
                    checkpoint: checkpoint.as_deref(),
                },
                summary,
                &moves_of_batch,
            )
            .await
        {
            Ok(committed) => {
                self.stale = false;
                crate::failpoint::crash_point("settlement-committed");
                self.committed(checkpoint.is_some());
                committed
            }
            Err(StorageError::SettledBefore { stored, .. }) if !lookup => {
                tracing::info!(
                    stored,
                    "settlements of the batch were stored before (a replay); executing it again \
                     with their ids looked up"
                );
                self.reload().await?;
                return Ok(Err(batch));
            }
            Err(e) => {
                tracing::error!(error = %e, "settlement batch commit failed; reloading the ledger from the database");
                self.reload().await?;
                return Err(TransferError::Storage(e));
            }
        };
        tracing::debug!(
            settlements = batch.len(),
            accepted,
            lookup_ms,
            prepared_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "settlement batch committed"
        );
        Ok(Ok(SettledBatch {
            results,
            stats,
            batch_id: committed.batch_id,
            moves: committed.moves,
            moved: committed.moved,
        }))
    }

    /// Makes a checkpoint now if any account changed since the last one (a batch of no
    /// settlements that writes the balances); e.g. before a planned stop, so the next start
    /// replays nothing. Returns whether it wrote one.
    pub async fn checkpoint(&mut self) -> Result<bool, TransferError> {
        if self.stale {
            self.reload().await?;
        }
        if self.unchecked.is_empty() {
            return Ok(false);
        }
        let balances = self.unchecked_balances();
        let record = SettlementRecord {
            checkpoint: Some(&balances),
            ..Default::default()
        };
        if let Err(e) = self
            .store
            .commit_settlement_batch(
                record,
                json!({ "settlements": 0, "accepted": 0, "checkpoint": balances.len() }),
            )
            .await
        {
            // The in-memory ledger is unchanged by a checkpoint: nothing to reload.
            return Err(TransferError::Storage(e));
        }
        self.committed(true);
        Ok(true)
    }

    /// The balances now of every account changed since the newest checkpoint.
    fn unchecked_balances(&self) -> Vec<BalanceUpdate> {
        let core = self.lock();
        let mut out: Vec<BalanceUpdate> = self
            .unchecked
            .iter()
            .filter_map(|&ix| {
                let b = core.ledger.balances(ix)?;
                Some(BalanceUpdate {
                    id: self.accounts.get(ix as usize)?.id,
                    balances: balances_of(b),
                })
            })
            .collect();
        out.sort_unstable_by_key(|b| b.id);
        out
    }

    fn committed(&mut self, checkpoint: bool) {
        if checkpoint {
            self.unchecked.clear();
            self.batches_since_checkpoint = 0;
        } else {
            self.batches_since_checkpoint += 1;
        }
    }

    /// The batch's journal: expiries first (the executor expires before it executes), then the
    /// accepted settlements' postings in batch order; and the accepted settlements' ids.
    #[allow(clippy::type_complexity)]
    fn journal(
        &self,
        batch: &[Settlement],
        results: &[SettlementResult],
        stats: &ExecutionStats,
        resolved: &HashMap<u128, (AccountIx, AccountIx, u128)>,
    ) -> Result<(Vec<u128>, Vec<JournalEntry>), TransferError> {
        let mut entries: Vec<JournalEntry> = Vec::with_capacity(batch.len() + stats.expired.len());
        for &pending_id in &stats.expired {
            entries.push(JournalEntry::Expire {
                pending: self.pending_ref(resolved, pending_id)?,
            });
        }
        let mut settlements = Vec::with_capacity(batch.len());
        for (s, r) in batch.iter().zip(results) {
            if r.is_err() {
                continue;
            }
            settlements.extend(s.postings.first().map(|p| p.id()));
            for p in &s.postings {
                entries.push(self.journal_entry(p, resolved)?);
            }
        }
        Ok((settlements, entries))
    }

    fn row_id(&self, ix: AccountIx) -> Result<i64, TransferError> {
        self.accounts
            .get(ix as usize)
            .map(|a| a.id)
            .ok_or_else(|| TransferError::Ledger(format!("executor account {ix} has no row")))
    }

    fn pending_ref(
        &self,
        resolved: &HashMap<u128, (AccountIx, AccountIx, u128)>,
        pending_id: u128,
    ) -> Result<PendingRef, TransferError> {
        let (debit, credit, amount) = resolved.get(&pending_id).copied().ok_or_else(|| {
            TransferError::Ledger(format!(
                "pending posting {pending_id:032x} was resolved but is unknown"
            ))
        })?;
        Ok(PendingRef {
            pending_id,
            debit_account_id: self.row_id(debit)?,
            credit_account_id: self.row_id(credit)?,
            amount,
        })
    }

    fn journal_entry(
        &self,
        p: &Posting,
        resolved: &HashMap<u128, (AccountIx, AccountIx, u128)>,
    ) -> Result<JournalEntry, TransferError> {
        Ok(match *p {
            Posting::Transfer {
                id,
                debit,
                credit,
                amount,
                timeout,
                ..
            } => JournalEntry::Transfer {
                id,
                debit_account_id: self.row_id(debit)?,
                credit_account_id: self.row_id(credit)?,
                amount,
                timeout_s: timeout.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            },
            Posting::PostPending { id, pending_id } => JournalEntry::Post {
                id,
                pending: self.pending_ref(resolved, pending_id)?,
            },
            Posting::VoidPending { id, pending_id } => JournalEntry::Void {
                id,
                pending: self.pending_ref(resolved, pending_id)?,
            },
        })
    }
}
