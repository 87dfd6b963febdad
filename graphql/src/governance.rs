//! Governance over GraphQL: proposals with live tallies, votes and voting power; EIP-712 signed
//! `createProposal` and `castVote`; proposal updates over graphql-ws.
//!
//! Mutations take the typed data exactly as the wallet signed it (`eth_signTypedData_v4`) and the
//! signature; refusals carry `extensions.code` (`SIGNER_MISMATCH`, `REPLAYED`, `AFTER_DEADLINE`,
//! …) so a voting page can tell members what went wrong.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use meridian_governance::{Governance, GovernanceError, Strategy};
use meridian_storage::entities::{proposals, votes};
use meridian_storage::Store;
use meridian_types::RelayAction;
use tokio::sync::broadcast::error::RecvError;

use crate::errors::storage_error;
use crate::json_value::JsonValue;

fn gov<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Arc<Governance>> {
    ctx.data::<Arc<Governance>>()
        .map_err(|_| async_graphql::Error::new("governance is not enabled on this node"))
}

fn refusal(e: GovernanceError) -> async_graphql::Error {
    if matches!(e, GovernanceError::Storage(_)) {
        tracing::error!(error = %e, "governance storage failure");
        return async_graphql::Error::new("internal error")
            .extend_with(|_, x| x.set("code", "INTERNAL"));
    }
    tracing::info!(code = e.code(), error = %e, "governance request refused");
    let code = e.code();
    async_graphql::Error::new(e.to_string()).extend_with(|_, x| x.set("code", code))
}

/// The EIP-712 domain ballots are signed under.
#[derive(SimpleObject)]
pub struct GovernanceDomain {
    /// `"Meridian"`.
    pub name: String,
    /// `"1"`.
    pub version: String,
    /// The chain id wallets sign for.
    pub chain_id: u64,
    /// The DAO's space.
    pub space: String,
    /// Shortest time between making a proposal and its vote opening (seconds; longer for
    /// proposals that weaken compliance: `sensitiveVotingDelayMinSecs`).
    pub voting_delay_min_secs: u64,
    /// Shortest vote (seconds).
    pub voting_period_min_secs: u64,
    /// Shortest delay for a proposal that lifts a sanction or raises a cap (seconds).
    pub sensitive_voting_delay_min_secs: u64,
    /// Voting power needed to propose (decimal string).
    pub proposal_threshold: String,
}

/// Power counted for one choice.
#[derive(SimpleObject)]
pub struct ChoiceTally {
    /// 0-based choice index.
    pub choice: i32,
    /// The choice's label.
    pub label: String,
    /// Power (decimal string).
    pub power: String,
    /// Voters who gave it power.
    pub voters: i32,
}

/// A proposal's tally.
#[derive(SimpleObject)]
pub struct Tally {
    /// Per choice.
    pub choices: Vec<ChoiceTally>,
    /// Power of everyone who voted (decimal string).
    pub participation: String,
    /// Number of voters.
    pub voters: i32,
    /// Whether the quorum is reached.
    pub quorum_reached: bool,
    /// Whether it passes as it stands.
    pub passed: bool,
}

/// One vote.
pub struct Vote(votes::Model);

#[Object]
impl Vote {
    /// The voter.
    async fn voter(&self) -> &str {
        &self.0.voter
    }
    /// `offchain` or the chain it was cast on.
    async fn origin(&self) -> &str {
        &self.0.origin
    }
    /// The choice as JSON (`0`, `[0,2]`, `[[0,70],[1,30]]`).
    async fn choice(&self) -> JsonValue {
        JsonValue(self.0.choice.clone())
    }
    /// Power counted (decimal string).
    async fn power(&self) -> &str {
        &self.0.power
    }
    /// The voter's sequence.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    /// The EIP-712 signature, for off-chain votes.
    async fn signature(&self) -> Option<&str> {
        self.0.signature.as_deref()
    }
    /// When it was signed.
    async fn signed_at(&self) -> Option<DateTime<Utc>> {
        self.0.signed_at
    }
    /// The reason the voter gave, as its chain recorded it (a Governor's
    /// `castVoteWithReason`); null when none was given.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
}

