//! Delivery against a real anvil node with the real escrow: a settled transfer is released to
//! its recipient (checked on chain) and followed to finality; a release sent by a run that
//! stopped before recording it is found, not repeated; a release the escrow refuses fails the
//! transfer with the reason.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use ethers::types::{Address, U256};
use meridian_node::delivery::{escrow_transfer_id, TransferDelivery};
use meridian_node::devnet::stack::{dev_client, StackClient};
use meridian_storage::{NewTransfer, Transition};
use meridian_types::config::FinalityRule;
use meridian_types::TransferState;

const RECIPIENT: &str = "0x00000000000000000000000000000000000b0b01";

fn settled(id: &str, chain: &str, token: &str, amount: u128) -> (NewTransfer, Vec<Transition>) {
    use TransferState::*;
    let now = chrono::Utc::now();
    let step = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "test".into(),
        at: now,
    };
    (
        NewTransfer {
            id: id.into(),
            source_event_uid: format!("uid-{id}"),
            source_chain: "eip155:1".into(),
            dest_chain: chain.into(),
            source_asset: "eip155:1/erc20:0x0000000000000000000000000000000000000001".into(),
            dest_asset: format!("{chain}/erc20:{token}"),
            sender: "eip155:1:0x0000000000000000000000000000000000000a11".into(),
            recipient: format!("{chain}:{RECIPIENT}"),
            amount,
            dest_amount: Some(amount),
            fee: Some(0),
            rate: None,
            corridor_id: Some("x".into()),
            deadline: None,
            quote: None,
        },
        vec![
            step(None, Requested),
            step(Some(Requested), Screened),
            step(Some(Screened), Quoted),
            step(Some(Quoted), Settling),
            step(Some(Settling), Settled),
        ],
    )
}

#[tokio::test]
async fn settled_transfers_are_released_once_and_followed_to_finality() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let chain = anvil::dev_chain(&anvil_bin, 31_338).await;
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, 31_338, 0).unwrap()).unwrap();
    // The escrow holds 100 000 (as if senders had locked it on this chain).
    owner
        .mint_stable(chain.stack.escrow, 100_000)
        .await
        .unwrap();
    let balance = |who: Address| {
        let c = owner.stablecoin.clone();
        async move {
            c.method::<_, U256>("balanceOf", who)
                .unwrap()
                .call()
                .await
                .unwrap()
                .as_u128()
        }
    };
    let recipient: Address = RECIPIENT.parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    let mut config = chain.chain_config("dest").unwrap();
    config.finality = FinalityRule::Confirmations(0);
    let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&config))
        .await
        .unwrap();
    let chain_id = config.id.to_string();
    let token = format!("{:#x}", chain.stack.stablecoin);

    for (id, amount) in [("tr:one", 12_345u128), ("tr:too-much", 1_000_000)] {
        let (t, path) = settled(id, &chain_id, &token, amount);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    let (mut late, path) = settled("tr:late", &chain_id, &token, 5);
    late.deadline = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    assert!(store.create_transfer(&late, &path).await.unwrap());
    let now = chrono::Utc::now();
    let first = delivery.pass(now).await.unwrap();
    let mut states = first.moved.clone();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            ("tr:late".to_owned(), TransferState::Failed),
            ("tr:one".to_owned(), TransferState::Delivering),
            // anvil mines at once: with 0 confirmations the same pass sees the release final.
            ("tr:one".to_owned(), TransferState::Finalized),
            ("tr:too-much".to_owned(), TransferState::Failed),
        ]
    );
    let late = store.transfer("tr:late").await.unwrap().unwrap();
    assert_eq!(
        late.history.last().unwrap().reason.as_deref(),
        Some("deadline passed before delivery")
    );
    let refused = store.transfer("tr:too-much").await.unwrap().unwrap();
    let why = refused.history.last().unwrap().reason.clone().unwrap();
    assert!(
        why.contains("escrow refused the release: InsufficientBalance("),
        "{why}"
    );

    assert_eq!(balance(recipient).await, 12_345);
    let t = store.transfer("tr:one").await.unwrap().unwrap();
    let tail: Vec<TransferState> = t.history.iter().rev().take(3).map(|h| h.to).collect();
    assert_eq!(
        tail,
        [
            TransferState::Finalized,
            TransferState::Delivered,
            TransferState::Delivering
        ]
    );
    assert!(store.delivery_tx("tr:one").await.unwrap().is_some());
    assert!(delivery.pass(now).await.unwrap().moved.is_empty());

    // A run released "tr:two" and stopped before recording it: the escrow knows, so the next
    // run follows that release instead of paying again.
    let (t, path) = settled("tr:two", &chain_id, &token, 1_000);
    assert!(store.create_transfer(&t, &path).await.unwrap());
    StackClient::send(
        &owner.escrow,
        "release",
        (
            escrow_transfer_id("tr:two"),
            chain.stack.stablecoin,
            recipient,
            U256::from(1_000u64),
        ),
    )
    .await
    .unwrap();
    let found = delivery.pass(now).await.unwrap();
    assert_eq!(
        found.moved,
        [
            ("tr:two".to_owned(), TransferState::Delivered),
            ("tr:two".to_owned(), TransferState::Finalized),
        ]
    );
    let t = store.transfer("tr:two").await.unwrap().unwrap();
    assert!(t.history.iter().any(|h| h
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("sent by an earlier run"))));
    assert!(delivery.pass(now).await.unwrap().moved.is_empty());
    assert_eq!(balance(recipient).await, 13_345, "paid once");
}

