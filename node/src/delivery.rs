//! Delivery: settled transfers are released on their destination chain by the relay's signer,
//! then followed to that chain's finality: `settled → delivering → delivered → finalized`, or
//! `failed` when the escrow refuses the release or it reverts. Rejected transfers — whose funds
//! are locked on the source chain — are refunded there: `rejected → refunding → refunded`.
//!
//! Exactly once: the escrow settles a transfer id at most once, and before sending, the node
//! asks the escrow whether this transfer id is settled already (a release sent by a run that
//! stopped before recording it); if so it follows that release instead of sending another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ethers::types::{Address, H256, U256};
use meridian_relayer::evm::{EvmSubmitter, ReleaseStatus, SubmitError};
use meridian_relayer::payout::AccountPayouts;
use meridian_storage::entities::transfers;
use meridian_storage::{Store, TransferMove, Transition};
use meridian_types::config::{ChainConfig, ContractKind, FinalityRule};
use meridian_types::{ChainFamily, EventPayload, TransferState};

use crate::account_delivery;
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
    submitters: HashMap<String, EvmSubmitter>,
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
    pub async fn connect(store: Store, chains: &[ChainConfig]) -> anyhow::Result<TransferDelivery> {
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
                anyhow::bail!("chains[{i}].signer_key: the chain has no bridge_escrow contract to release from");
            };
            let url = chain
                .rpc_urls
                .first()
                .ok_or_else(|| anyhow::anyhow!("chains[{i}].rpc_urls: empty"))?;
            let submitter = EvmSubmitter::connect(
                url.as_str(),
                chain_id,
                &key.0,
                &escrow.address,
                confirmations(chain),
            )
            .await
            .map_err(|e| anyhow::anyhow!("chains[{i}].signer_key: {e}"))?;
            tracing::info!(chain = %chain.id, signer = %format!("{:#x}", submitter.signer()), "delivery signer ready");
            submitters.insert(chain.id.to_string(), submitter);
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
    pub async fn pass(&self, now: DateTime<Utc>) -> anyhow::Result<DeliverySummary> {
        let mut summary = DeliverySummary::default();
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
                    Side::Source => &t.source_chain,
                    Side::Destination => &t.dest_chain,
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
                    Action::Release => self.submit(submitter, &t, &step).await?,
                    Action::Refund => self.refund(submitter, &t, &step).await?,
                    Action::Follow => self.follow(submitter, &t, state, &step).await?,
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

    async fn submit(
        &self,
        submitter: &EvmSubmitter,
        t: &transfers::Model,
        step: &(dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync),
    ) -> anyhow::Result<Option<TransferState>> {
        let fail = |why: String| TransferMove {
            id: t.id.clone(),
            from: TransferState::Settled,
            path: vec![step(
                TransferState::Settled,
                TransferState::Failed,
                Some(why),
            )],
            batch_id: None,
        };
        // Past its deadline the sender gets the funds back instead (the ledger is reversed,
        // then the refund goes out on the source chain).
        if t.deadline.is_some_and(|d| d <= Utc::now()) {
            self.store
                .advance_transfers(&[fail("deadline passed before delivery".into())])
                .await?;
            return Ok(Some(TransferState::Failed));
        }
        let parsed = release_args(t);
        let (token, recipient, amount) = match parsed {
            Ok(args) => args,
            Err(why) => {
                self.store.advance_transfers(&[fail(why)]).await?;
                return Ok(Some(TransferState::Failed));
            }
        };
        let id = escrow_transfer_id(&t.id);
        match submitter.settled_on_chain(id).await {
            Ok((true, _)) => {
                // Released by an earlier run: follow it from here (no transaction to watch).
                let m = TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Settled,
                    path: vec![
                        step(
                            TransferState::Settled,
                            TransferState::Delivering,
                            Some("release found on chain (sent by an earlier run)".into()),
                        ),
                        step(TransferState::Delivering, TransferState::Delivered, None),
                    ],
                    batch_id: None,
                };
                self.store.advance_transfers(&[m]).await?;
                return Ok(Some(TransferState::Delivered));
            }
            Ok((false, _)) => {}
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot read the escrow; retrying next pass");
                return Ok(None);
            }
        }
        match submitter.release(id, token, recipient, amount).await {
            Ok(hash) => {
                let hash = format!("{hash:#x}");
                let m = TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Settled,
                    path: vec![step(
                        TransferState::Settled,
                        TransferState::Delivering,
                        Some(format!("release {hash}")),
                    )],
                    batch_id: None,
                };
                self.store.start_delivery(&m, &t.dest_chain, &hash).await?;
                tracing::info!(transfer = %t.id, tx = %hash, "release submitted");
                Ok(Some(TransferState::Delivering))
            }
            Err(SubmitError::Refused(why)) => {
                self.store
                    .advance_transfers(&[fail(format!("escrow refused the release: {why}"))])
                    .await?;
                Ok(Some(TransferState::Failed))
            }
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "release not submitted; retrying next pass");
                Ok(None)
            }
        }
    }

    async fn refund(
        &self,
        submitter: &EvmSubmitter,
        t: &transfers::Model,
        step: &(dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync),
    ) -> anyhow::Result<Option<TransferState>> {
        let to_failed = |why: String| TransferMove {
            id: t.id.clone(),
            from: TransferState::Rejected,
            path: vec![step(
                TransferState::Rejected,
                TransferState::Failed,
                Some(why),
            )],
            batch_id: None,
        };
        let nonce = match self.store.event_by_uid(&t.source_event_uid).await? {
            Some(ev) => match serde_json::from_value::<EventPayload>(ev.payload) {
                Ok(EventPayload::RemittanceRequested { nonce, .. }) => {
                    U256::from_dec_str(&nonce).ok()
                }
                _ => None,
            },
            None => None,
        };
        let Some(nonce) = nonce else {
            self.store
                .advance_transfers(&[to_failed(
                    "refund impossible: the lock's nonce is unknown".into(),
                )])
                .await?;
            return Ok(Some(TransferState::Failed));
        };
        let id = escrow_transfer_id(&t.id);
        match submitter.settled_on_chain(id).await {
            Ok((true, _)) => {
                let m = TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Rejected,
                    path: vec![step(
                        TransferState::Rejected,
                        TransferState::Refunding,
                        Some("refund found on chain (sent by an earlier run)".into()),
                    )],
                    batch_id: None,
                };
                self.store.advance_transfers(&[m]).await?;
                return Ok(Some(TransferState::Refunding));
            }
            Ok((false, _)) => {}
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot read the escrow; retrying next pass");
                return Ok(None);
            }
        }
        match submitter.refund(id, nonce).await {
            Ok(hash) => {
                let hash = format!("{hash:#x}");
                let m = TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Rejected,
                    path: vec![step(
                        TransferState::Rejected,
                        TransferState::Refunding,
                        Some(format!("refund {hash}")),
                    )],
                    batch_id: None,
                };
                self.store
                    .start_delivery(&m, &t.source_chain, &hash)
                    .await?;
                tracing::info!(transfer = %t.id, tx = %hash, "refund submitted");
                Ok(Some(TransferState::Refunding))
            }
            Err(SubmitError::Refused(why)) => {
                self.store
                    .advance_transfers(&[to_failed(format!("escrow refused the refund: {why}"))])
                    .await?;
                Ok(Some(TransferState::Failed))
            }
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "refund not submitted; retrying next pass");
                Ok(None)
            }
        }
    }

    async fn follow(
        &self,
        submitter: &EvmSubmitter,
        t: &transfers::Model,
        from: TransferState,
        step: &(dyn Fn(TransferState, TransferState, Option<String>) -> Transition + Sync),
    ) -> anyhow::Result<Option<TransferState>> {
        let delivery = self.store.delivery(&t.id).await?;
        let status = match delivery.as_ref().and_then(|d| d.tx_hash.clone()) {
            Some(tx) => {
                let hash: H256 = match tx.parse() {
                    Ok(h) => h,
                    Err(_) => anyhow::bail!("stored release hash `{tx}` of {} is not a hash", t.id),
                };
                match submitter.status(hash).await {
                    Ok(ReleaseStatus::Pending) => {
                        self.unstick(submitter, t, delivery.as_ref(), hash).await
                    }
                    other => other,
                }
            }
            // Found on chain without a recorded transaction: final once the escrow says so at
            // a final block.
            None => submitter
                .settled_on_chain(escrow_transfer_id(&t.id))
                .await
                .map(|(_, at_final)| {
                    if at_final {
                        ReleaseStatus::Final { block: 0 }
                    } else {
                        ReleaseStatus::Included { block: 0 }
                    }
                }),
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "cannot follow the release; retrying next pass");
                return Ok(None);
            }
        };
        let mut path = Vec::new();
        let block = |b: u64| (b > 0).then(|| format!("block {b}"));
        match (from, status) {
            (_, ReleaseStatus::Pending) => return Ok(None),
            (TransferState::Delivering, ReleaseStatus::Included { block: b }) => {
                path.push(step(from, TransferState::Delivered, block(b)));
            }
            (TransferState::Delivering, ReleaseStatus::Final { block: b }) => {
                path.push(step(from, TransferState::Delivered, block(b)));
                path.push(step(
                    TransferState::Delivered,
                    TransferState::Finalized,
                    None,
                ));
            }
            (TransferState::Delivered, ReleaseStatus::Final { .. }) => {
                path.push(step(from, TransferState::Finalized, None));
            }
            (TransferState::Refunding, ReleaseStatus::Final { block: b }) => {
                path.push(step(from, TransferState::Refunded, block(b)));
            }
            (_, ReleaseStatus::Reverted { block: b }) => {
                path.push(step(
                    from,
                    TransferState::Failed,
                    Some(format!("release reverted in block {b}")),
                ));
            }
            _ => return Ok(None),
        }
        let to = path.last().map_or(from, |p| p.to);
        if to == TransferState::Finalized {
            // From the moment the request was routed (right after the source chain made it
            // final) to the release being final on the destination chain.
            let secs = (Utc::now() - t.created_at).num_milliseconds().max(0) as f64 / 1e3;
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

    /// A release or refund still pending: if the escrow already shows the transfer settled, an
    /// earlier transaction of the same nonce (the one it replaced) made it — follow the escrow;
    /// if it has waited longer than `bump_after`, replace it at higher fees.
    async fn unstick(
        &self,
        submitter: &EvmSubmitter,
        t: &transfers::Model,
        delivery: Option<&meridian_storage::entities::deliveries::Model>,
        hash: H256,
    ) -> Result<ReleaseStatus, SubmitError> {
        let (settled, at_final) = submitter
            .settled_on_chain(escrow_transfer_id(&t.id))
            .await?;
        if settled {
            return Ok(if at_final {
                ReleaseStatus::Final { block: 0 }
            } else {
                ReleaseStatus::Included { block: 0 }
            });
        }
        let Some(d) = delivery else {
            return Ok(ReleaseStatus::Pending);
        };
        if Utc::now() - d.updated_at < self.bump_after {
            return Ok(ReleaseStatus::Pending);
        }
        if let Some(new) = submitter.bump(hash).await? {
            let (old, new) = (format!("{hash:#x}"), format!("{new:#x}"));
            if let Err(e) = self.store.replace_delivery_tx(d.id, &old, &new).await {
                tracing::error!(transfer = %t.id, error = %e, "replacement sent but not recorded");
            }
            tracing::warn!(transfer = %t.id, %old, %new, "stuck transaction replaced at higher fees");
        }
        Ok(ReleaseStatus::Pending)
    }

    /// Runs passes every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "delivery pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Token, recipient and amount of a transfer's release, or why it cannot be released.
fn release_args(t: &transfers::Model) -> Result<(Address, Address, U256), String> {
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
        .dest_amount
        .as_deref()
        .and_then(|a| U256::from_dec_str(a).ok())
        .ok_or_else(|| "no quoted delivery amount".to_owned())?;
    Ok((token, recipient, amount))
}
