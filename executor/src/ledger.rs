//! The ledger: accounts, balances and the posting rules.
//!
//! Static account data ([`AccountMeta`]: asset, kind, flags) is kept apart from the balances so
//! that parallel workers can read it freely while each mutates only the balances of the accounts
//! the scheduler gave it. The posting rules live in one function, [`apply_settlement`], used by
//! both the sequential oracle and the parallel executor, so the two cannot drift apart.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub(crate) use crate::id_table::IdSet;
use crate::posting::{
    Posting, PostingError, PostingId, Settlement, SettlementError, SettlementResult,
};

/// Dense account index; the database row id maps onto it.
pub type AccountIx = u32;
/// Dense asset index; the CAIP-19 id maps onto it outside the executor.
pub type AssetCode = u32;

/// Balance rules of an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AccountFlags(u8);

impl AccountFlags {
    /// No rule: the account may go either way (fee, liquidity and suspense accounts).
    pub const NONE: AccountFlags = AccountFlags(0);
    /// Debits (posted + pending) may never exceed posted credits: no overdraft.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: AccountFlags = AccountFlags(1);
    /// Credits (posted + pending) may never exceed posted debits.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: AccountFlags = AccountFlags(2);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: AccountFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set. Such an account has no state-dependent rule, so postings to it
    /// commute and are applied as deltas by the parallel executor.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets of flags.
    pub fn union(self, other: AccountFlags) -> AccountFlags {
        AccountFlags(self.0 | other.0)
    }
}

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A customer.
    User,
    /// Funds held by a chain's bridge escrow.
    Escrow,
    /// One side of a corridor's liquidity.
    Liquidity,
    /// Fees collected.
    Fee,
    /// Amounts awaiting investigation.
    Suspense,
}

/// Static data of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountMeta {
    /// The only asset it holds.
    pub asset: AssetCode,
    /// Its role.
    pub kind: AccountKind,
    /// Its balance rules.
    pub flags: AccountFlags,
}

/// Posted and pending totals of an account. Aligned to a cache line, so that touching an account
/// costs one line, never two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(align(64))]
pub struct Balances {
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Sum of reserved (pending) debits.
    pub debits_pending: u128,
    /// Sum of reserved (pending) credits.
    pub credits_pending: u128,
}

/// State of a two-phase transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingState {
    /// Reserved, awaiting post or void.
    Open,
    /// Completed.
    Posted,
    /// Cancelled.
    Voided,
    /// Timed out and released.
    Expired,
}

/// A two-phase transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingRecord {
    /// Account debited.
    pub debit: AccountIx,
    /// Account credited.
    pub credit: AccountIx,
    /// Amount reserved.
    pub amount: u128,
    /// Batch clock at which it expires.
    pub timeout: u64,
    /// Where it stands.
    pub state: PendingState,
}

/// Why a ledger operation outside a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The ledger is full (u32 accounts).
    #[error("too many accounts")]
    TooManyAccounts,
    /// An invariant is broken: a bug; stop.
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
}

/// A cheap hasher for random 128-bit ids (SipHash would dominate the posting cost).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (folded ^ (folded >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Hash map keyed by posting id.
pub type IdMap<V> = HashMap<PostingId, V, BuildHasherDefault<IdHasher>>;

/// Shards of the id tables: the executor's id pass gives each worker its own shards, so ids are
/// inserted in parallel with no lock and no shared cache line.
pub(crate) const ID_SHARDS: usize = 16;

pub(crate) fn shard_of(id: PostingId) -> usize {
    (crate::id_table::mix(id) >> 60) as usize % ID_SHARDS
}

/// Every posting id ever accepted, and every two-phase transfer. The parallel executor inserts a
/// batch's ids before executing it and takes back those of failed settlements afterwards;
/// pending records are read concurrently during a round and written between rounds.
#[derive(Debug)]
pub(crate) struct IdTables {
    pub(crate) ids: Vec<IdSet>,
    pending: IdMap<PendingRecord>,
}

impl IdTables {
    fn new() -> IdTables {
        IdTables {
            ids: (0..ID_SHARDS).map(|_| IdSet::default()).collect(),
            pending: IdMap::default(),
        }
    }

    pub(crate) fn contains(&self, id: PostingId) -> bool {
        self.ids[shard_of(id)].contains(id)
    }

    pub(crate) fn insert(&mut self, id: PostingId) {
        self.ids[shard_of(id)].insert(id);
    }

