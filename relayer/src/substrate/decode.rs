//! Substrate blocks → normalised [`ChainEvent`]s, decoded through the runtime's own metadata:
//! no pallet or event index is written here, only pallet, event and field *names*.
//!
//! A block is read as its extrinsics (for signers, memos and the block time) and its
//! `System.Events`, each event tagged with the extrinsic that emitted it (its phase). Memos do not
//! appear in events — `System.remark_with_event` only emits the remark's hash — so the memo text
//! comes from the extrinsic's call, found inside `Utility.batch`/`batch_all`.

use std::collections::HashSet;

use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed};
use meridian_types::{
    AccountId, AssetId, ChainEvent, ChainId, EventId, EventPayload, PayoutMarker, RemittanceMemo,
    WeightedOption,
};
use parity_scale_codec::{Compact, Decode};
use scale_value::{At, Composite, Primitive, Value, ValueDef};
use sp_core::crypto::{AccountId32, Ss58AddressFormat, Ss58Codec};
use substrate_api_client::ac_node_api::{Metadata, Phase};
use tracing::warn;

/// Decodes runtime metadata bytes (`state_getMetadata`).
///
/// Runtimes from before the `RuntimeCall`/`RuntimeEvent` rename (e.g. statemine 900) name their
/// outer enums `Call`/`Event`; substrate-api-client's v14→v15 conversion looks for the new names,
/// so they are renamed here in the type registry first (nothing else changes).
pub fn metadata_from_bytes(raw: &[u8]) -> Result<Metadata, String> {
    let mut prefixed = RuntimeMetadataPrefixed::decode(&mut &raw[..])
        .map_err(|e| format!("metadata does not decode: {e}"))?;
    if let RuntimeMetadata::V14(m) = &mut prefixed.1 {
        let named = |m: &frame_metadata::v14::RuntimeMetadataV14, n: &str| {
            m.types
                .types
                .iter()
                .any(|t| t.ty.path.ident().as_deref() == Some(n))
        };
        if !named(m, "RuntimeCall") {
            let call_ty = m
                .types
                .resolve(m.extrinsic.ty.id)
                .and_then(|t| t.type_params.iter().find(|p| p.name == "Call"))
                .and_then(|p| p.ty)
                .map(|t| t.id);
            let runtime_crate = call_ty
                .and_then(|id| m.types.resolve(id))
                .and_then(|t| t.path.segments.first().cloned());
            for t in m.types.types.iter_mut() {
                let s = &mut t.ty.path.segments;
                if s.len() == 2 && Some(&s[0]) == runtime_crate.as_ref() {
                    if s[1] == "Call" {
                        s[1] = "RuntimeCall".into();
                    } else if s[1] == "Event" {
                        s[1] = "RuntimeEvent".into();
                    }
                }
            }
        }
    }
    Metadata::try_from(prefixed).map_err(|e| format!("metadata not usable: {e:?}"))
}

/// The SS58 prefix of the runtime (`System.SS58Prefix`), 42 (generic) when it has none.
pub fn ss58_prefix(md: &Metadata) -> u16 {
    md.pallet_by_name("System")
        .and_then(|p| p.constant_by_name("SS58Prefix"))
        .and_then(|c| u16::decode(&mut &c.value[..]).ok())
        .unwrap_or(42)
}

/// The signed extensions of the runtime, in order.
pub fn signed_extensions(md: &Metadata) -> Vec<String> {
    md.extrinsic()
        .signed_extensions
        .iter()
        .map(|e| e.identifier.clone())
        .collect()
}

/// Bytes of an `AccountId32`, `H256` or `Vec<u8>` value (nested composites of integers).
pub fn bytes_of<C>(v: &Value<C>) -> Option<Vec<u8>> {
    fn walk<C>(v: &Value<C>, out: &mut Vec<u8>) -> Option<()> {
        match &v.value {
            ValueDef::Primitive(Primitive::U128(n)) => out.push(u8::try_from(*n).ok()?),
            ValueDef::Composite(c) => {
                for x in c.values() {
                    walk(x, out)?;
                }
            }
            _ => return None,
        }
        Some(())
    }
    let mut out = Vec::new();
    walk(v, &mut out)?;
    Some(out)
}

