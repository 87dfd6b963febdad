//! Meridian's DAO governance: proposals mirrored from chains or created off-chain, EIP-712
//! signed votes, cross-chain tallies, and execution of passed proposals as audited changes of
//! relay parameters (see `../shared/DESIGN.md`, "Governance").
//!
//! The governance schema (`proposals`, `votes`, `tallies`, `audit_log`) exists already; the logic
//! is built under its own issue and this crate holds no code until then.
