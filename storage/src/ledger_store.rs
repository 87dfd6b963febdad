//! Durable ledger: accounts and settled batches with their postings.
//!
//! A settled batch is written in **one** transaction — the batch row with its postings as one
//! journal ([`crate::posting_journal`]), one narrow `posting_ids` row per settlement, the open
//! pending postings it made or resolved, and every changed account's balances (one multi-row
//! update) — so a crash leaves the whole batch or nothing. [`Store::conventional_transfer`] is the design operators run today
//! (one transaction per transfer with row locks); it exists as the benchmark baseline.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value as Json;

use crate::entities::{ledger_accounts, postings, settlement_batches};
use crate::posting_journal::{self, JournalEntry, LedgerReplay};
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
    /// The new balances of every account the entries changed.
    pub changed_accounts: &'a [BalanceUpdate],
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

fn parse_amount(table: &'static str, s: &str) -> Result<u128, StorageError> {
    s.parse().map_err(|_| StorageError::Corrupt {
        table,
        message: format!("amount `{s}` is not a u128"),
    })
}

/// What the batch commit verifies instead of per-row foreign keys (see migration 7): the changed
/// accounts are distinct, and the accounts named by postings that are not among them (normally
/// none: an accepted posting changes both its accounts). The caller then checks that the balance
/// update matched every changed account and that the extra accounts exist.
pub(crate) struct BatchReferences {
    /// Accounts named by postings but not in the changed set.
    pub(crate) extra_accounts: Vec<i64>,
}

pub(crate) fn batch_references(
    entries: &[JournalEntry],
    changed_accounts: &[BalanceUpdate],
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
        .filter(|id| changed.binary_search(id).is_err())
        .collect();
    extra.sort_unstable();
    extra.dedup();
    Ok(BatchReferences {
        extra_accounts: extra,
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
        let all = self.ledger_accounts().await?;
        // Newly created rows are the last `rows.len()` ids.
        Ok(all[all.len().saturating_sub(rows.len())..].to_vec())
    }

    /// Every ledger account, by id.
    pub async fn ledger_accounts(&self) -> Result<Vec<LedgerAccountRow>, StorageError> {
        let rows = ledger_accounts::Entity::find()
            .order_by_asc(ledger_accounts::Column::Id)
            .all(self.connection())
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
        let refs = batch_references(record.entries, record.changed_accounts)?;
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
            POSTING_ID_ROWS.exec(&txn, values).await?;
        }
        let mut pending: Vec<sea_orm::Value> = Vec::new();
        let mut resolved: Vec<sea_orm::Value> = Vec::new();
        for e in record.entries {
            match *e {
                JournalEntry::Transfer {
                    id,
                    debit_account_id,
                    credit_account_id,
                    amount,
                    timeout_s: Some(timeout_s),
                } => pending.extend([
                    id_value(id),
                    Some(batch_id).into(),
                    debit_account_id.into(),
                    credit_account_id.into(),
                    amount.to_string().into(),
                    timeout_s.into(),
                ]),
                JournalEntry::Transfer { .. } => {}
                _ => resolved.extend(e.resolves().map(id_value)),
            }
        }
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
        for chunk in record.changed_accounts.chunks(ROWS_PER_STATEMENT) {
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
        if matched != record.changed_accounts.len() as u64 {
            // Dropping the transaction rolls the whole batch back.
            return Err(missing_accounts(record.changed_accounts.len(), matched));
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
        tracing::debug!(
            postings = record.entries.len(),
            accounts = record.changed_accounts.len(),
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
        let db = self.connection();
        let rows = db
            .query_all(Statement::from_string(
                db.get_database_backend(),
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
    /// then every settled batch's journal in commit order, a page of batches at a time. The
    /// balances it gives must equal `ledger_accounts` (audits and the crash tests check it).
    pub async fn replay_ledger(&self) -> Result<LedgerReplay, StorageError> {
        let mut replay = LedgerReplay::default();
        for e in self.legacy_postings().await? {
            replay.apply(&e)?;
        }
        let mut after = 0i64;
        loop {
            let page = settlement_batches::Entity::find()
                .filter(settlement_batches::Column::Id.gt(after))
                .filter(settlement_batches::Column::Journal.is_not_null())
                .order_by_asc(settlement_batches::Column::Id)
                .limit(REPLAY_BATCHES_PER_PAGE_MAX)
                .all(self.connection())
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for b in &page {
                let bytes = b.journal.as_deref().unwrap_or_default();
                for e in posting_journal::decode(b.id, bytes)? {
                    replay.apply(&e)?;
                }
            }
        }
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
        let mut transfers = Vec::new();
        let mut resolutions = Vec::new();
        let mut expiries = Vec::new();
        let mut batch = None;
        for r in rows {
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
                        timeout_s: r.timeout_at.map(|t| t.timestamp()),
                    });
                    if r.state == "expired" {
                        expiries.push(JournalEntry::Expire { pending_id: id });
                    }
                }
                Some(pending) => {
                    let pending_id = id_of_text(pending)?;
                    resolutions.push(if r.state == "voided" {
                        JournalEntry::Void { id, pending_id }
                    } else {
                        JournalEntry::Post { id, pending_id }
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
