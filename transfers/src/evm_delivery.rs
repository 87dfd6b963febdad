//! Releases and refunds through an EVM chain's escrow contract, each paid exactly once whatever
//! the RPC or the chain does.
//!
//! The rule (the same as on account chains, `account_delivery`): **sign, record, broadcast**. A
//! payout takes one nonce from the chain's [`NonceAuthority`]; its signed transaction is stored
//! with that nonce before it is broadcast. From then on the node only re-broadcasts that
//! transaction, or replaces it with the same nonce at higher fees (recorded first too), so at most
//! one of them can ever be mined. What happened is read from their receipts:
//! - mined and succeeded: delivered, final at the chain's depth;
//! - mined and reverted, final, and the escrow not settled at a final block: refused (the only
//!   way a payout is refused — never from a gas estimate, which runs against pending state that
//!   may hold our own transaction, never from an error whose cause might be ours);
//! - not mined (a lost answer, a dropped transaction, a reorg): re-broadcast, or replaced when it
//!   has waited too long.
//!
//! A kill -9 anywhere leaves either nothing recorded (nothing was sent: the nonce is taken again)
//! or a recorded transaction that the next run re-broadcasts.

use crate::TransferError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ethers::types::{Address, U256};
use meridian_relayer::evm::{EscrowCall, EvmSubmitter, Mined, NonceAuthority};
use meridian_storage::{EvmPayout, Store, TransferMove};
use meridian_types::{EventPayload, Transfer};

use crate::payout_rail::{PayoutKind, PayoutRail, PayoutStatus, Started};

/// Replacements at higher fees per payout; after that its newest transaction is only
/// re-broadcast (and the transfer shows up as stuck).
pub const REPLACEMENTS_MAX: usize = 8;

/// The payouts of the relay's signer on one EVM chain.
pub struct EvmPayouts {
    chain: String,
    signer: String,
    submitter: EvmSubmitter,
    nonces: NonceAuthority,
}

impl EvmPayouts {
    /// Reconciles the signer's nonces on `chain` with the chain and the recorded payouts, and
    /// returns the chain's payouts. Recorded nonces are never reused; a nonce between the
    /// chain's count and the highest recorded one that has no record (taken, then lost before
    /// its record) is filled with a zero-value transfer to ourselves, or the payouts above it
    /// could never be mined.
    pub async fn start(
        store: &Store,
        chain: &str,
        submitter: EvmSubmitter,
        now: DateTime<Utc>,
    ) -> Result<EvmPayouts, TransferError> {
        let signer = format!("{:#x}", submitter.signer());
        let mined = submitter.mined_nonce().await?;
        let recorded = store.evm_payout_nonces_from(chain, &signer, mined).await?;
        let highest = recorded.last().copied();
        if let Some(highest) = highest {
            for gap in (mined..highest).filter(|n| recorded.binary_search(n).is_err()) {
                let filler = submitter.filler(gap, now).await?;
                match submitter.broadcast(&filler).await {
                    Ok(()) => {
                        tracing::warn!(%chain, %signer, nonce = gap, tx = %filler.hash, "nonce gap filled with a zero-value transfer")
                    }
                    // An earlier filler may still be pending; the payouts above wait for it.
                    Err(e) => {
                        tracing::error!(%chain, %signer, nonce = gap, error = %e, "nonce gap not filled; payouts above it wait")
                    }
                }
            }
        }
        let nonces = NonceAuthority::starting_at(mined, highest);
        tracing::info!(%chain, %signer, next_nonce = nonces.next_unused(), pending = recorded.len(), "EVM payouts ready");
        Ok(EvmPayouts {
            chain: chain.to_owned(),
            signer,
            submitter,
            nonces,
        })
    }

    /// The submitter (escrow reads).
    pub fn submitter(&self) -> &EvmSubmitter {
        &self.submitter
    }

