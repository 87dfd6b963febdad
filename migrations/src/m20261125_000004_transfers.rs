//! Transfers (one per remittance request), their state history and destination deliveries.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const IDX_TRANSFERS_STATE: &str = "idx_transfers_state";
const IDX_TRANSFERS_SOURCE_CHAIN: &str = "idx_transfers_source_chain";
const IDX_TRANSFER_TRANSITIONS_TRANSFER: &str = "idx_transfer_transitions_transfer_id";
const IDX_DELIVERIES_TRANSFER: &str = "idx_deliveries_transfer_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Amount, dest_amount and fee are u128 base units stored as TEXT decimal strings (SQLite
        // has no 128-bit integer); rate is a rational/fixed-point string, never a float.
        manager
            .create_table(
                Table::create()
                    .table(Transfers::Table)
                    // Derived deterministically from the source event id.
                    .col(text(Transfers::Id).primary_key())
                    // Unique: re-ingesting an event can never create a second transfer.
                    .col(text_uniq(Transfers::SourceEventUid))
                    .col(text(Transfers::SourceChain))
                    .col(text(Transfers::DestChain))
                    .col(text(Transfers::SourceAsset))
                    .col(text(Transfers::DestAsset))
                    .col(text(Transfers::Sender))
                    .col(text(Transfers::Recipient))
                    .col(text(Transfers::Amount))
                    .col(text_null(Transfers::DestAmount))
                    .col(text_null(Transfers::Fee))
                    .col(text_null(Transfers::Rate))
                    .col(text_null(Transfers::CorridorId))
                    .col(timestamp_with_time_zone_null(Transfers::Deadline))
                    .col(text(Transfers::State))
                    .col(big_integer_null(Transfers::BatchId))
                    .col(timestamp_with_time_zone(Transfers::CreatedAt))
                    .col(timestamp_with_time_zone(Transfers::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_TRANSFERS_STATE)
                    .table(Transfers::Table)
                    .col(Transfers::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_TRANSFERS_SOURCE_CHAIN)
                    .table(Transfers::Table)
                    .col(Transfers::SourceChain)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TransferTransitions::Table)
                    .col(
                        big_integer(TransferTransitions::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text(TransferTransitions::TransferId))
                    .col(text_null(TransferTransitions::FromState))
                    .col(text(TransferTransitions::ToState))
                    .col(text_null(TransferTransitions::Reason))
                    .col(text(TransferTransitions::Actor))
                    .col(timestamp_with_time_zone(TransferTransitions::At))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_transfer_transitions_transfer_id")
                            .from(TransferTransitions::Table, TransferTransitions::TransferId)
                            .to(Transfers::Table, Transfers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_TRANSFER_TRANSITIONS_TRANSFER)
                    .table(TransferTransitions::Table)
                    .col(TransferTransitions::TransferId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(big_integer(Deliveries::Id).auto_increment().primary_key())
                    .col(text(Deliveries::TransferId))
                    .col(text(Deliveries::DestChain))
                    .col(text_null(Deliveries::TxHash))
                    // "pending" | "submitted" | "included" | "finalized" | "failed"
                    .col(text(Deliveries::State))
                    .col(integer(Deliveries::Attempts).default(0))
                    .col(text_null(Deliveries::LastError))
                    .col(timestamp_with_time_zone_null(Deliveries::SubmittedAt))
                    .col(timestamp_with_time_zone_null(Deliveries::FinalizedAt))
                    .col(timestamp_with_time_zone(Deliveries::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deliveries_transfer_id")
                            .from(Deliveries::Table, Deliveries::TransferId)
                            .to(Transfers::Table, Transfers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_DELIVERIES_TRANSFER)
                    .table(Deliveries::Table)
                    .col(Deliveries::TransferId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_DELIVERIES_TRANSFER)
                    .table(Deliveries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Deliveries::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_TRANSFER_TRANSITIONS_TRANSFER)
                    .table(TransferTransitions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(TransferTransitions::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_TRANSFERS_SOURCE_CHAIN)
                    .table(Transfers::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_TRANSFERS_STATE)
                    .table(Transfers::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Transfers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    SourceEventUid,
    SourceChain,
    DestChain,
    SourceAsset,
    DestAsset,
    Sender,
    Recipient,
    Amount,
    DestAmount,
    Fee,
    Rate,
    CorridorId,
    Deadline,
    State,
    BatchId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TransferTransitions {
    Table,
    Id,
    TransferId,
    FromState,
    ToState,
    Reason,
    Actor,
    At,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    TransferId,
    DestChain,
    TxHash,
    State,
    Attempts,
    LastError,
    SubmittedAt,
    FinalizedAt,
    UpdatedAt,
}
