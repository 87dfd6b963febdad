//! Operator mutations: release a held transfer, pause or resume a corridor, feed a rate. Each
//! needs an API key from `[[api_keys]]` (header `x-api-key`, or `Authorization: Bearer …`) and
//! is written to the audit log with the key's name.

use std::sync::Arc;

use async_graphql::{Context, Object};
use chrono::Utc;
use meridian_router::{ReleaseRefusal, ReleaseRequest, RoutingState};
use meridian_storage::{AuditEntry, Store, TransferMove, Transition};
use meridian_types::config::ApiKeyConfig;
use meridian_types::{AssetId, TransferState};
use serde_json::json;

use crate::errors::{storage_error, ErrorCode};
use crate::routing::{route_error, unix_now, Corridor};
use crate::transfers::Transfer;

/// The key a request presented, if any (set by the HTTP layer from its headers).
#[derive(Debug, Clone, Default)]
pub struct PresentedKey(pub Option<String>);

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

/// Sends a held transfer on to settlement: priced again now (the hold may have outlasted its
/// quote), screened again for sanctions and the sender's cap, moved `held → quoted` with `why`,
/// audited as `action` with `details` — all or nothing.
async fn release_held(
    ctx: &Context<'_>,
    actor: String,
    transfer_id: String,
    why: String,
    action: &str,
    details: serde_json::Value,
) -> async_graphql::Result<Transfer> {
    let store = ctx.data::<Store>()?;
    let routing = ctx.data::<Arc<RoutingState>>()?;
    let Some(t) = store.transfer(&transfer_id).await.map_err(storage_error)? else {
        return Err(ErrorCode::NotFound.error(format!("no transfer {transfer_id}")));
    };
    let t = t.transfer;
    if t.state != TransferState::Held {
        return Err(ErrorCode::BadInput.error(format!(
            "transfer {transfer_id} is {}, not held",
            t.state.as_str()
        )));
    }
    let amount = t.amount;
    let to: AssetId = t
        .dest_asset
        .parse()
        .map_err(|_| ErrorCode::Internal.error("stored destination asset"))?;
    let now = unix_now();
    let quote = routing
        .price_release(
            &ReleaseRequest {
                sender: t.sender.as_str(),
                recipient: &t.recipient,
                source_asset: &t.source_asset,
                dest_asset: &to,
                amount,
            },
            now,
        )
        .map_err(|e| match e {
            ReleaseRefusal::Route(e) => route_error(e),
            ReleaseRefusal::Screening(why) => {
                ErrorCode::BadInput.error(format!("cannot release: {why}"))
            }
        })?;
    let at = Utc::now();
    let accepted = quote.accepted();
    let route = accepted.route();
    let moved = store
        .requote_transfer(
            &TransferMove {
                id: transfer_id.clone(),
                from: TransferState::Held,
                path: vec![Transition {
                    from: Some(TransferState::Held),
                    to: TransferState::Quoted,
                    reason: Some(format!(
                        "{why}; route {route}, delivers {}, cost {} bps",
                        quote.amount_out, quote.cost_bps
                    )),
                    actor: actor.clone(),
                    at,
                }],
                batch_id: None,
            },
            &accepted,
            &AuditEntry {
                actor: actor.clone(),
                action: action.into(),
                subject: format!("transfer:{transfer_id}"),
                details,
            },
        )
        .await
        .map_err(storage_error)?;
    if !moved {
        return Err(ErrorCode::BadInput.error(format!(
            "transfer {transfer_id} changed state meanwhile; nothing released"
        )));
    }
    routing.record_accepted(t.sender.as_str(), amount, &accepted, now);
    tracing::info!(transfer = %transfer_id, %actor, "hold released");
    store
        .transfer(&transfer_id)
        .await
        .map_err(storage_error)?
        .map(Transfer::from)
        .ok_or_else(|| ErrorCode::NotFound.error(format!("no transfer {transfer_id}")))
}

