//! `meridian bench releases`: how fast one chain's escrow pays out, one release per transaction
//! (`release`) against many per transaction (`releaseBatch`), on anvil with 1 s blocks. Every
//! transaction is sent before the first is mined (nonces in a row, all in flight), as the
//! delivery stage sends them; the figures are releases per second from the first send to the
//! last receipt, and gas per released transfer from the receipts. Each run checks that every
//! transfer id was released exactly once (one `Released` event per id, none refused).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ethers::abi::{Abi, Token};
use ethers::contract::Contract;
use ethers::providers::Middleware;
use ethers::types::{Address, BlockNumber, H256, U256};
use meridian_relayer::contracts as art;

use crate::devnet::stack::{key_client, DevClient, RELAYER_KEY};
use crate::devnet::{dev_client, find_anvil, free_port, start_chain, StackClient};

/// Base units per release.
const RELEASE_AMOUNT: u128 = 1_000_000;
/// Gas limit of a single release (it uses about 55 000).
const SINGLE_GAS: u64 = 150_000;
/// Gas limit per release of a batch, plus the transaction's own.
const BATCH_GAS_PER_RELEASE: u64 = 60_000;
const BATCH_GAS_BASE: u64 = 100_000;
/// Longest a run may wait for its receipts.
const RECEIPTS_MAX: Duration = Duration::from_secs(300);
/// Block time of the bench chain.
const BLOCK_TIME_S: f64 = 1.0;

