//! `meridian devnet` end to end: it starts two anvil chains and a Substrate chain (Chopsticks),
//! ingests generated traffic, delivers remittances from an EVM chain on Substrate and back,
//! serves GraphQL, and a Ctrl-C stops it with no chain left behind.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

// Both support modules carry their own copy of support/skip.rs.
#[path = "support/chopsticks.rs"]
#[allow(clippy::duplicate_mod)]
mod chopsticks;
#[path = "support/nats.rs"]
#[allow(clippy::duplicate_mod)]
mod nats;
#[path = "support/pg.rs"]
#[allow(clippy::duplicate_mod)]
mod pg;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Three consecutive free ports (the anvils use `port` and `port + 1`, Chopsticks `port + 2`).
fn free_port_triple() -> u16 {
    for _ in 0..100 {
        let p = meridian_node::devnet::free_port().unwrap();
        if p < u16::MAX - 2
            && (1..=2).all(|k| std::net::TcpListener::bind(("127.0.0.1", p + k)).is_ok())
        {
            return p;
        }
    }
    panic!("no three consecutive free ports");
}

fn graphql(addr: &str, query: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let body = serde_json::json!({ "query": query }).to_string();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let json = resp.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(json).ok()
}

/// Sends the devnet Ctrl-C (SIGINT) and asserts it exits successfully within `limit`.
fn interrupt_and_wait(child: &mut std::process::Child, limit: Duration) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + limit;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devnet did not stop within {limit:?} of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "devnet exited with {exit}");
}

#[test]
fn devnet_ingests_traffic_and_stops_cleanly_on_ctrl_c() {
    if support::anvil_or_skip().is_none() || chopsticks::chopsticks_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let anvil_port = free_port_triple();
    let http = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["devnet", "--dir"])
        .arg(dir.path().join("devnet"))
        .args([
            "--anvil-port",
            &anvil_port.to_string(),
            "--listen",
            &http,
            "--traffic-interval-ms",
            "200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Remittances from the hub EVM chain into Substrate and from Substrate back, each
    // delivered and final, besides ingested events on all three chains.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = None;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(r) = graphql(
            &http,
            "{ chains { id family checkpointHeight } events(first: 1) { totalCount } transfers(first: 100) { sourceChain destChain state } }",
        ) {
            let total = r["data"]["events"]["totalCount"].as_u64().unwrap_or(0);
            let chains = r["data"]["chains"].as_array().map(|c| c.len()).unwrap_or(0);
            let transfers = r["data"]["transfers"].as_array().cloned().unwrap_or_default();
            let delivered = |from: &str, to: &str| {
                transfers.iter().any(|t| {
                    t["sourceChain"].as_str().unwrap_or("").starts_with(from)
                        && t["destChain"].as_str().unwrap_or("").starts_with(to)
                        && t["state"] == "finalized"
                })
            };
            if total > 0
                && chains == 3
                && delivered("eip155:31337", "polkadot:")
                && delivered("polkadot:", "eip155:31337")
            {
                seen = Some(r);
                break;
            }
            last = Some(r);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("devnet exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let Some(seen) = seen else {
        let _ = child.kill();
        panic!("devnet never delivered across EVM and Substrate: {last:?}");
    };
    assert_eq!(seen["data"]["chains"][0]["id"], "eip155:31337");
    assert!(seen["data"]["chains"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["family"] == "substrate"));
    assert!(dir.path().join("devnet/meridian.toml").exists());

    // Ctrl-C.
    interrupt_and_wait(&mut child, Duration::from_secs(20));
    for port in [anvil_port, anvil_port + 1, anvil_port + 2] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "chain on port {port} outlived the devnet"
        );
    }
    assert!(
        TcpStream::connect(&http).is_err(),
        "HTTP server outlived the devnet"
    );
}

