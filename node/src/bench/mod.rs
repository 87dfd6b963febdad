//! `meridian bench executor`: throughput of the settlement executor, in memory and durable,
//! against the conventional design (one database transaction per transfer with row locks);
//! `meridian bench pipeline` ([`pipeline`]): a remittance's whole path to a committed settlement.
//!
//! Prints a Markdown table; `BENCHMARKS.md` records a run. Figures are ratios measured in the same
//! run on the same machine, never absolute promises.

use std::time::{Duration, Instant};

use anyhow::Context;
use meridian_executor::workload::{batch, funded_ledger, Shape, FIRST_USER};
use meridian_executor::{
    execute_sequential, AdaptiveExecutor, ParallelExecutor, Posting, Settlement,
};
use meridian_storage::{LedgerAccountRow, Store};
use rand::{Rng, SeedableRng};

use meridian_transfers::settlement::SettlementEngine;

pub mod chain;
pub mod pipeline;
pub mod releases;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Accounts in the in-memory ledger.
    pub accounts: u32,
    /// Settlements per batch.
    pub batch_len: usize,
    /// Batches per in-memory measurement.
    pub batches: usize,
    /// Accounts in the durable ledgers.
    pub durable_accounts: u32,
    /// Batches per durable measurement.
    pub durable_batches: usize,
    /// Longest time spent on the conventional baseline per database.
    pub baseline_time: Duration,
    /// PostgreSQL server to benchmark (a scratch database is created and dropped), if any.
    pub postgres_url: Option<String>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            accounts: 1_000_000,
            batch_len: 16_384,
            batches: 16,
            durable_accounts: 100_000,
            durable_batches: meridian_transfers::settlement::CHECKPOINT_BATCHES_MAX as usize,
            baseline_time: Duration::from_secs(10),
            postgres_url: Some("postgres://postgres@127.0.0.1:5432/postgres".into()),
        }
    }
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// Blocks per path in the in-memory table (see [`in_memory`]).
const CYCLES: usize = 4;

