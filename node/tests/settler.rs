//! Settlement of quoted transfers on the durable ledger, on SQLite and PostgreSQL: postings as
//! quoted, liquidity that runs out refuses the transfer, and each transfer settles exactly once
//! across passes, restarts and a crash between the batch commit and the state update — also
//! when the intake hands its quoted transfers over in memory and the database has them too.

#[path = "support/corridor.rs"]
mod corridor;
#[path = "support/events.rs"]
mod events;
#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use meridian_router::RoutingState;
use meridian_storage::Store;
use meridian_transfers::handoff::quoted_handoff;
use meridian_transfers::intake::TransferIntake;
use meridian_transfers::settlement::SettlementEngine;
use meridian_transfers::settler::TransferSettler;
use meridian_types::config::CorridorConfig;
use meridian_types::{transfer_id, ChainFamily, EventPayload, TransferState};
use sea_orm::ConnectionTrait;

use corridor::{chain_a, chain_b};
use events::*;

fn corridors() -> Vec<CorridorConfig> {
    corridor::corridors(10_000, 1_000_000_000)
}

fn routing() -> RoutingState {
    corridor::routing(&corridors())
}

fn request(nonce: u64, amount: u128) -> EventPayload {
    remittance(&chain_a(), nonce, amount)
}

async fn settler(store: &Store) -> TransferSettler {
    let engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    TransferSettler::new(store.clone(), engine, &corridors())
        .await
        .unwrap()
}

