//! Leases with fencing tokens and node heartbeats (several nodes, one relay; issue 15).
//!
//! Every time here is the database's clock in milliseconds since the Unix epoch, so nodes whose
//! clocks disagree still agree on who holds what. The SQL is the whole protocol:
//!
//! - **take** — an upsert that changes the stored row only when the *stored* lease has expired
//!   or was released (the condition reads `leases.*`, the row in the table, never `excluded.*`,
//!   the proposed row: comparing the proposal with itself would let every node believe it
//!   leads). Taking raises the epoch.
//! - **renew** — only by the holder of the current epoch, and only before expiry: a holder that
//!   let its lease lapse must take it again (new epoch) like anyone else.
//! - **release** — the holder clears itself; the next taker does not wait for expiry.
//! - **fence** — a write the lease owns first reads the lease row for its own holder and epoch
//!   inside its transaction (`FOR KEY SHARE` on PostgreSQL: a taker, which locks the row
//!   `FOR UPDATE` first, waits until that transaction ends, so the new epoch starts after the
//!   old holder's last commit; the holder's renewals do not wait). A store made with
//!   [`Store::fenced`] does this in every write transaction it begins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};

use meridian_types::cluster::{LeaseName, NodeId};

use crate::{Backend, StorageError, Store};

/// A lease as its holder has it: the token its fenced writes carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is leased.
    pub name: LeaseName,
    /// Who holds it.
    pub holder: NodeId,
    /// Rises each time the lease changes hands.
    pub epoch: u64,
    /// Until when (database clock) the lease is the holder's unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Set when the lease was taken over from another holder: the hand-over ends with the new
    /// holder's first fenced write.
    pub handed_over: Option<HandOver>,
}

/// A hand-over in progress: from the end of the former holder's hold (its expiry or release) to
/// the new holder's first fenced write transaction — the moment its lease check passes, which
/// records the time (`meridian_cluster_handover_seconds` and a `hand-over done` log line with
/// `handover_ms`). A transaction that then writes nothing or rolls back still counts, and a
/// stage with no work records its idle time too.
#[derive(Debug, Clone)]
pub struct HandOver {
    /// From the end of the former hold to the take (database clock).
    to_take: Duration,
    /// When this process took the lease.
    taken: Instant,
    /// Whether a fenced write has recorded the hand-over (shared by every copy of the lease).
    done: Arc<AtomicBool>,
}

impl HandOver {
    /// A hand-over whose take came `to_take` after the former hold ended, at `taken`.
    pub fn new(to_take: Duration, taken: Instant) -> Self {
        Self {
            to_take,
            taken,
            done: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The whole hand-over time if `at` is its first fenced write (`None` on later ones).
    pub fn first_write(&self, at: Instant) -> Option<Duration> {
        if self.done.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(self.to_take + at.saturating_duration_since(self.taken))
    }
}

impl PartialEq for HandOver {
    fn eq(&self, other: &Self) -> bool {
        self.to_take == other.to_take && self.taken == other.taken
    }
}

impl Eq for HandOver {}

/// Records the hand-over of `lease` if this fenced write is the first since it was taken over.
fn note_fenced_write(lease: &Lease) {
    let Some(done) = lease
        .handed_over
        .as_ref()
        .and_then(|h| h.first_write(Instant::now()))
    else {
        return;
    };
    let handover_ms = u64::try_from(done.as_millis()).unwrap_or(u64::MAX);
    metrics::histogram!("meridian_cluster_handover_seconds", "lease" => lease.name.to_string())
        .record(done.as_secs_f64());
    tracing::info!(lease = %lease.name, epoch = lease.epoch, handover_ms, "hand-over done: first fenced write");
}

/// A stored lease, whoever holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// What is leased.
    pub name: LeaseName,
    /// Its holder; `None` once released.
    pub holder: Option<NodeId>,
    /// Rises each time the lease changes hands.
    pub epoch: u64,
    /// When the current holder took it (database clock).
    pub acquired_at: DateTime<Utc>,
    /// When it expires (database clock).
    pub expires_at: DateTime<Utc>,
}

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// Taken: the caller holds it now, with a new epoch.
    Taken(Lease),
    /// Another holder's, not yet expired (or the caller's own of an earlier take).
    Held(LeaseRow),
}

/// A node start, as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node start's id.
    pub id: NodeId,
    /// Host name it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it started (database clock).
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat (database clock).
    pub heartbeat_at: DateTime<Utc>,
    /// When it stopped gracefully; `None` while running (or after a crash).
    pub stopped_at: Option<DateTime<Utc>>,
    /// The leases it can hold (names this version does not know are left out: they are leases
    /// of a newer version this one cannot hold anyway).
    pub leases: Vec<LeaseName>,
}

