//! When a mirrored proposal's voting opens and closes, in wall-clock time. A Governor states
//! `voteStart` and `voteEnd` in its clock's timepoints (ERC-6372): block numbers by default,
//! seconds when its token counts time. A timepoint in seconds is exact; a block that exists is
//! exact (its own timestamp); a future block is estimated from the chain's recent block time and
//! shown as an estimate (issue 17).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Blocks looked back over to measure a chain's block time.
pub const BLOCK_TIME_SAMPLE_BLOCKS_MAX: u64 = 1_000;

/// How a Governor counts time (ERC-6372 `CLOCK_MODE()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    /// Timepoints are block numbers (`mode=blocknumber&from=default`, and every Governor
    /// older than ERC-6372).
    BlockNumber,
    /// Timepoints are unix seconds (`mode=timestamp`).
    Timestamp,
}

impl ClockMode {
    /// The mode a `CLOCK_MODE()` answer names; `None` for one this node does not know.
    pub fn parse(answer: &str) -> Option<ClockMode> {
        let mode = answer
            .split('&')
            .find_map(|kv| kv.strip_prefix("mode="))
            .unwrap_or_default();
        match mode {
            "blocknumber" => Some(ClockMode::BlockNumber),
            "timestamp" => Some(ClockMode::Timestamp),
            _ => None,
        }
    }

    /// Stable name, as GraphQL shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockMode::BlockNumber => "blocknumber",
            ClockMode::Timestamp => "timestamp",
        }
    }
}

/// What the node knows of a mirrored proposal's voting period, stored with its strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSchedule {
    /// The Governor's clock.
    pub clock: ClockMode,
    /// The opening time is the chain's own (not an estimate).
    pub start_exact: bool,
    /// The closing time is the chain's own (not an estimate).
    pub end_exact: bool,
}

/// A chain's head and how fast it makes blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockClock {
    /// The head block's number.
    pub head: u64,
    /// Its timestamp (unix seconds).
    pub head_time: u64,
    /// Average milliseconds per block over the recent sample.
    pub block_time_ms: u64,
}

impl BlockClock {
    /// Measures the block time between an earlier block and the head; `None` when the sample is
    /// empty or time ran backwards.
    pub fn measured(
        head: u64,
        head_time: u64,
        earlier: u64,
        earlier_time: u64,
    ) -> Option<BlockClock> {
        let blocks = head.checked_sub(earlier).filter(|b| *b > 0)?;
        let seconds = head_time.checked_sub(earlier_time)?;
        Some(BlockClock {
            head,
            head_time,
            block_time_ms: seconds.saturating_mul(1_000) / blocks,
        })
    }

    /// The estimated time of a future block `n` (past blocks are read, not estimated).
    pub fn estimate(&self, n: u64) -> Option<DateTime<Utc>> {
        let ahead = n.saturating_sub(self.head);
        let ms = ahead.checked_mul(self.block_time_ms)?;
        let at = self.head_time.checked_mul(1_000)?.checked_add(ms)?;
        DateTime::from_timestamp_millis(i64::try_from(at).ok()?)
    }
}

/// A timepoint in seconds as a time.
pub fn from_seconds(t: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(t).ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_modes_are_read_as_erc6372_writes_them() {
        assert_eq!(
            ClockMode::parse("mode=blocknumber&from=default"),
            Some(ClockMode::BlockNumber)
        );
        assert_eq!(
            ClockMode::parse("mode=timestamp"),
            Some(ClockMode::Timestamp)
        );
        assert_eq!(ClockMode::parse("mode=epoch"), None);
        assert_eq!(ClockMode::parse(""), None);
    }

    #[test]
    fn future_blocks_are_estimated_from_the_measured_block_time() {
        // 100 blocks in 1 200 s: 12 s a block.
        let c = BlockClock::measured(1_100, 1_700_001_200, 1_000, 1_700_000_000).unwrap();
        assert_eq!(c.block_time_ms, 12_000);
        assert_eq!(
            c.estimate(1_110),
            DateTime::from_timestamp(1_700_001_320, 0)
        );
        // The head itself, and a block already passed, are the head's time at the latest.
        assert_eq!(
            c.estimate(1_100),
            DateTime::from_timestamp(1_700_001_200, 0)
        );
        assert!(BlockClock::measured(5, 10, 5, 10).is_none());
        assert!(BlockClock::measured(6, 10, 5, 11).is_none());
        assert!(c.estimate(u64::MAX).is_none());
    }
}
