//! The parallel executor: exactly the sequential result, computed on a thread pool.
//!
//! A single pass over the batch assigns each settlement a *level*: one more than the level of the
//! last earlier settlement it conflicts with. Settlements of one level touch disjoint exclusive
//! accounts, so they run concurrently; levels run in order. Accounts without balance flags (fee,
//! liquidity, suspense) have no state-dependent rule, so postings to them commute: they never
//! raise a level and are applied as deltas after each level — a batch where every settlement pays
//! the same fee account still parallelises. Anything the scheduler cannot prove safe (a posting id
//! repeated inside the batch, a batch whose amounts could overflow a balance, a batch that is
//! mostly one conflict chain) is handled exactly: as a barrier, or by the sequential path.

use rayon::prelude::*;

use crate::ledger::{
    apply_settlement, shard_of, AccountMeta, Balances, Delta, IdMap, IdTables, Ledger, LedgerView,
    PendingRecord, Scratch, ID_SHARDS,
};
use crate::posting::{Posting, Settlement, SettlementResult};
use crate::sequential;
use crate::{AccountIx, PostingId};

/// Batches smaller than this run sequentially: scheduling would cost more than it saves.
pub const PARALLEL_BATCH_MIN: usize = 256;
/// Levels smaller than this run on the calling thread.
pub const PARALLEL_LEVEL_MIN: usize = 128;
/// Settlements scheduled before deciding whether the batch is worth parallelising.
const PROBE_LEN: usize = 512;
/// Below this many settlements per level on average, levels are too small to run on the pool
/// and the batch goes the sequential way (a Zipf-skewed batch is a long chain through its
/// hottest accounts; an all-conflict batch is one chain).
const LEVEL_SIZE_MIN: usize = 64;

/// How a batch was executed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// Number of levels (1 = fully parallel, batch length = fully serial).
    pub levels: usize,
    /// Levels large enough to run on the pool.
    pub parallel_levels: usize,
    /// Settlements made barriers (repeated posting ids).
    pub barriers: usize,
    /// Why the batch ran sequentially, if it did.
    pub sequential_reason: Option<&'static str>,
    /// Pending transfers that expired at the start of the batch.
    pub expired: Vec<crate::PostingId>,
    /// Time spent assigning levels (single-threaded).
    pub schedule_time: std::time::Duration,
    /// Time spent executing levels.
    pub execute_time: std::time::Duration,
}

#[derive(Clone, Copy, Default)]
struct Cell {
    /// 1 + the account index this slot holds (0: empty slot).
    key: u32,
    /// 1 + level of the last exclusive access (0: none).
    excl: u32,
    /// 1 + highest level of delta accesses since then (0: none).
    comm: u32,
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
    /// scheduler guarantees it: within a level, an account with balance flags is touched by one
    /// settlement only, and each settlement's result slot by its own worker only.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut(&self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of bounds {}", self.len);
        // SAFETY: in bounds (asserted) and exclusive by the caller's contract.
        unsafe { &mut *self.ptr.add(i) }
    }
}

/// What one worker produced while executing its share of a level.
#[derive(Default)]
struct ChunkOutput {
    deltas: Vec<Delta>,
    ids: Vec<Vec<PostingId>>,
    pending_ops: Vec<(PostingId, PendingRecord)>,
}

struct ParallelView<'a> {
    metas: &'a [AccountMeta],
    delta_bits: &'a [u64],
    balances: &'a SharedSlice<Balances>,
    tables: &'a IdTables,
    out: ChunkOutput,
}

impl LedgerView for ParallelView<'_> {
    fn metas(&self) -> &[AccountMeta] {
        self.metas
    }
    fn is_delta(&self, ix: AccountIx) -> bool {
        Ledger::is_delta(self.delta_bits, ix)
    }
    fn balances_mut(&mut self, ix: AccountIx) -> &mut Balances {
        // SAFETY: only called for accounts with flags (non-delta) that this settlement declared;
        // the scheduler put no other settlement touching them into the same level.
        unsafe { self.balances.get_mut(ix as usize) }
    }
    fn tables(&self) -> &IdTables {
        self.tables
    }
    fn commit(&mut self, new_ids: &[PostingId], pending_ops: &[(PostingId, PendingRecord)]) {
        if self.out.ids.is_empty() {
            self.out.ids = vec![Vec::new(); ID_SHARDS];
        }
        for id in new_ids {
            self.out.ids[shard_of(*id)].push(*id);
        }
        self.out.pending_ops.extend_from_slice(pending_ops);
    }
}

