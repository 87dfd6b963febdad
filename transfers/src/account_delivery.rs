//! Delivery and refunds on account-based chains (Cosmos SDK, Substrate), where the escrow is an
//! account and the node itself must make each payout happen exactly once
//! (see `meridian_relayer::payout`): sign, record the transaction and its last valid height,
//! broadcast; then wait for the chain's watcher to ingest the payout's marker event (final by
//! construction), or for the validity height to pass final without it and send again.

use crate::TransferError;
use chrono::{DateTime, Utc};
use meridian_relayer::payout::{AccountPayouts, Inclusion, Payout, PayoutError};
use meridian_storage::{Store, TransferMove, Transition};
use meridian_types::{AssetId, PayoutMarker, Transfer, TransferState};

/// Attempts before a payout that keeps expiring unincluded is given up as failed.
const ATTEMPTS_MAX: i32 = 3;

/// How far back from a payout's first submission its marker event may have been ingested (clock
/// differences between nodes sharing a database).
const CLOCK_SLACK: chrono::Duration = chrono::Duration::minutes(1);

type Step<'a> = &'a (dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync);

fn address(caip10: &str) -> &str {
    caip10.rsplit_once(':').map_or(caip10, |(_, a)| a)
}

/// The payout a transfer in `state` needs: its release, or the refund of what the sender locked.
fn payout_of(t: &Transfer, refund: bool) -> Result<Payout, String> {
    if refund {
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

fn single(t: &Transfer, from: TransferState, path: Vec<Transition>) -> TransferMove {
    TransferMove {
        id: t.id.clone(),
        from,
        path,
        batch_id: None,
    }
}

/// Starts the release (`settled → delivering`) or refund (`rejected → refunding`) of `t` on
/// `chain`. Returns the state reached, if it moved.
pub async fn start(
    store: &Store,
    payouts: &dyn AccountPayouts,
    t: &Transfer,
    refund: bool,
    step: Step<'_>,
) -> Result<Option<TransferState>, TransferError> {
    let (from, to, chain) = if refund {
        (
            TransferState::Rejected,
            TransferState::Refunding,
            t.source_chain.as_str(),
        )
    } else {
        (
            TransferState::Settled,
            TransferState::Delivering,
            t.dest_chain.as_str(),
        )
    };
    let fail = |why: String| single(t, from, vec![step(from, TransferState::Failed, Some(why))]);
    if !refund && t.deadline.is_some_and(|d| d <= Utc::now()) {
        store
            .advance_transfers(&[fail("deadline passed before delivery".into())])
            .await?;
        return Ok(Some(TransferState::Failed));
    }
    let payout = match payout_of(t, refund) {
        Ok(p) => p,
        Err(why) => {
            store.advance_transfers(&[fail(why)]).await?;
            return Ok(Some(TransferState::Failed));
        }
    };
    let prepared = match payouts.prepare(&payout).await {
        Ok(p) => p,
        Err(PayoutError::Invalid(why)) => {
            store.advance_transfers(&[fail(why)]).await?;
            return Ok(Some(TransferState::Failed));
        }
        Err(e) => {
            tracing::warn!(transfer = %t.id, error = %e, "payout not prepared; retrying next pass");
            return Ok(None);
        }
    };
    // Recorded before it is broadcast: after a crash the node looks for this transaction and
    // never signs a second payout while the first can still land.
    let what = if refund { "refund" } else { "release" };
    let m = single(
        t,
        from,
        vec![step(from, to, Some(format!("{what} {}", prepared.tx)))],
    );
    if !store
        .start_payout(&m, chain, &prepared.tx, Some(prepared.valid_until))
        .await?
    {
        return Ok(None);
    }
    match payouts.broadcast(&prepared).await {
        Ok(()) => {
            tracing::info!(transfer = %t.id, tx = %prepared.tx, valid_until = prepared.valid_until, "{what} broadcast")
        }
        // It may still be in a mempool; following it decides (marker event, or expiry).
        Err(e) => {
            tracing::warn!(transfer = %t.id, tx = %prepared.tx, error = %e, "{what} broadcast failed; it is sent again once its validity has passed")
        }
    }
    Ok(Some(to))
}

/// Follows a release or refund in flight: final once the watcher has its marker event; failed
/// when the chain included and failed it; sent again when it expired unincluded.
pub async fn follow(
    store: &Store,
    payouts: &dyn AccountPayouts,
    t: &Transfer,
    from: TransferState,
    step: Step<'_>,
) -> Result<Option<TransferState>, TransferError> {
    let refund = from == TransferState::Refunding;
    let chain = if refund {
        t.source_chain.as_str()
    } else {
        t.dest_chain.as_str()
    };
    let Some(d) = store.delivery(&t.id).await? else {
        return Ok(None);
    };
    let since: DateTime<Utc> = d.submitted_at.unwrap_or(d.updated_at) - CLOCK_SLACK;
    if let Some(event) = store.payout_event(chain, &t.id, refund, since).await? {
        let at = Some(format!("block {}", event.block_number));
        let path = match from {
            TransferState::Delivering => vec![
                step(from, TransferState::Delivered, at),
                step(TransferState::Delivered, TransferState::Finalized, None),
            ],
            TransferState::Delivered => vec![step(from, TransferState::Finalized, None)],
            _ => vec![step(from, TransferState::Refunded, at)],
        };
        let to = path.last().map_or(from, |p| p.to);
        if to == TransferState::Finalized {
            let secs = (Utc::now() - t.created_at).num_milliseconds().max(0) as f64 / 1e3;
            metrics::histogram!("meridian_transfer_delivery_seconds").record(secs);
        }
        let moved = store.advance_transfers(&[single(t, from, path)]).await?;
        return Ok((moved > 0).then_some(to));
    }
    let (Some(tx), Some(valid_until)) = (d.tx_hash.clone(), d.valid_until) else {
        return Ok(None);
    };
    let valid_until = u64::try_from(valid_until).unwrap_or(0);
    let fail = |why: String| single(t, from, vec![step(from, TransferState::Failed, Some(why))]);
    match payouts.inclusion(&tx, valid_until).await {
        Ok(Inclusion::Failed { height, reason }) => {
            store
                .advance_transfers(&[fail(format!(
                    "payout {tx} failed in block {height}: {reason}"
                ))])
                .await?;
            return Ok(Some(TransferState::Failed));
        }
        // Included: the watcher will ingest its marker event once the block is final.
        Ok(Inclusion::Succeeded { .. }) => return Ok(None),
        Ok(Inclusion::Unknown) => {}
        Err(e) => {
            tracing::warn!(transfer = %t.id, error = %e, "cannot look up the payout; retrying next pass");
            return Ok(None);
        }
    }
    let final_height = match payouts.final_height().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(transfer = %t.id, error = %e, "cannot read the final height; retrying next pass");
            return Ok(None);
        }
    };
    if final_height <= valid_until {
        return Ok(None);
    }
    // Expired: the transaction can no longer be included anywhere on this chain.
    if d.attempts >= ATTEMPTS_MAX {
        store
            .advance_transfers(&[fail(format!(
                "payout not included in {} attempts (last {tx}, valid until {valid_until})",
                d.attempts
            ))])
            .await?;
        return Ok(Some(TransferState::Failed));
    }
    let payout = match payout_of(t, refund) {
        Ok(p) => p,
        Err(why) => {
            store.advance_transfers(&[fail(why)]).await?;
            return Ok(Some(TransferState::Failed));
        }
    };
    let prepared = match payouts.prepare(&payout).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(transfer = %t.id, error = %e, "expired payout not prepared again; retrying next pass");
            return Ok(None);
        }
    };
    store
        .replace_payout_tx(d.id, &tx, &prepared.tx, Some(prepared.valid_until))
        .await?;
    tracing::warn!(transfer = %t.id, expired = %tx, new = %prepared.tx, "payout expired unincluded; sent again");
    if let Err(e) = payouts.broadcast(&prepared).await {
        tracing::warn!(transfer = %t.id, tx = %prepared.tx, error = %e, "payout broadcast failed");
    }
    Ok(None)
}