    /// Starts payout `call` for the transfer moved by `m` (to `delivering` or `refunding`): takes
    /// a nonce, signs, records both with the move, then broadcasts. `Ok(false)` when nothing was
    /// recorded (the chain could not be asked for fees, or the transfer moved meanwhile); the
    /// nonce is then given back.
    async fn begin(
        &self,
        store: &Store,
        m: &TransferMove,
        call: &EscrowCall,
        now: DateTime<Utc>,
    ) -> Result<bool, TransferError> {
        let nonce = self.nonces.take();
        let signed = match self.submitter.sign(call, nonce, now).await {
            Ok(s) => s,
            Err(e) => {
                self.nonces.give_back(nonce);
                tracing::warn!(transfer = %m.id, error = %e, "payout not signed; retrying next pass");
                return Ok(false);
            }
        };
        crate::failpoint::crash_point("evm-payout-signed");
        match store
            .start_evm_payout(m, &self.chain, &self.signer, nonce, &signed)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.nonces.give_back(nonce);
                return Ok(false);
            }
            Err(e) => {
                self.give_back_unrecorded(store, nonce).await;
                return Err(e.into());
            }
        }
        crate::failpoint::crash_point("evm-payout-recorded");
        // Recorded: from here on a failure to send is repaired by the next pass's re-broadcast.
        match self.submitter.broadcast(&signed).await {
            Ok(()) => {
                tracing::info!(transfer = %m.id, tx = %signed.hash, nonce, "payout sent");
            }
            Err(e) => {
                tracing::warn!(transfer = %m.id, tx = %signed.hash, nonce, error = %e, "payout recorded, not yet accepted by the node; re-sent next pass");
            }
        }
        Ok(true)
    }

    /// Where `payout` stands; re-broadcasts it while pending, and replaces it at higher fees
    /// once its newest transaction has waited `bump_after`. With `cancel` (the transfer's
    /// deposit was retracted by a reorg) a pending payout is replaced by a transfer to ourselves
    /// with the same nonce instead, and never paid again under another one.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        store: &Store,
        transfer: &str,
        payout: &EvmPayout,
        transfer_id: [u8; 32],
        kind: PayoutKind,
        cancel: bool,
        now: DateTime<Utc>,
        bump_after: chrono::Duration,
    ) -> Result<PayoutStatus, TransferError> {
        let mut mined: Option<(usize, Mined)> = None;
        for (i, tx) in payout.txs.iter().enumerate().rev() {
            if let Some(m) = self.submitter.receipt(&tx.hash).await? {
                mined = Some((i, m));
                break;
            }
        }
        let depth = self.submitter.confirmations();
        match mined {
            Some((i, Mined { block, success }))
                if success && self.submitter.is_to_self(&payout.txs[i]) =>
            {
                let head = self.submitter.head().await?;
                Ok(if head >= block + depth {
                    PayoutStatus::Cancelled { block }
                } else {
                    PayoutStatus::Pending
                })
            }
            Some((_, Mined { block, success })) if success => {
                let head = self.submitter.head().await?;
                Ok(if head >= block + depth {
                    PayoutStatus::Final { block }
                } else {
                    PayoutStatus::Included { block }
                })
            }
            Some((i, Mined { block, .. })) => {
                let head = self.submitter.head().await?;
                if head < block + depth {
                    // A reverted transaction may still be reorged out: wait until it is final.
                    return Ok(PayoutStatus::Pending);
                }
                let final_block = head - depth;
                if self
                    .submitter
                    .settled_at(transfer_id, Some(final_block))
                    .await?
                {
                    // Paid by another transaction (a node that kept no record of it).
                    return Ok(PayoutStatus::Final { block: 0 });
                }
                if self.submitter.settled_at(transfer_id, Some(head)).await? {
                    // Paid by another transaction not yet final: wait for it.
                    return Ok(PayoutStatus::Pending);
                }
                let reason = self
                    .submitter
                    .revert_reason(&payout.txs[i], block)
                    .await
                    .unwrap_or_else(|| "reverted".into());
                Ok(PayoutStatus::Refused {
                    reason: format!(
                        "escrow refused the {}: reverted in block {block}: {reason}",
                        kind.noun()
                    ),
                })
            }
            None => {
                let head = self.submitter.head().await?;
                let final_block = head.saturating_sub(depth);
                if self.submitter.mined_nonce_at(final_block).await? > payout.nonce {
                    // The nonce is used, final, by a transaction that is not one of ours (the key
                    // was used elsewhere): this payout can never be mined.
                    if self
                        .submitter
                        .settled_at(transfer_id, Some(final_block))
                        .await?
                    {
                        return Ok(PayoutStatus::Final { block: 0 });
                    }
                    if cancel {
                        return Ok(PayoutStatus::Cancelled { block: 0 });
                    }
                    self.restart(store, transfer, payout, now).await?;
                    return Ok(PayoutStatus::Pending);
                }
                let latest = payout.latest();
                if cancel && !self.submitter.is_to_self(latest) {
                    let cancellation = self.submitter.cancellation(latest, now).await?;
                    store
                        .add_evm_replacement(payout.delivery_id, &cancellation)
                        .await?;
                    tracing::warn!(%transfer, old = %latest.hash, new = %cancellation.hash, nonce = payout.nonce, "deposit retracted by a reorg: pending payout cancelled with a transfer to ourselves");
                    if let Err(e) = self.submitter.broadcast(&cancellation).await {
                        tracing::warn!(tx = %cancellation.hash, error = %e, "cancellation recorded, not yet accepted; re-sent next pass");
                    }
                    return Ok(PayoutStatus::Pending);
                }
                let replaceable = payout.txs.len() <= REPLACEMENTS_MAX;
                if now - latest.recorded_at >= bump_after {
                    // Waiting long: perhaps behind a nonce that nothing will ever use.
                    self.fill_gaps_below(store, payout.nonce, now).await?;
                }
                if replaceable && now - latest.recorded_at >= bump_after {
                    let replacement = self.submitter.replacement(latest, now).await?;
                    store
                        .add_evm_replacement(payout.delivery_id, &replacement)
                        .await?;
                    tracing::warn!(old = %latest.hash, new = %replacement.hash, nonce = payout.nonce, "pending payout replaced at higher fees");
                    if let Err(e) = self.submitter.broadcast(&replacement).await {
                        tracing::warn!(tx = %replacement.hash, error = %e, "replacement recorded, not yet accepted; re-sent next pass");
                    }
                } else if let Err(e) = self.submitter.broadcast(latest).await {
                    tracing::debug!(tx = %latest.hash, error = %e, "re-broadcast of a pending payout not accepted");
                }
                Ok(PayoutStatus::Pending)
            }
        }
    }

    /// Pays `payout` again under a fresh nonce, recorded before it is broadcast: its own nonce
    /// was taken by a transaction that is not ours.
    async fn restart(
        &self,
        store: &Store,
        transfer: &str,
        payout: &EvmPayout,
        now: DateTime<Utc>,
    ) -> Result<(), TransferError> {
        self.nonces.advance_to(self.submitter.mined_nonce().await?);
        let nonce = self.nonces.take();
        let tx = match self.submitter.with_nonce(payout.latest(), nonce, now).await {
            Ok(tx) => tx,
            Err(e) => {
                self.nonces.give_back(nonce);
                return Err(e.into());
            }
        };
        if let Err(e) = store
            .restart_evm_payout(transfer, &self.chain, &self.signer, nonce, &tx)
            .await
        {
            self.give_back_unrecorded(store, nonce).await;
            return Err(e.into());
        }
        tracing::warn!(%transfer, old_nonce = payout.nonce, nonce, tx = %tx.hash, "payout's nonce was used by another transaction; paying under a new nonce");
        if let Err(e) = self.submitter.broadcast(&tx).await {
            tracing::warn!(tx = %tx.hash, error = %e, "payout recorded, not yet accepted; re-sent next pass");
        }
        Ok(())
    }

    /// After a failed write of a payout with `nonce`: gives the nonce back only when it is surely
    /// not recorded (the write may have committed before the error). A recorded nonce handed out
    /// twice would be refused by the database forever after; one kept out by doubt is filled at
    /// the next start.
    async fn give_back_unrecorded(&self, store: &Store, nonce: u64) {
        let recorded = store
            .evm_payout_nonces_from(&self.chain, &self.signer, nonce)
            .await
            .map(|ns| ns.first() == Some(&nonce));
        if matches!(recorded, Ok(false)) {
            self.nonces.give_back(nonce);
        }
    }

    /// Fills, with zero-value transfers to ourselves, every nonce below `nonce` that the chain has
    /// not mined, no payout recorded and the authority does not hold for reuse: one kept back
    /// after a write whose outcome was unknown. Without this the payouts above it would wait until
    /// the next start.
    async fn fill_gaps_below(
        &self,
        store: &Store,
        nonce: u64,
        now: DateTime<Utc>,
    ) -> Result<(), TransferError> {
        let mined = self.submitter.mined_nonce().await?;
        if mined >= nonce {
            return Ok(());
        }
        let recorded = store
            .evm_payout_nonces_from(&self.chain, &self.signer, mined)
            .await?;
        for gap in (mined..nonce)
            .filter(|n| recorded.binary_search(n).is_err() && !self.nonces.is_returned(*n))
        {
            let filler = self.submitter.filler(gap, now).await?;
            match self.submitter.broadcast(&filler).await {
                Ok(()) => {
                    tracing::warn!(chain = %self.chain, nonce = gap, tx = %filler.hash, "nonce gap filled with a zero-value transfer")
                }
                Err(e) => {
                    tracing::error!(chain = %self.chain, nonce = gap, error = %e, "nonce gap not filled; payouts above it wait")
                }
            }
        }
        Ok(())
    }
}