fn account32<C>(v: &Value<C>) -> Option<[u8; 32]> {
    bytes_of(v)?.try_into().ok()
}

/// What one extrinsic of a block tells the decoder.
#[derive(Debug, Clone, Default)]
pub struct ExtrinsicFacts {
    /// The signer's account, for signed extrinsics.
    pub signer: Option<[u8; 32]>,
    /// Remarks found in the call (also inside batches), as bytes.
    pub remarks: Vec<Vec<u8>>,
    /// `Timestamp.set`'s value in milliseconds, for the timestamp inherent.
    pub timestamp_ms: Option<u64>,
    /// Why the extrinsic could not be decoded, if it could not.
    pub error: Option<String>,
}

/// Decodes one extrinsic as it comes in a block (SCALE `Vec<u8>`: length prefix, then body).
pub fn decode_extrinsic(md: &Metadata, encoded: &[u8]) -> ExtrinsicFacts {
    match try_decode_extrinsic(md, encoded) {
        Ok(facts) => facts,
        Err(error) => ExtrinsicFacts {
            error: Some(error),
            ..ExtrinsicFacts::default()
        },
    }
}

fn try_decode_extrinsic(md: &Metadata, encoded: &[u8]) -> Result<ExtrinsicFacts, String> {
    let mut cur = encoded;
    let len = Compact::<u32>::decode(&mut cur).map_err(|e| format!("length: {e}"))?;
    if len.0 as usize != cur.len() {
        return Err(format!("length prefix {} but {} bytes", len.0, cur.len()));
    }
    let (&version, rest) = cur.split_first().ok_or("empty extrinsic")?;
    cur = rest;
    if version & 0x3f != 4 {
        return Err(format!("unsupported extrinsic version {version:#x}"));
    }
    let x = md.extrinsic();
    let types = md.types();
    let decode = |cur: &mut &[u8], ty: u32, what: &str| {
        super::length_check::check_shape(cur, ty, types).map_err(|e| format!("{what}: {e}"))?;
        scale_value::scale::decode_as_type(cur, ty, types).map_err(|e| format!("{what}: {e}"))
    };
    let mut facts = ExtrinsicFacts::default();
    if version & 0x80 != 0 {
        let address = decode(&mut cur, x.address_ty.id, "address")?;
        // MultiAddress::Id(AccountId32), or a bare AccountId32 on older runtimes.
        facts.signer = address
            .at(0)
            .and_then(account32)
            .or_else(|| account32(&address));
        decode(&mut cur, x.signature_ty.id, "signature")?;
        decode(&mut cur, x.extra_ty.id, "signed extensions")?;
    }
    let call = decode(&mut cur, x.call_ty.id, "call")?;
    if !cur.is_empty() {
        return Err(format!("{} bytes left after the call", cur.len()));
    }
    walk_call(&call, &mut facts);
    Ok(facts)
}

/// Collects remarks (also inside batches) and the timestamp from a decoded call.
fn walk_call(call: &Value<u32>, facts: &mut ExtrinsicFacts) {
    let ValueDef::Variant(pallet) = &call.value else {
        return;
    };
    let Some(Value {
        value: ValueDef::Variant(inner),
        ..
    }) = pallet.values.values().next()
    else {
        return;
    };
    match (pallet.name.as_str(), inner.name.as_str()) {
        ("System", "remark_with_event" | "remark") => {
            if let Some(b) = inner.values.at("remark").and_then(bytes_of) {
                facts.remarks.push(b);
            }
        }
        ("Utility", "batch" | "batch_all" | "force_batch") => {
            if let Some(Value {
                value: ValueDef::Composite(calls),
                ..
            }) = inner.values.at("calls")
            {
                for c in calls.values() {
                    walk_call(c, facts);
                }
            }
        }
        ("Timestamp", "set") => {
            facts.timestamp_ms = inner
                .values
                .at("now")
                .and_then(|v| v.as_u128())
                .and_then(|v| u64::try_from(v).ok());
        }
        _ => {}
    }
}

/// One event of a block, decoded.
#[derive(Debug, Clone)]
pub struct DecodedEvent {
    /// Position in the block's event list.
    pub index: u32,
    /// The extrinsic that emitted it, if any.
    pub extrinsic: Option<u32>,
    /// Pallet name.
    pub pallet: String,
    /// Event name.
    pub variant: String,
    /// Fields.
    pub fields: Composite<u32>,
}

