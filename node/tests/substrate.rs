//! The Substrate watcher and submitter against a real runtime: Chopsticks runs Rococo Asset Hub
//! (statemine) from its chain spec. Accounts are funded with `dev_setStorage`; everything else —
//! creating and minting the asset, the sender's `Utility.batch_all` of a transfer to the escrow
//! and a `System.remark_with_event` memo, the escrow's delivery — is a real sr25519-signed
//! extrinsic the runtime executes.

#[path = "support/graphql.rs"]
mod gql;
#[path = "support/chopsticks.rs"]
mod support;

use gql::graphql;

use std::sync::Arc;
use std::time::Duration;

use meridian_node::devnet::ChopsticksNode;
use meridian_relayer::substrate::{
    self, batch_all_call, remark_call, sr25519_pair, transfer_call, Finality, SubstrateAsset,
    SubstrateSubmitter,
};
use meridian_relayer::{ChainFollower, FollowerSettings, StepOutcome};
use meridian_storage::{EventFilter, EventOrder, Store};
use meridian_types::config::{AssetConfig, AssetKind, ChainConfig, FinalityRule};
use meridian_types::{AccountId, AssetId, ChainFamily, ChainId, EventPayload};
use tokio::sync::Notify;

const ASSET: u32 = 1984;
/// A second asset (a CBDC) the escrow holds for deliveries of the node test.
const CBDC: u32 = 1985;
const DEST_ASSET: &str = "eip155:31338/erc20:0x00000000000000000000000000000000000000c0";
const RECIPIENT: &str = "0x00000000000000000000000000000000000000b0";

struct World {
    node: ChopsticksNode,
    chain: ChainId,
    config: ChainConfig,
    alice: SubstrateSubmitter,
    escrow: SubstrateSubmitter,
    bob: [u8; 32],
    bob_ss58: String,
}

fn config(node: &ChopsticksNode, chain: &ChainId, escrow: Option<String>) -> ChainConfig {
    ChainConfig {
        id: chain.clone(),
        name: "asset-hub".into(),
        rpc_urls: vec![node.ws_url().parse().unwrap()],
        ws_url: None,
        finality: FinalityRule::FinalizedTag,
        start_block: 0,
        log_range_max: 100,
        poll_interval_ms: 200,
        rpc_timeout_ms: 20_000,
        contracts: Vec::new(),
        escrow,
        fee: None,
        signer_key: None,
        release_batch_max: 1,
    }
}

fn assets(chain: &ChainId) -> Vec<AssetConfig> {
    vec![AssetConfig {
        id: AssetId::substrate_asset(chain, ASSET as u128),
        symbol: "USDH".into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    }]
}

