//! Storage behaviour the watcher and the API rely on, run once on SQLite and once on PostgreSQL
//! with the same test bodies: migrations, idempotent ingest, checkpoints, reorg rewinds and keyset
//! pagination of events.
//!
//! Expected values are derived from the inputs written here, never read back from the code under
//! test. The PostgreSQL half uses `MERIDIAN_TEST_PG_URL` (see `support/pg.rs`).

#[path = "support/events.rs"]
mod events;
#[path = "support/pg.rs"]
mod pg;

use std::collections::HashSet;

use meridian_storage::entities::{audit_log, chain_events};
use meridian_storage::{
    Checkpoint, EventCursor, EventFilter, EventOrder, IngestOutcome, NewTransfer, RewindOutcome,
    StorageError, Store, TransferMove, Transition,
};
use meridian_types::{ChainFamily, ChainId, EventKind, EventStatus, TransferState};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::json;

use events::*;

/// Migration names in order, as written in `migrations/src`.
const MIGRATIONS: [&str; 20] = [
    "m20261125_000001_chains",
    "m20261125_000002_assets_corridors",
    "m20261125_000003_ledger",
    "m20261125_000004_transfers",
    "m20261125_000005_governance",
    "m20261125_000006_audit_log",
    "m20261126_000007_postings_batch_integrity",
    "m20261126_000008_transfer_quotes",
    "m20261126_000009_delivery_validity",
    "m20261202_000010_evm_delivery_transactions",
    "m20261202_000011_remittance_inbox",
    "m20261202_000012_transition_paths",
    "m20261202_000013_transfers_by_state_and_age",
    "m20261202_000014_relay_parameters",
    "m20261202_000015_batched_payouts",
    "m20261203_000016_unused_transfer_indexes",
    "m20261203_000017_vote_reasons",
    "m20261203_000018_cluster_leases",
    "m20261203_000019_posting_journal",
    "m20261203_000020_ledger_checkpoints",
];

/// Every table the migrations create.
const TABLES: [&str; 24] = [
    "chains",
    "checkpoints",
    "chain_blocks",
    "chain_events",
    "assets",
    "corridors",
    "ledger_accounts",
    "settlement_batches",
    "postings",
    "transfers",
    "transfer_transitions",
    "deliveries",
    "proposals",
    "votes",
    "tallies",
    "audit_log",
    "delivery_transactions",
    "remittance_inbox",
    "relay_parameters",
    "cluster_nodes",
    "leases",
    "posting_ids",
    "pending_postings",
    "ledger_checkpoints",
];

// ---------------------------------------------------------------------------------------------
// Backends

async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meridian.sqlite").display());
    let store = Store::connect(&url).await.unwrap();
    (dir, store)
}

/// Generates `sqlite::<name>` and `postgres::<name>` tests calling the same body on an empty,
/// unmigrated store.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, store) = super::sqlite_store().await;
                    assert_eq!(store.backend(), meridian_storage::Backend::Sqlite);
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::pg::fresh_pg_database().await else { return };
                    let store = meridian_storage::Store::connect(&db.url).await.unwrap();
                    assert_eq!(store.backend(), meridian_storage::Backend::Postgres);
                    super::$name(&store).await;
                    let _ = store.connection().clone().close().await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_round_trip,
    ingest_is_idempotent_and_checkpointed,
    rewind_retracts_and_recommit_restores,
    events_page_paginates_and_filters,
    broken_watcher_input_is_refused_without_writing,
    evm_payouts_are_recorded_with_unique_nonces,
    pending_requests_come_from_the_inbox,
    histories_are_stored_one_row_per_decision,
    batches_store_each_transfer_once_and_move_only_what_is_in_place,
    relay_parameters_keep_the_latest_change_of_each,
    a_fact_audited_once_is_stored_once_however_many_race,
);

// ---------------------------------------------------------------------------------------------
// Helpers

async fn migration_states(store: &Store) -> Vec<(String, bool)> {
    store
        .migration_status()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.applied))
        .collect()
}

fn expected_states(applied: [bool; 20]) -> Vec<(String, bool)> {
    MIGRATIONS
        .iter()
        .zip(applied)
        .map(|(n, a)| (n.to_string(), a))
        .collect()
}

async fn table_exists(store: &Store, table: &str) -> bool {
    store
        .connection()
        .execute_unprepared(&format!("SELECT 1 FROM {table} LIMIT 1"))
        .await
        .is_ok()
}

async fn existing_tables(store: &Store) -> Vec<&'static str> {
    let mut found = Vec::new();
    for t in TABLES {
        if table_exists(store, t).await {
            found.push(t);
        }
    }
    found
}

async fn migrated(store: &Store) {
    store.migrate_up().await.unwrap();
}

async fn event_rows(store: &Store) -> u64 {
    chain_events::Entity::find()
        .count(store.connection())
        .await
        .unwrap()
}

async fn row(store: &Store, uid: &str) -> chain_events::Model {
    chain_events::Entity::find()
        .filter(chain_events::Column::Uid.eq(uid))
        .one(store.connection())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("event {uid} not stored"))
}

async fn status_of(store: &Store, uid: &str) -> String {
    row(store, uid).await.status
}

fn chain_a() -> ChainId {
    "eip155:31337".parse().unwrap()
}

fn chain_b() -> ChainId {
    "eip155:1337".parse().unwrap()
}

const TAG_A: u8 = 0xa;
const TAG_B: u8 = 0xb;

// ---------------------------------------------------------------------------------------------
// Migrations

