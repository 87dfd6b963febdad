//! The parallel executor: exactly the sequential result, computed on a thread pool.
//!
//! A batch runs in three phases:
//!
//! 1. **Id pass** (one worker per group of id-table shards): every posting id of the batch is
//!    inserted into the ledger's id table up front. An insert that finds the id already there
//!    marks a *repeat* — an id accepted before the batch, or used twice in it. This is the only
//!    id-table access a settlement costs, it runs on all workers, and settlements without a
//!    repeat need no id lookup at all while they execute.
//! 2. **Rounds**: a pass over the remaining settlements, in batch order, splits them into a
//!    *free* set — settlements that share no account having balance flags with any earlier
//!    remaining settlement — and the rest. Free settlements run concurrently (they are disjoint,
//!    and every earlier settlement they conflict with ran in an earlier round); accounts without
//!    balance flags (fee, liquidity, suspense) have no state-dependent rule, so their postings
//!    commute, never conflict and are applied as summed deltas after the round — a batch in
//!    which every settlement pays the same fee account still parallelises. Each round's pass is
//!    split over the workers with a one-bit-per-account map each (L2-resident for a million
//!    accounts); a later part's free settlements that touch an earlier part's accounts move to
//!    the rest.
//! 3. **Serial tail**: what no round freed — conflict chains, settlements with repeated ids,
//!    two-phase resolutions — runs one by one in batch order, after everything it depends on.
//!
//! Then ids of settlements that failed are taken back out of the id table. A batch that could
//! overflow a balance, or whose two-phase postings cannot be mapped to accounts up front, runs on
//! the sequential path instead; a batch that proves to be mostly one conflict chain skips the
//! rounds.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::id_table::prefetch;
use crate::ledger::{
    apply_settlement, shard_of, AccountMeta, Balances, Delta, IdMap, IdSet, IdTables, Ledger,
    LedgerView, PendingRecord, Scratch, ID_SHARDS,
};
use crate::posting::{Posting, Settlement, SettlementResult};
use crate::sequential;
use crate::{AccountIx, PostingId};

/// Batches smaller than this run sequentially: the phases would cost more than they save.
pub const PARALLEL_BATCH_MIN: usize = 256;
/// Free sets smaller than this run on the calling thread.
pub const PARALLEL_LEVEL_MIN: usize = 128;
/// Settlements looked at before deciding whether a round is worth it.
const PROBE_LEN: usize = 512;
/// How many settlements (or ids) ahead the executor asks for the cache lines it will need.
const PREFETCH_AHEAD: usize = 12;
/// Rounds at most; what remains after them runs in the serial tail.
const MAX_ROUNDS: usize = 8;

/// How a batch was executed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Rounds of concurrent, conflict-free settlements.
    pub rounds: usize,
    /// Settlements executed in rounds.
    pub parallel: usize,
    /// Settlements executed one by one in the serial tail (or by the sequential path).
    pub serial: usize,
    /// Settlements whose posting ids repeat an earlier one (run in the serial tail).
    pub repeated_ids: usize,
    /// Why the whole batch took the sequential path, or why no round ran.
    pub sequential_reason: Option<&'static str>,
    /// Pending transfers that expired at the start of the batch.
    pub expired: Vec<crate::PostingId>,
    /// Time spent on the id pass.
    pub id_time: std::time::Duration,
    /// Time spent splitting rounds.
    pub schedule_time: std::time::Duration,
    /// Time spent executing settlements (rounds, deltas, serial tail).
    pub execute_time: std::time::Duration,
    /// Workers the batch ran on.
    pub workers: usize,
}

/// A mutable slice shared by workers that each touch distinct elements.
struct SharedSlice<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: workers only access distinct indices (see `get_mut`), so sharing the pointer is sound.
unsafe impl<T: Send> Send for SharedSlice<T> {}
unsafe impl<T: Send> Sync for SharedSlice<T> {}

