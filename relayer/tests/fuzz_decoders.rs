//! Fuzz targets for what a chain can send the decoders (issue 16, item 8): arbitrary EVM logs
//! under every event signature the node asks for, and arbitrary CometBFT events, memos and vote
//! options. Each asserts no panic, and that what cannot be read is kept as a typed
//! `Undecodable` event (never dropped, never half-read).
//!
//! They run a few hundred cases under plain `cargo test`; `scripts/fuzz` runs them far longer
//! (`PROPTEST_CASES`). proptest shrinks a failure and records its seed in
//! `tests/fuzz_decoders.proptest-regressions`, which is committed and replayed first on every run.

use ethers::types::{Bytes, Log, H160, H256, U256, U64};
use meridian_relayer::cometbft::{parse_vote_options, BlockEvents, CosmosDecoder, Origin};
use meridian_relayer::evm::EvmDecoder;
use meridian_types::config::{ContractConfig, ContractKind};
use meridian_types::{ChainId, EventPayload};
use proptest::prelude::*;
use tendermint::abci::Event;

const TOKEN: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
const ESCROW: &str = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512";
const GOVERNOR: &str = "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0";

fn evm_decoder() -> EvmDecoder {
    let contract = |address: &str, kind| ContractConfig {
        address: address.into(),
        kind,
    };
    EvmDecoder::new(
        ChainId::evm(31337),
        &[
            contract(TOKEN, ContractKind::Stablecoin),
            contract(ESCROW, ContractKind::BridgeEscrow),
            contract(GOVERNOR, ContractKind::Governor),
        ],
    )
    .expect("decoder")
}

fn h256() -> impl Strategy<Value = H256> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(H256),
        // Addresses and small numbers, as real topics carry them.
        any::<[u8; 20]>().prop_map(|a| H256::from(H160(a))),
        any::<u64>().prop_map(H256::from_low_u64_be),
    ]
}

/// ABI-looking data: words of zeros, small numbers, offsets and lengths, or raw bytes.
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(
            prop_oneof![
                Just(U256::zero()),
                (0u64..4096).prop_map(U256::from),
                any::<[u8; 32]>().prop_map(|w| U256::from_big_endian(&w)),
            ],
            0..16
        )
        .prop_map(|words| {
            words
                .into_iter()
                .flat_map(|w| {
                    let mut b = [0u8; 32];
                    w.to_big_endian(&mut b);
                    b
                })
                .collect()
        }),
    ]
}

proptest! {
    #[test]
    fn any_evm_log_is_decoded_or_kept_as_undecodable(
        signature in 0usize..10,
        address in prop_oneof![Just(TOKEN), Just(ESCROW), Just(GOVERNOR)],
        topics in proptest::collection::vec(h256(), 0..4),
        data in data(),
    ) {
        let decoder = evm_decoder();
        let mut all = vec![decoder.topics()[signature]];
        all.extend(topics);
        let log = Log {
            address: address.parse().expect("address"),
            topics: all,
            data: Bytes::from(data),
            block_hash: Some(H256::repeat_byte(7)),
            block_number: Some(U64::from(12)),
            transaction_hash: Some(H256::repeat_byte(9)),
            log_index: Some(U256::from(3)),
            ..Default::default()
        };
        // A log with a position always becomes an event: decoded, or undecodable with a reason.
        let event = decoder.decode(&log).expect("a positioned log is never dropped");
        if let EventPayload::Undecodable { reason, .. } = &event.payload {
            prop_assert!(!reason.is_empty());
        }
    }
}

const KINDS: [&str; 10] = [
    "transfer",
    "coin_received",
    "coin_spent",
    "message",
    "submit_proposal",
    "proposal_vote",
    "active_proposal",
    "inactive_proposal",
    "send_packet",
    "something_else",
];
const KEYS: [&str; 12] = [
    "sender",
    "recipient",
    "receiver",
    "spender",
    "amount",
    "proposal_id",
    "option",
    "voter",
    "proposal_result",
    "action",
    "module",
    "weight",
];

fn attribute_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[0-9]{1,45}(stake|uatom|ibc/[A-F0-9]{4})?(,[0-9]{1,40}stake)*",
        "cosmos1[a-z0-9]{0,45}",
        "\\[\\{\"option\":[0-9],\"weight\":\"[0-9.]{1,25}\"\\}\\]",
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        proptest::sample::select(KINDS.to_vec()),
        proptest::collection::vec(
            (proptest::sample::select(KEYS.to_vec()), attribute_value()),
            0..6,
        ),
    )
        .prop_map(|(kind, attributes)| Event::new(kind, attributes))
}

fn memo() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "\\PC{0,60}".prop_map(Some),
        "meridian:(to=[a-z0-9:]{0,50}|asset=[a-z0-9:/]{0,60}|deadline=[0-9]{0,25}|release [a-z0-9:/]{0,30}|refund [a-z0-9:/]{0,30})( [a-z=0-9:/]{0,30}){0,3}".prop_map(Some),
    ]
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::BeginBlock),
        Just(Origin::EndBlock),
        Just(Origin::FinalizeBlock),
        ("[A-F0-9]{64}", memo(), 0u32..3).prop_map(|(hash, memo, code)| Origin::Tx {
            hash,
            memo,
            code
        }),
    ]
}

proptest! {
    #[test]
    fn any_cometbft_block_decodes_without_panicking(
        groups in proptest::collection::vec(
            (origin(), proptest::collection::vec(event(), 0..6)),
            0..5
        ),
        time in any::<u64>(),
    ) {
        let decoder = CosmosDecoder::new(
            "cosmos:meridian-1".parse().expect("chain"),
            Some("cosmos1escrow".into()),
            ["stake".to_owned()],
        );
        let block = BlockEvents {
            height: 5,
            hash: "AB".repeat(32),
            time,
            groups,
        };
        for event in decoder.decode_block(&block) {
            if let EventPayload::Undecodable { reason, .. } = &event.payload {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    #[test]
    fn any_vote_option_text_parses_or_is_refused(text in "\\PC{0,80}") {
        // Either options or a reason; never a panic.
        if let Err(reason) = parse_vote_options(&text) {
            prop_assert!(!reason.is_empty());
        }
    }
}
