//! `meridian devnet`: a self-contained demo — two anvil chains with Meridian's contracts, a traffic
//! generator, and the node on SQLite — stopped cleanly by Ctrl-C.

pub mod anvil;
pub mod chopsticks;
mod cluster;
pub mod stack;
pub mod substrate_chain;
mod traffic;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::Address;
use meridian_types::config::{
    Amount, AssetConfig, AssetKind, ChainConfig, Config, ContractConfig, ContractKind,
    CorridorConfig, FinalityRule, NodeConfig,
};
use meridian_types::{AssetId, ChainId};
use tokio::sync::{oneshot, watch};
use tracing::info;

pub use anvil::{find_anvil, free_port, AnvilNode};
pub use chopsticks::{find_chopsticks, ChopsticksNode};
pub use stack::{deploy_stack, dev_client, Stack, StackClient, DEV_KEYS};
pub use substrate_chain::DevSubstrate;
pub use traffic::TrafficGenerator;

/// Options of `meridian devnet`.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Where the devnet keeps its config, database and anvil logs (wiped at start).
    pub dir: PathBuf,
    /// Port of the first anvil; the second uses the next port.
    pub anvil_port: u16,
    /// Address of the node's HTTP server.
    pub listen: String,
    /// Seconds between generated transactions.
    pub traffic_interval: Duration,
    /// Nodes running the relay together; more than one runs a cluster of `meridian run`
    /// processes on PostgreSQL.
    pub nodes: u8,
    /// PostgreSQL server the cluster's database (`meridian_devnet`) is created on.
    pub postgres_url: String,
    /// NATS with JetStream for the cluster's news, if any.
    pub nats_url: Option<String>,
}

/// One dev chain: its anvil and its contracts.
pub struct DevChain {
    /// The process.
    pub anvil: AnvilNode,
    /// The contracts.
    pub stack: Stack,
}

impl DevChain {
    /// CAIP-2 id.
    pub fn id(&self) -> ChainId {
        ChainId::evm(self.anvil.chain_id)
    }

    /// CAIP-19 id of the stablecoin.
    pub fn stable_asset(&self) -> AssetId {
        AssetId::erc20(&self.id(), &format!("{:#x}", self.stack.stablecoin))
    }

    /// CAIP-19 id of the CBDC.
    pub fn cbdc_asset(&self) -> AssetId {
        AssetId::erc20(&self.id(), &format!("{:#x}", self.stack.cbdc))
    }

    /// The watcher config of this chain.
    pub fn chain_config(&self, name: &str) -> anyhow::Result<ChainConfig> {
        Ok(ChainConfig {
            id: self.id(),
            name: name.to_owned(),
            rpc_urls: vec![self.anvil.http_url().parse()?],
            ws_url: Some(self.anvil.ws_url().parse()?),
            finality: FinalityRule::Confirmations(2),
            start_block: 0,
            log_range_max: 500,
            poll_interval_ms: 500,
            rpc_timeout_ms: 5_000,
            contracts: vec![
                ContractConfig {
                    address: format!("{:#x}", self.stack.cbdc),
                    kind: ContractKind::Cbdc,
                },
                ContractConfig {
                    address: format!("{:#x}", self.stack.stablecoin),
                    kind: ContractKind::Stablecoin,
                },
                ContractConfig {
                    address: format!("{:#x}", self.stack.escrow),
                    kind: ContractKind::BridgeEscrow,
                },
            ],
            escrow: None,
            fee: None,
            // The escrow's relayer key, used by the relay only.
            signer_key: Some(meridian_types::config::Secret(
                stack::RELAYER_KEY.to_owned(),
            )),
            release_batch_max: meridian_types::config::RELEASE_BATCH_MAX_DEFAULT,
        })
    }
}

/// Starts anvil on `port` with `chain_id` and deploys the contracts.
pub async fn start_chain(
    anvil_bin: &Path,
    port: u16,
    chain_id: u64,
    block_time_s: Option<f64>,
    log: Option<&Path>,
) -> anyhow::Result<DevChain> {
    let anvil = AnvilNode::start(anvil_bin, port, chain_id, block_time_s, log).await?;
    let stack = deploy_stack(dev_client(&anvil.http_url(), chain_id, 0)?)
        .await
        .with_context(|| format!("deploying contracts on chain {chain_id}"))?;
    Ok(DevChain { anvil, stack })
}

