//! Connecting to SQLite or PostgreSQL and running migrations.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use meridian_migrations::Migrator;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::StorageError;

/// Upper bound on pooled connections; SQLite serialises writers anyway, PostgreSQL shares the
/// server with other nodes.
const POOL_CONNECTIONS_MAX: u32 = 16;
/// How long a caller waits for a pooled connection before giving up.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (default, zero set-up).
    Sqlite,
    /// PostgreSQL (production, several nodes).
    Postgres,
}

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Migration name.
    pub name: String,
    /// Applied to this database.
    pub applied: bool,
}

/// A handle on Meridian's database; cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where writes go. On a SQLite file: a pool of its own with one connection, so the page
    /// cache of the one writer stays warm (a write through any other connection makes every
    /// connection that cached pages drop its whole cache and read the pages again). On
    /// PostgreSQL and in-memory SQLite: the same pool as `db`.
    writer: DatabaseConnection,
    /// Ids of transfers whose state changed, announced after each commit (this process only;
    /// GraphQL subscriptions listen here).
    transfer_changes: tokio::sync::broadcast::Sender<String>,
    /// SQLite allows one writer; a transaction that reads first and then writes can fail with
    /// SQLITE_BUSY instead of waiting when another writer got in between. Multi-statement write
    /// transactions therefore queue here (on PostgreSQL the gate is never taken).
    write_gate: Arc<Mutex<()>>,
    /// Wakes the lifecycle stages when work for them was committed (this process only).
    wakeups: Arc<StageWakeups>,
    /// The lease every write transaction begun here is fenced by ([`Store::fenced`]).
    pub(crate) fence: Option<Arc<crate::Lease>>,
    /// Whether this process's own commits are announced to [`Store::transfer_changes`] at once
    /// (one node), or only through the database's change feed (several nodes: every node
    /// announces every change once, whichever node made it).
    announce_own: bool,
    /// Ledger accounts this process has seen stored: a settled batch naming only these needs
    /// no look-up to show that its accounts exist (postings carry no foreign keys, migration 7).
    pub(crate) known_accounts: Arc<std::sync::Mutex<std::collections::HashSet<i64>>>,
}

/// A stage of the transfer lifecycle that waits for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// New remittance requests were stored.
    Intake,
    /// Transfers changed state (some may be quoted, or failed and to be reversed).
    Settlement,
    /// Transfers changed state (some may be settled, rejected or retracted).
    Delivery,
}

/// One wake-up signal per stage. A signal sent while the stage is busy is kept (one permit), so
/// a stage never sleeps through work committed during its pass.
#[derive(Debug, Default)]
struct StageWakeups {
    intake: tokio::sync::Notify,
    settlement: tokio::sync::Notify,
    delivery: tokio::sync::Notify,
    /// This process committed a transfer change (the news other nodes of a cluster get).
    committed: tokio::sync::Notify,
}

/// The PostgreSQL advisory lock key nodes migrate under (`meridian` in ASCII).
const MIGRATION_LOCK: i64 = 0x6d65_7269_6469_616e;

/// Transfer changes kept for slow subscribers.
pub const TRANSFER_CHANGES_BUFFER: usize = 4_096;

