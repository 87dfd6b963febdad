//! Several nodes, one relay (issue 15): the lease SQL and the lease keeper, run once on SQLite and
//! once on PostgreSQL with the same test bodies.
//!
//! Expiry is made deterministic by the lease time itself: a lease taken for 0 ms has expired
//! when the next statement runs, one taken for ten minutes has not when the test ends. No test
//! sleeps or asserts on timing.

#[path = "support/corridor.rs"]
mod corridor;
#[path = "support/events.rs"]
mod events;
// Both support modules carry their own copy of support/skip.rs.
#[path = "support/nats.rs"]
#[allow(clippy::duplicate_mod)]
mod nats;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/transfers.rs"]
mod transfers;

use std::time::Duration;

use meridian_cluster::{ClusterSettings, LeaseKeeper};
use meridian_storage::{HandOver, Lease, LeaseClaim, StorageError, Store};
use meridian_types::cluster::{preferred_holder, LeaseName, NodeId};
use meridian_types::ChainId;
use sea_orm::ConnectionTrait;
use serde_json::json;
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(600);
const EXPIRED: Duration = Duration::ZERO;

fn node(name: &str) -> NodeId {
    NodeId::new(format!("{name}/pid=1")).unwrap()
}

fn taken(claim: LeaseClaim) -> Lease {
    match claim {
        LeaseClaim::Taken(lease) => lease,
        LeaseClaim::Held(row) => panic!("expected to take the lease, {row:?} holds it"),
    }
}

async fn store_at(url: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    store.migrate_up().await.unwrap();
    store
}

