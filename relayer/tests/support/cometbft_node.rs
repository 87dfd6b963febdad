//! A local server that speaks CometBFT's JSON-RPC over HTTP (POST `/`) and websocket
//! (`/websocket`), for tests: no CometBFT binary can be installed on these machines.
//!
//! It answers in two ways, both in the exact format a node sends:
//! - **recorded**: real responses from `tests/fixtures/cometbft/` (PROVENANCE.md there), matched
//!   to the recorded request by method and params, with the request's id echoed as a node does;
//! - **scenario**: a chain that grows block by block. Its `/status`, `/block`, `/block_results`,
//!   `/tx` and `NewBlock` events are the recorded 0.38 (or 0.34) responses used as templates,
//!   with height, hashes, time, transactions and events filled in; `broadcast_tx_sync` puts a
//!   transaction into the next block.
//!
//! It never simplifies what a node sends: errors carry CometBFT's code, message and data
//! (`height 11 must be less than or equal to the current blockchain height 10`), and a height
//! above the head is refused the same way a node refuses it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

/// The fixtures folder (in the relayer crate; this file is also included by the node's tests).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../relayer/tests/fixtures/cometbft")
}

/// Reads a fixture file as JSON.
pub fn fixture(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Attribute encoding of the scenario chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Tendermint 0.34: base64 attributes, begin/end-block events.
    V034,
    /// CometBFT 0.38: plain attributes, finalize-block events.
    V038,
}

/// One event as an application emits it: type and (key, value) attributes.
#[derive(Debug, Clone)]
pub struct AppEvent {
    /// Event type, e.g. `transfer`.
    pub kind: String,
    /// Attributes in order.
    pub attributes: Vec<(String, String)>,
}

