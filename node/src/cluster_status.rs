//! `meridian cluster status`: the nodes of a cluster and who holds each lease, read from the
//! database (times are the database's clock, as the leases themselves are).

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use meridian_storage::{ClusterNode, StorageError, Store};

/// The report `meridian cluster status` prints. A node whose last heartbeat is older than
/// `member_timeout` is shown as `silent` (crashed, paused or cut off).
pub async fn report(store: &Store, member_timeout: Duration) -> Result<String, StorageError> {
    let now = store.database_time().await?;
    let nodes = store.cluster_nodes().await?;
    let leases = store.leases().await?;
    let mut out = String::new();
    let _ = writeln!(out, "database clock {}", stamp(now));
    let _ = writeln!(out, "nodes ({}):", nodes.len());
    if nodes.is_empty() {
        let _ = writeln!(
            out,
            "  none: no node with [cluster] configured has run on this database"
        );
    }
    for n in &nodes {
        let state = match n.stopped_at {
            Some(at) => format!("stopped {}", stamp(at)),
            None if age(now, n.heartbeat_at) > member_timeout => "silent".to_owned(),
            None => "live".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {} host={} pid={} heartbeat {} ({}) {state}",
            n.id,
            n.host,
            n.pid,
            stamp(n.heartbeat_at),
            relative(now, n.heartbeat_at)
        );
    }
    let _ = writeln!(out, "leases ({}):", leases.len());
    for l in &leases {
        let holder = match &l.holder {
            None => "holder=none (released)".to_owned(),
            Some(h) => format!("holder={h} pid={}", pid_of(&nodes, h.as_str())),
        };
        let expiry = if l.expires_at > now {
            format!(
                "expires {} ({})",
                stamp(l.expires_at),
                relative(now, l.expires_at)
            )
        } else {
            format!(
                "expired {} ({})",
                stamp(l.expires_at),
                relative(now, l.expires_at)
            )
        };
        let _ = writeln!(out, "  {} {holder} epoch={} {expiry}", l.name, l.epoch);
    }
    Ok(out)
}

fn pid_of(nodes: &[ClusterNode], id: &str) -> String {
    nodes
        .iter()
        .find(|n| n.id.as_str() == id)
        .map_or_else(|| "?".to_owned(), |n| n.pid.to_string())
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

/// `1.5 s ago` or `in 8.7 s`.
fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let ms = (t - now).num_milliseconds();
    let secs = ms.unsigned_abs() as f64 / 1000.0;
    if ms < 0 {
        format!("{secs:.1} s ago")
    } else {
        format!("in {secs:.1} s")
    }
}
