//! Live updates over graphql-ws (`/graphql/ws`): transfers as their state changes.
//!
//! Changes are announced by this node's store after each commit; a node that shares its
//! database with others sees the changes it made itself.

use async_graphql::{Context, Subscription};
use futures::Stream;
use meridian_storage::Store;
use tokio::sync::broadcast::error::RecvError;

use crate::transfers::{parse_state, Transfer};

/// Live updates.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Each transfer as it changes state (with its full history), optionally only the one with
    /// `id`, or only those entering `state`.
    async fn transfer_updates(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
        state: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = Transfer>> {
        let store = ctx.data::<Store>()?.clone();
        let state = state.as_deref().map(parse_state).transpose()?;
        let rx = store.transfer_changes();
        Ok(futures::stream::unfold(
            (rx, store, id, state),
            |(mut rx, store, id, state)| async move {
                loop {
                    let changed = match rx.recv().await {
                        Ok(changed) => changed,
                        Err(RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "transfer subscriber fell behind");
                            continue;
                        }
                        Err(RecvError::Closed) => return None,
                    };
                    if id.as_ref().is_some_and(|want| want != &changed) {
                        continue;
                    }
                    let record = match store.transfer(&changed).await {
                        Ok(Some(r)) => r,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::error!(error = %e, "reading a changed transfer for a subscriber");
                            continue;
                        }
                    };
                    if state.is_some_and(|s| s != record.transfer.state) {
                        continue;
                    }
                    return Some((Transfer::from(record), (rx, store, id, state)));
                }
            },
        ))
    }
}
