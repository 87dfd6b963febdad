//! A vote's reason, as its chain recorded it (a Governor's `castVoteWithReason`, the reason of
//! `VoteCast`/`VoteCastWithParams`): DAO members read why others voted (issue 17). NULL for votes
//! without one, and for every vote stored before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Votes::Table)
                    .add_column(text_null(Votes::Reason))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Votes::Table)
                    .drop_column(Votes::Reason)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Votes {
    Table,
    Reason,
}
