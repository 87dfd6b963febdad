//! `meridian run`: one process with storage, a watcher per chain and the HTTP API.
//!
//! With `[cluster]` configured, each unit of work runs only while this node holds its lease
//! (`watch:<chain>`, `settle` for the intake and the settler, `payout:<chain>`, `gov`) and writes
//! settlements through a store fenced by that lease; without it everything runs here, as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_cluster::{while_held, ClusterSettings, LeaseKeeper};
use meridian_graphql::{build_schema, SchemaLimits};
use meridian_relayer::{cometbft, evm, substrate, BlockSource, ChainFollower, FollowerSettings};
use meridian_storage::Store;
use meridian_types::cluster::{LeaseName, NodeId};
use meridian_types::config::{ChainConfig, Config};
use meridian_types::{ChainFamily, ChainId};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, Instrument};

use crate::http::{Health, WatcherState};
use crate::telemetry::metrics_handle;

/// Heights per follower step on CometBFT and Substrate chains.
const COMETBFT_RANGE_MAX: u64 = 50;

/// A chain's block source and how new heads are announced on it.
struct WatchedChain {
    source: Box<dyn BlockSource>,
    heads: HeadFeed,
    start_block: u64,
}

/// The websocket subscription that wakes a chain's follower.
enum HeadFeed {
    Evm,
    Cometbft(cometbft::CompatMode),
    Substrate(substrate::SubstrateRpc),
}

/// How often the intake looks for new remittance requests.
const INTAKE_INTERVAL: Duration = Duration::from_secs(1);

/// How often quoted transfers are gathered into a settlement batch.
const SETTLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often settled transfers are released and submitted releases followed.
const DELIVERY_INTERVAL: Duration = Duration::from_secs(1);

/// How often a node of a cluster reads the transfer changes every node committed (GraphQL
/// subscriptions on any node see every change within about this long).
const CHANGE_FEED_INTERVAL: Duration = Duration::from_millis(200);

/// How often a node of a cluster compares the proposals with their last state (changes other
/// nodes made reach this node's voting page within about this long without NATS).
const PROPOSAL_FEED_INTERVAL: Duration = Duration::from_secs(1);

/// How often a node of a cluster applies relay parameters other nodes changed.
const PARAMETER_INTERVAL: Duration = Duration::from_secs(1);

/// How often proposals are moved along their lifecycle and due ones executed.
const GOVERNANCE_INTERVAL: Duration = Duration::from_secs(1);

/// The most executor workers a batch gets; each batch runs on one or on all, whichever the last
/// batches measured faster (BENCHMARKS.md: on two shared cores a second worker may not pay).
const EXECUTOR_THREADS: usize = 2;

