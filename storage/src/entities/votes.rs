use sea_orm::entity::prelude::*;

/// A row of `votes`. Votes, one per (proposal, voter, origin); a later vote replaces the earlier one.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "votes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(column_type = "Text")]
    pub proposal_id: String,
    #[sea_orm(column_type = "Text")]
    pub voter: String,
    #[sea_orm(column_type = "Text")]
    pub origin: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub choice: Json,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub power: String,
    #[sea_orm(column_type = "Text")]
    pub signature: Option<String>,
    /// Per-voter sequence of off-chain votes (replay protection).
    pub sequence: i64,
    pub signed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text")]
    pub event_uid: Option<String>,
    pub created_at: DateTimeUtc,
    /// The reason the voter gave, as its chain recorded it.
    #[sea_orm(column_type = "Text")]
    pub reason: Option<String>,
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
