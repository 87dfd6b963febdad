//! The EVM watcher against a real anvil: ingestion, finality, restart, reorgs, failover, bad input.

#[path = "support/rpc_proxy.rs"]
mod rpc_proxy;
#[path = "support/anvil.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ethers::providers::{Http, Middleware, Provider};
use meridian_node::devnet::{dev_address, dev_client, StackClient};
use meridian_relayer::{FollowError, SourceError, StepOutcome};
use meridian_storage::entities::chain_events;
use meridian_storage::Store;
use meridian_types::config::ContractKind;
use sea_orm::{EntityTrait, QueryOrder};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn all_events(store: &Store) -> Vec<chain_events::Model> {
    chain_events::Entity::find()
        .order_by_asc(chain_events::Column::Id)
        .all(store.connection())
        .await
        .unwrap()
}

fn kinds(events: &[chain_events::Model], status: &str) -> Vec<String> {
    let mut k: Vec<String> = events
        .iter()
        .filter(|e| e.status == status)
        .map(|e| e.kind.clone())
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn ingests_every_kind_of_event_only_once_final() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let cfg = config(&chain, 2, 1_000);
    let f = follower(&cfg, &store).await;

    let url = chain.anvil.http_url();
    let op = StackClient::new(&chain.stack, dev_client(&url, 31337, 0).unwrap()).unwrap();
    let alice = StackClient::new(&chain.stack, dev_client(&url, 31337, 1).unwrap()).unwrap();
    let (a, b, me) = (
        dev_address(1).unwrap(),
        dev_address(2).unwrap(),
        dev_address(0).unwrap(),
    );
    op.mint_cbdc(a, 1_000).await.unwrap();
    op.mint_stable(a, 5_000_000).await.unwrap();
    alice.transfer_stable(b, 1_000_000).await.unwrap();
    alice.approve_escrow().await.unwrap();
    let dest_asset = "eip155:31338/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3";
    alice
        .lock(
            2_000_000,
            "eip155:31338",
            "0x00000000000000000000000000000000000000b0",
            dest_asset,
            4_000_000_000,
        )
        .await
        .unwrap();
    op.mint_cbdc(me, 700).await.unwrap();
    op.burn_cbdc(me, 300).await.unwrap();

    // The last two blocks (mint to operator, burn) are not final under 2 confirmations.
    drain(&f).await;
    let early = all_events(&store).await;
    assert!(
        early.iter().all(|e| e.kind != "token_burned"),
        "a block within the confirmation depth was ingested"
    );
    let cp = store.checkpoint(&cfg.id).await.unwrap().unwrap();
    assert_eq!(cp.height, head(&chain).await - 2);

    mine(&chain, 2).await;
    drain(&f).await;
    let events = all_events(&store).await;
    assert_eq!(
        kinds(&events, "decoded"),
        vec![
            "remittance_requested",
            "token_burned",
            "token_minted",
            "token_minted",
            "token_minted",
            "token_transferred",
            "token_transferred"
        ]
    );
    let lock = events
        .iter()
        .find(|e| e.kind == "remittance_requested")
        .unwrap();
    assert_eq!(lock.payload["amount"], "2000000");
    assert_eq!(lock.payload["dest_chain"], "eip155:31338");
    assert_eq!(lock.payload["dest_asset"], dest_asset);
    assert_eq!(lock.payload["sender"], format!("eip155:31337:{a:#x}"));
    assert_eq!(lock.payload["nonce"], "0");
    assert_eq!(lock.contract, format!("{:#x}", chain.stack.escrow));
    let burn = events.iter().find(|e| e.kind == "token_burned").unwrap();
    assert_eq!(burn.payload["amount"], "300");

    // Stepping again changes nothing.
    assert!(matches!(
        f.step().await.unwrap(),
        StepOutcome::CaughtUp { .. }
    ));
    assert_eq!(all_events(&store).await.len(), events.len());
}