/// A governance proposal.
pub struct Proposal(pub proposals::Model);

/// An action as stored with a proposal: a change of this relay's parameters (off-chain
/// proposals), or a call its chain's governance would execute (mirrored proposals).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredAction {
    Relay(RelayAction),
    Chain(ChainCall),
}

/// `{"kind": "chain_call", "call": "<target>:<calldata>", "value": "<wei>", "type": …}`
/// (`value` is absent for chains that send none, and for calls mirrored before it was kept).
#[derive(serde::Deserialize)]
struct ChainCall {
    #[allow(dead_code)] // checked by serde: only `chain_call` is one
    kind: ChainCallKind,
    call: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChainCallKind {
    ChainCall,
}

impl StoredAction {
    fn describe(&self) -> String {
        match self {
            StoredAction::Relay(a) => a.describe(),
            StoredAction::Chain(c) => match c.value.as_deref() {
                Some(v) if v != "0" => {
                    format!("chain call {} sending {v} (native base units)", c.call)
                }
                _ => format!("chain call {}", c.call),
            },
        }
    }
}

impl Proposal {
    /// A stored JSON column read as `T`. One that does not parse is an internal error, logged
    /// with the proposal and the column, never an empty default shown as if it were the data.
    /// A mirrored proposal's schedule, once its chain was read.
    fn schedule(
        &self,
    ) -> async_graphql::Result<Option<meridian_governance::chain_clock::ChainSchedule>> {
        Ok(
            match self.stored::<Strategy>("strategy", &self.0.strategy)? {
                Strategy::Chain { schedule, .. } => schedule,
                _ => None,
            },
        )
    }

