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

/// The router and the rolling usage it prices against, shared by the node's tasks (GraphQL
/// reads it; the transfer pipeline and governance write it).
#[derive(Debug)]
pub struct RoutingState {
    /// Corridors, rates, limits.
    pub router: std::sync::RwLock<Router>,
    /// Denylist, rolling caps, thresholds.
    pub screening: std::sync::RwLock<Screening>,
}

impl RoutingState {
    /// Shared state over a router, with nothing moved yet.
    pub fn new(router: Router, screening: Screening) -> RoutingState {
        RoutingState {
            router: std::sync::RwLock::new(router),
            screening: std::sync::RwLock::new(screening),
        }
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
        amount: u128,
        quote: &meridian_types::AcceptedQuote,
        now: route::UnixTime,
    ) {
        let legs: Vec<(&str, u128)> = quote
            .hops
            .iter()
            .map(|h| (h.corridor.as_str(), h.amount_in))
            .collect();
        self.screening
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .record(sender, amount, &legs, now);
    }

    /// A quote at `now`, against the corridors' rolling usage.
    pub fn quote(
        &self,
        from: &meridian_types::AssetId,
        to: &meridian_types::AssetId,
        amount: u128,
        now: route::UnixTime,
    ) -> Result<Quote, RouteError> {
        let router = self.router.read().unwrap_or_else(|e| e.into_inner());
        let screening = self.screening.read().unwrap_or_else(|e| e.into_inner());
        router.quote(from, to, amount, &screening.caps, now)
    }
}
