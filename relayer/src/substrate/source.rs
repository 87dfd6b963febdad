//! [`BlockSource`] for Substrate chains: best and GRANDPA-finalized heads, block hashes by height,
//! and each block's extrinsics and `System.Events` decoded with the metadata of the runtime that
//! produced them (fetched at the parent block and cached by spec version, so a runtime upgrade
//! reloads it).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use meridian_types::{BlockRef, ChainEvent, ChainId};
use serde::Deserialize;
use sp_core::{Bytes, H256};
use substrate_api_client::ac_compose_macros::rpc_params;
use substrate_api_client::ac_node_api::Metadata;
use substrate_api_client::ac_primitives::{BlakeTwo256, RuntimeVersion};
use tracing::info;

use super::actor::{Session, SubstrateRpc};
use super::decode::{
    decode_events, decode_extrinsic, metadata_from_bytes, BlockFacts, SubstrateDecoder,
};
use crate::source::{BlockSource, SourceError};

/// A block header as the node's JSON-RPC writes it.
pub type Header = sp_runtime::generic::Header<u32, BlakeTwo256>;

#[derive(Deserialize)]
struct RpcSignedBlock {
    block: RpcBlock,
}

#[derive(Deserialize)]
struct RpcBlock {
    header: Header,
    extrinsics: Vec<Bytes>,
}

/// Decoded metadata by runtime spec version.
#[derive(Default)]
pub struct MetadataCache {
    by_spec: Mutex<HashMap<u32, Arc<Metadata>>>,
}

