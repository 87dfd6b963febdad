//! Start-up of a Substrate chain: the node must serve the configured chain (CAIP-2 `polkadot:`
//! reference = the first 16 bytes of the genesis hash, in hex), its metadata must decode, and the
//! escrow must be an SS58 address.

use std::sync::Arc;
use std::time::Duration;

use meridian_types::config::{AssetConfig, ChainConfig};
use sp_core::H256;
use tracing::info;

use super::actor::SubstrateRpc;
use super::decode::{ss58_prefix, SubstrateDecoder};
use super::source::{block_hash, hash_str, header, MetadataCache, SubstrateSource};
use super::submit::account_from_ss58;
use crate::evm::ChainStartupError;

/// A connected Substrate chain.
pub struct SubstrateChain {
    /// The block source for the follower.
    pub source: SubstrateSource,
    /// The RPC thread, shared with the head subscription and the submitter.
    pub rpc: SubstrateRpc,
    /// Metadata by spec version, shared with the submitter.
    pub metadata: Arc<MetadataCache>,
    /// The runtime's SS58 prefix.
    pub ss58: u16,
}

/// The CAIP-2 reference of a chain with this genesis hash.
pub fn caip2_reference(genesis: &H256) -> String {
    hash_str(genesis)[2..34].to_owned()
}

/// Connects to the chain `config` (at `chains[index]`); `assets` decides which movements are
/// recorded.
pub async fn connect(
    index: usize,
    config: &ChainConfig,
    assets: &[AssetConfig],
) -> Result<SubstrateChain, ChainStartupError> {
    let err = |key: String, message: String| ChainStartupError {
        chain: config.id.to_string(),
        key,
        message,
    };
    let rpc = SubstrateRpc::start(
        config.id.clone(),
        config.rpc_urls.clone(),
        Duration::from_millis(config.rpc_timeout_ms),
    )
    .map_err(|e| {
        err(
            format!("chains[{index}]"),
            format!("cannot start the RPC thread: {e}"),
        )
    })?;
    let metadata = Arc::new(MetadataCache::default());
    let cache = metadata.clone();
    let (genesis, ss58) = rpc
        .call("genesis and metadata", move |s| {
            let cache = cache.clone();
            async move {
                let genesis = block_hash(&s, 0)
                    .await?
                    .ok_or("the node has no genesis block")?;
                let best = header(&s, None)
                    .await?
                    .ok_or("the node has no best block")?;
                let (_, md) = cache.at(&s, best.hash()).await?;
                Ok((genesis, ss58_prefix(&md)))
            }
        })
        .await
        .map_err(|e| err(format!("chains[{index}].rpc_urls"), e.to_string()))?;
    let reference = caip2_reference(&genesis);
    if reference != config.id.reference() {
        return Err(err(
            format!("chains[{index}].id"),
            format!(
                "the node serves genesis {}, i.e. chain `polkadot:{reference}`",
                hash_str(&genesis)
            ),
        ));
    }
    let escrow = config
        .escrow
        .as_deref()
        .map(account_from_ss58)
        .transpose()
        .map_err(|e| err(format!("chains[{index}].escrow"), e.to_string()))?;
    let watched: Vec<_> = assets
        .iter()
        .filter(|a| a.id.chain() == config.id)
        .map(|a| a.id.clone())
        .collect();
    info!(chain = %config.id, genesis = %hash_str(&genesis), ss58, "Substrate chain verified");
    let decoder = SubstrateDecoder::new(config.id.clone(), ss58, escrow, &watched);
    Ok(SubstrateChain {
        source: SubstrateSource::new(rpc.clone(), decoder, metadata.clone()),
        rpc,
        metadata,
        ss58,
    })
}
