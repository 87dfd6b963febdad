//! Compliance screening: a sanctions denylist reloaded from its file without a restart, rolling
//! 24-hour caps per account and per corridor, holds for large transfers and the travel rule.
//! Every decision carries its reason, so it can be stored and shown to an operator.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::route::{CorridorCapacity, UnixTime};

/// Length of the rolling cap window.
pub const DAY_SECS: u64 = 24 * 60 * 60;

/// Why the denylist could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DenylistError {
    /// The file could not be read.
    #[error("cannot read denylist {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is neither an address nor a CAIP-10 account id.
    #[error("denylist {path}, line {line}: `{text}` is not an address or CAIP-10 account id")]
    Entry {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// Normalises an account for comparison: EVM addresses (bare or in a CAIP-10 `eip155:` id)
/// are lower-cased, since their hex case carries only a checksum.
fn normalise(account: &str) -> String {
    let account = account.trim();
    let is_hex_address = |a: &str| {
        a.len() == 42 && a.starts_with("0x") && a[2..].chars().all(|c| c.is_ascii_hexdigit())
    };
    match account.rsplit_once(':') {
        Some((chain, address)) if chain.starts_with("eip155:") || is_hex_address(address) => {
            format!("{chain}:{}", address.to_ascii_lowercase())
        }
        Some(_) => account.to_owned(),
        None if is_hex_address(account) => account.to_ascii_lowercase(),
        None => account.to_owned(),
    }
}

/// The address part of a CAIP-10 id (or the whole string when it has none).
fn address_of(account: &str) -> &str {
    account.rsplit_once(':').map_or(account, |(_, a)| a)
}

/// Sanctioned accounts. A line holds a CAIP-10 id (that account on that chain) or a bare
/// address (that address on every chain); `#` starts a comment.
#[derive(Debug, Default)]
pub struct Denylist {
    accounts: HashSet<String>,
    addresses: HashSet<String>,
    source: Option<(PathBuf, Option<SystemTime>)>,
}

impl Denylist {
    /// A list from text (for tests and in-memory use).
    pub fn parse(text: &str, path: &Path) -> Result<Denylist, DenylistError> {
        let mut list = Denylist::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let valid_token = |s: &str| {
                !s.is_empty()
                    && s.len() <= 128
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.%".contains(c))
            };
            let entry = normalise(line);
            match entry.rsplit_once(':') {
                Some((chain, address))
                    if chain.split(':').count() == 2
                        && chain.split(':').all(valid_token)
                        && valid_token(address) =>
                {
                    list.accounts.insert(entry);
                }
                None if valid_token(&entry) => {
                    list.addresses.insert(entry);
                }
                _ => {
                    return Err(DenylistError::Entry {
                        path: path.to_owned(),
                        line: i + 1,
                        text: line.to_owned(),
                    })
                }
            }
        }
        Ok(list)
    }

    /// Reads the list from `path`; [`Denylist::reload_if_changed`] re-reads it when it changes.
    pub fn load(path: &Path) -> Result<Denylist, DenylistError> {
        let io = |source| DenylistError::Io {
            path: path.to_owned(),
            source,
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut list = Denylist::parse(&text, path)?;
        list.source = Some((path.to_owned(), modified));
        Ok(list)
    }

    /// Re-reads the file when its modification time changed. On a bad file the current list
    /// stays in force (a typo must not lift every sanction) and the error is returned to log.
    pub fn reload_if_changed(&mut self) -> Result<bool, DenylistError> {
        let Some((path, seen)) = self.source.clone() else {
            return Ok(false);
        };
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified == seen {
            return Ok(false);
        }
        let fresh = Denylist::load(&path)?;
        *self = fresh;
        tracing::info!(path = %path.display(), entries = self.len(), "denylist reloaded");
        Ok(true)
    }

    /// Entries in force.
    pub fn len(&self) -> usize {
        self.accounts.len() + self.addresses.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `account` (CAIP-10 or bare address) is sanctioned.
    pub fn contains(&self, account: &str) -> bool {
        let n = normalise(account);
        self.accounts.contains(&n) || self.addresses.contains(address_of(&n))
    }
}

/// Sanctions decided by governance, on top of the file: kept apart so re-reading the file
/// never drops them, and a lifted entry overrides the file.
#[derive(Debug, Default, Clone)]
pub struct GovernedSanctions {
    listed: HashSet<String>,
    lifted: HashSet<String>,
}

impl GovernedSanctions {
    /// Lists (`true`) or lifts (`false`) a sanction on `account`.
    pub fn set(&mut self, account: &str, listed: bool) {
        let n = normalise(account);
        if listed {
            self.lifted.remove(&n);
            self.listed.insert(n);
        } else {
            self.listed.remove(&n);
            self.lifted.insert(n);
        }
    }

    /// `Some(true)` listed, `Some(false)` lifted, `None` no decision.
    fn decision(&self, account: &str) -> Option<bool> {
        let n = normalise(account);
        let bare = address_of(&n).to_owned();
        if self.listed.contains(&n) || self.listed.contains(&bare) {
            Some(true)
        } else if self.lifted.contains(&n) || self.lifted.contains(&bare) {
            Some(false)
        } else {
            None
        }
    }
}

/// Width of one usage bucket of [`RollingCaps`].
pub const CAP_BUCKET_SECS: u64 = 60;
/// Buckets one key can hold at most: a day's worth, plus the one being filled.
const CAP_BUCKETS_PER_KEY_MAX: usize = (DAY_SECS / CAP_BUCKET_SECS) as usize + 1;

/// One minute of a key's usage: its total, and when the newest use in it happened.
#[derive(Debug, Clone, Copy)]
struct CapBucket {
    /// `at / CAP_BUCKET_SECS` of the uses summed here.
    index: u64,
    /// The newest use's time: the bucket leaves the window 24 h after it.
    newest: UnixTime,
    amount: u128,
}

/// One key's usage over the window, oldest bucket first, with their running sum.
#[derive(Debug, Default, Clone)]
struct KeyUsage {
    buckets: VecDeque<CapBucket>,
    total: u128,
}

impl KeyUsage {
    fn expired(b: &CapBucket, now: UnixTime) -> bool {
        now.saturating_sub(b.newest) >= DAY_SECS
    }

    fn used(&self, now: UnixTime) -> u128 {
        let mut used = self.total;
        for b in self.buckets.iter().take_while(|b| Self::expired(b, now)) {
            used = used.saturating_sub(b.amount);
        }
        used
    }

    fn evict(&mut self, now: UnixTime) {
        while let Some(b) = self.buckets.front().copied() {
            if !Self::expired(&b, now) {
                break;
            }
            self.total = self.total.saturating_sub(b.amount);
            self.buckets.pop_front();
        }
    }
}

/// Amounts moved per key (an account or a corridor) over a rolling 24 hours, kept in one-minute
/// buckets with a running sum: a check or a record costs the same whatever the traffic, and a
/// key holds at most a day of buckets. Amounts are exact; at the window's edge a bucket leaves
/// 24 h after its newest use, so a check may count uses up to one minute older than 24 h —
/// never fewer than a day's.
#[derive(Debug, Default, Clone)]
pub struct RollingCaps {
    usage: HashMap<String, KeyUsage>,
    /// Records since keys whose usage has all left the window were last dropped.
    records_since_sweep: usize,
}

impl RollingCaps {
    /// What `key` moved in the 24 hours before `now`.
    pub fn used(&self, key: &str, now: UnixTime) -> u128 {
        self.usage.get(key).map_or(0, |u| u.used(now))
    }

    /// Records `amount` moved by `key` at `at`, dropping what has left the window.
    pub fn record(&mut self, key: &str, amount: u128, at: UnixTime) {
        let index = at / CAP_BUCKET_SECS;
        let u = match self.usage.get_mut(key) {
            Some(u) => u,
            None => self.usage.entry(key.to_owned()).or_default(),
        };
        u.evict(at);
        match u.buckets.back_mut() {
            // Records arrive in time order but a restored history may not: a use older than the
            // newest bucket joins it (counted, conservatively, until that bucket leaves).
            Some(b) if b.index >= index => {
                b.amount = b.amount.saturating_add(amount);
                b.newest = b.newest.max(at);
            }
            _ => {
                if u.buckets.len() >= CAP_BUCKETS_PER_KEY_MAX {
                    // Cannot happen after `evict` with in-order times; merge rather than grow.
                    if let Some(b) = u.buckets.back_mut() {
                        b.amount = b.amount.saturating_add(amount);
                        b.newest = b.newest.max(at);
                    }
                } else {
                    u.buckets.push_back(CapBucket {
                        index,
                        newest: at,
                        amount,
                    });
                }
            }
        }
        u.total = u.total.saturating_add(amount);
        self.records_since_sweep += 1;
        // Amortised O(1): a sweep over every key after as many records as there are keys.
        if self.records_since_sweep >= self.usage.len().max(1024) {
            self.records_since_sweep = 0;
            self.usage.retain(|_, u| {
                u.evict(at);
                !u.buckets.is_empty()
            });
        }
    }

    /// Keys holding usage in memory (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.usage.len()
    }
}

impl CorridorCapacity for RollingCaps {
    fn remaining(&self, corridor: &str, daily_cap: u128, now: UnixTime) -> u128 {
        daily_cap.saturating_sub(self.used(&corridor_key(corridor), now))
    }
}

fn corridor_key(corridor: &str) -> String {
    format!("corridor:{corridor}")
}

fn account_key(account: &str) -> String {
    format!("account:{}", normalise(account))
}

/// Screening thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompliancePolicy {
    /// Most one sending account may move in 24 hours (reference base units), if limited.
    pub account_daily_cap: Option<u128>,
    /// Above this value (reference base units) originator and beneficiary data are required.
    pub travel_rule_threshold: Option<u128>,
    /// What each asset is worth in the reference unit the limits are stated in.
    pub reference: ReferenceRates,
}

