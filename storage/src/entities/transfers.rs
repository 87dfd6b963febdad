use sea_orm::entity::prelude::*;

/// A row of `transfers`. Transfers, one per remittance request; the id is derived from the source event id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transfers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(unique, column_type = "Text")]
    pub source_event_uid: String,
    #[sea_orm(column_type = "Text")]
    pub source_chain: String,
    #[sea_orm(column_type = "Text")]
    pub dest_chain: String,
    #[sea_orm(column_type = "Text")]
    pub source_asset: String,
    #[sea_orm(column_type = "Text")]
    pub dest_asset: String,
    #[sea_orm(column_type = "Text")]
    pub sender: String,
    #[sea_orm(column_type = "Text")]
    pub recipient: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub amount: String,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub dest_amount: Option<String>,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub fee: Option<String>,
    /// The quoted rate as a string (rational or fixed-point, never a float).
    #[sea_orm(column_type = "Text")]
    pub rate: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub corridor_id: Option<String>,
    pub deadline: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub batch_id: Option<i64>,
    /// The accepted quote: hops with corridor, amounts, fee and rate; expiry.
    pub quote: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::transfer_transitions::Entity")]
    TransferTransitions,
    #[sea_orm(has_many = "super::deliveries::Entity")]
    Deliveries,
}

impl Related<super::transfer_transitions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TransferTransitions.def()
    }
}

impl Related<super::deliveries::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deliveries.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
