//! The voting page end to end in headless Chromium (Debian's, driven by playwright-core): it
//! lists the proposal with its tally, a member connects an injected wallet (`window.ethereum`,
//! signing with ethers.js), votes, sees the tally change, and then sees another member's vote
//! arrive live over the subscription.

#[path = "support/events.rs"]
mod events;
#[path = "support/graphql.rs"]
#[allow(dead_code)]
mod gql;
#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::Utc;
use ethers::signers::{LocalWallet, Signer};
use ethers::types::transaction::eip712::{Eip712, TypedData};
use ethers::types::H256;
use meridian_governance::tally::Choice;
use meridian_governance::{Domain, ProposalDraft, VoteMessage, VotingType};
use serde_json::{json, Value};

const KEYS: [&str; 3] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];

fn addr(i: usize) -> String {
    format!("{:#x}", KEYS[i].parse::<LocalWallet>().unwrap().address())
}

fn sign(i: usize, typed: &Value) -> String {
    let parsed: TypedData = serde_json::from_value(typed.clone()).unwrap();
    let w: LocalWallet = KEYS[i].parse().unwrap();
    format!(
        "0x{}",
        w.sign_hash(H256(parsed.encode_eip712().unwrap())).unwrap()
    )
}

/// Chromium and playwright-core, or `None` (a recorded skip) outside CI; fails under CI.
fn browser_or_skip() -> Option<std::path::PathBuf> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools");
    let ok = Path::new("/usr/bin/chromium").exists()
        && tools
            .join("node_modules/playwright-core/package.json")
            .exists()
        && tools.join("node_modules/ethers/package.json").exists();
    if !ok {
        skip::skip(
            None,
            "/usr/bin/chromium, playwright-core and ethers.js",
            "scripts/test installs them (apt chromium, tools/install.sh)",
        );
        return None;
    }
    Some(tools.join("vote-page-e2e.js"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_votes_on_the_page_and_sees_tallies_change_live() {
    let Some(script) = browser_or_skip() else {
        return;
    };
    page_vote(&script, "injected", 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_devnet_the_page_signs_with_a_member_key() {
    let Some(script) = browser_or_skip() else {
        return;
    };
    page_vote(&script, "dev", 2, 1).await;
}

/// GraphiQL renders from what the node serves, with every other host unreachable (an operator
/// network without internet), reads the schema and runs a query.
#[tokio::test]
async fn graphiql_works_offline_from_the_node_itself() {
    let Some(vote_script) = browser_or_skip() else {
        return;
    };
    let script = vote_script.with_file_name("graphiql-e2e.js");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let toml = format!(
        r#"
[node]
database_url = "sqlite://{}?mode=rwc"
listen = "{listen}"

[graphql]
graphiql = true
introspection = true
"#,
        dir.path().join("graphiql.sqlite").display(),
    );
    let (addr, stop_tx, node) = start_node(&toml).await;
    let out = tokio::task::spawn_blocking(move || {
        let child = run_script(&script, &json!({ "url": format!("http://{addr}") }));
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "the GraphiQL page did not work");
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap();
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["refused"], json!([]), "the page asked other hosts");
    let result: Value = serde_json::from_str(report["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["data"]["chains"], json!([]), "{result}");
    stop_tx.send(true).unwrap();
    node.await.unwrap().unwrap();
}

/// A node running the configuration `toml`: its address, the switch that stops it, its task.
async fn start_node(
    toml: &str,
) -> (
    String,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let config = meridian_types::config::Config::from_toml_str(toml, "test", Vec::new()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let node = tokio::spawn(meridian_node::node::run(config, stop_rx, Some(ready_tx)));
    match ready_rx.await {
        Ok(a) => (a.to_string(), stop_tx, node),
        Err(_) => panic!("node did not start: {:?}", node.await),
    }
}

/// `node <script>` with `input` on its standard input and its output piped.
fn run_script(script: &Path, input: &Value) -> std::process::Child {
    let mut child = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    child
}

/// Member `page_member` votes For on the page (with `wallet`), then member `api_member` votes For
/// through the API while the page is open.
async fn page_vote(script: &Path, wallet: &str, page_member: usize, api_member: usize) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", meridian_node::devnet::free_port().unwrap());
    let toml = format!(
        r#"
[node]
database_url = "sqlite://{}?mode=rwc"
listen = "{listen}"

[governance]
chain_id = 31337
members = ["{}", "{}", "{}"]
dev_keys = [{}]
voting_delay_min_secs = 0
voting_period_min_secs = 0
sensitive_voting_delay_min_secs = 0
"#,
        dir.path().join("vote.sqlite").display(),
        addr(0),
        addr(1),
        addr(2),
        if wallet == "dev" {
            format!("\"{}\"", KEYS[page_member])
        } else {
            String::new()
        }
    );
    let (addr_s, stop_tx, node) = start_node(&toml).await;

    let d = Domain::meridian(31337);
    let now = Utc::now().timestamp() as u64;
    let draft = ProposalDraft {
        space: "meridian".into(),
        title: "Adopt the corridor fee schedule".into(),
        body: "Members vote on the page.".into(),
        choices: vec!["For".into(), "Against".into()],
        voting_type: VotingType::SingleChoice,
        start: now - 1,
        end: now + 3_600,
        actions: vec![],
        proposer: addr(0),
        timestamp: now,
    };
    let typed = draft.typed_data(&d);
    let created = {
        let (a, s) = (addr_s.clone(), sign(0, &typed));
        tokio::task::spawn_blocking(move || {
            gql::graphql_blocking(&a, "mutation($t: JSON!, $s: String!) { createProposal(typedData: $t, signature: $s) { id } }", json!({"t": typed, "s": s}))
        })
        .await
        .unwrap()
    };
    let id = created["data"]["createProposal"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    // A proposal whose vote is already over: the page shows what it came to (no one voted, so
    // it is defeated once the node's governance tick sees it ended).
    let past = ProposalDraft {
        title: "An earlier proposal".into(),
        start: now - 20,
        end: now - 10,
        ..draft.clone()
    }
    .typed_data(&d);
    let past = {
        let (a, s) = (addr_s.clone(), sign(0, &past));
        tokio::task::spawn_blocking(move || {
            gql::graphql_blocking(&a, "mutation($t: JSON!, $s: String!) { createProposal(typedData: $t, signature: $s) { id } }", json!({"t": past, "s": s}))
        })
        .await
        .unwrap()
    };
    let ended = past["data"]["createProposal"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{past}"))
        .to_owned();
    // A Governor's proposal mirrored from its chain, with a vote that gave a reason: the page
    // shows the reason.
    {
        use meridian_types::{AccountId, EventPayload, WeightedOption};
        let chain: meridian_types::ChainId = "eip155:31337".parse().unwrap();
        let store = meridian_storage::Store::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("vote.sqlite").display()
        ))
        .await
        .unwrap();
        events::ingest(
            &store,
            "eip155:31337",
            5,
            vec![
                EventPayload::ProposalSubmitted {
                    proposal_id: "7".into(),
                    proposer: Some(AccountId::new(&chain, &addr(1))),
                    proposal_type: Some("governor".into()),
                    messages: vec![],
                    values: Vec::new(),
                    description: Some("A proposal on chain".into()),
                    vote_start: Some(1),
                    vote_end: Some(100),
                },
                EventPayload::VoteCast {
                    proposal_id: "7".into(),
                    voter: Some(AccountId::new(&chain, &addr(2))),
                    options: vec![WeightedOption {
                        option: "for".into(),
                        weight: "1".into(),
                    }],
                    power: Some("5".into()),
                    reason: Some("the corridor needs it".into()),
                },
            ],
        )
        .await;
    }

    let shot = dir.path().join("vote.png");
    let mut child = run_script(
        script,
        &json!({
            "url": format!("http://{addr_s}"),
            "key": format!("0x{}", KEYS[page_member]),
            "wallet": wallet,
            "proposal": id,
            "choice": 0,
            "screenshot": shot.to_str().unwrap(),
            "ended": ended,
            "mirrored": "eip155:31337/7",
        }),
    );
    let out = child.stdout.take().unwrap();
    let (a2, id2) = (addr_s.clone(), id.clone());
    let result = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(out).lines();
        let voted = lines.next().expect("the page never voted").unwrap();
        assert_eq!(voted, "voted 1", "the member's vote shows in the tally");
        // Member 2 votes For through the API; the open page must show it live.
        let v = VoteMessage {
            proposal: id2.clone(),
            choice: Choice::One(0),
            voter: addr(api_member),
            sequence: 1,
            timestamp: Utc::now().timestamp() as u64,
        }
        .typed_data(&Domain::meridian(31337));
        let r = gql::graphql_blocking(
            &a2,
            "mutation($t: JSON!, $s: String!) { castVote(typedData: $t, signature: $s) { power } }",
            json!({"t": v, "s": sign(api_member, &v)}),
        );
        assert_eq!(r["data"]["castVote"]["power"], "1", "{r}");
        let last = lines
            .next()
            .expect("the page never showed the live vote")
            .unwrap();
        serde_json::from_str::<Value>(&last).unwrap()
    })
    .await
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(result["before"], "0");
    assert_eq!(result["mine"], "1");
    assert_eq!(result["live"], "2");
    assert!(
        result["status"].as_str().unwrap().contains("Vote recorded"),
        "{result}"
    );
    // The member's own power, the past proposal's outcome, and a proposal made on the page.
    assert_eq!(result["myPower"], "your power: 1", "{result}");
    assert_eq!(result["outcome"], "outcome: not passed", "{result}");
    assert!(
        result["reasons"]
            .as_str()
            .unwrap_or_default()
            .contains("the corridor needs it"),
        "{result}"
    );
    let made = result["createdId"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert!(
        result["createdStatus"]
            .as_str()
            .unwrap()
            .contains("Proposal created"),
        "{result}"
    );
    let r = {
        let (a, q) = (
            addr_s.clone(),
            format!(r#"{{ proposal(id: "{made}") {{ title proposer state }} }}"#),
        );
        tokio::task::spawn_blocking(move || gql::graphql_blocking(&a, &q, json!({})))
            .await
            .unwrap()
    };
    assert_eq!(
        r["data"]["proposal"]["title"], "Proposed on the page",
        "{r}"
    );
    assert_eq!(
        r["data"]["proposal"]["proposer"]
            .as_str()
            .map(str::to_lowercase),
        Some(addr(page_member).to_lowercase()),
        "{r}"
    );
    assert!(shot.exists());
    if let Ok(keep) = std::env::var("MERIDIAN_VOTE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // The vote the page sent is the member's own, signed by their wallet.
    let votes = tokio::task::spawn_blocking(move || {
        gql::graphql_blocking(
            &addr_s,
            &format!(r#"{{ proposal(id: "{id}") {{ votes {{ voter signature }} }} }}"#),
            json!({}),
        )
    })
    .await
    .unwrap();
    let voters: Vec<&str> = votes["data"]["proposal"]["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["voter"].as_str().unwrap())
        .collect();
    assert_eq!(
        voters,
        vec![addr(page_member).as_str(), addr(api_member).as_str()]
    );

    stop_tx.send(true).unwrap();
    node.await.unwrap().unwrap();
}
