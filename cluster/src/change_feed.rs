//! Every node of a cluster announces every transfer change, whichever node made it: the change
//! feed reads the transfers' history rows from the database and hands each changed transfer to
//! the node's subscribers and stages ([`Store::announce_stored_change`]). A node of a cluster
//! announces its own commits only through the feed too ([`Store::announcing_from_database`]),
//! so each change reaches a subscriber once.
//!
//! History rows get their ids when inserted but become visible when committed, which need not
//! be in id order on PostgreSQL (a large settlement batch can commit after a later small one).
//! The feed keeps a watermark below which every id has been announced, and reads everything
//! above it: an id missing above the watermark is waited for (its transaction may still
//! commit) for [`CHANGE_FEED_GAP_WAIT`], then given up (a rolled-back transaction leaves a gap
//! for good).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use meridian_storage::{StorageError, Store};

/// How long an id missing above the watermark is waited for.
pub const CHANGE_FEED_GAP_WAIT: Duration = Duration::from_secs(30);

/// Most history rows read per query.
pub const CHANGE_FEED_PAGE_MAX: u64 = 4_096;

/// Reads the transfer changes every node commits and announces them on this node.
pub struct ChangeFeed {
    store: Store,
    /// Every id at or below this is announced (or was there when the feed started, or given
    /// up as a gap).
    watermark: i64,
    /// Ids above the watermark announced already.
    announced: BTreeSet<i64>,
    /// Ids above the watermark not seen yet, since when.
    gaps: BTreeMap<i64, Instant>,
}

impl ChangeFeed {
    /// A feed of the changes committed from now on.
    pub async fn start(store: Store) -> Result<ChangeFeed, StorageError> {
        let watermark = store.last_transfer_change().await?;
        Ok(ChangeFeed {
            store,
            watermark,
            announced: BTreeSet::new(),
            gaps: BTreeMap::new(),
        })
    }

    /// Announces the changes committed since the last poll, page by page (a page announced
    /// stays announced if a later page fails); returns how many transfers were announced (a
    /// transfer changed several times in between is announced once per page).
    pub async fn poll(&mut self) -> Result<usize, StorageError> {
        let mut after = self.watermark;
        let mut count = 0;
        loop {
            let page = self
                .store
                .transfer_changes_after(after, CHANGE_FEED_PAGE_MAX)
                .await?;
            let full = page.len() as u64 == CHANGE_FEED_PAGE_MAX;
            let mut seen: HashSet<&str> = HashSet::new();
            for (id, transfer) in &page {
                after = *id;
                if self.announced.insert(*id) && seen.insert(transfer) {
                    self.store.announce_stored_change(transfer);
                    count += 1;
                }
            }
            if !full {
                break;
            }
        }
        self.advance(Instant::now());
        Ok(count)
    }

    fn advance(&mut self, now: Instant) {
        advance_watermark(
            &mut self.watermark,
            &mut self.announced,
            &mut self.gaps,
            now,
        );
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

/// Moves `watermark` over announced ids and over gaps waited for long enough, and records the
/// new gaps below the highest id announced; keeps only what is above the watermark.
fn advance_watermark(
    watermark: &mut i64,
    announced: &mut BTreeSet<i64>,
    gaps: &mut BTreeMap<i64, Instant>,
    now: Instant,
) {
    if let Some(&highest) = announced.last() {
        for id in (*watermark + 1)..highest {
            if !announced.contains(&id) {
                gaps.entry(id).or_insert(now);
            }
        }
    }
    loop {
        let next = *watermark + 1;
        if announced.remove(&next) {
            *watermark = next;
            continue;
        }
        match gaps.get(&next) {
            Some(since) if now.saturating_duration_since(*since) >= CHANGE_FEED_GAP_WAIT => {
                gaps.remove(&next);
                *watermark = next;
            }
            _ => break,
        }
    }
    // Gaps below the watermark, or filled since, are no longer waited for.
    gaps.retain(|id, _| *id > *watermark && !announced.contains(id));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watermark stops at a gap, passes it once filled or once it waited long enough, and
    /// keeps only what is above it.
    #[test]
    fn the_watermark_waits_for_gaps_then_gives_them_up() {
        let (mut watermark, mut announced, mut gaps) = (10, BTreeSet::new(), BTreeMap::new());
        let t0 = Instant::now();
        announced.extend([11, 12, 14, 15]);
        advance_watermark(&mut watermark, &mut announced, &mut gaps, t0);
        assert_eq!(watermark, 12, "stops below the missing 13");
        assert_eq!(gaps.keys().copied().collect::<Vec<_>>(), [13]);
        assert_eq!(announced.iter().copied().collect::<Vec<_>>(), [14, 15]);
        // 13 commits late: announced, the watermark passes everything.
        announced.insert(13);
        advance_watermark(&mut watermark, &mut announced, &mut gaps, t0);
        assert_eq!(watermark, 15);
        assert!(gaps.is_empty() && announced.is_empty());
        // 16 never commits (rolled back): passed once it waited long enough.
        announced.insert(17);
        advance_watermark(&mut watermark, &mut announced, &mut gaps, t0);
        assert_eq!(watermark, 15);
        advance_watermark(
            &mut watermark,
            &mut announced,
            &mut gaps,
            t0 + CHANGE_FEED_GAP_WAIT,
        );
        assert_eq!(watermark, 17);
        assert!(gaps.is_empty() && announced.is_empty());
    }
}
