//! Delivery: settled transfers are released on their destination chain by the relay's signer,
//! then followed to that chain's finality: `settled → delivering → delivered → finalized`, or
//! `failed` when the escrow refuses the release or it reverts. Rejected transfers — whose funds
//! are locked on the source chain — are refunded there: `rejected → refunding → refunded`.
//!
//! Exactly once: on EVM chains every payout is signed, recorded with its nonce, then broadcast,
//! and decided by receipts only (`evm_delivery`); on account chains it carries a marker and a
//! validity height (`account_delivery`). Before a payout starts, the escrow is asked whether the
//! transfer is settled already (a payout no record of ours knows); if so it is followed, not
//! repeated.

use crate::TransferError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ethers::types::{Address, U256};
use meridian_relayer::evm::{self, EscrowCall, EvmSubmitter};
use meridian_relayer::payout::AccountPayouts;
use meridian_storage::{Store, TransferMove, Transition};
use meridian_types::config::{ChainConfig, ContractKind, FinalityRule};
use meridian_types::{ChainFamily, EventPayload, Transfer, TransferState};

use crate::account_delivery;
use crate::evm_delivery::{EvmPayouts, PayoutStatus};
use tokio::sync::watch;

/// A transfer in a working state that has not moved for this long counts as stuck.
const STUCK_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// A release or refund pending this long is replaced at higher fees.
pub const BUMP_AFTER: chrono::Duration = chrono::Duration::seconds(30);

/// Transfers looked at per state and pass.
const PASS_LIMIT: u64 = 256;

/// Which chain a step acts on.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

/// What a pass does with a transfer.
#[derive(Clone, Copy)]
enum Action {
    Release,
    Refund,
    Follow,
}

