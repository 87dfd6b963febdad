//! `meridian bench chain`: remittances from a real chain. K locks are mined on anvil (one
//! sender, one recipient per lock, amounts within every limit, all sent before any is awaited), then the `meridian` node itself
//! starts on a fresh SQLite database, backfills them from its checkpoint, and routes and settles
//! each; the figure is events/s from the node's start to the last transfer settled — the
//! watcher, the intake and the settler together, against a real RPC. Deliveries go on after that
//! (they are not counted: releasing on the destination chain is the delivery figure's business).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ethers::providers::Middleware;
use ethers::types::U256;
use meridian_storage::Store;
use meridian_types::TransferState;
use tokio::sync::{oneshot, watch};

use crate::devnet::{
    dev_address, dev_client, devnet_config, find_anvil, free_port, start_chain, StackClient,
};

/// Base units per lock (2 stablecoins of 6 decimals; the devnet corridor's minimum is 1).
const LOCK_AMOUNT: u128 = 2_000_000;
/// Gas limit of one lock (it uses about 150 000: the lock record and its event's strings).
const LOCK_GAS: u64 = 400_000;
/// Longest the node may take to settle every lock.
const SETTLE_MAX: Duration = Duration::from_secs(600);
/// How often the bench counts settled transfers.
const COUNT_EVERY: Duration = Duration::from_millis(50);

/// What to run.
pub struct ChainBenchOptions {
    /// Remittance locks mined before the node starts.
    pub locks: usize,
}

/// What one run measured.
#[derive(Debug)]
pub struct ChainBenchResult {
    /// Locks mined.
    pub locks: usize,
    /// Time to mine them (one transaction per lock, all sent before the first receipt).
    pub mine: Duration,
    /// From the node's start to its readiness (migrations, chain checks).
    pub start: Duration,
    /// From the node's start to the last transfer settled.
    pub settle: Duration,
    /// Transfers per state at the end.
    pub states: Vec<(TransferState, usize)>,
}

impl ChainBenchResult {
    /// Remittances backfilled, routed and settled per second by the running node.
    pub fn rate(&self) -> f64 {
        self.locks as f64 / self.settle.as_secs_f64().max(1e-9)
    }
}

/// States a settled transfer can be in by the time it is counted.
fn counts_as_settled(s: TransferState) -> bool {
    matches!(
        s,
        TransferState::Settled
            | TransferState::Delivering
            | TransferState::Delivered
            | TransferState::Finalized
    )
}

