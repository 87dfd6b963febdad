//! Operator mutations: release a held transfer, pause or resume a corridor, feed a corridor's
//! rate or an asset's reference rate. Each needs an API key from `[[api_keys]]` (header
//! `x-api-key`, or `Authorization: Bearer …`) and is written to the audit log with the key's
//! name.

use std::sync::Arc;

use async_graphql::{Context, Object};
use chrono::Utc;
use meridian_router::{ParameterError, RoutingState};
use meridian_storage::{AuditEntry, Store};
use meridian_transfers::operator::{OperatorActions, OperatorRefusal};
use meridian_types::config::ApiKeyConfig;
use meridian_types::RelayAction;
use serde_json::json;

use crate::errors::{storage_error, ErrorCode};
use crate::routing::{parse_asset, route_error, unix_now, Asset, Corridor};
use crate::transfers::Transfer;

/// The key a request presented, if any (set by the HTTP layer from its headers). `Debug` never
/// shows it.
#[derive(Clone, Default)]
pub struct PresentedKey(pub Option<String>);

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.0.as_ref().map(|_| "***");
        f.debug_tuple("PresentedKey").field(&shown).finish()
    }
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(pub Vec<ApiKeyConfig>);

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The operator behind the request, or `UNAUTHORIZED`.
fn operator(ctx: &Context<'_>) -> async_graphql::Result<String> {
    let keys = ctx.data::<ApiKeys>()?;
    let presented = ctx
        .data_opt::<PresentedKey>()
        .and_then(|k| k.0.clone())
        .ok_or_else(|| ErrorCode::Unauthorized.error("an operator API key is required"))?;
    keys.0
        .iter()
        .find(|k| same(&k.key, &presented))
        .map(|k| format!("operator:{}", k.name))
        .ok_or_else(|| {
            tracing::warn!("operator mutation with an unknown API key");
            ErrorCode::Unauthorized.error("unknown API key")
        })
}

/// An operator's refusal as a GraphQL error with its code.
fn refusal(e: OperatorRefusal) -> async_graphql::Error {
    match e {
        OperatorRefusal::NotFound(_) => ErrorCode::NotFound.error(e.to_string()),
        OperatorRefusal::Route(e) => route_error(e),
        OperatorRefusal::Storage(e) => storage_error(e),
        OperatorRefusal::NotAllowed(_)
        | OperatorRefusal::Screening(_)
        | OperatorRefusal::Changed(_) => ErrorCode::BadInput.error(e.to_string()),
    }
}

/// The operator actions over the request's store and routing state.
fn actions(ctx: &Context<'_>) -> async_graphql::Result<OperatorActions> {
    Ok(OperatorActions::new(
        ctx.data::<Store>()?.clone(),
        ctx.data::<Arc<RoutingState>>()?.clone(),
    ))
}