async fn quoted_transfers_settle_once(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();
    let evs = vec![
        event(&a, 0xa, 10, 0, request(1, 500)),
        // More than the corridor's 10 000 of liquidity can pay out.
        event(&a, 0xa, 10, 1, request(2, 20_000)),
    ];
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, evs.clone()))
        .await
        .unwrap();
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let intake = TransferIntake::new(store.clone(), Arc::new(routing()));
    intake.pass(now).await.unwrap();

    let mut s = settler(&store).await;
    let summary = s.pass(now).await.unwrap();
    let states: Vec<TransferState> = summary.moved.iter().map(|m| m.1).collect();
    assert_eq!(states, [TransferState::Settled, TransferState::Rejected]);

    let (src, dst) = (token(&a).to_string(), token(&chain_b()).to_string());
    let bal = |b: Option<meridian_executor::Balances>| {
        let b = b.unwrap();
        (b.debits_posted, b.credits_posted)
    };
    // 500 locked; 499 into the corridor, 1 fee; 499 paid out of the 10 000 liquidity.
    assert_eq!(
        bal(s.balances(&src, "", "escrow").await.unwrap()),
        (500, 500)
    );
    assert_eq!(bal(s.balances(&src, "", "fee").await.unwrap()), (0, 1));
    assert_eq!(
        bal(s.balances(&src, "a-b", "liquidity").await.unwrap()),
        (0, 499)
    );
    assert_eq!(
        bal(s.balances(&dst, "a-b", "liquidity").await.unwrap()),
        (499, 10_000)
    );
    assert_eq!(bal(s.balances(&dst, "", "payout").await.unwrap()), (0, 499));

    let t = store
        .transfer(&transfer_id(&evs[0].id.uid()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.transfer.state, meridian_types::TransferState::Settled);
    assert!(t.transfer.batch_id.is_some());
    let tail: Vec<_> = t
        .history
        .iter()
        .rev()
        .take(2)
        .map(|h| (h.from, h.to))
        .collect();
    assert_eq!(
        tail,
        [
            (Some(TransferState::Settling), TransferState::Settled),
            (Some(TransferState::Quoted), TransferState::Settling)
        ]
    );
    let refused = store
        .transfer(&transfer_id(&evs[1].id.uid()))
        .await
        .unwrap()
        .unwrap();
    let last = refused.history.last().unwrap();
    assert_eq!(last.to, TransferState::Rejected);
    assert!(
        last.reason
            .as_deref()
            .unwrap()
            .contains("debits would exceed credits"),
        "{last:?}"
    );

    // Nothing left to do; a restart neither refunds the liquidity nor settles anything again.
    assert!(s.pass(now).await.unwrap().moved.is_empty());
    drop(s);
    let mut restarted = settler(&store).await;
    assert!(restarted.pass(now).await.unwrap().moved.is_empty());
    assert_eq!(
        bal(restarted.balances(&dst, "a-b", "liquidity").await.unwrap()),
        (499, 10_000)
    );

    // A crash after the batch commit but before the state update: the transfer is quoted again
    // in the database; the next pass recognises its postings and settles nothing twice.
    let id = transfer_id(&evs[0].id.uid());
    store
        .connection()
        .execute_unprepared(&format!(
            "UPDATE transfers SET state = 'quoted' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    let summary = restarted.pass(now).await.unwrap();
    assert_eq!(summary.moved, [(id.clone(), TransferState::Settled)]);
    assert_eq!(
        bal(restarted.balances(&dst, "", "payout").await.unwrap()),
        (0, 499)
    );
    let t = store.transfer(&id).await.unwrap().unwrap();
    assert_eq!(
        t.history.last().unwrap().reason.as_deref(),
        Some("settled by an earlier run")
    );
}

#[tokio::test]
async fn sqlite_quoted_transfers_settle_once() {
    let dir = tempfile::tempdir().unwrap();
    quoted_transfers_settle_once(&format!(
        "sqlite://{}",
        dir.path().join("s.sqlite").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_quoted_transfers_settle_once() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    quoted_transfers_settle_once(&db.url).await;
    db.cleanup().await;
}

/// Transfers handed over by the intake settle from memory; one handed over twice, or also read
/// from the database, settles once; one quoted without the hand-off is found in the database.
async fn handed_over_transfers_settle_once(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let handed: Vec<_> = (0..3)
        .map(|i| event(&a, 0xa, 10, i, request(u64::from(i) + 1, 500)))
        .collect();
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, handed.clone()))
        .await
        .unwrap();
    let (to_settler, from_intake) = quoted_handoff();
    TransferIntake::new(store.clone(), Arc::new(routing()))
        .hand_off_to(to_settler.clone())
        .pass(now)
        .await
        .unwrap();
    // The same transfers once more, as a second hand-over would carry them.
    let again = store
        .transfers_in_state(TransferState::Quoted, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    assert!(to_settler.hand_over(again));
    // One more quoted by an intake without the hand-off: only the database knows it.
    let unhanded = event(&a, 0xa, 11, 0, request(9, 500));
    store
        .commit_ingest(&batch(&a, 0xa, 11, 11, vec![unhanded.clone()]))
        .await
        .unwrap();
    TransferIntake::new(store.clone(), Arc::new(routing()))
        .pass(now)
        .await
        .unwrap();

    let mut s = settler(&store).await.receive_from(from_intake);
    let summary = s.pass(now).await.unwrap();
    let mut moved: Vec<_> = summary.moved.clone();
    moved.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<_> = handed
        .iter()
        .chain([&unhanded])
        .map(|e| (transfer_id(&e.id.uid()), TransferState::Settled))
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(moved, expected, "each transfer moved once");
    for (id, _) in &expected {
        let record = store.transfer(id).await.unwrap().unwrap();
        let history = &record.history;
        let settled: Vec<_> = history
            .iter()
            .filter(|h| h.to == TransferState::Settled)
            .collect();
        assert_eq!(settled.len(), 1, "{id}: {history:?}");
        // Settled by this batch, not mistaken for "settled by an earlier run" by its copy.
        assert!(
            settled[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("settlement batch")),
            "{id}: {history:?}"
        );
        assert!(
            record.transfer.batch_id.is_some(),
            "{id}: its batch is named"
        );
    }
    let payout = s
        .balances(&token(&chain_b()).to_string(), "", "payout")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payout.credits_posted, 4 * 499, "the ledger holds each once");
    assert!(s.pass(now).await.unwrap().moved.is_empty());
}

#[tokio::test]
async fn sqlite_handed_over_transfers_settle_once() {
    let dir = tempfile::tempdir().unwrap();
    handed_over_transfers_settle_once(&format!(
        "sqlite://{}",
        dir.path().join("h.sqlite").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_handed_over_transfers_settle_once() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    handed_over_transfers_settle_once(&db.url).await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_quote_that_expired_before_settlement_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = chain_a();
    let store = sqlite_with_chain(dir.path(), "e.sqlite", &a).await;
    let ev = event(&a, 0xa, 10, 0, request(1, 500));
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, vec![ev.clone()]))
        .await
        .unwrap();
    let quoted_at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    TransferIntake::new(store.clone(), Arc::new(routing()))
        .pass(quoted_at)
        .await
        .unwrap();
    // Quotes hold 60 s; the settler first runs 61 s later.
    let mut s = settler(&store).await;
    let late = quoted_at + chrono::Duration::seconds(61);
    let summary = s.pass(late).await.unwrap();
    assert_eq!(summary.moved[0].1, TransferState::Rejected);
    let t = store
        .transfer(&transfer_id(&ev.id.uid()))
        .await
        .unwrap()
        .unwrap();
    let reason = t.history.last().unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("quote expired at 2027-01-15T08:01:00+00:00"),
        "{reason}"
    );
    // Nothing was posted for it.
    let payout = s
        .balances(&token(&chain_b()).to_string(), "", "payout")
        .await
        .unwrap();
    assert_eq!(payout.unwrap().credits_posted, 0);
}

#[tokio::test]
async fn a_settled_transfer_whose_delivery_failed_is_reversed_once() {
    use meridian_storage::{TransferMove, Transition};
    let dir = tempfile::tempdir().unwrap();
    let a = chain_a();
    let store = sqlite_with_chain(dir.path(), "r.sqlite", &a).await;
    let ev = event(&a, 0xa, 10, 0, request(1, 500));
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, vec![ev.clone()]))
        .await
        .unwrap();
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    TransferIntake::new(store.clone(), Arc::new(routing()))
        .pass(now)
        .await
        .unwrap();
    let mut s = settler(&store).await;
    s.pass(now).await.unwrap();
    let id = transfer_id(&ev.id.uid());

    // Delivery failed (as the delivery task records it).
    let failed = TransferMove {
        id: id.clone(),
        from: TransferState::Settled,
        path: vec![Transition {
            from: Some(TransferState::Settled),
            to: TransferState::Failed,
            reason: Some("escrow refused the release".into()),
            actor: "relayer".into(),
            at: now,
        }],
        batch_id: None,
    };
    assert_eq!(store.advance_transfers(&[failed]).await.unwrap(), 1);
    let summary = s.pass(now).await.unwrap();
    assert_eq!(summary.moved, [(id.clone(), TransferState::Rejected)]);

    // Every account is back where it was: what went in came out again.
    let (src, dst) = (token(&a).to_string(), token(&chain_b()).to_string());
    let net = |b: Option<meridian_executor::Balances>| {
        let b = b.unwrap();
        b.credits_posted as i128 - b.debits_posted as i128
    };
    assert_eq!(net(s.balances(&src, "", "escrow").await.unwrap()), 0);
    assert_eq!(net(s.balances(&src, "", "fee").await.unwrap()), 0);
    assert_eq!(net(s.balances(&src, "a-b", "liquidity").await.unwrap()), 0);
    assert_eq!(net(s.balances(&dst, "", "payout").await.unwrap()), 0);
    assert_eq!(
        net(s.balances(&dst, "a-b", "liquidity").await.unwrap()),
        10_000
    );
    let t = store.transfer(&id).await.unwrap().unwrap();
    assert!(t
        .history
        .last()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("reversed"));

    // A refund that then fails leaves the transfer failed: no second reversal.
    let refund_failed = TransferMove {
        id: id.clone(),
        from: TransferState::Rejected,
        path: vec![Transition {
            from: Some(TransferState::Rejected),
            to: TransferState::Failed,
            reason: Some("escrow refused the refund".into()),
            actor: "relayer".into(),
            at: now,
        }],
        batch_id: None,
    };
    assert_eq!(store.advance_transfers(&[refund_failed]).await.unwrap(), 1);
    assert!(s.pass(now).await.unwrap().moved.is_empty());
    assert_eq!(net(s.balances(&dst, "", "payout").await.unwrap()), 0);
}