#[tokio::test]
async fn restart_mid_stream_neither_duplicates_nor_loses() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let url = chain.anvil.http_url();
    let op = StackClient::new(&chain.stack, dev_client(&url, 31337, 0).unwrap()).unwrap();
    for i in 0..12u128 {
        op.mint_stable(dev_address(1 + (i as usize % 3)).unwrap(), 1 + i)
            .await
            .unwrap();
    }
    mine(&chain, 1).await;

    let cfg = config(&chain, 1, 3); // small ranges: many steps, so we stop in the middle
    {
        let store = sqlite_store(&dir).await;
        let f = follower(&cfg, &store).await;
        for _ in 0..3 {
            assert!(matches!(
                f.step().await.unwrap(),
                StepOutcome::Ingested { .. }
            ));
        }
        let partial = all_events(&store).await.len();
        assert!(
            partial > 0 && partial < 12,
            "expected a partial ingest, got {partial}"
        );
        // The process "dies" here: follower and pool dropped.
    }
    // More activity while the node is down.
    for i in 0..3u128 {
        op.mint_cbdc(dev_address(1).unwrap(), 10 + i).await.unwrap();
    }
    mine(&chain, 1).await;

    let store = sqlite_store(&dir).await; // a new connection to the same file, as after a restart
    let f = follower(&cfg, &store).await;
    let outcomes = drain(&f).await;
    let duplicates: u64 = outcomes
        .iter()
        .map(|o| match o {
            StepOutcome::Ingested { duplicates, .. } => *duplicates,
            _ => 0,
        })
        .sum();
    assert_eq!(duplicates, 0, "resume must start after the checkpoint");
    let events = all_events(&store).await;
    assert_eq!(events.len(), 15);
    let mut amounts: Vec<u128> = events
        .iter()
        .map(|e| e.payload["amount"].as_str().unwrap().parse().unwrap())
        .collect();
    amounts.sort();
    let mut expected: Vec<u128> = (1..=12).chain(10..=12).collect();
    expected.sort();
    assert_eq!(amounts, expected, "every mint exactly once");
}

#[tokio::test]
async fn reorg_rewinds_to_common_ancestor_and_retracts() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    // Zero confirmations: the watcher follows the tip, so the reorg below reaches ingested blocks.
    let cfg = config(&chain, 0, 1_000);
    let f = follower(&cfg, &store).await;
    let url = chain.anvil.http_url();
    let op = StackClient::new(&chain.stack, dev_client(&url, 31337, 0).unwrap()).unwrap();
    for amount in [1u128, 2, 3] {
        op.mint_cbdc(dev_address(1).unwrap(), amount).await.unwrap();
    }
    drain(&f).await;
    assert_eq!(kinds(&all_events(&store).await, "decoded").len(), 3);
    let tip = head(&chain).await;

    // Replace the last two blocks (the mints of 2 and 3) with empty ones.
    let p = Provider::<Http>::try_from(url.as_str()).unwrap();
    let _: serde_json::Value = p
        .request("anvil_reorg", (2u64, Vec::<serde_json::Value>::new()))
        .await
        .unwrap();
    assert_eq!(head(&chain).await, tip);

    match f.step().await.unwrap() {
        StepOutcome::Rewound {
            from,
            to,
            retracted,
        } => {
            assert_eq!((from, to, retracted), (tip, tip - 2, 2));
        }
        other => panic!("expected a rewind, got {other:?}"),
    }
    drain(&f).await;
    let events = all_events(&store).await;
    let live: Vec<_> = events.iter().filter(|e| e.status == "decoded").collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].payload["amount"], "1");
    assert_eq!(events.iter().filter(|e| e.status == "retracted").count(), 2);
    let cp = store.checkpoint(&cfg.id).await.unwrap().unwrap();
    let canonical = p.get_block(cp.height).await.unwrap().unwrap();
    assert_eq!(
        cp.block_hash,
        Some(format!("{:#x}", canonical.hash.unwrap()))
    );

    // New activity on the new branch is ingested normally.
    op.mint_cbdc(dev_address(1).unwrap(), 4).await.unwrap();
    drain(&f).await;
    assert_eq!(kinds(&all_events(&store).await, "decoded").len(), 2);
}

