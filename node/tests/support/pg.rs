//! Throw-away PostgreSQL databases for integration tests.
//!
//! Every test gets its own database (`meridian_t_<pid>_<random>`) on the server named by
//! `MERIDIAN_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`), so tests run in
//! parallel without seeing each other's rows. The database is dropped by [`PgTestDb::cleanup`],
//! or on drop when a test panicked before reaching it.
//!
//! When the server is unreachable the PostgreSQL half of a test is skipped with a loud message,
//! except under CI (`CI` set and non-empty), where it fails: CI must never skip silently.

#![allow(dead_code)]

use std::time::Duration;

use rand::Rng;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

/// Server used when `MERIDIAN_TEST_PG_URL` is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long to wait for the server before deciding it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database created for one test.
#[derive(Debug)]
pub struct PgTestDb {
    /// URL of the new database.
    pub url: String,
    /// Its name.
    pub name: String,
    /// URL of the database the test database was created from (used to drop it).
    admin_url: String,
    dropped: bool,
}

/// The base URL tests connect to.
pub fn base_url() -> String {
    std::env::var("MERIDIAN_TEST_PG_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_owned())
}

#[path = "skip.rs"]
mod skip;

/// The base URL with its password masked, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn connect_admin(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(opts).await
}

/// Fails fast when nothing listens at the URL's host and port (the driver would retry until its
/// time-out); URLs without a host (Unix sockets) are left to the driver.
async fn probe_tcp(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Ok(());
    }
    let addrs = parsed
        .socket_addrs(|| Some(5432))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..])).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Creates a fresh, empty database; `None` (after a loud message) when PostgreSQL is not
/// reachable outside CI. Panics under CI when it is not reachable.
pub async fn fresh_pg_database() -> Option<PgTestDb> {
    let base = base_url();
    let connected = match probe_tcp(&base).await {
        Ok(()) => connect_admin(&base).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let admin = match connected {
        Ok(db) => db,
        Err(e) => {
            skip::skip(
                Some("PostgreSQL half"),
                &format!("PostgreSQL at {} ({e})", redacted(&base)),
                "./scripts/test prepares one; or set MERIDIAN_TEST_PG_URL",
            );
            return None;
        }
    };
    let name = format!(
        "meridian_t_{}_{:016x}",
        std::process::id(),
        rand::thread_rng().gen::<u64>()
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {}: {e}", redacted(&base)));
    let _ = admin.close().await;

    let mut url = url::Url::parse(&base)
        .unwrap_or_else(|e| panic!("MERIDIAN_TEST_PG_URL is not a URL ({e})"));
    url.set_path(&format!("/{name}"));
    Some(PgTestDb {
        url: url.to_string(),
        name,
        admin_url: base,
        dropped: false,
    })
}

impl PgTestDb {
    /// Drops the database, disconnecting whatever is still connected to it.
    pub async fn cleanup(mut self) {
        drop_database(&self.admin_url, &self.name)
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
        self.dropped = true;
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sea_orm::DbErr> {
    let admin = connect_admin(admin_url).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    let _ = admin.close().await;
    Ok(())
}

impl Drop for PgTestDb {
    /// A test that panicked never reached `cleanup`: drop the database from a helper thread
    /// (with its own runtime, since we may be inside the test's runtime).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(drop_database(&admin_url, &name))
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop test database {}: {result:?}",
                self.name
            );
        }
    }
}
