use sea_orm::entity::prelude::*;

/// A row of `remittance_inbox`: a stored remittance request with no transfer yet.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "remittance_inbox")]
pub struct Model {
    /// Insertion order (the order the intake takes requests in).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The request's `chain_events.uid`.
    #[sea_orm(unique, column_type = "Text")]
    pub event_uid: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