/// Opens the configured database and applies pending migrations (the node owns its schema).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = &config.node.database_url;
    let store = Store::connect(url)
        .await
        .with_context(|| format!("node.database_url: cannot open {}", redact(url)))?;
    store
        .migrate_up()
        .await
        .context("applying database migrations")?;
    Ok(store)
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Runs the node until `shutdown` becomes true. `ready` receives the bound HTTP address once
/// everything is started (used by the devnet and tests).
pub async fn run(
    config: Config,
    mut shutdown: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    // On a cluster every node announces every transfer change through the database's change
    // feed, its own included (each reaches a subscriber once).
    let store = match config.cluster {
        Some(_) => store.announcing_from_database(),
        None => store,
    };
    info!(database = %redact(&config.node.database_url), backend = ?store.backend(), "storage ready");

    // Check every chain before starting any: a misconfigured chain stops start-up.
    let mut sources = Vec::new();
    for (i, chain) in config.chains.iter().enumerate() {
        let watched = connect_chain(i, chain, &config).await?;
        if let Some(family) = chain.id.family() {
            store.register_chain(&chain.id, &chain.name, family).await?;
        }
        sources.push((i, chain.clone(), watched));
    }
    // Several nodes: who this start is, and the leases it may hold.
    let keeper = match &config.cluster {
        Some(cluster) => Some(LeaseKeeper::new(
            store.clone(),
            cluster_settings(cluster, &config)?,
        )),
        None => None,
    };
    if let Some(k) = &keeper {
        info!(node = %k.node(), "running as one node of a cluster: each chain's watcher and payouts, settlement and governance run here while this node holds their lease");
    }
    let lease_of = |name: LeaseName| keeper.as_ref().and_then(|k| k.lease(&name));
    store
        .sync_reference_data(&config.assets, &config.corridors)
        .await
        .context("storing assets and corridors")?;
    let routing = Arc::new(meridian_transfers::routing::routing_state(&config)?);
    // Pauses, fees, caps, listings and sanctions set by operators and governance outlive a
    // restart: the latest change of each wins over the configuration.
    let mut parameters = meridian_transfers::routing::ParameterFollower::new(store.clone());
    let applied = parameters
        .apply_new(&routing)
        .await
        .context("applying stored relay parameters")?;
    info!(applied, "relay parameters restored");

    let health = Arc::new(Health::default());
    let mut tasks = JoinSet::new();
    // Woken by news from other nodes (NATS), the change feed reads at once.
    let news_wake = Arc::new(Notify::new());
    if keeper.is_some() {
        let feed = meridian_cluster::change_feed::ChangeFeed::start(store.clone())
            .await
            .context("reading the transfer change feed")?;
        crate::http::spawn_supervised(
            &mut tasks,
            health.clone(),
            "changes",
            shutdown.clone(),
            feed.run(CHANGE_FEED_INTERVAL, news_wake.clone(), shutdown.clone())
                .instrument(tracing::info_span!("changes")),
        );
        // Changes made through other nodes apply here too.
        crate::http::spawn_supervised(
            &mut tasks,
            health.clone(),
            "parameters",
            shutdown.clone(),
            parameters
                .run(routing.clone(), PARAMETER_INTERVAL, shutdown.clone())
                .instrument(tracing::info_span!("parameters")),
        );
    }
    for (i, chain, watched) in sources {
        let wake = Arc::new(Notify::new());
        let (id, stop) = (chain.id.clone(), shutdown.clone());
        match (&watched.heads, chain.ws_url.clone()) {
            // Substrate RPC is a websocket already: its finalized heads are always followed.
            (HeadFeed::Substrate(rpc), _) => {
                substrate::spawn_finalized_heads(rpc, wake.clone(), stop)
            }
            (HeadFeed::Evm, Some(ws)) => {
                let _subscription = evm::spawn_head_subscription(id, ws, wake.clone(), stop);
            }
            (HeadFeed::Cometbft(compat), Some(ws)) => {
                let _subscription =
                    cometbft::spawn_block_subscription(id, ws, *compat, wake.clone(), stop);
            }
            _ => {}
        }
        // A CometBFT or Substrate height costs several requests; keep steps short so a backfill
        // commits often.
        let range_max = match chain.id.family() {
            Some(ChainFamily::Cometbft | ChainFamily::Substrate) => {
                chain.log_range_max.min(COMETBFT_RANGE_MAX)
            }
            _ => chain.log_range_max,
        };
        let settings = FollowerSettings {
            start_block: watched.start_block,
            range_max,
            poll_interval: Duration::from_millis(chain.poll_interval_ms),
        };
        let health = health.clone();
        let id: ChainId = chain.id.clone();
        health.set(id.as_str(), WatcherState::Running);
        let span = tracing::info_span!("chain", id = %id, name = %chain.name);
        let stop = shutdown.clone();
        match lease_of(LeaseName::Watch(id.clone())) {
            None => {
                let follower = ChainFollower::new(watched.source, store.clone(), settings, wake);
                tasks.spawn(
                    async move {
                        crate::http::watch_chain(health, id.as_str(), follower.run(stop)).await;
                    }
                    .instrument(span),
                );
            }
            Some(lease) => {
                // Connected again each time the lease is taken: the watcher starts from the
                // stored checkpoint, wherever the previous holder left it.
                drop(watched);
                let (store, config) = (store.clone(), config.clone());
                tasks.spawn(
                    async move {
                        while_held(lease, stop, |lease, stop| {
                            // Its ingests and rewinds are fenced by the lease.
                            let (store, config, health, wake, id, settings) = (
                                store.fenced(&lease),
                                config.clone(),
                                health.clone(),
                                wake.clone(),
                                id.clone(),
                                settings.clone(),
                            );
                            async move {
                                let chain = &config.chains[i];
                                let run = async {
                                    let watched = connect_chain(i, chain, &config)
                                        .await
                                        .map_err(|e| format!("{e:#}"))?;
                                    ChainFollower::new(watched.source, store, settings, wake)
                                        .run(stop)
                                        .await
                                        .map_err(|e| e.to_string())
                                };
                                crate::http::watch_chain(health, id.as_str(), run).await;
                            }
                        })
                        .await;
                    }
                    .instrument(span),
                );
            }
        }
    }

    // Remittance requests become transfers (screened, quoted, or refused/held with a reason);
    // quoted transfers settle on the ledger (parallel executor, one transaction per batch).
    match lease_of(LeaseName::Settle) {
        None => {
            let (intake, settler) = transfer_pipeline(&store, &routing, &config).await?;
            crate::http::spawn_supervised(
                &mut tasks,
                health.clone(),
                "intake",
                shutdown.clone(),
                intake
                    .run(INTAKE_INTERVAL, shutdown.clone())
                    .instrument(tracing::info_span!("intake")),
            );
            crate::http::spawn_supervised(
                &mut tasks,
                health.clone(),
                "settler",
                shutdown.clone(),
                settler
                    .run(SETTLE_INTERVAL, shutdown.clone())
                    .instrument(tracing::info_span!("settler")),
            );
        }
        Some(lease) => {
            // The holder of `settle` runs both, its settlements fenced by the lease; each take
            // rebuilds the ledger and the rolling caps from the database.
            let (store, routing, config) = (store.clone(), routing.clone(), config.clone());
            let settle = while_held(lease, shutdown.clone(), move |lease, stop| {
                let (store, routing, config) =
                    (store.fenced(&lease), routing.clone(), config.clone());
                async move {
                    match transfer_pipeline(&store, &routing, &config).await {
                        Ok((intake, settler)) => {
                            tokio::join!(
                                intake
                                    .run(INTAKE_INTERVAL, stop.clone())
                                    .instrument(tracing::info_span!("intake")),
                                settler
                                    .run(SETTLE_INTERVAL, stop)
                                    .instrument(tracing::info_span!("settler")),
                            );
                        }
                        Err(e) => {
                            tracing::error!(
                                error = format!("{e:#}"),
                                epoch = lease.epoch,
                                "cannot start settlement under the lease"
                            );
                        }
                    }
                }
            });
            crate::http::spawn_supervised(
                &mut tasks,
                health.clone(),
                "settle",
                shutdown.clone(),
                settle,
            );
        }
    }

    // Settled transfers are released on their destination chains (chains with a signer); with
    // several nodes, each chain's payouts by the holder of its `payout:` lease.
    match &keeper {
        None => {
            let delivery = meridian_transfers::delivery::TransferDelivery::connect(
                store.clone(),
                &config.chains,
            )
            .await
            .context("connecting delivery signers")?;
            crate::http::spawn_supervised(
                &mut tasks,
                health.clone(),
                "delivery",
                shutdown.clone(),
                delivery
                    .run(DELIVERY_INTERVAL, shutdown.clone())
                    .instrument(tracing::info_span!("delivery")),
            );
        }
        Some(_) => {
            for chain in config.chains.iter().filter(|c| c.signer_key.is_some()) {
                let Some(lease) = lease_of(LeaseName::Payout(chain.id.clone())) else {
                    continue;
                };
                let (store, chain) = (store.clone(), chain.clone());
                let span = tracing::info_span!("delivery", chain = %chain.id);
                let deliver = while_held(lease, shutdown.clone(), move |lease, stop| {
                    let (store, chain) = (store.fenced(&lease), chain.clone());
                    async move {
                        match meridian_transfers::delivery::TransferDelivery::connect(
                            store,
                            std::slice::from_ref(&chain),
                        )
                        .await
                        {
                            Ok(delivery) => delivery.run(DELIVERY_INTERVAL, stop).await,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot start payouts under the lease");
                            }
                        }
                    }
                })
                .instrument(span);
                crate::http::spawn_supervised(
                    &mut tasks,
                    health.clone(),
                    "delivery",
                    shutdown.clone(),
                    deliver,
                );
            }
        }
    }

    // Governance: signed proposals and votes, tallies, execution of passed proposals.
    // An endpoint pool per EVM chain (failover, time-outs): voting-token balances at snapshots,
    // and the state of mirrored Governor proposals.
    let mut providers = std::collections::HashMap::new();
    for chain in config
        .chains
        .iter()
        .filter(|c| c.id.family() == Some(ChainFamily::Evm))
    {
        providers.insert(
            chain.id.clone(),
            Arc::new(meridian_relayer::evm::endpoint_pool(chain)),
        );
    }
    let governance = Arc::new(meridian_governance::Governance::new(
        store.clone(),
        routing.clone(),
        config.governance.clone(),
        providers,
    ));
    let governing = {
        let (governance, lease, shutdown) = (
            governance.clone(),
            lease_of(LeaseName::Governance),
            shutdown.clone(),
        );
        let store = store.clone();
        async move {
            match lease {
                None => governance.run(GOVERNANCE_INTERVAL, shutdown.clone()).await,
                Some(lease) => {
                    // Proposals move and execute through a store fenced by `gov` (GraphQL keeps
                    // taking votes on every node through the unfenced one).
                    while_held(lease, shutdown.clone(), |lease, stop| {
                        Arc::new(governance.writing_through(store.fenced(&lease)))
                            .run(GOVERNANCE_INTERVAL, stop)
                    })
                    .await
                }
            }
        }
    };
    crate::http::spawn_supervised(
        &mut tasks,
        health.clone(),
        "governance",
        shutdown.clone(),
        governing.instrument(tracing::info_span!("governance")),
    );
    if keeper.is_some() {
        // Proposal changes other nodes made reach this node's voting page (also without NATS).
        let feed = meridian_cluster::proposal_feed::ProposalFeed::new(store.clone());
        let announce: Arc<dyn Fn(String) + Send + Sync> = {
            let governance = governance.clone();
            Arc::new(move |id| governance.announce_remote_change(id))
        };
        crate::http::spawn_supervised(
            &mut tasks,
            health.clone(),
            "proposals",
            shutdown.clone(),
            feed.run(PROPOSAL_FEED_INTERVAL, announce, shutdown.clone())
                .instrument(tracing::info_span!("proposals")),
        );
    }
    if let (Some(cluster), Some(k)) = (&config.cluster, &keeper) {
        if let Some(url) = &cluster.nats_url {
            // News of every node's commits over NATS: the transfer feed reads them at once, and
            // proposal changes reach every node's subscribers (the voting page).
            let settings = meridian_cluster::news::NewsSettings {
                url: url.clone(),
                stream: cluster.nats_stream.clone(),
                node: k.node().clone(),
            };
            let proposals = meridian_cluster::news::ProposalNews {
                local: governance.subscribe_local(),
                forward: {
                    let governance = governance.clone();
                    Arc::new(move |id| governance.announce_remote_change(id))
                },
            };
            crate::http::spawn_supervised(
                &mut tasks,
                health.clone(),
                "news",
                shutdown.clone(),
                meridian_cluster::news::run(
                    settings,
                    store.clone(),
                    news_wake.clone(),
                    Some(proposals),
                    shutdown.clone(),
                )
                .instrument(tracing::info_span!("news")),
            );
        }
    }
    // The keeper renews this node's leases until the stages have stopped (its own stop
    // signal comes after theirs), then releases them. Aborted if this future is dropped (the
    // node dies with it: no renewals for dead stages).
    let (keeper_stop, keeper_stopped) = watch::channel(false);
    let keeper = keeper.map(|k| {
        AbortOnDrop(Some(tokio::spawn(
            k.run(keeper_stopped)
                .instrument(tracing::info_span!("cluster")),
        )))
    });

    let limits = SchemaLimits {
        page_size_max: config.graphql.page_size_max,
        depth_max: config.graphql.depth_max,
        complexity_max: config.graphql.complexity_max,
        aliases_max: config.graphql.aliases_max,
        introspection: config.graphql.introspection,
        subscriptions_per_connection_max: config.graphql.ws_subscriptions_max,
    };
    let schema = build_schema(
        store.clone(),
        routing.clone(),
        config.api_keys.clone(),
        limits,
        Some(governance),
    );
    let dev_keys: Vec<String> = config
        .governance
        .dev_keys
        .iter()
        .map(|k| k.0.clone())
        .collect();
    if !dev_keys.is_empty() {
        tracing::warn!(
            members = dev_keys.len(),
            "governance.dev_keys: devnet member keys are served at /vote/dev-keys (allowed on a loopback address only); never set them on a node others can reach"
        );
    }
    let app = crate::http::router(
        schema,
        &config.graphql,
        &config.api_keys,
        store.clone(),
        health,
        metrics_handle(),
    )?
    .merge(crate::vote_page::routes(&dev_keys)?);
    let listener = tokio::net::TcpListener::bind(&config.node.listen)
        .await
        .with_context(|| format!("node.listen: cannot listen on {}", config.node.listen))?;
    let addr = listener.local_addr()?;
    if config.graphql.graphiql {
        info!(%addr, "GraphQL at http://{addr}/graphql, GraphiQL at http://{addr}/, voting page at http://{addr}/vote");
    } else {
        info!(%addr, "GraphQL at http://{addr}/graphql, voting page at http://{addr}/vote (GraphiQL off: graphql.graphiql)");
    }
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    let mut stop = shutdown.clone();
    // The peer address of each connection is the rate limit's client when no API key is shown.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .context("HTTP server")?;

    let _ = shutdown.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    keeper_stop.send_replace(true);
    if let Some(handle) = keeper.and_then(|mut k| k.0.take()) {
        match handle.await {
            Ok(mut keeper) => {
                if let Err(e) = keeper.stop().await {
                    tracing::warn!(error = %e, "releasing leases at stop failed; they expire by themselves");
                }
            }
            Err(e) => tracing::error!(error = %e, "the cluster keeper died"),
        }
    }
    info!("node stopped");
    Ok(())
}

