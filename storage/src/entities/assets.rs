use sea_orm::entity::prelude::*;

/// A row of `assets`. Listed assets (CAIP-19 ids).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "assets")]
pub struct Model {
    /// CAIP-19 asset id.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub chain_id: String,
    #[sea_orm(column_type = "Text")]
    pub symbol: String,
    pub decimals: i16,
    /// `"cbdc"` | `"stablecoin"` | `"native"` | `"other"`.
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    pub listed: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
