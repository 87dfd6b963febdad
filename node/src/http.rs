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
use meridian_types::config::{ApiKeyConfig, GraphqlConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// A request that takes longer than this is answered with 408; protects the node from slow
/// queries piling up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// State of each chain's watcher and of each background task (intake, settler, delivery,
/// governance), for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    watchers: Mutex<BTreeMap<String, WatcherState>>,
    tasks: Mutex<BTreeMap<String, WatcherState>>,
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

    /// Records a background task's state.
    pub fn set_task(&self, task: &str, state: WatcherState) {
        if let Ok(mut t) = self.tasks.lock() {
            t.insert(task.to_owned(), state);
        }
    }

    /// Every background task's state.
    pub fn tasks(&self) -> BTreeMap<String, WatcherState> {
        self.tasks.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// What makes the node unready: each failed watcher and each failed task, with its error.
    fn failures(&self) -> Vec<serde_json::Value> {
        let watchers = self.snapshot().into_iter().filter_map(|(c, st)| match st {
            WatcherState::Failed(e) => Some(json!({ "chain": c, "error": e })),
            _ => None,
        });
        let tasks = self.tasks().into_iter().filter_map(|(t, st)| match st {
            WatcherState::Failed(e) => Some(json!({ "task": t, "error": e })),
            _ => None,
        });
        watchers.chain(tasks).collect()
    }
}

/// Runs `task` as the background task `name` in `tasks`: `/readyz` lists it as running; if it
/// ends before `shutdown` or panics, it is logged and the node is no longer ready.
pub fn spawn_supervised<F>(
    tasks: &mut tokio::task::JoinSet<()>,
    health: Arc<Health>,
    name: &'static str,
    shutdown: tokio::sync::watch::Receiver<bool>,
    task: F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    health.set_task(name, WatcherState::Running);
    // Caught in place, not spawned apart: dropping `tasks` still stops the task with the node.
    tasks.spawn(async move {
        let state = match caught(task).await {
            Ok(()) if *shutdown.borrow() => WatcherState::Stopped,
            Ok(()) => {
                tracing::error!(
                    task = name,
                    "background task ended before shutdown; the node is not ready"
                );
                WatcherState::Failed("ended before shutdown".into())
            }
            Err(why) => {
                tracing::error!(task = name, error = %why, "background task died; the node is not ready");
                WatcherState::Failed(format!("died: {why}"))
            }
        };
        health.set_task(name, state);
    });
}

/// Runs chain `chain`'s watcher (`run`) and records how it ended: stopped, failed with its
/// error, or died in a panic (caught here, so `/readyz` says so instead of "running").
pub async fn watch_chain<F, E>(health: Arc<Health>, chain: &str, run: F)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    health.set(chain, WatcherState::Running);
    let state = match caught(run).await {
        Ok(Ok(())) => WatcherState::Stopped,
        Ok(Err(e)) => WatcherState::Failed(e.to_string()),
        Err(why) => {
            tracing::error!(chain, error = %why, "chain watcher died; the node is not ready");
            WatcherState::Failed(format!("died: {why}"))
        }
    };
    health.set(chain, state);
}

/// `task`'s output, or the message of the panic it died in.
async fn caught<F: std::future::Future>(task: F) -> Result<F::Output, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(task)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_owned())
        })
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
    let tasks = s.health.tasks();
    let failed = s.health.failures();
    let ready = db.is_ok() && failed.is_empty();
    let body = json!({
        "ready": ready,
        "database": db.as_ref().map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
        "watchers": watchers.iter().map(|(c, st)| (c.clone(), format!("{st:?}"))).collect::<BTreeMap<_, _>>(),
        "tasks": tasks.iter().map(|(t, st)| (t.clone(), format!("{st:?}"))).collect::<BTreeMap<_, _>>(),
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

/// The full router of the node: the API (GraphQL, GraphiQL when `graphql.graphiql`) behind the
/// rate limit and CORS policy of `graphql`, and the operations endpoints (never rate-limited:
/// monitors must always get an answer).
pub fn router(
    schema: MeridianSchema,
    graphql: &GraphqlConfig,
    api_keys: &[ApiKeyConfig],
    store: Store,
    health: Arc<Health>,
    metrics_handle: PrometheusHandle,
) -> anyhow::Result<Router> {
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
    let mut api = crate::api_limits::rate_limited(
        meridian_graphql::router(
            schema,
            graphql.graphiql,
            graphql.ws_connections_max as usize,
        ),
        graphql,
        api_keys,
    )?;
    // Outside the rate limit: a browser's preflight is answered without spending the budget.
    if let Some(cors) = crate::api_limits::cors(graphql) {
        api = api.layer(cors);
    }
    Ok(api
        .merge(ops)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_that_panics_makes_the_node_unready() {
        let health = Arc::new(Health::default());
        watch_chain(health.clone(), "eip155:1", async { decode_with_a_bug() }).await;
        watch_chain(health.clone(), "eip155:2", async {
            Err::<(), String>("rpc gone".into())
        })
        .await;
        watch_chain(health.clone(), "eip155:3", async { Ok::<(), String>(()) }).await;
        let failed = health.failures();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[0]["chain"], "eip155:1");
        assert_eq!(failed[0]["error"], "died: decoder bug");
        assert_eq!(failed[1]["error"], "rpc gone");
        assert_eq!(health.snapshot()["eip155:3"], WatcherState::Stopped);
    }

    /// A watcher step that panics, as a decoder bug would.
    fn decode_with_a_bug() -> Result<(), String> {
        panic!("decoder bug")
    }

    #[tokio::test]
    async fn a_task_that_dies_or_ends_early_makes_the_node_unready() {
        let health = Arc::new(Health::default());
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        spawn_supervised(
            &mut tasks,
            health.clone(),
            "settler",
            shutdown.clone(),
            async { panic!("ledger out of sync") },
        );
        spawn_supervised(
            &mut tasks,
            health.clone(),
            "intake",
            shutdown.clone(),
            async {},
        );
        let (waiting, mut until) = (shutdown.clone(), shutdown.clone());
        spawn_supervised(
            &mut tasks,
            health.clone(),
            "delivery",
            waiting,
            async move {
                let _ = until.wait_for(|s| *s).await;
            },
        );
        // The first two end at once; the third runs until shutdown.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while health.failures().len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("both failures recorded");
        let failed = health.failures();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[1]["error"], "died: ledger out of sync", "{failed:?}");
        assert_eq!(failed[0]["task"], "intake");
        assert_eq!(health.tasks()["delivery"], WatcherState::Running);
        stop.send(true).unwrap();
        while tasks.join_next().await.is_some() {}
        assert_eq!(health.tasks()["delivery"], WatcherState::Stopped);
    }
}
