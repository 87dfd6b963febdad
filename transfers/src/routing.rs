//! The node's routing state, built from the configuration at start (a corridor whose rate
//! cannot be used stops the node with an error naming it, before anything is watched), then
//! changed by the relay parameters operators and governance set since (stored; the latest
//! change of each wins over the configuration).

use crate::TransferError;
use meridian_router::compliance::ReferenceRates;
use meridian_router::{
    CompliancePolicy, Denylist, Rate, RouteLimits, Router, RoutingState, Screening,
};
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
    // Every asset's value in the reference unit (validated with the configuration).
    let mut reference = ReferenceRates::new(c.reference_decimals);
    for (i, a) in config.assets.iter().enumerate() {
        if let Some(max_age_secs) = a.reference_rate_max_age_secs {
            reference.expect_fed(&a.id, max_age_secs);
            tracing::info!(asset = %a.id, max_age_secs, "asset's reference rate is fed: while it is unfed or stale, transfers the limits apply to are held");
        } else if let Some(rate) = &a.reference_rate {
            let rate = Rate::from_decimal(rate, a.decimals, c.reference_decimals)
                .map_err(|e| TransferError::config(format!("assets[{i}].reference_rate"), e))?;
            reference.set(&a.id, rate);
        }
    }
    Ok(RoutingState::new(
        router,
        Screening {
            denylist,
            governed: Default::default(),
            caps: Default::default(),
            policy: CompliancePolicy {
                account_daily_cap: c.account_daily_cap.map(|a| a.0),
                travel_rule_threshold: c.travel_rule_threshold.map(|a| a.0),
                reference,
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
    let mut follower = ParameterFollower::new(store.clone());
    follower.apply_new(routing).await
}

/// Keeps a node's routing state in step with the relay parameters stored by any node: with
/// several nodes on one database, a pause, fee, cap, listing or sanction changed through one
/// node applies on every node at its next poll.
#[derive(Debug)]
pub struct ParameterFollower {
    store: Store,
    /// The highest revision applied so far (changes commit in revision order).
    seen: i64,
}

impl ParameterFollower {
    /// A follower that has applied nothing yet.
    pub fn new(store: Store) -> ParameterFollower {
        ParameterFollower {
            store,
            seen: i64::MIN,
        }
    }

    /// Applies the changes stored since the last call, in the order they were made; returns how
    /// many applied.
    pub async fn apply_new(&mut self, routing: &RoutingState) -> Result<usize, TransferError> {
        let mut applied = 0;
        for p in self.store.relay_parameters_since(self.seen).await? {
            self.seen = self.seen.max(p.revision);
            let parameter = p.action.parameter();
            match routing.apply(
                &p.action,
                u64::try_from(p.changed_at.timestamp()).unwrap_or(0),
            ) {
                Ok(()) => {
                    applied += 1;
                    tracing::info!(%parameter, change = %p.action.describe(), actor = %p.actor, changed_at = %p.changed_at, revision = p.revision, "relay parameter applied");
                }
                Err(e) => {
                    tracing::warn!(%parameter, actor = %p.actor, error = %e, "stored relay parameter no longer applies; skipped")
                }
            }
        }
        Ok(applied)
    }

    /// Applies new changes every `interval` until `shutdown`; a failed poll is logged and retried.
    pub async fn run(
        mut self,
        routing: std::sync::Arc<RoutingState>,
        interval: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.apply_new(&routing).await {
                tracing::warn!(error = %e, "reading relay parameters failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