impl AppEvent {
    /// An event of `kind` with `attributes`.
    pub fn new(kind: &str, attributes: &[(&str, &str)]) -> AppEvent {
        AppEvent {
            kind: kind.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// A transaction in a scenario block.
#[derive(Debug, Clone)]
pub struct ScenarioTx {
    /// Raw transaction bytes (a Cosmos SDK `TxRaw` for SDK scenarios).
    pub bytes: Vec<u8>,
    /// ABCI result code.
    pub code: u32,
    /// Events the application emitted for it.
    pub events: Vec<AppEvent>,
}

#[derive(Debug, Clone)]
struct ScenarioBlock {
    height: u64,
    hash: String,
    time: String,
    txs: Vec<ScenarioTx>,
    block_events: Vec<AppEvent>,
}

/// What a broadcast transaction does when it is included: its events, or a failure code.
pub type TxExecutor = Box<dyn Fn(&[u8]) -> (u32, Vec<AppEvent>) + Send>;

/// An account of the scenario chain's auth and bank modules.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// Account number (part of what is signed).
    pub number: u64,
    /// Next expected sequence.
    pub sequence: u64,
    /// Balances by denom.
    pub balances: HashMap<String, u128>,
}

struct Scenario {
    chain_id: String,
    dialect: Dialect,
    blocks: Vec<ScenarioBlock>,
    mempool: Vec<Vec<u8>>,
    executor: Option<TxExecutor>,
    /// Accounts by bech32 address; when any exist, broadcasts are checked (decoding, sequence,
    /// signature) and executed as the bank module would.
    accounts: HashMap<String, Account>,
    /// Sequence of each account as CheckTx has advanced it (mempool state).
    check_sequences: HashMap<String, u64>,
}

/// A new block's time as a live chain stamps it: the present moment, and always after its parent
/// (CometBFT requires strictly increasing times). Never a fixed date: a transfer's default deadline
/// counts from its block's time, so a chain stamped in the past would make tests expire with the
/// calendar.
fn block_time_after(parent: Option<&str>) -> String {
    let now = chrono::Utc::now();
    let time = match parent.map(chrono::DateTime::parse_from_rfc3339) {
        Some(Ok(parent)) => now.max(parent.to_utc() + chrono::Duration::milliseconds(1)),
        Some(Err(e)) => panic!("a scenario block time does not parse: {e}"),
        None => now,
    };
    time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Where fees go, as on every Cosmos SDK chain (the fee collector module account).
pub const FEE_COLLECTOR: &str = "cosmos17xpfvakm2amg962yls6f84z3kell8c5lserqta";

/// What the auth ante handler and bank module do with a transaction: check its signer's
/// sequence and signature, take the fee, run each `MsgSend`. Returns (code, log, events).
fn execute_sdk_tx(
    chain_id: &str,
    height: u64,
    accounts: &mut HashMap<String, Account>,
    bytes: &[u8],
    check_only: bool,
    check_sequences: &mut HashMap<String, u64>,
) -> (u32, String, Vec<AppEvent>) {
    use cosmrs::proto::prost::Message as _;
    let Ok(tx) = cosmrs::Tx::from_bytes(bytes) else {
        return (2, "tx parse error".into(), Vec::new());
    };
    let Ok(raw) = cosmrs::proto::cosmos::tx::v1beta1::TxRaw::decode(bytes) else {
        return (2, "tx parse error".into(), Vec::new());
    };
    let timeout = tx.body.timeout_height.value();
    if timeout != 0 && height > timeout {
        return (
            30,
            format!("block height: {height}, timeout height: {timeout}: tx timeout height"),
            Vec::new(),
        );
    }
    let Some(signer) = tx.auth_info.signer_infos.first() else {
        return (4, "no signatures supplied: unauthorized".into(), Vec::new());
    };
    let Some(cosmrs::tx::SignerPublicKey::Single(pk)) = &signer.public_key else {
        return (4, "pubkey is required: unauthorized".into(), Vec::new());
    };
    let prefix = accounts
        .keys()
        .next()
        .and_then(|a| a.split_once('1'))
        .map(|(p, _)| p.to_owned())
        .unwrap_or_else(|| "cosmos".into());
    let from = pk.account_id(&prefix).unwrap().to_string();
    let Some(account) = accounts.get(&from).cloned() else {
        return (
            9,
            format!("account {from} not found: unknown address"),
            Vec::new(),
        );
    };
    let expected = if check_only {
        *check_sequences.get(&from).unwrap_or(&account.sequence)
    } else {
        account.sequence
    };
    if signer.sequence != expected {
        return (
            32,
            format!(
                "account sequence mismatch, expected {expected}, got {}: incorrect account sequence",
                signer.sequence
            ),
            Vec::new(),
        );
    }
    let sign_doc = cosmrs::proto::cosmos::tx::v1beta1::SignDoc {
        body_bytes: raw.body_bytes.clone(),
        auth_info_bytes: raw.auth_info_bytes.clone(),
        chain_id: chain_id.to_owned(),
        account_number: account.number,
    }
    .encode_to_vec();
    let verified = (|| {
        use k256::ecdsa::signature::Verifier as _;
        let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk.to_bytes()).ok()?;
        let sig = k256::ecdsa::Signature::from_slice(raw.signatures.first()?).ok()?;
        key.verify(&sign_doc, &sig).ok()
    })();
    if verified.is_none() {
        return (
            4,
            format!(
                "signature verification failed; please verify account number ({}) and chain-id ({chain_id}): unauthorized",
                account.number
            ),
            Vec::new(),
        );
    }
    if check_only {
        check_sequences.insert(from, expected + 1);
        return (0, String::new(), Vec::new());
    }
    let acct = accounts.get_mut(&from).unwrap();
    acct.sequence += 1;
    let mut events = Vec::new();
    for coin in &tx.auth_info.fee.amount {
        let denom = coin.denom.to_string();
        let bal = acct.balances.entry(denom.clone()).or_default();
        if *bal < coin.amount {
            return (13, "insufficient fees".into(), Vec::new());
        }
        *bal -= coin.amount;
        let amount = format!("{}{denom}", coin.amount);
        events.extend(bank_events(&from, FEE_COLLECTOR, &amount));
        events.push(AppEvent::new(
            "tx",
            &[("fee", &amount), ("fee_payer", &from)],
        ));
    }
    events.push(AppEvent::new(
        "tx",
        &[("acc_seq", &format!("{from}/{}", signer.sequence))],
    ));
    let mut msg_events = Vec::new();
    let mut moves = Vec::new();
    for any in &tx.body.messages {
        let Ok(send) = cosmrs::proto::cosmos::bank::v1beta1::MsgSend::decode(any.value.as_slice())
        else {
            return (6, format!("unknown message {}", any.type_url), events);
        };
        msg_events.push(AppEvent::new(
            "message",
            &[
                ("action", "/cosmos.bank.v1beta1.MsgSend"),
                ("sender", &send.from_address),
                ("module", "bank"),
            ],
        ));
        for c in &send.amount {
            let amount: u128 = c.amount.parse().unwrap();
            moves.push((
                send.from_address.clone(),
                send.to_address.clone(),
                c.denom.clone(),
                amount,
            ));
            msg_events.extend(bank_events(
                &send.from_address,
                &send.to_address,
                &format!("{amount}{}", c.denom),
            ));
        }
    }
    // All or nothing, as a failed message reverts the transaction's state changes.
    let mut staged = accounts.clone();
    for (from, to, denom, amount) in &moves {
        let bal = staged
            .entry(from.clone())
            .or_default()
            .balances
            .entry(denom.clone())
            .or_default();
        if *bal < *amount {
            // The fee and the sequence stay taken; the messages' moves are dropped.
            return (
                5,
                format!("spendable balance is smaller than {amount}{denom}: insufficient funds"),
                events,
            );
        }
        *bal -= amount;
        *staged
            .entry(to.clone())
            .or_default()
            .balances
            .entry(denom.clone())
            .or_default() += amount;
    }
    *accounts = staged;
    events.extend(msg_events);
    (0, String::new(), events)
}

/// The events the bank module emits for moving `amount` (e.g. `10stake`).
pub fn bank_events(from: &str, to: &str, amount: &str) -> Vec<AppEvent> {
    vec![
        AppEvent::new("coin_spent", &[("spender", from), ("amount", amount)]),
        AppEvent::new("coin_received", &[("receiver", to), ("amount", amount)]),
        AppEvent::new(
            "transfer",
            &[("recipient", to), ("sender", from), ("amount", amount)],
        ),
        AppEvent::new("message", &[("sender", from)]),
    ]
}

#[derive(Default)]
struct NodeState {
    recorded: HashMap<(String, String), Value>,
    ws_events: Vec<Value>,
    scenario: Option<Scenario>,
    calls: Vec<String>,
    refuse_http: bool,
}

/// A running replay node.
pub struct CometNode {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<NodeState>>,
    blocks: broadcast::Sender<Value>,
    drops: broadcast::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CometNode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Request params in a canonical form: clients differ in whether they send absent options as
/// `null` or leave them out, and in `false` versus nothing for `prove`.
fn params_key(params: &Value) -> String {
    match params {
        Value::Object(m) => {
            let kept: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(_, v)| !matches!(v, Value::Null | Value::Bool(false)))
                // Hex is case-insensitive; clients differ in the case they write.
                .map(|(k, v)| match (k.as_str(), v) {
                    ("data", Value::String(hex)) => {
                        (k.clone(), Value::String(hex.to_ascii_lowercase()))
                    }
                    _ => (k.clone(), v.clone()),
                })
                .collect();
            Value::Object(kept).to_string()
        }
        _ => "{}".into(),
    }
}

fn rpc_error(id: &Value, data: String) -> Value {
    json!({"error": {"code": -32603, "data": data, "message": "Internal error"}, "id": id, "jsonrpc": "2.0"})
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"id": id, "jsonrpc": "2.0", "result": result})
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn tx_hash(bytes: &[u8]) -> String {
    hex_upper(&Sha256::digest(bytes))
}

fn encode_events(dialect: Dialect, events: &[AppEvent]) -> Value {
    Value::Array(
        events
            .iter()
            .map(|e| {
                let attributes: Vec<Value> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| match dialect {
                        Dialect::V034 => json!({"key": b64(k.as_bytes()), "value": b64(v.as_bytes()), "index": true}),
                        Dialect::V038 => json!({"key": k, "value": v, "index": true}),
                    })
                    .collect();
                json!({"type": e.kind, "attributes": attributes})
            })
            .collect(),
    )
}

