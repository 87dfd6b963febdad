//! The Cosmos SDK delivery path against the scenario node, which checks signatures, account
//! numbers, chain id and sequences as the auth module does and executes bank sends.

#[path = "support/cometbft_node.rs"]
mod cometbft_node;

use std::sync::Arc;
use std::time::Duration;

use cometbft_node::{CometNode, Dialect};
use cosmrs::crypto::secp256k1::SigningKey;
use meridian_relayer::cometbft::{
    address_of, CometRpcPool, CosmosSubmitError, CosmosSubmitter, CosmosTxStatus, FeeSettings,
};
use tendermint_rpc::HttpClient;

const CHAIN: &str = "meridian-1";

fn pool(node: &CometNode) -> Arc<CometRpcPool> {
    let url: url::Url = node.http_url().parse().unwrap();
    let client = HttpClient::new(node.http_url().as_str()).unwrap();
    Arc::new(CometRpcPool::new(
        format!("cosmos:{CHAIN}").parse().unwrap(),
        vec![(url, client)],
        Duration::from_secs(2),
    ))
}

fn fee() -> FeeSettings {
    FeeSettings {
        denom: "stake".into(),
        amount: 500,
        gas_limit: 200_000,
    }
}

#[tokio::test]
async fn deliveries_are_signed_broadcast_and_confirmed() {
    let node = CometNode::scenario(CHAIN, Dialect::V038).await;
    let key = SigningKey::from_slice(&[9; 32]).unwrap();
    let escrow = address_of(&key, "cosmos").unwrap();
    let alice = address_of(&SigningKey::from_slice(&[1; 32]).unwrap(), "cosmos").unwrap();
    node.set_account(&escrow, 42, 3, &[("ustable", 10_000), ("stake", 10_000)]);
    let submitter = CosmosSubmitter::new(pool(&node), key, "cosmos", fee()).unwrap();
    assert_eq!(submitter.address(), escrow);

    // Two deliveries in one block: the second uses the next sequence without asking the chain.
    let first = submitter
        .send(&alice, "ustable", 1_500, "meridian tr:1")
        .await
        .unwrap();
    let second = submitter
        .send(&alice, "ustable", 500, "meridian tr:2")
        .await
        .unwrap();
    assert_eq!(
        submitter.status(&first).await.unwrap(),
        CosmosTxStatus::Pending
    );
    let h = node.add_block(Vec::new(), Vec::new());
    for hash in [&first, &second] {
        assert_eq!(
            submitter.status(hash).await.unwrap(),
            CosmosTxStatus::Succeeded { height: h }
        );
    }
    assert_eq!(node.account(&alice).unwrap().balances["ustable"], 2_000);
    assert_eq!(node.account(&escrow).unwrap().sequence, 5);

    // Someone else used the key: the chain's sequence moved on; one refused broadcast, then the
    // submitter re-reads the account and succeeds.
    node.set_account(&escrow, 42, 9, &[("ustable", 8_000), ("stake", 9_000)]);
    let third = submitter.send(&alice, "ustable", 1, "").await.unwrap();
    let h = node.add_block(Vec::new(), Vec::new());
    assert_eq!(
        submitter.status(&third).await.unwrap(),
        CosmosTxStatus::Succeeded { height: h }
    );

    // More than the escrow holds: accepted into the mempool, fails in the block.
    let too_much = submitter
        .send(&alice, "ustable", 1_000_000, "")
        .await
        .unwrap();
    let h = node.add_block(Vec::new(), Vec::new());
    match submitter.status(&too_much).await.unwrap() {
        CosmosTxStatus::Failed { height, code, log } => {
            assert_eq!((height, code), (h, 5));
            assert!(log.contains("insufficient funds"), "{log}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_key_or_missing_account_is_refused_clearly() {
    let node = CometNode::scenario(CHAIN, Dialect::V038).await;
    let key = SigningKey::from_slice(&[9; 32]).unwrap();
    let escrow = address_of(&key, "cosmos").unwrap();
    let alice = address_of(&SigningKey::from_slice(&[1; 32]).unwrap(), "cosmos").unwrap();
    node.set_account(&alice, 1, 0, &[("stake", 10)]);
    let submitter = CosmosSubmitter::new(pool(&node), key, "cosmos", fee()).unwrap();
    match submitter.send(&alice, "ustable", 1, "").await {
        Err(CosmosSubmitError::NoAccount(a)) => assert!(a.contains(&escrow), "{a}"),
        other => panic!("{other:?}"),
    }
    // A recipient that is not bech32 is refused before anything is signed.
    node.set_account(&escrow, 2, 0, &[("stake", 10_000)]);
    match submitter.send("0xnotcosmos", "ustable", 1, "").await {
        Err(CosmosSubmitError::Invalid(why)) => assert!(why.contains("0xnotcosmos"), "{why}"),
        other => panic!("{other:?}"),
    }
}
