//! Tallies: every voting type counted exactly in integers, deterministic for the same votes in
//! any order, so a tally can always be recomputed from the stored votes and compared.

use serde::{Deserialize, Serialize};

/// How voters express a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VotingType {
    /// One choice; the voter's whole power goes to it.
    SingleChoice,
    /// Any number of choices; each approved choice gets the voter's whole power.
    Approval,
    /// Power split over choices in proportion to the voter's weights.
    Weighted,
    /// Like weighted, but a voter's power counts as its integer square root: many small voters
    /// weigh more against one large one.
    Quadratic,
}

impl VotingType {
    /// Stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            VotingType::SingleChoice => "single_choice",
            VotingType::Approval => "approval",
            VotingType::Weighted => "weighted",
            VotingType::Quadratic => "quadratic",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<VotingType> {
        [
            VotingType::SingleChoice,
            VotingType::Approval,
            VotingType::Weighted,
            VotingType::Quadratic,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// A voter's choice, by 0-based choice index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    /// Single choice.
    One(u32),
    /// Approval: the approved choices.
    Many(Vec<u32>),
    /// Weighted or quadratic: (choice, weight) pairs; weights are relative.
    Weights(Vec<(u32, u32)>),
}

/// Why a choice does not fit a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TallyError {
    /// The choice has the wrong shape for the voting type.
    #[error("a {voting_type} proposal takes {expected}")]
    WrongShape {
        /// The proposal's type.
        voting_type: &'static str,
        /// What it takes.
        expected: &'static str,
    },
    /// A choice index is not one of the proposal's choices.
    #[error("choice {index} does not exist (the proposal has {count})")]
    NoSuchChoice {
        /// The index given.
        index: u32,
        /// Number of choices.
        count: usize,
    },
    /// Empty approval, zero total weight or a repeated choice.
    #[error("the choice is empty, all-zero or repeats a choice")]
    Degenerate,
}

impl Choice {
    /// Checks the choice against a proposal with `count` choices of `voting_type`.
    pub fn validate(&self, voting_type: VotingType, count: usize) -> Result<(), TallyError> {
        let check = |i: u32| {
            if (i as usize) < count {
                Ok(())
            } else {
                Err(TallyError::NoSuchChoice { index: i, count })
            }
        };
        let unique = |ids: &mut Vec<u32>| {
            ids.sort_unstable();
            let n = ids.len();
            ids.dedup();
            n == ids.len()
        };
        match (voting_type, self) {
            (VotingType::SingleChoice, Choice::One(i)) => check(*i),
            (VotingType::Approval, Choice::Many(ids)) => {
                ids.iter().try_for_each(|i| check(*i))?;
                if ids.is_empty() || !unique(&mut ids.clone()) {
                    return Err(TallyError::Degenerate);
                }
                Ok(())
            }
            (VotingType::Weighted | VotingType::Quadratic, Choice::Weights(w)) => {
                w.iter().try_for_each(|(i, _)| check(*i))?;
                let mut ids: Vec<u32> = w.iter().map(|(i, _)| *i).collect();
                if w.iter().all(|(_, x)| *x == 0) || !unique(&mut ids) {
                    return Err(TallyError::Degenerate);
                }
                Ok(())
            }
            (t, _) => Err(TallyError::WrongShape {
                voting_type: t.as_str(),
                expected: match t {
                    VotingType::SingleChoice => "one choice index",
                    VotingType::Approval => "a list of choice indexes",
                    _ => "a list of [choice, weight] pairs",
                },
            }),
        }
    }
}

/// The result of counting a proposal's votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyResult {
    /// Power counted for each choice.
    pub per_choice: Vec<u128>,
    /// Voters who gave each choice any power.
    pub voters_per_choice: Vec<u32>,
    /// Power of everyone who voted (for quadratic, the sum of square roots).
    pub participation: u128,
    /// Number of voters.
    pub voters: u32,
    /// Whether participation reached the quorum.
    pub quorum_reached: bool,
    /// The choice with the most power (lowest index on a tie), if anyone voted.
    pub leader: Option<u32>,
    /// Whether the proposal passes by its [`OutcomeRule`] (off-chain: quorum reached and choice
    /// 0, "for", holds at least the threshold share of all counted power).
    pub passed: bool,
}

