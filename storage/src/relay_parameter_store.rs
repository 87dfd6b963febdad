//! The relay parameters in force: the latest change of each pause, fee, cap, listing and
//! sanction, whoever made it (an operator, a passed proposal), stored as a typed
//! [`RelayAction`]. A change and its audit entry are written in one transaction, so the audit
//! log and what a restarted node applies can never disagree.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use meridian_types::RelayAction;

use crate::entities::{audit_log, relay_parameters};
use crate::transfer_store::{audit_row, AuditEntry};
use crate::{StorageError, Store};

/// A relay parameter's latest change.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayParameter {
    /// The change.
    pub action: RelayAction,
    /// Who made it (`operator:<key name>`, `governance`).
    pub actor: String,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Position among all changes: every change gets a higher one than the changes committed
    /// before it (nodes follow each other's changes by it).
    pub revision: i64,
}

impl Store {
    /// Records `changes`, each with its audit entry, in one transaction: the parameters in force
    /// and the audit log change together or not at all.
    pub async fn change_relay_parameters(
        &self,
        changes: &[(RelayAction, AuditEntry)],
        at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let (_gate, txn) = self.begin_write().await?;
        if self.backend() == crate::Backend::Postgres {
            // Several nodes may change parameters at once: one change at a time, so revisions
            // rise in commit order and a node that has seen revision n has seen every change
            // below it. (SQLite has one writer.)
            txn.execute_unprepared("LOCK TABLE relay_parameters IN SHARE ROW EXCLUSIVE MODE")
                .await?;
        }
        audit_log::Entity::insert_many(changes.iter().map(|(_, audit)| audit_row(audit)))
            .exec_without_returning(&txn)
            .await?;
        let last: Option<Option<i64>> = relay_parameters::Entity::find()
            .select_only()
            .expr(Expr::col(relay_parameters::Column::Revision).max())
            .into_tuple()
            .one(&txn)
            .await?;
        let mut revision = last.flatten().unwrap_or(0);
        for (action, audit) in changes {
            revision += 1;
            let json = serde_json::to_string(action).map_err(|e| StorageError::Corrupt {
                table: "relay_parameters",
                message: format!("{}: {e}", action.parameter()),
            })?;
            relay_parameters::Entity::insert(relay_parameters::ActiveModel {
                parameter: Set(action.parameter()),
                action: Set(json),
                actor: Set(audit.actor.clone()),
                changed_at: Set(at),
                revision: Set(revision),
            })
            .on_conflict(
                OnConflict::column(relay_parameters::Column::Parameter)
                    .update_columns([
                        relay_parameters::Column::Action,
                        relay_parameters::Column::Actor,
                        relay_parameters::Column::ChangedAt,
                        relay_parameters::Column::Revision,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Every parameter's latest change, in the order they were made. A stored change that does
    /// not parse is an error: a node must not start with part of its parameters silently lost.
    pub async fn relay_parameters(&self) -> Result<Vec<RelayParameter>, StorageError> {
        self.relay_parameters_since(i64::MIN).await
    }

    /// The parameters changed after revision `seen`, in the order they were made.
    pub async fn relay_parameters_since(
        &self,
        seen: i64,
    ) -> Result<Vec<RelayParameter>, StorageError> {
        relay_parameters::Entity::find()
            .filter(relay_parameters::Column::Revision.gt(seen))
            .order_by_asc(relay_parameters::Column::Revision)
            .order_by_asc(relay_parameters::Column::Parameter)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|row| {
                let action = serde_json::from_str::<RelayAction>(&row.action).map_err(|e| {
                    StorageError::Corrupt {
                        table: "relay_parameters",
                        message: format!("{}: `{}`: {e}", row.parameter, row.action),
                    }
                })?;
                if action.parameter() != row.parameter {
                    return Err(StorageError::Corrupt {
                        table: "relay_parameters",
                        message: format!(
                            "{}: holds a change of {} instead",
                            row.parameter,
                            action.parameter()
                        ),
                    });
                }
                Ok(RelayParameter {
                    action,
                    actor: row.actor,
                    changed_at: row.changed_at,
                    revision: row.revision,
                })
            })
            .collect()
    }
}
