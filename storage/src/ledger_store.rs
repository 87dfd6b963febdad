//! Durable ledger: accounts and settled batches with their postings.
//!
//! A settled batch is written in **one** transaction — the batch row with its postings as one
//! journal ([`crate::posting_journal`]), one narrow `posting_ids` row per settlement and the open
//! pending postings it made or resolved — so a crash leaves the whole batch or nothing.
//!
//! **Balances are a checkpoint** (migration 20): every few batches, one batch also writes the
//! balances of every account changed since the previous checkpoint (one multi-row update) and
//! names itself in `ledger_checkpoints`. The balances now are the checkpoint's plus the replay of
//! the journals after it ([`Store::ledger_state`]); an account that many batches change is
//! written once per checkpoint, not once per batch. [`Store::conventional_transfer`] is the design operators run today
//! (one transaction per transfer with row locks); it exists as the benchmark baseline.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value as Json;

use crate::entities::{ledger_accounts, postings, settlement_batches};
use crate::posting_journal::{self, JournalEntry, LedgerReplay, PendingRef};
use crate::row_insert::RowInsert;
use crate::transfer_store::{advance_many_in, TransferMove};
use crate::{StorageError, Store};

/// Rows per multi-row statement; keeps both backends under their bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// One row per settlement: its first posting's id (16 bytes) and its batch.
const POSTING_ID_ROWS: RowInsert = RowInsert {
    table: "posting_ids",
    columns: &["id", "batch_id"],
};

/// An open two-phase posting.
const PENDING_ROWS: RowInsert = RowInsert {
    table: "pending_postings",
    columns: &[
        "id",
        "batch_id",
        "debit_account_id",
        "credit_account_id",
        "amount",
        "timeout_s",
    ],
};

/// Settled batches read per page when replaying the journals.
const REPLAY_BATCHES_PER_PAGE_MAX: u64 = 64;

/// A posting id as the database keys it: 16 big-endian bytes.
pub(crate) fn id_value(id: u128) -> sea_orm::Value {
    sea_orm::Value::Bytes(Some(Box::new(id.to_be_bytes().to_vec())))
}

/// A stored 16-byte posting id.
pub(crate) fn id_of(table: &'static str, bytes: &[u8]) -> Result<u128, StorageError> {
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| StorageError::Corrupt {
            table,
            message: format!("a posting id of {} bytes, not 16", bytes.len()),
        })
}

/// Balances in base units: debits posted, credits posted, debits pending, credits pending.
pub type BalanceRow = [u128; 4];

/// A ledger account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAccountRow {
    /// Row id (assigned by the database on creation).
    pub id: i64,
    /// CAIP-19 asset.
    pub asset_id: String,
    /// CAIP-10 owner or a system name.
    pub owner: String,
    /// user, escrow, liquidity, fee, suspense.
    pub kind: String,
    /// Balance flags (executor bits).
    pub flags: i32,
    /// Current balances.
    pub balances: BalanceRow,
}

/// New balances of an account changed by a settlement batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceUpdate {
    /// The account's row id.
    pub id: i64,
    /// Its balances after the batch.
    pub balances: BalanceRow,
}

/// The transfer moves a settled batch makes, given the batch's id: written in the batch's own
/// transaction, so the ledger and the transfers' states are durable together or not at all.
pub type BatchMoves<'a> = &'a (dyn Fn(i64) -> Vec<TransferMove> + Send + Sync);

/// A settled batch as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBatch {
    /// The stored batch.
    pub batch_id: i64,
    /// The transfer moves it was committed with.
    pub moves: Vec<TransferMove>,
    /// The ids among them that moved (the others had left their expected state meanwhile).
    pub moved: std::collections::HashSet<String>,
}

/// A settled batch as the engine commits it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettlementRecord<'a> {
    /// Settlements in the batch, accepted or not.
    pub size: usize,
    /// The id of each accepted settlement: its first posting's (what
    /// [`Store::existing_posting_ids`] answers for).
    pub settlements: &'a [u128],
    /// The accepted postings and the pending ones that expired, in the order they applied.
    pub entries: &'a [JournalEntry],
    /// When this batch is a checkpoint: the balances, as of this batch, of every account
    /// changed since the previous checkpoint (this batch's included).
    pub checkpoint: Option<&'a [BalanceUpdate]>,
}

