//! The durable settlement path: parallel execution + one transaction per batch, on SQLite and
//! PostgreSQL; restart from the database; and a process killed mid-commit leaves whole batches.

#[path = "support/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use meridian_executor::{Posting, PostingError, Settlement};
use meridian_node::bench::{funded_account_rows, uniform_transfers};
use meridian_storage::entities::settlement_batches;
use meridian_storage::posting_journal::JournalEntry;
use meridian_storage::{LedgerAccountRow, SettlementRecord, Store};
use meridian_transfers::settlement::SettlementEngine;
use sea_orm::{EntityTrait, PaginatorTrait};

const USERS: u32 = 500;
const BALANCE: u128 = 1_000_000;

fn accounts() -> Vec<LedgerAccountRow> {
    funded_account_rows(USERS, BALANCE)
}

/// Uniform transfers between this ledger's users (executor indexes from `first_user`).
fn transfers(first_user: u32, len: usize, first_id: u128, seed: u64) -> Vec<Settlement> {
    uniform_transfers(first_user, USERS, len, first_id, seed)
}

/// Checks the stored ledger: debits equal credits, every account is its opening balances plus
/// the replay of the batches' journals (a half-written batch would differ), and each batch's
/// journal holds as many postings as it accepted. Returns (batches, postings).
async fn check_stored_ledger(store: &Store) -> (u64, u64) {
    let stored = store.ledger_accounts().await.unwrap();
    let debits: u128 = stored.iter().map(|a| a.balances[0]).sum();
    let credits: u128 = stored.iter().map(|a| a.balances[1]).sum();
    assert_eq!(debits, credits, "stored ledger does not balance");
    let replay = store.replay_ledger().await.unwrap();
    let opening = accounts();
    for a in &stored {
        let open = opening
            .iter()
            .find(|o| o.owner == a.owner)
            .map_or([0; 4], |o| o.balances);
        let moved = replay.balances(a.id).unwrap();
        let expected: Vec<u128> = (0..4).map(|k| open[k] + moved[k]).collect();
        assert_eq!(
            a.balances.to_vec(),
            expected,
            "account {} differs from its opening balances plus the journals' replay",
            a.id
        );
    }
    let batches = settlement_batches::Entity::find()
        .all(store.connection())
        .await
        .unwrap();
    for b in &batches {
        let n = store.batch_journal(b.id).await.unwrap().len() as u64;
        let accepted = b.summary.as_ref().unwrap()["accepted"].as_u64().unwrap();
        assert_eq!(
            n, accepted,
            "batch {} has {n} postings but accepted {accepted}",
            b.id
        );
    }
    (batches.len() as u64, replay.postings())
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
    use meridian_storage::StorageError;
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let created = store
        .create_ledger_accounts(&accounts()[..3])
        .await
        .unwrap();
    let (mint, a) = (&created[0], &created[1]);
    let missing = created.iter().map(|r| r.id).max().unwrap() + 1_000;
    let posting = |id: u128, debit: i64, credit: i64| JournalEntry::Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: 5,
        timeout_s: None,
    };
    fn record<'a>(
        entries: &'a [JournalEntry],
        changed: &'a [meridian_storage::BalanceUpdate],
    ) -> SettlementRecord<'a> {
        SettlementRecord {
            size: entries.len(),
            settlements: &[],
            entries,
            checkpoint: Some(changed),
        }
    }
    let changed = |id: i64| meridian_storage::BalanceUpdate {
        id,
        balances: a.balances,
    };
    // The unknown account among the changed ones: the balance update does not find it.
    let r = store
        .commit_settlement_batch(
            record(
                &[posting(1, mint.id, a.id), posting(2, a.id, missing)],
                &[changed(mint.id), changed(a.id), changed(missing)],
            ),
            serde_json::json!({}),
        )
        .await;
    assert!(matches!(r, Err(StorageError::Integrity { .. })), "{r:?}");
    // The unknown account named only by a posting.
    let r = store
        .commit_settlement_batch(
            record(&[posting(3, a.id, missing)], &[changed(a.id)]),
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
    assert_eq!(store.replay_ledger().await.unwrap().postings(), 0);
    let stored = store.ledger_accounts().await.unwrap();
    assert_eq!(stored[1].balances, a.balances);
    // A well-formed batch still commits.
    store
        .commit_settlement_batch(
            record(
                &[posting(4, mint.id, a.id)],
                &[changed(mint.id), changed(a.id)],
            ),
            serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(store.replay_ledger().await.unwrap().postings(), 1);
    // A batch with a settlement stored before is refused whole, and says how many.
    let settled = |ids: &'static [u128], entries: &'static [JournalEntry]| SettlementRecord {
        size: ids.len(),
        settlements: ids,
        entries,
        checkpoint: None,
    };
    store
        .commit_settlement_batch(settled(&[42], &[]), serde_json::json!({}))
        .await
        .unwrap();
    let batches = settlement_batches::Entity::find().count(db).await.unwrap();
    let r = store
        .commit_settlement_batch(settled(&[43, 42], &[]), serde_json::json!({}))
        .await;
    assert!(
        matches!(
            r,
            Err(StorageError::SettledBefore {
                stored: 1,
                settlements: 2
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        settlement_batches::Entity::find().count(db).await.unwrap(),
        batches
    );
    assert_eq!(
        store.existing_posting_ids(&[42, 43]).await.unwrap(),
        vec![42]
    );
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

/// A ledger written before migration 19 (postings as rows) keeps its history: migration 19 gives
/// the engine its posting ids and open pending postings, the replay reads the rows beside the
/// journals, and a pending posting from then is posted through a journal now.
async fn postings_stored_as_rows_stay_the_ledgers_history(url: &str) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let rows = store
        .create_ledger_accounts(&accounts()[..3])
        .await
        .unwrap();
    let (mint, a, b) = (rows[0].id, rows[1].id, rows[2].id);
    // Back to the schema before migration 19 (and 20).
    store.migrate_down(Some(2)).await.unwrap();
    // As the engine wrote them before: p1 posted (mint → a, 100); p2 pending (a → b, 30), still
    // open; p3 pending (a → b, 20), posted by p4; p6 pending (a → b, 7), expired.
    let id = |n: u128| format!("{n:032x}");
    let db = store.connection();
    let backend = db.get_database_backend();
    let values_sql = match backend {
        DbBackend::Postgres => "($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)",
        _ => "(?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
    };
    let timeout = chrono::DateTime::from_timestamp(4_000_000_000, 0).unwrap();
    // (id, debit, credit, amount, the pending posting it resolves, state, is pending)
    type LegacyRow = (u128, i64, i64, u128, Option<u128>, &'static str, bool);
    let legacy: [LegacyRow; 5] = [
        (1, mint, a, 100, None, "posted", false),
        (2, a, b, 30, None, "pending", true),
        (3, a, b, 20, None, "posted", true),
        (4, a, b, 20, Some(3), "posted", false),
        (6, a, b, 7, None, "expired", true),
    ];
    for (n, debit, credit, amount, pending, state, pending_kind) in legacy {
        db.execute(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO postings (id, batch_id, debit_account_id, credit_account_id, \
                 asset_id, amount, pending_id, flags, state, timeout_at, created_at) \
                 VALUES {values_sql}"
            ),
            [
                id(n).into(),
                Option::<i64>::None.into(),
                debit.into(),
                credit.into(),
                rows[0].asset_id.clone().into(),
                amount.to_string().into(),
                pending.map(id).into(),
                state.into(),
                pending_kind.then_some(timeout).into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await
        .unwrap();
    }
    // The balances those postings left (opening balances plus their effect).
    let set = |account: i64, v: [u128; 4]| {
        let sql = match backend {
            DbBackend::Postgres => "UPDATE ledger_accounts SET debits_posted = $1, credits_posted = $2, debits_pending = $3, credits_pending = $4 WHERE id = $5",
            _ => "UPDATE ledger_accounts SET debits_posted = ?, credits_posted = ?, debits_pending = ?, credits_pending = ? WHERE id = ?",
        };
        let values: Vec<sea_orm::Value> = v
            .iter()
            .map(|x| x.to_string().into())
            .chain([account.into()])
            .collect();
        Statement::from_sql_and_values(backend, sql, values)
    };
    let opening = |k: usize| rows[k].balances;
    let plus = |k: usize, d: [u128; 4]| {
        let o = opening(k);
        [o[0] + d[0], o[1] + d[1], o[2] + d[2], o[3] + d[3]]
    };
    for st in [
        set(mint, plus(0, [100, 0, 0, 0])),
        set(a, plus(1, [20, 100, 30, 0])),
        set(b, plus(2, [0, 20, 0, 30])),
    ] {
        db.execute(st).await.unwrap();
    }
    store.migrate_up().await.unwrap();

    let mut known = store
        .existing_posting_ids(&[1, 2, 3, 4, 5, 6])
        .await
        .unwrap();
    known.sort_unstable();
    assert_eq!(known, vec![1, 2, 3, 4, 6]);
    let open = store.open_pending_postings().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (
            open[0].id,
            open[0].debit_account_id,
            open[0].amount,
            open[0].timeout_s
        ),
        (2, a, 30, 4_000_000_000)
    );
    let replay = store.replay_ledger().await.unwrap();
    assert_eq!(replay.balances(mint).unwrap(), [100, 0, 0, 0]);
    assert_eq!(replay.balances(a).unwrap(), [20, 100, 30, 0]);
    assert_eq!(replay.balances(b).unwrap(), [0, 20, 0, 30]);
    assert_eq!(replay.postings(), 5);

    // The engine restores p2 and posts it through a journal; p1 is refused as stored already.
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let (r, _) = engine
        .settle(
            vec![
                Settlement::single(Posting::PostPending {
                    id: 5,
                    pending_id: 2,
                }),
                Settlement::single(Posting::Transfer {
                    id: 1,
                    debit: 0,
                    credit: 1,
                    asset: 0,
                    amount: 100,
                    timeout: None,
                }),
            ],
            0,
        )
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(r[1].unwrap_err().error, PostingError::IdExists);
    assert!(store.open_pending_postings().await.unwrap().is_empty());
    let replay = store.replay_ledger().await.unwrap();
    assert_eq!(replay.balances(a).unwrap(), [50, 100, 0, 0]);
    assert_eq!(replay.balances(b).unwrap(), [0, 50, 0, 0]);
    // And the stored balances are the opening ones plus the whole history's replay.
    let stored = store.ledger_accounts().await.unwrap();
    for (opened, now) in rows.iter().zip(&stored) {
        let moved = replay.balances(now.id).unwrap();
        let expected: Vec<u128> = (0..4).map(|k| opened.balances[k] + moved[k]).collect();
        assert_eq!(now.balances.to_vec(), expected, "account {}", now.id);
    }
}

#[tokio::test]
async fn sqlite_postings_stored_as_rows_stay_the_ledgers_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("h.sqlite").display());
    postings_stored_as_rows_stay_the_ledgers_history(&url).await;
}

#[tokio::test]
async fn postgres_postings_stored_as_rows_stay_the_ledgers_history() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    postings_stored_as_rows_stay_the_ledgers_history(&db.url).await;
    db.cleanup().await;
}

/// Balances are checkpointed every CHECKPOINT_BATCHES_MAX batches. An engine restarted between
/// two checkpoints learns which accounts the batches since the last one changed: the next
/// checkpoint writes them too. (If it forgot them, their rows would keep older balances under a
/// checkpoint naming a later batch, and the ledger would differ from its journals' replay.)
async fn checkpoints_carry_accounts_changed_before_a_restart(url: &str) {
    use meridian_transfers::settlement::CHECKPOINT_BATCHES_MAX;
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let ixs = engine.open_accounts(&accounts()).await.unwrap();
    let user = |k: u32| ixs[1] + k;
    let transfer = |id: u128, from: u32, to: u32| {
        Settlement::single(Posting::Transfer {
            id,
            debit: user(from),
            credit: user(to),
            asset: 0,
            amount: 10,
            timeout: None,
        })
    };
    // Users 0 and 1 change in the first batch only.
    let (r, _) = engine.settle(vec![transfer(1, 0, 1)], 0).await.unwrap();
    assert!(r[0].is_ok());
    let state = store.ledger_state().await.unwrap();
    assert_eq!(state.batches_since_checkpoint, 1);
    assert_eq!(state.changed_since_checkpoint.len(), 2);
    // The balances now include the batch, though no row was written for it.
    check_stored_ledger(&store).await;

    drop(engine);
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    assert_eq!(engine.balances(user(0)).unwrap().debits_posted, 10);
    for k in 1..CHECKPOINT_BATCHES_MAX {
        let (r, _) = engine
            .settle(vec![transfer(100 + u128::from(k), 2, 3)], 0)
            .await
            .unwrap();
        assert!(r[0].is_ok());
    }
    let state = store.ledger_state().await.unwrap();
    assert_eq!(
        (
            state.batches_since_checkpoint,
            state.changed_since_checkpoint.len()
        ),
        (0, 0),
        "the sixteenth batch is a checkpoint"
    );
    // The rows alone (nothing after the checkpoint to add) equal the opening balances plus
    // every journal.
    check_stored_ledger(&store).await;
    assert_eq!(state.accounts[1].balances[0], 10, "user 0's debits");

    // A planned checkpoint writes the changes since and leaves nothing to replay.
    engine.settle(vec![transfer(500, 4, 5)], 0).await.unwrap();
    assert!(engine.checkpoint().await.unwrap());
    assert!(!engine.checkpoint().await.unwrap(), "nothing changed since");
    let state = store.ledger_state().await.unwrap();
    assert_eq!(state.batches_since_checkpoint, 0);
    check_stored_ledger(&store).await;

    // Rolling the schema back would lose what only the journals and checkpoints hold: refused
    // while a batch is newer than the last checkpoint, and (migration 19) while journals exist.
    engine.settle(vec![transfer(600, 6, 7)], 0).await.unwrap();
    let refused = store.migrate_down(Some(1)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(engine.checkpoint().await.unwrap());
    store.migrate_down(Some(1)).await.unwrap();
    let refused = store.migrate_down(Some(1)).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn sqlite_checkpoints_carry_accounts_changed_before_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.sqlite").display());
    checkpoints_carry_accounts_changed_before_a_restart(&url).await;
}

#[tokio::test]
async fn postgres_checkpoints_carry_accounts_changed_before_a_restart() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    checkpoints_carry_accounts_changed_before_a_restart(&db.url).await;
    db.cleanup().await;
}

/// A settlement stored by an earlier run is refused as stored (`IdExists`) even when, run
/// again, it would fail for another reason too (here: its payer has spent everything).
async fn a_stored_settlement_replayed_is_refused_as_stored(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let ixs = engine.open_accounts(&accounts()).await.unwrap();
    let everything = Settlement::single(Posting::Transfer {
        id: 77,
        debit: ixs[1],
        credit: ixs[2],
        asset: 0,
        amount: BALANCE,
        timeout: None,
    });
    let (r, _) = engine.settle(vec![everything.clone()], 0).await.unwrap();
    assert!(r[0].is_ok());
    drop(engine);
    let mut engine = SettlementEngine::load(store.clone(), 2).await.unwrap();
    let (r, _) = engine.settle(vec![everything], 0).await.unwrap();
    assert_eq!(r[0].unwrap_err().error, PostingError::IdExists);
    check_stored_ledger(&store).await;
}

#[tokio::test]
async fn sqlite_a_stored_settlement_replayed_is_refused_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.sqlite").display());
    a_stored_settlement_replayed_is_refused_as_stored(&url).await;
}

#[tokio::test]
async fn postgres_a_stored_settlement_replayed_is_refused_as_stored() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    a_stored_settlement_replayed_is_refused_as_stored(&db.url).await;
    db.cleanup().await;
}
