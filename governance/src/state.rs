//! Proposal states as OpenZeppelin Governor names them, and the clock-driven part of the
//! lifecycle: Pending → Active → Succeeded/Defeated → Queued → Executed (or Expired), Canceled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Created; voting has not started.
    Pending,
    /// Voting is open.
    Active,
    /// Withdrawn by its proposer (or on its chain).
    Canceled,
    /// Voting ended without quorum or threshold.
    Defeated,
    /// Voting ended with quorum and threshold.
    Succeeded,
    /// Succeeded with actions, waiting for its execution time.
    Queued,
    /// Queued but not executed within the grace period.
    Expired,
    /// Its actions were applied.
    Executed,
}

impl ProposalState {
    /// Every state.
    pub const ALL: [ProposalState; 8] = [
        ProposalState::Pending,
        ProposalState::Active,
        ProposalState::Canceled,
        ProposalState::Defeated,
        ProposalState::Succeeded,
        ProposalState::Queued,
        ProposalState::Expired,
        ProposalState::Executed,
    ];

    /// Stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Active => "active",
            ProposalState::Canceled => "canceled",
            ProposalState::Defeated => "defeated",
            ProposalState::Succeeded => "succeeded",
            ProposalState::Queued => "queued",
            ProposalState::Expired => "expired",
            ProposalState::Executed => "executed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<ProposalState> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether nothing more can happen to the proposal.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ProposalState::Canceled
                | ProposalState::Defeated
                | ProposalState::Expired
                | ProposalState::Executed
        )
    }
}

/// The timing of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Voting opens.
    pub start: DateTime<Utc>,
    /// Voting closes.
    pub end: DateTime<Utc>,
    /// Whether it carries actions (only those are queued and executed).
    pub has_actions: bool,
    /// Delay between success and execution.
    pub execution_delay: chrono::Duration,
    /// How long a queued proposal may wait to be executed before it expires.
    pub grace_period: chrono::Duration,
}

impl Lifecycle {
    /// The state a proposal in `current` moves to at `now`, given whether its tally passed; `eta`
    /// is its execution time once queued. Returns `None` when it stays where it is. Execution
    /// itself (Queued → Executed) is the executor's move, not the clock's.
    pub fn next(
        &self,
        current: ProposalState,
        now: DateTime<Utc>,
        passed: bool,
        eta: Option<DateTime<Utc>>,
    ) -> Option<(ProposalState, Option<DateTime<Utc>>)> {
        use ProposalState::*;
        match current {
            Pending if now >= self.end => Some((if passed { Succeeded } else { Defeated }, None)),
            Pending if now >= self.start => Some((Active, None)),
            Active if now >= self.end => Some((if passed { Succeeded } else { Defeated }, None)),
            Succeeded if self.has_actions => Some((Queued, Some(now + self.execution_delay))),
            Queued => match eta {
                Some(eta) if now > eta + self.grace_period => Some((Expired, None)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether a queued proposal with `eta` may be executed at `now`.
    pub fn executable(&self, eta: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        eta.is_some_and(|eta| now >= eta && now <= eta + self.grace_period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_clock_moves_proposals_like_a_governor() {
        use ProposalState::*;
        let l = Lifecycle {
            start: at(10),
            end: at(20),
            has_actions: true,
            execution_delay: chrono::Duration::seconds(5),
            grace_period: chrono::Duration::seconds(100),
        };
        assert_eq!(l.next(Pending, at(0), true, None), None);
        assert_eq!(l.next(Pending, at(10), true, None), Some((Active, None)));
        assert_eq!(l.next(Active, at(19), true, None), None);
        assert_eq!(l.next(Active, at(20), false, None), Some((Defeated, None)));
        assert_eq!(l.next(Active, at(20), true, None), Some((Succeeded, None)));
        assert_eq!(
            l.next(Succeeded, at(21), true, None),
            Some((Queued, Some(at(26))))
        );
        assert!(!l.executable(Some(at(26)), at(25)));
        assert!(l.executable(Some(at(26)), at(26)));
        assert_eq!(l.next(Queued, at(126), true, Some(at(26))), None);
        assert_eq!(
            l.next(Queued, at(127), true, Some(at(26))),
            Some((Expired, None))
        );
        assert_eq!(l.next(Defeated, at(500), true, None), None);
        // A vote-only proposal stays Succeeded.
        let vote_only = Lifecycle {
            has_actions: false,
            ..l
        };
        assert_eq!(vote_only.next(Succeeded, at(21), true, None), None);
        for s in ProposalState::ALL {
            assert_eq!(ProposalState::parse(s.as_str()), Some(s));
        }
    }
}