impl Scenario {
    fn head(&self) -> &ScenarioBlock {
        self.blocks.last().expect("a scenario has a genesis block")
    }

    fn block_json(&self, b: &ScenarioBlock) -> Value {
        // The first block has no parent and an empty last commit, as recorded at height 1.
        let at = if b.height == 1 { 1 } else { 10 };
        let template = match self.dialect {
            Dialect::V038 => fixture(&format!("rpc-v0_38/incoming/block_at_height_{at}.json")),
            Dialect::V034 => fixture(&format!(
                "cosmos-sdk/tendermint-rs/gaia/incoming/block_at_height_{at}.json"
            )),
        };
        let mut r = template["result"].clone();
        r["block_id"]["hash"] = json!(b.hash);
        let h = &mut r["block"]["header"];
        h["height"] = json!(b.height.to_string());
        h["chain_id"] = json!(self.chain_id);
        h["time"] = json!(b.time);
        if b.height > 1 {
            let parent = self.blocks[(b.height - 2) as usize].hash.clone();
            h["last_block_id"]["hash"] = json!(parent);
            r["block"]["last_commit"]["block_id"]["hash"] = json!(parent);
            r["block"]["last_commit"]["height"] = json!((b.height - 1).to_string());
        }
        r["block"]["data"]["txs"] =
            Value::Array(b.txs.iter().map(|t| json!(b64(&t.bytes))).collect());
        r
    }

