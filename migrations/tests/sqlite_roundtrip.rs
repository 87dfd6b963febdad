//! Applies every migration to an in-memory SQLite database, checks the schema, then rolls it all
//! back and checks that nothing is left behind.

use meridian_migrations::{MigrationStatus, Migrator, MigratorTrait, TABLES};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

const EXPECTED_TABLES: [&str; 24] = [
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

async fn connect() -> DatabaseConnection {
    Database::connect("sqlite::memory:")
        .await
        .expect("connect to in-memory sqlite")
}

async fn names_of(db: &DatabaseConnection, kind: &str) -> Vec<String> {
    let rows = db
        .query_all(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%' ORDER BY name",
            [kind.into()],
        ))
        .await
        .expect("query sqlite_master");
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").expect("name column"))
        .collect()
}

async fn statuses(db: &DatabaseConnection) -> Vec<(String, MigrationStatus)> {
    Migrator::get_migration_with_status(db)
        .await
        .expect("migration status")
        .iter()
        .map(|m| (m.name().to_owned(), m.status()))
        .collect()
}

#[tokio::test]
async fn up_creates_all_tables_and_down_removes_them() {
    let db = connect().await;

    // The exported list matches what this test expects.
    assert_eq!(TABLES, EXPECTED_TABLES.as_slice());

    // Fresh database: everything pending.
    let pending = Migrator::get_pending_migrations(&db)
        .await
        .expect("pending migrations");
    let pending_names: Vec<&str> = pending.iter().map(|m| m.name()).collect();
    assert_eq!(
        pending_names,
        vec![
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
        ]
    );
    assert!(pending
        .iter()
        .all(|m| m.status() == MigrationStatus::Pending));

    Migrator::up(&db, None).await.expect("migrate up");

    let tables = names_of(&db, "table").await;
    for table in EXPECTED_TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "table {table} missing after up; have {tables:?}"
        );
    }
    // Only our tables plus sea-orm's bookkeeping table.
    assert_eq!(tables.len(), EXPECTED_TABLES.len() + 1, "{tables:?}");
    assert!(tables.iter().any(|t| t == "seaql_migrations"));

    let indexes = names_of(&db, "index").await;
    for index in [
        "idx_chain_events_chain_id_block_number",
        "idx_chain_events_kind",
        "ux_ledger_accounts_asset_id_owner_kind",
        "idx_postings_batch_id",
        "idx_transfers_state_created_at",
        "idx_transfer_transitions_transfer_id",
        "idx_deliveries_transfer_id",
        "idx_deliveries_chain_signer_nonce",
        "idx_delivery_transactions_delivery_id",
        "ux_votes_proposal_id_voter_origin",
        "idx_audit_log_subject",
    ] {
        assert!(
            indexes.iter().any(|i| i == index),
            "index {index} missing; have {indexes:?}"
        );
    }

    assert!(Migrator::get_pending_migrations(&db)
        .await
        .expect("pending migrations")
        .is_empty());
    let applied = Migrator::get_applied_migrations(&db)
        .await
        .expect("applied migrations");
    assert_eq!(applied.len(), 20);
    // Migration 16 dropped the transfers indexes nothing reads.
    for unused in ["idx_transfers_state", "idx_transfers_source_chain"] {
        assert!(
            !indexes.iter().any(|i| i == unused),
            "index {unused} still present; have {indexes:?}"
        );
    }
    assert!(statuses(&db)
        .await
        .iter()
        .all(|(_, s)| *s == MigrationStatus::Applied));
    Migrator::status(&db).await.expect("status");

    // Running up again is a no-op.
    Migrator::up(&db, None).await.expect("second migrate up");

    Migrator::down(&db, None).await.expect("migrate down");

    let tables = names_of(&db, "table").await;
    for table in EXPECTED_TABLES {
        assert!(
            !tables.iter().any(|t| t == table),
            "table {table} still present after down; have {tables:?}"
        );
    }
    assert_eq!(tables, vec!["seaql_migrations".to_owned()]);
    assert!(names_of(&db, "index").await.is_empty());
    assert_eq!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("pending migrations")
            .len(),
        20
    );
    assert!(Migrator::get_applied_migrations(&db)
        .await
        .expect("applied migrations")
        .is_empty());
}

