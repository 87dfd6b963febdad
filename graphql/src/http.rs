//! HTTP routes of the API: `POST /graphql`, subscriptions over graphql-ws at `/graphql/ws`, and
//! the GraphiQL page at `/`.

use async_graphql::http::GraphiQLSource;
use async_graphql::ErrorExtensionValues;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::operator::PresentedKey;
use crate::query::MeridianSchema;

async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Meridian GraphiQL")
            .finish(),
    )
}

/// The code for an error async-graphql raised itself (parsing, validation, limits), which
/// carries none; resolver errors already have theirs.
fn code_for(message: &str) -> &'static str {
    if message.contains("nested too deep") {
        "DEPTH_LIMIT_EXCEEDED"
    } else if message.contains("too complex") {
        "COMPLEXITY_LIMIT_EXCEEDED"
    } else {
        "BAD_REQUEST"
    }
}

/// The API key a request carries: `x-api-key`, or `Authorization: Bearer <key>`.
fn presented_key(headers: &HeaderMap) -> PresentedKey {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    PresentedKey(
        header("x-api-key")
            .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
            .map(|k| k.trim().to_owned()),
    )
}

async fn execute(
    State(schema): State<MeridianSchema>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let mut response = schema
        .execute(req.into_inner().data(presented_key(&headers)))
        .await;
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
    response.into()
}

/// Routes serving `schema`; the node adds health, metrics and limits around them.
pub fn router(schema: MeridianSchema) -> Router {
    Router::new()
        .route("/", get(graphiql))
        .route("/graphql", get(graphiql).post(execute))
        .route_service("/graphql/ws", GraphQLSubscription::new(schema.clone()))
        .with_state(schema)
}