/// Transfer `id` as it is now, after an action.
async fn transfer_now(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Transfer> {
    ctx.data::<Store>()?
        .transfer(id)
        .await
        .map_err(storage_error)?
        .map(Transfer::from)
        .ok_or_else(|| ErrorCode::NotFound.error(format!("no transfer {id}")))
}

/// Mutations for operators.
#[derive(Default)]
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Releases a held transfer: it is priced again now (the hold may have outlasted its quote)
    /// and goes on to settlement. Refused unless the transfer is held.
    async fn release_hold(
        &self,
        ctx: &Context<'_>,
        transfer_id: String,
        reason: String,
    ) -> async_graphql::Result<Transfer> {
        let actor = operator(ctx)?;
        actions(ctx)?
            .release_hold(&actor, &transfer_id, &reason, Utc::now())
            .await
            .map_err(refusal)?;
        transfer_now(ctx, &transfer_id).await
    }

    /// Gives the travel-rule data of a transfer held for want of it (originator and beneficiary,
    /// as the sending institution records them); the transfer then goes on to settlement.
    /// Refused for transfers held for another reason.
    async fn provide_travel_rule_data(
        &self,
        ctx: &Context<'_>,
        transfer_id: String,
        originator: String,
        beneficiary: String,
    ) -> async_graphql::Result<Transfer> {
        let actor = operator(ctx)?;
        actions(ctx)?
            .provide_travel_rule_data(&actor, &transfer_id, &originator, &beneficiary, Utc::now())
            .await
            .map_err(refusal)?;
        transfer_now(ctx, &transfer_id).await
    }

    /// Gives a transfer's funds back to its sender instead of delivering: a held or quoted
    /// transfer is refused (and refunded on the source chain); a settled one not yet released
    /// is failed, so its ledger entries are reversed and then it is refunded.
    async fn refund_transfer(
        &self,
        ctx: &Context<'_>,
        transfer_id: String,
        reason: String,
    ) -> async_graphql::Result<Transfer> {
        let actor = operator(ctx)?;
        actions(ctx)?
            .refund(&actor, &transfer_id, &reason, Utc::now())
            .await
            .map_err(refusal)?;
        transfer_now(ctx, &transfer_id).await
    }

    /// Tries a failed refund again (after the cause was fixed, e.g. the escrow's relayer).
    async fn retry_transfer(
        &self,
        ctx: &Context<'_>,
        transfer_id: String,
        reason: String,
    ) -> async_graphql::Result<Transfer> {
        let actor = operator(ctx)?;
        actions(ctx)?
            .retry_refund(&actor, &transfer_id, &reason, Utc::now())
            .await
            .map_err(refusal)?;
        transfer_now(ctx, &transfer_id).await
    }

    /// Pauses (or resumes) a corridor: a paused corridor quotes nothing, so new requests on it
    /// are refused with the reason (and refunded). The latest pause or resume outlives a restart
    /// and wins over the configuration's `paused`.
    async fn pause_corridor(
        &self,
        ctx: &Context<'_>,
        id: String,
        paused: bool,
        reason: String,
    ) -> async_graphql::Result<Corridor> {
        let actor = operator(ctx)?;
        let store = ctx.data::<Store>()?;
        let routing = ctx.data::<Arc<RoutingState>>()?;
        if routing.read(|router, _| router.corridor(&id).is_none()) {
            return Err(ErrorCode::NotFound.error(format!("no corridor {id}")));
        }
        // Stored with its audit entry first: if they cannot be written, nothing changes. (At
        // start-up the stored relay parameters are applied, so a crash between the two loses
        // nothing.)
        let audit = AuditEntry {
            actor: actor.clone(),
            action: if paused {
                "corridor.pause"
            } else {
                "corridor.resume"
            }
            .into(),
            subject: format!("corridor:{id}"),
            details: json!({ "reason": reason }),
        };
        let change = RelayAction::PauseCorridor {
            corridor: id.clone(),
            paused,
        };
        store
            .change_relay_parameters(&[(change, audit)], Utc::now())
            .await
            .map_err(storage_error)?;
        let config = routing.set_paused(&id, paused);
        tracing::info!(corridor = %id, paused, %actor, "corridor paused state changed");
        config
            .map(|config| Corridor {
                config,
                now: unix_now(),
            })
            .ok_or_else(|| ErrorCode::NotFound.error(format!("no corridor {id}")))
    }

    /// Feeds a corridor's rate (destination units per source unit, a decimal such as "0.92"),
    /// for corridors whose rate is fed rather than fixed.
    async fn feed_rate(
        &self,
        ctx: &Context<'_>,
        corridor: String,
        rate: String,
    ) -> async_graphql::Result<Corridor> {
        let actor = operator(ctx)?;
        let store = ctx.data::<Store>()?;
        let routing = ctx.data::<Arc<RoutingState>>()?;
        let now = unix_now();
        // Checked, audited, then applied: a refused rate or a failed audit write changes nothing.
        routing
            .read(|router, _| router.fed_rate(&corridor, &rate))
            .map_err(|e| ErrorCode::BadInput.error(e.to_string()))?;
        store
            .record_audit(&AuditEntry {
                actor,
                action: "corridor.feed_rate".into(),
                subject: format!("corridor:{corridor}"),
                details: json!({ "rate": rate }),
            })
            .await
            .map_err(storage_error)?;
        let config = routing
            .feed_rate(&corridor, &rate, now)
            .map_err(|e| ErrorCode::BadInput.error(e.to_string()))?;
        config
            .map(|config| Corridor { config, now })
            .ok_or_else(|| ErrorCode::NotFound.error(format!("no corridor {corridor}")))
    }

    /// Feeds an asset's reference rate — what one whole unit is worth in the limits' reference
    /// unit (a decimal such as "1.08") — for an asset whose reference rate is fed
    /// (`reference_rate_max_age_secs`). Stored with its audit entry in one transaction, applied
    /// on every node, kept over a restart with the time it was fed, so it goes stale on time.
    async fn feed_reference_rate(
        &self,
        ctx: &Context<'_>,
        asset: String,
        rate: String,
    ) -> async_graphql::Result<Asset> {
        let actor = operator(ctx)?;
        let store = ctx.data::<Store>()?;
        let routing = ctx.data::<Arc<RoutingState>>()?;
        let id = parse_asset("asset", &asset)?;
        // Checked, then stored with its audit entry, then applied: a refused rate or a failed
        // write changes nothing.
        routing.reference_rate_of(&id, &rate).map_err(|e| match e {
            ParameterError::UnknownAsset(_) => ErrorCode::NotFound.error(e.to_string()),
            e => ErrorCode::BadInput.error(e.to_string()),
        })?;
        let at = Utc::now();
        let change = RelayAction::FeedReferenceRate {
            asset: id.clone(),
            rate: rate.clone(),
        };
        let audit = AuditEntry {
            actor: actor.clone(),
            action: "asset.feed_reference_rate".into(),
            subject: format!("asset:{id}"),
            details: json!({ "rate": rate }),
        };
        store
            .change_relay_parameters(&[(change.clone(), audit)], at)
            .await
            .map_err(storage_error)?;
        let now = u64::try_from(at.timestamp()).unwrap_or(0);
        routing
            .apply(&change, now)
            .map_err(|e| ErrorCode::BadInput.error(e.to_string()))?;
        tracing::info!(asset = %id, %rate, %actor, "reference rate fed");
        routing
            .read(|router, screening| router.asset(&id).map(|a| Asset::of(a, screening, now)))
            .ok_or_else(|| ErrorCode::NotFound.error(format!("no asset {id}")))
    }
}
