//! Cosmos SDK events → normalised [`ChainEvent`]s.
//!
//! Input is what `/block` and `/block_results` give for one height, whatever the node's dialect:
//! tendermint-rpc has already turned 0.34's base64 attributes into bytes, so this module sees
//! one attribute model for 0.34, 0.37 and 0.38 alike.
//!
//! Event positions are numbered over the whole block (begin-block, each transaction's events,
//! end-block, finalize-block) from the block alone, so an event's id does not change when this
//! decoder learns new event types: [`event_index`] packs (position, coin, derived) into the id's
//! index.

use std::collections::{HashMap, HashSet};

use meridian_types::{
    AccountId, AssetId, ChainEvent, ChainId, EventId, EventPayload, PayoutMarker, RemittanceMemo,
    WeightedOption,
};
use tendermint::abci::Event;
use tracing::warn;

/// Coins one event may carry before the rest are stored as undecodable (`a,b,c…` amounts).
const COINS_PER_EVENT_MAX: usize = 255;

/// Where a group of events sits in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Begin-block events (0.34/0.37).
    BeginBlock,
    /// A transaction's events.
    Tx {
        /// Upper-case hex SHA-256 of the transaction bytes, as CometBFT names transactions.
        hash: String,
        /// The transaction's memo, if its bytes decode as a Cosmos SDK transaction.
        memo: Option<String>,
        /// ABCI result code; 0 is success.
        code: u32,
    },
    /// End-block events (0.34/0.37).
    EndBlock,
    /// Finalize-block events (0.38).
    FinalizeBlock,
}

impl Origin {
    fn tx_label(&self) -> &str {
        match self {
            Origin::BeginBlock => "begin_block",
            Origin::Tx { hash, .. } => hash,
            Origin::EndBlock => "end_block",
            Origin::FinalizeBlock => "finalize_block",
        }
    }
}

/// One height's worth of events, in block order.
#[derive(Debug, Clone)]
pub struct BlockEvents {
    /// Height.
    pub height: u64,
    /// Block hash (upper-case hex, as CometBFT writes it).
    pub hash: String,
    /// Block time, unix seconds.
    pub time: u64,
    /// Event groups in block order.
    pub groups: Vec<(Origin, Vec<Event>)>,
}

/// The id index of the `coin`-th coin of the event at block `position`; `derived` marks the
/// second event read from the same coin (a transfer that is also a remittance request).
pub fn event_index(position: usize, coin: usize, derived: bool) -> Option<u32> {
    // Stored as a 32-bit signed integer (`chain_events.log_index`).
    let v = (position as u64) * 512 + (coin as u64) * 2 + u64::from(derived);
    i32::try_from(v).ok().map(|v| v as u32)
}

/// Normalises the Cosmos SDK events Meridian cares about on one chain.
#[derive(Debug, Clone)]
pub struct CosmosDecoder {
    chain: ChainId,
    /// The relay's escrow account: a bank send to it with a Meridian memo is a remittance.
    escrow: Option<String>,
    /// Bank denominations whose movements are recorded (configured assets of this chain).
    denoms: HashSet<String>,
}

/// Attributes of one event, by key (a repeated key keeps its first value).
struct Attrs<'a> {
    kind: &'a str,
    map: HashMap<String, String>,
}

impl<'a> Attrs<'a> {
    fn read(event: &'a Event) -> Result<Attrs<'a>, String> {
        let mut map = HashMap::new();
        for a in &event.attributes {
            let key = a
                .key_str()
                .map_err(|_| "attribute key is not UTF-8".to_owned())?;
            let value = a
                .value_str()
                .map_err(|_| format!("attribute `{key}` is not UTF-8"))?;
            map.entry(key.to_owned())
                .or_insert_with(|| value.to_owned());
        }
        Ok(Attrs {
            kind: &event.kind,
            map,
        })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn need(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("`{}` event without `{key}`", self.kind))
    }
}

/// Facts gathered from a transaction's other events, for events that omit them.
#[derive(Default)]
struct TxContext {
    /// `message.sender`: the signer, for gov events of SDK versions that name no voter.
    sender: Option<String>,
    /// `submit_proposal.proposal_type` (v1beta1), emitted as a separate event.
    proposal_type: Option<String>,
    /// `submit_proposal.proposal_messages` (v1).
    proposal_messages: Vec<String>,
}

impl TxContext {
    fn of(events: &[Event]) -> TxContext {
        let mut ctx = TxContext::default();
        for e in events {
            let Ok(a) = Attrs::read(e) else { continue };
            match a.kind {
                "message" if ctx.sender.is_none() => ctx.sender = a.get("sender").map(Into::into),
                "submit_proposal" => {
                    if let Some(t) = a.get("proposal_type") {
                        ctx.proposal_type.get_or_insert_with(|| t.to_owned());
                    }
                    if let Some(m) = a.get("proposal_messages") {
                        ctx.proposal_messages.extend(
                            m.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(String::from),
                        );
                    }
                }
                _ => {}
            }
        }
        ctx
    }
}

/// A coin amount such as `1000000basetcro`, one of a comma-separated list.
fn parse_coins(s: &str) -> Result<Vec<(u128, String)>, String> {
    s.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let c = c.trim();
            let split = c
                .find(|ch: char| !ch.is_ascii_digit())
                .ok_or_else(|| format!("coin `{c}` has no denomination"))?;
            let (amount, denom) = c.split_at(split);
            let amount = amount
                .parse::<u128>()
                .map_err(|_| format!("coin `{c}` has no valid amount"))?;
            Ok((amount, denom.to_owned()))
        })
        .collect()
}

