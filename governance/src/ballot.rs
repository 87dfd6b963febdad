//! Off-chain ballots: EIP-712 typed data signed by a member's wallet (`eth_signTypedData_v4`),
//! checked here before anything is stored.
//!
//! The server reads every fact from the signed typed data itself — never from fields sent beside
//! it — and accepts only its own types under its own domain (name "Meridian", version "1", the
//! configured chain id), so a signature made for anything else cannot be passed off as a vote.
//!
//! ```text
//! Vote(string proposal,string choice,address voter,uint64 sequence,uint64 timestamp)
//! Proposal(string space,string title,string body,string[] choices,string votingType,
//!          uint64 start,uint64 end,string actions,address proposer,uint64 timestamp)
//! ```
//!
//! `choice` is the JSON of a [`Choice`] (`0`, `[0,2]`, `[[0,70],[1,30]]`); `actions` the JSON
//! array of [`RelayAction`]s.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use ethers::types::transaction::eip712::{Eip712, TypedData};
use ethers::types::{Address, RecoveryMessage, Signature, H256};
use serde_json::{json, Value};

use crate::tally::{Choice, VotingType};
use meridian_types::RelayAction;

/// The EIP-712 domain ballots must be signed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `"Meridian"`.
    pub name: String,
    /// `"1"`.
    pub version: String,
    /// The chain id wallets sign for.
    pub chain_id: u64,
}

impl Domain {
    /// Meridian's domain on `chain_id`.
    pub fn meridian(chain_id: u64) -> Domain {
        Domain {
            name: "Meridian".into(),
            version: "1".into(),
            chain_id,
        }
    }

    fn json(&self) -> Value {
        json!({"name": self.name, "version": self.version, "chainId": self.chain_id})
    }
}

/// Why a ballot was refused; [`BallotError::code`] is what API clients match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BallotError {
    /// Not EIP-712 typed data, or not encodable.
    #[error("malformed typed data: {0}")]
    Malformed(String),
    /// Not a Meridian `Vote`/`Proposal`, or with different type definitions.
    #[error("typed data is not a Meridian {0} (its primary type or fields differ)")]
    WrongType(&'static str),
    /// Signed for another application or version.
    #[error("signed for domain {name:?} version {version:?}, not Meridian 1")]
    WrongDomain {
        /// The domain name signed.
        name: String,
        /// The domain version signed.
        version: String,
    },
    /// Signed for another chain id.
    #[error("signed for chain id {got}, this node accepts {expected}")]
    WrongChain {
        /// What was signed.
        got: String,
        /// What is accepted.
        expected: u64,
    },
    /// The signature does not parse or recovers no key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The signature is valid but by someone else than the named voter/proposer.
    #[error("signed by {signer}, not by {claimed}")]
    SignerMismatch {
        /// Who signed.
        signer: String,
        /// Who the message names.
        claimed: String,
    },
    /// The signed timestamp is too old.
    #[error("signed at {signed_at}, more than {window_secs} s ago")]
    Expired {
        /// The signed time (unix seconds).
        signed_at: u64,
        /// The accepted window.
        window_secs: i64,
    },
    /// The signed timestamp is in the future.
    #[error("signed at {signed_at}, in the future")]
    FromTheFuture {
        /// The signed time (unix seconds).
        signed_at: u64,
    },
    /// A field has a value this node cannot use.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl BallotError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BallotError::Malformed(_) => "MALFORMED_TYPED_DATA",
            BallotError::WrongType(_) => "WRONG_TYPE",
            BallotError::WrongDomain { .. } => "WRONG_DOMAIN",
            BallotError::WrongChain { .. } => "WRONG_CHAIN",
            BallotError::BadSignature(_) => "BAD_SIGNATURE",
            BallotError::SignerMismatch { .. } => "SIGNER_MISMATCH",
            BallotError::Expired { .. } => "EXPIRED",
            BallotError::FromTheFuture { .. } => "FROM_THE_FUTURE",
            BallotError::InvalidField { .. } => "INVALID_FIELD",
        }
    }
}

