//! The double-entry ledger: accounts with posted/pending balances, settlement batches and
//! (two-phase) postings.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const UX_LEDGER_ACCOUNTS_ASSET_OWNER_KIND: &str = "ux_ledger_accounts_asset_id_owner_kind";
const IDX_POSTINGS_BATCH: &str = "idx_postings_batch_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Balances are u128 base units stored as TEXT decimal strings (SQLite has no 128-bit
        // integer); the storage layer parses them and does all arithmetic in Rust.
        manager
            .create_table(
                Table::create()
                    .table(LedgerAccounts::Table)
                    .col(
                        big_integer(LedgerAccounts::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text(LedgerAccounts::AssetId))
                    // CAIP-10 account or a system name.
                    .col(text(LedgerAccounts::Owner))
                    // "user" | "escrow" | "liquidity" | "fee" | "suspense"
                    .col(text(LedgerAccounts::Kind))
                    .col(integer(LedgerAccounts::Flags).default(0))
                    .col(text(LedgerAccounts::DebitsPosted).default("0"))
                    .col(text(LedgerAccounts::CreditsPosted).default("0"))
                    .col(text(LedgerAccounts::DebitsPending).default("0"))
                    .col(text(LedgerAccounts::CreditsPending).default("0"))
                    .col(timestamp_with_time_zone(LedgerAccounts::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(UX_LEDGER_ACCOUNTS_ASSET_OWNER_KIND)
                    .table(LedgerAccounts::Table)
                    .col(LedgerAccounts::AssetId)
                    .col(LedgerAccounts::Owner)
                    .col(LedgerAccounts::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SettlementBatches::Table)
                    .col(
                        big_integer(SettlementBatches::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    // "executing" | "committed" | "failed"
                    .col(text(SettlementBatches::State))
                    .col(integer(SettlementBatches::Size))
                    .col(timestamp_with_time_zone(SettlementBatches::StartedAt))
                    .col(timestamp_with_time_zone_null(
                        SettlementBatches::CommittedAt,
                    ))
                    .col(json_binary_null(SettlementBatches::Summary))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Postings::Table)
                    // Client-chosen id: posting the same id twice is idempotent.
                    .col(text(Postings::Id).primary_key())
                    .col(big_integer_null(Postings::BatchId))
                    .col(big_integer(Postings::DebitAccountId))
                    .col(big_integer(Postings::CreditAccountId))
                    .col(text(Postings::AssetId))
                    // u128 base units as a TEXT decimal string.
                    .col(text(Postings::Amount))
                    // For post/void of a pending posting: the id of that pending posting.
                    .col(text_null(Postings::PendingId))
                    .col(integer(Postings::Flags).default(0))
                    // "pending" | "posted" | "voided" | "expired"
                    .col(text(Postings::State))
                    .col(timestamp_with_time_zone_null(Postings::TimeoutAt))
                    .col(timestamp_with_time_zone(Postings::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_postings_batch_id")
                            .from(Postings::Table, Postings::BatchId)
                            .to(SettlementBatches::Table, SettlementBatches::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_postings_debit_account_id")
                            .from(Postings::Table, Postings::DebitAccountId)
                            .to(LedgerAccounts::Table, LedgerAccounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_postings_credit_account_id")
                            .from(Postings::Table, Postings::CreditAccountId)
                            .to(LedgerAccounts::Table, LedgerAccounts::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_POSTINGS_BATCH)
                    .table(Postings::Table)
                    .col(Postings::BatchId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_POSTINGS_BATCH)
                    .table(Postings::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Postings::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SettlementBatches::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(UX_LEDGER_ACCOUNTS_ASSET_OWNER_KIND)
                    .table(LedgerAccounts::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(LedgerAccounts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum LedgerAccounts {
    Table,
    Id,
    AssetId,
    Owner,
    Kind,
    Flags,
    DebitsPosted,
    CreditsPosted,
    DebitsPending,
    CreditsPending,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SettlementBatches {
    Table,
    Id,
    State,
    Size,
    StartedAt,
    CommittedAt,
    Summary,
}

#[derive(DeriveIden)]
enum Postings {
    Table,
    Id,
    BatchId,
    DebitAccountId,
    CreditAccountId,
    AssetId,
    Amount,
    PendingId,
    Flags,
    State,
    TimeoutAt,
    CreatedAt,
}
