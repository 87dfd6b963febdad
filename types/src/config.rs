//! Node configuration: one TOML file plus environment overrides, validated before anything starts.
//!
//! Operators get every problem at once, each naming the exact key (`chains[1].rpc_urls[0]`), instead
//! of a node that fails an hour later on the first use of a bad value.
//!
//! Environment overrides: `DATABASE_URL` sets `node.database_url`; any other key is set with
//! `MERIDIAN__` followed by its path in upper case with `__` between parts, list indexes
//! included, e.g. `MERIDIAN__NODE__LISTEN=0.0.0.0:8080` or
//! `MERIDIAN__CHAINS__0__RPC_URLS='["http://a:8545","http://b:8545"]'`. A value that parses as a
//! TOML value (number, boolean, array) is taken as that, anything else as a string.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use crate::ids::{AssetId, ChainFamily, ChainId};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "MERIDIAN__";
/// Largest block range a watcher may ask for in one `eth_getLogs`; public RPCs reject more.
pub const LOG_RANGE_MAX_LIMIT: u64 = 10_000;
/// Deepest confirmation count accepted; beyond this a chain is better served by `finalized`.
pub const CONFIRMATIONS_MAX: u64 = 1_000;

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub node: NodeConfig,
    /// GraphQL limits.
    #[serde(default)]
    pub graphql: GraphqlConfig,
    /// Chains to watch.
    #[serde(default)]
    pub chains: Vec<ChainConfig>,
    /// Assets Meridian knows.
    #[serde(default)]
    pub assets: Vec<AssetConfig>,
    /// Transfer corridors between assets.
    #[serde(default)]
    pub corridors: Vec<CorridorConfig>,
    /// Keys that authorise operator mutations.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Screening of transfers.
    #[serde(default)]
    pub compliance: ComplianceConfig,
    /// DAO governance: who votes, with what power, and how proposals pass.
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// Several nodes running one relay on one PostgreSQL database. Absent: a single node.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// Several nodes, one relay: each unit of work (a chain's watcher, settlement, a chain's payouts,
/// governance) is leased to one node at a time; the others stand by and take over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in `meridian cluster status` and the leases' holder ids (each start adds
    /// its process id and start time); default: the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// How long a lease lasts unless its holder renews it, in milliseconds: after a crash the
    /// work stops for about this long. Holders renew four times per lease (at most once a second).
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// NATS server with JetStream (`nats://host:4222`) carrying news of committed changes
    /// between the nodes, so each sees the others' at once; without it (or while it is down)
    /// nodes see each other's changes by polling the database.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// The JetStream stream of this cluster's news (one per cluster sharing a NATS server).
    #[serde(default = "default_nats_stream")]
    pub nats_stream: String,
}

fn default_nats_stream() -> String {
    "MERIDIAN_NEWS".into()
}

/// Leases last this long unless renewed (ms).
pub const LEASE_TTL_MS_DEFAULT: u64 = 10_000;

fn default_lease_ttl_ms() -> u64 {
    LEASE_TTL_MS_DEFAULT
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: None,
            lease_ttl_ms: LEASE_TTL_MS_DEFAULT,
            nats_url: None,
            nats_stream: default_nats_stream(),
        }
    }
}

/// DAO governance settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// The chain id of the EIP-712 domain ballots are signed under (wallets sign for the chain
    /// they are connected to).
    #[serde(default = "default_governance_chain_id")]
    pub chain_id: u64,
    /// The DAO's space name.
    #[serde(default = "default_space")]
    pub space: String,
    /// One member, one vote: these addresses (0x) vote with power 1 each.
    #[serde(default)]
    pub members: Vec<String>,
    /// Token voting: the voter's ERC-20 balance on each of these tokens at the proposal's
    /// snapshot block (taken on each chain when the proposal is created), summed.
    #[serde(default)]
    pub tokens: Vec<VotingTokenConfig>,
    /// Participation a proposal needs (in voting power).
    #[serde(default = "default_quorum")]
    pub quorum: Amount,
    /// Share of the counted power "for" (choice 0) needs, in basis points.
    #[serde(default = "default_threshold_bps")]
    pub threshold_bps: u32,
    /// Participation a proposal needs as a share of all voting power at its snapshot (members,
    /// or the tokens' supply), in basis points; the larger of this and `quorum` applies.
    #[serde(default = "default_quorum_bps")]
    pub quorum_bps: u32,
    /// Shortest time between a proposal's creation and the opening of its vote: members must
    /// be able to see it coming.
    #[serde(default = "default_voting_delay_min_secs")]
    pub voting_delay_min_secs: u64,
    /// Shortest vote.
    #[serde(default = "default_voting_period_min_secs")]
    pub voting_period_min_secs: u64,
    /// Shortest delay before the vote of a proposal that weakens compliance (lifts a sanction,
    /// raises a corridor's cap).
    #[serde(default = "default_sensitive_voting_delay_min_secs")]
    pub sensitive_voting_delay_min_secs: u64,
    /// Share of "for" such a proposal needs (a supermajority), in basis points; the larger of
    /// this and `threshold_bps` applies.
    #[serde(default = "default_sensitive_threshold_bps")]
    pub sensitive_threshold_bps: u32,
    /// Voting power a proposer needs.
    #[serde(default = "default_quorum")]
    pub proposal_threshold: Amount,
    /// Delay between a proposal succeeding and its actions being applied.
    #[serde(default = "default_execution_delay_secs")]
    pub execution_delay_secs: u64,
    /// How long a queued proposal may wait for execution before it expires.
    #[serde(default = "default_grace_period_secs")]
    pub grace_period_secs: u64,
    /// Oldest accepted signature on a vote or proposal.
    #[serde(default = "default_signature_max_age_secs")]
    pub signature_max_age_secs: u64,
    /// Devnet only: private keys (hex) the voting page offers to sign with in the browser.
    /// Never set them on a real deployment: the page hands them to anyone who asks.
    #[serde(default)]
    pub dev_keys: Vec<Secret>,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            chain_id: default_governance_chain_id(),
            space: default_space(),
            members: Vec::new(),
            tokens: Vec::new(),
            quorum: default_quorum(),
            threshold_bps: default_threshold_bps(),
            quorum_bps: default_quorum_bps(),
            voting_delay_min_secs: default_voting_delay_min_secs(),
            voting_period_min_secs: default_voting_period_min_secs(),
            sensitive_voting_delay_min_secs: default_sensitive_voting_delay_min_secs(),
            sensitive_threshold_bps: default_sensitive_threshold_bps(),
            proposal_threshold: default_quorum(),
            execution_delay_secs: default_execution_delay_secs(),
            grace_period_secs: default_grace_period_secs(),
            signature_max_age_secs: default_signature_max_age_secs(),
            dev_keys: Vec::new(),
        }
    }
}