/// How far a signed timestamp may lag or lead the node's clock.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    /// Oldest accepted age.
    pub max_age: chrono::Duration,
    /// Clock skew tolerated into the future.
    pub max_skew: chrono::Duration,
}

impl Default for TimeWindow {
    fn default() -> Self {
        TimeWindow {
            max_age: chrono::Duration::minutes(10),
            max_skew: chrono::Duration::minutes(2),
        }
    }
}

fn vote_fields() -> Value {
    json!([
        {"name": "proposal", "type": "string"},
        {"name": "choice", "type": "string"},
        {"name": "voter", "type": "address"},
        {"name": "sequence", "type": "uint64"},
        {"name": "timestamp", "type": "uint64"}
    ])
}

fn proposal_fields() -> Value {
    json!([
        {"name": "space", "type": "string"},
        {"name": "title", "type": "string"},
        {"name": "body", "type": "string"},
        {"name": "choices", "type": "string[]"},
        {"name": "votingType", "type": "string"},
        {"name": "start", "type": "uint64"},
        {"name": "end", "type": "uint64"},
        {"name": "actions", "type": "string"},
        {"name": "proposer", "type": "address"},
        {"name": "timestamp", "type": "uint64"}
    ])
}

fn domain_fields() -> Value {
    json!([
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"}
    ])
}

/// A vote as its signer wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteMessage {
    /// The proposal id.
    pub proposal: String,
    /// The choice.
    pub choice: Choice,
    /// The voter (0x-hex, lower case).
    pub voter: String,
    /// Strictly increasing per voter and proposal.
    pub sequence: u64,
    /// Unix seconds when it was signed.
    pub timestamp: u64,
}

impl VoteMessage {
    /// The EIP-712 typed data a wallet signs for this vote.
    pub fn typed_data(&self, domain: &Domain) -> Value {
        json!({
            "types": {"EIP712Domain": domain_fields(), "Vote": vote_fields()},
            "primaryType": "Vote",
            "domain": domain.json(),
            "message": {
                "proposal": self.proposal,
                "choice": serde_json::to_string(&self.choice).unwrap_or_default(),
                "voter": self.voter,
                "sequence": self.sequence,
                "timestamp": self.timestamp,
            }
        })
    }
}

/// A vote whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVote {
    /// What was signed.
    pub message: VoteMessage,
    /// The signature (0x-hex, 65 bytes).
    pub signature: String,
}

/// A proposal as its proposer wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalDraft {
    /// The DAO/space.
    pub space: String,
    /// Title.
    pub title: String,
    /// Markdown body.
    pub body: String,
    /// Choices (for executable proposals, choice 0 is "for").
    pub choices: Vec<String>,
    /// How votes are expressed.
    pub voting_type: VotingType,
    /// Voting opens (unix seconds).
    pub start: u64,
    /// Voting closes (unix seconds).
    pub end: u64,
    /// What it changes if it passes.
    pub actions: Vec<RelayAction>,
    /// Who proposes (0x-hex, lower case).
    pub proposer: String,
    /// Unix seconds when it was signed.
    pub timestamp: u64,
}

impl ProposalDraft {
    /// The EIP-712 typed data a wallet signs for this proposal.
    pub fn typed_data(&self, domain: &Domain) -> Value {
        json!({
            "types": {"EIP712Domain": domain_fields(), "Proposal": proposal_fields()},
            "primaryType": "Proposal",
            "domain": domain.json(),
            "message": {
                "space": self.space,
                "title": self.title,
                "body": self.body,
                "choices": self.choices,
                "votingType": self.voting_type.as_str(),
                "start": self.start,
                "end": self.end,
                "actions": serde_json::to_string(&self.actions).unwrap_or_default(),
                "proposer": self.proposer,
                "timestamp": self.timestamp,
            }
        })
    }
}

