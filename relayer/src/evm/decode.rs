//! Turns EVM logs of watched contracts into normalised [`ChainEvent`]s.
//!
//! A log that matches a watched event signature but does not decode (wrong arity, an amount
//! beyond u128, a foreign contract reusing a topic) becomes an `Undecodable` event with the
//! reason, so it is stored and counted rather than silently dropped.

use std::collections::HashMap;

use ethers::abi::{Abi, Event, RawLog, Token};
use ethers::types::{Address, Log, H256, U256};
use meridian_types::config::{ContractConfig, ContractKind};
use meridian_types::{AccountId, AssetId, ChainEvent, ChainId, EventId, EventPayload};

use crate::contracts::{BRIDGE_ESCROW_ABI, CBDC_TOKEN_ABI, MERIDIAN_GOVERNOR_ABI};

/// Why a decoder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    /// An embedded ABI does not parse (a build problem).
    #[error("embedded ABI is invalid: {0}")]
    Abi(String),
    /// A configured contract address does not parse.
    #[error("invalid contract address `{0}`")]
    Address(String),
}

/// Decoder for one chain's watched contracts.
pub struct EvmDecoder {
    chain: ChainId,
    contracts: HashMap<Address, ContractKind>,
    transfer: Event,
    remittance: Event,
    released: Event,
    refunded: Event,
    proposal_created: Event,
    vote_cast: Event,
    vote_cast_with_params: Event,
    proposal_queued: Event,
    proposal_executed: Event,
    proposal_canceled: Event,
}

fn event(abi: &Abi, name: &str) -> Result<Event, DecoderError> {
    abi.event(name)
        .cloned()
        .map_err(|e| DecoderError::Abi(format!("{name}: {e}")))
}

fn hex_of<T: std::fmt::LowerHex>(v: T) -> String {
    format!("{v:#x}")
}

