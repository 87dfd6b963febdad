//! Meridian's DAO governance rules, free of storage and chains: the proposal lifecycle
//! (OpenZeppelin Governor's states), EIP-712 ballots and how they are checked, the tally of every
//! voting type, and when a proposal's relay actions (`meridian_types::RelayAction`) may apply (see
//! `../shared/DESIGN.md`, "Governance"). The node stores, mirrors and executes; this crate decides.

pub mod ballot;
pub mod chain_clock;
pub mod engine;
pub mod state;
pub mod tally;

pub use ballot::{
    verify_proposal, verify_vote, BallotError, Domain, ProposalDraft, SignedProposal, SignedVote,
    TimeWindow, VoteMessage,
};
pub use engine::{Governance, GovernanceError, Strategy, TokenSnapshot, VoteReceipt};
pub use state::{Lifecycle, ProposalState};
pub use tally::{Choice, OutcomeRule, TallyError, TallyResult, VotingType};
