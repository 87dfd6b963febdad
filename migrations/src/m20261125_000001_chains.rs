//! Chains, their ingest checkpoints, recent block hashes (reorg detection) and normalised events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const IDX_CHAIN_EVENTS_CHAIN_BLOCK: &str = "idx_chain_events_chain_id_block_number";
const IDX_CHAIN_EVENTS_KIND: &str = "idx_chain_events_kind";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Chains::Table)
                    // CAIP-2 chain id, e.g. "eip155:31337".
                    .col(text(Chains::Id).primary_key())
                    .col(text(Chains::Name))
                    // "evm" | "substrate" | "cometbft"
                    .col(text(Chains::Family))
                    .col(big_integer_null(Chains::HeadHeight))
                    .col(text_null(Chains::HeadHash))
                    .col(big_integer_null(Chains::FinalizedHeight))
                    .col(timestamp_with_time_zone(Chains::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Checkpoints::Table)
                    .col(text(Checkpoints::ChainId).primary_key())
                    .col(big_integer(Checkpoints::Height))
                    .col(text_null(Checkpoints::BlockHash))
                    .col(timestamp_with_time_zone(Checkpoints::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_checkpoints_chain_id")
                            .from(Checkpoints::Table, Checkpoints::ChainId)
                            .to(Chains::Table, Chains::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // Recent block hashes, kept so an EVM watcher can find the common ancestor on a reorg.
        manager
            .create_table(
                Table::create()
                    .table(ChainBlocks::Table)
                    .col(text(ChainBlocks::ChainId))
                    .col(big_integer(ChainBlocks::Height))
                    .col(text(ChainBlocks::Hash))
                    .col(text_null(ChainBlocks::ParentHash))
                    .primary_key(
                        Index::create()
                            .col(ChainBlocks::ChainId)
                            .col(ChainBlocks::Height),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chain_blocks_chain_id")
                            .from(ChainBlocks::Table, ChainBlocks::ChainId)
                            .to(Chains::Table, Chains::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChainEvents::Table)
                    .col(big_integer(ChainEvents::Id).auto_increment().primary_key())
                    // The event id string (chain, block, hash, tx, index); unique so that
                    // re-ingesting an event is a no-op.
                    .col(text_uniq(ChainEvents::Uid))
                    .col(text(ChainEvents::ChainId))
                    .col(big_integer(ChainEvents::BlockNumber))
                    .col(text(ChainEvents::BlockHash))
                    .col(text(ChainEvents::TxHash))
                    .col(integer(ChainEvents::LogIndex))
                    .col(text(ChainEvents::Contract))
                    .col(text(ChainEvents::Kind))
                    // "decoded" | "undecodable" | "retracted"
                    .col(text(ChainEvents::Status))
                    .col(text_null(ChainEvents::Error))
                    .col(json_binary(ChainEvents::Payload))
                    .col(timestamp_with_time_zone(ChainEvents::IngestedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_chain_events_chain_id")
                            .from(ChainEvents::Table, ChainEvents::ChainId)
                            .to(Chains::Table, Chains::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_CHAIN_EVENTS_CHAIN_BLOCK)
                    .table(ChainEvents::Table)
                    .col(ChainEvents::ChainId)
                    .col(ChainEvents::BlockNumber)
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_CHAIN_EVENTS_KIND)
                    .table(ChainEvents::Table)
                    .col(ChainEvents::Kind)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_CHAIN_EVENTS_KIND)
                    .table(ChainEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_CHAIN_EVENTS_CHAIN_BLOCK)
                    .table(ChainEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ChainEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ChainBlocks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Checkpoints::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Chains::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Chains {
    Table,
    Id,
    Name,
    Family,
    HeadHeight,
    HeadHash,
    FinalizedHeight,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Checkpoints {
    Table,
    ChainId,
    Height,
    BlockHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChainBlocks {
    Table,
    ChainId,
    Height,
    Hash,
    ParentHash,
}

#[derive(DeriveIden)]
enum ChainEvents {
    Table,
    Id,
    Uid,
    ChainId,
    BlockNumber,
    BlockHash,
    TxHash,
    LogIndex,
    Contract,
    Kind,
    Status,
    Error,
    Payload,
    IngestedAt,
}
