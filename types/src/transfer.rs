//! The transfer lifecycle (DESIGN.md): the states a cross-border transfer moves through.

use serde::{Deserialize, Serialize};

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
