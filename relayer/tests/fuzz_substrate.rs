//! Fuzz targets for what a Substrate chain can send the decoders (issue 16, item 8): the runtime
//! metadata, the extrinsics of a block and its `System.Events`, read against the metadata of the
//! runtime the Substrate tests run on (recorded: `fixtures/substrate`, PROVENANCE.md there) —
//! real ones mutated, and arbitrary bytes. Each asserts no panic, and that what cannot be read is
//! a typed error (an extrinsic's `error`, the events' `(index, reason)`, metadata's `Err`), never
//! half a value. The recorded block decodes cleanly first, so the targets exercise the decoders
//! themselves, not only their error paths.
//!
//! They run a few hundred cases under plain `cargo test`; `scripts/fuzz` runs them far longer
//! (`PROPTEST_CASES`); a failure's seed lands in `tests/fuzz_substrate.proptest-regressions`.

use std::sync::OnceLock;

use meridian_relayer::substrate::{
    batch_all_call, decode_events, decode_extrinsic, metadata_from_bytes, remark_call, BlockFacts,
    SubstrateDecoder,
};
use meridian_types::{AssetId, ChainId};
use parity_scale_codec::{Compact, Encode};
use proptest::prelude::*;
use substrate_api_client::ac_node_api::Metadata;

const METADATA: &[u8] = include_bytes!("fixtures/substrate/asset-hub-rococo-metadata.scale");
const BLOCK: &str = include_str!("fixtures/substrate/asset-hub-rococo-block-2.json");
/// A remittance memo as senders write it (the decoder pulls it out of the batch's remark).
const MEMO: &[u8] = b"meridian:v1:eip155:31338:0x00000000000000000000000000000000000000aa";

fn metadata() -> &'static Metadata {
    static MD: OnceLock<Metadata> = OnceLock::new();
    MD.get_or_init(|| metadata_from_bytes(METADATA).expect("the recorded metadata"))
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim_start_matches("0x");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The recorded block's extrinsics, an unsigned remittance extrinsic
/// (`Utility.batch_all([System.remark_with_event(memo)])`), and the block's events.
fn seeds() -> &'static (Vec<Vec<u8>>, Vec<u8>) {
    static SEEDS: OnceLock<(Vec<Vec<u8>>, Vec<u8>)> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let block: serde_json::Value = serde_json::from_str(BLOCK).expect("block fixture");
        let mut extrinsics: Vec<Vec<u8>> = block["extrinsics"]
            .as_array()
            .expect("extrinsics")
            .iter()
            .map(|x| hex(x.as_str().expect("hex string")))
            .collect();
        let md = metadata();
        let call = batch_all_call(md, &[remark_call(md, MEMO).expect("remark")]).expect("batch");
        let mut body = vec![0x04];
        body.extend(call);
        let mut remittance = Compact(body.len() as u32).encode();
        remittance.extend(body);
        extrinsics.push(remittance);
        let events = hex(block["events"].as_str().expect("events hex"));
        (extrinsics, events)
    })
}

fn decoder() -> SubstrateDecoder {
    let chain: ChainId = "polkadot:45454545454545454545454545454545"
        .parse()
        .expect("chain");
    let native = AssetId::substrate_native(&chain);
    SubstrateDecoder::new(chain, 2, Some([7; 32]), &[native])
}

#[test]
fn the_recorded_block_decodes_cleanly() {
    let md = metadata();
    let (extrinsics, events) = seeds();
    let facts: Vec<_> = extrinsics.iter().map(|x| decode_extrinsic(md, x)).collect();
    for f in &facts {
        assert_eq!(f.error, None, "{f:?}");
    }
    assert!(facts[0].timestamp_ms.is_some(), "the timestamp inherent");
    assert_eq!(facts[2].remarks, vec![MEMO.to_vec()], "the remittance memo");
    let (decoded, error) = decode_events(md, events.clone());
    assert_eq!((decoded.len(), error), (2, None));
}

/// A batch claiming 2^30 calls in a few bytes is refused with a reason. Before the length check
/// (`substrate::length_check`) scale-value reserved room for all of them first and the process
/// aborted on the failed allocation: what the fuzz targets below found.
#[test]
fn a_call_claiming_more_items_than_its_bytes_is_refused() {
    let remittance = &seeds().0[2];
    let mut cur = &remittance[..];
    let len = <Compact<u32> as parity_scale_codec::Decode>::decode(&mut cur).expect("prefix");
    assert_eq!(len.0 as usize, cur.len());
    // version, Utility's index, batch_all's index, then the calls' count: one (compact 0x04).
    assert_eq!(cur[3], 0x04);
    let mut body = cur[..3].to_vec();
    body.extend(Compact(1u32 << 30).encode());
    body.extend(&cur[4..]);
    let mut lying = Compact(body.len() as u32).encode();
    lying.extend(body);
    let facts = decode_extrinsic(metadata(), &lying);
    assert!(
        facts
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("call")),
        "{facts:?}"
    );
    assert!(facts.remarks.is_empty());
}