    pub(crate) fn remove(&mut self, id: PostingId) {
        self.ids[shard_of(id)].remove(id);
    }

    pub(crate) fn pending(&self, id: PostingId) -> Option<PendingRecord> {
        self.pending.get(&id).copied()
    }

    pub(crate) fn set_pending(&mut self, id: PostingId, rec: PendingRecord) {
        self.pending.insert(id, rec);
    }

    fn len(&self) -> usize {
        self.ids.iter().map(|s| s.len()).sum()
    }
}

/// The ledger state.
#[derive(Debug)]
pub struct Ledger {
    pub(crate) metas: Vec<AccountMeta>,
    pub(crate) balances: Vec<Balances>,
    pub(crate) tables: IdTables,
    /// One bit per account: set when it has no balance flag (a delta account). Compact, so the
    /// scheduler classifies accesses from L2 instead of missing cache on `metas`.
    pub(crate) delta_bits: Vec<u64>,
    /// Upper bound on every balance field; while `bound + batch total` fits in u128 no posting of
    /// the batch can overflow, which is what lets delta accounts skip overflow checks.
    pub(crate) balance_bound: u128,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger {
            metas: Vec::new(),
            balances: Vec::new(),
            tables: IdTables::new(),
            delta_bits: Vec::new(),
            balance_bound: 0,
        }
    }

    /// Opens an account and returns its index.
    pub fn open_account(&mut self, meta: AccountMeta) -> Result<AccountIx, LedgerError> {
        let ix = AccountIx::try_from(self.metas.len()).map_err(|_| LedgerError::TooManyAccounts)?;
        let grows = self.balances.len() == self.balances.capacity();
        self.metas.push(meta);
        self.balances.push(Balances::default());
        if grows {
            advise_huge_pages(self.balances.spare_capacity_mut());
            advise_huge_pages(&self.balances);
            advise_huge_pages(&self.metas);
        }
        let (word, bit) = (ix as usize / 64, ix % 64);
        if word >= self.delta_bits.len() {
            self.delta_bits.push(0);
        }
        if meta.flags.is_empty() {
            self.delta_bits[word] |= 1 << bit;
        }
        Ok(ix)
    }

    /// Restores an account with stored balances (loading from the database).
    pub fn restore_account(
        &mut self,
        meta: AccountMeta,
        balances: Balances,
    ) -> Result<AccountIx, LedgerError> {
        let ix = self.open_account(meta)?;
        self.balances[ix as usize] = balances;
        let max = balances
            .debits_posted
            .max(balances.credits_posted)
            .max(balances.debits_pending)
            .max(balances.credits_pending);
        self.balance_bound = self.balance_bound.max(max);
        Ok(ix)
    }

    /// Whether the account has no balance flag (postings to it commute).
    #[inline]
    pub(crate) fn is_delta(bits: &[u64], ix: AccountIx) -> bool {
        bits.get(ix as usize / 64)
            .is_some_and(|w| w & (1 << (ix % 64)) != 0)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// Whether there is no account.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Static data of an account.
    pub fn meta(&self, ix: AccountIx) -> Option<&AccountMeta> {
        self.metas.get(ix as usize)
    }

    /// Balances of an account.
    pub fn balances(&self, ix: AccountIx) -> Option<&Balances> {
        self.balances.get(ix as usize)
    }

    /// A two-phase transfer by id.
    pub fn pending(&self, id: PostingId) -> Option<PendingRecord> {
        self.tables.pending(id)
    }

    /// Whether a posting id was accepted before.
    pub fn contains_posting(&self, id: PostingId) -> bool {
        self.tables.contains(id)
    }

    /// Number of posting ids accepted so far.
    pub fn postings_len(&self) -> usize {
        self.tables.len()
    }

    /// Releases every open pending transfer whose timeout is at or before `now`. Runs at the start
    /// of each batch, in both execution paths, so expiry is deterministic.
    pub(crate) fn expire_pending(&mut self, now: u64) -> Vec<PostingId> {
        let mut expired: Vec<PostingId> = self
            .tables
            .pending
            .iter()
            .filter(|(_, r)| r.state == PendingState::Open && r.timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in &expired {
            if let Some(r) = self.tables.pending.get_mut(id) {
                self.balances[r.debit as usize].debits_pending -= r.amount;
                self.balances[r.credit as usize].credits_pending -= r.amount;
                r.state = PendingState::Expired;
            }
        }
        expired
    }

    /// Sizes the posting-id table for `additional` more ids, so that it does not grow (allocate,
    /// fault in and rehash a fresh table) in the middle of a batch. A node calls it once at start.
    pub fn reserve_postings(&mut self, additional: usize) {
        // Ids spread evenly over the shards; an eighth of slack covers the unevenness.
        let per_shard = additional / ID_SHARDS + additional / ID_SHARDS / 8 + 64;
        for set in &mut self.tables.ids {
            set.reserve(per_shard);
        }
    }

    /// Records a posting id accepted in an earlier run (loaded from storage), so a repeat is
    /// refused with `IdExists`.
    pub fn mark_posting_known(&mut self, id: PostingId) {
        self.tables.insert(id);
    }

    /// Restores an open two-phase transfer loaded from storage (its reservation is already in
    /// the restored balances).
    pub fn restore_pending(&mut self, id: PostingId, record: PendingRecord) {
        self.tables.insert(id);
        self.tables.set_pending(id, record);
    }

    /// Checks the ledger's invariants: per asset, debits equal credits (posted and pending); no
    /// account breaks its flags.
    pub fn check_invariants(&self) -> Result<(), LedgerError> {
        // Per-asset totals can exceed u128 even when no single balance does: sum with a carry.
        let mut per_asset: HashMap<AssetCode, [(u64, u128); 4]> = HashMap::new();
        let add = |t: &mut (u64, u128), v: u128| {
            let (sum, carry) = t.1.overflowing_add(v);
            *t = (t.0 + u64::from(carry), sum);
        };
        for (ix, (m, b)) in self.metas.iter().zip(&self.balances).enumerate() {
            let t = per_asset.entry(m.asset).or_default();
            add(&mut t[0], b.debits_posted);
            add(&mut t[1], b.credits_posted);
            add(&mut t[2], b.debits_pending);
            add(&mut t[3], b.credits_pending);
            if m.flags
                .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && b.debits_posted.saturating_add(b.debits_pending) > b.credits_posted
            {
                return Err(LedgerError::Invariant(format!(
                    "account {ix} debits exceed credits"
                )));
            }
            if m.flags
                .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && b.credits_posted.saturating_add(b.credits_pending) > b.debits_posted
            {
                return Err(LedgerError::Invariant(format!(
                    "account {ix} credits exceed debits"
                )));
            }
        }
        for (asset, t) in per_asset {
            if t[0] != t[1] || t[2] != t[3] {
                return Err(LedgerError::Invariant(format!(
                    "asset {asset}: debits {t:?} do not balance"
                )));
            }
        }
        Ok(())
    }

    /// A comparable snapshot of every balance (for tests and the oracle comparison).
    pub fn balances_snapshot(&self) -> Vec<Balances> {
        self.balances.clone()
    }
}

/// Asks the kernel to back `v`'s buffer with transparent huge pages. Random access over a large
/// account array otherwise spends much of its time in page walks; with THP in `madvise` mode (the
/// common default) nothing happens without this hint. A no-op elsewhere or on failure.
pub(crate) fn advise_huge_pages<T>(v: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = std::mem::size_of_val(v);
        if bytes < HUGE {
            return;
        }
        let start = v.as_ptr() as usize;
        let aligned = start.div_ceil(HUGE) * HUGE;
        let end = (start + bytes) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: the range lies inside `v`'s live allocation; MADV_HUGEPAGE only changes how
            // the kernel backs it, never its contents.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
}

/// Which balance field a delta changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    DebitsPosted,
    CreditsPosted,
    DebitsPending,
    CreditsPending,
}

