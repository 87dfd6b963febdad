//! The node killed in the middle of a payout (`meridian run` as its own process, aborted at a
//! crash point as `kill -9` would stop it): after signing and before recording, and after
//! recording and before broadcasting. Restarted, it pays every transfer exactly once — counted
//! from the escrow's events — with the relayer's nonces used without a gap or a repeat, and the
//! recorded transaction (not a new one) is what reaches the chain. Once with one transaction
//! per release, once with batches (`releaseBatch`, three releases per transaction).

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;
#[path = "support/escrow_releases.rs"]
mod escrow_releases;
#[path = "support/transfers.rs"]
mod transfers;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::H256;
use meridian_node::devnet::{self, stack::dev_client, stack::StackClient};
use meridian_storage::Store;
use meridian_types::config::{Config, FinalityRule};
use meridian_types::TransferState;

/// Starts `meridian run --config <config>` with `MERIDIAN_FAILPOINT` set to `failpoint`.
fn node(config: &Path, failpoint: Option<&str>, log: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env_remove("MERIDIAN_FAILPOINT")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(point) = failpoint {
        cmd.env("MERIDIAN_FAILPOINT", point);
    }
    cmd.spawn().unwrap()
}

/// Waits for `child` to end by itself (at its crash point); at most `limit`.
async fn crashed(child: &mut Child, limit: Duration, log: &Path) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the node should have aborted: {status}");
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(text.contains("MERIDIAN_FAILPOINT"), "{text}");
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the node did not reach its crash point: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn states(store: &Store, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            store
                .transfer(id)
                .await
                .unwrap()
                .unwrap()
                .transfer
                .state
                .as_str()
                .to_owned(),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_payout_pays_every_transfer_exactly_once_after_restart() {
    killed_mid_payout(31_345, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_batch_pays_every_transfer_exactly_once_after_restart() {
    killed_mid_payout(31_346, 3).await;
}

/// Payouts of `per_tx` releases per transaction (the first payout is the first `per_tx`
/// transfers, the second the next ones): killed after recording the first, killed after signing
/// the second, then run to the end.
async fn killed_mid_payout(chain_id: u64, per_tx: usize) {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let chain = anvil::dev_chain(&anvil_bin, chain_id).await;
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, chain_id, 0).unwrap()).unwrap();
    owner
        .mint_stable(chain.stack.escrow, 1_000_000)
        .await
        .unwrap();
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.sqlite");
    let listen = format!("127.0.0.1:{}", devnet::free_port().unwrap());
    let mut config = Config::from_toml_str(
        &format!(
            "[node]\ndatabase_url = \"sqlite://{}?mode=rwc\"\nlisten = \"{listen}\"\n",
            db.display()
        ),
        "test",
        Vec::new(),
    )
    .unwrap();
    let mut dest = chain.chain_config("dest").unwrap();
    dest.finality = FinalityRule::Confirmations(0);
    dest.release_batch_max = u32::try_from(per_tx).unwrap();
    config.chains = vec![dest.clone()];
    let config_path = dir.path().join("meridian.toml");
    std::fs::write(&config_path, toml::to_string_pretty(&config).unwrap()).unwrap();

    // Three settled transfers, waiting for delivery, in the node's database.
    let store = Store::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    let token = format!("{:#x}", chain.stack.stablecoin);
    // Two full payouts and one more release.
    let n = 2 * per_tx + 1;
    let ids: Vec<String> = (0..n).map(|i| format!("tr:crash-{i}")).collect();
    let state_list = |delivering: usize| -> Vec<&str> {
        (0..n)
            .map(|i| {
                if i < delivering {
                    "delivering"
                } else {
                    "settled"
                }
            })
            .collect()
    };
    for (i, id) in ids.iter().enumerate() {
        let (t, path) = transfers::settled(id, dest.id.as_str(), &token, 100 + i as u128);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }

    // 1. Killed after recording the first release, before broadcasting it.
    let log = dir.path().join("run1.log");
    let mut run = node(&config_path, Some("evm-payout-recorded"), &log);
    crashed(&mut run, Duration::from_secs(60), &log).await;
    assert_eq!(states(&store, &ids).await, state_list(per_tx));
    let recorded = store
        .evm_payout(&ids[0], dest.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((recorded.nonce, recorded.members), (0, per_tx));
    let relayer = devnet::stack::relayer_address().unwrap();
    assert_eq!(
        provider
            .get_transaction_count(relayer, None)
            .await
            .unwrap()
            .as_u64(),
        0,
        "nothing reached the chain"
    );

    // 2. Killed after signing the next release, before recording it.
    let log = dir.path().join("run2.log");
    let mut run = node(&config_path, Some("evm-payout-signed"), &log);
    crashed(&mut run, Duration::from_secs(60), &log).await;
    assert_eq!(states(&store, &ids).await, state_list(per_tx));
    assert!(store
        .evm_payout(&ids[per_tx], dest.id.as_str())
        .await
        .unwrap()
        .is_none());

    // 3. A run that is not stopped: everything is paid, once.
    let log = dir.path().join("run3.log");
    let mut run = node(&config_path, None, &log);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while states(&store, &ids).await != vec!["finalized"; n] {
        if let Some(status) = run.try_wait().unwrap() {
            panic!(
                "the node stopped ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all finalized: {:?}\n{}",
            states(&store, &ids).await,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = run.kill();
    let _ = run.wait();

    escrow_releases::assert_released_once(&provider, chain.stack.escrow, &ids).await;
    let count = provider
        .get_transaction_count(relayer, None)
        .await
        .unwrap()
        .as_u64();
    assert_eq!(
        count, 3,
        "three nonces used (two payouts of {per_tx} and one of one), no gap, no filler"
    );
    let mined = provider
        .get_transaction_receipt(recorded.txs[0].hash.parse::<H256>().unwrap())
        .await
        .unwrap();
    assert!(
        mined.is_some(),
        "the transaction recorded before the crash is the one mined"
    );
    assert_eq!(
        store
            .transfer(&ids[0])
            .await
            .unwrap()
            .unwrap()
            .transfer
            .state
            .as_str()
            .to_owned(),
        TransferState::Finalized.as_str()
    );
}
