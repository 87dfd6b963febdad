//! New-head notifications over a websocket subscription, used only to wake the follower early.
//!
//! Polling stays the ground truth: a lost or broken subscription costs latency, never data.

use std::sync::Arc;
use std::time::Duration;

use ethers::providers::{Middleware, Provider, StreamExt, Ws};
use meridian_types::ChainId;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use url::Url;

use crate::metrics as m;

/// Longest wait between reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Subscribes to `newHeads` at `ws_url` and notifies `wake` on each head, reconnecting with
/// backoff until `shutdown`.
pub fn spawn_head_subscription(
    chain: ChainId,
    ws_url: Url,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        let label = crate::rpc_pool::endpoint_label(&ws_url);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let session = async {
                let provider = Provider::<Ws>::connect(ws_url.as_str()).await?;
                let mut heads = provider.subscribe_blocks().await?;
                metrics::counter!(m::WS_RECONNECTS, "chain" => chain.to_string()).increment(1);
                debug!(chain = %chain, endpoint = %label, "subscribed to new heads");
                while let Some(block) = heads.next().await {
                    debug!(chain = %chain, number = ?block.number, "new head");
                    wake.notify_one();
                }
                Ok::<(), ethers::providers::ProviderError>(())
            };
            tokio::select! {
                r = session => {
                    match r {
                        Ok(()) => warn!(chain = %chain, endpoint = %label, "head subscription ended; polling until it reconnects"),
                        Err(e) => warn!(chain = %chain, endpoint = %label, error = %e, "head subscription failed; polling until it reconnects"),
                    }
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    })
}