impl CompliancePolicy {
    /// Whether any limit compares values.
    fn limited(&self) -> bool {
        self.account_daily_cap.is_some() || self.travel_rule_threshold.is_some()
    }
}

/// Each asset's value in the reference unit, as a rate from its base units to the reference
/// unit's base units: a 6-decimal and an 18-decimal token worth a dollar each count the same.
/// A rate is fixed (a pegged asset; never stale) or fed, and then stale once it is older than
/// its asset's maximum age.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceRates {
    decimals: u8,
    rates: HashMap<String, ReferenceRate>,
}

/// Where an asset's reference rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReferenceRate {
    /// Fixed in the configuration; never stale.
    Fixed(crate::Rate),
    /// Fed; stale `max_age_secs` after it was observed.
    Fed {
        max_age_secs: u64,
        last: Option<(crate::Rate, UnixTime)>,
    },
}

/// Why an asset has no usable value in the reference unit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unvalued {
    /// No rate: none configured, or a fed rate never fed.
    NoRate,
    /// The fed rate is older than its maximum age.
    Stale {
        /// Seconds since it was observed.
        age_secs: u64,
        /// The most it may be.
        max_age_secs: u64,
    },
}

/// Why a fed reference rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceRateError {
    /// The asset has a fixed rate (or none is expected): a feed would silently replace what the
    /// configuration fixed.
    #[error("asset {0} has no fed reference rate (its rate is fixed, or it states none)")]
    NotFed(String),
}