/// Thresholds deciding when parallelism pays; tests lower them to drive every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Batches shorter than this run sequentially.
    pub batch_min: usize,
    /// Levels smaller than this run on the calling thread.
    pub level_min: usize,
    /// Fall back to the sequential path when the probe shows a mostly serial batch.
    pub serial_fallback: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            batch_min: PARALLEL_BATCH_MIN,
            level_min: PARALLEL_LEVEL_MIN,
            serial_fallback: true,
        }
    }
}

/// Scheduling state of one part of a batch (one per scheduling thread): an open-addressing table
/// of the accounts the part touches. Sized to the part, not to the ledger, it stays in L2 — a
/// dense per-account array would cost a cache miss per access, as much as executing it.
#[derive(Default)]
struct PartCells {
    slots: Vec<Cell>,
    bits: u32,
}

impl PartCells {
    /// Empties the table and sizes it for `accesses` distinct accounts at most (load ≤ ½).
    fn reset(&mut self, accesses: usize) {
        let len = (accesses * 2).max(1024).next_power_of_two();
        self.bits = len.trailing_zeros();
        self.slots.clear();
        self.slots.resize(len, Cell::default());
    }

    fn slot(&self, ix: AccountIx) -> usize {
        let h = u64::from(ix).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits);
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let k = self.slots[i].key;
            if k == 0 || k == ix + 1 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    fn get(&self, ix: AccountIx) -> Cell {
        self.slots[self.slot(ix)]
    }

    fn get_mut(&mut self, ix: AccountIx) -> &mut Cell {
        let i = self.slot(ix);
        let c = &mut self.slots[i];
        c.key = ix + 1;
        c
    }
}

/// Runs batches in parallel with sequential semantics.
pub struct ParallelExecutor {
    pool: rayon::ThreadPool,
    threads: usize,
    tuning: Tuning,
    parts: Vec<PartCells>,
}

#[derive(Clone, Copy)]
enum Access {
    Exclusive(AccountIx),
    Delta(AccountIx),
    Pending(PostingId),
}

/// Levels of one contiguous part of a batch.
struct PartLevels {
    levels: Vec<u32>,
    top: u32,
    barriers: usize,
}

/// Read-only inputs shared by the part schedulers.
struct ScheduleInput<'a> {
    delta_bits: &'a [u64],
    accounts: usize,
    batch_pending: &'a IdMap<(AccountIx, AccountIx)>,
    tables: &'a IdTables,
}

