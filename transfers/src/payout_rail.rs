//! One chain's way of paying out: the capabilities delivery needs from a destination (or, for a
//! refund, source) chain, whatever its family. A [`PayoutRail`] releases a settled transfer,
//! refunds a refused one, and says where a payout stands; the one delivery state machine
//! (`delivery`) decides every transfer move from those answers alone.
//!
//! Implemented by the escrow contract of EVM chains (`evm_delivery`) and by the escrow account
//! of Cosmos SDK and Substrate chains (`account_delivery`). Each keeps the exactly-once rule of
//! its family — sign, record (with the move into `delivering` or `refunding`, in one
//! transaction), broadcast — so a rail, not the state machine, writes the move that starts a
//! payout.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meridian_storage::{Store, TransferMove};
use meridian_types::{Transfer, TransferState};

use crate::TransferError;

/// Which payout a transfer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutKind {
    /// Pay the recipient on the destination chain (from `settled`).
    Release,
    /// Give the sender's lock back on the source chain (from `rejected`).
    Refund,
}

impl PayoutKind {
    /// The state a transfer is in while this payout is in flight.
    pub fn in_flight(self) -> TransferState {
        match self {
            PayoutKind::Release => TransferState::Delivering,
            PayoutKind::Refund => TransferState::Refunding,
        }
    }

    /// `release` or `refund`, for reasons and logs.
    pub fn noun(self) -> &'static str {
        match self {
            PayoutKind::Release => "release",
            PayoutKind::Refund => "refund",
        }
    }

    /// The payout a transfer in flight in `state` is waiting for.
    pub fn of_state(state: TransferState) -> PayoutKind {
        if state == TransferState::Refunding {
            PayoutKind::Refund
        } else {
            PayoutKind::Release
        }
    }
}

/// What starting a payout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Signed and recorded with the move into `delivering`/`refunding`, then broadcast (a failed
    /// broadcast is repaired by following it).
    Recorded,
    /// The chain shows the payout made already, by a transaction no record of ours knows (another
    /// node with this key, a run before payouts were recorded): it is followed, never repeated.
    FoundOnChain,
    /// It can never be paid on this chain (the asset, the recipient or the amount cannot be
    /// paid there): the transfer fails with this reason.
    Impossible(String),
    /// Not now (the chain could not be asked, or the transfer moved meanwhile); nothing was
    /// recorded and the next pass tries again.
    NotNow,
}

/// Where a payout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutStatus {
    /// Not in a final outcome yet (sent again or replaced as needed).
    Pending,
    /// Succeeded in `block`, not yet final; 0 when only the escrow's state shows it.
    Included {
        /// Block number.
        block: u64,
    },
    /// Succeeded in `block` and final; 0 when only the escrow's state shows it.
    Final {
        /// Block number.
        block: u64,
    },
    /// Its deposit is gone (a reorg retracted it) and the payout can never land: replaced by a
    /// transfer to ourselves (EVM), or expired unincluded (account chains). `block` is where that
    /// became final, 0 when unknown.
    Cancelled {
        /// Block number.
        block: u64,
    },
    /// Final and failed: the chain included the payout and refused it, or it could not be
    /// included in the attempts allowed. Nothing was paid.
    Refused {
        /// Why, as the transfer's history shows it: the transaction, the block and the chain's
        /// decoded reason.
        reason: String,
    },
}

/// How one chain pays out. See the module doc.
#[async_trait]
pub trait PayoutRail: Send + Sync {
    /// A delivery pass begins: forget what the last one learned of the chain.
    fn new_pass(&self) {}

    /// Starts the releases of settled transfers, each with its move into `delivering`: signs
    /// them (as few transactions as the chain allows: a batch pays many), records each payout
    /// with its moves in one transaction, then broadcasts. One answer per transfer, in order.
    async fn release(
        &self,
        store: &Store,
        batch: &[(Transfer, TransferMove)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Started>, TransferError>;

    /// Starts the refund of refused transfer `t`'s lock on its source chain, recorded with `m`
    /// (its move into `refunding`).
    async fn refund(
        &self,
        store: &Store,
        t: &Transfer,
        m: TransferMove,
        now: DateTime<Utc>,
    ) -> Result<Started, TransferError>;

    /// Where `t`'s payout of `kind` stands. A pending payout is broadcast again, replaced at
    /// higher fees once it has waited `bump_after`, or sent again once it expired unincluded;
    /// with `cancel` (its deposit was retracted by a reorg) it is made unable to land instead.
    /// A chain or RPC fault ([`TransferError::is_chain_fault`]) only delays the answer: the next
    /// pass asks again.
    async fn status(
        &self,
        store: &Store,
        t: &Transfer,
        kind: PayoutKind,
        cancel: bool,
        now: DateTime<Utc>,
        bump_after: chrono::Duration,
    ) -> Result<PayoutStatus, TransferError>;
}
