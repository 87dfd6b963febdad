//! The CometBFT watcher end to end against the replay node's scenario chain: real tendermint-rpc
//! client, real signed Cosmos SDK transactions (cosmrs), SQLite store, the same follower as EVM.
//!
//! Covers: a bank send to the escrow with a Meridian memo becomes a remittance request; bad and
//! foreign memos and failed transactions do not; gov votes and results; both attribute
//! encodings; a restart mid-stream neither loses nor doubles events; a dropped websocket
//! reconnects and keeps waking the follower; a dead endpoint fails over.

#[path = "support/cometbft_node.rs"]
mod cometbft_node;

use std::sync::Arc;
use std::time::Duration;

use cometbft_node::{AppEvent, CometNode, Dialect, ScenarioTx};
use cosmrs::crypto::secp256k1::SigningKey;
use meridian_relayer::cometbft::{self, address_of, sign_bank_send, FeeSettings};
use meridian_relayer::{ChainFollower, FollowerSettings, StepOutcome};
use meridian_storage::{EventFilter, EventOrder, Store};
use meridian_types::config::{AssetConfig, AssetKind, ChainConfig, FinalityRule};
use meridian_types::{AccountId, AssetId, ChainFamily, ChainId, EventPayload, WeightedOption};
use tendermint_rpc::{Client, HttpClient};
use tokio::sync::{watch, Notify};

const CHAIN: &str = "meridian-1";
const DEST_ASSET: &str = "eip155:31338/erc20:0x00000000000000000000000000000000000000c0";
const RECIPIENT: &str = "0x00000000000000000000000000000000000000b0";

