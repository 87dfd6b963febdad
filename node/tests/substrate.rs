//! The Substrate watcher and submitter against a real runtime: Chopsticks runs Rococo Asset Hub
//! (statemine) from its chain spec. Accounts are funded with `dev_setStorage`; everything else —
//! creating and minting the asset, the sender's `Utility.batch_all` of a transfer to the escrow
//! and a `System.remark_with_event` memo, the escrow's delivery — is a real sr25519-signed
//! extrinsic the runtime executes.

#[path = "support/chopsticks.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use meridian_node::devnet::ChopsticksNode;
use meridian_relayer::substrate::{
    self, batch_all_call, call_index, remark_call, sr25519_pair, transfer_call, Finality,
    SubstrateAsset, SubstrateSubmitter,
};
use meridian_relayer::{ChainFollower, FollowerSettings, StepOutcome};
use meridian_storage::{EventFilter, EventOrder, Store};
use meridian_types::config::{AssetConfig, AssetKind, ChainConfig, FinalityRule};
use meridian_types::{AccountId, AssetId, ChainFamily, ChainId, EventPayload};
use parity_scale_codec::{Compact, Encode};
use tokio::sync::Notify;

const ASSET: u32 = 1984;
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
        signer_key: None,
    }
}

fn assets(chain: &ChainId) -> Vec<AssetConfig> {
    vec![AssetConfig {
        id: AssetId::substrate_asset(chain, ASSET as u128),
        symbol: "USDH".into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
    }]
}

fn multi_address(who: [u8; 32]) -> Vec<u8> {
    let mut v = vec![0u8]; // MultiAddress::Id
    v.extend(who);
    v
}

async fn world(test: &str) -> Option<World> {
    let (bin, spec) = support::chopsticks_or_skip(test)?;
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
    /// Alice creates the asset and mints to herself and to the escrow (for deliveries).
    async fn issue(&self) {
        let alice = substrate::account_from_ss58(&self.alice.address()).unwrap();
        let escrow = substrate::account_from_ss58(&self.escrow.address()).unwrap();
        let create = self
            .alice
            .with_metadata(move |md| {
                let mut c = call_index(md, "Assets", "create")?.to_vec();
                c.extend(Compact(ASSET).encode());
                c.extend(multi_address(alice));
                c.extend(1u128.encode());
                Ok(c)
            })
            .await
            .unwrap();
        self.alice.submit_call(create).await.unwrap();
        for (to, amount) in [(alice, 1_000_000u128), (escrow, 100_000)] {
            let mint = self
                .alice
                .with_metadata(move |md| {
                    let mut c = call_index(md, "Assets", "mint")?.to_vec();
                    c.extend(Compact(ASSET).encode());
                    c.extend(multi_address(to));
                    c.extend(Compact(amount).encode());
                    Ok(c)
                })
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
    let f2 = follower(&w, &s2, 1).await;
    catch_up(&f2).await;
    assert_eq!(stored(&s2).await, events);
    w.node.new_blocks(2).await.unwrap();
    catch_up(&f2).await;
    catch_up(&f).await;
    assert_eq!(stored(&s2).await, stored(&s).await);
}
