//! The chain-agnostic watcher loop: backfill, follow, finality, reorgs, exactly-once ingest.
//!
//! Invariants (asserted, not hoped for):
//! - only blocks at or below the finality rule's height are ingested;
//! - a range's events, block hashes and checkpoint are committed in one transaction;
//! - the checkpoint only moves backwards through [`Store::rewind`], after a reorg is proven by a
//!   stored block hash that is no longer canonical;
//! - a reorg deeper than the retained block hashes stops the watcher loudly instead of guessing.

use std::sync::Arc;
use std::time::Duration;

use meridian_storage::{IngestBatch, StorageError, Store, RETAINED_BLOCKS_MAX};
use meridian_types::{BlockRef, ChainId, EventStatus};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use crate::metrics as m;
use crate::source::{BlockSource, SourceError};

/// Longest wait between retries of a failing step.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First wait after a failing step.
const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// How a follower paces itself.
#[derive(Debug, Clone)]
pub struct FollowerSettings {
    /// First block to ingest when there is no checkpoint.
    pub start_block: u64,
    /// Largest range fetched and committed per step.
    pub range_max: u64,
    /// How long to wait for a head notification before polling anyway.
    pub poll_interval: Duration,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The chain could not be read; retried with backoff.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The database could not be written or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No retained block hash is canonical any more: the reorg is deeper than
    /// [`RETAINED_BLOCKS_MAX`] blocks or reaches below `start_block`. Needs an operator.
    #[error("reorg on {chain} is deeper than the {depth} retained blocks below height {height}; operator action needed")]
    ReorgTooDeep {
        /// The chain.
        chain: ChainId,
        /// Checkpoint height when it was noticed.
        height: u64,
        /// How many stored hashes were checked.
        depth: usize,
    },
}

impl FollowError {
    /// Whether retrying can help; fatal errors stop the watcher.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FollowError::ReorgTooDeep { .. }
                | FollowError::Storage(
                    StorageError::CheckpointRegression { .. }
                        | StorageError::RewindForward { .. }
                        | StorageError::ChainMismatch { .. }
                )
        )
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// A range was committed.
    Ingested {
        /// First block of the range.
        from: u64,
        /// Last block of the range (the new checkpoint).
        to: u64,
        /// Events stored for the first time.
        inserted: u64,
        /// Events skipped because they were stored already.
        duplicates: u64,
    },
    /// A reorg was found and the checkpoint moved back to the common ancestor.
    Rewound {
        /// Checkpoint height before.
        from: u64,
        /// The common ancestor's height.
        to: u64,
        /// Events retracted.
        retracted: u64,
    },
    /// The chain moved while the range was read; nothing was committed, try again.
    Raced,
    /// Nothing final is left to ingest.
    CaughtUp {
        /// The checkpoint height.
        checkpoint: Option<u64>,
    },
}

/// Follows one chain into the store.
pub struct ChainFollower<S> {
    source: S,
    store: Store,
    settings: FollowerSettings,
    wake: Arc<Notify>,
}

impl<S: BlockSource> ChainFollower<S> {
    /// A follower of `source` committing into `store`; `wake` is notified on new heads.
    pub fn new(source: S, store: Store, settings: FollowerSettings, wake: Arc<Notify>) -> Self {
        ChainFollower {
            source,
            store,
            settings,
            wake,
        }
    }

    fn chain(&self) -> &ChainId {
        self.source.chain()
    }

