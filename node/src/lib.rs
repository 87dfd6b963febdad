//! The `meridian` node: wires configuration, storage, watchers and the HTTP API into one process,
//! and hosts the operator commands (`run`, `migrate`, `config validate`, `devnet`).
//!
//! Library crates below it use typed errors; this crate is the binary edge and reports with
//! `anyhow`, adding the context an operator needs (which chain, which key, which file).

pub mod api_limits;
pub mod bench;
pub mod cluster_status;
pub mod devnet;
pub mod http;
pub mod node;
pub mod parent_watch;
pub mod telemetry;
pub mod vote_page;
