//! What a batch is made of: settlements of linked postings, and their results.

/// Client-chosen posting id; unique forever (a repeat is refused, which makes retries safe).
pub type PostingId = u128;

/// One posting: a single-phase or pending transfer, or the resolution of a pending one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posting {
    /// Moves `amount` of `asset` from `debit` to `credit`. With `timeout`, it is a pending
    /// (two-phase) transfer reserved until posted, voided or expired at that time.
    Transfer {
        /// Unique id.
        id: PostingId,
        /// Account debited.
        debit: crate::AccountIx,
        /// Account credited.
        credit: crate::AccountIx,
        /// Asset both accounts must hold.
        asset: crate::AssetCode,
        /// Amount in base units, non-zero.
        amount: u128,
        /// Expiry (batch clock) of a pending transfer; `None` posts at once.
        timeout: Option<u64>,
    },
    /// Completes a pending transfer.
    PostPending {
        /// Unique id of this posting.
        id: PostingId,
        /// The pending transfer.
        pending_id: PostingId,
    },
    /// Cancels a pending transfer, releasing its reservation.
    VoidPending {
        /// Unique id of this posting.
        id: PostingId,
        /// The pending transfer.
        pending_id: PostingId,
    },
}

impl Posting {
    /// The posting's own id.
    pub fn id(&self) -> PostingId {
        match self {
            Posting::Transfer { id, .. }
            | Posting::PostPending { id, .. }
            | Posting::VoidPending { id, .. } => *id,
        }
    }

    /// The amount moved (zero for resolutions, which move the pending amount).
    pub fn amount(&self) -> u128 {
        match self {
            Posting::Transfer { amount, .. } => *amount,
            _ => 0,
        }
    }
}

/// Postings that succeed or fail together (TigerBeetle's linked chain). A cross-asset (FX)
/// settlement is one: the sender pays the corridor's source liquidity, the destination liquidity
/// pays the recipient, the fee goes to the fee account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settlement {
    /// The linked postings, applied in order.
    pub postings: Vec<Posting>,
}

impl Settlement {
    /// A settlement of one posting.
    pub fn single(p: Posting) -> Settlement {
        Settlement { postings: vec![p] }
    }
}

/// Why a posting was refused. The rest of its settlement is rolled back; the batch goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PostingError {
    /// A settlement needs at least one posting.
    #[error("settlement has no postings")]
    EmptySettlement,
    /// Id 0 is reserved.
    #[error("posting id must not be zero")]
    ZeroId,
    /// Amount 0 moves nothing and is refused.
    #[error("amount must not be zero")]
    ZeroAmount,
    /// Debit and credit are the same account.
    #[error("debit and credit account are the same")]
    SameAccount,
    /// The debit account does not exist.
    #[error("debit account not found")]
    DebitAccountNotFound,
    /// The credit account does not exist.
    #[error("credit account not found")]
    CreditAccountNotFound,
    /// An account holds another asset than the posting.
    #[error("account asset differs from the posting's asset")]
    AssetMismatch,
    /// The posting id was used before.
    #[error("posting id exists")]
    IdExists,
    /// A balance would exceed u128.
    #[error("balance would overflow")]
    Overflow,
    /// The debit account has "debits must not exceed credits" and too little balance.
    #[error("debits would exceed credits")]
    ExceedsCredits,
    /// The credit account has "credits must not exceed debits" and too little headroom.
    #[error("credits would exceed debits")]
    ExceedsDebits,
    /// No pending transfer has this id.
    #[error("pending transfer not found")]
    PendingNotFound,
    /// The pending transfer was posted already.
    #[error("pending transfer already posted")]
    PendingAlreadyPosted,
    /// The pending transfer was voided already.
    #[error("pending transfer already voided")]
    PendingAlreadyVoided,
    /// The pending transfer expired.
    #[error("pending transfer expired")]
    PendingExpired,
    /// A pending timeout at or before the batch clock.
    #[error("timeout is not in the future")]
    TimeoutInPast,
}

/// The first refused posting of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("posting {posting}: {error}")]
pub struct SettlementError {
    /// Index of the posting within its settlement.
    pub posting: usize,
    /// Why it was refused.
    pub error: PostingError,
}

/// Outcome of one settlement.
pub type SettlementResult = Result<(), SettlementError>;