/// The node config for a set of dev chains: every asset listed, a stablecoin corridor each way.
pub fn devnet_config(
    chains: &[DevChain],
    database_url: String,
    listen: String,
) -> anyhow::Result<Config> {
    let mut config = Config {
        node: NodeConfig {
            database_url,
            listen,
            ..NodeConfig::default()
        },
        // The devnet is for exploring: GraphiQL at `/` and introspection on.
        graphql: meridian_types::config::GraphqlConfig {
            graphiql: true,
            introspection: true,
            ..Default::default()
        },
        chains: Vec::new(),
        assets: Vec::new(),
        corridors: Vec::new(),
        api_keys: Vec::new(),
        compliance: Default::default(),
        governance: devnet_governance()?,
        cluster: None,
    };
    for (i, c) in chains.iter().enumerate() {
        config
            .chains
            .push(c.chain_config(&format!("devnet-{}", (b'a' + i as u8) as char))?);
        config.assets.push(AssetConfig {
            id: c.cbdc_asset(),
            symbol: "DEUR".into(),
            decimals: 2,
            kind: AssetKind::Cbdc,
            issuer: Some("Devnet central bank (dev key 0)".into()),
            reference_rate: None,
            reference_rate_max_age_secs: None,
        });
        config.assets.push(AssetConfig {
            id: c.stable_asset(),
            symbol: "USDM".into(),
            decimals: 6,
            kind: AssetKind::Stablecoin,
            issuer: Some("Devnet stablecoin issuer (dev key 0)".into()),
            reference_rate: None,
            reference_rate_max_age_secs: None,
        });
    }
    for (i, from) in chains.iter().enumerate() {
        for (j, to) in chains.iter().enumerate() {
            if i != j {
                config.corridors.push(stable_corridor(
                    format!("usdm-{}-{}", from.anvil.chain_id, to.anvil.chain_id),
                    from.stable_asset(),
                    to.stable_asset(),
                ));
            }
        }
    }
    let issues = config.validate();
    anyhow::ensure!(
        issues.is_empty(),
        "generated devnet config is invalid: {issues:?}"
    );
    Ok(config)
}

/// A devnet stablecoin corridor at par, 25 bps.
fn stable_corridor(id: String, source_asset: AssetId, dest_asset: AssetId) -> CorridorConfig {
    CorridorConfig {
        id,
        source_asset,
        dest_asset,
        fee_bps: 25,
        fixed_fee: Amount(0),
        rate: Some("1".into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1_000_000),
        max_amount: Amount(100_000_000_000),
        daily_cap: Amount(10_000_000_000_000),
        hold_threshold: Some(Amount(50_000_000_000)),
        paused: false,
        // Enough for the traffic generator to settle everything it sends.
        liquidity: Amount(1_000_000_000_000_000),
    }
}

/// Devnet governance: the four dev keys are members (one vote each), their keys are offered by
/// the voting page, and passed proposals apply after 30 s.
fn devnet_governance() -> anyhow::Result<meridian_types::config::GovernanceConfig> {
    Ok(meridian_types::config::GovernanceConfig {
        chain_id: 31337,
        members: (0..DEV_KEYS.len())
            .map(|i| dev_address(i).map(|a| format!("{a:#x}")))
            .collect::<anyhow::Result<_>>()?,
        dev_keys: DEV_KEYS
            .iter()
            .map(|k| meridian_types::config::Secret((*k).to_owned()))
            .collect(),
        execution_delay_secs: 30,
        // The demo's proposals open at once and run ten minutes: no delay, short votes.
        voting_delay_min_secs: 0,
        voting_period_min_secs: 60,
        sensitive_voting_delay_min_secs: 0,
        ..Default::default()
    })
}

