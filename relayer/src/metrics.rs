//! Metric names the relayer reports, named for what an on-call operator watches.
//!
//! Every metric carries a `chain` label (CAIP-2 id).

/// Counter: events committed for the first time.
pub const EVENTS_INGESTED: &str = "meridian_events_ingested_total";
/// Counter: logs stored as undecodable.
pub const EVENTS_UNDECODABLE: &str = "meridian_events_undecodable_total";
/// Counter: events seen again after a restart or retry and skipped.
pub const EVENTS_DUPLICATE: &str = "meridian_events_duplicate_total";
/// Counter: events retracted by reorgs.
pub const EVENTS_RETRACTED: &str = "meridian_events_retracted_total";
/// Gauge: the chain's head height.
pub const HEAD_HEIGHT: &str = "meridian_chain_head_height";
/// Gauge: the last committed height.
pub const CHECKPOINT_HEIGHT: &str = "meridian_chain_checkpoint_height";
/// Gauge: blocks between head and checkpoint.
pub const HEAD_LAG: &str = "meridian_chain_head_lag_blocks";
/// Counter: failed RPC requests, labelled by `endpoint` (host:port only, never the path, which may
/// hold an API key) and `method`.
pub const RPC_ERRORS: &str = "meridian_rpc_errors_total";
/// Counter: switches from one RPC endpoint to the next.
pub const RPC_FAILOVERS: &str = "meridian_rpc_failovers_total";
/// RPC endpoints taken out of rotation (another chain id, a frozen head).
pub const RPC_ENDPOINTS_STOPPED: &str = "meridian_rpc_endpoints_stopped_total";
/// Counter: reorgs detected and rewound.
pub const REORGS: &str = "meridian_reorgs_total";
/// Counter: head subscription (re)connections.
pub const WS_RECONNECTS: &str = "meridian_ws_reconnects_total";
/// Counter: follower steps that failed and were retried.
pub const FOLLOWER_ERRORS: &str = "meridian_follower_errors_total";

/// Registers descriptions so `/metrics` explains each series.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(EVENTS_INGESTED, "Chain events committed for the first time");
    describe_counter!(
        EVENTS_UNDECODABLE,
        "Watched logs that could not be decoded (stored with the reason)"
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        "Events seen again and skipped (replay after restart)"
    );
    describe_counter!(
        EVENTS_RETRACTED,
        "Events retracted because their block was reorganised away"
    );
    describe_gauge!(HEAD_HEIGHT, "Latest head height seen");
    describe_gauge!(CHECKPOINT_HEIGHT, "Last block whose events are committed");
    describe_gauge!(HEAD_LAG, "Blocks between the head and the checkpoint");
    describe_counter!(
        RPC_ERRORS,
        "Failed RPC requests (time-outs, rate limits, garbage)"
    );
    describe_counter!(
        RPC_FAILOVERS,
        "Switches to the next RPC endpoint of a chain"
    );
    describe_counter!(
        RPC_ENDPOINTS_STOPPED,
        "RPC endpoints taken out of rotation (another chain id, a frozen head)"
    );
    describe_counter!(REORGS, "Reorgs detected and rewound");
    describe_counter!(
        WS_RECONNECTS,
        "Head subscription connections (re)established"
    );
    describe_counter!(
        FOLLOWER_ERRORS,
        "Watcher steps that failed and were retried with backoff"
    );
}