impl ReferenceRates {
    /// No rates yet, for a reference unit of `decimals` decimals.
    pub fn new(decimals: u8) -> ReferenceRates {
        ReferenceRates {
            decimals,
            rates: HashMap::new(),
        }
    }

    /// Decimals of the reference unit's base unit.
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// Fixes `asset`'s rate (reference base units per base unit of the asset).
    pub fn set(&mut self, asset: &meridian_types::AssetId, rate: crate::Rate) {
        self.rates
            .insert(asset.to_string(), ReferenceRate::Fixed(rate));
    }

    /// `asset`'s rate is fed, and stale `max_age_secs` after it was observed; unfed until
    /// [`ReferenceRates::feed`] (a rate already fed is kept, with its time).
    pub fn expect_fed(&mut self, asset: &meridian_types::AssetId, max_age_secs: u64) {
        let last = match self.rates.get(asset.as_str()) {
            Some(ReferenceRate::Fed { last, .. }) => *last,
            _ => None,
        };
        self.rates
            .insert(asset.to_string(), ReferenceRate::Fed { max_age_secs, last });
    }

    /// Whether `asset`'s rate is fed.
    pub fn is_fed(&self, asset: &meridian_types::AssetId) -> bool {
        matches!(
            self.rates.get(asset.as_str()),
            Some(ReferenceRate::Fed { .. })
        )
    }

    /// Records `asset`'s fed rate observed at `at`. An observation older than the one held is
    /// ignored (feeds applied out of order never move the rate back in time).
    pub fn feed(
        &mut self,
        asset: &meridian_types::AssetId,
        rate: crate::Rate,
        at: UnixTime,
    ) -> Result<(), ReferenceRateError> {
        match self.rates.get_mut(asset.as_str()) {
            Some(ReferenceRate::Fed { last, .. }) => {
                if last.is_none_or(|(_, seen)| seen <= at) {
                    *last = Some((rate, at));
                }
                Ok(())
            }
            _ => Err(ReferenceRateError::NotFed(asset.to_string())),
        }
    }