    fn stored<T: serde::de::DeserializeOwned>(
        &self,
        column: &'static str,
        value: &serde_json::Value,
    ) -> async_graphql::Result<T> {
        serde_json::from_value(value.clone()).map_err(|e| {
            tracing::error!(proposal = %self.0.id, column, error = %e, "stored proposal does not parse");
            crate::ErrorCode::Internal.error("internal error; see the node's log")
        })
    }
}

#[Object]
impl Proposal {
    /// Stable id.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// DAO/space.
    async fn space(&self) -> &str {
        &self.0.space
    }
    /// `offchain` or the chain it was mirrored from.
    async fn origin(&self) -> &str {
        &self.0.origin
    }
    /// Its id at its origin (the signed digest for off-chain ones).
    async fn origin_ref(&self) -> Option<&str> {
        self.0.origin_ref.as_deref()
    }
    /// Proposer.
    async fn proposer(&self) -> &str {
        &self.0.proposer
    }
    /// Title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Body (markdown).
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// Choices; for proposals with actions, choice 0 is "for".
    async fn choices(&self) -> async_graphql::Result<Vec<String>> {
        self.stored("choices", &self.0.choices)
    }
    /// `single_choice`, `approval`, `weighted` or `quadratic`.
    async fn voting_type(&self) -> &str {
        &self.0.voting_type
    }
    /// How voting power is measured (members, or tokens at snapshot blocks).
    async fn strategy(&self) -> JsonValue {
        JsonValue(self.0.strategy.clone())
    }
    /// OpenZeppelin Governor state, lower case.
    async fn state(&self) -> &str {
        &self.0.state
    }
    /// Voting opens. For a proposal mirrored from a Governor that counts blocks, a block not
    /// yet made is an estimate (`startEstimated`).
    async fn start_at(&self) -> DateTime<Utc> {
        self.0.start_at
    }
    /// Voting closes (an estimate when `endEstimated`).
    async fn end_at(&self) -> DateTime<Utc> {
        self.0.end_at
    }
    /// Whether `startAt` is estimated from the chain's block time rather than the chain's own.
    async fn start_estimated(&self) -> async_graphql::Result<bool> {
        Ok(self.schedule()?.is_some_and(|s| !s.start_exact))
    }
    /// Whether `endAt` is estimated from the chain's block time rather than the chain's own.
    async fn end_estimated(&self) -> async_graphql::Result<bool> {
        Ok(self.schedule()?.is_some_and(|s| !s.end_exact))
    }
    /// For a mirrored proposal, how its chain counts time (ERC-6372: `blocknumber` or
    /// `timestamp`) once read; null for off-chain proposals.
    async fn clock_mode(&self) -> async_graphql::Result<Option<&'static str>> {
        Ok(self.schedule()?.map(|s| s.clock.as_str()))
    }
    /// For a mirrored proposal, the chain's timepoint voting opens at (a block number or unix
    /// seconds, per `clockMode`), as a decimal string.
    async fn vote_start(&self) -> async_graphql::Result<Option<String>> {
        Ok(
            match self.stored::<Strategy>("strategy", &self.0.strategy)? {
                Strategy::Chain { vote_start, .. } => vote_start.map(|t| t.to_string()),
                _ => None,
            },
        )
    }
    /// For a mirrored proposal, the chain's timepoint voting closes at.
    async fn vote_end(&self) -> async_graphql::Result<Option<String>> {
        Ok(
            match self.stored::<Strategy>("strategy", &self.0.strategy)? {
                Strategy::Chain { vote_end, .. } => vote_end.map(|t| t.to_string()),
                _ => None,
            },
        )
    }
    /// Execution time, once queued.
    async fn eta(&self) -> Option<DateTime<Utc>> {
        self.0.eta
    }
    /// Participation needed (decimal string).
    async fn quorum(&self) -> &str {
        &self.0.quorum
    }
    /// Share of "for" needed, in basis points.
    async fn threshold_bps(&self) -> i32 {
        self.0.threshold_bps
    }
    /// What it changes if it passes.
    async fn actions(&self) -> JsonValue {
        JsonValue(self.0.actions.clone())
    }
    /// The actions in words.
    async fn action_descriptions(&self) -> async_graphql::Result<Vec<String>> {
        Ok(self
            .stored::<Vec<StoredAction>>("actions", &self.0.actions)?
            .iter()
            .map(StoredAction::describe)
            .collect())
    }
    /// The tally, computed from the stored votes of every origin.
    async fn tally(&self, ctx: &Context<'_>) -> async_graphql::Result<Tally> {
        let t = gov(ctx)?.count(&self.0).await.map_err(refusal)?;
        let labels: Vec<String> = self.stored("choices", &self.0.choices)?;
        Ok(Tally {
            choices: t
                .per_choice
                .iter()
                .zip(&t.voters_per_choice)
                .enumerate()
                .map(|(i, (p, v))| ChoiceTally {
                    choice: i as i32,
                    label: labels.get(i).cloned().unwrap_or_default(),
                    power: p.to_string(),
                    voters: *v as i32,
                })
                .collect(),
            participation: t.participation.to_string(),
            voters: t.voters as i32,
            quorum_reached: t.quorum_reached,
            passed: t.passed,
        })
    }
    /// The votes, oldest first.
    async fn votes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Vote>> {
        Ok(ctx
            .data::<Store>()?
            .votes(&self.0.id)
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(Vote)
            .collect())
    }
}

/// A recorded vote and the tally after it.
#[derive(SimpleObject)]
pub struct VoteResult {
    /// The proposal.
    pub proposal_id: String,
    /// The voter.
    pub voter: String,
    /// Power counted (decimal string).
    pub power: String,
    /// Whether it replaced the voter's earlier vote.
    pub replaced: bool,
    /// Power per choice after it (decimal strings).
    pub tally: Vec<String>,
}

/// Governance queries.
#[derive(Default)]
pub struct GovernanceQuery;

