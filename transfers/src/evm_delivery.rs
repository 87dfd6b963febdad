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
use meridian_relayer::evm::{self, EscrowCall, EscrowRelease, EvmSubmitter, Mined, NonceAuthority};
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
    /// Most releases per escrow transaction.
    release_batch_max: usize,
    /// What the current pass learned already, shared by the members of a batch.
    memo: std::sync::Mutex<PassMemo>,
}

/// What one delivery pass learned already, so that the members of a batch share it instead of
/// each asking the chain again: the receipts looked up and the transactions re-broadcast.
/// Forgotten when the next pass begins ([`PayoutRail::new_pass`]).
#[derive(Default)]
struct PassMemo {
    receipts: std::collections::HashMap<String, Option<Mined>>,
    rebroadcast: std::collections::HashSet<String>,
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
            release_batch_max: 1,
            memo: std::sync::Mutex::default(),
        })
    }

    /// Pays up to `max` releases per escrow transaction (`releaseBatch`); 1 (the default) sends
    /// one transaction per release. Fewer when the chain's blocks cannot hold such a batch twice
    /// over (a transaction that can never be included would hold up every payout after it), and
    /// 1 when the escrow has no `releaseBatch` (deployed before it), each said in the log.
    pub async fn with_release_batch_max(mut self, max: u32) -> Result<EvmPayouts, TransferError> {
        let mut max = u64::from(max.max(1));
        if max > 1 && !self.submitter.supports_release_batch().await? {
            tracing::warn!(chain = %self.chain, "the escrow has no releaseBatch: one transaction per release");
            max = 1;
        }
        if max > 1 {
            let gas_limit = self.submitter.block_gas_limit().await?;
            let fits =
                (gas_limit / 2).saturating_sub(evm::BATCH_GAS_BASE) / evm::BATCH_GAS_PER_RELEASE;
            if fits < max {
                tracing::warn!(chain = %self.chain, configured = max, fits, gas_limit, "release_batch_max lowered to what half a block holds");
                max = fits.max(1);
            }
        }
        self.release_batch_max = usize::try_from(max).unwrap_or(1);
        Ok(self)
    }

    /// The submitter (escrow reads).
    pub fn submitter(&self) -> &EvmSubmitter {
        &self.submitter
    }

    /// Starts payout `call` for the transfers moved by `moves` (to `delivering` or `refunding`;
    /// several for a batch): takes a nonce, signs, records both with the moves, then broadcasts.
    /// `Ok(false)` when nothing was recorded (the chain could not be asked for fees, or a
    /// transfer moved meanwhile); the nonce is then given back.
    async fn begin(
        &self,
        store: &Store,
        moves: &[TransferMove],
        call: &EscrowCall,
        now: DateTime<Utc>,
    ) -> Result<bool, TransferError> {
        let first = moves.first().map_or("", |m| m.id.as_str());
        let nonce = self.nonces.take();
        let signed = match self.submitter.sign(call, nonce, now).await {
            Ok(s) => s,
            Err(e) => {
                self.nonces.give_back(nonce);
                tracing::warn!(transfer = %first, transfers = moves.len(), error = %e, "payout not signed; retrying next pass");
                return Ok(false);
            }
        };
        crate::failpoint::crash_point("evm-payout-signed");
        match store
            .start_evm_batch(moves, &self.chain, &self.signer, nonce, &signed)
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
                tracing::info!(transfer = %first, transfers = moves.len(), tx = %signed.hash, nonce, "payout sent");
            }
            Err(e) => {
                tracing::warn!(transfer = %first, transfers = moves.len(), tx = %signed.hash, nonce, error = %e, "payout recorded, not yet accepted by the node; re-sent next pass");
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
        t: &Transfer,
        payout: &EvmPayout,
        kind: PayoutKind,
        cancel: bool,
        now: DateTime<Utc>,
        bump_after: chrono::Duration,
    ) -> Result<PayoutStatus, TransferError> {
        let transfer = t.id.as_str();
        let transfer_id = escrow_transfer_id(transfer);
        let batch = payout.members > 1;
        let retracted = cancel;
        // A pending batch pays other transfers too: it is not cancelled for one retracted
        // deposit (that transfer, if the batch is mined, is a recorded reorg loss; see
        // `reorg_guard`). Once the batch cannot pay it any more, it is not paid again.
        let cancel = cancel && !batch;
        let mut mined: Option<(usize, Mined)> = None;
        for (i, tx) in payout.txs.iter().enumerate().rev() {
            if let Some(m) = self.receipt_in_pass(&tx.hash).await? {
                mined = Some((i, m));
                break;
            }
        }
        let depth = self.submitter.confirmations();
        match mined {
            Some((i, Mined { block, success, .. }))
                if success && self.submitter.is_to_self(&payout.txs[i]) =>
            {
                let head = self.submitter.head().await?;
                Ok(if head >= block + depth {
                    PayoutStatus::Cancelled { block }
                } else {
                    PayoutStatus::Pending
                })
            }
            Some((_, m)) if m.success && batch => {
                self.batch_outcome(store, t, payout, &m, retracted, now)
                    .await
            }
            Some((_, Mined { block, success, .. })) if success => {
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
                if batch {
                    // The whole batch reverted (out of gas, an escrow without releaseBatch):
                    // nothing in it was paid, and its nonce is spent — each member is paid by a
                    // release of its own, whose own outcome decides.
                    if retracted {
                        return Ok(PayoutStatus::Cancelled { block });
                    }
                    self.restart(store, t, payout, "its batch reverted", now)
                        .await?;
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
                if self.submitter.mined_nonce_at(final_block).await? > payout.nonce
                    && !self.any_mined_now(payout).await?
                {
                    // The nonce is used, final, by a transaction that is not one of ours (the key
                    // was used elsewhere): this payout can never be mined.
                    if self
                        .submitter
                        .settled_at(transfer_id, Some(final_block))
                        .await?
                    {
                        return Ok(PayoutStatus::Final { block: 0 });
                    }
                    if retracted {
                        return Ok(PayoutStatus::Cancelled { block: 0 });
                    }
                    self.restart(
                        store,
                        t,
                        payout,
                        "earlier payout's nonce used by another transaction",
                        now,
                    )
                    .await?;
                    return Ok(PayoutStatus::Pending);
                }
                let latest = payout.latest();
                if cancel && !self.submitter.is_to_self(latest) {
                    let cancellation = self.submitter.cancellation(latest, now).await?;
                    if !store
                        .add_evm_replacement(payout.delivery_id, &latest.hash, &cancellation)
                        .await?
                    {
                        return Ok(PayoutStatus::Pending);
                    }
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
                    // Another member of the same batch may have replaced it first this pass.
                    if !store
                        .add_evm_replacement(payout.delivery_id, &latest.hash, &replacement)
                        .await?
                    {
                        return Ok(PayoutStatus::Pending);
                    }
                    tracing::warn!(old = %latest.hash, new = %replacement.hash, nonce = payout.nonce, "pending payout replaced at higher fees");
                    // Sent just below: the batch's other members need not send it again.
                    self.first_broadcast_in_pass(&replacement.hash);
                    if let Err(e) = self.submitter.broadcast(&replacement).await {
                        tracing::warn!(tx = %replacement.hash, error = %e, "replacement recorded, not yet accepted; re-sent next pass");
                    }
                } else if self.first_broadcast_in_pass(&latest.hash) {
                    if let Err(e) = self.submitter.broadcast(latest).await {
                        tracing::debug!(tx = %latest.hash, error = %e, "re-broadcast of a pending payout not accepted");
                    }
                }
                Ok(PayoutStatus::Pending)
            }
        }
    }

    /// Pays `t` again under a fresh nonce, recorded before it is broadcast: its payout can never
    /// pay it (`why`: its nonce was taken by a transaction that is not ours, or its batch
    /// reverted or passed it over). A batch member is paid by a release of its own (each member
    /// restarts for itself; the escrow pays each id once whatever happens).
    async fn restart(
        &self,
        store: &Store,
        t: &Transfer,
        payout: &EvmPayout,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TransferError> {
        let transfer = t.id.as_str();
        self.nonces.advance_to(self.submitter.mined_nonce().await?);
        let nonce = self.nonces.take();
        let signed = if payout.members > 1 {
            match release_args(t) {
                Ok((token, recipient, amount)) => {
                    let call = EscrowCall::Release {
                        transfer_id: escrow_transfer_id(transfer),
                        token,
                        recipient,
                        amount,
                    };
                    self.submitter.sign(&call, nonce, now).await
                }
                Err(why) => {
                    self.nonces.give_back(nonce);
                    return Err(TransferError::Corrupt {
                        id: transfer.to_owned(),
                        field: "release",
                        value: why,
                    });
                }
            }
        } else {
            self.submitter.with_nonce(payout.latest(), nonce, now).await
        };
        let tx = match signed {
            Ok(tx) => tx,
            Err(e) => {
                self.nonces.give_back(nonce);
                return Err(e.into());
            }
        };
        if let Err(e) = store
            .restart_evm_payout(transfer, &self.chain, &self.signer, nonce, &tx, why)
            .await
        {
            self.give_back_unrecorded(store, nonce).await;
            return Err(e.into());
        }
        tracing::warn!(%transfer, old_nonce = payout.nonce, nonce, tx = %tx.hash, %why, "paying under a new nonce");
        if let Err(e) = self.submitter.broadcast(&tx).await {
            tracing::warn!(tx = %tx.hash, error = %e, "payout recorded, not yet accepted; re-sent next pass");
        }
        Ok(())
    }

    /// Where one transfer of a mined, successful batch stands: released in it (included, final
    /// at depth); refused in it — failed once that is final and the escrow has not settled the
    /// transfer some other way; or, when the batch could not decide it (no reason: its token
    /// call ran out of gas; no event at all), paid by a release of its own.
    async fn batch_outcome(
        &self,
        store: &Store,
        t: &Transfer,
        payout: &EvmPayout,
        m: &Mined,
        retracted: bool,
        now: DateTime<Utc>,
    ) -> Result<PayoutStatus, TransferError> {
        let transfer_id = escrow_transfer_id(&t.id);
        let depth = self.submitter.confirmations();
        let head = self.submitter.head().await?;
        let is_final = head >= m.block + depth;
        if m.released.contains(&transfer_id) {
            return Ok(if is_final {
                PayoutStatus::Final { block: m.block }
            } else {
                PayoutStatus::Included { block: m.block }
            });
        }
        if !is_final {
            return Ok(PayoutStatus::Pending);
        }
        if self
            .submitter
            .settled_at(transfer_id, Some(head - depth))
            .await?
        {
            // Paid by another transaction (a restart, a node without a record).
            return Ok(PayoutStatus::Final { block: 0 });
        }
        if self.submitter.settled_at(transfer_id, Some(head)).await? {
            // Paid by another transaction not yet final: wait for it.
            return Ok(PayoutStatus::Pending);
        }
        if retracted {
            return Ok(PayoutStatus::Cancelled { block: m.block });
        }
        match m.refused.iter().find(|(id, _)| *id == transfer_id) {
            Some((_, reason)) if !reason.is_empty() => Ok(PayoutStatus::Refused {
                reason: format!(
                    "escrow refused the release in the batch of block {}: {reason}",
                    m.block
                ),
            }),
            found => {
                let why = if found.is_some() {
                    "its batch refused it without a reason"
                } else {
                    "its batch neither released nor refused it"
                };
                tracing::warn!(transfer = %t.id, block = m.block, %why, "paying it by a release of its own");
                self.restart(store, t, payout, why, now).await?;
                Ok(PayoutStatus::Pending)
            }
        }
    }

    /// The receipt of `hash`, asked of the chain once per pass (a batch's members share it).
    async fn receipt_in_pass(&self, hash: &str) -> Result<Option<Mined>, TransferError> {
        let memo = |f: &mut dyn FnMut(&mut PassMemo)| {
            if let Ok(mut m) = self.memo.lock() {
                f(&mut m);
            }
        };
        let mut known = None;
        memo(&mut |m| known = m.receipts.get(hash).cloned());
        if let Some(receipt) = known {
            return Ok(receipt);
        }
        let receipt = self.submitter.receipt(hash).await?;
        memo(&mut |m| {
            m.receipts.insert(hash.to_owned(), receipt.clone());
        });
        Ok(receipt)
    }

    /// Whether one of `payout`'s transactions is mined, asked of the chain now (not from this
    /// pass's memo, which may predate it): before deciding its nonce was used by someone else.
    async fn any_mined_now(&self, payout: &EvmPayout) -> Result<bool, TransferError> {
        for tx in &payout.txs {
            if self.submitter.receipt(&tx.hash).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `hash` has not been re-broadcast yet this pass (and is now counted as such).
    fn first_broadcast_in_pass(&self, hash: &str) -> bool {
        self.memo
            .lock()
            .map_or(true, |mut m| m.rebroadcast.insert(hash.to_owned()))
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
    fn new_pass(&self) {
        if let Ok(mut m) = self.memo.lock() {
            *m = PassMemo::default();
        }
    }

    /// Releases as few escrow transactions as `release_batch_max` allows: transfers the escrow
    /// settled already (without a record of ours) are only followed, the others go out in
    /// batches (`releaseBatch`), one transaction each, all in flight at once.
    async fn release(
        &self,
        store: &Store,
        batch: &[(Transfer, TransferMove)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Started>, TransferError> {
        let mut out = vec![Started::NotNow; batch.len()];
        let mut ready: Vec<(usize, EscrowRelease)> = Vec::new();
        for (i, (t, _)) in batch.iter().enumerate() {
            let (token, recipient, amount) = match release_args(t) {
                Ok(args) => args,
                Err(why) => {
                    out[i] = Started::Impossible(why);
                    continue;
                }
            };
            let transfer_id = escrow_transfer_id(&t.id);
            match self.submitter.settled_on_chain(transfer_id).await {
                Ok((true, _)) => out[i] = Started::FoundOnChain,
                Ok((false, _)) => ready.push((
                    i,
                    EscrowRelease {
                        transfer_id,
                        token,
                        recipient,
                        amount,
                    },
                )),
                Err(e) => {
                    tracing::warn!(transfer = %t.id, error = %e, "cannot read the escrow; retrying next pass");
                }
            }
        }
        for chunk in ready.chunks(self.release_batch_max) {
            let call = match chunk {
                [(_, r)] => EscrowCall::Release {
                    transfer_id: r.transfer_id,
                    token: r.token,
                    recipient: r.recipient,
                    amount: r.amount,
                },
                _ => EscrowCall::ReleaseBatch(chunk.iter().map(|(_, r)| *r).collect()),
            };
            let moves: Vec<TransferMove> = chunk.iter().map(|(i, _)| batch[*i].1.clone()).collect();
            let started = if self.begin(store, &moves, &call, now).await? {
                Started::Recorded
            } else {
                Started::NotNow
            };
            for (i, _) in chunk {
                out[*i] = started.clone();
            }
        }
        Ok(out)
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
        self.start_refund(store, &m, &call, now).await
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
                self.follow(store, t, &p, kind, cancel, now, bump_after)
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
    /// Starts refund `call` unless the escrow has settled the transfer already (a payout made
    /// without a record of ours is followed, never repeated).
    async fn start_refund(
        &self,
        store: &Store,
        m: &TransferMove,
        call: &EscrowCall,
        now: DateTime<Utc>,
    ) -> Result<Started, TransferError> {
        let EscrowCall::Refund { transfer_id, .. } = call else {
            return Err(TransferError::Ledger(format!(
                "transfer {}: a refund started with {call:?}",
                m.id
            )));
        };
        match self.submitter.settled_on_chain(*transfer_id).await {
            Ok((true, _)) => return Ok(Started::FoundOnChain),
            Ok((false, _)) => {}
            Err(e) => {
                tracing::warn!(transfer = %m.id, error = %e, "cannot read the escrow; retrying next pass");
                return Ok(Started::NotNow);
            }
        }
        Ok(
            if self
                .begin(store, std::slice::from_ref(m), call, now)
                .await?
            {
                Started::Recorded
            } else {
                Started::NotNow
            },
        )
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
