//! The Substrate RPC client on its own thread.
//!
//! substrate-api-client's async traits are declared `?Send`, so its futures cannot cross a
//! `tokio::spawn`. Rather than block the runtime, every chain gets one thread with a
//! current-thread runtime and a `LocalSet` that owns the jsonrpsee connection; the rest of the
//! node talks to it through jobs sent over a channel and answers coming back on oneshots, which
//! are `Send`. The thread also does the endpoint failover: a failed request drops the connection
//! and the next endpoint takes over, the way [`crate::rpc_pool::RpcPool`] does for other families.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use meridian_types::ChainId;
use serde::de::DeserializeOwned;
use substrate_api_client::ac_primitives::RpcParams;
use substrate_api_client::rpc::{JsonrpseeClient, Request};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use url::Url;

use crate::metrics as m;
use crate::rpc_pool::endpoint_label;
use crate::source::SourceError;

/// Full passes over all endpoints before a call gives up.
const ROUNDS_MAX: usize = 3;
/// Wait before the second pass; doubles each pass.
const ROUND_BACKOFF_BASE: Duration = Duration::from_millis(200);

type Job = Box<dyn FnOnce(Rc<Session>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The connection state, owned by the chain's thread.
pub struct Session {
    chain: ChainId,
    urls: Vec<Url>,
    current: Cell<usize>,
    client: RefCell<Option<JsonrpseeClient>>,
    timeout: Duration,
}

impl Session {
    /// The chain.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The connected client, connecting to the current endpoint if needed.
    pub async fn client(&self) -> Result<JsonrpseeClient, String> {
        if let Some(c) = self.client.borrow().as_ref() {
            if c.is_connected() {
                return Ok(c.clone());
            }
        }
        let url = &self.urls[self.current.get() % self.urls.len()];
        let client = tokio::time::timeout(self.timeout, JsonrpseeClient::new(url.as_str()))
            .await
            .map_err(|_| format!("connecting timed out after {} ms", self.timeout.as_millis()))?
            .map_err(|e| format!("cannot connect: {e:?}"))?;
        *self.client.borrow_mut() = Some(client.clone());
        Ok(client)
    }

    /// One JSON-RPC request on the current connection, with the time-out.
    pub async fn request<R: DeserializeOwned>(
        &self,
        method: &str,
        params: RpcParams,
    ) -> Result<R, String> {
        let client = self.client().await?;
        tokio::time::timeout(self.timeout, client.request::<R>(method, params))
            .await
            .map_err(|_| format!("{method} timed out after {} ms", self.timeout.as_millis()))?
            .map_err(|e| format!("{method}: {e:?}"))
    }

    fn label(&self) -> String {
        endpoint_label(&self.urls[self.current.get() % self.urls.len()])
    }

    /// Drops the connection (the next request reconnects to the same endpoint).
    pub fn drop_connection(&self) {
        *self.client.borrow_mut() = None;
    }

    /// Drops the connection and moves to the next endpoint.
    fn fail_over(&self) {
        *self.client.borrow_mut() = None;
        if self.urls.len() > 1 {
            self.current.set((self.current.get() + 1) % self.urls.len());
            metrics::counter!(m::RPC_FAILOVERS, "chain" => self.chain.to_string()).increment(1);
            info!(chain = %self.chain, endpoint = %self.label(), "failed over to RPC endpoint");
        }
    }
}

/// A handle to a chain's RPC thread; cheap to clone, `Send` and `Sync`.
#[derive(Clone)]
pub struct SubstrateRpc {
    chain: ChainId,
    jobs: mpsc::UnboundedSender<Job>,
}

impl SubstrateRpc {
    /// Starts the thread for `chain` over `urls` (tried in order).
    pub fn start(
        chain: ChainId,
        urls: Vec<Url>,
        timeout: Duration,
    ) -> std::io::Result<SubstrateRpc> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_chain = chain.clone();
        std::thread::Builder::new()
            .name(format!("substrate-{}", chain.reference()))
            .spawn(move || {
                // `Rc` is not `Send`: the session is made here, on the thread that owns it.
                let session = Rc::new(Session {
                    chain: thread_chain,
                    urls,
                    current: Cell::new(0),
                    client: RefCell::new(None),
                    timeout,
                });
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some(job) = queue.recv().await {
                        tokio::task::spawn_local(job(session.clone()));
                    }
                });
            })?;
        Ok(SubstrateRpc { chain, jobs })
    }

    /// The chain.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// Runs `f` on the chain's thread in the background (subscriptions).
    pub fn spawn<F, Fut>(&self, f: F)
    where
        F: FnOnce(Rc<Session>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job = Box::new(move |session: Rc<Session>| Box::pin(f(session)));
        if self.jobs.send(job).is_err() {
            warn!(chain = %self.chain, "RPC thread stopped; background task not started");
        }
    }

    /// Runs `f` on the chain's thread once, without retries (for work that must not repeat,
    /// such as submitting an extrinsic).
    pub async fn run_once<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Session>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |session: Rc<Session>| {
            Box::pin(async move {
                let r = f(session).await;
                tx.send(r).ok();
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| self.unavailable(what, "RPC thread stopped".into()))?;
        rx.await
            .map_err(|_| self.unavailable(what, "RPC thread stopped".into()))?
            .map_err(|e| self.unavailable(what, e))
    }

    /// Runs `f` on the chain's thread, failing over between endpoints and backing off until it
    /// succeeds or every endpoint failed [`ROUNDS_MAX`] times.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: Fn(Rc<Session>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, String>> + 'static,
    {
        self.run_once(what, move |session: Rc<Session>| async move {
            let n = session.urls.len().max(1);
            let mut last_error = String::new();
            for attempt in 0..n * ROUNDS_MAX {
                if attempt > 0 && attempt % n == 0 {
                    let round = (attempt / n) as u32;
                    tokio::time::sleep(ROUND_BACKOFF_BASE * 2u32.pow(round - 1)).await;
                }
                match f(session.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let label = session.label();
                        metrics::counter!(
                            m::RPC_ERRORS,
                            "chain" => session.chain.to_string(),
                            "endpoint" => label.clone(),
                            "method" => what
                        )
                        .increment(1);
                        warn!(chain = %session.chain, endpoint = %label, method = what, error = %e, "RPC request failed");
                        last_error = format!("{label}: {e}");
                        session.fail_over();
                    }
                }
            }
            Err(last_error)
        })
        .await
    }

    fn unavailable(&self, what: &'static str, last_error: String) -> SourceError {
        SourceError::Unavailable {
            chain: self.chain.clone(),
            what,
            last_error,
        }
    }
}
