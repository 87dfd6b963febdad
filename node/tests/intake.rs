//! Transfer intake over a real store: remittance requests become transfers with the state and
//! history the router decided — quoted, held, refused — and each request becomes exactly one
//! transfer, across passes and restarts.

#[path = "support/events.rs"]
mod events;
#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use meridian_router::{Denylist, RouteLimits, Router, RoutingState, Screening};
use meridian_storage::Store;
use meridian_transfers::intake::TransferIntake;
use meridian_types::config::{Amount, AssetConfig, AssetKind, CorridorConfig};
use meridian_types::{ChainFamily, ChainId, EventPayload, TransferState};

use events::*;

fn chain_a() -> ChainId {
    "eip155:31337".parse().unwrap()
}

fn chain_b() -> ChainId {
    "eip155:1337".parse().unwrap()
}

const SANCTIONED: &str = "0x0000000000000000000000000000000000000bad";

fn assets() -> Vec<AssetConfig> {
    [chain_a(), chain_b()]
        .iter()
        .map(|chain| AssetConfig {
            id: token(chain),
            symbol: "USDM".into(),
            decimals: 6,
            kind: AssetKind::Stablecoin,
            issuer: None,
            reference_rate: None,
            reference_rate_max_age_secs: None,
        })
        .collect()
}

/// The A → B corridor at rate 1 with `fee_bps`, a rolling `daily_cap` and an optional hold.
fn corridor(fee_bps: u32, daily_cap: u128, hold_threshold: Option<u128>) -> CorridorConfig {
    CorridorConfig {
        id: "a-b".into(),
        source_asset: token(&chain_a()),
        dest_asset: token(&chain_b()),
        fee_bps,
        fixed_fee: Amount(0),
        rate: Some("1".into()),
        rate_max_age_secs: 300,
        min_amount: Amount(1),
        max_amount: Amount(1_000_000_000_000),
        daily_cap: Amount(daily_cap),
        hold_threshold: hold_threshold.map(Amount),
        paused: false,
        liquidity: Amount(0),
    }
}

fn routing(dir: &std::path::Path) -> RoutingState {
    let router = Router::new(
        &assets(),
        &[corridor(25, 1_000_000_000_000, Some(1_000))],
        RouteLimits::default(),
    )
    .unwrap();
    let list = dir.join("denylist.txt");
    std::fs::write(&list, format!("{SANCTIONED}\n")).unwrap();
    RoutingState::new(
        router,
        Screening {
            denylist: Denylist::load(&list).unwrap(),
            ..Screening::default()
        },
    )
}

/// A remittance from chain A with the given amount, recipient, destination and deadline.
fn request(
    nonce: u64,
    amount: u128,
    recipient: &str,
    dest_asset: &str,
    dest_chain: &str,
    deadline: u64,
) -> EventPayload {
    match remittance(&chain_a(), nonce, amount) {
        EventPayload::RemittanceRequested {
            nonce,
            sender,
            asset,
            amount,
            ..
        } => EventPayload::RemittanceRequested {
            nonce,
            sender,
            asset,
            amount,
            dest_chain: dest_chain.into(),
            recipient: recipient.into(),
            dest_asset: dest_asset.into(),
            deadline,
        },
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn sqlite_requests_become_one_transfer_each_with_the_routers_decision() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("intake.sqlite").display());
    requests_become_one_transfer_each(&url, dir.path()).await;
}

#[tokio::test]
async fn postgres_requests_become_one_transfer_each_with_the_routers_decision() {
    let Some(db) = pg::fresh_pg_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    requests_become_one_transfer_each(&db.url, dir.path()).await;
    db.cleanup().await;
}

