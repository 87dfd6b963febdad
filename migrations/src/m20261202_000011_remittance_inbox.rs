//! The intake's inbox: one row per stored remittance request that has no transfer yet, written in
//! the ingest's transaction and removed in the transaction that creates the transfer. The intake
//! reads the inbox in insertion order instead of scanning every remittance ever stored, so
//! finding pending requests costs what is pending, not the history (issue 14).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RemittanceInbox::Table)
                    .col(
                        big_integer(RemittanceInbox::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text(RemittanceInbox::EventUid).unique_key())
                    .to_owned(),
            )
            .await?;
        // Requests stored before this migration that have no transfer yet.
        let taken = Query::select()
            .column(Transfers::SourceEventUid)
            .from(Transfers::Table)
            .to_owned();
        let pending = Query::select()
            .column(ChainEvents::Uid)
            .from(ChainEvents::Table)
            .and_where(Expr::col(ChainEvents::Kind).eq("remittance_requested"))
            .and_where(Expr::col(ChainEvents::Uid).not_in_subquery(taken))
            .order_by(ChainEvents::Id, Order::Asc)
            .to_owned();
        let backfill = Query::insert()
            .into_table(RemittanceInbox::Table)
            .columns([RemittanceInbox::EventUid])
            .select_from(pending)
            .map_err(|e| DbErr::Migration(e.to_string()))?
            .to_owned();
        manager.exec_stmt(backfill).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RemittanceInbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RemittanceInbox {
    Table,
    Id,
    EventUid,
}

#[derive(DeriveIden)]
enum ChainEvents {
    Table,
    Id,
    Uid,
    Kind,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    SourceEventUid,
}
