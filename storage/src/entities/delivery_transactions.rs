use sea_orm::entity::prelude::*;

/// A row of `delivery_transactions`: one signed EVM transaction of a delivery, recorded before it
/// was broadcast (the first, then each same-nonce replacement).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_transactions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub delivery_id: i64,
    #[sea_orm(column_type = "Text", unique)]
    pub tx_hash: String,
    /// The signed transaction, exactly as broadcast.
    pub raw_tx: Vec<u8>,
    /// Wei, decimal.
    #[sea_orm(column_type = "Text")]
    pub max_fee_per_gas: String,
    /// Wei, decimal.
    #[sea_orm(column_type = "Text")]
    pub max_priority_fee_per_gas: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::deliveries::Entity",
        from = "Column::DeliveryId",
        to = "super::deliveries::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Deliveries,
}

impl Related<super::deliveries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deliveries.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
