//! GraphQL object types over the storage read models.

use async_graphql::{Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use meridian_storage::entities::chain_events;
use meridian_storage::reference_data::ChainStatus;
use meridian_types::{EventKind, EventStatus};

/// A watched chain and how far Meridian has indexed it.
pub struct Chain(pub ChainStatus);

#[Object]
impl Chain {
    /// CAIP-2 id, e.g. `eip155:31337`.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// Configured name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// `evm`, `substrate` or `cometbft`.
    async fn family(&self) -> &str {
        &self.0.family
    }
    /// Latest head seen.
    async fn head_height(&self) -> Option<u64> {
        self.0.head_height
    }
    /// Hash of the latest head.
    async fn head_hash(&self) -> Option<&str> {
        self.0.head_hash.as_deref()
    }
    /// Highest height final under the chain's finality rule.
    async fn finalized_height(&self) -> Option<u64> {
        self.0.finalized_height
    }
    /// Last height whose events are all stored.
    async fn checkpoint_height(&self) -> Option<u64> {
        self.0.checkpoint_height
    }
    /// Hash of the checkpoint block.
    async fn checkpoint_hash(&self) -> Option<&str> {
        self.0.checkpoint_hash.as_deref()
    }
    /// Blocks between head and checkpoint.
    async fn lag(&self) -> Option<u64> {
        self.0.lag()
    }
    /// When the head was last seen.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Kinds of chain events.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EventKindGql {
    /// A bridge escrow lock asking for a cross-border transfer.
    RemittanceRequested,
    /// Token units issued.
    TokenMinted,
    /// Token units destroyed.
    TokenBurned,
    /// Token transfer between accounts.
    TokenTransferred,
    /// Escrow paid a recipient.
    Released,
    /// Escrow refunded a sender.
    Refunded,
    /// An account balance went down (Cosmos coin_spent).
    BalanceDebited,
    /// An account balance went up (Cosmos coin_received).
    BalanceCredited,
    /// An IBC fungible-token packet.
    IbcTransfer,
    /// A governance proposal was submitted.
    ProposalSubmitted,
    /// A deposit on a governance proposal.
    ProposalDeposited,
    /// A governance vote.
    VoteCast,
    /// The voting on a governance proposal ended.
    ProposalEnded,
    /// A governance proposal was queued, executed or canceled on its chain.
    ProposalStateChanged,
    /// A watched log that could not be decoded.
    Undecodable,
}

impl From<EventKindGql> for EventKind {
    fn from(k: EventKindGql) -> Self {
        match k {
            EventKindGql::RemittanceRequested => EventKind::RemittanceRequested,
            EventKindGql::TokenMinted => EventKind::TokenMinted,
            EventKindGql::TokenBurned => EventKind::TokenBurned,
            EventKindGql::TokenTransferred => EventKind::TokenTransferred,
            EventKindGql::Released => EventKind::Released,
            EventKindGql::Refunded => EventKind::Refunded,
            EventKindGql::BalanceDebited => EventKind::BalanceDebited,
            EventKindGql::BalanceCredited => EventKind::BalanceCredited,
            EventKindGql::IbcTransfer => EventKind::IbcTransfer,
            EventKindGql::ProposalSubmitted => EventKind::ProposalSubmitted,
            EventKindGql::ProposalDeposited => EventKind::ProposalDeposited,
            EventKindGql::VoteCast => EventKind::VoteCast,
            EventKindGql::ProposalEnded => EventKind::ProposalEnded,
            EventKindGql::ProposalStateChanged => EventKind::ProposalStateChanged,
            EventKindGql::Undecodable => EventKind::Undecodable,
        }
    }
}

impl EventKindGql {
    fn from_stored(s: &str) -> Option<Self> {
        Some(match EventKind::parse(s)? {
            EventKind::RemittanceRequested => EventKindGql::RemittanceRequested,
            EventKind::TokenMinted => EventKindGql::TokenMinted,
            EventKind::TokenBurned => EventKindGql::TokenBurned,
            EventKind::TokenTransferred => EventKindGql::TokenTransferred,
            EventKind::Released => EventKindGql::Released,
            EventKind::Refunded => EventKindGql::Refunded,
            EventKind::BalanceDebited => EventKindGql::BalanceDebited,
            EventKind::BalanceCredited => EventKindGql::BalanceCredited,
            EventKind::IbcTransfer => EventKindGql::IbcTransfer,
            EventKind::ProposalSubmitted => EventKindGql::ProposalSubmitted,
            EventKind::ProposalDeposited => EventKindGql::ProposalDeposited,
            EventKind::VoteCast => EventKindGql::VoteCast,
            EventKind::ProposalEnded => EventKindGql::ProposalEnded,
            EventKind::ProposalStateChanged => EventKindGql::ProposalStateChanged,
            EventKind::Undecodable => EventKindGql::Undecodable,
        })
    }
}

/// Whether an event can be acted on.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum EventStatusGql {
    /// Decoded and canonical.
    Decoded,
    /// Kept with the reason it could not be decoded.
    Undecodable,
    /// Its block was reorganised away.
    Retracted,
}

