//! Checks each RPC endpoint of a chain while the node runs, not only at start-up (EVM and
//! CometBFT chains; each family probes its endpoints its own way, [`Probe`]):
//! - an endpoint that now reports another chain id (re-pointed at another network) is taken out
//!   of rotation for good, and the log names the chain, the endpoint and both ids;
//! - an endpoint whose head stays put while another endpoint of the chain moves ahead (a frozen
//!   `eth_blockNumber`, a node stuck syncing) is taken out of rotation while it lags, and put
//!   back once it follows.
//!
//! One check every [`CHECK_EVERY_HEADS_MAX`] head reads of the source.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::rpc_pool::RpcPool;

/// What one endpoint said when asked: the chain it serves and its head (each `None` if it did
/// not answer in time).
pub type ProbeAnswer = (Option<String>, Option<u64>);

/// How a chain family asks one endpoint for its chain id and head.
pub trait Probe<C>: Sync {
    /// Asks `client` (within `timeout` per request).
    fn probe(
        &self,
        client: &C,
        timeout: std::time::Duration,
    ) -> impl Future<Output = ProbeAnswer> + Send;
}

/// Head reads between two checks of every endpoint.
pub const CHECK_EVERY_HEADS_MAX: u64 = 10;
/// Blocks an endpoint may lag the best one before its head counts as frozen.
pub const FROZEN_LAG_BLOCKS_MIN: u64 = 3;
/// Checks in a row its head must stay unchanged while lagging.
pub const FROZEN_CHECKS_MIN: u32 = 2;

#[derive(Debug, Clone, Copy, Default)]
struct EndpointState {
    /// Its head at the last check, if it answered.
    head: Option<u64>,
    /// Checks in a row its head did not move.
    unchanged: u32,
    /// Stopped because it serves another chain (never resumed).
    wrong_chain: bool,
    /// Stopped because its head froze (resumed once it follows again).
    frozen: bool,
}

/// The running checks of one chain's endpoints.
pub struct EndpointWatch {
    expected_chain_id: String,
    heads_read: AtomicU64,
    state: Mutex<Vec<EndpointState>>,
}

impl EndpointWatch {
    /// Checks for a chain whose endpoints report `expected_chain_id` (an EVM chain id in
    /// decimal, a CometBFT network name).
    pub fn new(expected_chain_id: impl Into<String>) -> EndpointWatch {
        EndpointWatch {
            expected_chain_id: expected_chain_id.into(),
            heads_read: AtomicU64::new(0),
            state: Mutex::new(Vec::new()),
        }
    }

    /// Counts a head read; every [`CHECK_EVERY_HEADS_MAX`]-th runs [`EndpointWatch::check`].
    pub async fn head_read<C: Clone + Sync, P: Probe<C>>(&self, pool: &RpcPool<C>, probe: &P) {
        if self.heads_read.fetch_add(1, Ordering::Relaxed) % CHECK_EVERY_HEADS_MAX
            == CHECK_EVERY_HEADS_MAX - 1
        {
            self.check(pool, probe).await;
        }
    }

    /// Asks every endpoint for its chain id and head, and stops or resumes endpoints.
    pub async fn check<C: Clone + Sync, P: Probe<C>>(&self, pool: &RpcPool<C>, probe: &P) {
        // All endpoints at once: a hung one delays the head read by one time-out, not by one
        // per endpoint.
        let answers: Vec<ProbeAnswer> =
            futures::future::join_all((0..pool.len()).map(|i| async move {
                match pool.client(i) {
                    Some(client) => probe.probe(client, pool.timeout()).await,
                    None => (None, None),
                }
            }))
            .await;
        self.apply(pool, &answers);
    }

    /// Stops or resumes endpoints from what each said (`answers[i]` for endpoint `i`).
    fn apply<C: Clone>(&self, pool: &RpcPool<C>, answers: &[ProbeAnswer]) {
        let n = answers.len();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.resize(n, EndpointState::default());
        let expected = &self.expected_chain_id;
        for (i, (id, _)) in answers.iter().enumerate() {
            if let Some(id) = id {
                if id != expected && !state[i].wrong_chain {
                    state[i].wrong_chain = true;
                    pool.stop(
                        i,
                        &format!(
                            "reports chain id {id}, expected {expected}: it serves another chain"
                        ),
                    );
                }
            }
        }
        let best = answers
            .iter()
            .zip(state.iter())
            .filter(|(_, s)| !s.wrong_chain)
            .filter_map(|((_, h), _)| *h)
            .max();
        for (i, (_, head)) in answers.iter().enumerate() {
            let s = &mut state[i];
            if s.wrong_chain {
                continue;
            }
            let Some(head) = *head else {
                continue;
            };
            s.unchanged = if s.head == Some(head) {
                s.unchanged.saturating_add(1)
            } else {
                0
            };
            s.head = Some(head);
            let lag = best.unwrap_or(head).saturating_sub(head);
            if !s.frozen && lag >= FROZEN_LAG_BLOCKS_MIN && s.unchanged >= FROZEN_CHECKS_MIN {
                s.frozen = true;
                pool.stop(
                    i,
                    &format!(
                        "head frozen at {head} while another endpoint of the chain is at {}",
                        best.unwrap_or(head)
                    ),
                );
            } else if s.frozen && lag < FROZEN_LAG_BLOCKS_MIN {
                s.frozen = false;
                pool.resume(i, "its head follows the chain again");
            }
        }
    }
}