/// A token whose balances or delegated votes are voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingTokenConfig {
    /// The EVM chain it lives on (must be configured under `[[chains]]`).
    pub chain: ChainId,
    /// The token contract.
    pub address: String,
    /// What counts as a holder's power (`balance`, the default, or `votes`).
    #[serde(default)]
    pub power: TokenPower,
}

/// How a voting token measures power at a proposal's snapshot block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPower {
    /// `balanceOf` at the snapshot block: an eth_call at a past block, so the RPC must serve
    /// past state (an archive node, once the block is older than its pruning window).
    #[default]
    Balance,
    /// Delegated votes (ERC20Votes / ERC-5805 `getPastVotes(account, snapshot)`), as DAOs
    /// built on OpenZeppelin's Governor count them: a holder who has not delegated has none, a
    /// delegate has what was delegated to them. Read at the latest block (no archive needed);
    /// the token must count time in blocks (ERC-6372 `mode=blocknumber`, ERC20Votes' default).
    Votes,
}

fn default_governance_chain_id() -> u64 {
    1
}
fn default_space() -> String {
    "meridian".into()
}
fn default_quorum() -> Amount {
    Amount(1)
}
fn default_quorum_bps() -> u32 {
    // A tenth of all voting power must take part.
    1_000
}
fn default_voting_delay_min_secs() -> u64 {
    3_600
}
fn default_voting_period_min_secs() -> u64 {
    86_400
}
fn default_sensitive_voting_delay_min_secs() -> u64 {
    2 * 86_400
}
fn default_sensitive_threshold_bps() -> u32 {
    // Two thirds (2 of 3 members are enough).
    6_666
}
fn default_threshold_bps() -> u32 {
    5_000
}
fn default_execution_delay_secs() -> u64 {
    60
}
fn default_grace_period_secs() -> u64 {
    7 * 86_400
}
impl Default for ComplianceConfig {
    fn default() -> Self {
        ComplianceConfig {
            denylist_path: None,
            account_daily_cap: None,
            travel_rule_threshold: None,
            reference_unit: None,
            reference_decimals: default_reference_decimals(),
            hold_period_secs: None,
        }
    }
}

fn default_reference_decimals() -> u8 {
    2
}
fn default_signature_max_age_secs() -> u64 {
    600
}

/// Screening of transfers: sanctions, rolling caps, the travel rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceConfig {
    /// Sanctions list: one CAIP-10 account or bare address per line, `#` for comments. Re-read
    /// when the file changes, without a restart.
    #[serde(default)]
    pub denylist_path: Option<std::path::PathBuf>,
    /// Most one sending account may move in 24 hours, whatever assets it sends, in base units of
    /// the reference unit (e.g. cents of `USD` with `reference_decimals = 2`).
    #[serde(default)]
    pub account_daily_cap: Option<Amount>,
    /// Above this value (reference base units), originator and beneficiary data are required
    /// (the transfer is held until they are given).
    #[serde(default)]
    pub travel_rule_threshold: Option<Amount>,
    /// The unit the limits above are stated in (`USD`, `EUR`…); required with either limit.
    /// Each asset states its value in it (`assets[].reference_rate`).
    #[serde(default)]
    pub reference_unit: Option<String>,
    /// Decimals of the reference unit's base unit (2: limits in cents).
    #[serde(default = "default_reference_decimals")]
    pub reference_decimals: u8,
    /// How long a transfer above a corridor's hold threshold waits before it goes on by itself;
    /// without it, until an operator releases it.
    #[serde(default)]
    pub hold_period_secs: Option<u64>,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `sqlite://path?mode=rwc` (default, created on first start) or `postgres://…`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Address of the HTTP server (GraphQL, health, metrics).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `text` (human-readable) or `json` logs.
    #[serde(default)]
    pub log_format: LogFormat,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            database_url: default_database_url(),
            listen: default_listen(),
            log_format: LogFormat::default(),
        }
    }
}

fn default_database_url() -> String {
    "sqlite://meridian.sqlite?mode=rwc".into()
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Limits that protect the GraphQL endpoint from expensive or hostile queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlConfig {
    /// Largest `first`/`last` a connection accepts.
    #[serde(default = "default_page_size_max")]
    pub page_size_max: u32,
    /// Deepest query nesting accepted.
    #[serde(default = "default_depth_max")]
    pub depth_max: u32,
    /// Highest query complexity accepted (each field costs 1, connections cost per item).
    #[serde(default = "default_complexity_max")]
    pub complexity_max: u32,
    /// Most aliased fields accepted in one request (aliases let one request ask for the same
    /// costly field many times).
    #[serde(default = "default_aliases_max")]
    pub aliases_max: u32,
    /// Serve GraphiQL at `/` (from the node itself; needs `introspection`). Off by default: the
    /// devnet turns it on.
    #[serde(default)]
    pub graphiql: bool,
    /// Answer introspection queries (`__schema`, `__type`). Off by default: the devnet turns
    /// it on; a production API need not describe itself to strangers.
    #[serde(default)]
    pub introspection: bool,
    /// Requests per second each client may make on average: a configured API key, else a peer
    /// address (behind a reverse proxy every client shares the proxy's budget).
    #[serde(default = "default_rate_limit_per_second")]
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the rate applies.
    #[serde(default = "default_rate_limit_burst")]
    pub rate_limit_burst: u32,
    /// Origins (`https://desk.example.com`) whose pages may call the API from a browser; none
    /// by default, so other sites' pages cannot read its answers.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Websocket (subscription) connections open at once, node-wide.
    #[serde(default = "default_ws_connections_max")]
    pub ws_connections_max: u32,
    /// Subscriptions at once on one websocket connection.
    #[serde(default = "default_ws_subscriptions_max")]
    pub ws_subscriptions_max: u32,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            page_size_max: default_page_size_max(),
            depth_max: default_depth_max(),
            complexity_max: default_complexity_max(),
            aliases_max: default_aliases_max(),
            graphiql: false,
            introspection: false,
            rate_limit_per_second: default_rate_limit_per_second(),
            rate_limit_burst: default_rate_limit_burst(),
            cors_origins: Vec::new(),
            ws_connections_max: default_ws_connections_max(),
            ws_subscriptions_max: default_ws_subscriptions_max(),
        }
    }
}

fn default_page_size_max() -> u32 {
    100
}
fn default_depth_max() -> u32 {
    // GraphiQL's and codegen tools' introspection query nests 13 deep.
    16
}
fn default_complexity_max() -> u32 {
    5_000
}
fn default_aliases_max() -> u32 {
    32
}
fn default_ws_connections_max() -> u32 {
    1_024
}
fn default_ws_subscriptions_max() -> u32 {
    32
}
fn default_rate_limit_per_second() -> u32 {
    50
}
fn default_rate_limit_burst() -> u32 {
    // GraphiQL loads a page, four assets and the schema at once.
    100
}

