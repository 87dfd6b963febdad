//! Governance through GraphQL: EIP-712 signed proposals and votes (signed here with ethers-rs
//! and by ethers.js, an independent implementation), every refusal with its code, votes replaced
//! by higher sequences, tallies recomputable from stored votes, and a passed proposal pausing a
//! corridor — applied, audited, kept across a restart, the next transfer on it waiting until a
//! second proposal resumes it.

#[path = "support/events.rs"]
mod events;
use events::ingest;
#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;

use std::sync::Arc;

use async_graphql::{Request, Variables};
use chrono::{DateTime, Utc};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::transaction::eip712::{Eip712, TypedData};
use ethers::types::H256;
use meridian_governance::tally::Choice;
use meridian_governance::{Domain, Governance, ProposalDraft, VoteMessage, VotingType};
use meridian_graphql::{build_schema, MeridianSchema, SchemaLimits};
use meridian_router::RoutingState;
use meridian_storage::Store;
use meridian_types::config::Config;
use meridian_types::RelayAction;
use serde_json::{json, Value};

const CHAIN_ID: u64 = 31337;
/// anvil's dev keys 0..=3: members 0, 1, 2; key 3 is not a member.
const KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

fn wallet(i: usize) -> LocalWallet {
    KEYS[i].parse().unwrap()
}

fn addr(i: usize) -> String {
    format!("{:#x}", wallet(i).address())
}

fn sign(i: usize, typed: &Value) -> String {
    let parsed: TypedData = serde_json::from_value(typed.clone()).unwrap();
    let sig = wallet(i)
        .sign_hash(H256(parsed.encode_eip712().unwrap()))
        .unwrap();
    format!("0x{sig}")
}

/// Signs with ethers.js (tools/sign-typed-data.js), or `None` when node/ethers is missing
/// outside CI.
fn sign_with_ethers_js(i: usize, typed: &Value) -> Option<String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/sign-typed-data.js");
    let has_ethers = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/node_modules/ethers/package.json")
        .exists();
    if !has_ethers {
        anvil::skip::skip(
            Some("ethers.js cross-check, signed by ethers-rs instead"),
            "ethers.js",
            "run tools/install.sh",
        );
        return None;
    }
    use std::io::Write;
    let mut child = std::process::Command::new("node")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"key": format!("0x{}", KEYS[i]), "typedData": typed})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["address"].as_str().unwrap().to_ascii_lowercase(), addr(i));
    Some(v["signature"].as_str().unwrap().to_owned())
}

fn config(dir: &tempfile::TempDir) -> Config {
    let text = format!(
        r#"
[node]
database_url = "sqlite://{}?mode=rwc"

[[chains]]
id = "eip155:31337"
name = "a"
rpc_urls = ["http://127.0.0.1:1"]
contracts = [{{ address = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0", kind = "bridge_escrow" }}]

[[assets]]
id = "eip155:31337/erc20:0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
symbol = "USDM"
decimals = 6
kind = "stablecoin"

[[assets]]
id = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
symbol = "DEUR"
decimals = 2
kind = "cbdc"

[[corridors]]
id = "usdm-to-deur"
source_asset = "eip155:31337/erc20:0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
dest_asset = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
fee_bps = 25
rate = "0.92"
max_amount = "1000000000000"
daily_cap = "10000000000000"

[governance]
chain_id = {CHAIN_ID}
members = ["{}", "{}", "{}"]
quorum = 2
threshold_bps = 6000
execution_delay_secs = 0
# These tests run votes of seconds; the safe defaults are tested on their own.
voting_delay_min_secs = 0
voting_period_min_secs = 0
sensitive_voting_delay_min_secs = 0
"#,
        dir.path().join("gov.sqlite").display(),
        addr(0),
        addr(1),
        addr(2),
    );
    Config::from_toml_str(&text, "test", Vec::new()).unwrap()
}

struct Node {
    store: Store,
    routing: Arc<RoutingState>,
    gov: Arc<Governance>,
    schema: MeridianSchema,
}

async fn node(config: &Config) -> Node {
    let store = Store::connect(&config.node.database_url).await.unwrap();
    store.migrate_up().await.unwrap();
    let routing = Arc::new(meridian_transfers::routing::routing_state(config).unwrap());
    let gov = Arc::new(Governance::new(
        store.clone(),
        routing.clone(),
        config.governance.clone(),
        Default::default(),
    ));
    meridian_transfers::routing::apply_stored_parameters(&store, &routing)
        .await
        .unwrap();
    let schema = build_schema(
        store.clone(),
        routing.clone(),
        Vec::new(),
        SchemaLimits {
            page_size_max: 100,
            depth_max: 16,
            complexity_max: 5_000,
            aliases_max: 32,
            introspection: false,
            subscriptions_per_connection_max: 32,
        },
        Some(gov.clone()),
    );
    Node {
        store,
        routing,
        gov,
        schema,
    }
}

/// Runs a mutation; Ok(data) or Err(code).
/// The `extensions.code` of a response's first error.
fn first_code(r: &async_graphql::Response) -> Option<String> {
    match r.errors.first()?.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.clone()),
        _ => None,
    }
}

async fn mutate(
    schema: &MeridianSchema,
    field: &str,
    typed: &Value,
    signature: &str,
) -> Result<Value, String> {
    let q = format!(
        "mutation($t: JSON!, $s: String!) {{ {field}(typedData: $t, signature: $s) {{ {} }} }}",
        if field == "castVote" {
            "proposalId voter power replaced tally"
        } else {
            "id state title"
        }
    );
    let r = schema
        .execute(
            Request::new(q).variables(Variables::from_json(json!({"t": typed, "s": signature}))),
        )
        .await;
    match r.errors.first() {
        Some(e) => Err(e
            .extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|c| c.to_string().trim_matches('"').to_owned())
            .unwrap_or_else(|| e.message.clone())),
        None => Ok(r.data.into_json().unwrap()[field].clone()),
    }
}

