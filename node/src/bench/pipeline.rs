//! `meridian bench pipeline`: the path a remittance really takes, from a stored source event to a
//! committed settlement — intake (screening, routing, quote, the transfer stored with its
//! history) and settlement (the ledger batch and the state change) — on SQLite and PostgreSQL.
//!
//! Three runs per database:
//! - **Throughput**: N remittance events are stored as a watcher would (in blocks of
//!   [`EVENTS_PER_BLOCK`]), then each stage runs until nothing is left for it. Prints events/s
//!   per stage and of both one after the other, and (PostgreSQL) the write-ahead log written
//!   per transfer.
//! - **Backlog**: N more events stored, then drained by the intake and the settler running
//!   together as the node runs them: the end-to-end figure of a node that fell behind.
//! - **Latency**: events arrive at an offered load of [`LATENCY_LOAD_PER_SEC`] while the intake
//!   and the settler run as the node runs them (woken by the commits before them); prints p50
//!   and p99 of the time from an event's commit to its settlement's commit.
//!
//! Beside them, the ceiling: the settlement engine alone (parallel executor and batch commit,
//! one-posting settlements) on a database of its own, measured in the same run.
//!
//! Traffic: uniform senders and recipients over `accounts`, four corridors between two source
//! and two destination assets, about [`SANCTIONED_PERMILLE`]‰ of requests from sanctioned
//! senders (refused) and about 3 % above the corridors' hold threshold (held), so the refusal
//! and hold paths are exercised. Every transfer is checked at the end: settled, held or refused,
//! exactly as many as events. The transfer-pipeline issue's target is 100 000/s end to end.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use meridian_router::{Denylist, RouteLimits, Router, RoutingState, Screening};
use meridian_storage::{IngestBatch, Stage, Store};
use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
use meridian_types::{
    transfer_id, AccountId, AssetId, BlockRef, ChainEvent, ChainFamily, ChainId, EventId,
    EventPayload, TransferState,
};
use rand::{Rng, SeedableRng};

use super::{durable_executor_rate, fmt_rate, rate, scratch_postgres, tempfile_dir};
use meridian_transfers::handoff::quoted_handoff;
use meridian_transfers::intake::TransferIntake;
use meridian_transfers::settlement::SettlementEngine;
use meridian_transfers::settler::TransferSettler;

/// Events stored per block (and per ingest commit) in the throughput run.
const EVENTS_PER_BLOCK: usize = 1_000;
/// Offered load of the latency run.
pub const LATENCY_LOAD_PER_SEC: usize = 10_000;
/// Events of the latency run at most (five seconds of offered load).
const LATENCY_EVENTS_MAX: usize = 5 * LATENCY_LOAD_PER_SEC;
/// Longest a run with the stages as tasks waits for the pipeline to drain.
const DRAIN_MAX: Duration = Duration::from_secs(300);
/// How often a stage of the latency run looks for work when nothing woke it.
const STAGE_POLL: Duration = Duration::from_millis(200);
/// The ceiling beside the pipeline: the settlement engine alone, durable, on a database of its
/// own — this many batches (one balance-checkpoint interval) of this many one-posting
/// settlements among this many accounts.
const CEILING_BATCHES: usize = meridian_transfers::settlement::CHECKPOINT_BATCHES_MAX as usize;
const CEILING_BATCH_LEN: usize = 16_384;
const CEILING_ACCOUNTS: u32 = 100_000;
/// Requests from sanctioned senders, per thousand.
const SANCTIONED_PERMILLE: u32 = 20;
/// Sanctioned senders (on the denylist).
const SANCTIONED_ACCOUNTS: u32 = 100;
/// Amounts drawn uniformly from this range (base units, 6 decimals)…
const AMOUNT_RANGE: std::ops::Range<u128> = 1_000_000..100_000_000;
/// …and held above this one: about 3 % of requests.
const HOLD_THRESHOLD: u128 = 97_000_000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Remittance events of the throughput run.
    pub events: usize,
    /// Distinct senders and recipients, drawn uniformly.
    pub accounts: u32,
    /// PostgreSQL server to benchmark (a scratch database is created and dropped), if any.
    pub postgres_url: Option<String>,
}

