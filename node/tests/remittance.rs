//! A remittance end to end on two real anvil chains, through the whole node: stablecoin locked
//! on chain A is screened, quoted, settled and released on chain B (the recipient's balance is
//! read on chain B); a sanctioned recipient is refused and refunded on chain A; a transfer above
//! the hold threshold waits until an operator releases it; a transfer into a corridor an operator
//! paused waits and is refunded on chain A by the operator; a release the destination escrow
//! cannot pay is reversed on the ledger and refunded; a node restarted in the middle pays each
//! transfer exactly once.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use ethers::types::{Address, U256};
use meridian_node::devnet::stack::{dev_client, StackClient};
use meridian_node::devnet::{dev_address, devnet_config, free_port};
use meridian_types::config::{ApiKeyConfig, FinalityRule};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

const OPS_KEY: &str = "k-e2e-0123456789ab";
const SANCTIONED: &str = "0x00000000000000000000000000000000000bad01";
const BOB: &str = "0x00000000000000000000000000000000000b0b01";
const CAROL: &str = "0x0000000000000000000000000000000000ca4011";
const ERIN: &str = "0x00000000000000000000000000000000000e4111";
const GINA: &str = "0x00000000000000000000000000000000000619a1";

/// POST /graphql on `addr` (blocking, off the runtime).
async fn graphql(addr: String, query: String, key: Option<&'static str>) -> Option<Value> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let body = json!({ "query": query }).to_string();
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let auth = key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
        write!(
            s,
            "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        serde_json::from_str(resp.split("\r\n\r\n").nth(1)?).ok()
    })
    .await
    .ok()?
}

