//! The audit log: operator actions and executed governance changes to relay parameters.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

const IDX_AUDIT_LOG_SUBJECT: &str = "idx_audit_log_subject";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_integer(AuditLog::Id).auto_increment().primary_key())
                    .col(text(AuditLog::Actor))
                    .col(text(AuditLog::Action))
                    .col(text(AuditLog::Subject))
                    .col(json_binary(AuditLog::Details))
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name(IDX_AUDIT_LOG_SUBJECT)
                    .table(AuditLog::Table)
                    .col(AuditLog::Subject)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(IDX_AUDIT_LOG_SUBJECT)
                    .table(AuditLog::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Actor,
    Action,
    Subject,
    Details,
    At,
}
