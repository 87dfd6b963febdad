//! The durable settlement path: parallel execution + one transaction per batch, on SQLite and
//! PostgreSQL; restart from the database; and a process killed mid-commit leaves whole batches.

#[path = "support/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use meridian_executor::{Posting, PostingError, Settlement};
use meridian_node::bench::{funded_account_rows, uniform_transfers};
use meridian_storage::entities::{postings, settlement_batches};
use meridian_storage::{LedgerAccountRow, Store};
use meridian_transfers::settlement::SettlementEngine;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

const USERS: u32 = 500;
const BALANCE: u128 = 1_000_000;

fn accounts() -> Vec<LedgerAccountRow> {
    funded_account_rows(USERS, BALANCE)
}

/// Uniform transfers between this ledger's users (executor indexes from `first_user`).
fn transfers(first_user: u32, len: usize, first_id: u128, seed: u64) -> Vec<Settlement> {
    uniform_transfers(first_user, USERS, len, first_id, seed)
}

/// Checks the stored ledger: debits equal credits, and each batch's postings and balance changes
/// are all there (sum of posting amounts = users' total debits).
async fn check_stored_ledger(store: &Store) -> (u64, u64) {
    let accounts = store.ledger_accounts().await.unwrap();
    let debits: u128 = accounts.iter().map(|a| a.balances[0]).sum();
    let credits: u128 = accounts.iter().map(|a| a.balances[1]).sum();
    assert_eq!(debits, credits, "stored ledger does not balance");
    let user_debits: u128 = accounts
        .iter()
        .filter(|a| a.kind == "user")
        .map(|a| a.balances[0])
        .sum();
    let rows = postings::Entity::find()
        .all(store.connection())
        .await
        .unwrap();
    let posted: u128 = rows.iter().map(|p| p.amount.parse::<u128>().unwrap()).sum();
    assert_eq!(
        posted, user_debits,
        "postings and balances disagree: a batch was half-written"
    );
    let batches = settlement_batches::Entity::find()
        .all(store.connection())
        .await
        .unwrap();
    for b in &batches {
        let n = postings::Entity::find()
            .filter(postings::Column::BatchId.eq(b.id))
            .count(store.connection())
            .await
            .unwrap();
        let accepted = b.summary.as_ref().unwrap()["accepted"].as_u64().unwrap();
        assert_eq!(
            n, accepted,
            "batch {} has {n} postings but accepted {accepted}",
            b.id
        );
    }
    (batches.len() as u64, rows.len() as u64)
}

async fn settles_durably_and_restarts(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let ixs = engine.open_accounts(&accounts()).await.unwrap();
    let first_user = ixs[1];
    let b1 = transfers(first_user, 2_000, 0, 1);
    let (r1, _) = engine.settle(b1.clone(), 0).await.unwrap();
    let accepted = r1.iter().filter(|r| r.is_ok()).count() as u64;
    assert!(accepted > 1_900, "{accepted}");
    // Something refused is refused in storage too: an overdraft beyond any balance.
    let over = vec![Settlement::single(Posting::Transfer {
        id: 9_999_999,
        debit: first_user,
        credit: first_user + 1,
        asset: 0,
        amount: BALANCE * 10,
        timeout: None,
    })];
    let (r, _) = engine.settle(over, 0).await.unwrap();
    assert_eq!(r[0].unwrap_err().error, PostingError::ExceedsCredits);
    assert_eq!(check_stored_ledger(&store).await, (2, accepted));

    // A new engine (a restart) sees the same balances, and refuses a replay.
    let before: Vec<_> = (0..ixs.len() as u32)
        .map(|ix| engine.balances(ix))
        .collect();
    drop(engine);
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let after: Vec<_> = (0..ixs.len() as u32)
        .map(|ix| engine.balances(ix))
        .collect();
    assert_eq!(before, after);
    let (replay, _) = engine.settle(b1, 0).await.unwrap();
    for (r, original) in replay.iter().zip(&r1) {
        if original.is_ok() {
            assert_eq!(r.unwrap_err().error, PostingError::IdExists);
        }
    }
    assert_eq!(check_stored_ledger(&store).await.1, accepted);
}

