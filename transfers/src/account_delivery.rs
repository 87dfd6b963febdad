//! Delivery and refunds on account-based chains (Cosmos SDK, Substrate), where the escrow is an
//! account and the node itself must make each payout happen exactly once
//! (see `meridian_relayer::payout`): sign, record the transaction and its last valid height,
//! broadcast; then follow it — included when the chain says so (the transfer is `delivered`),
//! final when the chain's watcher ingests the payout's marker event (final by construction), or
//! sent again once the validity height has passed final without either. Once included, a payout
//! is never sent again nor given up: only its marker event is awaited.

use std::sync::Arc;

use crate::payout_rail::{PayoutKind, PayoutRail, PayoutStatus, Started};
use crate::TransferError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meridian_relayer::payout::{AccountPayouts, Inclusion, Payout, PayoutError};
use meridian_storage::{Store, TransferMove};
use meridian_types::{AssetId, PayoutMarker, Transfer};

/// Attempts before a payout that keeps expiring unincluded is given up as failed.
const ATTEMPTS_MAX: u32 = 3;

/// How far back from a payout's first submission its marker event may have been ingested (clock
/// differences between nodes sharing a database).
const CLOCK_SLACK: chrono::Duration = chrono::Duration::minutes(1);

fn address(caip10: &str) -> &str {
    caip10.rsplit_once(':').map_or(caip10, |(_, a)| a)
}

/// The payout of `kind` for `t`: its release, or the refund of what the sender locked.
fn payout_of(t: &Transfer, kind: PayoutKind) -> Result<Payout, String> {
    if kind == PayoutKind::Refund {
        Ok(Payout {
            marker: PayoutMarker::Refund(t.id.clone()),
            asset: t.source_asset.clone(),
            to: address(t.sender.as_str()).to_owned(),
            amount: t.amount,
        })
    } else {
        Ok(Payout {
            marker: PayoutMarker::Release(t.id.clone()),
            asset: t.dest_asset.parse::<AssetId>().map_err(|e| e.to_string())?,
            to: address(&t.recipient).to_owned(),
            amount: t
                .dest_amount()
                .ok_or_else(|| "no quoted delivery amount".to_owned())?,
        })
    }
}

/// The escrow account of one Cosmos SDK or Substrate chain, as a [`PayoutRail`].
pub struct AccountRail {
    payouts: Arc<dyn AccountPayouts>,
}

impl AccountRail {
    /// Pays out through `payouts`.
    pub fn new(payouts: Arc<dyn AccountPayouts>) -> AccountRail {
        AccountRail { payouts }
    }

    /// Prepares, records with `m` (before it is broadcast: after a crash the node looks for
    /// this transaction and never signs a second payout while the first can still land), then
    /// broadcasts the payout of `kind` for `t`.
    async fn start(
        &self,
        store: &Store,
        t: &Transfer,
        kind: PayoutKind,
        mut m: TransferMove,
    ) -> Result<Started, TransferError> {
        let payout = match payout_of(t, kind) {
            Ok(p) => p,
            Err(why) => return Ok(Started::Impossible(why)),
        };
        let prepared = match self.payouts.prepare(&payout).await {
            Ok(p) => p,
            Err(PayoutError::Invalid(why)) => return Ok(Started::Impossible(why)),
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "payout not prepared; retrying next pass");
                return Ok(Started::NotNow);
            }
        };
        let what = kind.noun();
        for step in m.path.iter_mut().filter(|s| s.to == kind.in_flight()) {
            step.reason = Some(format!("{what} {}", prepared.tx));
        }
        let chain = self.payouts.chain().as_str();
        if !store
            .start_payout(&m, chain, &prepared.tx, Some(prepared.valid_until))
            .await?
        {
            return Ok(Started::NotNow);
        }
        match self.payouts.broadcast(&prepared).await {
            Ok(()) => {
                tracing::info!(transfer = %t.id, tx = %prepared.tx, valid_until = prepared.valid_until, "{what} broadcast")
            }
            // It may still be in a mempool; following it decides (marker event, or expiry).
            Err(e) => {
                tracing::warn!(transfer = %t.id, tx = %prepared.tx, error = %e, "{what} broadcast failed; it is sent again once its validity has passed")
            }
        }
        Ok(Started::Recorded)
    }
}

