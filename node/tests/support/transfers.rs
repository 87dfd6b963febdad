//! Test support: transfers as the settler leaves them, ready for delivery.

#![allow(dead_code)]

use meridian_storage::{NewTransfer, Transition};
use meridian_types::money::{Rate, RATE_SCALE};
use meridian_types::{AcceptedQuote, AssetId, QuotedHop, TransferState};

/// What the test transfers locked.
pub const SOURCE_ASSET: &str = "eip155:1/erc20:0x0000000000000000000000000000000000000001";

/// Who the test transfers pay, on every chain.
pub const RECIPIENT: &str = "0x00000000000000000000000000000000000b0b01";

/// A one-hop quote over corridor `x`: `amount_in` of `from` less `fee` delivers `amount_out` of
/// `to`, valid for a day.
pub fn one_hop_quote(
    from: &str,
    to: &str,
    amount_in: u128,
    fee: u128,
    amount_out: u128,
) -> AcceptedQuote {
    let rate = Rate(amount_out.saturating_mul(RATE_SCALE) / amount_in.saturating_sub(fee).max(1));
    AcceptedQuote {
        hops: vec![QuotedHop {
            corridor: "x".into(),
            source_asset: from.parse::<AssetId>().expect("source asset"),
            dest_asset: to.parse::<AssetId>().expect("destination asset"),
            amount_in,
            fee,
            rate,
            amount_out,
        }],
        effective_rate: rate,
        cost_bps: 0,
        expires_at: (chrono::Utc::now() + chrono::Duration::days(1)).timestamp() as u64,
    }
}

/// Transfer `id` settled on the ledger: `amount` of `token` (an ERC-20 on `chain`) to
/// [`RECIPIENT`], with the history that led there.
pub fn settled(id: &str, chain: &str, token: &str, amount: u128) -> (NewTransfer, Vec<Transition>) {
    use TransferState::*;
    let now = chrono::Utc::now();
    let step = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "test".into(),
        at: now,
    };
    (
        NewTransfer {
            id: id.into(),
            source_event_uid: format!("uid-{id}"),
            source_chain: "eip155:1".parse().expect("chain"),
            dest_chain: chain.into(),
            source_asset: SOURCE_ASSET.parse().expect("asset"),
            dest_asset: format!("{chain}/erc20:{token}"),
            sender: "eip155:1:0x0000000000000000000000000000000000000a11"
                .parse()
                .expect("sender"),
            recipient: format!("{chain}:{RECIPIENT}"),
            amount,
            deadline: None,
            quote: Some(one_hop_quote(
                SOURCE_ASSET,
                &format!("{chain}/erc20:{token}"),
                amount,
                0,
                amount,
            )),
        },
        vec![
            step(None, Requested),
            step(Some(Requested), Screened),
            step(Some(Screened), Quoted),
            step(Some(Quoted), Settling),
            step(Some(Settling), Settled),
        ],
    )
}
