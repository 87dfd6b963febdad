//! Meridian's storage: entities, connection handling and the repositories the rest of the node
//! calls.
//!
//! sea-orm stays inside this crate (see `docs/adr/0001-workspace-layout.md`): the relayer,
//! executor, governance and GraphQL call the repository methods on [`Store`] and never build
//! queries themselves, so the schema can change in one place and both SQLite and PostgreSQL are
//! exercised by the same code path — except the settlement engine's two hot statements, which
//! have a PostgreSQL path of their own (`COPY`, array parameters) tested on both backends.

pub mod chain_index;
pub mod entities;
pub mod event_query;
pub mod evm_payout_store;
pub mod governance_store;
pub mod lease_store;
pub mod ledger_store;
mod pg_copy;
pub mod posting_journal;
mod quote_codec;
pub mod reference_data;
pub mod relay_parameter_store;
mod row_insert;
pub mod transfer_store;

mod store;

pub use chain_index::{Checkpoint, IngestBatch, IngestOutcome, RewindOutcome, RETAINED_BLOCKS_MAX};
pub use event_query::{EventCursor, EventFilter, EventOrder, EventPage};
pub use evm_payout_store::{EvmPayout, SignedEvmTx};
pub use governance_store::{NewProposal, NewVote, VoteRecorded};
pub use lease_store::{ClusterNode, HandOver, Lease, LeaseClaim, LeaseRow};
pub use ledger_store::{
    BalanceRow, BalanceUpdate, BatchMoves, CommittedBatch, LedgerAccountRow, LedgerState,
    PendingPosting, SettlementRecord,
};
pub use posting_journal::{JournalEntry, LedgerReplay, PendingRef};
pub use reference_data::ChainStatus;
pub use relay_parameter_store::RelayParameter;
pub use store::{Backend, MigrationState, Stage, Store};
pub use transfer_store::{
    AuditEntry, NewTransfer, PayoutRecord, PendingRemittance, TransferMove, TransferRecord,
    Transition,
};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// The URL names a database Meridian does not support.
    #[error("unsupported database URL `{0}`: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    /// A checkpoint would move backwards outside a recorded reorg: a bug, stop loudly.
    #[error("checkpoint of {chain} would move backwards from {from} to {to} outside a reorg")]
    CheckpointRegression {
        /// The chain.
        chain: String,
        /// Stored height.
        from: u64,
        /// Attempted height.
        to: u64,
    },
    /// A rewind target above the checkpoint would skip blocks: a bug, stop loudly.
    #[error("rewind of {chain} would move the checkpoint forward from {from} to {to}")]
    RewindForward {
        /// The chain.
        chain: String,
        /// Stored height.
        from: u64,
        /// Requested ancestor height.
        to: u64,
    },
    /// An ingest batch carried an event of another chain: a watcher bug.
    #[error("ingest batch for {batch} contains event {event} of another chain")]
    ChainMismatch {
        /// The batch's chain.
        batch: String,
        /// The offending event's uid.
        event: String,
    },
    /// A chain that is not registered was used.
    #[error("chain {0} is not registered")]
    UnknownChain(String),
    /// Stored data does not decode (written by a newer version, or edited by hand).
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A pagination cursor that this node did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A write owned by a lease was refused: the lease is no longer this holder's epoch (another
    /// node took it) or has expired. Nothing of the write was committed; the holder must stop.
    #[error("fenced: lease {lease} epoch {epoch} is no longer held")]
    Fenced {
        /// The lease.
        lease: String,
        /// The epoch the refused write carried.
        epoch: u64,
    },
    /// A write would break referential integrity (a posting naming an account that does not
    /// exist); nothing of it was written.
    #[error("integrity check failed in {table}: {message}")]
    Integrity {
        /// The table.
        table: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Settlements of a batch were stored by an earlier commit (a restart replaying them); the
    /// batch was refused whole. The engine looks their ids up and executes the batch again.
    #[error("{stored} of the batch's {settlements} settlements were stored before; batch refused")]
    SettledBefore {
        /// Settlements of the batch already stored.
        stored: u64,
        /// Settlements in the batch.
        settlements: u64,
    },
}

/// Converts a stored signed height back to the unsigned domain type.
pub(crate) fn height_from_db(table: &'static str, v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt {
        table,
        message: format!("negative height {v}"),
    })
}

/// Heights are u64 on chains but i64 in SQL; chains stay far below 2^63, so saturating is safe.
pub(crate) fn height_to_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
