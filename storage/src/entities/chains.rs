use sea_orm::entity::prelude::*;

/// A row of `chains`. A configured chain, with its last seen head and finalized height.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chains")]
pub struct Model {
    /// CAIP-2 chain id, e.g. `eip155:31337`.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// `"evm"` | `"substrate"` | `"cometbft"`.
    #[sea_orm(column_type = "Text")]
    pub family: String,
    pub head_height: Option<i64>,
    #[sea_orm(column_type = "Text")]
    pub head_hash: Option<String>,
    pub finalized_height: Option<i64>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_one = "super::checkpoints::Entity")]
    Checkpoints,
    #[sea_orm(has_many = "super::chain_blocks::Entity")]
    ChainBlocks,
    #[sea_orm(has_many = "super::chain_events::Entity")]
    ChainEvents,
}

impl Related<super::checkpoints::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Checkpoints.def()
    }
}

impl Related<super::chain_blocks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ChainBlocks.def()
    }
}

impl Related<super::chain_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ChainEvents.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