/// A block's extrinsics and events, ready to normalise.
#[derive(Debug, Clone)]
pub struct BlockFacts {
    /// Height.
    pub height: u64,
    /// Block hash (0x-hex).
    pub hash: String,
    /// Extrinsics in order.
    pub extrinsics: Vec<ExtrinsicFacts>,
    /// Events in order; decoding stops at the first event the metadata cannot decode.
    pub events: Vec<DecodedEvent>,
    /// Why the rest of the events could not be decoded, if they could not (index, reason).
    pub events_error: Option<(u32, String)>,
}

impl BlockFacts {
    /// Block time in unix seconds, from the timestamp inherent (0 if the block has none).
    pub fn time(&self) -> u64 {
        self.extrinsics
            .iter()
            .find_map(|x| x.timestamp_ms)
            .map_or(0, |ms| ms / 1000)
    }
}

/// Decodes the SCALE `System.Events` value of a block.
pub fn decode_events(md: &Metadata, bytes: Vec<u8>) -> (Vec<DecodedEvent>, Option<(u32, String)>) {
    let events =
        substrate_api_client::ac_node_api::Events::new(md.clone(), sp_core::H256::zero(), bytes);
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => return (out, Some((i as u32, format!("{e:?}")))),
        };
        let fields = match ev.field_values() {
            Ok(f) => f,
            Err(e) => return (out, Some((i as u32, format!("{e:?}")))),
        };
        out.push(DecodedEvent {
            index: ev.index(),
            extrinsic: match ev.phase() {
                Phase::ApplyExtrinsic(x) => Some(x),
                _ => None,
            },
            pallet: ev.pallet_name().to_owned(),
            variant: ev.variant_name().to_owned(),
            fields,
        });
    }
    (out, None)
}

/// Normalises the Substrate events Meridian cares about on one chain.
#[derive(Debug, Clone)]
pub struct SubstrateDecoder {
    chain: ChainId,
    ss58: u16,
    escrow: Option<[u8; 32]>,
    /// Assets-pallet ids whose movements are recorded.
    assets: HashSet<u128>,
    /// Whether the native balance (Balances pallet) is recorded.
    native: bool,
}

impl SubstrateDecoder {
    /// A decoder for `chain`, writing accounts in SS58 with `ss58` prefix; `escrow` receives
    /// remittances; `assets` decides which movements are recorded.
    pub fn new(
        chain: ChainId,
        ss58: u16,
        escrow: Option<[u8; 32]>,
        assets: &[AssetId],
    ) -> SubstrateDecoder {
        SubstrateDecoder {
            native: assets
                .iter()
                .any(|a| *a == AssetId::substrate_native(&chain)),
            assets: assets
                .iter()
                .filter_map(|a| a.substrate_asset_of())
                .collect(),
            chain,
            ss58,
            escrow,
        }
    }

    /// The SS58 form of an account on this chain.
    pub fn ss58(&self, account: &[u8; 32]) -> String {
        AccountId32::new(*account).to_ss58check_with_version(Ss58AddressFormat::custom(self.ss58))
    }

    fn account(&self, account: &[u8; 32]) -> AccountId {
        AccountId::new(&self.chain, &self.ss58(account))
    }

    fn id(&self, block: &BlockFacts, event: Option<&DecodedEvent>, index: u32) -> EventId {
        EventId {
            chain: self.chain.clone(),
            block_number: block.height,
            block_hash: block.hash.clone(),
            tx: match event.and_then(|e| e.extrinsic) {
                Some(x) => format!("{}-{x}", block.height),
                None => "block".into(),
            },
            index,
        }
    }

