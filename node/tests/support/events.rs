//! Builders for chain events, blocks and ingest batches used by the storage and API tests.
//!
//! Hashes are derived from (chain tag, height) so a test can state the expected hash of any
//! block without asking the code under test.

#![allow(dead_code)]

use meridian_storage::{IngestBatch, Store};
use meridian_types::{AccountId, AssetId, BlockRef, ChainEvent, ChainId, EventId, EventPayload};

/// A 0x-prefixed 32-byte hash unique to (`tag`, `height`).
pub fn block_hash(tag: u8, height: u64) -> String {
    format!("0x{tag:02x}{height:062x}")
}

/// The block at `height` of the chain tagged `tag`, linked to its parent.
pub fn block(tag: u8, height: u64) -> BlockRef {
    BlockRef {
        height,
        hash: block_hash(tag, height),
        parent_hash: Some(block_hash(tag, height.saturating_sub(1))),
    }
}

/// A 0x-prefixed transaction hash unique to (`tag`, `height`, `n`).
pub fn tx_hash(tag: u8, height: u64, n: u32) -> String {
    format!("0x{tag:02x}{height:030x}{n:032x}")
}

/// Contract address all test events are emitted by.
pub const ESCROW: &str = "0x00000000000000000000000000000000000e5c20";
/// A token contract address.
pub const TOKEN: &str = "0x000000000000000000000000000000000000070c";

/// An event at (`height`, `index`) of `chain` (tag `tag`) with `payload`.
pub fn event(
    chain: &ChainId,
    tag: u8,
    height: u64,
    index: u32,
    payload: EventPayload,
) -> ChainEvent {
    ChainEvent {
        id: EventId {
            chain: chain.clone(),
            block_number: height,
            block_hash: block_hash(tag, height),
            tx: tx_hash(tag, height, index),
            index,
        },
        contract: ESCROW.to_owned(),
        payload,
    }
}

/// The token asset on `chain`.
pub fn token(chain: &ChainId) -> AssetId {
    AssetId::erc20(chain, TOKEN)
}

/// An account on `chain` whose address ends in `n`.
pub fn account(chain: &ChainId, n: u8) -> AccountId {
    AccountId::new(chain, &format!("0x{n:040x}"))
}

pub fn minted(chain: &ChainId, amount: u128) -> EventPayload {
    EventPayload::TokenMinted {
        asset: token(chain),
        to: account(chain, 1),
        amount,
    }
}

pub fn burned(chain: &ChainId, amount: u128) -> EventPayload {
    EventPayload::TokenBurned {
        asset: token(chain),
        from: account(chain, 2),
        amount,
    }
}

pub fn transferred(chain: &ChainId, amount: u128) -> EventPayload {
    EventPayload::TokenTransferred {
        asset: token(chain),
        from: account(chain, 1),
        to: account(chain, 2),
        amount,
    }
}

pub fn remittance(chain: &ChainId, nonce: u64, amount: u128) -> EventPayload {
    EventPayload::RemittanceRequested {
        nonce: nonce.to_string(),
        sender: account(chain, 3),
        asset: token(chain),
        amount,
        dest_chain: "eip155:1337".into(),
        recipient: format!("0x{:040x}", 4),
        dest_asset: format!("eip155:1337/erc20:{TOKEN}"),
        deadline: 1_900_000_000,
    }
}

pub fn released(chain: &ChainId, amount: u128) -> EventPayload {
    EventPayload::Released {
        transfer_id: format!("0x{:064x}", 7),
        asset: token(chain),
        recipient: account(chain, 5),
        amount,
    }
}

pub fn refunded(chain: &ChainId, amount: u128) -> EventPayload {
    EventPayload::Refunded {
        transfer_id: format!("0x{:064x}", 8),
        nonce: "9".into(),
        sender: account(chain, 3),
        asset: token(chain),
        amount,
    }
}

pub fn undecodable(reason: &str) -> EventPayload {
    EventPayload::Undecodable {
        reason: reason.into(),
        topics: vec![format!("0x{:064x}", 0xdead)],
        data: "0x1234".into(),
    }
}

/// A batch of `events` whose block list covers every height from `from` to `to` (the checkpoint).
pub fn batch(chain: &ChainId, tag: u8, from: u64, to: u64, events: Vec<ChainEvent>) -> IngestBatch {
    IngestBatch {
        chain: chain.clone(),
        events,
        blocks: (from..=to).map(|h| block(tag, h)).collect(),
        checkpoint: block(tag, to),
    }
}

/// A migrated SQLite store in `dir` (file `name`) with `chain` registered as an EVM chain.
pub async fn sqlite_with_chain(dir: &std::path::Path, name: &str, chain: &ChainId) -> Store {
    let store = Store::connect(&format!("sqlite://{}", dir.join(name).display()))
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    store
        .register_chain(chain, "a", meridian_types::ChainFamily::Evm)
        .await
        .unwrap();
    store
}

/// A chain's governance events as its watcher would store them.
pub async fn ingest(
    store: &Store,
    chain: &str,
    height: u64,
    payloads: Vec<meridian_types::EventPayload>,
) {
    use meridian_storage::IngestBatch;
    use meridian_types::{BlockRef, ChainEvent, EventId};
    let chain: meridian_types::ChainId = chain.parse().unwrap();
    store
        .register_chain(&chain, "gov", chain.family().unwrap())
        .await
        .unwrap();
    let block = BlockRef {
        height,
        hash: format!("0x{height:064x}"),
        parent_hash: None,
    };
    let events = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| ChainEvent {
            id: EventId {
                chain: chain.clone(),
                block_number: height,
                block_hash: block.hash.clone(),
                tx: format!("0x{i:064x}"),
                index: i as u32,
            },
            contract: "gov".into(),
            payload,
        })
        .collect();
    store
        .commit_ingest(&IngestBatch {
            chain,
            events,
            blocks: vec![block.clone()],
            checkpoint: block,
        })
        .await
        .unwrap();
}
