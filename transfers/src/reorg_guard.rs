//! Transfers whose source deposit vanished: a reorg deeper than the source chain's confirmations
//! retracts the event a transfer was made from (`storage::chain_index` marks it `retracted`).
//! Nothing may be paid for a deposit that no longer exists, so the transfer stops wherever it is:
//! - not yet settled (requested, screened, quoted, held, or refused and waiting for its refund):
//!   cancelled;
//! - settled, not yet released: failed, so the settler reverses its ledger entries and then
//!   cancels it (instead of refunding a deposit that is gone);
//! - released (delivered or final): the money is gone — a recorded loss, once: an audit entry
//!   `transfer.reorg_loss`, an error log and `meridian_reorg_losses_total` for the operator's
//!   alert;
//! - in flight (delivering, refunding): delivery makes the pending payout unable to land — on
//!   EVM chains it is replaced by a transfer to the signer itself at the same nonce
//!   (`evm_delivery`), on account chains it is not sent again once it expired unincluded
//!   (`account_delivery`); a refund is then cancelled, a release failed, reversed and cancelled.
//!   One already mined ends as above;
//! - settling or failed: left to the settler; the next pass finds it in one of the states above.

use crate::TransferError;
use chrono::{DateTime, Utc};
use meridian_storage::{AuditEntry, Store, TransferMove, Transition};
use meridian_types::TransferState;

/// Transfers with a retracted source looked at per pass.
const PASS_MAX: u64 = 256;

/// The audit action of a recorded reorg loss.
pub const REORG_LOSS: &str = "transfer.reorg_loss";

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReorgSummary {
    /// Transfers moved (cancelled or failed), with their new state.
    pub moved: Vec<(String, TransferState)>,
    /// Released transfers recorded as losses in this pass.
    pub losses: Vec<String>,
}

/// Stops every transfer whose source event a reorg retracted (see the module doc).
pub async fn stop_retracted(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<ReorgSummary, TransferError> {
    let mut summary = ReorgSummary::default();
    let why = "source deposit retracted by a reorg deeper than the confirmations".to_owned();
    use TransferState::*;
    let acted_on = [
        Requested, Screened, Quoted, Held, Rejected, Settled, Delivered, Finalized,
    ];
    for t in store
        .transfers_with_retracted_source(&acted_on, REORG_LOSS, PASS_MAX)
        .await?
    {
        let state = t.state;
        let to = match state {
            Requested | Screened | Quoted | Held | Rejected => Cancelled,
            Settled => Failed,
            Delivered | Finalized => {
                let subject = format!("transfer:{}", t.id);
                if store.audited(REORG_LOSS, &subject).await? {
                    continue;
                }
                // Each destination chain's delivery runs this pass (on several nodes, under
                // different leases): the loss is recorded by whichever gets there first.
                let recorded = store
                    .record_audit_once(&AuditEntry {
                        actor: "relayer".into(),
                        action: REORG_LOSS.into(),
                        subject,
                        details: serde_json::json!({
                            "reason": why,
                            "source_event": t.source_event_uid,
                            "source_chain": t.source_chain.as_str(),
                            "dest_chain": t.dest_chain,
                            "dest_asset": t.dest_asset,
                            "dest_amount": t.dest_amount().map(|a| a.to_string()),
                            "recipient": t.recipient,
                            "state": t.state.as_str(),
                        }),
                    })
                    .await?;
                if !recorded {
                    continue;
                }
                metrics::counter!("meridian_reorg_losses_total", "chain" => t.source_chain.to_string())
                    .increment(1);
                tracing::error!(transfer = %t.id, source_chain = %t.source_chain, dest_chain = %t.dest_chain, amount = ?t.dest_amount(), "paid out for a deposit a reorg removed: recorded as a loss");
                summary.losses.push(t.id.clone());
                continue;
            }
            Settling | Delivering | Refunding | Failed | Refunded | Cancelled => continue,
        };
        let moved = store
            .advance_transfers(&[TransferMove {
                id: t.id.clone(),
                from: state,
                path: vec![Transition {
                    from: Some(state),
                    to,
                    reason: Some(why.clone()),
                    actor: "relayer".into(),
                    at: now,
                }],
                batch_id: None,
            }])
            .await?;
        if moved > 0 {
            tracing::warn!(transfer = %t.id, from = state.as_str(), to = to.as_str(), "source deposit retracted by a reorg; transfer stopped");
            summary.moved.push((t.id.clone(), to));
        }
    }
    Ok(summary)
}