/// A proposal whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedProposal {
    /// What was signed.
    pub draft: ProposalDraft,
    /// The signature (0x-hex, 65 bytes).
    pub signature: String,
    /// The EIP-712 digest (0x-hex): the proposal's id is derived from it.
    pub digest: String,
}

/// What an opened envelope holds: the recovered signer, the EIP-712 digest, the message.
struct Opened {
    signer: Address,
    digest: [u8; 32],
    message: serde_json::Map<String, Value>,
}

/// Checks the envelope (types, domain, chain, signature) and returns the recovered signer with
/// the message.
fn open(
    typed: &Value,
    signature: &str,
    primary: &'static str,
    fields: Value,
    domain: &Domain,
) -> Result<Opened, BallotError> {
    if typed["primaryType"] != primary || typed["types"][primary] != fields {
        return Err(BallotError::WrongType(primary));
    }
    let d = &typed["domain"];
    let (name, version) = (
        d["name"].as_str().unwrap_or_default(),
        d["version"].as_str().unwrap_or_default(),
    );
    if name != domain.name || version != domain.version {
        return Err(BallotError::WrongDomain {
            name: name.into(),
            version: version.into(),
        });
    }
    let chain = match &d["chainId"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let chain_ok = match chain.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok() == Some(domain.chain_id),
        None => chain.parse::<u64>().ok() == Some(domain.chain_id),
    };
    if !chain_ok {
        return Err(BallotError::WrongChain {
            got: chain,
            expected: domain.chain_id,
        });
    }
    let parsed: TypedData =
        serde_json::from_value(typed.clone()).map_err(|e| BallotError::Malformed(e.to_string()))?;
    let digest = parsed
        .encode_eip712()
        .map_err(|e| BallotError::Malformed(e.to_string()))?;
    let sig = Signature::from_str(signature.trim_start_matches("0x"))
        .map_err(|e| BallotError::BadSignature(e.to_string()))?;
    let signer = sig
        .recover(RecoveryMessage::Hash(H256(digest)))
        .map_err(|e| BallotError::BadSignature(e.to_string()))?;
    let message = typed["message"]
        .as_object()
        .cloned()
        .ok_or_else(|| BallotError::Malformed("no message".into()))?;
    Ok(Opened {
        signer,
        digest,
        message,
    })
}

fn str_field<'a>(
    m: &'a serde_json::Map<String, Value>,
    f: &'static str,
) -> Result<&'a str, BallotError> {
    m.get(f)
        .and_then(Value::as_str)
        .ok_or(BallotError::InvalidField {
            field: f,
            reason: "missing".into(),
        })
}

fn u64_field(m: &serde_json::Map<String, Value>, f: &'static str) -> Result<u64, BallotError> {
    let bad = |reason: &str| BallotError::InvalidField {
        field: f,
        reason: reason.into(),
    };
    match m.get(f) {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad("not a uint64")),
        Some(Value::String(s)) => s.parse().map_err(|_| bad("not a uint64")),
        _ => Err(bad("missing")),
    }
}

fn check_signer(signer: Address, claimed: &str) -> Result<String, BallotError> {
    let claimed_addr: Address = claimed.parse().map_err(|_| BallotError::InvalidField {
        field: "address",
        reason: format!("`{claimed}` is not an address"),
    })?;
    if signer != claimed_addr {
        return Err(BallotError::SignerMismatch {
            signer: format!("{signer:#x}"),
            claimed: format!("{claimed_addr:#x}"),
        });
    }
    Ok(format!("{signer:#x}"))
}

fn check_time(timestamp: u64, now: DateTime<Utc>, window: TimeWindow) -> Result<(), BallotError> {
    let now_s = now.timestamp();
    let t = i64::try_from(timestamp).unwrap_or(i64::MAX);
    if t > now_s + window.max_skew.num_seconds() {
        return Err(BallotError::FromTheFuture {
            signed_at: timestamp,
        });
    }
    if t < now_s - window.max_age.num_seconds() {
        return Err(BallotError::Expired {
            signed_at: timestamp,
            window_secs: window.max_age.num_seconds(),
        });
    }
    Ok(())
}

