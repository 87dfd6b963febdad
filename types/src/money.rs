//! Exact money arithmetic: rates as 18-decimal fixed point, products through 256 bits.
//!
//! No floating point touches money or rates (DESIGN.md). A rate says how many base units of
//! the destination asset one base unit of the source asset buys, scaled by 10^18, so asset
//! decimals are part of the rate and conversion is one multiply-divide, rounded down (in the
//! relay's favour, never the user's disfavour beyond one base unit).

use std::fmt;

/// 10^18: the scale of [`Rate`].
pub const RATE_SCALE: u128 = 1_000_000_000_000_000_000;

/// Destination base units per source base unit, times 10^18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(pub u128);

/// Why a decimal rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Not a plain non-negative decimal (`0.92`, `1`, `1550.25`).
    #[error("`{0}` is not a decimal number such as 0.92")]
    Syntax(String),
    /// More than 18 decimals after scaling, or too large.
    #[error("`{0}` cannot be represented exactly with 18 decimals")]
    Precision(String),
    /// Zero buys nothing.
    #[error("a rate must be greater than zero")]
    Zero,
}

impl Rate {
    /// The identity rate between two assets with the same decimals.
    pub const ONE: Rate = Rate(RATE_SCALE);

    /// A rate from a human decimal (`0.92` destination units per source unit), adjusted for the
    /// assets' decimals.
    pub fn from_decimal(
        s: &str,
        source_decimals: u8,
        dest_decimals: u8,
    ) -> Result<Rate, RateError> {
        let syntax = || RateError::Syntax(s.to_owned());
        let precision = || RateError::Precision(s.to_owned());
        let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
        {
            return Err(syntax());
        }
        // value = digits / 10^frac_len; rate = value · 10^(dest − source) · 10^18.
        let digits: u128 = format!("{int}{frac}")
            .trim_start_matches('0')
            .parse()
            .or_else(|e: std::num::ParseIntError| match e.kind() {
                std::num::IntErrorKind::Empty => Ok(0),
                _ => Err(precision()),
            })?;
        let exp = 18i32 + i32::from(dest_decimals) - i32::from(source_decimals) - frac.len() as i32;
        let scaled = if exp >= 0 {
            10u128
                .checked_pow(exp as u32)
                .and_then(|p| digits.checked_mul(p))
                .ok_or_else(precision)?
        } else {
            let p = 10u128.checked_pow((-exp) as u32).ok_or_else(precision)?;
            if digits % p != 0 {
                return Err(precision());
            }
            digits / p
        };
        if scaled == 0 {
            return Err(RateError::Zero);
        }
        Ok(Rate(scaled))
    }

    /// `amount` source units converted, rounded down; `None` on overflow.
    pub fn convert(self, amount: u128) -> Option<u128> {
        mul_div(amount, self.0, RATE_SCALE)
    }

    /// The rate of two conversions in a row, rounded down; `None` on overflow.
    pub fn then(self, next: Rate) -> Option<Rate> {
        mul_div(self.0, next.0, RATE_SCALE).map(Rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / RATE_SCALE;
        let frac = self.0 % RATE_SCALE;
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{int}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// 256-bit product of two u128, as (high, low).
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Middle column: carries cannot overflow u128 (each term < 2^128 and we add 64-bit halves).
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let low = (p00 & MASK) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (high, low)
}

/// `a · b / c`, rounded down, exact through 256 bits; `None` when `c` is zero or the quotient
/// does not fit in u128.
pub fn mul_div(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    let (high, low) = mul_wide(a, b);
    if high == 0 {
        return Some(low / c);
    }
    if high >= c {
        return None;
    }
    // Long division of (high, low) by c, one bit at a time: 128 steps, only on the rare path
    // where the product exceeds 128 bits.
    let mut rem = high;
    let mut quot = 0u128;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((low >> i) & 1);
        quot <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            quot |= 1;
        }
    }
    Some(quot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_rates_include_the_assets_decimals() {
        // 1 USDM (6 decimals) buys 0.92 DEUR (6 decimals): 0.92 · 10^18 per base unit.
        assert_eq!(
            Rate::from_decimal("0.92", 6, 6).unwrap(),
            Rate(920_000_000_000_000_000)
        );
        // 1 USDM (6) buys 1 token of 18 decimals: 10^12 base units each.
        assert_eq!(
            Rate::from_decimal("1", 6, 18).unwrap(),
            Rate(1_000_000_000_000 * RATE_SCALE)
        );
        // The other way: 10^-12 per base unit, still exact.
        assert_eq!(Rate::from_decimal("1", 18, 6).unwrap(), Rate(1_000_000));
        assert_eq!(
            Rate::from_decimal("1550.25", 6, 6).unwrap().to_string(),
            "1550.25"
        );
        assert_eq!(Rate::from_decimal("0", 6, 6), Err(RateError::Zero));
        assert!(matches!(
            Rate::from_decimal("1e3", 6, 6),
            Err(RateError::Syntax(_))
        ));
        assert!(matches!(
            Rate::from_decimal("-1", 6, 6),
            Err(RateError::Syntax(_))
        ));
        assert!(matches!(
            Rate::from_decimal(".", 6, 6),
            Err(RateError::Syntax(_))
        ));
        // 10^-30 per base unit cannot be written with 18 decimals.
        assert!(matches!(
            Rate::from_decimal("0.000001", 30, 6),
            Err(RateError::Precision(_))
        ));
    }

    #[test]
    fn conversion_rounds_down_and_refuses_overflow() {
        let r = Rate::from_decimal("0.92", 6, 6).unwrap();
        assert_eq!(r.convert(1_000_000), Some(920_000));
        assert_eq!(r.convert(1), Some(0));
        assert_eq!(Rate(u128::MAX).convert(u128::MAX), None);
        assert_eq!(mul_div(1, 1, 0), None);
    }

    proptest! {
        #[test]
        fn mul_div_matches_a_wide_reference(a: u128, b: u128, c in 1u128..) {
            // Reference: split b and recombine with checked arithmetic where it fits.
            let got = mul_div(a, b, c);
            match a.checked_mul(b) {
                Some(p) => prop_assert_eq!(got, Some(p / c)),
                None => {
                    // (a·b)/c fits iff high < c; check q·c ≤ a·b < (q+1)·c in 256 bits.
                    if let Some(q) = got {
                        let (qh, ql) = mul_wide(q, c);
                        let (ph, pl) = mul_wide(a, b);
                        prop_assert!((qh, ql) <= (ph, pl));
                        let (sum_l, carry) = ql.overflowing_add(c);
                        let sum_h = qh + u128::from(carry);
                        prop_assert!((sum_h, sum_l) > (ph, pl));
                    } else {
                        prop_assert!(mul_wide(a, b).0 >= c);
                    }
                }
            }
        }
    }
}