/// Opens a first proposal on the devnet, signed by dev key 0: lower the first corridor's fee.
pub(crate) async fn propose_on_devnet(
    addr: std::net::SocketAddr,
    corridor: &str,
) -> anyhow::Result<String> {
    use ethers::types::transaction::eip712::{Eip712, TypedData};
    let now = chrono::Utc::now().timestamp() as u64;
    let draft = meridian_governance::ProposalDraft {
        space: "meridian".into(),
        title: format!("Lower the fee of {corridor} to 20 bps"),
        body: "Remittance operators asked for a cheaper route between the devnet chains.".into(),
        choices: vec!["For".into(), "Against".into(), "Abstain".into()],
        voting_type: meridian_governance::VotingType::SingleChoice,
        start: now,
        end: now + 600,
        actions: vec![meridian_types::RelayAction::SetCorridorFee {
            corridor: corridor.to_owned(),
            fee_bps: 20,
        }],
        proposer: format!("{:#x}", dev_address(0)?),
        timestamp: now,
    };
    let typed = draft.typed_data(&meridian_governance::Domain::meridian(31337));
    let parsed: TypedData = serde_json::from_value(typed.clone())?;
    let wallet: LocalWallet = DEV_KEYS[0].parse()?;
    let signature = wallet.sign_hash(ethers::types::H256(parsed.encode_eip712()?))?;
    let body = serde_json::json!({
        "query": "mutation($t: JSON!, $s: String!) { createProposal(typedData: $t, signature: $s) { id } }",
        "variables": {"t": typed, "s": format!("0x{signature}")},
    })
    .to_string();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "POST /graphql HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let json: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or("null"))?;
    json["data"]["createProposal"]["id"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("devnet proposal refused: {json}"))
}

/// Adds the Substrate dev chain to `config`: its assets, and stablecoin corridors both ways
/// between it and the EVM chain `hub`.
pub fn with_substrate(
    mut config: Config,
    sub: &DevSubstrate,
    hub: &DevChain,
) -> anyhow::Result<Config> {
    config.chains.push(sub.chain_config("devnet-substrate"));
    config.assets.push(AssetConfig {
        id: sub.stable_asset(),
        symbol: "USDH".into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: Some("Devnet stablecoin issuer (Substrate user 0)".into()),
        reference_rate: None,
        reference_rate_max_age_secs: None,
    });
    config.assets.push(AssetConfig {
        id: sub.cbdc_asset(),
        symbol: "DEURH".into(),
        decimals: 2,
        kind: AssetKind::Cbdc,
        issuer: Some("Devnet central bank (Substrate user 0)".into()),
        reference_rate: None,
        reference_rate_max_age_secs: None,
    });
    for (id, from, to) in [
        (
            format!("usdm-{}-usdh", hub.anvil.chain_id),
            hub.stable_asset(),
            sub.stable_asset(),
        ),
        (
            format!("usdh-usdm-{}", hub.anvil.chain_id),
            sub.stable_asset(),
            hub.stable_asset(),
        ),
    ] {
        config.corridors.push(stable_corridor(id, from, to));
    }
    let issues = config.validate();
    anyhow::ensure!(
        issues.is_empty(),
        "generated devnet config is invalid: {issues:?}"
    );
    Ok(config)
}

/// Address of dev key `index`.
pub fn dev_address(index: usize) -> anyhow::Result<Address> {
    Ok(DEV_KEYS
        .get(index)
        .context("no such dev key")?
        .parse::<LocalWallet>()?
        .address())
}

