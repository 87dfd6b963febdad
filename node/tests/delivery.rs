//! Delivery against a real anvil node with the real escrow: a settled transfer is released to
//! its recipient (checked on chain) and followed to finality; a release sent without a record of
//! ours is found, not repeated; a release the escrow refuses is sent, mined, reverted and only
//! then fails the transfer, with the reason. Behind a fault-injecting proxy: lost answers of
//! `eth_sendRawTransaction` while blocks are slower than the pass, a release recorded but never
//! sent before a restart, a hung endpoint beside a healthy one — each paid exactly once (counted
//! from the escrow's events), with no nonce gap or repeat.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;
#[path = "support/rpc_proxy.rs"]
mod rpc_proxy;
#[path = "support/transfers.rs"]
mod transfers;

use ethers::types::{Address, U256};
use meridian_node::devnet;
use meridian_node::devnet::stack::{dev_client, key_client, StackClient};
use meridian_transfers::delivery::TransferDelivery;
use meridian_transfers::evm_delivery::escrow_transfer_id;
use meridian_types::config::FinalityRule;
use meridian_types::TransferState;
use transfers::{settled, RECIPIENT};

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
    // One transaction per release here; batches have tests of their own.
    config.release_batch_max = 1;
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
            // Never refused from a gas estimate: sent, mined, reverted, then failed.
            ("tr:too-much".to_owned(), TransferState::Delivering),
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
        why.contains("escrow refused the release: reverted in block")
            && why.contains("InsufficientBalance("),
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

    // Someone released "tr:two" with the relay's key, leaving no record: the escrow knows, so
    // the node follows that release instead of paying again.
    let (t, path) = settled("tr:two", &chain_id, &token, 1_000);
    assert!(store.create_transfer(&t, &path).await.unwrap());
    let relayer = StackClient::new(
        &chain.stack,
        key_client(&url, 31_338, devnet::stack::RELAYER_KEY).unwrap(),
    )
    .unwrap();
    StackClient::send(
        &relayer.escrow,
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
            ("tr:two".to_owned(), TransferState::Delivering),
            ("tr:two".to_owned(), TransferState::Finalized),
        ]
    );
    let t = store.transfer("tr:two").await.unwrap().unwrap();
    assert!(t.history.iter().any(|h| h
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("without a record of ours"))));
    assert!(delivery.pass(now).await.unwrap().moved.is_empty());
    assert_eq!(balance(recipient).await, 13_345, "paid once");

    // That foreign transaction took the nonce the node would have used next: the node's
    // release with it can never be mined, so it is paid again under a new nonce — once.
    let (t, path) = settled("tr:three", &chain_id, &token, 3);
    assert!(store.create_transfer(&t, &path).await.unwrap());
    let mut states = Vec::new();
    for _ in 0..4 {
        states.extend(delivery.pass(now).await.unwrap().moved);
    }
    assert_eq!(
        states,
        [
            ("tr:three".to_owned(), TransferState::Delivering),
            ("tr:three".to_owned(), TransferState::Finalized),
        ]
    );
    let d = store.delivery("tr:three").await.unwrap().unwrap();
    assert_eq!(
        d.last_error.as_deref(),
        Some("earlier payout's nonce used by another transaction"),
        "paid under a new nonce"
    );
    assert_eq!(balance(recipient).await, 13_348, "paid once");
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

/// One EVM chain with a funded escrow behind a fault-injecting proxy, automining off: blocks come
/// only when the test mines them, slower than any delivery pass.
struct FaultyChain {
    chain: devnet::DevChain,
    proxy: rpc_proxy::RpcProxy,
    provider: ethers::providers::Provider<ethers::providers::Http>,
    config: meridian_types::config::ChainConfig,
    token: String,
}