/// The ledger as stored: every account with its balances now, and what a settlement engine
/// needs to go on from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    /// Every account, by id, with its balances now (the checkpoint's plus the later journals').
    pub accounts: Vec<LedgerAccountRow>,
    /// The batch of the newest checkpoint (0: none yet).
    pub checkpoint_batch: i64,
    /// Batches settled after it.
    pub batches_since_checkpoint: u64,
    /// Accounts those batches changed (ids): the next checkpoint must write them.
    pub changed_since_checkpoint: Vec<i64>,
    /// Two-phase postings still open.
    pub pending: Vec<PendingPosting>,
}

/// A two-phase posting still open, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPosting {
    /// The posting's id.
    pub id: u128,
    /// Debited account row id.
    pub debit_account_id: i64,
    /// Credited account row id.
    pub credit_account_id: i64,
    /// Amount in base units.
    pub amount: u128,
    /// When it expires (Unix seconds).
    pub timeout_s: i64,
}

/// Pending postings still open, by id.
async fn open_pending_postings<C: ConnectionTrait>(
    conn: &C,
) -> Result<Vec<PendingPosting>, StorageError> {
    let rows = conn
        .query_all(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id, debit_account_id, credit_account_id, amount, timeout_s \
             FROM pending_postings ORDER BY id",
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            let t = "pending_postings";
            let id: Vec<u8> = r.try_get("", "id")?;
            let amount: String = r.try_get("", "amount")?;
            Ok(PendingPosting {
                id: id_of(t, &id)?,
                debit_account_id: r.try_get("", "debit_account_id")?,
                credit_account_id: r.try_get("", "credit_account_id")?,
                amount: parse_amount(t, &amount)?,
                timeout_s: r.try_get("", "timeout_s")?,
            })
        })
        .collect()
}

/// Every ledger account as stored, by id: balances as of the newest checkpoint.
async fn stored_accounts<C: ConnectionTrait>(
    conn: &C,
) -> Result<Vec<LedgerAccountRow>, StorageError> {
    let rows = ledger_accounts::Entity::find()
        .order_by_asc(ledger_accounts::Column::Id)
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|r| {
            let t = "ledger_accounts";
            Ok(LedgerAccountRow {
                balances: [
                    parse_amount(t, &r.debits_posted)?,
                    parse_amount(t, &r.credits_posted)?,
                    parse_amount(t, &r.debits_pending)?,
                    parse_amount(t, &r.credits_pending)?,
                ],
                id: r.id,
                asset_id: r.asset_id,
                owner: r.owner,
                kind: r.kind,
                flags: r.flags,
            })
        })
        .collect()
}

/// Whether a settled batch may lack a journal: only one stored before migration 19 (its
/// postings are rows), which is never after a checkpoint.
#[derive(Clone, Copy)]
enum Journal {
    Required,
    MayBeRows,
}

/// Replays the journals of the batches after `after` into `replay`, a page of batches at a
/// time; returns how many batches that was.
async fn replay_journals<C: ConnectionTrait>(
    conn: &C,
    after: i64,
    replay: &mut LedgerReplay,
    journal: Journal,
) -> Result<u64, StorageError> {
    let mut batches = 0u64;
    let mut after = after;
    loop {
        let page = settlement_batches::Entity::find()
            .filter(settlement_batches::Column::Id.gt(after))
            .order_by_asc(settlement_batches::Column::Id)
            .limit(REPLAY_BATCHES_PER_PAGE_MAX)
            .all(conn)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for b in &page {
            batches += 1;
            match (&b.journal, journal) {
                (Some(bytes), _) => {
                    for e in posting_journal::decode(b.id, bytes)? {
                        replay.apply(&e)?;
                    }
                }
                (None, Journal::MayBeRows) => {}
                (None, Journal::Required) => {
                    return Err(StorageError::Corrupt {
                        table: "settlement_batches",
                        message: format!(
                            "batch {} after the balance checkpoint has no journal",
                            b.id
                        ),
                    })
                }
            }
        }
    }
    Ok(batches)
}

fn parse_amount(table: &'static str, s: &str) -> Result<u128, StorageError> {
    s.parse().map_err(|_| StorageError::Corrupt {
        table,
        message: format!("amount `{s}` is not a u128"),
    })
}