impl Store {
    /// Connects to `url`; a SQLite file is created when missing (`mode=rwc` is added if absent).
    pub async fn connect(url: &str) -> Result<Store, StorageError> {
        let url = if url.starts_with("sqlite:") {
            if url.contains("mode=") || url.contains(":memory:") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.to_owned()
        } else {
            return Err(StorageError::UnsupportedUrl(url.to_owned()));
        };
        let in_memory = url.contains(":memory:");
        let db = Database::connect(pool_options(
            &url,
            if in_memory { 1 } else { POOL_CONNECTIONS_MAX },
        ))
        .await?;
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(Store::from_connection(db));
        }
        // WAL lets GraphQL readers run while a watcher writes. sqlx already turns on foreign
        // keys and a busy timeout for every pooled connection.
        // WAL is a property of the database file, so setting it once covers every connection.
        db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
        if in_memory {
            // Every connection to `:memory:` is a database of its own: one pool, one connection.
            return Ok(Store::from_connection(db));
        }
        let mut writer = pool_options(&url, 1);
        writer.min_connections(1);
        let writer = Database::connect(writer).await?;
        Ok(Store::with_writer(db, writer))
    }

    /// Connects with a single pooled connection, so that raw `BEGIN … COMMIT` sequences run on one
    /// session (the conventional-design benchmark baseline).
    pub async fn connect_single(url: &str) -> Result<Store, StorageError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(1)
            .min_connections(1)
            .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
            .sqlx_logging(false);
        Ok(Store::from_connection(Database::connect(opts).await?))
    }

    /// Wraps an existing connection (reads and writes share it).
    pub fn from_connection(db: DatabaseConnection) -> Store {
        Store::with_writer(db.clone(), db)
    }

    /// Reads through `db`, writes through `writer`.
    fn with_writer(db: DatabaseConnection, writer: DatabaseConnection) -> Store {
        Store {
            db,
            writer,
            write_gate: Arc::new(Mutex::new(())),
            transfer_changes: tokio::sync::broadcast::channel(TRANSFER_CHANGES_BUFFER).0,
            wakeups: Arc::default(),
            fence: None,
            announce_own: true,
            known_accounts: Arc::default(),
        }
    }

    /// Waits until work for `stage` was committed since it last waited (returns at once if some
    /// was committed meanwhile). Stages still poll on a timer too, for time-driven work.
    pub async fn work_for(&self, stage: Stage) {
        match stage {
            Stage::Intake => self.wakeups.intake.notified().await,
            Stage::Settlement => self.wakeups.settlement.notified().await,
            Stage::Delivery => self.wakeups.delivery.notified().await,
        }
    }

    /// Tells `stage` that work for it was committed.
    pub fn wake(&self, stage: Stage) {
        match stage {
            Stage::Intake => self.wakeups.intake.notify_one(),
            Stage::Settlement => self.wakeups.settlement.notify_one(),
            Stage::Delivery => self.wakeups.delivery.notify_one(),
        }
    }

    /// Transfer ids as their state changes, from now on. A receiver that falls more than
    /// [`TRANSFER_CHANGES_BUFFER`] behind skips the oldest (it is told it lagged).
    pub fn transfer_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.transfer_changes.subscribe()
    }

    pub(crate) fn announce_transfer(&self, id: &str) {
        self.wakeups.committed.notify_one();
        if self.announce_own {
            // No subscriber is not an error.
            let _ = self.transfer_changes.send(id.to_owned());
        }
        self.wake(Stage::Settlement);
        self.wake(Stage::Delivery);
    }

    /// Waits until this process commits a transfer change (returns at once if it did since the
    /// last wait): a node of a cluster tells the others.
    pub async fn committed_change(&self) {
        self.wakeups.committed.notified().await;
    }

    /// This store with changes announced only through [`Store::announce_stored_change`] (a
    /// node of a cluster, whose change feed reads every node's changes from the database).
    pub fn announcing_from_database(mut self) -> Store {
        self.announce_own = false;
        self
    }

    /// Announces a change of transfer `id` read from the database (made by any node), and wakes
    /// the stages that may have work from it.
    pub fn announce_stored_change(&self, id: &str) {
        let _ = self.transfer_changes.send(id.to_owned());
        self.wake(Stage::Settlement);
        self.wake(Stage::Delivery);
    }

    /// Queues a single-statement write behind multi-statement ones on SQLite: an autocommit
    /// write landing between another transaction's read and its write makes that transaction
    /// fail with SQLITE_BUSY_SNAPSHOT, which no busy timeout retries. The write runs on
    /// [`WriteTurn::conn`].
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        WriteTurn {
            _gate: match self.backend() {
                Backend::Sqlite => Some(self.write_gate.lock().await),
                Backend::Postgres => None,
            },
            conn: &self.writer,
        }
    }

    /// Begins a write transaction, queueing behind other writers on SQLite; on a fenced store
    /// the transaction first checks its lease (and fails with [`StorageError::Fenced`]).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<(Option<MutexGuard<'_, ()>>, sea_orm::DatabaseTransaction), StorageError> {
        use sea_orm::TransactionTrait;
        let guard = match self.backend() {
            Backend::Sqlite => Some(self.write_gate.lock().await),
            Backend::Postgres => None,
        };
        let txn = self.writer.begin().await?;
        if let Some(lease) = &self.fence {
            crate::lease_store::check_fence(&txn, lease).await?;
        }
        Ok((guard, txn))
    }

    /// The underlying connection, for crates' own tests and the migration CLI.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        match self.db.get_database_backend() {
            DbBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// Applies all pending migrations, all or none: a node killed or failing in the middle
    /// leaves the schema as it was, never half made. On PostgreSQL sea-orm-migration runs them
    /// in one transaction itself, and nodes starting together take turns (an advisory lock held
    /// by a transaction for the duration): the first applies them, the others then find
    /// nothing pending. On SQLite (whose DDL is transactional too) they run in one transaction
    /// here.
    pub async fn migrate_up(&self) -> Result<(), StorageError> {
        if self.backend() == Backend::Sqlite {
            use sea_orm::TransactionTrait;
            let txn = self.db.begin().await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await?;
            return Ok(());
        }
        let turn = self.migration_turn().await?;
        let migrated = Migrator::up(&self.db, None).await;
        Self::end_migration_turn(turn).await?;
        migrated?;
        Ok(())
    }

    /// On PostgreSQL, a transaction holding the migration lock: anything that may create
    /// sea-orm's own `seaql_migrations` table (applying migrations, even reading their status)
    /// runs while it is held, so nodes starting together never create it twice.
    async fn migration_turn(&self) -> Result<Option<sea_orm::DatabaseTransaction>, StorageError> {
        use sea_orm::TransactionTrait;
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let turn = self.db.begin().await?;
        turn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        Ok(Some(turn))
    }

    async fn end_migration_turn(
        turn: Option<sea_orm::DatabaseTransaction>,
    ) -> Result<(), StorageError> {
        if let Some(turn) = turn {
            turn.commit().await?;
        }
        Ok(())
    }

    /// Rolls back the last `steps` migrations (all when `None`).
    pub async fn migrate_down(&self, steps: Option<u32>) -> Result<(), StorageError> {
        Migrator::down(&self.db, steps).await?;
        Ok(())
    }

    /// Drops everything and applies all migrations again.
    pub async fn migrate_fresh(&self) -> Result<(), StorageError> {
        Migrator::fresh(&self.db).await?;
        Ok(())
    }

    /// Every known migration and whether it is applied here.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, StorageError> {
        let turn = self.migration_turn().await?;
        let pending = Migrator::get_pending_migrations(&self.db).await;
        Self::end_migration_turn(turn).await?;
        let pending: Vec<String> = pending?.iter().map(|m| m.name().to_owned()).collect();
        Ok(Migrator::migrations()
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: !pending.iter().any(|p| p == m.name()),
            })
            .collect())
    }

    /// Creates database `name` on this (PostgreSQL) server; for benchmarks and tests.
    pub async fn create_database(&self, name: &str) -> Result<(), StorageError> {
        check_db_name(name)?;
        self.db
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        self.db
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(())
    }

    /// How many bytes of write-ahead log the PostgreSQL server has written so far (its current
    /// WAL position), for measuring what a workload costs; `None` on SQLite.
    pub async fn wal_position(&self) -> Result<Option<u64>, StorageError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let row = self
            .db
            .query_one(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS position",
            ))
            .await?;
        let position: i64 = match row {
            Some(r) => r.try_get("", "position")?,
            None => return Ok(None),
        };
        Ok(u64::try_from(position).ok())
    }

    /// Drops database `name` on this (PostgreSQL) server, disconnecting its sessions.
    pub async fn drop_database(&self, name: &str) -> Result<(), StorageError> {
        check_db_name(name)?;
        self.db
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        Ok(())
    }

    /// Cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.db.ping().await?;
        Ok(())
    }
}