    /// `amount` base units of `asset` in reference base units at `now`, rounded down, or why it
    /// has no value now. A value too large for 128 bits counts as the largest.
    pub fn value_at(
        &self,
        asset: &meridian_types::AssetId,
        amount: u128,
        now: UnixTime,
    ) -> Result<u128, Unvalued> {
        let rate = match self.rates.get(asset.as_str()) {
            None | Some(ReferenceRate::Fed { last: None, .. }) => return Err(Unvalued::NoRate),
            Some(ReferenceRate::Fixed(rate)) => *rate,
            Some(ReferenceRate::Fed {
                max_age_secs,
                last: Some((rate, at)),
            }) => {
                let age_secs = now.saturating_sub(*at);
                if age_secs > *max_age_secs {
                    return Err(Unvalued::Stale {
                        age_secs,
                        max_age_secs: *max_age_secs,
                    });
                }
                *rate
            }
        };
        Ok(rate.convert(amount).unwrap_or(u128::MAX))
    }

    /// `amount` base units of `asset` in reference base units with the latest rate, however
    /// old (usage already accepted is counted with the best value there is); `None` without
    /// any rate.
    pub fn latest_value(&self, asset: &meridian_types::AssetId, amount: u128) -> Option<u128> {
        let rate = match self.rates.get(asset.as_str())? {
            ReferenceRate::Fixed(rate) => *rate,
            ReferenceRate::Fed { last, .. } => last.as_ref()?.0,
        };
        Some(rate.convert(amount).unwrap_or(u128::MAX))
    }

    /// What `asset`'s reference rate is at `now`.
    pub fn status(&self, asset: &meridian_types::AssetId, now: UnixTime) -> ReferenceStatus {
        match self.rates.get(asset.as_str()) {
            None => ReferenceStatus::None,
            Some(ReferenceRate::Fixed(_)) => ReferenceStatus::Fixed,
            Some(ReferenceRate::Fed { last: None, .. }) => ReferenceStatus::Unfed,
            Some(ReferenceRate::Fed {
                max_age_secs,
                last: Some((_, at)),
            }) if now.saturating_sub(*at) > *max_age_secs => ReferenceStatus::Stale { fed_at: *at },
            Some(ReferenceRate::Fed {
                last: Some((_, at)),
                ..
            }) => ReferenceStatus::Fresh { fed_at: *at },
        }
    }
}

/// What an asset's reference rate is at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceStatus {
    /// The asset states none.
    None,
    /// Fixed in the configuration.
    Fixed,
    /// Fed, but not yet.
    Unfed,
    /// Fed at `fed_at`, young enough.
    Fresh {
        /// When it was observed.
        fed_at: UnixTime,
    },
    /// Fed at `fed_at`, too old to value a transfer.
    Stale {
        /// When it was observed.
        fed_at: UnixTime,
    },
}

impl ReferenceStatus {
    /// `none`, `fixed`, `unfed`, `fresh` or `stale`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReferenceStatus::None => "none",
            ReferenceStatus::Fixed => "fixed",
            ReferenceStatus::Unfed => "unfed",
            ReferenceStatus::Fresh { .. } => "fresh",
            ReferenceStatus::Stale { .. } => "stale",
        }
    }

    /// When a fed rate was observed.
    pub fn fed_at(&self) -> Option<UnixTime> {
        match self {
            ReferenceStatus::Fresh { fed_at } | ReferenceStatus::Stale { fed_at } => Some(*fed_at),
            _ => None,
        }
    }
}

/// What screening decided, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on to settlement.
    Accept,
    /// Wait for the hold period or an operator.
    Hold(ScreeningReason),
    /// Refused (refund the sender).
    Reject(ScreeningReason),
}

