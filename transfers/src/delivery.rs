//! Delivery: settled transfers are released on their destination chain by the relay's signer,
//! then followed to that chain's finality: `settled → delivering → delivered → finalized`, or
//! `failed` when the chain refuses the release. Rejected transfers — whose funds are locked on
//! the source chain — are refunded there: `rejected → refunding → refunded`.
//!
//! One state machine for every chain family: it asks each chain's [`PayoutRail`] to release,
//! refund, or say where a payout stands, and moves the transfer by the answer alone. Exactly
//! once is each rail's rule (EVM: `evm_delivery`; Cosmos and Substrate: `account_delivery`);
//! the machine adds what holds everywhere: nothing is paid past a transfer's deadline or for a
//! deposit a reorg retracted, and a payout found on chain without a record of ours is followed,
//! not repeated.

use crate::TransferError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_relayer::evm::{self, EvmSubmitter};
use meridian_storage::{Store, TransferMove, Transition};
use meridian_types::config::{ChainConfig, ContractKind, FinalityRule};
use meridian_types::{ChainFamily, Transfer, TransferState};

use crate::account_delivery::AccountRail;
use crate::evm_delivery::EvmPayouts;
use crate::payout_rail::{PayoutKind, PayoutRail, PayoutStatus, Started};
use tokio::sync::watch;

/// A transfer in a working state that has not moved for this long counts as stuck.
const STUCK_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// A release or refund pending this long is replaced at higher fees.
pub const BUMP_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// Transfers looked at per state and pass.
const PASS_LIMIT: u64 = 256;

/// Which chain a step acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// What a pass does with a transfer.
#[derive(Clone, Copy)]
enum Action {
    Start(PayoutKind),
    Follow,
}

/// Whether a payout may start.
enum Guard {
    Go,
    /// Not now (the next pass decides).
    Wait,
    /// The transfer moved instead (to this state).
    Moved(TransferState),
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Transfers moved, with their new state.
    pub moved: Vec<(String, TransferState)>,
}

/// Releases settled transfers on their destination chains and refunds rejected ones.
pub struct TransferDelivery {
    store: Store,
    /// How each chain this node pays out on does it, by chain id.
    rails: HashMap<String, Arc<dyn PayoutRail>>,
    bump_after: chrono::Duration,
}

/// Confirmations a release needs before it is final on `chain`.
fn confirmations(chain: &ChainConfig) -> u64 {
    match chain.finality {
        FinalityRule::Confirmations(n) => n,
        // The finalized tag trails the head by a few dozen blocks on the chains we target; wait
        // as deep as the watcher's largest confirmation setting allows.
        FinalityRule::FinalizedTag => 64,
    }
}

impl TransferDelivery {
    /// Connects a payout rail for every chain with a `signer_key`: the escrow contract of EVM
    /// chains, the escrow account of Cosmos and Substrate chains.
    pub async fn connect(
        store: Store,
        chains: &[ChainConfig],
    ) -> Result<TransferDelivery, TransferError> {
        let mut rails: HashMap<String, Arc<dyn PayoutRail>> = HashMap::new();
        for (i, chain) in chains.iter().enumerate() {
            if chain.signer_key.is_some() && chain.id.family() != Some(ChainFamily::Evm) {
                let payouts = crate::account_signers::connect(i, chain).await?;
                rails.insert(chain.id.to_string(), Arc::new(AccountRail::new(payouts)));
                continue;
            }
            let (Some(key), Some(chain_id)) = (&chain.signer_key, chain.id.evm_chain_id()) else {
                continue;
            };
            let Some(escrow) = chain
                .contracts
                .iter()
                .find(|c| c.kind == ContractKind::BridgeEscrow)
            else {
                return Err(TransferError::config(
                    format!("chains[{i}].signer_key"),
                    "the chain has no bridge_escrow contract to release from",
                ));
            };
            let submitter = EvmSubmitter::new(
                Arc::new(evm::endpoint_pool(chain)),
                chain_id,
                &key.0,
                &escrow.address,
                confirmations(chain),
            )
            .map_err(|e| TransferError::config(format!("chains[{i}].signer_key"), e))?;
            let reported = submitter
                .chain_id()
                .await
                .map_err(|e| TransferError::config(format!("chains[{i}].rpc_urls"), e))?;
            if reported != chain_id {
                return Err(TransferError::config(
                    format!("chains[{i}].rpc_urls"),
                    format!("the node reports chain id {reported}, not {chain_id}"),
                ));
            }
            tracing::info!(chain = %chain.id, signer = %format!("{:#x}", submitter.signer()), "delivery signer ready");
            let payouts = EvmPayouts::start(&store, chain.id.as_str(), submitter, Utc::now())
                .await?
                .with_release_batch_max(chain.release_batch_max)
                .await?;
            rails.insert(chain.id.to_string(), Arc::new(payouts));
        }
        Ok(TransferDelivery::new(store, rails))
    }