#[tokio::test]
async fn migrations_can_be_applied_and_rolled_back_one_step_at_a_time() {
    let db = connect().await;
    let total = Migrator::migrations().len();

    for applied in 1..=total {
        Migrator::up(&db, Some(1)).await.expect("one step up");
        assert_eq!(
            Migrator::get_applied_migrations(&db)
                .await
                .expect("applied")
                .len(),
            applied
        );
    }
    for remaining in (0..total).rev() {
        Migrator::down(&db, Some(1)).await.expect("one step down");
        assert_eq!(
            Migrator::get_applied_migrations(&db)
                .await
                .expect("applied")
                .len(),
            remaining
        );
    }
    assert_eq!(names_of(&db, "table").await, vec!["seaql_migrations"]);

    // And the whole schema comes back after a full round trip.
    Migrator::refresh(&db).await.expect("refresh");
    assert_eq!(
        names_of(&db, "table").await.len(),
        EXPECTED_TABLES.len() + 1
    );
}

#[tokio::test]
async fn foreign_keys_and_defaults_behave() {
    let db = connect().await;
    Migrator::up(&db, None).await.expect("migrate up");

    let exec = |sql: &'static str| {
        let db = &db;
        async move {
            db.execute(Statement::from_string(DbBackend::Sqlite, sql))
                .await
        }
    };

    exec("INSERT INTO chains (id, name, family, updated_at) VALUES ('eip155:31337', 'anvil', 'evm', '2026-01-01T00:00:00Z')")
        .await
        .expect("insert chain");
    exec("INSERT INTO chain_blocks (chain_id, height, hash) VALUES ('eip155:31337', 1, '0x01')")
        .await
        .expect("insert block");
    // Composite primary key.
    assert!(exec(
        "INSERT INTO chain_blocks (chain_id, height, hash) VALUES ('eip155:31337', 1, '0x02')"
    )
    .await
    .is_err());
    // Foreign key to an unknown chain is rejected (sqlx enables foreign_keys by default).
    assert!(exec(
        "INSERT INTO chain_blocks (chain_id, height, hash) VALUES ('eip155:1', 1, '0x01')"
    )
    .await
    .is_err());

    exec("INSERT INTO ledger_accounts (asset_id, owner, kind, created_at) VALUES ('eip155:31337/erc20:0x01', 'fee', 'fee', '2026-01-01T00:00:00Z')")
        .await
        .expect("insert account");
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT id, flags, debits_posted, credits_pending FROM ledger_accounts",
        ))
        .await
        .expect("select account")
        .expect("one account");
    assert_eq!(row.try_get::<i64>("", "id").expect("id"), 1);
    assert_eq!(row.try_get::<i32>("", "flags").expect("flags"), 0);
    assert_eq!(
        row.try_get::<String>("", "debits_posted").expect("debits"),
        "0"
    );
    assert_eq!(
        row.try_get::<String>("", "credits_pending")
            .expect("credits"),
        "0"
    );
    // Unique (asset_id, owner, kind).
    assert!(exec("INSERT INTO ledger_accounts (asset_id, owner, kind, created_at) VALUES ('eip155:31337/erc20:0x01', 'fee', 'fee', '2026-01-01T00:00:00Z')")
        .await
        .is_err());

    // Deleting a chain cascades to its blocks.
    exec("DELETE FROM chains WHERE id = 'eip155:31337'")
        .await
        .expect("delete chain");
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM chain_blocks",
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(row.try_get::<i64>("", "n").expect("n"), 0);

    Migrator::down(&db, None).await.expect("migrate down");
}

