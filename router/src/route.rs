//! Corridors, rates and the cheapest route: a transfer of asset A becomes asset B over at most
//! `max_hops` corridors, choosing the path that delivers the most (fees and rates included).
//!
//! Fixed fees make a path's cost depend on the amount, so the router does not search on
//! log-rates; it enumerates the simple paths of at most `max_hops` corridors (a corridor graph is
//! small) and prices each exactly, in integers.

use std::collections::HashMap;

use meridian_types::config::{AssetConfig, CorridorConfig};
use meridian_types::{AcceptedQuote, AssetId, QuotedHop};

use crate::fixed::{mul_div, Rate, RateError};

/// Seconds since the Unix epoch.
pub type UnixTime = u64;

/// Basis points in one.
const BPS: u128 = 10_000;

/// Routing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLimits {
    /// Longest path, in corridors.
    pub max_hops: usize,
    /// Quotes costing more than this (basis points of the ideal output) are flagged.
    pub cost_line_bps: u32,
    /// How long a quote holds.
    pub quote_ttl_secs: u64,
}

impl Default for RouteLimits {
    fn default() -> Self {
        RouteLimits {
            max_hops: 3,
            cost_line_bps: 300,
            quote_ttl_secs: 60,
        }
    }
}

/// Where a corridor's rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateSource {
    /// Fixed in the configuration (or by governance); never stale.
    Fixed(Rate),
    /// Fed by an operator or oracle; stale after `max_age` seconds.
    Fed { max_age: u64 },
}

#[derive(Debug, Clone)]
struct Corridor {
    config: CorridorConfig,
    source: RateSource,
}

/// How much a corridor may still carry today; the compliance caps answer it.
pub trait CorridorCapacity {
    /// Base units of the corridor's source asset it may still carry at `now`.
    fn remaining(&self, corridor: &str, daily_cap: u128, now: UnixTime) -> u128;
}

/// No usage recorded: every corridor has its whole cap.
pub struct Unused;

impl CorridorCapacity for Unused {
    fn remaining(&self, _: &str, daily_cap: u128, _: UnixTime) -> u128 {
        daily_cap
    }
}

/// One corridor of a route, priced: the same hop a transfer keeps once its quote is accepted
/// (its fee is `fee_bps` of the amount plus the fixed fee).
pub type Hop = QuotedHop;

/// A priced route, valid until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// What the sender pays.
    pub source_asset: AssetId,
    /// What the recipient gets.
    pub dest_asset: AssetId,
    /// Paid in (source base units).
    pub amount_in: u128,
    /// Delivered (destination base units).
    pub amount_out: u128,
    /// The corridors, in order.
    pub hops: Vec<Hop>,
    /// `amount_out / amount_in`, rounded down.
    pub effective_rate: Rate,
    /// What fees cost, in basis points of what the hops' rates alone would deliver.
    pub cost_bps: u32,
    /// Whether `cost_bps` is above the cost line (3 % by default).
    pub above_cost_line: bool,
    /// When it was priced.
    pub quoted_at: UnixTime,
    /// When it stops holding.
    pub expires_at: UnixTime,
}

impl Quote {
    /// The corridors of the route, `>`-separated (`usd-eur>eur-chf`).
    pub fn route(&self) -> String {
        self.hops
            .iter()
            .map(|h| h.corridor.as_str())
            .collect::<Vec<_>>()
            .join(">")
    }

    /// The quote as a transfer keeps it once accepted: what settlement posts.
    pub fn accepted(&self) -> AcceptedQuote {
        AcceptedQuote {
            hops: self.hops.clone(),
            effective_rate: self.effective_rate,
            cost_bps: self.cost_bps,
            expires_at: self.expires_at,
        }
    }
}

/// Why no quote could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The asset is not in the registry.
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    /// A transfer of nothing.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// No path works; `reasons` says why each candidate failed.
    #[error("no route from {from} to {to}: {}", reasons.join("; "))]
    NoRoute {
        /// Source asset.
        from: AssetId,
        /// Destination asset.
        to: AssetId,
        /// One line per refused corridor (or "no corridor leads there").
        reasons: Vec<String>,
    },
}

