//! EVM chains through ethers: JSON-RPC with failover, log decoding, head subscription, and
//! payouts (the escrow's `release` and `refund`, signed locally with nonces from one
//! [`NonceAuthority`] per signer).

mod chain;
mod decode;
mod heads;
mod nonce;
mod source;
mod submit;
mod transport;

pub use crate::endpoint_watch::CHECK_EVERY_HEADS_MAX;
pub use chain::{connect, endpoint_pool, ChainStartupError};
pub use decode::{DecoderError, EvmDecoder};
pub use heads::spawn_head_subscription;
/// The endpoint pool of an EVM chain.
pub type RpcPool = crate::rpc_pool::RpcPool<ethers::providers::Provider<PoliteHttp>>;
pub use nonce::NonceAuthority;
pub use source::EvmSource;
pub use submit::{
    describe_revert, EscrowCall, EscrowRelease, EvmSubmitter, Mined, SubmitError, BATCH_GAS_BASE,
    BATCH_GAS_PER_RELEASE, CALL_GAS_FALLBACK,
};
pub use transport::{PoliteHttp, TransportError, RETRY_AFTER_MAX};