impl FaultyChain {
    async fn start(anvil_bin: &std::path::Path, chain_id: u64) -> FaultyChain {
        use ethers::providers::{Http, Provider};
        let chain = anvil::dev_chain(anvil_bin, chain_id).await;
        let url = chain.anvil.http_url();
        let owner = StackClient::new(&chain.stack, dev_client(&url, chain_id, 0).unwrap()).unwrap();
        owner
            .mint_stable(chain.stack.escrow, 1_000_000)
            .await
            .unwrap();
        let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
        let _: serde_json::Value = provider.request("evm_setAutomine", [false]).await.unwrap();
        let proxy = rpc_proxy::RpcProxy::start(&url).await;
        let mut config = chain.chain_config("dest").unwrap();
        config.finality = FinalityRule::Confirmations(2);
        config.rpc_urls = vec![proxy.url().parse().unwrap()];
        config.rpc_timeout_ms = 1_000;
        // One transaction per release unless a test asks for batches.
        config.release_batch_max = 1;
        let token = format!("{:#x}", chain.stack.stablecoin);
        FaultyChain {
            chain,
            proxy,
            provider,
            config,
            token,
        }
    }

    /// A fresh SQLite store and delivery over this chain as configured (the directory holds the
    /// store).
    async fn delivery(&self) -> (tempfile::TempDir, meridian_storage::Store, TransferDelivery) {
        let dir = tempfile::tempdir().unwrap();
        let store = anvil::sqlite_store(&dir).await;
        let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&self.config))
            .await
            .unwrap();
        (dir, store, delivery)
    }

    async fn mine(&self, blocks: u64) {
        let _: serde_json::Value = self
            .provider
            .request("anvil_mine", [U256::from(blocks)])
            .await
            .unwrap();
    }

    /// (transfer id, block) of every `Released` event of the escrow, and the number of
    /// `Refunded` events.
    async fn payouts_on_chain(&self) -> (Vec<([u8; 32], u64)>, usize) {
        use ethers::providers::Middleware;
        use ethers::types::{Filter, H256};
        let logs = self
            .provider
            .get_logs(
                &Filter::new()
                    .address(self.chain.stack.escrow)
                    .from_block(0u64),
            )
            .await
            .unwrap();
        let released = H256(ethers::utils::keccak256(
            "Released(bytes32,address,address,uint256)",
        ));
        let refunded = H256(ethers::utils::keccak256(
            "Refunded(bytes32,uint256,address,address,uint256)",
        ));
        let releases = logs
            .iter()
            .filter(|l| l.topics[0] == released)
            .map(|l| (l.topics[1].0, l.block_number.unwrap().as_u64()))
            .collect();
        let refunds = logs.iter().filter(|l| l.topics[0] == refunded).count();
        (releases, refunds)
    }

    /// The relayer's nonces used on chain (its transaction count) and the nonces of its mined
    /// transactions, in block order.
    async fn relayer_nonces(&self) -> (u64, Vec<u64>) {
        use ethers::providers::Middleware;
        let relayer = devnet::stack::relayer_address().unwrap();
        let count = self
            .provider
            .get_transaction_count(relayer, None)
            .await
            .unwrap()
            .as_u64();
        let head = self.provider.get_block_number().await.unwrap().as_u64();
        let mut nonces = Vec::new();
        for b in 0..=head {
            let block = self.provider.get_block_with_txs(b).await.unwrap().unwrap();
            nonces.extend(
                block
                    .transactions
                    .iter()
                    .filter(|t| t.from == relayer)
                    .map(|t| t.nonce.as_u64()),
            );
        }
        (count, nonces)
    }
}

/// Runs passes, mining a block after each, until every transfer in `ids` is final (at most
/// `passes_max` passes).
async fn deliver_all(
    delivery: &TransferDelivery,
    fc: &FaultyChain,
    store: &meridian_storage::Store,
    ids: &[String],
    passes_max: usize,
) {
    for _ in 0..passes_max {
        delivery.pass(chrono::Utc::now()).await.unwrap();
        let mut done = true;
        for id in ids {
            done &= store.transfer(id).await.unwrap().unwrap().transfer.state
                == TransferState::Finalized;
        }
        if done {
            return;
        }
        fc.mine(1).await;
    }
    let mut histories = Vec::new();
    for id in ids {
        histories.push(store.transfer(id).await.unwrap().unwrap().history);
    }
    panic!("not all finalized after {passes_max} passes: {histories:?}");
}

