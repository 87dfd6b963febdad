//! The transfer lifecycle (DESIGN.md): the states a cross-border transfer moves through, and a
//! transfer as every crate sees it — typed, with `u128` amounts and the quote it was accepted at.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Rate;
use crate::{AccountId, AssetId, ChainId};

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    /// Seen on the source chain.
    Requested,
    /// Passed compliance screening.
    Screened,
    /// Priced over a route.
    Quoted,
    /// In a settlement batch.
    Settling,
    /// Settled on the ledger.
    Settled,
    /// Release submitted on the destination chain.
    Delivering,
    /// Release included on the destination chain.
    Delivered,
    /// Release final on the destination chain.
    Finalized,
    /// Refused: compliance, unknown asset, no route, expired quote.
    Rejected,
    /// Waiting for the hold period or an operator.
    Held,
    /// Delivery impossible before the deadline.
    Failed,
    /// Refund submitted on the source chain.
    Refunding,
    /// Refunded on the source chain.
    Refunded,
    /// Its source deposit vanished in a reorg deeper than the chain's confirmations: nothing is
    /// delivered and nothing refunded (its ledger entries, if any, were reversed).
    Cancelled,
}

impl TransferState {
    /// Every state, in lifecycle order.
    pub const ALL: [TransferState; 14] = [
        TransferState::Requested,
        TransferState::Screened,
        TransferState::Quoted,
        TransferState::Settling,
        TransferState::Settled,
        TransferState::Delivering,
        TransferState::Delivered,
        TransferState::Finalized,
        TransferState::Rejected,
        TransferState::Held,
        TransferState::Failed,
        TransferState::Refunding,
        TransferState::Refunded,
        TransferState::Cancelled,
    ];

    /// Stable snake_case name (stored in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Requested => "requested",
            TransferState::Screened => "screened",
            TransferState::Quoted => "quoted",
            TransferState::Settling => "settling",
            TransferState::Settled => "settled",
            TransferState::Delivering => "delivering",
            TransferState::Delivered => "delivered",
            TransferState::Finalized => "finalized",
            TransferState::Rejected => "rejected",
            TransferState::Held => "held",
            TransferState::Failed => "failed",
            TransferState::Refunding => "refunding",
            TransferState::Refunded => "refunded",
            TransferState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`, if any.
    pub fn parse(s: &str) -> Option<TransferState> {
        TransferState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One corridor of an accepted quote, with its exact amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedHop {
    /// Corridor id.
    pub corridor: String,
    /// Asset paid in.
    pub source_asset: AssetId,
    /// Asset paid out.
    pub dest_asset: AssetId,
    /// Paid in (base units of `source_asset`).
    pub amount_in: u128,
    /// Fee kept (base units of `source_asset`).
    pub fee: u128,
    /// The rate applied to `amount_in − fee`.
    pub rate: Rate,
    /// Paid out (base units of `dest_asset`).
    pub amount_out: u128,
}

/// The price a transfer was accepted at: what settlement posts, hop by hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedQuote {
    /// The corridors, in order; never empty.
    pub hops: Vec<QuotedHop>,
    /// `amount_out / amount_in`, rounded down.
    pub effective_rate: Rate,
    /// What fees cost, in basis points.
    pub cost_bps: u32,
    /// Unix seconds after which the quote no longer holds.
    pub expires_at: u64,
}

impl AcceptedQuote {
    /// The corridors of the route, `>`-separated (`usd-eur>eur-chf`).
    pub fn route(&self) -> String {
        self.hops
            .iter()
            .map(|h| h.corridor.as_str())
            .collect::<Vec<_>>()
            .join(">")
    }

    /// Delivered: what the last hop pays out.
    pub fn amount_out(&self) -> u128 {
        self.hops.last().map_or(0, |h| h.amount_out)
    }

    /// The first hop's fee (base units of the source asset).
    pub fn first_fee(&self) -> u128 {
        self.hops.first().map_or(0, |h| h.fee)
    }
}

/// A cross-border transfer as stored: one per remittance request.
///
/// The source side is typed (the watcher decoded it); the destination is kept as the sender
/// wrote it, since a refused request may name a chain or asset that does not parse — the intake
/// checks it before it quotes, so a transfer with a quote has a valid destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Derived from the source event ([`transfer_id`]).
    pub id: String,
    /// Uid of the source event.
    pub source_event_uid: String,
    /// Where the tokens were locked.
    pub source_chain: ChainId,
    /// Who locked them.
    pub sender: AccountId,
    /// The asset locked.
    pub source_asset: AssetId,
    /// Amount locked (base units).
    pub amount: u128,
    /// Destination chain, as requested.
    pub dest_chain: String,
    /// Asset to deliver, as requested.
    pub dest_asset: String,
    /// Who receives: a CAIP-10 id once the intake checked it, else as requested.
    pub recipient: String,
    /// Where it stands.
    pub state: TransferState,
    /// The accepted quote, once priced.
    pub quote: Option<AcceptedQuote>,
    /// The settlement batch that settled it.
    pub batch_id: Option<i64>,
    /// Refund instead of delivery after this.
    pub deadline: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
}

impl Transfer {
    /// What the recipient gets (base units of the destination asset), once quoted.
    pub fn dest_amount(&self) -> Option<u128> {
        self.quote.as_ref().map(AcceptedQuote::amount_out)
    }

    /// The corridors of its route, once quoted.
    pub fn route(&self) -> Option<String> {
        self.quote.as_ref().map(AcceptedQuote::route)
    }
}

/// The transfer id of a source event: derived from the event's uid, so re-ingesting the event
/// can never create a second transfer.
pub fn transfer_id(source_event_uid: &str) -> String {
    format!("tr:{source_event_uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TransferState::ALL {
            assert_eq!(TransferState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TransferState::parse("lost"), None);
    }
}
