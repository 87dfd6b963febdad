//! The query root and schema construction.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, MergedObject, MergedSubscription, Object, Schema};
use meridian_governance::Governance;
use std::sync::Arc;

use meridian_router::RoutingState;
use meridian_storage::{EventCursor, EventFilter, EventOrder, Store};
use meridian_types::ChainId;

use crate::errors::{storage_error, ErrorCode};
use crate::governance::{GovernanceMutation, GovernanceQuery, GovernanceSubscription};
use crate::operator::{ApiKeys, MutationRoot};
use crate::routing::{parse_amount, parse_asset, route_error, unix_now, Asset, Corridor, Quote};
use crate::subscription::SubscriptionRoot;
use crate::transfers::{parse_state, Transfer};
use crate::types::{Chain, ChainMeta, Event, EventOrderBy, EventWhere, Meta};
use meridian_types::config::ApiKeyConfig;

/// Default page size when a client gives no `first`.
pub(crate) const PAGE_SIZE_DEFAULT: i32 = 20;

/// The largest `page_size_max` a config may set. A list's complexity counts at most this many
/// items, so a `first` above the page limit is refused as `PAGE_SIZE_EXCEEDED` (what it is)
/// rather than as too complex.
pub(crate) const PAGE_SIZE_CEILING: i32 = 1_000;

/// A list field's `first`, checked against the schema's `page_size_max`: too many (or negative)
/// is refused with `PAGE_SIZE_EXCEEDED`, never silently cut.
pub(crate) fn page_size(ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<u64> {
    let limits = ctx.data::<SchemaLimits>()?;
    let first = first.unwrap_or(PAGE_SIZE_DEFAULT);
    match u32::try_from(first) {
        Ok(n) if n <= limits.page_size_max => Ok(u64::from(n)),
        _ => Err(ErrorCode::PageSizeExceeded.error(format!(
            "first must be between 0 and {}",
            limits.page_size_max
        ))),
    }
}

/// Every query: the relay's and governance's.
#[derive(MergedObject, Default)]
pub struct Query(QueryRoot, GovernanceQuery);

/// Every mutation: operators' (API key) and members' (signed).
#[derive(MergedObject, Default)]
pub struct Mutation(MutationRoot, GovernanceMutation);

/// Every subscription.
#[derive(MergedSubscription, Default)]
pub struct Subscription(SubscriptionRoot, GovernanceSubscription);

/// The schema type served at `/graphql`.
pub type MeridianSchema = Schema<Query, Mutation, Subscription>;

/// Protective limits, from `[graphql]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// Largest `first` accepted.
    pub page_size_max: u32,
    /// Deepest nesting accepted.
    pub depth_max: u32,
    /// Highest complexity accepted.
    pub complexity_max: u32,
    /// Most aliased fields accepted in one request.
    pub aliases_max: u32,
    /// Whether introspection (`__schema`, `__type`) is answered.
    pub introspection: bool,
    /// Subscriptions at once on one websocket connection.
    pub subscriptions_per_connection_max: u32,
}

/// Directives accepted on one field (`@include`/`@skip` need one each).
const DIRECTIVES_PER_FIELD_MAX: usize = 4;

/// Builds the schema over `store` and the routing state.
pub fn build_schema(
    store: Store,
    routing: Arc<RoutingState>,
    api_keys: Vec<ApiKeyConfig>,
    limits: SchemaLimits,
    governance: Option<Arc<Governance>>,
) -> MeridianSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    );
    if let Some(g) = governance {
        builder = builder.data(g);
    }
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder
        .data(store)
        .data(routing)
        .data(ApiKeys(api_keys))
        .data(limits)
        .limit_depth(limits.depth_max as usize)
        .limit_complexity(limits.complexity_max as usize)
        .limit_recursive_depth(32)
        .limit_directives(DIRECTIVES_PER_FIELD_MAX)
        .extension(crate::alias_limit::AliasLimit {
            max: limits.aliases_max as usize,
        })
        .extension(crate::ws_limits::SubscriptionLimit {
            max: limits.subscriptions_per_connection_max as usize,
        })
        .finish()
}

/// Read access to everything Meridian indexes.
#[derive(Default)]
pub struct QueryRoot;

/// Extra fields of the events connection, computed only when asked for.
pub struct EventConnectionFields {
    filter: EventFilter,
}

#[Object]
impl EventConnectionFields {
    /// Number of events matching the filter (all pages).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        ctx.data::<Store>()?
            .events_count(&self.filter)
            .await
            .map_err(storage_error)
    }
}

fn to_filter(w: Option<EventWhere>) -> async_graphql::Result<EventFilter> {
    let w = w.unwrap_or_default();
    if let Some(chain) = &w.chain_id {
        chain
            .parse::<ChainId>()
            .map_err(|e| ErrorCode::BadInput.error(format!("where.chainId: {e}")))?;
    }
    if let (Some(lo), Some(hi)) = (w.block_number_gte, w.block_number_lte) {
        if lo > hi {
            return Err(
                ErrorCode::BadInput.error("where.blockNumberGte is above where.blockNumberLte")
            );
        }
    }
    Ok(EventFilter {
        chain_id: w.chain_id,
        kinds: w
            .kind_in
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect(),
        status: w.status.map(Into::into),
        contract: w.contract,
        tx_hash: w.tx_hash,
        block_number_gte: w.block_number_gte,
        block_number_lte: w.block_number_lte,
    })
}