/// The in-memory table: per workload, the sequential path, the executor on one and on two
/// workers, and the adaptive executor the node runs (one or two per batch, from what the last
/// batches measured), which should be as fast as the better of the two.
///
/// All three run on the **same** ledger — on this kind of VM a single path's figure moves by up
/// to 1.6× between runs with where the account array lands, so separate ledgers would make the
/// ratios meaningless — in blocks: sequential, one worker, two workers, and again, four times.
/// Blocks rather than alternate batches, because a thread pool that has just run sleeps or spins
/// while the next path runs, which on two vCPUs slows whichever path runs beside it. Batches are
/// generated outside the timed region, so peak memory is the ledger's, not the benchmark
/// input's.
pub fn in_memory(opts: &BenchOptions) -> anyhow::Result<String> {
    // First, while the process holds nothing else: the memory of the ledger a node keeps.
    let memory = ledger_memory(opts)?;
    let mut out = String::new();
    out.push_str(&format!(
        "### In memory: {} accounts, {} batches of {} settlements per path, paths in blocks on one ledger\n\n\
         | workload | sequential path | executor, 1 thread | executor, 2 threads | adaptive (1 or 2 per batch) | adaptive over the better of 1 and 2 | batches on 2 workers (adaptive) | speed-up over sequential (2 threads) | 2 threads over 1 | rounds per batch | serial tail | id pass / splits / execution per batch (2 threads) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        opts.accounts, opts.batches, opts.batch_len
    ));
    let mut one = ParallelExecutor::new(1)?;
    let mut two = ParallelExecutor::new(2)?;
    for shape in Shape::ALL {
        // What the node runs: each batch on one worker or two, from what the last ones measured.
        let mut adaptive = AdaptiveExecutor::new(2)?;
        let (mut adapted, mut on_two) = (Duration::ZERO, 0usize);
        let mut ledger = funded_ledger(opts.accounts, u128::from(u64::MAX));
        // Sized once, as a running node sizes it at start: growing the table is a start-up
        // effect, not the per-batch cost this table is about.
        let postings_per_settlement = if shape == Shape::HotFee { 2 } else { 1 };
        ledger.reserve_postings(
            (opts.batches.div_ceil(CYCLES) + 1)
                * CYCLES
                * 3
                * opts.batch_len
                * postings_per_settlement,
        );
        let mut next_id = 0u128;
        let mut seed = 42u64;
        let mut make = || {
            let b = batch(shape, opts.accounts, opts.batch_len, next_id, seed);
            next_id += 2 * opts.batch_len as u128;
            seed += 1;
            b
        };
        let per_block = opts.batches.div_ceil(CYCLES).max(1);
        let (mut seq, mut single, mut par) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut ids, mut schedule, mut execute) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut rounds, mut serial) = (0, 0);
        for _ in 0..CYCLES {
            // Each block starts with an untimed batch, so the path's workers are awake and its
            // buffers warm; the block's batches are generated before its clock starts.
            execute_sequential(&mut ledger, &make(), 0);
            let block: Vec<_> = (0..per_block).map(|_| make()).collect();
            let start = Instant::now();
            for b in &block {
                execute_sequential(&mut ledger, b, 0);
            }
            seq += start.elapsed();

            one.execute(&mut ledger, &make(), 0);
            let block: Vec<_> = (0..per_block).map(|_| make()).collect();
            let start = Instant::now();
            for b in &block {
                one.execute(&mut ledger, b, 0);
            }
            single += start.elapsed();

            two.execute(&mut ledger, &make(), 0);
            let block: Vec<_> = (0..per_block).map(|_| make()).collect();
            let start = Instant::now();
            for b in &block {
                let stats = two.execute(&mut ledger, b, 0).1;
                ids += stats.id_time;
                schedule += stats.schedule_time;
                execute += stats.execute_time;
                rounds += stats.rounds;
                serial += stats.serial;
            }
            par += start.elapsed();

            adaptive.execute(&mut ledger, &make(), 0);
            let block: Vec<_> = (0..per_block).map(|_| make()).collect();
            let start = Instant::now();
            for b in &block {
                let stats = adaptive.execute(&mut ledger, b, 0).1;
                on_two += usize::from(stats.workers > 1);
            }
            adapted += start.elapsed();
        }
        let batches = per_block * CYCLES;
        let n = batches * opts.batch_len;
        let per = |d: Duration| d.as_secs_f64() * 1e3 / batches as f64;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2}× | {on_two} of {batches} | {:.2}× | {:.2}× | {:.1} | {:.1} % | {:.2} ms / {:.2} ms / {:.2} ms |\n",
            shape.name(),
            fmt_rate(rate(n, seq)),
            fmt_rate(rate(n, single)),
            fmt_rate(rate(n, par)),
            fmt_rate(rate(n, adapted)),
            single.min(par).as_secs_f64() / adapted.as_secs_f64(),
            seq.as_secs_f64() / par.as_secs_f64(),
            single.as_secs_f64() / par.as_secs_f64(),
            rounds as f64 / batches as f64,
            100.0 * serial as f64 / n.max(1) as f64,
            per(ids),
            per(schedule),
            per(execute)
        ));
    }
    out.push_str(&memory);
    out.push_str(&memory_ceiling());
    Ok(out)
}

/// Peak RSS of a node's in-memory ledger: `accounts` accounts, the id table sized as the
/// settlement engine sizes it, after `batches` uniform batches through the two-worker executor
/// (batches made one at a time, so the figure is the ledger's, not the benchmark input's).
fn ledger_memory(opts: &BenchOptions) -> anyhow::Result<String> {
    let before = peak_rss_mib();
    let mut ledger = funded_ledger(opts.accounts, u128::from(u64::MAX));
    ledger.reserve_postings(meridian_transfers::settlement::POSTING_IDS_RESERVED);
    let mut two = ParallelExecutor::new(2)?;
    for k in 0..opts.batches {
        let b = batch(
            Shape::Uniform,
            opts.accounts,
            opts.batch_len,
            (k * opts.batch_len) as u128,
            1_000 + k as u64,
        );
        two.execute(&mut ledger, &b, 0);
    }
    let postings = ledger.postings_len();
    drop(ledger);
    Ok(match (before, peak_rss_mib()) {
        (Some(before), Some(after)) => format!(
            "\nPeak RSS of the ledger ({} accounts, {postings} posting ids, process before: \
             {before:.0} MiB): {after:.0} MiB\n",
            opts.accounts
        ),
        _ => "\nPeak RSS: not available on this platform\n".to_owned(),
    })
}