fn now() -> u64 {
    Utc::now().timestamp() as u64
}

fn draft(proposer: usize, actions: Vec<RelayAction>, start: u64, end: u64) -> ProposalDraft {
    ProposalDraft {
        space: "meridian".into(),
        title: "Pause the USDM to DEUR corridor".into(),
        body: "While the DEUR issuer upgrades its contract.".into(),
        choices: vec!["For".into(), "Against".into(), "Abstain".into()],
        voting_type: VotingType::SingleChoice,
        start,
        end,
        actions,
        proposer: addr(proposer),
        timestamp: now(),
    }
}

fn vote(voter: usize, proposal: &str, choice: Choice, sequence: u64) -> VoteMessage {
    VoteMessage {
        proposal: proposal.into(),
        choice,
        voter: addr(voter),
        sequence,
        timestamp: now(),
    }
}

#[tokio::test]
async fn signed_votes_are_checked_counted_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&config(&dir)).await;
    let d = Domain::meridian(CHAIN_ID);

    // A non-member cannot propose; a member can.
    let p = draft(3, vec![], now() - 1, now() + 3_600).typed_data(&d);
    assert_eq!(
        mutate(&n.schema, "createProposal", &p, &sign(3, &p)).await,
        Err("INSUFFICIENT_POWER".into())
    );
    let p = draft(0, vec![], now() - 1, now() + 3_600).typed_data(&d);
    let created = mutate(&n.schema, "createProposal", &p, &sign(0, &p))
        .await
        .unwrap();
    assert_eq!(created["state"], "active");
    let id = created["id"].as_str().unwrap().to_owned();

    // Member 0 votes For (signed by ethers-rs); member 1 Against, signed by ethers.js.
    let v0 = vote(0, &id, Choice::One(0), 1).typed_data(&d);
    let r = mutate(&n.schema, "castVote", &v0, &sign(0, &v0))
        .await
        .unwrap();
    assert_eq!(
        (r["power"].clone(), r["replaced"].clone()),
        (json!("1"), json!(false))
    );
    let v1 = vote(1, &id, Choice::One(1), 1).typed_data(&d);
    let js = sign_with_ethers_js(1, &v1).unwrap_or_else(|| sign(1, &v1));
    let r = mutate(&n.schema, "castVote", &v1, &js).await.unwrap();
    assert_eq!(r["tally"], json!(["1", "1", "0"]));

    // Every refusal, with its code.
    let code = |typed: Value, sig: String| {
        let schema = n.schema.clone();
        async move { mutate(&schema, "castVote", &typed, &sig).await.unwrap_err() }
    };
    assert_eq!(code(v0.clone(), sign(0, &v0)).await, "REPLAYED");
    let forged = vote(2, &id, Choice::One(0), 1).typed_data(&d);
    assert_eq!(
        code(forged.clone(), sign(3, &forged)).await,
        "SIGNER_MISMATCH"
    );
    let wrong_domain = vote(2, &id, Choice::One(0), 1).typed_data(&Domain {
        name: "Other".into(),
        ..d.clone()
    });
    assert_eq!(
        code(wrong_domain.clone(), sign(2, &wrong_domain)).await,
        "WRONG_DOMAIN"
    );
    let wrong_chain = vote(2, &id, Choice::One(0), 1).typed_data(&Domain::meridian(1));
    assert_eq!(
        code(wrong_chain.clone(), sign(2, &wrong_chain)).await,
        "WRONG_CHAIN"
    );
    let mut old = vote(2, &id, Choice::One(0), 1);
    old.timestamp = now() - 3_600;
    let old = old.typed_data(&d);
    assert_eq!(code(old.clone(), sign(2, &old)).await, "EXPIRED");
    let outsider = vote(3, &id, Choice::One(0), 1).typed_data(&d);
    assert_eq!(
        code(outsider.clone(), sign(3, &outsider)).await,
        "NO_VOTING_POWER"
    );
    let bad_choice = vote(2, &id, Choice::One(7), 1).typed_data(&d);
    assert_eq!(
        code(bad_choice.clone(), sign(2, &bad_choice)).await,
        "INVALID_CHOICE"
    );
    let nowhere = vote(2, "mrd-none", Choice::One(0), 1).typed_data(&d);
    assert_eq!(
        code(nowhere.clone(), sign(2, &nowhere)).await,
        "PROPOSAL_NOT_FOUND"
    );

    // Member 1 changes their mind with a higher sequence: replaced, not added.
    let again = vote(1, &id, Choice::One(0), 2).typed_data(&d);
    let r = mutate(&n.schema, "castVote", &again, &sign(1, &again))
        .await
        .unwrap();
    assert_eq!(
        (r["replaced"].clone(), r["tally"].clone()),
        (json!(true), json!(["2", "0", "0"]))
    );

    // The stored tally equals a recount from the stored votes; the query shows both.
    let q = n
        .schema
        .execute(format!(
            r#"{{ proposal(id: "{id}") {{ state strategy actions tally {{ passed quorumReached voters choices {{ label power voters }} }} votes {{ voter power sequence choice }} }} }}"#
        ))
        .await;
    assert!(q.errors.is_empty(), "{:?}", q.errors);
    let q = q.data.into_json().unwrap();
    assert_eq!(
        q["proposal"]["tally"]["choices"][0],
        json!({"label": "For", "power": "2", "voters": 2})
    );
    assert_eq!(q["proposal"]["tally"]["passed"], true);
    assert_eq!(q["proposal"]["votes"].as_array().unwrap().len(), 2);
    // Stored JSON comes back as JSON: a choice is the number it was cast as, never serde_json's
    // internal number type.
    assert_eq!(q["proposal"]["votes"][0]["choice"], json!(0));
    assert!(!q.to_string().contains("serde_json"), "{q}");
    // The list keeps the schema's page size, like every list: more is refused, not cut.
    for first in [101, -1] {
        let r = n
            .schema
            .execute(format!("{{ proposals(first: {first}) {{ id }} }}"))
            .await;
        assert_eq!(r.errors.len(), 1, "{first}: {:?}", r.errors);
        assert_eq!(
            first_code(&r).as_deref(),
            Some("PAGE_SIZE_EXCEEDED"),
            "{first}"
        );
    }
    let r = n.schema.execute("{ proposals(first: 100) { id } }").await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // A stored value that does not parse is an error, never an empty list shown as the data.
    {
        use sea_orm::ConnectionTrait;
        n.store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE proposals SET choices = '{{\"not\": \"a list\"}}' WHERE id = '{id}'"
            ))
            .await
            .unwrap();
        for field in ["choices", "tally { voters }"] {
            let r = n
                .schema
                .execute(format!(r#"{{ proposal(id: "{id}") {{ {field} }} }}"#))
                .await;
            assert_eq!(r.errors.len(), 1, "{field}: {:?}", r.data);
            assert_eq!(first_code(&r).as_deref(), Some("INTERNAL"), "{field}");
        }
        n.store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE proposals SET choices = '[\"For\",\"Against\",\"Abstain\"]' WHERE id = '{id}'"
            ))
            .await
            .unwrap();
        // A vote whose stored power does not parse fails the count: it is not counted as zero.
        let powers = |sql: &'static str| {
            let (store, id) = (n.store.clone(), id.clone());
            async move {
                store
                    .connection()
                    .execute_unprepared(&sql.replace("{id}", &id))
                    .await
                    .unwrap();
            }
        };
        powers("UPDATE votes SET power = 'lots' WHERE proposal_id = '{id}'").await;
        let r = n
            .schema
            .execute(format!(
                r#"{{ proposal(id: "{id}") {{ tally {{ voters }} }} }}"#
            ))
            .await;
        assert_eq!(r.errors.len(), 1, "{:?}", r.data);
        assert_eq!(first_code(&r).as_deref(), Some("INTERNAL"));
        powers("UPDATE votes SET power = '1' WHERE proposal_id = '{id}'").await;
    }
    let stored: Vec<(i32, String)> = n
        .store
        .tally(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.choice, t.power))
        .collect();
    assert_eq!(
        stored,
        vec![(0, "2".into()), (1, "0".into()), (2, "0".into())]
    );

    // After the deadline: refused.
    let p = draft(0, vec![], now() - 10, now() - 5);
    let t = p.typed_data(&d);
    let closed = mutate(&n.schema, "createProposal", &t, &sign(0, &t))
        .await
        .unwrap();
    let late = vote(0, closed["id"].as_str().unwrap(), Choice::One(0), 1).typed_data(&d);
    assert_eq!(code(late.clone(), sign(0, &late)).await, "AFTER_DEADLINE");
}

