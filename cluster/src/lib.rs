//! Several nodes, one relay: each node heartbeats, takes its share of the leases (rendezvous
//! hashing over the live nodes), renews what it holds, steps down by its own clock before a
//! lease it could not renew expires, and releases everything on a graceful stop. A stage runs
//! only while its node holds the stage's lease ([`while_held`]), and writes through a store
//! fenced by that lease, so a former holder that was paused or cut off never commits after a new
//! one took over.
//!
//! Every node announces every transfer change, whichever node made it ([`change_feed`]).
//!
//! PostgreSQL is the record of who holds what (`meridian_storage::lease_store`); the keeper is
//! the only code that takes, renews or releases leases.

pub mod change_feed;
pub mod news;
pub mod proposal_feed;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use meridian_storage::{HandOver, Lease, LeaseClaim, StorageError, Store};
use meridian_types::cluster::{preferred_holder, LeaseName, NodeId};

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node start's id.
    pub node: NodeId,
    /// Host name, for operators.
    pub host: String,
    /// Process id, for operators.
    pub pid: u32,
    /// How long a lease lasts unless renewed (database clock).
    pub lease_ttl: Duration,
    /// The leases this node may hold.
    pub leases: Vec<LeaseName>,
}

impl ClusterSettings {
    /// Time between two rounds of heartbeats and renewals: a quarter of the lease, at most a
    /// second (a released lease is taken within about one round).
    pub fn round_interval(&self) -> Duration {
        (self.lease_ttl / 4).min(Duration::from_secs(1))
    }

    /// A node counts as live while its last heartbeat is at most this old.
    pub fn member_timeout(&self) -> Duration {
        self.lease_ttl
    }

    /// A holder stops its work this long after the start of its last successful take or
    /// renewal: four fifths of the lease, so it has stopped before the database lets anyone else
    /// take the lease (the database counts from a later moment, when the statement ran).
    pub fn step_down_after(&self) -> Duration {
        self.lease_ttl * 4 / 5
    }
}

/// A lease taken because its preferred node left it free is kept this many lease times before
/// it is handed back.
pub const ADOPTED_HOLD_LEASES: u32 = 3;

/// A lease this node holds, and when it must stop using it by its own clock.
#[derive(Debug)]
struct Held {
    lease: Lease,
    stop_by: Instant,
    /// Being handed over: its stage was told to stop last round; released this round.
    draining: bool,
    /// Taken because its preferred node left it free for a whole lease: kept until then (not
    /// handed back at once, which would leave it free again), handed back as usual after.
    adopted_until: Option<Instant>,
}

/// What one round changed, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Leases taken this round.
    pub taken: Vec<LeaseName>,
    /// Leases given to their preferred holder this round.
    pub handed_over: Vec<LeaseName>,
    /// Leases found lost at renewal, or stepped down from unrenewed.
    pub lost: Vec<LeaseName>,
}

/// Heartbeats, takes, renews and releases this node's leases, and tells each stage whether it
/// holds its lease.
pub struct LeaseKeeper {
    store: Store,
    settings: ClusterSettings,
    held: BTreeMap<LeaseName, Held>,
    published: BTreeMap<LeaseName, watch::Sender<Option<Lease>>>,
    /// Leases with no row yet that another node should create, since when (database clock, ms).
    missing_since: BTreeMap<LeaseName, i64>,
}

impl LeaseKeeper {
    /// A keeper for `settings.leases`, holding none yet.
    pub fn new(store: Store, settings: ClusterSettings) -> LeaseKeeper {
        let published = settings
            .leases
            .iter()
            .map(|l| (l.clone(), watch::channel(None).0))
            .collect();
        LeaseKeeper {
            store,
            settings,
            held: BTreeMap::new(),
            published,
            missing_since: BTreeMap::new(),
        }
    }