#[tokio::test]
async fn a_stuck_release_is_replaced_at_higher_fees_and_pays_once() {
    use ethers::providers::{Http, Middleware, Provider};
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let chain = anvil::dev_chain(&anvil_bin, 31_339).await;
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, 31_339, 0).unwrap()).unwrap();
    owner
        .mint_stable(chain.stack.escrow, 100_000)
        .await
        .unwrap();
    // From here on nothing is mined until the test says so: the release stays pending.
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
    let _: serde_json::Value = provider.request("evm_setAutomine", [false]).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    let mut config = chain.chain_config("dest").unwrap();
    config.finality = FinalityRule::Confirmations(0);
    let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&config))
        .await
        .unwrap()
        .bump_after(chrono::Duration::zero());
    let token = format!("{:#x}", chain.stack.stablecoin);
    let (t, path) = settled("tr:stuck", &config.id.to_string(), &token, 777);
    assert!(store.create_transfer(&t, &path).await.unwrap());

    let now = chrono::Utc::now();
    let first = delivery.pass(now).await.unwrap();
    assert_eq!(
        first.moved,
        [("tr:stuck".to_owned(), TransferState::Delivering)]
    );
    let sent = store.delivery_tx("tr:stuck").await.unwrap().unwrap();
    // Still pending: replaced with the same nonce at higher fees.
    assert!(delivery.pass(now).await.unwrap().moved.is_empty());
    let d = store.delivery("tr:stuck").await.unwrap().unwrap();
    let replacement = d.tx_hash.clone().unwrap();
    assert_ne!(replacement, sent);
    // Bumped on every pass while pending (the first pass follows what it sent, too).
    assert!(d.attempts >= 2, "{d:?}");
    assert!(d.last_error.as_deref().unwrap().contains(&sent));
    let (old, new) = (
        provider
            .get_transaction(sent.parse::<ethers::types::H256>().unwrap())
            .await
            .unwrap(),
        provider
            .get_transaction(replacement.parse::<ethers::types::H256>().unwrap())
            .await
            .unwrap()
            .unwrap(),
    );
    if let Some(old) = &old {
        assert_eq!(old.nonce, new.nonce);
        assert!(new.max_fee_per_gas.unwrap() > old.max_fee_per_gas.unwrap());
    }

    let _: serde_json::Value = provider
        .request("anvil_mine", [U256::from(1)])
        .await
        .unwrap();
    let done = delivery.pass(now).await.unwrap();
    assert_eq!(
        done.moved,
        [("tr:stuck".to_owned(), TransferState::Finalized)]
    );
    let paid = owner
        .stablecoin
        .method::<_, U256>("balanceOf", RECIPIENT.parse::<Address>().unwrap())
        .unwrap()
        .call()
        .await
        .unwrap()
        .as_u128();
    assert_eq!(paid, 777, "paid once");
}
