//! The node's HTTP surface, in process (`tower::ServiceExt::oneshot` on the real router over a
//! SQLite store): GraphQL queries, pagination and limits, `/healthz`, `/readyz`, `/metrics`,
//! GraphiQL; and the `meridian` binary's `config validate` and `migrate` commands.

#[path = "support/events.rs"]
mod events;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use meridian_graphql::{build_schema, SchemaLimits};
use meridian_node::http::{Health, WatcherState};
use meridian_storage::Store;
use meridian_types::config::GraphqlConfig;
use meridian_types::{ChainEvent, ChainFamily, ChainId, EventKind, EventStatus};
use serde_json::{json, Value};
use tower::ServiceExt;

use events::*;

// ---------------------------------------------------------------------------------------------
// Fixture

struct App {
    _dir: tempfile::TempDir,
    store: Store,
    health: Arc<Health>,
    router: Router,
    /// Seeded events in block-ascending order (ties in ingestion order).
    events: Vec<ChainEvent>,
}

fn default_limits() -> SchemaLimits {
    let g = GraphqlConfig::default();
    SchemaLimits {
        page_size_max: g.page_size_max,
        depth_max: g.depth_max,
        complexity_max: g.complexity_max,
        aliases_max: g.aliases_max,
        introspection: g.introspection,
        subscriptions_per_connection_max: g.ws_subscriptions_max,
    }
}

const TAG_A: u8 = 0xa;
const TAG_B: u8 = 0xb;

fn chain_a() -> ChainId {
    "eip155:31337".parse().unwrap()
}

fn chain_b() -> ChainId {
    "eip155:1337".parse().unwrap()
}

const OPS_KEY: &str = "k-0123456789abcdef";

const USD: &str = "eip155:31337/erc20:0x1111111111111111111111111111111111111111";
const EUR: &str = "eip155:1337/erc20:0x2222222222222222222222222222222222222222";

/// USD (6 decimals) on devnet-a → EUR (2 decimals) on devnet-b at a fixed 0.92, 0.25 % fee;
/// and a paused EUR → USD corridor.
fn routing() -> meridian_router::RoutingState {
    use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
    let asset = |id: &str, symbol: &str, decimals| AssetConfig {
        id: id.parse().unwrap(),
        symbol: symbol.into(),
        decimals,
        kind: AssetKind::Stablecoin,
        issuer: None,
        reference_rate: None,
        reference_rate_max_age_secs: None,
    };
    let corridor = |id: &str, from: &str, to: &str, rate: &str, paused| CorridorConfig {
        id: id.into(),
        source_asset: from.parse().unwrap(),
        dest_asset: to.parse().unwrap(),
        fee_bps: 25,
        fixed_fee: Amount(0),
        rate: Some(rate.into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1_000_000),
        max_amount: Amount(1_000_000_000_000),
        daily_cap: Amount(10_000_000_000_000),
        hold_threshold: None,
        paused,
        liquidity: Amount(0),
    };
    // USD is worth a fixed dollar in the limits' reference unit; EUR's value is fed and stale
    // five minutes after it was.
    let usd = meridian_types::config::AssetConfig {
        reference_rate: Some("1".into()),
        ..asset(USD, "USD", 6)
    };
    let eur = meridian_types::config::AssetConfig {
        reference_rate_max_age_secs: Some(300),
        ..asset(EUR, "EUR", 2)
    };
    let mut reference = meridian_router::compliance::ReferenceRates::new(2);
    reference.set(
        &usd.id,
        meridian_router::Rate::from_decimal("1", 6, 2).unwrap(),
    );
    reference.expect_fed(&eur.id, 300);
    let router = meridian_router::Router::new(
        &[usd, eur],
        &[
            corridor("usd-eur", USD, EUR, "0.92", false),
            corridor("eur-usd", EUR, USD, "1.08", true),
        ],
        meridian_router::RouteLimits::default(),
    )
    .unwrap();
    let mut screening = meridian_router::Screening::default();
    screening.policy.reference = reference;
    meridian_router::RoutingState::new(router, screening)
}

/// A migrated SQLite store with two chains:
/// - `eip155:31337` "devnet-a": head 120 (finalized 110), checkpoint 100, four events;
/// - `eip155:1337` "devnet-b": no head recorded, checkpoint 4, two events.
async fn app(limits: SchemaLimits) -> App {
    app_serving(limits, unlimited_http()).await
}

/// `[graphql]` with rates no test reaches (the rate-limit test sets its own).
fn unlimited_http() -> GraphqlConfig {
    GraphqlConfig {
        rate_limit_per_second: 1_000_000_000,
        rate_limit_burst: 1_000_000,
        ..GraphqlConfig::default()
    }
}

/// [`app`] as the devnet serves it: GraphiQL at `/`, introspection on.
async fn devnet_app() -> App {
    app_serving(
        SchemaLimits {
            introspection: true,
            ..default_limits()
        },
        GraphqlConfig {
            graphiql: true,
            introspection: true,
            ..unlimited_http()
        },
    )
    .await
}

async fn app_serving(limits: SchemaLimits, http: GraphqlConfig) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.sqlite").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate_up().await.unwrap();

    let (a, b) = (chain_a(), chain_b());
    store
        .register_chain(&a, "devnet-a", ChainFamily::Evm)
        .await
        .unwrap();
    store
        .register_chain(&b, "devnet-b", ChainFamily::Evm)
        .await
        .unwrap();
    let on_a = vec![
        event(&a, TAG_A, 96, 0, minted(&a, u128::MAX)),
        event(&a, TAG_A, 97, 0, transferred(&a, 10)),
        event(&a, TAG_A, 97, 1, remittance(&a, 1, 250)),
        event(&a, TAG_A, 100, 2, undecodable("unknown topic0")),
    ];
    let on_b = vec![
        event(&b, TAG_B, 2, 0, minted(&b, 7)),
        event(&b, TAG_B, 3, 0, released(&b, 7)),
    ];
    store
        .commit_ingest(&batch(&a, TAG_A, 95, 100, on_a.clone()))
        .await
        .unwrap();
    store
        .commit_ingest(&batch(&b, TAG_B, 1, 4, on_b.clone()))
        .await
        .unwrap();
    store
        .record_head(&a, &block(TAG_A, 120), 110)
        .await
        .unwrap();

    let events = [on_b, on_a].concat(); // every block of B is below every block of A
    let health = Arc::new(Health::default());
    let keys = vec![meridian_types::config::ApiKeyConfig {
        name: "ops".into(),
        key: OPS_KEY.into(),
    }];
    let schema = build_schema(
        store.clone(),
        Arc::new(routing()),
        keys.clone(),
        limits,
        None,
    );
    let router = meridian_node::http::router(
        schema,
        &http,
        &keys,
        store.clone(),
        health.clone(),
        meridian_node::telemetry::metrics_handle(),
    )
    .unwrap();
    App {
        _dir: dir,
        store,
        health,
        router,
        events,
    }
}