/// The escrow's id of a transfer: keccak-256 of Meridian's transfer id.
pub fn escrow_transfer_id(transfer_id: &str) -> [u8; 32] {
    ethers::utils::keccak256(transfer_id.as_bytes())
}

#[async_trait]
impl PayoutRail for EvmPayouts {
    async fn release(
        &self,
        store: &Store,
        t: &Transfer,
        m: TransferMove,
        now: DateTime<Utc>,
    ) -> Result<Started, TransferError> {
        let call = match release_args(t) {
            Ok((token, recipient, amount)) => EscrowCall::Release {
                transfer_id: escrow_transfer_id(&t.id),
                token,
                recipient,
                amount,
            },
            Err(why) => return Ok(Started::Impossible(why)),
        };
        self.start_payout(store, &m, &call, now).await
    }

    async fn refund(
        &self,
        store: &Store,
        t: &Transfer,
        m: TransferMove,
        now: DateTime<Utc>,
    ) -> Result<Started, TransferError> {
        let call = match refund_args(store, t).await? {
            Ok(lock_nonce) => EscrowCall::Refund {
                transfer_id: escrow_transfer_id(&t.id),
                lock_nonce,
            },
            Err(why) => return Ok(Started::Impossible(why)),
        };
        self.start_payout(store, &m, &call, now).await
    }