    fn tx_result_json(&self, tx: &ScenarioTx) -> Value {
        json!({
            "code": tx.code,
            "codespace": if tx.code == 0 { "" } else { "sdk" },
            "data": "",
            "events": encode_events(self.dialect, &tx.events),
            "gas_used": "61383",
            "gas_wanted": "200000",
            "info": "",
            "log": if tx.code == 0 { "" } else { "insufficient funds" },
        })
    }

    fn block_results_json(&self, b: &ScenarioBlock) -> Value {
        let txs: Vec<Value> = b.txs.iter().map(|t| self.tx_result_json(t)).collect();
        match self.dialect {
            Dialect::V038 => {
                let mut r =
                    fixture("rpc-v0_38/incoming/block_results_at_height_10.json")["result"].clone();
                r["height"] = json!(b.height.to_string());
                r["txs_results"] = if txs.is_empty() {
                    Value::Null
                } else {
                    Value::Array(txs)
                };
                r["finalize_block_events"] = if b.block_events.is_empty() {
                    Value::Null
                } else {
                    encode_events(self.dialect, &b.block_events)
                };
                r["app_hash"] = json!(b64(&[0u8; 8]));
                r
            }
            Dialect::V034 => {
                let mut r = fixture(
                    "cosmos-sdk/tendermint-rs/gaia/incoming/block_results_at_height_10.json",
                )["result"]
                    .clone();
                r["height"] = json!(b.height.to_string());
                r["txs_results"] = if txs.is_empty() {
                    Value::Null
                } else {
                    Value::Array(txs)
                };
                r["begin_block_events"] = encode_events(self.dialect, &b.block_events);
                r["end_block_events"] = Value::Null;
                r["validator_updates"] = Value::Null;
                r
            }
        }
    }