/// What to run.
pub struct ReleaseBenchOptions {
    /// Releases per run.
    pub releases: usize,
    /// Releases per `releaseBatch` transaction.
    pub batch: usize,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct ReleaseRun {
    /// `single` or `batched (n per tx)`.
    pub mode: String,
    /// Transfers released.
    pub releases: usize,
    /// Transactions sent.
    pub txs: usize,
    /// From the first send to the last receipt.
    pub elapsed: Duration,
    /// Blocks the releases were mined in.
    pub blocks: usize,
    /// Gas used by all the run's transactions, divided by the releases.
    pub gas_per_release: u64,
}

impl ReleaseRun {
    /// Releases per second.
    pub fn rate(&self) -> f64 {
        self.releases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs single, then batched, on one fresh anvil chain.
pub async fn run(opts: &ReleaseBenchOptions) -> anyhow::Result<Vec<ReleaseRun>> {
    anyhow::ensure!(opts.batch >= 1, "--batch must be at least 1");
    let anvil_bin = find_anvil().context(
        "anvil not found: run tools/install.sh (installs it from npm) or set MERIDIAN_ANVIL",
    )?;
    let mut chain = start_chain(&anvil_bin, free_port()?, 31337, Some(BLOCK_TIME_S), None).await?;
    let result = runs(opts, &chain).await;
    chain.anvil.stop().await;
    result
}

async fn runs(
    opts: &ReleaseBenchOptions,
    chain: &crate::devnet::DevChain,
) -> anyhow::Result<Vec<ReleaseRun>> {
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, chain.anvil.chain_id, 0)?)?;
    // What both runs pay out, held by the escrow as locked funds would be.
    owner
        .mint_stable(
            chain.stack.escrow,
            RELEASE_AMOUNT * 2 * opts.releases as u128,
        )
        .await?;
    let relayer = key_client(&url, chain.anvil.chain_id, RELAYER_KEY)?;
    let escrow = Contract::new(
        chain.stack.escrow,
        serde_json::from_str::<Abi>(art::BRIDGE_ESCROW_ABI)?,
        relayer.clone(),
    );
    let token = chain.stack.stablecoin;
    let single = send_run(&relayer, &escrow, token, "single", opts.releases, 1).await?;
    let batched = send_run(
        &relayer,
        &escrow,
        token,
        &format!("batched ({} per tx)", opts.batch),
        opts.releases,
        opts.batch,
    )
    .await?;
    Ok(vec![single, batched])
}

fn transfer_id(mode: &str, k: usize) -> [u8; 32] {
    ethers::utils::keccak256(format!("bench:{mode}:{k}").as_bytes())
}

fn recipient(k: usize) -> Address {
    Address::from_low_u64_be(0xb0_0000 + k as u64)
}

/// Sends `releases` releases, `per_tx` per transaction (1: `release`), all in flight, and waits
/// for every receipt.
async fn send_run(
    relayer: &Arc<DevClient>,
    escrow: &Contract<DevClient>,
    token: Address,
    mode: &str,
    releases: usize,
    per_tx: usize,
) -> anyhow::Result<ReleaseRun> {
    let me = relayer.address();
    let mut nonce = relayer
        .get_transaction_count(me, Some(BlockNumber::Pending.into()))
        .await?;
    let ids: Vec<[u8; 32]> = (0..releases).map(|k| transfer_id(mode, k)).collect();
    let started = Instant::now();
    let mut hashes: Vec<H256> = Vec::new();
    for (chunk_ix, chunk) in ids.chunks(per_tx).enumerate() {
        let first = chunk_ix * per_tx;
        let mut call = if per_tx == 1 {
            escrow
                .method::<_, ()>(
                    "release",
                    (
                        chunk[0],
                        token,
                        recipient(first),
                        U256::from(RELEASE_AMOUNT),
                    ),
                )?
                .gas(SINGLE_GAS)
        } else {
            let items: Vec<Token> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    Token::Tuple(vec![
                        Token::FixedBytes(id.to_vec()),
                        Token::Address(token),
                        Token::Address(recipient(first + i)),
                        Token::Uint(U256::from(RELEASE_AMOUNT)),
                    ])
                })
                .collect();
            escrow
                .method::<_, ()>("releaseBatch", Token::Array(items))?
                .gas(BATCH_GAS_BASE + BATCH_GAS_PER_RELEASE * chunk.len() as u64)
        };
        call.tx.set_nonce(nonce);
        nonce += U256::one();
        let pending = call
            .send()
            .await
            .with_context(|| format!("{mode}: sending transaction {chunk_ix}"))?;
        hashes.push(*pending);
    }
    // Every receipt, then the checks.
    let mut receipts = Vec::with_capacity(hashes.len());
    for h in &hashes {
        let receipt = loop {
            if let Some(r) = relayer.get_transaction_receipt(*h).await? {
                break r;
            }
            anyhow::ensure!(
                started.elapsed() < RECEIPTS_MAX,
                "{mode}: transaction {h:#x} not mined after {RECEIPTS_MAX:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        anyhow::ensure!(
            receipt.status == Some(1u64.into()),
            "{mode}: transaction {h:#x} reverted"
        );
        receipts.push(receipt);
    }
    let elapsed = started.elapsed();
    let released_sig = escrow.abi().event("Released")?.signature();
    let refused_sig = escrow.abi().event("ReleaseRefused")?.signature();
    let mut released = HashSet::new();
    let mut gas = U256::zero();
    let mut blocks = HashSet::new();
    for r in &receipts {
        gas += r.gas_used.unwrap_or_default();
        blocks.insert(r.block_number.unwrap_or_default());
        for log in &r.logs {
            let Some(topic) = log.topics.get(1) else {
                continue;
            };
            if log.topics[0] == refused_sig {
                anyhow::bail!("{mode}: release of {topic:#x} refused");
            }
            if log.topics[0] == released_sig {
                anyhow::ensure!(released.insert(*topic), "{mode}: {topic:#x} released twice");
            }
        }
    }
    anyhow::ensure!(
        ids.iter().all(|id| released.contains(&H256::from(*id))),
        "{mode}: {} of {releases} transfers released",
        released.len()
    );
    Ok(ReleaseRun {
        mode: mode.to_owned(),
        releases,
        txs: hashes.len(),
        elapsed,
        blocks: blocks.len(),
        gas_per_release: (gas / U256::from(releases.max(1))).as_u64(),
    })
}

/// The Markdown report of the runs (the first is the baseline).
pub fn report(runs: &[ReleaseRun]) -> String {
    let mut out = String::from(
        "| mode | releases | transactions | blocks (1 s) | first send to last receipt | releases/s | gas per release |\n|---|---|---|---|---|---|---|\n",
    );
    let base = runs.first().map(ReleaseRun::rate).unwrap_or(0.0);
    for r in runs {
        let vs = if base > 0.0 {
            format!(" ({:.1}× single)", r.rate() / base)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} s | **{:.0}**{vs} | {} |\n",
            r.mode,
            r.releases,
            r.txs,
            r.blocks,
            r.elapsed.as_secs_f64(),
            r.rate(),
            r.gas_per_release
        ));
    }
    out
}
