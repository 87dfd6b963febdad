//! Proposals, votes and tallies. A vote replaces the same voter's earlier vote on the same
//! proposal and origin only with a higher sequence, checked and written under the write gate so
//! two nodes (or two requests) cannot both win.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entities::{chain_events, proposals, tallies, votes};
use crate::{StorageError, Store};

/// A proposal to store.
#[derive(Debug, Clone)]
pub struct NewProposal {
    /// Stable id (derived from its signature digest or its chain origin).
    pub id: String,
    /// DAO/space.
    pub space: String,
    /// `offchain` or a CAIP-2 chain id (mirrored from a Governor, referenda or gov module).
    pub origin: String,
    /// The proposal's id at its origin, for mirrored ones.
    pub origin_ref: Option<String>,
    /// Proposer (CAIP-10 or 0x address).
    pub proposer: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Choices.
    pub choices: Vec<String>,
    /// Voting type name.
    pub voting_type: String,
    /// How voting power is measured (strategy and snapshots), as JSON.
    pub strategy: serde_json::Value,
    /// Voting opens.
    pub start_at: DateTime<Utc>,
    /// Voting closes.
    pub end_at: DateTime<Utc>,
    /// Participation needed.
    pub quorum: u128,
    /// Share of "for" needed, in basis points.
    pub threshold_bps: u32,
    /// Relay actions, as JSON.
    pub actions: serde_json::Value,
    /// Initial state name.
    pub state: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A vote to record.
#[derive(Debug, Clone)]
pub struct NewVote {
    /// The proposal.
    pub proposal_id: String,
    /// The voter (0x address, lower case, or CAIP-10 for chain votes).
    pub voter: String,
    /// `offchain` or the chain it was cast on.
    pub origin: String,
    /// The choice, as JSON.
    pub choice: serde_json::Value,
    /// Voting power counted.
    pub power: u128,
    /// The EIP-712 signature, for off-chain votes.
    pub signature: Option<String>,
    /// Per-voter sequence (off-chain) — must exceed the stored one to replace it.
    pub sequence: i64,
    /// When it was signed.
    pub signed_at: Option<DateTime<Utc>>,
    /// The chain event it came from, for mirrored votes.
    pub event_uid: Option<String>,
    /// The reason the voter gave, if any (a Governor's `castVoteWithReason`).
    pub reason: Option<String>,
    /// When it was received.
    pub at: DateTime<Utc>,
}

/// What recording a vote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteRecorded {
    /// The voter's first vote here.
    Inserted,
    /// It replaced the voter's earlier vote.
    Replaced,
    /// A vote with this or a higher sequence is stored already: a replay, refused.
    Stale {
        /// The stored sequence.
        current: i64,
    },
}

