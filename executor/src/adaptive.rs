//! How many workers a batch gets, from what the last batches measured.
//!
//! A second worker pays only when a second core is really free and the batch has enough
//! independent work; on a shared 2-core machine two workers measured 0.59–1.10× one worker on
//! uniform traffic (2 December). Both paths give exactly the sequential result, so the choice is
//! only about speed: [`WorkerChoice`] keeps a moving average of the cost per settlement of each
//! path, runs the cheaper one, and every [`PROBE_EVERY`]th batch runs the other so that its
//! estimate follows a machine whose load changes. [`AdaptiveExecutor`] applies it.

use std::time::{Duration, Instant};

use crate::{ExecutionStats, Ledger, ParallelExecutor, Settlement, SettlementResult};

/// Every this many batches the path not chosen runs once, to keep its estimate current.
pub const PROBE_EVERY: u64 = 16;

/// Weight of the newest measurement in a path's moving average.
const WEIGHT_NEW: f64 = 0.25;

/// Batches shorter than this teach nothing about the parallel path (it runs them sequentially).
pub const MEASURED_BATCH_MIN: usize = 1_024;

/// Picks one worker or all of them for each batch (see the module doc).
#[derive(Debug, Clone)]
pub struct WorkerChoice {
    workers_max: usize,
    /// Nanoseconds per settlement: `[one worker, workers_max]`.
    cost_ns: [Option<f64>; 2],
    batches: u64,
}

impl WorkerChoice {
    /// Chooses between one worker and `workers_max`.
    pub fn new(workers_max: usize) -> WorkerChoice {
        WorkerChoice {
            workers_max: workers_max.max(1),
            cost_ns: [None, None],
            batches: 0,
        }
    }

    /// Workers for the next batch: an unmeasured path first, then the cheaper one, and the other
    /// once every [`PROBE_EVERY`] batches.
    pub fn workers_for_next_batch(&mut self) -> usize {
        if self.workers_max == 1 {
            return 1;
        }
        self.batches += 1;
        let path = match self.cost_ns {
            [None, _] => 0,
            [_, None] => 1,
            [Some(one), Some(many)] => {
                let cheaper = usize::from(many < one);
                if self.batches % PROBE_EVERY == 0 {
                    1 - cheaper
                } else {
                    cheaper
                }
            }
        };
        self.workers_of(path)
    }

    /// Records that a batch of `settlements` took `elapsed` on `workers` workers.
    pub fn record(&mut self, workers: usize, settlements: usize, elapsed: Duration) {
        if settlements < MEASURED_BATCH_MIN || self.workers_max == 1 {
            return;
        }
        let path = usize::from(workers > 1);
        let cost = elapsed.as_nanos() as f64 / settlements as f64;
        self.cost_ns[path] = Some(match self.cost_ns[path] {
            Some(old) => old + WEIGHT_NEW * (cost - old),
            None => cost,
        });
    }

    /// The measured cost per settlement of one worker and of all, nanoseconds.
    pub fn costs_ns(&self) -> (Option<f64>, Option<f64>) {
        (self.cost_ns[0], self.cost_ns[1])
    }

    fn workers_of(&self, path: usize) -> usize {
        if path == 0 {
            1
        } else {
            self.workers_max
        }
    }
}

/// A [`ParallelExecutor`] on one worker and one on `workers_max`, run as [`WorkerChoice`] picks.
pub struct AdaptiveExecutor {
    one: ParallelExecutor,
    many: Option<ParallelExecutor>,
    choice: WorkerChoice,
}

impl AdaptiveExecutor {
    /// Executors for one worker and, when `workers_max > 1`, for `workers_max`.
    pub fn new(workers_max: usize) -> Result<AdaptiveExecutor, rayon::ThreadPoolBuildError> {
        let workers_max = workers_max.max(1);
        Ok(AdaptiveExecutor {
            one: ParallelExecutor::new(1)?,
            many: (workers_max > 1)
                .then(|| ParallelExecutor::new(workers_max))
                .transpose()?,
            choice: WorkerChoice::new(workers_max),
        })
    }

    /// Executes `batch` at batch clock `now` on the path chosen for it; the results and final
    /// state equal [`crate::execute_sequential`]'s either way. The stats say how many workers ran
    /// it.
    pub fn execute(
        &mut self,
        ledger: &mut Ledger,
        batch: &[Settlement],
        now: u64,
    ) -> (Vec<SettlementResult>, ExecutionStats) {
        let workers = self.choice.workers_for_next_batch();
        let executor = match (&mut self.many, workers) {
            (Some(many), w) if w > 1 => many,
            _ => &mut self.one,
        };
        let workers = executor.threads();
        let started = Instant::now();
        let (results, mut stats) = executor.execute(ledger, batch, now);
        self.choice.record(workers, batch.len(), started.elapsed());
        stats.workers = workers;
        (results, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(choice: &mut WorkerChoice, batches: u64, one_ns: u64, many_ns: u64) -> Vec<usize> {
        (0..batches)
            .map(|_| {
                let w = choice.workers_for_next_batch();
                let per = if w == 1 { one_ns } else { many_ns };
                choice.record(w, 10_000, Duration::from_nanos(per * 10_000));
                w
            })
            .collect()
    }

    #[test]
    fn the_cheaper_path_runs_and_the_other_is_probed() {
        let mut c = WorkerChoice::new(2);
        let picks = run(&mut c, 64, 100, 160);
        // Each path measured once first, then one worker, with the second probed every 16th.
        assert_eq!(&picks[..2], &[1, 2]);
        let two = picks[2..].iter().filter(|&&w| w == 2).count();
        assert_eq!(two, 4, "{picks:?}");
        // The machine changes: a second core comes free. The probes notice it (their moving
        // average passes one worker's cost after three), and from then on two workers run, with
        // one worker probed in turn.
        let picks = run(&mut c, 64, 100, 50);
        assert_eq!(
            picks[..48].iter().filter(|&&w| w == 2).count(),
            3,
            "{picks:?}"
        );
        assert!(picks[48..63].iter().all(|&w| w == 2), "{picks:?}");
        assert_eq!(picks[63], 1, "{picks:?}");
    }

    #[test]
    fn small_batches_and_one_worker_teach_nothing() {
        let mut c = WorkerChoice::new(2);
        c.record(2, MEASURED_BATCH_MIN - 1, Duration::from_millis(1));
        assert_eq!(c.costs_ns(), (None, None));
        let mut single = WorkerChoice::new(1);
        assert!((0..40).all(|_| single.workers_for_next_batch() == 1));
    }

    #[test]
    fn either_path_gives_the_sequential_result() {
        use crate::workload::{batch, funded_ledger, Shape};
        let users = 2_000;
        let mut oracle = funded_ledger(users, 1_000_000);
        let mut ledger = funded_ledger(users, 1_000_000);
        let mut adaptive = AdaptiveExecutor::new(2).unwrap();
        let mut workers = Vec::new();
        for k in 0..6u64 {
            let shape = if k % 2 == 0 {
                Shape::Uniform
            } else {
                Shape::Zipf
            };
            let b = batch(shape, users, 4_096, u128::from(k) << 32, k);
            let expected = crate::execute_sequential(&mut oracle, &b, k);
            let (got, stats) = adaptive.execute(&mut ledger, &b, k);
            assert_eq!(got, expected, "batch {k}");
            workers.push(stats.workers);
        }
        assert_eq!(&workers[..2], &[1, 2]);
        assert_eq!(ledger.balances_snapshot(), oracle.balances_snapshot());
    }
}
