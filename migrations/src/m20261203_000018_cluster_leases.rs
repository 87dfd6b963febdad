//! Several nodes, one relay (issue 15): `cluster_nodes`, one row per node start with its
//! heartbeat and the leases it can hold (comma-separated; nodes configured differently, e.g. a
//! signer on some only, split each lease among those that can hold it), and `leases`, one row per unit of work with one owner at a time (`settle`, `gov`,
//! `watch:<chain>`, `payout:<chain>`).
//!
//! Times are milliseconds since the Unix epoch read from the database's own clock, never a
//! node's: every node compares expiry against the same clock. A lease's `epoch` rises each time
//! it changes hands; a write the lease owns checks holder and epoch in its own transaction
//! (fencing), so a former holder that was paused or cut off can never commit after a new one
//! took over. `holder` is NULL once a lease was released.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterNodes::Table)
                    .col(text(ClusterNodes::Id).primary_key())
                    .col(text(ClusterNodes::Host))
                    .col(big_integer(ClusterNodes::Pid))
                    .col(big_integer(ClusterNodes::StartedAtMs))
                    .col(big_integer(ClusterNodes::HeartbeatAtMs))
                    .col(big_integer_null(ClusterNodes::StoppedAtMs))
                    .col(text(ClusterNodes::Leases).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Leases::Table)
                    .col(text(Leases::Name).primary_key())
                    .col(text_null(Leases::Holder))
                    .col(big_integer(Leases::Epoch))
                    .col(big_integer(Leases::AcquiredAtMs))
                    .col(big_integer(Leases::ExpiresAtMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Leases::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterNodes::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ClusterNodes {
    Table,
    Id,
    Host,
    Pid,
    StartedAtMs,
    HeartbeatAtMs,
    StoppedAtMs,
    Leases,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    Epoch,
    AcquiredAtMs,
    ExpiresAtMs,
}
