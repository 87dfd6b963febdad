//! `meridian bench pipeline`: the path a remittance really takes, from a stored source event to a
//! committed settlement — intake (screening, routing, quote, the transfer stored with its
//! history) and settlement (the ledger batch and the state change) — on SQLite and PostgreSQL.
//!
//! N remittance events are stored as a watcher would (in blocks), then each stage runs until
//! nothing is left for it; every transfer must end `settled`. Prints events/s per stage and end
//! to end. The transfer-pipeline issue's target is 100 000/s end to end; this is its baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use meridian_router::{RouteLimits, Router, RoutingState, Screening};
use meridian_storage::{IngestBatch, Store};
use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
use meridian_types::{
    AccountId, AssetId, BlockRef, ChainEvent, ChainFamily, ChainId, EventId, EventPayload,
    TransferState,
};
use rand::{Rng, SeedableRng};

use super::{fmt_rate, rate, scratch_postgres, tempfile_dir};
use meridian_transfers::intake::TransferIntake;
use meridian_transfers::settlement::SettlementEngine;
use meridian_transfers::settler::TransferSettler;

/// Events stored per block (and per ingest commit).
const EVENTS_PER_BLOCK: usize = 1_000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Remittance events.
    pub events: usize,
    /// Distinct senders and recipients, drawn uniformly.
    pub accounts: u32,
    /// PostgreSQL server to benchmark (a scratch database is created and dropped), if any.
    pub postgres_url: Option<String>,
}

struct Fixture {
    source: ChainId,
    dest: ChainId,
    source_asset: AssetId,
    dest_asset: AssetId,
    corridors: Vec<CorridorConfig>,
    routing: RoutingState,
}

fn fixture() -> anyhow::Result<Fixture> {
    let source: ChainId = "eip155:1".parse()?;
    let dest: ChainId = "eip155:2".parse()?;
    let source_asset = AssetId::erc20(&source, "0x00000000000000000000000000000000000000a1");
    let dest_asset = AssetId::erc20(&dest, "0x00000000000000000000000000000000000000b1");
    let asset = |id: &AssetId, symbol: &str| AssetConfig {
        id: id.clone(),
        symbol: symbol.into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
    };
    let corridors = vec![CorridorConfig {
        id: "a-b".into(),
        source_asset: source_asset.clone(),
        dest_asset: dest_asset.clone(),
        fee_bps: 25,
        fixed_fee: Amount(0),
        rate: Some("1".into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1),
        max_amount: Amount(1_000_000_000_000),
        daily_cap: Amount(u128::MAX / 4),
        hold_threshold: None,
        paused: false,
        liquidity: Amount(u128::MAX / 4),
    }];
    let router = Router::new(
        &[asset(&source_asset, "USDA"), asset(&dest_asset, "USDB")],
        &corridors,
        RouteLimits::default(),
    )?;
    Ok(Fixture {
        source,
        dest,
        source_asset,
        dest_asset,
        corridors,
        routing: RoutingState::new(router, Screening::default()),
    })
}

fn block(height: u64) -> BlockRef {
    let hash = |h: u64| format!("0x{h:064x}");
    BlockRef {
        height,
        hash: hash(height),
        parent_hash: Some(hash(height.saturating_sub(1))),
    }
}

/// The remittance events of block `height`: `n` transfers between uniformly drawn accounts.
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
                    sender: AccountId::new(
                        &f.source,
                        &format!("0x{:040x}", rng.gen_range(1..=accounts)),
                    ),
                    asset: f.source_asset.clone(),
                    amount: rng.gen_range(1_000_000..100_000_000),
                    dest_chain: f.dest.to_string(),
                    recipient: format!("0x{:040x}", rng.gen_range(1..=accounts)),
                    dest_asset: f.dest_asset.to_string(),
                    deadline,
                },
            }
        })
        .collect()
}

/// One row of the table: the whole pipeline on the database at `url`.
async fn pipeline_on(label: &str, url: &str, opts: &PipelineOptions) -> anyhow::Result<String> {
    let store = Store::connect(url).await?;
    store.migrate_up().await?;
    let f = fixture()?;
    store
        .register_chain(&f.source, "bench-source", ChainFamily::Evm)
        .await?;
    let now = Utc::now();
    let deadline = (now + chrono::Duration::days(1)).timestamp().max(0) as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);

    let start = Instant::now();
    let mut stored = 0;
    let mut height = 0;
    while stored < opts.events {
        height += 1;
        let n = EVENTS_PER_BLOCK.min(opts.events - stored);
        let events = remittances(&f, height, n, opts.accounts, deadline, &mut rng);
        store
            .commit_ingest(&IngestBatch {
                chain: f.source.clone(),
                events,
                blocks: vec![block(height)],
                checkpoint: block(height),
            })
            .await?;
        stored += n;
    }
    let storing = start.elapsed();

    let intake = TransferIntake::new(store.clone(), Arc::new(f.routing));
    let start = Instant::now();
    let created = intake.pass(now).await?.created.len();
    let intake_time = start.elapsed();

    let engine = SettlementEngine::load(store.clone(), 2).await?;
    let mut settler = TransferSettler::new(store.clone(), engine, &f.corridors).await?;
    let start = Instant::now();
    let mut settled = 0;
    loop {
        let moved = settler.pass(now).await?.moved;
        if moved.is_empty() {
            break;
        }
        settled += moved
            .iter()
            .filter(|(_, s)| *s == TransferState::Settled)
            .count();
    }
    let settle_time = start.elapsed();
    anyhow::ensure!(
        created == opts.events && settled == opts.events,
        "{label}: {created} transfers created and {settled} settled of {} events",
        opts.events
    );
    let end_to_end: Duration = intake_time + settle_time;
    Ok(format!(
        "| {label} | {} | {} | {} | {} | **{}** |\n",
        opts.events,
        fmt_rate(rate(opts.events, storing)),
        fmt_rate(rate(opts.events, intake_time)),
        fmt_rate(rate(opts.events, settle_time)),
        fmt_rate(rate(opts.events, end_to_end)),
    ))
}

/// The pipeline table: SQLite (scratch file) and PostgreSQL (scratch database).
pub async fn pipeline(opts: &PipelineOptions) -> anyhow::Result<String> {
    let mut out = format!(
        "### Pipeline: {} remittance events, {} accounts, one corridor\n\n| database | events | storing events | intake | settlement | intake + settlement (end to end) |\n|---|---|---|---|---|---|\n",
        opts.events, opts.accounts
    );
    let dir = tempfile_dir()?;
    let sqlite = format!("sqlite://{}/pipeline.sqlite?mode=rwc", dir.display());
    let row = pipeline_on("SQLite (file, WAL)", &sqlite, opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    out.push_str(&row.context("SQLite pipeline")?);
    if let Some(pg) = &opts.postgres_url {
        let (admin, name, url) = scratch_postgres(pg, "meridian_pipeline").await?;
        let row = pipeline_on("PostgreSQL 15 (local)", &url, opts).await;
        let _ = admin.drop_database(&name).await;
        out.push_str(&row.context("PostgreSQL pipeline")?);
    }
    out.push_str(
        "\nTarget (transfer-pipeline issue): 100 000 remittances/s end to end on both databases.\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_stored_event_ends_settled() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/p.sqlite?mode=rwc", dir.path().display());
        let opts = PipelineOptions {
            events: 2 * EVENTS_PER_BLOCK + 7,
            accounts: 50,
            postgres_url: None,
        };
        let row = pipeline_on("SQLite", &url, &opts).await.unwrap();
        assert!(row.starts_with("| SQLite | 2007 |"), "{row}");
    }
}
