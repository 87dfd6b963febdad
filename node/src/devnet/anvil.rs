//! Local anvil processes for the devnet and tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use ethers::providers::{Http, Middleware, Provider};
use tokio::process::{Child, Command};

/// How long anvil may take to answer after start (it usually needs ~0.2 s).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Finds the anvil binary: `$MERIDIAN_ANVIL`, then `tools/node_modules/.bin/anvil` in the current
/// directory or any parent (the repo's pinned install), then `anvil` on `PATH`.
pub fn find_anvil() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MERIDIAN_ANVIL") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let candidate = d.join("tools/node_modules/.bin/anvil");
        if candidate.exists() {
            return Some(candidate);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("anvil"))
            .find(|p| p.exists())
    })
}

/// A running anvil; killed on [`AnvilNode::stop`] or, as a safety net, on drop.
pub struct AnvilNode {
    child: Child,
    /// EVM chain id.
    pub chain_id: u64,
    /// HTTP and websocket port.
    pub port: u16,
}

impl AnvilNode {
    /// Starts anvil on 127.0.0.1:`port` with `chain_id`; `block_time_s` of `None` means automine.
    /// Output goes to `log` when given.
    pub async fn start(
        anvil: &Path,
        port: u16,
        chain_id: u64,
        block_time_s: Option<f64>,
        log: Option<&Path>,
    ) -> anyhow::Result<AnvilNode> {
        let mut cmd = Command::new(anvil);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--chain-id",
            &chain_id.to_string(),
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
        if let Some(t) = block_time_s {
            cmd.args(["--block-time", &t.to_string()]);
        }
        match log {
            Some(path) => {
                let f = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", anvil.display()))?;
        let mut node = AnvilNode {
            child,
            chain_id,
            port,
        };
        let provider = Provider::<Http>::try_from(node.http_url())?;
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(id) = provider.get_chainid().await {
                if id.as_u64() != chain_id {
                    bail!("port {port} answers with chain id {id}, not {chain_id}: is another node running there?");
                }
                return Ok(node);
            }
            if let Some(status) = node.child.try_wait()? {
                bail!("anvil exited at start ({status}); is port {port} in use?");
            }
            if tokio::time::Instant::now() > deadline {
                node.stop().await;
                bail!("anvil did not answer on port {port} within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:port`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Kills the process and reaps it.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A free TCP port on 127.0.0.1 (for tests running in parallel).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
