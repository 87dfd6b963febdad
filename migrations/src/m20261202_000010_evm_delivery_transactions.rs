//! EVM payouts are recorded before they are broadcast: the delivery holds the signer and the nonce
//! its transaction uses (one nonce per delivery, never reused: unique per chain and signer), and
//! `delivery_transactions` holds every signed transaction sent for it — the first and each
//! replacement at higher fees, with the same nonce — so the node only ever re-broadcasts or
//! replaces those, and decides from their receipts.

use sea_orm_migration::{prelude::*, schema::*};

const IDX_DELIVERIES_NONCE: &str = "idx_deliveries_chain_signer_nonce";
const IDX_DELIVERY_TRANSACTIONS_DELIVERY: &str = "idx_delivery_transactions_delivery_id";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(text_null(Deliveries::Signer))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .add_column(big_integer_null(Deliveries::Nonce))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(IDX_DELIVERIES_NONCE)
                    .table(Deliveries::Table)
                    .col(Deliveries::DestChain)
                    .col(Deliveries::Signer)
                    .col(Deliveries::Nonce)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeliveryTransactions::Table)
                    .col(
                        big_integer(DeliveryTransactions::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(big_integer(DeliveryTransactions::DeliveryId))
                    .col(text(DeliveryTransactions::TxHash).unique_key())
                    // The signed transaction, exactly as broadcast.
                    .col(binary(DeliveryTransactions::RawTx))
                    // Wei, decimal text (money-like: never a float).
                    .col(text(DeliveryTransactions::MaxFeePerGas))
                    .col(text(DeliveryTransactions::MaxPriorityFeePerGas))
                    .col(timestamp_with_time_zone(DeliveryTransactions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_transactions_delivery_id")
                            .from(
                                DeliveryTransactions::Table,
                                DeliveryTransactions::DeliveryId,
                            )
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(IDX_DELIVERY_TRANSACTIONS_DELIVERY)
                    .table(DeliveryTransactions::Table)
                    .col(DeliveryTransactions::DeliveryId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DeliveryTransactions::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_DELIVERIES_NONCE)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::Nonce)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Deliveries::Table)
                    .drop_column(Deliveries::Signer)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    DestChain,
    Signer,
    Nonce,
}

#[derive(DeriveIden)]
enum DeliveryTransactions {
    Table,
    Id,
    DeliveryId,
    TxHash,
    RawTx,
    MaxFeePerGas,
    MaxPriorityFeePerGas,
    CreatedAt,
}