/// A spawned task aborted when its handle is dropped.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Connects to chain `i`'s endpoints and checks them (chain id, contracts).
async fn connect_chain(
    i: usize,
    chain: &ChainConfig,
    config: &Config,
) -> anyhow::Result<WatchedChain> {
    Ok(match chain.id.family() {
        Some(ChainFamily::Evm) => WatchedChain {
            source: Box::new(evm::connect(i, chain).await?),
            heads: HeadFeed::Evm,
            start_block: chain.start_block,
        },
        Some(ChainFamily::Cometbft) => {
            let connected = cometbft::connect(i, chain, &config.assets).await?;
            WatchedChain {
                source: Box::new(connected.source),
                heads: HeadFeed::Cometbft(connected.compat),
                start_block: connected.start_block,
            }
        }
        Some(ChainFamily::Substrate) => {
            let connected = substrate::connect(i, chain, &config.assets).await?;
            WatchedChain {
                source: Box::new(connected.source),
                heads: HeadFeed::Substrate(connected.rpc),
                start_block: chain.start_block,
            }
        }
        None => anyhow::bail!("chains[{i}].id: {} is not a known chain family", chain.id),
    })
}

/// The intake and the settler over `store` (fenced by the `settle` lease on a cluster), with
/// the rolling caps and the ledger read back from the database.
async fn transfer_pipeline(
    store: &Store,
    routing: &Arc<meridian_router::RoutingState>,
    config: &Config,
) -> anyhow::Result<(
    meridian_transfers::intake::TransferIntake,
    meridian_transfers::settler::TransferSettler,
)> {
    // Quoted transfers go from the intake to the settler in memory too (the database stays the
    // record; the settler still reads what the hand-off did not carry).
    let (quoted_tx, quoted_rx) = meridian_transfers::handoff::quoted_handoff();
    let intake = meridian_transfers::intake::TransferIntake::new(store.clone(), routing.clone())
        .hand_off_to(quoted_tx)
        .hold_period(
            config
                .compliance
                .hold_period_secs
                .map(|s| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
        );
    let counted = intake
        .restore_cap_usage(chrono::Utc::now())
        .await
        .context("restoring rolling cap usage")?;
    info!(transfers = counted, "rolling 24 h cap usage restored");
    let engine =
        meridian_transfers::settlement::SettlementEngine::load(store.clone(), EXECUTOR_THREADS)
            .await
            .context("loading the ledger")?;
    let settler =
        meridian_transfers::settler::TransferSettler::new(store.clone(), engine, &config.corridors)
            .await
            .context("opening the settlement ledger")?
            .receive_from(quoted_rx);
    Ok((intake, settler))
}

/// Who this node start is in the cluster, and every lease of the configured chains.
fn cluster_settings(
    cluster: &meridian_types::config::ClusterConfig,
    config: &Config,
) -> anyhow::Result<ClusterSettings> {
    let host = hostname();
    let name = cluster.node_name.clone().unwrap_or_else(|| host.clone());
    let pid = std::process::id();
    let started = chrono::Utc::now().timestamp_millis();
    let node =
        NodeId::for_start(&name, &format!("{pid}.{started}")).context("cluster.node_name")?;
    let mut leases = vec![LeaseName::Settle, LeaseName::Governance];
    for chain in &config.chains {
        leases.push(LeaseName::Watch(chain.id.clone()));
        if chain.signer_key.is_some() {
            leases.push(LeaseName::Payout(chain.id.clone()));
        }
    }
    Ok(ClusterSettings {
        node,
        host,
        pid,
        lease_ttl: Duration::from_millis(cluster.lease_ttl_ms),
        leases,
    })
}

/// This machine's host name (`HOSTNAME`, `/etc/hostname`), `localhost` when neither says.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        })
        .unwrap_or_else(|| "localhost".to_owned())
}