/// The database clock in milliseconds since the Unix epoch, as SQL.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

/// `sql` with `NOW` replaced by the database clock and `$n` placeholders as the backend wants.
fn statement(backend: Backend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = sql.replace("NOW", now_ms(backend));
    match backend {
        Backend::Postgres => Statement::from_sql_and_values(DbBackend::Postgres, sql, values),
        // SQLite reads `?NNN` as the NNN-th value, as PostgreSQL reads `$NNN`.
        Backend::Sqlite => {
            Statement::from_sql_and_values(DbBackend::Sqlite, sql.replace('$', "?"), values)
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn time_of(table: &'static str, ms: i64) -> Result<DateTime<Utc>, StorageError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StorageError::Corrupt {
        table,
        message: format!("time {ms} ms out of range"),
    })
}

fn epoch_of(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt {
        table: "leases",
        message: format!("negative epoch {v}"),
    })
}

fn node_of(table: &'static str, id: String) -> Result<NodeId, StorageError> {
    NodeId::new(id).map_err(|e| StorageError::Corrupt {
        table,
        message: e.to_string(),
    })
}

fn lease_row(r: &QueryResult) -> Result<LeaseRow, StorageError> {
    let name: String = r.try_get("", "name")?;
    let holder: Option<String> = r.try_get("", "holder")?;
    Ok(LeaseRow {
        name: name
            .parse()
            .map_err(
                |e: meridian_types::cluster::ClusterError| StorageError::Corrupt {
                    table: "leases",
                    message: e.to_string(),
                },
            )?,
        holder: holder.map(|h| node_of("leases", h)).transpose()?,
        epoch: epoch_of(r.try_get("", "epoch")?)?,
        acquired_at: time_of("leases", r.try_get("", "acquired_at_ms")?)?,
        expires_at: time_of("leases", r.try_get("", "expires_at_ms")?)?,
    })
}

const LEASE_COLUMNS: &str = "name, holder, epoch, acquired_at_ms, expires_at_ms";

