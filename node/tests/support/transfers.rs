//! Test support: transfers as the settler leaves them, ready for delivery.

#![allow(dead_code)]

use meridian_storage::{NewTransfer, Transition};
use meridian_types::TransferState;

/// Who the test transfers pay, on every chain.
pub const RECIPIENT: &str = "0x00000000000000000000000000000000000b0b01";

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
            source_chain: "eip155:1".into(),
            dest_chain: chain.into(),
            source_asset: "eip155:1/erc20:0x0000000000000000000000000000000000000001".into(),
            dest_asset: format!("{chain}/erc20:{token}"),
            sender: "eip155:1:0x0000000000000000000000000000000000000a11".into(),
            recipient: format!("{chain}:{RECIPIENT}"),
            amount,
            dest_amount: Some(amount),
            fee: Some(0),
            rate: None,
            corridor_id: Some("x".into()),
            deadline: None,
            quote: None,
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