async fn seeded() -> App {
    app(default_limits()).await
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn get(router: &Router, path: &str) -> (StatusCode, Option<String>, String) {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

/// POSTs a GraphQL query and returns the JSON response (HTTP status must be 200).
async fn gql(router: &Router, query: &str, variables: Value) -> Value {
    let req = Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "query": query, "variables": variables }).to_string(),
        ))
        .unwrap();
    let (status, _, body) = send(router, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A GraphQL request carrying an API key header.
async fn gql_as(router: &Router, key: Option<&str>, query: &str, variables: Value) -> Value {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let req = req
        .body(Body::from(
            json!({ "query": query, "variables": variables }).to_string(),
        ))
        .unwrap();
    let (status, _, body) = send(router, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The response's data, failing on any error.
async fn gql_ok(router: &Router, query: &str, variables: Value) -> Value {
    let resp = gql(router, query, variables).await;
    assert!(resp.get("errors").is_none(), "unexpected errors: {resp}");
    resp["data"].clone()
}

/// The response's errors, failing when there are none.
async fn gql_err(router: &Router, query: &str, variables: Value) -> Vec<Value> {
    let resp = gql(router, query, variables).await;
    match resp.get("errors") {
        Some(Value::Array(errors)) if !errors.is_empty() => errors.clone(),
        _ => panic!("expected errors for {query}, got {resp}"),
    }
}

fn uids(events: &[ChainEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.uid()).collect()
}

// ---------------------------------------------------------------------------------------------
// GraphQL reads

/// An operator's change and its audit entry land together or not at all: when the audit log
/// cannot be written, the pause is refused and the corridor keeps quoting.
#[tokio::test]
async fn a_pause_that_cannot_be_audited_changes_nothing() {
    use sea_orm::ConnectionTrait;
    let app = seeded().await;
    app.store
        .connection()
        .execute_unprepared("DROP TABLE audit_log")
        .await
        .unwrap();
    let pause = "mutation { pauseCorridor(id: \"usd-eur\", paused: true, reason: \"bank holiday\") { id paused } }";
    let resp = gql_as(&app.router, Some(OPS_KEY), pause, json!({})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "INTERNAL",
        "{resp}"
    );
    let quote = "query($from: String!, $to: String!) { quote(from: $from, to: $to, amount: \"100000000\") { amountOut } }";
    gql_ok(&app.router, quote, json!({ "from": USD, "to": EUR })).await;
    let corridors = gql_ok(&app.router, "{ corridors { id paused } }", json!({})).await;
    assert_eq!(
        corridors["corridors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "usd-eur")
            .unwrap()["paused"],
        false
    );
}

/// Each asset's reference-rate status as `assets` shows it.
async fn reference_statuses(router: &Router) -> std::collections::BTreeMap<String, String> {
    let assets = gql_ok(router, "{ assets { id referenceRateStatus } }", json!({})).await;
    assets["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["referenceRateStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A fed reference rate: only an operator feeds it, only for an asset whose rate is fed, stored
/// with its audit entry (or not at all) and with the time it was fed, so a restarted node
/// holds it exactly as stale as the node that took it.
#[tokio::test]
async fn operators_feed_reference_rates_that_outlive_a_restart_and_go_stale_on_time() {
    use meridian_router::compliance::ReferenceStatus;
    let app = seeded().await;
    let feed = "mutation($asset: String!, $rate: String!) { feedReferenceRate(asset: $asset, rate: $rate) { id referenceRateStatus referenceRateFedAt } }";
    let before = reference_statuses(&app.router).await;
    assert_eq!(before[USD], "fixed");
    assert_eq!(before[EUR], "unfed");

    let code = |resp: &Value| resp["errors"][0]["extensions"]["code"].clone();
    let resp = gql_as(
        &app.router,
        None,
        feed,
        json!({ "asset": EUR, "rate": "1.08" }),
    )
    .await;
    assert_eq!(code(&resp), "UNAUTHORIZED", "{resp}");
    for (asset, rate, expected) in [
        (USD, "1.01", "BAD_INPUT"), // fixed: a feed would override the configuration
        (EUR, "1.0000000000000000001", "BAD_INPUT"), // beyond 18 decimals
        (EUR, "0", "BAD_INPUT"),
        (EUR, "a lot", "BAD_INPUT"),
        (
            "eip155:1/erc20:0x00000000000000000000000000000000000000e0",
            "1",
            "NOT_FOUND",
        ),
        ("not an asset", "1", "BAD_INPUT"),
    ] {
        let resp = gql_as(
            &app.router,
            Some(OPS_KEY),
            feed,
            json!({ "asset": asset, "rate": rate }),
        )
        .await;
        assert_eq!(code(&resp), expected, "{asset} {rate}: {resp}");
    }
    assert_eq!(reference_statuses(&app.router).await[EUR], "unfed");

    let resp = gql_as(
        &app.router,
        Some(OPS_KEY),
        feed,
        json!({ "asset": EUR, "rate": "1.08" }),
    )
    .await;
    assert!(resp["errors"].is_null(), "{resp}");
    assert_eq!(
        resp["data"]["feedReferenceRate"]["referenceRateStatus"],
        "fresh"
    );
    assert_eq!(
        app.store
            .audit_actions("asset.feed_reference_rate")
            .await
            .unwrap()
            .len(),
        1
    );

    // A restarted node applies the stored rate with the time it was fed.
    let stored = app.store.relay_parameters_since(i64::MIN).await.unwrap();
    let fed = stored
        .iter()
        .find(|p| {
            matches!(
                p.action,
                meridian_types::RelayAction::FeedReferenceRate { .. }
            )
        })
        .expect("the fed rate is stored");
    let fed_at = u64::try_from(fed.changed_at.timestamp()).unwrap();
    let restarted = routing();
    meridian_transfers::routing::apply_stored_parameters(&app.store, &restarted)
        .await
        .unwrap();
    let eur: meridian_types::AssetId = EUR.parse().unwrap();
    let status_at = |now| restarted.read(|_, s| s.policy.reference.status(&eur, now));
    assert_eq!(status_at(fed_at + 300), ReferenceStatus::Fresh { fed_at });
    assert_eq!(status_at(fed_at + 301), ReferenceStatus::Stale { fed_at });
    // 1.08 reference units per EUR: 100.00 EUR (10 000 base units) are 108.00 (10 800 cents).
    assert_eq!(
        restarted.read(|_, s| s.policy.reference.value_at(&eur, 10_000, fed_at)),
        Ok(10_800)
    );

    // A feed whose audit entry cannot be written changes nothing.
    use sea_orm::ConnectionTrait;
    app.store
        .connection()
        .execute_unprepared("DROP TABLE audit_log")
        .await
        .unwrap();
    let resp = gql_as(
        &app.router,
        Some(OPS_KEY),
        feed,
        json!({ "asset": EUR, "rate": "2" }),
    )
    .await;
    assert_eq!(code(&resp), "INTERNAL", "{resp}");
    assert_eq!(
        app.store
            .relay_parameters_since(i64::MIN)
            .await
            .unwrap()
            .len(),
        stored.len()
    );
}

#[tokio::test]
async fn operators_release_holds_and_pause_corridors_with_a_key_and_an_audit_trail() {
    use meridian_storage::{NewTransfer, Transition};
    use meridian_types::TransferState::*;
    let app = seeded().await;
    let now = chrono::Utc::now();
    let step = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "router".into(),
        at: now,
    };
    let held = NewTransfer {
        id: "tr:held".into(),
        source_event_uid: "held".into(),
        source_chain: "eip155:31337".parse().unwrap(),
        dest_chain: "eip155:1337".into(),
        source_asset: USD.parse().unwrap(),
        dest_asset: EUR.into(),
        sender: "eip155:31337:0x000000000000000000000000000000000000a11c"
            .parse()
            .unwrap(),
        recipient: "eip155:1337:0x000000000000000000000000000000000000b0b0".into(),
        amount: 100_000_000,
        deadline: None,
        quote: None,
    };
    let path = [
        step(None, Requested),
        step(Some(Requested), Screened),
        step(Some(Screened), Quoted),
        step(Some(Quoted), Held),
    ];
    assert!(app.store.create_transfer(&held, &path).await.unwrap());

    let release = "mutation { releaseHold(transferId: \"tr:held\", reason: \"KYC checked\") { state destAmount history { from to actor reason } } }";
    // Without a key, or with a wrong one: UNAUTHORIZED, nothing changes.
    for key in [None, Some("k-wrong-wrong-wrong")] {
        let resp = gql_as(&app.router, key, release, json!({})).await;
        assert_eq!(
            resp["errors"][0]["extensions"]["code"], "UNAUTHORIZED",
            "{resp}"
        );
    }
    assert_eq!(
        app.store
            .transfer("tr:held")
            .await
            .unwrap()
            .unwrap()
            .transfer
            .state,
        meridian_types::TransferState::Held
    );

    let resp = gql_as(&app.router, Some(OPS_KEY), release, json!({})).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    let t = &resp["data"]["releaseHold"];
    assert_eq!(t["state"], "quoted");
    assert_eq!(t["destAmount"], "9177");
    let last = t["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["from"], "held");
    assert_eq!(last["actor"], "operator:ops");
    assert!(last["reason"]
        .as_str()
        .unwrap()
        .starts_with("hold released: KYC checked"));
    // The stored quote is what settlement will post.
    let stored = app.store.transfer("tr:held").await.unwrap().unwrap();
    let hops = stored.transfer.quote.unwrap().hops;
    assert_eq!(
        (hops[0].amount_in, hops[0].fee, hops[0].amount_out),
        (100_000_000, 250_000, 9_177)
    );
    // Releasing again: it is no longer held.
    let resp = gql_as(&app.router, Some(OPS_KEY), release, json!({})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "BAD_INPUT",
        "{resp}"
    );

    // Pause: the corridor quotes nothing until resumed.
    let pause = "mutation($p: Boolean!) { pauseCorridor(id: \"usd-eur\", paused: $p, reason: \"bank holiday\") { id paused } }";
    let resp = gql_as(&app.router, Some(OPS_KEY), pause, json!({ "p": true })).await;
    assert_eq!(resp["data"]["pauseCorridor"]["paused"], true, "{resp}");
    let quote = "query($from: String!, $to: String!) { quote(from: $from, to: $to, amount: \"100000000\") { amountOut } }";
    let errors = gql_err(&app.router, quote, json!({ "from": USD, "to": EUR })).await;
    assert_eq!(
        errors[0]["extensions"]["reasons"],
        json!(["usd-eur: paused"])
    );
    gql_as(&app.router, Some(OPS_KEY), pause, json!({ "p": false })).await;
    gql_ok(&app.router, quote, json!({ "from": USD, "to": EUR })).await;
    // Stored as the parameter in force, the operator's latest change: a restart applies it.
    let stored = app.store.relay_parameters().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0].action,
        meridian_types::RelayAction::PauseCorridor {
            corridor: "usd-eur".into(),
            paused: false
        }
    );
    assert!(stored[0].actor.starts_with("operator:"), "{stored:?}");
    let resp = gql_as(
        &app.router,
        Some(OPS_KEY),
        "mutation { pauseCorridor(id: \"nope\", paused: true, reason: \"x\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(resp["errors"][0]["extensions"]["code"], "NOT_FOUND");
    // A fixed-rate corridor refuses a fed rate.
    let resp = gql_as(
        &app.router,
        Some(OPS_KEY),
        "mutation { feedRate(corridor: \"usd-eur\", rate: \"0.9\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(resp["errors"][0]["extensions"]["code"], "BAD_INPUT");

    // Travel-rule data releases only a transfer held for want of it.
    let tr = |id: &str| NewTransfer {
        id: id.into(),
        source_event_uid: id.into(),
        ..held.clone()
    };
    let mut waiting = path.clone();
    waiting[3].reason = Some("originator and beneficiary data are required above 500".into());
    assert!(app
        .store
        .create_transfer(&tr("tr:travel"), &waiting)
        .await
        .unwrap());
    let provide = |id: &str| {
        format!(
            "mutation {{ provideTravelRuleData(transferId: \"{id}\", originator: \"Alice Ltd, Zurich\", beneficiary: \"Bob GmbH, Berlin\") {{ state }} }}"
        )
    };
    let resp = gql_as(&app.router, Some(OPS_KEY), &provide("tr:held"), json!({})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "BAD_INPUT",
        "{resp}"
    );
    let resp = gql_as(&app.router, Some(OPS_KEY), &provide("tr:travel"), json!({})).await;
    assert_eq!(
        resp["data"]["provideTravelRuleData"]["state"], "quoted",
        "{resp}"
    );

    // A refund ordered for a quoted transfer refuses it (delivery then refunds the sender); a
    // finished one cannot be refunded.
    let refund = |id: &str| {
        format!("mutation {{ refundTransfer(transferId: \"{id}\", reason: \"customer request\") {{ state history {{ to actor reason }} }} }}")
    };
    let resp = gql_as(&app.router, Some(OPS_KEY), &refund("tr:travel"), json!({})).await;
    assert_eq!(
        resp["data"]["refundTransfer"]["state"], "rejected",
        "{resp}"
    );
    let resp = gql_as(&app.router, Some(OPS_KEY), &refund("tr:travel"), json!({})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "BAD_INPUT",
        "{resp}"
    );
    // A failed refund can be retried; nothing else can.
    let mut refund_failed = path[..1].to_vec();
    refund_failed.push(step(Some(Requested), Rejected));
    refund_failed.push(step(Some(Rejected), Failed));
    assert!(app
        .store
        .create_transfer(&tr("tr:refund-failed"), &refund_failed)
        .await
        .unwrap());
    let retry = |id: &str| {
        format!("mutation {{ retryTransfer(transferId: \"{id}\", reason: \"relayer key fixed\") {{ state }} }}")
    };
    let resp = gql_as(
        &app.router,
        Some(OPS_KEY),
        &retry("tr:refund-failed"),
        json!({}),
    )
    .await;
    assert_eq!(resp["data"]["retryTransfer"]["state"], "rejected", "{resp}");
    let resp = gql_as(&app.router, Some(OPS_KEY), &retry("tr:held"), json!({})).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "BAD_INPUT",
        "{resp}"
    );

    // Every operator action is in the audit log, with the key's name.
    use meridian_storage::entities::audit_log;
    use sea_orm::{EntityTrait, QueryOrder};
    let audit: Vec<(String, String, String)> = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Id)
        .all(app.store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.actor, a.action, a.subject))
        .collect();
    let ops = |action: &str, subject: &str| {
        (
            "operator:ops".to_owned(),
            action.to_owned(),
            subject.to_owned(),
        )
    };
    assert_eq!(
        audit,
        [
            ops("transfer.release_hold", "transfer:tr:held"),
            ops("corridor.pause", "corridor:usd-eur"),
            ops("corridor.resume", "corridor:usd-eur"),
            ops("transfer.travel_rule_data", "transfer:tr:travel"),
            ops("transfer.refund", "transfer:tr:travel"),
            ops("transfer.retry", "transfer:tr:refund-failed"),
        ]
    );
}

#[tokio::test]
async fn transfers_show_state_and_history() {
    let app = seeded().await;
    // The seeded request on devnet-a asks for a token this node does not list.
    let intake =
        meridian_transfers::intake::TransferIntake::new(app.store.clone(), Arc::new(routing()));
    let summary = intake.pass(chrono::Utc::now()).await.unwrap();
    assert_eq!(summary.created.len(), 1);
    let data = gql_ok(
        &app.router,
        "{ transfers(state: \"rejected\") { id state sender amount history { from to reason actor } } }",
        json!({}),
    )
    .await;
    let t = &data["transfers"][0];
    assert_eq!(t["state"], "rejected");
    assert_eq!(t["amount"], "250");
    let history = t["history"].as_array().unwrap();
    let path: Vec<(&Value, &Value)> = history.iter().map(|h| (&h["from"], &h["to"])).collect();
    assert_eq!(
        path,
        [
            (&Value::Null, &json!("requested")),
            (&json!("requested"), &json!("screened")),
            (&json!("screened"), &json!("rejected")),
        ]
    );
    assert!(
        history[2]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown asset"),
        "{t}"
    );
    assert_eq!(history[2]["actor"], "router");
    let id = t["id"].as_str().unwrap().to_owned();
    let one = gql_ok(
        &app.router,
        "query($id: String!) { transfer(id: $id) { id state } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(one["transfer"]["id"], id.as_str());
    let none = gql_ok(
        &app.router,
        "{ transfers(state: \"quoted\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(none["transfers"], json!([]));
    let errors = gql_err(
        &app.router,
        "{ transfers(state: \"lost\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(errors[0]["extensions"]["code"], "BAD_INPUT");
    let errors = gql_err(
        &app.router,
        "{ transfers(first: 100000) { id } }",
        json!({}),
    )
    .await;
    assert_eq!(errors[0]["extensions"]["code"], "PAGE_SIZE_EXCEEDED");
}

#[tokio::test]
async fn quotes_and_corridors_show_rate_fees_and_cost() {
    let app = seeded().await;
    // 100 USD: fee 250 000, 99 750 000 USD base units · 0.92 at 6 → 2 decimals = 9 177 EUR cents.
    let data = gql_ok(
        &app.router,
        "query($from: String!, $to: String!) { quote(from: $from, to: $to, amount: \"100000000\") { amountIn amountOut costBps costPercent aboveCostLine hops { corridor fee rate amountOut } quotedAt expiresAt } }",
        json!({ "from": USD, "to": EUR }),
    )
    .await;
    let q = &data["quote"];
    assert_eq!(q["amountOut"], "9177");
    assert_eq!(q["hops"][0]["corridor"], "usd-eur");
    assert_eq!(q["hops"][0]["fee"], "250000");
    assert_eq!(q["hops"][0]["rate"], "0.000092");
    // Ideal 9 200 cents; cost (9 200 − 9 177) / 9 200 = 25 bps.
    assert_eq!(q["costBps"], 25);
    assert_eq!(q["costPercent"], "0.25");
    assert_eq!(q["aboveCostLine"], false);
    let quoted = chrono::DateTime::parse_from_rfc3339(q["quotedAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(q["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((expires - quoted).num_seconds(), 60);

    // The paused corridor: NO_ROUTE with the reason per corridor.
    let errors = gql_err(
        &app.router,
        "query($from: String!, $to: String!) { quote(from: $from, to: $to, amount: \"100\") { amountOut } }",
        json!({ "from": EUR, "to": USD }),
    )
    .await;
    assert_eq!(errors[0]["extensions"]["code"], "NO_ROUTE");
    assert_eq!(
        errors[0]["extensions"]["reasons"],
        json!(["eur-usd: paused"])
    );
    // Bad input is a coded error, not a crash.
    for (from, amount) in [("not-an-asset", "1"), (USD, "-5"), (USD, "0")] {
        let errors = gql_err(
            &app.router,
            "query($from: String!, $to: String!, $amount: String!) { quote(from: $from, to: $to, amount: $amount) { amountOut } }",
            json!({ "from": from, "to": EUR, "amount": amount }),
        )
        .await;
        assert_eq!(
            errors[0]["extensions"]["code"], "BAD_INPUT",
            "{from} {amount}"
        );
    }

    let data = gql_ok(
        &app.router,
        "{ assets { id symbol decimals kind issuer } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["assets"],
        json!([
            { "id": EUR, "symbol": "EUR", "decimals": 2, "kind": "stablecoin", "issuer": null },
            { "id": USD, "symbol": "USD", "decimals": 6, "kind": "stablecoin", "issuer": null },
        ])
    );

    let data = gql_ok(
        &app.router,
        "{ corridors { id paused rate rateProblem used24h dailyCap quote { amountOut costBps } } }",
        json!({}),
    )
    .await;
    let c = &data["corridors"];
    assert_eq!(c[0]["id"], "usd-eur");
    assert_eq!(c[0]["rate"], "0.000092");
    assert_eq!(c[0]["used24h"], "0");
    // At the minimum (1 USD): fee 2 500, 997 500 · 0.000092 = 91 cents.
    assert_eq!(c[0]["quote"]["amountOut"], "91");
    assert_eq!(c[1]["id"], "eur-usd");
    assert_eq!(c[1]["paused"], true);
    assert_eq!(c[1]["quote"], Value::Null);
}

#[tokio::test]
async fn chains_report_head_finalized_checkpoint_and_lag() {
    let app = seeded().await;
    let data = gql_ok(
        &app.router,
        "{ chains { id name family headHeight headHash finalizedHeight checkpointHeight checkpointHash lag } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["chains"],
        json!([
            {
                "id": "eip155:1337", "name": "devnet-b", "family": "evm",
                "headHeight": null, "headHash": null, "finalizedHeight": null,
                "checkpointHeight": 4, "checkpointHash": block_hash(TAG_B, 4), "lag": null,
            },
            {
                "id": "eip155:31337", "name": "devnet-a", "family": "evm",
                "headHeight": 120, "headHash": block_hash(TAG_A, 120), "finalizedHeight": 110,
                "checkpointHeight": 100, "checkpointHash": block_hash(TAG_A, 100), "lag": 20,
            },
        ])
    );

    let one = gql_ok(
        &app.router,
        r#"{ chain(id: "eip155:31337") { name lag } }"#,
        json!({}),
    )
    .await;
    assert_eq!(one, json!({ "chain": { "name": "devnet-a", "lag": 20 } }));
    let none = gql_ok(
        &app.router,
        r#"{ chain(id: "eip155:5") { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(none, json!({ "chain": null }));
}

#[tokio::test]
async fn meta_reports_indexed_heights_and_version() {
    let app = seeded().await;
    let data = gql_ok(
        &app.router,
        "{ _meta { version chains { chainId checkpointHeight headHeight } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        data["_meta"],
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "chains": [
                { "chainId": "eip155:1337", "checkpointHeight": 4, "headHeight": null },
                { "chainId": "eip155:31337", "checkpointHeight": 100, "headHeight": 120 },
            ],
        })
    );
}

const EVENTS_PAGE: &str = r#"
    query Page($first: Int, $after: String, $where: EventWhere, $order: EventOrderBy) {
        events(first: $first, after: $after, where: $where, orderBy: $order) {
            totalCount
            edges { cursor node { uid chainId blockNumber kind status } }
            pageInfo { hasNextPage hasPreviousPage endCursor }
        }
    }
"#;

/// Follows `endCursor` until `hasNextPage` is false; returns uids and each page's size.
async fn walk_events(
    router: &Router,
    first: i64,
    filter: Value,
    order: &str,
) -> (Vec<String>, Vec<usize>, u64) {
    let (mut seen, mut sizes) = (Vec::new(), Vec::new());
    let mut after = Value::Null;
    let mut total = None;
    for page_no in 0..50 {
        let vars = json!({ "first": first, "after": after, "where": filter, "order": order });
        let data = gql_ok(router, EVENTS_PAGE, vars).await;
        let conn = &data["events"];
        let edges = conn["edges"].as_array().unwrap();
        sizes.push(edges.len());
        seen.extend(
            edges
                .iter()
                .map(|e| e["node"]["uid"].as_str().unwrap().to_owned()),
        );
        let page_total = conn["totalCount"].as_u64().unwrap();
        assert_eq!(
            *total.get_or_insert(page_total),
            page_total,
            "totalCount changed between pages"
        );
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], json!(page_no > 0));
        if let Some(last) = edges.last() {
            assert_eq!(conn["pageInfo"]["endCursor"], last["cursor"]);
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return (seen, sizes, total.unwrap());
        }
        after = conn["pageInfo"]["endCursor"].clone();
        assert!(after.is_string(), "hasNextPage without endCursor");
    }
    panic!("pagination did not end after 50 pages");
}

#[tokio::test]
async fn events_connection_visits_every_event_once() {
    let app = seeded().await;
    let all = uids(&app.events);
    assert_eq!(all.len(), 6);

    let (seen, sizes, total) = walk_events(&app.router, 2, Value::Null, "BLOCK_NUMBER_ASC").await;
    assert_eq!(seen, all);
    assert_eq!(sizes, [2, 2, 2]);
    assert_eq!(total, 6);

    let (seen, sizes, _) = walk_events(&app.router, 4, Value::Null, "BLOCK_NUMBER_DESC").await;
    assert_eq!(seen, all.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(sizes, [4, 2]);

    // Node fields come from what was ingested.
    let data = gql_ok(
        &app.router,
        r#"{ events(first: 1, where: { blockNumberGte: 100 }) { edges { node {
              uid chainId blockNumber blockHash txHash logIndex contract kind status error payload } } } }"#,
        json!({}),
    )
    .await;
    let undecodable = &app.events[5];
    assert_eq!(
        data["events"]["edges"][0]["node"],
        json!({
            "uid": undecodable.id.uid(),
            "chainId": "eip155:31337",
            "blockNumber": 100,
            "blockHash": block_hash(TAG_A, 100),
            "txHash": tx_hash(TAG_A, 100, 2),
            "logIndex": 2,
            "contract": ESCROW,
            "kind": "UNDECODABLE",
            "status": "UNDECODABLE",
            "error": "unknown topic0",
            "payload": {
                "kind": "undecodable",
                "reason": "unknown topic0",
                "topics": [format!("0x{:064x}", 0xdead)],
                "data": "0x1234",
            },
        })
    );
    let max = gql_ok(
        &app.router,
        "query($uid: String!) { event(uid: $uid) { kind payload } }",
        json!({ "uid": app.events[2].id.uid() }),
    )
    .await;
    assert_eq!(max["event"]["kind"], "TOKEN_MINTED");
    assert_eq!(
        max["event"]["payload"]["amount"],
        "340282366920938463463374607431768211455"
    );
    let missing = gql_ok(&app.router, r#"{ event(uid: "nope") { uid } }"#, json!({})).await;
    assert_eq!(missing, json!({ "event": null }));
}

#[tokio::test]
async fn events_where_filters_and_total_count() {
    let app = seeded().await;
    let pick = |pred: &dyn Fn(&ChainEvent) -> bool| -> Vec<String> {
        app.events
            .iter()
            .filter(|e| pred(e))
            .map(|e| e.id.uid())
            .collect()
    };
    let a = chain_a();
    let cases = [
        (
            json!({ "chainId": "eip155:31337" }),
            pick(&|e| e.id.chain == a),
        ),
        (
            json!({ "chainId": "eip155:1337" }),
            pick(&|e| e.id.chain != a),
        ),
        (
            json!({ "kindIn": ["TOKEN_MINTED"] }),
            pick(&|e| e.payload.kind() == EventKind::TokenMinted),
        ),
        (
            json!({ "blockNumberGte": 97 }),
            pick(&|e| e.id.block_number >= 97),
        ),
        (
            json!({ "blockNumberGte": 3, "blockNumberLte": 97 }),
            pick(&|e| (3..=97).contains(&e.id.block_number)),
        ),
        (
            json!({ "chainId": "eip155:31337", "kindIn": ["TOKEN_MINTED", "TOKEN_TRANSFERRED"], "blockNumberGte": 97 }),
            pick(&|e| {
                e.id.chain == a
                    && e.id.block_number >= 97
                    && matches!(
                        e.payload.kind(),
                        EventKind::TokenMinted | EventKind::TokenTransferred
                    )
            }),
        ),
        (
            json!({ "status": "UNDECODABLE" }),
            pick(&|e| e.status() == EventStatus::Undecodable),
        ),
        (
            json!({ "status": "DECODED" }),
            pick(&|e| e.status() == EventStatus::Decoded),
        ),
        (json!({ "chainId": "eip155:999" }), vec![]),
    ];
    for (filter, want) in cases {
        let (seen, _, total) =
            walk_events(&app.router, 2, filter.clone(), "BLOCK_NUMBER_ASC").await;
        assert_eq!(seen, want, "where {filter}");
        assert_eq!(total, want.len() as u64, "totalCount for where {filter}");
    }
    // `first: 0` still counts.
    let count = gql_ok(
        &app.router,
        r#"{ events(first: 0, where: { chainId: "eip155:31337", blockNumberGte: 97 }) { totalCount edges { cursor } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(count, json!({ "events": { "totalCount": 3, "edges": [] } }));
}

// ---------------------------------------------------------------------------------------------
// GraphQL limits and errors

fn codes(errors: &[Value]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or("<no code>")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn page_size_cursor_and_input_errors_carry_codes() {
    let app = seeded().await;
    let r = &app.router;

    // The largest allowed page works; one more is refused.
    let ok = gql_ok(
        r,
        "{ events(first: 100) { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    assert_eq!(ok["events"]["edges"].as_array().unwrap().len(), 6);
    let errors = gql_err(
        r,
        "{ events(first: 101) { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["PAGE_SIZE_EXCEEDED"]);
    let errors = gql_err(
        r,
        "{ events(first: 1000) { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["PAGE_SIZE_EXCEEDED"]);
    let errors = gql_err(
        r,
        "{ events(first: -1) { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["PAGE_SIZE_EXCEEDED"]);

    for bad in ["garbage", "ev:1", "ev:x:y", ""] {
        let errors = gql_err(
            r,
            "query($after: String) { events(first: 2, after: $after) { edges { node { uid } } } }",
            json!({ "after": bad }),
        )
        .await;
        assert_eq!(codes(&errors), ["BAD_CURSOR"], "cursor {bad:?}");
    }

    let errors = gql_err(
        r,
        r#"{ events(where: { chainId: "not a chain" }) { totalCount } }"#,
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["BAD_INPUT"]);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("where.chainId"),
        "{errors:?}"
    );
    let errors = gql_err(
        r,
        "{ events(where: { blockNumberGte: 5, blockNumberLte: 4 }) { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["BAD_INPUT"]);
    let errors = gql_err(r, r#"{ chain(id: "EIP155:1") { name } }"#, json!({})).await;
    assert_eq!(codes(&errors), ["BAD_INPUT"]);
}

#[tokio::test]
async fn a_post_that_is_not_json_or_too_large_is_refused_before_it_is_parsed() {
    let app = app(default_limits()).await;
    let post = |content_type: &str, body: String| {
        Request::post("/graphql")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    };
    let query = json!({ "query": "{ chains { id } }" }).to_string();
    // A browser sends text/plain (and forms) cross-site without a preflight: never executed.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, body) = send(&app.router, post(content_type, query.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["errors"][0]["extensions"]["code"],
            "UNSUPPORTED_MEDIA_TYPE"
        );
        assert!(v.get("data").is_none(), "{body}");
    }
    // JSON, with a charset, is executed.
    let (status, _, body) = send(
        &app.router,
        post("application/json; charset=utf-8", query.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"chains\""), "{body}");
    // A body just above the limit (far below axum's own 2 MiB) is refused unread, with its own
    // code; one just below is read.
    let padded = |len: usize| {
        let head = json!({ "query": "{ chains { id } } #" }).to_string();
        let pad = len - head.len();
        json!({ "query": format!("{{ chains {{ id }} }} #{}", "x".repeat(pad)) }).to_string()
    };
    let below = padded(meridian_graphql::REQUEST_BYTES_MAX);
    assert_eq!(below.len(), meridian_graphql::REQUEST_BYTES_MAX);
    let (status, _, body) = send(&app.router, post("application/json", below)).await;
    assert_eq!(status, StatusCode::OK, "{}", &body[..body.len().min(300)]);
    let above = padded(meridian_graphql::REQUEST_BYTES_MAX + 1);
    let (status, _, body) = send(&app.router, post("application/json", above)).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &body[..body.len().min(300)]
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["extensions"]["code"], "REQUEST_TOO_LARGE");
    // Not a GraphQL request at all.
    let (status, _, body) = send(&app.router, post("application/json", "[1, 2".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn depth_limit_refuses_deep_queries() {
    let app = app(SchemaLimits {
        depth_max: 3,
        ..default_limits()
    })
    .await;
    // Depth 3 is allowed…
    let ok = gql_ok(
        &app.router,
        "{ events { pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    assert_eq!(ok["events"]["pageInfo"]["hasNextPage"], false);
    // …depth 4 (events > edges > node > uid) is not.
    let errors = gql_err(
        &app.router,
        "{ events { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    let message = errors[0]["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        message.contains("deep") || message.contains("depth"),
        "{errors:?}"
    );
    assert_eq!(codes(&errors), ["DEPTH_LIMIT_EXCEEDED"]);
    assert!(app.store.events_count(&Default::default()).await.unwrap() > 0);
}

#[tokio::test]
async fn complexity_limit_refuses_expensive_queries() {
    let app = app(SchemaLimits {
        complexity_max: 10,
        ..default_limits()
    })
    .await;
    // events costs first × (cost of one edge) + 1: 2 × (edges + node + uid) + 1 = 7.
    let ok = gql_ok(
        &app.router,
        "{ events(first: 2) { edges { node { uid } } } }",
        json!({}),
    )
    .await;
    assert_eq!(ok["events"]["edges"].as_array().unwrap().len(), 2);
    // 5 × (edges + node + uid + chainId) + 1 = 21.
    let errors = gql_err(
        &app.router,
        "{ events(first: 5) { edges { node { uid chainId } } } }",
        json!({}),
    )
    .await;
    let message = errors[0]["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(message.contains("complex"), "{errors:?}");
    assert_eq!(codes(&errors), ["COMPLEXITY_LIMIT_EXCEEDED"]);
    // Transfers cost per item asked for too: 2 × id + 1 = 3 passes, 5 × (id, state) + 1 = 11
    // does not.
    gql_ok(&app.router, "{ transfers(first: 2) { id } }", json!({})).await;
    let errors = gql_err(
        &app.router,
        "{ transfers(first: 5) { id state } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["COMPLEXITY_LIMIT_EXCEEDED"]);
    // A `first` above the page limit is refused as such, however large.
    let app = seeded().await;
    for list in [
        "transfers(first: 100000) { id }",
        "events(first: 100000) { edges { node { uid } } }",
    ] {
        let errors = gql_err(&app.router, &format!("{{ {list} }}"), json!({})).await;
        assert_eq!(codes(&errors), ["PAGE_SIZE_EXCEEDED"], "{list}");
    }
}

#[tokio::test]
async fn alias_limit_refuses_many_aliases_before_resolving() {
    let limited = app(SchemaLimits {
        aliases_max: 3,
        ..default_limits()
    })
    .await;
    let aliased = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("c{i}: chains {{ id }}")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let ok = gql_ok(&limited.router, &aliased(3), json!({})).await;
    assert!(ok["c2"].is_array(), "{ok}");
    let errors = gql_err(&limited.router, &aliased(4), json!({})).await;
    assert_eq!(codes(&errors), ["ALIAS_LIMIT_EXCEEDED"], "{errors:?}");
    // Aliases hidden in a fragment count too.
    let errors = gql_err(
        &limited.router,
        "{ ...F } fragment F on Query { a: chains { id } b: chains { id } c: chains { id } d: chains { id } }",
        json!({}),
    )
    .await;
    assert_eq!(codes(&errors), ["ALIAS_LIMIT_EXCEEDED"], "{errors:?}");
    // The default keeps a thousand aliases out (they were all answered before the limit).
    let defaults = app(default_limits()).await;
    let errors = gql_err(&defaults.router, &aliased(1_000), json!({})).await;
    assert_eq!(codes(&errors), ["ALIAS_LIMIT_EXCEEDED"], "{errors:?}");
}

/// The introspection query GraphiQL and client code generators send (graphql-js
/// `getIntrospectionQuery()`), which nests `ofType` seven levels deep under `args { type }`.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

/// A POST of `{ chains { id } }` from `peer`, with an API key if given.
fn chains_request(peer: &str, key: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let mut req = req
        .body(Body::from(
            json!({ "query": "{ chains { id } }" }).to_string(),
        ))
        .unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        peer.parse::<std::net::SocketAddr>().unwrap(),
    ));
    req
}

#[tokio::test]
async fn each_client_has_its_own_rate_limit() {
    let app = app_serving(
        default_limits(),
        GraphqlConfig {
            rate_limit_per_second: 1,
            rate_limit_burst: 3,
            ..GraphqlConfig::default()
        },
    )
    .await;
    let send_raw = |req| app.router.clone().oneshot(req);
    // One peer: three at once pass, the fourth waits (one request per second on average).
    for _ in 0..3 {
        let resp = send_raw(chains_request("10.0.0.1:5000", None))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = send_raw(chains_request("10.0.0.1:5001", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    // Another peer, and an operator's key from the same peer, have budgets of their own.
    let resp = send_raw(chains_request("10.0.0.2:5000", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for _ in 0..3 {
        let resp = send_raw(chains_request("10.0.0.1:5002", Some(OPS_KEY)))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = send_raw(chains_request("10.0.0.1:5002", Some(OPS_KEY)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // A key that is not configured is no key: it shares its peer's (spent) budget.
    let resp = send_raw(chains_request("10.0.0.1:5003", Some("made-up")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // Monitors are never limited.
    let (status, _, _) = get(&app.router, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn browsers_may_call_the_api_only_from_configured_origins() {
    let preflight = |router: Router, origin: &'static str| async move {
        let req = Request::builder()
            .method("OPTIONS")
            .uri("/graphql")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,x-api-key",
            )
            .body(Body::empty())
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        resp.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let app = app_serving(
        default_limits(),
        GraphqlConfig {
            cors_origins: vec!["https://desk.example.com".into()],
            ..unlimited_http()
        },
    )
    .await;
    assert_eq!(
        preflight(app.router.clone(), "https://desk.example.com")
            .await
            .as_deref(),
        Some("https://desk.example.com")
    );
    assert_eq!(
        preflight(app.router.clone(), "https://evil.example").await,
        None
    );
    // Without origins configured, no page elsewhere is allowed.
    let app = seeded().await;
    assert_eq!(
        preflight(app.router.clone(), "https://desk.example.com").await,
        None
    );
}

#[tokio::test]
async fn graphiql_introspection_passes_default_limits() {
    let app = devnet_app().await;
    let data = gql_ok(&app.router, INTROSPECTION, json!({})).await;
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn introspection_and_graphiql_are_off_by_default() {
    let app = seeded().await;
    let resp = gql(&app.router, INTROSPECTION, json!({})).await;
    assert!(
        resp["data"]["__schema"]["queryType"]["name"].is_null(),
        "the schema was described: {resp}"
    );
    let resp = gql(
        &app.router,
        "{ __type(name: \"Query\") { name } }",
        json!({}),
    )
    .await;
    assert!(resp["data"]["__type"]["name"].is_null(), "{resp}");
    // Plain queries still work.
    gql_ok(&app.router, "{ chains { id } }", json!({})).await;
    for path in ["/", "/graphiql/3.9.0/graphiql.min.js"] {
        let (status, _, _) = get(&app.router, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _, _) = get(&app.router, "/graphql").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------------------------------------
// Operations endpoints

#[tokio::test]
async fn healthz_is_ok() {
    let app = seeded().await;
    let (status, _, body) = get(&app.router, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
}

#[tokio::test]
async fn readyz_reflects_watchers_and_database() {
    let app = seeded().await;
    let ready = |body: &str| -> Value { serde_json::from_str(body).unwrap() };

    let (status, content_type, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(
        ready(&body),
        json!({ "ready": true, "database": "ok", "watchers": {}, "tasks": {}, "failed": [] })
    );

    app.health.set("eip155:1", WatcherState::Running);
    let (status, _, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ready(&body)["ready"], true);
    assert_eq!(ready(&body)["watchers"], json!({ "eip155:1": "Running" }));

    app.health.set(
        "eip155:1",
        WatcherState::Failed("reorg deeper than 256 blocks".into()),
    );
    let (status, _, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v = ready(&body);
    assert_eq!(v["ready"], false);
    assert_eq!(v["database"], "ok");
    assert_eq!(
        v["failed"],
        json!([{ "chain": "eip155:1", "error": "reorg deeper than 256 blocks" }])
    );

    // Recovering (a restart of the watcher) makes the node ready again.
    app.health.set("eip155:1", WatcherState::Stopped);
    let (status, _, _) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);

    // A background task that died makes it unready, named with its error.
    app.health.set_task("settler", WatcherState::Running);
    let (status, _, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ready(&body)["tasks"], json!({ "settler": "Running" }));
    app.health
        .set_task("settler", WatcherState::Failed("died: panicked".into()));
    let (status, _, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        ready(&body)["failed"],
        json!([{ "task": "settler", "error": "died: panicked" }])
    );
    app.health.set_task("settler", WatcherState::Stopped);

    // A database that cannot be reached makes the node unready.
    app.store.connection().clone().close().await.unwrap();
    let (status, _, body) = get(&app.router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v = ready(&body);
    assert_eq!(v["ready"], false);
    assert_ne!(v["database"], "ok");
}

#[tokio::test]
async fn metrics_renders_prometheus_text() {
    let app = seeded().await;
    metrics::counter!(meridian_relayer::metrics::EVENTS_INGESTED, "chain" => "eip155:1")
        .increment(3);
    let (status, content_type, body) = get(&app.router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().starts_with("text/plain"));
    assert!(
        body.lines()
            .any(|l| l == "meridian_events_ingested_total{chain=\"eip155:1\"} 3"),
        "{body}"
    );
    assert!(
        body.contains(
            "# HELP meridian_events_ingested_total Chain events committed for the first time"
        ),
        "{body}"
    );
    assert!(
        body.contains("# TYPE meridian_events_ingested_total counter"),
        "{body}"
    );
}

#[tokio::test]
async fn graphiql_is_served_at_root() {
    let app = devnet_app().await;
    for path in ["/", "/graphql"] {
        let (status, content_type, body) = get(&app.router, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(content_type.unwrap().starts_with("text/html"), "{path}");
        assert!(
            body.to_ascii_lowercase().contains("graphiql"),
            "{path}: {body}"
        );
        // Everything the page loads comes from the node itself, at a pinned version.
        assert!(
            !body.contains("unpkg.com") && !body.contains("https://"),
            "{body}"
        );
        let version = meridian_graphql::GRAPHIQL_VERSION;
        let assets: Vec<&str> = body
            .split('"')
            .filter(|s| s.starts_with(&format!("/graphiql/{version}/")))
            .collect();
        assert_eq!(assets.len(), 4, "{body}");
        for asset in assets {
            let (status, content_type, body) = get(&app.router, asset).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            let expected = if asset.ends_with(".css") {
                "text/css"
            } else {
                "text/javascript"
            };
            assert!(content_type.unwrap().starts_with(expected), "{asset}");
            assert!(body.len() > 1_000, "{asset}");
        }
    }
    let (status, _, _) = get(&app.router, "/no-such-page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------
// CLI

const VALID_CONFIG: &str = r#"
[[chains]]
id = "eip155:31337"
name = "devnet"
rpc_urls = ["http://127.0.0.1:8545"]
"#;

/// The `meridian` binary run in `dir`, without inherited overrides from the environment.
fn meridian(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key == "DATABASE_URL" || key.starts_with("MERIDIAN") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().expect("killed by a signal"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn cli_config_validate_accepts_good_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, VALID_CONFIG).unwrap();
    let (code, stdout, stderr) = run(meridian(dir.path())
        .args(["config", "validate", "--config"])
        .arg(&good));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("ok (1 chains, 0 assets, 0 corridors)"),
        "{stdout}"
    );
    assert!(stdout.contains("governance: 0 members"), "{stdout}");
    // Contracts and voting tokens are reported as they will be used.
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "{VALID_CONFIG}
[[chains.contracts]]
address = \"0x00000000000000000000000000000000000000aa\"
kind = \"governor\"

[governance]
[[governance.tokens]]
chain = \"eip155:31337\"
address = \"0x00000000000000000000000000000000000000bb\"
power = \"votes\"
"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(meridian(dir.path())
        .args(["config", "validate", "--config"])
        .arg(&tokens));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(
            "contract governor 0x00000000000000000000000000000000000000aa on eip155:31337"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("governance: token 0x00000000000000000000000000000000000000bb on eip155:31337: delegated votes (getPastVotes)"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        VALID_CONFIG.replace("http://127.0.0.1:8545", "ftp://x"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(meridian(dir.path())
        .args(["config", "validate", "--config"])
        .arg(&bad));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("chains[0].rpc_urls[0]"), "{stderr}");

    let (code, _, stderr) = run(meridian(dir.path())
        .args(["config", "validate", "--config"])
        .arg(dir.path().join("missing.toml")));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");

    // A rate finer than the assets' decimals can carry (10^-20 per base unit) is refused at
    // start, naming the corridor.
    let fine = dir.path().join("fine.toml");
    std::fs::write(
        &fine,
        format!(
            "{VALID_CONFIG}
[[assets]]
id = \"eip155:31337/erc20:0x1111111111111111111111111111111111111111\"
symbol = \"A\"
decimals = 18
kind = \"stablecoin\"
[[corridors]]
id = \"too-fine\"
source_asset = \"eip155:31337/erc20:0x1111111111111111111111111111111111111111\"
dest_asset = \"eip155:31337/erc20:0x1111111111111111111111111111111111111111\"
rate = \"0.00000000000000000001\"
max_amount = \"10\"
daily_cap = \"10\"
"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(meridian(dir.path())
        .args(["config", "validate", "--config"])
        .arg(&fine));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("corridor too-fine: rate"), "{stderr}");
}

/// (state, name) of every line `migrate` printed about a migration.
fn migration_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(state, _)| matches!(*state, "applied" | "pending"))
        .map(|(s, n)| (s.to_owned(), n.to_owned()))
        .collect()
}

#[test]
fn cli_migrate_needs_only_database_url_without_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("only-url.sqlite");
    let mut cmd = meridian(dir.path());
    cmd.env(
        "DATABASE_URL",
        format!("sqlite://{}?mode=rwc", db.display()),
    )
    .args(["migrate", "up", "--config"])
    .arg(dir.path().join("absent.toml"));
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(db.exists());
    assert!(migration_lines(&stdout)
        .iter()
        .all(|(state, _)| state == "applied"));
    // Without DATABASE_URL a missing config file is still an error naming the file.
    let mut cmd = meridian(dir.path());
    cmd.env_remove("DATABASE_URL")
        .args(["migrate", "status", "--config"])
        .arg(dir.path().join("absent.toml"));
    let (code, _, stderr) = run(&mut cmd);
    assert_ne!(code, 0);
    assert!(stderr.contains("absent.toml"), "{stderr}");
}

#[test]
fn cli_migrate_up_status_down() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meridian.toml");
    std::fs::write(&config, VALID_CONFIG).unwrap();
    let db = dir.path().join("db.sqlite");
    let database_url = format!("sqlite://{}", db.display());
    let migrate = |args: &[&str]| {
        let mut cmd = meridian(dir.path());
        cmd.env("DATABASE_URL", &database_url)
            .arg("migrate")
            .args(args)
            .arg("--config")
            .arg(&config);
        let (code, stdout, stderr) = run(&mut cmd);
        assert_eq!(
            code, 0,
            "migrate {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        migration_lines(&stdout)
    };
    let names = [
        "m20261125_000001_chains",
        "m20261125_000002_assets_corridors",
        "m20261125_000003_ledger",
        "m20261125_000004_transfers",
        "m20261125_000005_governance",
        "m20261125_000006_audit_log",
        "m20261126_000007_postings_batch_integrity",
        "m20261126_000008_transfer_quotes",
        "m20261126_000009_delivery_validity",
        "m20261202_000010_evm_delivery_transactions",
        "m20261202_000011_remittance_inbox",
        "m20261202_000012_transition_paths",
        "m20261202_000013_transfers_by_state_and_age",
        "m20261202_000014_relay_parameters",
        "m20261202_000015_batched_payouts",
        "m20261203_000016_unused_transfer_indexes",
        "m20261203_000017_vote_reasons",
        "m20261203_000018_cluster_leases",
        "m20261203_000019_posting_journal",
        "m20261203_000020_ledger_checkpoints",
    ];
    let all = |state: &str| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (state.to_owned(), n.to_string()))
            .collect()
    };

    assert_eq!(migrate(&["up"]), all("applied"));
    // DATABASE_URL, not the config's default database, was used.
    assert!(db.exists());
    assert!(!dir.path().join("meridian.sqlite").exists());
    assert_eq!(migrate(&["status"]), all("applied"));

    let one_down = migrate(&["down"]);
    let last = names.len() - 1;
    assert_eq!(one_down[..last], all("applied")[..last]);
    assert_eq!(
        one_down[last],
        ("pending".to_owned(), names[last].to_owned())
    );

    assert_eq!(migrate(&["down", "--steps", "0"]), all("pending"));
    assert_eq!(migrate(&["status"]), all("pending"));
    assert_eq!(migrate(&["fresh"]), all("applied"));
}

/// `router` served on a free local port: its address and the server task.
async fn serve(
    router: &Router,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = router.clone();
    (
        addr,
        tokio::spawn(async move { axum::serve(listener, router).await }),
    )
}

/// A graphql-transport-ws connection request to the node at `addr`.
fn ws_request(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    req
}

/// A graphql-ws message as a websocket text frame.
fn ws_text(v: Value) -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::Text(v.to_string().into())
}

/// The JSON of the next websocket message, which must be text.
fn ws_json(
    m: Option<
        Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
    >,
) -> Value {
    match m {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
            serde_json::from_str(t.as_str()).unwrap()
        }
        other => panic!("unexpected websocket message {other:?}"),
    }
}

#[tokio::test]
async fn websocket_connections_and_subscriptions_are_limited() {
    use futures::{SinkExt, StreamExt};

    let app = app_serving(
        SchemaLimits {
            subscriptions_per_connection_max: 2,
            ..default_limits()
        },
        GraphqlConfig {
            ws_connections_max: 1,
            ..unlimited_http()
        },
    )
    .await;
    let (addr, _server) = serve(&app.router).await;
    let request = || ws_request(addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(request()).await.unwrap();
    // A second connection while the first is open: refused before the upgrade.
    match tokio_tungstenite::connect_async(request()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("a second connection was not refused: {other:?}"),
    }
    let (send, next_json) = (ws_text, ws_json);
    ws.send(send(json!({ "type": "connection_init" })))
        .await
        .unwrap();
    assert_eq!(next_json(ws.next().await)["type"], "connection_ack");
    for id in ["1", "2", "3"] {
        ws.send(send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": "subscription { transferUpdates { id } }" }
        })))
        .await
        .unwrap();
    }
    // Nothing changes, so the only message is the refusal of the third subscription.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("a refusal");
    let refused = next_json(refused);
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "TOO_MANY_SUBSCRIPTIONS",
        "{refused}"
    );
    // Closing the connection frees its place.
    ws.close(None).await.unwrap();
    drop(ws);
    let mut tries = 0;
    loop {
        match tokio_tungstenite::connect_async(request()).await {
            Ok(_) => break,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE && tries < 100 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the closed connection's place was not freed: {e:?}"),
        }
    }
}

#[tokio::test]
async fn transfer_updates_arrive_over_graphql_ws() {
    use futures::{SinkExt, StreamExt};
    use meridian_storage::{NewTransfer, Transition};

    let app = seeded().await;
    let (addr, server) = serve(&app.router).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(addr))
        .await
        .unwrap();
    let (send, next_json) = (ws_text, ws_json);
    ws.send(send(json!({ "type": "connection_init" })))
        .await
        .unwrap();
    assert_eq!(next_json(ws.next().await)["type"], "connection_ack");
    ws.send(send(json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": "subscription { transferUpdates(state: \"held\") { id state history { to } } }" }
    })))
    .await
    .unwrap();
    // Let the subscription start before the change.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    use meridian_types::TransferState::*;
    let now = chrono::Utc::now();
    let step = |from, to| Transition {
        from,
        to,
        reason: None,
        actor: "router".into(),
        at: now,
    };
    let transfer = |id: &str| NewTransfer {
        id: id.into(),
        source_event_uid: id.into(),
        source_chain: "eip155:31337".parse().unwrap(),
        dest_chain: "eip155:1337".into(),
        source_asset: USD.parse().unwrap(),
        dest_asset: EUR.into(),
        sender: "eip155:31337:0x000000000000000000000000000000000000a11c"
            .parse()
            .unwrap(),
        recipient: "eip155:1337:0x000000000000000000000000000000000000b0b0".into(),
        amount: 1,
        deadline: None,
        quote: None,
    };
    // A rejected one does not match the filter; the held one does.
    app.store
        .create_transfer(
            &transfer("tr:no"),
            &[step(None, Requested), step(Some(Requested), Rejected)],
        )
        .await
        .unwrap();
    app.store
        .create_transfer(
            &transfer("tr:yes"),
            &[
                step(None, Requested),
                step(Some(Requested), Screened),
                step(Some(Screened), Quoted),
                step(Some(Quoted), Held),
            ],
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("an update within 5 s");
    let msg = next_json(msg);
    assert_eq!(msg["type"], "next", "{msg}");
    let t = &msg["payload"]["data"]["transferUpdates"];
    assert_eq!(t["id"], "tr:yes");
    assert_eq!(t["state"], "held");
    assert_eq!(t["history"].as_array().unwrap().len(), 4);
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// Fuzzing hostile GraphQL input (issue 16 item 8): whatever a client sends, the answer is JSON
// with typed errors (`extensions.code`), never a panic or an INTERNAL error.

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Requests the API serves, with holes the fuzzer fills: `@S` a string argument, `@N` a
    /// number.
    const SHAPES: &[&str] = &[
        "{ transfers(first: @N, state: @S) { id state amount destAmount history { from to reason } } }",
        "{ transfer(id: @S) { id state history { to } } }",
        "{ quote(from: @S, to: @S, amount: @S) { amountOut } }",
        "{ chain(id: @S) { id name } }",
        "{ events(first: @N, after: @S) { edges { cursor node { uid kind } } pageInfo { hasNextPage } } }",
        "{ event(uid: @S) { uid kind } }",
        "{ proposals(first: @N) { id title } }",
        "{ proposal(id: @S) { id tally { participation voters } } }",
        "{ votingPower(proposalId: @S, address: @S) }",
        "mutation { releaseHold(transferId: @S, reason: @S) { state } }",
        "mutation { refundTransfer(transferId: @S, reason: @S) { state } }",
        "mutation { provideTravelRuleData(transferId: @S, originator: @S, beneficiary: @S) { state } }",
        "mutation { pauseCorridor(id: @S, paused: true, reason: @S) { id paused } }",
        "mutation { feedRate(corridor: @S, rate: @S) { id } }",
    ];

    /// Strings a hostile client would try, and arbitrary ones.
    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just(String::new()),
            Just("tr:eip155:31337/97/0x00/1".to_owned()),
            Just("eip155:31337/erc20:0x0000000000000000000000000000000000000001".to_owned()),
            Just("340282366920938463463374607431768211456".to_owned()),
            Just("-1".to_owned()),
            Just("1e400".to_owned()),
            Just("0.000000000000000000000000000001".to_owned()),
            Just("usd-eur".to_owned()),
            "[a-z0-9:/._-]{0,64}",
            "\\PC{0,4096}",
        ]
    }

    fn hostile_number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i32>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("99999999999999999999999".to_owned()),
            Just("1.5".to_owned()),
            Just("-0".to_owned()),
        ]
    }

    /// One request body: a shape with its holes filled, a raw query, or raw bytes.
    fn request() -> impl Strategy<Value = (Vec<u8>, bool)> {
        let filled = (
            0..SHAPES.len(),
            proptest::collection::vec(hostile_string(), 3),
            hostile_number(),
            any::<bool>(),
        )
            .prop_map(|(shape, strings, number, with_key)| {
                let mut query = SHAPES[shape].replace("@N", &number);
                for s in &strings {
                    // A GraphQL string literal: JSON escaping is a subset of it.
                    query = query.replacen("@S", &serde_json::to_string(s).unwrap(), 1);
                }
                (json!({ "query": query }).to_string().into_bytes(), with_key)
            });
        let raw_query =
            any::<String>().prop_map(|q| (json!({ "query": q }).to_string().into_bytes(), false));
        let raw_body = proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| (b, true));
        prop_oneof![6 => filled, 2 => raw_query, 1 => raw_body]
    }

    /// The app every case runs against, on a runtime of its own (the store's pool lives there).
    fn app() -> &'static (tokio::runtime::Runtime, App) {
        static APP: std::sync::OnceLock<(tokio::runtime::Runtime, App)> =
            std::sync::OnceLock::new();
        APP.get_or_init(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let app = rt.block_on(seeded());
            (rt, app)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
            ..ProptestConfig::default()
        })]

        #[test]
        fn hostile_graphql_gets_json_with_typed_errors((body, with_key) in request()) {
            let (rt, app) = app();
            let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
            if with_key {
                req = req.header("x-api-key", OPS_KEY);
            }
            let (status, _, text) = rt.block_on(send(&app.router, req.body(Body::from(body)).unwrap()));
            prop_assert!(
                [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE].contains(&status),
                "status {status}: {text}"
            );
            let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
            if let Some(errors) = v.get("errors").and_then(Value::as_array) {
                for e in errors {
                    let code = e["extensions"]["code"].as_str().unwrap_or_default();
                    prop_assert!(
                        !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                        "an error without a typed code: {e}"
                    );
                    prop_assert!(code != "INTERNAL", "hostile input answered INTERNAL: {e}");
                    prop_assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
                }
            } else {
                prop_assert!(v.get("data").is_some(), "neither data nor errors: {text}");
            }
        }
    }
}
