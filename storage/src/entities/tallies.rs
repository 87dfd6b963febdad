use sea_orm::entity::prelude::*;

/// A row of `tallies`. Merged tallies per (proposal, choice) across all origins.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tallies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub proposal_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub choice: i32,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub power: String,
    pub voters: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::proposals::Entity",
        from = "Column::ProposalId",
        to = "super::proposals::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Proposals,
}

impl Related<super::proposals::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Proposals.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
