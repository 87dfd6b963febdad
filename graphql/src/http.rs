//! HTTP routes of the API: `POST /graphql`, subscriptions over graphql-ws at `/graphql/ws`, and
//! the GraphiQL page at `/`.

use async_graphql::ErrorExtensionValues;
use std::sync::Arc;

use async_graphql_axum::{GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Router;

use crate::operator::PresentedKey;
use crate::query::MeridianSchema;

/// The code for an error async-graphql raised itself (parsing, validation, limits), which
/// carries none; resolver errors already have theirs.
fn code_for(message: &str) -> &'static str {
    if message.contains("nested too deep") {
        "DEPTH_LIMIT_EXCEEDED"
    } else if message.contains("too complex") {
        "COMPLEXITY_LIMIT_EXCEEDED"
    } else if message.starts_with(crate::alias_limit::TOO_MANY_ALIASES) {
        "ALIAS_LIMIT_EXCEEDED"
    } else {
        "BAD_REQUEST"
    }
}

/// The API key a request carries: `x-api-key`, or `Authorization: Bearer <key>`.
pub fn presented_key(headers: &HeaderMap) -> PresentedKey {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    PresentedKey(
        header("x-api-key")
            .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
            .map(|k| k.trim().to_owned()),
    )
}

/// The largest request body `POST /graphql` reads (a signed proposal with a long description fits
/// many times over); a larger one is refused with 413 before it is parsed.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Whether a POST's content type is JSON. Anything else — `text/plain`, forms, multipart — is
/// refused before it is parsed: a browser sends those cross-site without a CORS preflight, so a
/// page elsewhere could otherwise make a voter's or operator's browser run a mutation.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

async fn execute(
    State(schema): State<MeridianSchema>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let refuse = |status: StatusCode, code: &str, message: &str| {
        tracing::debug!(code, "GraphQL request refused before parsing");
        (
            status,
            axum::Json(serde_json::json!({
                "errors": [{ "message": message, "extensions": { "code": code } }]
            })),
        )
            .into_response()
    };
    if !is_json(&headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "POST /graphql takes Content-Type: application/json",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_TOO_LARGE",
                &format!("the request is larger than {REQUEST_BYTES_MAX} bytes"),
            )
        }
        Err(e) => return refuse(e.status(), "BAD_REQUEST", &e.body_text()),
    };
    let req: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {e}"),
            )
        }
    };
    let mut response = schema.execute(req.data(presented_key(&headers))).await;
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            let code = code_for(&error.message);
            tracing::debug!(code, message = %error.message, "GraphQL request refused");
            error
                .extensions
                .get_or_insert_with(ErrorExtensionValues::default)
                .set("code", code);
        }
    }
    GraphQLResponse::from(response).into_response()
}

/// `GET /graphql/ws`: a graphql-ws connection while fewer than the limit are open (503
/// `TOO_MANY_CONNECTIONS` otherwise); its subscriptions are counted in its session data.
async fn subscriptions(
    schema: MeridianSchema,
    connections: Arc<tokio::sync::Semaphore>,
    protocol: GraphQLProtocol,
    upgrade: axum::extract::WebSocketUpgrade,
) -> axum::response::Response {
    let Ok(permit) = connections.try_acquire_owned() else {
        tracing::debug!("websocket connection refused: too many open");
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "errors": [{
                    "message": "too many websocket connections are open; try again later",
                    "extensions": { "code": "TOO_MANY_CONNECTIONS" }
                }]
            })),
        )
            .into_response();
    };
    let mut data = async_graphql::Data::default();
    data.insert(crate::ws_limits::ConnectionSubscriptions::default());
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            GraphQLWebSocket::new(socket, schema, protocol)
                .with_data(data)
                .serve()
                .await;
            drop(permit);
        })
}

/// Routes serving `schema`, with at most `ws_connections_max` websocket connections at once,
/// and GraphiQL at `/` (and `GET /graphql`) when `graphiql` is set; the node adds health,
/// metrics and limits around them.
pub fn router(schema: MeridianSchema, graphiql: bool, ws_connections_max: usize) -> Router {
    let connections = Arc::new(tokio::sync::Semaphore::new(ws_connections_max));
    let ws_schema = schema.clone();
    let graphql =
        axum::routing::post(execute).layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX));
    let mut router = Router::new();
    if graphiql {
        router = router.merge(crate::graphiql::routes());
    }
    router
        .route(
            "/graphql",
            if graphiql {
                graphql.get(crate::graphiql::graphiql_page)
            } else {
                graphql
            },
        )
        .route(
            "/graphql/ws",
            axum::routing::get(move |protocol, upgrade| {
                subscriptions(ws_schema.clone(), connections.clone(), protocol, upgrade)
            }),
        )
        .with_state(schema)
}