#[async_trait]
impl PayoutRail for AccountRail {
    /// One payout transaction per transfer (an escrow account pays one recipient per
    /// transaction and marker).
    async fn release(
        &self,
        store: &Store,
        batch: &[(Transfer, TransferMove)],
        _now: DateTime<Utc>,
    ) -> Result<Vec<Started>, TransferError> {
        let mut out = Vec::with_capacity(batch.len());
        for (t, m) in batch {
            out.push(self.start(store, t, PayoutKind::Release, m.clone()).await?);
        }
        Ok(out)
    }

    async fn refund(
        &self,
        store: &Store,
        t: &Transfer,
        m: TransferMove,
        _now: DateTime<Utc>,
    ) -> Result<Started, TransferError> {
        self.start(store, t, PayoutKind::Refund, m).await
    }

    /// Final once the watcher has the payout's marker event; refused when the chain included
    /// and failed it, or when it expired unincluded [`ATTEMPTS_MAX`] times; sent again when it
    /// expired unincluded (never while it can still land) — unless its deposit was retracted,
    /// when an expired payout is cancelled instead.
    async fn status(
        &self,
        store: &Store,
        t: &Transfer,
        kind: PayoutKind,
        cancel: bool,
        _now: DateTime<Utc>,
        _bump_after: chrono::Duration,
    ) -> Result<PayoutStatus, TransferError> {
        let chain = self.payouts.chain().as_str();
        let Some(d) = store.delivery(&t.id).await? else {
            return Ok(PayoutStatus::Pending);
        };
        let since: DateTime<Utc> = d.submitted_at - CLOCK_SLACK;
        if let Some(block) = store
            .payout_event_block(chain, &t.id, kind == PayoutKind::Refund, since)
            .await?
        {
            return Ok(PayoutStatus::Final { block });
        }
        // Included already (the chain said so): whatever the chain's index answers later (pruned,
        // another RPC node behind), it is never sent again nor refused — the marker decides.
        if t.state == meridian_types::TransferState::Delivered {
            return Ok(PayoutStatus::Pending);
        }
        let (Some(tx), Some(valid_until)) = (d.tx_hash, d.valid_until) else {
            return Ok(PayoutStatus::Pending);
        };
        match self.payouts.inclusion(&tx, valid_until).await? {
            Inclusion::Failed { height, reason } => {
                return Ok(PayoutStatus::Refused {
                    reason: format!("payout {tx} failed in block {height}: {reason}"),
                })
            }
            // Included: final once the watcher ingests its marker event from a final block.
            Inclusion::Succeeded { height } => return Ok(PayoutStatus::Included { block: height }),
            Inclusion::Unknown => {}
        }
        if self.payouts.final_height().await? <= valid_until {
            return Ok(PayoutStatus::Pending);
        }
        // Expired: the transaction can no longer be included anywhere on this chain.
        if cancel {
            return Ok(PayoutStatus::Cancelled { block: 0 });
        }
        if d.attempts >= ATTEMPTS_MAX {
            return Ok(PayoutStatus::Refused {
                reason: format!(
                    "payout not included in {} attempts (last {tx}, valid until {valid_until})",
                    d.attempts
                ),
            });
        }
        let payout = match payout_of(t, kind) {
            Ok(p) => p,
            Err(why) => return Ok(PayoutStatus::Refused { reason: why }),
        };
        let prepared = self.payouts.prepare(&payout).await?;
        store
            .replace_payout_tx(d.id, &tx, &prepared.tx, Some(prepared.valid_until))
            .await?;
        tracing::warn!(transfer = %t.id, expired = %tx, new = %prepared.tx, "payout expired unincluded; sent again");
        if let Err(e) = self.payouts.broadcast(&prepared).await {
            tracing::warn!(transfer = %t.id, tx = %prepared.tx, error = %e, "payout broadcast failed");
        }
        Ok(PayoutStatus::Pending)
    }
}