/// Assigns levels to `part` (settlements in batch order). Settlements of different parts are
/// never compared: the caller runs all levels of part k before any of part k + 1, which keeps
/// every cross-part dependency (accounts, repeated ids, pending transfers) in batch order.
fn schedule_part(
    cells: &mut PartCells,
    input: &ScheduleInput<'_>,
    part: &[Settlement],
    probe: bool,
    abort: &std::sync::atomic::AtomicBool,
) -> Option<PartLevels> {
    // Every posting touches at most two accounts.
    let accesses: usize = part.iter().map(|s| 2 * s.postings.len()).sum();
    cells.reset(accesses);
    let mut part_ids: IdMap<u32> = IdMap::default();
    part_ids.reserve(part.len() * 2);
    let mut pending_cells: IdMap<u32> = IdMap::default();
    let mut levels = Vec::with_capacity(part.len());
    let mut accesses: Vec<Access> = Vec::with_capacity(8);
    let (mut floor, mut top, mut barriers) = (0u32, 0u32, 0usize);
    let account = |ix: AccountIx, out: &mut Vec<Access>| {
        if (ix as usize) < input.accounts {
            out.push(if Ledger::is_delta(input.delta_bits, ix) {
                Access::Delta(ix)
            } else {
                Access::Exclusive(ix)
            });
        }
    };
    for (i, s) in part.iter().enumerate() {
        if probe
            && i == PROBE_LEN.min(part.len() - 1)
            && (top as usize + 1) * LEVEL_SIZE_MIN > i + 1
        {
            abort.store(true, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        if i % 256 == 255 && abort.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        accesses.clear();
        let mut barrier = false;
        for (k, p) in s.postings.iter().enumerate() {
            let first = *part_ids.entry(p.id()).or_insert(i as u32);
            barrier |= first != i as u32 || s.postings[..k].iter().any(|q| q.id() == p.id());
            match *p {
                Posting::Transfer {
                    id,
                    debit,
                    credit,
                    timeout,
                    ..
                } => {
                    account(debit, &mut accesses);
                    account(credit, &mut accesses);
                    if timeout.is_some() {
                        accesses.push(Access::Pending(id));
                    }
                }
                Posting::PostPending { pending_id, .. }
                | Posting::VoidPending { pending_id, .. } => {
                    accesses.push(Access::Pending(pending_id));
                    let accounts = input.batch_pending.get(&pending_id).copied().or_else(|| {
                        input
                            .tables
                            .pending(pending_id)
                            .map(|r| (r.debit, r.credit))
                    });
                    if let Some((d, c)) = accounts {
                        account(d, &mut accesses);
                        account(c, &mut accesses);
                    }
                }
            }
        }
        let level = if barrier {
            barriers += 1;
            let l = top + 1;
            floor = l + 1;
            l
        } else {
            let mut l = floor;
            for a in &accesses {
                let need = match *a {
                    Access::Exclusive(ix) => {
                        let c = cells.get(ix);
                        c.excl.max(c.comm)
                    }
                    Access::Delta(ix) => cells.get(ix).excl,
                    Access::Pending(id) => pending_cells.get(&id).copied().unwrap_or(0),
                };
                l = l.max(need);
            }
            for a in &accesses {
                match *a {
                    Access::Exclusive(ix) | Access::Delta(ix) => {
                        let c = cells.get_mut(ix);
                        if matches!(a, Access::Exclusive(_)) {
                            c.excl = l + 1;
                        } else {
                            c.comm = c.comm.max(l + 1);
                        }
                    }
                    Access::Pending(id) => {
                        pending_cells.insert(id, l + 1);
                    }
                }
            }
            l
        };
        top = top.max(level);
        levels.push(level);
    }
    Some(PartLevels {
        levels,
        top,
        barriers,
    })
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
            pool,
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
        let mut stats = ExecutionStats {
            expired: ledger.expire_pending(now),
            ..ExecutionStats::default()
        };
        let sequential = |ledger: &mut Ledger, mut stats: ExecutionStats, reason| {
            stats.sequential_reason = Some(reason);
            stats.levels = batch.len();
            (sequential::run(ledger, batch, now), stats)
        };
        if self.threads == 1 || batch.len() < self.tuning.batch_min.max(1) {
            return sequential(ledger, stats, "small batch or one thread");
        }
        let total = batch
            .iter()
            .flat_map(|s| &s.postings)
            .try_fold(0u128, |acc, p| acc.checked_add(p.amount()));
        let Some(total) = total.filter(|t| ledger.balance_bound.checked_add(*t).is_some()) else {
            return sequential(ledger, stats, "amounts could overflow a balance");
        };
        let t0 = std::time::Instant::now();
        let scheduled = self.schedule(ledger, batch, &mut stats);
        stats.schedule_time = t0.elapsed();
        let Some(levels) = scheduled else {
            return sequential(
                ledger,
                stats,
                "levels too small to parallelise (conflict chains)",
            );
        };
        let t1 = std::time::Instant::now();
        let results = self.run_levels(ledger, batch, now, &levels, &mut stats);
        stats.execute_time = t1.elapsed();
        ledger.balance_bound += total;
        (results, stats)
    }

    /// Assigns each settlement its level, scheduling contiguous parts of the batch on the pool;
    /// `None` when the batch is too serial to gain anything.
    fn schedule(
        &mut self,
        ledger: &Ledger,
        batch: &[Settlement],
        stats: &mut ExecutionStats,
    ) -> Option<Vec<u32>> {
        let two_phase = batch
            .iter()
            .flat_map(|s| &s.postings)
            .any(|p| !matches!(p, Posting::Transfer { timeout: None, .. }));
        let batch_pending: IdMap<(AccountIx, AccountIx)> = if two_phase {
            batch
                .iter()
                .flat_map(|s| &s.postings)
                .filter_map(|p| match *p {
                    Posting::Transfer {
                        id,
                        debit,
                        credit,
                        timeout: Some(_),
                        ..
                    } => Some((id, (debit, credit))),
                    _ => None,
                })
                .collect()
        } else {
            IdMap::default()
        };
        let input = ScheduleInput {
            delta_bits: &ledger.delta_bits,
            accounts: ledger.len(),
            batch_pending: &batch_pending,
            tables: &ledger.tables,
        };
        let n_parts = if batch.len() >= 2 * PROBE_LEN {
            self.threads.min(batch.len() / PROBE_LEN)
        } else {
            1
        };
        while self.parts.len() < n_parts {
            self.parts.push(PartCells::default());
        }
        let part_len = batch.len().div_ceil(n_parts);
        let probe = self.tuning.serial_fallback;
        let abort = std::sync::atomic::AtomicBool::new(false);
        let parts: Vec<Option<PartLevels>> = if n_parts == 1 {
            vec![schedule_part(
                &mut self.parts[0],
                &input,
                batch,
                probe,
                &abort,
            )]
        } else {
            let cells = &mut self.parts[..n_parts];
            self.pool.install(|| {
                cells
                    .par_iter_mut()
                    .zip(batch.par_chunks(part_len))
                    .enumerate()
                    .map(|(k, (cells, part))| {
                        schedule_part(cells, &input, part, probe && k == 0, &abort)
                    })
                    .collect()
            })
        };
        let mut levels = Vec::with_capacity(batch.len());
        let mut offset = 0u32;
        for part in parts {
            let part = part?;
            stats.barriers += part.barriers;
            levels.extend(part.levels.iter().map(|l| l + offset));
            offset += part.top + 1;
        }
        Some(levels)
    }

    fn run_levels(
        &self,
        ledger: &mut Ledger,
        batch: &[Settlement],
        now: u64,
        levels: &[u32],
        stats: &mut ExecutionStats,
    ) -> Vec<SettlementResult> {
        let level_count = levels.iter().copied().max().map_or(0, |m| m as usize + 1);
        stats.levels = level_count;
        let mut starts = vec![0usize; level_count + 1];
        for &l in levels {
            starts[l as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut order = vec![0u32; levels.len()];
        let mut next = starts.clone();
        for (i, &l) in levels.iter().enumerate() {
            order[next[l as usize]] = i as u32;
            next[l as usize] += 1;
        }

        let mut results: Vec<SettlementResult> = vec![Ok(()); batch.len()];
        let result_slots = SharedSlice::new(&mut results);
        let Ledger {
            metas,
            balances,
            tables,
            delta_bits,
            ..
        } = ledger;
        let balances = SharedSlice::new(balances);
        for level in 0..level_count {
            let members = &order[starts[level]..starts[level + 1]];
            let run_chunk = |chunk: &[u32]| -> ChunkOutput {
                let mut scratch = Scratch::default();
                let mut view = ParallelView {
                    metas,
                    delta_bits,
                    balances: &balances,
                    tables,
                    out: ChunkOutput::default(),
                };
                for &i in chunk {
                    let r = apply_settlement(&mut view, &batch[i as usize], now, &mut scratch);
                    if r.is_ok() {
                        view.out.deltas.extend_from_slice(&scratch.deltas);
                    }
                    // SAFETY: each settlement index appears once in `order`: one writer per slot.
                    unsafe { *result_slots.get_mut(i as usize) = r };
                }
                view.out
            };
            let outputs: Vec<ChunkOutput> = if members.len() >= self.tuning.level_min {
                stats.parallel_levels += 1;
                let chunk = (members.len() / (self.threads * 4)).max(32);
                self.pool
                    .install(|| members.par_chunks(chunk).map(run_chunk).collect())
            } else {
                vec![run_chunk(members)]
            };
            // Between levels: no worker holds a reference; apply what the level produced.
            for d in outputs.iter().flat_map(|o| &o.deltas) {
                // SAFETY: the level is finished.
                unsafe { balances.get_mut(d.ix as usize) }.apply(d);
            }
            for (id, rec) in outputs.iter().flat_map(|o| &o.pending_ops) {
                tables.set_pending(*id, *rec);
            }
            let new_ids: usize = outputs.iter().flat_map(|o| &o.ids).map(Vec::len).sum();
            if new_ids >= 4_096 {
                self.pool.install(|| {
                    tables.ids.par_iter_mut().enumerate().for_each(|(k, set)| {
                        for o in &outputs {
                            if let Some(ids) = o.ids.get(k) {
                                set.extend(ids.iter().copied());
                            }
                        }
                    })
                });
            } else {
                for (k, set) in tables.ids.iter_mut().enumerate() {
                    for o in &outputs {
                        if let Some(ids) = o.ids.get(k) {
                            set.extend(ids.iter().copied());
                        }
                    }
                }
            }
        }
        results
    }
}
