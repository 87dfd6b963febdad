use sea_orm::entity::prelude::*;

/// A row of `settlement_batches`. Settlement batches run by the executor, one DB transaction each.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "settlement_batches")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `"executing"` | `"committed"` | `"failed"`.
    #[sea_orm(column_type = "Text")]
    pub state: String,
    pub size: i32,
    pub started_at: DateTimeUtc,
    pub committed_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary")]
    pub summary: Option<Json>,
    /// The batch's postings, encoded (`posting_journal`); NULL for batches stored before
    /// migration 19, whose postings are rows of `postings`.
    #[sea_orm(column_type = "Blob", nullable)]
    pub journal: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::postings::Entity")]
    Postings,
}

impl Related<super::postings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Postings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