    fn status_json(&self) -> Value {
        let mut r = match self.dialect {
            Dialect::V038 => fixture("rpc-v0_38/incoming/status.json")["result"].clone(),
            Dialect::V034 => {
                fixture("cosmos-sdk/tendermint-rs/gaia/incoming/status.json")["result"].clone()
            }
        };
        let head = self.head();
        r["node_info"]["network"] = json!(self.chain_id);
        let s = &mut r["sync_info"];
        s["latest_block_height"] = json!(head.height.to_string());
        s["latest_block_hash"] = json!(head.hash);
        s["latest_block_time"] = json!(head.time);
        s["earliest_block_height"] = json!("1");
        s["earliest_block_hash"] = json!(self.blocks[0].hash);
        r
    }

    fn new_block_event(&self, b: &ScenarioBlock, query: &str) -> Value {
        let mut r = fixture("rpc-v0_38/incoming/subscribe_newblock_0.json")["result"].clone();
        let block = self.block_json(b);
        r["query"] = json!(query);
        r["data"]["value"]["block"] = block["block"].clone();
        r["data"]["value"]["block_id"] = block["block_id"].clone();
        if self.dialect == Dialect::V034 {
            let old = fixture("cosmos-sdk/tendermint-rs/gaia/incoming/subscribe_newblock_0.json")
                ["result"]
                .clone();
            r["data"]["value"] = json!({
                "block": block["block"].clone(),
                "result_begin_block": old["data"]["value"]["result_begin_block"].clone(),
                "result_end_block": old["data"]["value"]["result_end_block"].clone(),
            });
        }
        r
    }

    fn block_at(&self, height: &Value) -> Result<&ScenarioBlock, String> {
        let h: u64 = match height {
            Value::String(s) => s.parse().map_err(|_| format!("invalid height {s}"))?,
            Value::Null => self.head().height,
            other => return Err(format!("invalid height {other}")),
        };
        if h == 0 {
            return Err("height must be greater than 0, but got 0".into());
        }
        let head = self.head().height;
        if h > head {
            return Err(format!(
                "height {h} must be less than or equal to the current blockchain height {head}"
            ));
        }
        Ok(&self.blocks[(h - 1) as usize])
    }

    fn find_tx(&self, hash: &str) -> Option<(u64, usize, &ScenarioTx)> {
        self.blocks.iter().find_map(|b| {
            b.txs
                .iter()
                .position(|t| tx_hash(&t.bytes) == hash)
                .map(|i| (b.height, i, &b.txs[i]))
        })
    }