    /// The lease `name` while this node holds it (`None` while it does not); `None` for a lease
    /// this keeper does not manage.
    pub fn lease(&self, name: &LeaseName) -> Option<watch::Receiver<Option<Lease>>> {
        self.published.get(name).map(watch::Sender::subscribe)
    }

    /// This node start's id.
    pub fn node(&self) -> &NodeId {
        &self.settings.node
    }

    /// The leases held now.
    pub fn held(&self) -> Vec<Lease> {
        self.held.values().map(|h| h.lease.clone()).collect()
    }

    fn publish(&self, name: &LeaseName, lease: Option<Lease>) {
        if let Some(tx) = self.published.get(name) {
            tx.send_replace(lease);
        }
    }

    fn drop_lease(&mut self, name: &LeaseName) {
        self.held.remove(name);
        self.publish(name, None);
        metrics::counter!("meridian_cluster_lease_changes_total", "lease" => name.to_string(), "change" => "lost").increment(1);
    }

    /// Stops using every lease whose own-clock deadline has passed.
    fn step_down_overdue(&mut self, now: Instant) -> Vec<LeaseName> {
        let overdue: Vec<LeaseName> = self
            .held
            .iter()
            .filter(|(_, h)| h.stop_by <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in &overdue {
            warn!(lease = %name, "lease not renewed in time; stepping down");
            self.drop_lease(name);
        }
        overdue
    }

    /// One round at local time `now`: steps down from leases not renewed in time, heartbeats,
    /// renews what is held, hands over what another node should hold (its stage is told to stop
    /// one round before the lease is released), takes what this node should hold.
    pub async fn round(&mut self, now: Instant) -> Result<RoundReport, StorageError> {
        let mut report = RoundReport {
            lost: self.step_down_overdue(now),
            ..RoundReport::default()
        };
        let s = &self.settings;
        self.store
            .heartbeat(&s.node, &s.host, s.pid, &s.leases)
            .await?;
        let live = self.store.live_nodes(s.member_timeout()).await?;
        let database_now = self.store.database_time().await?.timestamp_millis();
        let ttl = self.settings.lease_ttl;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let me = self.settings.node.clone();
        for name in self.settings.leases.clone() {
            // Among the live nodes that can hold it (this one can).
            let mut eligible: Vec<NodeId> = live
                .iter()
                .filter(|n| n.id != me && n.leases.contains(&name))
                .map(|n| n.id.clone())
                .collect();
            eligible.push(me.clone());
            let mine = preferred_holder(&name, &eligible) == Some(&me);
            if let Some(held) = self.held.get(&name) {
                let adopted_until = held.adopted_until.filter(|until| now < *until);
                let adopted = adopted_until.is_some();
                let (lease, draining) = (held.lease.clone(), held.draining);
                if !mine && !adopted && draining {
                    self.store.release_lease(&lease).await?;
                    info!(lease = %name, epoch = lease.epoch, "lease handed over to its preferred node");
                    self.held.remove(&name);
                    report.handed_over.push(name);
                    continue;
                }
                let draining = !mine && !adopted;
                if draining {
                    // Its stage stops now; the lease goes next round, once it has stopped.
                    self.publish(&name, None);
                }
                let resumed = held_draining_before(&self.held, &name) && !draining;
                match self.store.renew_lease(&lease, ttl).await? {
                    Some(lease) => {
                        if resumed {
                            // Told to stop last round, this node's again (the live nodes changed
                            // back): its stage starts again.
                            self.publish(&name, Some(lease.clone()));
                        }
                        self.held.insert(
                            name,
                            Held {
                                lease,
                                stop_by: now + self.settings.step_down_after(),
                                draining,
                                adopted_until,
                            },
                        );
                    }
                    None => {
                        warn!(lease = %name, epoch = lease.epoch, "lease lost: another node holds it now");
                        self.drop_lease(&name);
                        report.lost.push(name);
                    }
                }
                continue;
            }
            let mut adopted = false;
            let before = self.store.lease(&name).await?;
            if !mine {
                // Another node should take it; take it anyway once it stayed free for a whole
                // lease period (that node is live but not taking it).
                adopted = match &before {
                    None => {
                        let since = *self
                            .missing_since
                            .entry(name.clone())
                            .or_insert(database_now);
                        since.saturating_add(ttl_ms) <= database_now
                    }
                    Some(row) => {
                        row.expires_at.timestamp_millis().saturating_add(ttl_ms) <= database_now
                    }
                };
                if !adopted {
                    continue;
                }
            }
            match self.store.take_lease(&name, &me, ttl).await? {
                LeaseClaim::Taken(mut lease) => {
                    // From the moment the lease stopped being the former holder's (expiry or
                    // release) to this take, in the database's clock. The hand-over ends with
                    // this node's first fenced write under the lease, which records its time.
                    let take_ms = before.as_ref().map(|row| {
                        (lease.expires_at.timestamp_millis() - ttl_ms)
                            .saturating_sub(row.expires_at.timestamp_millis())
                            .max(0)
                    });
                    lease.handed_over = take_ms.map(|ms| {
                        HandOver::new(
                            Duration::from_millis(ms.unsigned_abs()),
                            std::time::Instant::now(),
                        )
                    });
                    info!(lease = %name, epoch = lease.epoch, adopted, take_ms, "lease taken");
                    metrics::counter!("meridian_cluster_lease_changes_total", "lease" => name.to_string(), "change" => "taken").increment(1);
                    self.missing_since.remove(&name);
                    self.publish(&name, Some(lease.clone()));
                    self.held.insert(
                        name.clone(),
                        Held {
                            lease,
                            stop_by: now + self.settings.step_down_after(),
                            draining: false,
                            adopted_until: adopted.then(|| now + ttl * ADOPTED_HOLD_LEASES),
                        },
                    );
                    report.taken.push(name);
                }
                LeaseClaim::Held(_) => {}
            }
        }
        metrics::gauge!("meridian_cluster_leases_held").set(self.held.len() as f64);
        Ok(report)
    }

    /// Releases every lease held (others take them at once) and records the graceful stop.
    pub async fn stop(&mut self) -> Result<(), StorageError> {
        let held: Vec<Lease> = self.held();
        let mut failed = None;
        for lease in held {
            self.held.remove(&lease.name);
            self.publish(&lease.name, None);
            match self.store.release_lease(&lease).await {
                Ok(_) => info!(lease = %lease.name, epoch = lease.epoch, "lease released"),
                // The others take it when it expires.
                Err(e) => failed = Some(e),
            }
        }
        let stopped = self.store.node_stopped(&self.settings.node).await;
        match failed {
            Some(e) => Err(e),
            None => stopped,
        }
    }

    /// Rounds every [`ClusterSettings::round_interval`] until `shutdown`, then returns itself,
    /// still holding its leases: the caller stops the stages first and then calls
    /// [`LeaseKeeper::stop`]. A round that fails (database unreachable) is logged and retried;
    /// leases not renewed in time are stepped down from by our own clock meanwhile.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> LeaseKeeper {
        let interval = self.settings.round_interval();
        loop {
            // A round may not outlast the earliest deadline of a lease held: a database that
            // hangs must not keep a stage running past the point it has to stop.
            let budget = self
                .held
                .values()
                .map(|h| h.stop_by.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(self.settings.lease_ttl)
                .max(Duration::from_millis(1));
            match tokio::time::timeout(budget, self.round(Instant::now())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "cluster round failed; retrying"),
                Err(_) => warn!(after = ?budget, "cluster round timed out; retrying"),
            }
            self.step_down_overdue(Instant::now());
            let next = self
                .held
                .values()
                .map(|h| h.stop_by)
                .min()
                .map_or(interval, |by| {
                    by.saturating_duration_since(Instant::now()).min(interval)
                });
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                () = shut_down(&mut shutdown) => break,
            }
        }
        self
    }
}

