//! Batched EVM releases: one escrow transaction (`releaseBatch`) pays many transfers. The payout
//! — signer, nonce, and every transaction signed for it — stays on one `deliveries` row; each
//! other transfer of the batch gets a row of its own whose `payout_id` names that row (NULL: the
//! row is the payout itself, as every payout before this migration). A nonce still belongs to one
//! payout only (the unique index of migration 10), and a transfer finds its payout through its
//! own row.

use sea_orm_migration::{prelude::*, schema::*};

const IDX_DELIVERIES_PAYOUT: &str = "idx_deliveries_payout_id";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(big_integer_null(Deliveries::PayoutId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(IDX_DELIVERIES_PAYOUT)
                    .table(Deliveries::Table)
                    .col(Deliveries::PayoutId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_DELIVERIES_PAYOUT)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::PayoutId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    PayoutId,
}
