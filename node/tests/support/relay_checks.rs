//! Test support: what must hold after a relay between the two anvil chains of
//! `relay_chains.rs` went through faults — every remittance finalized, settled once and
//! released exactly once by chain B's escrow, the ledger equal to the replay of its postings
//! with debits equal to credits per asset, and nothing left pending for the relay's signer.
//! Shared by the several-node fault run and the single-node crash campaign (each also includes
//! `escrow_releases.rs`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ethers::providers::{Http, Middleware, Provider};
use ethers::types::Address;
use meridian_storage::Store;
use meridian_types::TransferState;

use crate::relay_chains::RelayChains;

/// Waits up to `limit` until the database holds `sent` transfers, all finalized; the states
/// seen last otherwise.
pub async fn wait_all_finalized(
    store: &Store,
    sent: u32,
    limit: Duration,
) -> Result<(), Vec<TransferState>> {
    let deadline = Instant::now() + limit;
    loop {
        let states: Vec<TransferState> = store
            .transfers(None, u64::from(sent) + 10)
            .await
            .map(|rs| rs.into_iter().map(|r| r.transfer.state).collect())
            .unwrap_or_default();
        if states.len() == sent as usize && states.iter().all(|s| *s == TransferState::Finalized) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(states);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Where the relay pays out: chain B's RPC, escrow and the relay's signer there.
pub struct Payouts {
    /// Chain B's RPC URL.
    pub rpc: String,
    /// Chain B's escrow.
    pub escrow: Address,
    /// The relay's signer on chain B.
    pub signer: Address,
}

impl Payouts {
    /// Chain B of `relay`.
    pub fn of(relay: &RelayChains) -> Self {
        use ethers::signers::Signer;
        Self {
            rpc: relay.rpc_b.clone(),
            escrow: relay.escrow_b,
            signer: relay.config.chains[1]
                .signer_key
                .as_ref()
                .unwrap()
                .0
                .parse::<ethers::signers::LocalWallet>()
                .unwrap()
                .address(),
        }
    }
}

/// Asserts everything the module doc lists for `sent` remittances paid out by `payouts`.
pub async fn assert_each_relayed_once(store: &Store, payouts: &Payouts, sent: u32) {
    // Each transfer settled once.
    let records = store.transfers(None, u64::from(sent) + 10).await.unwrap();
    for r in &records {
        let settled = r
            .history
            .iter()
            .filter(|h| h.to == TransferState::Settled)
            .count();
        assert_eq!(
            settled, 1,
            "{} settled once: {:?}",
            r.transfer.id, r.history
        );
    }
    let ids: Vec<String> = records.into_iter().map(|t| t.transfer.id).collect();
    assert_eq!(ids.len(), sent as usize, "one transfer per remittance");

    // Each released exactly once by chain B's escrow.
    let provider = Provider::<Http>::try_from(payouts.rpc.as_str()).unwrap();
    crate::escrow_releases::assert_released_once(&provider, payouts.escrow, &ids).await;

    // The ledger: every account (opened at zero) equals the replay of the settled batches'
    // journals, all four balances (the balances now are the newest checkpoint's plus the
    // journals after it, so this also checks the checkpoint), and per asset debits equal
    // credits.
    let replay = store.replay_ledger().await.unwrap();
    let accounts = store.ledger_accounts().await.unwrap();
    let differing: Vec<i64> = accounts
        .iter()
        .filter(|a| a.balances != replay.balances(a.id).unwrap())
        .map(|a| a.id)
        .collect();
    assert!(
        differing.is_empty(),
        "accounts {differing:?} differ from the replay of the journals"
    );
    assert!(
        replay
            .accounts()
            .all(|id| accounts.iter().any(|a| a.id == id)),
        "the journals name accounts that do not exist"
    );
    let mut per_asset: std::collections::BTreeMap<&str, (u128, u128)> = Default::default();
    for a in &accounts {
        let t = per_asset.entry(a.asset_id.as_str()).or_default();
        t.0 += a.balances[0];
        t.1 += a.balances[1];
    }
    let unbalanced: Vec<_> = per_asset.iter().filter(|(_, (d, c))| d != c).collect();
    assert!(
        unbalanced.is_empty(),
        "assets with debits unequal to credits: {unbalanced:?}"
    );
    let posted = replay.postings();
    assert!(
        posted >= u64::from(sent),
        "every remittance is on the ledger: {posted} postings"
    );

    // The relay's signer on chain B: nothing left pending, no nonce skipped (every nonce up to
    // the count is a mined transaction).
    let signer = payouts.signer;
    let mined = provider.get_transaction_count(signer, None).await.unwrap();
    let pending = provider
        .get_transaction_count(signer, Some(ethers::types::BlockNumber::Pending.into()))
        .await
        .unwrap();
    assert_eq!(
        mined, pending,
        "no payout transaction left pending on chain B"
    );
}