    fn answer(&mut self, method: &str, params: &Value) -> Option<Result<Value, String>> {
        Some(match method {
            "status" => Ok(self.status_json()),
            "block" => self.block_at(&params["height"]).map(|b| self.block_json(b)),
            "block_results" => self
                .block_at(&params["height"])
                .map(|b| self.block_results_json(b)),
            "broadcast_tx_sync" => {
                let Some(tx) = params["tx"]
                    .as_str()
                    .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
                else {
                    return Some(Err("invalid tx".into()));
                };
                let hash = tx_hash(&tx);
                let (code, log) = if self.accounts.is_empty() {
                    (0, String::new())
                } else {
                    let next = self.head().height + 1;
                    let (code, log, _) = execute_sdk_tx(
                        &self.chain_id,
                        next,
                        &mut self.accounts,
                        &tx,
                        true,
                        &mut self.check_sequences,
                    );
                    (code, log)
                };
                if code == 0 {
                    self.mempool.push(tx);
                }
                let mut r = fixture("rpc-v0_38/incoming/broadcast_tx_sync.json")["result"].clone();
                r["hash"] = json!(hash);
                r["code"] = json!(code);
                r["log"] = json!(log);
                r["codespace"] = json!(if code == 0 { "" } else { "sdk" });
                Ok(r)
            }
            "abci_query" if params["path"] == "/cosmos.auth.v1beta1.Query/Account" => {
                use cosmrs::proto::prost::Message as _;
                let data = hex_bytes(params["data"].as_str().unwrap_or_default());
                let Ok(req) = cosmrs::proto::cosmos::auth::v1beta1::QueryAccountRequest::decode(
                    data.as_slice(),
                ) else {
                    return Some(Err("invalid request".into()));
                };
                let mut r = fixture("rpc-v0_38/incoming/abci_query_with_existing_key.json")
                    ["result"]
                    .clone();
                let resp = &mut r["response"];
                resp["height"] = json!(self.head().height.to_string());
                resp["key"] = Value::Null;
                match self.accounts.get(&req.address) {
                    Some(a) => {
                        let account = cosmrs::proto::cosmos::auth::v1beta1::BaseAccount {
                            address: req.address.clone(),
                            pub_key: None,
                            account_number: a.number,
                            sequence: a.sequence,
                        };
                        let any = cosmrs::Any {
                            type_url: "/cosmos.auth.v1beta1.BaseAccount".into(),
                            value: account.encode_to_vec(),
                        };
                        let answer = cosmrs::proto::cosmos::auth::v1beta1::QueryAccountResponse {
                            account: Some(any),
                        };
                        resp["value"] = json!(b64(&answer.encode_to_vec()));
                        resp["log"] = json!("");
                    }
                    None => {
                        resp["code"] = json!(22);
                        resp["codespace"] = json!("sdk");
                        resp["value"] = Value::Null;
                        resp["log"] = json!(format!(
                            "rpc error: code = NotFound desc = account {} not found: key not found",
                            req.address
                        ));
                    }
                }
                Ok(r)
            }
            "tx" => {
                let hash = params["hash"]
                    .as_str()
                    .and_then(|h| base64::engine::general_purpose::STANDARD.decode(h).ok())
                    .map(|h| hex_upper(&h))
                    .unwrap_or_default();
                match self.find_tx(&hash) {
                    Some((height, index, tx)) => Ok(json!({
                        "hash": hash,
                        "height": height.to_string(),
                        "index": index,
                        "tx": b64(&tx.bytes),
                        "tx_result": self.tx_result_json(tx),
                    })),
                    None => Err(format!("tx ({hash}) not found")),
                }
            }
            _ => return None,
        })
    }
}

