//! The one capability a chain family must provide to be watched.

use async_trait::async_trait;
use meridian_types::{BlockRef, ChainEvent, ChainId};

/// Why a chain could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Every RPC endpoint failed (time-out, rate limit, garbage); worth retrying later.
    #[error("rpc unavailable for {chain} ({what}): {last_error}")]
    Unavailable {
        /// The chain.
        chain: ChainId,
        /// The request that failed.
        what: &'static str,
        /// The last endpoint's error.
        last_error: String,
    },
    /// The node answered with something that violates the protocol (e.g. a block without hash).
    #[error("malformed answer from {chain}: {message}")]
    Malformed {
        /// The chain.
        chain: ChainId,
        /// What was wrong.
        message: String,
    },
}

/// Read access to one chain, in chain-agnostic terms.
///
/// Implementations retry and fail over between endpoints themselves; an error here means the
/// chain is unreachable for now, and the follower backs off.
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// The chain this source reads.
    fn chain(&self) -> &ChainId;

    /// The current head.
    async fn head(&self) -> Result<BlockRef, SourceError>;

    /// The highest height that is final under the chain's finality rule, given its head.
    async fn final_height(&self, head: &BlockRef) -> Result<u64, SourceError>;

    /// The canonical block at `height`, or `None` above the head.
    async fn block(&self, height: u64) -> Result<Option<BlockRef>, SourceError>;

    /// Every watched event in blocks `from..=to`, in chain order.
    async fn events(&self, from: u64, to: u64) -> Result<Vec<ChainEvent>, SourceError>;
}

#[async_trait]
impl<T: BlockSource + ?Sized> BlockSource for Box<T> {
    fn chain(&self) -> &ChainId {
        (**self).chain()
    }

    async fn head(&self) -> Result<BlockRef, SourceError> {
        (**self).head().await
    }

    async fn final_height(&self, head: &BlockRef) -> Result<u64, SourceError> {
        (**self).final_height(head).await
    }

    async fn block(&self, height: u64) -> Result<Option<BlockRef>, SourceError> {
        (**self).block(height).await
    }

    async fn events(&self, from: u64, to: u64) -> Result<Vec<ChainEvent>, SourceError> {
        (**self).events(from, to).await
    }
}
