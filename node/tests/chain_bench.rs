//! `meridian bench chain` end to end on a small scale: locks mined on anvil are backfilled,
//! routed and settled by the running node, every one of them, and the figure is reported.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod support;

use meridian_node::bench::chain::{report, run, ChainBenchOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lock_mined_on_anvil_is_settled_by_the_running_node() {
    if support::anvil_or_skip().is_none() {
        return;
    }
    let r = run(&ChainBenchOptions { locks: 40 }).await.unwrap();
    let settled: usize = r
        .states
        .iter()
        .filter(|(s, _)| {
            use meridian_types::TransferState::*;
            matches!(s, Settled | Delivering | Delivered | Finalized)
        })
        .map(|(_, n)| n)
        .sum();
    // Exactly one transfer per lock: none lost, none doubled, none refused or held.
    let all: usize = r.states.iter().map(|(_, n)| n).sum();
    assert_eq!((settled, all), (40, 40), "{:?}", r.states);
    assert!(r.rate() > 0.0);
    let table = report(&r);
    assert!(table.contains("| 40 |"), "{table}");
}
