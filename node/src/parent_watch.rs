//! Nodes that stop with the process that started them: `meridian devnet --nodes N` starts N
//! `meridian run` processes and names itself in their environment (`MERIDIAN_STOP_WITH_PARENT`).
//! A devnet stopped with Ctrl-C stops its nodes itself; one killed outright (SIGKILL, a closed
//! terminal's hang-up it did not survive) cannot, so each node notices that its parent changed
//! (it was re-parented) and stops gracefully, releasing its leases, instead of running on as an
//! orphan.

use std::time::Duration;

/// The variable naming the pid a node stops without.
pub const STOP_WITH_PARENT_ENV: &str = "MERIDIAN_STOP_WITH_PARENT";

/// How often the parent is looked at.
const PARENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Resolves once this process's parent is no longer the pid in `MERIDIAN_STOP_WITH_PARENT`;
/// never when the variable is not set (or not a pid, which is logged).
pub async fn parent_gone() {
    #[cfg(unix)]
    if let Ok(value) = std::env::var(STOP_WITH_PARENT_ENV) {
        match value.parse::<u32>() {
            Ok(parent) => loop {
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!(
                        parent,
                        "the process that started this node is gone; stopping"
                    );
                    return;
                }
                tokio::time::sleep(PARENT_CHECK_INTERVAL).await;
            },
            Err(_) => tracing::warn!(
                value,
                "{STOP_WITH_PARENT_ENV} is not a process id; this node will not stop with its parent"
            ),
        }
    }
    std::future::pending::<()>().await
}
