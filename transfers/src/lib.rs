//! The transfer lifecycle: a remittance request becomes a transfer that is screened and quoted
//! (intake), settled as double-entry postings (settler, over the executor), paid out on its
//! destination chain or refunded on its source chain (delivery), and stopped when a reorg takes
//! its deposit away (reorg guard); operators release holds and order refunds (operator). The
//! database is the record of every step; this crate decides the steps. The `meridian` binary only wires these stages to configuration and runs them.
//!
//! Errors are typed ([`TransferError`]); the binary adds the operator's context.

pub mod account_delivery;
pub mod account_signers;
pub mod delivery;
mod error;
pub mod evm_delivery;
pub mod failpoint;
pub mod handoff;
pub mod intake;
pub mod operator;
pub mod payout_rail;
pub mod reorg_guard;
pub mod routing;
pub mod settlement;
pub mod settler;

pub use error::TransferError;