/// Returns once `shutdown` is true (or its sender is gone).
async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The lease once held; `None` when the keeper is gone.
async fn taken(lease: &mut watch::Receiver<Option<Lease>>) -> Option<Lease> {
    if lease.has_changed().is_err() {
        // The keeper is gone: whatever it last said is stale.
        return None;
    }
    match lease.wait_for(Option::is_some).await {
        Ok(held) => held.clone(),
        Err(_) => None,
    }
}

/// Whether `name` is held and was being handed over.
fn held_draining_before(held: &BTreeMap<LeaseName, Held>, name: &LeaseName) -> bool {
    held.get(name).is_some_and(|h| h.draining)
}

/// Pause before running a stage again that ended by itself while its lease was still held.
pub const STAGE_RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs `work` while `lease` is held: starts it with the lease each time the node takes it and
/// signals it to stop (its stop channel turns `true`) when the lease is lost or the node shuts
/// down, waiting for it to finish. Returns at shutdown.
pub async fn while_held<F, Fut>(
    mut lease: watch::Receiver<Option<Lease>>,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut(Lease, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let held = tokio::select! {
            held = taken(&mut lease) => match held {
                Some(held) => held,
                None => return,
            },
            () = shut_down(&mut shutdown) => return,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let running = work(held.clone(), stop_rx);
        tokio::pin!(running);
        let ended_by_itself = loop {
            tokio::select! {
                () = &mut running => break true,
                changed = lease.changed() => {
                    if changed.is_err() || lease.borrow().as_ref() != Some(&held) {
                        stop_tx.send_replace(true);
                        running.as_mut().await;
                        break false;
                    }
                }
                () = shut_down(&mut shutdown) => {
                    stop_tx.send_replace(true);
                    running.as_mut().await;
                    return;
                }
            }
        };
        if ended_by_itself {
            tokio::select! {
                _ = tokio::time::sleep(STAGE_RESTART_DELAY) => {}
                () = shut_down(&mut shutdown) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn lease(epoch: u64) -> Lease {
        Lease {
            name: LeaseName::Settle,
            holder: NodeId::new("a/1").unwrap(),
            epoch,
            expires_at: chrono::DateTime::UNIX_EPOCH,
            handed_over: None,
        }
    }

    /// Work starts when the lease is taken, is told to stop when it is lost, starts again with
    /// the next epoch, and stops for good (awaited, never restarted with the stale lease) when
    /// the keeper goes away.
    #[tokio::test]
    async fn work_runs_only_while_the_lease_is_held() {
        let (lease_tx, lease_rx) = watch::channel(None);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let epochs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let runner = tokio::spawn({
            let (started, stopped, epochs) = (started.clone(), stopped.clone(), epochs.clone());
            while_held(lease_rx, shutdown_rx, move |lease, mut stop| {
                let (started, stopped, epochs) = (started.clone(), stopped.clone(), epochs.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    epochs.lock().unwrap().push(lease.epoch);
                    let _ = stop.wait_for(|s| *s).await;
                    stopped.fetch_add(1, Ordering::SeqCst);
                }
            })
        });
        let until = |counter: Arc<AtomicUsize>, n: usize| async move {
            while counter.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        };
        lease_tx.send_replace(Some(lease(1)));
        until(started.clone(), 1).await;
        assert_eq!(stopped.load(Ordering::SeqCst), 0);
        lease_tx.send_replace(None);
        until(stopped.clone(), 1).await;
        lease_tx.send_replace(Some(lease(2)));
        until(started.clone(), 2).await;
        // The keeper goes away while the lease is held: the work stops and is not restarted
        // with the stale lease.
        drop(lease_tx);
        runner.await.unwrap();
        assert!(!*shutdown_tx.borrow(), "it ended without a shutdown");
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(stopped.load(Ordering::SeqCst), 2);
        assert_eq!(*epochs.lock().unwrap(), vec![1, 2]);
    }
}