/// How a proposal's outcome follows from its per-choice power: by where the vote is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeRule {
    /// Meridian's off-chain proposals: participation reaches the quorum and choice 0 ("for")
    /// holds at least `threshold_bps` of the counted power.
    ShareOfFirst {
        /// Share of "for" needed, in basis points.
        threshold_bps: u32,
    },
    /// OpenZeppelin's `GovernorCountingSimple`: choices against (0), for (1), abstain (2);
    /// the quorum counts for + abstain; passes when for exceeds against.
    GovernorSimple,
    /// Cosmos SDK `x/gov`: yes (0), abstain (1), no (2), no with veto (3); the quorum counts
    /// every vote; vetoed when no-with-veto exceeds a third of all votes; passes when yes
    /// exceeds half of the votes that are not abstain.
    CosmosGov,
    /// Substrate referenda: aye (0) against nay (1), passing when aye exceeds nay (the chain's
    /// approval and support curves are the chain's own to apply; its state is mirrored).
    AyeOverNay,
}

impl TallyResult {
    /// This tally with `quorum_reached` and `passed` decided by `rule`.
    pub fn decided_by(mut self, rule: OutcomeRule, quorum: u128) -> TallyResult {
        let power = |i: usize| self.per_choice.get(i).copied().unwrap_or(0);
        let total: u128 = self
            .per_choice
            .iter()
            .copied()
            .fold(0, u128::saturating_add);
        let (quorum_reached, passed) = match rule {
            OutcomeRule::ShareOfFirst { threshold_bps } => {
                let reached = self.participation >= quorum && self.voters > 0;
                (
                    reached,
                    reached
                        && total > 0
                        && power(0).saturating_mul(10_000)
                            >= total.saturating_mul(u128::from(threshold_bps)),
                )
            }
            OutcomeRule::GovernorSimple => {
                let (against, in_favour, abstain) = (power(0), power(1), power(2));
                let reached = in_favour.saturating_add(abstain) >= quorum;
                (reached, reached && in_favour > against)
            }
            OutcomeRule::CosmosGov => {
                let (yes, no, veto) = (power(0), power(2), power(3));
                let reached = self.voters > 0 && total >= quorum;
                let decisive = yes.saturating_add(no).saturating_add(veto);
                let vetoed = veto.saturating_mul(3) > total;
                (
                    reached,
                    reached && decisive > 0 && !vetoed && yes.saturating_mul(2) > decisive,
                )
            }
            OutcomeRule::AyeOverNay => {
                let reached = self.voters > 0 && total >= quorum;
                (reached, reached && power(0) > power(1))
            }
        };
        self.quorum_reached = quorum_reached;
        self.passed = passed;
        self
    }
}

/// Integer square root (floor), by Newton's method on integers: exact for every `u128`.
pub fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Start above the root: 2^ceil(bits/2).
    let bits = 128 - n.leading_zeros();
    let mut x: u128 = 1 << bits.div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Splits `power` over `weights` in proportion, exactly: floors first, then the remainder one
/// unit at a time to the largest fractional parts (lowest choice first on a tie).
fn split(power: u128, weights: &[(u32, u32)]) -> Vec<(u32, u128)> {
    let total: u128 = weights.iter().map(|(_, w)| *w as u128).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut parts: Vec<(u32, u128, u128)> = weights
        .iter()
        .map(|(i, w)| {
            // power * w / total without overflow: split power into quotient and remainder.
            let (q, r) = (power / total, power % total);
            let w = *w as u128;
            let exact_num = r * w; // < total * 2^32 ≤ choices * 2^64: fits in u128
            (*i, q * w + exact_num / total, exact_num % total)
        })
        .collect();
    let given: u128 = parts.iter().map(|p| p.1).sum();
    let mut left = power - given;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        parts[b]
            .2
            .cmp(&parts[a].2)
            .then(parts[a].0.cmp(&parts[b].0))
    });
    for k in order {
        if left == 0 {
            break;
        }
        parts[k].1 += 1;
        left -= 1;
    }
    parts.into_iter().map(|(i, p, _)| (i, p)).collect()
}