/// One chain to watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// CAIP-2 id; the family is taken from its namespace.
    pub id: ChainId,
    /// Human name for logs and dashboards.
    pub name: String,
    /// JSON-RPC endpoints, tried in order; the next takes over when one fails.
    pub rpc_urls: Vec<Url>,
    /// Optional websocket endpoint for head notifications; polling is used without it.
    #[serde(default)]
    pub ws_url: Option<Url>,
    /// When a block counts as final.
    #[serde(default)]
    pub finality: FinalityRule,
    /// First block to ingest when there is no checkpoint yet.
    #[serde(default)]
    pub start_block: u64,
    /// Largest block range per `eth_getLogs` call.
    #[serde(default = "default_log_range_max")]
    pub log_range_max: u64,
    /// How often to poll for a new head when no websocket notification arrives.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Time-out of one RPC request.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// Contracts whose events are ingested (EVM chains).
    #[serde(default)]
    pub contracts: Vec<ContractConfig>,
    /// The relay's escrow account on a Cosmos or Substrate chain (bech32 or SS58): a transfer to
    /// it carrying a Meridian memo (see the README) is a remittance request, and deliveries on
    /// the chain are paid from it. EVM chains use a `bridge_escrow` contract instead.
    #[serde(default)]
    pub escrow: Option<String>,
    /// Cosmos chains: the fee the relay pays per delivery transaction.
    #[serde(default)]
    pub fee: Option<TxFeeConfig>,
    /// Private key (hex) the relay signs deliveries with on this chain; set it from the
    /// environment (`MERIDIAN__CHAINS__<i>__SIGNER_KEY`). Without it, transfers to this chain
    /// settle but are not delivered.
    #[serde(default)]
    pub signer_key: Option<Secret>,
    /// EVM chains: the most releases one escrow transaction pays (`releaseBatch`); 1 sends one
    /// transaction per release. Each release of a batch is still settled by its own id, and one
    /// the escrow refuses does not fail the others.
    #[serde(default = "default_release_batch_max")]
    pub release_batch_max: u32,
}

/// Releases per escrow transaction unless configured: gas for 32 releases is about 2.5 M, well
/// within a block.
pub const RELEASE_BATCH_MAX_DEFAULT: u32 = 32;
/// The most releases per escrow transaction a config may ask for (≈ 19 M gas).
pub const RELEASE_BATCH_MAX_LIMIT: u32 = 256;

fn default_release_batch_max() -> u32 {
    RELEASE_BATCH_MAX_DEFAULT
}

/// Whether `s` looks like a bech32 account (`hrp1` + data in bech32's lower-case alphabet).
fn is_bech32_account(s: &str) -> bool {
    const ALPHABET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    match s.rsplit_once('1') {
        Some((hrp, data)) => {
            !hrp.is_empty()
                && hrp
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && data.len() >= 38
                && data.chars().all(|c| ALPHABET.contains(c))
        }
        None => false,
    }
}

/// The fee of the relay's own transactions on a Cosmos SDK chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxFeeConfig {
    /// Denomination the fee is paid in, e.g. `uatom`.
    pub denom: String,
    /// Fee per transaction, in base units of `denom`.
    pub amount: Amount,
    /// Gas limit per transaction.
    #[serde(default = "default_gas_limit")]
    pub gas_limit: u64,
}

fn default_gas_limit() -> u64 {
    200_000
}

fn default_log_range_max() -> u64 {
    2_000
}
fn default_poll_interval_ms() -> u64 {
    2_000
}
fn default_rpc_timeout_ms() -> u64 {
    10_000
}

/// When a block is final enough to emit its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalityRule {
    /// Emit a block once this many blocks are on top of it.
    Confirmations(u64),
    /// Emit blocks at or below the node's `finalized` tag.
    FinalizedTag,
}

impl Default for FinalityRule {
    fn default() -> Self {
        FinalityRule::Confirmations(12)
    }
}

impl Serialize for FinalityRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            FinalityRule::FinalizedTag => s.serialize_str("finalized"),
            FinalityRule::Confirmations(n) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("confirmations", n)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FinalityRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Tag(String),
            Confirmations { confirmations: u64 },
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected `\"finalized\"` or `{ confirmations = N }`")
        })? {
            Raw::Tag(t) if t == "finalized" => Ok(FinalityRule::FinalizedTag),
            Raw::Tag(t) => Err(serde::de::Error::custom(format!(
                "unknown finality `{t}`: expected `\"finalized\"` or `{{ confirmations = N }}`"
            ))),
            Raw::Confirmations { confirmations } => Ok(FinalityRule::Confirmations(confirmations)),
        }
    }
}

impl fmt::Display for FinalityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FinalityRule::Confirmations(n) => write!(f, "{n} confirmations"),
            FinalityRule::FinalizedTag => f.write_str("finalized tag"),
        }
    }
}

/// What a watched contract is, which decides how its logs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractKind {
    /// A CBDC token (ERC-20 with issuer mint/burn).
    Cbdc,
    /// A stablecoin (ERC-20).
    Stablecoin,
    /// Meridian's bridge escrow.
    BridgeEscrow,
    /// An OpenZeppelin Governor whose proposals and votes are mirrored.
    Governor,
}

impl ContractKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractKind::Cbdc => "cbdc",
            ContractKind::Stablecoin => "stablecoin",
            ContractKind::BridgeEscrow => "bridge_escrow",
            ContractKind::Governor => "governor",
        }
    }
}

/// One watched contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// 0x-prefixed 20-byte address.
    pub address: String,
    /// How to decode it.
    pub kind: ContractKind,
}

/// An asset Meridian can hold, route and settle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetConfig {
    /// CAIP-19 id.
    pub id: AssetId,
    /// Ticker shown to users.
    pub symbol: String,
    /// Decimals of the base unit.
    pub decimals: u8,
    /// What kind of asset it is.
    pub kind: AssetKind,
    /// Who issues it (a central bank, a stablecoin issuer), shown to operators.
    #[serde(default)]
    pub issuer: Option<String>,
    /// What one whole unit of it is worth in `compliance.reference_unit` (a decimal such as
    /// `1.08`): limits compare values, not raw base units of assets with different decimals.
    /// A fixed rate (a pegged asset) never goes stale. When a limit is set, every asset states
    /// either this or `reference_rate_max_age_secs`.
    #[serde(default)]
    pub reference_rate: Option<String>,
    /// The asset's reference rate is fed (an operator's `feedReferenceRate`, an oracle, a passed
    /// proposal) instead of fixed, and is stale this many seconds after it was fed: while it is
    /// unfed or stale, transfers of the asset that a limit applies to are held, never compared
    /// with an old value.
    #[serde(default)]
    pub reference_rate_max_age_secs: Option<u64>,
}