/// What a second core can add to memory-bound work on this machine: independent random 8-byte
/// updates over 256 MiB (far beyond the caches), with the line 16 updates ahead prefetched, as
/// the executor does — on one thread, then split over two threads (each on its own half).
fn memory_ceiling() -> String {
    const WORDS: usize = 32 << 20;
    const UPDATES: usize = 8_000_000;
    fn updates(data: &mut [u64], idx: &[u32]) -> u64 {
        let mut sum = 0u64;
        for (k, &i) in idx.iter().enumerate() {
            if let Some(&ahead) = idx.get(k + 16) {
                meridian_executor::id_table::prefetch(data.as_ptr().wrapping_add(ahead as usize));
            }
            let w = &mut data[i as usize];
            *w = w.wrapping_add(1);
            sum = sum.wrapping_add(*w);
        }
        sum
    }
    let mut data = vec![1u64; WORDS];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let half = (WORDS / 2) as u32;
    let idx: Vec<u32> = (0..UPDATES).map(|_| rng.gen_range(0..half)).collect();
    let (a, b) = data.split_at_mut(WORDS / 2);
    // Warm the pages and both halves once.
    updates(a, &idx[..UPDATES / 8]);
    updates(b, &idx[..UPDATES / 8]);
    let start = Instant::now();
    let one = updates(a, &idx[..UPDATES / 2]).wrapping_add(updates(b, &idx[UPDATES / 2..]));
    let single = start.elapsed();
    let start = Instant::now();
    let two = std::thread::scope(|s| {
        let h = s.spawn(|| updates(a, &idx[..UPDATES / 2]));
        let other = updates(b, &idx[UPDATES / 2..]);
        h.join().unwrap_or(0).wrapping_add(other)
    });
    let double = start.elapsed();
    std::hint::black_box((one, two));
    let per = |d: Duration| d.as_secs_f64() * 1e9 / UPDATES as f64;
    format!(
        "\nMachine ceiling for memory-bound work: random 8-byte updates over 256 MiB with prefetch, \
         {:.1} ns each on one thread, {:.1} ns on two: a second core adds {:.2}×.\n",
        per(single),
        per(double),
        single.as_secs_f64() / double.as_secs_f64()
    )
}

/// Asset of the durable fixtures.
pub const FIXTURE_ASSET: &str = "eip155:31337/erc20:0x0000000000000000000000000000000000000001";

/// Stored accounts for durable benchmarks and tests: a mint account holding `users · balance`
/// of debits, then `users` no-overdraft users credited with `balance` each (the ledger balances).
pub fn funded_account_rows(users: u32, balance: u128) -> Vec<LedgerAccountRow> {
    let mut rows = vec![LedgerAccountRow {
        id: 0,
        asset_id: FIXTURE_ASSET.into(),
        owner: "mint".into(),
        kind: "suspense".into(),
        flags: 0,
        balances: [balance * u128::from(users), 0, 0, 0],
    }];
    rows.extend((0..users).map(|i| LedgerAccountRow {
        id: 0,
        asset_id: FIXTURE_ASSET.into(),
        owner: format!("eip155:31337:0x{i:040x}"),
        kind: "user".into(),
        flags: 1,
        balances: [0, balance, 0, 0],
    }));
    rows
}

/// `len` uniform transfers among `users` accounts whose executor indexes start at `first_user`
/// (the workload generator numbers users from `FIRST_USER`; this shifts them onto a ledger
/// opened with [`funded_account_rows`]).
pub fn uniform_transfers(
    first_user: u32,
    users: u32,
    len: usize,
    first_id: u128,
    seed: u64,
) -> Vec<Settlement> {
    let mut b = batch(Shape::Uniform, users, len, first_id, seed);
    for s in &mut b {
        for p in &mut s.postings {
            if let Posting::Transfer { debit, credit, .. } = p {
                *debit = *debit - FIRST_USER + first_user;
                *credit = *credit - FIRST_USER + first_user;
            }
        }
    }
    b
}