/// A corridor's configuration the router cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorridorError {
    /// A corridor names an asset the registry does not have.
    #[error("corridor {corridor}: unknown asset {asset}")]
    UnknownAsset {
        /// Corridor id.
        corridor: String,
        /// The asset.
        asset: AssetId,
    },
    /// Its rate does not parse.
    #[error("corridor {corridor}: rate: {error}")]
    Rate {
        /// Corridor id.
        corridor: String,
        /// Why.
        error: RateError,
    },
    /// No corridor has this id.
    #[error("no corridor `{0}`")]
    UnknownCorridor(String),
    /// The corridor's rate is fixed by configuration; feeding it would change nothing.
    #[error("corridor `{0}` has a fixed rate; only corridors without `rate` take fed rates")]
    FixedRate(String),
}

/// The asset registry, the corridors and their current rates.
#[derive(Debug, Clone)]
pub struct Router {
    assets: HashMap<AssetId, AssetConfig>,
    corridors: Vec<Corridor>,
    fed: HashMap<String, (Rate, UnixTime)>,
    limits: RouteLimits,
}

impl Router {
    /// A router over the configured assets and corridors.
    pub fn new(
        assets: &[AssetConfig],
        corridors: &[CorridorConfig],
        limits: RouteLimits,
    ) -> Result<Router, CorridorError> {
        let assets: HashMap<AssetId, AssetConfig> =
            assets.iter().map(|a| (a.id.clone(), a.clone())).collect();
        let mut list = Vec::with_capacity(corridors.len());
        for c in corridors {
            let decimals = |asset: &AssetId| {
                assets
                    .get(asset)
                    .map(|a| a.decimals)
                    .ok_or_else(|| CorridorError::UnknownAsset {
                        corridor: c.id.clone(),
                        asset: asset.clone(),
                    })
            };
            let (sd, dd) = (decimals(&c.source_asset)?, decimals(&c.dest_asset)?);
            let source = match &c.rate {
                Some(r) => RateSource::Fixed(Rate::from_decimal(r, sd, dd).map_err(|error| {
                    CorridorError::Rate {
                        corridor: c.id.clone(),
                        error,
                    }
                })?),
                None => RateSource::Fed {
                    max_age: c.rate_max_age_secs,
                },
            };
            list.push(Corridor {
                config: c.clone(),
                source,
            });
        }
        Ok(Router {
            assets,
            corridors: list,
            fed: HashMap::new(),
            limits,
        })
    }

    /// The registry entry of an asset.
    pub fn asset(&self, id: &AssetId) -> Option<&AssetConfig> {
        self.assets.get(id)
    }

