//! Transfers in one state, oldest first, read through an index: the settler and delivery take
//! `WHERE state = ? ORDER BY created_at, id LIMIT n` for every batch. With an index on `state`
//! alone the database sorts every transfer in that state each time; with (state, created_at, id)
//! it reads the first n in order (issue 14: every per-transfer cost bounded whatever the history).

use sea_orm_migration::prelude::*;

const IDX_TRANSFERS_STATE_AGE: &str = "idx_transfers_state_created_at";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(IDX_TRANSFERS_STATE_AGE)
                    .table(Transfers::Table)
                    .col(Transfers::State)
                    .col(Transfers::CreatedAt)
                    .col(Transfers::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_TRANSFERS_STATE_AGE)
                    .table(Transfers::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    State,
    CreatedAt,
}