#[Object]
impl QueryRoot {
    /// Transfers, newest first, optionally in one `state`, each with its full history.
    #[graphql(
        complexity = "(first.unwrap_or(PAGE_SIZE_DEFAULT).clamp(1, PAGE_SIZE_CEILING) as usize) * child_complexity + 1"
    )]
    async fn transfers(
        &self,
        ctx: &Context<'_>,
        state: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Transfer>> {
        let first = page_size(ctx, first)?;
        let state = state.as_deref().map(parse_state).transpose()?;
        Ok(ctx
            .data::<Store>()?
            .transfers(state, first)
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(Transfer::from)
            .collect())
    }

    /// One transfer by id, with its history.
    async fn transfer(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<Transfer>> {
        Ok(ctx
            .data::<Store>()?
            .transfer(&id)
            .await
            .map_err(storage_error)?
            .map(Transfer::from))
    }

    /// The cheapest route for `amount` (base units) of `from` delivered as `to` (CAIP-19 ids),
    /// priced now: rate, fees per corridor, total cost and expiry. `NO_ROUTE` errors list why
    /// each candidate corridor was refused.
    async fn quote(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        amount: String,
    ) -> async_graphql::Result<Quote> {
        let from = parse_asset("from", &from)?;
        let to = parse_asset("to", &to)?;
        let amount = parse_amount("amount", &amount)?;
        ctx.data::<Arc<RoutingState>>()?
            .quote(&from, &to, amount, unix_now())
            .map(Quote::from)
            .map_err(route_error)
    }

    /// The asset registry: every asset Meridian routes, with its decimals, kind and issuer.
    async fn assets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Asset>> {
        let state = ctx.data::<Arc<RoutingState>>()?;
        let now = unix_now();
        Ok(state.read(|router, screening| {
            router
                .assets()
                .into_iter()
                .map(|a| Asset::of(a, screening, now))
                .collect()
        }))
    }

    /// Every corridor with its live rate, cost and 24 h cap use.
    async fn corridors(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Corridor>> {
        let state = ctx.data::<Arc<RoutingState>>()?;
        let now = unix_now();
        Ok(state.read(|router, _| {
            router
                .corridors()
                .map(|c| Corridor {
                    config: c.clone(),
                    now,
                })
                .collect()
        }))
    }

    /// Every watched chain with head, finalized height, checkpoint and lag.
    async fn chains(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Chain>> {
        let store = ctx.data::<Store>()?;
        Ok(store
            .chain_statuses()
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(Chain)
            .collect())
    }

    /// One chain by CAIP-2 id.
    async fn chain(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Chain>> {
        id.parse::<ChainId>()
            .map_err(|e| ErrorCode::BadInput.error(format!("id: {e}")))?;
        let store = ctx.data::<Store>()?;
        Ok(store
            .chain_statuses()
            .await
            .map_err(storage_error)?
            .into_iter()
            .find(|c| c.id == id)
            .map(Chain))
    }

    /// Chain events, filtered by `where`, in `orderBy` order, `first` at a time after `after`
    /// (Relay cursor connection).
    #[graphql(
        complexity = "(first.unwrap_or(PAGE_SIZE_DEFAULT).clamp(1, PAGE_SIZE_CEILING) as usize) * child_complexity + 1"
    )]
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(name = "where")] filter: Option<EventWhere>,
        order_by: Option<EventOrderBy>,
    ) -> async_graphql::Result<Connection<String, Event, EventConnectionFields, EmptyFields>> {
        let store = ctx.data::<Store>()?;
        let first = page_size(ctx, first)?;
        let after = after
            .as_deref()
            .map(EventCursor::decode)
            .transpose()
            .map_err(storage_error)?;
        let order = match order_by.unwrap_or_default() {
            EventOrderBy::BlockNumberAsc => EventOrder::BlockAsc,
            EventOrderBy::BlockNumberDesc => EventOrder::BlockDesc,
        };
        let filter = to_filter(filter)?;
        let page = store
            .events_page(&filter, order, after, first)
            .await
            .map_err(storage_error)?;
        let mut conn = Connection::with_additional_fields(
            after.is_some(),
            page.has_next_page,
            EventConnectionFields { filter },
        );
        conn.edges.extend(
            page.rows
                .into_iter()
                .map(|row| Edge::new(EventCursor::of(&row).encode(), Event(row))),
        );
        Ok(conn)
    }

    /// One event by its uid.
    async fn event(&self, ctx: &Context<'_>, uid: String) -> async_graphql::Result<Option<Event>> {
        let store = ctx.data::<Store>()?;
        Ok(store
            .event_by_uid(&uid)
            .await
            .map_err(storage_error)?
            .map(Event))
    }

    /// Several nodes running one relay: the nodes and who holds each lease (empty for a node
    /// without `[cluster]`).
    async fn cluster(&self, ctx: &Context<'_>) -> async_graphql::Result<crate::cluster::Cluster> {
        let store = ctx.data::<Store>()?;
        let now = store.database_time().await.map_err(storage_error)?;
        let nodes = store.cluster_nodes().await.map_err(storage_error)?;
        let leases = store.leases().await.map_err(storage_error)?;
        Ok(crate::cluster::Cluster::new(now, nodes, leases))
    }

    /// Indexed heights, so clients know how fresh an answer is.
    #[graphql(name = "_meta")]
    async fn meta(&self, ctx: &Context<'_>) -> async_graphql::Result<Meta> {
        let store = ctx.data::<Store>()?;
        let chains = store
            .chain_statuses()
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(|c| ChainMeta {
                chain_id: c.id,
                checkpoint_height: c.checkpoint_height,
                head_height: c.head_height,
            })
            .collect();
        Ok(Meta {
            chains,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}
