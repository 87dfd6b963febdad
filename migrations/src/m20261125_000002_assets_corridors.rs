//! Listed assets and the corridors (source asset -> destination asset) the relayer serves.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Assets::Table)
                    // CAIP-19 asset id, e.g. "eip155:1/erc20:0x…".
                    .col(text(Assets::Id).primary_key())
                    .col(text(Assets::ChainId))
                    .col(text(Assets::Symbol))
                    .col(small_integer(Assets::Decimals))
                    // "cbdc" | "stablecoin" | "native" | "other"
                    .col(text(Assets::Kind))
                    .col(boolean(Assets::Listed).default(true))
                    .col(timestamp_with_time_zone(Assets::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Amount columns (min/max/daily cap/hold threshold) are u128 base units stored as
        // TEXT decimal strings: SQLite has no 128-bit integer type.
        manager
            .create_table(
                Table::create()
                    .table(Corridors::Table)
                    // A name such as "usdm-eurm".
                    .col(text(Corridors::Id).primary_key())
                    .col(text(Corridors::SourceChain))
                    .col(text(Corridors::SourceAsset))
                    .col(text(Corridors::DestChain))
                    .col(text(Corridors::DestAsset))
                    .col(integer(Corridors::FeeBps))
                    .col(text(Corridors::MinAmount))
                    .col(text(Corridors::MaxAmount))
                    .col(text(Corridors::DailyCap))
                    .col(text_null(Corridors::HoldThreshold))
                    .col(boolean(Corridors::Paused).default(false))
                    .col(timestamp_with_time_zone(Corridors::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_corridors_source_asset")
                            .from(Corridors::Table, Corridors::SourceAsset)
                            .to(Assets::Table, Assets::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_corridors_dest_asset")
                            .from(Corridors::Table, Corridors::DestAsset)
                            .to(Assets::Table, Assets::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Corridors::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Assets::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Assets {
    Table,
    Id,
    ChainId,
    Symbol,
    Decimals,
    Kind,
    Listed,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Corridors {
    Table,
    Id,
    SourceChain,
    SourceAsset,
    DestChain,
    DestAsset,
    FeeBps,
    MinAmount,
    MaxAmount,
    DailyCap,
    HoldThreshold,
    Paused,
    UpdatedAt,
}