struct Fixture {
    source: ChainId,
    dest: ChainId,
    /// (source asset, destination asset) of each corridor.
    pairs: Vec<(AssetId, AssetId)>,
    corridors: Vec<CorridorConfig>,
    assets: Vec<AssetConfig>,
}

fn fixture() -> anyhow::Result<Fixture> {
    let source: ChainId = "eip155:1".parse()?;
    let dest: ChainId = "eip155:2".parse()?;
    let token = |chain: &ChainId, n: u8| AssetId::erc20(chain, &format!("0x{n:040x}"));
    let (usd_a, eur_a) = (token(&source, 0xa1), token(&source, 0xa2));
    let (usd_b, eur_b) = (token(&dest, 0xb1), token(&dest, 0xb2));
    let asset = |id: &AssetId, symbol: &str| AssetConfig {
        id: id.clone(),
        symbol: symbol.into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    };
    let corridor = |id: &str, from: &AssetId, to: &AssetId, rate: &str| CorridorConfig {
        id: id.into(),
        source_asset: from.clone(),
        dest_asset: to.clone(),
        fee_bps: 25,
        fixed_fee: Amount(0),
        rate: Some(rate.into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1),
        max_amount: Amount(1_000_000_000_000),
        daily_cap: Amount(u128::MAX / 4),
        hold_threshold: Some(Amount(HOLD_THRESHOLD)),
        paused: false,
        liquidity: Amount(u128::MAX / 4),
    };
    let corridors = vec![
        corridor("usd-usd", &usd_a, &usd_b, "1"),
        corridor("eur-eur", &eur_a, &eur_b, "1"),
        corridor("usd-eur", &usd_a, &eur_b, "0.92"),
        corridor("eur-usd", &eur_a, &usd_b, "1.08"),
    ];
    Ok(Fixture {
        pairs: corridors
            .iter()
            .map(|c| (c.source_asset.clone(), c.dest_asset.clone()))
            .collect(),
        assets: vec![
            asset(&usd_a, "USDA"),
            asset(&eur_a, "EURA"),
            asset(&usd_b, "USDB"),
            asset(&eur_b, "EURB"),
        ],
        source,
        dest,
        corridors,
    })
}

fn sanctioned(i: u32) -> String {
    format!("0x{:040x}", 0xdead_0000_u64 + u64::from(i))
}

/// Routing over the fixture's corridors, with the sanctioned senders on the denylist.
fn routing(f: &Fixture) -> anyhow::Result<RoutingState> {
    let router = Router::new(&f.assets, &f.corridors, RouteLimits::default())?;
    let list: String = (0..SANCTIONED_ACCOUNTS)
        .map(|i| sanctioned(i) + "\n")
        .collect();
    let denylist = Denylist::parse(&list, Path::new("bench-denylist"))?;
    Ok(RoutingState::new(
        router,
        Screening {
            denylist,
            ..Screening::default()
        },
    ))
}

fn block(height: u64) -> BlockRef {
    let hash = |h: u64| format!("0x{h:064x}");
    BlockRef {
        height,
        hash: hash(height),
        parent_hash: Some(hash(height.saturating_sub(1))),
    }
}

/// The remittance events of block `height`: `n` transfers between uniformly drawn accounts over
/// uniformly drawn corridors.
fn remittances(
    f: &Fixture,
    height: u64,
    n: usize,
    accounts: u32,
    deadline: u64,
    rng: &mut impl Rng,
) -> Vec<ChainEvent> {
    (0..n)
        .map(|i| {
            let index = i as u32;
            let (asset, dest_asset) = &f.pairs[rng.gen_range(0..f.pairs.len())];
            let sender = if rng.gen_range(0..1_000) < SANCTIONED_PERMILLE {
                sanctioned(rng.gen_range(0..SANCTIONED_ACCOUNTS))
            } else {
                format!("0x{:040x}", rng.gen_range(1..=accounts))
            };
            ChainEvent {
                id: EventId {
                    chain: f.source.clone(),
                    block_number: height,
                    block_hash: block(height).hash,
                    tx: format!("0x{height:032x}{index:032x}"),
                    index,
                },
                contract: "0x00000000000000000000000000000000000e5c20".into(),
                payload: EventPayload::RemittanceRequested {
                    nonce: format!("{height}{index:06}"),
                    sender: AccountId::new(&f.source, &sender),
                    asset: asset.clone(),
                    amount: rng.gen_range(AMOUNT_RANGE),
                    dest_chain: f.dest.to_string(),
                    recipient: format!("0x{:040x}", rng.gen_range(1..=accounts)),
                    dest_asset: dest_asset.to_string(),
                    deadline,
                },
            }
        })
        .collect()
}

