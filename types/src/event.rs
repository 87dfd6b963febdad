//! Normalised chain events: what a watcher emits, whatever chain family it watches.
//!
//! An event's identity ([`EventId`]) includes the block hash, so the same transaction re-mined
//! in a different block after a reorg is a *different* event; the old one is retracted, never
//! overwritten. Ingest keys on [`EventId::uid`], which makes re-delivery idempotent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, AssetId, ChainId};

/// Where an event happened: (chain, block number, block hash, tx hash/extrinsic index, log index).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// CAIP-2 chain id.
    pub chain: ChainId,
    /// Height of the block that contains the event.
    pub block_number: u64,
    /// Hash of that block (0x-hex for EVM).
    pub block_hash: String,
    /// Transaction hash (EVM, CometBFT) or extrinsic index (Substrate).
    pub tx: String,
    /// Position of the event within the block (EVM log index).
    pub index: u32,
}

impl EventId {
    /// The unique, stable string key of this event.
    pub fn uid(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.chain, self.block_number, self.block_hash, self.tx, self.index
        )
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uid())
    }
}

/// Money amounts travel as decimal strings in JSON: JavaScript clients and JSONB would otherwise
/// round integers above 2^53.
pub mod amount_str {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises a `u128` as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Parses a decimal string into a `u128`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an event means, decoded from the chain's own encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventPayload {
    /// A bridge escrow took tokens and asks for a cross-border transfer.
    RemittanceRequested {
        /// The escrow's per-lock sequence number (decimal).
        nonce: String,
        /// Who locked the tokens.
        sender: AccountId,
        /// The asset locked.
        asset: AssetId,
        /// Amount locked, in the asset's base units.
        #[serde(with = "amount_str")]
        amount: u128,
        /// Destination chain as the sender wrote it (validated by the router, not here).
        dest_chain: String,
        /// Recipient on the destination chain, as the sender wrote it.
        recipient: String,
        /// Destination asset as the sender wrote it.
        dest_asset: String,
        /// Unix seconds after which the transfer is refunded instead of delivered.
        deadline: u64,
    },
    /// New units of a token were issued (ERC-20 transfer from the zero address).
    TokenMinted {
        /// The token.
        asset: AssetId,
        /// The receiving account.
        to: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// Units of a token were destroyed (ERC-20 transfer to the zero address).
    TokenBurned {
        /// The token.
        asset: AssetId,
        /// The account burned from.
        from: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// A plain token transfer between two accounts.
    TokenTransferred {
        /// The token.
        asset: AssetId,
        /// Sender.
        from: AccountId,
        /// Receiver.
        to: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// The escrow paid out the destination side of a transfer.
    Released {
        /// Meridian transfer id (0x-hex bytes32).
        transfer_id: String,
        /// The asset paid.
        asset: AssetId,
        /// The recipient.
        recipient: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// The escrow returned a lock to its sender.
    Refunded {
        /// Meridian transfer id (0x-hex bytes32).
        transfer_id: String,
        /// The escrow nonce of the refunded lock.
        nonce: String,
        /// Who gets the tokens back.
        sender: AccountId,
        /// The asset returned.
        asset: AssetId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// An account's balance of an asset went down (Cosmos bank `coin_spent`).
    BalanceDebited {
        /// The asset.
        asset: AssetId,
        /// The account debited.
        account: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// An account's balance of an asset went up (Cosmos bank `coin_received`).
    BalanceCredited {
        /// The asset.
        asset: AssetId,
        /// The account credited.
        account: AccountId,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
    },
    /// An IBC fungible-token packet was received or acknowledged (ICS-20 `fungible_token_packet`).
    IbcTransfer {
        /// Sender on the counterparty (or this) chain, as the packet names it.
        sender: String,
        /// Receiver, as the packet names it.
        receiver: String,
        /// The denomination trace, e.g. `transfer/channel-0/uatom`.
        denom: String,
        /// Amount in base units.
        #[serde(with = "amount_str")]
        amount: u128,
        /// Whether the packet succeeded, when the chain says so.
        success: Option<bool>,
        /// The packet memo, if any.
        memo: Option<String>,
    },
    /// A governance proposal was submitted.
    ProposalSubmitted {
        /// The proposal's id on its chain (decimal or hex, as the chain writes it).
        proposal_id: String,
        /// Who submitted it, when the chain says.
        proposer: Option<AccountId>,
        /// Its kind (`Text`, a message type URL, …), when the chain says.
        proposal_type: Option<String>,
        /// Messages or calls the proposal would execute (type URLs or call names).
        messages: Vec<String>,
        /// The native value each message sends, in base units (a Governor call's wei), in
        /// the order of `messages`; empty when the chain carries none.
        #[serde(default)]
        values: Vec<String>,
        /// The proposal's text, when the chain carries it (a Governor's description).
        #[serde(default)]
        description: Option<String>,
        /// Voting opens at this chain timepoint (block or time, as the chain counts).
        #[serde(default)]
        vote_start: Option<u64>,
        /// Voting closes at this chain timepoint.
        #[serde(default)]
        vote_end: Option<u64>,
    },
    /// A deposit was made on a governance proposal.
    ProposalDeposited {
        /// The proposal.
        proposal_id: String,
        /// Who deposited, when the chain says.
        depositor: Option<AccountId>,
        /// The deposit as the chain writes coins, e.g. `1000000basetcro`.
        amount: String,
    },
    /// A vote on a governance proposal.
    VoteCast {
        /// The proposal.
        proposal_id: String,
        /// Who voted, when the chain says.
        voter: Option<AccountId>,
        /// The options chosen with their weights (a plain vote is one option of weight 1).
        options: Vec<WeightedOption>,
        /// Voting power used, when the chain reports it (base units of the voting token).
        power: Option<String>,
        /// The reason the voter gave, when the chain records one (a Governor's
        /// `castVoteWithReason`); events stored before carry none.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A governance proposal moved on its chain: queued, executed or canceled.
    ProposalStateChanged {
        /// The proposal.
        proposal_id: String,
        /// `queued`, `executed` or `canceled`.
        state: String,
        /// When it may execute (unix seconds), for queued proposals.
        eta: Option<u64>,
    },
    /// A governance proposal's voting ended (passed, rejected, failed, …).
    ProposalEnded {
        /// The proposal.
        proposal_id: String,
        /// The chain's word for the outcome, e.g. `proposal_passed`.
        result: String,
    },
    /// A log from a watched contract that could not be decoded; kept so nothing is lost silently.
    Undecodable {
        /// Why decoding failed.
        reason: String,
        /// Raw topics (0x-hex).
        topics: Vec<String>,
        /// Raw data (0x-hex).
        data: String,
    },
}

/// One option of a (possibly weighted) vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedOption {
    /// `yes`, `no`, `abstain`, `no_with_veto`, or the chain's own word in lower case.
    pub option: String,
    /// Share of the vote as a decimal string, e.g. `"1.000000000000000000"` or `"0.5"`.
    pub weight: String,
}

/// The kind of an event, as stored and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// See [`EventPayload::RemittanceRequested`].
    RemittanceRequested,
    /// See [`EventPayload::TokenMinted`].
    TokenMinted,
    /// See [`EventPayload::TokenBurned`].
    TokenBurned,
    /// See [`EventPayload::TokenTransferred`].
    TokenTransferred,
    /// See [`EventPayload::Released`].
    Released,
    /// See [`EventPayload::Refunded`].
    Refunded,
    /// See [`EventPayload::BalanceDebited`].
    BalanceDebited,
    /// See [`EventPayload::BalanceCredited`].
    BalanceCredited,
    /// See [`EventPayload::IbcTransfer`].
    IbcTransfer,
    /// See [`EventPayload::ProposalSubmitted`].
    ProposalSubmitted,
    /// See [`EventPayload::ProposalDeposited`].
    ProposalDeposited,
    /// See [`EventPayload::VoteCast`].
    VoteCast,
    /// See [`EventPayload::ProposalEnded`].
    ProposalEnded,
    /// See [`EventPayload::ProposalStateChanged`].
    ProposalStateChanged,
    /// See [`EventPayload::Undecodable`].
    Undecodable,
}

impl EventKind {
    /// Every kind, for listings and validation.
    pub const ALL: [EventKind; 15] = [
        EventKind::RemittanceRequested,
        EventKind::TokenMinted,
        EventKind::TokenBurned,
        EventKind::TokenTransferred,
        EventKind::Released,
        EventKind::Refunded,
        EventKind::BalanceDebited,
        EventKind::BalanceCredited,
        EventKind::IbcTransfer,
        EventKind::ProposalSubmitted,
        EventKind::ProposalDeposited,
        EventKind::VoteCast,
        EventKind::ProposalEnded,
        EventKind::ProposalStateChanged,
        EventKind::Undecodable,
    ];

    /// Stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RemittanceRequested => "remittance_requested",
            EventKind::TokenMinted => "token_minted",
            EventKind::TokenBurned => "token_burned",
            EventKind::TokenTransferred => "token_transferred",
            EventKind::Released => "released",
            EventKind::Refunded => "refunded",
            EventKind::BalanceDebited => "balance_debited",
            EventKind::BalanceCredited => "balance_credited",
            EventKind::IbcTransfer => "ibc_transfer",
            EventKind::ProposalSubmitted => "proposal_submitted",
            EventKind::ProposalDeposited => "proposal_deposited",
            EventKind::VoteCast => "vote_cast",
            EventKind::ProposalEnded => "proposal_ended",
            EventKind::ProposalStateChanged => "proposal_state_changed",
            EventKind::Undecodable => "undecodable",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl EventPayload {
    /// The kind of this payload.
    pub fn kind(&self) -> EventKind {
        match self {
            EventPayload::RemittanceRequested { .. } => EventKind::RemittanceRequested,
            EventPayload::TokenMinted { .. } => EventKind::TokenMinted,
            EventPayload::TokenBurned { .. } => EventKind::TokenBurned,
            EventPayload::TokenTransferred { .. } => EventKind::TokenTransferred,
            EventPayload::Released { .. } => EventKind::Released,
            EventPayload::Refunded { .. } => EventKind::Refunded,
            EventPayload::BalanceDebited { .. } => EventKind::BalanceDebited,
            EventPayload::BalanceCredited { .. } => EventKind::BalanceCredited,
            EventPayload::IbcTransfer { .. } => EventKind::IbcTransfer,
            EventPayload::ProposalSubmitted { .. } => EventKind::ProposalSubmitted,
            EventPayload::ProposalDeposited { .. } => EventKind::ProposalDeposited,
            EventPayload::VoteCast { .. } => EventKind::VoteCast,
            EventPayload::ProposalEnded { .. } => EventKind::ProposalEnded,
            EventPayload::ProposalStateChanged { .. } => EventKind::ProposalStateChanged,
            EventPayload::Undecodable { .. } => EventKind::Undecodable,
        }
    }
}

/// Whether a stored event can be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Decoded and on the canonical chain.
    Decoded,
    /// Kept with the reason it could not be decoded.
    Undecodable,
    /// Its block was reorganised away; kept for audit, never acted on.
    Retracted,
}

impl EventStatus {
    /// Stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Decoded => "decoded",
            EventStatus::Undecodable => "undecodable",
            EventStatus::Retracted => "retracted",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            EventStatus::Decoded,
            EventStatus::Undecodable,
            EventStatus::Retracted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A normalised event as a watcher emits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvent {
    /// Where it happened.
    pub id: EventId,
    /// The contract (EVM address, pallet, module) that emitted it.
    pub contract: String,
    /// What it means.
    pub payload: EventPayload,
}

impl ChainEvent {
    /// Status at ingest time: decoded unless the payload records a decoding failure.
    pub fn status(&self) -> EventStatus {
        match self.payload {
            EventPayload::Undecodable { .. } => EventStatus::Undecodable,
            _ => EventStatus::Decoded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_with_amounts_as_strings() {
        let chain = ChainId::evm(31337);
        let p = EventPayload::TokenMinted {
            asset: AssetId::erc20(&chain, "0x01"),
            to: AccountId::new(&chain, "0x02"),
            amount: u128::MAX,
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["kind"], "token_minted");
        assert_eq!(json["amount"], u128::MAX.to_string());
        assert_eq!(serde_json::from_value::<EventPayload>(json).unwrap(), p);
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
    }
}