/// Counts `votes` (power, choice) on a proposal with `choices` choices.
///
/// Invalid choices are skipped here: they are refused when cast, and a tally must not fail
/// because of one stored row.
pub fn tally(
    voting_type: VotingType,
    choices: usize,
    votes: &[(u128, Choice)],
    quorum: u128,
    threshold_bps: u32,
) -> TallyResult {
    let mut per_choice = vec![0u128; choices];
    let mut voters_per_choice = vec![0u32; choices];
    let mut participation = 0u128;
    let mut voters = 0u32;
    for (power, choice) in votes {
        if choice.validate(voting_type, choices).is_err() {
            continue;
        }
        let counted = match voting_type {
            VotingType::Quadratic => isqrt(*power),
            _ => *power,
        };
        let shares: Vec<(u32, u128)> = match choice {
            Choice::One(i) => vec![(*i, counted)],
            Choice::Many(ids) => ids.iter().map(|i| (*i, counted)).collect(),
            Choice::Weights(w) => split(counted, w),
        };
        for (i, p) in shares {
            per_choice[i as usize] = per_choice[i as usize].saturating_add(p);
            if p > 0 {
                voters_per_choice[i as usize] += 1;
            }
        }
        participation = participation.saturating_add(counted);
        voters += 1;
    }
    let leader = (voters > 0).then(|| {
        per_choice
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i as u32)
    });
    let counted: u128 = per_choice.iter().copied().fold(0, u128::saturating_add);
    let quorum_reached = participation >= quorum && voters > 0;
    let for_votes = per_choice.first().copied().unwrap_or(0);
    let passed = quorum_reached
        && counted > 0
        && for_votes.saturating_mul(10_000) >= counted.saturating_mul(threshold_bps as u128);
    TallyResult {
        per_choice,
        voters_per_choice,
        participation,
        voters,
        quorum_reached,
        leader,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(per_choice: Vec<u128>) -> TallyResult {
        TallyResult {
            participation: per_choice.iter().sum(),
            voters_per_choice: per_choice.iter().map(|p| u32::from(*p > 0)).collect(),
            voters: per_choice.iter().filter(|p| **p > 0).count() as u32,
            per_choice,
            quorum_reached: false,
            leader: None,
            passed: false,
        }
    }

    #[test]
    fn each_origin_decides_by_its_own_rule() {
        // A Governor: against 10, for 30, abstain 5 passes (choice 0 is *against* there).
        let g = counted(vec![10, 30, 5]).decided_by(OutcomeRule::GovernorSimple, 35);
        assert!(g.quorum_reached && g.passed, "{g:?}");
        // Its quorum counts for + abstain only: 30 + 5 < 40.
        let g = counted(vec![10, 30, 5]).decided_by(OutcomeRule::GovernorSimple, 40);
        assert!(!g.quorum_reached && !g.passed);
        // A tie is defeated; the old reading (choice 0 "for") would have passed this one.
        assert!(
            !counted(vec![30, 30, 0])
                .decided_by(OutcomeRule::GovernorSimple, 0)
                .passed
        );
        assert!(
            !counted(vec![30, 10, 0])
                .decided_by(OutcomeRule::GovernorSimple, 0)
                .passed
        );
        // Cosmos gov: yes 60 against no 40 passes; a veto above a third of all votes fails.
        assert!(
            counted(vec![60, 10, 40, 0])
                .decided_by(OutcomeRule::CosmosGov, 0)
                .passed
        );
        assert!(
            !counted(vec![60, 0, 0, 40])
                .decided_by(OutcomeRule::CosmosGov, 0)
                .passed
        );
        assert!(
            !counted(vec![0, 50, 0, 0])
                .decided_by(OutcomeRule::CosmosGov, 0)
                .passed
        );
        // Substrate: aye over nay.
        assert!(
            counted(vec![5, 4, 0])
                .decided_by(OutcomeRule::AyeOverNay, 0)
                .passed
        );
        assert!(
            !counted(vec![4, 5, 0])
                .decided_by(OutcomeRule::AyeOverNay, 0)
                .passed
        );
        // Off-chain: the share of choice 0, as `tally` decides it.
        let votes = [(2u128, Choice::One(0)), (1, Choice::One(1))];
        let t = tally(VotingType::SingleChoice, 2, &votes, 3, 6_000);
        assert_eq!(
            t.clone().decided_by(
                OutcomeRule::ShareOfFirst {
                    threshold_bps: 6_000
                },
                3
            ),
            t
        );
    }

    #[test]
    fn single_choice_counts_power_and_threshold() {
        let votes = [
            (600, Choice::One(0)),
            (300, Choice::One(1)),
            (100, Choice::One(2)),
        ];
        let t = tally(VotingType::SingleChoice, 3, &votes, 1_000, 5_000);
        assert_eq!(t.per_choice, vec![600, 300, 100]);
        assert_eq!((t.participation, t.voters, t.leader), (1_000, 3, Some(0)));
        assert!(t.quorum_reached && t.passed);
        // 60 % for is below a two-thirds threshold; quorum one short fails too.
        assert!(!tally(VotingType::SingleChoice, 3, &votes, 1_000, 6_667).passed);
        assert!(!tally(VotingType::SingleChoice, 3, &votes, 1_001, 5_000).quorum_reached);
    }

    #[test]
    fn approval_gives_each_approved_choice_the_whole_power() {
        let votes = [(10, Choice::Many(vec![0, 2])), (5, Choice::Many(vec![2]))];
        let t = tally(VotingType::Approval, 3, &votes, 0, 0);
        assert_eq!(t.per_choice, vec![10, 0, 15]);
        assert_eq!(t.voters_per_choice, vec![1, 0, 2]);
        assert_eq!(t.leader, Some(2));
    }

    #[test]
    fn weighted_splits_exactly_and_deterministically() {
        let v = Choice::Weights(vec![(0, 1), (1, 1), (2, 1)]);
        let t = tally(VotingType::Weighted, 3, &[(100, v)], 0, 0);
        assert_eq!(t.per_choice, vec![34, 33, 33]);
        assert_eq!(t.per_choice.iter().sum::<u128>(), 100);
        let big = Choice::Weights(vec![(0, 7), (1, 3)]);
        let t = tally(VotingType::Weighted, 2, &[(u128::MAX, big)], 0, 0);
        assert_eq!(
            t.per_choice.iter().fold(0u128, |a, b| a.wrapping_add(*b)),
            u128::MAX
        );
        // Order of votes does not matter.
        let a = [
            (7, Choice::Weights(vec![(1, 2), (0, 1)])),
            (9, Choice::One(0)),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(
            tally(VotingType::Weighted, 2, &a, 0, 0),
            tally(VotingType::Weighted, 2, &b, 0, 0)
        );
    }

    #[test]
    fn quadratic_counts_square_roots() {
        let whale = (10_000, Choice::Weights(vec![(1, 1)]));
        let small: Vec<(u128, Choice)> = (0..3)
            .map(|_| (2_500, Choice::Weights(vec![(0, 1)])))
            .collect();
        let mut votes = small;
        votes.push(whale);
        let t = tally(VotingType::Quadratic, 2, &votes, 0, 5_000);
        assert_eq!(t.per_choice, vec![150, 100]);
        assert_eq!(t.participation, 250);
        assert!(t.passed);
        assert_eq!(isqrt(u128::MAX), 18_446_744_073_709_551_615);
        assert_eq!(isqrt(99), 9);
    }

    #[test]
    fn malformed_choices_are_refused_with_the_reason() {
        assert_eq!(
            Choice::One(3).validate(VotingType::SingleChoice, 3),
            Err(TallyError::NoSuchChoice { index: 3, count: 3 })
        );
        assert_eq!(
            Choice::Many(vec![]).validate(VotingType::Approval, 3),
            Err(TallyError::Degenerate)
        );
        assert_eq!(
            Choice::Many(vec![1, 1]).validate(VotingType::Approval, 3),
            Err(TallyError::Degenerate)
        );
        assert_eq!(
            Choice::Weights(vec![(0, 0)]).validate(VotingType::Weighted, 3),
            Err(TallyError::Degenerate)
        );
        assert!(matches!(
            Choice::One(0).validate(VotingType::Approval, 3),
            Err(TallyError::WrongShape { .. })
        ));
        // Stored rows that are invalid are skipped, not counted.
        let t = tally(
            VotingType::SingleChoice,
            2,
            &[(5, Choice::One(9)), (1, Choice::One(1))],
            0,
            0,
        );
        assert_eq!((t.per_choice, t.voters), (vec![0, 1], 1));
    }
}