#[tokio::test]
async fn a_passed_proposal_pauses_a_corridor_and_the_next_transfer_on_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let n = node(&cfg).await;
    let d = Domain::meridian(CHAIN_ID);
    let stable = "eip155:31337/erc20:0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
        .parse()
        .unwrap();
    let cbdc = "eip155:31337/erc20:0x5fbdb2315678afecb367f032d93f642f64180aa3"
        .parse()
        .unwrap();
    let quotes =
        |r: &RoutingState| r.quote(&stable, &cbdc, 10_000_000, Utc::now().timestamp() as u64);
    assert!(
        quotes(&n.routing).is_ok(),
        "the corridor quotes before the proposal"
    );

    // Voting closes in 3 s; two of three members vote For.
    let start = now() - 1;
    let actions = vec![RelayAction::PauseCorridor {
        corridor: "usdm-to-deur".into(),
        paused: true,
    }];
    let p = draft(0, actions, start, start + 4).typed_data(&d);
    let id = mutate(&n.schema, "createProposal", &p, &sign(0, &p))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in [0, 1] {
        let v = vote(i, &id, Choice::One(0), 1).typed_data(&d);
        mutate(&n.schema, "castVote", &v, &sign(i, &v))
            .await
            .unwrap();
    }
    // Still active: nothing changes yet.
    assert!(n.gov.tick(Utc::now()).await.unwrap().is_empty());
    assert!(quotes(&n.routing).is_ok());

    let after = DateTime::from_timestamp((start + 5) as i64, 0).unwrap();
    let moves: Vec<String> = n
        .gov
        .tick(after)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.as_str().to_owned())
        .collect();
    assert_eq!(moves, vec!["succeeded"]);
    let moves: Vec<String> = n
        .gov
        .tick(after)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.as_str().to_owned())
        .collect();
    assert_eq!(moves, vec!["queued"]);
    let moves: Vec<String> = n
        .gov
        .tick(after)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.as_str().to_owned())
        .collect();
    assert_eq!(moves, vec!["executed"]);

    // Applied: the corridor is paused and quotes nothing, so the next transfer on it is refused.
    let refused = quotes(&n.routing).unwrap_err().to_string();
    assert!(refused.contains("paused"), "{refused}");
    assert_eq!(
        n.store.proposal(&id).await.unwrap().unwrap().state,
        "executed"
    );
    // Stored as the relay parameter in force, set by governance.
    let stored: Vec<(RelayAction, String)> = n
        .store
        .relay_parameters()
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.action, p.actor))
        .collect();
    assert_eq!(
        stored,
        vec![(
            RelayAction::PauseCorridor {
                corridor: "usdm-to-deur".into(),
                paused: true
            },
            "governance".to_owned()
        )]
    );
    // A remittance arriving on the paused corridor waits (held), it is neither quoted nor refused.
    let chain: meridian_types::ChainId = "eip155:31337".parse().unwrap();
    ingest(
        &n.store,
        "eip155:31337",
        40,
        vec![meridian_types::EventPayload::RemittanceRequested {
            nonce: "1".into(),
            sender: meridian_types::AccountId::new(
                &chain,
                "0x00000000000000000000000000000000000a11ce",
            ),
            asset: stable.clone(),
            amount: 10_000_000,
            dest_chain: "eip155:31337".into(),
            recipient: "0x00000000000000000000000000000000000000b0".into(),
            dest_asset: cbdc.to_string(),
            deadline: now() + 3_600,
        }],
    )
    .await;
    let intake =
        meridian_transfers::intake::TransferIntake::new(n.store.clone(), n.routing.clone());
    intake.pass(Utc::now()).await.unwrap();
    let waiting = n
        .store
        .transfers_in_state(meridian_types::TransferState::Held, 10)
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1, "the transfer waits");
    let record = n.store.transfer(&waiting[0].id).await.unwrap().unwrap();
    assert_eq!(
        record.history.last().unwrap().reason.as_deref(),
        Some("waiting while paused: usdm-to-deur")
    );
    assert!(
        intake.resume_paused(Utc::now()).await.unwrap().is_empty(),
        "still paused"
    );
    // One that waits past its deadline is refused (and so refunded).
    ingest(
        &n.store,
        "eip155:31337",
        41,
        vec![meridian_types::EventPayload::RemittanceRequested {
            nonce: "2".into(),
            sender: meridian_types::AccountId::new(
                &chain,
                "0x00000000000000000000000000000000000a11ce",
            ),
            asset: stable.clone(),
            amount: 2_000_000,
            dest_chain: "eip155:31337".into(),
            recipient: "0x00000000000000000000000000000000000000b1".into(),
            dest_asset: cbdc.to_string(),
            deadline: now() + 30,
        }],
    )
    .await;
    intake.pass(Utc::now()).await.unwrap();
    let late = intake
        .resume_paused(Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1, meridian_types::TransferState::Rejected);
    let record = n.store.transfer(&late[0].0).await.unwrap().unwrap();
    assert_eq!(
        record.history.last().unwrap().reason.as_deref(),
        Some("deadline passed while its corridor was paused")
    );

    // A second proposal resumes the corridor: the waiting transfer goes on, quoted.
    let start = now() - 1;
    let resume = vec![RelayAction::PauseCorridor {
        corridor: "usdm-to-deur".into(),
        paused: false,
    }];
    let p = draft(2, resume, start, start + 4).typed_data(&d);
    let rid = mutate(&n.schema, "createProposal", &p, &sign(2, &p))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in [0, 2] {
        let v = vote(i, &rid, Choice::One(0), 1).typed_data(&d);
        mutate(&n.schema, "castVote", &v, &sign(i, &v))
            .await
            .unwrap();
    }
    let after_resume = DateTime::from_timestamp((start + 5) as i64, 0).unwrap();
    for _ in 0..3 {
        n.gov.tick(after_resume).await.unwrap();
    }
    let moved = intake.resume_paused(Utc::now()).await.unwrap();
    assert_eq!(
        moved,
        vec![(waiting[0].id.clone(), meridian_types::TransferState::Quoted)]
    );
    // Paused again for the rest of this test.
    let pause = RelayAction::PauseCorridor {
        corridor: "usdm-to-deur".into(),
        paused: true,
    };
    n.routing.apply(&pause, 0).unwrap();
    n.store
        .change_relay_parameters(
            &[(
                pause,
                meridian_storage::AuditEntry {
                    actor: "test".into(),
                    action: "corridor.pause".into(),
                    subject: "corridor:usdm-to-deur".into(),
                    details: json!({}),
                },
            )],
            Utc::now(),
        )
        .await
        .unwrap();

    // A restarted node applies the stored parameters again.
    drop(n);
    let again = node(&cfg).await;
    assert!(quotes(&again.routing).is_err());

    // A defeated proposal (one vote of three, below quorum 2) changes nothing.
    let start = now() - 1;
    let resume = vec![RelayAction::PauseCorridor {
        corridor: "usdm-to-deur".into(),
        paused: false,
    }];
    let p = draft(1, resume, start, start + 4).typed_data(&d);
    let id = mutate(&again.schema, "createProposal", &p, &sign(1, &p))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = vote(1, &id, Choice::One(0), 1).typed_data(&d);
    mutate(&again.schema, "castVote", &v, &sign(1, &v))
        .await
        .unwrap();
    let after = DateTime::from_timestamp((start + 5) as i64, 0).unwrap();
    let moves: Vec<String> = again
        .gov
        .tick(after)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.as_str().to_owned())
        .collect();
    assert_eq!(moves, vec!["defeated"]);
    assert!(quotes(&again.routing).is_err(), "still paused");
}