/// What the batch commit verifies instead of per-row foreign keys (see migration 7): the
/// checkpoint's accounts are distinct, and the accounts named by postings that are neither among
/// them nor known to this process to exist. The caller then checks that the balance update
/// matched every checkpoint account and that the extra accounts exist.
pub(crate) struct BatchReferences {
    /// Accounts named by postings but not in the changed set.
    pub(crate) extra_accounts: Vec<i64>,
}

pub(crate) fn batch_references(
    entries: &[JournalEntry],
    changed_accounts: &[BalanceUpdate],
    known: &std::collections::HashSet<i64>,
) -> Result<BatchReferences, StorageError> {
    let mut changed: Vec<i64> = changed_accounts.iter().map(|r| r.id).collect();
    changed.sort_unstable();
    if let Some(w) = changed.windows(2).find(|w| w[0] == w[1]) {
        return Err(StorageError::Integrity {
            table: "ledger_accounts",
            message: format!("account {} appears twice in one batch", w[0]),
        });
    }
    let mut extra: Vec<i64> = entries
        .iter()
        .filter_map(|e| match *e {
            JournalEntry::Transfer {
                debit_account_id,
                credit_account_id,
                ..
            } => Some([debit_account_id, credit_account_id]),
            _ => None,
        })
        .flatten()
        .filter(|id| changed.binary_search(id).is_err() && !known.contains(id))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    Ok(BatchReferences {
        extra_accounts: extra,
    })
}

/// Refuses a batch whose settlements were not all new: `written` of `settlements` ids went in.
pub(crate) fn settled_before(settlements: usize, written: u64) -> Result<(), StorageError> {
    let settlements = settlements as u64;
    if written == settlements {
        return Ok(());
    }
    Err(StorageError::SettledBefore {
        stored: settlements.saturating_sub(written),
        settlements,
    })
}

/// The error for a batch resolving pending postings that are not open.
pub(crate) fn unknown_pending(expected: u64, found: u64) -> StorageError {
    StorageError::Integrity {
        table: "pending_postings",
        message: format!(
            "the batch resolves {expected} pending postings but only {found} are open; batch refused"
        ),
    }
}

/// The error for a batch whose balance update did not find every account it names.
pub(crate) fn missing_accounts(expected: usize, found: u64) -> StorageError {
    StorageError::Integrity {
        table: "postings",
        message: format!(
            "the batch names {expected} accounts but only {found} exist; batch refused"
        ),
    }
}