/// Runs the devnet until `shutdown` turns true.
pub async fn run(opts: DevnetOptions, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let anvil_bin = find_anvil().context(
        "anvil not found: run tools/install.sh (installs it from npm) or set MERIDIAN_ANVIL",
    )?;
    if opts.dir.exists() {
        std::fs::remove_dir_all(&opts.dir)
            .with_context(|| format!("clearing {}", opts.dir.display()))?;
    }
    std::fs::create_dir_all(&opts.dir)?;
    info!(anvil = %anvil_bin.display(), dir = %opts.dir.display(), "starting devnet chains");
    let mut chains = Vec::new();
    for (i, chain_id) in [31337u64, 31338].into_iter().enumerate() {
        let log = opts.dir.join(format!("anvil-{chain_id}.log"));
        let port = opts.anvil_port + i as u16;
        chains.push(start_chain(&anvil_bin, port, chain_id, Some(1.0), Some(&log)).await?);
    }
    let (chopsticks, spec) = find_chopsticks().context(
        "chopsticks not found: run tools/install.sh (installs it from npm and writes the chain spec)",
    )?;
    let substrate_port = opts.anvil_port + 2;
    info!(
        port = substrate_port,
        "starting the Substrate dev chain (Chopsticks)"
    );
    let sub = std::sync::Arc::new(
        DevSubstrate::start(
            &chopsticks,
            &spec,
            substrate_port,
            Some(&opts.dir.join("chopsticks.log")),
        )
        .await
        .context("starting the Substrate dev chain")?,
    );
    let db_path = opts.dir.join("meridian.sqlite");
    let config = with_substrate(
        devnet_config(
            &chains,
            format!("sqlite://{}", db_path.display()),
            opts.listen.clone(),
        )?,
        &sub,
        &chains[0],
    )?;
    let config_path = opts.dir.join("meridian.toml");
    if opts.nodes > 1 {
        let result =
            cluster::run(&opts, config, &config_path, &chains, &sub, shutdown.clone()).await;
        for c in &mut chains {
            c.anvil.stop().await;
        }
        if let Ok(mut sub) = std::sync::Arc::try_unwrap(sub) {
            sub.node.stop().await;
        }
        info!("devnet stopped");
        return result;
    }
    std::fs::write(&config_path, toml_of(&config)?)?;

    let (ready_tx, ready_rx) = oneshot::channel();
    let node = tokio::spawn(crate::node::run(config, shutdown.clone(), Some(ready_tx)));
    let addr = match ready_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            // The node exited before becoming ready: report its error.
            return node
                .await?
                .and_then(|()| anyhow::bail!("node stopped during start-up"));
        }
    };
    let traffic = TrafficGenerator::new(&chains)?.with_substrate(sub.clone(), &chains[0]);
    let first_corridor = config_path_corridor(&config_path)?;
    match propose_on_devnet(addr, &first_corridor).await {
        Ok(id) => info!(proposal = %id, "devnet proposal opened; vote at /vote"),
        Err(e) => tracing::warn!(error = %e, "devnet proposal not opened"),
    }
    println!(
        "\nMeridian devnet is running\n  chains:   {} (anvil :{}), {} (anvil :{}), {} (chopsticks :{substrate_port})\n  GraphiQL: http://{addr}/\n  GraphQL:  http://{addr}/graphql\n  vote:     http://{addr}/vote (Connect wallet: devnet members sign in the page)\n  metrics:  http://{addr}/metrics\n  config:   {}\n  try:      {{ chains {{ id headHeight checkpointHeight lag }} events(first: 5, orderBy: BLOCK_NUMBER_DESC) {{ edges {{ node {{ kind chainId blockNumber payload }} }} }} }}\nPress Ctrl-C to stop.\n",
        chains[0].id(), chains[0].anvil.port, chains[1].id(), chains[1].anvil.port, sub.chain, config_path.display()
    );
    let traffic_task = tokio::spawn(traffic.run(opts.traffic_interval, shutdown.clone()));

    let node_result = node.await;
    let _ = traffic_task.await;
    for c in &mut chains {
        c.anvil.stop().await;
    }
    if let Ok(mut sub) = std::sync::Arc::try_unwrap(sub) {
        sub.node.stop().await;
    }
    info!("devnet stopped");
    node_result?
}

/// The id of the first corridor in the generated config.
pub(crate) fn config_path_corridor(path: &Path) -> anyhow::Result<String> {
    let config = Config::load(path, Vec::new())?;
    config
        .corridors
        .first()
        .map(|c| c.id.clone())
        .context("the devnet has no corridor")
}

pub(crate) fn toml_of(config: &Config) -> anyhow::Result<String> {
    Ok(format!(
        "# Generated by `meridian devnet`; the chains are gone when the devnet stops.\n{}",
        toml::to_string_pretty(config)?
    ))
}