/// Moves a transfer by an operator's order, audited.
#[allow(clippy::too_many_arguments)]
async fn move_by_operator(
    ctx: &Context<'_>,
    actor: String,
    transfer_id: &str,
    from: TransferState,
    to: TransferState,
    why: String,
    action: &str,
    reason: &str,
) -> async_graphql::Result<Transfer> {
    let store = ctx.data::<Store>()?;
    let moved = store
        .advance_transfers(&[TransferMove {
            id: transfer_id.to_owned(),
            from,
            path: vec![Transition {
                from: Some(from),
                to,
                reason: Some(why),
                actor: actor.clone(),
                at: Utc::now(),
            }],
            batch_id: None,
        }])
        .await
        .map_err(storage_error)?;
    if moved == 0 {
        return Err(ErrorCode::BadInput.error(format!(
            "transfer {transfer_id} changed state meanwhile; nothing done"
        )));
    }
    store
        .record_audit(&AuditEntry {
            actor: actor.clone(),
            action: action.into(),
            subject: format!("transfer:{transfer_id}"),
            details: json!({ "reason": reason }),
        })
        .await
        .map_err(storage_error)?;
    tracing::info!(transfer = %transfer_id, %actor, action, "operator moved a transfer");
    store
        .transfer(transfer_id)
        .await
        .map_err(storage_error)?
        .map(Transfer::from)
        .ok_or_else(|| ErrorCode::NotFound.error(format!("no transfer {transfer_id}")))
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
        release_held(
            ctx,
            actor,
            transfer_id,
            format!("hold released: {reason}"),
            "transfer.release_hold",
            json!({ "reason": reason }),
        )
        .await
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
        if originator.trim().is_empty() || beneficiary.trim().is_empty() {
            return Err(ErrorCode::BadInput.error("originator and beneficiary must not be empty"));
        }
        let store = ctx.data::<Store>()?;
        let held_for_it = store
            .transfer(&transfer_id)
            .await
            .map_err(storage_error)?
            .and_then(|t| t.history.last().and_then(|h| h.reason.clone()))
            .is_some_and(|r| r.contains("originator and beneficiary data are required"));
        if !held_for_it {
            return Err(ErrorCode::BadInput.error(format!(
                "transfer {transfer_id} is not held for travel-rule data"
            )));
        }
        release_held(
            ctx,
            actor,
            transfer_id,
            "travel-rule data provided".into(),
            "transfer.travel_rule_data",
            json!({ "originator": originator, "beneficiary": beneficiary }),
        )
        .await
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
        let store = ctx.data::<Store>()?;
        let Some(t) = store.transfer(&transfer_id).await.map_err(storage_error)? else {
            return Err(ErrorCode::NotFound.error(format!("no transfer {transfer_id}")));
        };
        let from = t.transfer.state;
        let to = match from {
            TransferState::Held | TransferState::Quoted => TransferState::Rejected,
            TransferState::Settled => TransferState::Failed,
            other => {
                return Err(ErrorCode::BadInput.error(format!(
                    "transfer {transfer_id} is {}; only held, quoted or settled (not yet released) transfers can be refunded",
                    other.as_str()
                )))
            }
        };
        move_by_operator(
            ctx,
            actor,
            &transfer_id,
            from,
            to,
            format!("refund ordered: {reason}"),
            "transfer.refund",
            &reason,
        )
        .await
    }

    /// Tries a failed refund again (after the cause was fixed, e.g. the escrow's relayer).
    async fn retry_transfer(
        &self,
        ctx: &Context<'_>,
        transfer_id: String,
        reason: String,
    ) -> async_graphql::Result<Transfer> {
        let actor = operator(ctx)?;
        let store = ctx.data::<Store>()?;
        let Some(t) = store.transfer(&transfer_id).await.map_err(storage_error)? else {
            return Err(ErrorCode::NotFound.error(format!("no transfer {transfer_id}")));
        };
        let refund_failed = t.transfer.state == TransferState::Failed
            && t.history.last().and_then(|h| h.from) == Some(TransferState::Rejected);
        if !refund_failed {
            return Err(ErrorCode::BadInput.error(format!(
                "transfer {transfer_id} is {}; only a failed refund can be retried (failed deliveries are reversed and refunded on their own)",
                t.transfer.state.as_str()
            )));
        }
        move_by_operator(
            ctx,
            actor,
            &transfer_id,
            TransferState::Failed,
            TransferState::Rejected,
            format!("refund retried: {reason}"),
            "transfer.retry",
            &reason,
        )
        .await
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
        let config = {
            let mut router = routing.router.write().unwrap_or_else(|e| e.into_inner());
            if !router.set_paused(&id, paused) {
                return Err(ErrorCode::NotFound.error(format!("no corridor {id}")));
            }
            router.corridor(&id).cloned()
        };
        store
            .record_audit(&AuditEntry {
                actor: actor.clone(),
                action: if paused {
                    "corridor.pause"
                } else {
                    "corridor.resume"
                }
                .into(),
                subject: format!("corridor:{id}"),
                details: json!({ "reason": reason }),
            })
            .await
            .map_err(storage_error)?;
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
        let config = {
            let mut router = routing.router.write().unwrap_or_else(|e| e.into_inner());
            router
                .feed_rate(&corridor, &rate, now)
                .map_err(|e| ErrorCode::BadInput.error(e.to_string()))?;
            router.corridor(&corridor).cloned()
        };
        store
            .record_audit(&AuditEntry {
                actor,
                action: "corridor.feed_rate".into(),
                subject: format!("corridor:{corridor}"),
                details: json!({ "rate": rate }),
            })
            .await
            .map_err(storage_error)?;
        config
            .map(|config| Corridor { config, now })
            .ok_or_else(|| ErrorCode::NotFound.error(format!("no corridor {corridor}")))
    }
}
