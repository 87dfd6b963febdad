//! Substrate chains through substrate-api-client (jsonrpsee): GRANDPA-finalized heads, events
//! and extrinsics decoded through the runtime's metadata (reloaded on a runtime upgrade),
//! remittance memos from `System.remark_with_event` in a `Utility.batch_all`, and sr25519-signed
//! delivery extrinsics.

mod actor;
mod chain;
mod decode;
mod heads;
mod length_check;
mod source;
mod submit;

pub use actor::{Session, SubstrateRpc};
pub use chain::{caip2_reference, connect, SubstrateChain};
pub use decode::{
    bytes_of, conviction_vote, decode_events, decode_extrinsic, metadata_from_bytes,
    signed_extensions, ss58_prefix, BlockFacts, DecodedEvent, ExtrinsicFacts, SubstrateDecoder,
};
pub use heads::spawn_finalized_heads;
pub use source::{hash_str, Header, MetadataCache, SubstrateSource};
/// A Substrate block hash.
pub type BlockHash = sp_core::H256;
pub use submit::{
    account_from_ss58, asset_create_call, asset_mint_call, batch_all_call, call_index, remark_call,
    sr25519_pair, transfer_call, AssetTxConfig, AssetTxParams, Finality, Included, SubstrateAsset,
    SubstrateSubmitError, SubstrateSubmitter, ASSET_TX_EXTENSIONS,
};