/// `meridian devnet --nodes 3`: three `meridian run` processes relay the devnet's traffic on
/// PostgreSQL and NATS; every lease is held by one of them; `meridian cluster status` in the
/// devnet's directory shows them; Ctrl-C stops every node, which release their leases.
#[test]
fn a_three_node_devnet_relays_and_stops_cleanly() {
    if support::anvil_or_skip().is_none() || chopsticks::chopsticks_or_skip().is_none() {
        return;
    }
    let Some(mut news) = nats::NatsServer::start() else {
        return;
    };
    let pg_admin = pg::base_url();
    let dir = tempfile::tempdir().unwrap();
    let devnet_dir = dir.path().join("devnet");
    let anvil_port = free_port_triple();
    let http = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["devnet", "--nodes", "3", "--dir"])
        .arg(&devnet_dir)
        .args([
            "--anvil-port",
            &anvil_port.to_string(),
            "--listen",
            &http,
            "--traffic-interval-ms",
            "200",
            "--postgres-url",
            &pg_admin,
            "--nats-url",
            &news.url,
        ])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = None;
    let pids: Vec<u64> = loop {
        if let Some(r) = graphql(
            &http,
            "{ cluster { nodes { pid stoppedAt } leases { held holder } } transfers(first: 100) { state } }",
        ) {
            let nodes = r["data"]["cluster"]["nodes"].as_array().cloned().unwrap_or_default();
            let leases = r["data"]["cluster"]["leases"].as_array().cloned().unwrap_or_default();
            let finalized = r["data"]["transfers"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["state"] == "finalized"));
            if nodes.len() == 3
                && leases.len() >= 6
                && leases.iter().all(|l| {
                    l["held"] == true
                        && l["holder"].as_str().is_some_and(|h| h.starts_with("node-"))
                })
                && finalized
            {
                break nodes.iter().filter_map(|n| n["pid"].as_u64()).collect();
            }
            last = Some(r);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("devnet exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the three nodes never shared the leases and relayed: {last:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(pids.len(), 3);

    // `meridian cluster status` in the devnet's directory reads the devnet's database.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["cluster", "status"])
        .current_dir(&devnet_dir)
        .env_remove("DATABASE_URL")
        .env_remove("MERIDIAN_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("nodes (3):"), "{stdout}");
    assert!(stdout.contains("settle holder=node-"), "{stdout}");

    // Ctrl-C: every node stops gracefully.
    interrupt_and_wait(&mut child, Duration::from_secs(60));
    for pid in pids {
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(!alive, "node process {pid} outlived the devnet");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["cluster", "status"])
        .current_dir(&devnet_dir)
        .env_remove("DATABASE_URL")
        .env_remove("MERIDIAN_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().filter(|l| l.contains(" stopped ")).count() == 3
            && !stdout.contains("holder=node-"),
        "every node stopped and released its leases:\n{stdout}"
    );
    news.stop();
}

/// A node started by a devnet (`MERIDIAN_STOP_WITH_PARENT`) stops by itself, gracefully, when
/// that devnet is killed outright (SIGKILL gives the devnet no chance to stop its nodes).
#[test]
fn a_node_stops_when_the_devnet_that_started_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndatabase_url = \"sqlite://{}\"\nlisten = \"{listen}\"\n",
            dir.path().join("node.sqlite").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("node.log");
    // A shell stands in for the devnet: it starts the node naming itself, prints its pid and waits.
    let mut parent = Command::new("sh")
        .args([
            "-c",
            "MERIDIAN_STOP_WITH_PARENT=$$ \"$0\" run --config \"$1\" 2>\"$2\" & echo $!; wait",
        ])
        .arg(env!("CARGO_BIN_EXE_meridian"))
        .arg(&config)
        .arg(&log)
        .env_remove("DATABASE_URL")
        .env_remove("MERIDIAN_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let node: u32 = line.trim().parse().unwrap();
    // Running, not a zombie waiting to be reaped by whichever process adopted it.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&listen).is_err() {
        assert!(
            alive(node) && Instant::now() < deadline,
            "the node never served: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(node) {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &node.to_string()])
                .status();
            panic!("the node outlived the process that started it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("the process that started this node is gone"),
        "{log}"
    );
}
