//! Crash points for the tests that kill the node in the middle of a payout
//! (`evm-payout-signed`, `evm-payout-recorded`) or of the pipeline (`intake-stored`: a pass's
//! first transfers committed; `settlement-committed`: a ledger batch committed;
//! `transfers-settled`: a batch of transfers settled, ledger and states in one transaction).
//!
//! With `MERIDIAN_FAILPOINT=<name>` in its environment the process aborts — no unwinding, no
//! destructors, no flush: what `kill -9` leaves behind — the first time it reaches the point of
//! that name. Without it a point costs one read of a value set at the first call.

use std::sync::OnceLock;

/// Aborts the process here if `MERIDIAN_FAILPOINT` names `point`.
pub fn crash_point(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("MERIDIAN_FAILPOINT").ok());
    if armed.as_deref() == Some(point) {
        eprintln!("MERIDIAN_FAILPOINT {point}: aborting");
        std::process::abort();
    }
}
