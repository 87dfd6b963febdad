//! The stored form of an accepted quote: what settlement posts, hop by hop.

use crate::{Quote, Rate};
use serde::{Deserialize, Serialize};

/// One hop of a stored quote; amounts are decimal strings (u128 does not fit JSON numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHop {
    /// Corridor id.
    pub corridor: String,
    /// Asset paid in (CAIP-19).
    pub source_asset: String,
    /// Asset paid out (CAIP-19).
    pub dest_asset: String,
    /// Paid in, base units.
    pub amount_in: String,
    /// Fee kept, base units of the asset paid in.
    pub fee: String,
    /// Rate, 18-decimal fixed point (destination base units per source base unit · 10^18).
    pub rate: String,
    /// Paid out, base units.
    pub amount_out: String,
}

/// A stored quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuote {
    /// The hops, in order.
    pub hops: Vec<StoredHop>,
    /// Fees as a cost, basis points.
    pub cost_bps: u32,
    /// Unix seconds after which the quote no longer holds.
    pub expires_at: u64,
}

/// A hop with its amounts parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopAmounts {
    /// Corridor id.
    pub corridor: String,
    /// Asset paid in.
    pub source_asset: String,
    /// Asset paid out.
    pub dest_asset: String,
    /// Paid in.
    pub amount_in: u128,
    /// Fee kept.
    pub fee: u128,
    /// Paid out.
    pub amount_out: u128,
}

/// The JSON stored with a transfer.
pub fn to_json(q: &Quote) -> serde_json::Value {
    let stored = StoredQuote {
        hops: q
            .hops
            .iter()
            .map(|h| StoredHop {
                corridor: h.corridor.clone(),
                source_asset: h.source_asset.to_string(),
                dest_asset: h.dest_asset.to_string(),
                amount_in: h.amount_in.to_string(),
                fee: h.fee.to_string(),
                rate: h.rate.0.to_string(),
                amount_out: h.amount_out.to_string(),
            })
            .collect(),
        cost_bps: q.cost_bps,
        expires_at: q.expires_at,
    };
    serde_json::to_value(stored).unwrap_or(serde_json::Value::Null)
}

/// Why a stored quote cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("stored quote is malformed: {0}")]
pub struct QuoteRecordError(String);

/// Reads a stored quote back: its hops with amounts, and its expiry.
pub fn from_json(v: &serde_json::Value) -> Result<(Vec<HopAmounts>, u64), QuoteRecordError> {
    let q: StoredQuote =
        serde_json::from_value(v.clone()).map_err(|e| QuoteRecordError(e.to_string()))?;
    let num = |field: &str, s: &str| {
        s.parse::<u128>()
            .map_err(|_| QuoteRecordError(format!("{field} `{s}` is not an amount")))
    };
    let mut hops = Vec::with_capacity(q.hops.len());
    for h in &q.hops {
        num("rate", &h.rate).map(Rate)?;
        hops.push(HopAmounts {
            corridor: h.corridor.clone(),
            source_asset: h.source_asset.clone(),
            dest_asset: h.dest_asset.clone(),
            amount_in: num("amount_in", &h.amount_in)?,
            fee: num("fee", &h.fee)?,
            amount_out: num("amount_out", &h.amount_out)?,
        });
    }
    if hops.is_empty() {
        return Err(QuoteRecordError("no hops".into()));
    }
    Ok((hops, q.expires_at))
}