/// A change to a delta (flag-less) account, applied after its round by the parallel executor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delta {
    pub ix: AccountIx,
    pub field: Field,
    pub amount: u128,
    pub add: bool,
}

impl Balances {
    fn field_mut(&mut self, f: Field) -> &mut u128 {
        match f {
            Field::DebitsPosted => &mut self.debits_posted,
            Field::CreditsPosted => &mut self.credits_posted,
            Field::DebitsPending => &mut self.debits_pending,
            Field::CreditsPending => &mut self.credits_pending,
        }
    }

    pub(crate) fn apply(&mut self, d: &Delta) {
        let v = self.field_mut(d.field);
        // The batch bound guarantees these never wrap; a wrap would be a scheduler bug.
        *v = if d.add {
            v.wrapping_add(d.amount)
        } else {
            v.wrapping_sub(d.amount)
        };
    }
}

/// What the posting rules need from an execution path.
pub(crate) trait LedgerView {
    /// Static data of all accounts.
    fn metas(&self) -> &[AccountMeta];
    /// Whether changes to this account are deferred as deltas (parallel path, flag-less account).
    fn is_delta(&self, ix: AccountIx) -> bool;
    /// Exclusive access to an account's balances (the scheduler guarantees exclusivity).
    fn balances_mut(&mut self, ix: AccountIx) -> &mut Balances;
    /// Whether a posting id was accepted before this settlement (its own postings aside).
    fn id_known(&self, id: PostingId) -> bool;
    /// A two-phase transfer as of the start of this settlement.
    fn pending(&self, id: PostingId) -> Option<PendingRecord>;
    /// Records the ids and pending changes of a settlement that succeeded.
    fn commit(&mut self, new_ids: &[PostingId], pending_ops: &[(PostingId, PendingRecord)]);
}

