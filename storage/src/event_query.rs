//! Read side for chain events: filtered, keyset-paginated listings for GraphQL.
//!
//! Keyset (not offset) pagination keeps a page cheap however deep the client scrolls, and a
//! cursor stays valid while new events are ingested.

use meridian_types::{EventKind, EventStatus};
use sea_orm::sea_query::Condition;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::chain_events;
use crate::{height_to_db, StorageError, Store};

/// Which events to list; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this chain (CAIP-2).
    pub chain_id: Option<String>,
    /// Only these kinds.
    pub kinds: Vec<EventKind>,
    /// Only this status.
    pub status: Option<EventStatus>,
    /// Only events emitted by this contract (case-insensitive for EVM addresses).
    pub contract: Option<String>,
    /// Only this transaction.
    pub tx_hash: Option<String>,
    /// Lowest block number, inclusive.
    pub block_number_gte: Option<u64>,
    /// Highest block number, inclusive.
    pub block_number_lte: Option<u64>,
}

/// Sort order of an event listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventOrder {
    /// Oldest block first (ties by ingestion order).
    #[default]
    BlockAsc,
    /// Newest block first.
    BlockDesc,
}

/// Position after which a page starts: the sort key of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    /// Block number of the last row.
    pub block_number: i64,
    /// Row id of the last row (tie-breaker).
    pub id: i64,
}

impl EventCursor {
    /// Opaque text form handed to clients.
    pub fn encode(&self) -> String {
        format!("ev:{}:{}", self.block_number, self.id)
    }

    /// Parses a cursor this node issued.
    pub fn decode(s: &str) -> Result<EventCursor, StorageError> {
        let rest = s.strip_prefix("ev:").ok_or(StorageError::InvalidCursor)?;
        let (b, i) = rest.split_once(':').ok_or(StorageError::InvalidCursor)?;
        Ok(EventCursor {
            block_number: b.parse().map_err(|_| StorageError::InvalidCursor)?,
            id: i.parse().map_err(|_| StorageError::InvalidCursor)?,
        })
    }

    /// The cursor pointing at a row.
    pub fn of(row: &chain_events::Model) -> EventCursor {
        EventCursor {
            block_number: row.block_number,
            id: row.id,
        }
    }
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The rows, in the requested order.
    pub rows: Vec<chain_events::Model>,
    /// Whether more rows follow the last one.
    pub has_next_page: bool,
}

fn filter_condition(f: &EventFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(chain) = &f.chain_id {
        c = c.add(chain_events::Column::ChainId.eq(chain.as_str()));
    }
    if !f.kinds.is_empty() {
        c = c.add(chain_events::Column::Kind.is_in(f.kinds.iter().map(|k| k.as_str())));
    }
    if let Some(status) = f.status {
        c = c.add(chain_events::Column::Status.eq(status.as_str()));
    }
    // EVM addresses and hashes are stored lower-case; other families keep their own case.
    if let Some(contract) = &f.contract {
        let col = chain_events::Column::Contract;
        c = c.add(
            Condition::any()
                .add(col.eq(contract.as_str()))
                .add(col.eq(contract.to_ascii_lowercase())),
        );
    }
    if let Some(tx) = &f.tx_hash {
        let col = chain_events::Column::TxHash;
        c = c.add(
            Condition::any()
                .add(col.eq(tx.as_str()))
                .add(col.eq(tx.to_ascii_lowercase())),
        );
    }
    if let Some(lo) = f.block_number_gte {
        c = c.add(chain_events::Column::BlockNumber.gte(height_to_db(lo)));
    }
    if let Some(hi) = f.block_number_lte {
        c = c.add(chain_events::Column::BlockNumber.lte(height_to_db(hi)));
    }
    c
}

impl Store {
    /// A page of at most `limit` events matching `filter`, after `after` in `order`.
    pub async fn events_page(
        &self,
        filter: &EventFilter,
        order: EventOrder,
        after: Option<EventCursor>,
        limit: u64,
    ) -> Result<EventPage, StorageError> {
        let mut cond = filter_condition(filter);
        if let Some(cur) = after {
            let (b, id) = (chain_events::Column::BlockNumber, chain_events::Column::Id);
            cond = cond.add(match order {
                EventOrder::BlockAsc => Condition::any().add(b.gt(cur.block_number)).add(
                    Condition::all()
                        .add(b.eq(cur.block_number))
                        .add(id.gt(cur.id)),
                ),
                EventOrder::BlockDesc => Condition::any().add(b.lt(cur.block_number)).add(
                    Condition::all()
                        .add(b.eq(cur.block_number))
                        .add(id.lt(cur.id)),
                ),
            });
        }
        let mut query = chain_events::Entity::find().filter(cond);
        query = match order {
            EventOrder::BlockAsc => query
                .order_by_asc(chain_events::Column::BlockNumber)
                .order_by_asc(chain_events::Column::Id),
            EventOrder::BlockDesc => query
                .order_by_desc(chain_events::Column::BlockNumber)
                .order_by_desc(chain_events::Column::Id),
        };
        let mut rows = query.limit(limit + 1).all(self.connection()).await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(EventPage {
            rows,
            has_next_page,
        })
    }

    /// How many events match `filter`.
    pub async fn events_count(&self, filter: &EventFilter) -> Result<u64, StorageError> {
        Ok(chain_events::Entity::find()
            .filter(filter_condition(filter))
            .count(self.connection())
            .await?)
    }

    /// One event by its uid.
    pub async fn event_by_uid(
        &self,
        uid: &str,
    ) -> Result<Option<chain_events::Model>, StorageError> {
        Ok(chain_events::Entity::find()
            .filter(chain_events::Column::Uid.eq(uid))
            .one(self.connection())
            .await?)
    }
}
