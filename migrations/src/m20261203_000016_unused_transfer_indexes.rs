//! Drops two indexes of `transfers` that no query reads but every write pays for (issue 14:
//! fewer and narrower writes per transfer):
//! - `idx_transfers_state`: every read by state goes through `idx_transfers_state_created_at`
//!   (migration 13), whose first column is the state; the old index only doubled the index
//!   writes of each state change.
//! - `idx_transfers_source_chain`: nothing selects transfers by source chain.
//!
//! `down` creates both again.

use sea_orm_migration::prelude::*;

const IDX_TRANSFERS_STATE: &str = "idx_transfers_state";
const IDX_TRANSFERS_SOURCE_CHAIN: &str = "idx_transfers_source_chain";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [IDX_TRANSFERS_STATE, IDX_TRANSFERS_SOURCE_CHAIN] {
            manager
                .drop_index(Index::drop().name(name).table(Transfers::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in [
            (IDX_TRANSFERS_STATE, Transfers::State),
            (IDX_TRANSFERS_SOURCE_CHAIN, Transfers::SourceChain),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Transfers::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    State,
    SourceChain,
}
