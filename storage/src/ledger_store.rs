//! Durable ledger: accounts, postings and settlement batches.
//!
//! A settled batch is written in **one** transaction — the batch row, every posting (multi-row
//! inserts) and every changed account's balances (one multi-row upsert) — so a crash leaves the
//! whole batch or nothing. [`Store::conventional_transfer`] is the design operators run today
//! (one transaction per transfer with row locks); it exists as the benchmark baseline.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value as Json;

use crate::entities::{ledger_accounts, postings, settlement_batches};
use crate::row_insert::RowInsert;
use crate::transfer_store::{advance_many_in, TransferMove};
use crate::{StorageError, Store};

/// Rows per multi-row statement; keeps both backends under their bound-parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// The columns of a `postings` row, in the order the settlement commit gives its values.
const POSTING_ROWS: RowInsert = RowInsert {
    table: "postings",
    columns: &[
        "id",
        "batch_id",
        "debit_account_id",
        "credit_account_id",
        "asset_id",
        "amount",
        "pending_id",
        "flags",
        "state",
        "timeout_at",
        "created_at",
    ],
};

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

/// A posting as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRow {
    /// Client-chosen id (decimal or hex text).
    pub id: String,
    /// Debited account row id.
    pub debit_account_id: i64,
    /// Credited account row id.
    pub credit_account_id: i64,
    /// CAIP-19 asset.
    pub asset_id: String,
    /// Amount in base units.
    pub amount: u128,
    /// For post/void: the pending posting.
    pub pending_id: Option<String>,
    /// pending, posted, voided, expired.
    pub state: &'static str,
    /// Expiry of a pending posting.
    pub timeout_at: Option<DateTime<Utc>>,
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
    posting_rows: &[PostingRow],
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
    let mut extra: Vec<i64> = posting_rows
        .iter()
        .flat_map(|p| [p.debit_account_id, p.credit_account_id])
        .filter(|id| changed.binary_search(id).is_err())
        .collect();
    extra.sort_unstable();
    extra.dedup();
    Ok(BatchReferences {
        extra_accounts: extra,
    })
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

    /// Writes one settled batch atomically: the batch row, its accepted postings and the new
    /// balances of every account it changed. Returns the batch id. PostgreSQL takes the rows
    /// through `COPY` ([`crate::pg_copy`]); SQLite through multi-row statements.
    pub async fn commit_settlement_batch(
        &self,
        size: usize,
        posting_rows: &[PostingRow],
        changed_accounts: &[BalanceUpdate],
        resolved_pending: &[(String, &'static str)],
        summary: Json,
    ) -> Result<i64, StorageError> {
        let committed = self
            .commit_settlement_batch_moving(
                size,
                posting_rows,
                changed_accounts,
                resolved_pending,
                summary,
                &|_| Vec::new(),
            )
            .await?;
        Ok(committed.batch_id)
    }

    /// [`Store::commit_settlement_batch`] with the transfer moves the batch makes (given its id),
    /// in the same transaction.
    pub async fn commit_settlement_batch_moving(
        &self,
        size: usize,
        posting_rows: &[PostingRow],
        changed_accounts: &[BalanceUpdate],
        resolved_pending: &[(String, &'static str)],
        summary: Json,
        moves_of: BatchMoves<'_>,
    ) -> Result<CommittedBatch, StorageError> {
        if self.backend() == crate::Backend::Postgres {
            let committed = crate::pg_copy::commit_settlement_batch(
                self.connection().get_postgres_connection_pool(),
                size,
                posting_rows,
                changed_accounts,
                resolved_pending,
                summary,
                moves_of,
                self.fence(),
            )
            .await?;
            self.announce_moves(&committed.moves, &committed.moved);
            return Ok(committed);
        }
        let refs = batch_references(posting_rows, changed_accounts)?;
        let (_gate, txn) = self.begin_write().await?;
        let now = Utc::now();
        let batch = settlement_batches::Entity::insert(settlement_batches::ActiveModel {
            state: Set("committed".into()),
            size: Set(i32::try_from(size).unwrap_or(i32::MAX)),
            started_at: Set(now),
            committed_at: Set(Some(now)),
            summary: Set(Some(summary)),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let batch_id = batch.last_insert_id;
        let t_postings = std::time::Instant::now();
        let mut values: Vec<sea_orm::Value> =
            Vec::with_capacity(posting_rows.len() * POSTING_ROWS.columns.len());
        for p in posting_rows {
            values.push(p.id.clone().into());
            values.push(Some(batch_id).into());
            values.push(p.debit_account_id.into());
            values.push(p.credit_account_id.into());
            values.push(p.asset_id.clone().into());
            values.push(p.amount.to_string().into());
            values.push(p.pending_id.clone().into());
            values.push(0i32.into());
            values.push(p.state.to_owned().into());
            values.push(p.timeout_at.into());
            values.push(now.into());
        }
        if !values.is_empty() {
            POSTING_ROWS.exec(&txn, values).await?;
        }
        let postings_ms = t_postings.elapsed().as_millis() as u64;
        let t_accounts = std::time::Instant::now();
        for state in ["posted", "voided", "expired"] {
            let ids: Vec<String> = resolved_pending
                .iter()
                .filter(|(_, s)| *s == state)
                .map(|(id, _)| id.clone())
                .collect();
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                postings::Entity::update_many()
                    .col_expr(
                        postings::Column::State,
                        sea_orm::sea_query::Expr::value(state),
                    )
                    .filter(postings::Column::Id.is_in(chunk.iter().cloned()))
                    .exec(&txn)
                    .await?;
            }
        }
        // One multi-row UPDATE … FROM (VALUES …) per chunk: far cheaper than per-row updates or
        // INSERT … ON CONFLICT upserts (which probe every unique index first).
        let backend = txn.get_database_backend();
        let mut matched = 0u64;
        for chunk in changed_accounts.chunks(ROWS_PER_STATEMENT) {
            // PostgreSQL names the VALUES columns through the alias; SQLite calls them column1….
            let mut sql = String::from(match backend {
                DbBackend::Postgres => {
                    "UPDATE ledger_accounts SET debits_posted = v.dp, credits_posted = v.cp, \
                     debits_pending = v.dpe, credits_pending = v.cpe FROM ("
                }
                _ => {
                    "UPDATE ledger_accounts SET debits_posted = v.column2, credits_posted = v.column3, \
                     debits_pending = v.column4, credits_pending = v.column5 FROM ("
                }
            });
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 5);
            for (k, r) in chunk.iter().enumerate() {
                let n = k * 5;
                match backend {
                    DbBackend::Postgres => {
                        if k == 0 {
                            sql.push_str("VALUES ");
                        } else {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!(
                            "(${}::bigint, ${}, ${}, ${}, ${})",
                            n + 1,
                            n + 2,
                            n + 3,
                            n + 4,
                            n + 5
                        ));
                    }
                    _ => sql.push_str(if k == 0 {
                        "VALUES (?, ?, ?, ?, ?)"
                    } else {
                        ", (?, ?, ?, ?, ?)"
                    }),
                }
                values.push(r.id.into());
                values.extend(
                    r.balances
                        .iter()
                        .map(|b| sea_orm::Value::from(b.to_string())),
                );
            }
            sql.push_str(match backend {
                DbBackend::Postgres => {
                    ") AS v(id, dp, cp, dpe, cpe) WHERE ledger_accounts.id = v.id"
                }
                _ => ") AS v WHERE ledger_accounts.id = v.column1",
            });
            matched += txn
                .execute(Statement::from_sql_and_values(backend, &sql, values))
                .await?
                .rows_affected();
        }
        if matched != changed_accounts.len() as u64 {
            // Dropping the transaction rolls the whole batch back.
            return Err(missing_accounts(changed_accounts.len(), matched));
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
            postings = posting_rows.len(),
            accounts = changed_accounts.len(),
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

    /// Which of `ids` are stored postings already (idempotency across restarts).
    pub async fn existing_posting_ids(&self, ids: &[String]) -> Result<Vec<String>, StorageError> {
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
            let rows: Vec<String> = postings::Entity::find()
                .select_only()
                .column(postings::Column::Id)
                .filter(postings::Column::Id.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(self.connection())
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Pending postings still open (state `pending`), to restore two-phase state at start-up.
    pub async fn open_pending_postings(&self) -> Result<Vec<PostingRow>, StorageError> {
        let rows = postings::Entity::find()
            .filter(postings::Column::State.eq("pending"))
            .all(self.connection())
            .await?;
        rows.into_iter()
            .map(|p| {
                Ok(PostingRow {
                    amount: parse_amount("postings", &p.amount)?,
                    id: p.id,
                    debit_account_id: p.debit_account_id,
                    credit_account_id: p.credit_account_id,
                    asset_id: p.asset_id,
                    pending_id: p.pending_id,
                    state: "pending",
                    timeout_at: p.timeout_at,
                })
            })
            .collect()
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
