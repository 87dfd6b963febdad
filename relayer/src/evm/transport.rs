//! JSON-RPC over HTTP that honours rate limits: an endpoint that answers 429 (or 503) with a
//! `Retry-After` is not asked again before that time — requests to it fail at once meanwhile, so
//! the [`RpcPool`](crate::rpc_pool::RpcPool) fails over to the next endpoint instead of hammering
//! it. ethers' own `Http` reads only the body and never sees the header.
//!
//! Errors name the endpoint by host:port only: a provider's URL path often carries an API key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ethers::providers::{JsonRpcClient, JsonRpcError, ProviderError, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;

use crate::rpc_pool::endpoint_label;

/// The longest `Retry-After` honoured; a longer one is taken as this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// Why a request to one endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The endpoint asked us to wait; it is not asked again before `until`.
    #[error("{endpoint}: rate limited for {remaining_ms} ms more (Retry-After)")]
    RateLimited {
        /// host:port.
        endpoint: String,
        /// How long it still asked us to wait.
        remaining_ms: u128,
    },
    /// An HTTP status other than success, without a JSON-RPC answer.
    #[error("{endpoint}: HTTP {status}")]
    Status {
        /// host:port.
        endpoint: String,
        /// The status code.
        status: u16,
    },
    /// The request could not be sent or its answer not read.
    #[error("{endpoint}: {message}")]
    Request {
        /// host:port.
        endpoint: String,
        /// What went wrong, without the URL.
        message: String,
    },
    /// The node's JSON-RPC error answer.
    #[error("{0}")]
    JsonRpc(JsonRpcError),
    /// An answer that is not JSON-RPC.
    #[error("{endpoint}: malformed answer: {source}")]
    Malformed {
        /// host:port.
        endpoint: String,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl RpcError for TransportError {
    fn as_error_response(&self) -> Option<&JsonRpcError> {
        match self {
            TransportError::JsonRpc(e) => Some(e),
            _ => None,
        }
    }

    fn as_serde_error(&self) -> Option<&serde_json::Error> {
        match self {
            TransportError::Malformed { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<TransportError> for ProviderError {
    fn from(e: TransportError) -> ProviderError {
        ProviderError::JsonRpcClientError(Box::new(e))
    }
}

/// One HTTP JSON-RPC endpoint.
#[derive(Debug, Clone)]
pub struct PoliteHttp {
    url: Url,
    label: String,
    client: reqwest::Client,
    /// Not before this instant, as the endpoint's last `Retry-After` asked.
    blocked_until: Arc<Mutex<Option<Instant>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

impl PoliteHttp {
    /// A client for `url`.
    pub fn new(url: Url) -> PoliteHttp {
        PoliteHttp {
            label: endpoint_label(&url),
            url,
            client: reqwest::Client::new(),
            blocked_until: Arc::new(Mutex::new(None)),
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn blocked(&self) -> Option<Duration> {
        let guard = self
            .blocked_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn block_for(&self, wait: Duration) {
        *self
            .blocked_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Instant::now() + wait.min(RETRY_AFTER_MAX));
    }
}

/// `Retry-After` as seconds (the HTTP-date form is rare on JSON-RPC endpoints; it is read as one
/// second).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    Some(Duration::from_secs(v.trim().parse().unwrap_or(1)))
}

#[async_trait]
impl JsonRpcClient for PoliteHttp {
    type Error = TransportError;

    async fn request<T, R>(&self, method: &str, params: T) -> Result<R, TransportError>
    where
        T: std::fmt::Debug + Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        if let Some(left) = self.blocked() {
            return Err(TransportError::RateLimited {
                endpoint: self.label.clone(),
                remaining_ms: left.as_millis(),
            });
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request_error = |e: reqwest::Error| TransportError::Request {
            endpoint: self.label.clone(),
            message: e.without_url().to_string(),
        };
        let response = self
            .client
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            if let Some(wait) = retry_after(response.headers()) {
                self.block_for(wait);
                return Err(TransportError::RateLimited {
                    endpoint: self.label.clone(),
                    remaining_ms: wait.min(RETRY_AFTER_MAX).as_millis(),
                });
            }
        }
        let bytes = response.bytes().await.map_err(request_error)?;
        let malformed = |source| TransportError::Malformed {
            endpoint: self.label.clone(),
            source,
        };
        let status_error = || TransportError::Status {
            endpoint: self.label.clone(),
            status: status.as_u16(),
        };
        let mut answer: serde_json::Map<String, serde_json::Value> =
            match serde_json::from_slice(&bytes) {
                Ok(a) => a,
                Err(_) if !status.is_success() => return Err(status_error()),
                Err(e) => return Err(malformed(e)),
            };
        // A JSON-RPC error is the node's answer, whatever the status it came with.
        if let Some(error) = answer.remove("error").filter(|e| !e.is_null()) {
            return serde_json::from_value::<JsonRpcError>(error)
                .map_err(malformed)
                .and_then(|e| Err(TransportError::JsonRpc(e)));
        }
        if !status.is_success() {
            return Err(status_error());
        }
        // `"result": null` is an answer (a receipt not found yet); no `result` at all is not.
        match answer.remove("result") {
            Some(result) => serde_json::from_value(result).map_err(malformed),
            None => Err(malformed(serde::de::Error::missing_field("result"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use ethers::providers::Middleware;

    use super::*;
    use crate::rpc_pool::RpcPool;

    /// A server that answers 429 with `Retry-After: 30` to every request, counting them.
    async fn rate_limited() -> (Url, Arc<AtomicU64>) {
        let hits = Arc::new(AtomicU64::new(0));
        let counted = hits.clone();
        let app = Router::new().route(
            "/key/secret",
            post(move || {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut h = HeaderMap::new();
                    h.insert("retry-after", "30".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, h, "slow down")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        (format!("http://{addr}/key/secret").parse().unwrap(), hits)
    }

    /// A server that answers `eth_blockNumber` with 0x2a.
    async fn healthy() -> Url {
        let app = Router::new().route(
            "/",
            post(|body: String| async move {
                let req: serde_json::Value = serde_json::from_str(&body).unwrap();
                axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": "0x2a"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        format!("http://{addr}/").parse().unwrap()
    }

    /// A server that answers every request with 502 and a JSON body that is not JSON-RPC.
    async fn bad_gateway() -> Url {
        let app = Router::new().route(
            "/",
            post(|| async {
                (
                    StatusCode::BAD_GATEWAY,
                    axum::Json(serde_json::json!({"message": "upstream"})),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        format!("http://{addr}/").parse().unwrap()
    }

    #[tokio::test]
    async fn an_error_status_with_a_json_body_is_an_error_not_an_empty_answer() {
        let client = PoliteHttp::new(bad_gateway().await);
        let receipt = client
            .request::<_, Option<serde_json::Value>>("eth_getTransactionReceipt", ["0x01"])
            .await;
        assert!(
            matches!(receipt, Err(TransportError::Status { status: 502, .. })),
            "{receipt:?}"
        );
        let healthy = PoliteHttp::new(healthy().await);
        let n: String = healthy.request("eth_blockNumber", ()).await.unwrap();
        assert_eq!(n, "0x2a");
    }

    fn pool(urls: &[Url]) -> RpcPool<ethers::providers::Provider<PoliteHttp>> {
        RpcPool::new(
            "eip155:1".parse().unwrap(),
            urls.iter()
                .map(|u| {
                    (
                        u.clone(),
                        ethers::providers::Provider::new(PoliteHttp::new(u.clone())),
                    )
                })
                .collect(),
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn a_rate_limited_endpoint_is_not_asked_again_before_its_retry_after() {
        let (limited, hits) = rate_limited().await;
        let p = pool(std::slice::from_ref(&limited));
        let err = p
            .call(
                "eth_blockNumber",
                |c| async move { c.get_block_number().await },
            )
            .await
            .unwrap_err()
            .to_string();
        // Every round of retries found it still blocked: one request reached it.
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(err.contains("rate limited"), "{err}");
        assert!(
            !err.contains("secret"),
            "the URL path stays out of errors: {err}"
        );
    }

    #[tokio::test]
    async fn a_rate_limited_endpoint_fails_over_to_the_next() {
        let (limited, hits) = rate_limited().await;
        let p = pool(&[limited, healthy().await]);
        for _ in 0..3 {
            let n = p
                .call(
                    "eth_blockNumber",
                    |c| async move { c.get_block_number().await },
                )
                .await
                .unwrap();
            assert_eq!(n.as_u64(), 42);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}