impl CometNode {
    /// A node answering with the recorded fixtures of `folders` (relative to the fixtures
    /// folder), each folder holding `incoming/` and `outgoing/`.
    pub async fn recorded(folders: &[&str]) -> CometNode {
        let mut state = NodeState::default();
        for folder in folders {
            let dir = fixtures().join(folder);
            for entry in std::fs::read_dir(dir.join("outgoing")).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let request = fixture(&format!("{folder}/outgoing/{name}"));
                let incoming = dir.join("incoming").join(&name);
                let incoming = if incoming.exists() {
                    incoming
                } else {
                    // abci_info's request answers to abci_info_0 (the recorded one).
                    dir.join("incoming").join(name.replace(".json", "_0.json"))
                };
                let Ok(text) = std::fs::read_to_string(&incoming) else {
                    continue;
                };
                let Ok(response) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let method = request["method"].as_str().unwrap_or_default().to_owned();
                if method == "subscribe" {
                    continue;
                }
                state
                    .recorded
                    .insert((method, params_key(&request["params"])), response);
            }
            let mut i = 0;
            while let Ok(text) = std::fs::read_to_string(
                dir.join("incoming")
                    .join(format!("subscribe_newblock_{i}.json")),
            ) {
                state.ws_events.push(serde_json::from_str(&text).unwrap());
                i += 1;
            }
        }
        CometNode::serve(state).await
    }

    /// Adds a recorded `/block_results` response (files without a recorded request, such as the
    /// chain-indexing ones) as the answer for its height.
    pub fn add_block_results(&self, rel: &str) -> u64 {
        let response = fixture(rel);
        let height: u64 = response["result"]["height"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        self.state.lock().unwrap().recorded.insert(
            (
                "block_results".into(),
                json!({"height": height.to_string()}).to_string(),
            ),
            response,
        );
        height
    }

    /// A scenario chain `chain_id` speaking `dialect`, starting with one empty block.
    pub async fn scenario(chain_id: &str, dialect: Dialect) -> CometNode {
        let genesis = ScenarioBlock {
            height: 1,
            hash: hex_upper(&Sha256::digest(format!("{chain_id}/1"))),
            time: block_time_after(None),
            txs: Vec::new(),
            block_events: Vec::new(),
        };
        let state = NodeState {
            scenario: Some(Scenario {
                chain_id: chain_id.into(),
                dialect,
                blocks: vec![genesis],
                mempool: Vec::new(),
                executor: None,
                accounts: HashMap::new(),
                check_sequences: HashMap::new(),
            }),
            ..NodeState::default()
        };
        CometNode::serve(state).await
    }

    async fn serve(state: NodeState) -> CometNode {
        let state = Arc::new(Mutex::new(state));
        let (blocks, _) = broadcast::channel(256);
        let (drops, _) = broadcast::channel(4);
        let app = Router::new()
            .route("/", post(http_rpc))
            .route("/websocket", any(ws_upgrade))
            .with_state(ServerState {
                node: state.clone(),
                blocks: blocks.clone(),
                drops: drops.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        CometNode {
            addr,
            state,
            blocks,
            drops,
            server,
        }
    }

    /// The HTTP RPC URL.
    pub fn http_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The websocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    /// Methods called so far over HTTP, in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Makes HTTP requests fail (503) until called with `false`, like a node going away.
    pub fn refuse_http(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_http = refuse;
    }

    /// Creates (or replaces) an account of the scenario chain's auth and bank modules.
    pub fn set_account(
        &self,
        address: &str,
        number: u64,
        sequence: u64,
        balances: &[(&str, u128)],
    ) {
        let mut s = self.state.lock().unwrap();
        let sc = s.scenario.as_mut().expect("scenario node");
        sc.accounts.insert(
            address.to_owned(),
            Account {
                number,
                sequence,
                balances: balances
                    .iter()
                    .map(|(d, a)| ((*d).to_owned(), *a))
                    .collect(),
            },
        );
    }

    /// An account as the chain holds it now.
    pub fn account(&self, address: &str) -> Option<Account> {
        let s = self.state.lock().unwrap();
        s.scenario.as_ref().unwrap().accounts.get(address).cloned()
    }

    /// Sets what broadcast transactions do when included in a block.
    pub fn set_executor(&self, executor: TxExecutor) {
        let mut s = self.state.lock().unwrap();
        s.scenario.as_mut().expect("scenario node").executor = Some(executor);
    }

    /// Appends a block with `txs` and block-level `events` (plus anything broadcast since the
    /// last block), announces it over the websocket and returns its height.
    pub fn add_block(&self, txs: Vec<ScenarioTx>, events: Vec<AppEvent>) -> u64 {
        let mut s = self.state.lock().unwrap();
        let sc = s.scenario.as_mut().expect("scenario node");
        let mut txs = txs;
        for bytes in std::mem::take(&mut sc.mempool) {
            let (code, events) = match &sc.executor {
                Some(exec) => exec(&bytes),
                None if !sc.accounts.is_empty() => {
                    let next = sc.head().height + 1;
                    let (code, _log, events) = execute_sdk_tx(
                        &sc.chain_id.clone(),
                        next,
                        &mut sc.accounts,
                        &bytes,
                        false,
                        &mut HashMap::new(),
                    );
                    (code, events)
                }
                None => (0, Vec::new()),
            };
            txs.push(ScenarioTx {
                bytes,
                code,
                events,
            });
        }
        sc.check_sequences.clear();
        let height = sc.head().height + 1;
        let block = ScenarioBlock {
            height,
            hash: hex_upper(&Sha256::digest(format!("{}/{height}", sc.chain_id))),
            time: block_time_after(Some(&sc.head().time)),
            txs,
            block_events: events,
        };
        let event = sc.new_block_event(&block, "tm.event = 'NewBlock'");
        sc.blocks.push(block);
        drop(s);
        self.blocks.send(event).ok();
        height
    }

    /// Appends `n` empty blocks.
    pub fn add_empty_blocks(&self, n: u64) -> u64 {
        let mut h = 0;
        for _ in 0..n {
            h = self.add_block(Vec::new(), Vec::new());
        }
        h
    }

    /// The block hash at `height` as the node reports it.
    pub fn block_hash(&self, height: u64) -> String {
        let s = self.state.lock().unwrap();
        s.scenario.as_ref().unwrap().blocks[(height - 1) as usize]
            .hash
            .clone()
    }

    /// Closes every websocket connection, as a node restart or a proxy time-out would.
    pub fn drop_websockets(&self) {
        self.drops.send(()).ok();
    }

    /// Number of websocket subscriptions made so far.
    pub fn subscriptions(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| *c == "ws:subscribe")
            .count()
    }
}

#[derive(Clone)]
struct ServerState {
    node: Arc<Mutex<NodeState>>,
    blocks: broadcast::Sender<Value>,
    drops: broadcast::Sender<()>,
}

fn answer(node: &Mutex<NodeState>, request: &Value) -> Value {
    let id = request["id"].clone();
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let params = request["params"].clone();
    let mut s = node.lock().unwrap();
    s.calls.push(method.clone());
    if let Some(sc) = s.scenario.as_mut() {
        if let Some(result) = sc.answer(&method, &params) {
            return match result {
                Ok(r) => rpc_result(&id, r),
                Err(data) => rpc_error(&id, data),
            };
        }
    }
    match s.recorded.get(&(method.clone(), params_key(&params))) {
        Some(recorded) => {
            let mut response = recorded.clone();
            response["id"] = id;
            response
        }
        None => {
            json!({"error": {"code": -32601, "message": "Method not found", "data": ""}, "id": id, "jsonrpc": "2.0"})
        }
    }
}

async fn http_rpc(
    State(st): State<ServerState>,
    Json(request): Json<Value>,
) -> axum::response::Response {
    if st.node.lock().unwrap().refuse_http {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "node unavailable",
        )
            .into_response();
    }
    Json(answer(&st.node, &request)).into_response()
}

