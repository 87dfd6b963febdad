//! Corridors and quotes: what a remittance operator checks before and while money flows.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use meridian_router::{Quote as RouterQuote, RouteError, RoutingState};
use meridian_types::config::CorridorConfig;
use meridian_types::AssetId;

use crate::errors::ErrorCode;

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

fn time(t: u64) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::try_from(t).unwrap_or(i64::MAX), 0)
        .single()
        .unwrap_or_default()
}

/// Basis points as a percentage string (`25` → `"0.25"`).
fn percent(bps: u32) -> String {
    format!("{}.{:02}", bps / 100, bps % 100)
}

pub(crate) fn parse_amount(field: &str, s: &str) -> async_graphql::Result<u128> {
    s.trim().replace('_', "").parse::<u128>().map_err(|_| {
        ErrorCode::BadInput.error(format!("{field}: `{s}` is not an amount in base units"))
    })
}

pub(crate) fn parse_asset(field: &str, s: &str) -> async_graphql::Result<AssetId> {
    s.parse::<AssetId>()
        .map_err(|_| ErrorCode::BadInput.error(format!("{field}: `{s}` is not a CAIP-19 asset id")))
}

pub(crate) fn route_error(e: RouteError) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    match e {
        RouteError::NoRoute { ref reasons, .. } => {
            let reasons = reasons.clone();
            ErrorCode::NoRoute
                .error(e.to_string())
                .extend_with(move |_, x| {
                    x.set("reasons", reasons.clone());
                })
        }
        other => ErrorCode::BadInput.error(other.to_string()),
    }
}

/// An asset of the registry.
#[derive(SimpleObject)]
pub struct Asset {
    /// CAIP-19 id.
    pub id: String,
    /// Ticker.
    pub symbol: String,
    /// Decimals of the base unit.
    pub decimals: u8,
    /// `cbdc`, `stablecoin`, `native` or `other`.
    pub kind: String,
    /// Who issues it, if configured.
    pub issuer: Option<String>,
    /// Its value in the limits' reference unit: `fixed`, `fresh`, `stale` (transfers the limits
    /// apply to are held until a fresh rate is fed), `unfed` or `none`.
    pub reference_rate_status: String,
    /// When its fed reference rate was observed, if it is fed.
    pub reference_rate_fed_at: Option<DateTime<Utc>>,
}

impl Asset {
    /// `a` as the registry shows it at `now`.
    pub(crate) fn of(
        a: &meridian_types::config::AssetConfig,
        screening: &meridian_router::Screening,
        now: u64,
    ) -> Asset {
        let status = screening.policy.reference.status(&a.id, now);
        Asset {
            id: a.id.to_string(),
            symbol: a.symbol.clone(),
            decimals: a.decimals,
            kind: a.kind.as_str().to_owned(),
            issuer: a.issuer.clone(),
            reference_rate_status: status.as_str().to_owned(),
            reference_rate_fed_at: status.fed_at().map(time),
        }
    }
}

/// One corridor of a quote.
#[derive(SimpleObject)]
pub struct QuoteHop {
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
    /// Destination base units per source base unit.
    pub rate: String,
    /// Paid out, base units.
    pub amount_out: String,
}

/// A priced route.
#[derive(SimpleObject)]
pub struct Quote {
    /// Asset paid (CAIP-19).
    pub source_asset: String,
    /// Asset delivered (CAIP-19).
    pub dest_asset: String,
    /// Paid, base units.
    pub amount_in: String,
    /// Delivered, base units.
    pub amount_out: String,
    /// Delivered per paid base unit.
    pub effective_rate: String,
    /// Fees as a cost against what the rates alone would deliver, in basis points.
    pub cost_bps: u32,
    /// The same, as a percentage (`"0.25"`).
    pub cost_percent: String,
    /// Above the 3 % cost line.
    pub above_cost_line: bool,
    /// The corridors, in order.
    pub hops: Vec<QuoteHop>,
    /// When it was priced.
    pub quoted_at: DateTime<Utc>,
    /// When it stops holding.
    pub expires_at: DateTime<Utc>,
}