#[tokio::test]
async fn postings_lose_their_foreign_keys_and_get_them_back_on_down() {
    let db = connect().await;
    let foreign_keys = |db: &sea_orm_migration::sea_orm::DatabaseConnection| {
        let db = db.clone();
        async move {
            db.query_all(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT \"from\" AS col FROM pragma_foreign_key_list('postings') ORDER BY col",
            ))
            .await
            .expect("foreign keys")
            .iter()
            .map(|r| r.try_get::<String>("", "col").expect("col"))
            .collect::<Vec<_>>()
        }
    };
    // Up to the migration before 7.
    Migrator::up(&db, Some(6)).await.expect("up to 6");
    db.execute(Statement::from_string(
        DbBackend::Sqlite,
        "INSERT INTO settlement_batches (state, size, started_at) VALUES ('committed', 1, '2026-01-01T00:00:00Z')",
    ))
    .await
    .expect("batch");
    db.execute(Statement::from_string(
        DbBackend::Sqlite,
        "INSERT INTO ledger_accounts (asset_id, owner, kind, created_at) VALUES ('a', 'o', 'user', '2026-01-01T00:00:00Z')",
    ))
    .await
    .expect("account");
    let insert_posting = "INSERT INTO postings (id, batch_id, debit_account_id, credit_account_id, asset_id, amount, state, created_at) VALUES ('p1', 1, 1, 1, 'a', '5', 'posted', '2026-01-01T00:00:00Z')";
    db.execute(Statement::from_string(DbBackend::Sqlite, insert_posting))
        .await
        .expect("posting");
    assert_eq!(
        foreign_keys(&db).await,
        ["batch_id", "credit_account_id", "debit_account_id"]
    );

    Migrator::up(&db, Some(1)).await.expect("up to 7");
    assert_eq!(foreign_keys(&db).await, Vec::<String>::new());
    // The rows survived the rebuild.
    let n = db
        .query_one(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM postings",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert_eq!(n, 1);

    Migrator::down(&db, Some(1)).await.expect("down one");
    assert_eq!(
        foreign_keys(&db).await,
        ["batch_id", "credit_account_id", "debit_account_id"]
    );
}

/// Migration 14 carries the changes a node used to restore from the audit log by action name
/// into `relay_parameters`: the latest of each parameter, with its actor and time.
#[tokio::test]
async fn relay_parameters_carry_over_the_audited_changes() {
    let db = connect().await;
    Migrator::up(&db, Some(13))
        .await
        .expect("up to migration 13");
    let audit = [
        ("op:alice", "corridor.pause", "corridor:a-b", "{}"),
        ("op:alice", "corridor.pause", "corridor:c-d", "{}"),
        ("op:bob", "corridor.resume", "corridor:a-b", "{}"),
        (
            "governance",
            "governance.execute",
            "proposal:p1",
            r#"{"proposal":"p1","action":{"kind":"set_corridor_fee","corridor":"a-b","fee_bps":40}}"#,
        ),
        (
            "governance",
            "governance.execute",
            "proposal:p2",
            r#"{"proposal":"p2","action":{"kind":"sanction","address":"0xAB","listed":true}}"#,
        ),
        (
            "op:alice",
            "transfer.release_hold",
            "transfer:t1",
            r#"{"reason":"checked"}"#,
        ),
    ];
    for (i, (actor, action, subject, details)) in audit.iter().enumerate() {
        db.execute(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO audit_log (actor, action, subject, details, at) VALUES (?, ?, ?, ?, ?)",
            [
                (*actor).into(),
                (*action).into(),
                (*subject).into(),
                (*details).into(),
                format!("2026-11-30 10:00:0{i}+00:00").into(),
            ],
        ))
        .await
        .expect("insert audit entry");
    }

    Migrator::up(&db, None).await.expect("migration 14");

    let rows = db
        .query_all(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT parameter, action, actor, changed_at FROM relay_parameters ORDER BY revision",
        ))
        .await
        .expect("read relay_parameters");
    let got: Vec<(String, serde_json::Value, String, String)> = rows
        .iter()
        .map(|r| {
            let action: String = r.try_get("", "action").unwrap();
            (
                r.try_get("", "parameter").unwrap(),
                serde_json::from_str(&action).unwrap(),
                r.try_get("", "actor").unwrap(),
                r.try_get("", "changed_at").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "corridor:c-d:paused".to_owned(),
                serde_json::json!({"kind": "pause_corridor", "corridor": "c-d", "paused": true}),
                "op:alice".to_owned(),
                "2026-11-30 10:00:01+00:00".to_owned(),
            ),
            (
                "corridor:a-b:paused".to_owned(),
                serde_json::json!({"kind": "pause_corridor", "corridor": "a-b", "paused": false}),
                "op:bob".to_owned(),
                "2026-11-30 10:00:02+00:00".to_owned(),
            ),
            (
                "corridor:a-b:fee_bps".to_owned(),
                serde_json::json!({"kind": "set_corridor_fee", "corridor": "a-b", "fee_bps": 40}),
                "governance".to_owned(),
                "2026-11-30 10:00:03+00:00".to_owned(),
            ),
            (
                "sanction:0xab".to_owned(),
                serde_json::json!({"kind": "sanction", "address": "0xAB", "listed": true}),
                "governance".to_owned(),
                "2026-11-30 10:00:04+00:00".to_owned(),
            ),
        ]
    );
}