#[Object]
impl GovernanceQuery {
    /// The newest proposals.
    #[graphql(
        complexity = "(first.unwrap_or(crate::query::PAGE_SIZE_DEFAULT).clamp(1, crate::query::PAGE_SIZE_CEILING) as usize) * child_complexity + 1"
    )]
    async fn proposals(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Proposal>> {
        let first = crate::query::page_size(ctx, first)?;
        Ok(ctx
            .data::<Store>()?
            .proposals(first)
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(Proposal)
            .collect())
    }

    /// One proposal.
    async fn proposal(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Proposal>> {
        Ok(ctx
            .data::<Store>()?
            .proposal(&id)
            .await
            .map_err(storage_error)?
            .map(Proposal))
    }

    /// The voting power of `address` on proposal `proposal_id` (decimal string): what a signed
    /// vote by that address counts with. On a proposal mirrored from a chain that is this DAO's
    /// own power (members or tokens), as for every off-chain vote there.
    async fn voting_power(
        &self,
        ctx: &Context<'_>,
        proposal_id: String,
        address: String,
    ) -> async_graphql::Result<String> {
        let g = gov(ctx)?;
        let p = ctx
            .data::<Store>()?
            .proposal(&proposal_id)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| refusal(GovernanceError::NotFound(proposal_id.clone())))?;
        let strategy: Strategy = serde_json::from_value(p.strategy)
            .map_err(|e| async_graphql::Error::new(format!("stored strategy: {e}")))?;
        Ok(g.off_chain_power(&strategy, &address)
            .await
            .map_err(refusal)?
            .to_string())
    }

    /// The EIP-712 domain to sign ballots under, and the space.
    async fn governance_domain(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<GovernanceDomain> {
        let g = gov(ctx)?;
        let d = g.domain();
        Ok(GovernanceDomain {
            name: d.name.clone(),
            version: d.version.clone(),
            chain_id: d.chain_id,
            space: g.config().space.clone(),
            voting_delay_min_secs: g.config().voting_delay_min_secs,
            voting_period_min_secs: g.config().voting_period_min_secs,
            sensitive_voting_delay_min_secs: g.config().sensitive_voting_delay_min_secs,
            proposal_threshold: g.config().proposal_threshold.0.to_string(),
        })
    }
}

/// Governance mutations (signed by members; no API key).
#[derive(Default)]
pub struct GovernanceMutation;

#[Object]
impl GovernanceMutation {
    /// Creates a proposal from EIP-712 typed data (`Proposal` type) and its signature; the
    /// proposer needs the configured proposal threshold of voting power.
    async fn create_proposal(
        &self,
        ctx: &Context<'_>,
        typed_data: JsonValue,
        signature: String,
    ) -> async_graphql::Result<Proposal> {
        let p = gov(ctx)?
            .create_proposal(&typed_data.0, &signature, Utc::now())
            .await
            .map_err(refusal)?;
        Ok(Proposal(p))
    }

    /// Casts (or replaces, with a higher sequence) a vote from EIP-712 typed data (`Vote`
    /// type) and its signature.
    async fn cast_vote(
        &self,
        ctx: &Context<'_>,
        typed_data: JsonValue,
        signature: String,
    ) -> async_graphql::Result<VoteResult> {
        let r = gov(ctx)?
            .cast_vote(&typed_data.0, &signature, Utc::now())
            .await
            .map_err(refusal)?;
        Ok(VoteResult {
            proposal_id: r.proposal_id,
            voter: r.voter,
            power: r.power.to_string(),
            replaced: r.replaced,
            tally: r.tally.per_choice.iter().map(|p| p.to_string()).collect(),
        })
    }
}

/// Governance subscriptions.
#[derive(Default)]
pub struct GovernanceSubscription;

#[Subscription]
impl GovernanceSubscription {
    /// Each proposal as its state or tally changes, optionally only the one with `id`.
    async fn proposal_updates(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = Proposal>> {
        let rx = gov(ctx)?.subscribe();
        let store = ctx.data::<Store>()?.clone();
        Ok(futures::stream::unfold(
            (rx, store, id),
            |(mut rx, store, id)| async move {
                loop {
                    let changed = match rx.recv().await {
                        Ok(c) => c,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    if id.as_ref().is_some_and(|want| want != &changed) {
                        continue;
                    }
                    match store.proposal(&changed).await {
                        Ok(Some(p)) => return Some((Proposal(p), (rx, store, id))),
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "reading a changed proposal");
                            continue;
                        }
                    }
                }
            },
        ))
    }
}
