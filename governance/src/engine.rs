//! The governance engine: takes signed proposals and votes, measures voting power, keeps each
//! proposal's tally (always recomputable from its stored votes), moves proposals through their
//! lifecycle on the clock, and executes passed ones as audited changes of relay parameters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ethers::providers::Middleware;
use ethers::types::{Address, BlockId, BlockNumber, TransactionRequest, U256};
use meridian_relayer::evm::RpcPool;
use meridian_router::RoutingState;
use meridian_storage::entities::proposals;
use meridian_storage::{AuditEntry, NewProposal, NewVote, StorageError, Store, VoteRecorded};
use meridian_types::config::{GovernanceConfig, TokenPower};
use meridian_types::{ChainFamily, ChainId, EventPayload, WeightedOption};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::ballot::{verify_proposal, verify_vote, BallotError, Domain, TimeWindow};
use crate::chain_clock::{
    from_seconds, BlockClock, ChainSchedule, ClockMode, BLOCK_TIME_SAMPLE_BLOCKS_MAX,
};
use crate::state::{Lifecycle, ProposalState};
use crate::tally::{tally, Choice, OutcomeRule, TallyError, TallyResult, VotingType};
use meridian_types::RelayAction;

/// Origin of proposals and votes made through Meridian itself.
pub const OFFCHAIN: &str = "offchain";

/// The id of a proposal mirrored from `chain`.
pub fn mirrored_id(chain: &ChainId, proposal_id: &str) -> String {
    format!("{chain}/{proposal_id}")
}

/// The choices of proposals mirrored from `chain`, in the chain's own order: a Governor's
/// `support` (against, for, abstain), Cosmos gov's options, Substrate's aye/nay.
fn chain_choices(chain: &ChainId) -> &'static [&'static str] {
    match chain.family() {
        Some(ChainFamily::Evm) => &["Against", "For", "Abstain"],
        Some(ChainFamily::Cometbft) => &["Yes", "Abstain", "No", "No with veto"],
        _ => &["Aye", "Nay", "Abstain"],
    }
}

fn chain_voting_type(chain: &ChainId) -> VotingType {
    match chain.family() {
        Some(ChainFamily::Evm) => VotingType::SingleChoice,
        _ => VotingType::Weighted,
    }
}

/// A chain vote's options as a choice on its mirrored proposal.
fn chain_choice(chain: &ChainId, options: &[WeightedOption]) -> Option<Choice> {
    let choices = chain_choices(chain);
    let index = |o: &str| {
        let o = o.replace('_', " ");
        choices
            .iter()
            .position(|c| c.eq_ignore_ascii_case(&o))
            .map(|i| i as u32)
    };
    match chain_voting_type(chain) {
        VotingType::SingleChoice => match options {
            [one] => index(&one.option).map(Choice::One),
            _ => None,
        },
        _ => {
            let mut weights = Vec::new();
            for o in options {
                // Decimal weights ("0.7", "1.000000000000000000") as millionths.
                let (int, frac) = o.weight.split_once('.').unwrap_or((&o.weight, ""));
                let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
                let w =
                    int.parse::<u32>().ok()?.checked_mul(1_000_000)? + frac.parse::<u32>().ok()?;
                weights.push((index(&o.option)?, w));
            }
            Some(Choice::Weights(weights))
        }
    }
}

/// Audit actor of governance's own changes.
const ACTOR: &str = "governance";

/// How voting power is measured for one proposal, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// One member, one vote.
    Members {
        /// Members (0x, lower case).
        members: Vec<String>,
    },
    /// ERC-20 balances at a snapshot block on each chain, summed.
    Tokens {
        /// The tokens and their snapshot blocks.
        tokens: Vec<TokenSnapshot>,
    },
    /// A proposal mirrored from a chain: each vote carries the power its chain counted.
    Chain {
        /// The chain (CAIP-2).
        chain: ChainId,
        /// The contract or module that runs the vote (a Governor's address).
        #[serde(default)]
        contract: Option<String>,
        /// Voting opens and closes at these chain timepoints.
        vote_start: Option<u64>,
        /// See `vote_start`.
        vote_end: Option<u64>,
        /// The Governor's clock and whether the stored times are the chain's own or estimates
        /// (`None` until first read).
        #[serde(default)]
        schedule: Option<ChainSchedule>,
    },
}

/// A voting token and the block its balances are read at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSnapshot {
    /// Chain (CAIP-2).
    pub chain: ChainId,
    /// Token contract.
    pub address: String,
    /// Snapshot block.
    pub block: u64,
    /// Balances or delegated votes (proposals stored before count balances).
    #[serde(default)]
    pub power: TokenPower,
}

