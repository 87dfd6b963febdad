//! The node's routing state, built from the configuration at start: a corridor whose rate
//! cannot be used stops the node with an error naming it, before anything is watched.

use crate::TransferError;
use meridian_router::{CompliancePolicy, Denylist, RouteLimits, Router, RoutingState, Screening};
use meridian_types::config::Config;

/// Router and screening over the configured assets, corridors and compliance settings.
pub fn routing_state(config: &Config) -> Result<RoutingState, TransferError> {
    let router = Router::new(&config.assets, &config.corridors, RouteLimits::default())
        .map_err(|e| TransferError::config("corridors", e))?;
    let c = &config.compliance;
    let denylist = match &c.denylist_path {
        Some(path) => Denylist::load(path)
            .map_err(|e| TransferError::config("compliance.denylist_path", e))?,
        None => Denylist::default(),
    };
    Ok(RoutingState::new(
        router,
        Screening {
            denylist,
            governed: Default::default(),
            caps: Default::default(),
            policy: CompliancePolicy {
                account_daily_cap: c.account_daily_cap.map(|a| a.0),
                travel_rule_threshold: c.travel_rule_threshold.map(|a| a.0),
            },
        },
    ))
}
