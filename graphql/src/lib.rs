//! Meridian's GraphQL API: the read model of chains and events for operators, remittance desks
//! and DAO front ends, served by async-graphql on axum.
//!
//! Limits (depth, complexity, page size) are part of the schema from the start, so a hostile or
//! careless query is refused with a coded error before it touches the database.

mod alias_limit;
mod cluster;
mod errors;
mod governance;
mod graphiql;
mod http;
mod json_value;
mod operator;
mod query;
mod routing;
mod subscription;
mod transfers;
mod types;
mod ws_limits;

pub use errors::ErrorCode;
pub use governance::Proposal;
pub use graphiql::GRAPHIQL_VERSION;
pub use http::{presented_key, router, REQUEST_BYTES_MAX};
pub use operator::{MutationRoot, PresentedKey};
pub use query::{
    build_schema, MeridianSchema, Mutation, Query, QueryRoot, SchemaLimits, Subscription,
};
pub use subscription::SubscriptionRoot;
