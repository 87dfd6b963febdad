use sea_orm::entity::prelude::*;

/// A row of `transfer_transitions`: one decision on a transfer (one or more steps), with its
/// reason and actor.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transfer_transitions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(column_type = "Text")]
    pub transfer_id: String,
    #[sea_orm(column_type = "Text")]
    pub from_state: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub to_state: String,
    #[sea_orm(column_type = "Text")]
    pub reason: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub actor: String,
    pub at: DateTimeUtc,
    /// States passed through between `from_state` and `to_state`, `>`-separated, each without
    /// a reason of its own (same actor and time); empty for a single step.
    #[sea_orm(column_type = "Text")]
    pub via: Option<String>,
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
}

impl Related<super::transfers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Transfers.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