impl<T> SharedSlice<T> {
    fn new(s: &mut [T]) -> SharedSlice<T> {
        SharedSlice {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// No other live reference to element `i` may exist while the returned one is used. The
    /// rounds guarantee it: within a round an account with balance flags is touched by one
    /// settlement only, and each settlement's result slot by its own worker only.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut(&self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of bounds {}", self.len);
        // SAFETY: in bounds (asserted) and exclusive by the caller's contract.
        unsafe { &mut *self.ptr.add(i) }
    }
}

/// What one worker produced while executing its share of a round.
#[derive(Default)]
struct ChunkOutput {
    /// Changes to flag-less accounts, consecutive ones to the same field summed.
    deltas: Vec<Delta>,
    pending_ops: Vec<(PostingId, PendingRecord)>,
}

impl ChunkOutput {
    fn push_delta(&mut self, d: Delta) {
        if let Some(last) = self.deltas.last_mut() {
            if last.ix == d.ix && last.field == d.field && last.add == d.add {
                // The batch bound (checked before any round) keeps the sum below u128::MAX.
                last.amount = last.amount.wrapping_add(d.amount);
                return;
            }
        }
        self.deltas.push(d);
    }
}

/// The view of a settlement running in a round: it owns its flagged accounts, defers the rest.
/// Settlements in rounds carry no repeated id, so no id of theirs was known before.
struct RoundView<'a> {
    metas: &'a [AccountMeta],
    delta_bits: &'a [u64],
    balances: &'a SharedSlice<Balances>,
    out: ChunkOutput,
}

impl LedgerView for RoundView<'_> {
    fn metas(&self) -> &[AccountMeta] {
        self.metas
    }
    fn is_delta(&self, ix: AccountIx) -> bool {
        Ledger::is_delta(self.delta_bits, ix)
    }
    fn balances_mut(&mut self, ix: AccountIx) -> &mut Balances {
        // SAFETY: only called for flagged (non-delta) accounts of this settlement; the round put
        // no other settlement touching them in the same round.
        unsafe { self.balances.get_mut(ix as usize) }
    }
    fn id_known(&self, _: PostingId) -> bool {
        false
    }
    fn pending(&self, _: PostingId) -> Option<PendingRecord> {
        // Resolutions of pending transfers never run in rounds.
        None
    }
    fn commit(&mut self, _: &[PostingId], pending_ops: &[(PostingId, PendingRecord)]) {
        self.out.pending_ops.extend_from_slice(pending_ops);
    }
}

/// A posting id that occurs in the batch more than once, or was accepted before it.
#[derive(Debug)]
struct RepeatedId {
    /// Accepted before this batch.
    known_before: bool,
    /// Settlements carrying it, in batch order.
    occurrences: Vec<u32>,
}

/// The view of the serial tail: exclusive access to the whole ledger, in batch order.
struct TailView<'a> {
    metas: &'a [AccountMeta],
    balances: &'a mut [Balances],
    tables: &'a mut IdTables,
    repeats: &'a IdMap<RepeatedId>,
    results: &'a [SettlementResult],
    current: u32,
}

impl LedgerView for TailView<'_> {
    fn metas(&self) -> &[AccountMeta] {
        self.metas
    }
    fn is_delta(&self, _: AccountIx) -> bool {
        false
    }
    fn balances_mut(&mut self, ix: AccountIx) -> &mut Balances {
        &mut self.balances[ix as usize]
    }
    fn id_known(&self, id: PostingId) -> bool {
        // Every id of the batch is in the table already; an id is taken when it was there before
        // the batch or an earlier settlement carrying it was accepted (all earlier ones have run).
        self.repeats.get(&id).is_some_and(|r| {
            r.known_before
                || r.occurrences
                    .iter()
                    .take_while(|&&s| s < self.current)
                    .any(|&s| self.results[s as usize].is_ok())
        })
    }
    fn pending(&self, id: PostingId) -> Option<PendingRecord> {
        self.tables.pending(id)
    }
    fn commit(&mut self, _: &[PostingId], pending_ops: &[(PostingId, PendingRecord)]) {
        for (id, rec) in pending_ops {
            self.tables.set_pending(*id, *rec);
        }
    }
}