/// Per-worker buffers reused across settlements.
#[derive(Default)]
pub(crate) struct Scratch {
    undo: Vec<(AccountIx, Balances)>,
    pub deltas: Vec<Delta>,
    new_ids: Vec<PostingId>,
    pending_ops: Vec<(PostingId, PendingRecord)>,
}

impl Scratch {
    fn clear(&mut self) {
        self.undo.clear();
        self.deltas.clear();
        self.new_ids.clear();
        self.pending_ops.clear();
    }
}

fn touch<'a, V: LedgerView>(
    v: &'a mut V,
    scratch: &mut Scratch,
    ix: AccountIx,
) -> &'a mut Balances {
    if !scratch.undo.iter().any(|(i, _)| *i == ix) {
        let saved = *v.balances_mut(ix);
        scratch.undo.push((ix, saved));
    }
    v.balances_mut(ix)
}

/// Adds `amount` to `field` of account `ix`, checking its rules (`check` names the rule of the
/// side being increased), or defers it as a delta.
fn increase<V: LedgerView>(
    v: &mut V,
    s: &mut Scratch,
    ix: AccountIx,
    field: Field,
    amount: u128,
) -> Result<(), PostingError> {
    if v.is_delta(ix) {
        s.deltas.push(Delta {
            ix,
            field,
            amount,
            add: true,
        });
        return Ok(());
    }
    let flags = v.metas()[ix as usize].flags;
    let b = touch(v, s, ix);
    let slot = b.field_mut(field);
    *slot = slot.checked_add(amount).ok_or(PostingError::Overflow)?;
    match field {
        Field::DebitsPosted | Field::DebitsPending
            if flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) =>
        {
            let debits = b
                .debits_posted
                .checked_add(b.debits_pending)
                .ok_or(PostingError::Overflow)?;
            if debits > b.credits_posted {
                return Err(PostingError::ExceedsCredits);
            }
        }
        Field::CreditsPosted | Field::CreditsPending
            if flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) =>
        {
            let credits = b
                .credits_posted
                .checked_add(b.credits_pending)
                .ok_or(PostingError::Overflow)?;
            if credits > b.debits_posted {
                return Err(PostingError::ExceedsDebits);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Moves a reservation: `from` (a pending field) decreases, `to` (a posted field, or nothing for a
/// void) increases. Pending totals only ever hold what was reserved, so the decrease cannot wrap.
fn resolve<V: LedgerView>(
    v: &mut V,
    s: &mut Scratch,
    ix: AccountIx,
    from: Field,
    to: Option<Field>,
    amount: u128,
) -> Result<(), PostingError> {
    if v.is_delta(ix) {
        s.deltas.push(Delta {
            ix,
            field: from,
            amount,
            add: false,
        });
        if let Some(to) = to {
            s.deltas.push(Delta {
                ix,
                field: to,
                amount,
                add: true,
            });
        }
        return Ok(());
    }
    let b = touch(v, s, ix);
    let slot = b.field_mut(from);
    *slot = slot.checked_sub(amount).ok_or(PostingError::Overflow)?;
    if let Some(to) = to {
        let slot = b.field_mut(to);
        *slot = slot.checked_add(amount).ok_or(PostingError::Overflow)?;
    }
    Ok(())
}

fn id_taken<V: LedgerView>(v: &V, s: &Scratch, id: PostingId) -> bool {
    s.new_ids.contains(&id) || v.id_known(id)
}

fn pending_of<V: LedgerView>(v: &V, s: &Scratch, id: PostingId) -> Option<PendingRecord> {
    s.pending_ops
        .iter()
        .rev()
        .find(|(i, _)| *i == id)
        .map(|(_, r)| *r)
        .or_else(|| v.pending(id))
}

fn apply_posting<V: LedgerView>(
    v: &mut V,
    s: &mut Scratch,
    p: &Posting,
    now: u64,
) -> Result<(), PostingError> {
    match *p {
        Posting::Transfer {
            id,
            debit,
            credit,
            asset,
            amount,
            timeout,
        } => {
            if id == 0 {
                return Err(PostingError::ZeroId);
            }
            if amount == 0 {
                return Err(PostingError::ZeroAmount);
            }
            if debit == credit {
                return Err(PostingError::SameAccount);
            }
            let metas = v.metas();
            let dm = metas
                .get(debit as usize)
                .ok_or(PostingError::DebitAccountNotFound)?;
            let cm = metas
                .get(credit as usize)
                .ok_or(PostingError::CreditAccountNotFound)?;
            if dm.asset != asset || cm.asset != asset {
                return Err(PostingError::AssetMismatch);
            }
            if timeout.is_some_and(|t| t <= now) {
                return Err(PostingError::TimeoutInPast);
            }
            if id_taken(v, s, id) {
                return Err(PostingError::IdExists);
            }
            let (df, cf) = match timeout {
                Some(_) => (Field::DebitsPending, Field::CreditsPending),
                None => (Field::DebitsPosted, Field::CreditsPosted),
            };
            increase(v, s, debit, df, amount)?;
            increase(v, s, credit, cf, amount)?;
            s.new_ids.push(id);
            if let Some(timeout) = timeout {
                s.pending_ops.push((
                    id,
                    PendingRecord {
                        debit,
                        credit,
                        amount,
                        timeout,
                        state: PendingState::Open,
                    },
                ));
            }
            Ok(())
        }
        Posting::PostPending { id, pending_id } | Posting::VoidPending { id, pending_id } => {
            if id == 0 {
                return Err(PostingError::ZeroId);
            }
            if id_taken(v, s, id) {
                return Err(PostingError::IdExists);
            }
            let mut rec = pending_of(v, s, pending_id).ok_or(PostingError::PendingNotFound)?;
            match rec.state {
                PendingState::Posted => return Err(PostingError::PendingAlreadyPosted),
                PendingState::Voided => return Err(PostingError::PendingAlreadyVoided),
                PendingState::Expired => return Err(PostingError::PendingExpired),
                PendingState::Open if rec.timeout <= now => {
                    return Err(PostingError::PendingExpired)
                }
                PendingState::Open => {}
            }
            let post = matches!(p, Posting::PostPending { .. });
            resolve(
                v,
                s,
                rec.debit,
                Field::DebitsPending,
                post.then_some(Field::DebitsPosted),
                rec.amount,
            )?;
            resolve(
                v,
                s,
                rec.credit,
                Field::CreditsPending,
                post.then_some(Field::CreditsPosted),
                rec.amount,
            )?;
            rec.state = if post {
                PendingState::Posted
            } else {
                PendingState::Voided
            };
            s.new_ids.push(id);
            s.pending_ops.push((pending_id, rec));
            Ok(())
        }
    }
}

/// Applies one settlement atomically: all postings or none. On success, exclusive balances are
/// changed, ids and pending records are written, and delta-account changes are left in
/// `scratch.deltas` for the caller to apply.
pub(crate) fn apply_settlement<V: LedgerView>(
    v: &mut V,
    settlement: &Settlement,
    now: u64,
    scratch: &mut Scratch,
) -> SettlementResult {
    scratch.clear();
    if settlement.postings.is_empty() {
        return Err(SettlementError {
            posting: 0,
            error: PostingError::EmptySettlement,
        });
    }
    for (i, p) in settlement.postings.iter().enumerate() {
        if let Err(error) = apply_posting(v, scratch, p, now) {
            for (ix, saved) in scratch.undo.drain(..).rev() {
                *v.balances_mut(ix) = saved;
            }
            scratch.deltas.clear();
            return Err(SettlementError { posting: i, error });
        }
    }
    v.commit(&scratch.new_ids, &scratch.pending_ops);
    Ok(())
}
