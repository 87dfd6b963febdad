//! One history row per decision instead of one per step: a row may pass through intermediate
//! states (`via`, `>`-separated, in order) that carry no reason of their own, entered by the same
//! actor at the same moment. `requested → screened → quoted` is one row, `quoted → settling →
//! settled` another: two history rows per settled transfer instead of five (issue 14: fewer and
//! narrower rows per transfer). Rows written before keep `via` empty and read as before.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TransferTransitions::Table)
                    .add_column(text_null(TransferTransitions::Via))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(TransferTransitions::Table)
                    .drop_column(TransferTransitions::Via)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TransferTransitions {
    Table,
    Via,
}
