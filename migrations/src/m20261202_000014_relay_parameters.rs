//! Relay parameters in force: one row per parameter (`corridor:<id>:paused`, `corridor:<id>:fee_bps`,
//! `corridor:<id>:daily_cap`, `asset:<id>`, `sanction:<address>`) holding the latest change of it
//! — an operator's or a passed proposal's — as a typed action (JSON, `meridian_types::RelayAction`).
//! Written in the same transaction as the change's audit entry; read at start-up and applied in
//! `revision` order. Before this table the node re-applied what it found in the audit log by
//! action name (`corridor.pause`, `corridor.resume`, `governance.execute`): `up` carries those
//! entries over, so a node upgraded with a paused corridor keeps it paused.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RelayParameters::Table)
                    .col(
                        ColumnDef::new(RelayParameters::Parameter)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RelayParameters::Action).text().not_null())
                    .col(ColumnDef::new(RelayParameters::Actor).text().not_null())
                    .col(
                        ColumnDef::new(RelayParameters::ChangedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RelayParameters::Revision)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        carry_over_audited_changes(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RelayParameters::Table).to_owned())
            .await
    }
}

/// The parameter a stored action (as JSON) sets; `None` for one this migration does not know.
fn parameter_of(action: &serde_json::Value) -> Option<String> {
    let field = |name: &str| action.get(name).and_then(serde_json::Value::as_str);
    Some(match action.get("kind")?.as_str()? {
        "pause_corridor" => format!("corridor:{}:paused", field("corridor")?),
        "set_corridor_fee" => format!("corridor:{}:fee_bps", field("corridor")?),
        "set_corridor_cap" => format!("corridor:{}:daily_cap", field("corridor")?),
        "list_asset" => format!("asset:{}", action.get("asset")?.get("id")?.as_str()?),
        "sanction" => format!("sanction:{}", field("address")?.trim().to_lowercase()),
        _ => return None,
    })
}

/// Writes the latest audited change of each parameter: operators' pauses and resumes (their
/// corridor in the subject) and every action governance executed (in the entry's details).
async fn carry_over_audited_changes(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let rows = db
        .query_all(Statement::from_string(
            backend,
            "SELECT id, action, subject, CAST(details AS TEXT) AS details FROM audit_log \
             WHERE action IN ('corridor.pause', 'corridor.resume', 'governance.execute') \
             ORDER BY id",
        ))
        .await?;
    // Later rows replace earlier ones of the same parameter.
    let mut latest: std::collections::BTreeMap<String, (serde_json::Value, i64)> =
        std::collections::BTreeMap::new();
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let kind: String = row.try_get("", "action")?;
        let subject: String = row.try_get("", "subject")?;
        let details: String = row.try_get("", "details")?;
        let action = match kind.as_str() {
            "corridor.pause" | "corridor.resume" => {
                let Some(corridor) = subject.strip_prefix("corridor:") else {
                    continue;
                };
                serde_json::json!({
                    "kind": "pause_corridor",
                    "corridor": corridor,
                    "paused": kind == "corridor.pause",
                })
            }
            _ => {
                let details: serde_json::Value = serde_json::from_str(&details).map_err(|e| {
                    DbErr::Migration(format!("audit_log {id}: details are not JSON: {e}"))
                })?;
                match details.get("action") {
                    Some(action) => action.clone(),
                    None => continue,
                }
            }
        };
        let Some(parameter) = parameter_of(&action) else {
            continue;
        };
        latest.insert(parameter, (action, id));
    }
    // Actor and time are copied from the audit entry itself; its id orders the changes.
    for (parameter, (action, audit_id)) in latest {
        let entry = Query::select()
            .expr(Expr::val(parameter))
            .expr(Expr::val(action.to_string()))
            .column(AuditLog::Actor)
            .column(AuditLog::At)
            .column(AuditLog::Id)
            .from(AuditLog::Table)
            .and_where(Expr::col(AuditLog::Id).eq(audit_id))
            .to_owned();
        let insert = Query::insert()
            .into_table(RelayParameters::Table)
            .columns([
                RelayParameters::Parameter,
                RelayParameters::Action,
                RelayParameters::Actor,
                RelayParameters::ChangedAt,
                RelayParameters::Revision,
            ])
            .select_from(entry)
            .map_err(|e| DbErr::Migration(format!("carrying audit entry {audit_id} over: {e}")))?
            .to_owned();
        manager.exec_stmt(insert).await?;
    }
    Ok(())
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Actor,
    At,
}

#[derive(DeriveIden)]
enum RelayParameters {
    Table,
    Parameter,
    Action,
    Actor,
    ChangedAt,
    Revision,
}