/// Why screening held or refused a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreeningReason {
    /// The sender is on the denylist.
    SanctionedSender(String),
    /// The recipient is on the denylist.
    SanctionedRecipient(String),
    /// The sender's rolling 24 h cap would be exceeded.
    AccountCapExceeded {
        /// Already moved in the window.
        used: u128,
        /// The cap.
        cap: u128,
    },
    /// Above the travel-rule threshold without originator and beneficiary data.
    TravelRuleDataMissing {
        /// The threshold.
        threshold: u128,
    },
    /// A limit applies, but the asset has no value in the reference unit: never compared in raw
    /// base units, held for an operator.
    NoReferenceRate {
        /// The asset.
        asset: String,
    },
    /// A limit applies, but the asset's fed reference rate is too old to value it: held until
    /// a fresh rate is fed and an operator releases it (release screens again).
    StaleReferenceRate {
        /// The asset.
        asset: String,
        /// Seconds since the rate was observed.
        age_secs: u64,
        /// The most it may be.
        max_age_secs: u64,
    },
    /// Above a corridor's hold threshold.
    LargeTransfer {
        /// The corridor.
        corridor: String,
        /// Its threshold.
        threshold: u128,
    },
}

impl fmt::Display for ScreeningReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScreeningReason::SanctionedSender(a) => write!(f, "sender {a} is sanctioned"),
            ScreeningReason::SanctionedRecipient(a) => write!(f, "recipient {a} is sanctioned"),
            ScreeningReason::AccountCapExceeded { used, cap } => {
                write!(f, "sender's 24 h cap {cap} would be exceeded (used {used})")
            }
            ScreeningReason::TravelRuleDataMissing { threshold } => write!(
                f,
                "originator and beneficiary data are required above {threshold}"
            ),
            ScreeningReason::NoReferenceRate { asset } => write!(
                f,
                "asset {asset} has no reference rate, so its value cannot be checked against the limits"
            ),
            ScreeningReason::StaleReferenceRate {
                asset,
                age_secs,
                max_age_secs,
            } => write!(
                f,
                "asset {asset}'s reference rate is {age_secs}s old (at most {max_age_secs}s), so its value cannot be checked against the limits"
            ),
            ScreeningReason::LargeTransfer {
                corridor,
                threshold,
            } => write!(
                f,
                "above the hold threshold {threshold} of corridor {corridor}"
            ),
        }
    }
}

/// What screening looks at.
#[derive(Debug, Clone, Copy)]
pub struct ScreeningInput<'a> {
    /// Sender (CAIP-10).
    pub sender: &'a str,
    /// Recipient (CAIP-10).
    pub recipient: &'a str,
    /// The asset sent.
    pub asset: &'a meridian_types::AssetId,
    /// Amount in source base units.
    pub amount: u128,
    /// Whether originator and beneficiary data were supplied.
    pub travel_rule_data: bool,
    /// Hold thresholds of the route's corridors: (corridor id, threshold in its source units,
    /// amount entering that corridor).
    pub holds: &'a [(&'a str, Option<u128>, u128)],
    /// When.
    pub now: UnixTime,
}

/// Screens transfers and keeps the rolling usage they add.
#[derive(Debug, Default)]
pub struct Screening {
    /// The sanctions list in force.
    pub denylist: Denylist,
    /// Sanctions listed or lifted by governance.
    pub governed: GovernedSanctions,
    /// Rolling usage per account and per corridor.
    pub caps: RollingCaps,
    /// Thresholds.
    pub policy: CompliancePolicy,
}

impl Screening {
    /// Whether `account` is sanctioned: governance's decision first, then the file.
    pub fn sanctioned(&self, account: &str) -> bool {
        self.governed
            .decision(account)
            .unwrap_or_else(|| self.denylist.contains(account))
    }

    /// The decision for a transfer; refusals come before holds (a sanctioned party is refused,
    /// never merely held).
    pub fn screen(&self, t: &ScreeningInput<'_>) -> Decision {
        if self.sanctioned(t.sender) {
            return Decision::Reject(ScreeningReason::SanctionedSender(t.sender.to_owned()));
        }
        if self.sanctioned(t.recipient) {
            return Decision::Reject(ScreeningReason::SanctionedRecipient(t.recipient.to_owned()));
        }
        if self.policy.limited() {
            let value = match self.policy.reference.value_at(t.asset, t.amount, t.now) {
                Ok(value) => value,
                Err(Unvalued::NoRate) => {
                    return Decision::Hold(ScreeningReason::NoReferenceRate {
                        asset: t.asset.to_string(),
                    })
                }
                Err(Unvalued::Stale {
                    age_secs,
                    max_age_secs,
                }) => {
                    return Decision::Hold(ScreeningReason::StaleReferenceRate {
                        asset: t.asset.to_string(),
                        age_secs,
                        max_age_secs,
                    })
                }
            };
            if let Some(cap) = self.policy.account_daily_cap {
                let used = self.caps.used(&account_key(t.sender), t.now);
                if used.saturating_add(value) > cap {
                    return Decision::Reject(ScreeningReason::AccountCapExceeded { used, cap });
                }
            }
            if let Some(threshold) = self.policy.travel_rule_threshold {
                if value > threshold && !t.travel_rule_data {
                    return Decision::Hold(ScreeningReason::TravelRuleDataMissing { threshold });
                }
            }
        }
        for &(corridor, threshold, amount) in t.holds {
            if let Some(threshold) = threshold {
                if amount > threshold {
                    return Decision::Hold(ScreeningReason::LargeTransfer {
                        corridor: corridor.to_owned(),
                        threshold,
                    });
                }
            }
        }
        Decision::Accept
    }