    /// Every normalised event of a block, in block order.
    pub fn decode_block(&self, block: &BlockFacts) -> Vec<ChainEvent> {
        let mut out = Vec::new();
        for ev in &block.events {
            let Some(index) = ev.index.checked_mul(2) else {
                continue;
            };
            match self.payload(block, ev) {
                Ok(Some(payload)) => {
                    let escrow = self.escrow.map(|e| self.account(&e));
                    let derived = match &payload {
                        EventPayload::TokenTransferred { to, .. }
                            if Some(to) == escrow.as_ref() =>
                        {
                            self.remittance(block, ev, &payload)
                        }
                        EventPayload::TokenTransferred { from, .. }
                            if Some(from) == escrow.as_ref() =>
                        {
                            self.payout(block, ev, &payload)
                        }
                        _ => None,
                    };
                    if let Some(derived) = derived {
                        out.push(ChainEvent {
                            id: self.id(block, Some(ev), index + 1),
                            contract: "remark".into(),
                            payload: derived,
                        });
                    }
                    out.push(ChainEvent {
                        id: self.id(block, Some(ev), index),
                        contract: ev.pallet.clone(),
                        payload,
                    });
                }
                Ok(None) => {}
                Err(reason) => {
                    warn!(chain = %self.chain, height = block.height, pallet = %ev.pallet, event = %ev.variant, %reason, "undecodable Substrate event stored");
                    out.push(ChainEvent {
                        id: self.id(block, Some(ev), index),
                        contract: ev.pallet.clone(),
                        payload: EventPayload::Undecodable {
                            reason,
                            topics: vec![format!("{}.{}", ev.pallet, ev.variant)],
                            data: ev.fields.to_string(),
                        },
                    });
                }
            }
        }
        if let Some((at, reason)) = &block.events_error {
            warn!(chain = %self.chain, height = block.height, at, %reason, "block events undecodable from here on");
            out.push(ChainEvent {
                id: self.id(block, None, at.saturating_mul(2)),
                contract: "System".into(),
                payload: EventPayload::Undecodable {
                    reason: format!("event {at} and later: {reason}"),
                    topics: vec!["System.Events".into()],
                    data: String::new(),
                },
            });
        }
        out.sort_by_key(|e| e.id.index);
        out
    }

    fn field_account(&self, f: &Composite<u32>, name: &str) -> Result<AccountId, String> {
        f.at(name)
            .and_then(account32)
            .map(|a| self.account(&a))
            .ok_or_else(|| format!("no account field `{name}`"))
    }

    fn field_u128(f: &Composite<u32>, names: &[&str]) -> Result<u128, String> {
        names
            .iter()
            .find_map(|n| f.at(*n).and_then(|v| v.as_u128()))
            .ok_or_else(|| format!("no integer field {}", names.join("/")))
    }

    fn involves_escrow(&self, f: &Composite<u32>) -> bool {
        self.escrow.is_some()
            && (f.at("to").and_then(account32) == self.escrow
                || f.at("from").and_then(account32) == self.escrow)
    }