async fn world(test: &str) -> Option<World> {
    let (bin, spec) = support::chopsticks_or_skip()?;
    let dir = std::env::temp_dir().join(format!("meridian-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = meridian_node::devnet::free_port().unwrap();
    let node = ChopsticksNode::start(&bin, &spec, port, Some(&dir.join("chopsticks.log")))
        .await
        .unwrap();
    let genesis = node
        .rpc("chain_getBlockHash", serde_json::json!([0]))
        .await
        .unwrap();
    let chain: ChainId = format!("polkadot:{}", &genesis.as_str().unwrap()[2..34])
        .parse()
        .unwrap();

    // Connect once without an escrow to learn the runtime's SS58 prefix and sign.
    let probe = substrate::connect(0, &config(&node, &chain, None), &assets(&chain))
        .await
        .unwrap();
    let submitter = |seed: u8| {
        let (rpc, md) = (probe.rpc.clone(), probe.metadata.clone());
        let pair = sr25519_pair(&format!("{seed:02x}").repeat(32)).unwrap();
        async move {
            SubstrateSubmitter::connect(rpc, md, pair, probe.ss58)
                .await
                .unwrap()
        }
    };
    let alice = submitter(0x22).await;
    let escrow = submitter(0x11).await;
    let bob_pair = sr25519_pair(&"33".repeat(32)).unwrap();
    let bob_sub = SubstrateSubmitter::connect(
        probe.rpc.clone(),
        probe.metadata.clone(),
        bob_pair,
        probe.ss58,
    )
    .await
    .unwrap();
    let bob_ss58 = bob_sub.address();
    let bob = substrate::account_from_ss58(&bob_ss58).unwrap();
    // Bob needs an account (existential deposit) to receive a non-sufficient asset.
    for who in [alice.address(), escrow.address(), bob_ss58.clone()] {
        node.fund(&who, 1_000_000_000_000_000).await.unwrap();
    }
    let config = config(&node, &chain, Some(escrow.address()));
    Some(World {
        node,
        chain,
        config,
        alice,
        escrow,
        bob,
        bob_ss58,
    })
}

impl World {
    /// Alice creates the assets and mints to herself and to the escrow (for deliveries).
    async fn issue(&self) {
        let alice = substrate::account_from_ss58(&self.alice.address()).unwrap();
        let escrow = substrate::account_from_ss58(&self.escrow.address()).unwrap();
        for asset in [ASSET, CBDC] {
            let create = self
                .alice
                .with_metadata(move |md| substrate::asset_create_call(md, asset, alice, 1))
                .await
                .unwrap();
            self.alice.submit_call(create).await.unwrap();
        }
        for (asset, to, amount) in [
            (ASSET, alice, 1_000_000u128),
            (ASSET, escrow, 100_000),
            (CBDC, escrow, 500_000),
        ] {
            let mint = self
                .alice
                .with_metadata(move |md| substrate::asset_mint_call(md, asset, to, amount))
                .await
                .unwrap();
            self.alice.submit_call(mint).await.unwrap();
        }
    }

    /// Alice sends `amount` to the escrow, with `memo` as a remark in the same batch_all.
    async fn remit(&self, amount: u128, memo: Option<&str>) -> substrate::Included {
        let escrow = substrate::account_from_ss58(&self.escrow.address()).unwrap();
        let memo = memo.map(|m| m.as_bytes().to_vec());
        let call = self
            .alice
            .with_metadata(move |md| {
                let transfer = transfer_call(md, SubstrateAsset::Asset(ASSET), escrow, amount)?;
                match &memo {
                    Some(m) => batch_all_call(md, &[transfer, remark_call(md, m)?]),
                    None => Ok(transfer),
                }
            })
            .await
            .unwrap();
        self.alice.submit_call(call).await.unwrap()
    }

    fn account(&self, ss58: &str) -> AccountId {
        AccountId::new(&self.chain, ss58)
    }

    fn asset(&self) -> AssetId {
        AssetId::substrate_asset(&self.chain, ASSET as u128)
    }
}

async fn store(dir: &tempfile::TempDir, name: &str, chain: &ChainId) -> Store {
    let store = Store::connect(&format!("sqlite://{}", dir.path().join(name).display()))
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    store
        .register_chain(chain, "asset-hub", ChainFamily::Substrate)
        .await
        .unwrap();
    store
}

async fn follower(
    w: &World,
    store: &Store,
    range_max: u64,
) -> ChainFollower<substrate::SubstrateSource> {
    let connected = substrate::connect(0, &w.config, &assets(&w.chain))
        .await
        .unwrap();
    ChainFollower::new(
        connected.source,
        store.clone(),
        FollowerSettings {
            start_block: 0,
            range_max,
            poll_interval: Duration::from_millis(200),
        },
        Arc::new(Notify::new()),
    )
}

async fn catch_up(f: &ChainFollower<substrate::SubstrateSource>) {
    for _ in 0..1_000 {
        if let StepOutcome::CaughtUp { .. } = f.step().await.unwrap() {
            return;
        }
    }
    panic!("follower never caught up");
}

async fn stored(store: &Store) -> Vec<(String, EventPayload)> {
    store
        .events_page(&EventFilter::default(), EventOrder::BlockAsc, None, 10_000)
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| (r.uid, serde_json::from_value(r.payload).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remittances_and_deliveries_on_a_real_runtime() {
    let Some(w) = world("remittances_and_deliveries_on_a_real_runtime").await else {
        return;
    };
    w.issue().await;
    let memo = format!("meridian:v1 to={RECIPIENT} asset={DEST_ASSET} deadline=1900000000");
    let remit = w.remit(250_000, Some(&memo)).await;
    w.remit(1_000, Some("meridian:v1 to=0xb0")).await;
    w.remit(2_000, None).await;

    // The escrow delivers to Bob; the block is final once the finalized head reaches it.
    let delivery = w
        .escrow
        .transfer(SubstrateAsset::Asset(ASSET), w.bob, 5_000)
        .await
        .unwrap();
    let mut finality = Finality::Pending;
    for _ in 0..100 {
        finality = w.escrow.finality(&delivery.block).await.unwrap();
        if finality != Finality::Pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(finality, Finality::Final(_)), "{finality:?}");
    // An account that does not exist cannot receive a non-sufficient asset: refused, named.
    match w
        .escrow
        .transfer(SubstrateAsset::Asset(ASSET), [0x44; 32], 1)
        .await
    {
        Err(substrate::SubstrateSubmitError::Refused(why)) => {
            assert_eq!(why, "Token(CannotCreate)")
        }
        other => panic!("{other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "a.sqlite", &w.chain).await;
    let f = follower(&w, &s, 100).await;
    catch_up(&f).await;
    let events = stored(&s).await;
    let payloads: Vec<&EventPayload> = events.iter().map(|(_, p)| p).collect();

    let requests: Vec<&EventPayload> = payloads
        .iter()
        .copied()
        .filter(|p| matches!(p, EventPayload::RemittanceRequested { .. }))
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let remit_height = w
        .node
        .rpc("chain_getHeader", serde_json::json!([remit.block]))
        .await
        .unwrap()["number"]
        .as_str()
        .map(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap())
        .unwrap();
    match requests[0] {
        EventPayload::RemittanceRequested {
            nonce,
            sender,
            asset,
            amount,
            dest_chain,
            recipient,
            dest_asset,
            deadline,
        } => {
            assert!(nonce.starts_with(&format!("{remit_height}-")), "{nonce}");
            assert_eq!(sender, &w.account(&w.alice.address()));
            assert_eq!(asset, &w.asset());
            assert_eq!(*amount, 250_000);
            assert_eq!(dest_chain, "eip155:31338");
            assert_eq!(recipient, RECIPIENT);
            assert_eq!(dest_asset, DEST_ASSET);
            assert_eq!(*deadline, 1_900_000_000);
        }
        _ => unreachable!(),
    }
    match requests[1] {
        EventPayload::RemittanceRequested {
            amount, dest_asset, ..
        } => {
            assert_eq!(*amount, 1_000);
            assert_eq!(dest_asset, "invalid memo: memo lacks `asset=`");
        }
        _ => unreachable!(),
    }
    let escrow = w.account(&w.escrow.address());
    let into_escrow: Vec<u128> = payloads
        .iter()
        .filter_map(|p| match p {
            EventPayload::TokenTransferred { to, amount, .. } if *to == escrow => Some(*amount),
            _ => None,
        })
        .collect();
    assert_eq!(into_escrow, vec![250_000, 1_000, 2_000]);
    // The delivery is seen on chain, in a final block.
    assert!(payloads.contains(&&EventPayload::TokenTransferred {
        asset: w.asset(),
        from: escrow.clone(),
        to: w.account(&w.bob_ss58),
        amount: 5_000,
    }));
    let minted: Vec<u128> = payloads
        .iter()
        .filter_map(|p| match p {
            EventPayload::TokenMinted { amount, .. } => Some(*amount),
            _ => None,
        })
        .collect();
    assert_eq!(minted, vec![1_000_000, 100_000]);
    assert!(
        !payloads
            .iter()
            .any(|p| matches!(p, EventPayload::Undecodable { .. })),
        "{payloads:#?}"
    );

    // Restart mid-stream: two one-block steps, a new process, the rest; then new blocks.
    let s2 = store(&dir, "b.sqlite", &w.chain).await;
    {
        let f = follower(&w, &s2, 1).await;
        f.step().await.unwrap();
        f.step().await.unwrap();
    }
    // The new process's first endpoint is dead: it fails over to the live one.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("ws://{}", l.local_addr().unwrap())
    };
    let mut with_dead = w.config.clone();
    with_dead.rpc_urls.insert(0, dead.parse().unwrap());
    let connected = substrate::connect(0, &with_dead, &assets(&w.chain))
        .await
        .unwrap();
    let f2 = ChainFollower::new(
        connected.source,
        s2.clone(),
        FollowerSettings {
            start_block: 0,
            range_max: 1,
            poll_interval: Duration::from_millis(200),
        },
        Arc::new(Notify::new()),
    );
    catch_up(&f2).await;
    assert_eq!(stored(&s2).await, events);
    w.node.new_blocks(2).await.unwrap();
    catch_up(&f2).await;
    catch_up(&f).await;
    assert_eq!(stored(&s2).await, stored(&s).await);
}

/// (amount, state) of every transfer, as GraphQL shows them.
async fn transfers(addr: &str) -> Vec<(String, String)> {
    let r = graphql(
        addr.to_owned(),
        "{ transfers(first: 50) { amount state } }".into(),
    )
    .await;
    r["data"]["transfers"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["amount"].as_str().unwrap_or("").to_owned(),
                        t["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_delivers_on_substrate_and_refunds_bad_memos() {
    let Some(w) = world("the_node_delivers_on_substrate_and_refunds_bad_memos").await else {
        return;
    };
    w.issue().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let asset = w.asset();
    let cbdc = AssetId::substrate_asset(&w.chain, CBDC as u128);
    let toml = format!(
        r#"
[node]
database_url = "sqlite://{db}?mode=rwc"
listen = "{listen}"

[[chains]]
id = "{chain}"
name = "asset-hub"
rpc_urls = ["{ws}"]
poll_interval_ms = 200
rpc_timeout_ms = 20000
escrow = "{escrow}"
signer_key = "{seed}"

[[assets]]
id = "{asset}"
symbol = "USDH"
decimals = 6
kind = "stablecoin"

[[assets]]
id = "{cbdc}"
symbol = "DEURH"
decimals = 6
kind = "cbdc"

[[corridors]]
id = "usdh-to-deurh"
source_asset = "{asset}"
dest_asset = "{cbdc}"
fee_bps = 10
rate = "0.92"
max_amount = 10000000
daily_cap = 100000000
liquidity = 1000000
"#,
        db = dir.path().join("node.sqlite").display(),
        chain = w.chain,
        ws = w.node.ws_url(),
        escrow = w.escrow.address(),
        seed = "11".repeat(32),
    );
    let config = meridian_types::config::Config::from_toml_str(&toml, "test", Vec::new()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let node = tokio::spawn(meridian_node::node::run(config, stop_rx, Some(ready_tx)));
    let addr = match ready_rx.await {
        Ok(addr) => addr.to_string(),
        Err(_) => panic!("node did not start: {:?}", node.await),
    };

    // To Bob on this same chain; and one whose memo names no asset (refunded to Alice).
    let memo = format!("meridian:v1 to={} asset={cbdc}", w.bob_ss58);
    w.remit(250_000, Some(&memo)).await;
    w.remit(7_000, Some("meridian:v1 to=nobody")).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let done = loop {
        let t = transfers(&addr).await;
        let state = |amount: &str| t.iter().find(|(a, _)| a == amount).map(|(_, s)| s.clone());
        if state("250000").as_deref() == Some("finalized")
            && state("7000").as_deref() == Some("refunded")
        {
            break t;
        }
        if tokio::time::Instant::now() > deadline {
            let history = graphql(
                addr.clone(),
                "{ transfers(first: 50) { amount state history { to reason } } }".into(),
            )
            .await;
            panic!("transfers did not complete: {t:?}\n{history}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done.len(), 2, "{done:?}");

    // On chain, as the node's own watcher saw it (final blocks only): Bob was paid the quoted
    // CBDC amount by the escrow, Alice got her 7 000 back; each exactly once.
    let events = graphql(
        addr.clone(),
        "{ events(first: 100, where: { kindIn: [RELEASED, REFUNDED] }) { edges { node { kind payload } } } }".into(),
    )
    .await;
    let edges = events["data"]["events"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let payouts: Vec<(String, String, String)> = edges
        .iter()
        .map(|e| {
            let p = &e["node"]["payload"];
            let who = p["recipient"]
                .as_str()
                .or(p["sender"].as_str())
                .unwrap_or("")
                .to_owned();
            (
                e["node"]["kind"].as_str().unwrap_or("").to_owned(),
                who,
                p["amount"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        payouts,
        vec![
            (
                "RELEASED".to_owned(),
                w.account(&w.bob_ss58).to_string(),
                "229770".to_owned()
            ),
            (
                "REFUNDED".to_owned(),
                w.account(&w.alice.address()).to_string(),
                "7000".to_owned()
            ),
        ],
        "{events}"
    );
    stop_tx.send(true).unwrap();
    node.await.unwrap().unwrap();
}

/// A websocket JSON-RPC node that answers `state_getRuntimeVersion` and `state_getMetadata` at
/// two block hashes as if a runtime upgrade happened between them (spec 900 → 901), with the
/// real runtime's version and metadata fetched from Chopsticks; counts metadata requests.
async fn upgrading_node(
    version: serde_json::Value,
    metadata: serde_json::Value,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let fetched = Arc::new(AtomicUsize::new(0));
    let count = fetched.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::any(move |ws: WebSocketUpgrade| {
            let (version, metadata, count) = (version.clone(), metadata.clone(), count.clone());
            async move {
                ws.on_upgrade(move |mut socket| async move {
                    while let Some(Ok(Message::Text(text))) = socket.recv().await {
                        let req: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                        let at = req["params"][0].as_str().unwrap_or("").to_owned();
                        let result = match req["method"].as_str().unwrap_or("") {
                            "state_getRuntimeVersion" => {
                                let mut v = version.clone();
                                // Blocks 0x02… and later run the upgraded runtime.
                                if at.starts_with("0x02") || at.starts_with("0x03") {
                                    v["specVersion"] = serde_json::json!(901);
                                }
                                v
                            }
                            "state_getMetadata" => {
                                count.fetch_add(1, Ordering::SeqCst);
                                metadata.clone()
                            }
                            _ => serde_json::Value::Null,
                        };
                        let resp = serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
                        if socket.send(Message::Text(resp.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("ws://{addr}"), fetched)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_upgrade_reloads_the_metadata() {
    let Some((bin, spec)) = support::chopsticks_or_skip() else {
        return;
    };
    let port = meridian_node::devnet::free_port().unwrap();
    let node = ChopsticksNode::start(&bin, &spec, port, None)
        .await
        .unwrap();
    let version = node
        .rpc("state_getRuntimeVersion", serde_json::json!([]))
        .await
        .unwrap();
    let metadata = node
        .rpc("state_getMetadata", serde_json::json!([]))
        .await
        .unwrap();
    assert_eq!(version["specVersion"], 900);
    let (url, fetched) = upgrading_node(version, metadata).await;

    let rpc = substrate::SubstrateRpc::start(
        "polkadot:45454545454545454545454545454545".parse().unwrap(),
        vec![url.parse().unwrap()],
        Duration::from_secs(20),
    )
    .unwrap();
    let cache = Arc::new(substrate::MetadataCache::default());
    let spec_at = |hash: u8| {
        let cache = cache.clone();
        let rpc = rpc.clone();
        async move {
            rpc.call("metadata", move |s| {
                let cache = cache.clone();
                async move {
                    let (spec, md) = cache.at(&s, sp_core_hash(hash)).await?;
                    Ok((spec, substrate::ss58_prefix(&md)))
                }
            })
            .await
            .unwrap()
        }
    };
    use std::sync::atomic::Ordering;
    assert_eq!(spec_at(1).await, (900, 2));
    assert_eq!(spec_at(1).await.0, 900);
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        1,
        "same runtime: metadata cached"
    );
    // The next block runs the upgraded runtime: its metadata is fetched (at that block) anew.
    assert_eq!(spec_at(2).await.0, 901);
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        2,
        "upgrade: metadata reloaded"
    );
    assert_eq!(spec_at(3).await.0, 901);
    assert_eq!(fetched.load(Ordering::SeqCst), 2);
}

/// The block hash 0xNN NN … NN.
fn sp_core_hash(b: u8) -> meridian_relayer::substrate::BlockHash {
    meridian_relayer::substrate::BlockHash::repeat_byte(b)
}