/// Why governance refused something; [`GovernanceError::code`] is what API clients match on.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The signed ballot did not check out.
    #[error(transparent)]
    Ballot(#[from] BallotError),
    /// No such proposal.
    #[error("no proposal {0}")]
    NotFound(String),
    /// Voting has not started.
    #[error("voting on {0} has not started")]
    NotStarted(String),
    /// Voting is over.
    #[error("voting on {id} ended at {end}")]
    AfterDeadline {
        /// The proposal.
        id: String,
        /// When voting ended.
        end: DateTime<Utc>,
    },
    /// The proposal is not open for votes (canceled, …).
    #[error("proposal {id} is {state}")]
    NotActive {
        /// The proposal.
        id: String,
        /// Its state.
        state: String,
    },
    /// The choice does not fit the proposal.
    #[error(transparent)]
    InvalidChoice(#[from] TallyError),
    /// The voter has no voting power on this proposal.
    #[error("{0} has no voting power on this proposal")]
    NoVotingPower(String),
    /// The same or a later vote of this voter is recorded already.
    #[error("a vote with sequence {current} or later is recorded already; sign a higher sequence")]
    Replayed {
        /// The stored sequence.
        current: i64,
    },
    /// The proposer's power is below the proposal threshold.
    #[error("proposer has {power} voting power; {needed} is needed to propose")]
    InsufficientPower {
        /// Their power.
        power: u128,
        /// The threshold.
        needed: u128,
    },
    /// The proposal names another space.
    #[error("proposal is for space `{0}`")]
    WrongSpace(String),
    /// An action cannot be applied to this relay (unknown corridor, …).
    #[error("action cannot be applied: {0}")]
    InvalidAction(String),
    /// A chain needed for voting power could not be read.
    #[error("voting power unavailable: {0}")]
    Chain(String),
    /// The vote would open sooner after the proposal than the DAO allows.
    #[error("voting must open at least {min_secs} s after the proposal is made{}", if *.sensitive { " (it weakens compliance)" } else { "" })]
    VotingDelayTooShort {
        /// The shortest delay.
        min_secs: u64,
        /// Whether the longer delay of compliance-weakening proposals applies.
        sensitive: bool,
    },
    /// The vote would be shorter than the DAO allows.
    #[error("voting must last at least {min_secs} s")]
    VotingPeriodTooShort {
        /// The shortest vote.
        min_secs: u64,
    },
    /// A stored value does not parse (the proposal is left as it is; the log says which).
    #[error("stored {0} does not parse")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl GovernanceError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GovernanceError::Ballot(b) => b.code(),
            GovernanceError::NotFound(_) => "PROPOSAL_NOT_FOUND",
            GovernanceError::NotStarted(_) => "VOTING_NOT_STARTED",
            GovernanceError::AfterDeadline { .. } => "AFTER_DEADLINE",
            GovernanceError::NotActive { .. } => "PROPOSAL_NOT_ACTIVE",
            GovernanceError::InvalidChoice(_) => "INVALID_CHOICE",
            GovernanceError::NoVotingPower(_) => "NO_VOTING_POWER",
            GovernanceError::Replayed { .. } => "REPLAYED",
            GovernanceError::InsufficientPower { .. } => "INSUFFICIENT_POWER",
            GovernanceError::WrongSpace(_) => "WRONG_SPACE",
            GovernanceError::InvalidAction(_) => "INVALID_ACTION",
            GovernanceError::Chain(_) => "CHAIN_UNAVAILABLE",
            GovernanceError::VotingDelayTooShort { .. } => "VOTING_DELAY_TOO_SHORT",
            GovernanceError::VotingPeriodTooShort { .. } => "VOTING_PERIOD_TOO_SHORT",
            GovernanceError::Storage(_) | GovernanceError::Corrupt(_) => "INTERNAL",
        }
    }
}

/// A vote that was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteReceipt {
    /// The proposal.
    pub proposal_id: String,
    /// The voter.
    pub voter: String,
    /// Power counted.
    pub power: u128,
    /// Whether it replaced the voter's earlier vote.
    pub replaced: bool,
    /// The tally after it.
    pub tally: TallyResult,
}

/// The governance engine of one node.
pub struct Governance {
    store: Store,
    routing: Arc<RoutingState>,
    config: GovernanceConfig,
    domain: Domain,
    window: TimeWindow,
    providers: HashMap<ChainId, Arc<RpcPool>>,
    changes: broadcast::Sender<String>,
    /// The changes made here only (not those another node of a cluster made and this one
    /// relays to its subscribers): what this node tells the others.
    local_changes: broadcast::Sender<String>,
    /// Last chain event mirrored (row id); from 0 after a restart, which is harmless because
    /// mirroring is idempotent.
    mirrored: tokio::sync::Mutex<i64>,
}

/// A stored amount of proposal `p` (its quorum, a vote's power); one that does not parse is an
/// error, never zero.
fn stored_u128(p: &str, what: &'static str, s: &str) -> Result<u128, GovernanceError> {
    s.parse()
        .map_err(|_| GovernanceError::Corrupt(format!("{what} `{s}` of proposal {p}")))
}

fn choices_of(p: &proposals::Model) -> Result<Vec<String>, GovernanceError> {
    serde_json::from_value(p.choices.clone())
        .map_err(|e| GovernanceError::Corrupt(format!("choices of proposal {}: {e}", p.id)))
}

fn voting_type_of(p: &proposals::Model) -> Result<VotingType, GovernanceError> {
    VotingType::parse(&p.voting_type).ok_or_else(|| {
        GovernanceError::Corrupt(format!(
            "voting type `{}` of proposal {}",
            p.voting_type, p.id
        ))
    })
}

fn actions_of(p: &proposals::Model) -> Result<Vec<RelayAction>, GovernanceError> {
    serde_json::from_value(p.actions.clone())
        .map_err(|e| GovernanceError::Corrupt(format!("actions of proposal {}: {e}", p.id)))
}

impl Governance {
    /// An engine over `store`, changing `routing`; `providers` read token balances for the
    /// token strategy (one per configured voting-token chain).
    pub fn new(
        store: Store,
        routing: Arc<RoutingState>,
        config: GovernanceConfig,
        providers: HashMap<ChainId, Arc<RpcPool>>,
    ) -> Governance {
        let (changes, _) = broadcast::channel(256);
        let (local_changes, _) = broadcast::channel(256);
        Governance {
            store,
            routing,
            domain: Domain::meridian(config.chain_id),
            window: TimeWindow {
                max_age: chrono::Duration::seconds(
                    i64::try_from(config.signature_max_age_secs).unwrap_or(i64::MAX),
                ),
                max_skew: chrono::Duration::minutes(2),
            },
            config,
            providers,
            changes,
            local_changes,
            mirrored: tokio::sync::Mutex::new(0),
        }
    }

    /// The same engine writing through `store` (a store fenced by the node's `gov` lease on a
    /// cluster); its changes reach the same subscribers.
    pub fn writing_through(&self, store: Store) -> Governance {
        Governance {
            store,
            routing: self.routing.clone(),
            config: self.config.clone(),
            domain: self.domain.clone(),
            window: self.window,
            providers: self.providers.clone(),
            changes: self.changes.clone(),
            local_changes: self.local_changes.clone(),
            mirrored: tokio::sync::Mutex::new(0),
        }
    }

    /// The EIP-712 domain ballots are signed under.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The configuration in force.
    pub fn config(&self) -> &GovernanceConfig {
        &self.config
    }