/// Thresholds deciding when parallelism pays; tests lower them to drive every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Batches shorter than this run sequentially.
    pub batch_min: usize,
    /// Free sets smaller than this run on the calling thread.
    pub level_min: usize,
    /// Stop forming rounds when the probe shows a mostly serial remainder.
    pub serial_fallback: bool,
    /// Fewest settlements per part when a round's split is spread over the workers.
    pub part_min: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            batch_min: PARALLEL_BATCH_MIN,
            level_min: PARALLEL_LEVEL_MIN,
            serial_fallback: true,
            part_min: PROBE_LEN,
        }
    }
}

/// Splitting state of one part of a round: one bit per account with balance flags touched by the
/// part so far (125 KiB for a million accounts, so it stays in L2), and the part's split. Aligned
/// so that workers filling neighbouring parts never write to the same cache line.
#[derive(Default)]
#[repr(align(128))]
struct PartSplit {
    bits: Vec<u64>,
    touched: Vec<AccountIx>,
    free: Vec<u32>,
    rest: Vec<u32>,
    aborted: bool,
}

impl PartSplit {
    fn test(&self, ix: AccountIx) -> bool {
        self.bits[ix as usize / 64] & (1 << (ix % 64)) != 0
    }

    fn set(&mut self, ix: AccountIx) {
        let w = &mut self.bits[ix as usize / 64];
        let m = 1u64 << (ix % 64);
        if *w & m == 0 {
            *w |= m;
            self.touched.push(ix);
        }
    }

    fn clear(&mut self) {
        for ix in self.touched.drain(..) {
            self.bits[ix as usize / 64] &= !(1u64 << (ix % 64));
        }
    }
}

/// Read-only inputs of a round's split.
struct SplitInput<'a> {
    batch: &'a [Settlement],
    delta_bits: &'a [u64],
    accounts: usize,
    /// Accounts of every pending transfer a resolution in the batch may name.
    pending_accounts: &'a IdMap<(AccountIx, AccountIx)>,
    tables: &'a IdTables,
    /// Settlements that must run in the serial tail.
    pinned: &'a [bool],
}

impl SplitInput<'_> {
    /// The flagged accounts settlement `i` may touch, into `out`.
    fn exclusive_accounts(&self, i: u32, out: &mut Vec<AccountIx>) {
        out.clear();
        let mut push = |ix: AccountIx| {
            if (ix as usize) < self.accounts && !Ledger::is_delta(self.delta_bits, ix) {
                out.push(ix);
            }
        };
        for p in &self.batch[i as usize].postings {
            match *p {
                Posting::Transfer { debit, credit, .. } => {
                    push(debit);
                    push(credit);
                }
                Posting::PostPending { pending_id, .. }
                | Posting::VoidPending { pending_id, .. } => {
                    // A creation in the batch fails when the id was known before, so the record
                    // may be either: take both.
                    if let Some(&(d, c)) = self.pending_accounts.get(&pending_id) {
                        push(d);
                        push(c);
                    }
                    if let Some(r) = self.tables.pending(pending_id) {
                        push(r.debit);
                        push(r.credit);
                    }
                }
            }
        }
    }
}