/// How the transfers of a run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Outcomes {
    settled: usize,
    held: usize,
    refused: usize,
}

impl Outcomes {
    fn total(&self) -> usize {
        self.settled + self.held + self.refused
    }

    fn count(&mut self, state: TransferState) {
        match state {
            TransferState::Settled => self.settled += 1,
            TransferState::Held => self.held += 1,
            TransferState::Rejected => self.refused += 1,
            _ => {}
        }
    }
}

/// One database's figures.
struct PipelineFigures {
    storing: Duration,
    intake: Duration,
    settlement: Duration,
    outcomes: Outcomes,
    wal_bytes_per_transfer: Option<u64>,
    /// The same number of events again, drained with the stages running together.
    backlog: Duration,
    latency: LatencyFigures,
}

/// The latency run's figures.
struct LatencyFigures {
    events: usize,
    offered: f64,
    achieved: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// Stores `n` events from block `*height + 1` on, in blocks of at most `per_block`; returns the
/// commit instant of each event's transfer id.
#[allow(clippy::too_many_arguments)]
async fn store_events(
    store: &Store,
    f: &Fixture,
    height: &mut u64,
    n: usize,
    per_block: usize,
    accounts: u32,
    deadline: u64,
    rng: &mut impl Rng,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let mut stored = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        *height += 1;
        let k = per_block.min(left);
        let events = remittances(f, *height, k, accounts, deadline, rng);
        let ids: Vec<String> = events.iter().map(|e| transfer_id(&e.id.uid())).collect();
        store
            .commit_ingest(&IngestBatch {
                chain: f.source.clone(),
                events,
                blocks: vec![block(*height)],
                checkpoint: block(*height),
            })
            .await?;
        let at = Instant::now();
        stored.extend(ids.into_iter().map(|id| (id, at)));
        left -= k;
    }
    Ok(stored)
}

/// The whole pipeline on the database at `url`.
async fn pipeline_on(
    label: &str,
    url: &str,
    opts: &PipelineOptions,
) -> anyhow::Result<PipelineFigures> {
    let store = Store::connect(url).await?;
    store.migrate_up().await?;
    let f = fixture()?;
    store
        .register_chain(&f.source, "bench-source", ChainFamily::Evm)
        .await?;
    let now = Utc::now();
    let deadline = (now + chrono::Duration::days(1)).timestamp().max(0) as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut height = 0;

    // Throughput: store everything, then each stage until nothing is left for it.
    let start = Instant::now();
    store_events(
        &store,
        &f,
        &mut height,
        opts.events,
        EVENTS_PER_BLOCK,
        opts.accounts,
        deadline,
        &mut rng,
    )
    .await?;
    let storing = start.elapsed();

    let wal_before = store.wal_position().await?;
    let (quoted_tx, quoted_rx) = quoted_handoff();
    let intake = TransferIntake::new(store.clone(), Arc::new(routing(&f)?)).hand_off_to(quoted_tx);
    let start = Instant::now();
    let created = intake.pass(now).await?.created;
    let intake_time = start.elapsed();
    let mut outcomes = Outcomes::default();
    for (_, state) in &created {
        if *state != TransferState::Quoted {
            outcomes.count(*state);
        }
    }

    let engine = SettlementEngine::load(store.clone(), 2).await?;
    let mut settler = TransferSettler::new(store.clone(), engine, &f.corridors)
        .await?
        .receive_from(quoted_rx);
    let start = Instant::now();
    loop {
        let moved = settler.pass(now).await?.moved;
        if moved.is_empty() {
            break;
        }
        for (_, state) in moved {
            outcomes.count(state);
        }
    }
    let settlement = start.elapsed();
    let wal_after = store.wal_position().await?;
    anyhow::ensure!(
        created.len() == opts.events && outcomes.total() == opts.events,
        "{label}: {} transfers created and {outcomes:?} of {} events",
        created.len(),
        opts.events
    );
    if opts.events >= 1_000 {
        anyhow::ensure!(
            outcomes.held > 0 && outcomes.refused > 0,
            "{label}: the traffic should hold and refuse some transfers: {outcomes:?}"
        );
    }
    let wal_bytes_per_transfer = wal_before
        .zip(wal_after)
        .map(|(a, b)| b.saturating_sub(a) / opts.events.max(1) as u64);

    let backlog = backlog_run(&store, &f, &mut height, opts, deadline, &mut rng).await?;
    let latency = latency_run(&store, &f, &mut height, opts, deadline, &mut rng).await?;
    Ok(PipelineFigures {
        storing,
        intake: intake_time,
        settlement,
        outcomes,
        wal_bytes_per_transfer,
        backlog,
        latency,
    })
}

