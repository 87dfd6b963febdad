//! New-block notifications over CometBFT's websocket (`subscribe` to `tm.event = 'NewBlock'`),
//! used only to wake the follower early.
//!
//! Polling `/status` stays the ground truth: a dropped websocket costs latency, never data. The
//! subscription reconnects with backoff and counts each (re)connection.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meridian_types::ChainId;
use tendermint_rpc::client::CompatMode;
use tendermint_rpc::query::EventType;
use tendermint_rpc::{SubscriptionClient, WebSocketClient, WebSocketClientUrl};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use url::Url;

use crate::metrics as m;
use crate::rpc_pool::endpoint_label;

/// Longest wait between reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First wait after a dropped connection.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Subscribes to new blocks at `ws_url` (e.g. `ws://host:26657/websocket`) and notifies `wake`
/// on each, reconnecting with backoff until `shutdown`.
pub fn spawn_block_subscription(
    chain: ChainId,
    ws_url: Url,
    compat: CompatMode,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let label = endpoint_label(&ws_url);
        let mut backoff = RECONNECT_BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut subscribed = false;
            let session = async {
                let url: WebSocketClientUrl = ws_url.as_str().parse()?;
                let (client, driver) = WebSocketClient::builder(url)
                    .compat_mode(compat)
                    .build()
                    .await?;
                let driver = tokio::spawn(driver.run());
                let result = async {
                    let mut blocks = client.subscribe(EventType::NewBlock.into()).await?;
                    subscribed = true;
                    metrics::counter!(m::WS_RECONNECTS, "chain" => chain.to_string()).increment(1);
                    debug!(chain = %chain, endpoint = %label, "subscribed to new blocks");
                    while let Some(event) = blocks.next().await {
                        let event = event?;
                        debug!(chain = %chain, query = %event.query, "new block");
                        wake.notify_one();
                    }
                    Ok::<(), tendermint_rpc::Error>(())
                }
                .await;
                client.close().ok();
                driver.abort();
                result
            };
            tokio::select! {
                r = session => match r {
                    Ok(()) => warn!(chain = %chain, endpoint = %label, "block subscription ended; polling until it reconnects"),
                    Err(e) => warn!(chain = %chain, endpoint = %label, error = %e, "block subscription failed; polling until it reconnects"),
                },
                _ = shutdown.changed() => return,
            }
            if subscribed {
                backoff = RECONNECT_BACKOFF_MIN;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    })
}