/// Splits `list` (settlements in batch order) into free and rest. With `probe`, gives up early
/// (sets `aborted`) when the list turns out to be mostly one conflict chain.
fn split_part(
    part: &mut PartSplit,
    input: &SplitInput<'_>,
    list: &[u32],
    probe: bool,
    abort: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let words = input.accounts.div_ceil(64);
    if part.bits.len() < words {
        part.bits.resize(words, 0);
    }
    // The previous split's bits stay until here: the cross-part check reads them after the
    // split. Clearing is the workers' job, not the coordinator's.
    part.clear();
    part.free.clear();
    part.rest.clear();
    part.aborted = false;
    let mut accounts = Vec::with_capacity(8);
    for (k, &i) in list.iter().enumerate() {
        if probe && k == PROBE_LEN && part.free.len() * 4 < k {
            abort.store(true, Relaxed);
        }
        if k % 256 == 0 && abort.load(Relaxed) {
            part.aborted = true;
            return;
        }
        input.exclusive_accounts(i, &mut accounts);
        let conflict = input.pinned[i as usize] || accounts.iter().any(|&a| part.test(a));
        for &a in &accounts {
            part.set(a);
        }
        if conflict {
            part.rest.push(i);
        } else {
            part.free.push(i);
        }
    }
}

/// Moves the free settlements of `part` that touch an account of an earlier part to its rest
/// (keeping the rest in batch order). Later settlements of the part touching the same accounts
/// are in the rest already: the part's own map saw them.
fn exclude_earlier(part: &mut PartSplit, earlier: &[PartSplit], input: &SplitInput<'_>) {
    let mut accounts = Vec::with_capacity(8);
    let mut moved = Vec::new();
    part.free.retain(|&i| {
        input.exclusive_accounts(i, &mut accounts);
        let clash = accounts.iter().any(|&a| earlier.iter().any(|e| e.test(a)));
        if clash {
            moved.push(i);
        }
        !clash
    });
    if !moved.is_empty() {
        let rest = std::mem::take(&mut part.rest);
        part.rest = merge_sorted(&rest, &moved);
    }
}

fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// What the id pass found in one group of shards.
#[derive(Default)]
struct IdPassOutput {
    /// Ids inserted by this batch, with the settlement carrying their first occurrence.
    inserted: Vec<(PostingId, u32)>,
    /// Occurrences whose id was already in the table, with their settlement.
    repeats: Vec<(PostingId, u32)>,
}

/// An id of the batch on its way to the table: the id, its settlement, its shard within the group.
type IdEntry = (PostingId, u32, u32);

/// Sorts the ids of `part` (settlements from `first` on) by shard group, keeping batch order, and
/// pins its resolutions of pending transfers (`pins` is the part's slice). Returns the buckets and
/// the batch index of the part's first resolution.
fn bucket_ids(
    part: &[Settlement],
    first: usize,
    step: usize,
    pins: &mut [bool],
) -> (Vec<Vec<IdEntry>>, Option<usize>) {
    let mut out: Vec<Vec<IdEntry>> = (0..step)
        .map(|_| Vec::with_capacity(part.len() * 2 / step + 16))
        .collect();
    let mut first_resolution = None;
    for (k, s) in part.iter().enumerate() {
        for p in &s.postings {
            let id = p.id();
            let shard = shard_of(id);
            out[shard % step].push((id, (first + k) as u32, (shard / step) as u32));
            if !matches!(p, Posting::Transfer { .. }) {
                pins[k] = true;
                first_resolution.get_or_insert(first + k);
            }
        }
    }
    (out, first_resolution)
}

/// Inserts one group's ids (`lists` in batch order) into its shards (`group[k]` is shard
/// `k * step + offset`).
fn insert_group<'a>(
    group: &mut [&mut IdSet],
    lists: impl Iterator<Item = &'a [IdEntry]>,
) -> IdPassOutput {
    let mut out = IdPassOutput::default();
    for list in lists {
        out.inserted.reserve(list.len());
        for (k, &(id, i, g)) in list.iter().enumerate() {
            // Start loading the slot of an id a few ahead: the look-ups overlap instead of
            // queueing behind each other.
            if let Some(&(ahead, _, ga)) = list.get(k + PREFETCH_AHEAD) {
                group[ga as usize].prefetch(ahead);
            }
            if group[g as usize].insert(id) {
                out.inserted.push((id, i));
            } else {
                out.repeats.push((id, i));
            }
        }
    }
    out
}