    /// Ids of proposals whose state or tally changed, as they change (here or, on a cluster, on
    /// another node that said so).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    /// Ids of proposals changed by this node only: what a node of a cluster tells the others.
    pub fn subscribe_local(&self) -> broadcast::Receiver<String> {
        self.local_changes.subscribe()
    }

    /// Tells this node's subscribers that another node changed proposal `id`.
    pub fn announce_remote_change(&self, id: String) {
        // No subscriber is not an error.
        let _ = self.changes.send(id);
    }

    /// Tells subscribers, and the other nodes of a cluster, that proposal `id` changed here.
    fn changed(&self, id: String) {
        let _ = self.local_changes.send(id.clone());
        let _ = self.changes.send(id);
    }

    fn lifecycle(&self, p: &proposals::Model) -> Result<Lifecycle, GovernanceError> {
        Ok(Lifecycle {
            start: p.start_at,
            end: p.end_at,
            has_actions: !actions_of(p)?.is_empty(),
            execution_delay: chrono::Duration::seconds(
                i64::try_from(self.config.execution_delay_secs).unwrap_or(i64::MAX),
            ),
            grace_period: chrono::Duration::seconds(
                i64::try_from(self.config.grace_period_secs).unwrap_or(i64::MAX),
            ),
        })
    }

    /// The power an off-chain vote by `voter` on a proposal of `strategy` counts with: the
    /// proposal's own strategy, or for a proposal mirrored from a chain this DAO's current one
    /// (the tally keeps one vote per address, preferring the one cast on chain). What
    /// `votingPower` shows and what a signed vote counts are this one figure.
    pub async fn off_chain_power(
        &self,
        strategy: &Strategy,
        voter: &str,
    ) -> Result<u128, GovernanceError> {
        if matches!(strategy, Strategy::Chain { .. }) {
            let now = self.strategy_now().await?;
            return self.power(&now, voter).await;
        }
        self.power(strategy, voter).await
    }

    /// The strategy a proposal created now gets: members, or each token at its chain's
    /// current block.
    pub async fn strategy_now(&self) -> Result<Strategy, GovernanceError> {
        if self.config.tokens.is_empty() {
            return Ok(Strategy::Members {
                members: self
                    .config
                    .members
                    .iter()
                    .map(|m| m.to_ascii_lowercase())
                    .collect(),
            });
        }
        let mut tokens = Vec::new();
        for t in &self.config.tokens {
            let block = self.head_of(&t.chain).await?;
            tokens.push(TokenSnapshot {
                chain: t.chain.clone(),
                address: t.address.to_ascii_lowercase(),
                block,
                power: t.power,
            });
        }
        Ok(Strategy::Tokens { tokens })
    }

    /// Calls `data` on token `t` through its chain's pool, at block `at` (else the latest).
    async fn token_call(
        &self,
        t: &TokenSnapshot,
        data: Vec<u8>,
        at: Option<u64>,
    ) -> Result<ethers::types::Bytes, GovernanceError> {
        let provider = self
            .providers
            .get(&t.chain)
            .ok_or_else(|| GovernanceError::Chain(format!("no RPC for {}", t.chain)))?;
        let token: Address = t
            .address
            .parse()
            .map_err(|_| GovernanceError::Chain(format!("bad token {}", t.address)))?;
        let at = at.map(|n| BlockId::Number(BlockNumber::Number(n.into())));
        let call: ethers::types::transaction::eip2718::TypedTransaction =
            TransactionRequest::new().to(token).data(data).into();
        provider
            .call("eth_call", |p| {
                let call = call.clone();
                async move { p.call(&call, at).await }
            })
            .await
            .map_err(|e| GovernanceError::Chain(e.to_string()))
    }

    /// The latest block number of `chain`.
    async fn head_of(&self, chain: &ChainId) -> Result<u64, GovernanceError> {
        let provider = self
            .providers
            .get(chain)
            .ok_or_else(|| GovernanceError::Chain(format!("no RPC for {chain}")))?;
        Ok(provider
            .call(
                "eth_blockNumber",
                |p| async move { p.get_block_number().await },
            )
            .await
            .map_err(|e| GovernanceError::Chain(e.to_string()))?
            .as_u64())
    }

    /// `voter`'s power under `strategy`.
    pub async fn power(&self, strategy: &Strategy, voter: &str) -> Result<u128, GovernanceError> {
        let voter = voter.to_ascii_lowercase();
        match strategy {
            Strategy::Members { members } => Ok(u128::from(members.contains(&voter))),
            // Votes on a mirrored proposal are cast on its chain, with the chain's power.
            Strategy::Chain { .. } => Ok(0),
            Strategy::Tokens { tokens } => {
                let who: Address = voter
                    .parse()
                    .map_err(|_| GovernanceError::NoVotingPower(voter.clone()))?;
                let mut total = 0u128;
                for t in tokens {
                    let mut word = [0u8; 32];
                    word[12..].copy_from_slice(who.as_bytes());
                    let out = match t.power {
                        // balanceOf(address) at the snapshot block.
                        TokenPower::Balance => {
                            let data =
                                [&ethers::utils::id("balanceOf(address)")[..], &word].concat();
                            self.token_call(t, data, Some(t.block)).await?
                        }
                        // getPastVotes(address, snapshot) now: the token's own checkpoints.
                        TokenPower::Votes => {
                            let mut block = [0u8; 32];
                            U256::from(t.block).to_big_endian(&mut block);
                            let data = [
                                &ethers::utils::id("getPastVotes(address,uint256)")[..],
                                &word,
                                &block,
                            ]
                            .concat();
                            match self.token_call(t, data, None).await {
                                Ok(out) => out,
                                // getPastVotes refuses a timepoint that is not past yet (a
                                // proposal created in the chain's current block): the votes
                                // now are the votes at that block so far.
                                Err(e) if self.head_of(&t.chain).await? <= t.block => {
                                    tracing::debug!(error = %e, "snapshot block is current; reading getVotes");
                                    let data = [&ethers::utils::id("getVotes(address)")[..], &word]
                                        .concat();
                                    self.token_call(t, data, None).await?
                                }
                                Err(e) => return Err(e),
                            }
                        }
                    };
                    let balance = U256::from_big_endian(&out);
                    total = total.saturating_add(balance.try_into().unwrap_or(u128::MAX));
                }
                Ok(total)
            }
        }
    }