    /// The asset registry, by id.
    pub fn assets(&self) -> Vec<&AssetConfig> {
        let mut all: Vec<&AssetConfig> = self.assets.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Records a fed rate (a human decimal, destination units per source unit) observed at `at`.
    pub fn feed_rate(
        &mut self,
        corridor: &str,
        rate: &str,
        at: UnixTime,
    ) -> Result<(), CorridorError> {
        let rate = self.fed_rate(corridor, rate)?;
        self.fed.insert(corridor.to_owned(), (rate, at));
        Ok(())
    }

    /// A fed rate for `corridor` (a human decimal) as the corridor would take it: refused for an
    /// unknown corridor, one with a fixed rate, or a rate that does not parse.
    pub fn fed_rate(&self, corridor: &str, rate: &str) -> Result<Rate, CorridorError> {
        let c = self
            .corridors
            .iter()
            .find(|c| c.config.id == corridor)
            .ok_or_else(|| CorridorError::UnknownCorridor(corridor.to_owned()))?;
        if matches!(c.source, RateSource::Fixed(_)) {
            return Err(CorridorError::FixedRate(corridor.to_owned()));
        }
        let sd = self.assets[&c.config.source_asset].decimals;
        let dd = self.assets[&c.config.dest_asset].decimals;
        Rate::from_decimal(rate, sd, dd).map_err(|error| CorridorError::Rate {
            corridor: corridor.to_owned(),
            error,
        })
    }

    /// Pauses or resumes a corridor (operator mutation or a passed proposal).
    pub fn set_paused(&mut self, corridor: &str, paused: bool) -> bool {
        match self.corridors.iter_mut().find(|c| c.config.id == corridor) {
            Some(c) => {
                c.config.paused = paused;
                true
            }
            None => false,
        }
    }

    /// This router as if no corridor were paused: tells whether a pause is all that stands in a
    /// transfer's way (it then waits for the corridor instead of being refused).
    pub fn without_pauses(&self) -> Router {
        let mut open = self.clone();
        for c in &mut open.corridors {
            c.config.paused = false;
        }
        open
    }

    /// Sets a corridor's fee (a passed proposal); `false` for an unknown corridor.
    pub fn set_fee(&mut self, corridor: &str, fee_bps: u32) -> bool {
        match self.corridors.iter_mut().find(|c| c.config.id == corridor) {
            Some(c) if fee_bps <= 10_000 => {
                c.config.fee_bps = fee_bps;
                true
            }
            _ => false,
        }
    }

    /// Sets a corridor's rolling 24 h cap (a passed proposal); `false` for an unknown corridor.
    pub fn set_daily_cap(&mut self, corridor: &str, daily_cap: u128) -> bool {
        match self.corridors.iter_mut().find(|c| c.config.id == corridor) {
            Some(c) => {
                c.config.daily_cap = meridian_types::config::Amount(daily_cap);
                true
            }
            None => false,
        }
    }

    /// Lists an asset (a passed proposal); an asset listed already is replaced.
    pub fn list_asset(&mut self, asset: AssetConfig) {
        self.assets.insert(asset.id.clone(), asset);
    }

    /// A corridor's configuration as the router sees it now.
    pub fn corridor(&self, id: &str) -> Option<&CorridorConfig> {
        self.corridors
            .iter()
            .find(|c| c.config.id == id)
            .map(|c| &c.config)
    }

    /// Every corridor, in configuration order.
    pub fn corridors(&self) -> impl Iterator<Item = &CorridorConfig> {
        self.corridors.iter().map(|c| &c.config)
    }

    /// A corridor's rate at `now`, or why it has none (unfed or stale).
    pub fn corridor_rate(&self, id: &str, now: UnixTime) -> Option<Result<Rate, String>> {
        let c = self.corridors.iter().find(|c| c.config.id == id)?;
        Some(self.rate(c, now))
    }

    /// Prices `amount` over one corridor alone (the corridor list shows its live cost).
    pub fn quote_corridor(
        &self,
        id: &str,
        amount: u128,
        capacity: &dyn CorridorCapacity,
        now: UnixTime,
    ) -> Option<Result<Quote, RouteError>> {
        let c = self.corridors.iter().find(|c| c.config.id == id)?;
        let single = Router {
            assets: self.assets.clone(),
            corridors: vec![c.clone()],
            fed: self.fed.clone(),
            limits: RouteLimits {
                max_hops: 1,
                ..self.limits
            },
        };
        Some(single.quote(
            &c.config.source_asset,
            &c.config.dest_asset,
            amount,
            capacity,
            now,
        ))
    }

    /// The rate a corridor applies at `now`, or why it has none.
    fn rate(&self, c: &Corridor, now: UnixTime) -> Result<Rate, String> {
        match c.source {
            RateSource::Fixed(r) => Ok(r),
            RateSource::Fed { max_age } => match self.fed.get(&c.config.id) {
                None => Err("no rate has been fed".into()),
                Some(&(_, at)) if now.saturating_sub(at) > max_age => Err(format!(
                    "rate is {}s old, older than {max_age}s",
                    now.saturating_sub(at)
                )),
                Some(&(r, _)) => Ok(r),
            },
        }
    }

    /// Prices one corridor for `amount`, or says why it cannot carry it.
    fn price(
        &self,
        c: &Corridor,
        amount: u128,
        capacity: &dyn CorridorCapacity,
        now: UnixTime,
    ) -> Result<Hop, String> {
        let cfg = &c.config;
        let refuse = |why: String| Err(format!("{}: {why}", cfg.id));
        if cfg.paused {
            return refuse("paused".into());
        }
        if amount < cfg.min_amount.0 {
            return refuse(format!(
                "{amount} is below the minimum {}",
                cfg.min_amount.0
            ));
        }
        if amount > cfg.max_amount.0 {
            return refuse(format!(
                "{amount} is above the maximum {}",
                cfg.max_amount.0
            ));
        }
        let left = capacity.remaining(&cfg.id, cfg.daily_cap.0, now);
        if amount > left {
            return refuse(format!(
                "{amount} exceeds what the 24 h cap leaves ({left})"
            ));
        }
        let rate = match self.rate(c, now) {
            Ok(r) => r,
            Err(why) => return refuse(why),
        };
        let fee = mul_div(amount, u128::from(cfg.fee_bps), BPS)
            .and_then(|f| f.checked_add(cfg.fixed_fee.0))
            .unwrap_or(u128::MAX);
        if fee >= amount {
            return refuse(format!("fees ({fee}) take the whole amount"));
        }
        let out = match rate.convert(amount - fee) {
            Some(0) => return refuse("delivers nothing after fees".into()),
            Some(out) => out,
            None => return refuse("amount too large to convert".into()),
        };
        Ok(Hop {
            corridor: cfg.id.clone(),
            source_asset: cfg.source_asset.clone(),
            dest_asset: cfg.dest_asset.clone(),
            amount_in: amount,
            fee,
            rate,
            amount_out: out,
        })
    }

    /// The cheapest route delivering `to` for `amount` of `from` at `now`.
    pub fn quote(
        &self,
        from: &AssetId,
        to: &AssetId,
        amount: u128,
        capacity: &dyn CorridorCapacity,
        now: UnixTime,
    ) -> Result<Quote, RouteError> {
        for a in [from, to] {
            if !self.assets.contains_key(a) {
                return Err(RouteError::UnknownAsset(a.clone()));
            }
        }
        if amount == 0 {
            return Err(RouteError::ZeroAmount);
        }
        let mut best: Option<Vec<Hop>> = None;
        let mut reasons = Vec::new();
        let mut path = Vec::new();
        let mut visited = vec![from.clone()];
        self.search(
            from,
            to,
            amount,
            capacity,
            now,
            &mut path,
            &mut visited,
            &mut best,
            &mut reasons,
        );
        let Some(hops) = best else {
            if reasons.is_empty() {
                reasons.push("no corridor leads there".into());
            }
            reasons.sort();
            reasons.dedup();
            return Err(RouteError::NoRoute {
                from: from.clone(),
                to: to.clone(),
                reasons,
            });
        };
        let amount_out = hops.last().map_or(0, |h| h.amount_out);
        // What the hops' rates alone would deliver, to express the fees as a cost.
        let ideal = hops
            .iter()
            .try_fold(amount, |acc, h| h.rate.convert(acc))
            .unwrap_or(amount_out)
            .max(amount_out);
        let cost_bps = if ideal == 0 {
            0
        } else {
            mul_div(ideal - amount_out, BPS, ideal).unwrap_or(BPS) as u32
        };
        Ok(Quote {
            source_asset: from.clone(),
            dest_asset: to.clone(),
            amount_in: amount,
            amount_out,
            effective_rate: Rate(
                mul_div(amount_out, crate::fixed::RATE_SCALE, amount).unwrap_or(0),
            ),
            cost_bps,
            above_cost_line: cost_bps > self.limits.cost_line_bps,
            quoted_at: now,
            expires_at: now.saturating_add(self.limits.quote_ttl_secs),
            hops,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        at: &AssetId,
        to: &AssetId,
        amount: u128,
        capacity: &dyn CorridorCapacity,
        now: UnixTime,
        path: &mut Vec<Hop>,
        visited: &mut Vec<AssetId>,
        best: &mut Option<Vec<Hop>>,
        reasons: &mut Vec<String>,
    ) {
        if path.len() >= self.limits.max_hops {
            return;
        }
        for c in self
            .corridors
            .iter()
            .filter(|c| &c.config.source_asset == at)
        {
            let next = &c.config.dest_asset;
            if visited.contains(next) {
                continue;
            }
            let hop = match self.price(c, amount, capacity, now) {
                Ok(h) => h,
                Err(why) => {
                    reasons.push(why);
                    continue;
                }
            };
            let out = hop.amount_out;
            path.push(hop);
            if next == to {
                if better(path, best.as_deref()) {
                    *best = Some(path.clone());
                }
            } else {
                visited.push(next.clone());
                self.search(next, to, out, capacity, now, path, visited, best, reasons);
                visited.pop();
            }
            path.pop();
        }
    }
}

/// More delivered wins; then fewer hops; then the corridor ids in order (deterministic).
fn better(candidate: &[Hop], best: Option<&[Hop]>) -> bool {
    let Some(best) = best else { return true };
    let key = |p: &[Hop]| {
        (
            std::cmp::Reverse(p.last().map_or(0, |h| h.amount_out)),
            p.len(),
            p.iter().map(|h| h.corridor.clone()).collect::<Vec<_>>(),
        )
    };
    key(candidate) < key(best)
}