/// Runs batches in parallel with sequential semantics.
pub struct ParallelExecutor {
    pool: std::sync::Arc<rayon::ThreadPool>,
    threads: usize,
    tuning: Tuning,
    parts: Vec<PartSplit>,
}

impl ParallelExecutor {
    /// An executor with its own pool of `threads` workers.
    pub fn new(threads: usize) -> Result<ParallelExecutor, rayon::ThreadPoolBuildError> {
        Self::with_tuning(threads, Tuning::default())
    }

    /// An executor with explicit thresholds.
    pub fn with_tuning(
        threads: usize,
        tuning: Tuning,
    ) -> Result<ParallelExecutor, rayon::ThreadPoolBuildError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("meridian-exec-{i}"))
            .build()?;
        Ok(ParallelExecutor {
            pool: std::sync::Arc::new(pool),
            threads,
            tuning,
            parts: Vec::new(),
        })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Executes `batch` at batch clock `now`; the results and final state equal
    /// [`sequential::execute_sequential`]'s.
    pub fn execute(
        &mut self,
        ledger: &mut Ledger,
        batch: &[Settlement],
        now: u64,
    ) -> (Vec<SettlementResult>, ExecutionStats) {
        // The whole batch runs on a pool thread, and every other worker stays busy looking for
        // work until the serial tail: a parallel section then starts on workers that are awake.
        // Left to themselves, rayon's workers sleep between sections, and waking a halted vCPU
        // takes so long that the coordinator often runs a whole section alone before help comes.
        let pool = self.pool.clone();
        let threads = self.threads;
        let (results, mut stats) = pool.install(|| {
            let helpers_done = AtomicBool::new(false);
            if self.threads == 1 {
                return self.execute_on_pool(ledger, batch, now, &helpers_done);
            }
            let coordinator = rayon::current_thread_index();
            let mut out = (Vec::new(), ExecutionStats::default());
            rayon::scope(|s| {
                for _ in 1..self.threads {
                    s.spawn(|_| stay_busy(&helpers_done, coordinator));
                }
                out = self.execute_on_pool(ledger, batch, now, &helpers_done);
                helpers_done.store(true, Ordering::Release);
            });
            out
        });
        stats.workers = threads;
        (results, stats)
    }

    fn execute_on_pool(
        &mut self,
        ledger: &mut Ledger,
        batch: &[Settlement],
        now: u64,
        helpers_done: &AtomicBool,
    ) -> (Vec<SettlementResult>, ExecutionStats) {
        let mut stats = ExecutionStats {
            expired: ledger.expire_pending(now),
            ..ExecutionStats::default()
        };
        let sequential = |ledger: &mut Ledger, mut stats: ExecutionStats, reason| {
            stats.sequential_reason = Some(reason);
            stats.serial = batch.len();
            (sequential::run(ledger, batch, now), stats)
        };
        if batch.len() < self.tuning.batch_min.max(1) {
            return sequential(ledger, stats, "small batch");
        }
        if u32::try_from(batch.len()).is_err() {
            return sequential(ledger, stats, "batch longer than u32::MAX");
        }
        let total = batch
            .iter()
            .flat_map(|s| &s.postings)
            .try_fold(0u128, |acc, p| acc.checked_add(p.amount()));
        let Some(total) = total.filter(|t| ledger.balance_bound.checked_add(*t).is_some()) else {
            return sequential(ledger, stats, "amounts could overflow a balance");
        };
        let Some(pending_accounts) = pending_accounts(batch) else {
            return sequential(ledger, stats, "a pending id is created twice in the batch");
        };
        let t0 = std::time::Instant::now();
        let (inserted, repeats, pinned) = self.insert_ids(ledger, batch);
        stats.repeated_ids = repeats
            .values()
            .flat_map(|r| &r.occurrences)
            .filter(|&&s| pinned[s as usize])
            .count();
        stats.id_time = t0.elapsed();

        let mut results: Vec<SettlementResult> = vec![Ok(()); batch.len()];
        let mut remaining: Vec<u32> = (0..batch.len() as u32).collect();
        while stats.rounds < MAX_ROUNDS && remaining.len() >= self.tuning.batch_min.max(2) {
            let t = std::time::Instant::now();
            let input = SplitInput {
                batch,
                delta_bits: &ledger.delta_bits,
                accounts: ledger.len(),
                pending_accounts: &pending_accounts,
                tables: &ledger.tables,
                pinned: &pinned,
            };
            let free = self.split_round(&input, &mut remaining);
            stats.schedule_time += t.elapsed();
            let Some(free) = free else {
                break;
            };
            let t = std::time::Instant::now();
            self.run_round(ledger, batch, now, &free, &mut results);
            stats.execute_time += t.elapsed();
            stats.rounds += 1;
            stats.parallel += free.len();
        }
        if stats.rounds == 0 {
            stats.sequential_reason = Some("conflict chains: no round worth running");
        }
        // Nothing parallel is left: let the helpers go back to sleep.
        helpers_done.store(true, Ordering::Release);
        let t = std::time::Instant::now();
        stats.serial = remaining.len();
        run_tail(ledger, batch, now, &remaining, &repeats, &mut results);
        take_back_failed_ids(ledger, &inserted, &repeats, &results);
        stats.execute_time += t.elapsed();
        ledger.balance_bound += total;
        (results, stats)
    }

    /// Phase 1: inserts every id of the batch into the id table, one worker per group of shards.
    /// Returns the ids it inserted and the repeated ones.
    fn insert_ids(
        &self,
        ledger: &mut Ledger,
        batch: &[Settlement],
    ) -> (Vec<IdPassOutput>, IdMap<RepeatedId>, Vec<bool>) {
        let step = self.threads.min(ID_SHARDS);
        let mut groups: Vec<Vec<&mut IdSet>> = (0..step).map(|_| Vec::new()).collect();
        for (k, set) in ledger.tables.ids.iter_mut().enumerate() {
            groups[k % step].push(set);
        }
        let part_len = batch.len().div_ceil(step).max(1);
        let mut pinned = vec![false; batch.len()];
        let scans: Vec<(Vec<Vec<IdEntry>>, Option<usize>)> = self.pool.install(|| {
            batch
                .par_chunks(part_len)
                .zip(pinned.par_chunks_mut(part_len))
                .enumerate()
                .map(|(c, (part, pins))| bucket_ids(part, c * part_len, step, pins))
                .collect()
        });
        if let Some(first) = scans.iter().filter_map(|s| s.1).min() {
            // A resolution must not see a pending transfer created after it in batch order.
            for (i, s) in batch.iter().enumerate().skip(first + 1) {
                if s.postings.iter().any(|p| {
                    matches!(
                        p,
                        Posting::Transfer {
                            timeout: Some(_),
                            ..
                        }
                    )
                }) {
                    pinned[i] = true;
                }
            }
        }
        let buckets: Vec<Vec<Vec<IdEntry>>> = scans.into_iter().map(|s| s.0).collect();
        let outputs: Vec<IdPassOutput> = self.pool.install(|| {
            groups
                .par_iter_mut()
                .enumerate()
                .map(|(g, group)| insert_group(group, buckets.iter().map(|b| b[g].as_slice())))
                .collect()
        });
        let mut repeats: IdMap<RepeatedId> = IdMap::default();
        if outputs.iter().all(|o| o.repeats.is_empty()) {
            return (outputs, repeats, pinned);
        }
        // Rare: replays and repeated ids. Tell ids known before the batch from ids whose first
        // occurrence this batch inserted.
        for o in &outputs {
            if o.repeats.is_empty() {
                continue;
            }
            let first: IdMap<u32> = o.inserted.iter().copied().collect();
            for &(id, s) in &o.repeats {
                let r = repeats.entry(id).or_insert_with(|| match first.get(&id) {
                    Some(&f) => RepeatedId {
                        known_before: false,
                        occurrences: vec![f],
                    },
                    None => RepeatedId {
                        known_before: true,
                        occurrences: Vec::new(),
                    },
                });
                if r.occurrences.last() != Some(&s) {
                    r.occurrences.push(s);
                }
            }
        }
        for r in repeats.values() {
            // The first occurrence of an id new to the ledger may run in a round; the rest may not.
            let skip = usize::from(!r.known_before);
            for &s in r.occurrences.iter().skip(skip) {
                pinned[s as usize] = true;
            }
        }
        (outputs, repeats, pinned)
    }

    /// Phase 2, one round's split: returns the free settlements (in no particular order) and
    /// leaves the rest, in batch order, in `remaining`; `None` (and `remaining` untouched) when
    /// the probe says the remainder is a conflict chain.
    fn split_round(
        &mut self,
        input: &SplitInput<'_>,
        remaining: &mut Vec<u32>,
    ) -> Option<Vec<u32>> {
        let part_min = self.tuning.part_min.max(1);
        let n_parts = self.threads.min(remaining.len() / part_min).max(1);
        while self.parts.len() < n_parts {
            self.parts.push(PartSplit::default());
        }
        let part_len = remaining.len().div_ceil(n_parts);
        let probe = self.tuning.serial_fallback;
        let abort = std::sync::atomic::AtomicBool::new(false);
        let parts = &mut self.parts[..n_parts];
        if n_parts == 1 {
            split_part(&mut parts[0], input, remaining, probe, &abort);
        } else {
            self.pool.install(|| {
                parts
                    .par_iter_mut()
                    .zip(remaining.par_chunks(part_len))
                    .enumerate()
                    .for_each(|(k, (part, list))| {
                        split_part(part, input, list, probe && k == 0, &abort)
                    })
            });
        }
        let aborted = parts.iter().any(|p| p.aborted);
        if !aborted {
            for k in 1..n_parts {
                let (earlier, later) = parts.split_at_mut(k);
                exclude_earlier(&mut later[0], earlier, input);
            }
        }
        if aborted {
            return None;
        }
        let free: Vec<u32> = parts.iter().flat_map(|p| p.free.iter().copied()).collect();
        if free.is_empty() {
            return None;
        }
        remaining.clear();
        for p in parts.iter() {
            remaining.extend_from_slice(&p.rest);
        }
        Some(free)
    }

    /// Phase 2, one round's execution: the free settlements concurrently, then their deltas and
    /// pending records.
    fn run_round(
        &self,
        ledger: &mut Ledger,
        batch: &[Settlement],
        now: u64,
        free: &[u32],
        results: &mut [SettlementResult],
    ) {
        let result_slots = SharedSlice::new(results);
        let Ledger {
            metas,
            balances,
            tables,
            delta_bits,
            ..
        } = ledger;
        let balances = SharedSlice::new(balances);
        let run_chunk = |chunk: &[u32]| -> ChunkOutput {
            let mut scratch = Scratch::default();
            let mut view = RoundView {
                metas,
                delta_bits,
                balances: &balances,
                out: ChunkOutput::default(),
            };
            for (k, &i) in chunk.iter().enumerate() {
                if let Some(&ahead) = chunk.get(k + PREFETCH_AHEAD) {
                    prefetch_accounts(metas, &balances, &batch[ahead as usize]);
                }
                let r = apply_settlement(&mut view, &batch[i as usize], now, &mut scratch);
                if r.is_ok() {
                    for d in &scratch.deltas {
                        view.out.push_delta(*d);
                    }
                }
                // SAFETY: each settlement is in one round once: one writer per slot.
                unsafe { *result_slots.get_mut(i as usize) = r };
            }
            view.out
        };
        let outputs: Vec<ChunkOutput> = if free.len() >= self.tuning.level_min.max(1) {
            let chunk = free.len().div_ceil(self.threads * 4).max(32);
            self.pool
                .install(|| free.par_chunks(chunk).map(run_chunk).collect())
        } else {
            vec![run_chunk(free)]
        };
        // The round is over: no worker holds a reference; apply what it deferred.
        for d in outputs.iter().flat_map(|o| &o.deltas) {
            // SAFETY: the round is finished.
            unsafe { balances.get_mut(d.ix as usize) }.apply(d);
        }
        for (id, rec) in outputs.iter().flat_map(|o| &o.pending_ops) {
            tables.set_pending(*id, *rec);
        }
    }
}

