//! `meridian`: the Meridian node and its operator commands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use meridian_node::{bench, devnet, node, parent_watch, telemetry};
use meridian_storage::Store;
use meridian_types::config::{Config, LogFormat};
use tokio::sync::watch;

/// mimalloc instead of glibc's allocator: see the dependency's note in Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Relays value and governance between blockchains"
)]
struct Cli {
    /// Configuration file (TOML); env overrides: DATABASE_URL, MERIDIAN__<KEY>__<PATH>.
    #[arg(
        long,
        short,
        global = true,
        env = "MERIDIAN_CONFIG",
        default_value = "meridian.toml"
    )]
    config: PathBuf,
    /// Log format; overrides `node.log_format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: watchers, storage and the GraphQL API.
    Run,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Several nodes running one relay: who runs and who holds which lease.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Measure performance; prints a Markdown table.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Start a self-contained demo: two anvil chains with contracts, a Substrate chain
    /// (Chopsticks), traffic and the node on SQLite.
    Devnet {
        /// Directory for the devnet's config, database and logs (wiped at start).
        #[arg(long, default_value = ".devnet")]
        dir: PathBuf,
        /// Port of the first anvil chain (the second uses the next one, Chopsticks the one after).
        #[arg(long, default_value_t = 18545)]
        anvil_port: u16,
        /// Address of the GraphQL server.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Milliseconds between generated transactions.
        #[arg(long, default_value_t = 1500)]
        traffic_interval_ms: u64,
        /// Nodes running the relay together (1 to 9). More than one: each is a `meridian run`
        /// process with `[cluster]` on PostgreSQL (a fresh `meridian_devnet` database) and NATS.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=9))]
        nodes: u8,
        /// PostgreSQL server the cluster devnet creates its database on (with --nodes > 1).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        postgres_url: String,
        /// NATS with JetStream for news between the nodes (with --nodes > 1; empty: none).
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The settlement executor: in memory (sequential vs parallel) and durable (vs one
    /// transaction per transfer).
    Executor {
        /// Accounts in the in-memory ledger.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: u32,
        /// Settlements per batch.
        #[arg(long, default_value_t = 16_384)]
        batch: usize,
        /// Batches per in-memory measurement.
        #[arg(long, default_value_t = 16)]
        batches: usize,
        /// Accounts in the durable ledgers.
        #[arg(long, default_value_t = 100_000)]
        durable_accounts: u32,
        /// Batches per durable measurement (default: one checkpoint interval, the engine's steady
        /// state of one balance checkpoint per CHECKPOINT_BATCHES_MAX batches).
        #[arg(long, default_value_t = meridian_transfers::settlement::CHECKPOINT_BATCHES_MAX as usize)]
        durable_batches: usize,
        /// Seconds spent on the conventional baseline per database.
        #[arg(long, default_value_t = 10)]
        baseline_seconds: u64,
        /// PostgreSQL server (a scratch database is created there and dropped).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Skip PostgreSQL.
        #[arg(long)]
        no_postgres: bool,
        /// Skip the durable part.
        #[arg(long)]
        in_memory_only: bool,
    },
    /// A remittance's whole path, from a stored source event to a committed settlement (intake
    /// and settlement), on SQLite and PostgreSQL: throughput, WAL per transfer, and latency at
    /// 10 000 events/s.
    Pipeline {
        /// Remittance events of the throughput run.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Distinct senders and recipients.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: u32,
        /// PostgreSQL server (a scratch database is created there and dropped).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Skip PostgreSQL.
        #[arg(long)]
        no_postgres: bool,
    },
    /// Remittances from a real chain: locks mined on anvil, then backfilled, routed and settled
    /// by the running node (events/s).
    Chain {
        /// Remittance locks mined before the node starts.
        #[arg(long, default_value_t = 2_000)]
        locks: usize,
    },
    /// Escrow payouts on anvil with 1 s blocks: one release per transaction against
    /// `releaseBatch` (releases/s and gas per release).
    Releases {
        /// Releases per run.
        #[arg(long, default_value_t = 2_000)]
        releases: usize,
        /// Releases per batched transaction.
        #[arg(long, default_value_t = 100)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back migrations (the last one by default).
    Down {
        /// How many to roll back; 0 means all.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop everything and re-apply all migrations (destroys data).
    Fresh,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Print the nodes (id, host, pid, last heartbeat) and one line per lease: its holder (node
    /// id and pid), epoch and expiry. Reads the database of the configuration, or DATABASE_URL
    /// when there is no config file; run in a devnet's directory it reads the devnet's.
    Status,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Load and validate the configuration; print every problem with the key it is about.
    Validate,
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// The database a command without a running node reads: the configuration's, or `DATABASE_URL`
/// when there is no config file (a deploy step before the node's config is in place).
fn database_of(path: &std::path::Path) -> anyhow::Result<(String, Option<Config>)> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() && !path.exists() => Ok((url, None)),
        _ => {
            let config = load_config(path)?;
            Ok((config.node.database_url.clone(), Some(config)))
        }
    }
}

async fn open_database(url: &str) -> anyhow::Result<Store> {
    Store::connect(url)
        .await
        .with_context(|| format!("node.database_url: cannot open {}", node::redact(url)))
}

/// A watch channel that turns true on Ctrl-C or SIGTERM, or when the devnet that started this
/// node is gone ([`parent_watch`]).
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        tokio::select! {
                            _ = ctrl_c => {}
                            _ = parent_watch::parent_gone() => {}
                        }
                        let _ = tx.send(true);
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
                _ = parent_watch::parent_gone() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format_override = cli.log_format.map(|f| match f {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    match cli.command {
        Command::Run => {
            let config = load_config(&cli.config)?;
            telemetry::init_tracing(format_override.unwrap_or(config.node.log_format));
            node::run(config, shutdown_signal(), None).await
        }
        Command::Cluster {
            action: ClusterAction::Status,
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let (database_url, config) = database_of(&cli.config)?;
            let ttl_ms = config
                .and_then(|c| c.cluster)
                .map_or(meridian_types::config::LEASE_TTL_MS_DEFAULT, |c| {
                    c.lease_ttl_ms
                });
            let store = open_database(&database_url).await?;
            println!("cluster on {}", node::redact(&database_url));
            print!(
                "{}",
                meridian_node::cluster_status::report(&store, Duration::from_millis(ttl_ms))
                    .await
                    .context("reading the cluster tables (is the database migrated?)")?
            );
            Ok(())
        }
        Command::Migrate { action } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            // Migrations need only the database: `DATABASE_URL` alone will do when there is no
            // config file (a deploy step that runs before the node's config is in place).
            let (database_url, _) = database_of(&cli.config)?;
            let store = open_database(&database_url).await?;
            match action {
                MigrateAction::Up => store.migrate_up().await?,
                MigrateAction::Down { steps } => {
                    store.migrate_down((steps > 0).then_some(steps)).await?
                }
                MigrateAction::Fresh => store.migrate_fresh().await?,
                MigrateAction::Status => {}
            }
            for m in store.migration_status().await? {
                println!(
                    "{} {}",
                    if m.applied { "applied" } else { "pending" },
                    m.name
                );
            }
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Validate,
        } => match load_config(&cli.config).and_then(|config| {
            meridian_transfers::routing::routing_state(&config)?;
            Ok(config)
        }) {
            Ok(config) => {
                println!(
                    "{}: ok ({} chains, {} assets, {} corridors)",
                    cli.config.display(),
                    config.chains.len(),
                    config.assets.len(),
                    config.corridors.len()
                );
                print!("{}", config_report(&config));
                Ok(())
            }
            Err(e) => {
                eprintln!("{e:#}");
                std::process::exit(1);
            }
        },
        Command::Bench {
            what:
                BenchWhat::Executor {
                    accounts,
                    batch,
                    batches,
                    durable_accounts,
                    durable_batches,
                    baseline_seconds,
                    postgres_url,
                    no_postgres,
                    in_memory_only,
                },
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let opts = bench::BenchOptions {
                accounts,
                batch_len: batch,
                batches,
                durable_accounts,
                durable_batches,
                baseline_time: Duration::from_secs(baseline_seconds),
                postgres_url: (!no_postgres).then_some(postgres_url),
            };
            println!(
                "## meridian bench executor\n\nMachine: {} logical CPUs.\n",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            );
            let table = tokio::task::spawn_blocking({
                let opts = opts.clone();
                move || bench::in_memory(&opts)
            })
            .await??;
            println!("{table}");
            if !in_memory_only {
                println!("{}", bench::durable(&opts).await?);
            }
            Ok(())
        }
        Command::Bench {
            what:
                BenchWhat::Pipeline {
                    events,
                    accounts,
                    postgres_url,
                    no_postgres,
                },
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let opts = bench::pipeline::PipelineOptions {
                events,
                accounts,
                postgres_url: (!no_postgres).then_some(postgres_url),
            };
            println!(
                "## meridian bench pipeline\n\nMachine: {} logical CPUs.\n",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            );
            println!("{}", bench::pipeline::pipeline(&opts).await?);
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Chain { locks },
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let result = bench::chain::run(&bench::chain::ChainBenchOptions { locks }).await?;
            println!(
                "## meridian bench chain\n\nMachine: {} logical CPUs.\n\n{}",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                bench::chain::report(&result)
            );
            Ok(())
        }
        Command::Bench {
            what: BenchWhat::Releases { releases, batch },
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let runs =
                bench::releases::run(&bench::releases::ReleaseBenchOptions { releases, batch })
                    .await?;
            println!(
                "## meridian bench releases\n\nMachine: {} logical CPUs; anvil, 1 s blocks.\n\n{}",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                bench::releases::report(&runs)
            );
            Ok(())
        }
        Command::Devnet {
            dir,
            anvil_port,
            listen,
            traffic_interval_ms,
            nodes,
            postgres_url,
            nats_url,
        } => {
            telemetry::init_tracing(format_override.unwrap_or_default());
            let opts = devnet::DevnetOptions {
                dir,
                anvil_port,
                listen,
                traffic_interval: Duration::from_millis(traffic_interval_ms),
                nodes,
                postgres_url,
                nats_url: (!nats_url.is_empty()).then_some(nats_url),
            };
            devnet::run(opts, shutdown_signal()).await
        }
    }
}

/// What a validated configuration will watch and how governance counts power, one line each.
fn config_report(config: &meridian_types::config::Config) -> String {
    use meridian_types::config::TokenPower;
    let mut out = String::new();
    for chain in &config.chains {
        for c in &chain.contracts {
            out.push_str(&format!(
                "contract {} {} on {}\n",
                c.kind.as_str(),
                c.address,
                chain.id
            ));
        }
    }
    let g = &config.governance;
    if g.tokens.is_empty() {
        out.push_str(&format!(
            "governance: {} members, one vote each\n",
            g.members.len()
        ));
    } else {
        for t in &g.tokens {
            let power = match t.power {
                TokenPower::Balance => {
                    "balanceOf at the snapshot block (archive RPC for old blocks)"
                }
                TokenPower::Votes => "delegated votes (getPastVotes)",
            };
            out.push_str(&format!(
                "governance: token {} on {}: {power}\n",
                t.address, t.chain
            ));
        }
    }
    out
}