    /// Runs until `shutdown` turns true or a fatal error occurs.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), FollowError> {
        let chain = self.chain().clone();
        let labels = [("chain", chain.to_string())];
        let mut backoff = BACKOFF_MIN;
        info!(chain = %chain, "watcher started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let step = tokio::select! {
                r = self.step() => r,
                _ = shutdown.changed() => break,
            };
            match step {
                Ok(StepOutcome::CaughtUp { .. }) => {
                    backoff = BACKOFF_MIN;
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                Ok(StepOutcome::Raced) => {
                    tokio::time::sleep(BACKOFF_MIN).await;
                }
                Ok(_) => backoff = BACKOFF_MIN,
                Err(e) if e.is_fatal() => {
                    tracing::error!(chain = %chain, error = %e, "watcher stopped");
                    return Err(e);
                }
                Err(e) => {
                    metrics::counter!(m::FOLLOWER_ERRORS, &labels).increment(1);
                    warn!(chain = %chain, error = %e, retry_in_ms = backoff.as_millis() as u64, "watcher step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        info!(chain = %chain, "watcher stopped");
        Ok(())
    }

    /// One unit of progress: check for a reorg, then ingest the next final range.
    #[tracing::instrument(level = "info", name = "batch", skip(self), fields(chain = %self.source.chain()))]
    pub async fn step(&self) -> Result<StepOutcome, FollowError> {
        let chain = self.chain().clone();
        let labels = [("chain", chain.to_string())];
        let head = self.source.head().await?;
        let final_height = self.source.final_height(&head).await?.min(head.height);
        self.store.record_head(&chain, &head, final_height).await?;
        metrics::gauge!(m::HEAD_HEIGHT, &labels).set(head.height as f64);

        let checkpoint = self.store.checkpoint(&chain).await?;
        if let Some(cp) = &checkpoint {
            metrics::gauge!(m::CHECKPOINT_HEIGHT, &labels).set(cp.height as f64);
            metrics::gauge!(m::HEAD_LAG, &labels).set(head.height.saturating_sub(cp.height) as f64);
            if let Some(hash) = &cp.block_hash {
                let canonical = self.source.block(cp.height).await?;
                if canonical.as_ref().map(|b| &b.hash) != Some(hash) {
                    return self.rewind(cp.height).await;
                }
            }
        }

        let next = match &checkpoint {
            Some(cp) => cp.height + 1,
            None => self.settings.start_block,
        };
        if next > final_height {
            return Ok(StepOutcome::CaughtUp {
                checkpoint: checkpoint.map(|c| c.height),
            });
        }
        let to = final_height.min(next + self.settings.range_max.max(1) - 1);

        let Some(end) = self.source.block(to).await? else {
            return Ok(StepOutcome::Raced);
        };
        let first = if to == next {
            end.clone()
        } else {
            match self.source.block(next).await? {
                Some(b) => b,
                None => return Ok(StepOutcome::Raced),
            }
        };
        let mut blocks = vec![first.clone()];
        match &checkpoint {
            Some(cp) => {
                // The hash chain must continue from our checkpoint; if not, the chain reorganised
                // between the check above and now — the next step will find and rewind it.
                if let (Some(parent), Some(hash)) = (&first.parent_hash, &cp.block_hash) {
                    if parent != hash {
                        return Ok(StepOutcome::Raced);
                    }
                }
            }
            None if next > 0 => {
                // Anchor: the block before start_block, so a reorg right at the start is detectable.
                if let Some(anchor) = self.source.block(next - 1).await? {
                    blocks.push(anchor);
                }
            }
            None => {}
        }

        let events = self.source.events(next, to).await?;
        // The range is only trustworthy if its last block is still the one we anchored on.
        if self.source.block(to).await?.map(|b| b.hash) != Some(end.hash.clone()) {
            return Ok(StepOutcome::Raced);
        }
        for e in &events {
            debug_assert!(e.id.block_number >= next && e.id.block_number <= to);
            blocks.push(BlockRef {
                height: e.id.block_number,
                hash: e.id.block_hash.clone(),
                parent_hash: None,
            });
        }
        let undecodable = events
            .iter()
            .filter(|e| e.status() == EventStatus::Undecodable)
            .count() as u64;
        let batch = IngestBatch {
            chain: chain.clone(),
            events,
            blocks,
            checkpoint: end,
        };
        let outcome = self.store.commit_ingest(&batch).await?;

        metrics::counter!(m::EVENTS_INGESTED, &labels)
            .increment(outcome.inserted + outcome.restored);
        metrics::counter!(m::EVENTS_DUPLICATE, &labels).increment(outcome.duplicates);
        if undecodable > 0 {
            metrics::counter!(m::EVENTS_UNDECODABLE, &labels).increment(undecodable);
            warn!(chain = %chain, from = next, to, undecodable, "stored undecodable logs");
        }
        metrics::gauge!(m::CHECKPOINT_HEIGHT, &labels).set(to as f64);
        metrics::gauge!(m::HEAD_LAG, &labels).set(head.height.saturating_sub(to) as f64);
        debug!(chain = %chain, from = next, to, inserted = outcome.inserted, duplicates = outcome.duplicates, "range committed");
        Ok(StepOutcome::Ingested {
            from: next,
            to,
            inserted: outcome.inserted + outcome.restored,
            duplicates: outcome.duplicates,
        })
    }

    /// Finds the newest stored block that is still canonical and rewinds to it.
    async fn rewind(&self, checkpoint_height: u64) -> Result<StepOutcome, FollowError> {
        let chain = self.chain().clone();
        let stored = self
            .store
            .recent_blocks(&chain, checkpoint_height, RETAINED_BLOCKS_MAX)
            .await?;
        for block in &stored {
            let canonical = self.source.block(block.height).await?;
            if canonical.map(|c| c.hash) == Some(block.hash.clone()) {
                let outcome = self.store.rewind(&chain, block).await?;
                let labels = [("chain", chain.to_string())];
                metrics::counter!(m::REORGS, &labels).increment(1);
                metrics::counter!(m::EVENTS_RETRACTED, &labels).increment(outcome.retracted);
                warn!(
                    chain = %chain,
                    from = outcome.from_height,
                    ancestor = block.height,
                    retracted = outcome.retracted,
                    "reorg detected; rewound to common ancestor"
                );
                return Ok(StepOutcome::Rewound {
                    from: outcome.from_height,
                    to: block.height,
                    retracted: outcome.retracted,
                });
            }
        }
        Err(FollowError::ReorgTooDeep {
            chain,
            height: checkpoint_height,
            depth: stored.len(),
        })
    }
}