/// A helper worker's job for the length of a batch: take pending work as soon as it appears,
/// until the coordinator says the parallel part is over. Returns at once when the coordinator
/// itself picked the job up (it was waiting for work of its own and found this first).
fn stay_busy(done: &AtomicBool, coordinator: Option<usize>) {
    if rayon::current_thread_index() == coordinator {
        return;
    }
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle = 0,
            Some(rayon::Yield::Idle) => {
                idle = idle.saturating_add(1);
                if idle < 1_000 {
                    std::hint::spin_loop();
                } else {
                    // Descheduled coordinator or a long sequential stretch: give the core away.
                    std::thread::yield_now();
                }
            }
            None => return,
        }
    }
}

/// Accounts of each pending transfer created in the batch; `None` when a pending id is created
/// twice (its accounts would depend on which creation wins).
fn pending_accounts(batch: &[Settlement]) -> Option<IdMap<(AccountIx, AccountIx)>> {
    let resolves = batch
        .iter()
        .flat_map(|s| &s.postings)
        .any(|p| !matches!(p, Posting::Transfer { .. }));
    let mut map = IdMap::default();
    if !resolves {
        return Some(map);
    }
    for p in batch.iter().flat_map(|s| &s.postings) {
        if let Posting::Transfer {
            id,
            debit,
            credit,
            timeout: Some(_),
            ..
        } = *p
        {
            if map.insert(id, (debit, credit)).is_some() {
                return None;
            }
        }
    }
    Some(map)
}

