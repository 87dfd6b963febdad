//! Issue 16 item 9, a crash campaign for the whole node: one `meridian run` on SQLite (the
//! single-node deployment) relays remittances locked on anvil chain A at a steady pace to chain
//! B, and is killed with SIGKILL at random moments (`MERIDIAN_CRASH_KILLS` times, default 3),
//! restarted each time — whatever it was doing: migrating its new database (the first kill may
//! come 200 ms after the first start), ingesting, deciding, settling, signing or sending a
//! payout, or following one. Traffic goes on until the last restart. At the end every
//! remittance was released on chain B exactly once (the escrow's `Released` events, one per
//! transfer id), each was settled once, the ledger's balances are the replay of its postings with
//! debits equal to credits per asset, the relay's signer has nothing pending and no transfer is
//! stuck. The moments are drawn from a seed that is printed (`MERIDIAN_FAULT_SEED` replays
//! one); `scripts/crash-campaign N` runs it N times with more kills and sums the figures.

#[path = "support/escrow_releases.rs"]
mod escrow_releases;
#[path = "support/relay_chains.rs"]
mod relay_chains;
#[path = "support/relay_checks.rs"]
mod relay_checks;
#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meridian_node::devnet::free_port;
use meridian_storage::Store;

/// Remittances locked at least (more while the kills go on).
const REMITTANCES: u32 = 24;
/// Kills per run when `MERIDIAN_CRASH_KILLS` is not set.
const KILLS_DEFAULT: u32 = 3;

/// A running `meridian run`; killed (and reaped) when dropped.
struct NodeProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the node on `config`; each start (`generation`) logs to a file of its own.
fn start(config: &Path, dir: &Path, generation: u32) -> NodeProcess {
    let log = dir.join(format!("node.{generation}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("DATABASE_URL")
        .env_remove("MERIDIAN_FAILPOINT")
        .env_remove("MERIDIAN_FAILPOINT_FILE")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    NodeProcess { child, log }
}

fn recipient(n: u32) -> String {
    format!("0x{:040x}", 0xc4a5u64 << 32 | u64::from(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_at_random_moments_relays_each_remittance_once() {
    let Some(bin) = support::anvil_or_skip() else {
        return;
    };
    let chains = [
        support::dev_chain(&bin, 31_337).await,
        support::dev_chain(&bin, 31_338).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meridian.sqlite").display());
    let relay = relay_chains::relay_chains(&chains, url.clone()).await;
    let payouts = relay_checks::Payouts::of(&relay);
    let mut config = relay.config.clone();
    config.node.listen = format!("127.0.0.1:{}", free_port().unwrap());
    let config_path = dir.path().join("node.toml");
    std::fs::write(&config_path, toml::to_string_pretty(&config).unwrap()).unwrap();

    let kills: u32 = std::env::var("MERIDIAN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(KILLS_DEFAULT);
    let seed: u64 = std::env::var("MERIDIAN_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash seed {seed} (MERIDIAN_FAULT_SEED={seed} replays these moments)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);

    let mut node = start(&config_path, dir.path(), 0);
    // Steady traffic on chain A: at least REMITTANCES, and on until the last restart.
    let (kills_over, traffic_stop) = tokio::sync::watch::channel(false);
    let traffic = relay_chains::steady_traffic(
        relay.user,
        relay.stable_b,
        REMITTANCES,
        Duration::from_millis(200),
        traffic_stop,
        recipient,
    );
    // Kill at random moments: anywhere from just after a start to well into its work.
    for generation in 1..=kills {
        let pause = Duration::from_millis(rand::Rng::gen_range(&mut rng, 200..4_000));
        tokio::time::sleep(pause).await;
        if let Some(status) = node.child.try_wait().unwrap() {
            panic!(
                "the node exited by itself ({status}): {}",
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
        }
        let ok = Command::new("kill")
            .args(["-KILL", &node.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -9 the node");
        drop(node);
        node = start(&config_path, dir.path(), generation);
    }
    kills_over.send_replace(true);
    let sent = traffic.await.unwrap();

    let store = Store::connect(&url).await.unwrap();
    if let Err(states) =
        relay_checks::wait_all_finalized(&store, sent, Duration::from_secs(120)).await
    {
        panic!(
            "not every remittance finalized (stuck?): {} of {sent} transfers, states {states:?}\n{}",
            states.len(),
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
    }
    relay_checks::assert_each_relayed_once(&store, &payouts, sent).await;
    println!(
        "crash campaign run: {kills} SIGKILL(s) of the node at random moments, restarted each time; {sent} remittances, each settled once and released once on chain B; duplicates: 0"
    );
    drop(node);
}
