//! Meridian's router: what happens to a cross-border transfer between the source event and
//! settlement — which corridors carry it (the cheapest route over at most a few hops), at what
//! rate and fees (a quote), and whether it may go at all (sanctions, rolling caps, holds, the
//! travel rule).
//!
//! Pure and synchronous: no I/O besides reading the denylist file. The node feeds it events and
//! stores its decisions.
//!
//! - [`fixed`]: exact rate arithmetic (18-decimal fixed point, 256-bit products), defined in
//!   `meridian_types::money` so stored quotes can carry rates.
//! - [`route`]: asset registry, corridors, rates and quotes.
//! - [`compliance`]: denylist, rolling caps and screening decisions.

pub mod compliance;
pub use meridian_types::money as fixed;
pub mod route;

pub use compliance::{
    CompliancePolicy, Decision, Denylist, GovernedSanctions, RollingCaps, Screening,
    ScreeningReason,
};
pub use fixed::{Rate, RateError};
pub use route::{Hop, Quote, RouteError, RouteLimits, Router};

use meridian_types::config::{AssetConfig, CorridorConfig};
use meridian_types::RelayAction;

/// A held transfer to release.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRequest<'a> {
    /// Sender (CAIP-10).
    pub sender: &'a str,
    /// Recipient (CAIP-10).
    pub recipient: &'a str,
    /// Asset paid.
    pub source_asset: &'a meridian_types::AssetId,
    /// Asset delivered.
    pub dest_asset: &'a meridian_types::AssetId,
    /// Amount paid (base units).
    pub amount: u128,
}

/// Why a held transfer cannot be released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseRefusal {
    /// No route now.
    #[error("{0}")]
    Route(RouteError),
    /// Refused by screening (sanctions, the sender's cap).
    #[error("{0}")]
    Screening(ScreeningReason),
}

/// Why a relay-parameter change could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// It names a corridor this relay does not have (any more).
    #[error("no corridor `{0}`")]
    UnknownCorridor(String),
    /// It names an asset this relay does not list.
    #[error("no asset `{0}`")]
    UnknownAsset(String),
    /// Its value cannot be used.
    #[error("invalid {0}")]
    Invalid(String),
}

/// The router and the rolling usage it prices against, shared by the node's tasks (GraphQL
/// reads it; the transfer pipeline, operators and governance change it). Its locks are its own:
/// a change goes through a method here, a read through [`RoutingState::read`].
#[derive(Debug)]
pub struct RoutingState {
    /// Corridors, rates, limits.
    router: std::sync::RwLock<Router>,
    /// Denylist, rolling caps, thresholds.
    screening: std::sync::RwLock<Screening>,
}

impl RoutingState {
    /// Shared state over a router, with nothing moved yet.
    pub fn new(router: Router, screening: Screening) -> RoutingState {
        RoutingState {
            router: std::sync::RwLock::new(router),
            screening: std::sync::RwLock::new(screening),
        }
    }

