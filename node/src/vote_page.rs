//! The voting page at `/vote`: proposals with live tallies (graphql-ws), votes signed by the
//! member's wallet (`window.ethereum`, `eth_signTypedData_v4`) and sent through GraphQL.
//!
//! On a devnet (`governance.dev_keys` set) the page also offers the devnet members' keys and
//! ethers.js (from `tools/node_modules`) to sign with in the browser; a real deployment sets no
//! dev keys and serves neither.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use ethers::signers::{LocalWallet, Signer};
use serde_json::json;

const PAGE: &str = include_str!("vote.html");

#[derive(Clone)]
struct DevWallets {
    keys: Arc<Vec<(String, String)>>,
    ethers_js: Option<PathBuf>,
}

/// ethers.js as installed by `tools/install.sh`, found from the current directory upwards.
fn find_ethers_js() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let p = d.join("tools/node_modules/ethers/dist/ethers.umd.min.js");
        if p.exists() {
            return Some(p);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    None
}

/// The `/vote` routes; `dev_keys` (hex private keys) enable the devnet wallet.
pub fn routes(dev_keys: &[String]) -> anyhow::Result<Router> {
    let mut keys = Vec::new();
    for k in dev_keys {
        let wallet: LocalWallet = k
            .trim_start_matches("0x")
            .parse()
            .map_err(|e| anyhow::anyhow!("governance.dev_keys: not a private key: {e}"))?;
        keys.push((
            format!("{:#x}", wallet.address()),
            format!("0x{}", k.trim_start_matches("0x")),
        ));
    }
    let state = DevWallets {
        ethers_js: if keys.is_empty() {
            None
        } else {
            find_ethers_js()
        },
        keys: Arc::new(keys),
    };
    Ok(Router::new()
        .route("/vote", get(|| async { Html(PAGE) }))
        .route("/vote/dev-keys", get(dev_keys_handler))
        .route("/vote/ethers.js", get(ethers_handler))
        .with_state(state))
}

async fn dev_keys_handler(State(s): State<DevWallets>) -> axum::response::Response {
    if s.keys.is_empty() {
        return (StatusCode::NOT_FOUND, "no devnet wallet on this node").into_response();
    }
    Json(
        s.keys
            .iter()
            .map(|(address, key)| json!({"address": address, "key": key}))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn ethers_handler(State(s): State<DevWallets>) -> axum::response::Response {
    let Some(path) = &s.ethers_js else {
        return (StatusCode::NOT_FOUND, "no devnet wallet on this node").into_response();
    };
    match tokio::fs::read(path).await {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("ethers.js: {e}")).into_response(),
    }
}
