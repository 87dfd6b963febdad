//! CometBFT / Cosmos SDK chains through tendermint-rpc: `/status`, `/block` and
//! `/block_results` with failover, Cosmos SDK event normalisation in both attribute encodings,
//! new-block notifications over the websocket, and bank-send delivery.

mod chain;
mod decode;
mod heads;
mod source;
mod submit;

pub use chain::{connect, http_pool, CometChain};
pub use decode::{event_index, parse_vote_options, BlockEvents, CosmosDecoder, Origin};
pub use heads::spawn_block_subscription;
pub use source::{tx_hash, CometProbe, CometRpcPool, CometSource};
pub use submit::{
    address_of, sign_bank_send, signing_key, CosmosSubmitError, CosmosSubmitter, CosmosTxStatus,
    FeeSettings, SignedTx,
};
pub use tendermint_rpc::client::CompatMode;