/// A writer's turn on the database (see [`Store::write_turn`]).
pub(crate) struct WriteTurn<'a> {
    _gate: Option<MutexGuard<'a, ()>>,
    conn: &'a DatabaseConnection,
}

impl WriteTurn<'_> {
    /// The connection the write goes through.
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        self.conn
    }
}

/// Pool options for `url` with at most `connections` connections.
fn pool_options(url: &str, connections: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(connections)
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .sqlx_logging(false)
        // SQLite's default page cache is 2 MiB: a settlement batch rewrites tens of thousands of
        // account rows, which then spill from the cache to the WAL in the middle of the
        // transaction and are read back. 64 MiB per connection keeps a batch in memory.
        // Checkpointing every 64 MiB of WAL instead of every 4 MiB: consecutive batches rewrite
        // mostly the same account pages, and one checkpoint writes each page once.
        .map_sqlx_sqlite_opts(|o| {
            o.pragma("cache_size", "-65536")
                .pragma("wal_autocheckpoint", "16384")
        });
    opts
}

/// Database names are interpolated into DDL, so only plain identifiers are accepted.
fn check_db_name(name: &str) -> Result<(), StorageError> {
    if !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(StorageError::UnsupportedUrl(format!(
            "database name `{name}`"
        )))
    }
}
