//! Transfers with their full state history, for remittance operators.

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use meridian_storage::TransferRecord;
use meridian_types::TransferState;

use crate::errors::ErrorCode;

/// One state change of a transfer.
#[derive(SimpleObject)]
pub struct TransferTransition {
    /// State left (null for the first).
    pub from: Option<String>,
    /// State entered.
    pub to: String,
    /// Why.
    pub reason: Option<String>,
    /// Who: `router`, `executor`, `operator:<name>`.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A cross-border transfer, from its source event on.
#[derive(SimpleObject)]
pub struct Transfer {
    /// Derived from the source event: one request, one transfer.
    pub id: String,
    /// Where it stands (`requested`, `quoted`, `held`, `rejected`, …).
    pub state: String,
    /// Uid of the remittance request event.
    pub source_event_uid: String,
    /// Source chain (CAIP-2).
    pub source_chain: String,
    /// Destination chain, as requested.
    pub dest_chain: String,
    /// Asset locked (CAIP-19).
    pub source_asset: String,
    /// Asset to deliver (CAIP-19), as requested.
    pub dest_asset: String,
    /// Who locked (CAIP-10).
    pub sender: String,
    /// Who receives.
    pub recipient: String,
    /// Amount locked, base units.
    pub amount: String,
    /// Quoted delivery, base units of the destination asset.
    pub dest_amount: Option<String>,
    /// Fee of the first corridor, base units of the source asset.
    pub fee: Option<String>,
    /// Effective rate of the quote.
    pub rate: Option<String>,
    /// Corridors of the route, `>`-separated.
    pub route: Option<String>,
    /// Refund instead of delivery after this.
    pub deadline: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Every state change, oldest first.
    pub history: Vec<TransferTransition>,
}

impl From<TransferRecord> for Transfer {
    fn from(t: TransferRecord) -> Transfer {
        let r = t.transfer;
        let quote = r.quote.as_ref();
        Transfer {
            state: r.state.as_str().to_owned(),
            source_chain: r.source_chain.to_string(),
            source_asset: r.source_asset.to_string(),
            sender: r.sender.to_string(),
            amount: r.amount.to_string(),
            dest_amount: quote.map(|q| q.amount_out().to_string()),
            fee: quote.map(|q| q.first_fee().to_string()),
            rate: quote.map(|q| q.effective_rate.to_string()),
            route: quote.map(|q| q.route()),
            id: r.id,
            source_event_uid: r.source_event_uid,
            dest_chain: r.dest_chain,
            dest_asset: r.dest_asset,
            recipient: r.recipient,
            deadline: r.deadline,
            created_at: r.created_at,
            updated_at: r.updated_at,
            history: t
                .history
                .into_iter()
                .map(|h| TransferTransition {
                    from: h.from.map(|s| s.as_str().to_owned()),
                    to: h.to.as_str().to_owned(),
                    reason: h.reason,
                    actor: h.actor,
                    at: h.at,
                })
                .collect(),
        }
    }
}

/// A state filter from a client.
pub(crate) fn parse_state(s: &str) -> async_graphql::Result<TransferState> {
    TransferState::parse(s).ok_or_else(|| {
        let known: Vec<&str> = TransferState::ALL.iter().map(|t| t.as_str()).collect();
        ErrorCode::BadInput.error(format!("state: `{s}` is not one of {}", known.join(", ")))
    })
}
