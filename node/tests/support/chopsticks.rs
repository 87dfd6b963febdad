//! Test support: a real Substrate runtime under Chopsticks, or a loud skip outside CI.

use std::path::PathBuf;

/// Chopsticks and its chain spec, or `None` (with a loud message) when missing outside CI.
pub fn chopsticks_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    match meridian_node::devnet::find_chopsticks() {
        Some(found) => Some(found),
        None if std::env::var("CI").map(|v| !v.is_empty()).unwrap_or(false) => {
            panic!(
                "{test}: Chopsticks is required in CI; .ci/run installs it with tools/install.sh"
            )
        }
        None => {
            eprintln!("SKIPPED {test}: Chopsticks not found. Run tools/install.sh (npm).");
            None
        }
    }
}
