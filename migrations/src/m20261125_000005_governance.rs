//! Governance: proposals (on-chain or off-chain), votes from every origin, and merged tallies.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UX_VOTES_PROPOSAL_VOTER_ORIGIN: &str = "ux_votes_proposal_id_voter_origin";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Quorum and voting power are u128 amounts stored as TEXT decimal strings (SQLite has
        // no 128-bit integer).
        manager
            .create_table(
                Table::create()
                    .table(Proposals::Table)
                    .col(text(Proposals::Id).primary_key())
                    .col(text(Proposals::Space))
                    // "offchain" or a CAIP-2 chain id.
                    .col(text(Proposals::Origin))
                    // The on-chain proposal id, when the origin is a chain.
                    .col(text_null(Proposals::OriginRef))
                    .col(text(Proposals::Proposer))
                    .col(text(Proposals::Title))
                    .col(text(Proposals::Body))
                    .col(json_binary(Proposals::Choices))
                    .col(text(Proposals::VotingType))
                    .col(json_binary(Proposals::Strategy))
                    .col(timestamp_with_time_zone(Proposals::StartAt))
                    .col(timestamp_with_time_zone(Proposals::EndAt))
                    .col(text(Proposals::Quorum))
                    .col(integer(Proposals::ThresholdBps))
                    .col(json_binary(Proposals::Actions))
                    .col(text(Proposals::State))
                    .col(timestamp_with_time_zone_null(Proposals::Eta))
                    .col(timestamp_with_time_zone(Proposals::CreatedAt))
                    .col(timestamp_with_time_zone(Proposals::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Votes::Table)
                    .col(big_integer(Votes::Id).auto_increment().primary_key())
                    .col(text(Votes::ProposalId))
                    .col(text(Votes::Voter))
                    .col(text(Votes::Origin))
                    .col(json_binary(Votes::Choice))
                    .col(text(Votes::Power))
                    .col(text_null(Votes::Signature))
                    // Per-voter sequence of off-chain votes (replay protection).
                    .col(big_integer(Votes::Sequence).default(0))
                    .col(timestamp_with_time_zone_null(Votes::SignedAt))
                    .col(text_null(Votes::EventUid))
                    .col(timestamp_with_time_zone(Votes::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_votes_proposal_id")
                            .from(Votes::Table, Votes::ProposalId)
                            .to(Proposals::Table, Proposals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // One vote per (proposal, voter, origin): a later vote replaces the earlier one.
        manager
            .create_index(
                Index::create()
                    .name(UX_VOTES_PROPOSAL_VOTER_ORIGIN)
                    .table(Votes::Table)
                    .col(Votes::ProposalId)
                    .col(Votes::Voter)
                    .col(Votes::Origin)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tallies::Table)
                    .col(text(Tallies::ProposalId))
                    .col(integer(Tallies::Choice))
                    .col(text(Tallies::Power))
                    .col(integer(Tallies::Voters))
                    .col(timestamp_with_time_zone(Tallies::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(Tallies::ProposalId)
                            .col(Tallies::Choice),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tallies_proposal_id")
                            .from(Tallies::Table, Tallies::ProposalId)
                            .to(Proposals::Table, Proposals::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tallies::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(UX_VOTES_PROPOSAL_VOTER_ORIGIN)
                    .table(Votes::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Votes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Proposals::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Proposals {
    Table,
    Id,
    Space,
    Origin,
    OriginRef,
    Proposer,
    Title,
    Body,
    Choices,
    VotingType,
    Strategy,
    StartAt,
    EndAt,
    Quorum,
    ThresholdBps,
    Actions,
    State,
    Eta,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Votes {
    Table,
    Id,
    ProposalId,
    Voter,
    Origin,
    Choice,
    Power,
    Signature,
    Sequence,
    SignedAt,
    EventUid,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tallies {
    Table,
    ProposalId,
    Choice,
    Power,
    Voters,
    UpdatedAt,
}