/// The escrow's id of a transfer: keccak-256 of Meridian's transfer id.
pub fn escrow_transfer_id(transfer_id: &str) -> [u8; 32] {
    ethers::utils::keccak256(transfer_id.as_bytes())
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
    /// EVM chains: the escrow contract's relayer.
    submitters: HashMap<String, EvmPayouts>,
    /// Cosmos and Substrate chains: the escrow account.
    accounts: HashMap<String, Arc<dyn AccountPayouts>>,
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
    /// Connects a submitter for every chain with a `signer_key`: the escrow contract of EVM
    /// chains, the escrow account of Cosmos and Substrate chains.
    pub async fn connect(
        store: Store,
        chains: &[ChainConfig],
    ) -> Result<TransferDelivery, TransferError> {
        let mut submitters = HashMap::new();
        let mut accounts: HashMap<String, Arc<dyn AccountPayouts>> = HashMap::new();
        for (i, chain) in chains.iter().enumerate() {
            if chain.signer_key.is_some() && chain.id.family() != Some(ChainFamily::Evm) {
                let payouts = crate::account_signers::connect(i, chain).await?;
                accounts.insert(chain.id.to_string(), payouts);
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
            let payouts =
                EvmPayouts::start(&store, chain.id.as_str(), submitter, Utc::now()).await?;
            submitters.insert(chain.id.to_string(), payouts);
        }
        Ok(TransferDelivery {
            store,
            submitters,
            accounts,
            bump_after: BUMP_AFTER,
        })
    }

    /// Replaces pending transactions after `after` instead of [`BUMP_AFTER`].
    pub fn bump_after(mut self, after: chrono::Duration) -> TransferDelivery {
        self.bump_after = after;
        self
    }

    /// Chains this node delivers on.
    pub fn chains(&self) -> impl Iterator<Item = &str> {
        self.submitters
            .keys()
            .chain(self.accounts.keys())
            .map(String::as_str)
    }

    /// One pass: submit releases for settled transfers, follow submitted ones.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<DeliverySummary, TransferError> {
        let mut summary = DeliverySummary::default();
        // First stop what a reorg took the deposit of: nothing below may pay for it.
        let stopped = crate::reorg_guard::stop_retracted(&self.store, now).await?;
        summary.moved.extend(stopped.moved);
        let step = |from, to, reason: Option<String>| Transition {
            from: Some(from),
            to,
            reason,
            actor: "relayer".into(),
            at: now,
        };
        // What to do with transfers in each state, and on which chain, in this order.
        let work = [
            (TransferState::Settled, Side::Destination, Action::Release),
            // Refused transfers: their funds are locked on the source chain; give them back.
            (TransferState::Rejected, Side::Source, Action::Refund),
            (TransferState::Refunding, Side::Source, Action::Follow),
            (TransferState::Delivering, Side::Destination, Action::Follow),
            (TransferState::Delivered, Side::Destination, Action::Follow),
        ];
        for (state, side, action) in work {
            for t in self.store.transfers_in_state(state, PASS_LIMIT).await? {
                let chain = match side {
                    Side::Source => t.source_chain.as_str(),
                    Side::Destination => t.dest_chain.as_str(),
                };
                let Some(submitter) = self.submitters.get(chain) else {
                    if let Some(payouts) = self.accounts.get(chain) {
                        let payouts = payouts.as_ref();
                        let moved = match action {
                            Action::Release => {
                                account_delivery::start(&self.store, payouts, &t, false, &step)
                                    .await?
                            }
                            Action::Refund => {
                                account_delivery::start(&self.store, payouts, &t, true, &step)
                                    .await?
                            }
                            Action::Follow => {
                                account_delivery::follow(&self.store, payouts, &t, state, &step)
                                    .await?
                            }
                        };
                        if let Some(to) = moved {
                            summary.moved.push((t.id.clone(), to));
                        }
                    }
                    continue;
                };
                let moved = match action {
                    Action::Release | Action::Refund => {
                        self.begin_evm(submitter, &t, state, now, &step).await?
                    }
                    Action::Follow => self.follow_evm(submitter, &t, state, now, &step).await?,
                };
                if let Some(to) = moved {
                    summary.moved.push((t.id.clone(), to));
                }
            }
        }
        for (_, state) in &summary.moved {
            metrics::counter!("meridian_transfers_total", "state" => state.as_str()).increment(1);
        }
        let stuck = self.store.stuck_transfers(now - STUCK_AFTER).await?;
        metrics::gauge!("meridian_transfers_stuck").set(stuck as f64);
        Ok(summary)
    }

    /// Starts the EVM payout a transfer in `from` needs: its release (from `settled`) or the
    /// refund of its lock (from `rejected`).
    async fn begin_evm(
        &self,
        payouts: &EvmPayouts,
        t: &Transfer,
        from: TransferState,
        now: DateTime<Utc>,
        step: &(dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync),
    ) -> Result<Option<TransferState>, TransferError> {
        let refund = from == TransferState::Rejected;
        let (to, what) = if refund {
            (TransferState::Refunding, "refund")
        } else {
            (TransferState::Delivering, "release")
        };
        let fail = |why: String| TransferMove {
            id: t.id.clone(),
            from,
            path: vec![step(from, TransferState::Failed, Some(why))],
            batch_id: None,
        };
        // Past its deadline the sender gets the funds back instead (the ledger is reversed,
        // then the refund goes out on the source chain).
        if !refund && t.deadline.is_some_and(|d| d <= now) {
            self.store
                .advance_transfers(&[fail("deadline passed before delivery".into())])
                .await?;
            return Ok(Some(TransferState::Failed));
        }
        // A deposit retracted since this pass's reorg guard ran: the next pass stops it.
        if self.store.source_retracted(&t.source_event_uid).await? {
            return Ok(None);
        }
        let id = escrow_transfer_id(&t.id);
        let call = if refund {
            refund_args(&self.store, t)
                .await?
                .map(|lock_nonce| EscrowCall::Refund {
                    transfer_id: id,
                    lock_nonce,
                })
        } else {
            release_args(t).map(|(token, recipient, amount)| EscrowCall::Release {
                transfer_id: id,
                token,
                recipient,
                amount,
            })
        };
        let call = match call {
            Ok(call) => call,
            Err(why) => {
                self.store.advance_transfers(&[fail(why)]).await?;
                return Ok(Some(TransferState::Failed));
            }
        };
        // A payout made without a record of ours (another node with this key, a run before
        // payouts were recorded) is followed, never repeated.
        match payouts.submitter().settled_on_chain(id).await {
            Ok((true, _)) => {
                // Followed from here by the escrow's state (delivered once it is final there).
                let m = TransferMove {
                    id: t.id.clone(),
                    from,
                    path: vec![step(
                        from,
                        to,
                        Some(format!(
                            "{what} found on chain (sent without a record of ours)"
                        )),
                    )],
                    batch_id: None,
                };
                self.store.advance_transfers(&[m]).await?;
                return Ok(Some(to));
            }
            Ok((false, _)) => {}
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot read the escrow; retrying next pass");
                return Ok(None);
            }
        }
        let m = TransferMove {
            id: t.id.clone(),
            from,
            path: vec![step(from, to, Some(what.to_owned()))],
            batch_id: None,
        };
        Ok(payouts
            .begin(&self.store, &m, &call, now)
            .await?
            .then_some(to))
    }

    /// Follows a transfer's EVM payout (in `delivering`, `delivered` or `refunding`) by its
    /// receipts, re-sending or replacing it while it is pending.
    async fn follow_evm(
        &self,
        payouts: &EvmPayouts,
        t: &Transfer,
        from: TransferState,
        now: DateTime<Utc>,
        step: &(dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync),
    ) -> Result<Option<TransferState>, TransferError> {
        let id = escrow_transfer_id(&t.id);
        let chain = if from == TransferState::Refunding {
            t.source_chain.as_str()
        } else {
            t.dest_chain.as_str()
        };
        let status =
            match self.store.evm_payout(&t.id, chain).await? {
                Some(p) => {
                    // A payout for a deposit a reorg took away is cancelled, not paid.
                    let cancel = self.store.source_retracted(&t.source_event_uid).await?;
                    payouts
                        .follow(&self.store, &t.id, &p, id, cancel, now, self.bump_after)
                        .await
                }
                // Found on chain without a record of ours: included while the escrow says so at the
                // latest block, final once it says so at a final block; otherwise nothing is known
                // to be paid (a reorg may have taken it away) and the transfer waits, counted stuck.
                None => payouts
                    .submitter()
                    .settled_on_chain(id)
                    .await
                    .map(|(latest, at_final)| match (latest, at_final) {
                        (_, true) => PayoutStatus::Final { block: 0 },
                        (true, false) => PayoutStatus::Included { block: 0 },
                        (false, _) => PayoutStatus::Pending,
                    }),
            };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot follow the payout; retrying next pass");
                return Ok(None);
            }
        };
        let mut path = Vec::new();
        let block = |b: u64| (b > 0).then(|| format!("block {b}"));
        match (from, status) {
            (_, PayoutStatus::Pending) => return Ok(None),
            (TransferState::Delivering, PayoutStatus::Included { block: b }) => {
                path.push(step(from, TransferState::Delivered, block(b)));
            }
            (TransferState::Delivering, PayoutStatus::Final { block: b }) => {
                path.push(step(from, TransferState::Delivered, block(b)));
                path.push(step(
                    TransferState::Delivered,
                    TransferState::Finalized,
                    None,
                ));
            }
            (TransferState::Delivered, PayoutStatus::Final { .. }) => {
                path.push(step(from, TransferState::Finalized, None));
            }
            (TransferState::Refunding, PayoutStatus::Final { block: b }) => {
                path.push(step(from, TransferState::Refunded, block(b)));
            }
            (TransferState::Refunding, PayoutStatus::Cancelled { .. }) => {
                path.push(step(
                    from,
                    TransferState::Cancelled,
                    Some("refund cancelled: the source deposit was retracted by a reorg".into()),
                ));
            }
            // Failed first: the settler reverses its ledger entries, then cancels it.
            (TransferState::Delivering, PayoutStatus::Cancelled { .. }) => {
                path.push(step(
                    from,
                    TransferState::Failed,
                    Some("release cancelled: the source deposit was retracted by a reorg".into()),
                ));
            }
            (_, PayoutStatus::Refused { block: b, reason }) => {
                let what = if from == TransferState::Refunding {
                    "refund"
                } else {
                    "release"
                };
                path.push(step(
                    from,
                    TransferState::Failed,
                    Some(format!(
                        "escrow refused the {what}: reverted in block {b}: {reason}"
                    )),
                ));
            }
            _ => return Ok(None),
        }
        let to = path.last().map_or(from, |p| p.to);
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