/// Transfers by recipient address suffix → (id, state).
async fn states(addr: &str) -> Vec<(String, String, String)> {
    let r = graphql(
        addr.to_owned(),
        "{ transfers(first: 50) { id state recipient } }".into(),
        None,
    )
    .await
    .unwrap_or(Value::Null);
    r["data"]["transfers"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["id"].as_str().unwrap_or("").to_owned(),
                        t["state"].as_str().unwrap_or("").to_owned(),
                        t["recipient"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for(
    addr: &str,
    what: &str,
    ok: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = states(addr).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn state_of<'a>(s: &'a [(String, String, String)], recipient: &str) -> Option<&'a str> {
    s.iter()
        .find(|(_, _, r)| r.ends_with(&recipient.to_ascii_lowercase()))
        .map(|(_, st, _)| st.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remittances_are_delivered_refused_or_held_and_released() {
    let Some(bin) = support::anvil_or_skip() else {
        return;
    };
    let a = support::dev_chain(&bin, 31_337).await;
    let b = support::dev_chain(&bin, 31_338).await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    // The chains live as long as the test: dropping a DevChain stops its anvil.
    let chains = [a, b];
    let mut config = devnet_config(
        &chains,
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("e2e.sqlite").display()
        ),
        listen.clone(),
    )
    .unwrap();
    // anvil mines only on transactions here: final at inclusion keeps the test short.
    for c in &mut config.chains {
        c.finality = FinalityRule::Confirmations(0);
        c.poll_interval_ms = 200;
    }
    let denylist = dir.path().join("denylist.txt");
    std::fs::write(&denylist, format!("{SANCTIONED}\n")).unwrap();
    config.compliance.denylist_path = Some(denylist);
    config.api_keys = vec![ApiKeyConfig {
        name: "ops".into(),
        key: OPS_KEY.into(),
    }];
    let (a, b) = (&config.chains[0].clone(), &config.chains[1].clone());
    let (stable_a, stable_b) = (config.assets[1].id.clone(), config.assets[3].id.clone());
    let cbdc_b = config.assets[2].id.clone();
    // Stablecoin on A (6 decimals) into the CBDC on B (2 decimals) at 0.92.
    let mut to_cbdc = config.corridors[0].clone();
    to_cbdc.id = "usdm-a-to-deur-b".into();
    to_cbdc.dest_asset = cbdc_b.clone();
    to_cbdc.rate = Some("0.92".into());
    to_cbdc.liquidity = meridian_types::config::Amount(1_000_000_000);
    config.corridors.push(to_cbdc);
    assert!(
        stable_a.as_str().starts_with("eip155:31337/")
            && stable_b.as_str().starts_with("eip155:31338/")
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let node = tokio::spawn(meridian_node::node::run(
        config.clone(),
        stop_rx,
        Some(ready_tx),
    ));
    let addr = match ready_rx.await {
        Ok(addr) => addr.to_string(),
        Err(_) => panic!("node did not start: {:?}", node.await),
    };

    // Chain B's escrow holds the relay's stablecoin; a user on chain A locks three transfers.
    let url = |c: &meridian_types::config::ChainConfig| c.rpc_urls[0].to_string();
    let token = |asset: &meridian_types::AssetId| -> Address {
        asset.as_str().rsplit_once(':').unwrap().1.parse().unwrap()
    };
    let escrow = |c: &meridian_types::config::ChainConfig| -> Address {
        c.contracts
            .iter()
            .find(|x| x.kind == meridian_types::config::ContractKind::BridgeEscrow)
            .unwrap()
            .address
            .parse()
            .unwrap()
    };
    let stack = |c: &meridian_types::config::ChainConfig, asset: &meridian_types::AssetId| {
        meridian_node::devnet::stack::Stack {
            cbdc: token(&cbdc_b),
            stablecoin: token(asset),
            escrow: escrow(c),
        }
    };
    let owner_b = StackClient::new(
        &stack(b, &stable_b),
        dev_client(&url(b), 31_338, 0).unwrap(),
    )
    .unwrap();
    owner_b
        .mint_stable(escrow(b), 1_000_000 * 1_000_000)
        .await
        .unwrap();
    let owner_a = StackClient::new(
        &stack(a, &stable_a),
        dev_client(&url(a), 31_337, 0).unwrap(),
    )
    .unwrap();
    let user = StackClient::new(
        &stack(a, &stable_a),
        dev_client(&url(a), 31_337, 1).unwrap(),
    )
    .unwrap();
    owner_a
        .mint_stable(dev_address(1).unwrap(), 1_000_000 * 1_000_000)
        .await
        .unwrap();
    user.approve_escrow().await.unwrap();
    let deadline = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp() as u64;
    // Chain B's escrow holds 2 000 DEUR: enough for Erin and Frank, not for Gina.
    owner_b.mint_cbdc(escrow(b), 2_000 * 100).await.unwrap();
    for (recipient, amount, dest) in [
        (BOB, 100_000_000u128, &stable_b),
        (SANCTIONED, 5_000_000, &stable_b),
        (CAROL, 60_000_000_000, &stable_b),
        (ERIN, 100_000_000, &cbdc_b),
        (GINA, 5_000_000_000, &cbdc_b),
    ] {
        user.lock(amount, "eip155:31338", recipient, dest.as_str(), deadline)
            .await
            .unwrap();
    }

    // Bob's is delivered; the sanctioned one refused; Carol's (above the 50 000 hold) held.
    let s = wait_for(&addr, "delivery, refusal and hold", |s| {
        state_of(s, BOB) == Some("finalized")
            && state_of(s, ERIN) == Some("finalized")
            && state_of(s, GINA) == Some("refunded")
            && state_of(s, SANCTIONED) == Some("refunded")
            && state_of(s, CAROL) == Some("held")
    })
    .await;
    let balance_b = |who: &str| {
        let c = owner_b.stablecoin.clone();
        let who: Address = who.parse().unwrap();
        async move {
            c.method::<_, U256>("balanceOf", who)
                .unwrap()
                .call()
                .await
                .unwrap()
                .as_u128()
        }
    };
    // 100 USDM less the 0.25 % fee, released from chain B's escrow.
    assert_eq!(balance_b(BOB).await, 99_750_000);
    assert_eq!(balance_b(SANCTIONED).await, 0);
    assert_eq!(balance_b(CAROL).await, 0);
    // 100 USDM less the fee, at 0.92, in CBDC cents: 99.75 · 0.92 = 91.77 DEUR.
    let erin_cbdc = owner_b
        .cbdc
        .method::<_, U256>("balanceOf", ERIN.parse::<Address>().unwrap())
        .unwrap()
        .call()
        .await
        .unwrap()
        .as_u128();
    assert_eq!(erin_cbdc, 9_177);
    // Gina's release was refused on chain B (too little CBDC in its escrow): settled, then
    // reversed on the ledger and refunded on chain A.
    let gina_id = s
        .iter()
        .find(|(_, _, r)| r.ends_with(GINA))
        .unwrap()
        .0
        .clone();
    let r = graphql(
        addr.clone(),
        format!("{{ transfer(id: \"{gina_id}\") {{ history {{ to reason }} }} }}"),
        None,
    )
    .await
    .unwrap();
    let path: Vec<&str> = r["data"]["transfer"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            "requested",
            "screened",
            "quoted",
            "settling",
            "settled",
            // Sent, mined and reverted: refused by the chain, never by a gas estimate.
            "delivering",
            "failed",
            "rejected",
            "refunding",
            "refunded"
        ],
        "{r}"
    );

    // An operator releases the hold; it goes through to chain B.
    let carol_id = s
        .iter()
        .find(|(_, _, r)| r.ends_with(CAROL))
        .unwrap()
        .0
        .clone();
    let r = graphql(
        addr.clone(),
        format!("mutation {{ releaseHold(transferId: \"{carol_id}\", reason: \"source of funds checked\") {{ state }} }}"),
        Some(OPS_KEY),
    )
    .await
    .unwrap();
    assert_eq!(r["data"]["releaseHold"]["state"], "quoted", "{r}");
    wait_for(&addr, "the released hold to be delivered", |s| {
        state_of(s, CAROL) == Some("finalized")
    })
    .await;
    assert_eq!(balance_b(CAROL).await, 60_000_000_000 - 150_000_000);

    // The operator pauses the corridor A → B; a transfer locked now waits for it, and the
    // operator refunds it (a paused destination leads to a refund on chain A).
    let r = graphql(
        addr.clone(),
        "mutation { pauseCorridor(id: \"usdm-31337-31338\", paused: true, reason: \"incident\") { paused } }".into(),
        Some(OPS_KEY),
    )
    .await
    .unwrap();
    assert_eq!(r["data"]["pauseCorridor"]["paused"], true, "{r}");
    const DAVE: &str = "0x00000000000000000000000000000000000da7e1";
    user.lock(7_000_000, "eip155:31338", DAVE, stable_b.as_str(), deadline)
        .await
        .unwrap();
    let s = wait_for(&addr, "the paused corridor's transfer to wait", |s| {
        state_of(s, DAVE) == Some("held")
    })
    .await;
    let dave = s
        .iter()
        .find(|(_, _, r)| r.ends_with(DAVE))
        .map(|(id, _, _)| id.clone())
        .unwrap();
    let r = graphql(
        addr.clone(),
        format!(
            "mutation {{ refundTransfer(transferId: \"{dave}\", reason: \"corridor closed for the incident\") {{ state }} }}"
        ),
        Some(OPS_KEY),
    )
    .await
    .unwrap();
    assert_eq!(r["data"]["refundTransfer"]["state"], "rejected", "{r}");
    wait_for(
        &addr,
        "the paused corridor's transfer to be refunded",
        |s| state_of(s, DAVE) == Some("refunded"),
    )
    .await;
    assert_eq!(balance_b(DAVE).await, 0);
    // On chain A the user paid for Bob's, Erin's and Carol's transfers only: the sanctioned and the
    // paused ones came back.
    let balance_a = owner_a
        .stablecoin
        .method::<_, U256>("balanceOf", dev_address(1).unwrap())
        .unwrap()
        .call()
        .await
        .unwrap()
        .as_u128();
    assert_eq!(
        balance_a,
        1_000_000 * 1_000_000 - 2 * 100_000_000 - 60_000_000_000
    );

    // Restart in the middle: three transfers are locked, the node is stopped as soon as the
    // first of them is settled, and started again on the same database. Each is paid exactly
    // once on chain B.
    const FRANK: &str = "0x000000000000000000000000000000000000f4a1";
    for amount in [1_000_000u128, 2_000_000, 3_000_000] {
        user.lock(amount, "eip155:31338", FRANK, cbdc_b.as_str(), deadline)
            .await
            .unwrap();
    }
    wait_for(&addr, "a transfer to Frank to settle", |s| {
        s.iter().any(|(_, st, r)| {
            r.ends_with(FRANK)
                && ["settled", "delivering", "delivered", "finalized"].contains(&st.as_str())
        })
    })
    .await;
    stop_tx.send(true).unwrap();
    node.await.unwrap().unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let node = tokio::spawn(meridian_node::node::run(
        config.clone(),
        stop_rx,
        Some(ready_tx),
    ));
    let addr = match ready_rx.await {
        Ok(addr) => addr.to_string(),
        Err(_) => panic!("node did not restart: {:?}", node.await),
    };
    // The operator's pause outlived the restart.
    let r = graphql(addr.clone(), "{ corridors { id paused } }".into(), None)
        .await
        .unwrap();
    let paused: Vec<(String, bool)> = r["data"]["corridors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["paused"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        paused.contains(&("usdm-31337-31338".to_owned(), true)),
        "{paused:?}"
    );
    assert!(
        paused.contains(&("usdm-a-to-deur-b".to_owned(), false)),
        "{paused:?}"
    );
    let s = wait_for(&addr, "Frank's three transfers to be final", |s| {
        s.iter()
            .filter(|(_, st, r)| r.ends_with(FRANK) && st == "finalized")
            .count()
            == 3
    })
    .await;
    assert_eq!(s.iter().filter(|(_, _, r)| r.ends_with(FRANK)).count(), 3);
    // 1, 2 and 3 USDM less 0.25 %, at 0.92, in cents, each rounded down: 91 + 183 + 275.
    let frank_cbdc = owner_b
        .cbdc
        .method::<_, U256>("balanceOf", FRANK.parse::<Address>().unwrap())
        .unwrap()
        .call()
        .await
        .unwrap()
        .as_u128();
    assert_eq!(frank_cbdc, 91 + 183 + 275);

    // The operator's view in Prometheus.
    let metrics = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        }
    })
    .await
    .unwrap();
    for name in [
        "meridian_transfers_total{state=\"finalized\"}",
        "meridian_transfers_stuck",
        "meridian_transfer_delivery_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    stop_tx.send(true).unwrap();
    node.await.unwrap().unwrap();
}
