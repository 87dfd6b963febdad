//! The node's routing state, built from the configuration at start: a corridor whose rate
//! cannot be used stops the node with an error naming it, before anything is watched.

use anyhow::Context;
use meridian_router::{RouteLimits, Router, RoutingState, Screening};
use meridian_types::config::Config;

/// Router and screening over the configured assets and corridors.
pub fn routing_state(config: &Config) -> anyhow::Result<RoutingState> {
    let router = Router::new(&config.assets, &config.corridors, RouteLimits::default())
        .context("corridors")?;
    Ok(RoutingState::new(router, Screening::default()))
}
