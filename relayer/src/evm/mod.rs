//! EVM chains through ethers: JSON-RPC with failover, log decoding, head subscription, and
//! delivery (the escrow's `release`).

mod chain;
mod decode;
mod heads;
mod rpc;
mod source;
mod submit;

pub use chain::{connect, ChainStartupError};
pub use decode::{DecoderError, EvmDecoder};
pub use heads::spawn_head_subscription;
pub use rpc::RpcPool;
pub use source::EvmSource;
pub use submit::{EvmSubmitter, ReleaseStatus, SubmitError};
