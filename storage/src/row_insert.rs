//! Multi-row INSERTs written as SQL text with values bound in place. The hot tables' inserts
//! (transfers, their history, postings) skip sea-query's statement building, which cost the one
//! SQLite writer about as much time as SQLite's own work on those rows (issue 14). Values are
//! the same `sea_orm::Value`s the entities bind, so stored text is byte for byte what the ORM
//! writes.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::StorageError;

/// An INSERT of whole rows into one table, by column order.
pub(crate) struct RowInsert {
    /// The table.
    pub(crate) table: &'static str,
    /// Its columns, in the order each row's values are given.
    pub(crate) columns: &'static [&'static str],
}

impl RowInsert {
    /// The largest number of rows one statement may carry: SQLite binds at most 32 766
    /// parameters, PostgreSQL 65 535.
    pub(crate) fn rows_per_statement_max(&self) -> usize {
        (32_766 / self.columns.len()).max(1)
    }

    /// The statement inserting `rows` rows of `values` (row after row), followed by `tail`
    /// (e.g. `ON CONFLICT DO NOTHING`).
    pub(crate) fn statement(
        &self,
        backend: DbBackend,
        values: Vec<Value>,
        tail: &str,
    ) -> Result<Statement, StorageError> {
        let width = self.columns.len();
        if values.is_empty() || values.len() % width != 0 {
            return Err(StorageError::Integrity {
                table: self.table,
                message: format!("{} values for rows of {width} columns", values.len()),
            });
        }
        let rows = values.len() / width;
        let mut sql = String::with_capacity(64 + rows * width * 5);
        sql.push_str("INSERT INTO ");
        sql.push_str(self.table);
        sql.push_str(" (");
        sql.push_str(&self.columns.join(", "));
        sql.push_str(") VALUES ");
        let mut n = 0usize;
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                match backend {
                    DbBackend::Postgres => {
                        sql.push('$');
                        sql.push_str(&n.to_string());
                    }
                    _ => sql.push('?'),
                }
            }
            sql.push(')');
        }
        if !tail.is_empty() {
            sql.push(' ');
            sql.push_str(tail);
        }
        Ok(Statement::from_sql_and_values(backend, sql, values))
    }

    /// Inserts rows of `values` inside `conn`, as many statements as the parameter bound needs;
    /// returns the rows written.
    pub(crate) async fn exec<C: ConnectionTrait>(
        &self,
        conn: &C,
        values: Vec<Value>,
    ) -> Result<u64, StorageError> {
        self.exec_with_tail(conn, values, "").await
    }

    /// [`RowInsert::exec`] with `tail` after each statement (e.g. `ON CONFLICT DO NOTHING`, then
    /// the rows written leave out the rows skipped).
    pub(crate) async fn exec_with_tail<C: ConnectionTrait>(
        &self,
        conn: &C,
        values: Vec<Value>,
        tail: &str,
    ) -> Result<u64, StorageError> {
        let backend = conn.get_database_backend();
        let per_statement = self.rows_per_statement_max() * self.columns.len();
        let mut written = 0;
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            let chunk: Vec<Value> = values.by_ref().take(per_statement).collect();
            written += conn
                .execute(self.statement(backend, chunk, tail)?)
                .await?
                .rows_affected();
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: RowInsert = RowInsert {
        table: "pairs",
        columns: &["a", "b"],
    };

    #[test]
    fn placeholders_follow_the_backend() {
        let values = vec![1i64.into(), "x".into(), 2i64.into(), "y".into()];
        let s = PAIRS
            .statement(DbBackend::Sqlite, values.clone(), "ON CONFLICT DO NOTHING")
            .unwrap();
        assert_eq!(
            s.sql,
            "INSERT INTO pairs (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        let s = PAIRS.statement(DbBackend::Postgres, values, "").unwrap();
        assert_eq!(s.sql, "INSERT INTO pairs (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(s.values.map(|v| v.0.len()), Some(4));
    }

    #[test]
    fn a_partial_row_is_refused() {
        assert!(PAIRS
            .statement(DbBackend::Sqlite, vec![1i64.into()], "")
            .is_err());
        assert!(PAIRS.statement(DbBackend::Sqlite, Vec::new(), "").is_err());
    }
}
