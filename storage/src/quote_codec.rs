//! The stored form of an accepted quote (the `transfers.quote` JSON column) and of a transfer
//! row: storage converts here, so no other crate parses a stored value again. A stored value
//! that does not parse is [`StorageError::Corrupt`], never a default.

use meridian_types::money::Rate;
use meridian_types::{AcceptedQuote, QuotedHop, Transfer, TransferState};
use serde::{Deserialize, Serialize};

use crate::entities::transfers;
use crate::StorageError;

/// One hop as stored; amounts are decimal strings (u128 does not fit JSON numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredHop {
    corridor: String,
    source_asset: String,
    dest_asset: String,
    amount_in: String,
    fee: String,
    /// 18-decimal fixed point, as an integer.
    rate: String,
    amount_out: String,
}

/// A quote as stored. The effective rate lives in the `rate` column beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredQuote {
    hops: Vec<StoredHop>,
    cost_bps: u32,
    expires_at: u64,
}

fn corrupt(id: &str, message: String) -> StorageError {
    StorageError::Corrupt {
        table: "transfers",
        message: format!("{id}: {message}"),
    }
}

/// The JSON stored for `q`.
pub(crate) fn quote_to_json(q: &AcceptedQuote) -> Result<serde_json::Value, StorageError> {
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
    serde_json::to_value(stored).map_err(|e| StorageError::Corrupt {
        table: "transfers",
        message: format!("quote not serialisable: {e}"),
    })
}

/// Reads a stored quote of transfer `id`, with its effective rate as stored (`rate` column).
fn quote_from_json(
    id: &str,
    v: &serde_json::Value,
    effective_rate: Option<&str>,
) -> Result<AcceptedQuote, StorageError> {
    let q: StoredQuote =
        serde_json::from_value(v.clone()).map_err(|e| corrupt(id, format!("stored quote: {e}")))?;
    let num = |field: &str, s: &str| {
        s.parse::<u128>()
            .map_err(|_| corrupt(id, format!("quote {field} `{s}` is not an amount")))
    };
    let asset = |s: &str| {
        s.parse()
            .map_err(|_| corrupt(id, format!("quote asset `{s}` is not a CAIP-19 id")))
    };
    let hops = q
        .hops
        .iter()
        .map(|h| {
            Ok(QuotedHop {
                corridor: h.corridor.clone(),
                source_asset: asset(&h.source_asset)?,
                dest_asset: asset(&h.dest_asset)?,
                amount_in: num("amount_in", &h.amount_in)?,
                fee: num("fee", &h.fee)?,
                rate: Rate(num("rate", &h.rate)?),
                amount_out: num("amount_out", &h.amount_out)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    if hops.is_empty() {
        return Err(corrupt(id, "stored quote has no hops".into()));
    }
    let effective_rate = match effective_rate {
        Some(r) => Rate::from_decimal(r, 0, 0)
            .map_err(|e| corrupt(id, format!("effective rate `{r}`: {e}")))?,
        None => return Err(corrupt(id, "a quote without its effective rate".into())),
    };
    Ok(AcceptedQuote {
        hops,
        effective_rate,
        cost_bps: q.cost_bps,
        expires_at: q.expires_at,
    })
}

/// A transfer row, typed.
pub(crate) fn transfer_from_row(r: transfers::Model) -> Result<Transfer, StorageError> {
    let id = r.id.as_str();
    let state = TransferState::parse(&r.state)
        .ok_or_else(|| corrupt(id, format!("unknown state `{}`", r.state)))?;
    let amount = r
        .amount
        .parse::<u128>()
        .map_err(|_| corrupt(id, format!("amount `{}` is not an integer", r.amount)))?;
    let quote = r
        .quote
        .as_ref()
        .map(|q| quote_from_json(id, q, r.rate.as_deref()))
        .transpose()?;
    Ok(Transfer {
        source_chain: r
            .source_chain
            .parse()
            .map_err(|_| corrupt(id, format!("source chain `{}`", r.source_chain)))?,
        sender: r
            .sender
            .parse()
            .map_err(|_| corrupt(id, format!("sender `{}` is not a CAIP-10 id", r.sender)))?,
        source_asset: r
            .source_asset
            .parse()
            .map_err(|_| corrupt(id, format!("source asset `{}`", r.source_asset)))?,
        amount,
        state,
        quote,
        id: r.id,
        source_event_uid: r.source_event_uid,
        dest_chain: r.dest_chain,
        dest_asset: r.dest_asset,
        recipient: r.recipient,
        batch_id: r.batch_id,
        deadline: r.deadline,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_types::AssetId;

    fn quote() -> AcceptedQuote {
        let chain = "eip155:1".parse().unwrap();
        let a = AssetId::erc20(&chain, "0x00000000000000000000000000000000000000a1");
        let b = AssetId::erc20(&chain, "0x00000000000000000000000000000000000000b1");
        AcceptedQuote {
            hops: vec![QuotedHop {
                corridor: "a-b".into(),
                source_asset: a,
                dest_asset: b,
                amount_in: u128::MAX,
                fee: 25,
                rate: Rate(920_000_000_000_000_000),
                amount_out: 1,
            }],
            effective_rate: Rate(919_999_999_999_999_999),
            cost_bps: 27,
            expires_at: 1_800_000_000,
        }
    }

    #[test]
    fn a_quote_round_trips_exactly() {
        let q = quote();
        let rate = q.effective_rate.to_string();
        assert_eq!(
            quote_from_json("t", &quote_to_json(&q).unwrap(), Some(&rate)).unwrap(),
            q
        );
    }

    #[test]
    fn a_stored_quote_that_does_not_parse_is_an_error() {
        let rate = Some("0.92");
        let mut v = quote_to_json(&quote()).unwrap();
        v["hops"][0]["fee"] = serde_json::json!("lots");
        assert!(matches!(
            quote_from_json("t", &v, rate),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(quote_from_json(
            "t",
            &serde_json::json!({"hops": [], "cost_bps": 0, "expires_at": 0}),
            rate
        )
        .is_err());
        let stored = quote_to_json(&quote()).unwrap();
        assert!(quote_from_json("t", &stored, None).is_err());
        assert!(quote_from_json("t", &stored, Some("0,92")).is_err());
    }
}