/// Settlements per second through the node's settlement engine alone (parallel executor, one
/// transaction per batch) on the empty database at `url`: `batches` batches of `batch_len`
/// uniform one-posting transfers among `accounts` funded accounts.
async fn durable_executor_rate(
    url: &str,
    accounts: u32,
    batches: usize,
    batch_len: usize,
) -> anyhow::Result<f64> {
    let store = Store::connect(url).await?;
    store.migrate_up().await?;
    let mut engine = SettlementEngine::load(store, 2).await?;
    let rows = funded_account_rows(accounts, 1_000_000_000_000);
    let ixs = engine.open_accounts(&rows).await?;
    let work: Vec<Vec<Settlement>> = (0..batches)
        .map(|i| {
            uniform_transfers(
                ixs[1],
                accounts,
                batch_len,
                (i * batch_len * 2) as u128,
                7 + i as u64,
            )
        })
        .collect();
    let start = Instant::now();
    for b in work {
        engine.settle(b, 0).await?;
    }
    // The balances written too (a checkpoint), not left to the journals.
    engine.checkpoint().await?;
    Ok(rate(batches * batch_len, start.elapsed()))
}

/// Durable throughput through the node's settlement engine, and the conventional baseline.
async fn durable_on(label: &str, url: &str, opts: &BenchOptions) -> anyhow::Result<String> {
    let durable = durable_executor_rate(
        url,
        opts.durable_accounts,
        opts.durable_batches,
        opts.batch_len,
    )
    .await?;

    // Conventional: one transaction per transfer on a single session.
    let single = Store::connect_single(url).await?;
    let ids: Vec<i64> = single
        .ledger_accounts()
        .await?
        .iter()
        .skip(1)
        .map(|r| r.id)
        .collect();
    let asset = FIXTURE_ASSET.to_string();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < opts.baseline_time && done < 200_000 {
        let a = ids[rng.gen_range(0..ids.len())];
        let mut b = ids[rng.gen_range(0..ids.len())];
        if a == b {
            b = ids[(rng.gen_range(0..ids.len() - 1) + 1) % ids.len()];
        }
        single
            .conventional_transfer(&format!("conv-{done}"), a, b, &asset, rng.gen_range(1..100))
            .await?;
        done += 1;
    }
    let conventional = rate(done, start.elapsed());
    Ok(format!(
        "| {label} | {} | {} | {:.0}× |\n",
        fmt_rate(durable),
        fmt_rate(conventional),
        durable / conventional
    ))
}

/// The durable table: SQLite (scratch file) and PostgreSQL (scratch database).
pub async fn durable(opts: &BenchOptions) -> anyhow::Result<String> {
    let mut out = format!(
        "### Durable: {} accounts, {} batches of {} uniform settlements, one transaction per batch\n\n| database | Meridian (parallel executor + batch commit) | conventional (one transaction per transfer, row locks) | ratio |\n|---|---|---|---|\n",
        opts.durable_accounts, opts.durable_batches, opts.batch_len
    );
    let dir = tempfile_dir()?;
    let sqlite = format!("sqlite://{}/bench.sqlite?mode=rwc", dir.display());
    out.push_str(
        &durable_on("SQLite (file, WAL)", &sqlite, opts)
            .await
            .context("SQLite benchmark")?,
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(pg) = &opts.postgres_url {
        let (admin, name, url) = scratch_postgres(pg, "meridian_bench").await?;
        let result = durable_on("PostgreSQL 15 (local)", &url, opts).await;
        let _ = admin.drop_database(&name).await;
        out.push_str(&result.context("PostgreSQL benchmark")?);
    }
    Ok(out)
}

/// A scratch database `<prefix>_<pid>` on the PostgreSQL server at `pg`: the server's connection
/// (to drop it afterwards), its name and its URL.
async fn scratch_postgres(pg: &str, prefix: &str) -> anyhow::Result<(Store, String, String)> {
    let name = format!("{prefix}_{}", std::process::id());
    let admin = Store::connect(pg)
        .await
        .context("connecting to PostgreSQL")?;
    admin.create_database(&name).await?;
    let url = match pg.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => anyhow::bail!("PostgreSQL URL needs a database part"),
    };
    Ok((admin, name, url))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("meridian-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
