//! A change of the relay's parameters — what an operator or a passed proposal changes in how the
//! relay runs. Each action names what it touches by the same ids the configuration uses, so an
//! operator can read a proposal's effect directly; each sets one [`RelayAction::parameter`], and
//! the latest change of a parameter is the one in force (stored as such, so it outlives a
//! restart).

use crate::config::AssetConfig;
use crate::AssetId;
use serde::{Deserialize, Serialize};

/// One change of relay parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayAction {
    /// Pause or resume a corridor.
    PauseCorridor {
        /// Corridor id.
        corridor: String,
        /// `true` pauses, `false` resumes.
        paused: bool,
    },
    /// Set a corridor's fee.
    SetCorridorFee {
        /// Corridor id.
        corridor: String,
        /// Fee in basis points (at most 10 000).
        fee_bps: u32,
    },
    /// Set a corridor's rolling 24 h cap (base units of its source asset, decimal string).
    SetCorridorCap {
        /// Corridor id.
        corridor: String,
        /// The new cap.
        daily_cap: String,
    },
    /// List an asset (it can then be named by corridors and transfers).
    ListAsset {
        /// The asset as the configuration would describe it.
        asset: AssetConfig,
    },
    /// Feed an asset's reference rate (what one whole unit is worth in the limits' reference
    /// unit, a decimal such as `1.08`), observed when the change is made; only for an asset
    /// whose reference rate is fed, which goes stale `reference_rate_max_age_secs` later.
    FeedReferenceRate {
        /// The asset.
        asset: AssetId,
        /// Reference units per whole unit of the asset.
        rate: String,
    },
    /// Add an address to the sanctions list, or take it off.
    Sanction {
        /// CAIP-10 account or bare address.
        address: String,
        /// `true` adds, `false` removes.
        listed: bool,
    },
}

impl RelayAction {
    /// Checks the action's own values (what it refers to is checked when it is applied).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            RelayAction::SetCorridorFee { fee_bps, .. } if *fee_bps > 10_000 => {
                Err(format!("fee_bps {fee_bps} is above 10000"))
            }
            RelayAction::SetCorridorCap { daily_cap, .. } if daily_cap.parse::<u128>().is_err() => {
                Err(format!(
                    "daily_cap `{daily_cap}` is not an amount in base units"
                ))
            }
            RelayAction::Sanction { address, .. } if address.trim().is_empty() => {
                Err("sanction without an address".into())
            }
            RelayAction::FeedReferenceRate { rate, .. } => {
                // The asset's decimals are not known here: the rate is checked exactly when it
                // is applied; here only that it is a positive decimal at all.
                crate::money::Rate::from_decimal(rate, 0, 0)
                    .or_else(|e| match e {
                        crate::money::RateError::Precision(_) => Ok(crate::money::Rate::ONE),
                        e => Err(e),
                    })
                    .map(|_| ())
                    .map_err(|e| format!("reference rate: {e}"))
            }
            _ => Ok(()),
        }
    }

    /// The parameter this action sets, e.g. `corridor:usdm-a-b:paused`: a later change of the same
    /// parameter replaces it.
    pub fn parameter(&self) -> String {
        match self {
            RelayAction::PauseCorridor { corridor, .. } => format!("corridor:{corridor}:paused"),
            RelayAction::SetCorridorFee { corridor, .. } => format!("corridor:{corridor}:fee_bps"),
            RelayAction::SetCorridorCap { corridor, .. } => {
                format!("corridor:{corridor}:daily_cap")
            }
            RelayAction::ListAsset { asset } => format!("asset:{}", asset.id),
            RelayAction::FeedReferenceRate { asset, .. } => format!("asset:{asset}:reference_rate"),
            RelayAction::Sanction { address, .. } => {
                format!("sanction:{}", address.trim().to_lowercase())
            }
        }
    }

    /// A one-line description for the audit log and the voting page.
    pub fn describe(&self) -> String {
        match self {
            RelayAction::PauseCorridor {
                corridor,
                paused: true,
            } => format!("pause corridor {corridor}"),
            RelayAction::PauseCorridor {
                corridor,
                paused: false,
            } => format!("resume corridor {corridor}"),
            RelayAction::SetCorridorFee { corridor, fee_bps } => {
                format!("set the fee of corridor {corridor} to {fee_bps} bps")
            }
            RelayAction::SetCorridorCap {
                corridor,
                daily_cap,
            } => format!("set the daily cap of corridor {corridor} to {daily_cap}"),
            RelayAction::ListAsset { asset } => {
                format!("list asset {} ({})", asset.id, asset.symbol)
            }
            RelayAction::FeedReferenceRate { asset, rate } => {
                format!("feed the reference rate of asset {asset}: {rate}")
            }
            RelayAction::Sanction {
                address,
                listed: true,
            } => format!("sanction {address}"),
            RelayAction::Sanction {
                address,
                listed: false,
            } => format!("lift the sanction on {address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_json_and_are_checked() {
        let a: Vec<RelayAction> = serde_json::from_str(
            r#"[{"kind":"pause_corridor","corridor":"usdm-a-b","paused":true},
                {"kind":"set_corridor_fee","corridor":"usdm-a-b","fee_bps":40}]"#,
        )
        .unwrap();
        assert_eq!(a[0].describe(), "pause corridor usdm-a-b");
        assert_eq!(a[0].parameter(), "corridor:usdm-a-b:paused");
        assert_eq!(a[1].parameter(), "corridor:usdm-a-b:fee_bps");
        assert!(a.iter().all(|x| x.validate().is_ok()));
        let bad = RelayAction::SetCorridorFee {
            corridor: "x".into(),
            fee_bps: 10_001,
        };
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<RelayAction>(r#"{"kind":"mint_money"}"#).is_err());
        let fed: RelayAction = serde_json::from_str(
            r#"{"kind":"feed_reference_rate","asset":"eip155:1/erc20:0x00000000000000000000000000000000000000e0","rate":"1.08"}"#,
        )
        .unwrap();
        assert_eq!(
            fed.parameter(),
            "asset:eip155:1/erc20:0x00000000000000000000000000000000000000e0:reference_rate"
        );
        assert!(fed.validate().is_ok());
        for bad in ["0", "0.000", "-1", "one", ""] {
            let a = RelayAction::FeedReferenceRate {
                asset: "eip155:1/erc20:0x00000000000000000000000000000000000000e0"
                    .parse()
                    .unwrap(),
                rate: bad.into(),
            };
            assert!(a.validate().is_err(), "{bad}");
        }
    }
}
