use sea_orm::entity::prelude::*;

/// A row of `deliveries`. Deliveries of a transfer's result to the destination chain.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(column_type = "Text")]
    pub transfer_id: String,
    #[sea_orm(column_type = "Text")]
    pub dest_chain: String,
    #[sea_orm(column_type = "Text")]
    pub tx_hash: Option<String>,
    /// `"pending"` | `"submitted"` | `"included"` | `"finalized"` | `"failed"`.
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub attempts: i32,
    #[sea_orm(column_type = "Text")]
    pub last_error: Option<String>,
    pub submitted_at: Option<DateTimeUtc>,
    pub finalized_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
    /// Account-based chains: the last height the transaction can be included at.
    pub valid_until: Option<i64>,
    /// EVM chains: the signing address (0x, lower case) whose nonce the delivery uses.
    #[sea_orm(column_type = "Text")]
    pub signer: Option<String>,
    /// EVM chains: the nonce every transaction of this delivery carries.
    pub nonce: Option<i64>,
    /// EVM batches: the row that holds this transfer's payout (nonce and transactions), when it
    /// is another transfer's; NULL when this row is the payout.
    pub payout_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::transfers::Entity",
        from = "Column::TransferId",
        to = "super::transfers::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Transfers,
    #[sea_orm(has_many = "super::delivery_transactions::Entity")]
    DeliveryTransactions,
}

impl Related<super::delivery_transactions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DeliveryTransactions.def()
    }
}

impl Related<super::transfers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Transfers.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
