//! HTTP routes of the API: `POST /graphql` and the GraphiQL page at `/`.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQL;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post_service};
use axum::Router;

use crate::query::MeridianSchema;

async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("Meridian GraphiQL")
            .finish(),
    )
}

/// Routes serving `schema`; the node adds health, metrics and limits around them.
pub fn router(schema: MeridianSchema) -> Router {
    Router::new()
        .route("/", get(graphiql))
        .route("/graphql", post_service(GraphQL::new(schema)).get(graphiql))
}