async fn migrations_round_trip(store: &Store) {
    assert_eq!(migration_states(store).await, expected_states([false; 20]));
    assert_eq!(existing_tables(store).await, Vec::<&str>::new());

    store.migrate_up().await.unwrap();
    assert_eq!(migration_states(store).await, expected_states([true; 20]));
    assert_eq!(existing_tables(store).await, TABLES.to_vec());
    // Up again is a no-op.
    store.migrate_up().await.unwrap();
    assert_eq!(migration_states(store).await, expected_states([true; 20]));

    // Roll back the last sixteen: exactly those become pending and their tables disappear.
    store.migrate_down(Some(16)).await.unwrap();
    assert_eq!(
        migration_states(store).await,
        expected_states([
            true, true, true, true, false, false, false, false, false, false, false, false, false,
            false, false, false, false, false, false, false
        ])
    );
    for t in [
        "proposals",
        "votes",
        "tallies",
        "audit_log",
        "delivery_transactions",
        "remittance_inbox",
        "relay_parameters",
        "cluster_nodes",
        "leases",
        "posting_ids",
        "pending_postings",
        "ledger_checkpoints",
    ] {
        assert!(
            !table_exists(store, t).await,
            "{t} survived rolling back its migration"
        );
    }
    assert!(table_exists(store, "transfers").await);

    store.migrate_down(None).await.unwrap();
    assert_eq!(migration_states(store).await, expected_states([false; 20]));
    assert_eq!(existing_tables(store).await, Vec::<&str>::new());

    store.migrate_up().await.unwrap();
    assert_eq!(migration_states(store).await, expected_states([true; 20]));
    assert_eq!(existing_tables(store).await, TABLES.to_vec());

    // The re-created schema works; fresh wipes the data and re-applies everything.
    store
        .register_chain(&chain_a(), "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    assert_eq!(store.chain_statuses().await.unwrap().len(), 1);
    store.migrate_fresh().await.unwrap();
    assert_eq!(migration_states(store).await, expected_states([true; 20]));
    assert_eq!(existing_tables(store).await, TABLES.to_vec());
    assert_eq!(store.chain_statuses().await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Ingest

async fn ingest_is_idempotent_and_checkpointed(store: &Store) {
    migrated(store).await;
    let a = chain_a();
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    // Registering again (a restart) is fine and renames.
    store
        .register_chain(&a, "devnet-a2", ChainFamily::Evm)
        .await
        .unwrap();
    assert_eq!(store.checkpoint(&a).await.unwrap(), None);

    let events = vec![
        event(&a, TAG_A, 10, 0, minted(&a, u128::MAX)),
        event(&a, TAG_A, 10, 1, transferred(&a, 5)),
        event(&a, TAG_A, 11, 0, remittance(&a, 1, 1_000_000)),
        event(&a, TAG_A, 12, 3, undecodable("unknown topic0")),
        event(&a, TAG_A, 12, 4, released(&a, 42)),
    ];
    let first = batch(&a, TAG_A, 10, 12, events.clone());
    let outcome = store.commit_ingest(&first).await.unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 5,
            duplicates: 0,
            restored: 0
        }
    );
    assert_eq!(event_rows(store).await, 5);
    assert_eq!(
        store.checkpoint(&a).await.unwrap(),
        Some(Checkpoint {
            height: 12,
            block_hash: Some(block_hash(TAG_A, 12))
        })
    );
    assert_eq!(
        store.recent_blocks(&a, 100, 10).await.unwrap(),
        vec![block(TAG_A, 12), block(TAG_A, 11), block(TAG_A, 10)]
    );
    assert_eq!(
        store.recent_blocks(&a, 11, 1).await.unwrap(),
        vec![block(TAG_A, 11)]
    );

    // Stored columns, with the u128::MAX amount kept exactly.
    let max = row(store, &events[0].id.uid()).await;
    assert_eq!(max.chain_id, "eip155:31337");
    assert_eq!(max.block_number, 10);
    assert_eq!(max.block_hash, block_hash(TAG_A, 10));
    assert_eq!(max.tx_hash, tx_hash(TAG_A, 10, 0));
    assert_eq!(max.log_index, 0);
    assert_eq!(max.contract, ESCROW);
    assert_eq!(max.kind, "token_minted");
    assert_eq!(max.status, "decoded");
    assert_eq!(max.error, None);
    assert_eq!(
        max.payload,
        json!({
            "kind": "token_minted",
            "asset": "eip155:31337/erc20:0x000000000000000000000000000000000000070c",
            "to": "eip155:31337:0x0000000000000000000000000000000000000001",
            "amount": "340282366920938463463374607431768211455",
        })
    );
    let bad = row(store, &events[3].id.uid()).await;
    assert_eq!(bad.kind, "undecodable");
    assert_eq!(bad.status, "undecodable");
    assert_eq!(bad.error.as_deref(), Some("unknown topic0"));
    assert_eq!(bad.log_index, 3);
    assert_eq!(bad.payload["topics"], json!([format!("0x{:064x}", 0xdead)]));
    let remit = row(store, &events[2].id.uid()).await;
    assert_eq!(remit.kind, "remittance_requested");
    assert_eq!(remit.payload["amount"], "1000000");
    assert_eq!(remit.payload["deadline"], 1_900_000_000);

    // Replaying the same batch (restart) changes nothing.
    let again = store.commit_ingest(&first).await.unwrap();
    assert_eq!(
        again,
        IngestOutcome {
            inserted: 0,
            duplicates: 5,
            restored: 0
        }
    );
    assert_eq!(event_rows(store).await, 5);
    assert_eq!(row(store, &events[0].id.uid()).await, max);

    // A batch whose checkpoint is below the stored one is refused and writes nothing.
    let regress = batch(&a, TAG_A, 8, 9, vec![event(&a, TAG_A, 9, 0, burned(&a, 1))]);
    match store.commit_ingest(&regress).await {
        Err(StorageError::CheckpointRegression { chain, from, to }) => {
            assert_eq!((chain.as_str(), from, to), ("eip155:31337", 12, 9));
        }
        other => panic!("expected CheckpointRegression, got {other:?}"),
    }
    assert_eq!(event_rows(store).await, 5);
    assert_eq!(store.recent_blocks(&a, 9, 10).await.unwrap(), vec![]);
    assert_eq!(
        store.checkpoint(&a).await.unwrap().map(|c| c.height),
        Some(12)
    );

    // An empty range moves the checkpoint forward; old block hashes beyond the retention window
    // (RETAINED_BLOCKS_MAX = 256 below the checkpoint) are pruned.
    let far = meridian_storage::IngestBatch {
        chain: a.clone(),
        events: vec![],
        blocks: vec![block(TAG_A, 143), block(TAG_A, 144)],
        checkpoint: block(TAG_A, 400),
    };
    assert_eq!(
        store.commit_ingest(&far).await.unwrap(),
        IngestOutcome::default()
    );
    assert_eq!(meridian_storage::RETAINED_BLOCKS_MAX, 256);
    assert_eq!(
        store.recent_blocks(&a, 1_000, 1_000).await.unwrap(),
        vec![block(TAG_A, 400), block(TAG_A, 144)]
    );
    assert_eq!(
        store.checkpoint(&a).await.unwrap(),
        Some(Checkpoint {
            height: 400,
            block_hash: Some(block_hash(TAG_A, 400))
        })
    );

    // The chain overview reflects name, head and checkpoint.
    store
        .record_head(&a, &block(TAG_A, 410), 405)
        .await
        .unwrap();
    let statuses = store.chain_statuses().await.unwrap();
    assert_eq!(statuses.len(), 1);
    let s = &statuses[0];
    assert_eq!(
        (s.id.as_str(), s.name.as_str(), s.family.as_str()),
        ("eip155:31337", "devnet-a2", "evm")
    );
    assert_eq!(s.head_height, Some(410));
    assert_eq!(s.head_hash, Some(block_hash(TAG_A, 410)));
    assert_eq!(s.finalized_height, Some(405));
    assert_eq!(s.checkpoint_height, Some(400));
    assert_eq!(s.checkpoint_hash, Some(block_hash(TAG_A, 400)));
    assert_eq!(s.lag(), Some(10));
}

// ---------------------------------------------------------------------------------------------
// Reorgs

async fn rewind_retracts_and_recommit_restores(store: &Store) {
    migrated(store).await;
    let (a, b) = (chain_a(), chain_b());
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    store
        .register_chain(&b, "devnet-b", ChainFamily::Evm)
        .await
        .unwrap();
    let ev = vec![
        event(&a, TAG_A, 10, 0, minted(&a, 1)),
        event(&a, TAG_A, 10, 1, transferred(&a, 5)),
        event(&a, TAG_A, 11, 0, remittance(&a, 1, 1_000_000)),
        event(&a, TAG_A, 12, 3, undecodable("unknown topic0")),
        event(&a, TAG_A, 12, 4, released(&a, 42)),
    ];
    store
        .commit_ingest(&batch(&a, TAG_A, 10, 12, ev.clone()))
        .await
        .unwrap();
    let on_b = event(&b, TAG_B, 11, 0, minted(&b, 9));
    store
        .commit_ingest(&batch(&b, TAG_B, 11, 11, vec![on_b.clone()]))
        .await
        .unwrap();

    // A chain that never committed anything has nothing to rewind.
    let c: ChainId = "eip155:7".parse().unwrap();
    store
        .register_chain(&c, "devnet-c", ChainFamily::Evm)
        .await
        .unwrap();
    assert!(matches!(
        store.rewind(&c, &block(0xc, 1)).await,
        Err(StorageError::UnknownChain(id)) if id == "eip155:7"
    ));

    let outcome = store.rewind(&a, &block(TAG_A, 10)).await.unwrap();
    assert_eq!(
        outcome,
        RewindOutcome {
            retracted: 3,
            from_height: 12
        }
    );
    let statuses: Vec<String> = {
        let mut v = Vec::new();
        for e in &ev {
            v.push(status_of(store, &e.id.uid()).await);
        }
        v
    };
    assert_eq!(
        statuses,
        ["decoded", "decoded", "retracted", "retracted", "retracted"]
    );
    // Retracted rows are kept for audit, and the other chain is untouched.
    assert_eq!(event_rows(store).await, 6);
    assert_eq!(status_of(store, &on_b.id.uid()).await, "decoded");
    assert_eq!(
        store.recent_blocks(&b, 100, 10).await.unwrap(),
        vec![block(TAG_B, 11)]
    );

    assert_eq!(
        store.recent_blocks(&a, 100, 10).await.unwrap(),
        vec![block(TAG_A, 10)]
    );
    assert_eq!(
        store.checkpoint(&a).await.unwrap(),
        Some(Checkpoint {
            height: 10,
            block_hash: Some(block_hash(TAG_A, 10))
        })
    );
    let audit = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Id)
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].actor.as_str(),
            audit[0].action.as_str(),
            audit[0].subject.as_str()
        ),
        ("relayer", "reorg_rewind", "eip155:31337")
    );
    assert_eq!(
        audit[0].details,
        json!({
            "from_height": 12,
            "to_height": 10,
            "ancestor_hash": block_hash(TAG_A, 10),
            "retracted_events": 3,
        })
    );

    // After the rewind the checkpoint is 10, so re-ingesting 11..=12 is not a regression. The
    // same blocks came back: two retracted events are restored (with their original status),
    // one event is new, one (at 10) is a duplicate, and one stays retracted.
    let new_event = event(&a, TAG_A, 12, 5, burned(&a, 3));
    let replay = batch(
        &a,
        TAG_A,
        11,
        12,
        vec![
            ev[0].clone(),
            ev[2].clone(),
            ev[3].clone(),
            new_event.clone(),
        ],
    );
    let outcome = store.commit_ingest(&replay).await.unwrap();
    assert_eq!(
        outcome,
        IngestOutcome {
            inserted: 1,
            duplicates: 1,
            restored: 2
        }
    );
    assert_eq!(event_rows(store).await, 7);
    assert_eq!(status_of(store, &ev[2].id.uid()).await, "decoded");
    assert_eq!(status_of(store, &ev[3].id.uid()).await, "undecodable");
    assert_eq!(status_of(store, &ev[4].id.uid()).await, "retracted");
    assert_eq!(status_of(store, &new_event.id.uid()).await, "decoded");
    assert_eq!(
        store.recent_blocks(&a, 100, 10).await.unwrap(),
        vec![block(TAG_A, 12), block(TAG_A, 11), block(TAG_A, 10)]
    );
    assert_eq!(
        store.checkpoint(&a).await.unwrap().map(|c| c.height),
        Some(12)
    );

    // A second rewind only counts events that were not retracted already.
    let outcome = store.rewind(&a, &block(TAG_A, 11)).await.unwrap();
    assert_eq!(
        outcome,
        RewindOutcome {
            retracted: 2,
            from_height: 12
        }
    );
    assert_eq!(
        audit_log::Entity::find()
            .count(store.connection())
            .await
            .unwrap(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Event listing

/// A seeded event as the test wrote it.
struct Listed {
    uid: String,
    chain: &'static str,
    block: u64,
    kind: EventKind,
    status: EventStatus,
}

/// Seeds two chains; returns the seeded events in the expected block-ascending order (ties by
/// ingestion order).
async fn seed_listing(store: &Store) -> Vec<Listed> {
    let (a, b) = (chain_a(), chain_b());
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    store
        .register_chain(&b, "devnet-b", ChainFamily::Evm)
        .await
        .unwrap();
    let on_a = vec![
        event(&a, TAG_A, 1, 0, minted(&a, 100)),
        event(&a, TAG_A, 2, 0, transferred(&a, 10)),
        event(&a, TAG_A, 2, 1, burned(&a, 5)),
        event(&a, TAG_A, 3, 0, remittance(&a, 1, 50)),
        event(&a, TAG_A, 5, 0, undecodable("bad data")),
        event(&a, TAG_A, 5, 1, refunded(&a, 50)),
    ];
    let on_b = vec![
        event(&b, TAG_B, 2, 0, minted(&b, 7)),
        event(&b, TAG_B, 4, 0, released(&b, 7)),
    ];
    store
        .commit_ingest(&batch(&a, TAG_A, 1, 5, on_a.clone()))
        .await
        .unwrap();
    store
        .commit_ingest(&batch(&b, TAG_B, 1, 4, on_b.clone()))
        .await
        .unwrap();

    // Ingestion order is all of A, then all of B; sort by (block, ingestion order).
    let mut all: Vec<(usize, &'static str, _)> = on_a
        .iter()
        .map(|e| ("eip155:31337", e))
        .chain(on_b.iter().map(|e| ("eip155:1337", e)))
        .enumerate()
        .map(|(seq, (c, e))| (seq, c, e))
        .collect();
    all.sort_by_key(|(seq, _, e)| (e.id.block_number, *seq));
    all.into_iter()
        .map(|(_, chain, e)| Listed {
            uid: e.id.uid(),
            chain,
            block: e.id.block_number,
            kind: e.payload.kind(),
            status: e.status(),
        })
        .collect()
}

/// Follows `events_page` cursors from the start; returns the uids and every page's size.
async fn walk(
    store: &Store,
    filter: &EventFilter,
    order: EventOrder,
    limit: u64,
) -> (Vec<String>, Vec<usize>) {
    let (mut uids, mut sizes) = (Vec::new(), Vec::new());
    let mut after = None;
    for _ in 0..100 {
        let page = store
            .events_page(filter, order, after, limit)
            .await
            .unwrap();
        assert!(page.rows.len() as u64 <= limit);
        sizes.push(page.rows.len());
        uids.extend(page.rows.iter().map(|r| r.uid.clone()));
        // Cursors survive their text form.
        after = page
            .rows
            .last()
            .map(|r| EventCursor::decode(&EventCursor::of(r).encode()).unwrap());
        if !page.has_next_page {
            return (uids, sizes);
        }
    }
    panic!("pagination did not end after 100 pages");
}

async fn events_page_paginates_and_filters(store: &Store) {
    migrated(store).await;
    let expected = seed_listing(store).await;
    assert_eq!(expected.len(), 8);
    let uids = |pred: &dyn Fn(&Listed) -> bool| -> Vec<String> {
        expected
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.uid.clone())
            .collect()
    };
    let all = uids(&|_| true);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 8);

    let everything = EventFilter::default();
    let (asc, sizes) = walk(store, &everything, EventOrder::BlockAsc, 3).await;
    assert_eq!(asc, all);
    assert_eq!(sizes, [3, 3, 2]);
    let (desc, sizes) = walk(store, &everything, EventOrder::BlockDesc, 3).await;
    assert_eq!(desc, all.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(sizes, [3, 3, 2]);
    // A limit that divides the total exactly ends without an empty trailing page.
    let (asc, sizes) = walk(store, &everything, EventOrder::BlockAsc, 4).await;
    assert_eq!((asc, sizes), (all.clone(), vec![4, 4]));
    assert_eq!(store.events_count(&everything).await.unwrap(), 8);

    let cases: Vec<(&str, EventFilter, Vec<String>)> = vec![
        (
            "chain b",
            EventFilter {
                chain_id: Some("eip155:1337".into()),
                ..Default::default()
            },
            uids(&|e| e.chain == "eip155:1337"),
        ),
        (
            "minted",
            EventFilter {
                kinds: vec![EventKind::TokenMinted],
                ..Default::default()
            },
            uids(&|e| e.kind == EventKind::TokenMinted),
        ),
        (
            "minted or undecodable",
            EventFilter {
                kinds: vec![EventKind::TokenMinted, EventKind::Undecodable],
                ..Default::default()
            },
            uids(&|e| matches!(e.kind, EventKind::TokenMinted | EventKind::Undecodable)),
        ),
        (
            "undecodable status",
            EventFilter {
                status: Some(EventStatus::Undecodable),
                ..Default::default()
            },
            uids(&|e| e.status == EventStatus::Undecodable),
        ),
        (
            "decoded status",
            EventFilter {
                status: Some(EventStatus::Decoded),
                ..Default::default()
            },
            uids(&|e| e.status == EventStatus::Decoded),
        ),
        (
            "blocks 2..=3",
            EventFilter {
                block_number_gte: Some(2),
                block_number_lte: Some(3),
                ..Default::default()
            },
            uids(&|e| (2..=3).contains(&e.block)),
        ),
        (
            "chain a, from block 2, transfers and burns",
            EventFilter {
                chain_id: Some("eip155:31337".into()),
                block_number_gte: Some(2),
                kinds: vec![EventKind::TokenTransferred, EventKind::TokenBurned],
                ..Default::default()
            },
            uids(&|e| {
                e.chain == "eip155:31337"
                    && e.block >= 2
                    && matches!(e.kind, EventKind::TokenTransferred | EventKind::TokenBurned)
            }),
        ),
        (
            "contract, upper-case query",
            EventFilter {
                contract: Some(ESCROW.to_ascii_uppercase().replace("0X", "0x")),
                ..Default::default()
            },
            all.clone(),
        ),
        (
            "tx hash",
            EventFilter {
                tx_hash: Some(tx_hash(TAG_A, 2, 1)),
                ..Default::default()
            },
            uids(&|e| {
                e.chain == "eip155:31337" && e.block == 2 && e.kind == EventKind::TokenBurned
            }),
        ),
        (
            "unknown chain",
            EventFilter {
                chain_id: Some("eip155:999".into()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    // Page sizes of a walk with limit 2: full pages, then the remainder (one empty page when
    // nothing matches).
    let sizes_of = |n: usize| -> Vec<usize> {
        match n {
            0 => vec![0],
            n if n % 2 == 0 => vec![2; n / 2],
            n => [vec![2; n / 2], vec![1]].concat(),
        }
    };
    for (name, filter, want) in cases {
        assert!(
            !want.is_empty() || name == "unknown chain",
            "{name}: empty expectation"
        );
        let (got, sizes) = walk(store, &filter, EventOrder::BlockAsc, 2).await;
        assert_eq!(got, want, "{name} (asc)");
        assert_eq!(sizes, sizes_of(want.len()), "{name} (page sizes)");
        let (got, _) = walk(store, &filter, EventOrder::BlockDesc, 2).await;
        assert_eq!(
            got,
            want.iter().rev().cloned().collect::<Vec<_>>(),
            "{name} (desc)"
        );
        assert_eq!(
            store.events_count(&filter).await.unwrap(),
            want.len() as u64,
            "{name} (count)"
        );
    }

    // Starting after a cursor taken from the middle continues right after it.
    let first = store
        .events_page(&everything, EventOrder::BlockAsc, None, 5)
        .await
        .unwrap();
    let cursor = EventCursor::of(&first.rows[4]);
    let rest = store
        .events_page(&everything, EventOrder::BlockAsc, Some(cursor), 100)
        .await
        .unwrap();
    assert_eq!(
        rest.rows.iter().map(|r| r.uid.clone()).collect::<Vec<_>>(),
        all[5..].to_vec()
    );
    assert!(!rest.has_next_page);

    // Garbage cursors are refused.
    for bad in ["", "ev:", "ev:1", "ev:x:1", "xx:1:2", "ev:1:2:3"] {
        assert!(
            matches!(EventCursor::decode(bad), Err(StorageError::InvalidCursor)),
            "{bad:?} accepted"
        );
    }

    // A rewind turns events into `retracted` for the status filter.
    store.rewind(&chain_b(), &block(TAG_B, 3)).await.unwrap();
    let retracted = EventFilter {
        status: Some(EventStatus::Retracted),
        ..Default::default()
    };
    let (got, _) = walk(store, &retracted, EventOrder::BlockAsc, 2).await;
    assert_eq!(got, uids(&|e| e.chain == "eip155:1337" && e.block > 3));
    assert_eq!(store.events_count(&retracted).await.unwrap(), 1);
    let decoded = EventFilter {
        status: Some(EventStatus::Decoded),
        ..Default::default()
    };
    assert_eq!(store.events_count(&decoded).await.unwrap(), 6);
}

// ---------------------------------------------------------------------------------------------
// Guards against watcher bugs

async fn broken_watcher_input_is_refused_without_writing(store: &Store) {
    migrated(store).await;
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();
    store
        .register_chain(&chain_b(), "b", ChainFamily::Evm)
        .await
        .unwrap();

    // An event of chain B inside a batch of chain A is refused whole.
    let mixed = batch(
        &a,
        TAG_A,
        1,
        2,
        vec![
            event(&a, TAG_A, 1, 0, minted(&a, 1)),
            event(&chain_b(), TAG_B, 2, 0, minted(&chain_b(), 2)),
        ],
    );
    let err = store.commit_ingest(&mixed).await.unwrap_err();
    assert!(matches!(err, StorageError::ChainMismatch { .. }), "{err}");
    assert_eq!(event_rows(store).await, 0);
    assert_eq!(store.checkpoint(&a).await.unwrap(), None);

    // A "rewind" above the checkpoint would skip blocks: refused, checkpoint unchanged.
    store
        .commit_ingest(&batch(
            &a,
            TAG_A,
            1,
            5,
            vec![event(&a, TAG_A, 3, 0, minted(&a, 3))],
        ))
        .await
        .unwrap();
    let err = store.rewind(&a, &block(TAG_A, 9)).await.unwrap_err();
    assert!(
        matches!(err, StorageError::RewindForward { from: 5, to: 9, .. }),
        "{err}"
    );
    assert_eq!(store.checkpoint(&a).await.unwrap().unwrap().height, 5);
    assert_eq!(
        status_of(store, &event(&a, TAG_A, 3, 0, minted(&a, 3)).id.uid()).await,
        "decoded"
    );
}

// ---------------------------------------------------------------------------------------------
// EVM payout records

async fn evm_payouts_are_recorded_with_unique_nonces(store: &Store) {
    use chrono::SubsecRound;
    use meridian_storage::SignedEvmTx;
    use meridian_types::TransferState::*;
    migrated(store).await;
    // PostgreSQL keeps microseconds.
    let at = chrono::Utc::now().trunc_subsecs(6);
    let step = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "test".into(),
        at,
    };
    for id in ["tr:a", "tr:b", "tr:c", "tr:d", "tr:e"] {
        let t = NewTransfer {
            id: id.into(),
            source_event_uid: format!("uid-{id}"),
            source_chain: "eip155:1".parse().unwrap(),
            dest_chain: "eip155:2".into(),
            source_asset: "eip155:1/erc20:0x0000000000000000000000000000000000000001"
                .parse()
                .unwrap(),
            dest_asset: "eip155:2/erc20:0x0000000000000000000000000000000000000002".into(),
            sender: "eip155:1:0x0000000000000000000000000000000000000a11"
                .parse()
                .unwrap(),
            recipient: "eip155:2:0x0000000000000000000000000000000000000b0b".into(),
            amount: 5,
            deadline: None,
            quote: None,
        };
        let path = [
            None,
            Some(Requested),
            Some(Screened),
            Some(Quoted),
            Some(Settling),
        ]
        .into_iter()
        .zip([Requested, Screened, Quoted, Settling, Settled])
        .map(|(from, to)| step(from, to))
        .collect::<Vec<_>>();
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    let tx = |n: u8, fee: u128| SignedEvmTx {
        hash: format!("0x{:064x}", n),
        raw: vec![0x02, n, 0xff, 0x00],
        max_fee_per_gas: fee,
        max_priority_fee_per_gas: fee / 10,
        recorded_at: at,
    };
    let deliver = |id: &str| TransferMove {
        id: id.into(),
        from: Settled,
        path: vec![step(Some(Settled), Delivering)],
        batch_id: None,
    };
    let signer = "0x00000000000000000000000000000000000000aa";
    assert!(store
        .start_evm_payout(&deliver("tr:a"), "eip155:2", signer, 7, &tx(1, 1_000))
        .await
        .unwrap());
    // The transfer moved already: nothing is written.
    assert!(!store
        .start_evm_payout(&deliver("tr:a"), "eip155:2", signer, 9, &tx(9, 1_000))
        .await
        .unwrap());
    // A nonce recorded for this signer and chain is never recorded again.
    assert!(store
        .start_evm_payout(&deliver("tr:b"), "eip155:2", signer, 7, &tx(2, 1_000))
        .await
        .is_err());
    assert_eq!(
        store
            .transfer("tr:b")
            .await
            .unwrap()
            .unwrap()
            .transfer
            .state
            .as_str()
            .to_owned(),
        "settled",
        "a refused record moves nothing"
    );
    assert!(store
        .start_evm_payout(&deliver("tr:b"), "eip155:2", signer, 8, &tx(3, 1_000))
        .await
        .unwrap());

    let a = store.evm_payout("tr:a", "eip155:2").await.unwrap().unwrap();
    assert_eq!(a.members, 1);
    assert!(store
        .add_evm_replacement(a.delivery_id, &a.latest().hash, &tx(4, 1_250))
        .await
        .unwrap());
    // Replacing what is no longer the newest transaction writes nothing.
    assert!(!store
        .add_evm_replacement(a.delivery_id, &tx(1, 0).hash, &tx(5, 1_500))
        .await
        .unwrap());
    let a = store.evm_payout("tr:a", "eip155:2").await.unwrap().unwrap();
    assert_eq!(
        (a.nonce, a.signer.as_str(), a.chain.as_str()),
        (7, signer, "eip155:2")
    );
    assert_eq!(
        a.txs,
        vec![tx(1, 1_000), tx(4, 1_250)],
        "oldest first, bytes intact"
    );
    assert_eq!(a.latest().hash, tx(4, 0).hash);
    assert!(store
        .evm_payout("tr:a", "eip155:3")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.delivery_tx("tr:a").await.unwrap().as_deref(),
        Some(tx(4, 0).hash.as_str())
    );
    assert_eq!(
        store
            .evm_payout_nonces_from("eip155:2", signer, 0)
            .await
            .unwrap(),
        [7, 8]
    );
    assert_eq!(
        store
            .evm_payout_nonces_from("eip155:2", signer, 8)
            .await
            .unwrap(),
        [8]
    );
    assert!(store
        .evm_payout_nonces_from("eip155:3", signer, 0)
        .await
        .unwrap()
        .is_empty());

    // A batch: one payout (one nonce, its transactions) for three transfers, all moved with it.
    // One of them gone from `settled` writes nothing at all.
    let batch = [deliver("tr:c"), deliver("tr:d"), deliver("tr:a")];
    assert!(!store
        .start_evm_batch(&batch, "eip155:2", signer, 10, &tx(10, 1_000))
        .await
        .unwrap());
    let batch = [deliver("tr:c"), deliver("tr:d"), deliver("tr:e")];
    assert!(store
        .start_evm_batch(&batch, "eip155:2", signer, 10, &tx(10, 1_000))
        .await
        .unwrap());
    let payouts: Vec<_> = {
        let mut v = Vec::new();
        for id in ["tr:c", "tr:d", "tr:e"] {
            v.push(store.evm_payout(id, "eip155:2").await.unwrap().unwrap());
            let state = store.transfer(id).await.unwrap().unwrap().transfer.state;
            assert_eq!(state, Delivering, "{id}");
        }
        v
    };
    assert!(payouts.iter().all(|p| p == &payouts[0]), "{payouts:?}");
    assert_eq!((payouts[0].nonce, payouts[0].members), (10, 3));
    // One nonce, recorded once.
    assert_eq!(
        store
            .evm_payout_nonces_from("eip155:2", signer, 9)
            .await
            .unwrap(),
        [10]
    );
    // Replaced through any member, the batch's transaction is replaced once for all of them.
    let d = &payouts[1];
    assert!(store
        .add_evm_replacement(d.delivery_id, &d.latest().hash, &tx(11, 1_250))
        .await
        .unwrap());
    assert!(!store
        .add_evm_replacement(d.delivery_id, &d.latest().hash, &tx(12, 1_250))
        .await
        .unwrap());
    for id in ["tr:c", "tr:d", "tr:e"] {
        let p = store.evm_payout(id, "eip155:2").await.unwrap().unwrap();
        assert_eq!(p.txs, vec![tx(10, 1_000), tx(11, 1_250)], "{id}");
        assert_eq!(
            store.delivery_tx(id).await.unwrap().as_deref(),
            Some(tx(11, 0).hash.as_str()),
            "{id}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The intake's inbox

fn transfer_of(uid: &str, at: chrono::DateTime<chrono::Utc>) -> (NewTransfer, Vec<Transition>) {
    (
        NewTransfer {
            id: meridian_types::transfer_id(uid),
            source_event_uid: uid.to_owned(),
            source_chain: chain_a(),
            dest_chain: chain_b().to_string(),
            source_asset: "eip155:31337/erc20:0x00000000000000000000000000000000000000a1"
                .parse()
                .unwrap(),
            dest_asset: "eip155:1337/erc20:0x00000000000000000000000000000000000000b1".into(),
            sender: "eip155:31337:0x0000000000000000000000000000000000000001"
                .parse()
                .unwrap(),
            recipient: "eip155:1337:0x0000000000000000000000000000000000000002".into(),
            amount: 1_000,
            deadline: None,
            quote: None,
        },
        vec![Transition {
            from: None,
            to: TransferState::Requested,
            reason: None,
            actor: "router".into(),
            at,
        }],
    )
}

async fn pending_uids(store: &Store) -> Vec<String> {
    store
        .pending_remittances(100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.uid)
        .collect()
}

/// Pending requests are those stored without a transfer, oldest first; a request leaves the
/// inbox with its transfer, a retracted one waits until its block comes back, and the migration
/// fills the inbox from requests stored before it.
async fn pending_requests_come_from_the_inbox(store: &Store) {
    migrated(store).await;
    let a = chain_a();
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    let early: Vec<_> = (0..3)
        .map(|i| event(&a, TAG_A, 10, i, remittance(&a, u64::from(i), 1_000)))
        .chain([event(&a, TAG_A, 10, 3, minted(&a, 1))])
        .collect();
    store
        .commit_ingest(&batch(&a, TAG_A, 10, 10, early.clone()))
        .await
        .unwrap();
    let late = event(&a, TAG_A, 11, 0, remittance(&a, 9, 1_000));
    store
        .commit_ingest(&batch(&a, TAG_A, 11, 11, vec![late.clone()]))
        .await
        .unwrap();
    let uid = |e: &meridian_types::ChainEvent| e.id.uid();
    assert_eq!(
        pending_uids(store).await,
        vec![uid(&early[0]), uid(&early[1]), uid(&early[2]), uid(&late)]
    );

    // A transfer takes its request out; a second attempt at the same request changes nothing.
    let now = chrono::Utc::now();
    let created = store
        .create_transfers(&[transfer_of(&uid(&early[1]), now)])
        .await
        .unwrap();
    assert_eq!(created, vec![true]);
    assert_eq!(
        store
            .create_transfers(&[transfer_of(&uid(&early[1]), now)])
            .await
            .unwrap(),
        vec![false]
    );
    assert_eq!(
        pending_uids(store).await,
        vec![uid(&early[0]), uid(&early[2]), uid(&late)]
    );

    // Block 11 is reorged out: its request is not pending; when it comes back, it is again.
    store.rewind(&a, &block(TAG_A, 10)).await.unwrap();
    assert_eq!(
        pending_uids(store).await,
        vec![uid(&early[0]), uid(&early[2])]
    );
    store
        .commit_ingest(&batch(&a, TAG_A, 11, 11, vec![late.clone()]))
        .await
        .unwrap();
    assert_eq!(
        pending_uids(store).await,
        vec![uid(&early[0]), uid(&early[2]), uid(&late)]
    );

    // Rebuilt by the migration from what is stored: the same pending set, in event order.
    store.migrate_down(Some(1)).await.unwrap();
    store.migrate_up().await.unwrap();
    assert_eq!(
        pending_uids(store).await,
        vec![uid(&early[0]), uid(&early[2]), uid(&late)]
    );
}

/// A decision's steps without reasons of their own share one history row; the history reads
/// back step by step, exactly as written.
async fn histories_are_stored_one_row_per_decision(store: &Store) {
    use meridian_storage::entities::transfer_transitions;
    use TransferState::*;
    migrated(store).await;
    let a = chain_a();
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    let uid = "inbox-less";
    let at = chrono::Utc::now();
    let later = at + chrono::Duration::seconds(5);
    let step = |from, to, reason: Option<&str>, actor: &str, at| Transition {
        from,
        to,
        reason: reason.map(str::to_owned),
        actor: actor.into(),
        at,
    };
    let (t, _) = transfer_of(uid, at);
    // requested → screened → quoted (reason) → held (reason): two rows.
    let intake = vec![
        step(None, Requested, None, "router", at),
        step(Some(Requested), Screened, None, "router", at),
        step(Some(Screened), Quoted, Some("route a-b"), "router", at),
        step(
            Some(Quoted),
            Held,
            Some("above the hold threshold"),
            "router",
            at,
        ),
    ];
    assert_eq!(
        store
            .create_transfers(&[(t.clone(), intake.clone())])
            .await
            .unwrap(),
        vec![true]
    );
    let rows = || async {
        transfer_transitions::Entity::find()
            .filter(transfer_transitions::Column::TransferId.eq(t.id.as_str()))
            .count(store.connection())
            .await
            .unwrap()
    };
    assert_eq!(rows().await, 2);
    // An operator's release, then the executor's settlement: another actor and time, so a row
    // each; quoted → settling → settled is one.
    let moves = vec![
        step(
            Some(Held),
            Quoted,
            Some("hold released"),
            "operator:ops",
            later,
        ),
        step(Some(Quoted), Settling, None, "executor", later),
        step(
            Some(Settling),
            Settled,
            Some("settlement batch 1"),
            "executor",
            later,
        ),
    ];
    let moved = store
        .advance_transfers(&[TransferMove {
            id: t.id.clone(),
            from: Held,
            path: moves.clone(),
            batch_id: None,
        }])
        .await;
    assert_eq!(moved.unwrap(), 1);
    assert_eq!(rows().await, 4);
    let history = store.transfer(&t.id).await.unwrap().unwrap().history;
    let expected: Vec<Transition> = intake.into_iter().chain(moves).collect();
    // Timestamps come back at the database's precision.
    let strip =
        |h: &[Transition]| -> Vec<(Option<TransferState>, TransferState, Option<String>, String)> {
            h.iter()
                .map(|s| (s.from, s.to, s.reason.clone(), s.actor.clone()))
                .collect()
        };
    assert_eq!(strip(&history), strip(&expected));
}

/// A batch of new transfers stores each once, whatever else it holds (a transfer stored before,
/// the same transfer twice, another id for a source event that has its transfer); a batch of
/// moves moves only the transfers still in the state they were read in, and writes history
/// only for those.
async fn batches_store_each_transfer_once_and_move_only_what_is_in_place(store: &Store) {
    use meridian_storage::entities::transfer_transitions;
    use meridian_storage::TransferMove;
    use TransferState::*;
    migrated(store).await;
    store
        .register_chain(&chain_a(), "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    let at = chrono::Utc::now();
    let (a, b, c) = (
        transfer_of("event-a", at),
        transfer_of("event-b", at),
        transfer_of("event-c", at),
    );
    assert_eq!(
        store
            .create_transfers(&[a.clone(), b.clone()])
            .await
            .unwrap(),
        vec![true, true]
    );
    let mut other_id_for_b = b.clone();
    other_id_for_b.0.id = "tr:another-id".into();
    assert_eq!(
        store
            .create_transfers(&[a.clone(), c.clone(), c.clone(), other_id_for_b])
            .await
            .unwrap(),
        vec![false, true, true, false]
    );
    let mut ids: Vec<String> = store
        .transfers(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.transfer.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![a.0.id.clone(), b.0.id.clone(), c.0.id.clone()]);

    let later = at + chrono::Duration::seconds(1);
    let screen = |id: &str, actor: &str| TransferMove {
        id: id.to_owned(),
        from: Requested,
        path: vec![Transition {
            from: Some(Requested),
            to: Screened,
            reason: None,
            actor: actor.into(),
            at: later,
        }],
        batch_id: None,
    };
    // b moves first; the batch read it as requested, so it leaves b alone.
    assert_eq!(
        store
            .advance_transfers(&[screen(&b.0.id, "first")])
            .await
            .unwrap(),
        1
    );
    let moved = store
        .advance_transfers_which(&[screen(&a.0.id, "batch"), screen(&b.0.id, "batch")])
        .await
        .unwrap();
    assert_eq!(moved, HashSet::from([a.0.id.clone()]));
    let batch_rows = transfer_transitions::Entity::find()
        .filter(transfer_transitions::Column::Actor.eq("batch"))
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(batch_rows, 1);
    let state =
        |id: String| async move { store.transfer(&id).await.unwrap().unwrap().transfer.state };
    assert_eq!(state(a.0.id.clone()).await, Screened);
    assert_eq!(state(b.0.id.clone()).await, Screened);
    assert_eq!(state(c.0.id.clone()).await, Requested);
}

// ---------------------------------------------------------------------------------------------
// Migrations all or nothing

/// On SQLite every pending migration applies in one transaction: one that fails (here the last
/// migration's `leases` table is in the way) leaves the database as it was — as a node killed in
/// the middle of its first start does — and the next start applies them all.
#[tokio::test]
async fn sqlite_migrations_apply_all_or_nothing() {
    let (_dir, store) = sqlite_store().await;
    let db = store.connection();
    db.execute_unprepared("CREATE TABLE leases (x INTEGER)")
        .await
        .unwrap();
    assert!(
        store.migrate_up().await.is_err(),
        "the last migration fails"
    );
    let tables = |db: sea_orm::DatabaseConnection| async move {
        db.query_all(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect::<Vec<String>>()
    };
    assert_eq!(
        tables(db.clone()).await,
        ["leases"],
        "nothing of the earlier migrations stayed"
    );
    db.execute_unprepared("DROP TABLE leases").await.unwrap();
    store.migrate_up().await.unwrap();
    assert!(migration_states(&store)
        .await
        .iter()
        .all(|(_, applied)| *applied));
    assert!(tables(db.clone()).await.contains(&"transfers".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Audit entries written once

/// Several stages (on several nodes) finding the same reorg loss at once write one entry; the
/// others are told it was there.
async fn a_fact_audited_once_is_stored_once_however_many_race(store: &Store) {
    use meridian_storage::AuditEntry;
    migrated(store).await;
    let entry = |subject: &str| AuditEntry {
        actor: "relayer".into(),
        action: "transfer.reorg_loss".into(),
        subject: subject.into(),
        details: json!({ "subject": subject }),
    };
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, e) = (store.clone(), entry("transfer:tr:a"));
            tokio::spawn(async move { store.record_audit_once(&e).await.unwrap() })
        })
        .collect();
    let mut written = 0;
    for r in racers {
        written += usize::from(r.await.unwrap());
    }
    assert_eq!(written, 1, "one racer writes the entry");
    assert!(store
        .record_audit_once(&entry("transfer:tr:b"))
        .await
        .unwrap());
    assert!(!store
        .record_audit_once(&entry("transfer:tr:b"))
        .await
        .unwrap());
    let subjects: Vec<String> = store
        .audit_actions("transfer.reorg_loss")
        .await
        .unwrap()
        .into_iter()
        .map(|details| details["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(subjects, ["transfer:tr:a", "transfer:tr:b"]);
}

// ---------------------------------------------------------------------------------------------
// Relay parameters

async fn relay_parameters_keep_the_latest_change_of_each(store: &Store) {
    use meridian_storage::AuditEntry;
    use meridian_types::RelayAction;
    migrated(store).await;
    let audit = |actor: &str, subject: &str| AuditEntry {
        actor: actor.into(),
        action: "test.change".into(),
        subject: subject.into(),
        details: json!({}),
    };
    let pause = |paused| RelayAction::PauseCorridor {
        corridor: "a-b".into(),
        paused,
    };
    let fee = RelayAction::SetCorridorFee {
        corridor: "a-b".into(),
        fee_bps: 25,
    };
    let at = chrono::Utc::now();
    store
        .change_relay_parameters(
            &[
                (pause(true), audit("op:alice", "corridor:a-b")),
                (fee.clone(), audit("governance", "proposal:p1")),
            ],
            at,
        )
        .await
        .unwrap();
    store
        .change_relay_parameters(&[(pause(false), audit("op:bob", "corridor:a-b"))], at)
        .await
        .unwrap();
    // One row per parameter, the latest change of each, in the order they were made.
    let got: Vec<(RelayAction, String)> = store
        .relay_parameters()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.action, p.actor))
        .collect();
    assert_eq!(
        got,
        vec![
            (fee, "governance".to_owned()),
            (pause(false), "op:bob".to_owned())
        ]
    );
    // Every change has its audit entry.
    assert_eq!(store.audit_actions("test.change").await.unwrap().len(), 3);

    // A stored change that does not parse stops the read, naming the parameter.
    store
        .connection()
        .execute_unprepared(
            "UPDATE relay_parameters SET action = '{\"kind\":\"mint_money\"}' \
             WHERE parameter = 'corridor:a-b:fee_bps'",
        )
        .await
        .unwrap();
    let err = store.relay_parameters().await.unwrap_err().to_string();
    assert!(err.contains("corridor:a-b:fee_bps"), "{err}");
}
