//! The settlement engine's hot statements on PostgreSQL: the batch commit through `COPY`, and
//! the posting-id look-up with one array parameter.
//!
//! Multi-row `INSERT`s and `UPDATE … FROM (VALUES …)` spend most of their time parsing and
//! binding tens of thousands of parameters; `COPY … FROM STDIN` streams rows in PostgreSQL's text
//! format with no per-row parsing of SQL. A batch's postings are one journal value and its
//! settlements' ids one array; new balances are copied into a session-local staging table and
//! applied with one `UPDATE … FROM`.
//! Everything runs in one transaction, like the portable path in `ledger_store`.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sqlx::{self, postgres::PgConnection};
use sea_orm::{DbErr, RuntimeErr};
use serde_json::Value as Json;

use crate::ledger_store::{
    id_of, missing_accounts, unknown_pending, BalanceUpdate, BatchMoves, BatchReferences,
    CommittedBatch, SettlementRecord,
};
use crate::posting_journal::JournalEntry;
use crate::transfer_store::{history_rows, move_groups, HistoryRow, TransferMove};
use crate::StorageError;

/// Bytes per `COPY` data message; PostgreSQL takes any size, this bounds the buffer.
const COPY_CHUNK: usize = 1 << 20;

pub(crate) fn db_err(e: sqlx::Error) -> StorageError {
    StorageError::Db(DbErr::Exec(RuntimeErr::SqlxError(e)))
}

