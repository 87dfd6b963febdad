use sea_orm::entity::prelude::*;

/// A row of `chain_events`. Normalised chain events, unique by event id (`uid`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chain_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The event id string (chain, block, hash, tx, log index).
    #[sea_orm(unique, column_type = "Text")]
    pub uid: String,
    #[sea_orm(column_type = "Text")]
    pub chain_id: String,
    pub block_number: i64,
    #[sea_orm(column_type = "Text")]
    pub block_hash: String,
    #[sea_orm(column_type = "Text")]
    pub tx_hash: String,
    pub log_index: i32,
    #[sea_orm(column_type = "Text")]
    pub contract: String,
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    /// `"decoded"` | `"undecodable"` | `"retracted"`.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub error: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    pub ingested_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::chains::Entity",
        from = "Column::ChainId",
        to = "super::chains::Column::Id",
        on_update = "NoAction",
        on_delete = "Cascade"
    )]
    Chains,
}

impl Related<super::chains::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Chains.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