impl MetadataCache {
    /// The metadata of the runtime in force at `at` (the parent of the block being decoded),
    /// fetched once per spec version.
    pub async fn at(&self, session: &Session, at: H256) -> Result<(u32, Arc<Metadata>), String> {
        let version: RuntimeVersion = session
            .request("state_getRuntimeVersion", rpc_params![at])
            .await?;
        let spec = version.spec_version;
        if let Some(md) = self.lock().get(&spec) {
            return Ok((spec, md.clone()));
        }
        let raw: Bytes = session
            .request("state_getMetadata", rpc_params![at])
            .await?;
        let md = Arc::new(metadata_from_bytes(&raw.0)?);
        let mut cache = self.lock();
        if !cache.is_empty() {
            info!(chain = %session.chain(), spec_version = spec, "runtime upgraded; metadata reloaded");
        }
        cache.insert(spec, md.clone());
        Ok((spec, md))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Metadata>>> {
        self.by_spec.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `System.Events` storage key.
fn events_key() -> String {
    let mut key = sp_core::hashing::twox_128(b"System").to_vec();
    key.extend(sp_core::hashing::twox_128(b"Events"));
    format!("0x{}", ethers::utils::hex::encode(&key))
}

/// 0x-hex of a hash, as stored.
pub fn hash_str(h: &H256) -> String {
    format!("0x{}", ethers::utils::hex::encode(h.as_bytes()))
}

/// The canonical hash at `height`, if the chain is that high.
pub async fn block_hash(session: &Session, height: u64) -> Result<Option<H256>, String> {
    let Ok(h) = u32::try_from(height) else {
        return Ok(None);
    };
    session.request("chain_getBlockHash", rpc_params![h]).await
}

/// The header of block `hash`.
pub async fn header(session: &Session, hash: Option<H256>) -> Result<Option<Header>, String> {
    session.request("chain_getHeader", rpc_params![hash]).await
}

/// Hashes (blake2-256 of the encoding, as `author_submitExtrinsic` names them) of the
/// extrinsics of the block at `height`.
pub async fn extrinsic_hashes(session: &Session, height: u64) -> Result<Option<Vec<H256>>, String> {
    let Some(hash) = block_hash(session, height).await? else {
        return Ok(None);
    };
    let block: Option<RpcSignedBlock> =
        session.request("chain_getBlock", rpc_params![hash]).await?;
    Ok(block.map(|b| {
        b.block
            .extrinsics
            .iter()
            .map(|x| H256(sp_core::hashing::blake2_256(&x.0)))
            .collect()
    }))
}

pub(super) async fn block_facts(
    session: Rc<Session>,
    cache: Arc<MetadataCache>,
    height: u64,
) -> Result<Option<BlockFacts>, String> {
    let Some(hash) = block_hash(&session, height).await? else {
        return Ok(None);
    };
    let Some(signed): Option<RpcSignedBlock> =
        session.request("chain_getBlock", rpc_params![hash]).await?
    else {
        return Ok(None);
    };
    if height == 0 {
        // Genesis executes nothing: no extrinsics, no events.
        return Ok(Some(BlockFacts {
            height,
            hash: hash_str(&hash),
            extrinsics: Vec::new(),
            events: Vec::new(),
            events_error: None,
        }));
    }
    let (_, md) = cache.at(&session, signed.block.header.parent_hash).await?;
    let extrinsics = signed
        .block
        .extrinsics
        .iter()
        .map(|x| decode_extrinsic(&md, &x.0))
        .collect();
    let events: Option<Bytes> = session
        .request("state_getStorage", rpc_params![events_key(), hash])
        .await?;
    let (events, events_error) = decode_events(&md, events.map(|b| b.0).unwrap_or_default());
    Ok(Some(BlockFacts {
        height,
        hash: hash_str(&hash),
        extrinsics,
        events,
        events_error,
    }))
}

/// Reads one Substrate chain.
pub struct SubstrateSource {
    chain: ChainId,
    rpc: SubstrateRpc,
    decoder: Arc<SubstrateDecoder>,
    cache: Arc<MetadataCache>,
}

impl SubstrateSource {
    /// A source reading through `rpc`, normalising with `decoder`.
    pub fn new(
        rpc: SubstrateRpc,
        decoder: SubstrateDecoder,
        cache: Arc<MetadataCache>,
    ) -> SubstrateSource {
        SubstrateSource {
            chain: rpc.chain().clone(),
            rpc,
            decoder: Arc::new(decoder),
            cache,
        }
    }

    /// The decoder, for account formatting.
    pub fn decoder(&self) -> &SubstrateDecoder {
        &self.decoder
    }
}

#[async_trait]
impl BlockSource for SubstrateSource {
    fn chain(&self) -> &ChainId {
        &self.chain
    }

    async fn head(&self) -> Result<BlockRef, SourceError> {
        let header = self
            .rpc
            .call("chain_getHeader", |s| async move { header(&s, None).await })
            .await?;
        let header = header.ok_or_else(|| SourceError::Malformed {
            chain: self.chain.clone(),
            message: "node has no best block".into(),
        })?;
        Ok(BlockRef {
            height: header.number.into(),
            hash: hash_str(&header.hash()),
            parent_hash: Some(hash_str(&header.parent_hash)),
        })
    }

    async fn final_height(&self, _head: &BlockRef) -> Result<u64, SourceError> {
        let number = self
            .rpc
            .call("chain_getFinalizedHead", |s| async move {
                let hash: H256 = s.request("chain_getFinalizedHead", rpc_params![]).await?;
                Ok(header(&s, Some(hash)).await?.map(|h| u64::from(h.number)))
            })
            .await?;
        Ok(number.unwrap_or(0))
    }

    async fn block(&self, height: u64) -> Result<Option<BlockRef>, SourceError> {
        let header = self
            .rpc
            .call("chain_getBlockHash", move |s| async move {
                match block_hash(&s, height).await? {
                    Some(hash) => Ok(header(&s, Some(hash)).await?.map(|h| (hash, h))),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(header.map(|(hash, h)| BlockRef {
            height: h.number.into(),
            hash: hash_str(&hash),
            parent_hash: Some(hash_str(&h.parent_hash)),
        }))
    }

    async fn events(&self, from: u64, to: u64) -> Result<Vec<ChainEvent>, SourceError> {
        let (cache, decoder) = (self.cache.clone(), self.decoder.clone());
        // Fetch and decode on the chain's thread: SCALE decoding stays off the shared runtime.
        let events = self
            .rpc
            .call("blocks", move |s| {
                let (cache, decoder) = (cache.clone(), decoder.clone());
                async move {
                    let mut events = Vec::new();
                    for height in from..=to {
                        let Some(facts) = block_facts(s.clone(), cache.clone(), height).await?
                        else {
                            return Err(format!(
                                "block {height} vanished while its range was read"
                            ));
                        };
                        events.extend(decoder.decode_block(&facts));
                    }
                    Ok(events)
                }
            })
            .await?;
        Ok(events)
    }
}