/// What kind of asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// Central-bank digital currency.
    Cbdc,
    /// Fiat-backed stablecoin.
    Stablecoin,
    /// A chain's native coin.
    Native,
    /// Anything else.
    Other,
}

impl AssetKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Cbdc => "cbdc",
            AssetKind::Stablecoin => "stablecoin",
            AssetKind::Native => "native",
            AssetKind::Other => "other",
        }
    }
}

/// A route from one asset to another, with its limits and fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorridorConfig {
    /// Short name, e.g. `usdm-a-to-b`.
    pub id: String,
    /// What the sender locks.
    pub source_asset: AssetId,
    /// What the recipient receives.
    pub dest_asset: AssetId,
    /// Fee in basis points of the amount.
    #[serde(default)]
    pub fee_bps: u32,
    /// Fixed fee per transfer, in base units of the source asset.
    #[serde(default)]
    pub fixed_fee: Amount,
    /// Destination units one source unit buys (a decimal such as `"0.92"`), fixed; without it
    /// the rate must be fed (operator or oracle) and is refused once older than
    /// `rate_max_age_secs`.
    #[serde(default)]
    pub rate: Option<String>,
    /// How old a fed rate may be.
    #[serde(default = "default_rate_max_age_secs")]
    pub rate_max_age_secs: u64,
    /// Smallest transfer accepted (base units of the source asset).
    #[serde(default)]
    pub min_amount: Amount,
    /// Largest transfer accepted.
    pub max_amount: Amount,
    /// Most that may flow through the corridor per UTC day.
    pub daily_cap: Amount,
    /// Transfers above this wait for the hold period or an operator.
    #[serde(default)]
    pub hold_threshold: Option<Amount>,
    /// Paused corridors accept nothing.
    #[serde(default)]
    pub paused: bool,
    /// Destination-side liquidity the relay puts into the corridor at first start (base units
    /// of the destination asset); settlement cannot pay out more than the corridor holds.
    #[serde(default)]
    pub liquidity: Amount,
}

fn default_rate_max_age_secs() -> u64 {
    300
}

/// An amount in base units; written as a string (or an integer if it fits) in TOML, whose
/// integers stop at 2^63.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Amount(pub u128);