    async fn status(
        &self,
        store: &Store,
        t: &Transfer,
        kind: PayoutKind,
        cancel: bool,
        now: DateTime<Utc>,
        bump_after: chrono::Duration,
    ) -> Result<PayoutStatus, TransferError> {
        let id = escrow_transfer_id(&t.id);
        match store.evm_payout(&t.id, &self.chain).await? {
            Some(p) => {
                self.follow(store, &t.id, &p, id, kind, cancel, now, bump_after)
                    .await
            }
            // Found on chain without a record of ours: included while the escrow says so at the
            // latest block, final once it says so at a final block; otherwise nothing is known
            // to be paid (a reorg may have taken it away) and the transfer waits, counted stuck.
            None => Ok(match self.submitter.settled_on_chain(id).await? {
                (_, true) => PayoutStatus::Final { block: 0 },
                (true, false) => PayoutStatus::Included { block: 0 },
                (false, _) => PayoutStatus::Pending,
            }),
        }
    }
}

impl EvmPayouts {
    /// Starts `call` unless the escrow has settled the transfer already (a payout made without
    /// a record of ours is followed, never repeated).
    async fn start_payout(
        &self,
        store: &Store,
        m: &TransferMove,
        call: &EscrowCall,
        now: DateTime<Utc>,
    ) -> Result<Started, TransferError> {
        let transfer_id = match call {
            EscrowCall::Release { transfer_id, .. } | EscrowCall::Refund { transfer_id, .. } => {
                *transfer_id
            }
        };
        match self.submitter.settled_on_chain(transfer_id).await {
            Ok((true, _)) => return Ok(Started::FoundOnChain),
            Ok((false, _)) => {}
            Err(e) => {
                tracing::warn!(transfer = %m.id, error = %e, "cannot read the escrow; retrying next pass");
                return Ok(Started::NotNow);
            }
        }
        Ok(if self.begin(store, m, call, now).await? {
            Started::Recorded
        } else {
            Started::NotNow
        })
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
