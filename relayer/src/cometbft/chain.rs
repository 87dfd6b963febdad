//! Start-up of a CometBFT chain: every endpoint is asked for `/status`, must serve the
//! configured chain id, and tells which RPC dialect (0.34, 0.37, 0.38) its node speaks.

use std::sync::Arc;
use std::time::Duration;

use meridian_types::config::{AssetConfig, ChainConfig};
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::{Client, HttpClient, HttpClientUrl};
use tracing::{info, warn};

use super::decode::CosmosDecoder;
use super::source::{CometRpcPool, CometSource};
use crate::evm::ChainStartupError;
use crate::rpc_pool::endpoint_label;

/// A connected CometBFT chain: its block source and the dialect its nodes speak (the
/// websocket subscription must speak it too).
pub struct CometChain {
    /// The block source for the follower.
    pub source: CometSource,
    /// The RPC dialect detected at start-up.
    pub compat: CompatMode,
    /// The first height to ingest without a checkpoint: `start_block`, or the node's earliest
    /// kept block when `start_block` is 0 ("from the beginning").
    pub start_block: u64,
}

/// Connects to the chain `config` (at `chains[index]`); `assets` decides which bank denoms are
/// recorded. Fails, naming the key, when no endpoint answers or one serves another chain.
pub async fn connect(
    index: usize,
    config: &ChainConfig,
    assets: &[AssetConfig],
) -> Result<CometChain, ChainStartupError> {
    let err = |key: String, message: String| ChainStartupError {
        chain: config.id.to_string(),
        key,
        message,
    };
    let timeout = Duration::from_millis(config.rpc_timeout_ms);
    let expected = config.id.reference();
    let mut compat = None;
    let mut earliest: Option<u64> = None;
    let mut failures = Vec::new();
    let mut urls = Vec::new();
    for (j, url) in config.rpc_urls.iter().enumerate() {
        let key = format!("chains[{index}].rpc_urls[{j}]");
        let client_url = url
            .as_str()
            .parse::<HttpClientUrl>()
            .map_err(|e| err(key.clone(), e.to_string()))?;
        let probe = HttpClient::builder(client_url.clone())
            .timeout(timeout)
            .build()
            .map_err(|e| err(key.clone(), e.to_string()))?;
        match tokio::time::timeout(timeout, probe.status()).await {
            Ok(Ok(status)) => {
                let network = status.node_info.network.to_string();
                if network != expected {
                    return Err(err(
                        key,
                        format!(
                            "node at {} serves chain `{network}`, expected `{expected}`",
                            endpoint_label(url)
                        ),
                    ));
                }
                let mode = CompatMode::from_version(status.node_info.version.clone())
                    .map_err(|e| err(key.clone(), e.to_string()))?;
                info!(chain = %config.id, endpoint = %endpoint_label(url), version = %status.node_info.version, dialect = %mode, "RPC endpoint verified");
                compat.get_or_insert(mode);
                let first = status.sync_info.earliest_block_height.value().max(1);
                earliest = Some(earliest.map_or(first, |e: u64| e.min(first)));
            }
            Ok(Err(e)) => {
                warn!(chain = %config.id, endpoint = %endpoint_label(url), error = %e, "RPC endpoint unreachable at start-up");
                failures.push(format!("{key}: {e}"));
            }
            Err(_) => {
                warn!(chain = %config.id, endpoint = %endpoint_label(url), "RPC endpoint timed out at start-up");
                failures.push(format!("{key}: timed out"));
            }
        }
        urls.push((url.clone(), client_url));
    }
    let Some(compat) = compat else {
        return Err(err(
            format!("chains[{index}].rpc_urls"),
            format!("no RPC endpoint answered: {}", failures.join("; ")),
        ));
    };
    let earliest = earliest.unwrap_or(1);
    let start_block = match config.start_block {
        0 => earliest,
        n if n < earliest => {
            return Err(err(
                format!("chains[{index}].start_block"),
                format!("the nodes keep blocks from height {earliest} only; set start_block to at least {earliest} or use an archive node"),
            ))
        }
        n => n,
    };
    let mut clients = Vec::with_capacity(urls.len());
    for (j, (url, client_url)) in urls.into_iter().enumerate() {
        let client = HttpClient::builder(client_url)
            .compat_mode(compat)
            .timeout(timeout)
            .build()
            .map_err(|e| err(format!("chains[{index}].rpc_urls[{j}]"), e.to_string()))?;
        clients.push((url, client));
    }
    let pool = Arc::new(CometRpcPool::new(config.id.clone(), clients, timeout));
    let denoms = assets
        .iter()
        .filter(|a| a.id.chain() == config.id)
        .filter_map(|a| a.id.cosmos_denom_of());
    let decoder = CosmosDecoder::new(config.id.clone(), config.escrow.clone(), denoms);
    Ok(CometChain {
        source: CometSource::new(pool, decoder),
        compat,
        start_block,
    })
}

/// A plain endpoint pool for `config` (at `chains[index]`), in the latest dialect: for
/// submitters, which use only endpoints that are the same in every dialect they speak.
pub fn http_pool(
    index: usize,
    config: &ChainConfig,
) -> Result<Arc<CometRpcPool>, ChainStartupError> {
    let timeout = Duration::from_millis(config.rpc_timeout_ms);
    let mut clients = Vec::with_capacity(config.rpc_urls.len());
    for (j, url) in config.rpc_urls.iter().enumerate() {
        let key = format!("chains[{index}].rpc_urls[{j}]");
        let err = |message: String| ChainStartupError {
            chain: config.id.to_string(),
            key: key.clone(),
            message,
        };
        let client_url = url
            .as_str()
            .parse::<HttpClientUrl>()
            .map_err(|e| err(e.to_string()))?;
        let client = HttpClient::builder(client_url)
            .timeout(timeout)
            .build()
            .map_err(|e| err(e.to_string()))?;
        clients.push((url.clone(), client));
    }
    Ok(Arc::new(CometRpcPool::new(
        config.id.clone(),
        clients,
        timeout,
    )))
}
