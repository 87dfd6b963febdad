//! Start-up of an EVM chain from its configuration, refusing misconfiguration early.

use std::sync::Arc;
use std::time::Duration;

use ethers::providers::{Middleware, Provider};
use meridian_types::config::ChainConfig;
use tracing::{info, warn};

use super::decode::EvmDecoder;
use super::source::EvmSource;
use super::transport::PoliteHttp;
use super::RpcPool;
use crate::rpc_pool::endpoint_label;

/// A chain whose configuration does not match reality; start-up stops with it.
#[derive(Debug, thiserror::Error)]
#[error("chain {chain} ({key}): {message}")]
pub struct ChainStartupError {
    /// The chain's CAIP-2 id.
    pub chain: String,
    /// The config key at fault, e.g. `chains[0].rpc_urls[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The endpoint pool of an EVM chain: its `rpc_urls` in failover order, each request limited to
/// `rpc_timeout_ms`. Watchers, payouts and governance reads each build theirs from this.
pub fn endpoint_pool(config: &ChainConfig) -> RpcPool {
    let clients = config
        .rpc_urls
        .iter()
        .map(|u| (u.clone(), Provider::new(PoliteHttp::new(u.clone()))))
        .collect();
    RpcPool::new(
        config.id.clone(),
        clients,
        Duration::from_millis(config.rpc_timeout_ms),
    )
}

/// Checks every RPC endpoint of `config` (the chain at `index` in the config) and builds its
/// source: an endpoint that reports another chain id is an error; unreachable endpoints are
/// tolerated as long as one answers, since failover covers them later.
pub async fn connect(index: usize, config: &ChainConfig) -> Result<EvmSource, ChainStartupError> {
    let err = |key: String, message: String| ChainStartupError {
        chain: config.id.to_string(),
        key,
        message,
    };
    let expected = config.id.evm_chain_id().ok_or_else(|| {
        err(
            format!("chains[{index}].id"),
            "not an eip155 chain id".into(),
        )
    })?;
    let pool = endpoint_pool(config);
    let mut reachable = 0;
    let mut failures = Vec::new();
    for (j, url) in config.rpc_urls.iter().enumerate() {
        let key = format!("chains[{index}].rpc_urls[{j}]");
        let Some(provider) = pool.client(j) else {
            continue;
        };
        let answer = tokio::time::timeout(
            Duration::from_millis(config.rpc_timeout_ms),
            provider.get_chainid(),
        )
        .await;
        match answer {
            Ok(Ok(id)) if id == expected.into() => {
                reachable += 1;
                info!(chain = %config.id, endpoint = %endpoint_label(url), "RPC endpoint verified");
            }
            Ok(Ok(id)) => {
                return Err(err(
                    key,
                    format!(
                        "node at {} reports chain id {id}, expected {expected}",
                        endpoint_label(url)
                    ),
                ))
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
    }
    if reachable == 0 {
        return Err(err(
            format!("chains[{index}].rpc_urls"),
            format!("no RPC endpoint answered: {}", failures.join("; ")),
        ));
    }
    let decoder = EvmDecoder::new(config.id.clone(), &config.contracts)
        .map_err(|e| err(format!("chains[{index}].contracts"), e.to_string()))?;
    Ok(EvmSource::new(Arc::new(pool), config.finality, decoder))
}