fn normalise_option(s: &str) -> String {
    let s = s.trim().trim_matches('"');
    match s {
        "1" => "yes".into(),
        "2" => "abstain".into(),
        "3" => "no".into(),
        "4" => "no_with_veto".into(),
        _ => s.trim_start_matches("VOTE_OPTION_").to_ascii_lowercase(),
    }
}

/// The options of a `proposal_vote` event's `option` attribute, in each SDK's spelling:
/// `VOTE_OPTION_YES` (v1beta1), `option:VOTE_OPTION_NO weight:"1.0"` lines (0.46), or JSON
/// `[{"option":1,"weight":"1.0"}]` (0.47+).
pub fn parse_vote_options(s: &str) -> Result<Vec<WeightedOption>, String> {
    let s = s.trim();
    if s.starts_with('[') || s.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| format!("vote option JSON: {e}"))?;
        let items = match v {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        return items
            .iter()
            .map(|item| {
                let option = match &item["option"] {
                    serde_json::Value::Number(n) => normalise_option(&n.to_string()),
                    serde_json::Value::String(o) => normalise_option(o),
                    _ => return Err(format!("vote option without `option`: {item}")),
                };
                let weight = item["weight"]
                    .as_str()
                    .ok_or_else(|| format!("vote option without `weight`: {item}"))?
                    .to_owned();
                Ok(WeightedOption { option, weight })
            })
            .collect();
    }
    if s.contains("option:") {
        return s
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let rest = line
                    .trim()
                    .strip_prefix("option:")
                    .ok_or_else(|| format!("vote option line `{line}`"))?;
                let (option, weight) = match rest.split_once("weight:") {
                    Some((o, w)) => (o.trim(), w.trim().trim_matches('"')),
                    None => (rest.trim(), "1"),
                };
                Ok(WeightedOption {
                    option: normalise_option(option),
                    weight: weight.to_owned(),
                })
            })
            .collect();
    }
    if s.is_empty() {
        return Err("empty vote option".into());
    }
    Ok(vec![WeightedOption {
        option: normalise_option(s),
        weight: "1".into(),
    }])
}

impl CosmosDecoder {
    /// A decoder for `chain` recording bank movements of `denoms`; `escrow` is the relay's
    /// account that receives remittances.
    pub fn new(
        chain: ChainId,
        escrow: Option<String>,
        denoms: impl IntoIterator<Item = String>,
    ) -> CosmosDecoder {
        CosmosDecoder {
            chain,
            escrow,
            denoms: denoms.into_iter().collect(),
        }
    }

    /// The chain decoded.
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    fn account(&self, address: &str) -> AccountId {
        AccountId::new(&self.chain, address)
    }

    /// Every normalised event of a block, in block order.
    pub fn decode_block(&self, block: &BlockEvents) -> Vec<ChainEvent> {
        let mut out = Vec::new();
        let mut position = 0usize;
        for (origin, events) in &block.groups {
            let ctx = TxContext::of(events);
            for event in events {
                self.decode_event(block, origin, &ctx, position, event, &mut out);
                position += 1;
            }
        }
        out
    }

    fn id(&self, block: &BlockEvents, origin: &Origin, index: u32) -> EventId {
        EventId {
            chain: self.chain.clone(),
            block_number: block.height,
            block_hash: block.hash.clone(),
            tx: origin.tx_label().to_owned(),
            index,
        }
    }