#[tokio::test]
async fn chain_proposals_are_mirrored_and_tallied_with_off_chain_votes_once_per_address() {
    use meridian_types::{AccountId, EventPayload, WeightedOption};
    let dir = tempfile::tempdir().unwrap();
    let n = node(&config(&dir)).await;
    let d = Domain::meridian(CHAIN_ID);
    let submitted = |id: &str, proposer: AccountId| EventPayload::ProposalSubmitted {
        proposal_id: id.into(),
        proposer: Some(proposer),
        proposal_type: None,
        messages: vec!["0x5fbdb2315678afecb367f032d93f642f64180aa3:0x12345678".into()],
        // The call sends 1 ETH: kept with the call and shown.
        values: vec!["1000000000000000000".into()],
        description: Some("Raise the IBC channel limit\nDetails".into()),
        vote_start: None,
        vote_end: None,
    };
    let opt = |o: &str, w: &str| WeightedOption {
        option: o.into(),
        weight: w.into(),
    };

    // Cosmos gov: a weighted vote with the chain's power.
    let cosmos: meridian_types::ChainId = "cosmos:gov-1".parse().unwrap();
    ingest(
        &n.store,
        "cosmos:gov-1",
        10,
        vec![
            submitted("9", AccountId::new(&cosmos, "cosmos1proposer")),
            EventPayload::VoteCast {
                proposal_id: "9".into(),
                voter: Some(AccountId::new(&cosmos, "cosmos1voter")),
                options: vec![
                    opt("yes", "0.700000000000000000"),
                    opt("no", "0.300000000000000000"),
                ],
                power: Some("1000000".into()),
                reason: None,
            },
        ],
    )
    .await;
    // A Governor on an EVM chain: member 1 votes For on chain with 5 votes.
    let evm: meridian_types::ChainId = "eip155:31337".parse().unwrap();
    ingest(
        &n.store,
        "eip155:31337",
        20,
        vec![
            submitted("77", AccountId::new(&evm, &addr(0))),
            EventPayload::VoteCast {
                proposal_id: "77".into(),
                voter: Some(AccountId::new(&evm, &addr(1))),
                options: vec![opt("for", "1")],
                power: Some("5".into()),
                reason: Some("keeps the corridor open".into()),
            },
            EventPayload::ProposalStateChanged {
                proposal_id: "77".into(),
                state: "queued".into(),
                eta: Some(1_900_000_000),
            },
        ],
    )
    .await;
    n.gov.tick(Utc::now()).await.unwrap();

    let p = n
        .store
        .proposal("cosmos:gov-1/9")
        .await
        .unwrap()
        .expect("cosmos proposal mirrored");
    assert_eq!(
        (p.title.as_str(), p.voting_type.as_str(), p.state.as_str()),
        ("Raise the IBC channel limit", "weighted", "active")
    );
    let t = n.gov.count(&p).await.unwrap();
    assert_eq!(t.per_choice, vec![700_000, 0, 300_000, 0]);

    let g = n
        .store
        .proposal("eip155:31337/77")
        .await
        .unwrap()
        .expect("governor proposal mirrored");
    assert_eq!(g.state, "queued");
    assert_eq!(n.gov.count(&g).await.unwrap().per_choice, vec![0, 5, 0]);
    // What a chain's proposal would execute is shown as the chain's calls (the voting page asks
    // for it with every proposal).
    let r = n
        .schema
        .execute(
            r#"{ proposal(id: "eip155:31337/77") { actionDescriptions votes { voter reason } } }"#,
        )
        .await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let p = r.data.into_json().unwrap()["proposal"].clone();
    assert_eq!(
        p["actionDescriptions"],
        json!(["chain call 0x5fbdb2315678afecb367f032d93f642f64180aa3:0x12345678 sending 1000000000000000000 (native base units)"])
    );
    // The voter's reason, as the chain recorded it.
    assert_eq!(p["votes"][0]["reason"], json!("keeps the corridor open"));
    // Off-chain votes join the same tally: member 2 (Against) counts; member 1 already voted on
    // chain, so their off-chain vote does not count twice.
    let v2 = vote(2, "eip155:31337/77", Choice::One(0), 1).typed_data(&d);
    mutate(&n.schema, "castVote", &v2, &sign(2, &v2))
        .await
        .unwrap_err();
    // (Queued: voting is over for everyone.) On the still active Cosmos proposal:
    let v0 = vote(0, "cosmos:gov-1/9", Choice::Weights(vec![(0, 1)]), 1).typed_data(&d);
    let r = mutate(&n.schema, "castVote", &v0, &sign(0, &v0))
        .await
        .unwrap();
    assert_eq!(r["tally"], json!(["700001", "0", "300000", "0"]));

    // Re-mirroring after a restart changes nothing (idempotent).
    let again = node(&config(&dir)).await;
    again.gov.tick(Utc::now()).await.unwrap();
    let p = again
        .store
        .proposal("cosmos:gov-1/9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.gov.count(&p).await.unwrap().per_choice,
        vec![700_001, 0, 300_000, 0]
    );
    assert_eq!(again.store.votes("cosmos:gov-1/9").await.unwrap().len(), 2);
}

