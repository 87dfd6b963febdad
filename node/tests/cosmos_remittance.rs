//! A remittance on a Cosmos SDK chain through the whole node: a bank send to the escrow with a
//! memo becomes a transfer, is quoted and settled, and is paid out by the node's own signed bank
//! send (with its payout marker and timeout height); a bad memo is refunded. The chain is the
//! CometBFT replay node's scenario chain (real signed transactions, checked as the auth module
//! does), producing a block every 200 ms.

#[path = "../../relayer/tests/support/cometbft_node.rs"]
mod cometbft_node;
#[path = "support/graphql.rs"]
mod gql;

use gql::graphql;

use std::time::Duration;

use cometbft_node::{CometNode, Dialect};
use cosmrs::crypto::secp256k1::SigningKey;
use meridian_relayer::cometbft::{address_of, sign_bank_send, FeeSettings};
use serde_json::json;
use tendermint_rpc::{Client, HttpClient};

const CHAIN: &str = "remit-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cosmos_remittance_is_paid_out_by_the_node_and_a_bad_memo_refunded() {
    let node = std::sync::Arc::new(CometNode::scenario(CHAIN, Dialect::V038).await);
    let escrow_key = "09".repeat(32);
    let escrow = address_of(&SigningKey::from_slice(&[9; 32]).unwrap(), "cosmos").unwrap();
    let alice_key = SigningKey::from_slice(&[7; 32]).unwrap();
    let alice = address_of(&alice_key, "cosmos").unwrap();
    let bob = address_of(&SigningKey::from_slice(&[8; 32]).unwrap(), "cosmos").unwrap();
    node.set_account(&alice, 5, 0, &[("ustable", 1_000_000), ("stake", 100_000)]);
    node.set_account(&escrow, 6, 0, &[("ucbdc", 1_000_000), ("stake", 100_000)]);
    node.set_account(&bob, 7, 0, &[]);
    // Blocks every 200 ms, as a chain would make them.
    let producer = {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                node.add_block(Vec::new(), Vec::new());
            }
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let chain = format!("cosmos:{CHAIN}");
    let (stable, cbdc) = (
        format!("{chain}/bank:ustable"),
        format!("{chain}/bank:ucbdc"),
    );
    let toml = format!(
        r#"
[node]
database_url = "sqlite://{db}?mode=rwc"
listen = "{listen}"

[[chains]]
id = "{chain}"
name = "cosmos"
rpc_urls = ["{http}"]
ws_url = "{ws}"
poll_interval_ms = 200
escrow = "{escrow}"
signer_key = "{escrow_key}"
fee = {{ denom = "stake", amount = 500 }}

[[assets]]
id = "{stable}"
symbol = "USTB"
decimals = 6
kind = "stablecoin"

[[assets]]
id = "{cbdc}"
symbol = "UCBDC"
decimals = 6
kind = "cbdc"

[[corridors]]
id = "ustb-to-ucbdc"
source_asset = "{stable}"
dest_asset = "{cbdc}"
fee_bps = 100
rate = "0.5"
max_amount = 1000000
daily_cap = 10000000
liquidity = 1000000
"#,
        db = dir.path().join("node.sqlite").display(),
        http = node.http_url(),
        ws = node.ws_url(),
    );
    let config = meridian_types::config::Config::from_toml_str(&toml, "test", Vec::new()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(meridian_node::node::run(config, stop_rx, Some(ready_tx)));
    let addr = match ready_rx.await {
        Ok(a) => a.to_string(),
        Err(_) => panic!("node did not start: {:?}", run.await),
    };

    // Alice's wallet: two bank sends to the escrow, one to Bob, one with a broken memo.
    let fee = FeeSettings {
        denom: "stake".into(),
        amount: 500,
        gas_limit: 200_000,
    };
    let c = HttpClient::new(node.http_url().as_str()).unwrap();
    for (seq, amount, memo) in [
        (
            0u64,
            100_000u128,
            format!("meridian:v1 to={bob} asset={cbdc}"),
        ),
        (1, 3_000, "meridian:v1 to=bob".to_owned()),
    ] {
        let tx = sign_bank_send(
            &alice_key,
            CHAIN,
            5,
            seq,
            &escrow,
            ("ustable", amount),
            &memo,
            &fee,
            0,
        )
        .unwrap();
        let r = c.broadcast_tx_sync(tx.bytes).await.unwrap();
        assert_eq!(r.code.value(), 0, "{}", r.log);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = graphql(
            addr.clone(),
            "{ transfers(first: 10) { amount state history { to reason } } }".into(),
        )
        .await;
        let ts = r["data"]["transfers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let state = |a: &str| {
            ts.iter()
                .find(|t| t["amount"] == a)
                .map(|t| t["state"].clone())
        };
        if state("100000") == Some(json!("finalized")) && state("3000") == Some(json!("refunded")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfers did not complete: {r}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // On the chain: Bob holds 100 000 less 1 % at 0.5; Alice got 3 000 back (minus nothing: the
    // escrow pays the refund's fee); the escrow paid two fees.
    assert_eq!(node.account(&bob).unwrap().balances["ucbdc"], 49_500);
    let alice_now = node.account(&alice).unwrap().balances["ustable"];
    assert_eq!(alice_now, 1_000_000 - 100_000 - 3_000 + 3_000);
    assert_eq!(
        node.account(&escrow).unwrap().balances["stake"],
        100_000 - 2 * 500
    );
    assert_eq!(node.account(&escrow).unwrap().sequence, 2);

    // The chain is visible with its family, head and lag.
    let chains = graphql(
        addr.clone(),
        "{ chains { id family headHeight checkpointHeight lag } }".into(),
    )
    .await;
    let c0 = &chains["data"]["chains"][0];
    assert_eq!(c0["id"], chain);
    assert_eq!(c0["family"], "cometbft");
    assert!(c0["headHeight"].as_i64().unwrap() > 5, "{chains}");

    stop_tx.send(true).unwrap();
    run.await.unwrap().unwrap();
    producer.abort();
}
