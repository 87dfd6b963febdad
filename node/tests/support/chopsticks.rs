//! Test support: a real Substrate runtime under Chopsticks, or a loud skip outside CI.

use std::path::PathBuf;

#[path = "skip.rs"]
mod skip;

/// Chopsticks and its chain spec, or `None` (a recorded skip) when missing outside CI; fails
/// under CI.
pub fn chopsticks_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = meridian_node::devnet::find_chopsticks();
    if found.is_none() {
        skip::skip(
            None,
            "Chopsticks and its chain spec",
            "run tools/install.sh (npm)",
        );
    }
    found
}