impl From<Amount> for String {
    fn from(a: Amount) -> Self {
        a.0.to_string()
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected an amount in base units"))?
        {
            Raw::Int(v) => Ok(Amount(v.into())),
            Raw::Str(s) => s.replace('_', "").parse().map(Amount).map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{s}` is not an amount in base units (a non-negative integer)"
                ))
            }),
        }
    }
}

/// A secret from the configuration: kept as given, never shown by `Debug` (logs, errors).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An API key for operator mutations. `Debug` shows its name, never the key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key; recorded in the audit log.
    pub name: String,
    /// The key itself; set it from the environment
    /// (`MERIDIAN__API_KEYS__0__KEY`) rather than committing it.
    pub key: String,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .field("key", &"***")
            .finish()
    }
}

/// One problem in the configuration, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Path of the key, e.g. `chains[0].rpc_urls[1]`.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The path read.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// One or more keys have invalid values.
    #[error("invalid configuration:\n{}", format_issues(.0))]
    Invalid(Vec<ConfigIssue>),
}

fn format_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads `path`, applies environment overrides from `env` and validates the result.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), env)
    }

    /// Parses TOML text (named `origin` in errors), applies environment overrides and validates.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        apply_env_overrides(&mut value, env)?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid(vec![ConfigIssue {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }])
        })?;
        let issues = config.validate();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// Every semantic problem of the configuration; empty when it is usable.
    pub fn validate(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String| issues.push(ConfigIssue { key, message });

        if self.node.listen.parse::<SocketAddr>().is_err() {
            issue(
                "node.listen".into(),
                format!(
                    "`{}` is not a socket address like 127.0.0.1:8080",
                    self.node.listen
                ),
            );
        }
        let db = &self.node.database_url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            issue(
                "node.database_url".into(),
                format!("`{db}` is neither a sqlite: nor a postgres:// URL"),
            );
        }
        let g = &self.graphql;
        if g.page_size_max == 0 || g.page_size_max > 1_000 {
            issue(
                "graphql.page_size_max".into(),
                "must be between 1 and 1000".into(),
            );
        }
        if g.depth_max < 3 || g.depth_max > 64 {
            issue(
                "graphql.depth_max".into(),
                "must be between 3 and 64".into(),
            );
        }
        if g.complexity_max < 10 {
            issue(
                "graphql.complexity_max".into(),
                "must be at least 10".into(),
            );
        }
        if g.graphiql && !g.introspection {
            issue(
                "graphql.graphiql".into(),
                "GraphiQL reads the schema by introspection: set graphql.introspection too".into(),
            );
        }
        if g.rate_limit_per_second == 0 || g.rate_limit_per_second > 1_000_000_000 {
            issue(
                "graphql.rate_limit_per_second".into(),
                "must be between 1 and 1000000000".into(),
            );
        }
        if g.ws_connections_max == 0 || g.ws_connections_max > 1_000_000 {
            issue(
                "graphql.ws_connections_max".into(),
                "must be between 1 and 1000000".into(),
            );
        }
        if g.ws_subscriptions_max == 0 || g.ws_subscriptions_max > 10_000 {
            issue(
                "graphql.ws_subscriptions_max".into(),
                "must be between 1 and 10000".into(),
            );
        }
        if g.rate_limit_burst == 0 {
            issue(
                "graphql.rate_limit_burst".into(),
                "must be at least 1".into(),
            );
        }
        for (i, origin) in g.cors_origins.iter().enumerate() {
            let well_formed = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|host| {
                    !host.is_empty()
                        && host.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                        })
                });
            if !well_formed {
                issue(
                    format!("graphql.cors_origins[{i}]"),
                    format!("`{origin}` is not an origin like https://desk.example.com (scheme and host, no path, no wildcard)"),
                );
            }
        }
        if g.aliases_max > 1_000 {
            issue("graphql.aliases_max".into(), "must be at most 1000".into());
        }

        let mut chain_ids = HashSet::new();
        for (i, chain) in self.chains.iter().enumerate() {
            let key = |field: &str| format!("chains[{i}].{field}");
            if !chain_ids.insert(chain.id.clone()) {
                issue(
                    key("id"),
                    format!("chain `{}` is configured twice", chain.id),
                );
            }
            match chain.id.family() {
                Some(ChainFamily::Evm) => {
                    if chain.id.evm_chain_id().is_none() {
                        issue(
                            key("id"),
                            format!("`{}`: an eip155 reference must be a number", chain.id),
                        );
                    }
                }
                Some(ChainFamily::Cometbft) => {
                    if !chain.contracts.is_empty() {
                        issue(
                            key("contracts"),
                            "CometBFT chains have no watched contracts; set `escrow` to the relay's bech32 account".into(),
                        );
                    }
                    if chain.signer_key.is_some() && (chain.escrow.is_none() || chain.fee.is_none())
                    {
                        issue(
                            key("signer_key"),
                            "delivering on a Cosmos chain needs `escrow` (the signer's address) and `fee`".into(),
                        );
                    }
                    if let Some(escrow) = &chain.escrow {
                        if !is_bech32_account(escrow) {
                            issue(
                                key("escrow"),
                                format!("`{escrow}` is not a bech32 account address like cosmos1…"),
                            );
                        }
                    }
                }
                Some(ChainFamily::Substrate) => {
                    let r = chain.id.reference();
                    if r.len() != 32 || !r.chars().all(|c| c.is_ascii_hexdigit()) {
                        issue(
                            key("id"),
                            format!("`{}`: a polkadot reference is the first 16 bytes of the genesis hash in hex (32 characters)", chain.id),
                        );
                    }
                    if !chain.contracts.is_empty() {
                        issue(
                            key("contracts"),
                            "Substrate chains have no watched contracts; set `escrow` to the relay's SS58 account".into(),
                        );
                    }
                    if chain.signer_key.is_some() && chain.escrow.is_none() {
                        issue(
                            key("signer_key"),
                            "delivering on a Substrate chain needs `escrow` (the signer's address)"
                                .into(),
                        );
                    }
                    if let Some(escrow) = &chain.escrow {
                        const BASE58: &str =
                            "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
                        if !(46..=50).contains(&escrow.len())
                            || !escrow.chars().all(|c| BASE58.contains(c))
                        {
                            issue(
                                key("escrow"),
                                format!("`{escrow}` is not an SS58 account address"),
                            );
                        }
                    }
                }
                None => issue(
                    key("id"),
                    format!(
                        "chain `{}`: unknown namespace `{}` (expected eip155, polkadot or cosmos)",
                        chain.id,
                        chain.id.namespace()
                    ),
                ),
            }
            if chain.name.trim().is_empty() {
                issue(key("name"), "must not be empty".into());
            }
            if chain.rpc_urls.is_empty() {
                issue(
                    key("rpc_urls"),
                    format!("chain `{}` needs at least one RPC URL", chain.id),
                );
            }
            // Substrate RPC is spoken over websockets (subscriptions and requests alike).
            let substrate = chain.id.family() == Some(ChainFamily::Substrate);
            for (j, url) in chain.rpc_urls.iter().enumerate() {
                match (substrate, url.scheme()) {
                    (false, "http" | "https") | (true, "ws" | "wss") => {}
                    (false, _) => issue(
                        format!("chains[{i}].rpc_urls[{j}]"),
                        format!("`{url}` must be an http:// or https:// URL"),
                    ),
                    (true, _) => issue(
                        format!("chains[{i}].rpc_urls[{j}]"),
                        format!("`{url}` must be a ws:// or wss:// URL (Substrate RPC)"),
                    ),
                }
            }
            if let Some(ws) = &chain.ws_url {
                if !matches!(ws.scheme(), "ws" | "wss") {
                    issue(
                        key("ws_url"),
                        format!("`{ws}` must be a ws:// or wss:// URL"),
                    );
                }
            }
            if let FinalityRule::Confirmations(n) = chain.finality {
                if n > CONFIRMATIONS_MAX {
                    issue(
                        key("finality"),
                        format!(
                            "{n} confirmations is more than {CONFIRMATIONS_MAX}; use \"finalized\""
                        ),
                    );
                }
            }
            if chain.log_range_max == 0 || chain.log_range_max > LOG_RANGE_MAX_LIMIT {
                issue(
                    key("log_range_max"),
                    format!("must be between 1 and {LOG_RANGE_MAX_LIMIT}"),
                );
            }
            if !(1..=RELEASE_BATCH_MAX_LIMIT).contains(&chain.release_batch_max) {
                issue(
                    key("release_batch_max"),
                    format!("must be between 1 and {RELEASE_BATCH_MAX_LIMIT}"),
                );
            }
            if !(50..=60_000).contains(&chain.poll_interval_ms) {
                issue(
                    key("poll_interval_ms"),
                    "must be between 50 and 60000".into(),
                );
            }
            if !(100..=120_000).contains(&chain.rpc_timeout_ms) {
                issue(
                    key("rpc_timeout_ms"),
                    "must be between 100 and 120000".into(),
                );
            }
            if chain.escrow.is_some() && chain.id.family() == Some(ChainFamily::Evm) {
                issue(
                    key("escrow"),
                    "EVM chains name their escrow as a `bridge_escrow` contract".into(),
                );
            }
            if let Some(secret) = &chain.signer_key {
                let hex = secret.0.trim().trim_start_matches("0x");
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    issue(
                        key("signer_key"),
                        "must be a 32-byte private key in hex (value not shown)".into(),
                    );
                }
            }
            let mut addresses = HashSet::new();
            for (j, c) in chain.contracts.iter().enumerate() {
                let k = format!("chains[{i}].contracts[{j}].address");
                if !is_evm_address(&c.address) {
                    issue(
                        k,
                        format!("`{}` is not a 0x-prefixed 20-byte hex address", c.address),
                    );
                } else if !addresses.insert(c.address.to_ascii_lowercase()) {
                    issue(k, format!("contract `{}` is listed twice", c.address));
                }
            }
        }

        let g = &self.governance;
        for (i, m) in g.members.iter().enumerate() {
            if !is_evm_address(m) {
                issue(
                    format!("governance.members[{i}]"),
                    format!("`{m}` is not a 0x-prefixed 20-byte address"),
                );
            }
        }
        for (i, t) in g.tokens.iter().enumerate() {
            if !is_evm_address(&t.address) {
                issue(
                    format!("governance.tokens[{i}].address"),
                    format!("`{}` is not a 0x-prefixed 20-byte address", t.address),
                );
            }
            if !(chain_ids.contains(&t.chain) && t.chain.family() == Some(ChainFamily::Evm)) {
                issue(
                    format!("governance.tokens[{i}].chain"),
                    format!("`{}` is not a configured EVM chain", t.chain),
                );
            }
        }
        if !g.members.is_empty() && !g.tokens.is_empty() {
            issue(
                "governance.members".into(),
                "choose one voting-power strategy: members or tokens".into(),
            );
        }
        for (key, bps) in [
            ("governance.threshold_bps", g.threshold_bps),
            ("governance.quorum_bps", g.quorum_bps),
            (
                "governance.sensitive_threshold_bps",
                g.sensitive_threshold_bps,
            ),
        ] {
            if bps > 10_000 {
                issue(key.into(), "must be at most 10000".into());
            }
        }
        if g.sensitive_voting_delay_min_secs < g.voting_delay_min_secs {
            issue(
                "governance.sensitive_voting_delay_min_secs".into(),
                format!(
                    "must be at least governance.voting_delay_min_secs ({})",
                    g.voting_delay_min_secs
                ),
            );
        }
        // Devnet member keys are served to any browser that asks (`/vote/dev-keys`): only a
        // node that listens on loopback may hold them.
        let loopback = self
            .node
            .listen
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if let Some(c) = &self.cluster {
            if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
                issue(
                    "cluster".into(),
                    "several nodes share one PostgreSQL database: node.database_url must be a \
                     postgres:// URL (remove [cluster] to run one node on SQLite)"
                        .into(),
                );
            }
            if !(1_000..=600_000).contains(&c.lease_ttl_ms) {
                issue(
                    "cluster.lease_ttl_ms".into(),
                    "must be between 1000 and 600000".into(),
                );
            }
            if let Some(url) = &c.nats_url {
                if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                    issue(
                        "cluster.nats_url".into(),
                        format!("`{url}` is not a nats:// or tls:// URL"),
                    );
                }
            }
            if c.nats_stream.is_empty()
                || c.nats_stream.len() > 64
                || !c
                    .nats_stream
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'))
            {
                issue(
                    "cluster.nats_stream".into(),
                    format!("`{}`: 1 to 64 letters, digits, `-` or `_`", c.nats_stream),
                );
            }
            if let Some(name) = &c.node_name {
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
                {
                    issue(
                        "cluster.node_name".into(),
                        format!("`{name}`: 1 to 64 letters, digits, `-`, `_` or `.`"),
                    );
                }
            }
        }
        if !g.dev_keys.is_empty() && !loopback {
            issue(
                "governance.dev_keys".into(),
                format!(
                    "are served at /vote/dev-keys to anyone who connects: allowed only when \
                     node.listen is a loopback address (127.0.0.1, [::1]), not `{}`",
                    self.node.listen
                ),
            );
        }
        for (i, k) in g.dev_keys.iter().enumerate() {
            let hex = k.0.trim().trim_start_matches("0x");
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                issue(
                    format!("governance.dev_keys[{i}]"),
                    "must be a 32-byte private key in hex (value not shown)".into(),
                );
            }
        }
        if g.signature_max_age_secs == 0 {
            issue(
                "governance.signature_max_age_secs".into(),
                "must be positive".into(),
            );
        }

        let limited = self.compliance.account_daily_cap.is_some()
            || self.compliance.travel_rule_threshold.is_some();
        if limited
            && self
                .compliance
                .reference_unit
                .as_deref()
                .is_none_or(|u| u.trim().is_empty())
        {
            issue(
                "compliance.reference_unit".into(),
                "is required while account_daily_cap or travel_rule_threshold is set (the unit \
                 they are stated in, e.g. \"USD\")"
                    .into(),
            );
        }
        if self.compliance.reference_decimals > 36 {
            issue(
                "compliance.reference_decimals".into(),
                "must be at most 36".into(),
            );
        }
        let mut asset_ids = HashSet::new();
        for (i, asset) in self.assets.iter().enumerate() {
            let key = |field: &str| format!("assets[{i}].{field}");
            if !asset_ids.insert(asset.id.clone()) {
                issue(
                    key("id"),
                    format!("asset `{}` is configured twice", asset.id),
                );
            }
            if !chain_ids.contains(&asset.id.chain()) {
                issue(
                    key("id"),
                    format!(
                        "asset `{}` is on chain `{}`, which is not configured",
                        asset.id,
                        asset.id.chain()
                    ),
                );
            }
            if asset.decimals > 36 {
                issue(key("decimals"), "must be at most 36".into());
            }
            if asset.symbol.trim().is_empty() {
                issue(key("symbol"), "must not be empty".into());
            }
            match (&asset.reference_rate, asset.reference_rate_max_age_secs) {
                (Some(_), Some(_)) => issue(
                    key("reference_rate_max_age_secs"),
                    "is for a fed reference rate; this asset has a fixed `reference_rate` \
                     (state one of them)"
                        .into(),
                ),
                (None, Some(0)) => issue(
                    key("reference_rate_max_age_secs"),
                    "must be above 0 (a fed rate is stale this many seconds after it was fed)"
                        .into(),
                ),
                (None, Some(_)) => {}
                (Some(rate), None) => {
                    if let Err(e) = crate::money::Rate::from_decimal(
                        rate,
                        asset.decimals,
                        self.compliance.reference_decimals,
                    ) {
                        issue(key("reference_rate"), e.to_string());
                    }
                }
                (None, None) if limited => issue(
                    key("reference_rate"),
                    "is required while compliance.account_daily_cap or \
                     compliance.travel_rule_threshold is set (or a fed rate's \
                     reference_rate_max_age_secs): limits compare values in the reference unit, \
                     never raw base units"
                        .into(),
                ),
                (None, None) => {}
            }
        }

        let mut corridor_ids = HashSet::new();
        for (i, c) in self.corridors.iter().enumerate() {
            let key = |field: &str| format!("corridors[{i}].{field}");
            if !corridor_ids.insert(c.id.as_str()) {
                issue(
                    key("id"),
                    format!("corridor `{}` is configured twice", c.id),
                );
            }
            for (field, asset) in [
                ("source_asset", &c.source_asset),
                ("dest_asset", &c.dest_asset),
            ] {
                if !asset_ids.contains(asset) {
                    issue(
                        key(field),
                        format!("asset `{asset}` is not listed under [[assets]]"),
                    );
                }
            }
            if c.fee_bps > 10_000 {
                issue(key("fee_bps"), "must be at most 10000 (100%)".into());
            }
            if let Some(rate) = &c.rate {
                let (int, frac) = rate.split_once('.').unwrap_or((rate, ""));
                let digits = |s: &str| s.chars().all(|ch| ch.is_ascii_digit());
                let nonzero = rate.chars().any(|ch| ('1'..='9').contains(&ch));
                if int.is_empty() || !digits(int) || !digits(frac) || !nonzero {
                    issue(
                        key("rate"),
                        format!("`{rate}` is not a positive decimal such as \"0.92\""),
                    );
                }
            }
            if c.rate.is_none() && c.rate_max_age_secs == 0 {
                issue(
                    key("rate_max_age_secs"),
                    "must be positive for a corridor with a fed rate".into(),
                );
            }
            if c.min_amount > c.max_amount {
                issue(key("min_amount"), "must not exceed max_amount".into());
            }
            if c.max_amount > c.daily_cap {
                issue(key("max_amount"), "must not exceed daily_cap".into());
            }
        }

        let mut key_names = HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            if !key_names.insert(k.name.as_str()) {
                issue(
                    format!("api_keys[{i}].name"),
                    format!("`{}` is used twice", k.name),
                );
            }
            if k.key.len() < 16 {
                issue(
                    format!("api_keys[{i}].key"),
                    "must be at least 16 characters".into(),
                );
            }
        }
        issues
    }
}

fn is_evm_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Applies `DATABASE_URL` and `MERIDIAN__…` variables onto the parsed TOML tree.
fn apply_env_overrides(
    root: &mut toml::Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let path: Vec<String> = if var == "DATABASE_URL" {
            vec!["node".into(), "database_url".into()]
        } else if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
            rest.split("__").map(|p| p.to_ascii_lowercase()).collect()
        } else {
            continue;
        };
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "empty path segment".into(),
            });
        }
        let value = parse_env_value(&raw);
        set_path(root, &path, value).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the right-hand side of a TOML assignment to get numbers, booleans and arrays.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(node: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    match node {
        toml::Value::Table(t) => {
            let child = t
                .entry(head.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            set_path(child, rest, value)
        }
        toml::Value::Array(a) => {
            let idx: usize = head
                .parse()
                .map_err(|_| format!("`{head}` is not a list index"))?;
            let len = a.len();
            let child = a
                .get_mut(idx)
                .ok_or_else(|| format!("index {idx} is past the end of a list of {len}"))?;
            set_path(child, rest, value)
        }
        _ => Err(format!("cannot set `{head}` inside a plain value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [node]
        listen = "127.0.0.1:9000"

        [[chains]]
        id = "eip155:31337"
        name = "devnet-a"
        rpc_urls = ["http://127.0.0.1:18545"]
        finality = { confirmations = 2 }
        [[chains.contracts]]
        address = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
        kind = "bridge_escrow"

        [[assets]]
        id = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
        symbol = "USDM"
        decimals = 6
        kind = "stablecoin"

        [[corridors]]
        id = "self"
        source_asset = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
        dest_asset = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
        max_amount = "1000000000"
        daily_cap = "340282366920938463463374607431768211455"
    "#;

    fn none() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn good_config_loads() {
        let c = Config::from_toml_str(GOOD, "test", none()).unwrap();
        assert_eq!(c.chains[0].finality, FinalityRule::Confirmations(2));
        assert_eq!(c.corridors[0].daily_cap, Amount(u128::MAX));
        assert_eq!(c.node.database_url, default_database_url());
    }

    #[test]
    fn env_overrides_apply() {
        let env = vec![
            ("DATABASE_URL".to_string(), "postgres://u@h/db".to_string()),
            ("MERIDIAN__NODE__LISTEN".into(), "0.0.0.0:1".into()),
            (
                "MERIDIAN__CHAINS__0__RPC_URLS".into(),
                r#"["http://a:1","http://b:2"]"#.into(),
            ),
            (
                "MERIDIAN__CHAINS__0__FINALITY".into(),
                "\"finalized\"".into(),
            ),
            ("UNRELATED".into(), "x".into()),
        ];
        let c = Config::from_toml_str(GOOD, "test", env).unwrap();
        assert_eq!(c.node.database_url, "postgres://u@h/db");
        assert_eq!(c.node.listen, "0.0.0.0:1");
        assert_eq!(c.chains[0].rpc_urls.len(), 2);
        assert_eq!(c.chains[0].finality, FinalityRule::FinalizedTag);
        let bad = vec![("MERIDIAN__CHAINS__5__NAME".to_string(), "x".to_string())];
        assert!(matches!(
            Config::from_toml_str(GOOD, "t", bad),
            Err(ConfigError::Env { .. })
        ));
    }

    fn issues_of(text: &str) -> Vec<ConfigIssue> {
        match Config::from_toml_str(text, "test", none()) {
            Err(ConfigError::Invalid(issues)) => issues,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn a_cluster_needs_postgres_a_sane_lease_and_a_plain_node_name() {
        let with = |node: &str, cluster: &str| {
            GOOD.replace(
                "[node]\n        listen = \"127.0.0.1:9000\"",
                &format!("[node]\n        listen = \"127.0.0.1:9000\"\n        {node}"),
            ) + &format!("\n        [cluster]\n        {cluster}\n")
        };
        let pg = r#"database_url = "postgres://meridian@db/meridian""#;
        let ok =
            Config::from_toml_str(&with(pg, r#"node_name = "relay-a""#), "test", none()).unwrap();
        let cluster = ok.cluster.unwrap();
        assert_eq!(cluster.node_name.as_deref(), Some("relay-a"));
        assert_eq!(cluster.lease_ttl_ms, LEASE_TTL_MS_DEFAULT);
        let keys =
            |text: String| -> Vec<String> { issues_of(&text).into_iter().map(|i| i.key).collect() };
        assert_eq!(keys(with("", "")), ["cluster"]);
        assert_eq!(
            keys(with(pg, "lease_ttl_ms = 10")),
            ["cluster.lease_ttl_ms"]
        );
        assert_eq!(
            keys(with(pg, r#"node_name = "relay a/1""#)),
            ["cluster.node_name"]
        );
        // Without the section: one node, as before.
        assert_eq!(
            Config::from_toml_str(GOOD, "test", none()).unwrap().cluster,
            None
        );
    }

    #[test]
    fn errors_name_the_key() {
        let api = |graphql: &str| {
            GOOD.replace(
                "[node]\n        listen = \"127.0.0.1:9000\"",
                &format!("[node]\n        listen = \"127.0.0.1:9000\"\n        [graphql]\n        {graphql}"),
            )
        };
        assert!(Config::from_toml_str(
            &api("cors_origins = [\"https://desk.example.com\"]"),
            "test",
            none()
        )
        .is_ok());
        for bad in [
            "*",
            "https://desk.example.com/",
            "desk.example.com",
            "https://",
        ] {
            let issues = issues_of(&api(&format!("cors_origins = [\"{bad}\"]")));
            assert_eq!(issues[0].key, "graphql.cors_origins[0]", "{bad}");
        }
        assert_eq!(
            issues_of(&api("rate_limit_per_second = 0"))[0].key,
            "graphql.rate_limit_per_second"
        );
        assert_eq!(
            issues_of(&api("graphiql = true"))[0].key,
            "graphql.graphiql"
        );

        // Limits are values in a reference unit: the unit and every asset's rate are required,
        // and a rate must be exact at the reference decimals.
        let limited =
            format!("{GOOD}\n        [compliance]\n        account_daily_cap = \"10000\"\n");
        let keys: Vec<String> = issues_of(&limited).into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            vec!["compliance.reference_unit", "assets[0].reference_rate"]
        );
        let priced = limited
            .replace(
                "kind = \"stablecoin\"",
                "kind = \"stablecoin\"\n        reference_rate = \"1.00\"",
            )
            .replace(
                "account_daily_cap",
                "reference_unit = \"USD\"\n        account_daily_cap",
            );
        let c = Config::from_toml_str(&priced, "test", none()).unwrap();
        assert_eq!(c.compliance.reference_decimals, 2);
        assert_eq!(
            issues_of(&priced.replace("\"1.00\"", "\"one dollar\""))[0].key,
            "assets[0].reference_rate"
        );
        // A fed rate instead of a fixed one: accepted alone, with a positive age; not both.
        let fed = priced.replace(
            "reference_rate = \"1.00\"",
            "reference_rate_max_age_secs = 300",
        );
        let c = Config::from_toml_str(&fed, "test", none()).unwrap();
        assert_eq!(c.assets[0].reference_rate_max_age_secs, Some(300));
        assert_eq!(
            issues_of(&fed.replace("= 300", "= 0"))[0].key,
            "assets[0].reference_rate_max_age_secs"
        );
        assert_eq!(
            issues_of(&priced.replace(
                "reference_rate = \"1.00\"",
                "reference_rate = \"1.00\"\n        reference_rate_max_age_secs = 300"
            ))[0]
                .key,
            "assets[0].reference_rate_max_age_secs"
        );

        let typo = GOOD.replace("listen =", "lisen =");
        assert_eq!(issues_of(&typo)[0].key, "node.lisen");
        assert!(issues_of(&typo)[0].message.contains("lisen"));

        let bad_url = GOOD.replace("http://127.0.0.1:18545", "ftp://x");
        assert_eq!(issues_of(&bad_url)[0].key, "chains[0].rpc_urls[0]");

        let bad_chain = GOOD.replace("id = \"eip155:31337\"", "id = \"eip155\"");
        assert_eq!(issues_of(&bad_chain)[0].key, "chains[0].id");

        let bad_finality = GOOD.replace("{ confirmations = 2 }", "\"soon\"");
        assert_eq!(issues_of(&bad_finality)[0].key, "chains[0].finality");

        let bad_amount = GOOD.replace("\"1000000000\"", "\"-5\"");
        assert_eq!(issues_of(&bad_amount)[0].key, "corridors[0].max_amount");

        let bad_addr = GOOD.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x12");
        assert_eq!(
            issues_of(&bad_addr)[0].key,
            "chains[0].contracts[0].address"
        );

        let unknown_asset = GOOD.replace(
            "dest_asset = \"eip155:31337/erc20:0x5f",
            "dest_asset = \"eip155:31337/erc20:0x6f",
        );
        assert_eq!(issues_of(&unknown_asset)[0].key, "corridors[0].dest_asset");

        for bad in ["\"abc\"", "\"0\"", "\"-1\"", "\".5\""] {
            let bad_rate = GOOD.replace(
                "max_amount = \"1000000000\"",
                &format!("rate = {bad}\nmax_amount = \"1000000000\""),
            );
            assert_eq!(issues_of(&bad_rate)[0].key, "corridors[0].rate", "{bad}");
        }
        let stale_forever = GOOD.replace(
            "max_amount = \"1000000000\"",
            "rate_max_age_secs = 0\nmax_amount = \"1000000000\"",
        );
        assert_eq!(
            issues_of(&stale_forever)[0].key,
            "corridors[0].rate_max_age_secs"
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn an_api_key_is_never_shown_by_debug() {
        let k = ApiKeyConfig {
            name: "ops".into(),
            key: "s3cret-key-value".into(),
        };
        let shown = format!("{k:?}");
        assert!(
            shown.contains("ops") && !shown.contains("s3cret"),
            "{shown}"
        );
        let mut config = Config::from_toml_str("", "test", Vec::new()).unwrap();
        config.api_keys = vec![k];
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn devnet_member_keys_are_refused_unless_the_node_listens_on_loopback() {
        let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
        let empty = || Config::from_toml_str("", "test", Vec::new()).unwrap();
        let with = |listen: &str| {
            let mut c = empty();
            c.node.listen = listen.into();
            c.governance.dev_keys = vec![Secret(key.into())];
            c.validate()
                .into_iter()
                .map(|i| i.key)
                .filter(|k| k == "governance.dev_keys")
                .count()
        };
        assert_eq!(with("127.0.0.1:8080"), 0);
        assert_eq!(with("[::1]:8080"), 0);
        assert_eq!(with("0.0.0.0:8080"), 1);
        assert_eq!(with("192.168.1.20:8080"), 1);
        // Without dev keys any address will do.
        let mut c = empty();
        c.node.listen = "0.0.0.0:8080".into();
        assert!(c.validate().iter().all(|i| i.key != "governance.dev_keys"));
    }

    /// The commented example in the repository must stay a valid configuration.
    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../meridian.example.toml");
        let c = Config::from_toml_str(text, "meridian.example.toml", Vec::new()).unwrap();
        assert_eq!(c.chains[0].contracts.len(), 3);
        assert_eq!(c.corridors[0].hold_threshold, Some(Amount(50_000_000_000)));
        assert_eq!(c.chains[1].id.family(), Some(ChainFamily::Cometbft));
    }

    #[test]
    fn escrow_accounts_are_checked_per_family() {
        let text = include_str!("../../meridian.example.toml");
        let with = |var: &str, value: &str| {
            Config::from_toml_str(
                text,
                "meridian.example.toml",
                vec![(var.to_owned(), value.to_owned())],
            )
        };
        let keys = |r: Result<Config, ConfigError>| match r {
            Err(ConfigError::Invalid(issues)) => issues.into_iter().map(|i| i.key).collect(),
            other => panic!("{other:?}"),
        };
        let got: Vec<String> = keys(with("MERIDIAN__CHAINS__1__ESCROW", "cosmos1NOTBECH32"));
        assert_eq!(got, vec!["chains[1].escrow".to_owned()]);
        let got: Vec<String> = keys(with(
            "MERIDIAN__CHAINS__0__ESCROW",
            "cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu",
        ));
        assert_eq!(got, vec!["chains[0].escrow".to_owned()]);
    }
}