#[tokio::test]
async fn one_address_counts_once_across_chain_and_off_chain_votes() {
    use meridian_types::{AccountId, EventPayload, WeightedOption};
    let dir = tempfile::tempdir().unwrap();
    let n = node(&config(&dir)).await;
    let d = Domain::meridian(CHAIN_ID);
    let evm: meridian_types::ChainId = "eip155:31337".parse().unwrap();
    ingest(
        &n.store,
        "eip155:31337",
        30,
        vec![
            EventPayload::ProposalSubmitted {
                proposal_id: "5".into(),
                proposer: Some(AccountId::new(&evm, &addr(0))),
                proposal_type: Some("governor".into()),
                messages: vec![],
                values: Vec::new(),
                description: Some("Open the corridor".into()),
                vote_start: Some(1),
                vote_end: Some(100),
            },
            EventPayload::VoteCast {
                proposal_id: "5".into(),
                voter: Some(AccountId::new(&evm, &addr(1))),
                options: vec![WeightedOption {
                    option: "for".into(),
                    weight: "1".into(),
                }],
                power: Some("5".into()),
                reason: None,
            },
        ],
    )
    .await;
    n.gov.tick(Utc::now()).await.unwrap();
    // Member 1 also votes Against off-chain: the chain vote stands. Member 2 votes Against: counts.
    for i in [1, 2] {
        let v = vote(i, "eip155:31337/5", Choice::One(0), 1).typed_data(&d);
        mutate(&n.schema, "castVote", &v, &sign(i, &v))
            .await
            .unwrap();
    }
    let p = n.store.proposal("eip155:31337/5").await.unwrap().unwrap();
    assert_eq!(n.gov.count(&p).await.unwrap().per_choice, vec![1, 5, 0]);
    // The voting power shown for a mirrored proposal is the one an off-chain vote counted with
    // (member 2's Against above), not "0".
    let q = format!(
        r#"{{ votingPower(proposalId: "eip155:31337/5", address: "{}") }}"#,
        addr(2)
    );
    let r = n.schema.execute(q.as_str()).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.data.into_json().unwrap()["votingPower"], json!("1"));
    // The chain's own timepoints are shown; with no RPC for the chain its clock is not known
    // yet, so nothing claims to be an estimate.
    let r = n
        .schema
        .execute(
            r#"{ proposal(id: "eip155:31337/5") { voteStart voteEnd clockMode startEstimated endEstimated } }"#,
        )
        .await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        r.data.into_json().unwrap()["proposal"],
        json!({"voteStart": "1", "voteEnd": "100", "clockMode": null, "startEstimated": false, "endEstimated": false})
    );
}