/// The intake and the settler running as tasks, as the node runs them: each woken by the commits
/// before it (or a slow poll), the intake handing its quoted transfers to the settler in memory.
struct RunningStages {
    stop: tokio::sync::watch::Sender<bool>,
    intake: tokio::task::JoinHandle<anyhow::Result<()>>,
    settler: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Transfers that reached their end (refused or held by the intake, settled or refused by
    /// the settler), counted from the stages' own summaries: no polling of the database
    /// competes with the pipeline.
    ended: Arc<std::sync::atomic::AtomicUsize>,
    /// When each settled transfer's settlement committed.
    settled_at: Arc<Mutex<HashMap<String, Instant>>>,
}

impl RunningStages {
    async fn start(store: &Store, f: &Fixture) -> anyhow::Result<RunningStages> {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let settled_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (quoted_tx, quoted_rx) = quoted_handoff();
        let intake =
            TransferIntake::new(store.clone(), Arc::new(routing(f)?)).hand_off_to(quoted_tx);
        let intake_task = {
            let (store, mut stop, ended) = (store.clone(), stop.clone(), ended.clone());
            tokio::spawn(async move {
                loop {
                    let created = intake.pass(Utc::now()).await?.created;
                    let done = created
                        .iter()
                        .filter(|(_, s)| *s != TransferState::Quoted)
                        .count();
                    ended.fetch_add(done, std::sync::atomic::Ordering::Relaxed);
                    tokio::select! {
                        _ = store.work_for(Stage::Intake) => {}
                        _ = tokio::time::sleep(STAGE_POLL) => {}
                        _ = stop.wait_for(|s| *s) => return anyhow::Ok(()),
                    }
                }
            })
        };
        let engine = SettlementEngine::load(store.clone(), 2).await?;
        let mut settler = TransferSettler::new(store.clone(), engine, &f.corridors)
            .await?
            .receive_from(quoted_rx);
        let settler_task = {
            let (store, mut stop, settled_at, ended) = (
                store.clone(),
                stop.clone(),
                settled_at.clone(),
                ended.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let moved = settler.pass(Utc::now()).await?.moved;
                    let at = Instant::now();
                    ended.fetch_add(moved.len(), std::sync::atomic::Ordering::Relaxed);
                    {
                        let mut settled = settled_at.lock().unwrap_or_else(|e| e.into_inner());
                        for (id, state) in moved {
                            if state == TransferState::Settled {
                                settled.insert(id, at);
                            }
                        }
                    }
                    tokio::select! {
                        _ = store.work_for(Stage::Settlement) => {}
                        _ = tokio::time::sleep(STAGE_POLL) => {}
                        _ = stop.wait_for(|s| *s) => return anyhow::Ok(()),
                    }
                }
            })
        };
        Ok(RunningStages {
            stop: stop_tx,
            intake: intake_task,
            settler: settler_task,
            ended,
            settled_at,
        })
    }

    /// Waits until `events` transfers ended; fails after [`DRAIN_MAX`] or when a stage failed.
    async fn wait_ended(&mut self, events: usize) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let done = self.ended.load(std::sync::atomic::Ordering::Relaxed);
            if done >= events {
                return Ok(());
            }
            if self.intake.is_finished() || self.settler.is_finished() {
                // A stage ended before the stop: its error says why.
                let _ = self.stop.send(true);
                (&mut self.intake).await??;
                (&mut self.settler).await??;
                anyhow::bail!(
                    "a pipeline stage stopped with {} transfers open",
                    events - done
                );
            }
            anyhow::ensure!(
                start.elapsed() < DRAIN_MAX,
                "{} transfers still open after {}s",
                events - done,
                DRAIN_MAX.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops both stages; returns when each settled transfer's settlement committed.
    async fn stop(self) -> anyhow::Result<HashMap<String, Instant>> {
        let _ = self.stop.send(true);
        self.intake.await??;
        self.settler.await??;
        let settled = self.settled_at.lock().unwrap_or_else(|e| e.into_inner());
        Ok(settled.clone())
    }
}