impl EvmDecoder {
    /// A decoder for `contracts` on `chain`.
    pub fn new(chain: ChainId, contracts: &[ContractConfig]) -> Result<EvmDecoder, DecoderError> {
        let token: Abi =
            serde_json::from_str(CBDC_TOKEN_ABI).map_err(|e| DecoderError::Abi(e.to_string()))?;
        let escrow: Abi = serde_json::from_str(BRIDGE_ESCROW_ABI)
            .map_err(|e| DecoderError::Abi(e.to_string()))?;
        let governor: Abi = serde_json::from_str(MERIDIAN_GOVERNOR_ABI)
            .map_err(|e| DecoderError::Abi(e.to_string()))?;
        let contracts = contracts
            .iter()
            .map(|c| {
                c.address
                    .parse::<Address>()
                    .map(|a| (a, c.kind))
                    .map_err(|_| DecoderError::Address(c.address.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(EvmDecoder {
            chain,
            contracts,
            transfer: event(&token, "Transfer")?,
            remittance: event(&escrow, "RemittanceRequested")?,
            released: event(&escrow, "Released")?,
            refunded: event(&escrow, "Refunded")?,
            proposal_created: event(&governor, "ProposalCreated")?,
            vote_cast: event(&governor, "VoteCast")?,
            vote_cast_with_params: event(&governor, "VoteCastWithParams")?,
            proposal_queued: event(&governor, "ProposalQueued")?,
            proposal_executed: event(&governor, "ProposalExecuted")?,
            proposal_canceled: event(&governor, "ProposalCanceled")?,
        })
    }

    /// Addresses to ask `eth_getLogs` for.
    pub fn addresses(&self) -> Vec<Address> {
        let mut a: Vec<Address> = self.contracts.keys().copied().collect();
        a.sort();
        a
    }

    /// Event signatures (topic0) to ask `eth_getLogs` for; other events (approvals, role
    /// changes) are not part of Meridian's domain and are not fetched.
    pub fn topics(&self) -> Vec<H256> {
        vec![
            self.transfer.signature(),
            self.remittance.signature(),
            self.released.signature(),
            self.refunded.signature(),
            self.proposal_created.signature(),
            self.vote_cast.signature(),
            self.vote_cast_with_params.signature(),
            self.proposal_queued.signature(),
            self.proposal_executed.signature(),
            self.proposal_canceled.signature(),
        ]
    }

    /// Decodes one log. `None` for logs that have no position yet (pending) or were removed.
    pub fn decode(&self, log: &Log) -> Option<ChainEvent> {
        if log.removed == Some(true) {
            return None;
        }
        let id = EventId {
            chain: self.chain.clone(),
            block_number: log.block_number?.as_u64(),
            block_hash: hex_of(log.block_hash?),
            tx: hex_of(log.transaction_hash?),
            index: u32::try_from(log.log_index?).ok()?,
        };
        let payload = self
            .payload(log)
            .unwrap_or_else(|reason| EventPayload::Undecodable {
                reason,
                topics: log.topics.iter().map(|t| hex_of(*t)).collect(),
                data: format!("0x{}", ethers::utils::hex::encode(&log.data)),
            });
        Some(ChainEvent {
            id,
            contract: hex_of(log.address),
            payload,
        })
    }

    fn payload(&self, log: &Log) -> Result<EventPayload, String> {
        let kind = self
            .contracts
            .get(&log.address)
            .ok_or_else(|| format!("log from unwatched contract {:#x}", log.address))?;
        let topic0 = *log.topics.first().ok_or("log has no topics")?;
        let raw = RawLog {
            topics: log.topics.clone(),
            data: log.data.to_vec(),
        };
        let parse = |ev: &Event| {
            ev.parse_log(raw.clone())
                .map(|l| {
                    l.params
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect::<HashMap<_, _>>()
                })
                .map_err(|e| format!("{} does not decode: {e}", ev.name))
        };
        match kind {
            ContractKind::Cbdc | ContractKind::Stablecoin
                if topic0 == self.transfer.signature() =>
            {
                let p = parse(&self.transfer)?;
                let asset = AssetId::erc20(&self.chain, &hex_of(log.address));
                let from = address(&p, "from")?;
                let to = address(&p, "to")?;
                let amount = amount(&p, "value")?;
                Ok(match (from.is_zero(), to.is_zero()) {
                    (true, _) => EventPayload::TokenMinted {
                        asset,
                        to: self.account(to),
                        amount,
                    },
                    (_, true) => EventPayload::TokenBurned {
                        asset,
                        from: self.account(from),
                        amount,
                    },
                    _ => EventPayload::TokenTransferred {
                        asset,
                        from: self.account(from),
                        to: self.account(to),
                        amount,
                    },
                })
            }
            ContractKind::BridgeEscrow if topic0 == self.remittance.signature() => {
                let p = parse(&self.remittance)?;
                let deadline = uint(&p, "deadline")?;
                Ok(EventPayload::RemittanceRequested {
                    nonce: uint(&p, "nonce")?.to_string(),
                    sender: self.account(address(&p, "sender")?),
                    asset: AssetId::erc20(&self.chain, &hex_of(address(&p, "token")?)),
                    amount: amount(&p, "amount")?,
                    dest_chain: string(&p, "destChain")?,
                    recipient: string(&p, "recipient")?,
                    dest_asset: string(&p, "destAsset")?,
                    deadline: u64::try_from(deadline)
                        .map_err(|_| "deadline exceeds u64".to_string())?,
                })
            }
            ContractKind::BridgeEscrow if topic0 == self.released.signature() => {
                let p = parse(&self.released)?;
                Ok(EventPayload::Released {
                    transfer_id: bytes32(&p, "transferId")?,
                    asset: AssetId::erc20(&self.chain, &hex_of(address(&p, "token")?)),
                    recipient: self.account(address(&p, "recipient")?),
                    amount: amount(&p, "amount")?,
                })
            }
            ContractKind::BridgeEscrow if topic0 == self.refunded.signature() => {
                let p = parse(&self.refunded)?;
                Ok(EventPayload::Refunded {
                    transfer_id: bytes32(&p, "transferId")?,
                    nonce: uint(&p, "nonce")?.to_string(),
                    sender: self.account(address(&p, "sender")?),
                    asset: AssetId::erc20(&self.chain, &hex_of(address(&p, "token")?)),
                    amount: amount(&p, "amount")?,
                })
            }
            ContractKind::Governor if topic0 == self.proposal_created.signature() => {
                let p = parse(&self.proposal_created)?;
                let targets = match p.get("targets") {
                    Some(Token::Array(a)) => a
                        .iter()
                        .filter_map(|t| match t {
                            Token::Address(a) => Some(hex_of(*a)),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let calldatas: Vec<String> = match p.get("calldatas") {
                    Some(Token::Array(a)) => a
                        .iter()
                        .filter_map(|t| match t {
                            Token::Bytes(b) => Some(format!("0x{}", ethers::utils::hex::encode(b))),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let values: Vec<String> = match p.get("values") {
                    Some(Token::Array(a)) => a
                        .iter()
                        .filter_map(|v| match v {
                            Token::Uint(v) => Some(v.to_string()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let messages = targets
                    .iter()
                    .zip(calldatas.iter().chain(std::iter::repeat(&String::new())))
                    .map(|(t, c)| format!("{t}:{c}"))
                    .collect();
                let timepoint = |name: &str| -> Result<u64, String> {
                    u64::try_from(uint(&p, name)?).map_err(|_| format!("{name} exceeds u64"))
                };
                Ok(EventPayload::ProposalSubmitted {
                    proposal_id: uint(&p, "proposalId")?.to_string(),
                    proposer: Some(self.account(address(&p, "proposer")?)),
                    proposal_type: Some("governor".into()),
                    messages,
                    values,
                    description: Some(string(&p, "description")?),
                    vote_start: Some(timepoint("voteStart")?),
                    vote_end: Some(timepoint("voteEnd")?),
                })
            }
            ContractKind::Governor
                if topic0 == self.vote_cast.signature()
                    || topic0 == self.vote_cast_with_params.signature() =>
            {
                let ev = if topic0 == self.vote_cast.signature() {
                    &self.vote_cast
                } else {
                    &self.vote_cast_with_params
                };
                let p = parse(ev)?;
                // GovernorCountingSimple: 0 against, 1 for, 2 abstain.
                let support = uint(&p, "support")?;
                // `support` is a uint8, but the ABI decoder does not check the word's upper bytes:
                // compare the whole value (a cast panicked on a word above 2^64, found by
                // tests/fuzz_decoders.rs).
                let option = match u64::try_from(support) {
                    Ok(0) => "against",
                    Ok(1) => "for",
                    Ok(2) => "abstain",
                    _ => return Err(format!("support {support} is not 0, 1 or 2")),
                };
                Ok(EventPayload::VoteCast {
                    proposal_id: uint(&p, "proposalId")?.to_string(),
                    voter: Some(self.account(address(&p, "voter")?)),
                    options: vec![meridian_types::WeightedOption {
                        option: option.into(),
                        weight: "1".into(),
                    }],
                    power: Some(amount(&p, "weight")?.to_string()),
                    // `castVote` records an empty reason: none given.
                    reason: Some(string(&p, "reason")?).filter(|r| !r.is_empty()),
                })
            }
            ContractKind::Governor if topic0 == self.proposal_queued.signature() => {
                let p = parse(&self.proposal_queued)?;
                Ok(EventPayload::ProposalStateChanged {
                    proposal_id: uint(&p, "proposalId")?.to_string(),
                    state: "queued".into(),
                    eta: u64::try_from(uint(&p, "etaSeconds")?).ok(),
                })
            }
            ContractKind::Governor
                if topic0 == self.proposal_executed.signature()
                    || topic0 == self.proposal_canceled.signature() =>
            {
                let executed = topic0 == self.proposal_executed.signature();
                let p = parse(if executed {
                    &self.proposal_executed
                } else {
                    &self.proposal_canceled
                })?;
                Ok(EventPayload::ProposalStateChanged {
                    proposal_id: uint(&p, "proposalId")?.to_string(),
                    state: if executed { "executed" } else { "canceled" }.into(),
                    eta: None,
                })
            }
            other => Err(format!(
                "unexpected event {topic0:#x} from a {} contract",
                other.as_str()
            )),
        }
    }

    fn account(&self, a: Address) -> AccountId {
        AccountId::new(&self.chain, &hex_of(a))
    }
}

type Params = HashMap<String, Token>;

fn address(p: &Params, name: &str) -> Result<Address, String> {
    match p.get(name) {
        Some(Token::Address(a)) => Ok(*a),
        _ => Err(format!("parameter `{name}` is not an address")),
    }
}

fn uint(p: &Params, name: &str) -> Result<U256, String> {
    match p.get(name) {
        Some(Token::Uint(v)) => Ok(*v),
        _ => Err(format!("parameter `{name}` is not an unsigned integer")),
    }
}

fn amount(p: &Params, name: &str) -> Result<u128, String> {
    let v = uint(p, name)?;
    u128::try_from(v).map_err(|_| format!("amount `{name}` = {v} exceeds u128"))
}

fn string(p: &Params, name: &str) -> Result<String, String> {
    match p.get(name) {
        Some(Token::String(s)) => Ok(s.clone()),
        _ => Err(format!("parameter `{name}` is not a string")),
    }
}

fn bytes32(p: &Params, name: &str) -> Result<String, String> {
    match p.get(name) {
        Some(Token::FixedBytes(b)) if b.len() == 32 => {
            Ok(format!("0x{}", ethers::utils::hex::encode(b)))
        }
        _ => Err(format!("parameter `{name}` is not bytes32")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ethers::abi::encode;
    use ethers::types::{Bytes, U64};

    const TOKEN: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
    const ESCROW: &str = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512";

    fn decoder() -> EvmDecoder {
        EvmDecoder::new(
            ChainId::evm(31337),
            &[
                ContractConfig {
                    address: TOKEN.into(),
                    kind: ContractKind::Cbdc,
                },
                ContractConfig {
                    address: ESCROW.into(),
                    kind: ContractKind::BridgeEscrow,
                },
            ],
        )
        .unwrap()
    }

    fn log(address: &str, topics: Vec<H256>, data: Vec<u8>) -> Log {
        Log {
            address: address.parse().unwrap(),
            topics,
            data: Bytes::from(data),
            block_hash: Some(H256::repeat_byte(7)),
            block_number: Some(U64::from(12)),
            transaction_hash: Some(H256::repeat_byte(9)),
            log_index: Some(U256::from(3)),
            ..Default::default()
        }
    }

    fn topic_of(a: Address) -> H256 {
        H256::from(a)
    }

    #[test]
    fn transfer_from_zero_is_a_mint() {
        let d = decoder();
        let to: Address = "0x00000000000000000000000000000000000000aa"
            .parse()
            .unwrap();
        let l = log(
            TOKEN,
            vec![
                d.transfer.signature(),
                topic_of(Address::zero()),
                topic_of(to),
            ],
            encode(&[Token::Uint(U256::from(500))]),
        );
        let ev = d.decode(&l).unwrap();
        assert_eq!(ev.id.block_number, 12);
        assert_eq!(ev.id.index, 3);
        match ev.payload {
            EventPayload::TokenMinted {
                amount, to: acct, ..
            } => {
                assert_eq!(amount, 500);
                assert_eq!(
                    acct.as_str(),
                    "eip155:31337:0x00000000000000000000000000000000000000aa"
                );
            }
            other => panic!("expected mint, got {other:?}"),
        }
    }

    #[test]
    fn oversized_amount_and_wrong_arity_are_undecodable_not_dropped() {
        let d = decoder();
        let a: Address = "0x00000000000000000000000000000000000000aa"
            .parse()
            .unwrap();
        let huge = log(
            TOKEN,
            vec![d.transfer.signature(), topic_of(a), topic_of(a)],
            encode(&[Token::Uint(U256::MAX)]),
        );
        match d.decode(&huge).unwrap().payload {
            EventPayload::Undecodable { reason, topics, .. } => {
                assert!(reason.contains("exceeds u128"), "{reason}");
                assert_eq!(topics.len(), 3);
            }
            other => panic!("expected undecodable, got {other:?}"),
        }
        // ERC-721 style Transfer: four topics, no data.
        let nft = log(
            TOKEN,
            vec![
                d.transfer.signature(),
                topic_of(a),
                topic_of(a),
                H256::zero(),
            ],
            vec![],
        );
        assert!(matches!(
            d.decode(&nft).unwrap().payload,
            EventPayload::Undecodable { .. }
        ));
        // A token event signature coming from the escrow.
        let wrong = log(
            ESCROW,
            vec![d.transfer.signature(), topic_of(a), topic_of(a)],
            encode(&[Token::Uint(1.into())]),
        );
        assert!(matches!(
            d.decode(&wrong).unwrap().payload,
            EventPayload::Undecodable { .. }
        ));
    }

    #[test]
    fn pending_and_removed_logs_are_skipped() {
        let d = decoder();
        let mut l = log(TOKEN, vec![d.transfer.signature()], vec![]);
        l.removed = Some(true);
        assert!(d.decode(&l).is_none());
        l.removed = None;
        l.block_hash = None;
        assert!(d.decode(&l).is_none());
    }
}
