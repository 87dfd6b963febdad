//! The node's HTTP surface: GraphQL and GraphiQL, `/healthz`, `/readyz`, `/metrics`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use meridian_graphql::MeridianSchema;
use meridian_storage::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// A request that takes longer than this is answered with 408; protects the node from slow
/// queries piling up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// State of each chain's watcher, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    watchers: Mutex<BTreeMap<String, WatcherState>>,
}

/// What a watcher is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherState {
    /// Running.
    Running,
    /// Stopped by a fatal error that needs an operator.
    Failed(String),
    /// Stopped on shutdown.
    Stopped,
}

impl Health {
    /// Records a watcher's state.
    pub fn set(&self, chain: &str, state: WatcherState) {
        if let Ok(mut w) = self.watchers.lock() {
            w.insert(chain.to_owned(), state);
        }
    }

    fn snapshot(&self) -> BTreeMap<String, WatcherState> {
        self.watchers.lock().map(|w| w.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct AppState {
    store: Store,
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let db = s.store.ping().await;
    let watchers = s.health.snapshot();
    let failed: Vec<_> = watchers
        .iter()
        .filter_map(|(c, st)| match st {
            WatcherState::Failed(e) => Some(json!({ "chain": c, "error": e })),
            _ => None,
        })
        .collect();
    let ready = db.is_ok() && failed.is_empty();
    let body = json!({
        "ready": ready,
        "database": db.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "watchers": watchers.iter().map(|(c, st)| (c.clone(), format!("{st:?}"))).collect::<BTreeMap<_, _>>(),
        "failed": failed,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

/// The full router of the node.
pub fn router(
    schema: MeridianSchema,
    store: Store,
    health: Arc<Health>,
    metrics_handle: PrometheusHandle,
) -> Router {
    let state = AppState {
        store,
        health,
        metrics: metrics_handle,
    };
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    meridian_graphql::router(schema)
        .merge(ops)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
}