async fn settlement_batches(store: &Store) -> i64 {
    let row = store
        .connection()
        .query_one(sea_orm::Statement::from_string(
            store.connection().get_database_backend(),
            "SELECT COUNT(*) AS n FROM settlement_batches",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// A fenced write: an (empty) settlement batch through `store`.
async fn write_batch(store: &Store) -> Result<i64, StorageError> {
    store
        .commit_settlement_batch(Default::default(), json!({"test": "fence"}))
        .await
}

/// One holder at a time: a valid lease is not taken by another node nor taken again by its own
/// holder (no new epoch), and only the holder of the current epoch renews it.
async fn a_valid_lease_has_one_holder(url: &str) {
    let store = store_at(url).await;
    let (a, b) = (node("a"), node("b"));
    let lease = taken(
        store
            .take_lease(&LeaseName::Settle, &a, LONG)
            .await
            .unwrap(),
    );
    assert_eq!((lease.epoch, &lease.holder), (1, &a));

    for who in [&b, &a] {
        match store
            .take_lease(&LeaseName::Settle, who, LONG)
            .await
            .unwrap()
        {
            LeaseClaim::Held(row) => {
                assert_eq!(row.holder.as_ref(), Some(&a));
                assert_eq!(row.epoch, 1, "a refused take must not raise the epoch");
            }
            LeaseClaim::Taken(l) => panic!("{who} took a lease {a} holds: {l:?}"),
        }
    }
    let renewed = store.renew_lease(&lease, LONG).await.unwrap().unwrap();
    assert_eq!(renewed.epoch, 1);
    let forged = Lease {
        holder: b.clone(),
        ..lease.clone()
    };
    assert_eq!(store.renew_lease(&forged, LONG).await.unwrap(), None);
    assert!(!store.release_lease(&forged).await.unwrap());
    assert_eq!(
        store
            .lease(&LeaseName::Settle)
            .await
            .unwrap()
            .unwrap()
            .holder,
        Some(a)
    );
}

/// An expired lease goes to the next taker with a new epoch; the former holder can neither renew
/// nor write through its fenced store any more, and its refused write leaves nothing behind.
async fn an_expired_lease_fences_its_former_holder(url: &str) {
    let store = store_at(url).await;
    let (a, b) = (node("a"), node("b"));
    let old = taken(
        store
            .take_lease(&LeaseName::Settle, &a, EXPIRED)
            .await
            .unwrap(),
    );
    let new = taken(
        store
            .take_lease(&LeaseName::Settle, &b, LONG)
            .await
            .unwrap(),
    );
    assert_eq!((old.epoch, new.epoch), (1, 2));
    assert_eq!(store.renew_lease(&old, LONG).await.unwrap(), None);

    let before = settlement_batches(&store).await;
    match write_batch(&store.fenced(&old)).await {
        Err(StorageError::Fenced { lease, epoch }) => {
            assert_eq!((lease.as_str(), epoch), ("settle", 1));
        }
        other => panic!("a fenced-out holder's write must be refused, got {other:?}"),
    }
    assert_eq!(settlement_batches(&store).await, before, "nothing written");
    // The new holder's first fenced write ends its hand-over (and records its time).
    let handover = HandOver::new(Duration::from_millis(5), std::time::Instant::now());
    let new = Lease {
        handed_over: Some(handover.clone()),
        ..new
    };
    write_batch(&store.fenced(&new)).await.unwrap();
    assert_eq!(settlement_batches(&store).await, before + 1);
    assert_eq!(
        handover.first_write(std::time::Instant::now()),
        None,
        "the first fenced write ended the hand-over"
    );
    // An unfenced store (a single node) writes as before.
    write_batch(&store).await.unwrap();
    // The new holder's lease also fences once it has expired, even with nobody else taking it;
    // a refused write does not end a hand-over.
    let lapsed_handover = HandOver::new(Duration::ZERO, std::time::Instant::now());
    let lapsed = Lease {
        handed_over: Some(lapsed_handover.clone()),
        ..taken(
            store
                .take_lease(&LeaseName::Governance, &b, EXPIRED)
                .await
                .unwrap(),
        )
    };
    assert!(matches!(
        write_batch(&store.fenced(&lapsed)).await,
        Err(StorageError::Fenced { .. })
    ));
    assert!(lapsed_handover
        .first_write(std::time::Instant::now())
        .is_some());
}

/// A released lease is taken at once (no waiting for its expiry), with a new epoch.
async fn a_released_lease_is_taken_at_once(url: &str) {
    let store = store_at(url).await;
    let (a, b) = (node("a"), node("b"));
    let name = LeaseName::Payout(ChainId::evm(31337));
    let lease = taken(store.take_lease(&name, &a, LONG).await.unwrap());
    assert!(store.release_lease(&lease).await.unwrap());
    assert_eq!(store.lease(&name).await.unwrap().unwrap().holder, None);
    assert_eq!(store.renew_lease(&lease, LONG).await.unwrap(), None);
    let next = taken(store.take_lease(&name, &b, LONG).await.unwrap());
    assert_eq!(next.epoch, 2);
}

/// Nodes racing for the same free leases: each lease is taken exactly once.
async fn racing_nodes_take_each_lease_once(url: &str) {
    let setup = store_at(url).await;
    let mut stores = vec![setup.clone()];
    for _ in 1..4 {
        stores.push(Store::connect(url).await.unwrap());
    }
    let names: Vec<LeaseName> = (0..16).map(|i| LeaseName::Watch(ChainId::evm(i))).collect();
    let mut racers = tokio::task::JoinSet::new();
    for (i, store) in stores.iter().enumerate() {
        for n in 0..2 {
            let (store, names) = (store.clone(), names.clone());
            let me = node(&format!("racer-{i}-{n}"));
            racers.spawn(async move {
                let mut won = Vec::new();
                for name in names {
                    if let LeaseClaim::Taken(l) = store.take_lease(&name, &me, LONG).await.unwrap()
                    {
                        won.push(l);
                    }
                }
                won
            });
        }
    }
    let mut won: Vec<Lease> = Vec::new();
    while let Some(r) = racers.join_next().await {
        won.extend(r.unwrap());
    }
    won.sort_by(|x, y| x.name.cmp(&y.name));
    let won_names: Vec<LeaseName> = won.iter().map(|l| l.name.clone()).collect();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(won_names, expected, "every lease taken exactly once");
    assert!(won.iter().all(|l| l.epoch == 1));
    for lease in &won {
        let row = setup.lease(&lease.name).await.unwrap().unwrap();
        assert_eq!(row.holder.as_ref(), Some(&lease.holder));
    }
}

fn settings(name: &str, leases: &[LeaseName]) -> ClusterSettings {
    ClusterSettings {
        node: node(name),
        host: "test-host".into(),
        pid: 1,
        lease_ttl: LONG,
        leases: leases.to_vec(),
    }
}

fn all_leases() -> Vec<LeaseName> {
    let mut all = vec![LeaseName::Settle, LeaseName::Governance];
    for chain in [1, 10, 137, 31337, 31338] {
        all.push(LeaseName::Watch(ChainId::evm(chain)));
        all.push(LeaseName::Payout(ChainId::evm(chain)));
    }
    all
}

/// Who holds each lease, from the database.
async fn holders(store: &Store) -> Vec<(LeaseName, Option<NodeId>)> {
    let mut rows: Vec<(LeaseName, Option<NodeId>)> = store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.holder))
        .collect();
    rows.sort();
    rows
}

/// Three keepers split the leases as rendezvous hashing says, each lease held once and each
/// node told which it holds; a node that stops gracefully releases its leases and the others
/// take them in their next round; a holder that could not renew in time steps down by its own
/// clock.
async fn keepers_share_hand_over_and_step_down(url: &str) {
    let store = store_at(url).await;
    let leases = all_leases();
    let names = ["a", "b", "c"];
    let mut keepers: Vec<LeaseKeeper> = names
        .iter()
        .map(|n| LeaseKeeper::new(store.clone(), settings(n, &leases)))
        .collect();
    let now = Instant::now();
    // The first round only sees the nodes that heartbeated before it (a takes everything); in
    // the second a tells the stages of the others' leases to stop, in the third it releases
    // them and their nodes take them.
    let members: Vec<NodeId> = names.iter().map(|n| node(n)).collect();
    for _ in 0..2 {
        for k in &mut keepers {
            k.round(now).await.unwrap();
        }
    }
    // After two rounds a still holds every lease, but its stages of the others' have been told
    // to stop (the lease goes only once they have).
    for (lease, holder) in holders(&store).await {
        assert_eq!(holder.as_ref(), Some(&members[0]), "{lease}");
        let told = keepers[0].lease(&lease).unwrap().borrow().is_some();
        assert_eq!(
            told,
            preferred_holder(&lease, &members) == Some(&members[0])
        );
    }
    for k in &mut keepers {
        k.round(now).await.unwrap();
    }
    let mut expected: Vec<(LeaseName, Option<NodeId>)> = leases
        .iter()
        .map(|l| (l.clone(), preferred_holder(l, &members).cloned()))
        .collect();
    expected.sort();
    assert_eq!(holders(&store).await, expected);
    for (k, me) in keepers.iter().zip(&members) {
        for lease in &leases {
            let told = k.lease(lease).unwrap().borrow().clone();
            let should = preferred_holder(lease, &members) == Some(me);
            assert_eq!(told.is_some(), should, "{me} told wrongly about {lease}");
        }
    }
    assert!(
        keepers.iter().all(|k| !k.held().is_empty()),
        "each of three nodes holds some of 12 leases"
    );

    // b stops gracefully: its leases are free at once and taken in the others' next round.
    let b_held = keepers[1].held();
    keepers[1].stop().await.unwrap();
    assert!(keepers[1].held().is_empty());
    for lease in &b_held {
        assert_eq!(
            store.lease(&lease.name).await.unwrap().unwrap().holder,
            None
        );
    }
    let rest = vec![members[0].clone(), members[2].clone()];
    for i in [0, 2] {
        keepers[i].round(now).await.unwrap();
    }
    let mut expected: Vec<(LeaseName, Option<NodeId>)> = leases
        .iter()
        .map(|l| (l.clone(), preferred_holder(l, &rest).cloned()))
        .collect();
    expected.sort();
    assert_eq!(holders(&store).await, expected);
    for lease in &b_held {
        let row = store.lease(&lease.name).await.unwrap().unwrap();
        assert_eq!(row.epoch, lease.epoch + 1, "{} changed hands", lease.name);
    }

    // a misses its renewals past its own step-down time: it stops using its leases (even though
    // the database would still let it renew), and does not take them back while they are valid.
    let a_held = keepers[0].held();
    assert!(!a_held.is_empty());
    let late = now + keepers_step_down(&leases) + Duration::from_millis(1);
    let report = keepers[0].round(late).await.unwrap();
    let mut lost = report.lost.clone();
    lost.sort();
    let mut a_names: Vec<LeaseName> = a_held.iter().map(|l| l.name.clone()).collect();
    a_names.sort();
    assert_eq!(lost, a_names);
    assert!(report.taken.is_empty());
    for lease in &a_held {
        assert!(keepers[0].lease(&lease.name).unwrap().borrow().is_none());
    }
}

/// `meridian cluster status` with only `DATABASE_URL` (no config file): each node with host, pid
/// and state, and one line per lease with its holder, the holder's pid, epoch and expiry.
async fn cluster_status_prints_nodes_and_leases(url: &str) {
    let store = store_at(url).await;
    let (a, b) = (node("a"), node("b"));
    store
        .heartbeat(&a, "host-a", 4242, &[LeaseName::Settle])
        .await
        .unwrap();
    store.heartbeat(&b, "host-b", 4343, &[]).await.unwrap();
    store.node_stopped(&b).await.unwrap();
    let settle = taken(
        store
            .take_lease(&LeaseName::Settle, &a, LONG)
            .await
            .unwrap(),
    );
    let gov = taken(
        store
            .take_lease(&LeaseName::Governance, &b, LONG)
            .await
            .unwrap(),
    );
    assert!(store.release_lease(&gov).await.unwrap());
    store
        .take_lease(&LeaseName::Watch(ChainId::evm(7)), &b, EXPIRED)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.current_dir(dir.path()).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("MERIDIAN") {
            cmd.env_remove(key);
        }
    }
    cmd.env("DATABASE_URL", url).args(["cluster", "status"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |start: &str| -> String {
        stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{stdout}"))
            .to_owned()
    };
    assert!(stdout.contains("nodes (2):"), "{stdout}");
    let a_line = line("a/pid=1 ");
    assert!(
        a_line.contains("host=host-a pid=4242") && a_line.ends_with("live"),
        "{a_line}"
    );
    let b_line = line("b/pid=1 ");
    assert!(
        b_line.contains("host=host-b pid=4343") && b_line.contains("stopped"),
        "{b_line}"
    );
    assert!(stdout.contains("leases (3):"), "{stdout}");
    let settle_line = line("settle ");
    assert!(
        settle_line.contains(&format!("holder=a/pid=1 pid=4242 epoch={}", settle.epoch))
            && settle_line.contains("expires "),
        "{settle_line}"
    );
    let gov_line = line("gov ");
    assert!(
        gov_line.contains("holder=none (released) epoch=1"),
        "{gov_line}"
    );
    let watch_line = line("watch:eip155:7 ");
    assert!(
        watch_line.contains("holder=b/pid=1 pid=4343 epoch=1") && watch_line.contains("expired "),
        "{watch_line}"
    );
}

fn paused(routing: &meridian_router::RoutingState) -> bool {
    routing.read(|router, _| router.corridor("a-b").map(|c| c.paused)) == Some(true)
}

/// A pause made through one node applies on another at its next poll; changes made at once
/// through several nodes get distinct, rising revisions, so no follower skips one.
async fn parameter_changes_reach_every_node(url: &str) {
    let store = store_at(url).await;
    let corridors = corridor::corridors(1_000_000, 1_000_000);
    let (here, there) = (corridor::routing(&corridors), corridor::routing(&corridors));
    let mut follower = meridian_transfers::routing::ParameterFollower::new(store.clone());
    assert_eq!(follower.apply_new(&there).await.unwrap(), 0);

    let audit = |subject: &str| meridian_storage::AuditEntry {
        actor: "operator:ops".into(),
        action: "corridor.pause".into(),
        subject: subject.into(),
        details: json!({}),
    };
    let pause = |paused| meridian_types::RelayAction::PauseCorridor {
        corridor: "a-b".into(),
        paused,
    };
    here.apply(&pause(true), 0).unwrap();
    store
        .change_relay_parameters(&[(pause(true), audit("corridor:a-b"))], chrono::Utc::now())
        .await
        .unwrap();
    assert!(paused(&here) && !paused(&there));
    assert_eq!(follower.apply_new(&there).await.unwrap(), 1);
    assert!(paused(&there), "the pause made elsewhere applies here");
    assert_eq!(follower.apply_new(&there).await.unwrap(), 0, "applied once");

    // Eight nodes change parameters at the same moment.
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8u32 {
        let store = Store::connect(url).await.unwrap();
        writers.spawn(async move {
            let action = meridian_types::RelayAction::SetCorridorFee {
                corridor: format!("c-{i}"),
                fee_bps: i,
            };
            let entry = meridian_storage::AuditEntry {
                actor: "operator:ops".into(),
                action: "corridor.fee".into(),
                subject: format!("corridor:c-{i}"),
                details: json!({}),
            };
            store
                .change_relay_parameters(&[(action, entry)], chrono::Utc::now())
                .await
                .unwrap();
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let mut revisions: Vec<i64> = store
        .relay_parameters()
        .await
        .unwrap()
        .iter()
        .map(|p| p.revision)
        .collect();
    let stored = revisions.len();
    revisions.dedup();
    assert_eq!((stored, revisions.len()), (9, 9), "{revisions:?}");
    // The follower sees all eight (their corridors are not configured here: skipped, not lost).
    let since = store.relay_parameters_since(1).await.unwrap();
    assert_eq!(since.len(), 8);
}

/// Transfer ids announced so far on `rx`.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<String>) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(id) = rx.try_recv() {
        got.push(id);
    }
    got.sort();
    got
}

/// Each node announces every transfer change once, whichever node committed it: node B's
/// subscribers see a transfer node A created, and B's own changes come through the feed once,
/// not also at commit.
async fn every_node_announces_every_change_once(url: &str) {
    let a = store_at(url).await.announcing_from_database();
    let b = Store::connect(url)
        .await
        .unwrap()
        .announcing_from_database();
    let old = transfers::settled("t-before", "eip155:31337", "0x01", 5);
    a.create_transfer(&old.0, &old.1).await.unwrap();
    let mut feed_a = meridian_cluster::change_feed::ChangeFeed::start(a.clone())
        .await
        .unwrap();
    let mut feed_b = meridian_cluster::change_feed::ChangeFeed::start(b.clone())
        .await
        .unwrap();
    let (mut seen_a, mut seen_b) = (a.transfer_changes(), b.transfer_changes());

    let one = transfers::settled("t-one", "eip155:31337", "0x01", 7);
    a.create_transfer(&one.0, &one.1).await.unwrap();
    let two = transfers::settled("t-two", "eip155:31337", "0x01", 9);
    b.create_transfer(&two.0, &two.1).await.unwrap();
    assert!(
        drain(&mut seen_a).is_empty() && drain(&mut seen_b).is_empty(),
        "not at commit"
    );

    assert_eq!(feed_a.poll().await.unwrap(), 2);
    assert_eq!(feed_b.poll().await.unwrap(), 2);
    let both = vec!["t-one".to_owned(), "t-two".to_owned()];
    assert_eq!(
        drain(&mut seen_a),
        both,
        "transfers from before the feed are not announced"
    );
    assert_eq!(drain(&mut seen_b), both);
    assert_eq!(feed_a.poll().await.unwrap(), 0, "announced once");
    assert!(drain(&mut seen_a).is_empty());
}

/// Receives the next announced transfer id, waiting at most a minute (a missing one fails).
async fn next_change(rx: &mut tokio::sync::broadcast::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no change announced within a minute")
        .unwrap()
}

/// A node that commits tells the others over NATS JetStream and their feeds read the change at
/// once (the feeds here would otherwise poll only once an hour). NATS stopped: nothing is lost;
/// started again: the next news makes the others catch up on what was committed meanwhile.
async fn news_over_nats_wakes_the_other_nodes(url: &str) {
    let Some(mut server) = nats::NatsServer::start() else {
        return;
    };
    let a = store_at(url).await.announcing_from_database();
    let b = Store::connect(url)
        .await
        .unwrap()
        .announcing_from_database();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let stream = format!("MERIDIAN_TEST_{}", std::process::id());
    let mut nodes = Vec::new();
    // Each node's proposal changes (what its governance would send) and what reaches it.
    let mut proposal_tx = Vec::new();
    let mut forwarded = Vec::new();
    for (name, store) in [("a", &a), ("b", &b)] {
        let (local_tx, local_rx) = tokio::sync::broadcast::channel::<String>(16);
        let (forward_tx, forward_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        proposal_tx.push(local_tx);
        forwarded.push(forward_rx);
        let proposals = meridian_cluster::news::ProposalNews {
            local: local_rx,
            forward: std::sync::Arc::new(move |id| {
                let _ = forward_tx.send(id);
            }),
        };
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let feed = meridian_cluster::change_feed::ChangeFeed::start(store.clone())
            .await
            .unwrap();
        nodes.push(tokio::spawn(feed.run(
            Duration::from_secs(3600),
            wake.clone(),
            stop.clone(),
        )));
        let settings = meridian_cluster::news::NewsSettings {
            url: server.url.clone(),
            stream: stream.clone(),
            node: node(name),
        };
        nodes.push(tokio::spawn(meridian_cluster::news::run(
            settings,
            store.clone(),
            wake,
            Some(proposals),
            stop.clone(),
        )));
    }
    let mut seen_b = b.transfer_changes();
    // The news sessions announce themselves once connected (each wakes its own feed); commit
    // until b has seen one change made on a.
    let first = transfers::settled("n-1", "eip155:31337", "0x01", 1);
    a.create_transfer(&first.0, &first.1).await.unwrap();
    assert_eq!(next_change(&mut seen_b).await, "n-1");
    // A proposal changed on a reaches b's subscribers, not a's own again.
    proposal_tx[0].send("proposal-7".into()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), forwarded[1].recv())
        .await
        .expect("proposal news within a minute");
    assert_eq!(got.as_deref(), Some("proposal-7"));
    assert!(
        forwarded[0].try_recv().is_err(),
        "a node does not relay its own change to itself"
    );

    server.stop();
    let during = transfers::settled("n-2", "eip155:31337", "0x01", 2);
    a.create_transfer(&during.0, &during.1).await.unwrap();
    server.resume();
    // Back: the news of the next commit (or the reconnection itself) brings both.
    let after = transfers::settled("n-3", "eip155:31337", "0x01", 3);
    a.create_transfer(&after.0, &after.1).await.unwrap();
    let mut got = vec![
        next_change(&mut seen_b).await,
        next_change(&mut seen_b).await,
    ];
    got.sort();
    assert_eq!(got, ["n-2", "n-3"]);

    stop_tx.send_replace(true);
    for n in nodes {
        n.await.unwrap();
    }
}

/// Nodes configured differently (a signer on some only): a lease goes only to nodes that can
/// hold it, whatever the hash says, and the others are split as usual.
async fn a_lease_goes_only_to_nodes_that_can_hold_it(url: &str) {
    let store = store_at(url).await;
    let payouts: Vec<LeaseName> = (1..=8)
        .map(|c| LeaseName::Payout(ChainId::evm(c)))
        .collect();
    let mut with_signer = payouts.clone();
    with_signer.push(LeaseName::Settle);
    let mut a = LeaseKeeper::new(store.clone(), settings("a", &with_signer));
    let mut b = LeaseKeeper::new(store.clone(), settings("b", &[LeaseName::Settle]));
    let now = Instant::now();
    for _ in 0..3 {
        b.round(now).await.unwrap();
        a.round(now).await.unwrap();
    }
    for lease in &payouts {
        let row = store.lease(lease).await.unwrap().unwrap();
        assert_eq!(row.holder, Some(node("a")), "{lease}: only a can pay out");
    }
    let members = [node("a"), node("b")];
    let settle = store.lease(&LeaseName::Settle).await.unwrap().unwrap();
    assert_eq!(
        settle.holder.as_ref(),
        preferred_holder(&LeaseName::Settle, &members)
    );
}

/// A lease being handed over whose new node goes away before taking it stays with its holder,
/// and the holder's stage is told to run again (not left stopped while the lease is renewed).
async fn a_hand_over_called_off_restarts_the_stage(url: &str) {
    let store = store_at(url).await;
    let leases = all_leases();
    let mut a = LeaseKeeper::new(store.clone(), settings("a", &leases));
    let mut b = LeaseKeeper::new(store.clone(), settings("b", &leases));
    let now = Instant::now();
    a.round(now).await.unwrap();
    assert_eq!(a.held().len(), leases.len(), "alone, a takes everything");
    b.round(now).await.unwrap();
    a.round(now).await.unwrap();
    let members = [node("a"), node("b")];
    let b_share: Vec<&LeaseName> = leases
        .iter()
        .filter(|l| preferred_holder(l, &members) == Some(&members[1]))
        .collect();
    assert!(!b_share.is_empty());
    for lease in &b_share {
        assert!(
            a.lease(lease).unwrap().borrow().is_none(),
            "{lease}: stage told to stop"
        );
    }
    // b goes away before a released them: a keeps them and its stages run again.
    b.stop().await.unwrap();
    a.round(now).await.unwrap();
    assert_eq!(a.held().len(), leases.len());
    for lease in &b_share {
        let told = a.lease(lease).unwrap().borrow().clone();
        assert!(
            told.is_some_and(|l| l.epoch == 1),
            "{lease}: running again, same epoch"
        );
    }
}

/// Without NATS too, a node sees the proposal changes any node made: a new vote, a replaced
/// vote (higher sequence, same row) and a state change each show once; nothing shows twice.
async fn proposal_changes_are_seen_by_every_node(url: &str) {
    let store = store_at(url).await;
    let now = chrono::Utc::now();
    store
        .create_proposal(&meridian_storage::NewProposal {
            id: "prop-1".into(),
            space: "meridian".into(),
            origin: "offchain".into(),
            origin_ref: None,
            proposer: "0x0000000000000000000000000000000000000001".into(),
            title: "t".into(),
            body: "b".into(),
            choices: vec!["for".into(), "against".into()],
            voting_type: "single-choice".into(),
            strategy: json!({}),
            start_at: now,
            end_at: now + chrono::Duration::hours(1),
            quorum: 1,
            threshold_bps: 5_000,
            actions: json!([]),
            state: "active".into(),
            created_at: now,
        })
        .await
        .unwrap();
    let mut feed =
        meridian_cluster::proposal_feed::ProposalFeed::new(Store::connect(url).await.unwrap());
    assert!(
        feed.poll(now).await.unwrap().is_empty(),
        "the first poll takes stock"
    );
    let vote = |sequence| meridian_storage::NewVote {
        proposal_id: "prop-1".into(),
        voter: "0x0000000000000000000000000000000000000002".into(),
        origin: "offchain".into(),
        choice: json!(1),
        power: 1,
        signature: None,
        sequence,
        signed_at: None,
        event_uid: None,
        reason: None,
        at: now,
    };
    store.record_vote(&vote(1)).await.unwrap();
    assert_eq!(feed.poll(now).await.unwrap(), ["prop-1"], "a new vote");
    assert!(feed.poll(now).await.unwrap().is_empty(), "once");
    store.record_vote(&vote(2)).await.unwrap();
    assert_eq!(feed.poll(now).await.unwrap(), ["prop-1"], "a replaced vote");
    assert!(store
        .set_proposal_state(
            "prop-1",
            "active",
            "defeated",
            None,
            now + chrono::Duration::seconds(1)
        )
        .await
        .unwrap());
    assert_eq!(feed.poll(now).await.unwrap(), ["prop-1"], "a state change");
    assert!(feed.poll(now).await.unwrap().is_empty());
}

fn keepers_step_down(leases: &[LeaseName]) -> Duration {
    settings("x", leases).step_down_after()
}

macro_rules! on_both {
    ($body:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let dir = tempfile::tempdir().unwrap();
            $body(&format!(
                "sqlite://{}",
                dir.path().join("cluster.sqlite").display()
            ))
            .await;
        }

        #[tokio::test]
        async fn $postgres() {
            let Some(db) = pg::fresh_pg_database().await else {
                return;
            };
            $body(&db.url).await;
            db.cleanup().await;
        }
    };
}

on_both!(
    a_valid_lease_has_one_holder,
    sqlite_a_valid_lease_has_one_holder,
    postgres_a_valid_lease_has_one_holder
);
on_both!(
    an_expired_lease_fences_its_former_holder,
    sqlite_an_expired_lease_fences_its_former_holder,
    postgres_an_expired_lease_fences_its_former_holder
);
on_both!(
    a_released_lease_is_taken_at_once,
    sqlite_a_released_lease_is_taken_at_once,
    postgres_a_released_lease_is_taken_at_once
);
on_both!(
    racing_nodes_take_each_lease_once,
    sqlite_racing_nodes_take_each_lease_once,
    postgres_racing_nodes_take_each_lease_once
);
on_both!(
    cluster_status_prints_nodes_and_leases,
    sqlite_cluster_status_prints_nodes_and_leases,
    postgres_cluster_status_prints_nodes_and_leases
);
on_both!(
    parameter_changes_reach_every_node,
    sqlite_parameter_changes_reach_every_node,
    postgres_parameter_changes_reach_every_node
);
on_both!(
    every_node_announces_every_change_once,
    sqlite_every_node_announces_every_change_once,
    postgres_every_node_announces_every_change_once
);
on_both!(
    news_over_nats_wakes_the_other_nodes,
    sqlite_news_over_nats_wakes_the_other_nodes,
    postgres_news_over_nats_wakes_the_other_nodes
);
on_both!(
    a_lease_goes_only_to_nodes_that_can_hold_it,
    sqlite_a_lease_goes_only_to_nodes_that_can_hold_it,
    postgres_a_lease_goes_only_to_nodes_that_can_hold_it
);
on_both!(
    a_hand_over_called_off_restarts_the_stage,
    sqlite_a_hand_over_called_off_restarts_the_stage,
    postgres_a_hand_over_called_off_restarts_the_stage
);
on_both!(
    proposal_changes_are_seen_by_every_node,
    sqlite_proposal_changes_are_seen_by_every_node,
    postgres_proposal_changes_are_seen_by_every_node
);
on_both!(
    keepers_share_hand_over_and_step_down,
    sqlite_keepers_share_hand_over_and_step_down,
    postgres_keepers_share_hand_over_and_step_down
);