    /// Creates a proposal from its signed typed data.
    pub async fn create_proposal(
        &self,
        typed: &serde_json::Value,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<proposals::Model, GovernanceError> {
        let signed = verify_proposal(typed, signature, &self.domain, now, self.window)?;
        let d = &signed.draft;
        if d.space != self.config.space {
            return Err(GovernanceError::WrongSpace(d.space.clone()));
        }
        for a in &d.actions {
            self.check_action(a)?;
        }
        let strategy = self.strategy_now().await?;
        let power = self.power(&strategy, &d.proposer).await?;
        let needed = self.config.proposal_threshold.0;
        if power < needed {
            return Err(GovernanceError::InsufficientPower { power, needed });
        }
        let at = |s: u64| DateTime::from_timestamp(i64::try_from(s).unwrap_or(i64::MAX), 0);
        let (Some(start_at), Some(end_at)) = (at(d.start), at(d.end)) else {
            return Err(BallotError::InvalidField {
                field: "start",
                reason: "out of range".into(),
            }
            .into());
        };
        // No capture by defaults: a vote members can see coming, long enough to take part in,
        // a quorum that is a share of all power, and more of both for compliance-weakening
        // actions.
        let cfg = &self.config;
        let sensitive = d.actions.iter().any(|a| self.weakens_compliance(a));
        let delay_min = if sensitive {
            cfg.sensitive_voting_delay_min_secs
        } else {
            cfg.voting_delay_min_secs
        };
        // (A DAO that sets no delay keeps accepting votes that open at once, or opened already.)
        if delay_min > 0
            && start_at
                < now + chrono::Duration::seconds(i64::try_from(delay_min).unwrap_or(i64::MAX))
        {
            return Err(GovernanceError::VotingDelayTooShort {
                min_secs: delay_min,
                sensitive,
            });
        }
        if (end_at - start_at).num_seconds()
            < i64::try_from(cfg.voting_period_min_secs).unwrap_or(i64::MAX)
        {
            return Err(GovernanceError::VotingPeriodTooShort {
                min_secs: cfg.voting_period_min_secs,
            });
        }
        let total = self.total_power(&strategy).await?;
        let quorum = cfg.quorum.0.max(share_rounded_up(total, cfg.quorum_bps));
        let threshold_bps = if sensitive {
            cfg.threshold_bps.max(cfg.sensitive_threshold_bps)
        } else {
            cfg.threshold_bps
        };
        let id = format!("mrd-{}", &signed.digest[2..18]);
        let state = if now >= start_at {
            ProposalState::Active
        } else {
            ProposalState::Pending
        };
        self.store
            .create_proposal(&NewProposal {
                id: id.clone(),
                space: d.space.clone(),
                origin: OFFCHAIN.into(),
                origin_ref: Some(signed.digest.clone()),
                proposer: d.proposer.clone(),
                title: d.title.clone(),
                body: d.body.clone(),
                choices: d.choices.clone(),
                voting_type: d.voting_type.as_str().into(),
                strategy: serde_json::to_value(&strategy).unwrap_or_default(),
                start_at,
                end_at,
                quorum,
                threshold_bps,
                actions: serde_json::to_value(&d.actions).unwrap_or_default(),
                state: state.as_str().into(),
                created_at: now,
            })
            .await?;
        self.store
            .record_audit(&AuditEntry {
                actor: format!("member:{}", d.proposer),
                action: "proposal.create".into(),
                subject: format!("proposal:{id}"),
                details: json!({"title": d.title, "signature": signed.signature, "digest": signed.digest}),
            })
            .await?;
        info!(proposal = %id, proposer = %d.proposer, "proposal created");
        self.changed(id.clone());
        self.store
            .proposal(&id)
            .await?
            .ok_or(GovernanceError::NotFound(id))
    }

    /// Records a signed vote and returns the new tally.
    pub async fn cast_vote(
        &self,
        typed: &serde_json::Value,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<VoteReceipt, GovernanceError> {
        let signed = verify_vote(typed, signature, &self.domain, now, self.window)?;
        let m = &signed.message;
        let p = self
            .store
            .proposal(&m.proposal)
            .await?
            .ok_or_else(|| GovernanceError::NotFound(m.proposal.clone()))?;
        let state = ProposalState::parse(&p.state).unwrap_or(ProposalState::Canceled);
        if now >= p.end_at {
            return Err(GovernanceError::AfterDeadline {
                id: p.id.clone(),
                end: p.end_at,
            });
        }
        if now < p.start_at {
            return Err(GovernanceError::NotStarted(p.id.clone()));
        }
        if !matches!(state, ProposalState::Active | ProposalState::Pending) {
            return Err(GovernanceError::NotActive {
                id: p.id.clone(),
                state: p.state.clone(),
            });
        }
        let voting_type = voting_type_of(&p)?;
        m.choice.validate(voting_type, choices_of(&p)?.len())?;
        let strategy: Strategy = serde_json::from_value(p.strategy.clone())
            .map_err(|e| GovernanceError::Chain(format!("stored strategy: {e}")))?;
        let power = self.off_chain_power(&strategy, &m.voter).await?;
        if power == 0 {
            return Err(GovernanceError::NoVotingPower(m.voter.clone()));
        }
        let recorded = self
            .store
            .record_vote(&NewVote {
                proposal_id: p.id.clone(),
                voter: m.voter.clone(),
                origin: OFFCHAIN.into(),
                choice: serde_json::to_value(&m.choice).unwrap_or_default(),
                power,
                signature: Some(signed.signature.clone()),
                sequence: i64::try_from(m.sequence).unwrap_or(i64::MAX),
                signed_at: DateTime::from_timestamp(
                    i64::try_from(m.timestamp).unwrap_or(i64::MAX),
                    0,
                ),
                event_uid: None,
                // Signed ballots carry no reason (the typed data has no field for one).
                reason: None,
                at: now,
            })
            .await?;
        let replaced = match recorded {
            VoteRecorded::Stale { current } => return Err(GovernanceError::Replayed { current }),
            VoteRecorded::Replaced => true,
            VoteRecorded::Inserted => false,
        };
        let tally = self.recount(&p, now).await?;
        info!(proposal = %p.id, voter = %m.voter, power, replaced, "vote recorded");
        self.changed(p.id.clone());
        Ok(VoteReceipt {
            proposal_id: p.id,
            voter: m.voter.clone(),
            power,
            replaced,
            tally,
        })
    }

    /// Recounts a proposal from its stored votes (every origin) and stores the tally.
    pub async fn recount(
        &self,
        p: &proposals::Model,
        now: DateTime<Utc>,
    ) -> Result<TallyResult, GovernanceError> {
        let result = self.count(p).await?;
        let rows: Vec<(i32, u128, i32)> = result
            .per_choice
            .iter()
            .zip(&result.voters_per_choice)
            .enumerate()
            .map(|(i, (power, voters))| (i as i32, *power, *voters as i32))
            .collect();
        self.store.replace_tally(&p.id, &rows, now).await?;
        Ok(result)
    }

    /// The tally of a proposal computed from its stored votes (nothing written).
    pub async fn count(&self, p: &proposals::Model) -> Result<TallyResult, GovernanceError> {
        let votes = self.store.votes(&p.id).await?;
        let voting_type = voting_type_of(p)?;
        // One vote per address across origins: an address that voted on chain and off-chain
        // counts once, with its chain vote.
        let address = |voter: &str| {
            voter
                .rsplit(':')
                .next()
                .unwrap_or(voter)
                .to_ascii_lowercase()
        };
        let on_chain: std::collections::HashSet<String> = votes
            .iter()
            .filter(|v| v.origin != OFFCHAIN)
            .map(|v| address(&v.voter))
            .collect();
        // A stored vote that does not parse fails the count: it is never silently left out.
        let ballots: Vec<(u128, Choice)> = votes
            .iter()
            .filter(|v| v.origin != OFFCHAIN || !on_chain.contains(&address(&v.voter)))
            .map(|v| {
                let choice = serde_json::from_value::<Choice>(v.choice.clone()).map_err(|e| {
                    GovernanceError::Corrupt(format!(
                        "choice of {}'s vote on proposal {}: {e}",
                        v.voter, p.id
                    ))
                })?;
                Ok((stored_u128(&p.id, "vote power", &v.power)?, choice))
            })
            .collect::<Result<_, GovernanceError>>()?;
        let threshold_bps = u32::try_from(p.threshold_bps).unwrap_or(10_000);
        let quorum = stored_u128(&p.id, "quorum", &p.quorum)?;
        let strategy: Strategy = serde_json::from_value(p.strategy.clone())
            .map_err(|e| GovernanceError::Chain(format!("stored strategy of {}: {e}", p.id)))?;
        let rule = match strategy {
            Strategy::Chain { chain, .. } => match chain.family() {
                Some(ChainFamily::Evm) => OutcomeRule::GovernorSimple,
                Some(ChainFamily::Cometbft) => OutcomeRule::CosmosGov,
                _ => OutcomeRule::AyeOverNay,
            },
            _ => OutcomeRule::ShareOfFirst { threshold_bps },
        };
        Ok(tally(
            voting_type,
            choices_of(p)?.len(),
            &ballots,
            quorum,
            threshold_bps,
        )
        .decided_by(rule, quorum))
    }

    /// Checks that an action can be applied to this relay as configured now.
    pub fn check_action(&self, a: &RelayAction) -> Result<(), GovernanceError> {
        a.validate().map_err(GovernanceError::InvalidAction)?;
        match a {
            RelayAction::PauseCorridor { corridor, .. }
            | RelayAction::SetCorridorFee { corridor, .. }
            | RelayAction::SetCorridorCap { corridor, .. } => {
                if self
                    .routing
                    .read(|router, _| router.corridor(corridor).is_none())
                {
                    return Err(GovernanceError::InvalidAction(format!(
                        "no corridor `{corridor}`"
                    )));
                }
            }
            RelayAction::FeedReferenceRate { asset, rate } => {
                self.routing
                    .reference_rate_of(asset, rate)
                    .map_err(|e| GovernanceError::InvalidAction(e.to_string()))?;
            }
            RelayAction::ListAsset { .. } | RelayAction::Sanction { .. } => {}
        }
        Ok(())
    }

    /// Whether `a` weakens compliance: lifts a sanction, raises a corridor's cap, or values an
    /// asset anew in the limits' reference unit (a lower value loosens every limit; such
    /// proposals wait longer and need a supermajority).
    pub fn weakens_compliance(&self, a: &RelayAction) -> bool {
        match a {
            RelayAction::Sanction { listed, .. } => !listed,
            RelayAction::FeedReferenceRate { .. } => true,
            RelayAction::SetCorridorCap {
                corridor,
                daily_cap,
            } => {
                let new: Option<u128> = daily_cap.parse().ok();
                self.routing.read(|router, _| {
                    match (router.corridor(corridor), new) {
                        (Some(c), Some(new)) => new > c.daily_cap.0,
                        // Unknown corridor or cap: refused by check_action; count it as raising.
                        _ => true,
                    }
                })
            }
            RelayAction::PauseCorridor { .. }
            | RelayAction::SetCorridorFee { .. }
            | RelayAction::ListAsset { .. } => false,
        }
    }

    /// All voting power under `strategy`: the members, or each token's `totalSupply` at its
    /// snapshot block (read when a proposal is created, so that block is the chain's latest).
    pub async fn total_power(&self, strategy: &Strategy) -> Result<u128, GovernanceError> {
        match strategy {
            Strategy::Members { members } => Ok(members.len() as u128),
            Strategy::Chain { .. } => Ok(0),
            Strategy::Tokens { tokens } => {
                let mut total = 0u128;
                for t in tokens {
                    // The supply at the end of the snapshot block, read at that block: the
                    // same for balances and for votes (every token counted, delegated or not,
                    // as a Governor's quorum counts it).
                    let data = ethers::utils::id("totalSupply()").to_vec();
                    let out = self.token_call(t, data, Some(t.block)).await?;
                    let supply = U256::from_big_endian(&out);
                    total = total.saturating_add(supply.try_into().unwrap_or(u128::MAX));
                }
                Ok(total)
            }
        }
    }

    /// Executes a queued proposal: every action, audited, or none.
    async fn execute(
        &self,
        p: &proposals::Model,
        now: DateTime<Utc>,
    ) -> Result<ProposalState, GovernanceError> {
        let actions = actions_of(p)?;
        if let Some(bad) = actions.iter().find_map(|a| self.check_action(a).err()) {
            // Like a reverting Governor execution, nothing is applied; unlike it, the proposal
            // does not wait for its grace period to pass in vain.
            self.store
                .record_audit(&AuditEntry {
                    actor: ACTOR.into(),
                    action: "governance.execution_failed".into(),
                    subject: format!("proposal:{}", p.id),
                    details: json!({"error": bad.to_string()}),
                })
                .await?;
            self.store
                .set_proposal_state(&p.id, &p.state, ProposalState::Canceled.as_str(), None, now)
                .await?;
            warn!(proposal = %p.id, error = %bad, "proposal not executable; canceled");
            return Ok(ProposalState::Canceled);
        }
        // Every action, with its audit entry, stored first in one transaction; then the changes
        // applied. A failed write changes nothing; a crash after it is made good at start-up,
        // which applies the stored relay parameters.
        let changes: Vec<(RelayAction, AuditEntry)> = actions
            .iter()
            .map(|a| {
                let audit = AuditEntry {
                    actor: ACTOR.into(),
                    action: "governance.execute".into(),
                    subject: format!("proposal:{}", p.id),
                    details: json!({"proposal": p.id, "action": a, "description": a.describe()}),
                };
                (a.clone(), audit)
            })
            .collect();
        self.store.change_relay_parameters(&changes, now).await?;
        for a in &actions {
            self.routing
                .apply(a, u64::try_from(now.timestamp()).unwrap_or(0))
                .map_err(|e| GovernanceError::InvalidAction(e.to_string()))?;
            info!(proposal = %p.id, action = %a.describe(), "governance action applied");
        }
        self.store
            .set_proposal_state(&p.id, &p.state, ProposalState::Executed.as_str(), None, now)
            .await?;
        Ok(ProposalState::Executed)
    }

    /// Mirrors governance events ingested from chains (a Governor's proposals, votes, queueing
    /// and execution; Cosmos gov; Substrate referenda) into proposals and votes.
    pub async fn mirror(&self, now: DateTime<Utc>) -> Result<usize, GovernanceError> {
        let mut cursor = self.mirrored.lock().await;
        let events = self.store.governance_events_after(*cursor, 500).await?;
        let mut touched = std::collections::BTreeSet::new();
        for e in &events {
            *cursor = e.id;
            let Ok(payload) = serde_json::from_value::<EventPayload>(e.payload.clone()) else {
                continue;
            };
            let Ok(chain) = e.chain_id.parse::<ChainId>() else {
                continue;
            };
            match payload {
                EventPayload::ProposalSubmitted {
                    proposal_id,
                    proposer,
                    proposal_type,
                    messages,
                    values,
                    description,
                    vote_start,
                    vote_end,
                } => {
                    let id = mirrored_id(&chain, &proposal_id);
                    let text = description.unwrap_or_default();
                    let title = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| l.trim_start_matches('#').trim().to_owned())
                        .unwrap_or_else(|| format!("Proposal {proposal_id} on {chain}"));
                    let strategy = Strategy::Chain {
                        chain: chain.clone(),
                        contract: (chain.family() == Some(ChainFamily::Evm))
                            .then(|| e.contract.clone()),
                        vote_start,
                        vote_end,
                        schedule: None,
                    };
                    self.store
                        .create_proposal(&NewProposal {
                            id: id.clone(),
                            space: self.config.space.clone(),
                            origin: chain.to_string(),
                            origin_ref: Some(proposal_id.clone()),
                            proposer: proposer.map(|p| p.to_string()).unwrap_or_default(),
                            title,
                            body: text,
                            choices: chain_choices(&chain).iter().map(|c| c.to_string()).collect(),
                            voting_type: chain_voting_type(&chain).as_str().into(),
                            strategy: serde_json::to_value(&strategy).unwrap_or_default(),
                            start_at: now,
                            // The chain decides when voting ends (`vote_end`, in its timepoints);
                            // the node's clock does not move mirrored proposals.
                            end_at: now + chrono::Duration::days(365),
                            quorum: 0,
                            threshold_bps: self.config.threshold_bps,
                            actions: json!(messages
                                .iter()
                                .enumerate()
                                .map(|(i, m)| {
                                    let mut call = json!({"kind": "chain_call", "call": m, "type": proposal_type});
                                    if let Some(v) = values.get(i) {
                                        call["value"] = json!(v);
                                    }
                                    call
                                })
                                .collect::<Vec<_>>()),
                            state: ProposalState::Active.as_str().into(),
                            created_at: now,
                        })
                        .await?;
                    touched.insert(id);
                }
                EventPayload::VoteCast {
                    proposal_id,
                    voter,
                    options,
                    power,
                    reason,
                } => {
                    let id = mirrored_id(&chain, &proposal_id);
                    let Some(choice) = chain_choice(&chain, &options) else {
                        warn!(proposal = %id, ?options, "chain vote with options this node cannot map; skipped");
                        continue;
                    };
                    let Some(voter) = voter else { continue };
                    // A power the chain reported that does not fit is skipped with a warning (the
                    // event stays stored), never counted as zero.
                    let power = match power.as_deref().map(str::parse::<u128>) {
                        None => 1,
                        Some(Ok(p)) => p,
                        Some(Err(_)) => {
                            warn!(proposal = %id, power = ?power, "chain vote with a power this node cannot read; skipped");
                            continue;
                        }
                    };
                    if self.store.proposal(&id).await?.is_none() {
                        continue;
                    }
                    self.store
                        .record_vote(&NewVote {
                            proposal_id: id.clone(),
                            voter: voter.to_string(),
                            origin: chain.to_string(),
                            choice: serde_json::to_value(&choice).unwrap_or_default(),
                            power,
                            signature: None,
                            // Chain order: a later vote event replaces an earlier one.
                            sequence: e.id,
                            signed_at: None,
                            reason,
                            event_uid: Some(e.uid.clone()),
                            at: now,
                        })
                        .await?;
                    touched.insert(id);
                }
                EventPayload::ProposalStateChanged {
                    proposal_id,
                    state,
                    eta,
                } => {
                    let id = mirrored_id(&chain, &proposal_id);
                    if let Some(p) = self.store.proposal(&id).await? {
                        let eta = eta.and_then(|t| DateTime::from_timestamp(t as i64, 0));
                        self.store
                            .set_proposal_state(&id, &p.state, &state, eta, now)
                            .await?;
                        touched.insert(id);
                    }
                }
                EventPayload::ProposalEnded {
                    proposal_id,
                    result,
                } => {
                    let id = mirrored_id(&chain, &proposal_id);
                    if let Some(p) = self.store.proposal(&id).await? {
                        let to = if result.contains("pass") || result == "confirmed" {
                            ProposalState::Succeeded
                        } else {
                            ProposalState::Defeated
                        };
                        self.store
                            .set_proposal_state(&id, &p.state, to.as_str(), None, now)
                            .await?;
                        touched.insert(id);
                    }
                }
                _ => {}
            }
        }
        for id in &touched {
            if let Some(p) = self.store.proposal(id).await? {
                self.recount(&p, now).await?;
            }
            self.changed(id.clone());
        }
        Ok(events.len())
    }

    /// Moves every open proposal along the clock and executes the ones due; returns the moves.
    pub async fn tick(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, ProposalState)>, GovernanceError> {
        self.mirror(now).await?;
        let open = self
            .store
            .proposals_in_states(&["pending", "active", "succeeded", "queued"])
            .await?;
        let mut moved = Vec::new();
        for p in open {
            // Mirrored proposals move with their chain, not with this node's clock.
            if p.origin != OFFCHAIN {
                self.refresh_schedule(&p, now).await?;
                if p.quorum == "0" {
                    if let Some(quorum) = self.governor_quorum(&p).await {
                        self.store.set_proposal_quorum(&p.id, quorum, now).await?;
                        self.changed(p.id.clone());
                    }
                }
                if let Some(to) = self.governor_state(&p).await {
                    if to.as_str() != p.state
                        && self
                            .store
                            .set_proposal_state(&p.id, &p.state, to.as_str(), None, now)
                            .await?
                    {
                        moved.push((p.id.clone(), to));
                        self.changed(p.id.clone());
                    }
                }
                continue;
            }
            let state = ProposalState::parse(&p.state).unwrap_or(ProposalState::Canceled);
            let life = self.lifecycle(&p)?;
            if state == ProposalState::Queued && life.executable(p.eta, now) {
                let to = self.execute(&p, now).await?;
                moved.push((p.id.clone(), to));
                self.changed(p.id.clone());
                continue;
            }
            let passed = if now >= p.end_at {
                self.recount(&p, now).await?.passed
            } else {
                false
            };
            if let Some((to, eta)) = life.next(state, now, passed, p.eta) {
                if self
                    .store
                    .set_proposal_state(&p.id, &p.state, to.as_str(), eta, now)
                    .await?
                {
                    info!(proposal = %p.id, from = %p.state, to = to.as_str(), "proposal state changed");
                    moved.push((p.id.clone(), to));
                    self.changed(p.id.clone());
                }
            }
        }
        Ok(moved)
    }

    /// Calls `signature` (one `uint256` argument, `arg`) on the Governor that runs mirrored
    /// proposal `p`; `None` for a proposal of no Governor (or of a chain this node does not
    /// read), and `Err` with the RPC's error when the call fails.
    async fn call_governor(
        &self,
        p: &proposals::Model,
        signature: &str,
        arg: Option<U256>,
    ) -> Option<Result<ethers::types::Bytes, String>> {
        let Ok(Strategy::Chain {
            chain,
            contract: Some(contract),
            ..
        }) = serde_json::from_value::<Strategy>(p.strategy.clone())
        else {
            return None;
        };
        let provider = self.providers.get(&chain)?;
        let governor: Address = contract.parse().ok()?;
        let mut data = ethers::utils::id(signature).to_vec();
        if let Some(arg) = arg {
            let mut word = [0u8; 32];
            arg.to_big_endian(&mut word);
            data.extend(word);
        }
        let call: ethers::types::transaction::eip2718::TypedTransaction =
            TransactionRequest::new().to(governor).data(data).into();
        Some(
            provider
                .call("eth_call", |p| {
                    let call = call.clone();
                    async move { p.call(&call, None).await }
                })
                .await
                .map_err(|e| e.to_string()),
        )
    }

    /// Sets a mirrored Governor proposal's voting times from its chain (see
    /// [`crate::chain_clock`]) until both are the chain's own. A chain that cannot be read now
    /// leaves them as they are (tried again next tick).
    async fn refresh_schedule(
        &self,
        p: &proposals::Model,
        now: DateTime<Utc>,
    ) -> Result<(), GovernanceError> {
        let Ok(Strategy::Chain {
            chain,
            contract: Some(contract),
            vote_start: Some(vote_start),
            vote_end: Some(vote_end),
            schedule,
        }) = serde_json::from_value::<Strategy>(p.strategy.clone())
        else {
            return Ok(());
        };
        if schedule.is_some_and(|s| s.start_exact && s.end_exact) {
            return Ok(());
        }
        let Some(provider) = self.providers.get(&chain) else {
            return Ok(());
        };
        // ERC-6372: a Governor without CLOCK_MODE() counts blocks.
        let clock = match self.call_governor(p, "CLOCK_MODE()", None).await {
            Some(Ok(out)) => ethers::abi::decode(&[ethers::abi::ParamType::String], &out)
                .ok()
                .and_then(|t| t.into_iter().next()?.into_string())
                .and_then(|s| ClockMode::parse(&s))
                .unwrap_or(ClockMode::BlockNumber),
            _ => ClockMode::BlockNumber,
        };
        let block_time = |n: Option<u64>| async move {
            let id = n.map_or(BlockNumber::Latest, |n| BlockNumber::Number(n.into()));
            provider
                .call(
                    "eth_getBlockByNumber",
                    |p| async move { p.get_block(id).await },
                )
                .await
                .ok()
                .flatten()
                .and_then(|b| Some((b.number?.as_u64(), b.timestamp.try_into().ok()?)))
        };
        let times = match clock {
            ClockMode::Timestamp => {
                let (Some(start), Some(end)) = (from_seconds(vote_start), from_seconds(vote_end))
                else {
                    warn!(proposal = %p.id, vote_start, vote_end, "voting timepoints out of range");
                    return Ok(());
                };
                Some(((start, true), (end, true)))
            }
            ClockMode::BlockNumber => {
                let Some((head, head_time)) = block_time(None).await else {
                    return Ok(());
                };
                let earlier = head.saturating_sub(BLOCK_TIME_SAMPLE_BLOCKS_MAX);
                let clock = match block_time(Some(earlier)).await {
                    Some((n, t)) => BlockClock::measured(head, head_time, n, t),
                    None => None,
                }
                .unwrap_or(BlockClock {
                    head,
                    head_time,
                    block_time_ms: 0,
                });
                let mut at = Vec::with_capacity(2);
                for n in [vote_start, vote_end] {
                    let known = if n <= head {
                        block_time(Some(n))
                            .await
                            .and_then(|(_, t)| from_seconds(t))
                            .map(|t| (t, true))
                    } else {
                        clock.estimate(n).map(|t| (t, false))
                    };
                    let Some(known) = known else { return Ok(()) };
                    at.push(known);
                }
                Some((at[0], at[1]))
            }
        };
        let Some(((start_at, start_exact), (end_at, end_exact))) = times else {
            return Ok(());
        };
        let strategy = Strategy::Chain {
            chain,
            contract: Some(contract),
            vote_start: Some(vote_start),
            vote_end: Some(vote_end),
            schedule: Some(ChainSchedule {
                clock,
                start_exact,
                end_exact,
            }),
        };
        let strategy = serde_json::to_value(&strategy)
            .map_err(|e| GovernanceError::Chain(format!("strategy: {e}")))?;
        if self
            .store
            .set_proposal_schedule(&p.id, start_at, end_at, strategy, now)
            .await?
        {
            self.changed(p.id.clone());
        }
        Ok(())
    }

    /// A mirrored Governor proposal's state as the contract reports it (`state(uint256)`), which
    /// knows what no event announces: voting opened, ended defeated or succeeded, expired.
    async fn governor_state(&self, p: &proposals::Model) -> Option<ProposalState> {
        let id = U256::from_dec_str(p.origin_ref.as_deref()?).ok()?;
        let out = match self.call_governor(p, "state(uint256)", Some(id)).await? {
            Ok(out) => out,
            Err(e) => {
                warn!(proposal = %p.id, error = %e, "cannot read the Governor's proposal state");
                return None;
            }
        };
        use ProposalState::*;
        // IGovernor.ProposalState, in declaration order.
        [
            Pending, Active, Canceled, Defeated, Succeeded, Queued, Expired, Executed,
        ]
        .get(usize::from(*out.last()?))
        .copied()
    }

    /// A mirrored Governor proposal's quorum as the contract states it at the proposal's
    /// snapshot (`quorum(voteStart)`); `None` before voting opened (the Governor cannot look up
    /// a timepoint that has not passed) or when the chain cannot be read (tried again next tick).
    async fn governor_quorum(&self, p: &proposals::Model) -> Option<u128> {
        let Ok(Strategy::Chain {
            vote_start: Some(vote_start),
            ..
        }) = serde_json::from_value::<Strategy>(p.strategy.clone())
        else {
            return None;
        };
        let out = match self
            .call_governor(p, "quorum(uint256)", Some(U256::from(vote_start)))
            .await?
        {
            Ok(out) => out,
            Err(e) => {
                debug!(proposal = %p.id, error = %e, "the Governor's quorum is not readable yet");
                return None;
            }
        };
        if out.len() != 32 {
            warn!(proposal = %p.id, bytes = out.len(), "the Governor answered quorum() with something other than one word");
            return None;
        }
        u128::try_from(U256::from_big_endian(&out)).ok()
    }

    /// Runs [`Governance::tick`] every `interval` until `shutdown`.
    pub async fn run(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.tick(Utc::now()).await {
                warn!(error = %e, "governance tick failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// `bps` basis points of `total`, rounded up (a quorum is never rounded down to nothing).
fn share_rounded_up(total: u128, bps: u32) -> u128 {
    let bps = u128::from(bps.min(10_000));
    // total * bps / 10 000 without overflow: split total into quotient and remainder.
    let (q, r) = (total / 10_000, total % 10_000);
    q * bps + (r * bps).div_ceil(10_000)
}

#[cfg(test)]
mod tests {
    use super::share_rounded_up;

    #[test]
    fn a_quorum_share_rounds_up_and_never_overflows() {
        assert_eq!(share_rounded_up(3, 1_000), 1);
        assert_eq!(share_rounded_up(10, 1_000), 1);
        assert_eq!(share_rounded_up(11, 1_000), 2);
        assert_eq!(share_rounded_up(0, 1_000), 0);
        assert_eq!(
            share_rounded_up(400 * 10u128.pow(18), 400),
            16 * 10u128.pow(18)
        );
        assert_eq!(share_rounded_up(u128::MAX, 10_000), u128::MAX);
        assert_eq!(share_rounded_up(7, 20_000), 7);
    }
}
