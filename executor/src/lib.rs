//! Meridian's settlement executor: runs batches of double-entry settlements on the ledger, in
//! parallel where settlements touch disjoint accounts, with exactly the result of running them
//! one by one in batch order (see `../shared/DESIGN.md`, "Parallel executor").
//!
//! The ledger schema (`ledger_accounts`, `postings`, `settlement_batches`) exists already; the
//! executor itself is built under its own issue and this crate holds no code until then.