/// An HTTP server that answers every request with 200 and a body that is not JSON-RPC.
async fn garbage_rpc() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = "<html>rate limited?</html>";
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn fails_over_past_dead_and_garbage_endpoints_and_survives_outage() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let mut chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let dead = format!(
        "http://127.0.0.1:{}",
        meridian_node::devnet::free_port().unwrap()
    );
    let (garbage, hits) = garbage_rpc().await;
    let mut cfg = config(&chain, 0, 1_000);
    cfg.rpc_urls = vec![
        dead.parse().unwrap(),
        garbage.parse().unwrap(),
        chain.anvil.http_url().parse().unwrap(),
    ];
    let f = follower(&cfg, &store).await;

    let url = chain.anvil.http_url();
    let op = StackClient::new(&chain.stack, dev_client(&url, 31337, 0).unwrap()).unwrap();
    op.mint_cbdc(dev_address(1).unwrap(), 5).await.unwrap();
    drain(&f).await;
    assert_eq!(all_events(&store).await.len(), 1);
    assert!(
        hits.load(Ordering::SeqCst) > 0,
        "the garbage endpoint was never tried"
    );

    // Every endpoint down: the step fails with a retryable error, nothing is written, no panic.
    let before = store.checkpoint(&cfg.id).await.unwrap();
    chain.anvil.stop().await;
    let err = f.step().await.unwrap_err();
    assert!(
        matches!(err, FollowError::Source(SourceError::Unavailable { .. })),
        "{err}"
    );
    assert!(!err.is_fatal());
    assert_eq!(store.checkpoint(&cfg.id).await.unwrap(), before);
}

#[tokio::test]
async fn start_up_refuses_wrong_chain_id_and_unreachable_chains() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let mut cfg = config(&chain, 0, 100);
    cfg.id = "eip155:1".parse().unwrap();
    let err = meridian_relayer::evm::connect(3, &cfg)
        .await
        .err()
        .expect("wrong chain id accepted");
    assert_eq!(err.key, "chains[3].rpc_urls[0]");
    assert!(
        err.to_string()
            .contains("reports chain id 31337, expected 1"),
        "{err}"
    );

    let mut cfg = config(&chain, 0, 100);
    cfg.rpc_urls = vec![format!(
        "http://127.0.0.1:{}",
        meridian_node::devnet::free_port().unwrap()
    )
    .parse()
    .unwrap()];
    let err = meridian_relayer::evm::connect(0, &cfg)
        .await
        .err()
        .expect("unreachable chain accepted");
    assert_eq!(err.key, "chains[0].rpc_urls");
    assert!(err.to_string().contains("eip155:31337"), "{err}");
}

#[tokio::test]
async fn undecodable_logs_are_stored_with_their_reason() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let mut cfg = config(&chain, 0, 1_000);
    // Misdeclare the stablecoin as an escrow: its Transfer logs then do not fit the declared ABI.
    for c in &mut cfg.contracts {
        if c.address == format!("{:#x}", chain.stack.stablecoin) {
            c.kind = ContractKind::BridgeEscrow;
        }
    }
    let f = follower(&cfg, &store).await;
    let op = StackClient::new(
        &chain.stack,
        dev_client(&chain.anvil.http_url(), 31337, 0).unwrap(),
    )
    .unwrap();
    op.mint_stable(dev_address(1).unwrap(), 9).await.unwrap();
    op.mint_cbdc(dev_address(1).unwrap(), 9).await.unwrap();
    drain(&f).await;
    let events = all_events(&store).await;
    assert_eq!(events.len(), 2);
    let bad = events
        .iter()
        .find(|e| e.status == "undecodable")
        .expect("undecodable log dropped");
    assert!(
        bad.error
            .as_deref()
            .unwrap_or_default()
            .contains("unexpected event"),
        "{:?}",
        bad.error
    );
    assert_eq!(bad.payload["topics"].as_array().unwrap().len(), 3);
    assert_eq!(events.iter().filter(|e| e.status == "decoded").count(), 1);
}

