//! Test support: a real anvil with Meridian's contracts, or a loud skip outside CI.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ethers::providers::{Http, Middleware, Provider};
use meridian_node::devnet::{self, DevChain};
use meridian_relayer::evm::{self, EvmSource};
use meridian_relayer::{ChainFollower, FollowerSettings, StepOutcome};
use meridian_storage::Store;
use meridian_types::config::{ChainConfig, FinalityRule};
use tokio::sync::Notify;

#[path = "skip.rs"]
pub mod skip;

/// The anvil binary, or `None` (a recorded skip) when it is missing outside CI; fails under CI.
pub fn anvil_or_skip() -> Option<PathBuf> {
    let found = devnet::find_anvil();
    if found.is_none() {
        skip::skip(
            None,
            "anvil",
            "run tools/install.sh (npm) or set MERIDIAN_ANVIL",
        );
    }
    found
}

/// A fresh automining anvil with the contracts deployed.
pub async fn dev_chain(anvil: &std::path::Path, chain_id: u64) -> DevChain {
    let port = devnet::free_port().unwrap();
    devnet::start_chain(anvil, port, chain_id, None, None)
        .await
        .unwrap()
}

/// A SQLite store in `dir`.
pub async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("m.sqlite").display()
    ))
    .await
    .unwrap();
    store.migrate_up().await.unwrap();
    store
}

/// The watcher config of `chain` with the given finality and range.
pub fn config(chain: &DevChain, confirmations: u64, range_max: u64) -> ChainConfig {
    let mut c = chain.chain_config("test").unwrap();
    c.finality = FinalityRule::Confirmations(confirmations);
    c.log_range_max = range_max;
    c.rpc_timeout_ms = 2_000;
    c
}

/// A follower for `config`, registered in `store`.
pub async fn follower(config: &ChainConfig, store: &Store) -> ChainFollower<EvmSource> {
    let source = evm::connect(0, config).await.unwrap();
    store
        .register_chain(&config.id, &config.name, meridian_types::ChainFamily::Evm)
        .await
        .unwrap();
    ChainFollower::new(
        source,
        store.clone(),
        FollowerSettings {
            start_block: config.start_block,
            range_max: config.log_range_max,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
        },
        Arc::new(Notify::new()),
    )
}

/// Steps until caught up; returns every outcome.
pub async fn drain(f: &ChainFollower<EvmSource>) -> Vec<StepOutcome> {
    let mut out = Vec::new();
    for _ in 0..500 {
        let o = f.step().await.unwrap();
        let done = matches!(o, StepOutcome::CaughtUp { .. });
        out.push(o);
        if done {
            return out;
        }
    }
    panic!("follower did not catch up in 500 steps: {:?}", out.last());
}

/// Mines `n` empty blocks.
pub async fn mine(chain: &DevChain, n: u64) {
    let p = Provider::<Http>::try_from(chain.anvil.http_url()).unwrap();
    let _: serde_json::Value = p
        .request("anvil_mine", [ethers::types::U256::from(n)])
        .await
        .unwrap();
}

/// The current head height.
pub async fn head(chain: &DevChain) -> u64 {
    let p = Provider::<Http>::try_from(chain.anvil.http_url()).unwrap();
    p.get_block_number().await.unwrap().as_u64()
}