/// The escrow lock's nonce a refund of `t` names (from its source `Locked` event), or why it
/// cannot be refunded.
async fn refund_args(store: &Store, t: &Transfer) -> Result<Result<U256, String>, TransferError> {
    let nonce = match store.event_by_uid(&t.source_event_uid).await? {
        Some(ev) => match serde_json::from_value::<EventPayload>(ev.payload) {
            Ok(EventPayload::RemittanceRequested { nonce, .. }) => U256::from_dec_str(&nonce).ok(),
            _ => None,
        },
        None => None,
    };
    Ok(nonce.ok_or_else(|| "refund impossible: the lock's nonce is unknown".to_owned()))
}

/// Token, recipient and amount of a transfer's release, or why it cannot be released.
fn release_args(t: &Transfer) -> Result<(Address, Address, U256), String> {
    let token = t
        .dest_asset
        .split_once("/erc20:")
        .and_then(|(_, a)| a.parse::<Address>().ok())
        .ok_or_else(|| format!("destination asset {} is not an ERC-20 token", t.dest_asset))?;
    let recipient = t
        .recipient
        .rsplit_once(':')
        .and_then(|(_, a)| a.parse::<Address>().ok())
        .ok_or_else(|| format!("recipient {} is not an EVM address", t.recipient))?;
    let amount = t
        .dest_amount()
        .map(U256::from)
        .ok_or_else(|| "no quoted delivery amount".to_owned())?;
    Ok((token, recipient, amount))
}