/// Appends `s` as a `COPY` text-format field (backslash, tab, newline and carriage return
/// escaped).
fn push_field(buf: &mut String, s: &str) {
    if !s.contains(['\\', '\t', '\n', '\r']) {
        buf.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

fn push_opt(buf: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_field(buf, s),
        None => buf.push_str("\\N"),
    }
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Streams `rows` (complete text-format lines) through `statement` (`COPY … FROM STDIN`).
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    rows: &str,
) -> Result<u64, StorageError> {
    let mut copy = conn.copy_in_raw(statement).await.map_err(db_err)?;
    let mut rest = rows.as_bytes();
    while !rest.is_empty() {
        let mut end = rest.len().min(COPY_CHUNK);
        // Whole lines per message keeps each message valid on its own.
        while end < rest.len() && rest[end - 1] != b'\n' {
            end += 1;
        }
        if let Err(e) = copy.send(&rest[..end]).await {
            let _ = copy.abort("meridian: send failed").await;
            return Err(db_err(e));
        }
        rest = &rest[end..];
    }
    copy.finish().await.map_err(db_err)
}

fn balances_copy_data(rows: &[BalanceUpdate]) -> String {
    let mut buf = String::with_capacity(rows.len() * 100);
    for r in rows {
        buf.push_str(&r.id.to_string());
        for b in &r.balances {
            buf.push('\t');
            buf.push_str(&b.to_string());
        }
        buf.push('\n');
    }
    buf
}

fn transitions_copy_data(rows: &[HistoryRow]) -> String {
    let mut buf = String::with_capacity(rows.len() * 200);
    for r in rows {
        push_field(&mut buf, &r.transfer_id);
        buf.push('\t');
        push_opt(&mut buf, r.from_state);
        buf.push('\t');
        push_field(&mut buf, r.to_state);
        buf.push('\t');
        push_opt(&mut buf, r.reason.as_deref());
        buf.push('\t');
        push_field(&mut buf, &r.actor);
        buf.push('\t');
        buf.push_str(&timestamp(&r.at));
        buf.push('\t');
        push_opt(&mut buf, r.via.as_deref());
        buf.push('\n');
    }
    buf
}

/// Moves transfers on inside `tx`, each only from the state it was read in: one guarded
/// `UPDATE … WHERE id = ANY($n)` per group of moves that end alike, then their transitions
/// through `COPY`. Returns the ids that moved.
async fn advance_moves(
    tx: &mut PgConnection,
    moves: &[TransferMove],
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut moved = std::collections::HashSet::with_capacity(moves.len());
    for ((from, to, at, batch), ids) in &move_groups(moves) {
        let rows: Vec<String> = match batch {
            Some(batch) => sqlx::query_scalar(
                "UPDATE transfers SET state = $1, updated_at = $2, batch_id = $3 \
                 WHERE id = ANY($4) AND state = $5 RETURNING id",
            )
            .bind(*to)
            .bind(*at)
            .bind(*batch)
            .bind(ids)
            .bind(*from)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?,
            None => sqlx::query_scalar(
                "UPDATE transfers SET state = $1, updated_at = $2 \
                 WHERE id = ANY($3) AND state = $4 RETURNING id",
            )
            .bind(*to)
            .bind(*at)
            .bind(ids)
            .bind(*from)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?,
        };
        moved.extend(rows);
    }
    let transitions: Vec<HistoryRow> = moves
        .iter()
        .filter(|m| moved.contains(&m.id))
        .flat_map(|m| history_rows(&m.id, &m.path))
        .collect();
    if !transitions.is_empty() {
        copy_in(
            tx,
            "COPY transfer_transitions (transfer_id, from_state, to_state, reason, actor, at, via) \
             FROM STDIN",
            &transitions_copy_data(&transitions),
        )
        .await?;
    }
    Ok(moved)
}

/// Writes one settled batch on PostgreSQL in one transaction, with the transfer moves it makes.
// The batch's parts as the portable path takes them, plus the lease that fences the commit.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_settlement_batch(
    pool: &sqlx::PgPool,
    record: SettlementRecord<'_>,
    journal: &[u8],
    refs: &BatchReferences,
    summary: Json,
    moves_of: BatchMoves<'_>,
    fence: Option<&crate::Lease>,
) -> Result<CommittedBatch, StorageError> {
    let changed_accounts = record.checkpoint.unwrap_or_default();
    let now = timestamp(&Utc::now());
    let mut tx = pool.begin().await.map_err(db_err)?;
    if let Some(lease) = fence {
        crate::lease_store::check_fence_pg(&mut tx, lease).await?;
    }
    let t_batch = std::time::Instant::now();
    let batch_id: i64 = sqlx::query_scalar(
        "INSERT INTO settlement_batches (state, size, started_at, committed_at, summary, journal) \
         VALUES ('committed', $1, $2::timestamptz, $2::timestamptz, $3::jsonb, $4) RETURNING id",
    )
    .bind(i32::try_from(record.size).unwrap_or(i32::MAX))
    .bind(&now)
    .bind(summary.to_string())
    .bind(journal)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;

    let batch_ms = t_batch.elapsed().as_millis() as u64;
    let t_postings = std::time::Instant::now();
    if !record.settlements.is_empty() {
        let written = sqlx::query(
            "INSERT INTO posting_ids (id, batch_id) SELECT unnest($1::bytea[]), $2 \
             ON CONFLICT DO NOTHING",
        )
        .bind(id_bytes(record.settlements.iter().copied()))
        .bind(batch_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        crate::ledger_store::settled_before(record.settlements.len(), written)?;
    }
    // Two-phase postings are rare (the transfer pipeline makes none): a row each.
    for p in record.entries.iter().filter_map(JournalEntry::opens) {
        sqlx::query(
            "INSERT INTO pending_postings (id, batch_id, debit_account_id, \
             credit_account_id, amount, timeout_s) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(p.id.to_be_bytes().to_vec())
        .bind(batch_id)
        .bind(p.debit_account_id)
        .bind(p.credit_account_id)
        .bind(p.amount.to_string())
        .bind(p.timeout_s)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let resolved: Vec<u128> = record
        .entries
        .iter()
        .filter_map(JournalEntry::resolves)
        .collect();
    if !resolved.is_empty() {
        let removed = sqlx::query("DELETE FROM pending_postings WHERE id = ANY($1::bytea[])")
            .bind(id_bytes(resolved.iter().copied()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if removed != resolved.len() as u64 {
            return Err(unknown_pending(resolved.len() as u64, removed));
        }
    }
    let postings_ms = t_postings.elapsed().as_millis() as u64;

    let t_accounts = std::time::Instant::now();
    if !changed_accounts.is_empty() {
        // Session-local and emptied at every commit, so concurrent writers never see each
        // other's rows and a failed batch leaves nothing behind.
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS ledger_balance_stage \
             (id bigint, dp text, cp text, dpe text, cpe text) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        copy_in(
            &mut tx,
            "COPY ledger_balance_stage (id, dp, cp, dpe, cpe) FROM STDIN",
            &balances_copy_data(changed_accounts),
        )
        .await?;
        let matched = sqlx::query(
            "UPDATE ledger_accounts a SET debits_posted = s.dp, credits_posted = s.cp, \
             debits_pending = s.dpe, credits_pending = s.cpe \
             FROM ledger_balance_stage s WHERE a.id = s.id",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if matched != changed_accounts.len() as u64 {
            // Dropping the transaction rolls the whole batch back.
            return Err(missing_accounts(changed_accounts.len(), matched));
        }
    }
    if record.checkpoint.is_some() {
        sqlx::query(
            "INSERT INTO ledger_checkpoints (batch_id, accounts, at) \
             VALUES ($1, $2, $3::timestamptz)",
        )
        .bind(batch_id)
        .bind(changed_accounts.len() as i64)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    if !refs.extra_accounts.is_empty() {
        let found: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger_accounts WHERE id = ANY($1)")
                .bind(&refs.extra_accounts)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if found != refs.extra_accounts.len() as i64 {
            return Err(missing_accounts(
                refs.extra_accounts.len(),
                found.max(0) as u64,
            ));
        }
    }
    let accounts_ms = t_accounts.elapsed().as_millis() as u64;
    let t_moves = std::time::Instant::now();
    let moves = moves_of(batch_id);
    let moved = advance_moves(&mut tx, &moves).await?;
    let moves_ms = t_moves.elapsed().as_millis() as u64;
    let t_commit = std::time::Instant::now();
    tx.commit().await.map_err(db_err)?;
    tracing::debug!(
        postings = record.entries.len(),
        accounts = changed_accounts.len(),
        batch_ms,
        transfers = moved.len(),
        postings_ms,
        accounts_ms,
        moves_ms,
        commit_ms = t_commit.elapsed().as_millis() as u64,
        "settlement batch written (COPY)"
    );
    Ok(CommittedBatch {
        batch_id,
        moves,
        moved,
    })
}

/// Posting ids as PostgreSQL's `bytea[]` takes them: 16 big-endian bytes each.
fn id_bytes(ids: impl Iterator<Item = u128>) -> Vec<Vec<u8>> {
    ids.map(|id| id.to_be_bytes().to_vec()).collect()
}

/// Which of `ids` an earlier commit stored, in one query.
pub(crate) async fn existing_posting_ids(
    pool: &sqlx::PgPool,
    ids: &[u128],
) -> Result<Vec<u128>, StorageError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT id FROM posting_ids WHERE id = ANY($1::bytea[])")
            .bind(id_bytes(ids.iter().copied()))
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    found.iter().map(|b| id_of("posting_ids", b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_the_text_format_reserves() {
        let mut buf = String::new();
        push_field(&mut buf, "a\tb\\c\nd\re");
        assert_eq!(buf, "a\\tb\\\\c\\nd\\re");
        let mut buf = String::new();
        push_opt(&mut buf, None);
        assert_eq!(buf, "\\N");
    }
}
