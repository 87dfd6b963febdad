//! The pipeline killed between its commits (a child process aborted at a crash point, as
//! `kill -9` would stop it): after the intake stored a first part of a pass, after a ledger
//! batch (the corridors' funding) committed before any transfer settled, and right after a batch
//! of transfers settled — whose ledger entries and new states are one transaction, so the crash
//! finds them settled, not quoted with their postings stored. Restarted, every request is one
//! transfer, every transfer is settled, and the ledger holds each exactly once.

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
use meridian_transfers::intake::TransferIntake;
use meridian_transfers::settlement::SettlementEngine;
use meridian_transfers::settler::TransferSettler;
use meridian_types::config::CorridorConfig;
use meridian_types::{transfer_id, ChainFamily, TransferState};

use corridor::{chain_a, chain_b};
use events::*;

/// Requests stored: more than one intake page (500), so a crash after the first commit leaves
/// some for the restart.
const REQUESTS: u64 = 700;
/// Each request's amount; the corridor keeps 0.25 % (2) and delivers 998.
const AMOUNT: u128 = 1_000;

fn corridors() -> Vec<CorridorConfig> {
    corridor::corridors(1_000_000_000, 1_000_000_000_000)
}

fn routing() -> RoutingState {
    corridor::routing(&corridors())
}

fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

/// Intake, then settlement until nothing moves: what a node does with stored requests.
async fn run_pipeline(store: &Store) {
    let intake = TransferIntake::new(store.clone(), Arc::new(routing()));
    intake.restore_cap_usage(now()).await.unwrap();
    intake.pass(now()).await.unwrap();
    let engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let mut settler = TransferSettler::new(store.clone(), engine, &corridors())
        .await
        .unwrap();
    while !settler.pass(now()).await.unwrap().moved.is_empty() {}
}

/// Child process of the crash tests: runs the pipeline until its crash point aborts it.
#[tokio::test]
#[ignore = "run by the pipeline crash tests as a child process"]
async fn crash_child_runs_the_pipeline() {
    let Ok(url) = std::env::var("MERIDIAN_CRASH_DB") else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    run_pipeline(&store).await;
}

async fn store_requests(url: &str) -> (Store, Vec<String>) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (block, nonces) in [(10u64, 0..350u64), (11, 350..REQUESTS)] {
        let evs: Vec<_> = nonces
            .enumerate()
            .map(|(i, n)| event(&a, 0xa, block, i as u32, remittance(&a, n, AMOUNT)))
            .collect();
        ids.extend(evs.iter().map(|e| transfer_id(&e.id.uid())));
        store
            .commit_ingest(&batch(&a, 0xa, block, block, evs))
            .await
            .unwrap();
    }
    (store, ids)
}

/// Runs the pipeline in a child process aborted at `point`; every transfer stored by then must
/// be in state `at_crash`. Then restarts it and checks the outcome.
async fn killed_at(url: &str, point: &str, at_crash: TransferState) {
    let (store, ids) = store_requests(url).await;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_runs_the_pipeline",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MERIDIAN_CRASH_DB", url)
        .env("MERIDIAN_FAILPOINT", point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child should have aborted");
    assert!(
        stderr.contains(&format!("MERIDIAN_FAILPOINT {point}")),
        "{stderr}"
    );
    // What the crash left: the pipeline stopped part-way.
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before = store.transfer_states(&refs).await.unwrap();
    assert!(!before.is_empty(), "{point}: the child stored transfers");
    assert!(
        before.iter().all(|(_, s)| *s == at_crash),
        "{point}: every transfer {} at the crash: {:?}",
        at_crash.as_str(),
        before.iter().find(|(_, s)| *s != at_crash)
    );

    run_pipeline(&store).await;

    // Every request is one transfer, settled once.
    let states = store.transfer_states(&refs).await.unwrap();
    assert_eq!(states.len(), ids.len(), "{point}: one transfer per request");
    assert!(
        states.iter().all(|(_, s)| *s == TransferState::Settled),
        "{point}: {:?}",
        states.iter().find(|(_, s)| *s != TransferState::Settled)
    );
    for id in ids.iter().step_by(97) {
        let history = store.transfer(id).await.unwrap().unwrap().history;
        let settled = history
            .iter()
            .filter(|h| h.to == TransferState::Settled)
            .count();
        assert_eq!(settled, 1, "{point}: {id} settled once: {history:?}");
    }
    // The ledger holds each transfer exactly once: escrow took every lock once, the payout
    // account owes each delivery once.
    let engine = SettlementEngine::load(store.clone(), 1).await.unwrap();
    let mut settler = TransferSettler::new(store.clone(), engine, &corridors())
        .await
        .unwrap();
    let n = u128::from(REQUESTS);
    let escrow = settler
        .balances(&token(&chain_a()).to_string(), "", "escrow")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(escrow.credits_posted, n * AMOUNT, "{point}: escrow credits");
    let payout = settler
        .balances(&token(&chain_b()).to_string(), "", "payout")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payout.credits_posted, n * 998, "{point}: payout credits");
}

#[tokio::test]
async fn sqlite_killed_after_the_intake_stored_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.sqlite").display());
    killed_at(&url, "intake-stored", TransferState::Quoted).await;
}

#[tokio::test]
async fn sqlite_killed_after_a_ledger_batch_committed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.sqlite").display());
    killed_at(&url, "settlement-committed", TransferState::Quoted).await;
}

#[tokio::test]
async fn postgres_killed_after_the_intake_stored_a_page() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    killed_at(&db.url, "intake-stored", TransferState::Quoted).await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_killed_after_a_ledger_batch_committed() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    killed_at(&db.url, "settlement-committed", TransferState::Quoted).await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_killed_right_after_transfers_settled() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.sqlite").display());
    killed_at(&url, "transfers-settled", TransferState::Settled).await;
}

#[tokio::test]
async fn postgres_killed_right_after_transfers_settled() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    killed_at(&db.url, "transfers-settled", TransferState::Settled).await;
    db.cleanup().await;
}