/// Phase 3: the remaining settlements one by one, in batch order.
fn run_tail(
    ledger: &mut Ledger,
    batch: &[Settlement],
    now: u64,
    remaining: &[u32],
    repeats: &IdMap<RepeatedId>,
    results: &mut [SettlementResult],
) {
    let mut scratch = Scratch::default();
    for &i in remaining {
        let view_results: &[SettlementResult] = results;
        let mut view = TailView {
            metas: &ledger.metas,
            balances: &mut ledger.balances,
            tables: &mut ledger.tables,
            repeats,
            results: view_results,
            current: i,
        };
        let r = apply_settlement(&mut view, &batch[i as usize], now, &mut scratch);
        results[i as usize] = r;
    }
}

/// Takes out of the id table the ids this batch inserted for settlements that failed, unless a
/// later occurrence of the same id was accepted.
fn take_back_failed_ids(
    ledger: &mut Ledger,
    inserted: &[IdPassOutput],
    repeats: &IdMap<RepeatedId>,
    results: &[SettlementResult],
) {
    if results.iter().all(|r| r.is_ok()) {
        return;
    }
    for &(id, s) in inserted.iter().flat_map(|o| &o.inserted) {
        if results[s as usize].is_ok() {
            continue;
        }
        let accepted_later = repeats
            .get(&id)
            .is_some_and(|r| r.occurrences.iter().any(|&o| results[o as usize].is_ok()));
        if !accepted_later {
            ledger.tables.remove(id);
        }
    }
}

/// Starts loading the static data and balances of the accounts a settlement will touch.
fn prefetch_accounts(metas: &[AccountMeta], balances: &SharedSlice<Balances>, s: &Settlement) {
    for p in &s.postings {
        if let Posting::Transfer { debit, credit, .. } = *p {
            for ix in [debit as usize, credit as usize] {
                if ix < balances.len {
                    prefetch(metas.as_ptr().wrapping_add(ix));
                    prefetch(balances.ptr.wrapping_add(ix));
                }
            }
        }
    }
}