#[tokio::test]
async fn a_reorg_that_retracts_the_deposit_stops_its_transfer_at_every_stage() {
    use meridian_storage::{TransferMove, Transition};
    use meridian_transfers::reorg_guard::{self, REORG_LOSS};
    let dir = tempfile::tempdir().unwrap();
    let a = chain_a();
    let store = sqlite_with_chain(dir.path(), "g.sqlite", &a).await;
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let intake = TransferIntake::new(store.clone(), Arc::new(routing()));
    let mut s = settler(&store).await;
    // Block 10: two deposits, settled; block 11: one deposit, quoted only.
    let paid = event(&a, 0xa, 10, 0, request(1, 500));
    let settled_only = event(&a, 0xa, 10, 1, request(2, 700));
    store
        .commit_ingest(&batch(
            &a,
            0xa,
            10,
            10,
            vec![paid.clone(), settled_only.clone()],
        ))
        .await
        .unwrap();
    intake.pass(now).await.unwrap();
    s.pass(now).await.unwrap();
    let quoted = event(&a, 0xa, 11, 0, request(3, 900));
    store
        .commit_ingest(&batch(&a, 0xa, 11, 11, vec![quoted.clone()]))
        .await
        .unwrap();
    intake.pass(now).await.unwrap();
    let [paid, settled_only, quoted] =
        [&paid, &settled_only, &quoted].map(|e| transfer_id(&e.id.uid()));
    // The first was released and is final on its destination chain.
    let step = |from, to| Transition {
        from: Some(from),
        to,
        reason: None,
        actor: "relayer".into(),
        at: now,
    };
    use TransferState::*;
    let released = TransferMove {
        id: paid.clone(),
        from: Settled,
        path: vec![
            step(Settled, Delivering),
            step(Delivering, Delivered),
            step(Delivered, Finalized),
        ],
        batch_id: None,
    };
    assert_eq!(store.advance_transfers(&[released]).await.unwrap(), 1);
    let state = |id: String| {
        let store = store.clone();
        async move {
            store
                .transfer(&id)
                .await
                .unwrap()
                .unwrap()
                .transfer
                .state
                .as_str()
                .to_owned()
        }
    };
    assert_eq!(state(settled_only.clone()).await, "settled");
    assert_eq!(state(quoted.clone()).await, "quoted");

    // Nothing retracted: the guard does nothing.
    assert_eq!(
        reorg_guard::stop_retracted(&store, now).await.unwrap(),
        Default::default()
    );

    // A reorg deeper than the confirmations takes blocks 10 and 11 away.
    store.rewind(&a, &block(0xa, 9)).await.unwrap();
    let stopped = reorg_guard::stop_retracted(&store, now).await.unwrap();
    let mut moved = stopped.moved.clone();
    moved.sort_by(|x, y| x.0.cmp(&y.0));
    let mut expected = vec![(settled_only.clone(), Failed), (quoted.clone(), Cancelled)];
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(moved, expected);
    assert_eq!(
        stopped.losses,
        std::slice::from_ref(&paid),
        "the released one is a loss"
    );
    assert!(store
        .audited(REORG_LOSS, &format!("transfer:{paid}"))
        .await
        .unwrap());
    assert_eq!(state(paid.clone()).await, "finalized");

    // The settled one's ledger entries are reversed, and it is cancelled, not refunded.
    let reversed = s.pass(now).await.unwrap();
    assert_eq!(reversed.moved, [(settled_only.clone(), Cancelled)]);
    let dst = token(&chain_b()).to_string();
    let b = s.balances(&dst, "", "payout").await.unwrap().unwrap();
    assert_eq!(
        b.credits_posted - b.debits_posted,
        499,
        "only the released transfer's payout stays on the ledger"
    );

    // Once is enough: nothing moves again and the loss is not recorded twice.
    assert_eq!(
        reorg_guard::stop_retracted(&store, now).await.unwrap(),
        Default::default()
    );
    assert_eq!(store.audit_actions(REORG_LOSS).await.unwrap().len(), 1);
}

/// A settler stopped gracefully writes a balance checkpoint: the next start replays no journal.
#[tokio::test]
async fn a_settler_stopped_gracefully_checkpoints_its_balances() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stop.sqlite").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();
    store
        .commit_ingest(&batch(
            &a,
            0xa,
            10,
            10,
            vec![event(&a, 0xa, 10, 0, request(1, 500))],
        ))
        .await
        .unwrap();
    let intake = TransferIntake::new(store.clone(), Arc::new(routing()));
    intake.pass(Utc::now()).await.unwrap();
    // The corridors' funding is one batch, the transfer's settlement another.
    let s = settler(&store).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(s.run(std::time::Duration::from_millis(50), stopped));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.ledger_state().await.unwrap().batches_since_checkpoint < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer was not settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap();
    let state = store.ledger_state().await.unwrap();
    assert_eq!(state.batches_since_checkpoint, 0);
    assert!(state.changed_since_checkpoint.is_empty());
    assert_ne!(state.checkpoint_batch, 0);
}
