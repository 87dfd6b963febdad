//! Test support: a relay between two anvil chains for the several-node tests — the devnet
//! configuration over them on a given database (final at inclusion, polled every 200 ms), chain
//! B's escrow funded with the relay's stablecoin, and a user on chain A holding stablecoin with
//! the escrow approved.

#![allow(dead_code)]

use ethers::types::Address;
use meridian_node::devnet::stack::{dev_client, Stack, StackClient};
use meridian_node::devnet::{dev_address, devnet_config, DevChain};
use meridian_types::config::{ChainConfig, Config, ContractKind, FinalityRule};
use meridian_types::AssetId;

/// The relay's chains, as the tests use them.
pub struct RelayChains {
    /// The node configuration (no `[cluster]` yet; the tests add it per node).
    pub config: Config,
    /// Chain B's deployer: mints and reads balances there.
    pub owner_b: StackClient,
    /// The user locking remittances on chain A.
    pub user: StackClient,
    /// Chain B's escrow.
    pub escrow_b: Address,
    /// Chain B's RPC URL.
    pub rpc_b: String,
    /// The stablecoin on chain B (what remittances pay out).
    pub stable_b: AssetId,
}

fn token(asset: &AssetId) -> Address {
    asset.as_str().rsplit_once(':').unwrap().1.parse().unwrap()
}

fn escrow(c: &ChainConfig) -> Address {
    c.contracts
        .iter()
        .find(|x| x.kind == ContractKind::BridgeEscrow)
        .unwrap()
        .address
        .parse()
        .unwrap()
}

/// Sets the relay up over `chains` (31337 and 31338) with `database_url`.
pub async fn relay_chains(chains: &[DevChain; 2], database_url: String) -> RelayChains {
    let mut config = devnet_config(chains, database_url, "127.0.0.1:0".into()).unwrap();
    for c in &mut config.chains {
        c.finality = FinalityRule::Confirmations(0);
        c.poll_interval_ms = 200;
    }
    let (a, b) = (config.chains[0].clone(), config.chains[1].clone());
    let (stable_a, stable_b) = (config.assets[1].id.clone(), config.assets[3].id.clone());
    let cbdc = token(&config.assets[2].id);
    let stack = |c: &ChainConfig, asset: &AssetId| Stack {
        cbdc,
        stablecoin: token(asset),
        escrow: escrow(c),
    };
    let rpc = |c: &ChainConfig| c.rpc_urls[0].to_string();
    let owner_b = StackClient::new(
        &stack(&b, &stable_b),
        dev_client(&rpc(&b), 31_338, 0).unwrap(),
    )
    .unwrap();
    owner_b
        .mint_stable(escrow(&b), 1_000_000 * 1_000_000)
        .await
        .unwrap();
    let owner_a = StackClient::new(
        &stack(&a, &stable_a),
        dev_client(&rpc(&a), 31_337, 0).unwrap(),
    )
    .unwrap();
    owner_a
        .mint_stable(dev_address(1).unwrap(), 1_000_000 * 1_000_000)
        .await
        .unwrap();
    let user = StackClient::new(
        &stack(&a, &stable_a),
        dev_client(&rpc(&a), 31_337, 1).unwrap(),
    )
    .unwrap();
    user.approve_escrow().await.unwrap();
    RelayChains {
        escrow_b: escrow(&b),
        rpc_b: rpc(&b),
        config,
        owner_b,
        user,
        stable_b,
    }
}

/// Locks remittance `n` on chain A for `to` on chain B: `n` units of the stablecoin, due within
/// the hour.
pub async fn lock_remittance(user: &StackClient, dest: &AssetId, n: u32, to: &str) {
    let deadline = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp() as u64;
    user.lock(
        1_000_000 * u128::from(n),
        "eip155:31338",
        to,
        dest.as_str(),
        deadline,
    )
    .await
    .unwrap();
}

/// Steady traffic on chain A: a remittance every `every` (for `recipient(n)`), at least
/// `at_least` of them and on until `stop` turns true; the task returns how many it locked.
pub fn steady_traffic(
    user: StackClient,
    dest: AssetId,
    at_least: u32,
    every: std::time::Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    recipient: fn(u32) -> String,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut n = 0;
        while n < at_least || !*stop.borrow() {
            n += 1;
            lock_remittance(&user, &dest, n, &recipient(n)).await;
            tokio::time::sleep(every).await;
        }
        n
    })
}
