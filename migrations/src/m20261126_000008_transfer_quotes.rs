//! Transfers keep the quote they were accepted on: every hop's corridor, amounts, fee and rate,
//! and the expiry. Settlement posts exactly what was quoted, never a re-priced route.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Transfers::Table)
                    .add_column(json_binary_null(Transfers::Quote))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Transfers::Table)
                    .drop_column(Transfers::Quote)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Quote,
}
