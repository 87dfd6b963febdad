//! The account-chain payout protocol (`transfers/src/account_delivery.rs`), driven by the one
//! delivery state machine (`transfers/src/delivery.rs`) against a scripted chain:
//! a payout is recorded before it is broadcast; it is final only when the watcher has its marker
//! event; a payout the chain included and failed fails the transfer; one that expired
//! unincluded is sent again (never while it can still land), at most three times; a crash between
//! recording and broadcasting leads to the same expiry rule, not to a second payout.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;
#[path = "support/transfers.rs"]
mod transfers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meridian_relayer::payout::{AccountPayouts, Inclusion, Payout, PayoutError, PreparedPayout};
use meridian_storage::{IngestBatch, NewTransfer, Store, Transition};
use meridian_transfers::account_delivery::AccountRail;
use meridian_transfers::delivery::TransferDelivery;
use meridian_transfers::payout_rail::PayoutRail;
use meridian_types::{
    AccountId, AssetId, BlockRef, ChainEvent, ChainFamily, ChainId, EventId, EventPayload,
    PayoutMarker, TransferState,
};

const CHAIN: &str = "cosmos:dest-1";

/// A chain whose answers the test scripts.
#[derive(Default)]
struct ScriptedChain {
    height: AtomicU64,
    prepared: Mutex<Vec<Payout>>,
    broadcast: Mutex<Vec<String>>,
    fail_broadcast: Mutex<bool>,
    inclusions: Mutex<HashMap<String, Inclusion>>,
}

#[async_trait::async_trait]
impl AccountPayouts for ScriptedChain {
    fn chain(&self) -> &ChainId {
        static ID: std::sync::OnceLock<ChainId> = std::sync::OnceLock::new();
        ID.get_or_init(|| CHAIN.parse().unwrap())
    }

    async fn prepare(&self, payout: &Payout) -> Result<PreparedPayout, PayoutError> {
        let mut prepared = self.prepared.lock().unwrap();
        prepared.push(payout.clone());
        Ok(PreparedPayout {
            tx: format!("TX{}", prepared.len()),
            valid_until: self.height.load(Ordering::SeqCst) + 64,
            bytes: Vec::new(),
        })
    }

    async fn broadcast(&self, p: &PreparedPayout) -> Result<(), PayoutError> {
        if *self.fail_broadcast.lock().unwrap() {
            return Err(PayoutError::Refused("node went away".into()));
        }
        self.broadcast.lock().unwrap().push(p.tx.clone());
        Ok(())
    }

    async fn final_height(&self) -> Result<u64, PayoutError> {
        Ok(self.height.load(Ordering::SeqCst))
    }

    async fn inclusion(&self, tx: &str, _valid_until: u64) -> Result<Inclusion, PayoutError> {
        Ok(self
            .inclusions
            .lock()
            .unwrap()
            .get(tx)
            .cloned()
            .unwrap_or(Inclusion::Unknown))
    }
}

async fn settled(store: &Store, id: &str) {
    use TransferState::*;
    let now = chrono::Utc::now();
    let s = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "test".into(),
        at: now,
    };
    let dest_asset = AssetId::cosmos_denom(&CHAIN.parse().unwrap(), "ustable").to_string();
    let t = NewTransfer {
        id: id.into(),
        source_event_uid: format!("uid-{id}"),
        source_chain: "eip155:1".parse().unwrap(),
        dest_chain: CHAIN.into(),
        source_asset: transfers::SOURCE_ASSET.parse().unwrap(),
        sender: "eip155:1:0x0000000000000000000000000000000000000a11"
            .parse()
            .unwrap(),
        recipient: format!("{CHAIN}:cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu"),
        amount: 1_000,
        deadline: None,
        quote: Some(transfers::one_hop_quote(
            transfers::SOURCE_ASSET,
            &dest_asset,
            1_000,
            10,
            990,
        )),
        dest_asset,
    };
    let path = [
        s(None, Requested),
        s(Some(Requested), Screened),
        s(Some(Screened), Quoted),
        s(Some(Quoted), Settling),
        s(Some(Settling), Settled),
    ];
    assert!(store.create_transfer(&t, &path).await.unwrap());
}

/// The watcher ingests the payout's marker event at `height`.
async fn marker_event(store: &Store, transfer_id: &str, height: u64) {
    let chain: ChainId = CHAIN.parse().unwrap();
    let block = BlockRef {
        height,
        hash: format!("H{height}"),
        parent_hash: None,
    };
    let event = ChainEvent {
        id: EventId {
            chain: chain.clone(),
            block_number: height,
            block_hash: block.hash.clone(),
            tx: "TX".into(),
            index: 1,
        },
        contract: "bank".into(),
        payload: EventPayload::Released {
            transfer_id: transfer_id.into(),
            asset: AssetId::cosmos_denom(&chain, "ustable"),
            recipient: AccountId::new(&chain, "cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu"),
            amount: 990,
        },
    };
    store
        .commit_ingest(&IngestBatch {
            chain,
            events: vec![event],
            blocks: vec![block.clone()],
            checkpoint: block,
        })
        .await
        .unwrap();
}

async fn state(store: &Store, id: &str) -> (TransferState, Option<String>) {
    let t = store.transfer(id).await.unwrap().unwrap();
    let last = t.history.last().unwrap();
    (last.to, last.reason.clone())
}

async fn setup() -> (tempfile::TempDir, Store, Arc<ScriptedChain>) {
    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    store
        .register_chain(&CHAIN.parse().unwrap(), "dest", ChainFamily::Cometbft)
        .await
        .unwrap();
    let chain = ScriptedChain::default();
    chain.height.store(100, Ordering::SeqCst);
    (dir, store, Arc::new(chain))
}

