//! Limits in front of the API: a request rate per client (tower_governor's GCRA) and the CORS
//! policy, both from `[graphql]` in the config.
//!
//! A client is the API key it presents when that key is one of the configured keys (operators
//! behind one proxy keep separate budgets), else its peer IP address. An unknown key counts as
//! no key: random keys cannot make the limiter keep state for each of them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use meridian_types::config::{ApiKeyConfig, GraphqlConfig};
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How often the limiter forgets clients whose budget is full again (bounded memory).
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// Who a request's budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// A configured API key, by its holder's name (never the key).
    ApiKey(String),
    /// Anyone else, by peer address.
    Peer(IpAddr),
    /// A request with neither (served in-process, without a connection): one shared budget.
    Unknown,
}

/// Finds the [`Client`] of a request.
#[derive(Debug, Clone)]
pub struct ClientKeyExtractor {
    /// Holder name by key.
    holders: Arc<HashMap<String, String>>,
}

impl ClientKeyExtractor {
    fn new(keys: &[ApiKeyConfig]) -> ClientKeyExtractor {
        ClientKeyExtractor {
            holders: Arc::new(
                keys.iter()
                    .map(|k| (k.key.clone(), k.name.clone()))
                    .collect(),
            ),
        }
    }
}

impl KeyExtractor for ClientKeyExtractor {
    type Key = Client;

    fn extract<T>(&self, req: &Request<T>) -> Result<Client, GovernorError> {
        let presented = meridian_graphql::presented_key(req.headers()).0;
        if let Some(name) = presented.and_then(|k| self.holders.get(&k)) {
            return Ok(Client::ApiKey(name.clone()));
        }
        Ok(req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(Client::Unknown, |ConnectInfo(addr)| Client::Peer(addr.ip())))
    }
}

/// `router` behind the rate limit of `config`. Also starts a task that keeps the limiter's
/// memory bounded (it ends when the router is dropped).
pub fn rate_limited(
    router: axum::Router,
    config: &GraphqlConfig,
    keys: &[ApiKeyConfig],
) -> anyhow::Result<axum::Router> {
    let per_second = u64::from(config.rate_limit_per_second.max(1));
    let governor: Arc<GovernorConfig<_, _>> = Arc::new(
        GovernorConfigBuilder::default()
            .key_extractor(ClientKeyExtractor::new(keys))
            .period(Duration::from_nanos(1_000_000_000 / per_second))
            .burst_size(config.rate_limit_burst.max(1))
            .finish()
            .ok_or_else(|| {
                anyhow::anyhow!("graphql.rate_limit_per_second / rate_limit_burst: not a rate")
            })?,
    );
    let forget = Arc::downgrade(&governor);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FORGET_INTERVAL);
        loop {
            every.tick().await;
            let Some(governor) = forget.upgrade() else {
                return;
            };
            governor.limiter().retain_recent();
        }
    });
    Ok(router.layer(GovernorLayer::new(governor).error_handler(refused)))
}

/// 429 with the seconds to wait, in the API's error shape.
fn refused(error: GovernorError) -> Response<Body> {
    let (status, code, message, wait) = match error {
        GovernorError::TooManyRequests { wait_time, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests: try again in {wait_time} s"),
            Some(wait_time),
        ),
        GovernorError::UnableToExtractKey => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the client of this request is unknown".to_owned(),
            None,
        ),
        GovernorError::Other { code, msg, .. } => (
            code,
            "INTERNAL",
            msg.unwrap_or_else(|| "refused".to_owned()),
            None,
        ),
    };
    tracing::debug!(code, %message, "API request refused by the rate limit");
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(wait) = wait {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    }
    response
}

/// The CORS policy: browsers on `graphql.cors_origins` may call the API; with none configured,
/// no CORS headers are sent and browsers keep other sites' pages from reading answers.
pub fn cors(config: &GraphqlConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    // Validated at start (`graphql.cors_origins`); an origin that does not convert is left out.
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-api-key"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}