#[tokio::test]
async fn follows_the_head_through_the_websocket_subscription() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let mut cfg = config(&chain, 0, 1_000);
    cfg.poll_interval_ms = 60_000; // only a head notification can wake the follower in time
    let source = meridian_relayer::evm::connect(0, &cfg).await.unwrap();
    store
        .register_chain(&cfg.id, "t", meridian_types::ChainFamily::Evm)
        .await
        .unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sub = meridian_relayer::evm::spawn_head_subscription(
        cfg.id.clone(),
        cfg.ws_url.clone().unwrap(),
        wake.clone(),
        stop_rx.clone(),
    );
    let follower = meridian_relayer::ChainFollower::new(
        source,
        store.clone(),
        meridian_relayer::FollowerSettings {
            start_block: 0,
            range_max: 1_000,
            poll_interval: Duration::from_secs(60),
        },
        wake,
    );
    let run = tokio::spawn(follower.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await; // caught up and waiting; subscription live

    let op = StackClient::new(
        &chain.stack,
        dev_client(&chain.anvil.http_url(), 31337, 0).unwrap(),
    )
    .unwrap();
    op.mint_cbdc(dev_address(1).unwrap(), 77).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while all_events(&store).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new head did not wake the follower"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all_events(&store).await[0].payload["amount"], "77");

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("follower ignored shutdown")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), sub)
        .await
        .expect("subscription ignored shutdown")
        .unwrap();
}

/// An endpoint re-pointed at another network mid-run is taken out of rotation for good; one
/// whose head froze while the chain moves on is taken out while it lags and comes back when it
/// follows again. (Head reads go to the first endpoint in rotation; the proxy counts them.)
#[tokio::test]
async fn an_endpoint_that_changes_chain_or_freezes_is_taken_out_of_rotation() {
    let Some(anvil) = anvil_or_skip() else {
        return;
    };
    let chain = dev_chain(&anvil, 31337).await;
    let heads = "eth_getBlockByNumber";
    let check = meridian_relayer::evm::CHECK_EVERY_HEADS_MAX;

    // Another chain id mid-run.
    let proxy = rpc_proxy::RpcProxy::start(&chain.anvil.http_url()).await;
    let mut cfg = config(&chain, 0, 100);
    cfg.rpc_urls = vec![
        proxy.url().parse().unwrap(),
        chain.anvil.http_url().parse().unwrap(),
    ];
    let source = meridian_relayer::evm::connect(0, &cfg).await.unwrap();
    reads(&source, 1).await;
    assert!(proxy.calls(heads) > 0, "the proxy is the first endpoint");
    proxy.answer("eth_chainId", serde_json::json!("0x1"));
    reads(&source, check).await;
    let before = proxy.calls(heads);
    reads(&source, check).await;
    assert_eq!(
        proxy.calls(heads),
        before,
        "still asked after reporting chain 1"
    );
    // Healed, it stays out: an endpoint that served another chain is not trusted again.
    proxy.heal();
    reads(&source, 2 * check).await;
    assert_eq!(proxy.calls(heads), before);

    // A frozen head while the chain moves on.
    let proxy = rpc_proxy::RpcProxy::start(&chain.anvil.http_url()).await;
    let second = rpc_proxy::RpcProxy::start(&chain.anvil.http_url()).await;
    cfg.rpc_urls = vec![proxy.url().parse().unwrap(), second.url().parse().unwrap()];
    let source = meridian_relayer::evm::connect(0, &cfg).await.unwrap();
    let p = Provider::<Http>::try_from(chain.anvil.http_url()).unwrap();
    let head = p.get_block_number().await.unwrap();
    proxy.answer("eth_blockNumber", serde_json::json!(format!("{head:#x}")));
    mine(&chain, 5).await;
    reads(&source, 3 * check).await;
    let before = proxy.calls(heads);
    reads(&source, check).await;
    assert_eq!(proxy.calls(heads), before, "still asked with a frozen head");
    // It follows again: back in rotation at the next check — when the other endpoint fails,
    // the pool fails over to it (were it still out, every head read would fail).
    proxy.heal();
    reads(&source, check).await;
    second.refuse(heads);
    let back = proxy.calls(heads);
    reads(&source, 2).await;
    assert!(
        proxy.calls(heads) > back,
        "not back after its head followed again"
    );
}

/// `n` head reads of `source`.
async fn reads(source: &meridian_relayer::evm::EvmSource, n: u64) {
    use meridian_relayer::BlockSource;
    for _ in 0..n {
        source.head().await.unwrap();
    }
}
