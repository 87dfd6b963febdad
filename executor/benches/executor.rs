//! Criterion benches of the executor: settlements/s per workload shape, sequential vs parallel.
//! The full report with durable figures and the conventional baseline is `meridian bench executor`.

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use meridian_executor::workload::{batch, funded_ledger, Shape};
use meridian_executor::{execute_sequential, ParallelExecutor};

const USERS: u32 = 100_000;
const BATCH: usize = 8_192;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let seed = AtomicU64::new(1);
    for shape in Shape::ALL {
        let mut ledger = funded_ledger(USERS, u128::from(u64::MAX));
        let mut next_id = 0u128;
        group.bench_function(BenchmarkId::new("sequential", shape.name()), |b| {
            b.iter_batched(
                || {
                    next_id += 2 * BATCH as u128;
                    batch(
                        shape,
                        USERS,
                        BATCH,
                        next_id,
                        seed.fetch_add(1, Ordering::Relaxed),
                    )
                },
                |s| execute_sequential(&mut ledger, &s, 0),
                BatchSize::LargeInput,
            )
        });
        for threads in [1usize, 2] {
            let mut exec = ParallelExecutor::new(threads).expect("thread pool");
            group.bench_function(
                BenchmarkId::new(format!("parallel-{threads}"), shape.name()),
                |b| {
                    b.iter_batched(
                        || {
                            next_id += 2 * BATCH as u128;
                            batch(
                                shape,
                                USERS,
                                BATCH,
                                next_id,
                                seed.fetch_add(1, Ordering::Relaxed),
                            )
                        },
                        |s| exec.execute(&mut ledger, &s, 0),
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
