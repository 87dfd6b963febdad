//! [`BlockSource`] for EVM chains.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ethers::providers::{Middleware, Provider};
use ethers::types::{Block, BlockId, BlockNumber, Filter, H256};
use meridian_types::config::FinalityRule;
use meridian_types::{BlockRef, ChainEvent, ChainId};
use tracing::warn;

use super::decode::EvmDecoder;
use super::{PoliteHttp, RpcPool};
use crate::endpoint_watch::{EndpointWatch, Probe, ProbeAnswer};
use crate::source::{BlockSource, SourceError};

/// Reads one EVM chain through an [`RpcPool`].
pub struct EvmSource {
    chain: ChainId,
    pool: Arc<RpcPool>,
    /// Chain id and frozen-head checks of every endpoint while the chain is followed.
    watch: Option<EndpointWatch>,
    finality: FinalityRule,
    decoder: EvmDecoder,
}

impl EvmSource {
    /// A source over `pool` that emits only blocks final under `finality`.
    pub fn new(pool: Arc<RpcPool>, finality: FinalityRule, decoder: EvmDecoder) -> EvmSource {
        EvmSource {
            chain: pool.chain().clone(),
            watch: pool
                .chain()
                .evm_chain_id()
                .map(|id| EndpointWatch::new(id.to_string())),
            pool,
            finality,
            decoder,
        }
    }

    fn block_ref(&self, b: Block<H256>) -> Result<BlockRef, SourceError> {
        let malformed = |what: &str| SourceError::Malformed {
            chain: self.chain.clone(),
            message: format!("mined block without {what}"),
        };
        Ok(BlockRef {
            height: b.number.ok_or_else(|| malformed("number"))?.as_u64(),
            hash: format!("{:#x}", b.hash.ok_or_else(|| malformed("hash"))?),
            parent_hash: Some(format!("{:#x}", b.parent_hash)),
        })
    }

    async fn get_block(
        &self,
        method: &'static str,
        id: BlockId,
    ) -> Result<Option<BlockRef>, SourceError> {
        let block = self
            .pool
            .call(method, move |p| async move { p.get_block(id).await })
            .await?;
        block.map(|b| self.block_ref(b)).transpose()
    }
}

/// Asks an EVM endpoint for `eth_chainId` and `eth_blockNumber`.
struct EvmProbe;

impl Probe<Provider<PoliteHttp>> for EvmProbe {
    async fn probe(&self, client: &Provider<PoliteHttp>, timeout: Duration) -> ProbeAnswer {
        let id = tokio::time::timeout(timeout, client.get_chainid())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|id| id.to_string());
        let head = tokio::time::timeout(timeout, client.get_block_number())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|h| h.as_u64());
        (id, head)
    }
}

#[async_trait]
impl BlockSource for EvmSource {
    fn chain(&self) -> &ChainId {
        &self.chain
    }

    async fn head(&self) -> Result<BlockRef, SourceError> {
        if let Some(watch) = &self.watch {
            watch.head_read(&self.pool, &EvmProbe).await;
        }
        self.get_block(
            "eth_getBlockByNumber(latest)",
            BlockId::Number(BlockNumber::Latest),
        )
        .await?
        .ok_or_else(|| SourceError::Malformed {
            chain: self.chain.clone(),
            message: "node has no latest block".into(),
        })
    }

    async fn final_height(&self, head: &BlockRef) -> Result<u64, SourceError> {
        match self.finality {
            FinalityRule::Confirmations(n) => Ok(head.height.saturating_sub(n)),
            FinalityRule::FinalizedTag => Ok(self
                .get_block(
                    "eth_getBlockByNumber(finalized)",
                    BlockId::Number(BlockNumber::Finalized),
                )
                .await?
                .map(|b| b.height)
                .unwrap_or(0)),
        }
    }

    async fn block(&self, height: u64) -> Result<Option<BlockRef>, SourceError> {
        self.get_block(
            "eth_getBlockByNumber",
            BlockId::Number(BlockNumber::Number(height.into())),
        )
        .await
    }

    async fn events(&self, from: u64, to: u64) -> Result<Vec<ChainEvent>, SourceError> {
        let addresses = self.decoder.addresses();
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let filter = Filter::new()
            .address(addresses)
            .topic0(self.decoder.topics())
            .from_block(from)
            .to_block(to);
        let logs = self
            .pool
            .call("eth_getLogs", |p| {
                let filter = filter.clone();
                async move { p.get_logs(&filter).await }
            })
            .await?;
        let mut events = Vec::with_capacity(logs.len());
        for log in &logs {
            match self.decoder.decode(log) {
                Some(e) if (from..=to).contains(&e.id.block_number) => events.push(e),
                Some(e) => {
                    return Err(SourceError::Malformed {
                        chain: self.chain.clone(),
                        message: format!(
                            "eth_getLogs({from}..={to}) returned a log of block {}",
                            e.id.block_number
                        ),
                    })
                }
                None if log.removed == Some(true) => {}
                None => {
                    warn!(chain = %self.chain, tx = ?log.transaction_hash, "log without block position skipped")
                }
            }
        }
        events.sort_by_key(|e| (e.id.block_number, e.id.index));
        Ok(events)
    }
}
