//! Every node of a cluster tells its subscribers (the voting page) when a proposal changes,
//! whichever node changed it, also without NATS: the feed compares each recent proposal's
//! fingerprint (state, last update, quorum, votes) with the last poll's and reports the ones
//! that differ. With NATS the news arrives sooner; this is the path that always works.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use meridian_storage::{StorageError, Store};

/// Proposals looked at: those ending, or changed, within this long of now.
pub const PROPOSAL_FEED_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// Reports proposals changed since the last poll, by any node.
pub struct ProposalFeed {
    store: Store,
    /// Each proposal's fingerprint at the last poll; `None` before the first.
    seen: Option<HashMap<String, String>>,
}

impl ProposalFeed {
    /// A feed that reports changes from its second poll on (the first takes stock).
    pub fn new(store: Store) -> ProposalFeed {
        ProposalFeed { store, seen: None }
    }

    /// The ids of proposals whose fingerprint changed (or that appeared) since the last poll.
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<Vec<String>, StorageError> {
        let prints: HashMap<String, String> = self
            .store
            .proposal_fingerprints(now - PROPOSAL_FEED_WINDOW)
            .await?
            .into_iter()
            .collect();
        let changed = match &self.seen {
            None => Vec::new(),
            Some(seen) => {
                let mut changed: Vec<String> = prints
                    .iter()
                    .filter(|(id, print)| seen.get(*id) != Some(*print))
                    .map(|(id, _)| id.clone())
                    .collect();
                changed.sort();
                changed
            }
        };
        self.seen = Some(prints);
        Ok(changed)
    }

    /// Polls every `interval` until `shutdown`, telling `announce` of each changed proposal; a
    /// failed poll is logged and retried.
    pub async fn run(
        mut self,
        interval: Duration,
        announce: Arc<dyn Fn(String) + Send + Sync>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            match self.poll(Utc::now()).await {
                Ok(changed) => changed.into_iter().for_each(|id| announce(id)),
                Err(e) => tracing::warn!(error = %e, "reading proposal changes failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