    /// Counts an accepted (or released) transfer against the sender's cap (its value in the
    /// reference unit, so every asset a sender moves adds up in one unit) and the corridors'
    /// caps (their source base units).
    pub fn record(
        &mut self,
        sender: &str,
        asset: &meridian_types::AssetId,
        amount: u128,
        corridors: &[(&str, u128)],
        at: UnixTime,
    ) {
        if self.policy.account_daily_cap.is_some() {
            // Counted with the latest rate even when it is stale (screening held it while it
            // was; a use already accepted counts with the best value there is). An asset
            // without any rate was held, not compared; an operator who released it accepted
            // it, and it cannot be counted in the reference unit.
            if let Some(value) = self.policy.reference.latest_value(asset, amount) {
                self.caps.record(&account_key(sender), value, at);
            }
        }
        for &(c, a) in corridors {
            self.caps.record(&corridor_key(c), a, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_use_leaves_the_window_a_day_after_it() {
        let mut caps = RollingCaps::default();
        caps.record("k", 700, 1_000);
        caps.record("k", 300, 1_010);
        assert_eq!(caps.used("k", 1_000 + DAY_SECS - 1), 1_000);
        // Same minute: both leave with the newer one (conservative by under a minute).
        assert_eq!(caps.used("k", 1_000 + DAY_SECS), 1_000);
        assert_eq!(caps.used("k", 1_010 + DAY_SECS), 0);
        // The next minute is a bucket of its own and leaves on its own.
        caps.record("k", 5, 1_020);
        assert_eq!(caps.used("k", 1_010 + DAY_SECS), 5);
        assert_eq!(caps.used("other", 1_000), 0);
    }

    #[test]
    fn memory_stays_bounded_however_long_traffic_runs() {
        let mut caps = RollingCaps::default();
        // Three days of one use per second on one key, and a stream of one-off senders.
        for t in 0..3 * DAY_SECS {
            caps.record("corridor:a-b", 1, t);
            caps.record(&format!("account:{t}"), 1, t);
            let u = &caps.usage["corridor:a-b"];
            assert!(u.buckets.len() <= CAP_BUCKETS_PER_KEY_MAX);
        }
        let now = 3 * DAY_SECS - 1;
        assert_eq!(caps.used("corridor:a-b", now), u128::from(DAY_SECS));
        // The one-off senders of the first two days are gone (at most a day and a sweep stay).
        assert!(caps.keys() <= 2 * DAY_SECS as usize + 2, "{}", caps.keys());
    }

    proptest! {
        /// Against the exact rolling sum: never less, and never more than the uses of the
        /// minute before the window.
        #[test]
        fn buckets_count_at_least_the_exact_window(
            steps in proptest::collection::vec((0u64..400, 1u128..1_000), 1..200),
            probe in 0u64..200_000,
        ) {
            let mut caps = RollingCaps::default();
            let mut t = 0u64;
            let mut uses = Vec::new();
            for (dt, amount) in steps {
                t += dt * 10;
                caps.record("k", amount, t);
                uses.push((t, amount));
            }
            let now = t + probe;
            let exact: u128 = uses.iter().filter(|(at, _)| now - at < DAY_SECS).map(|(_, a)| a).sum();
            let slack: u128 = uses
                .iter()
                .filter(|(at, _)| now - at >= DAY_SECS && now - at < DAY_SECS + CAP_BUCKET_SECS)
                .map(|(_, a)| a)
                .sum();
            let used = caps.used("k", now);
            prop_assert!(used >= exact && used <= exact + slack, "used {used}, exact {exact}, slack {slack}");
        }
    }
}
