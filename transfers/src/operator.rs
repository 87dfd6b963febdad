//! What an operator may do to a transfer, and the rules for it: release a hold (priced and
//! screened again now), hand over travel-rule data, refund, retry a failed refund. Each action is
//! one database transaction together with its audit entry, or nothing. The GraphQL resolvers
//! only check the operator's key and map fields; the intake releases expired holds through the
//! same [`requote_held`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use meridian_router::{ReleaseRefusal, ReleaseRequest, RouteError, RoutingState, ScreeningReason};
use meridian_storage::{AuditEntry, StorageError, Store, TransferMove, TransferRecord, Transition};
use meridian_types::{AssetId, Transfer, TransferState};
use serde_json::json;

/// Why an operator's action was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperatorRefusal {
    /// No such transfer.
    #[error("no transfer {0}")]
    NotFound(String),
    /// The transfer is not in a state the action applies to.
    #[error("{0}")]
    NotAllowed(String),
    /// Screening refuses the release now (a party sanctioned meanwhile, a cap).
    #[error("cannot release: {0}")]
    Screening(ScreeningReason),
    /// No corridor carries the transfer now.
    #[error(transparent)]
    Route(RouteError),
    /// Someone else moved the transfer between the check and the write; nothing was written.
    #[error("transfer {0} changed state meanwhile; nothing done")]
    Changed(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How a held transfer fared when priced again.
#[derive(Debug)]
pub enum Requoted {
    /// Quoted and stored with its audit entry; its cap usage is counted.
    Quoted,
    /// Moved by someone else meanwhile; nothing written.
    Changed,
    /// Screening refuses it now; nothing written.
    Refused(ScreeningReason),
    /// No route carries it now; nothing written.
    NoRoute(RouteError),
    /// Its stored destination asset does not parse (it passed the intake's check, so the row
    /// was changed since); nothing written.
    BadDestination(String),
}

/// Prices held transfer `t` again at `now` and moves it `held → quoted` (reason: `why`, then the
/// route, delivery and cost), with `audit`, in one transaction.
pub async fn requote_held(
    store: &Store,
    routing: &RoutingState,
    t: &Transfer,
    actor: &str,
    why: &str,
    audit: &AuditEntry,
    now: DateTime<Utc>,
) -> Result<Requoted, StorageError> {
    let Ok(to) = t.dest_asset.parse::<AssetId>() else {
        return Ok(Requoted::BadDestination(t.dest_asset.clone()));
    };
    let unix = now.timestamp().max(0) as u64;
    let request = ReleaseRequest {
        sender: t.sender.as_str(),
        recipient: &t.recipient,
        source_asset: &t.source_asset,
        dest_asset: &to,
        amount: t.amount,
    };
    let quote = match routing.price_release(&request, unix) {
        Ok(q) => q.accepted(),
        Err(ReleaseRefusal::Screening(why)) => return Ok(Requoted::Refused(why)),
        Err(ReleaseRefusal::Route(e)) => return Ok(Requoted::NoRoute(e)),
    };
    let m = TransferMove {
        id: t.id.clone(),
        from: TransferState::Held,
        path: vec![Transition {
            from: Some(TransferState::Held),
            to: TransferState::Quoted,
            reason: Some(format!(
                "{why}; route {}, delivers {}, cost {} bps",
                quote.route(),
                quote.amount_out(),
                quote.cost_bps
            )),
            actor: actor.to_owned(),
            at: now,
        }],
        batch_id: None,
    };
    if !store.requote_transfer(&m, &quote, audit).await? {
        return Ok(Requoted::Changed);
    }
    routing.record_accepted(t.sender.as_str(), &t.source_asset, t.amount, &quote, unix);
    Ok(Requoted::Quoted)
}

/// The reason a transfer is held for want of travel-rule data starts with this.
const TRAVEL_RULE_HOLD: &str = "originator and beneficiary data are required";

/// An operator's actions on transfers.
pub struct OperatorActions {
    store: Store,
    routing: Arc<RoutingState>,
}

impl OperatorActions {
    /// Actions over `store`, pricing with `routing`.
    pub fn new(store: Store, routing: Arc<RoutingState>) -> OperatorActions {
        OperatorActions { store, routing }
    }

    /// Transfer `id` with its history, or `NotFound`.
    async fn record(&self, id: &str) -> Result<TransferRecord, OperatorRefusal> {
        self.store
            .transfer(id)
            .await?
            .ok_or_else(|| OperatorRefusal::NotFound(id.to_owned()))
    }

    async fn held(&self, id: &str) -> Result<(Transfer, Option<String>), OperatorRefusal> {
        let rec = self.record(id).await?;
        if rec.transfer.state != TransferState::Held {
            return Err(OperatorRefusal::NotAllowed(format!(
                "transfer {id} is {}, not held",
                rec.transfer.state.as_str()
            )));
        }
        let reason = rec.history.last().and_then(|h| h.reason.clone());
        Ok((rec.transfer, reason))
    }

    async fn release(
        &self,
        actor: &str,
        t: &Transfer,
        why: &str,
        audit: AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        match requote_held(&self.store, &self.routing, t, actor, why, &audit, now).await? {
            Requoted::Quoted => {
                tracing::info!(transfer = %t.id, actor, action = %audit.action, "hold released");
                Ok(())
            }
            Requoted::Changed => Err(OperatorRefusal::Changed(t.id.clone())),
            Requoted::Refused(why) => Err(OperatorRefusal::Screening(why)),
            Requoted::NoRoute(e) => Err(OperatorRefusal::Route(e)),
            Requoted::BadDestination(asset) => Err(OperatorRefusal::NotAllowed(format!(
                "transfer {}: its destination asset `{asset}` is not a CAIP-19 id",
                t.id
            ))),
        }
    }

    /// Releases held transfer `id` on the operator's word (`reason`): priced and screened again
    /// now, then on to settlement.
    pub async fn release_hold(
        &self,
        actor: &str,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        let (t, _) = self.held(id).await?;
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "transfer.release_hold".into(),
            subject: format!("transfer:{id}"),
            details: json!({ "reason": reason }),
        };
        self.release(actor, &t, &format!("hold released: {reason}"), audit, now)
            .await
    }

    /// Records the travel-rule data of a transfer held for want of it and releases it; refused
    /// for a transfer held for another reason, or with empty data.
    pub async fn provide_travel_rule_data(
        &self,
        actor: &str,
        id: &str,
        originator: &str,
        beneficiary: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        if originator.trim().is_empty() || beneficiary.trim().is_empty() {
            return Err(OperatorRefusal::NotAllowed(
                "originator and beneficiary must not be empty".into(),
            ));
        }
        let (t, reason) = self.held(id).await?;
        if !reason.is_some_and(|r| r.contains(TRAVEL_RULE_HOLD)) {
            return Err(OperatorRefusal::NotAllowed(format!(
                "transfer {id} is not held for travel-rule data"
            )));
        }
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: "transfer.travel_rule_data".into(),
            subject: format!("transfer:{id}"),
            details: json!({ "originator": originator, "beneficiary": beneficiary }),
        };
        self.release(actor, &t, "travel-rule data provided", audit, now)
            .await
    }

    /// Gives a transfer's funds back to its sender instead of delivering: a held or quoted
    /// transfer is refused (and so refunded on its source chain); a settled one not yet released
    /// is failed, so its ledger entries are reversed and then it is refunded.
    pub async fn refund(
        &self,
        actor: &str,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        let rec = self.record(id).await?;
        let from = rec.transfer.state;
        let to = match from {
            TransferState::Held | TransferState::Quoted => TransferState::Rejected,
            TransferState::Settled => TransferState::Failed,
            other => {
                return Err(OperatorRefusal::NotAllowed(format!(
                    "transfer {id} is {}; only held, quoted or settled (not yet released) transfers can be refunded",
                    other.as_str()
                )))
            }
        };
        self.move_audited(
            actor,
            id,
            from,
            to,
            format!("refund ordered: {reason}"),
            "transfer.refund",
            reason,
            now,
        )
        .await
    }

    /// Tries a failed refund again (after its cause was fixed, e.g. the escrow's relayer).
    /// Failed deliveries are reversed and refunded on their own, so only a failed refund can be.
    pub async fn retry_refund(
        &self,
        actor: &str,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        let rec = self.record(id).await?;
        let refund_failed = rec.transfer.state == TransferState::Failed
            && rec.history.last().and_then(|h| h.from) == Some(TransferState::Rejected);
        if !refund_failed {
            return Err(OperatorRefusal::NotAllowed(format!(
                "transfer {id} is {}; only a failed refund can be retried (failed deliveries are reversed and refunded on their own)",
                rec.transfer.state.as_str()
            )));
        }
        self.move_audited(
            actor,
            id,
            TransferState::Failed,
            TransferState::Rejected,
            format!("refund retried: {reason}"),
            "transfer.retry",
            reason,
            now,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn move_audited(
        &self,
        actor: &str,
        id: &str,
        from: TransferState,
        to: TransferState,
        why: String,
        action: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), OperatorRefusal> {
        let m = TransferMove {
            id: id.to_owned(),
            from,
            path: vec![Transition {
                from: Some(from),
                to,
                reason: Some(why),
                actor: actor.to_owned(),
                at: now,
            }],
            batch_id: None,
        };
        let audit = AuditEntry {
            actor: actor.to_owned(),
            action: action.into(),
            subject: format!("transfer:{id}"),
            details: json!({ "reason": reason }),
        };
        if !self.store.advance_audited(&m, &audit).await? {
            return Err(OperatorRefusal::Changed(id.to_owned()));
        }
        tracing::info!(transfer = %id, actor, action, "operator moved a transfer");
        Ok(())
    }
}
