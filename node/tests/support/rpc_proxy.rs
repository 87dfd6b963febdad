//! Test support: a fault-injecting JSON-RPC proxy between the node and a real chain node (anvil).
//!
//! Every request is forwarded to the upstream node as it came; the proxy then breaks what the
//! test asks it to break:
//! - [`RpcProxy::drop_answers_of`]: the request reaches the chain (a transaction is accepted and
//!   will be mined) but its answer is cut off halfway, as a proxy time-out or a dropped
//!   connection does;
//! - [`RpcProxy::refuse`]: requests of a method never reach the chain and are answered 502 (the
//!   process died before it could send);
//! - [`RpcProxy::hang`]: nothing is answered at all, ever (a hung endpoint);
//! - [`RpcProxy::answer`]: requests of a method get a fixed result, never from the chain (an
//!   endpoint re-pointed at another network, a frozen head).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ethers::providers::{Http, Provider};
use serde_json::{json, Value};

#[derive(Default)]
struct Faults {
    drop_answers: HashSet<String>,
    refused: HashSet<String>,
    hang: bool,
    answers: HashMap<String, Value>,
    calls: HashMap<String, u64>,
    dropped: u64,
}

#[derive(Clone)]
struct ProxyState {
    upstream: Provider<Http>,
    faults: Arc<Mutex<Faults>>,
}

/// A running proxy in front of one upstream JSON-RPC URL.
pub struct RpcProxy {
    addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RpcProxy {
    /// Starts a proxy forwarding to `upstream` (an `http://` URL).
    pub async fn start(upstream: &str) -> RpcProxy {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let state = ProxyState {
            upstream: Provider::<Http>::try_from(upstream).unwrap(),
            faults: faults.clone(),
        };
        let app = Router::new().route("/", post(forward)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        RpcProxy {
            addr,
            faults,
            server,
        }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Cuts off the answers of `method` (the request still reaches the chain) until
    /// [`RpcProxy::heal`].
    pub fn drop_answers_of(&self, method: &str) {
        self.faults
            .lock()
            .unwrap()
            .drop_answers
            .insert(method.to_owned());
    }

    /// Keeps requests of `method` from the chain (answering 502) until [`RpcProxy::heal`].
    pub fn refuse(&self, method: &str) {
        self.faults
            .lock()
            .unwrap()
            .refused
            .insert(method.to_owned());
    }

    /// Answers nothing at all until [`RpcProxy::heal`].
    pub fn hang(&self) {
        self.faults.lock().unwrap().hang = true;
    }

    /// Answers every request of `method` with `result` until [`RpcProxy::heal`].
    pub fn answer(&self, method: &str, result: Value) {
        self.faults
            .lock()
            .unwrap()
            .answers
            .insert(method.to_owned(), result);
    }

    /// Stops every fault.
    pub fn heal(&self) {
        let mut f = self.faults.lock().unwrap();
        f.answers.clear();
        f.drop_answers.clear();
        f.refused.clear();
        f.hang = false;
    }

    /// Requests of `method` seen so far.
    pub fn calls(&self, method: &str) -> u64 {
        self.faults
            .lock()
            .unwrap()
            .calls
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// Answers cut off so far.
    pub fn dropped(&self) -> u64 {
        self.faults.lock().unwrap().dropped
    }
}

async fn forward(State(s): State<ProxyState>, body: String) -> Response {
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return (StatusCode::BAD_REQUEST, "not JSON").into_response(),
    };
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let (hang, refused, drop_answer, fixed) = {
        let mut f = s.faults.lock().unwrap();
        *f.calls.entry(method.clone()).or_default() += 1;
        (
            f.hang,
            f.refused.contains(&method),
            f.drop_answers.contains(&method),
            f.answers.get(&method).cloned(),
        )
    };
    if let Some(result) = fixed {
        let response = json!({"jsonrpc": "2.0", "id": request["id"].clone(), "result": result});
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            response.to_string(),
        )
            .into_response();
    }
    if hang {
        std::future::pending::<()>().await;
    }
    if refused {
        return (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response();
    }
    let params = request.get("params").cloned().unwrap_or(json!([]));
    let answer = s.upstream.request::<Value, Value>(&method, params).await;
    let mut response = json!({"jsonrpc": "2.0", "id": request["id"].clone()});
    match answer {
        Ok(result) => response["result"] = result,
        Err(e) => match ethers::providers::RpcError::as_error_response(&e) {
            Some(err) => {
                response["error"] =
                    json!({"code": err.code, "message": err.message, "data": err.data})
            }
            None => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        },
    }
    let text = response.to_string();
    if drop_answer {
        s.faults.lock().unwrap().dropped += 1;
        // Half an answer: what a proxy time-out or a cut connection leaves the client with.
        return (StatusCode::OK, text[..text.len() / 2].to_owned()).into_response();
    }
    (StatusCode::OK, [("content-type", "application/json")], text).into_response()
}
