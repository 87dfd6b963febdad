//! Schema migrations for Meridian's storage (SQLite for a single node, PostgreSQL for several).
//!
//! The schema is written once, with sea-query's builder API rather than raw SQL, so the same
//! migrations produce a correct schema on both backends. The exceptions are SQLite-only: a table
//! rebuild (migration 7), since SQLite cannot drop a constraint, and a `WITHOUT ROWID` table
//! (migration 19), a clause the builder lacks. Every migration has a `down` that drops
//! exactly what its `up` created, in reverse order, so `Migrator::down`/`refresh` are safe in
//! development and tests; the ledger's (19, 20) refuse when rolling back would lose settled
//! batches' postings or balances.
//!
//! Conventions shared by all tables (the sea-orm entities in `meridian-storage` mirror them):
//! - **Money** (`u128` amounts in an asset's base units) is stored as a TEXT decimal string
//!   (`"0"`, `"1000000"`). SQLite has no 128-bit integer and PostgreSQL's `numeric` would need a
//!   different column type per backend; the storage layer parses the text into `u128` and never
//!   does arithmetic in SQL.
//! - **Timestamps** are `timestamp with time zone` (`DateTimeUtc` in the entities).
//! - **JSON payloads** are `jsonb` on PostgreSQL (JSON text on SQLite).
//! - **Block heights** are `bigint` (`i64`).
//! - Identifiers use CAIP-2 (chains), CAIP-10 (accounts) and CAIP-19 (assets) strings.

use sea_orm_migration::prelude::*;

/// Re-exported so callers can run migrations without depending on sea-orm-migration directly.
pub use sea_orm_migration::{self, MigrationStatus, MigratorTrait};

mod m20261125_000001_chains;
mod m20261125_000002_assets_corridors;
mod m20261125_000003_ledger;
mod m20261125_000004_transfers;
mod m20261125_000005_governance;
mod m20261125_000006_audit_log;
mod m20261126_000007_postings_batch_integrity;
mod m20261126_000008_transfer_quotes;
mod m20261126_000009_delivery_validity;
mod m20261202_000010_evm_delivery_transactions;
mod m20261202_000011_remittance_inbox;
mod m20261202_000012_transition_paths;
mod m20261202_000013_transfers_by_state_and_age;
mod m20261202_000014_relay_parameters;
mod m20261202_000015_batched_payouts;
mod m20261203_000016_unused_transfer_indexes;
mod m20261203_000017_vote_reasons;
mod m20261203_000018_cluster_leases;
mod m20261203_000019_posting_journal;
mod m20261203_000020_ledger_checkpoints;

/// Every table created by the migrations, in creation order.
pub const TABLES: &[&str] = &[
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

/// Applies (or rolls back) Meridian's schema; use `Migrator::up(&db, None)` at start-up.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_chains::Migration),
            Box::new(m20261125_000002_assets_corridors::Migration),
            Box::new(m20261125_000003_ledger::Migration),
            Box::new(m20261125_000004_transfers::Migration),
            Box::new(m20261125_000005_governance::Migration),
            Box::new(m20261125_000006_audit_log::Migration),
            Box::new(m20261126_000007_postings_batch_integrity::Migration),
            Box::new(m20261126_000008_transfer_quotes::Migration),
            Box::new(m20261126_000009_delivery_validity::Migration),
            Box::new(m20261202_000010_evm_delivery_transactions::Migration),
            Box::new(m20261202_000011_remittance_inbox::Migration),
            Box::new(m20261202_000012_transition_paths::Migration),
            Box::new(m20261202_000013_transfers_by_state_and_age::Migration),
            Box::new(m20261202_000014_relay_parameters::Migration),
            Box::new(m20261202_000015_batched_payouts::Migration),
            Box::new(m20261203_000016_unused_transfer_indexes::Migration),
            Box::new(m20261203_000017_vote_reasons::Migration),
            Box::new(m20261203_000018_cluster_leases::Migration),
            Box::new(m20261203_000019_posting_journal::Migration),
            Box::new(m20261203_000020_ledger_checkpoints::Migration),
        ]
    }
}
