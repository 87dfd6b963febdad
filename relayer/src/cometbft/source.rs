//! [`BlockSource`] for CometBFT chains: `/status` for the head, `/block` for hashes, transaction
//! bytes (hashes, memos) and time, `/block_results` for events.
//!
//! CometBFT blocks are final once committed, so the final height is the head.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use meridian_types::{BlockRef, ChainEvent, ChainId};
use sha2::{Digest, Sha256};
use tendermint::block::Height;
use tendermint_rpc::{Client, HttpClient};

use super::decode::{BlockEvents, CosmosDecoder, Origin};
use crate::endpoint_watch::{EndpointWatch, Probe, ProbeAnswer};
use crate::rpc_pool::RpcPool;
use crate::source::{BlockSource, SourceError};

/// The endpoint pool of a CometBFT chain.
pub type CometRpcPool = RpcPool<HttpClient>;

/// Reads one CometBFT chain.
pub struct CometSource {
    chain: ChainId,
    pool: Arc<CometRpcPool>,
    /// Network and frozen-head checks of every endpoint while the chain is followed.
    watch: EndpointWatch,
    decoder: CosmosDecoder,
}

/// Asks a CometBFT endpoint for `/status`: the network it serves and its latest height.
pub struct CometProbe;

impl Probe<HttpClient> for CometProbe {
    async fn probe(&self, client: &HttpClient, timeout: Duration) -> ProbeAnswer {
        match tokio::time::timeout(timeout, client.status()).await {
            Ok(Ok(status)) => (
                Some(status.node_info.network.to_string()),
                Some(status.sync_info.latest_block_height.value()),
            ),
            _ => (None, None),
        }
    }
}

/// What CometBFT answers for a height above its head (`/block`, `/block_results`).
fn is_above_head(e: &tendermint_rpc::Error) -> bool {
    e.to_string()
        .contains("must be less than or equal to the current blockchain height")
}

/// The memo of a Cosmos SDK transaction; `None` for bytes that are not one (kvstore apps,
/// other ABCI apps).
fn tx_memo(bytes: &[u8]) -> Option<String> {
    cosmrs::Tx::from_bytes(bytes).ok().map(|tx| tx.body.memo)
}

/// CometBFT's name for a transaction: the upper-case hex SHA-256 of its bytes.
pub fn tx_hash(bytes: &[u8]) -> String {
    ethers::utils::hex::encode_upper(Sha256::digest(bytes))
}

impl CometSource {
    /// A source over `pool` decoding with `decoder`.
    pub fn new(pool: Arc<CometRpcPool>, decoder: CosmosDecoder) -> CometSource {
        CometSource {
            chain: pool.chain().clone(),
            watch: EndpointWatch::new(pool.chain().reference()),
            pool,
            decoder,
        }
    }

    async fn get_block(
        &self,
        height: u64,
    ) -> Result<Option<tendermint_rpc::endpoint::block::Response>, SourceError> {
        let Ok(h) = Height::try_from(height) else {
            return Ok(None);
        };
        if height == 0 {
            return Ok(None);
        }
        self.pool
            .call("block", move |c| async move {
                match c.block(h).await {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if is_above_head(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn block_events(&self, height: u64) -> Result<Option<BlockEvents>, SourceError> {
        let Some(block) = self.get_block(height).await? else {
            return Ok(None);
        };
        let h = block.block.header.height;
        let results = self
            .pool
            .call("block_results", move |c| async move {
                match c.block_results(h).await {
                    Ok(r) => Ok(Some(r)),
                    Err(e) if is_above_head(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let Some(results) = results else {
            return Ok(None);
        };
        let txs = &block.block.data;
        let tx_results = results.txs_results.unwrap_or_default();
        if tx_results.len() != txs.len() {
            return Err(SourceError::Malformed {
                chain: self.chain.clone(),
                message: format!(
                    "block {height} has {} transactions but {} results",
                    txs.len(),
                    tx_results.len()
                ),
            });
        }
        let mut groups = Vec::with_capacity(tx_results.len() + 3);
        groups.push((
            Origin::BeginBlock,
            results.begin_block_events.unwrap_or_default(),
        ));
        for (bytes, result) in txs.iter().zip(tx_results) {
            groups.push((
                Origin::Tx {
                    hash: tx_hash(bytes),
                    memo: tx_memo(bytes),
                    code: result.code.value(),
                },
                result.events,
            ));
        }
        groups.push((
            Origin::EndBlock,
            results.end_block_events.unwrap_or_default(),
        ));
        groups.push((Origin::FinalizeBlock, results.finalize_block_events));
        Ok(Some(BlockEvents {
            height,
            hash: block.block_id.hash.to_string(),
            time: u64::try_from(block.block.header.time.unix_timestamp()).unwrap_or(0),
            groups,
        }))
    }

    /// The decoder, for tests and start-up logs.
    pub fn decoder(&self) -> &CosmosDecoder {
        &self.decoder
    }
}

#[async_trait]
impl BlockSource for CometSource {
    fn chain(&self) -> &ChainId {
        &self.chain
    }

    async fn head(&self) -> Result<BlockRef, SourceError> {
        self.watch.head_read(&self.pool, &CometProbe).await;
        let status = self
            .pool
            .call("status", |c| async move { c.status().await })
            .await?;
        Ok(BlockRef {
            height: status.sync_info.latest_block_height.value(),
            hash: status.sync_info.latest_block_hash.to_string(),
            parent_hash: None,
        })
    }

    async fn final_height(&self, head: &BlockRef) -> Result<u64, SourceError> {
        // Instant finality: a committed block is never reverted.
        Ok(head.height)
    }

    async fn block(&self, height: u64) -> Result<Option<BlockRef>, SourceError> {
        Ok(self.get_block(height).await?.map(|b| BlockRef {
            height: b.block.header.height.value(),
            hash: b.block_id.hash.to_string(),
            parent_hash: b.block.header.last_block_id.map(|id| id.hash.to_string()),
        }))
    }

    async fn events(&self, from: u64, to: u64) -> Result<Vec<ChainEvent>, SourceError> {
        let mut events = Vec::new();
        for height in from..=to {
            let Some(block) = self.block_events(height).await? else {
                return Err(SourceError::Malformed {
                    chain: self.chain.clone(),
                    message: format!("block {height} vanished while its range was read"),
                });
            };
            events.extend(self.decoder.decode_block(&block));
        }
        Ok(events)
    }
}
