//! Test support: one corridor `a-b` between the test token on chain A (`eip155:31337`) and on
//! chain B (`eip155:1337`), at rate 1 with a 0.25 % fee, and the routing state over it.

#![allow(dead_code)]

use meridian_router::{RouteLimits, Router, RoutingState, Screening};
use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
use meridian_types::ChainId;

use super::events::token;

pub fn chain_a() -> ChainId {
    "eip155:31337".parse().unwrap()
}

pub fn chain_b() -> ChainId {
    "eip155:1337".parse().unwrap()
}

/// The corridor, holding `liquidity` on B's side and capped at `daily_cap` per 24 h.
pub fn corridors(liquidity: u128, daily_cap: u128) -> Vec<CorridorConfig> {
    vec![CorridorConfig {
        id: "a-b".into(),
        source_asset: token(&chain_a()),
        dest_asset: token(&chain_b()),
        fee_bps: 25,
        fixed_fee: Amount(0),
        rate: Some("1".into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1),
        max_amount: Amount(1_000_000_000),
        daily_cap: Amount(daily_cap),
        hold_threshold: None,
        paused: false,
        liquidity: Amount(liquidity),
    }]
}

/// Routing over `corridors`, nobody sanctioned.
pub fn routing(corridors: &[CorridorConfig]) -> RoutingState {
    let asset = |chain: &ChainId| AssetConfig {
        id: token(chain),
        symbol: "USDM".into(),
        decimals: 6,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    };
    let router = Router::new(
        &[asset(&chain_a()), asset(&chain_b())],
        corridors,
        RouteLimits::default(),
    )
    .unwrap();
    RoutingState::new(router, Screening::default())
}
