//! `cluster`: the nodes of a cluster and who holds each lease, as `meridian cluster status`
//! prints them (times in the database's clock, as the leases themselves are).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use meridian_storage::{ClusterNode, LeaseRow};

/// Several nodes running one relay: who runs, and who holds each unit of work.
#[derive(SimpleObject)]
pub struct Cluster {
    /// The database's clock when this was read.
    pub database_time: DateTime<Utc>,
    /// Every node start recorded, newest heartbeat first.
    pub nodes: Vec<Node>,
    /// Every lease, by name.
    pub leases: Vec<Lease>,
}

/// One node start.
#[derive(SimpleObject)]
pub struct Node {
    /// `<name>/<pid>.<start>`.
    pub id: String,
    /// Host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// When it stopped gracefully (none while running, or after a crash).
    pub stopped_at: Option<DateTime<Utc>>,
}

/// One unit of work with one owner at a time: `settle`, `gov`, `watch:<chain>`,
/// `payout:<chain>`.
#[derive(SimpleObject)]
pub struct Lease {
    /// The lease's name.
    pub name: String,
    /// The node holding it (none once released).
    pub holder: Option<String>,
    /// The holder's process id, when its node is recorded.
    pub holder_pid: Option<u32>,
    /// Rises each time the lease changes hands.
    pub epoch: String,
    /// When the holder took it.
    pub acquired_at: DateTime<Utc>,
    /// When it expires unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Held now: a holder and not expired.
    pub held: bool,
}

impl Cluster {
    /// The view of `nodes` and `leases` read at `now`.
    pub fn new(now: DateTime<Utc>, nodes: Vec<ClusterNode>, leases: Vec<LeaseRow>) -> Cluster {
        let leases = leases
            .into_iter()
            .map(|l| Lease {
                name: l.name.to_string(),
                holder_pid: l
                    .holder
                    .as_ref()
                    .and_then(|h| nodes.iter().find(|n| &n.id == h))
                    .map(|n| n.pid),
                held: l.holder.is_some() && l.expires_at > now,
                holder: l.holder.map(|h| h.to_string()),
                epoch: l.epoch.to_string(),
                acquired_at: l.acquired_at,
                expires_at: l.expires_at,
            })
            .collect();
        Cluster {
            database_time: now,
            nodes: nodes
                .into_iter()
                .map(|n| Node {
                    id: n.id.to_string(),
                    host: n.host,
                    pid: n.pid,
                    started_at: n.started_at,
                    heartbeat_at: n.heartbeat_at,
                    stopped_at: n.stopped_at,
                })
                .collect(),
            leases,
        }
    }
}
