//! Crash points for the tests that kill the node in the middle of a payout
//! (`evm-payout-signed`, `evm-payout-recorded`) or of the pipeline (`intake-stored`: a pass's
//! first transfers committed; `settlement-executed`: a ledger batch executed in memory, not yet
//! committed; `settlement-committed`: a ledger batch committed; `transfers-settled`: a batch of
//! transfers settled, ledger and states in one transaction).
//!
//! With `MERIDIAN_FAILPOINT=<name>` in its environment the process aborts — no unwinding, no
//! destructors, no flush: what `kill -9` leaves behind — the first time it reaches the point of
//! that name. Without it a point costs one read of a value set at the first call.
//!
//! With `MERIDIAN_FAILPOINT_FILE=<path>` a running process can be armed later (the several-node
//! fault run arms whichever node holds a lease by then): once `<path>` holds a point's name, the
//! task reaching that point creates `<path>.reached` and stops there until the process is
//! killed, so the test kills it in the middle of that work. The file is read at each point
//! reached (a point is reached once per batch or pass, not per transfer).

use std::sync::OnceLock;
use std::time::Duration;

/// Aborts the process here if `MERIDIAN_FAILPOINT` names `point`; stops here for good if the
/// file `MERIDIAN_FAILPOINT_FILE` names it.
pub fn crash_point(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("MERIDIAN_FAILPOINT").ok());
    if armed.as_deref() == Some(point) {
        eprintln!("MERIDIAN_FAILPOINT {point}: aborting");
        std::process::abort();
    }
    static FILE: OnceLock<Option<String>> = OnceLock::new();
    let Some(file) = FILE.get_or_init(|| std::env::var("MERIDIAN_FAILPOINT_FILE").ok()) else {
        return;
    };
    if std::fs::read_to_string(file).is_ok_and(|armed| armed.trim() == point) {
        eprintln!("MERIDIAN_FAILPOINT_FILE {point}: stopped here until killed");
        if let Err(e) = std::fs::write(format!("{file}.reached"), point) {
            eprintln!("MERIDIAN_FAILPOINT_FILE {point}: cannot mark it reached: {e}");
        }
        // Blocks this worker thread on purpose: the rest of the node (its lease renewals among
        // it) carries on, as it would while a real batch is in flight when the kill comes.
        loop {
            std::thread::sleep(Duration::from_secs(3_600));
        }
    }
}