/// A batch nested 10 000 deep (three bytes a level) is refused with a reason, on a thread with
/// a worker's stack: the decoders recurse once per level, so it used to overflow the stack,
/// which aborts the process.
#[test]
fn a_call_nested_too_deep_is_refused() {
    let md = metadata();
    let remark = remark_call(md, MEMO).expect("remark");
    let prefix = batch_all_call(md, std::slice::from_ref(&remark)).expect("batch")[..3].to_vec();
    assert_eq!(prefix[2], 0x04, "one call");
    let mut call = remark;
    for _ in 0..10_000 {
        call = [prefix.as_slice(), call.as_slice()].concat();
    }
    let mut body = vec![0x04];
    body.extend(call);
    let mut deep = Compact(body.len() as u32).encode();
    deep.extend(body);
    let facts = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || decode_extrinsic(metadata(), &deep))
        .expect("thread")
        .join()
        .expect("no panic");
    assert!(
        facts
            .error
            .as_deref()
            .is_some_and(|e| e.contains("nested deeper")),
        "{facts:?}"
    );
}

/// Bytes derived from `seed`: a few bytes overwritten, cut short or extended, or arbitrary.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    prop_oneof![
        3 => proptest::collection::vec((0..len, any::<u8>()), 1..8).prop_map({
            let seed = seed.clone();
            move |edits| {
                let mut b = seed.clone();
                for (i, v) in edits {
                    if let Some(x) = b.get_mut(i) {
                        *x = v;
                    }
                }
                b
            }
        }),
        1 => (0..len).prop_map({
            let seed = seed.clone();
            move |cut| seed[..cut.min(seed.len())].to_vec()
        }),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map({
            let seed = seed.clone();
            move |tail| [seed.clone(), tail].concat()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

fn extrinsic_bytes() -> impl Strategy<Value = Vec<u8>> {
    let (extrinsics, _) = seeds();
    (0..extrinsics.len()).prop_flat_map(|i| mutated(seeds().0[i].clone()))
}

fn event_bytes() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds().1.clone())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// An extrinsic is read or refused with a reason; one refused yields nothing half-read.
    #[test]
    fn extrinsics_are_read_or_refused_with_a_reason(bytes in extrinsic_bytes()) {
        let facts = decode_extrinsic(metadata(), &bytes);
        if let Some(error) = &facts.error {
            prop_assert!(!error.is_empty());
            prop_assert!(facts.signer.is_none() && facts.remarks.is_empty() && facts.timestamp_ms.is_none(), "{facts:?}");
        }
    }

    /// Events are read up to the first that cannot be, which is named with its index.
    #[test]
    fn events_are_read_or_stop_at_a_named_one(bytes in event_bytes()) {
        let (events, error) = decode_events(metadata(), bytes);
        if let Some((index, reason)) = &error {
            prop_assert_eq!(*index as usize, events.len());
            prop_assert!(!reason.is_empty());
        }
    }

    /// A whole block of mutated extrinsics and events gives chain events or typed undecodable
    /// ones, never a panic.
    #[test]
    fn blocks_decode_without_panicking(xs in proptest::collection::vec(extrinsic_bytes(), 0..4), ev in event_bytes()) {
        let md = metadata();
        let (events, events_error) = decode_events(md, ev);
        let block = BlockFacts {
            height: 2,
            hash: format!("0x{}", "ab".repeat(32)),
            extrinsics: xs.iter().map(|x| decode_extrinsic(md, x)).collect(),
            events,
            events_error,
        };
        let decoder = decoder();
        for e in decoder.decode_block(&block) {
            prop_assert_eq!(e.id.chain.as_str(), "polkadot:45454545454545454545454545454545");
        }
    }

    /// Metadata that is not what it should be is refused, never a panic.
    #[test]
    fn metadata_is_read_or_refused(bytes in prop_oneof![
        mutated(METADATA[..4096].to_vec()),
        proptest::collection::vec((0..METADATA.len(), any::<u8>()), 1..8).prop_map(|edits| {
            let mut b = METADATA.to_vec();
            for (i, v) in edits {
                b[i] = v;
            }
            b
        }),
    ]) {
        let _ = metadata_from_bytes(&bytes);
    }
}