/// No capture by defaults: with the default rules a proposal must open at least an hour after
/// it is made and run at least a day; one that lifts a sanction or raises a cap waits two days
/// and needs two thirds; the quorum is at least a tenth of all voting power.
#[tokio::test]
async fn default_rules_refuse_snap_votes_and_guard_compliance() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    let defaults = meridian_types::config::GovernanceConfig::default();
    cfg.governance.voting_delay_min_secs = defaults.voting_delay_min_secs;
    cfg.governance.voting_period_min_secs = defaults.voting_period_min_secs;
    cfg.governance.sensitive_voting_delay_min_secs = defaults.sensitive_voting_delay_min_secs;
    cfg.governance.quorum = meridian_types::config::Amount(1);
    cfg.governance.quorum_bps = 10_000;
    assert_eq!(
        (
            defaults.voting_delay_min_secs,
            defaults.voting_period_min_secs
        ),
        (3_600, 86_400)
    );
    let n = node(&cfg).await;
    let d = Domain::meridian(CHAIN_ID);
    let (hour, day) = (3_600, 86_400);
    let create = |actions: Vec<RelayAction>, start: u64, end: u64| {
        let p = draft(0, actions, start, end).typed_data(&d);
        let sig = sign(0, &p);
        let schema = n.schema.clone();
        async move { mutate(&schema, "createProposal", &p, &sig).await }
    };
    let fee = || {
        vec![RelayAction::SetCorridorFee {
            corridor: "usdm-to-deur".into(),
            fee_bps: 30,
        }]
    };
    // A two-second vote opening now, as one member could before: refused.
    assert_eq!(
        create(fee(), now(), now() + 2).await,
        Err("VOTING_DELAY_TOO_SHORT".into())
    );
    assert_eq!(
        create(fee(), now() + hour - 60, now() + hour + day).await,
        Err("VOTING_DELAY_TOO_SHORT".into())
    );
    let start = now() + hour + 60;
    assert_eq!(
        create(fee(), start, start + day - 60).await,
        Err("VOTING_PERIOD_TOO_SHORT".into())
    );
    let ok = create(fee(), start, start + day).await.unwrap();
    let stored = n
        .store
        .proposal(ok["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    // Quorum: all three members (10 000 bps of 3), not the absolute 1; the plain threshold.
    assert_eq!(stored.quorum, "3");
    assert_eq!(stored.threshold_bps, 6_000);

    // Lifting a sanction waits two days and needs two thirds.
    let lift = vec![RelayAction::Sanction {
        address: "eip155:31337:0x00000000000000000000000000000000000bad02".into(),
        listed: false,
    }];
    assert_eq!(
        create(lift.clone(), start, start + day).await,
        Err("VOTING_DELAY_TOO_SHORT".into())
    );
    let later = now() + 2 * day + 60;
    let lifted = create(lift, later, later + day).await.unwrap();
    let stored = n
        .store
        .proposal(lifted["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.threshold_bps, 6_666);
    // Raising a corridor's cap is guarded alike; lowering it is not.
    let cap = |daily_cap: &str| {
        vec![RelayAction::SetCorridorCap {
            corridor: "usdm-to-deur".into(),
            daily_cap: daily_cap.into(),
        }]
    };
    assert_eq!(
        create(cap("20000000000000"), start, start + day).await,
        Err("VOTING_DELAY_TOO_SHORT".into())
    );
    assert!(create(cap("5000000000000"), start, start + day)
        .await
        .is_ok());
}

/// Member 0 proposes `actions` voting from `start` for four seconds; members 0–2 vote for it.
/// Returns the proposal's id.
async fn propose_and_vote_for(
    n: &Node,
    d: &Domain,
    actions: Vec<RelayAction>,
    start: u64,
) -> String {
    let p = draft(0, actions, start, start + 4).typed_data(d);
    let id = mutate(&n.schema, "createProposal", &p, &sign(0, &p))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in [0, 1, 2] {
        let v = vote(i, &id, Choice::One(0), 1).typed_data(d);
        mutate(&n.schema, "castVote", &v, &sign(i, &v))
            .await
            .unwrap();
    }
    id
}

/// A passed proposal's changes and their audit entries land together or not at all: when the
/// audit log cannot be written at execution, nothing changes and the proposal stays queued.
#[tokio::test]
async fn a_proposal_whose_execution_cannot_be_audited_changes_nothing() {
    use sea_orm::ConnectionTrait;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let n = node(&cfg).await;
    let d = Domain::meridian(CHAIN_ID);
    let fee =
        |r: &RoutingState| r.read(|router, _| router.corridor("usdm-to-deur").unwrap().fee_bps);
    let before = fee(&n.routing);
    let start = now() - 1;
    let actions = vec![RelayAction::SetCorridorFee {
        corridor: "usdm-to-deur".into(),
        fee_bps: before + 15,
    }];
    let id = propose_and_vote_for(&n, &d, actions, start).await;
    let after = DateTime::from_timestamp((start + 5) as i64, 0).unwrap();
    // Up to queued, with the audit log still there.
    for _ in 0..3 {
        if n.store.proposal(&id).await.unwrap().unwrap().state == "queued" {
            break;
        }
        n.gov.tick(after).await.unwrap();
    }
    assert_eq!(
        n.store.proposal(&id).await.unwrap().unwrap().state,
        "queued"
    );
    n.store
        .connection()
        .execute_unprepared("DROP TABLE audit_log")
        .await
        .unwrap();
    assert!(
        n.gov.tick(after).await.is_err(),
        "the execution cannot be audited"
    );
    assert_eq!(
        fee(&n.routing),
        before,
        "nothing applied without its audit entry"
    );
    assert_eq!(
        n.store.proposal(&id).await.unwrap().unwrap().state,
        "queued"
    );
}

#[tokio::test]
async fn every_kind_of_action_is_applied_audited_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let n = node(&cfg).await;
    let d = Domain::meridian(CHAIN_ID);
    let listed: meridian_types::config::AssetConfig = serde_json::from_value(json!({
        "id": "eip155:31337/erc20:0x00000000000000000000000000000000000000aa",
        "symbol": "NEWC", "decimals": 6, "kind": "stablecoin"
    }))
    .unwrap();
    let sanctioned = "eip155:31337:0x00000000000000000000000000000000000bad02";
    let actions = vec![
        RelayAction::SetCorridorFee {
            corridor: "usdm-to-deur".into(),
            fee_bps: 40,
        },
        RelayAction::SetCorridorCap {
            corridor: "usdm-to-deur".into(),
            daily_cap: "123456".into(),
        },
        RelayAction::ListAsset {
            asset: listed.clone(),
        },
        RelayAction::Sanction {
            address: sanctioned.into(),
            listed: true,
        },
    ];
    // An action naming an unknown corridor is refused when the proposal is made.
    let bad = draft(
        0,
        vec![RelayAction::SetCorridorFee {
            corridor: "nope".into(),
            fee_bps: 1,
        }],
        now() - 1,
        now() + 60,
    )
    .typed_data(&d);
    assert_eq!(
        mutate(&n.schema, "createProposal", &bad, &sign(0, &bad)).await,
        Err("INVALID_ACTION".into())
    );

    let start = now() - 1;
    let id = propose_and_vote_for(&n, &d, actions, start).await;
    let after = DateTime::from_timestamp((start + 5) as i64, 0).unwrap();
    for _ in 0..3 {
        n.gov.tick(after).await.unwrap();
    }
    assert_eq!(
        n.store.proposal(&id).await.unwrap().unwrap().state,
        "executed"
    );

    let check = |r: &RoutingState| {
        r.read(|router, screening| {
            let c = router.corridor("usdm-to-deur").unwrap();
            assert_eq!((c.fee_bps, c.daily_cap.0), (40, 123_456));
            assert_eq!(router.asset(&listed.id), Some(&listed));
            assert!(screening.sanctioned(sanctioned));
        });
    };
    check(&n.routing);
    let audited = n.store.audit_actions("governance.execute").await.unwrap();
    assert_eq!(audited.len(), 4);
    assert_eq!(
        audited[0]["description"],
        "set the fee of corridor usdm-to-deur to 40 bps"
    );
    // A restarted node has them again.
    drop(n);
    let again = node(&cfg).await;
    check(&again.routing);
}

/// On a cluster, a proposal change another node reports reaches this node's subscribers but is
/// not told to the other nodes again (no echo between nodes).
#[tokio::test]
async fn a_change_from_another_node_reaches_subscribers_and_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(&config(&dir)).await;
    let (mut all, mut local) = (n.gov.subscribe(), n.gov.subscribe_local());
    n.gov.announce_remote_change("proposal-elsewhere".into());
    assert_eq!(all.try_recv().unwrap(), "proposal-elsewhere");
    assert!(
        local.try_recv().is_err(),
        "not told to the other nodes again"
    );
}
