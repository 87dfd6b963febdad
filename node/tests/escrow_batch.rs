//! The escrow's `releaseBatch` on anvil: many transfers paid in one transaction, each settled by
//! its own id; one that cannot be paid (settled already, or its token transfer fails) is refused
//! with an event and the others are paid; only the relayer may call it. And `meridian bench
//! releases` on a small scale: every transfer released exactly once, single and batched.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use ethers::abi::{Abi, Token};
use ethers::contract::Contract;
use ethers::types::{Address, H256, U256};
use meridian_node::devnet::stack::{key_client, DevClient, RELAYER_KEY};
use meridian_node::devnet::{dev_client, StackClient};
use meridian_relayer::contracts as art;

fn release(id: &str, token: Address, to: u64, amount: u128) -> Token {
    Token::Tuple(vec![
        Token::FixedBytes(ethers::utils::keccak256(id.as_bytes()).to_vec()),
        Token::Address(token),
        Token::Address(Address::from_low_u64_be(to)),
        Token::Uint(U256::from(amount)),
    ])
}

fn escrow(at: Address, client: Arc<DevClient>) -> Contract<DevClient> {
    Contract::new(
        at,
        serde_json::from_str::<Abi>(art::BRIDGE_ESCROW_ABI).unwrap(),
        client,
    )
}

#[tokio::test]
async fn a_batch_pays_each_release_it_can_and_refuses_the_rest_by_id() {
    let Some(anvil) = support::anvil_or_skip() else {
        return;
    };
    let chain = support::dev_chain(&anvil, 31337).await;
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, 31337, 0).unwrap()).unwrap();
    owner.mint_stable(chain.stack.escrow, 1_000).await.unwrap();
    let relayer = key_client(&url, 31337, RELAYER_KEY).unwrap();
    let escrow = escrow(chain.stack.escrow, relayer.clone());
    let token = chain.stack.stablecoin;

    // "a" is paid on its own first; the batch repeats it, and asks 5 000 for "big" (the escrow
    // holds 900 by then).
    StackClient::send(
        &escrow,
        "release",
        (
            ethers::utils::keccak256(b"a"),
            token,
            Address::from_low_u64_be(1),
            U256::from(100),
        ),
    )
    .await
    .unwrap();
    let batch = Token::Array(vec![
        release("b", token, 2, 200),
        release("a", token, 3, 100),
        release("big", token, 4, 5_000),
        release("c", token, 5, 300),
    ]);
    let receipt = escrow
        .method::<_, ()>("releaseBatch", batch)
        .unwrap()
        .send()
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        receipt.status,
        Some(1u64.into()),
        "the batch itself succeeds"
    );
    let abi = escrow.abi();
    let (released, refused) = (
        abi.event("Released").unwrap().signature(),
        abi.event("ReleaseRefused").unwrap().signature(),
    );
    let id = |s: &str| H256::from(ethers::utils::keccak256(s.as_bytes()));
    let of = |sig: H256| -> Vec<H256> {
        receipt
            .logs
            .iter()
            .filter(|l| l.topics[0] == sig)
            .map(|l| l.topics[1])
            .collect()
    };
    assert_eq!(of(released), vec![id("b"), id("c")]);
    assert_eq!(of(refused), vec![id("a"), id("big")]);

    let balance = |who: u64| {
        let stable = owner.stablecoin.clone();
        async move {
            stable
                .method::<_, U256>("balanceOf", Address::from_low_u64_be(who))
                .unwrap()
                .call()
                .await
                .unwrap()
                .as_u128()
        }
    };
    assert_eq!(
        (
            balance(1).await,
            balance(2).await,
            balance(3).await,
            balance(4).await,
            balance(5).await
        ),
        (100, 200, 0, 0, 300)
    );
    let settled = |s: &'static str| {
        let escrow = escrow.clone();
        async move {
            escrow
                .method::<_, bool>("settled", ethers::utils::keccak256(s.as_bytes()))
                .unwrap()
                .call()
                .await
                .unwrap()
        }
    };
    // The refused "big" stays unsettled: a later release may still pay it.
    assert!(settled("b").await && settled("c").await && !settled("big").await);

    // Only the relayer releases.
    let stranger = escrow.connect(dev_client(&url, 31337, 2).unwrap());
    let call = stranger
        .method::<_, ()>(
            "releaseBatch",
            Token::Array(vec![release("d", token, 6, 1)]),
        )
        .unwrap();
    let refused = call
        .send()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("NotRelayer") || refused.contains("revert"),
        "{refused}"
    );
    assert!(!settled("d").await);
    assert_eq!(balance(6).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_bench_pays_every_transfer_once_single_and_batched() {
    if support::anvil_or_skip().is_none() {
        return;
    }
    use meridian_node::bench::releases::{report, run, ReleaseBenchOptions};
    let runs = run(&ReleaseBenchOptions {
        releases: 40,
        batch: 10,
    })
    .await
    .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].txs, runs[1].txs), (40, 4));
    assert!(runs.iter().all(|r| r.releases == 40 && r.blocks >= 1));
    // A batch shares one transaction's base cost among its releases.
    assert!(
        runs[1].gas_per_release < runs[0].gas_per_release,
        "{runs:?}"
    );
    let table = report(&runs);
    assert!(table.contains("batched (10 per tx)"), "{table}");
}