/// A backlog of `events` stored requests drained by the stages running together, as a node
/// that was behind drains it: events/s from the first pass to the last transfer's end.
async fn backlog_run(
    store: &Store,
    f: &Fixture,
    height: &mut u64,
    opts: &PipelineOptions,
    deadline: u64,
    rng: &mut impl Rng,
) -> anyhow::Result<Duration> {
    store_events(
        store,
        f,
        height,
        opts.events,
        EVENTS_PER_BLOCK,
        opts.accounts,
        deadline,
        rng,
    )
    .await?;
    let start = Instant::now();
    let mut stages = RunningStages::start(store, f).await?;
    stages.wait_ended(opts.events).await?;
    let elapsed = start.elapsed();
    stages.stop().await?;
    Ok(elapsed)
}

/// Events arrive at [`LATENCY_LOAD_PER_SEC`] while the intake and the settler run as tasks,
/// woken by the commits before them; the time from each event's commit to its settlement's.
async fn latency_run(
    store: &Store,
    f: &Fixture,
    height: &mut u64,
    opts: &PipelineOptions,
    deadline: u64,
    rng: &mut impl Rng,
) -> anyhow::Result<LatencyFigures> {
    let events = opts.events.clamp(1, LATENCY_EVENTS_MAX);
    let mut stages = RunningStages::start(store, f).await?;

    // Offer the load: whatever is due by now, in blocks of at most a tenth of a second's worth.
    let per_block = (LATENCY_LOAD_PER_SEC / 10).max(1);
    let start = Instant::now();
    let mut stored: Vec<(String, Instant)> = Vec::with_capacity(events);
    while stored.len() < events {
        let due = ((start.elapsed().as_secs_f64() * LATENCY_LOAD_PER_SEC as f64) as usize)
            .min(events)
            .saturating_sub(stored.len());
        if due == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        stored.extend(
            store_events(
                store,
                f,
                height,
                due,
                per_block,
                opts.accounts,
                deadline,
                rng,
            )
            .await?,
        );
    }
    let offered = rate(events, start.elapsed());

    // Wait for every transfer of the run to reach its end (settled, held or refused).
    stages
        .wait_ended(events)
        .await
        .context("latency run: draining")?;
    let achieved = rate(events, start.elapsed());
    let settled = stages.stop().await?;

    let mut waits: Vec<Duration> = stored
        .iter()
        .filter_map(|(id, at)| settled.get(id).map(|s| s.saturating_duration_since(*at)))
        .collect();
    anyhow::ensure!(!waits.is_empty(), "latency run: nothing settled");
    waits.sort_unstable();
    let pct = |p: usize| waits[(waits.len() * p / 100).min(waits.len() - 1)];
    Ok(LatencyFigures {
        events,
        offered,
        achieved,
        p50: pct(50),
        p99: pct(99),
        max: waits[waits.len() - 1],
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn row(label: &str, events: usize, p: &PipelineFigures, ceiling: f64) -> String {
    let end_to_end = p.intake + p.settlement;
    let l = &p.latency;
    format!(
        "| {label} | {events} | {} | {} | {} | {} | **{}** | {} | {} | {} / {} / {} | {} held, {} refused |\n",
        fmt_rate(rate(events, p.storing)),
        fmt_rate(rate(events, p.intake)),
        fmt_rate(rate(events, p.settlement)),
        fmt_rate(rate(events, end_to_end)),
        fmt_rate(rate(events, p.backlog)),
        fmt_rate(ceiling),
        p.wal_bytes_per_transfer
            .map_or_else(|| "–".to_owned(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        p.outcomes.held,
        p.outcomes.refused,
    )
}

fn latency_line(label: &str, p: &PipelineFigures) -> String {
    let l = &p.latency;
    format!(
        "- {label}: {} events offered at {} (target {}), all ended at {} overall.\n",
        l.events,
        fmt_rate(l.offered),
        fmt_rate(LATENCY_LOAD_PER_SEC as f64),
        fmt_rate(l.achieved),
    )
}

/// The pipeline table: SQLite (scratch file) and PostgreSQL (scratch database).
pub async fn pipeline(opts: &PipelineOptions) -> anyhow::Result<String> {
    let mut out = format!(
        "### Pipeline: {} remittance events, {} accounts, four corridors\n\n| database | events | storing events | intake | settlement | intake then settlement | end to end, stages together | ceiling: settlement engine alone, durable | WAL per transfer | latency p50 / p99 / max at {} | screening |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        opts.events,
        opts.accounts,
        fmt_rate(LATENCY_LOAD_PER_SEC as f64),
    );
    let mut lines = String::new();
    let dir = tempfile_dir()?;
    let sqlite = format!("sqlite://{}/pipeline.sqlite?mode=rwc", dir.display());
    let figures = pipeline_on("SQLite", &sqlite, opts).await;
    let ceiling_db = format!("sqlite://{}/ceiling.sqlite?mode=rwc", dir.display());
    let ceiling = durable_executor_rate(
        &ceiling_db,
        CEILING_ACCOUNTS,
        CEILING_BATCHES,
        CEILING_BATCH_LEN,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let figures = figures.context("SQLite pipeline")?;
    let ceiling = ceiling.context("SQLite settlement engine alone")?;
    out.push_str(&row("SQLite (file, WAL)", opts.events, &figures, ceiling));
    lines.push_str(&latency_line("SQLite", &figures));
    if let Some(pg) = &opts.postgres_url {
        let (admin, name, url) = scratch_postgres(pg, "meridian_pipeline").await?;
        let figures = pipeline_on("PostgreSQL", &url, opts).await;
        let _ = admin.drop_database(&name).await;
        let figures = figures.context("PostgreSQL pipeline")?;
        let (admin, name, url) = scratch_postgres(pg, "meridian_ceiling").await?;
        let ceiling =
            durable_executor_rate(&url, CEILING_ACCOUNTS, CEILING_BATCHES, CEILING_BATCH_LEN).await;
        let _ = admin.drop_database(&name).await;
        let ceiling = ceiling.context("PostgreSQL settlement engine alone")?;
        out.push_str(&row(
            "PostgreSQL 15 (local)",
            opts.events,
            &figures,
            ceiling,
        ));
        lines.push_str(&latency_line("PostgreSQL", &figures));
    }
    out.push('\n');
    out.push_str(&lines);
    out.push_str(
        "\nTargets (transfer-pipeline issue): 100 000 remittances/s end to end on both databases; p50 < 50 ms and p99 < 250 ms at 10 000/s.\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_stored_event_ends_settled_held_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/p.sqlite?mode=rwc", dir.path().display());
        let opts = PipelineOptions {
            events: 2 * EVENTS_PER_BLOCK + 7,
            accounts: 50,
            postgres_url: None,
        };
        let figures = pipeline_on("SQLite", &url, &opts).await.unwrap();
        let o = figures.outcomes;
        assert_eq!(o.total(), 2_007, "{o:?}");
        assert!(o.settled > 1_800 && o.held > 0 && o.refused > 0, "{o:?}");
        assert_eq!(figures.wal_bytes_per_transfer, None);
        assert_eq!(figures.latency.events, 2_007);
        assert!(figures.backlog > Duration::ZERO);
        assert!(figures.latency.p50 <= figures.latency.p99);
    }
}
