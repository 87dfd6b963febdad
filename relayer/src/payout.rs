//! Payouts on account-based chains (Cosmos SDK, Substrate), where the relay's escrow is an account
//! rather than a contract that remembers what it paid.
//!
//! Exactly once without an escrow contract: every payout carries a marker
//! ([`PayoutMarker`]: `meridian:payout <transfer id>` as the Cosmos memo or a Substrate remark in
//! the same `batch_all`), which the chain's watcher turns into a `Released`/`Refunded` event; and
//! every payout transaction is valid only until a height ([`PAYOUT_VALIDITY_BLOCKS`] ahead: the
//! Cosmos `timeout_height`, the Substrate mortal era). The node records the signed transaction's
//! hash and that height *before* broadcasting it, so after any crash it either finds the marker
//! event, or waits until the height has passed final without it — only then can a payout be sent
//! again, because the first can no longer land.

use async_trait::async_trait;
use meridian_types::{AssetId, ChainId, PayoutMarker};

use crate::source::SourceError;

/// Blocks a payout transaction stays valid for.
pub const PAYOUT_VALIDITY_BLOCKS: u64 = 64;

/// A payout to make from the escrow account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Delivery or refund of which transfer.
    pub marker: PayoutMarker,
    /// What to pay.
    pub asset: AssetId,
    /// Who gets it, in the chain's own address format.
    pub to: String,
    /// Base units.
    pub amount: u128,
}

/// A signed payout, not yet broadcast.
#[derive(Debug, Clone)]
pub struct PreparedPayout {
    /// The transaction's hash, as the chain names it.
    pub tx: String,
    /// The last height at which it can be included.
    pub valid_until: u64,
    /// The signed bytes.
    pub bytes: Vec<u8>,
}

/// What the chain says about a payout transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inclusion {
    /// Not seen in a final block (yet).
    Unknown,
    /// Included and succeeded at this height.
    Succeeded {
        /// The including block.
        height: u64,
    },
    /// Included but failed: nothing was paid.
    Failed {
        /// The including block.
        height: u64,
        /// The chain's reason.
        reason: String,
    },
}

/// Why a payout could not be prepared or sent.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    /// The chain could not be reached; worth retrying.
    #[error(transparent)]
    Rpc(#[from] SourceError),
    /// The asset, address or amount cannot be paid on this chain.
    #[error("invalid payout: {0}")]
    Invalid(String),
    /// The chain refused the transaction.
    #[error("payout refused: {0}")]
    Refused(String),
}

/// Pays out from an escrow account on one chain.
#[async_trait]
pub trait AccountPayouts: Send + Sync {
    /// The chain.
    fn chain(&self) -> &ChainId;

    /// Signs `payout` (reserving the account's next sequence/nonce) without sending it.
    async fn prepare(&self, payout: &Payout) -> Result<PreparedPayout, PayoutError>;

    /// Sends a prepared payout to the chain's mempool.
    async fn broadcast(&self, prepared: &PreparedPayout) -> Result<(), PayoutError>;

    /// The chain's latest final height.
    async fn final_height(&self) -> Result<u64, PayoutError>;

    /// Whether transaction `tx`, valid until `valid_until`, is in a final block, and how it went.
    async fn inclusion(&self, tx: &str, valid_until: u64) -> Result<Inclusion, PayoutError>;
}
