//! Test support: a test that cannot run for want of a server or tool says so where it is seen.
//!
//! Under CI (`CI` set and non-empty) a skip is a failure: the test panics naming what is missing.
//! Elsewhere the skip is written to the process's stderr directly (the test harness swallows
//! `eprintln!` of a passing test) and appended to the file named by `MERIDIAN_SKIP_LOG`, which
//! `scripts/test` sets and lists by name at the end of the run.

#![allow(dead_code)]

use std::io::Write;

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// The running test's name as the harness knows it (`<test binary>::<test path>`).
pub fn current_test() -> String {
    let binary = std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .map(|n| match n.rsplit_once('-') {
            // Cargo names test binaries `<target>-<16 hex digits>`.
            Some((target, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                target.to_owned()
            }
            _ => n,
        })
        .unwrap_or_default();
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main" && !n.starts_with("tokio-runtime"))
        .unwrap_or("?")
        .to_owned();
    format!("{binary}::{test}")
}

/// Records that the running test (or the part of it named by `part`) did not run because
/// `missing` is not there; `remedy` says how to get it. Panics under CI.
pub fn skip(part: Option<&str>, missing: &str, remedy: &str) {
    let mut name = current_test();
    if let Some(part) = part {
        name = format!("{name} ({part})");
    }
    if in_ci() {
        panic!("{name}: {missing} is required in CI ({remedy})");
    }
    let line = format!("{name}: {missing}; {remedy}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    if let Some(path) = std::env::var_os("MERIDIAN_SKIP_LOG").filter(|p| !p.is_empty()) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            let _ = writeln!(
                std::io::stderr(),
                "could not record the skip in {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}