impl Store {
    /// Stores a proposal; `false` when one with its id exists already (idempotent).
    pub async fn create_proposal(&self, p: &NewProposal) -> Result<bool, StorageError> {
        let turn = self.write_turn().await;
        let inserted = proposals::Entity::insert(proposals::ActiveModel {
            id: Set(p.id.clone()),
            space: Set(p.space.clone()),
            origin: Set(p.origin.clone()),
            origin_ref: Set(p.origin_ref.clone()),
            proposer: Set(p.proposer.clone()),
            title: Set(p.title.clone()),
            body: Set(p.body.clone()),
            choices: Set(serde_json::json!(p.choices)),
            voting_type: Set(p.voting_type.clone()),
            strategy: Set(p.strategy.clone()),
            start_at: Set(p.start_at),
            end_at: Set(p.end_at),
            quorum: Set(p.quorum.to_string()),
            threshold_bps: Set(p.threshold_bps as i32),
            actions: Set(p.actions.clone()),
            state: Set(p.state.clone()),
            eta: Set(None),
            created_at: Set(p.created_at),
            updated_at: Set(p.created_at),
        })
        .on_conflict(
            OnConflict::column(proposals::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(turn.conn())
        .await?;
        Ok(inserted > 0)
    }

    /// One proposal.
    pub async fn proposal(&self, id: &str) -> Result<Option<proposals::Model>, StorageError> {
        Ok(proposals::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await?)
    }

    /// The newest `limit` proposals.
    pub async fn proposals(&self, limit: u64) -> Result<Vec<proposals::Model>, StorageError> {
        Ok(proposals::Entity::find()
            .order_by_desc(proposals::Column::CreatedAt)
            .order_by_desc(proposals::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?)
    }

    /// Proposals in any of `states`.
    pub async fn proposals_in_states(
        &self,
        states: &[&str],
    ) -> Result<Vec<proposals::Model>, StorageError> {
        Ok(proposals::Entity::find()
            .filter(proposals::Column::State.is_in(states.iter().copied()))
            .order_by_asc(proposals::Column::CreatedAt)
            .all(self.connection())
            .await?)
    }

    /// Moves a proposal from `from` to `to` (with its execution time, once queued); `false`
    /// when it was no longer in `from`.
    pub async fn set_proposal_state(
        &self,
        id: &str,
        from: &str,
        to: &str,
        eta: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let mut update = proposals::Entity::update_many()
            .col_expr(proposals::Column::State, Expr::value(to))
            .col_expr(proposals::Column::UpdatedAt, Expr::value(at));
        if let Some(eta) = eta {
            update = update.col_expr(proposals::Column::Eta, Expr::value(eta));
        }
        let r = update
            .filter(proposals::Column::Id.eq(id))
            .filter(proposals::Column::State.eq(from))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(r.rows_affected > 0)
    }

    /// Sets the quorum of proposal `id` (a mirrored proposal's, read from its chain).
    pub async fn set_proposal_quorum(
        &self,
        id: &str,
        quorum: u128,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let r = proposals::Entity::update_many()
            .col_expr(proposals::Column::Quorum, Expr::value(quorum.to_string()))
            .col_expr(proposals::Column::UpdatedAt, Expr::value(at))
            .filter(proposals::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(r.rows_affected > 0)
    }

    /// Sets a mirrored proposal's voting times and the strategy that says how they were found;
    /// returns whether anything changed.
    pub async fn set_proposal_schedule(
        &self,
        id: &str,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        strategy: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let r = proposals::Entity::update_many()
            .col_expr(proposals::Column::StartAt, Expr::value(start_at))
            .col_expr(proposals::Column::EndAt, Expr::value(end_at))
            .col_expr(proposals::Column::Strategy, Expr::value(strategy.clone()))
            .col_expr(proposals::Column::UpdatedAt, Expr::value(at))
            .filter(proposals::Column::Id.eq(id))
            .filter(
                proposals::Column::StartAt
                    .ne(start_at)
                    .or(proposals::Column::EndAt.ne(end_at))
                    .or(proposals::Column::Strategy.ne(strategy)),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(r.rows_affected > 0)
    }

    /// A fingerprint of each proposal that ends after `since` or changed after it: its state,
    /// last update, quorum, and its votes' count and sequences. Nodes of a cluster compare them
    /// between polls to see proposal changes another node made (a replaced vote raises the
    /// sequences, a new one the count).
    pub async fn proposal_fingerprints(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let backend = self.connection().get_database_backend();
        let sql = "SELECT p.id AS id, p.state || '|' || CAST(p.updated_at AS TEXT) || '|' || \
             p.quorum || '|' || \
             CAST((SELECT COUNT(*) FROM votes v WHERE v.proposal_id = p.id) AS TEXT) || '|' || \
             CAST((SELECT COALESCE(SUM(v.sequence), 0) FROM votes v WHERE v.proposal_id = p.id) \
             AS TEXT) AS print FROM proposals p WHERE p.end_at > $1 OR p.updated_at > $1 \
             ORDER BY p.id";
        let sql = match backend {
            sea_orm::DbBackend::Postgres => sql.to_owned(),
            _ => sql.replace("$1", "?1"),
        };
        self.connection()
            .query_all(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [since.into()],
            ))
            .await?
            .iter()
            .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "print")?)))
            .collect()
    }

