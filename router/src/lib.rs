//! Meridian's router: what happens to a cross-border transfer between the source event and
//! settlement — which corridors carry it (the cheapest route over at most a few hops), at what
//! rate and fees (a quote), and whether it may go at all (sanctions, rolling caps, holds, the
//! travel rule).
//!
//! Pure and synchronous: no I/O besides reading the denylist file. The node feeds it events and
//! stores its decisions.
//!
//! - [`fixed`]: exact rate arithmetic (18-decimal fixed point, 256-bit products).
//! - [`route`]: asset registry, corridors, rates and quotes.
//! - [`compliance`]: denylist, rolling caps and screening decisions.
//! - [`quote_record`]: the stored form of an accepted quote, which settlement posts.

pub mod compliance;
pub mod fixed;
pub mod quote_record;
pub mod route;

pub use compliance::{
    CompliancePolicy, Decision, Denylist, RollingCaps, Screening, ScreeningReason,
};
pub use fixed::{Rate, RateError};
pub use route::{Hop, Quote, RouteError, RouteLimits, Router};

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
