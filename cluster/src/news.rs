//! News of committed changes between the nodes of a cluster, over NATS JetStream. The database
//! stays the record: a transfer message only says "node X committed changes" and wakes every
//! other node's [`ChangeFeed`](crate::change_feed::ChangeFeed), which reads them from the
//! database at once instead of at its next poll; a proposal message names a proposal whose
//! state or tally changed, and every other node tells its own subscribers (the voting page). Messages carry a deduplication id
//! (`Nats-Msg-Id`: node and sequence), so a retried publish is stored once.
//!
//! If NATS is down, nothing is lost: nodes keep sharing changes through the feed's polling,
//! the outage is logged once, and the first news after NATS is back makes every feed catch up
//! on everything committed meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use tokio::sync::{broadcast, watch, Notify};

use meridian_storage::Store;
use meridian_types::cluster::NodeId;

/// Where the news goes.
#[derive(Debug, Clone)]
pub struct NewsSettings {
    /// NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream holding this cluster's news (its subject is `<stream>.transfers`).
    pub stream: String,
    /// This node.
    pub node: NodeId,
}

/// Proposal news: what this node changed, and where other nodes' changes go.
pub struct ProposalNews {
    /// Ids of proposals changed on this node.
    pub local: broadcast::Receiver<String>,
    /// Tells this node's subscribers that another node changed a proposal.
    pub forward: Arc<dyn Fn(String) + Send + Sync>,
}

/// How long news is kept in the stream (nodes read it live; the database is the record).
pub const NEWS_MAX_AGE: Duration = Duration::from_secs(600);
/// Most news messages kept in the stream.
pub const NEWS_MESSAGES_MAX: i64 = 100_000;
/// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
pub const NEWS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Pause before connecting again after NATS failed.
pub const NEWS_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a connection attempt or a publish may take.
pub const NEWS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a news session ended.
#[derive(Debug, thiserror::Error)]
#[error("NATS: {0}")]
pub struct NewsError(String);

fn err(e: impl std::fmt::Display) -> NewsError {
    NewsError(e.to_string())
}

/// Tells other nodes when this node commits transfer changes, and wakes `feed` when they do,
/// until `shutdown`. Reconnects after failures.
pub async fn run(
    settings: NewsSettings,
    store: Store,
    feed: Arc<Notify>,
    mut proposals: Option<ProposalNews>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let session = session(
            &settings,
            &store,
            &feed,
            proposals.as_mut(),
            &mut down_since,
        );
        tokio::select! {
            ended = session => {
                if let Err(e) = ended {
                    if down_since.is_none() {
                        tracing::warn!(error = %e, url = %settings.url, "NATS unavailable: nodes keep sharing changes through the database (polling) until it is back");
                        down_since = Some(tokio::time::Instant::now());
                    }
                }
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(NEWS_RECONNECT_DELAY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One connection: publishes this node's commits and wakes the feed on others' news.
async fn session(
    settings: &NewsSettings,
    store: &Store,
    feed: &Notify,
    mut proposals: Option<&mut ProposalNews>,
    down_since: &mut Option<tokio::time::Instant>,
) -> Result<(), NewsError> {
    let client = tokio::time::timeout(
        NEWS_TIMEOUT,
        async_nats::ConnectOptions::new()
            .connection_timeout(NEWS_TIMEOUT)
            .max_reconnects(Some(3))
            .connect(settings.url.as_str()),
    )
    .await
    .map_err(err)?
    .map_err(err)?;
    let js = jetstream::new(client);
    let subject = format!("{}.transfers", settings.stream);
    let proposal_subject = format!("{}.proposals", settings.stream);
    let news = js
        .get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![format!("{}.>", settings.stream)],
            max_age: NEWS_MAX_AGE,
            max_messages: NEWS_MESSAGES_MAX,
            duplicate_window: NEWS_DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(err)?;
    let mut incoming = news
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{}.>", settings.stream),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(err)?
        .messages()
        .await
        .map_err(err)?;
    if let Some(since) = down_since.take() {
        tracing::info!(after = ?since.elapsed(), "NATS back: news between nodes resumes");
    }
    // Whatever was committed while NATS was away: the others catch up at once.
    feed.notify_one();
    let me = settings.node.as_str().to_owned();
    // Message ids are unique per session too: a reconnected session's first news must not fall
    // in the server's duplicate window as a repeat of the last session's.
    let session_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut sequence: u64 = 0;
    let mut publish_now = true;
    loop {
        if publish_now {
            sequence += 1;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{me}-{session_id}-{sequence}").as_str(),
            );
            let ack = js
                .publish_with_headers(subject.clone(), headers, me.clone().into())
                .await
                .map_err(err)?;
            tokio::time::timeout(NEWS_TIMEOUT, ack)
                .await
                .map_err(err)?
                .map_err(err)?;
            metrics::counter!("meridian_cluster_news_published_total").increment(1);
        }
        let proposal_changed = async {
            match proposals.as_mut() {
                Some(p) => p.local.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = store.committed_change() => publish_now = true,
            changed = proposal_changed => {
                publish_now = false;
                match changed {
                    Ok(id) => {
                        sequence += 1;
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert(
                            "Nats-Msg-Id",
                            format!("{me}-{session_id}-{sequence}").as_str(),
                        );
                        let ack = js
                            .publish_with_headers(
                                proposal_subject.clone(),
                                headers,
                                format!("{me}\n{id}").into(),
                            )
                            .await
                            .map_err(err)?;
                        tokio::time::timeout(NEWS_TIMEOUT, ack)
                            .await
                            .map_err(err)?
                            .map_err(err)?;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "proposal news fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        proposals = None;
                    }
                }
            }
            message = incoming.next() => {
                publish_now = false;
                match message {
                    Some(Ok(m)) if m.subject.as_str() == proposal_subject => {
                        let text = String::from_utf8_lossy(&m.payload);
                        if let Some((from, id)) = text.split_once('\n') {
                            if from != me {
                                if let Some(p) = proposals.as_ref() {
                                    (p.forward)(id.to_owned());
                                }
                            }
                        }
                    }
                    Some(Ok(m)) => {
                        if m.payload.as_ref() != me.as_bytes() {
                            feed.notify_one();
                        }
                    }
                    Some(Err(e)) => return Err(err(e)),
                    None => return Err(NewsError("the news stream ended".into())),
                }
            }
        }
    }
}