#[tokio::test]
async fn sqlite_settles_durably_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    settles_durably_and_restarts(&format!(
        "sqlite://{}",
        dir.path().join("l.sqlite").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_settles_durably_and_restarts() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    settles_durably_and_restarts(&db.url).await;
    db.cleanup().await;
}

/// Child process of the crash tests: settles batches forever until it is killed.
#[tokio::test]
#[ignore = "run by the crash tests as a child process"]
async fn crash_child_settles_forever() {
    let Ok(url) = std::env::var("MERIDIAN_CRASH_DB") else {
        return;
    };
    let store = Store::connect(&url).await.unwrap();
    let mut engine = SettlementEngine::load(store, 2).await.unwrap();
    let first_user = 1;
    for round in 0u64.. {
        let b = transfers(first_user, 4_000, u128::from(round) * 10_000, round);
        engine.settle(b, 0).await.unwrap();
    }
}

async fn killed_mid_commit_leaves_whole_batches(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    SettlementEngine::load(store.clone(), 1)
        .await
        .unwrap()
        .open_accounts(&accounts())
        .await
        .unwrap();
    for attempt in 0..3u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child_settles_forever",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MERIDIAN_CRASH_DB", url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it commit a few batches, then kill it at an arbitrary moment (likely mid-commit:
        // most of its time is spent inside the batch transaction).
        let start = Instant::now();
        // Only count batches while the child writes: the full check reads several tables and is
        // meaningful only once no writer is left.
        let batches = || async {
            settlement_batches::Entity::find()
                .count(store.connection())
                .await
                .unwrap()
        };
        let target = batches().await + 2;
        while batches().await < target {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "child made no progress"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "child exited on its own"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * attempt + 11)).await;
        child.kill().unwrap(); // SIGKILL: no destructors, no rollback by the client
        child.wait().unwrap();
        check_stored_ledger(&store).await;
    }
    // The survivor state is usable: a new engine loads it and settles on.
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let (r, _) = engine
        .settle(transfers(1, 500, 1u128 << 100, 77), 0)
        .await
        .unwrap();
    assert!(r.iter().filter(|r| r.is_ok()).count() > 400);
    check_stored_ledger(&store).await;
}

#[tokio::test]
async fn sqlite_killed_mid_commit_leaves_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_commit_leaves_whole_batches(&format!(
        "sqlite://{}",
        dir.path().join("crash.sqlite").display()
    ))
    .await;
}

#[tokio::test]
async fn postgres_killed_mid_commit_leaves_whole_batches() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    killed_mid_commit_leaves_whole_batches(&db.url).await;
    db.cleanup().await;
}

/// Postings carry no per-row foreign keys (migration 7): the batch commit itself must refuse a
/// batch naming an account that does not exist, and write none of it.
async fn a_batch_naming_an_unknown_account_is_refused_whole(url: &str) {
    use meridian_storage::{PostingRow, StorageError};
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let created = store
        .create_ledger_accounts(&accounts()[..3])
        .await
        .unwrap();
    let (mint, a) = (&created[0], &created[1]);
    let missing = created.iter().map(|r| r.id).max().unwrap() + 1_000;
    let posting = |id: &str, debit: i64, credit: i64| PostingRow {
        id: id.into(),
        debit_account_id: debit,
        credit_account_id: credit,
        asset_id: mint.asset_id.clone(),
        amount: 5,
        pending_id: None,
        state: "posted",
        timeout_at: None,
    };
    let changed = |id: i64| meridian_storage::BalanceUpdate {
        id,
        balances: a.balances,
    };
    // The unknown account among the changed ones: the balance update does not find it.
    let r = store
        .commit_settlement_batch(
            2,
            &[posting("p1", mint.id, a.id), posting("p2", a.id, missing)],
            &[changed(mint.id), changed(a.id), changed(missing)],
            &[],
            serde_json::json!({}),
        )
        .await;
    assert!(matches!(r, Err(StorageError::Integrity { .. })), "{r:?}");
    // The unknown account named only by a posting.
    let r = store
        .commit_settlement_batch(
            1,
            &[posting("p3", a.id, missing)],
            &[changed(a.id)],
            &[],
            serde_json::json!({}),
        )
        .await;
    assert!(matches!(r, Err(StorageError::Integrity { .. })), "{r:?}");
    // Nothing of either batch was written, and the accounts kept their balances.
    let db = store.connection();
    assert_eq!(
        settlement_batches::Entity::find().count(db).await.unwrap(),
        0
    );
    assert_eq!(postings::Entity::find().count(db).await.unwrap(), 0);
    let stored = store.ledger_accounts().await.unwrap();
    assert_eq!(stored[1].balances, a.balances);
    // A well-formed batch still commits.
    store
        .commit_settlement_batch(
            1,
            &[posting("p4", mint.id, a.id)],
            &[changed(mint.id), changed(a.id)],
            &[],
            serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(postings::Entity::find().count(db).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_a_batch_naming_an_unknown_account_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("i.sqlite").display());
    a_batch_naming_an_unknown_account_is_refused_whole(&url).await;
}

#[tokio::test]
async fn postgres_a_batch_naming_an_unknown_account_is_refused_whole() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    a_batch_naming_an_unknown_account_is_refused_whole(&db.url).await;
    db.cleanup().await;
}
