//! Test support: the escrow's `Released` events on a chain, checked against the transfers that
//! should have been paid — each exactly once.

#![allow(dead_code)]

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Address, Filter, H256};
use meridian_transfers::evm_delivery::escrow_transfer_id;

/// Asserts that `escrow` released each of `ids` exactly once and nothing else.
pub async fn assert_released_once(provider: &Provider<Http>, escrow: Address, ids: &[String]) {
    let released = H256(ethers::utils::keccak256(
        "Released(bytes32,address,address,uint256)",
    ));
    let mut paid: Vec<[u8; 32]> = provider
        .get_logs(&Filter::new().address(escrow).from_block(0u64))
        .await
        .unwrap()
        .iter()
        .filter(|l| l.topics[0] == released)
        .map(|l| l.topics[1].0)
        .collect();
    paid.sort();
    let mut expected: Vec<[u8; 32]> = ids.iter().map(|id| escrow_transfer_id(id)).collect();
    expected.sort();
    assert_eq!(paid, expected, "each transfer released exactly once");
}