async fn requests_become_one_transfer_each(url: &str, dir: &std::path::Path) {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    let a = chain_a();
    store
        .register_chain(&a, "a", ChainFamily::Evm)
        .await
        .unwrap();

    let dest = format!("eip155:1337/erc20:{TOKEN}");
    let bob = "0x000000000000000000000000000000000000B0B0";
    let far = 1_900_000_000;
    let requests = [
        request(1, 500, bob, &dest, "eip155:1337", far),
        request(2, 5_000, bob, &dest, "eip155:1337", far),
        request(3, 500, SANCTIONED, &dest, "eip155:1337", far),
        request(
            4,
            500,
            bob,
            "eip155:1337/erc20:0x9999999999999999999999999999999999999999",
            "eip155:1337",
            far,
        ),
        request(5, 500, bob, &dest, "eip155:1337", 1_000),
        request(6, 500, bob, &dest, "eip155:5", far),
    ];
    let evs: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, p)| event(&a, 0xa, 10, i as u32, p))
        .collect();
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, evs.clone()))
        .await
        .unwrap();

    let routing = Arc::new(routing(dir));
    let intake = TransferIntake::new(store.clone(), routing.clone());
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let summary = intake.pass(now).await.unwrap();
    let states: Vec<TransferState> = summary.created.iter().map(|(_, s)| *s).collect();
    use TransferState::*;
    assert_eq!(
        states,
        [Quoted, Held, Rejected, Rejected, Rejected, Rejected]
    );

    let uid = |i: usize| evs[i].id.uid();
    let get = |i: usize| {
        let store = store.clone();
        let id = meridian_types::transfer_id(&uid(i));
        async move { store.transfer(&id).await.unwrap().unwrap() }
    };
    // Quoted: 500 − 0.25 % (1) at rate 1 = 499 delivered, recipient normalised to CAIP-10.
    let t = get(0).await;
    let t_ = &t.transfer;
    assert_eq!(t_.state, TransferState::Quoted);
    assert_eq!(t_.dest_amount(), Some(499));
    assert_eq!(t_.quote.as_ref().map(|q| q.first_fee()), Some(1));
    assert_eq!(t_.route().as_deref(), Some("a-b"));
    assert_eq!(
        t_.recipient,
        "eip155:1337:0x000000000000000000000000000000000000b0b0"
    );
    let path: Vec<_> = t.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        path,
        [
            (None, Requested),
            (Some(Requested), Screened),
            (Some(Screened), Quoted)
        ]
    );
    // The fee rounds down to 1 (1.25): 1 of 500 is 20 bps.
    assert!(t.history[2]
        .reason
        .as_deref()
        .unwrap()
        .contains("cost 20 bps"));

    let held = get(1).await;
    assert_eq!(held.history.last().unwrap().to, Held);
    assert!(held
        .history
        .last()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("hold threshold 1000"));

    let sanctioned = get(2).await;
    assert_eq!(
        sanctioned.history.len(),
        2,
        "refused before screening passes"
    );
    assert!(sanctioned.history[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("is sanctioned"));

    let unknown = get(3).await;
    assert_eq!(unknown.history.last().unwrap().from, Some(Screened));
    assert!(unknown
        .history
        .last()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("unknown asset"));

    assert!(get(4).await.history[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("deadline"));
    assert!(get(5).await.history[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("is not on chain eip155:5"));

    // The accepted transfer counts against the corridor's rolling cap; the others do not.
    {
        use meridian_router::route::CorridorCapacity;
        assert_eq!(
            routing.read(|_, s| s.caps.remaining("a-b", 1_000_000, 1_800_000_000)),
            1_000_000 - 500
        );
    }

    // A restart rebuilds the rolling usage from the stored transfers.
    {
        use meridian_router::route::CorridorCapacity;
        let fresh = Arc::new(routing_again(dir));
        let counted = TransferIntake::new(store.clone(), fresh.clone())
            .restore_cap_usage(now)
            .await
            .unwrap();
        assert_eq!(counted, 1);
        assert_eq!(
            fresh.read(|_, s| s.caps.remaining("a-b", 1_000_000, 1_800_000_000)),
            1_000_000 - 500
        );
    }

    // Exactly once: another pass, and a fresh intake (a restart), create nothing.
    assert!(intake.pass(now).await.unwrap().created.is_empty());
    let restarted = TransferIntake::new(store.clone(), Arc::new(routing_again(dir)));
    assert!(restarted.pass(now).await.unwrap().created.is_empty());
    assert_eq!(store.transfers(None, 100).await.unwrap().len(), 6);
    assert_eq!(store.transfers(Some(Rejected), 100).await.unwrap().len(), 4);

    // With a hold period of 60 s, the large transfer goes on by itself once it has passed.
    let timed = TransferIntake::new(store.clone(), routing.clone())
        .hold_period(Some(chrono::Duration::seconds(60)));
    assert!(timed
        .release_expired_holds(now + chrono::Duration::seconds(30))
        .await
        .unwrap()
        .is_empty());
    let released = timed
        .release_expired_holds(now + chrono::Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(released, [(meridian_types::transfer_id(&uid(1)), Quoted)]);
    let t = get(1).await;
    assert_eq!(t.transfer.state, TransferState::Quoted);
    let last = t.history.last().unwrap();
    assert!(last
        .reason
        .as_deref()
        .unwrap()
        .starts_with("hold period of 60s ended"));
    assert!(t.transfer.quote.is_some());

    // A new request later is picked up on its own.
    let later = event(
        &a,
        0xa,
        11,
        0,
        request(7, 600, bob, &dest, "eip155:1337", far),
    );
    store
        .commit_ingest(&batch(&a, 0xa, 11, 11, vec![later]))
        .await
        .unwrap();
    let summary = restarted.pass(now).await.unwrap();
    assert_eq!(summary.created.len(), 1);
    assert_eq!(summary.created[0].1, Quoted);
}

fn routing_again(dir: &std::path::Path) -> RoutingState {
    routing(dir)
}

/// Requests taken in one pass are stored together, but each is decided after the ones before it:
/// the corridor's rolling cap counts the earlier requests of the same pass.
#[tokio::test]
async fn the_rolling_cap_counts_earlier_requests_of_the_same_pass() {
    let dir = tempfile::tempdir().unwrap();
    let a = chain_a();
    let store = sqlite_with_chain(dir.path(), "cap.sqlite", &a).await;
    let router = Router::new(
        &assets(),
        &[corridor(0, 1_000, None)],
        RouteLimits::default(),
    )
    .unwrap();
    let dest = format!("eip155:1337/erc20:{TOKEN}");
    let bob = "0x000000000000000000000000000000000000B0B0";
    let evs: Vec<_> = [600u128, 600, 400]
        .into_iter()
        .enumerate()
        .map(|(i, amount)| {
            let p = request(
                i as u64 + 1,
                amount,
                bob,
                &dest,
                "eip155:1337",
                1_900_000_000,
            );
            event(&a, 0xa, 10, i as u32, p)
        })
        .collect();
    store
        .commit_ingest(&batch(&a, 0xa, 10, 10, evs))
        .await
        .unwrap();
    let intake = TransferIntake::new(
        store.clone(),
        Arc::new(RoutingState::new(router, Screening::default())),
    );
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let states: Vec<TransferState> = intake
        .pass(now)
        .await
        .unwrap()
        .created
        .iter()
        .map(|(_, s)| *s)
        .collect();
    use TransferState::*;
    // 600 fits the 1 000 cap; the second 600 would pass it; the 400 after it still fits.
    assert_eq!(states, [Quoted, Rejected, Quoted]);
}

/// A limit applies and the asset's reference rate is fed: a request screened while the rate is
/// older than its maximum age is held, naming the rate's age, never valued with the old rate;
/// once a fresh rate is fed the next request is valued and goes ahead.
#[tokio::test]
async fn a_stale_reference_rate_holds_requests_the_limits_apply_to() {
    let dir = tempfile::tempdir().unwrap();
    let a = chain_a();
    let store = sqlite_with_chain(dir.path(), "stale.sqlite", &a).await;
    let router = Router::new(
        &assets(),
        &[corridor(0, 1_000_000_000_000, None)],
        RouteLimits::default(),
    )
    .unwrap();
    let usdm = token(&a);
    let mut screening = Screening::default();
    screening.policy.account_daily_cap = Some(1_000_000);
    screening.policy.reference = meridian_router::compliance::ReferenceRates::new(2);
    screening.policy.reference.expect_fed(&usdm, 300);
    let routing = Arc::new(RoutingState::new(router, screening));
    let t0 = 1_800_000_000u64;
    routing.feed_reference_rate(&usdm, "1", t0).unwrap();
    let dest = format!("eip155:1337/erc20:{TOKEN}");
    let bob = "0x000000000000000000000000000000000000B0B0";
    let intake = TransferIntake::new(store.clone(), routing.clone());
    let pass_with = |nonce: u64, block: u64, at: u64| {
        let (store, intake, a, dest) = (store.clone(), &intake, a.clone(), dest.clone());
        async move {
            let p = request(nonce, 5_000_000, bob, &dest, "eip155:1337", 1_900_000_000);
            store
                .commit_ingest(&batch(
                    &a,
                    0xa,
                    block,
                    block,
                    vec![event(&a, 0xa, block, 0, p)],
                ))
                .await
                .unwrap();
            let now = Utc.timestamp_opt(at as i64, 0).unwrap();
            intake.pass(now).await.unwrap().created
        }
    };
    // Five minutes and a second after the feed: held, with the age in its reason.
    let held = pass_with(1, 10, t0 + 301).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1, TransferState::Held);
    let record = store.transfer(&held[0].0).await.unwrap().unwrap();
    let reason = record
        .history
        .last()
        .unwrap()
        .reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("reference rate is 301s old"), "{reason}");
    // A fresh rate: 5 USDM are 5.00 in the reference unit, under the cap, and go ahead.
    routing.feed_reference_rate(&usdm, "1", t0 + 301).unwrap();
    let quoted = pass_with(2, 11, t0 + 302).await;
    assert_eq!(quoted.len(), 1);
    assert_eq!(quoted[0].1, TransferState::Quoted);
}
