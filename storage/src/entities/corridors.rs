use sea_orm::entity::prelude::*;

/// A row of `corridors`. Corridors (source asset -> destination asset) with fees and limits.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "corridors")]
pub struct Model {
    /// A name such as `"usdm-eurm"`.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub source_chain: String,
    #[sea_orm(column_type = "Text")]
    pub source_asset: String,
    #[sea_orm(column_type = "Text")]
    pub dest_chain: String,
    #[sea_orm(column_type = "Text")]
    pub dest_asset: String,
    pub fee_bps: i32,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub min_amount: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub max_amount: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub daily_cap: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub hold_threshold: Option<String>,
    pub paused: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::assets::Entity",
        from = "Column::SourceAsset",
        to = "super::assets::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    SourceAsset,
    #[sea_orm(
        belongs_to = "super::assets::Entity",
        from = "Column::DestAsset",
        to = "super::assets::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    DestAsset,
}

impl ActiveModelBehavior for ActiveModel {}