async fn ws_upgrade(
    State(st): State<ServerState>,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    ws.on_upgrade(move |socket| ws_session(st, socket))
}

async fn ws_session(st: ServerState, mut socket: WebSocket) {
    let mut blocks = st.blocks.subscribe();
    let mut drops = st.drops.subscribe();
    // (request id, query) of this connection's NewBlock subscription.
    let mut subscription: Option<(Value, String)> = None;
    loop {
        tokio::select! {
            _ = drops.recv() => return,
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { return };
                let Message::Text(text) = msg else { continue };
                let Ok(request) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let reply = if request["method"] == "subscribe" {
                    let query = request["params"]["query"].as_str().unwrap_or_default().to_owned();
                    st.node.lock().unwrap().calls.push("ws:subscribe".into());
                    if query == "malformed query" {
                        let mut e = fixture("rpc-v0_38/incoming/subscribe_malformed.json");
                        e["id"] = request["id"].clone();
                        e
                    } else if !query.contains("NewBlock") {
                        // Accepted (as a node does) but this node only announces blocks.
                        rpc_result(&request["id"], json!({}))
                    } else {
                        subscription = Some((request["id"].clone(), query.clone()));
                        let recorded = st.node.lock().unwrap().ws_events.clone();
                        let ack = rpc_result(&request["id"], json!({}));
                        if socket.send(Message::Text(ack.to_string().into())).await.is_err() {
                            return;
                        }
                        for mut event in recorded {
                            event["id"] = request["id"].clone();
                            if socket.send(Message::Text(event.to_string().into())).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                } else {
                    answer(&st.node, &request)
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            block = blocks.recv() => {
                let Ok(result) = block else { continue };
                if let Some((id, query)) = &subscription {
                    let mut result = result;
                    result["query"] = json!(query);
                    let event = rpc_result(id, result);
                    if socket.send(Message::Text(event.to_string().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