impl From<EventStatusGql> for EventStatus {
    fn from(s: EventStatusGql) -> Self {
        match s {
            EventStatusGql::Decoded => EventStatus::Decoded,
            EventStatusGql::Undecodable => EventStatus::Undecodable,
            EventStatusGql::Retracted => EventStatus::Retracted,
        }
    }
}

/// A normalised chain event.
pub struct Event(pub chain_events::Model);

#[Object]
impl Event {
    /// Unique event id: chain/block/blockHash/tx/logIndex.
    async fn uid(&self) -> &str {
        &self.0.uid
    }
    /// CAIP-2 chain id.
    async fn chain_id(&self) -> &str {
        &self.0.chain_id
    }
    /// Block number.
    async fn block_number(&self) -> i64 {
        self.0.block_number
    }
    /// Block hash.
    async fn block_hash(&self) -> &str {
        &self.0.block_hash
    }
    /// Transaction hash.
    async fn tx_hash(&self) -> &str {
        &self.0.tx_hash
    }
    /// Position of the log in its block.
    async fn log_index(&self) -> i32 {
        self.0.log_index
    }
    /// Emitting contract.
    async fn contract(&self) -> &str {
        &self.0.contract
    }
    /// What kind of event.
    async fn kind(&self) -> Option<EventKindGql> {
        EventKindGql::from_stored(&self.0.kind)
    }
    /// Decoded, undecodable or retracted.
    async fn status(&self) -> Option<EventStatusGql> {
        match EventStatus::parse(&self.0.status)? {
            EventStatus::Decoded => Some(EventStatusGql::Decoded),
            EventStatus::Undecodable => Some(EventStatusGql::Undecodable),
            EventStatus::Retracted => Some(EventStatusGql::Retracted),
        }
    }
    /// Why decoding failed, for undecodable events.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// The decoded fields (amounts as decimal strings).
    async fn payload(&self) -> crate::json_value::JsonValue {
        crate::json_value::JsonValue(self.0.payload.clone())
    }
    /// When Meridian stored it.
    async fn ingested_at(&self) -> DateTime<Utc> {
        self.0.ingested_at
    }
}

/// Filters for `events`; all given fields must match.
#[derive(InputObject, Default, Debug)]
#[graphql(name = "EventWhere")]
pub struct EventWhere {
    /// CAIP-2 chain id.
    pub chain_id: Option<String>,
    /// Any of these kinds.
    pub kind_in: Option<Vec<EventKindGql>>,
    /// This status.
    pub status: Option<EventStatusGql>,
    /// Emitting contract address.
    pub contract: Option<String>,
    /// Transaction hash.
    pub tx_hash: Option<String>,
    /// Lowest block number, inclusive.
    pub block_number_gte: Option<u64>,
    /// Highest block number, inclusive.
    pub block_number_lte: Option<u64>,
}

/// Sort order of `events`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
pub enum EventOrderBy {
    /// Oldest block first.
    #[default]
    BlockNumberAsc,
    /// Newest block first.
    BlockNumberDesc,
}

/// Indexing progress of one chain, for clients that must know how fresh an answer is.
#[derive(SimpleObject)]
pub struct ChainMeta {
    /// CAIP-2 chain id.
    pub chain_id: String,
    /// Last fully indexed height.
    pub checkpoint_height: Option<u64>,
    /// Latest head seen.
    pub head_height: Option<u64>,
}

/// Indexing metadata.
#[derive(SimpleObject)]
pub struct Meta {
    /// Per-chain indexed heights.
    pub chains: Vec<ChainMeta>,
    /// Node version.
    pub version: String,
}