    fn router_mut(&self) -> std::sync::RwLockWriteGuard<'_, Router> {
        self.router.write().unwrap_or_else(|e| e.into_inner())
    }

    fn screening_mut(&self) -> std::sync::RwLockWriteGuard<'_, Screening> {
        self.screening.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` over the router and the screening state as they are now, consistent with each other
    /// (both read locks held for the call; keep it short).
    pub fn read<R>(&self, f: impl FnOnce(&Router, &Screening) -> R) -> R {
        let router = self.router.read().unwrap_or_else(|e| e.into_inner());
        let screening = self.screening.read().unwrap_or_else(|e| e.into_inner());
        f(&router, &screening)
    }

    /// Pauses or resumes `corridor`; its configuration after the change, `None` if there is no
    /// such corridor.
    pub fn set_paused(&self, corridor: &str, paused: bool) -> Option<CorridorConfig> {
        let mut router = self.router_mut();
        router
            .set_paused(corridor, paused)
            .then(|| router.corridor(corridor).cloned())
            .flatten()
    }

    /// Sets `corridor`'s fee; `false` if there is no such corridor.
    pub fn set_fee(&self, corridor: &str, fee_bps: u32) -> bool {
        self.router_mut().set_fee(corridor, fee_bps)
    }

    /// Sets `corridor`'s rolling 24 h cap; `false` if there is no such corridor.
    pub fn set_daily_cap(&self, corridor: &str, daily_cap: u128) -> bool {
        self.router_mut().set_daily_cap(corridor, daily_cap)
    }

    /// Lists an asset.
    pub fn list_asset(&self, asset: AssetConfig) {
        // Its value in the reference unit, when it states one (its own decimals; the limits'
        // reference decimals were fixed at start).
        if let Some(max_age_secs) = asset.reference_rate_max_age_secs {
            self.screening_mut()
                .policy
                .reference
                .expect_fed(&asset.id, max_age_secs);
        } else if let Some(rate) = &asset.reference_rate {
            let mut screening = self.screening_mut();
            let decimals = screening.policy.reference.decimals();
            match Rate::from_decimal(rate, asset.decimals, decimals) {
                Ok(r) => screening.policy.reference.set(&asset.id, r),
                Err(e) => {
                    tracing::warn!(asset = %asset.id, error = %e, "listed asset's reference rate refused; its transfers are held while limits apply")
                }
            }
        }
        self.router_mut().list_asset(asset);
    }

    /// Records a fed rate for `corridor` observed at `at`; its configuration after the change.
    pub fn feed_rate(
        &self,
        corridor: &str,
        rate: &str,
        at: route::UnixTime,
    ) -> Result<Option<CorridorConfig>, route::CorridorError> {
        let mut router = self.router_mut();
        router.feed_rate(corridor, rate, at)?;
        Ok(router.corridor(corridor).cloned())
    }

    /// Applies a relay-parameter change (an operator's or a passed proposal's) made at `at`
    /// (a fed reference rate was observed then).
    pub fn apply(&self, action: &RelayAction, at: route::UnixTime) -> Result<(), ParameterError> {
        let unknown = |corridor: &str| ParameterError::UnknownCorridor(corridor.to_owned());
        match action {
            RelayAction::PauseCorridor { corridor, paused } => self
                .set_paused(corridor, *paused)
                .map(|_| ())
                .ok_or_else(|| unknown(corridor)),
            RelayAction::SetCorridorFee { corridor, fee_bps } => self
                .set_fee(corridor, *fee_bps)
                .then_some(())
                .ok_or_else(|| unknown(corridor)),
            RelayAction::SetCorridorCap {
                corridor,
                daily_cap,
            } => {
                let cap = daily_cap
                    .parse()
                    .map_err(|_| ParameterError::Invalid(format!("daily cap `{daily_cap}`")))?;
                self.set_daily_cap(corridor, cap)
                    .then_some(())
                    .ok_or_else(|| unknown(corridor))
            }
            RelayAction::ListAsset { asset } => {
                self.list_asset(asset.clone());
                Ok(())
            }
            RelayAction::Sanction { address, listed } => {
                self.set_sanction(address, *listed);
                Ok(())
            }
            RelayAction::FeedReferenceRate { asset, rate } => {
                self.feed_reference_rate(asset, rate, at).map(|_| ())
            }
        }
    }

    /// `rate` (reference units per whole unit of `asset`, a decimal) as `asset`'s reference
    /// rate would take it: refused for an unknown asset, one whose rate is not fed, or a rate
    /// that is not exact at the assets' decimals.
    pub fn reference_rate_of(
        &self,
        asset: &meridian_types::AssetId,
        rate: &str,
    ) -> Result<Rate, ParameterError> {
        let decimals = self
            .read(|router, _| router.asset(asset).map(|a| a.decimals))
            .ok_or_else(|| ParameterError::UnknownAsset(asset.to_string()))?;
        let screening = self.screening.read().unwrap_or_else(|e| e.into_inner());
        let reference = &screening.policy.reference;
        if !reference.is_fed(asset) {
            return Err(ParameterError::Invalid(format!(
                "reference rate: {}",
                compliance::ReferenceRateError::NotFed(asset.to_string())
            )));
        }
        Rate::from_decimal(rate, decimals, reference.decimals())
            .map_err(|e| ParameterError::Invalid(format!("reference rate of {asset}: {e}")))
    }

    /// Records `asset`'s fed reference rate observed at `at`; the rate as stored.
    pub fn feed_reference_rate(
        &self,
        asset: &meridian_types::AssetId,
        rate: &str,
        at: route::UnixTime,
    ) -> Result<Rate, ParameterError> {
        let rate = self.reference_rate_of(asset, rate)?;
        self.screening_mut()
            .policy
            .reference
            .feed(asset, rate, at)
            .map_err(|e| ParameterError::Invalid(format!("reference rate: {e}")))?;
        Ok(rate)
    }

    /// Lists (`true`) or lifts (`false`) a sanction decided by governance.
    pub fn set_sanction(&self, account: &str, listed: bool) {
        self.screening_mut().governed.set(account, listed);
    }

    /// Reads the sanctions file again if it changed; a broken file keeps the list in force.
    pub fn reload_denylist(&self) -> Result<bool, compliance::DenylistError> {
        self.screening_mut().denylist.reload_if_changed()
    }

    /// Counts `amount` of `asset` moved by `sender` (and each corridor's leg) at `at` against
    /// the rolling caps.
    pub fn record_usage(
        &self,
        sender: &str,
        asset: &meridian_types::AssetId,
        amount: u128,
        legs: &[(&str, u128)],
        at: route::UnixTime,
    ) {
        self.screening_mut().record(sender, asset, amount, legs, at);
    }

    /// Prices a held transfer again for its release (its hold may have outlasted its quote) and
    /// screens it again for sanctions and the sender's cap — the hold itself is what is lifted.
    pub fn price_release(
        &self,
        t: &ReleaseRequest<'_>,
        now: route::UnixTime,
    ) -> Result<Quote, ReleaseRefusal> {
        let quote = self
            .quote(t.source_asset, t.dest_asset, t.amount, now)
            .map_err(ReleaseRefusal::Route)?;
        let screening = self.screening.read().unwrap_or_else(|e| e.into_inner());
        let input = compliance::ScreeningInput {
            sender: t.sender,
            recipient: t.recipient,
            asset: t.source_asset,
            amount: t.amount,
            travel_rule_data: true,
            holds: &[],
            now,
        };
        if let Decision::Reject(why) = screening.screen(&input) {
            return Err(ReleaseRefusal::Screening(why));
        }
        Ok(quote)
    }

    /// Counts a transfer that goes ahead against the sender's and its corridors' caps.
    pub fn record_accepted(
        &self,
        sender: &str,
        asset: &meridian_types::AssetId,
        amount: u128,
        quote: &meridian_types::AcceptedQuote,
        now: route::UnixTime,
    ) {
        let legs: Vec<(&str, u128)> = quote
            .hops
            .iter()
            .map(|h| (h.corridor.as_str(), h.amount_in))
            .collect();
        self.record_usage(sender, asset, amount, &legs, now);
    }

    /// A quote at `now`, against the corridors' rolling usage.
    pub fn quote(
        &self,
        from: &meridian_types::AssetId,
        to: &meridian_types::AssetId,
        amount: u128,
        now: route::UnixTime,
    ) -> Result<Quote, RouteError> {
        self.read(|router, screening| router.quote(from, to, amount, &screening.caps, now))
    }
}