/// One delivery pass over the scripted chain; the state `id` reached in it, if it moved.
async fn pass(store: &Store, chain: &Arc<ScriptedChain>, id: &str) -> Option<TransferState> {
    let rail: Arc<dyn PayoutRail> = Arc::new(AccountRail::new(chain.clone()));
    let delivery = TransferDelivery::new(store.clone(), HashMap::from([(CHAIN.to_owned(), rail)]));
    let summary = delivery.pass(chrono::Utc::now()).await.unwrap();
    summary
        .moved
        .into_iter()
        .rev()
        .find(|(t, _)| t == id)
        .map(|(_, to)| to)
}

async fn release(store: &Store, chain: &Arc<ScriptedChain>, id: &str) -> Option<TransferState> {
    assert_eq!(state(store, id).await.0, TransferState::Settled);
    pass(store, chain, id).await
}

async fn follow(store: &Store, chain: &Arc<ScriptedChain>, id: &str) -> Option<TransferState> {
    pass(store, chain, id).await
}

#[tokio::test]
async fn a_payout_is_final_only_with_its_marker_event() {
    let (_dir, store, chain) = setup().await;
    settled(&store, "tr:a").await;
    assert_eq!(
        release(&store, &chain, "tr:a").await,
        Some(TransferState::Delivering)
    );
    // Recorded with its transaction and validity before being broadcast.
    let d = store.delivery("tr:a").await.unwrap().unwrap();
    assert_eq!(d.tx_hash.as_deref(), Some("TX1"));
    assert_eq!(d.valid_until, Some(164));
    assert_eq!(*chain.broadcast.lock().unwrap(), vec!["TX1".to_owned()]);
    let p = chain.prepared.lock().unwrap()[0].clone();
    assert_eq!(p.marker, PayoutMarker::Release("tr:a".into()));
    assert_eq!(
        (p.to.as_str(), p.amount),
        ("cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu", 990)
    );

    // Included but not yet final (no marker event): delivered, not final, nothing sent again.
    chain
        .inclusions
        .lock()
        .unwrap()
        .insert("TX1".into(), Inclusion::Succeeded { height: 101 });
    chain.height.store(500, Ordering::SeqCst);
    assert_eq!(
        follow(&store, &chain, "tr:a").await,
        Some(TransferState::Delivered)
    );
    assert_eq!(follow(&store, &chain, "tr:a").await, None);
    assert_eq!(chain.broadcast.lock().unwrap().len(), 1);

    marker_event(&store, "tr:a", 101).await;
    assert_eq!(
        follow(&store, &chain, "tr:a").await,
        Some(TransferState::Finalized)
    );
    assert_eq!(state(&store, "tr:a").await.0, TransferState::Finalized);
}

#[tokio::test]
async fn an_expired_payout_is_sent_again_only_after_its_validity_and_at_most_three_times() {
    let (_dir, store, chain) = setup().await;
    settled(&store, "tr:b").await;
    // The node "crashes" between recording and broadcasting: the broadcast fails.
    *chain.fail_broadcast.lock().unwrap() = true;
    assert_eq!(
        release(&store, &chain, "tr:b").await,
        Some(TransferState::Delivering)
    );
    *chain.fail_broadcast.lock().unwrap() = false;

    // While TX1 can still be included (final height ≤ 164), nothing else is signed.
    for h in [120, 164] {
        chain.height.store(h, Ordering::SeqCst);
        assert_eq!(follow(&store, &chain, "tr:b").await, None);
        assert_eq!(chain.prepared.lock().unwrap().len(), 1, "re-signed at {h}");
    }
    // Past it, final and without the marker: TX1 can never land; TX2 replaces it.
    chain.height.store(165, Ordering::SeqCst);
    assert_eq!(follow(&store, &chain, "tr:b").await, None);
    let d = store.delivery("tr:b").await.unwrap().unwrap();
    assert_eq!(
        (d.tx_hash.as_deref(), d.valid_until, d.attempts),
        (Some("TX2"), Some(229), 2)
    );
    assert_eq!(*chain.broadcast.lock().unwrap(), vec!["TX2".to_owned()]);

    chain.height.store(230, Ordering::SeqCst);
    assert_eq!(follow(&store, &chain, "tr:b").await, None);
    chain.height.store(400, Ordering::SeqCst);
    // Third expiry: given up, with the reason.
    assert_eq!(
        follow(&store, &chain, "tr:b").await,
        Some(TransferState::Failed)
    );
    let (to, why) = state(&store, "tr:b").await;
    assert_eq!(to, TransferState::Failed);
    assert!(why.unwrap().contains("not included in 3 attempts"));
    assert_eq!(chain.prepared.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_payout_the_chain_failed_fails_the_transfer() {
    let (_dir, store, chain) = setup().await;
    settled(&store, "tr:c").await;
    release(&store, &chain, "tr:c").await;
    chain.inclusions.lock().unwrap().insert(
        "TX1".into(),
        Inclusion::Failed {
            height: 101,
            reason: "code 5: insufficient funds".into(),
        },
    );
    assert_eq!(
        follow(&store, &chain, "tr:c").await,
        Some(TransferState::Failed)
    );
    let why = state(&store, "tr:c").await.1.unwrap();
    assert_eq!(
        why,
        "payout TX1 failed in block 101: code 5: insufficient funds"
    );
    assert_eq!(chain.prepared.lock().unwrap().len(), 1);
}
