//! A local Substrate chain: Chopsticks (npm `@acala-network/chopsticks`) in genesis mode runs the
//! real Rococo Asset Hub runtime (statemine) from its chain spec, with no network. Blocks are
//! built when extrinsics arrive and finalized at once; `dev_setStorage` funds accounts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// How long Chopsticks may take to compile the runtime and answer (about 3 s here).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// Finds Chopsticks and the chain spec: `$MERIDIAN_CHOPSTICKS` and `$MERIDIAN_CHOPSTICKS_SPEC`,
/// else `tools/node_modules/.bin/chopsticks` and `tools/asset-hub-spec.json` in the current
/// directory or a parent (written by `tools/install.sh`).
pub fn find_chopsticks() -> Option<(PathBuf, PathBuf)> {
    if let (Ok(bin), Ok(spec)) = (
        std::env::var("MERIDIAN_CHOPSTICKS"),
        std::env::var("MERIDIAN_CHOPSTICKS_SPEC"),
    ) {
        return Some((bin.into(), spec.into()));
    }
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let bin = d.join("tools/node_modules/.bin/chopsticks");
        let spec = d.join("tools/asset-hub-spec.json");
        if bin.exists() && spec.exists() {
            return Some((bin, spec));
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    None
}

/// The payload of a chunked HTTP body.
fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("chunk without size line")?;
        let size = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("chunk shorter than its size")?);
        body = rest
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
}

/// A running Chopsticks; killed on drop.
pub struct ChopsticksNode {
    child: Child,
    /// HTTP and websocket port.
    pub port: u16,
}

impl ChopsticksNode {
    /// Starts Chopsticks with `spec` on 127.0.0.1:`port`; output goes to `log` when given.
    pub async fn start(
        bin: &Path,
        spec: &Path,
        port: u16,
        log: Option<&Path>,
    ) -> anyhow::Result<ChopsticksNode> {
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--genesis={}", spec.display()))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true);
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
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut node = ChopsticksNode { child, port };
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            if node.rpc("chain_getHeader", json!([])).await.is_ok() {
                return Ok(node);
            }
            if let Some(status) = node.child.try_wait()? {
                bail!("chopsticks exited at start ({status}); is port {port} in use?");
            }
            if tokio::time::Instant::now() > deadline {
                let _ = node.child.kill().await;
                bail!("chopsticks did not answer on port {port} within {STARTUP_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
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

    /// One JSON-RPC call over HTTP; the node's error as an error.
    pub async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let req = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut resp))
            .await
            .context("chopsticks did not answer within 60 s")??;
        let resp = String::from_utf8_lossy(&resp);
        let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP body")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        let v: Value =
            serde_json::from_str(body.trim()).with_context(|| format!("not JSON: {body}"))?;
        if let Some(e) = v.get("error") {
            bail!("{method}: {e}");
        }
        Ok(v["result"].clone())
    }

    /// Gives `address` (SS58) `free` units of the native token.
    pub async fn fund(&self, address: &str, free: u128) -> anyhow::Result<()> {
        self.rpc(
            "dev_setStorage",
            json!([{"System": {"Account": [[[address], {"providers": 1, "data": {"free": free.to_string()}}]]}}]),
        )
        .await?;
        Ok(())
    }

    /// Builds `n` empty blocks.
    pub async fn new_blocks(&self, n: u32) -> anyhow::Result<()> {
        self.rpc("dev_newBlock", json!([{"count": n}])).await?;
        Ok(())
    }

    /// Kills the process.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