    fn payload(
        &self,
        block: &BlockFacts,
        ev: &DecodedEvent,
    ) -> Result<Option<EventPayload>, String> {
        let f = &ev.fields;
        Ok(Some(match (ev.pallet.as_str(), ev.variant.as_str()) {
            ("Balances", "Transfer") => {
                if !self.native && !self.involves_escrow(f) {
                    return Ok(None);
                }
                EventPayload::TokenTransferred {
                    asset: AssetId::substrate_native(&self.chain),
                    from: self.field_account(f, "from")?,
                    to: self.field_account(f, "to")?,
                    amount: Self::field_u128(f, &["amount"])?,
                }
            }
            ("Assets", kind @ ("Issued" | "Burned" | "Transferred")) => {
                let id = Self::field_u128(f, &["asset_id"])?;
                let to_escrow = kind == "Transferred" && self.involves_escrow(f);
                if !self.assets.contains(&id) && !to_escrow {
                    return Ok(None);
                }
                let asset = AssetId::substrate_asset(&self.chain, id);
                match kind {
                    "Issued" => EventPayload::TokenMinted {
                        asset,
                        to: self.field_account(f, "owner")?,
                        amount: Self::field_u128(f, &["amount", "total_supply"])?,
                    },
                    "Burned" => EventPayload::TokenBurned {
                        asset,
                        from: self.field_account(f, "owner")?,
                        amount: Self::field_u128(f, &["balance", "amount"])?,
                    },
                    _ => EventPayload::TokenTransferred {
                        asset,
                        from: self.field_account(f, "from")?,
                        to: self.field_account(f, "to")?,
                        amount: Self::field_u128(f, &["amount"])?,
                    },
                }
            }
            ("Referenda", "Submitted") => EventPayload::ProposalSubmitted {
                proposal_id: Self::field_u128(f, &["index"])?.to_string(),
                proposer: ev
                    .extrinsic
                    .and_then(|x| block.extrinsics.get(x as usize))
                    .and_then(|x| x.signer)
                    .map(|s| self.account(&s)),
                proposal_type: f
                    .at("track")
                    .and_then(|t| t.as_u128())
                    .map(|t| format!("track {t}")),
                messages: Vec::new(),
                values: Vec::new(),
                description: None,
                vote_start: None,
                vote_end: None,
            },
            (
                "Referenda",
                result @ ("Confirmed" | "Rejected" | "TimedOut" | "Cancelled" | "Killed"),
            ) => EventPayload::ProposalEnded {
                proposal_id: Self::field_u128(f, &["index"])?.to_string(),
                result: result.to_ascii_lowercase(),
            },
            ("ConvictionVoting", "Voted") => {
                let vote = f.at("vote").ok_or("no field `vote`")?;
                let (options, power) = conviction_vote(vote)?;
                EventPayload::VoteCast {
                    // Runtimes before `poll_index` was added name no referendum here.
                    proposal_id: f
                        .at("poll_index")
                        .and_then(|v| v.as_u128())
                        .map_or_else(String::new, |v| v.to_string()),
                    voter: Some(self.field_account(f, "who")?),
                    options,
                    power: Some(power.to_string()),
                    reason: None,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The relay's own payout (a transfer from the escrow whose extrinsic carries a payout
    /// marker remark) as the `Released` or `Refunded` event an EVM escrow would emit.
    fn payout(
        &self,
        block: &BlockFacts,
        ev: &DecodedEvent,
        transfer: &EventPayload,
    ) -> Option<EventPayload> {
        let EventPayload::TokenTransferred {
            asset, to, amount, ..
        } = transfer
        else {
            return None;
        };
        let x = ev.extrinsic?;
        let marker = block
            .extrinsics
            .get(x as usize)?
            .remarks
            .iter()
            .filter_map(|r| std::str::from_utf8(r).ok())
            .find_map(PayoutMarker::parse)?;
        Some(match marker {
            PayoutMarker::Release(transfer_id) => EventPayload::Released {
                transfer_id,
                asset: asset.clone(),
                recipient: to.clone(),
                amount: *amount,
            },
            PayoutMarker::Refund(transfer_id) => EventPayload::Refunded {
                transfer_id,
                nonce: format!("{}-{x}", block.height),
                sender: to.clone(),
                asset: asset.clone(),
                amount: *amount,
            },
        })
    }

    /// The remittance request of a transfer to the escrow whose extrinsic carries a Meridian
    /// memo as a remark (see the README's memo format).
    fn remittance(
        &self,
        block: &BlockFacts,
        ev: &DecodedEvent,
        transfer: &EventPayload,
    ) -> Option<EventPayload> {
        let EventPayload::TokenTransferred {
            asset,
            from,
            amount,
            ..
        } = transfer
        else {
            return None;
        };
        let x = ev.extrinsic?;
        let facts = block.extrinsics.get(x as usize)?;
        let memo = facts
            .remarks
            .iter()
            .filter_map(|r| std::str::from_utf8(r).ok())
            .find(|r| r.trim_start().starts_with(meridian_types::memo::MEMO_TAG))?;
        let (dest_chain, recipient, dest_asset, deadline) = match memo.parse::<RemittanceMemo>() {
            Ok(m) => (
                m.dest_asset.chain().to_string(),
                m.recipient.clone(),
                m.dest_asset.to_string(),
                m.deadline_after(block.time()),
            ),
            Err(e) => {
                warn!(chain = %self.chain, height = block.height, extrinsic = x, error = %e, "remittance with a malformed memo; it will be refused and refunded");
                (
                    String::new(),
                    String::new(),
                    format!("invalid memo: {e}"),
                    block.time(),
                )
            }
        };
        Some(EventPayload::RemittanceRequested {
            nonce: format!("{}-{x}", block.height),
            sender: from.clone(),
            asset: asset.clone(),
            amount: *amount,
            dest_chain,
            recipient,
            dest_asset,
            deadline,
        })
    }
}

/// Options and voting power of a `ConvictionVoting` `AccountVote`: `Standard { vote, balance }`
/// (the vote byte's top bit is aye, the rest the conviction), `Split { aye, nay }` or
/// `SplitAbstain { aye, nay, abstain }`.
pub fn conviction_vote(v: &Value<u32>) -> Result<(Vec<WeightedOption>, u128), String> {
    let ValueDef::Variant(var) = &v.value else {
        return Err("vote is not an AccountVote".into());
    };
    let num = |name: &str| -> Result<u128, String> {
        var.values
            .at(name)
            .and_then(|x| x.as_u128())
            .ok_or_else(|| format!("vote without `{name}`"))
    };
    let share = |part: u128, total: u128| -> String {
        // Six decimals are plenty for a display weight; the power is exact.
        match part.saturating_mul(1_000_000).checked_div(total) {
            Some(millionths) => format!("{}.{:06}", millionths / 1_000_000, millionths % 1_000_000),
            None => "0".into(),
        }
    };
    match var.name.as_str() {
        "Standard" => {
            let byte = var
                .values
                .at("vote")
                .and_then(|x| {
                    bytes_of(x)
                        .and_then(|b| b.first().copied())
                        .or(x.as_u128().map(|n| n as u8))
                })
                .ok_or("vote without `vote`")?;
            let option = if byte & 0x80 != 0 { "aye" } else { "nay" };
            Ok((
                vec![WeightedOption {
                    option: option.into(),
                    weight: "1".into(),
                }],
                num("balance")?,
            ))
        }
        "Split" | "SplitAbstain" => {
            let aye = num("aye")?;
            let nay = num("nay")?;
            let abstain = if var.name == "SplitAbstain" {
                num("abstain")?
            } else {
                0
            };
            let total = aye + nay + abstain;
            let mut options = vec![
                WeightedOption {
                    option: "aye".into(),
                    weight: share(aye, total),
                },
                WeightedOption {
                    option: "nay".into(),
                    weight: share(nay, total),
                },
            ];
            if var.name == "SplitAbstain" {
                options.push(WeightedOption {
                    option: "abstain".into(),
                    weight: share(abstain, total),
                });
            }
            Ok((options, total))
        }
        other => Err(format!("unknown vote kind `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(vote: u8, balance: u128) -> Value<u32> {
        Value::named_variant(
            "Standard",
            [
                (
                    "vote",
                    Value::unnamed_composite([Value::u128(vote as u128)]),
                ),
                ("balance", Value::u128(balance)),
            ],
        )
        .map_context(|_| 0u32)
    }

    fn account_value(b: u8) -> Value<u32> {
        Value::unnamed_composite((0..32).map(|_| Value::u128(b as u128))).map_context(|_| 0u32)
    }

    fn event(
        index: u32,
        xt: Option<u32>,
        pallet: &str,
        variant: &str,
        fields: Vec<(&str, Value<u32>)>,
    ) -> DecodedEvent {
        DecodedEvent {
            index,
            extrinsic: xt,
            pallet: pallet.into(),
            variant: variant.into(),
            fields: Composite::named(fields.into_iter().map(|(k, v)| (k.to_owned(), v))),
        }
    }

    fn chain() -> ChainId {
        "polkadot:45454545454545454545454545454545".parse().unwrap()
    }

    #[test]
    fn transfers_remittances_payouts_and_referenda_normalise() {
        let native = AssetId::substrate_native(&chain());
        let d = SubstrateDecoder::new(chain(), 2, Some([9; 32]), std::slice::from_ref(&native));
        let memo = b"meridian:v1 to=0x00000000000000000000000000000000000000b0 asset=eip155:1/erc20:0x1 deadline=9".to_vec();
        let block = BlockFacts {
            height: 12,
            hash: "0xab".into(),
            extrinsics: vec![
                ExtrinsicFacts {
                    timestamp_ms: Some(1_700_000_000_000),
                    ..Default::default()
                },
                ExtrinsicFacts {
                    signer: Some([1; 32]),
                    remarks: vec![memo],
                    ..Default::default()
                },
                ExtrinsicFacts {
                    signer: Some([9; 32]),
                    remarks: vec![b"meridian:payout tr:x".to_vec()],
                    ..Default::default()
                },
                ExtrinsicFacts {
                    signer: Some([3; 32]),
                    ..Default::default()
                },
            ],
            events: vec![
                event(
                    0,
                    Some(1),
                    "Balances",
                    "Transfer",
                    vec![
                        ("from", account_value(1)),
                        ("to", account_value(9)),
                        ("amount", Value::u128(500).map_context(|_| 0)),
                    ],
                ),
                event(
                    1,
                    Some(2),
                    "Balances",
                    "Transfer",
                    vec![
                        ("from", account_value(9)),
                        ("to", account_value(2)),
                        ("amount", Value::u128(40).map_context(|_| 0)),
                    ],
                ),
                event(
                    2,
                    Some(3),
                    "Referenda",
                    "Submitted",
                    vec![
                        ("index", Value::u128(7).map_context(|_| 0)),
                        ("track", Value::u128(2).map_context(|_| 0)),
                    ],
                ),
                event(
                    3,
                    None,
                    "Referenda",
                    "Confirmed",
                    vec![("index", Value::u128(7).map_context(|_| 0))],
                ),
                // Unwatched assets are skipped; a watched event without its fields is kept as undecodable.
                event(
                    4,
                    Some(3),
                    "Assets",
                    "Transferred",
                    vec![("asset_id", Value::u128(5).map_context(|_| 0))],
                ),
                event(
                    5,
                    Some(3),
                    "Balances",
                    "Transfer",
                    vec![("from", account_value(3))],
                ),
            ],
            events_error: None,
        };
        let out = d.decode_block(&block);
        let acct = |b: u8| AccountId::new(&chain(), &d.ss58(&[b; 32]));
        let payloads: Vec<&EventPayload> = out.iter().map(|e| &e.payload).collect();
        assert_eq!(
            payloads[0],
            &EventPayload::TokenTransferred {
                asset: native.clone(),
                from: acct(1),
                to: acct(9),
                amount: 500
            }
        );
        assert_eq!(
            payloads[1],
            &EventPayload::RemittanceRequested {
                nonce: "12-1".into(),
                sender: acct(1),
                asset: native.clone(),
                amount: 500,
                dest_chain: "eip155:1".into(),
                recipient: "0x00000000000000000000000000000000000000b0".into(),
                dest_asset: "eip155:1/erc20:0x1".into(),
                deadline: 9,
            }
        );
        assert_eq!(
            payloads[3],
            &EventPayload::Released {
                transfer_id: "tr:x".into(),
                asset: native.clone(),
                recipient: acct(2),
                amount: 40
            }
        );
        assert_eq!(
            payloads[4],
            &EventPayload::ProposalSubmitted {
                proposal_id: "7".into(),
                proposer: Some(acct(3)),
                proposal_type: Some("track 2".into()),
                messages: vec![],
                values: Vec::new(),
                description: None,
                vote_start: None,
                vote_end: None,
            }
        );
        assert_eq!(
            payloads[5],
            &EventPayload::ProposalEnded {
                proposal_id: "7".into(),
                result: "confirmed".into()
            }
        );
        assert!(
            matches!(payloads[6], EventPayload::Undecodable { reason, .. } if reason.contains("`to`")),
            "{payloads:#?}"
        );
        assert_eq!(out.len(), 7);
        assert_eq!(block.time(), 1_700_000_000);
        let ids: std::collections::HashSet<_> = out.iter().map(|e| e.id.uid()).collect();
        assert_eq!(ids.len(), out.len());
    }

    #[test]
    fn conviction_votes_normalise() {
        let (opts, power) = conviction_vote(&standard(0x81, 500)).unwrap();
        assert_eq!(opts[0].option, "aye");
        assert_eq!(power, 500);
        let (opts, _) = conviction_vote(&standard(0x01, 5)).unwrap();
        assert_eq!(opts[0].option, "nay");
        let split = Value::named_variant(
            "SplitAbstain",
            [
                ("aye", Value::u128(50)),
                ("nay", Value::u128(25)),
                ("abstain", Value::u128(25)),
            ],
        )
        .map_context(|_| 0u32);
        let (opts, power) = conviction_vote(&split).unwrap();
        assert_eq!(power, 100);
        let weights: Vec<&str> = opts.iter().map(|o| o.weight.as_str()).collect();
        assert_eq!(weights, vec!["0.500000", "0.250000", "0.250000"]);
        assert!(conviction_vote(&Value::u128(1).map_context(|_| 0u32)).is_err());
    }
}
