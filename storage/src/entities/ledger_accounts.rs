use sea_orm::entity::prelude::*;

/// A row of `ledger_accounts`. Ledger accounts per (asset, owner, kind) with posted and pending balances.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(column_type = "Text")]
    pub asset_id: String,
    /// CAIP-10 account or a system name.
    #[sea_orm(column_type = "Text")]
    pub owner: String,
    /// `"user"` | `"escrow"` | `"liquidity"` | `"fee"` | `"suspense"`.
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    pub flags: i32,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub debits_posted: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub credits_posted: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub debits_pending: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub credits_pending: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
