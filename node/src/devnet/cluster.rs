//! `meridian devnet --nodes N`: the same chains and traffic, relayed by N `meridian run`
//! processes that share a fresh PostgreSQL database (`meridian_devnet`) and NATS. Each node's
//! config is `node-<i>.toml` in the devnet's directory; `meridian.toml` there is node 1's, so
//! `meridian cluster status` run in the directory shows the cluster. Kill a node (`kill -9
//! <pid>`) and watch another take its leases over.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_storage::Store;
use meridian_types::config::{ClusterConfig, Config};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::info;

use super::substrate_chain::DevSubstrate;
use super::traffic::TrafficGenerator;
use super::DevChain;

/// The database the cluster devnet creates (dropped first if it exists).
pub const DEVNET_DATABASE: &str = "meridian_devnet";
/// Lease time of the devnet's nodes: short, so a hand-over is quick to watch.
const DEVNET_LEASE_MS: u64 = 5_000;
/// How long a node may take to start serving.
const NODE_START_MAX: Duration = Duration::from_secs(120);
/// How long a node may take to stop after SIGTERM before it is killed.
const NODE_STOP_MAX: Duration = Duration::from_secs(20);

/// A node process of the devnet.
struct NodeChild {
    name: String,
    child: Child,
    listen: String,
}

/// Runs the cluster devnet until `shutdown`.
pub(crate) async fn run(
    opts: &super::DevnetOptions,
    mut config: Config,
    config_path: &Path,
    chains: &[DevChain],
    sub: &Arc<DevSubstrate>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let admin = Store::connect(&opts.postgres_url).await.with_context(|| {
        format!(
            "--postgres-url: cannot reach {} (a cluster devnet needs PostgreSQL)",
            crate::node::redact(&opts.postgres_url)
        )
    })?;
    admin
        .create_database(DEVNET_DATABASE)
        .await
        .context("creating the devnet database")?;
    let mut url = url::Url::parse(&opts.postgres_url).context("--postgres-url")?;
    url.set_path(DEVNET_DATABASE);
    config.node.database_url = url.to_string();
    let exe = std::env::current_exe().context("finding the meridian binary")?;
    let mut nodes = Vec::new();
    for i in 1..=opts.nodes {
        let mut node = config.clone();
        node.node.listen = if i == 1 {
            opts.listen.clone()
        } else {
            format!("127.0.0.1:{}", super::free_port()?)
        };
        node.cluster = Some(ClusterConfig {
            node_name: Some(format!("node-{i}")),
            lease_ttl_ms: DEVNET_LEASE_MS,
            nats_url: opts.nats_url.clone(),
            ..ClusterConfig::default()
        });
        let path = opts.dir.join(format!("node-{i}.toml"));
        std::fs::write(&path, super::toml_of(&node)?)?;
        if i == 1 {
            std::fs::write(config_path, super::toml_of(&node)?)?;
        }
        let log = std::fs::File::create(opts.dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&exe)
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("DATABASE_URL")
            .env(
                crate::parent_watch::STOP_WITH_PARENT_ENV,
                std::process::id().to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting a node")?;
        nodes.push(NodeChild {
            name: format!("node-{i}"),
            child,
            listen: node.node.listen.clone(),
        });
    }
    for n in &mut nodes {
        wait_serving(n, &opts.dir).await?;
    }
    let addr: std::net::SocketAddr = nodes[0].listen.parse()?;
    let traffic = TrafficGenerator::new(chains)?.with_substrate(sub.clone(), &chains[0]);
    let first_corridor = super::config_path_corridor(config_path)?;
    match super::propose_on_devnet(addr, &first_corridor).await {
        Ok(id) => info!(proposal = %id, "devnet proposal opened; vote at /vote"),
        Err(e) => tracing::warn!(error = %e, "devnet proposal not opened"),
    }
    let listing: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "  {}: http://{}/ (pid {}, log {})",
                n.name,
                n.listen,
                n.child.id().unwrap_or(0),
                opts.dir.join(format!("{}.log", n.name)).display()
            )
        })
        .collect();
    println!(
        "\nMeridian devnet is running: {} nodes, one relay (PostgreSQL {}, NATS {})\n{}\n  leases:   cd {} && meridian cluster status   (or GraphQL {{ cluster {{ leases {{ name holder epoch }} }} }})\n  try:      kill -9 <pid> of a node and watch its leases move within {} s\nPress Ctrl-C to stop.\n",
        opts.nodes,
        crate::node::redact(&config.node.database_url),
        opts.nats_url.as_deref().unwrap_or("none"),
        listing.join("\n"),
        opts.dir.display(),
        DEVNET_LEASE_MS / 1000 + 1,
    );
    let traffic_task = tokio::spawn(traffic.run(opts.traffic_interval, shutdown.clone()));
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = traffic_task.await;
    // A graceful stop: each node releases its leases.
    for n in &nodes {
        if let Some(pid) = n.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for n in &mut nodes {
        if tokio::time::timeout(NODE_STOP_MAX, n.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(node = %n.name, "node did not stop in time; killing it");
            let _ = n.child.kill().await;
        }
    }
    Ok(())
}

/// Waits until node `n` serves HTTP; its log's end when it exits first.
async fn wait_serving(n: &mut NodeChild, dir: &Path) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + NODE_START_MAX;
    loop {
        if tokio::net::TcpStream::connect(&n.listen).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = n.child.try_wait()? {
            let log =
                std::fs::read_to_string(dir.join(format!("{}.log", n.name))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            anyhow::bail!(
                "{} exited during start-up ({status}):\n{}",
                n.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} did not start serving within {:?}",
            n.name,
            NODE_START_MAX
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
