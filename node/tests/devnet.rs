//! `meridian devnet` end to end: it starts, ingests generated traffic, serves GraphQL, and a
//! Ctrl-C stops it with no anvil left behind.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two consecutive free ports (the devnet's anvils use `port` and `port + 1`).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let p = meridian_node::devnet::free_port().unwrap();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
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

#[test]
fn devnet_ingests_traffic_and_stops_cleanly_on_ctrl_c() {
    if support::anvil_or_skip("devnet_ingests_traffic_and_stops_cleanly_on_ctrl_c").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let anvil_port = free_port_pair();
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

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Some(r) = graphql(
            &http,
            "{ chains { id checkpointHeight } events(first: 1) { totalCount } }",
        ) {
            let total = r["data"]["events"]["totalCount"].as_u64().unwrap_or(0);
            let chains = r["data"]["chains"].as_array().map(|c| c.len()).unwrap_or(0);
            if total > 0 && chains == 2 {
                seen = Some(r);
                break;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("devnet exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let Some(seen) = seen else {
        let _ = child.kill();
        panic!("devnet never served ingested events");
    };
    assert_eq!(seen["data"]["chains"][0]["id"], "eip155:31337");
    assert!(dir.path().join("devnet/meridian.toml").exists());

    // Ctrl-C.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devnet did not stop within 20 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "devnet exited with {exit}");
    for port in [anvil_port, anvil_port + 1] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "anvil on port {port} outlived the devnet"
        );
    }
    assert!(
        TcpStream::connect(&http).is_err(),
        "HTTP server outlived the devnet"
    );
}
