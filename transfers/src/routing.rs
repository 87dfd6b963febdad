//! The node's routing state, built from the configuration at start (a corridor whose rate
//! cannot be used stops the node with an error naming it, before anything is watched), then
//! changed by the relay parameters operators and governance set since (stored; the latest
//! change of each wins over the configuration).

use crate::TransferError;
use meridian_router::{CompliancePolicy, Denylist, RouteLimits, Router, RoutingState, Screening};
use meridian_storage::Store;
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

/// Applies every stored relay parameter to `routing`, in the order they were changed; returns
/// how many applied. One that no longer applies (its corridor was removed from the
/// configuration) is skipped with a warning naming it.
pub async fn apply_stored_parameters(
    store: &Store,
    routing: &RoutingState,
) -> Result<usize, TransferError> {
    let mut applied = 0;
    for p in store.relay_parameters().await? {
        let parameter = p.action.parameter();
        match routing.apply(&p.action) {
            Ok(()) => {
                applied += 1;
                tracing::info!(%parameter, change = %p.action.describe(), actor = %p.actor, changed_at = %p.changed_at, "relay parameter applied");
            }
            Err(e) => {
                tracing::warn!(%parameter, actor = %p.actor, error = %e, "stored relay parameter no longer applies; skipped")
            }
        }
    }
    Ok(applied)
}
