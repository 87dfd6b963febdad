//! Postings recorded per settled batch, not per row (issue 14, ADR 0006).
//!
//! - `settlement_batches.journal`: the batch's postings as one binary value (the encoding is the
//!   storage crate's `posting_journal`); on PostgreSQL stored uncompressed (`STORAGE EXTERNAL`).
//! - `posting_ids`: one 16-byte id (big-endian u128) per settlement, the id of its first
//!   posting, with its batch: the engine asks it which settlements an earlier run stored. On
//!   SQLite a `WITHOUT ROWID` table, so the id is the table's only b-tree (the builder API has
//!   no such clause; this is the one statement written for one backend).
//! - `pending_postings`: two-phase postings still open, removed when posted, voided or expired.
//!
//! Rows already in `postings` stay: they are the history written before this migration and the
//! storage reads them beside the journals. Their ids are copied into `posting_ids` (ids that are
//! not 32 hex digits — the conventional-design benchmark's — cannot be asked for and are left
//! out) and the open pending ones into `pending_postings`. `down` refuses once any batch has a
//! journal (its postings are nowhere else); before that it drops what `up` made.

use sea_orm_migration::sea_orm::prelude::DateTimeUtc;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use sea_orm_migration::{prelude::*, schema::*};

/// Legacy posting rows read per page while copying them.
const PAGE_ROWS_MAX: u64 = 10_000;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A 32-hex-digit posting id as its 16 big-endian bytes.
fn id_bytes(id: &str) -> Option<Vec<u8>> {
    if id.len() != 32 {
        return None;
    }
    u128::from_str_radix(id, 16)
        .ok()
        .map(|v| v.to_be_bytes().to_vec())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SettlementBatches::Table)
                    .add_column(blob_null(SettlementBatches::Journal))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        if backend == DbBackend::Postgres {
            // Stored as written, not compressed: pglz took ~90 ms of a 16 384-posting batch's
            // commit (800 KB of fixed-width fields), more than the rest of the batch.
            db.execute_unprepared(
                "ALTER TABLE \"settlement_batches\" ALTER COLUMN \"journal\" SET STORAGE EXTERNAL",
            )
            .await?;
        }
        match backend {
            DbBackend::Sqlite => {
                db.execute_unprepared(
                    "CREATE TABLE \"posting_ids\" (\"id\" blob NOT NULL PRIMARY KEY, \
                     \"batch_id\" bigint NULL) WITHOUT ROWID",
                )
                .await?;
            }
            _ => {
                manager
                    .create_table(
                        Table::create()
                            .table(PostingIds::Table)
                            .col(blob(PostingIds::Id).primary_key())
                            .col(big_integer_null(PostingIds::BatchId))
                            .to_owned(),
                    )
                    .await?;
            }
        }
        manager
            .create_table(
                Table::create()
                    .table(PendingPostings::Table)
                    .col(blob(PendingPostings::Id).primary_key())
                    .col(big_integer_null(PendingPostings::BatchId))
                    .col(big_integer(PendingPostings::DebitAccountId))
                    .col(big_integer(PendingPostings::CreditAccountId))
                    .col(text(PendingPostings::Amount))
                    .col(big_integer(PendingPostings::TimeoutS))
                    .to_owned(),
            )
            .await?;

        // The history so far: every posting id into `posting_ids`, open pending ones into
        // `pending_postings`, a page at a time in id order.
        let p = |n: usize| match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        let mut after = String::new();
        loop {
            let rows = db
                .query_all(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "SELECT id, batch_id, debit_account_id, credit_account_id, asset_id, \
                         amount, state, pending_id, timeout_at FROM postings WHERE id > {} \
                         ORDER BY id LIMIT {PAGE_ROWS_MAX}",
                        p(1)
                    ),
                    [after.clone().into()],
                ))
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("", "id")?;
            for row in &rows {
                let id: String = row.try_get("", "id")?;
                let batch_id: Option<i64> = row.try_get("", "batch_id")?;
                let state: String = row.try_get("", "state")?;
                let pending_id: Option<String> = row.try_get("", "pending_id")?;
                let open = state == "pending" && pending_id.is_none();
                let Some(bytes) = id_bytes(&id) else {
                    if open {
                        // The engine could never resolve it: say so rather than drop it.
                        return Err(DbErr::Migration(format!(
                            "open pending posting `{id}` has no 32-hex-digit id"
                        )));
                    }
                    continue;
                };
                db.execute(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "INSERT INTO posting_ids (id, batch_id) VALUES ({}, {})",
                        p(1),
                        p(2)
                    ),
                    [Value::Bytes(Some(Box::new(bytes.clone()))), batch_id.into()],
                ))
                .await?;
                if !open {
                    continue;
                }
                let timeout_at: Option<DateTimeUtc> = row.try_get("", "timeout_at")?;
                let timeout_s = timeout_at.map_or(i64::MAX, |t| t.timestamp());
                db.execute(Statement::from_sql_and_values(
                    backend,
                    format!(
                        "INSERT INTO pending_postings (id, batch_id, debit_account_id, \
                         credit_account_id, amount, timeout_s) VALUES ({}, {}, {}, {}, {}, {})",
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6)
                    ),
                    [
                        Value::Bytes(Some(Box::new(bytes))),
                        batch_id.into(),
                        row.try_get::<i64>("", "debit_account_id")?.into(),
                        row.try_get::<i64>("", "credit_account_id")?.into(),
                        row.try_get::<String>("", "amount")?.into(),
                        timeout_s.into(),
                    ],
                ))
                .await?;
            }
            if (rows.len() as u64) < PAGE_ROWS_MAX {
                break;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Journals are the only record of the batches settled since this migration.
        let journals: i64 = manager
            .get_connection()
            .query_one(Statement::from_string(
                manager.get_database_backend(),
                "SELECT COUNT(*) AS n FROM settlement_batches WHERE journal IS NOT NULL",
            ))
            .await?
            .map(|r| r.try_get("", "n"))
            .transpose()?
            .unwrap_or(0);
        if journals > 0 {
            return Err(DbErr::Migration(format!(
                "{journals} settled batches keep their postings only in their journals; rolling \
                 back would lose them"
            )));
        }
        manager
            .drop_table(Table::drop().table(PendingPostings::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PostingIds::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SettlementBatches::Table)
                    .drop_column(SettlementBatches::Journal)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SettlementBatches {
    Table,
    Journal,
}

#[derive(DeriveIden)]
enum PostingIds {
    Table,
    Id,
    BatchId,
}

#[derive(DeriveIden)]
enum PendingPostings {
    Table,
    Id,
    BatchId,
    DebitAccountId,
    CreditAccountId,
    Amount,
    TimeoutS,
}