    fn decode_event(
        &self,
        block: &BlockEvents,
        origin: &Origin,
        ctx: &TxContext,
        position: usize,
        event: &Event,
        out: &mut Vec<ChainEvent>,
    ) {
        let undecodable = |reason: String, out: &mut Vec<ChainEvent>| {
            warn!(chain = %self.chain, height = block.height, kind = %event.kind, %reason, "undecodable Cosmos event stored");
            let data = serde_json::to_string(
                &event
                    .attributes
                    .iter()
                    .map(|a| {
                        (
                            String::from_utf8_lossy(a.key_bytes()).into_owned(),
                            String::from_utf8_lossy(a.value_bytes()).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default();
            if let Some(index) = event_index(position, 0, false) {
                out.push(ChainEvent {
                    id: self.id(block, origin, index),
                    contract: event.kind.clone(),
                    payload: EventPayload::Undecodable {
                        reason,
                        topics: vec![event.kind.clone()],
                        data,
                    },
                });
            }
        };
        if !is_watched(&event.kind) {
            return;
        }
        let attrs = match Attrs::read(event) {
            Ok(a) => a,
            Err(reason) => return undecodable(reason, out),
        };
        let result = match attrs.kind {
            "transfer" | "coin_spent" | "coin_received" | "coinbase" | "burn" => {
                self.bank(block, origin, position, &attrs, out)
            }
            _ => self
                .other(origin, ctx, &attrs)
                .map(|p| p.into_iter().map(|payload| (0, payload)).collect()),
        };
        match result {
            Ok(payloads) => {
                for (coin, payload) in payloads {
                    match event_index(position, coin, false) {
                        Some(index) => out.push(ChainEvent {
                            id: self.id(block, origin, index),
                            contract: attrs.kind.to_owned(),
                            payload,
                        }),
                        None => return undecodable("event position overflows".into(), out),
                    }
                }
            }
            Err(reason) => undecodable(reason, out),
        }
    }

    /// Bank events: one normalised event per coin of a watched denomination; a transfer to the
    /// escrow in a successful transaction with a Meridian memo also yields a remittance request.
    fn bank(
        &self,
        block: &BlockEvents,
        origin: &Origin,
        position: usize,
        a: &Attrs<'_>,
        out: &mut Vec<ChainEvent>,
    ) -> Result<Vec<(usize, EventPayload)>, String> {
        // An empty amount (a zero mint in begin-block) moves nothing.
        let amount = a
            .map
            .get("amount")
            .ok_or_else(|| format!("`{}` event without `amount`", a.kind))?;
        let coins = parse_coins(amount)?;
        if coins.len() > COINS_PER_EVENT_MAX {
            return Err(format!("{} coins in one event", coins.len()));
        }
        let mut payloads = Vec::new();
        for (coin, (amount, denom)) in coins.into_iter().enumerate() {
            let remittance = a.kind == "transfer"
                && self.escrow.is_some()
                && a.get("recipient") == self.escrow.as_deref();
            let payout = a.kind == "transfer"
                && self.escrow.is_some()
                && a.get("sender") == self.escrow.as_deref();
            if !self.denoms.contains(&denom) && !remittance && !payout {
                continue;
            }
            let asset = AssetId::cosmos_denom(&self.chain, &denom);
            if payout {
                if let Some(event) = self.payout(origin, a, &asset, amount)? {
                    let index = event_index(position, coin, true)
                        .ok_or_else(|| "event position overflows".to_owned())?;
                    out.push(ChainEvent {
                        id: self.id(block, origin, index),
                        contract: "bank".into(),
                        payload: event,
                    });
                }
            }
            if remittance {
                if let Some(request) = self.remittance(block, origin, a, &asset, amount)? {
                    let index = event_index(position, coin, true)
                        .ok_or_else(|| "event position overflows".to_owned())?;
                    out.push(ChainEvent {
                        id: self.id(block, origin, index),
                        contract: "bank".into(),
                        payload: request,
                    });
                }
            }
            let payload = match a.kind {
                "transfer" => EventPayload::TokenTransferred {
                    asset: asset.clone(),
                    from: self.account(a.need("sender")?),
                    to: self.account(a.need("recipient")?),
                    amount,
                },
                "coin_spent" => EventPayload::BalanceDebited {
                    asset,
                    account: self.account(a.need("spender")?),
                    amount,
                },
                "coin_received" => EventPayload::BalanceCredited {
                    asset,
                    account: self.account(a.need("receiver")?),
                    amount,
                },
                "coinbase" => EventPayload::TokenMinted {
                    asset,
                    to: self.account(a.need("minter")?),
                    amount,
                },
                _ => EventPayload::TokenBurned {
                    asset,
                    from: self.account(a.need("burner")?),
                    amount,
                },
            };
            payloads.push((coin, payload));
        }
        Ok(payloads)
    }

    /// The remittance request of a transfer to the escrow, if its transaction succeeded and
    /// carries a Meridian memo. A memo that is Meridian's but malformed still yields a request,
    /// with the memo's fault in place of the destination, so the router refuses it with that
    /// reason and the funds go back instead of sitting in escrow unexplained.
    fn remittance(
        &self,
        block: &BlockEvents,
        origin: &Origin,
        a: &Attrs<'_>,
        asset: &AssetId,
        amount: u128,
    ) -> Result<Option<EventPayload>, String> {
        let Origin::Tx {
            hash,
            memo: Some(memo),
            code: 0,
        } = origin
        else {
            return Ok(None);
        };
        if !memo
            .trim_start()
            .starts_with(meridian_types::memo::MEMO_TAG)
        {
            return Ok(None);
        }
        let sender = self.account(a.need("sender")?);
        let (dest_chain, recipient, dest_asset, deadline) = match memo.parse::<RemittanceMemo>() {
            Ok(m) => (
                m.dest_asset.chain().to_string(),
                m.recipient.clone(),
                m.dest_asset.to_string(),
                m.deadline_after(block.time),
            ),
            Err(e) => {
                warn!(chain = %self.chain, tx = %hash, error = %e, "remittance with a malformed memo; it will be refused and refunded");
                (
                    String::new(),
                    String::new(),
                    format!("invalid memo: {e}"),
                    block.time,
                )
            }
        };
        Ok(Some(EventPayload::RemittanceRequested {
            nonce: hash.clone(),
            sender,
            asset: asset.clone(),
            amount,
            dest_chain,
            recipient,
            dest_asset,
            deadline,
        }))
    }

    /// The relay's own payout (a bank send from the escrow with a payout marker memo) as the
    /// `Released` or `Refunded` event an EVM escrow would emit.
    fn payout(
        &self,
        origin: &Origin,
        a: &Attrs<'_>,
        asset: &AssetId,
        amount: u128,
    ) -> Result<Option<EventPayload>, String> {
        let Origin::Tx {
            hash,
            memo: Some(memo),
            code: 0,
        } = origin
        else {
            return Ok(None);
        };
        let to = self.account(a.need("recipient")?);
        Ok(match PayoutMarker::parse(memo) {
            Some(PayoutMarker::Release(transfer_id)) => Some(EventPayload::Released {
                transfer_id,
                asset: asset.clone(),
                recipient: to,
                amount,
            }),
            Some(PayoutMarker::Refund(transfer_id)) => Some(EventPayload::Refunded {
                transfer_id,
                nonce: hash.clone(),
                sender: to,
                asset: asset.clone(),
                amount,
            }),
            None => None,
        })
    }

    /// Governance and IBC events.
    fn other(
        &self,
        origin: &Origin,
        ctx: &TxContext,
        a: &Attrs<'_>,
    ) -> Result<Option<EventPayload>, String> {
        let signer = || match origin {
            Origin::Tx { .. } => ctx.sender.as_deref().map(|s| self.account(s)),
            _ => None,
        };
        Ok(Some(match a.kind {
            "submit_proposal" => {
                // SDKs emit the id and the type (or the voting start) as separate events of this
                // type; the one carrying the id speaks for the proposal.
                let Some(id) = a.get("proposal_id") else {
                    return Ok(None);
                };
                EventPayload::ProposalSubmitted {
                    proposal_id: id.to_owned(),
                    proposer: a
                        .get("proposal_proposer")
                        .or(a.get("proposer"))
                        .map(|p| self.account(p))
                        .or_else(signer),
                    proposal_type: a
                        .get("proposal_type")
                        .map(Into::into)
                        .or_else(|| ctx.proposal_type.clone()),
                    messages: ctx.proposal_messages.clone(),
                    values: Vec::new(),
                    description: None,
                    vote_start: None,
                    vote_end: None,
                }
            }
            "proposal_deposit" => EventPayload::ProposalDeposited {
                proposal_id: a.need("proposal_id")?.to_owned(),
                depositor: a.get("depositor").map(|d| self.account(d)).or_else(signer),
                amount: a.need("amount")?.to_owned(),
            },
            "proposal_vote" => EventPayload::VoteCast {
                proposal_id: a.need("proposal_id")?.to_owned(),
                voter: a.get("voter").map(|v| self.account(v)).or_else(signer),
                options: parse_vote_options(a.need("option")?)?,
                power: None,
                reason: None,
            },
            "active_proposal" | "inactive_proposal" => EventPayload::ProposalEnded {
                proposal_id: a.need("proposal_id")?.to_owned(),
                result: a.need("proposal_result")?.to_owned(),
            },
            "fungible_token_packet" => {
                // The acknowledgement side emits a second event with only `success`; the one
                // with the packet data speaks for the transfer.
                let Some(denom) = a.get("denom") else {
                    return Ok(None);
                };
                let amount = a
                    .need("amount")?
                    .parse::<u128>()
                    .map_err(|_| format!("IBC amount `{}` is not an integer", a.map["amount"]))?;
                let success = match a.get("success") {
                    Some("true" | "\u{1}") => Some(true),
                    Some("false") => Some(false),
                    Some(_) => None,
                    None if a.get("error").is_some() => Some(false),
                    // The acknowledgement side: `result:"\001"` is success, `error:…` failure.
                    None => match a.get("acknowledgement") {
                        Some(ack) if ack.trim_start().starts_with("result") => Some(true),
                        Some(ack) if ack.trim_start().starts_with("error") => Some(false),
                        _ => None,
                    },
                };
                EventPayload::IbcTransfer {
                    sender: a.need("sender")?.to_owned(),
                    receiver: a.need("receiver")?.to_owned(),
                    denom: denom.to_owned(),
                    amount,
                    success,
                    memo: a.get("memo").map(Into::into),
                }
            }
            other => return Err(format!("no decoder for `{other}`")),
        }))
    }
}

/// Event types Meridian normalises; everything else in a block is skipped.
fn is_watched(kind: &str) -> bool {
    matches!(
        kind,
        "transfer"
            | "coin_spent"
            | "coin_received"
            | "coinbase"
            | "burn"
            | "fungible_token_packet"
            | "submit_proposal"
            | "proposal_deposit"
            | "proposal_vote"
            | "active_proposal"
            | "inactive_proposal"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_parse_and_refuse_garbage() {
        assert_eq!(
            parse_coins("10basecro,5ibc/27A").unwrap(),
            vec![(10, "basecro".into()), (5, "ibc/27A".into())]
        );
        assert!(parse_coins("basecro").is_err());
        assert!(parse_coins("10").is_err());
        assert!(parse_coins("999999999999999999999999999999999999999999stake").is_err());
    }

    #[test]
    fn vote_options_in_every_sdk_spelling() {
        let one = |o: &str, w: &str| WeightedOption {
            option: o.into(),
            weight: w.into(),
        };
        assert_eq!(
            parse_vote_options("VOTE_OPTION_YES").unwrap(),
            vec![one("yes", "1")]
        );
        assert_eq!(
            parse_vote_options("option:VOTE_OPTION_NO weight:\"1.000000000000000000\"").unwrap(),
            vec![one("no", "1.000000000000000000")]
        );
        assert_eq!(
            parse_vote_options(
                "option:VOTE_OPTION_YES weight:\"0.6\"\noption:VOTE_OPTION_NO_WITH_VETO weight:\"0.4\""
            )
            .unwrap(),
            vec![one("yes", "0.6"), one("no_with_veto", "0.4")]
        );
        assert_eq!(
            parse_vote_options(r#"[{"option":1,"weight":"0.7"},{"option":2,"weight":"0.3"}]"#)
                .unwrap(),
            vec![one("yes", "0.7"), one("abstain", "0.3")]
        );
        assert!(parse_vote_options("").is_err());
        assert!(parse_vote_options("[{\"weight\":\"1\"}]").is_err());
    }

    #[test]
    fn indexes_are_distinct_per_coin_and_derivation() {
        let a = event_index(3, 0, false).unwrap();
        let b = event_index(3, 0, true).unwrap();
        let c = event_index(3, 1, false).unwrap();
        let d = event_index(4, 0, false).unwrap();
        assert!(a < b && b < c && c < d);
        assert!(event_index(usize::MAX / 1024, 0, false).is_none());
    }
}