/// Checks a signed vote: Meridian's `Vote` type and domain, the chain id, a signature by the
/// voter it names, and a timestamp within `window` of `now`.
pub fn verify_vote(
    typed: &Value,
    signature: &str,
    domain: &Domain,
    now: DateTime<Utc>,
    window: TimeWindow,
) -> Result<SignedVote, BallotError> {
    let Opened {
        signer, message: m, ..
    } = open(typed, signature, "Vote", vote_fields(), domain)?;
    let voter = check_signer(signer, str_field(&m, "voter")?)?;
    let timestamp = u64_field(&m, "timestamp")?;
    check_time(timestamp, now, window)?;
    let choice: Choice =
        serde_json::from_str(str_field(&m, "choice")?).map_err(|e| BallotError::InvalidField {
            field: "choice",
            reason: e.to_string(),
        })?;
    Ok(SignedVote {
        message: VoteMessage {
            proposal: str_field(&m, "proposal")?.to_owned(),
            choice,
            voter,
            sequence: u64_field(&m, "sequence")?,
            timestamp,
        },
        signature: format!("0x{}", signature.trim_start_matches("0x")),
    })
}

/// Checks a signed proposal the same way as a vote, and its own fields (choices, window,
/// voting type, actions).
pub fn verify_proposal(
    typed: &Value,
    signature: &str,
    domain: &Domain,
    now: DateTime<Utc>,
    window: TimeWindow,
) -> Result<SignedProposal, BallotError> {
    let Opened {
        signer,
        digest,
        message: m,
    } = open(typed, signature, "Proposal", proposal_fields(), domain)?;
    let proposer = check_signer(signer, str_field(&m, "proposer")?)?;
    let timestamp = u64_field(&m, "timestamp")?;
    check_time(timestamp, now, window)?;
    let invalid = |field: &'static str, reason: String| BallotError::InvalidField { field, reason };
    let choices: Vec<String> = m
        .get("choices")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if choices.len() < 2 || choices.iter().any(|c| c.trim().is_empty()) {
        return Err(invalid("choices", "at least two non-empty choices".into()));
    }
    let voting_type = VotingType::parse(str_field(&m, "votingType")?).ok_or_else(|| {
        invalid(
            "votingType",
            "one of single_choice, approval, weighted, quadratic".into(),
        )
    })?;
    let (start, end) = (u64_field(&m, "start")?, u64_field(&m, "end")?);
    if end <= start {
        return Err(invalid("end", "must be after start".into()));
    }
    let actions: Vec<RelayAction> = serde_json::from_str(str_field(&m, "actions")?)
        .map_err(|e| invalid("actions", e.to_string()))?;
    for a in &actions {
        a.validate().map_err(|e| invalid("actions", e))?;
    }
    let title = str_field(&m, "title")?.trim().to_owned();
    if title.is_empty() {
        return Err(invalid("title", "must not be empty".into()));
    }
    Ok(SignedProposal {
        draft: ProposalDraft {
            space: str_field(&m, "space")?.to_owned(),
            title,
            body: str_field(&m, "body")?.to_owned(),
            choices,
            voting_type,
            start,
            end,
            actions,
            proposer,
            timestamp,
        },
        signature: format!("0x{}", signature.trim_start_matches("0x")),
        digest: format!("0x{}", ethers::utils::hex::encode(digest)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ethers::signers::{LocalWallet, Signer};

    const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn sign(typed: &Value) -> String {
        let wallet: LocalWallet = KEY.parse().unwrap();
        let parsed: TypedData = serde_json::from_value(typed.clone()).unwrap();
        let digest = parsed.encode_eip712().unwrap();
        let sig = wallet.sign_hash(H256(digest)).unwrap();
        format!("0x{sig}")
    }

    fn vote(voter: &str) -> VoteMessage {
        VoteMessage {
            proposal: "p-1".into(),
            choice: Choice::Weights(vec![(0, 70), (1, 30)]),
            voter: voter.into(),
            sequence: 1,
            timestamp: 1_800_000_000 - 5,
        }
    }

    #[test]
    fn a_vote_signed_by_its_voter_is_accepted_and_everything_else_refused() {
        let me = format!("{:#x}", KEY.parse::<LocalWallet>().unwrap().address());
        let d = Domain::meridian(31337);
        let typed = vote(&me).typed_data(&d);
        let sig = sign(&typed);
        let ok = verify_vote(&typed, &sig, &d, now(), TimeWindow::default()).unwrap();
        assert_eq!(ok.message, vote(&me));

        let code = |typed: &Value, sig: &str| {
            verify_vote(typed, sig, &d, now(), TimeWindow::default())
                .unwrap_err()
                .code()
        };
        // Someone else's vote signed by this key.
        let other = vote("0x70997970c51812dc3a010c7d01b50e0d17dc79c8").typed_data(&d);
        assert_eq!(code(&other, &sign(&other)), "SIGNER_MISMATCH");
        // A tampered message: the signature recovers another key.
        let mut tampered = typed.clone();
        tampered["message"]["choice"] = json!("1");
        assert_eq!(code(&tampered, &sig), "SIGNER_MISMATCH");
        // Other domain, other chain, other type.
        let foreign = vote(&me).typed_data(&Domain {
            name: "Snapshot".into(),
            ..d.clone()
        });
        assert_eq!(code(&foreign, &sign(&foreign)), "WRONG_DOMAIN");
        let chain = vote(&me).typed_data(&Domain::meridian(1));
        assert_eq!(code(&chain, &sign(&chain)), "WRONG_CHAIN");
        let mut extra = typed.clone();
        extra["types"]["Vote"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "x", "type": "uint8"}));
        assert_eq!(code(&extra, &sig), "WRONG_TYPE");
        // Too old, too new, garbage signature.
        let mut old = vote(&me);
        old.timestamp = 1_800_000_000 - 3_600;
        let old = old.typed_data(&d);
        assert_eq!(code(&old, &sign(&old)), "EXPIRED");
        let mut future = vote(&me);
        future.timestamp = 1_800_000_000 + 3_600;
        let future = future.typed_data(&d);
        assert_eq!(code(&future, &sign(&future)), "FROM_THE_FUTURE");
        assert_eq!(code(&typed, "0xdeadbeef"), "BAD_SIGNATURE");
        assert_eq!(code(&json!({"primaryType": "Vote"}), &sig), "WRONG_TYPE");
    }

    #[test]
    fn a_proposal_is_checked_and_its_digest_identifies_it() {
        let me = format!("{:#x}", KEY.parse::<LocalWallet>().unwrap().address());
        let d = Domain::meridian(31337);
        let draft = ProposalDraft {
            space: "meridian".into(),
            title: "Pause usdm-a-b".into(),
            body: "Maintenance".into(),
            choices: vec!["For".into(), "Against".into(), "Abstain".into()],
            voting_type: VotingType::SingleChoice,
            start: 1_800_000_000,
            end: 1_800_000_600,
            actions: vec![RelayAction::PauseCorridor {
                corridor: "usdm-a-b".into(),
                paused: true,
            }],
            proposer: me.clone(),
            timestamp: 1_800_000_000,
        };
        let typed = draft.typed_data(&d);
        let ok = verify_proposal(&typed, &sign(&typed), &d, now(), TimeWindow::default()).unwrap();
        assert_eq!(ok.draft, draft);
        assert!(ok.digest.starts_with("0x") && ok.digest.len() == 66);
        let mut one_choice = draft.clone();
        one_choice.choices.truncate(1);
        let t = one_choice.typed_data(&d);
        let e = verify_proposal(&t, &sign(&t), &d, now(), TimeWindow::default()).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().contains("two")),
            ("INVALID_FIELD", true)
        );
    }
}