fn chain() -> ChainId {
    format!("cosmos:{CHAIN}").parse().unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn fee() -> FeeSettings {
    FeeSettings {
        denom: "stake".into(),
        amount: 500,
        gas_limit: 200_000,
    }
}

struct Parties {
    sender_key: SigningKey,
    sender: String,
    escrow: String,
}

/// A scenario chain with a funded sender (account 5) and an escrow (account 6).
async fn chain_with_parties(dialect: Dialect) -> (CometNode, Parties) {
    let node = CometNode::scenario(CHAIN, dialect).await;
    let sender_key = key(7);
    let sender = address_of(&sender_key, "cosmos").unwrap();
    let escrow = address_of(&key(9), "cosmos").unwrap();
    node.set_account(
        &sender,
        5,
        0,
        &[("ustable", 1_000_000_000), ("stake", 1_000_000)],
    );
    node.set_account(&escrow, 6, 0, &[("stake", 1_000_000)]);
    (
        node,
        Parties {
            sender_key,
            sender,
            escrow,
        },
    )
}

/// Signs a bank send as a wallet would and broadcasts it; it lands in the next block.
async fn broadcast_send(
    node: &CometNode,
    key: &SigningKey,
    account: u64,
    seq: u64,
    to: &str,
    coin: (&str, u128),
    memo: &str,
) -> String {
    let tx = sign_bank_send(key, CHAIN, account, seq, to, coin, memo, &fee(), 0).unwrap();
    let c = HttpClient::new(node.http_url().as_str()).unwrap();
    let r = c.broadcast_tx_sync(tx.bytes.clone()).await.unwrap();
    assert_eq!(r.code.value(), 0, "{}", r.log);
    assert_eq!(r.hash.to_string(), tx.hash);
    tx.hash
}

fn config(node: &CometNode, escrow: &str) -> ChainConfig {
    ChainConfig {
        id: chain(),
        name: "cosmos-test".into(),
        rpc_urls: vec![node.http_url().parse().unwrap()],
        ws_url: Some(node.ws_url().parse().unwrap()),
        finality: FinalityRule::FinalizedTag,
        start_block: 0,
        log_range_max: 100,
        poll_interval_ms: 200,
        rpc_timeout_ms: 2_000,
        contracts: Vec::new(),
        escrow: Some(escrow.into()),
        fee: None,
        signer_key: None,
        release_batch_max: 1,
    }
}

fn assets() -> Vec<AssetConfig> {
    vec![AssetConfig {
        id: AssetId::cosmos_denom(&chain(), "ustable"),
        symbol: "USTB".into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    }]
}

async fn store(dir: &tempfile::TempDir, name: &str) -> Store {
    let store = Store::connect(&format!("sqlite://{}", dir.path().join(name).display()))
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    store
        .register_chain(&chain(), "cosmos-test", ChainFamily::Cometbft)
        .await
        .unwrap();
    store
}

async fn follower(
    config: &ChainConfig,
    store: &Store,
    range_max: u64,
    wake: Arc<Notify>,
) -> ChainFollower<cometbft::CometSource> {
    let connected = cometbft::connect(0, config, &assets()).await.unwrap();
    ChainFollower::new(
        connected.source,
        store.clone(),
        FollowerSettings {
            start_block: connected.start_block,
            range_max,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
        },
        wake,
    )
}

async fn catch_up(f: &ChainFollower<cometbft::CometSource>) {
    for _ in 0..1_000 {
        if let StepOutcome::CaughtUp { .. } = f.step().await.unwrap() {
            return;
        }
    }
    panic!("follower never caught up");
}

/// Every stored event of the chain: (uid, payload).
async fn stored(store: &Store) -> Vec<(String, EventPayload)> {
    let page = store
        .events_page(&EventFilter::default(), EventOrder::BlockAsc, None, 10_000)
        .await
        .unwrap();
    page.rows
        .into_iter()
        .map(|r| (r.uid, serde_json::from_value(r.payload).unwrap()))
        .collect()
}

fn acct(a: &str) -> AccountId {
    AccountId::new(&chain(), a)
}

fn ustable() -> AssetId {
    AssetId::cosmos_denom(&chain(), "ustable")
}

/// A vote transaction's events as gov v1 (SDK 0.47+) emits them: JSON weighted options.
fn vote_tx(voter: &str) -> ScenarioTx {
    ScenarioTx {
        bytes: format!("vote-by-{voter}").into_bytes(),
        code: 0,
        events: vec![
            AppEvent::new(
                "message",
                &[
                    ("action", "/cosmos.gov.v1.MsgVoteWeighted"),
                    ("sender", voter),
                    ("module", "governance"),
                ],
            ),
            AppEvent::new(
                "proposal_vote",
                &[
                    ("voter", voter),
                    (
                        "option",
                        r#"[{"option":1,"weight":"0.700000000000000000"},{"option":3,"weight":"0.300000000000000000"}]"#,
                    ),
                    ("proposal_id", "4"),
                ],
            ),
        ],
    }
}

/// Sends the scenario traffic: a remittance, a malformed-memo remittance, a plain send to the
/// escrow, a failing send, a weighted vote and a proposal result. Returns the remittance's hash.
async fn traffic(node: &CometNode, p: &Parties) -> String {
    let memo = format!("meridian:v1 to={RECIPIENT} asset={DEST_ASSET} deadline=1900000000");
    let remit = broadcast_send(
        node,
        &p.sender_key,
        5,
        0,
        &p.escrow,
        ("ustable", 250_000),
        &memo,
    )
    .await;
    node.add_block(Vec::new(), Vec::new());
    broadcast_send(
        node,
        &p.sender_key,
        5,
        1,
        &p.escrow,
        ("ustable", 1_000),
        "meridian:v1 to=0xb0",
    )
    .await;
    broadcast_send(
        node,
        &p.sender_key,
        5,
        2,
        &p.escrow,
        ("ustable", 2_000),
        "thanks for lunch",
    )
    .await;
    node.add_block(Vec::new(), Vec::new());
    // More than the sender holds: fails in DeliverTx, only the fee moves.
    broadcast_send(
        node,
        &p.sender_key,
        5,
        3,
        &p.escrow,
        ("ustable", 5_000_000_000),
        "meridian:v1 to=0xb0 asset=eip155:1/erc20:0x1",
    )
    .await;
    node.add_block(
        vec![vote_tx(&p.sender)],
        vec![AppEvent::new(
            "active_proposal",
            &[("proposal_id", "4"), ("proposal_result", "proposal_passed")],
        )],
    );
    node.add_empty_blocks(2);
    remit
}

#[tokio::test]
async fn remittances_transfers_and_governance_are_ingested_exactly() {
    for dialect in [Dialect::V038, Dialect::V034] {
        let (node, p) = chain_with_parties(dialect).await;
        let remit = traffic(&node, &p).await;
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, "a.sqlite").await;
        let f = follower(
            &config(&node, &p.escrow),
            &store,
            100,
            Arc::new(Notify::new()),
        )
        .await;
        catch_up(&f).await;
        let events = stored(&store).await;
        let payloads: Vec<&EventPayload> = events.iter().map(|(_, e)| e).collect();

        let remittances: Vec<&EventPayload> = payloads
            .iter()
            .copied()
            .filter(|e| matches!(e, EventPayload::RemittanceRequested { .. }))
            .collect();
        assert_eq!(remittances.len(), 2, "{dialect:?}: {remittances:#?}");
        assert_eq!(
            remittances[0],
            &EventPayload::RemittanceRequested {
                nonce: remit.clone(),
                sender: acct(&p.sender),
                asset: ustable(),
                amount: 250_000,
                dest_chain: "eip155:31338".into(),
                recipient: RECIPIENT.into(),
                dest_asset: DEST_ASSET.into(),
                deadline: 1_900_000_000,
            },
            "{dialect:?}"
        );
        // A Meridian memo that is malformed still yields a request the router will refuse.
        match remittances[1] {
            EventPayload::RemittanceRequested {
                amount,
                dest_asset,
                recipient,
                ..
            } => {
                assert_eq!(*amount, 1_000);
                assert_eq!(dest_asset, "invalid memo: memo lacks `asset=`");
                assert!(recipient.is_empty());
            }
            _ => unreachable!(),
        }
        // Every ustable transfer to the escrow is recorded; the failed one moved nothing.
        let to_escrow: Vec<u128> = payloads
            .iter()
            .filter_map(|e| match e {
                EventPayload::TokenTransferred {
                    asset, to, amount, ..
                } if *asset == ustable() && *to == acct(&p.escrow) => Some(*amount),
                _ => None,
            })
            .collect();
        assert_eq!(to_escrow, vec![250_000, 1_000, 2_000], "{dialect:?}");
        // Fees in `stake` go to the fee collector; that denom is not watched.
        assert!(!payloads.iter().any(|e| matches!(e, EventPayload::TokenTransferred { asset, .. } if asset.as_str().ends_with("stake"))));
        assert!(
            payloads.contains(&&EventPayload::VoteCast {
                proposal_id: "4".into(),
                voter: Some(acct(&p.sender)),
                options: vec![
                    WeightedOption {
                        option: "yes".into(),
                        weight: "0.700000000000000000".into()
                    },
                    WeightedOption {
                        option: "no".into(),
                        weight: "0.300000000000000000".into()
                    },
                ],
                power: None,
                reason: None,
            }),
            "{dialect:?}"
        );
        assert!(payloads.contains(&&EventPayload::ProposalEnded {
            proposal_id: "4".into(),
            result: "proposal_passed".into(),
        }));
        let cp = store.checkpoint(&chain()).await.unwrap().unwrap();
        assert_eq!(cp.height, 6);
        assert_eq!(cp.block_hash.as_deref(), Some(node.block_hash(6).as_str()));
        // The chain's own balances agree with what was ingested.
        assert_eq!(
            node.account(&p.escrow).unwrap().balances["ustable"],
            253_000
        );
    }
}

