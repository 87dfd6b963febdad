//! The escrow-account signers of Cosmos and Substrate chains, checked at start-up: the key must
//! control the configured `escrow` account, so the node never pays from an account it does not
//! watch.

use crate::TransferError;
use std::sync::Arc;

use meridian_relayer::cometbft::{self, CosmosSubmitter, FeeSettings};
use meridian_relayer::payout::AccountPayouts;
use meridian_relayer::substrate::{self, SubstrateSubmitter};
use meridian_types::config::ChainConfig;
use meridian_types::ChainFamily;

/// Refuses a key that does not control the configured escrow, naming the key.
fn controls_escrow(address: &str, escrow: &str, key: &str) -> Result<(), TransferError> {
    if address != escrow {
        return Err(TransferError::config(
            key,
            format!("the key controls {address}, not the escrow {escrow}"),
        ));
    }
    Ok(())
}

/// The payout signer of the Cosmos or Substrate chain `chain` (at `chains[index]`).
pub async fn connect(
    index: usize,
    chain: &ChainConfig,
) -> Result<Arc<dyn AccountPayouts>, TransferError> {
    let key = |field: &str| format!("chains[{index}].{field}");
    let secret = chain
        .signer_key
        .as_ref()
        .ok_or_else(|| TransferError::config(key("signer_key"), "missing"))?;
    let escrow = chain.escrow.as_deref().ok_or_else(|| {
        TransferError::config(
            key("escrow"),
            "a signer needs the escrow account it pays from",
        )
    })?;
    match chain.id.family() {
        Some(ChainFamily::Cometbft) => {
            let fee = chain.fee.as_ref().ok_or_else(|| {
                TransferError::config(key("fee"), "needed to deliver on a Cosmos chain")
            })?;
            let signing = cometbft::signing_key(&secret.0)
                .map_err(|e| TransferError::config(key("signer_key"), e))?;
            let prefix = escrow.split_once('1').map_or("cosmos", |(p, _)| p);
            let pool = cometbft::http_pool(index, chain)?;
            let submitter = CosmosSubmitter::new(
                pool,
                signing,
                prefix,
                FeeSettings {
                    denom: fee.denom.clone(),
                    amount: fee.amount.0,
                    gas_limit: fee.gas_limit,
                },
            )
            .map_err(|e| TransferError::config(key("signer_key"), e))?;
            controls_escrow(submitter.address(), escrow, &key("signer_key"))?;
            tracing::info!(chain = %chain.id, escrow, "delivery signer ready");
            Ok(Arc::new(submitter))
        }
        Some(ChainFamily::Substrate) => {
            let connected = substrate::connect(index, chain, &[]).await?;
            let pair = substrate::sr25519_pair(&secret.0)
                .map_err(|e| TransferError::config(key("signer_key"), e))?;
            let submitter = SubstrateSubmitter::connect(
                connected.rpc,
                connected.metadata,
                pair,
                connected.ss58,
            )
            .await
            .map_err(|e| TransferError::config(key("signer_key"), e))?;
            controls_escrow(&submitter.address(), escrow, &key("signer_key"))?;
            tracing::info!(chain = %chain.id, escrow, "delivery signer ready");
            Ok(Arc::new(submitter))
        }
        _ => Err(TransferError::config(
            key("id"),
            "not an account-based chain",
        )),
    }
}
