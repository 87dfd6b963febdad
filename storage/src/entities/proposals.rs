use sea_orm::entity::prelude::*;

/// A row of `proposals`. Governance proposals, on-chain or off-chain.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "proposals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub space: String,
    /// `"offchain"` or a CAIP-2 chain id.
    #[sea_orm(column_type = "Text")]
    pub origin: String,
    /// The on-chain proposal id, when the origin is a chain.
    #[sea_orm(column_type = "Text")]
    pub origin_ref: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub proposer: String,
    #[sea_orm(column_type = "Text")]
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub choices: Json,
    #[sea_orm(column_type = "Text")]
    pub voting_type: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub strategy: Json,
    pub start_at: DateTimeUtc,
    pub end_at: DateTimeUtc,
    /// u128 base units as a decimal string.
    #[sea_orm(column_type = "Text")]
    pub quorum: String,
    pub threshold_bps: i32,
    #[sea_orm(column_type = "JsonBinary")]
    pub actions: Json,
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub eta: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::votes::Entity")]
    Votes,
    #[sea_orm(has_many = "super::tallies::Entity")]
    Tallies,
}

impl Related<super::votes::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Votes.def()
    }
}

impl Related<super::tallies::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tallies.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