#[tokio::test]
async fn restart_mid_stream_loses_and_doubles_nothing() {
    let (node, p) = chain_with_parties(Dialect::V038).await;
    traffic(&node, &p).await;
    let cfg = config(&node, &p.escrow);
    let dir = tempfile::tempdir().unwrap();

    // Reference: one uninterrupted run.
    let reference = store(&dir, "reference.sqlite").await;
    catch_up(&follower(&cfg, &reference, 100, Arc::new(Notify::new())).await).await;
    let want = stored(&reference).await;
    assert!(want.len() >= 8, "{want:#?}");

    // Interrupted: two one-block steps, then the process "dies" and a new one resumes; then
    // the same range is offered again (a replay after a crash between commit and ack).
    let s = store(&dir, "interrupted.sqlite").await;
    {
        let f = follower(&cfg, &s, 1, Arc::new(Notify::new())).await;
        f.step().await.unwrap();
        f.step().await.unwrap();
    }
    let f = follower(&cfg, &s, 1, Arc::new(Notify::new())).await;
    catch_up(&f).await;
    node.add_block(Vec::new(), Vec::new());
    catch_up(&f).await;
    let got = stored(&s).await;
    let mut want_uids: Vec<&String> = want.iter().map(|(u, _)| u).collect();
    let mut got_uids: Vec<&String> = got.iter().map(|(u, _)| u).collect();
    want_uids.sort();
    got_uids.sort();
    assert_eq!(got_uids, want_uids);
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_dropped_websocket_reconnects_and_keeps_waking_the_follower() {
    let (node, p) = chain_with_parties(Dialect::V038).await;
    let mut cfg = config(&node, &p.escrow);
    // Polling so slow that only websocket notifications can explain prompt progress.
    cfg.poll_interval_ms = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "ws.sqlite").await;
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop) = watch::channel(false);
    let connected = cometbft::connect(0, &cfg, &assets()).await.unwrap();
    let sub = cometbft::spawn_block_subscription(
        chain(),
        cfg.ws_url.clone().unwrap(),
        connected.compat,
        wake.clone(),
        stop.clone(),
    );
    let f = ChainFollower::new(
        connected.source,
        s.clone(),
        FollowerSettings {
            start_block: 1,
            range_max: 100,
            poll_interval: Duration::from_millis(cfg.poll_interval_ms),
        },
        wake,
    );
    let run = tokio::spawn(f.run(stop.clone()));

    let reaches = |height: u64| {
        let s = s.clone();
        async move {
            for _ in 0..100 {
                if s.checkpoint(&chain()).await.unwrap().map(|c| c.height) >= Some(height) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(reaches(1).await, "initial catch-up");
    wait_for(|| node.subscriptions() >= 1).await;
    broadcast_send(
        &node,
        &p.sender_key,
        5,
        0,
        &p.escrow,
        ("ustable", 7),
        "before the drop",
    )
    .await;
    let h = node.add_block(Vec::new(), Vec::new());
    assert!(
        reaches(h).await,
        "block {h} not ingested promptly: websocket not waking the follower"
    );

    node.drop_websockets();
    wait_for(|| node.subscriptions() >= 2).await;
    broadcast_send(
        &node,
        &p.sender_key,
        5,
        1,
        &p.escrow,
        ("ustable", 8),
        "after the drop",
    )
    .await;
    let h = node.add_block(Vec::new(), Vec::new());
    assert!(
        reaches(h).await,
        "block {h} not ingested after the websocket dropped and came back"
    );
    let amounts: Vec<u128> = stored(&s)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e {
            EventPayload::TokenTransferred { amount, .. } => Some(amount),
            _ => None,
        })
        .collect();
    assert_eq!(amounts, vec![7, 8]);

    stop_tx.send(true).unwrap();
    run.await.unwrap().unwrap();
    sub.await.unwrap();
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met in 10 s");
}

#[tokio::test]
async fn a_dead_endpoint_fails_over_to_the_next() {
    let (node, p) = chain_with_parties(Dialect::V038).await;
    traffic(&node, &p).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let mut cfg = config(&node, &p.escrow);
    cfg.rpc_urls.insert(0, dead.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "failover.sqlite").await;
    catch_up(&follower(&cfg, &s, 100, Arc::new(Notify::new())).await).await;
    assert_eq!(s.checkpoint(&chain()).await.unwrap().unwrap().height, 6);
    // A node serving another chain is refused at start-up, naming the key.
    let mut wrong = config(&node, &p.escrow);
    wrong.id = "cosmos:other-1".parse().unwrap();
    let err = cometbft::connect(3, &wrong, &[]).await.err().unwrap();
    assert_eq!(err.key, "chains[3].rpc_urls[0]");
    assert!(
        err.message.contains("serves chain `meridian-1`"),
        "{}",
        err.message
    );
}

/// Issue 16 item 7 for CometBFT: while the chain is followed, an endpoint re-pointed at another
/// network is taken out of rotation for good, and one whose head stays put while another
/// endpoint moves ahead is taken out while it lags and put back once it follows.
#[tokio::test]
async fn endpoints_serving_another_chain_or_frozen_are_taken_out_of_rotation() {
    use meridian_relayer::endpoint_watch::{EndpointWatch, CHECK_EVERY_HEADS_MAX};
    use meridian_relayer::BlockSource;
    let good = CometNode::scenario(CHAIN, Dialect::V038).await;
    let frozen = CometNode::scenario(CHAIN, Dialect::V038).await;
    let other = CometNode::scenario("another-1", Dialect::V038).await;
    let client = |n: &CometNode| {
        let url: url::Url = n.http_url().parse().unwrap();
        let client = HttpClient::builder(n.http_url().parse().unwrap())
            .compat_mode(cometbft::CompatMode::V0_38)
            .build()
            .unwrap();
        (url, client)
    };
    let pool = Arc::new(cometbft::CometRpcPool::new(
        chain(),
        vec![client(&good), client(&frozen), client(&other)],
        Duration::from_secs(5),
    ));
    // Through the source, as the follower reads heads: one check every CHECK_EVERY_HEADS_MAX.
    let source = cometbft::CometSource::new(
        pool.clone(),
        cometbft::CosmosDecoder::new(chain(), None, Vec::new()),
    );
    for _ in 0..CHECK_EVERY_HEADS_MAX {
        source.head().await.unwrap();
    }
    assert!(
        pool.is_stopped(2),
        "the endpoint serving another network is out"
    );
    assert!(!pool.is_stopped(0) && !pool.is_stopped(1));

    // The first endpoint moves ahead while the second stays put, check after check.
    let watch = EndpointWatch::new(CHAIN);
    for _ in 0..3 {
        good.add_empty_blocks(2);
        watch.check(&pool, &cometbft::CometProbe).await;
    }
    assert!(pool.is_stopped(1), "a frozen head is out while it lags");
    assert!(!pool.is_stopped(0));
    // It catches up: back in rotation. Another network never comes back.
    frozen.add_empty_blocks(6);
    watch.check(&pool, &cometbft::CometProbe).await;
    assert!(!pool.is_stopped(1), "back once it follows");
    assert!(pool.is_stopped(2));
}