impl From<RouterQuote> for Quote {
    fn from(q: RouterQuote) -> Quote {
        Quote {
            source_asset: q.source_asset.to_string(),
            dest_asset: q.dest_asset.to_string(),
            amount_in: q.amount_in.to_string(),
            amount_out: q.amount_out.to_string(),
            effective_rate: q.effective_rate.to_string(),
            cost_bps: q.cost_bps,
            cost_percent: percent(q.cost_bps),
            above_cost_line: q.above_cost_line,
            hops: q
                .hops
                .into_iter()
                .map(|h| QuoteHop {
                    corridor: h.corridor,
                    source_asset: h.source_asset.to_string(),
                    dest_asset: h.dest_asset.to_string(),
                    amount_in: h.amount_in.to_string(),
                    fee: h.fee.to_string(),
                    rate: h.rate.to_string(),
                    amount_out: h.amount_out.to_string(),
                })
                .collect(),
            quoted_at: time(q.quoted_at),
            expires_at: time(q.expires_at),
        }
    }
}

/// A corridor with its live rate, cost and use of its rolling 24 h cap.
pub struct Corridor {
    pub(crate) config: CorridorConfig,
    pub(crate) now: u64,
}

#[Object]
impl Corridor {
    /// Corridor id.
    async fn id(&self) -> &str {
        &self.config.id
    }
    /// Asset paid in (CAIP-19).
    async fn source_asset(&self) -> String {
        self.config.source_asset.to_string()
    }
    /// Asset paid out (CAIP-19).
    async fn dest_asset(&self) -> String {
        self.config.dest_asset.to_string()
    }
    /// Fee in basis points.
    async fn fee_bps(&self) -> u32 {
        self.config.fee_bps
    }
    /// Fixed fee, base units of the source asset.
    async fn fixed_fee(&self) -> String {
        self.config.fixed_fee.0.to_string()
    }
    /// Smallest transfer, base units.
    async fn min_amount(&self) -> String {
        self.config.min_amount.0.to_string()
    }
    /// Largest transfer, base units.
    async fn max_amount(&self) -> String {
        self.config.max_amount.0.to_string()
    }
    /// Rolling 24 h cap, base units.
    async fn daily_cap(&self) -> String {
        self.config.daily_cap.0.to_string()
    }
    /// Above this, transfers are held.
    async fn hold_threshold(&self) -> Option<String> {
        self.config.hold_threshold.map(|a| a.0.to_string())
    }
    /// Paused corridors accept nothing.
    async fn paused(&self) -> bool {
        self.config.paused
    }
    /// Destination base units per source base unit now; null when unfed or stale.
    async fn rate(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let state = ctx.data::<Arc<RoutingState>>()?;
        Ok(state.read(|router, _| {
            router
                .corridor_rate(&self.config.id, self.now)
                .and_then(Result::ok)
                .map(|r| r.to_string())
        }))
    }
    /// Why there is no usable rate, if there is none.
    async fn rate_problem(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let state = ctx.data::<Arc<RoutingState>>()?;
        Ok(state.read(|router, _| {
            router
                .corridor_rate(&self.config.id, self.now)
                .and_then(Result::err)
        }))
    }
    /// Moved through it in the last 24 hours, base units.
    #[graphql(name = "used24h")]
    async fn used_24h(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let state = ctx.data::<Arc<RoutingState>>()?;
        use meridian_router::route::CorridorCapacity;
        let left = state.read(|_, screening| {
            screening
                .caps
                .remaining(&self.config.id, self.config.daily_cap.0, self.now)
        });
        Ok((self.config.daily_cap.0 - left).to_string())
    }
    /// Cost of sending `amount` (default: the minimum) through this corridor alone, with
    /// fees and the live rate; null with `rateProblem` set when it cannot be priced.
    async fn quote(
        &self,
        ctx: &Context<'_>,
        amount: Option<String>,
    ) -> async_graphql::Result<Option<Quote>> {
        let amount = match amount {
            Some(a) => parse_amount("amount", &a)?,
            None => self.config.min_amount.0.max(1),
        };
        let state = ctx.data::<Arc<RoutingState>>()?;
        Ok(state.read(|router, screening| {
            router
                .quote_corridor(&self.config.id, amount, &screening.caps, self.now)
                .and_then(Result::ok)
                .map(Quote::from)
        }))
    }
}
