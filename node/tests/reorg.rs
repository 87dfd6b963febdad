//! A reorg deeper than the source chain's confirmations takes deposits away after the node took
//! them as final, on real anvil chains: the EVM watcher rewinds and retracts them, and each
//! transfer made from them stops where it is — cancelled before settlement, reversed on the ledger
//! and cancelled when settled (no refund of a deposit that is gone), and recorded as a loss once
//! already released. The destination chain's events show the one release, nothing more.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use std::sync::Arc;

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address, U256};
use meridian_node::devnet::stack::{dev_client, Stack, StackClient};
use meridian_node::devnet::{dev_address, devnet_config};
use meridian_relayer::StepOutcome;
use meridian_storage::Store;
use meridian_transfers::delivery::TransferDelivery;
use meridian_transfers::intake::TransferIntake;
use meridian_transfers::reorg_guard::REORG_LOSS;
use meridian_transfers::settlement::SettlementEngine;
use meridian_transfers::settler::TransferSettler;
use meridian_types::config::{ChainConfig, ContractKind, FinalityRule};
use meridian_types::{AssetId, TransferState};

const PAID: &str = "0x00000000000000000000000000000000000b0b01";
const SETTLED: &str = "0x00000000000000000000000000000000000b0b02";
const QUOTED: &str = "0x00000000000000000000000000000000000b0b03";
const IN_FLIGHT: &str = "0x00000000000000000000000000000000000b0b04";
/// 100 USDM (6 decimals).
const AMOUNT: u128 = 100_000_000;

fn address_of(asset: &AssetId) -> Address {
    asset.as_str().rsplit_once(':').unwrap().1.parse().unwrap()
}

