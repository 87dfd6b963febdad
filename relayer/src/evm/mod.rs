//! EVM chains through ethers: JSON-RPC with failover, log decoding, head subscription.

mod chain;
mod decode;
mod heads;
mod rpc;
mod source;

pub use chain::{connect, ChainStartupError};
pub use decode::{DecoderError, EvmDecoder};
pub use heads::spawn_head_subscription;
pub use rpc::RpcPool;
pub use source::EvmSource;