    /// Delivers through `rails`, by chain id (CAIP-2).
    pub fn new(store: Store, rails: HashMap<String, Arc<dyn PayoutRail>>) -> TransferDelivery {
        TransferDelivery {
            store,
            rails,
            bump_after: BUMP_AFTER,
        }
    }

    /// Replaces pending transactions after `after` instead of [`BUMP_AFTER`].
    pub fn bump_after(mut self, after: chrono::Duration) -> TransferDelivery {
        self.bump_after = after;
        self
    }

    /// Chains this node delivers on.
    pub fn chains(&self) -> impl Iterator<Item = &str> {
        self.rails.keys().map(String::as_str)
    }

    /// One pass: start releases of settled transfers and refunds of rejected ones, follow the
    /// payouts in flight.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<DeliverySummary, TransferError> {
        let mut summary = DeliverySummary::default();
        for rail in self.rails.values() {
            rail.new_pass();
        }
        // First stop what a reorg took the deposit of: nothing below may pay for it.
        let stopped = crate::reorg_guard::stop_retracted(&self.store, now).await?;
        summary.moved.extend(stopped.moved);
        // What to do with transfers in each state, and on which chain, in this order.
        let work = [
            (
                TransferState::Settled,
                Side::Destination,
                Action::Start(PayoutKind::Release),
            ),
            // Refused transfers: their funds are locked on the source chain; give them back.
            (
                TransferState::Rejected,
                Side::Source,
                Action::Start(PayoutKind::Refund),
            ),
            (TransferState::Refunding, Side::Source, Action::Follow),
            (TransferState::Delivering, Side::Destination, Action::Follow),
            (TransferState::Delivered, Side::Destination, Action::Follow),
        ];
        for (state, side, action) in work {
            // Per chain, in the order they were found (oldest first); only chains this node
            // pays out on, so another chain's backlog never fills the page.
            let mut by_chain: Vec<(String, Vec<Transfer>)> = Vec::new();
            let chains: Vec<String> = self.rails.keys().cloned().collect();
            for t in self
                .store
                .transfers_in_state_on(state, side == Side::Source, &chains, PASS_LIMIT)
                .await?
            {
                let chain = match side {
                    Side::Source => t.source_chain.to_string(),
                    Side::Destination => t.dest_chain.clone(),
                };
                match by_chain.iter_mut().find(|(c, _)| *c == chain) {
                    Some((_, ts)) => ts.push(t),
                    None => by_chain.push((chain, vec![t])),
                }
            }
            for (chain, transfers) in by_chain {
                let Some(rail) = self.rails.get(&chain) else {
                    continue;
                };
                let rail = rail.as_ref();
                let moved = match action {
                    Action::Start(PayoutKind::Release) => {
                        self.release(rail, transfers, now).await?
                    }
                    Action::Start(PayoutKind::Refund) => {
                        let mut moved = Vec::new();
                        for t in transfers {
                            if let Some(to) = self.refund(rail, &t, now).await? {
                                moved.push((t.id, to));
                            }
                        }
                        moved
                    }
                    Action::Follow => {
                        let mut moved = Vec::new();
                        for t in transfers {
                            if let Some(to) = self.follow(rail, &t, state, now).await? {
                                moved.push((t.id, to));
                            }
                        }
                        moved
                    }
                };
                summary.moved.extend(moved);
            }
        }
        for (_, state) in &summary.moved {
            metrics::counter!("meridian_transfers_total", "state" => state.as_str()).increment(1);
        }
        let stuck = self.store.stuck_transfers(now - STUCK_AFTER).await?;
        metrics::gauge!("meridian_transfers_stuck").set(stuck as f64);
        Ok(summary)
    }

    /// Starts the releases of settled transfers on one chain, as the chain's rail batches them.
    /// Returns the transfers moved, with their new state.
    async fn release(
        &self,
        rail: &dyn PayoutRail,
        transfers: Vec<Transfer>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TransferState)>, TransferError> {
        let mut moved = Vec::new();
        let mut batch = Vec::with_capacity(transfers.len());
        for t in transfers {
            match self.guard(&t, PayoutKind::Release, now).await? {
                Guard::Go => {
                    let m = one_step(&t, PayoutKind::Release.in_flight(), "release".into(), now);
                    batch.push((t, m));
                }
                Guard::Moved(to) => moved.push((t.id, to)),
                Guard::Wait => {}
            }
        }
        if batch.is_empty() {
            return Ok(moved);
        }
        let started = match rail.release(&self.store, &batch, now).await {
            Ok(s) => s,
            Err(e) if e.is_chain_fault() => {
                tracing::warn!(transfers = batch.len(), error = %e, "releases not started; retrying next pass");
                return Ok(moved);
            }
            Err(e) => return Err(e),
        };
        for ((t, _), started) in batch.iter().zip(started) {
            if let Some(to) = self.started(t, PayoutKind::Release, started, now).await? {
                moved.push((t.id.clone(), to));
            }
        }
        Ok(moved)
    }

    /// Starts the refund of a refused transfer's lock on its source chain. Returns the state
    /// reached, if it moved.
    async fn refund(
        &self,
        rail: &dyn PayoutRail,
        t: &Transfer,
        now: DateTime<Utc>,
    ) -> Result<Option<TransferState>, TransferError> {
        match self.guard(t, PayoutKind::Refund, now).await? {
            Guard::Go => {}
            Guard::Moved(to) => return Ok(Some(to)),
            Guard::Wait => return Ok(None),
        }
        let m = one_step(t, PayoutKind::Refund.in_flight(), "refund".into(), now);
        let started = match rail.refund(&self.store, t, m, now).await {
            Ok(s) => s,
            Err(e) if e.is_chain_fault() => {
                tracing::warn!(transfer = %t.id, error = %e, "refund not started; retrying next pass");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.started(t, PayoutKind::Refund, started, now).await
    }

    /// What holds for every payout before it starts: nothing is released past a transfer's
    /// deadline (it fails, so the ledger is reversed and the sender refunded), nothing is paid
    /// for a deposit retracted since this pass's reorg guard ran (the next pass stops it).
    async fn guard(
        &self,
        t: &Transfer,
        kind: PayoutKind,
        now: DateTime<Utc>,
    ) -> Result<Guard, TransferError> {
        if kind == PayoutKind::Release && t.deadline.is_some_and(|d| d <= now) {
            let fail = one_step(
                t,
                TransferState::Failed,
                "deadline passed before delivery".into(),
                now,
            );
            self.store.advance_transfers(&[fail]).await?;
            return Ok(Guard::Moved(TransferState::Failed));
        }
        if self.store.source_retracted(&t.source_event_uid).await? {
            return Ok(Guard::Wait);
        }
        Ok(Guard::Go)
    }

    /// Moves `t` by what starting its payout did (a recorded payout moved it already).
    async fn started(
        &self,
        t: &Transfer,
        kind: PayoutKind,
        started: Started,
        now: DateTime<Utc>,
    ) -> Result<Option<TransferState>, TransferError> {
        let to = kind.in_flight();
        match started {
            Started::Recorded => Ok(Some(to)),
            Started::NotNow => Ok(None),
            Started::FoundOnChain => {
                // Followed from here by the chain's state (delivered once it is final there).
                let found = one_step(
                    t,
                    to,
                    format!(
                        "{} found on chain (sent without a record of ours)",
                        kind.noun()
                    ),
                    now,
                );
                let moved = self.store.advance_transfers(&[found]).await?;
                Ok((moved > 0).then_some(to))
            }
            Started::Impossible(why) => {
                let moved = self
                    .store
                    .advance_transfers(&[one_step(t, TransferState::Failed, why, now)])
                    .await?;
                Ok((moved > 0).then_some(TransferState::Failed))
            }
        }
    }

    /// Follows a transfer's payout in flight (`delivering`, `delivered` or `refunding`) and
    /// moves the transfer by where the payout stands.
    async fn follow(
        &self,
        rail: &dyn PayoutRail,
        t: &Transfer,
        from: TransferState,
        now: DateTime<Utc>,
    ) -> Result<Option<TransferState>, TransferError> {
        let kind = PayoutKind::of_state(from);
        // A payout for a deposit a reorg took away is cancelled, not paid.
        let cancel = self.store.source_retracted(&t.source_event_uid).await?;
        let status = match rail
            .status(&self.store, t, kind, cancel, now, self.bump_after)
            .await
        {
            Ok(s) => s,
            Err(e) if e.is_chain_fault() => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot follow the payout; retrying next pass");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let path = transitions(from, status, now);
        let Some(to) = path.last().map(|p| p.to) else {
            return Ok(None);
        };
        if to == TransferState::Finalized {
            // From the moment the request was routed (right after the source chain made it
            // final) to the release being final on the destination chain.
            let secs = (now - t.created_at).num_milliseconds().max(0) as f64 / 1e3;
            metrics::histogram!("meridian_transfer_delivery_seconds").record(secs);
        }
        let moved = self
            .store
            .advance_transfers(&[TransferMove {
                id: t.id.clone(),
                from,
                path,
                batch_id: None,
            }])
            .await?;
        Ok((moved > 0).then_some(to))
    }

    /// Runs a pass whenever work for it is committed, and every `interval` anyway, until
    /// `shutdown`.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "delivery pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.store.work_for(meridian_storage::Stage::Delivery) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// `t`'s move from its state to `to`, in one step of the relay's own.
fn one_step(t: &Transfer, to: TransferState, reason: String, at: DateTime<Utc>) -> TransferMove {
    TransferMove {
        id: t.id.clone(),
        from: t.state,
        path: vec![step(t.state, to, Some(reason), at)],
        batch_id: None,
    }
}

/// One step of the relay's own.
fn step(
    from: TransferState,
    to: TransferState,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Transition {
    Transition {
        from: Some(from),
        to,
        reason,
        actor: "relayer".into(),
        at,
    }
}

/// The steps a transfer in `from` takes when its payout stands at `status`; none while it is
/// pending or when the status changes nothing for that state.
fn transitions(from: TransferState, status: PayoutStatus, now: DateTime<Utc>) -> Vec<Transition> {
    use TransferState::{Delivered, Delivering, Failed, Finalized, Refunded, Refunding};
    let block = |b: u64| (b > 0).then(|| format!("block {b}"));
    match (from, status) {
        (Delivering, PayoutStatus::Included { block: b }) => {
            vec![step(from, Delivered, block(b), now)]
        }
        (Delivering, PayoutStatus::Final { block: b }) => vec![
            step(from, Delivered, block(b), now),
            step(Delivered, Finalized, None, now),
        ],
        (Delivered, PayoutStatus::Final { .. }) => vec![step(from, Finalized, None, now)],
        (Refunding, PayoutStatus::Final { block: b }) => vec![step(from, Refunded, block(b), now)],
        (Refunding, PayoutStatus::Cancelled { .. }) => vec![step(
            from,
            TransferState::Cancelled,
            Some("refund cancelled: the source deposit was retracted by a reorg".into()),
            now,
        )],
        // Failed first: the settler reverses its ledger entries, then cancels it.
        (Delivering, PayoutStatus::Cancelled { .. }) => vec![step(
            from,
            Failed,
            Some("release cancelled: the source deposit was retracted by a reorg".into()),
            now,
        )],
        (_, PayoutStatus::Refused { reason }) => vec![step(from, Failed, Some(reason), now)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransferState::*;

    fn path(from: TransferState, status: PayoutStatus) -> Vec<(TransferState, Option<String>)> {
        transitions(from, status, Utc::now())
            .into_iter()
            .map(|t| (t.to, t.reason))
            .collect()
    }

    #[test]
    fn a_payout_status_moves_a_transfer_only_forward() {
        let block = |b: u64| Some(format!("block {b}"));
        // Final at once: delivered in its block, then finalized.
        assert_eq!(
            path(Delivering, PayoutStatus::Final { block: 7 }),
            vec![(Delivered, block(7)), (Finalized, None)]
        );
        assert_eq!(
            path(Delivering, PayoutStatus::Included { block: 7 }),
            vec![(Delivered, block(7))]
        );
        assert_eq!(
            path(Delivered, PayoutStatus::Final { block: 7 }),
            vec![(Finalized, None)]
        );
        // Known only from the escrow's state (block 0): no block named.
        assert_eq!(
            path(Refunding, PayoutStatus::Final { block: 0 }),
            vec![(Refunded, None)]
        );
        // A refund is done only when final; a delivered transfer stays delivered until then.
        assert_eq!(path(Refunding, PayoutStatus::Included { block: 7 }), vec![]);
        assert_eq!(path(Delivered, PayoutStatus::Included { block: 7 }), vec![]);
        for from in [Delivering, Delivered, Refunding] {
            assert_eq!(path(from, PayoutStatus::Pending), vec![]);
        }
        // A retracted deposit: a refund is cancelled, a release failed (then reversed).
        assert_eq!(
            path(Refunding, PayoutStatus::Cancelled { block: 0 })[0].0,
            Cancelled
        );
        assert_eq!(
            path(Delivering, PayoutStatus::Cancelled { block: 0 })[0].0,
            Failed
        );
        // Refused: failed with the rail's reason.
        let refused = PayoutStatus::Refused {
            reason: "escrow refused the release: reverted in block 9: NotRelayer".into(),
        };
        assert_eq!(
            path(Delivering, refused),
            vec![(
                Failed,
                Some("escrow refused the release: reverted in block 9: NotRelayer".into())
            )]
        );
    }
}