/// Every transfer released exactly once (by the chain's events), none refunded, and the
/// relayer's nonces used without a gap or a repeat.
async fn assert_paid_exactly_once(fc: &FaultyChain, ids: &[String]) {
    let (releases, refunds) = fc.payouts_on_chain().await;
    assert_eq!(refunds, 0, "nothing is refunded");
    let mut released: Vec<[u8; 32]> = releases.iter().map(|(id, _)| *id).collect();
    released.sort();
    let mut expected: Vec<[u8; 32]> = ids.iter().map(|id| escrow_transfer_id(id)).collect();
    expected.sort();
    assert_eq!(released, expected, "each transfer released once");
    let (count, nonces) = fc.relayer_nonces().await;
    assert_eq!(
        nonces,
        (0..count).collect::<Vec<_>>(),
        "no nonce gap or repeat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_of_sent_releases_never_pay_twice_and_many_releases_share_a_block() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let mut fc = FaultyChain::start(&anvil_bin, 31_341).await;
    // Five releases: a batch of four and one alone, both lost and sent again.
    fc.config.release_batch_max = 4;
    let (_dir, store, delivery) = fc.delivery().await;
    let chain_id = fc.config.id.to_string();
    let ids: Vec<String> = (0..5).map(|i| format!("tr:lost-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (t, path) = settled(id, &chain_id, &fc.token, 1_000 + i as u128);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }

    // Every release reaches the chain's pool, but its answer is lost; no block comes for
    // several passes. (A second release of the same transfer would now fail its gas estimate
    // with AlreadySettled against pending state: taking that for a refusal refunded transfers
    // that were also released.)
    fc.proxy.drop_answers_of("eth_sendRawTransaction");
    for _ in 0..3 {
        delivery.pass(chrono::Utc::now()).await.unwrap();
    }
    assert!(fc.proxy.dropped() >= 2, "answers were dropped");
    for id in &ids {
        let t = store.transfer(id).await.unwrap().unwrap();
        assert_eq!(
            t.transfer.state,
            TransferState::Delivering,
            "{id}: {:?}",
            t.history
        );
    }
    // One block: every release of the one signer is in it.
    fc.mine(1).await;
    fc.proxy.heal();
    deliver_all(&delivery, &fc, &store, &ids, 10).await;

    assert_paid_exactly_once(&fc, &ids).await;
    let (releases, _) = fc.payouts_on_chain().await;
    let first_block = releases[0].1;
    assert!(
        releases.iter().all(|(_, b)| *b == first_block),
        "five releases from one signer in one block: {releases:?}"
    );
    assert_eq!(
        fc.relayer_nonces().await.0,
        2,
        "a batch of four and one alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_pays_its_transfers_in_one_transaction_and_fails_only_the_refused_one() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let mut fc = FaultyChain::start(&anvil_bin, 31_344).await;
    fc.config.release_batch_max = 8;
    let (_dir, store, delivery) = fc.delivery().await;
    let chain_id = fc.config.id.to_string();
    // Ten that can be paid and, among them, one that asks for more than the escrow holds.
    let ids: Vec<String> = (0..10).map(|i| format!("tr:batch-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (t, path) = settled(id, &chain_id, &fc.token, 100 + i as u128);
        assert!(store.create_transfer(&t, &path).await.unwrap());
        if i == 4 {
            let (t, path) = settled("tr:batch-too-much", &chain_id, &fc.token, 10_000_000);
            assert!(store.create_transfer(&t, &path).await.unwrap());
        }
    }
    delivery.pass(chrono::Utc::now()).await.unwrap();
    // Eleven transfers, eight per transaction: two transactions, recorded and in flight.
    let payouts = {
        let mut p = Vec::new();
        for id in ids
            .iter()
            .chain(std::iter::once(&"tr:batch-too-much".to_owned()))
        {
            p.push(store.evm_payout(id, &chain_id).await.unwrap().unwrap());
        }
        p
    };
    let mut nonces: Vec<(u64, usize)> = payouts.iter().map(|p| (p.nonce, p.members)).collect();
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces, [(0, 8), (1, 3)]);
    // While they wait, a pass asks the chain once per payout, not once per transfer: one receipt
    // look-up and one re-broadcast for each of the two transactions.
    let calls = |m| fc.proxy.calls(m);
    let before = (
        calls("eth_getTransactionReceipt"),
        calls("eth_sendRawTransaction"),
    );
    delivery.pass(chrono::Utc::now()).await.unwrap();
    assert_eq!(calls("eth_getTransactionReceipt") - before.0, 2);
    // A broadcast goes to the current endpoint and, as a spread copy, to every endpoint: at most
    // two calls each through this one-endpoint proxy (once per transfer would be 22).
    let sent = calls("eth_sendRawTransaction") - before.1;
    assert!((2..=4).contains(&sent), "{sent} raw sends");
    fc.mine(1).await;
    deliver_all(&delivery, &fc, &store, &ids, 10).await;
    for _ in 0..3 {
        fc.mine(1).await;
        delivery.pass(chrono::Utc::now()).await.unwrap();
    }
    let refused = store.transfer("tr:batch-too-much").await.unwrap().unwrap();
    assert_eq!(refused.transfer.state, TransferState::Failed);
    let why = refused.history.last().unwrap().reason.clone().unwrap();
    assert!(
        why.contains("escrow refused the release in the batch of block")
            && why.contains("InsufficientBalance("),
        "{why}"
    );
    assert_paid_exactly_once(&fc, &ids).await;
    assert_eq!(
        fc.relayer_nonces().await.0,
        2,
        "two transactions for eleven"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_recorded_but_never_sent_is_sent_after_a_restart_with_its_own_nonce() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let fc = FaultyChain::start(&anvil_bin, 31_342).await;
    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    let chain_id = fc.config.id.to_string();
    let ids = vec!["tr:crash-a".to_owned(), "tr:crash-b".to_owned()];
    for id in &ids {
        let (t, path) = settled(id, &chain_id, &fc.token, 500);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    // The node records both releases, then dies before any broadcast reaches the chain (the
    // process stops between record and broadcast: here the chain never gets them).
    fc.proxy.refuse("eth_sendRawTransaction");
    {
        let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&fc.config))
            .await
            .unwrap();
        delivery.pass(chrono::Utc::now()).await.unwrap();
    }
    let recorded: Vec<_> = {
        let mut r = Vec::new();
        for id in &ids {
            r.push(store.evm_payout(id, &chain_id).await.unwrap().unwrap());
        }
        r
    };
    assert_eq!(
        recorded.iter().map(|p| p.nonce).collect::<Vec<_>>(),
        [0, 1],
        "one nonce each, from the chain's count"
    );
    fc.proxy.heal();

    // A new run: its nonce authority starts above the recorded nonces, and the recorded
    // transactions — not new ones — are what reaches the chain.
    let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&fc.config))
        .await
        .unwrap()
        .bump_after(chrono::Duration::hours(1));
    deliver_all(&delivery, &fc, &store, &ids, 10).await;
    assert_paid_exactly_once(&fc, &ids).await;
    use ethers::providers::Middleware;
    for p in &recorded {
        let hash: ethers::types::H256 = p.txs[0].hash.parse().unwrap();
        let mined = fc.provider.get_transaction_receipt(hash).await.unwrap();
        assert!(
            mined.is_some(),
            "the recorded transaction {} was mined",
            p.txs[0].hash
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_fails_over_to_a_healthy_one() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let mut fc = FaultyChain::start(&anvil_bin, 31_343).await;
    // The first endpoint answers nothing at all; the second is the chain itself.
    fc.proxy.hang();
    fc.config.rpc_urls = vec![
        fc.proxy.url().parse().unwrap(),
        fc.chain.anvil.http_url().parse().unwrap(),
    ];
    let (_dir, store, delivery) = fc.delivery().await;
    let ids = vec!["tr:hung".to_owned()];
    let (t, path) = settled(&ids[0], &fc.config.id.to_string(), &fc.token, 42);
    assert!(store.create_transfer(&t, &path).await.unwrap());
    deliver_all(&delivery, &fc, &store, &ids, 10).await;
    assert_paid_exactly_once(&fc, &ids).await;
    assert!(
        fc.proxy.calls("eth_chainId") >= 1,
        "the hung endpoint was tried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_reverts_as_a_whole_pays_each_member_by_a_release_of_its_own() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let mut fc = FaultyChain::start(&anvil_bin, 31_347).await;
    fc.config.release_batch_max = 8;
    let (_dir, store, delivery) = fc.delivery().await;
    let chain_id = fc.config.id.to_string();
    let ids: Vec<String> = (0..3).map(|i| format!("tr:whole-{i}")).collect();
    for id in &ids {
        let (t, path) = settled(id, &chain_id, &fc.token, 250);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    // The batch is recorded, but does not reach the chain yet.
    fc.proxy.refuse("eth_sendRawTransaction");
    delivery.pass(chrono::Utc::now()).await.unwrap();
    let batch = store.evm_payout(&ids[0], &chain_id).await.unwrap().unwrap();
    assert_eq!(batch.members, 3);
    // Meanwhile the escrow's admin hands the relayer role to someone else: the batch, sent now,
    // reverts as a whole (NotRelayer). Then the role comes back.
    let admin = StackClient::new(
        &fc.chain.stack,
        dev_client(&fc.chain.anvil.http_url(), 31_347, 0).unwrap(),
    )
    .unwrap();
    let set_relayer = |to: Address| {
        let (escrow, fc) = (admin.escrow.clone(), &fc);
        async move {
            let call = escrow.method::<_, ()>("setRelayer", to).unwrap();
            let pending = call.send().await.unwrap();
            fc.mine(1).await;
            let receipt = pending.await.unwrap().unwrap();
            assert_eq!(receipt.status, Some(1u64.into()));
        }
    };
    set_relayer(Address::from_low_u64_be(0xdead)).await;
    fc.proxy.heal();
    delivery.pass(chrono::Utc::now()).await.unwrap();
    fc.mine(1).await;
    set_relayer(devnet::stack::relayer_address().unwrap()).await;

    // Nothing of the batch was paid and its nonce is spent: each member is paid by a release
    // of its own, once.
    deliver_all(&delivery, &fc, &store, &ids, 12).await;
    assert_paid_exactly_once(&fc, &ids).await;
    assert_eq!(
        fc.relayer_nonces().await.0,
        4,
        "the reverted batch and three releases"
    );
    for id in &ids {
        let d = store.delivery(id).await.unwrap().unwrap();
        assert_eq!(d.last_error.as_deref(), Some("its batch reverted"), "{id}");
    }
}

/// Releases per block per chain (BENCHMARKS.md): 50 settled transfers, then one pass and one
/// mined block at a time. One signer's nonce authority lets every release of a pass into the next
/// block; before it, one release per block got through (every release of a pass took the nonce
/// `eth_getTransactionCount` named, and all but one were refused as underpriced replacements).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_per_block() {
    const N: usize = 50;
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let fc = FaultyChain::start(&anvil_bin, 31_350).await;
    let (_dir, store, delivery) = fc.delivery().await;
    let ids: Vec<String> = (0..N).map(|i| format!("tr:block-{i}")).collect();
    for id in &ids {
        let (t, path) = settled(id, fc.config.id.as_str(), &fc.token, 100);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    delivery.pass(chrono::Utc::now()).await.unwrap();
    fc.mine(1).await;
    let (releases, _) = fc.payouts_on_chain().await;
    let mut per_block = std::collections::BTreeMap::<u64, usize>::new();
    for (_, block) in &releases {
        *per_block.entry(*block).or_default() += 1;
    }
    println!(
        "RELEASES_PER_BLOCK n={N} after one pass and one block: {:?}",
        per_block.values().collect::<Vec<_>>()
    );
    assert_eq!(
        per_block.values().copied().collect::<Vec<_>>(),
        [N],
        "every release of one pass in one block"
    );
    deliver_all(&delivery, &fc, &store, &ids, 10).await;
    assert_paid_exactly_once(&fc, &ids).await;
}
