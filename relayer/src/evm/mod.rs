//! EVM chains through ethers: JSON-RPC with failover, log decoding, head subscription, and
//! delivery (the escrow's `release`).

mod chain;
mod decode;
mod heads;
mod source;
mod submit;

pub use chain::{connect, ChainStartupError};
pub use decode::{DecoderError, EvmDecoder};
pub use heads::spawn_head_subscription;
/// The endpoint pool of an EVM chain.
pub type RpcPool = crate::rpc_pool::RpcPool<ethers::providers::Provider<ethers::providers::Http>>;
pub use source::EvmSource;
pub use submit::{EvmSubmitter, ReleaseStatus, SubmitError};
