//! Test support: a NATS server with JetStream of the test's own (Debian's `nats-server`, as
//! `.ci/run` installs it), on a free port, that a test may stop and start again with the same
//! storage directory. Missing binary: the test is skipped by name (a failure under CI).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "skip.rs"]
mod skip;

/// A running (or stopped) `nats-server -js`.
pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The `nats-server` binary, or `None` (skipped) when it is not installed.
pub fn nats_or_skip() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("nats-server");
        if p.exists() {
            return Some(p);
        }
    }
    skip::skip(
        None,
        "nats-server",
        "install Debian's nats-server package (./scripts/test does)",
    );
    None
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Option<NatsServer> {
        nats_or_skip()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.resume();
        Some(server)
    }

    /// Stops the server (kill -9: clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage, waiting until it listens.
    pub fn resume(&mut self) {
        let bin = nats_or_skip().expect("nats-server");
        let child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
