use sea_orm::entity::prelude::*;

/// A row of `relay_parameters`. The latest change of one relay parameter.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "relay_parameters")]
pub struct Model {
    /// `corridor:<id>:paused`, `asset:<id>`, `sanction:<address>`, …
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub parameter: String,
    /// The change, a `meridian_types::RelayAction` as JSON text.
    #[sea_orm(column_type = "Text")]
    pub action: String,
    #[sea_orm(column_type = "Text")]
    pub actor: String,
    pub changed_at: DateTimeUtc,
    /// Orders changes across parameters: applied at start-up in this order.
    pub revision: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
