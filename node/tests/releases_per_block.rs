//! Releases per block per chain on anvil (BENCHMARKS.md): N settled transfers, blocks only when
//! mined here (one per delivery pass). One signer's nonce authority lets every release of a pass
//! into the next block; before it, one release per block got through (each pass's releases all
//! took the nonce `eth_getTransactionCount` named, and all but one were refused as underpriced
//! replacements). Prints the figure; asserts all N in the first block.

#[path = "support/anvil.rs"]
#[allow(dead_code)]
mod anvil;
#[path = "support/transfers.rs"]
mod transfers;

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::{Filter, H256, U256};
use meridian_node::delivery::TransferDelivery;
use meridian_node::devnet::stack::{dev_client, StackClient};
use meridian_types::config::FinalityRule;
use transfers::settled;

const N: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_per_block() {
    let Some(anvil_bin) = anvil::anvil_or_skip() else {
        return;
    };
    let chain = anvil::dev_chain(&anvil_bin, 31_350).await;
    let url = chain.anvil.http_url();
    let owner = StackClient::new(&chain.stack, dev_client(&url, 31_350, 0).unwrap()).unwrap();
    owner
        .mint_stable(chain.stack.escrow, 10_000_000)
        .await
        .unwrap();
    let provider = Provider::<Http>::try_from(url.as_str()).unwrap();
    let _: serde_json::Value = provider.request("evm_setAutomine", [false]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = anvil::sqlite_store(&dir).await;
    let mut config = chain.chain_config("dest").unwrap();
    config.finality = FinalityRule::Confirmations(0);
    let delivery = TransferDelivery::connect(store.clone(), std::slice::from_ref(&config))
        .await
        .unwrap();
    let token = format!("{:#x}", chain.stack.stablecoin);
    for i in 0..N {
        let (t, path) = settled(&format!("tr:{i}"), &config.id.to_string(), &token, 100);
        assert!(store.create_transfer(&t, &path).await.unwrap());
    }
    let released = H256(ethers::utils::keccak256(
        "Released(bytes32,address,address,uint256)",
    ));
    let mut per_block = Vec::new();
    let mut total = 0;
    for _ in 0..(2 * N) {
        delivery.pass(chrono::Utc::now()).await.unwrap();
        let _: serde_json::Value = provider
            .request("anvil_mine", [U256::from(1)])
            .await
            .unwrap();
        let head = provider.get_block_number().await.unwrap();
        let logs = provider
            .get_logs(
                &Filter::new()
                    .address(chain.stack.escrow)
                    .from_block(head)
                    .to_block(head),
            )
            .await
            .unwrap();
        let n = logs.iter().filter(|l| l.topics[0] == released).count();
        per_block.push(n);
        total += n;
        if total >= N {
            break;
        }
    }
    println!(
        "RELEASES_PER_BLOCK n={N} blocks={} max_per_block={} first_blocks={:?}",
        per_block.len(),
        per_block.iter().max().unwrap(),
        &per_block[..per_block.len().min(8)]
    );
    assert_eq!(total, N, "{per_block:?}");
    assert_eq!(per_block, [N], "every release of one pass in one block");
}
