//! A pool of JSON-RPC endpoints for one chain: time-outs, retries with backoff, and failover to
//! the next endpoint when one errors, rate-limits or returns garbage. Generic over the client so
//! every chain family (ethers providers, tendermint-rpc clients, …) fails over the same way.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use meridian_types::ChainId;
use rand::Rng;
use tracing::{info, warn};
use url::Url;

use crate::metrics as m;
use crate::source::SourceError;

/// Full passes over all endpoints before a call gives up (the follower then backs off further).
const ROUNDS_MAX: usize = 3;
/// Wait before the second pass; doubles each pass.
const ROUND_BACKOFF_BASE: Duration = Duration::from_millis(200);

struct Endpoint<C> {
    /// host:port only — the URL path may carry an API key and must not reach logs or metrics.
    label: String,
    client: C,
    /// Taken out of rotation (it serves another chain, or its head froze).
    stopped: AtomicBool,
}

/// Endpoints of one chain, used in order, sticking to the last one that worked.
pub struct RpcPool<C> {
    chain: ChainId,
    endpoints: Vec<Endpoint<C>>,
    current: AtomicUsize,
    timeout: Duration,
}

/// The loggable part of an RPC URL.
pub fn endpoint_label(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => "unknown".into(),
    }
}

impl<C: Clone> RpcPool<C> {
    /// A pool over `clients` (URL and the client made for it) with a per-request `timeout`.
    pub fn new(chain: ChainId, clients: Vec<(Url, C)>, timeout: Duration) -> RpcPool<C> {
        let endpoints = clients
            .into_iter()
            .map(|(u, client)| Endpoint {
                label: endpoint_label(&u),
                client,
                stopped: AtomicBool::new(false),
            })
            .collect();
        RpcPool {
            chain,
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
        }
    }

    /// The chain this pool serves.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The time-out of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether the pool has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The client of endpoint `i`, for start-up checks that must ask each endpoint.
    pub fn client(&self, i: usize) -> Option<&C> {
        self.endpoints.get(i).map(|e| &e.client)
    }

    /// The loggable name of endpoint `i` (host:port).
    pub fn label(&self, i: usize) -> &str {
        self.endpoints
            .get(i)
            .map_or("unknown", |e| e.label.as_str())
    }

    /// Takes endpoint `i` out of rotation (calls skip it) until [`RpcPool::resume`]; logs
    /// `why` once, naming the chain and the endpoint. Returns whether it was in rotation.
    pub fn stop(&self, i: usize, why: &str) -> bool {
        let Some(ep) = self.endpoints.get(i) else {
            return false;
        };
        let was_running = !ep.stopped.swap(true, Ordering::Relaxed);
        if was_running {
            metrics::counter!(m::RPC_ENDPOINTS_STOPPED, "chain" => self.chain.to_string(), "endpoint" => ep.label.clone())
                .increment(1);
            tracing::error!(chain = %self.chain, endpoint = %ep.label, reason = why, "RPC endpoint taken out of rotation");
        }
        was_running
    }

    /// Puts endpoint `i` back in rotation; returns whether it had been stopped.
    pub fn resume(&self, i: usize, why: &str) -> bool {
        let Some(ep) = self.endpoints.get(i) else {
            return false;
        };
        let was_stopped = ep.stopped.swap(false, Ordering::Relaxed);
        if was_stopped {
            info!(chain = %self.chain, endpoint = %ep.label, reason = why, "RPC endpoint back in rotation");
        }
        was_stopped
    }

    /// Whether endpoint `i` is out of rotation.
    pub fn is_stopped(&self, i: usize) -> bool {
        self.endpoints
            .get(i)
            .is_some_and(|e| e.stopped.load(Ordering::Relaxed))
    }

    /// Runs `f` against the current endpoint, failing over and backing off until it succeeds or
    /// every endpoint failed [`ROUNDS_MAX`] times.
    pub async fn call<T, E, F, Fut>(&self, method: &'static str, f: F) -> Result<T, SourceError>
    where
        E: std::fmt::Display,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(SourceError::Unavailable {
                chain: self.chain.clone(),
                what: method,
                last_error: "no RPC endpoint configured".into(),
            });
        }
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last_error = String::new();
        for attempt in 0..n * ROUNDS_MAX {
            if attempt > 0 && attempt % n == 0 {
                let round = (attempt / n) as u32;
                let base = ROUND_BACKOFF_BASE * 2u32.pow(round - 1);
                let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
                tokio::time::sleep(base + Duration::from_millis(jitter)).await;
            }
            let idx = (start + attempt) % n;
            let ep = &self.endpoints[idx];
            if ep.stopped.load(Ordering::Relaxed) {
                if last_error.is_empty() {
                    last_error = "every RPC endpoint is out of rotation".into();
                }
                continue;
            }
            let result = tokio::time::timeout(self.timeout, f(ep.client.clone())).await;
            let err = match result {
                Ok(Ok(v)) => {
                    if idx != start && self.current.swap(idx, Ordering::Relaxed) != idx {
                        metrics::counter!(m::RPC_FAILOVERS, "chain" => self.chain.to_string())
                            .increment(1);
                        info!(chain = %self.chain, endpoint = %ep.label, "failed over to RPC endpoint");
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {} ms", self.timeout.as_millis()),
            };
            metrics::counter!(
                m::RPC_ERRORS,
                "chain" => self.chain.to_string(),
                "endpoint" => ep.label.clone(),
                "method" => method
            )
            .increment(1);
            warn!(chain = %self.chain, endpoint = %ep.label, method, error = %err, "RPC request failed");
            last_error = format!("{}: {err}", ep.label);
        }
        Err(SourceError::Unavailable {
            chain: self.chain.clone(),
            what: method,
            last_error,
        })
    }
}
