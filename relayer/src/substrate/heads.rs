//! GRANDPA-finalized head notifications (`chain_subscribeFinalizedHeads`), used only to wake the
//! follower early; polling stays the ground truth. Reconnects with backoff when the stream ends.

use std::sync::Arc;
use std::time::Duration;

use substrate_api_client::ac_compose_macros::rpc_params;
use substrate_api_client::rpc::{HandleSubscription, Subscribe};
use tokio::sync::{watch, Notify};
use tracing::{debug, warn};

use super::actor::SubstrateRpc;
use super::source::Header;
use crate::metrics as m;

/// Longest wait between reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First wait after a dropped subscription.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(250);

/// Notifies `wake` on every finalized head of `rpc`'s chain until `shutdown`.
pub fn spawn_finalized_heads(
    rpc: &SubstrateRpc,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) {
    let chain = rpc.chain().clone();
    rpc.spawn(move |session| async move {
        let mut backoff = RECONNECT_BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let outcome = async {
                let client = session.client().await?;
                let mut heads = client
                    .subscribe::<Header>(
                        "chain_subscribeFinalizedHeads",
                        rpc_params![],
                        "chain_unsubscribeFinalizedHeads",
                    )
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                metrics::counter!(m::WS_RECONNECTS, "chain" => chain.to_string()).increment(1);
                debug!(chain = %chain, "subscribed to finalized heads");
                while let Some(head) = heads.next().await {
                    let head = head.map_err(|e| format!("{e:?}"))?;
                    debug!(chain = %chain, number = head.number, "finalized head");
                    wake.notify_one();
                }
                Ok::<bool, String>(true)
            }
            .await;
            match outcome {
                Ok(_) => {
                    warn!(chain = %chain, "finalized-head subscription ended; polling until it reconnects");
                    backoff = RECONNECT_BACKOFF_MIN;
                }
                Err(e) => warn!(chain = %chain, error = %e, "finalized-head subscription failed; polling until it reconnects"),
            }
            session.drop_connection();
            let mut stop = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    });
}