    /// Records a vote, replacing the voter's earlier one only if its sequence is higher.
    pub async fn record_vote(&self, v: &NewVote) -> Result<VoteRecorded, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let existing = votes::Entity::find()
            .filter(votes::Column::ProposalId.eq(&v.proposal_id))
            .filter(votes::Column::Voter.eq(&v.voter))
            .filter(votes::Column::Origin.eq(&v.origin))
            .one(&txn)
            .await?;
        let outcome = match &existing {
            Some(e) if e.sequence >= v.sequence => {
                return Ok(VoteRecorded::Stale {
                    current: e.sequence,
                })
            }
            Some(_) => VoteRecorded::Replaced,
            None => VoteRecorded::Inserted,
        };
        let row = votes::ActiveModel {
            proposal_id: Set(v.proposal_id.clone()),
            voter: Set(v.voter.clone()),
            origin: Set(v.origin.clone()),
            choice: Set(v.choice.clone()),
            power: Set(v.power.to_string()),
            signature: Set(v.signature.clone()),
            sequence: Set(v.sequence),
            signed_at: Set(v.signed_at),
            event_uid: Set(v.event_uid.clone()),
            created_at: Set(v.at),
            reason: Set(v.reason.clone()),
            ..Default::default()
        };
        match existing {
            Some(e) => {
                votes::Entity::update_many()
                    .col_expr(votes::Column::Choice, Expr::value(v.choice.clone()))
                    .col_expr(votes::Column::Power, Expr::value(v.power.to_string()))
                    .col_expr(votes::Column::Signature, Expr::value(v.signature.clone()))
                    .col_expr(votes::Column::Sequence, Expr::value(v.sequence))
                    .col_expr(votes::Column::SignedAt, Expr::value(v.signed_at))
                    .col_expr(votes::Column::EventUid, Expr::value(v.event_uid.clone()))
                    .col_expr(votes::Column::CreatedAt, Expr::value(v.at))
                    .col_expr(votes::Column::Reason, Expr::value(v.reason.clone()))
                    .filter(votes::Column::Id.eq(e.id))
                    .exec(&txn)
                    .await?;
            }
            None => {
                votes::Entity::insert(row)
                    .exec_without_returning(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(outcome)
    }

    /// Decoded governance events (proposals, votes, state changes) ingested after row `after`,
    /// oldest first: what the engine mirrors from chains.
    pub async fn governance_events_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<chain_events::Model>, StorageError> {
        Ok(chain_events::Entity::find()
            .filter(chain_events::Column::Id.gt(after))
            .filter(chain_events::Column::Kind.is_in([
                "proposal_submitted",
                "vote_cast",
                "proposal_state_changed",
                "proposal_ended",
            ]))
            .filter(chain_events::Column::Status.eq("decoded"))
            .order_by_asc(chain_events::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?)
    }

    /// Every vote on a proposal, oldest first.
    pub async fn votes(&self, proposal_id: &str) -> Result<Vec<votes::Model>, StorageError> {
        Ok(votes::Entity::find()
            .filter(votes::Column::ProposalId.eq(proposal_id))
            .order_by_asc(votes::Column::Id)
            .all(self.connection())
            .await?)
    }

    /// Replaces a proposal's stored tally: (choice, power, voters) per choice.
    pub async fn replace_tally(
        &self,
        proposal_id: &str,
        rows: &[(i32, u128, i32)],
        at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        tallies::Entity::delete_many()
            .filter(tallies::Column::ProposalId.eq(proposal_id))
            .exec(&txn)
            .await?;
        if !rows.is_empty() {
            tallies::Entity::insert_many(rows.iter().map(|(choice, power, voters)| {
                tallies::ActiveModel {
                    proposal_id: Set(proposal_id.to_owned()),
                    choice: Set(*choice),
                    power: Set(power.to_string()),
                    voters: Set(*voters),
                    updated_at: Set(at),
                }
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// A proposal's stored tally, by choice.
    pub async fn tally(&self, proposal_id: &str) -> Result<Vec<tallies::Model>, StorageError> {
        Ok(tallies::Entity::find()
            .filter(tallies::Column::ProposalId.eq(proposal_id))
            .order_by_asc(tallies::Column::Choice)
            .all(self.connection())
            .await?)
    }
}
