//! Every node of a cluster announces every transfer change, whichever node made it: the change
//! feed reads the transfers' history rows from the database after the last one it announced and
//! hands each changed transfer to the node's subscribers and stages
//! ([`Store::announce_stored_change`]). A node of a cluster announces its own commits only
//! through the feed too ([`Store::announcing_from_database`]), so each change reaches a
//! subscriber once.
//!
//! History rows get their ids when inserted but become visible when committed, which need not
//! be in id order on PostgreSQL: the feed reads again the last [`CHANGE_FEED_LOOKBACK`] ids
//! below the highest it has seen and skips those it announced already.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use meridian_storage::{StorageError, Store};

/// History ids re-read below the highest seen, for rows committed out of id order.
pub const CHANGE_FEED_LOOKBACK: i64 = 4_096;

/// Most history rows read per query.
pub const CHANGE_FEED_PAGE_MAX: u64 = 4_096;

/// Reads the transfer changes every node commits and announces them on this node.
pub struct ChangeFeed {
    store: Store,
    /// Ids at or below this were there when the feed started (never announced).
    floor: i64,
    /// The highest id announced.
    high: i64,
    /// Ids announced within the look-back window.
    announced: BTreeSet<i64>,
}

impl ChangeFeed {
    /// A feed of the changes committed from now on.
    pub async fn start(store: Store) -> Result<ChangeFeed, StorageError> {
        let floor = store.last_transfer_change().await?;
        Ok(ChangeFeed {
            store,
            floor,
            high: floor,
            announced: BTreeSet::new(),
        })
    }

    /// Announces the changes committed since the last poll; returns how many transfers were
    /// announced (a transfer changed several times in between is announced once).
    pub async fn poll(&mut self) -> Result<usize, StorageError> {
        let mut after = (self.high - CHANGE_FEED_LOOKBACK).max(self.floor);
        let mut changed: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let page = self
                .store
                .transfer_changes_after(after, CHANGE_FEED_PAGE_MAX)
                .await?;
            let full = page.len() as u64 == CHANGE_FEED_PAGE_MAX;
            for (id, transfer) in page {
                after = id;
                if !self.announced.insert(id) {
                    continue;
                }
                self.high = self.high.max(id);
                if seen.insert(transfer.clone()) {
                    changed.push(transfer);
                }
            }
            if !full {
                break;
            }
        }
        // Forget what left the look-back window: memory stays bounded.
        let keep_from = self.high - CHANGE_FEED_LOOKBACK;
        self.announced = self.announced.split_off(&keep_from);
        for transfer in &changed {
            self.store.announce_stored_change(transfer);
        }
        Ok(changed.len())
    }

    /// Polls every `interval`, and at once when `wake` is notified (news from another node),
    /// until `shutdown`; a failed poll is logged and retried.
    pub async fn run(
        mut self,
        interval: Duration,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.poll().await {
                tracing::warn!(error = %e, "reading transfer changes failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = wake.notified() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
