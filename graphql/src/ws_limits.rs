//! Limits on subscriptions: websocket connections at once (node-wide) and subscriptions at once
//! on one connection. A connection beyond the limit is answered 503 before the upgrade; a
//! subscription beyond it gets one error (`TOO_MANY_SUBSCRIPTIONS`) and ends, the connection and
//! its other subscriptions carry on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextSubscribe};
use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::{ErrorExtensionValues, Response, ServerError};

/// The subscriptions running on one websocket connection (its session data).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionSubscriptions(Arc<AtomicUsize>);

/// Ends a subscription's share of its connection's count when the stream is dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Refuses a subscription when its connection runs `max` already.
pub(crate) struct SubscriptionLimit {
    pub(crate) max: usize,
}

impl ExtensionFactory for SubscriptionLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(SubscriptionLimitExtension { max: self.max })
    }
}

struct SubscriptionLimitExtension {
    max: usize,
}

impl Extension for SubscriptionLimitExtension {
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let Some(ConnectionSubscriptions(count)) = ctx.data_opt::<ConnectionSubscriptions>() else {
            // Not over a websocket of ours (e.g. a test executing a stream directly).
            return next.run(ctx, stream);
        };
        let max = self.max;
        let taken = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
        if taken.is_err() {
            tracing::debug!(max, "subscription refused: too many on one connection");
            let mut error = ServerError::new(
                format!("too many subscriptions on this connection: at most {max}"),
                None,
            );
            let mut extensions = ErrorExtensionValues::default();
            extensions.set("code", "TOO_MANY_SUBSCRIPTIONS");
            error.extensions = Some(extensions);
            return stream::once(async move { Response::from_errors(vec![error]) }).boxed();
        }
        let running = Running(count.clone());
        next.run(ctx, stream)
            .map(move |response| {
                let _ = &running;
                response
            })
            .boxed()
    }
}
