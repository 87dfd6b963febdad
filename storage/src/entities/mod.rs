//! sea-orm entities, one module per table created by `meridian-migrations`.
//!
//! Conventions: money (`u128` base units) is a decimal `String` (SQLite has no 128-bit
//! integer); timestamps are [`DateTimeUtc`](sea_orm::prelude::DateTimeUtc); JSON payloads are
//! [`Json`](sea_orm::prelude::Json) (`jsonb` on PostgreSQL); heights are `i64`.

/// Listed assets (CAIP-19 ids).
pub mod assets;
/// Audit log of operator actions and executed governance changes.
pub mod audit_log;
/// Recent block hashes per chain, kept for reorg detection.
pub mod chain_blocks;
/// Normalised chain events, unique by event id (`uid`).
pub mod chain_events;
/// A configured chain, with its last seen head and finalized height.
pub mod chains;
/// Ingest checkpoint per chain: the last height whose events are stored.
pub mod checkpoints;
/// Corridors (source asset -> destination asset) with fees and limits.
pub mod corridors;
/// Deliveries of a transfer's result to the destination chain.
pub mod deliveries;
/// Every signed EVM transaction of a delivery (the first and its same-nonce replacements).
pub mod delivery_transactions;
/// Ledger accounts per (asset, owner, kind) with posted and pending balances.
pub mod ledger_accounts;
/// Ledger postings (two-phase: pending, then posted / voided / expired).
pub mod postings;
/// Governance proposals, on-chain or off-chain.
pub mod proposals;
/// The latest change of each relay parameter (pauses, fees, caps, listings, sanctions).
pub mod relay_parameters;
/// Stored remittance requests that have no transfer yet (the intake's inbox).
pub mod remittance_inbox;
/// Settlement batches run by the executor, one DB transaction each.
pub mod settlement_batches;
/// Merged tallies per (proposal, choice) across all origins.
pub mod tallies;
/// Every state transition of a transfer, with reason and actor.
pub mod transfer_transitions;
/// Transfers, one per remittance request; the id is derived from the source event id.
pub mod transfers;
/// Votes, one per (proposal, voter, origin); a later vote replaces the earlier one.
pub mod votes;
