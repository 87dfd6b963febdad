//! Meridian's settlement engine: a double-entry ledger (after TigerBeetle's model) and an
//! executor that settles ordered batches in parallel with exactly the result of running them one
//! by one in batch order.
//!
//! Everything here is in memory and CPU-bound, with no I/O and no async: the node runs it on a
//! rayon pool and makes the result durable with one database transaction per batch.
//!
//! - [`ledger`]: accounts, balances, flags, the posting rules (shared by both execution paths).
//! - [`sequential`]: the oracle — the definition of a batch's result.
//! - [`parallel`]: the executor: an id pass, rounds of conflict-free settlements on the thread
//!   pool, and a serial tail for conflict chains — exactly the sequential result.
//! - [`id_table`]: the set of accepted posting ids, built for one cache miss per look-up.
//! - [`adaptive`]: one worker or all for each batch, whichever the last batches measured faster.

pub mod adaptive;
pub mod id_table;
pub mod ledger;
pub mod parallel;
pub mod posting;
pub mod sequential;
pub mod workload;

pub use adaptive::{AdaptiveExecutor, WorkerChoice};
pub use ledger::{
    AccountFlags, AccountIx, AccountKind, AccountMeta, AssetCode, Balances, Ledger, LedgerError,
};
pub use parallel::{ExecutionStats, ParallelExecutor, Tuning};
pub use posting::{
    Posting, PostingError, PostingId, Settlement, SettlementError, SettlementResult,
};
pub use sequential::execute_sequential;