/// Mines the locks, runs the node until all are settled, and stops everything.
pub async fn run(opts: &ChainBenchOptions) -> anyhow::Result<ChainBenchResult> {
    let anvil_bin = find_anvil().context(
        "anvil not found: run tools/install.sh (installs it from npm) or set MERIDIAN_ANVIL",
    )?;
    let dir = super::tempfile_dir()?.join("chain");
    std::fs::create_dir_all(&dir)?;
    let mut chains = Vec::new();
    for chain_id in [31337u64, 31338] {
        chains.push(start_chain(&anvil_bin, free_port()?, chain_id, None, None).await?);
    }
    let result = measure(opts, &chains, &dir).await;
    for c in &mut chains {
        c.anvil.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    opts: &ChainBenchOptions,
    chains: &[crate::devnet::DevChain],
    dir: &std::path::Path,
) -> anyhow::Result<ChainBenchResult> {
    let (a, b) = (&chains[0], &chains[1]);
    let url = a.anvil.http_url();
    let operator = StackClient::new(&a.stack, dev_client(&url, a.anvil.chain_id, 0)?)?;
    let user_client = dev_client(&url, a.anvil.chain_id, 1)?;
    let user = StackClient::new(&a.stack, user_client.clone())?;
    operator
        .mint_stable(dev_address(1)?, LOCK_AMOUNT * opts.locks as u128)
        .await?;
    user.approve_escrow().await?;
    let (dest_chain, dest_asset) = (b.id().to_string(), b.stable_asset().to_string());
    let deadline = u64::try_from(chrono::Utc::now().timestamp())? + 86_400;
    // Every lock sent before the first receipt is awaited (nonces in a row), then each receipt
    // checked.
    let mined = Instant::now();
    let me = dev_address(1)?;
    let mut nonce = user_client
        .get_transaction_count(me, Some(ethers::types::BlockNumber::Pending.into()))
        .await?;
    let mut hashes = Vec::with_capacity(opts.locks);
    for k in 0..opts.locks {
        let recipient = format!("0x{:040x}", 0xb0_0000 + k);
        let mut call = user
            .escrow
            .method::<_, U256>(
                "lock",
                (
                    user.stablecoin.address(),
                    U256::from(LOCK_AMOUNT),
                    dest_chain.clone(),
                    recipient,
                    dest_asset.clone(),
                    deadline,
                ),
            )?
            .gas(LOCK_GAS);
        call.tx.set_nonce(nonce);
        nonce += U256::one();
        let pending = call.send().await.with_context(|| format!("lock {k}"))?;
        hashes.push(*pending);
    }
    for (k, h) in hashes.iter().enumerate() {
        let receipt = loop {
            if let Some(r) = user_client.get_transaction_receipt(*h).await? {
                break r;
            }
            anyhow::ensure!(
                mined.elapsed() < SETTLE_MAX,
                "lock {k} not mined after {SETTLE_MAX:?}"
            );
            tokio::time::sleep(COUNT_EVERY).await;
        };
        anyhow::ensure!(receipt.status == Some(1u64.into()), "lock {k} reverted");
    }
    let mine = mined.elapsed();
    // Deep enough for the watcher's confirmations.
    user_client
        .provider()
        .request::<_, serde_json::Value>("anvil_mine", [ethers::types::U256::from(4)])
        .await
        .context("mining the confirmation blocks")?;

    let db = format!("sqlite://{}", dir.join("meridian.sqlite").display());
    let config = devnet_config(chains, db.clone(), "127.0.0.1:0".into())?;
    let (stop, shutdown) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let started = Instant::now();
    let node = tokio::spawn(crate::node::run(config, shutdown, Some(ready_tx)));
    if ready_rx.await.is_err() {
        return node
            .await?
            .and_then(|()| anyhow::bail!("node stopped during start-up"));
    }
    let start = started.elapsed();
    let store = Store::connect(&db).await?;
    let counted = loop {
        let states = store.transfer_state_counts().await?;
        let settled: usize = states
            .iter()
            .filter(|(s, _)| counts_as_settled(*s))
            .map(|(_, n)| *n)
            .sum();
        if settled >= opts.locks {
            break Ok((started.elapsed(), states));
        }
        if started.elapsed() > SETTLE_MAX {
            break Err(anyhow::anyhow!(
                "{settled} of {} locks settled after {SETTLE_MAX:?}; transfers by state: {states:?}",
                opts.locks
            ));
        }
        tokio::time::sleep(COUNT_EVERY).await;
    };
    let _ = stop.send(true);
    node.await??;
    let (settle, states) = counted?;
    Ok(ChainBenchResult {
        locks: opts.locks,
        mine,
        start,
        settle,
        states,
    })
}

/// The Markdown report of a run.
pub fn report(r: &ChainBenchResult) -> String {
    let states: HashMap<_, _> = r.states.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let mut states: Vec<_> = states.into_iter().collect();
    states.sort();
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{s} {n}")).collect();
    format!(
        "| locks mined on anvil | mining (all in flight) | node start to ready | node start to the last settled | remittances/s settled by the node | transfers at the end |\n\
         |---|---|---|---|---|---|\n\
         | {} | {:.1} s | {:.2} s | {:.2} s | **{:.0}** | {} |\n",
        r.locks,
        r.mine.as_secs_f64(),
        r.start.as_secs_f64(),
        r.settle.as_secs_f64(),
        r.rate(),
        states.join(", ")
    )
}