impl Store {
    /// Creates accounts (ids assigned by the database) in one transaction; returns them with ids,
    /// in the order given.
    pub async fn create_ledger_accounts(
        &self,
        rows: &[LedgerAccountRow],
    ) -> Result<Vec<LedgerAccountRow>, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let now = Utc::now();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let models = chunk.iter().map(|r| ledger_accounts::ActiveModel {
                asset_id: Set(r.asset_id.clone()),
                owner: Set(r.owner.clone()),
                kind: Set(r.kind.clone()),
                flags: Set(r.flags),
                debits_posted: Set(r.balances[0].to_string()),
                credits_posted: Set(r.balances[1].to_string()),
                debits_pending: Set(r.balances[2].to_string()),
                credits_pending: Set(r.balances[3].to_string()),
                created_at: Set(now),
                ..Default::default()
            });
            ledger_accounts::Entity::insert_many(models)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        let all = stored_accounts(self.connection()).await?;
        // Newly created rows are the last `rows.len()` ids.
        let created = all[all.len().saturating_sub(rows.len())..].to_vec();
        self.known_accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(created.iter().map(|a| a.id));
        Ok(created)
    }

    /// Every ledger account, by id, with its balances now.
    pub async fn ledger_accounts(&self) -> Result<Vec<LedgerAccountRow>, StorageError> {
        Ok(self.ledger_state().await?.accounts)
    }

    /// The ledger now, read in one snapshot: the newest checkpoint's balances plus the replay of
    /// the journals after it, and what the next checkpoint must write.
    pub async fn ledger_state(&self) -> Result<LedgerState, StorageError> {
        use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
        let txn = match self.backend() {
            crate::Backend::Postgres => {
                self.connection()
                    .begin_with_config(
                        Some(IsolationLevel::RepeatableRead),
                        Some(AccessMode::ReadOnly),
                    )
                    .await?
            }
            // A read transaction on a WAL file reads one snapshot from its first read on.
            crate::Backend::Sqlite => self.connection().begin().await?,
        };
        let mut accounts = stored_accounts(&txn).await?;
        let checkpoint_batch: i64 = txn
            .query_one(Statement::from_string(
                txn.get_database_backend(),
                "SELECT batch_id FROM ledger_checkpoints ORDER BY batch_id DESC LIMIT 1",
            ))
            .await?
            .map(|r| r.try_get("", "batch_id"))
            .transpose()?
            .unwrap_or(0);
        let mut replay = LedgerReplay::default();
        let batches =
            replay_journals(&txn, checkpoint_batch, &mut replay, Journal::Required).await?;
        let pending = open_pending_postings(&txn).await?;
        txn.commit().await?;
        for a in &mut accounts {
            a.balances = replay.applied_to(a.id, a.balances)?;
        }
        let changed: Vec<i64> = replay.accounts().collect();
        if let Some(unknown) = changed
            .iter()
            .find(|id| accounts.binary_search_by_key(*id, |a| a.id).is_err())
        {
            return Err(StorageError::Corrupt {
                table: "settlement_batches",
                message: format!("a journal names ledger account {unknown}, which does not exist"),
            });
        }
        self.known_accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(accounts.iter().map(|a| a.id));
        Ok(LedgerState {
            accounts,
            checkpoint_batch,
            batches_since_checkpoint: batches,
            changed_since_checkpoint: changed,
            pending,
        })
    }

    /// Writes one settled batch atomically: the batch row with its journal, its settlements'
    /// ids, the pending postings it opened or resolved and the new balances of every account it
    /// changed. Returns the batch id. PostgreSQL takes the balances through `COPY`
    /// ([`crate::pg_copy`]); SQLite multi-row statements.
    pub async fn commit_settlement_batch(
        &self,
        record: SettlementRecord<'_>,
        summary: Json,
    ) -> Result<i64, StorageError> {
        let committed = self
            .commit_settlement_batch_moving(record, summary, &|_| Vec::new())
            .await?;
        Ok(committed.batch_id)
    }

    /// [`Store::commit_settlement_batch`] with the transfer moves the batch makes (given its id),
    /// in the same transaction.
    pub async fn commit_settlement_batch_moving(
        &self,
        record: SettlementRecord<'_>,
        summary: Json,
        moves_of: BatchMoves<'_>,
    ) -> Result<CommittedBatch, StorageError> {
        let checkpoint = record.checkpoint.unwrap_or_default();
        let refs = {
            let known = self
                .known_accounts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            batch_references(record.entries, checkpoint, &known)?
        };
        let journal = posting_journal::encode(record.entries);
        if self.backend() == crate::Backend::Postgres {
            let committed = crate::pg_copy::commit_settlement_batch(
                self.connection().get_postgres_connection_pool(),
                record,
                &journal,
                &refs,
                summary,
                moves_of,
                self.fence(),
            )
            .await?;
            self.remember_accounts(checkpoint, &refs);
            self.announce_moves(&committed.moves, &committed.moved);
            return Ok(committed);
        }
        let (_gate, txn) = self.begin_write().await?;
        let now = Utc::now();
        let batch = settlement_batches::Entity::insert(settlement_batches::ActiveModel {
            state: Set("committed".into()),
            size: Set(i32::try_from(record.size).unwrap_or(i32::MAX)),
            started_at: Set(now),
            committed_at: Set(Some(now)),
            summary: Set(Some(summary)),
            journal: Set(Some(journal)),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let batch_id = batch.last_insert_id;
        let t_postings = std::time::Instant::now();
        let values: Vec<sea_orm::Value> = record
            .settlements
            .iter()
            .flat_map(|id| [id_value(*id), Some(batch_id).into()])
            .collect();
        if !values.is_empty() {
            let written = POSTING_ID_ROWS
                .exec_with_tail(&txn, values, "ON CONFLICT DO NOTHING")
                .await?;
            settled_before(record.settlements.len(), written)?;
        }
        let pending: Vec<sea_orm::Value> = record
            .entries
            .iter()
            .filter_map(JournalEntry::opens)
            .flat_map(|p| {
                [
                    id_value(p.id),
                    Some(batch_id).into(),
                    p.debit_account_id.into(),
                    p.credit_account_id.into(),
                    p.amount.to_string().into(),
                    p.timeout_s.into(),
                ]
            })
            .collect();
        let resolved: Vec<sea_orm::Value> = record
            .entries
            .iter()
            .filter_map(JournalEntry::resolves)
            .map(id_value)
            .collect();
        if !pending.is_empty() {
            PENDING_ROWS.exec(&txn, pending).await?;
        }
        let resolutions = resolved.len() as u64;
        let mut removed = 0u64;
        let mut resolved = resolved.into_iter().peekable();
        while resolved.peek().is_some() {
            let chunk: Vec<sea_orm::Value> = resolved.by_ref().take(ROWS_PER_STATEMENT).collect();
            let marks = vec!["?"; chunk.len()].join(", ");
            removed += txn
                .execute(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("DELETE FROM pending_postings WHERE id IN ({marks})"),
                    chunk,
                ))
                .await?
                .rows_affected();
        }
        if removed != resolutions {
            return Err(unknown_pending(resolutions, removed));
        }
        let postings_ms = t_postings.elapsed().as_millis() as u64;
        let t_accounts = std::time::Instant::now();
        // One multi-row UPDATE … FROM (VALUES …) per chunk: far cheaper than per-row updates or
        // INSERT … ON CONFLICT upserts (which probe every unique index first). SQLite names the
        // VALUES columns column1….
        let mut matched = 0u64;
        for chunk in checkpoint.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "UPDATE ledger_accounts SET debits_posted = v.column2, credits_posted = v.column3, \
                 debits_pending = v.column4, credits_pending = v.column5 FROM (",
            );
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 5);
            for (k, r) in chunk.iter().enumerate() {
                sql.push_str(if k == 0 {
                    "VALUES (?, ?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?, ?)"
                });
                values.push(r.id.into());
                values.extend(
                    r.balances
                        .iter()
                        .map(|b| sea_orm::Value::from(b.to_string())),
                );
            }
            sql.push_str(") AS v WHERE ledger_accounts.id = v.column1");
            matched += txn
                .execute(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    &sql,
                    values,
                ))
                .await?
                .rows_affected();
        }
        if matched != checkpoint.len() as u64 {
            // Dropping the transaction rolls the whole batch back.
            return Err(missing_accounts(checkpoint.len(), matched));
        }
        if record.checkpoint.is_some() {
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO ledger_checkpoints (batch_id, accounts, at) VALUES (?, ?, ?)",
                [
                    batch_id.into(),
                    (checkpoint.len() as i64).into(),
                    now.into(),
                ],
            ))
            .await?;
        }
        if !refs.extra_accounts.is_empty() {
            let found = ledger_accounts::Entity::find()
                .filter(ledger_accounts::Column::Id.is_in(refs.extra_accounts.iter().copied()))
                .count(&txn)
                .await?;
            if found != refs.extra_accounts.len() as u64 {
                return Err(missing_accounts(refs.extra_accounts.len(), found));
            }
        }
        let accounts_ms = t_accounts.elapsed().as_millis() as u64;
        let t_moves = std::time::Instant::now();
        let moves = moves_of(batch_id);
        let moved = advance_many_in(&txn, &moves).await?;
        let moves_ms = t_moves.elapsed().as_millis() as u64;
        let t_commit = std::time::Instant::now();
        txn.commit().await?;
        self.remember_accounts(checkpoint, &refs);
        tracing::debug!(
            postings = record.entries.len(),
            accounts = checkpoint.len(),
            transfers = moved.len(),
            postings_ms,
            accounts_ms,
            moves_ms,
            commit_ms = t_commit.elapsed().as_millis() as u64,
            "settlement batch written"
        );
        self.announce_moves(&moves, &moved);
        Ok(CommittedBatch {
            batch_id,
            moves,
            moved,
        })
    }

    /// Accounts a committed batch showed to exist.
    fn remember_accounts(&self, checkpoint: &[BalanceUpdate], refs: &BatchReferences) {
        let mut known = self
            .known_accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        known.extend(checkpoint.iter().map(|r| r.id));
        known.extend(refs.extra_accounts.iter().copied());
    }

    /// Which of `ids` (settlements' first posting ids) an earlier commit stored: idempotency
    /// across restarts.
    pub async fn existing_posting_ids(&self, ids: &[u128]) -> Result<Vec<u128>, StorageError> {
        if self.backend() == crate::Backend::Postgres {
            // One round trip with an array instead of one `IN (…)` statement per thousand ids.
            return crate::pg_copy::existing_posting_ids(
                self.connection().get_postgres_connection_pool(),
                ids,
            )
            .await;
        }
        let mut found = Vec::new();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let rows = self
                .connection()
                .query_all(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("SELECT id FROM posting_ids WHERE id IN ({marks})"),
                    chunk.iter().map(|id| id_value(*id)),
                ))
                .await?;
            for r in rows {
                let bytes: Vec<u8> = r.try_get("", "id")?;
                found.push(id_of("posting_ids", &bytes)?);
            }
        }
        Ok(found)
    }

    /// Pending postings still open, to restore two-phase state at start-up.
    pub async fn open_pending_postings(&self) -> Result<Vec<PendingPosting>, StorageError> {
        open_pending_postings(self.connection()).await
    }

    /// The postings of settled batch `batch_id`, from its journal (empty for a batch stored
    /// before migration 19, whose postings are rows of `postings`).
    pub async fn batch_journal(&self, batch_id: i64) -> Result<Vec<JournalEntry>, StorageError> {
        let batch = settlement_batches::Entity::find_by_id(batch_id)
            .one(self.connection())
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                table: "settlement_batches",
                message: format!("no settled batch {batch_id}"),
            })?;
        match batch.journal {
            Some(bytes) => posting_journal::decode(batch_id, &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Replays the ledger's whole history: the `postings` rows written before migration 19,
    /// then every settled batch's journal in commit order, a page of batches at a time. Its
    /// balances plus the accounts' opening ones must equal [`Store::ledger_accounts`] (audits
    /// and the crash tests check it; the checkpoints are not read).
    pub async fn replay_ledger(&self) -> Result<LedgerReplay, StorageError> {
        let mut replay = LedgerReplay::default();
        for e in self.legacy_postings().await? {
            replay.apply(&e)?;
        }
        replay_journals(self.connection(), 0, &mut replay, Journal::MayBeRows).await?;
        Ok(replay)
    }

    /// The `postings` rows written before migration 19 as journal entries: per batch, its
    /// transfers, then the postings that resolved pending ones; the expiries last (a row says
    /// only that it expired, not when).
    async fn legacy_postings(&self) -> Result<Vec<JournalEntry>, StorageError> {
        let t = "postings";
        let rows = postings::Entity::find()
            .order_by_asc(postings::Column::BatchId)
            .order_by_asc(postings::Column::Id)
            .all(self.connection())
            .await?;
        let id_of_text = |s: &str| {
            u128::from_str_radix(s, 16).map_err(|_| StorageError::Corrupt {
                table: t,
                message: format!("posting id `{s}` is not hexadecimal"),
            })
        };
        // A posting was pending when a later one resolved it or it was not simply posted; its
        // time-out may be NULL (one too far out to store), which then means never.
        let resolved: std::collections::HashSet<&str> = rows
            .iter()
            .filter_map(|r| r.pending_id.as_deref())
            .collect();
        let was_pending = |r: &postings::Model| {
            r.timeout_at.is_some() || r.state != "posted" || resolved.contains(r.id.as_str())
        };
        let mut transfers = Vec::new();
        let mut resolutions = Vec::new();
        let mut expiries = Vec::new();
        let mut batch = None;
        for r in &rows {
            if r.batch_id != batch {
                transfers.append(&mut resolutions);
                batch = r.batch_id;
            }
            let id = id_of_text(&r.id)?;
            let amount = parse_amount(t, &r.amount)?;
            match r.pending_id.as_deref() {
                None => {
                    transfers.push(JournalEntry::Transfer {
                        id,
                        debit_account_id: r.debit_account_id,
                        credit_account_id: r.credit_account_id,
                        amount,
                        timeout_s: was_pending(r)
                            .then(|| r.timeout_at.map_or(i64::MAX, |t| t.timestamp())),
                    });
                    if r.state == "expired" {
                        expiries.push(JournalEntry::Expire {
                            pending: PendingRef {
                                pending_id: id,
                                debit_account_id: r.debit_account_id,
                                credit_account_id: r.credit_account_id,
                                amount,
                            },
                        });
                    }
                }
                Some(pending) => {
                    // The row carries the pending posting's accounts and amount.
                    let pending = PendingRef {
                        pending_id: id_of_text(pending)?,
                        debit_account_id: r.debit_account_id,
                        credit_account_id: r.credit_account_id,
                        amount,
                    };
                    resolutions.push(if r.state == "voided" {
                        JournalEntry::Void { id, pending }
                    } else {
                        JournalEntry::Post { id, pending }
                    });
                }
            }
        }
        transfers.append(&mut resolutions);
        transfers.append(&mut expiries);
        Ok(transfers)
    }

    /// The conventional design, for comparison: one transaction per transfer that locks both
    /// rows (`SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), checks the
    /// payer's balance, updates both rows and inserts the posting. Returns whether it was applied.
    /// Needs a store with a single pooled connection (`connect_single`).
    pub async fn conventional_transfer(
        &self,
        id: &str,
        debit: i64,
        credit: i64,
        asset_id: &str,
        amount: u128,
    ) -> Result<bool, StorageError> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let (begin, lock) = match backend {
            DbBackend::Postgres => (
                "BEGIN",
                "SELECT id, debits_posted, credits_posted FROM ledger_accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
            ),
            _ => (
                "BEGIN IMMEDIATE",
                "SELECT id, debits_posted, credits_posted FROM ledger_accounts WHERE id IN (?, ?) ORDER BY id",
            ),
        };
        db.execute_unprepared(begin).await?;
        let result = async {
            let rows = db
                .query_all(Statement::from_sql_and_values(backend, lock, [debit.into(), credit.into()]))
                .await?;
            let mut payer = None;
            let mut payee = None;
            for r in &rows {
                let rid: i64 = r.try_get("", "id")?;
                let d: String = r.try_get("", "debits_posted")?;
                let c: String = r.try_get("", "credits_posted")?;
                let v = (parse_amount("ledger_accounts", &d)?, parse_amount("ledger_accounts", &c)?);
                if rid == debit {
                    payer = Some(v);
                }
                if rid == credit {
                    payee = Some(v);
                }
            }
            let (Some((pd, pc)), Some((_, qc))) = (payer, payee) else { return Ok(false) };
            if pd + amount > pc {
                return Ok(false);
            }
            let update = match backend {
                DbBackend::Postgres => "UPDATE ledger_accounts SET debits_posted = $1 WHERE id = $2",
                _ => "UPDATE ledger_accounts SET debits_posted = ? WHERE id = ?",
            };
            db.execute(Statement::from_sql_and_values(backend, update, [(pd + amount).to_string().into(), debit.into()]))
                .await?;
            let update = update.replace("debits_posted", "credits_posted");
            db.execute(Statement::from_sql_and_values(backend, &update, [(qc + amount).to_string().into(), credit.into()]))
                .await?;
            let insert = match backend {
                DbBackend::Postgres => "INSERT INTO postings (id, debit_account_id, credit_account_id, asset_id, amount, flags, state, created_at) VALUES ($1, $2, $3, $4, $5, 0, 'posted', $6)",
                _ => "INSERT INTO postings (id, debit_account_id, credit_account_id, asset_id, amount, flags, state, created_at) VALUES (?, ?, ?, ?, ?, 0, 'posted', ?)",
            };
            db.execute(Statement::from_sql_and_values(
                backend,
                insert,
                [id.into(), debit.into(), credit.into(), asset_id.into(), amount.to_string().into(), Utc::now().into()],
            ))
            .await?;
            Ok::<bool, StorageError>(true)
        }
        .await;
        match result {
            Ok(applied) => {
                db.execute_unprepared(if applied { "COMMIT" } else { "ROLLBACK" })
                    .await?;
                Ok(applied)
            }
            Err(e) => {
                let _ = db.execute_unprepared("ROLLBACK").await;
                Err(e)
            }
        }
    }
}
