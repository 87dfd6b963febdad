//! Meridian's relayer: watches chains and turns what happens on them into stored, normalised
//! events, exactly once.
//!
//! The chain-agnostic part ([`follower::ChainFollower`]) owns the hard rules — backfill from the
//! checkpoint, follow the head, emit only final blocks, detect reorgs by the block-hash chain and
//! rewind, commit events and checkpoint atomically. Each chain family implements only the narrow
//! [`source::BlockSource`] capability (heads, blocks, events in a range); EVM lives in [`evm`],
//! CometBFT/Cosmos SDK in [`cometbft`].

pub mod cometbft;
pub mod contracts;
pub mod endpoint_watch;
pub mod evm;
pub mod follower;
pub mod metrics;
pub mod payout;
pub mod rpc_pool;
pub mod source;
pub mod substrate;

pub use follower::{ChainFollower, FollowError, FollowerSettings, StepOutcome};
pub use source::{BlockSource, SourceError};
