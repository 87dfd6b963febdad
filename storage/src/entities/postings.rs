use sea_orm::entity::prelude::*;

/// A row of `postings`. Ledger postings (two-phase: pending, then posted / voided / expired).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "postings")]
pub struct Model {
    /// Client-chosen idempotency id.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    pub batch_id: Option<i64>,
    pub debit_account_id: i64,
    pub credit_account_id: i64,
    #[sea_orm(column_type = "Text")]
    pub asset_id: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub amount: String,
    /// For post/void: the id of the pending posting it resolves.
    #[sea_orm(column_type = "Text")]
    pub pending_id: Option<String>,
    pub flags: i32,
    /// `"pending"` | `"posted"` | `"voided"` | `"expired"`.
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub timeout_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::settlement_batches::Entity",
        from = "Column::BatchId",
        to = "super::settlement_batches::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    SettlementBatches,
    #[sea_orm(
        belongs_to = "super::ledger_accounts::Entity",
        from = "Column::DebitAccountId",
        to = "super::ledger_accounts::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    DebitAccount,
    #[sea_orm(
        belongs_to = "super::ledger_accounts::Entity",
        from = "Column::CreditAccountId",
        to = "super::ledger_accounts::Column::Id",
        on_update = "NoAction",
        on_delete = "NoAction"
    )]
    CreditAccount,
}

impl Related<super::settlement_batches::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SettlementBatches.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