impl Store {
    /// The database clock.
    pub async fn database_time(&self) -> Result<DateTime<Utc>, StorageError> {
        let row = self
            .connection()
            .query_one(statement(
                self.backend(),
                "SELECT NOW AS now_ms",
                Vec::new(),
            ))
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                table: "leases",
                message: "the database returned no time".into(),
            })?;
        time_of("leases", row.try_get("", "now_ms")?)
    }

    /// Takes `name` for `node` for `ttl` if nobody holds it (it expired, was released or never
    /// existed); otherwise reports who does.
    pub async fn take_lease(
        &self,
        name: &LeaseName,
        node: &NodeId,
        ttl: Duration,
    ) -> Result<LeaseClaim, StorageError> {
        let take = statement(
            self.backend(),
            &format!(
                "INSERT INTO leases ({LEASE_COLUMNS}) VALUES ($1, $2, 1, NOW, NOW + $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 epoch = leases.epoch + 1, acquired_at_ms = excluded.acquired_at_ms, \
                 expires_at_ms = excluded.expires_at_ms \
                 WHERE leases.holder IS NULL OR leases.expires_at_ms <= NOW \
                 RETURNING {LEASE_COLUMNS}"
            ),
            vec![
                name.to_string().into(),
                node.as_str().into(),
                millis(ttl).into(),
            ],
        );
        let turn = self.write_turn().await;
        let taken = match self.backend() {
            Backend::Postgres => {
                use sea_orm::TransactionTrait;
                // The row locked FOR UPDATE first: this waits for every fenced transaction of
                // the former holder still open (they hold it FOR KEY SHARE).
                let txn = turn.conn().begin().await?;
                txn.query_one(statement(
                    Backend::Postgres,
                    "SELECT epoch FROM leases WHERE name = $1 FOR UPDATE",
                    vec![name.to_string().into()],
                ))
                .await?;
                let taken = txn.query_one(take).await?;
                txn.commit().await?;
                taken
            }
            Backend::Sqlite => turn.conn().query_one(take).await?,
        };
        if let Some(row) = taken {
            let row = lease_row(&row)?;
            return Ok(LeaseClaim::Taken(Lease {
                name: row.name,
                holder: node.clone(),
                epoch: row.epoch,
                expires_at: row.expires_at,
                handed_over: None,
            }));
        }
        drop(turn);
        match self.lease(name).await? {
            Some(row) => Ok(LeaseClaim::Held(row)),
            // Only a deleted row (by hand) between the two statements gets here.
            None => Err(StorageError::Corrupt {
                table: "leases",
                message: format!("lease {name} vanished while being taken"),
            }),
        }
    }

    /// Extends `lease` by `ttl` from now if it is still the holder's current epoch and has not
    /// expired; `None` when it was lost (the holder must stop its work and take it again).
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        let turn = self.write_turn().await;
        let row = turn
            .conn()
            .query_one(statement(
                self.backend(),
                "UPDATE leases SET expires_at_ms = NOW + $4 \
                 WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at_ms > NOW \
                 RETURNING expires_at_ms",
                vec![
                    lease.name.to_string().into(),
                    lease.holder.as_str().into(),
                    epoch_value(lease.epoch),
                    millis(ttl).into(),
                ],
            ))
            .await?;
        row.map(|r| {
            Ok(Lease {
                expires_at: time_of("leases", r.try_get("", "expires_at_ms")?)?,
                ..lease.clone()
            })
        })
        .transpose()
    }

    /// Gives `lease` up at once (a graceful stop); `false` if it was no longer the holder's.
    pub async fn release_lease(&self, lease: &Lease) -> Result<bool, StorageError> {
        let turn = self.write_turn().await;
        let done = turn
            .conn()
            .execute(statement(
                self.backend(),
                "UPDATE leases SET holder = NULL, expires_at_ms = NOW \
                 WHERE name = $1 AND holder = $2 AND epoch = $3",
                vec![
                    lease.name.to_string().into(),
                    lease.holder.as_str().into(),
                    epoch_value(lease.epoch),
                ],
            ))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One stored lease.
    pub async fn lease(&self, name: &LeaseName) -> Result<Option<LeaseRow>, StorageError> {
        self.connection()
            .query_one(statement(
                self.backend(),
                &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE name = $1"),
                vec![name.to_string().into()],
            ))
            .await?
            .as_ref()
            .map(lease_row)
            .transpose()
    }

    /// Every stored lease, by name.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StorageError> {
        self.connection()
            .query_all(statement(
                self.backend(),
                &format!("SELECT {LEASE_COLUMNS} FROM leases ORDER BY name"),
                Vec::new(),
            ))
            .await?
            .iter()
            .map(lease_row)
            .collect()
    }

    /// Records that `node` (on `host`, process `pid`, able to hold `leases`) is alive now.
    pub async fn heartbeat(
        &self,
        node: &NodeId,
        host: &str,
        pid: u32,
        leases: &[LeaseName],
    ) -> Result<(), StorageError> {
        let names: Vec<String> = leases.iter().map(LeaseName::to_string).collect();
        let turn = self.write_turn().await;
        turn.conn()
            .execute(statement(
                self.backend(),
                "INSERT INTO cluster_nodes (id, host, pid, started_at_ms, heartbeat_at_ms, leases) \
                 VALUES ($1, $2, $3, NOW, NOW, $4) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at_ms = excluded.heartbeat_at_ms, \
                 stopped_at_ms = NULL, leases = excluded.leases",
                vec![
                    node.as_str().into(),
                    host.into(),
                    i64::from(pid).into(),
                    names.join(",").into(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Records that `node` stopped gracefully (it no longer counts as a member).
    pub async fn node_stopped(&self, node: &NodeId) -> Result<(), StorageError> {
        let turn = self.write_turn().await;
        turn.conn()
            .execute(statement(
                self.backend(),
                "UPDATE cluster_nodes SET stopped_at_ms = NOW WHERE id = $1",
                vec![node.as_str().into()],
            ))
            .await?;
        Ok(())
    }

    /// Every node start recorded, newest heartbeat first.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, StorageError> {
        self.nodes_where("", Vec::new()).await
    }

    /// Nodes running now: a heartbeat within `within` (database clock) and no graceful stop.
    pub async fn live_nodes(&self, within: Duration) -> Result<Vec<ClusterNode>, StorageError> {
        self.nodes_where(
            "WHERE stopped_at_ms IS NULL AND heartbeat_at_ms > NOW - $1",
            vec![millis(within).into()],
        )
        .await
    }

    async fn nodes_where(
        &self,
        filter: &str,
        values: Vec<Value>,
    ) -> Result<Vec<ClusterNode>, StorageError> {
        const T: &str = "cluster_nodes";
        self.connection()
            .query_all(statement(
                self.backend(),
                &format!(
                    "SELECT id, host, pid, started_at_ms, heartbeat_at_ms, stopped_at_ms, leases \
                     FROM cluster_nodes {filter} ORDER BY heartbeat_at_ms DESC, id"
                ),
                values,
            ))
            .await?
            .iter()
            .map(|r| {
                let pid: i64 = r.try_get("", "pid")?;
                let stopped: Option<i64> = r.try_get("", "stopped_at_ms")?;
                let leases: String = r.try_get("", "leases")?;
                Ok(ClusterNode {
                    id: node_of(T, r.try_get("", "id")?)?,
                    host: r.try_get("", "host")?,
                    pid: u32::try_from(pid).map_err(|_| StorageError::Corrupt {
                        table: T,
                        message: format!("process id {pid}"),
                    })?,
                    started_at: time_of(T, r.try_get("", "started_at_ms")?)?,
                    heartbeat_at: time_of(T, r.try_get("", "heartbeat_at_ms")?)?,
                    stopped_at: stopped.map(|ms| time_of(T, ms)).transpose()?,
                    leases: leases
                        .split(',')
                        .filter_map(|name| name.parse().ok())
                        .collect(),
                })
            })
            .collect()
    }

    /// This store, with every write transaction it begins fenced by `lease`: the transaction
    /// fails with [`StorageError::Fenced`] (and writes nothing) unless `lease` is still its
    /// holder's current, unexpired epoch.
    pub fn fenced(&self, lease: &Lease) -> Store {
        let mut fenced = self.clone();
        fenced.fence = Some(std::sync::Arc::new(lease.clone()));
        fenced
    }

    /// The lease this store's writes are fenced by, if any.
    pub fn fence(&self) -> Option<&Lease> {
        self.fence.as_deref()
    }
}

fn epoch_value(epoch: u64) -> Value {
    i64::try_from(epoch).unwrap_or(i64::MAX).into()
}

/// The fence on PostgreSQL. The lease row is locked `FOR KEY SHARE` until the transaction
/// ends: a take (which locks the row `FOR UPDATE` first) waits for it, so a new epoch starts
/// after the former holder's last commit; the holder's own renewal (a plain update) does not
/// wait for it. A holder frozen inside a fenced transaction (SIGSTOP, a hung host) would keep
/// that lock and block every take, so the server ends a session that waits for its client
/// inside the transaction for longer than the lease's remaining time (at least a second).
const PG_FENCE_SQL: &str = "SELECT epoch, set_config('idle_in_transaction_session_timeout', \
     CAST(GREATEST(1000, expires_at_ms - NOW) AS TEXT), true) AS idle_limit FROM leases \
     WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at_ms > NOW FOR KEY SHARE";

/// Checks `lease` inside the transaction on `conn`: its row must still name the holder and epoch
/// and not have expired. On PostgreSQL the row stays share-locked until the transaction ends, so
/// nobody can take the lease before this transaction's writes are committed or rolled back; on
/// SQLite the no-op update takes the database's write lock for the same effect.
pub(crate) async fn check_fence<C: ConnectionTrait>(
    conn: &C,
    lease: &Lease,
) -> Result<(), StorageError> {
    let backend = match conn.get_database_backend() {
        DbBackend::Postgres => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let sql = match backend {
        Backend::Postgres => PG_FENCE_SQL,
        Backend::Sqlite => {
            "UPDATE leases SET epoch = epoch \
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at_ms > NOW \
             RETURNING epoch"
        }
    };
    let held = conn
        .query_one(statement(
            backend,
            sql,
            vec![
                lease.name.to_string().into(),
                lease.holder.as_str().into(),
                epoch_value(lease.epoch),
            ],
        ))
        .await?;
    match held {
        Some(_) => {
            note_fenced_write(lease);
            Ok(())
        }
        None => Err(StorageError::Fenced {
            lease: lease.name.to_string(),
            epoch: lease.epoch,
        }),
    }
}

/// [`check_fence`] on a raw PostgreSQL transaction (the `COPY` paths).
pub(crate) async fn check_fence_pg(
    tx: &mut sqlx::PgConnection,
    lease: &Lease,
) -> Result<(), StorageError> {
    let sql = PG_FENCE_SQL.replace("NOW", now_ms(Backend::Postgres));
    let held: Option<i64> = sqlx::query_scalar(&sql)
        .bind(lease.name.to_string())
        .bind(lease.holder.as_str())
        .bind(i64::try_from(lease.epoch).unwrap_or(i64::MAX))
        .fetch_optional(tx)
        .await
        .map_err(crate::pg_copy::db_err)?;
    match held {
        Some(_) => {
            note_fenced_write(lease);
            Ok(())
        }
        None => Err(StorageError::Fenced {
            lease: lease.name.to_string(),
            epoch: lease.epoch,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_over_ends_once_with_its_first_write() {
        let taken = Instant::now();
        let handover = HandOver::new(Duration::from_millis(700), taken);
        let copy = handover.clone();
        let at = taken + Duration::from_millis(40);
        assert_eq!(handover.first_write(at), Some(Duration::from_millis(740)));
        assert_eq!(handover.first_write(at), None);
        // Every copy of the lease shares the hand-over: a stage's copy ends it for all.
        assert_eq!(copy.first_write(at), None);
        // A write clocked before the take (another thread's Instant) counts from the take.
        let early = HandOver::new(Duration::from_millis(3), taken + Duration::from_secs(1));
        assert_eq!(early.first_write(taken), Some(Duration::from_millis(3)));
    }
}