fn escrow_of(c: &ChainConfig) -> Address {
    c.contracts
        .iter()
        .find(|x| x.kind == ContractKind::BridgeEscrow)
        .unwrap()
        .address
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_deeper_than_the_confirmations_stops_each_transfer_where_it_is() {
    let Some(bin) = anvil::anvil_or_skip() else {
        return;
    };
    let chains = [
        anvil::dev_chain(&bin, 31_337).await,
        anvil::dev_chain(&bin, 31_338).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.sqlite").display()
    );
    let mut config = devnet_config(&chains, db.clone(), "127.0.0.1:0".into()).unwrap();
    // Final at inclusion: any reorg is deeper than the confirmations.
    for c in &mut config.chains {
        c.finality = FinalityRule::Confirmations(0);
    }
    let (a, b) = (config.chains[0].clone(), config.chains[1].clone());
    let (stable_a, stable_b) = (config.assets[1].id.clone(), config.assets[3].id.clone());
    assert!(stable_a.as_str().starts_with("eip155:31337/"));
    assert!(stable_b.as_str().starts_with("eip155:31338/"));

    let store = Store::connect(&db).await.unwrap();
    store.migrate_up().await.unwrap();
    let follower = anvil::follower(&a, &store).await;
    let routing = Arc::new(meridian_transfers::routing::routing_state(&config).unwrap());
    let intake = TransferIntake::new(store.clone(), routing);
    let engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let mut settler = TransferSettler::new(store.clone(), engine, &config.corridors)
        .await
        .unwrap();
    let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&b))
        .await
        .unwrap();

    // Chain B's escrow holds the relay's funds; a user on chain A has USDM to lock.
    let url = |c: &ChainConfig| c.rpc_urls[0].to_string();
    let stack = |c: &ChainConfig, asset: &AssetId| Stack {
        cbdc: Address::zero(),
        stablecoin: address_of(asset),
        escrow: escrow_of(c),
    };
    let owner_b = StackClient::new(
        &stack(&b, &stable_b),
        dev_client(&url(&b), 31_338, 0).unwrap(),
    )
    .unwrap();
    owner_b
        .mint_stable(escrow_of(&b), 10 * AMOUNT)
        .await
        .unwrap();
    let owner_a = StackClient::new(
        &stack(&a, &stable_a),
        dev_client(&url(&a), 31_337, 0).unwrap(),
    )
    .unwrap();
    owner_a
        .mint_stable(dev_address(1).unwrap(), 10 * AMOUNT)
        .await
        .unwrap();
    let user = StackClient::new(
        &stack(&a, &stable_a),
        dev_client(&url(&a), 31_337, 1).unwrap(),
    )
    .unwrap();
    user.approve_escrow().await.unwrap();
    let provider_a = Provider::<Http>::try_from(url(&a).as_str()).unwrap();
    let before_deposits = provider_a.get_block_number().await.unwrap().as_u64();
    let deadline = (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp() as u64;
    let now = chrono::Utc::now;
    let lock = |recipient: &'static str| {
        let (user, dest) = (&user, stable_b.as_str().to_owned());
        async move {
            user.lock(AMOUNT, "eip155:31338", recipient, &dest, deadline)
                .await
                .unwrap();
        }
    };
    let transfer_to = |recipient: &'static str| {
        let store = store.clone();
        async move {
            store
                .transfers(None, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.transfer)
                .find(|t| t.recipient.ends_with(recipient))
                .unwrap_or_else(|| panic!("no transfer to {recipient}"))
        }
    };

    // One deposit is released on B and final there.
    lock(PAID).await;
    anvil::drain(&follower).await;
    intake.pass(now()).await.unwrap();
    settler.pass(now()).await.unwrap();
    for _ in 0..5 {
        delivery.pass(now()).await.unwrap();
    }
    assert_eq!(transfer_to(PAID).await.state.as_str(), "finalized");
    // The next one's release is sent but not mined: chain B stops mining on its own.
    let provider_b = Provider::<Http>::try_from(url(&b).as_str()).unwrap();
    let _: serde_json::Value = provider_b
        .request("evm_setAutomine", [false])
        .await
        .unwrap();
    lock(IN_FLIGHT).await;
    anvil::drain(&follower).await;
    intake.pass(now()).await.unwrap();
    settler.pass(now()).await.unwrap();
    delivery.pass(now()).await.unwrap();
    assert_eq!(transfer_to(IN_FLIGHT).await.state.as_str(), "delivering");
    // The next is settled on the ledger, not yet released.
    lock(SETTLED).await;
    anvil::drain(&follower).await;
    intake.pass(now()).await.unwrap();
    settler.pass(now()).await.unwrap();
    assert_eq!(transfer_to(SETTLED).await.state.as_str(), "settled");
    // The last is quoted only.
    lock(QUOTED).await;
    anvil::drain(&follower).await;
    intake.pass(now()).await.unwrap();
    assert_eq!(transfer_to(QUOTED).await.state.as_str(), "quoted");

    // Chain A replaces every block since before the first deposit with empty ones.
    let tip = provider_a.get_block_number().await.unwrap().as_u64();
    let depth = tip - before_deposits;
    let _: serde_json::Value = provider_a
        .request("anvil_reorg", (depth, Vec::<serde_json::Value>::new()))
        .await
        .unwrap();
    match follower.step().await.unwrap() {
        StepOutcome::Rewound { retracted, .. } => assert!(retracted >= 3, "{retracted}"),
        other => panic!("expected a rewind, got {other:?}"),
    }
    anvil::drain(&follower).await;

    // Delivery stops them first (and replaces the pending release with a transfer to itself);
    // the settler reverses the settled ones' ledger entries.
    for _ in 0..4 {
        delivery.pass(now()).await.unwrap();
        settler.pass(now()).await.unwrap();
        intake.pass(now()).await.unwrap();
        let _: serde_json::Value = provider_b
            .request("anvil_mine", [U256::from(1)])
            .await
            .unwrap();
    }
    let paid = transfer_to(PAID).await;
    assert_eq!(paid.state, TransferState::Finalized);
    assert!(store
        .audited(REORG_LOSS, &format!("transfer:{}", paid.id))
        .await
        .unwrap());
    assert_eq!(store.audit_actions(REORG_LOSS).await.unwrap().len(), 1);
    let settled = transfer_to(SETTLED).await;
    assert_eq!(settled.state, TransferState::Cancelled);
    let history = store.transfer(&settled.id).await.unwrap().unwrap().history;
    let path: Vec<&str> = history.iter().map(|h| h.to.as_str()).collect();
    assert_eq!(
        path[path.len() - 2..],
        ["failed", "cancelled"],
        "reversed, then cancelled: {history:?}"
    );
    assert_eq!(transfer_to(QUOTED).await.state, TransferState::Cancelled);
    let in_flight = transfer_to(IN_FLIGHT).await;
    assert_eq!(in_flight.state, TransferState::Cancelled);
    let history = store
        .transfer(&in_flight.id)
        .await
        .unwrap()
        .unwrap()
        .history;
    assert!(
        history.iter().any(|h| h
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("release cancelled"))),
        "{history:?}"
    );

    // On B: the one release, nothing for the others.
    let balance = |who: &str| {
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
    assert!(balance(PAID).await > 0, "released before the reorg");
    assert_eq!(balance(SETTLED).await, 0);
    assert_eq!(balance(QUOTED).await, 0);
    assert_eq!(
        balance(IN_FLIGHT).await,
        0,
        "the pending release was cancelled"
    );
}
