//! Delivery on EVM chains: the relay's signer calls the destination escrow's `release`, and
//! the node follows the transaction to its chain's finality.
//!
//! Nonces come from ethers' `NonceManagerMiddleware` (one counter per signer, so concurrent
//! releases never collide); fees are EIP-1559 estimates. A release whose call would revert is
//! refused before it is sent (the gas estimate fails with the escrow's error), so the node can
//! mark the transfer failed instead of burning gas.

use std::sync::Arc;
use std::time::Duration;

use ethers::abi::Abi;
use ethers::contract::Contract;
use ethers::middleware::{NonceManagerMiddleware, SignerMiddleware};
use ethers::providers::{Http, Middleware, Provider};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, TxHash, U256};

use crate::contracts;

type Client = SignerMiddleware<NonceManagerMiddleware<Provider<Http>>, LocalWallet>;

/// Why a delivery step failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Bad configuration (key, URL, address).
    #[error("{0}")]
    Config(String),
    /// The call would revert (the escrow refused it); retrying will not help.
    #[error("release refused by the escrow: {0}")]
    Refused(String),
    /// The node could not be reached or answered badly; try again.
    #[error("rpc: {0}")]
    Rpc(String),
}

/// Where a submitted release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStatus {
    /// Not in a block yet.
    Pending,
    /// In block `block`, not yet final under the rule.
    Included {
        /// Block number.
        block: u64,
    },
    /// Final: in block `block` and `confirmations` deep.
    Final {
        /// Block number.
        block: u64,
    },
    /// Mined but reverted.
    Reverted {
        /// Block number.
        block: u64,
    },
}

/// The relay's signer on one EVM chain, bound to that chain's escrow.
pub struct EvmSubmitter {
    client: Arc<Client>,
    escrow: Contract<Client>,
    confirmations: u64,
}

impl EvmSubmitter {
    /// A submitter signing with `key` (hex) on the chain at `rpc_url`, which must report
    /// `chain_id`; releases go to `escrow` and are final `confirmations` blocks deep.
    pub async fn connect(
        rpc_url: &str,
        chain_id: u64,
        key: &str,
        escrow: &str,
        confirmations: u64,
    ) -> Result<EvmSubmitter, SubmitError> {
        let provider = Provider::<Http>::try_from(rpc_url)
            .map_err(|e| SubmitError::Config(format!("rpc url {rpc_url}: {e}")))?
            .interval(Duration::from_millis(200));
        let reported = provider
            .get_chainid()
            .await
            .map_err(|e| SubmitError::Rpc(e.to_string()))?;
        if reported != U256::from(chain_id) {
            return Err(SubmitError::Config(format!(
                "{rpc_url} reports chain id {reported}, not {chain_id}"
            )));
        }
        let wallet: LocalWallet = key
            .trim()
            .parse::<LocalWallet>()
            .map_err(|_| SubmitError::Config("signer key is not a 32-byte hex private key".into()))?
            .with_chain_id(chain_id);
        let nonces = NonceManagerMiddleware::new(provider, wallet.address());
        let client = Arc::new(SignerMiddleware::new(nonces, wallet));
        let escrow: Address = escrow
            .parse()
            .map_err(|_| SubmitError::Config(format!("escrow `{escrow}` is not an address")))?;
        let abi: Abi = serde_json::from_str(contracts::BRIDGE_ESCROW_ABI)
            .map_err(|e| SubmitError::Config(format!("escrow ABI: {e}")))?;
        Ok(EvmSubmitter {
            escrow: Contract::new(escrow, abi, client.clone()),
            client,
            confirmations,
        })
    }

    /// The signer's address (the escrow's relayer must be this).
    pub fn signer(&self) -> Address {
        self.client.address()
    }

    /// Submits `release(transfer_id, token, recipient, amount)`; returns the transaction hash
    /// once the node accepted it.
    pub async fn release(
        &self,
        transfer_id: [u8; 32],
        token: Address,
        recipient: Address,
        amount: U256,
    ) -> Result<TxHash, SubmitError> {
        let call = self
            .escrow
            .method::<_, ()>("release", (transfer_id, token, recipient, amount))
            .map_err(|e| SubmitError::Config(e.to_string()))?;
        let sent = call.send().await.map(|pending| pending.tx_hash());
        sent.map_err(refusal)
    }

    /// Submits `refund(transfer_id, nonce)`: the escrow returns lock `nonce` to its sender.
    pub async fn refund(&self, transfer_id: [u8; 32], nonce: U256) -> Result<TxHash, SubmitError> {
        let call = self
            .escrow
            .method::<_, ()>("refund", (transfer_id, nonce))
            .map_err(|e| SubmitError::Config(e.to_string()))?;
        let sent = call.send().await.map(|pending| pending.tx_hash());
        sent.map_err(refusal)
    }

    /// Replaces `tx` if it is still pending: the same call with the same nonce, at fees a quarter
    /// above both its own and the node's current estimate (nodes accept a replacement only at
    /// ≥ 10 % more). Returns the new hash, or `None` when `tx` is no longer pending (mined, or
    /// unknown to the node).
    pub async fn bump(&self, tx: TxHash) -> Result<Option<TxHash>, SubmitError> {
        use ethers::types::transaction::eip2718::TypedTransaction;
        use ethers::types::Eip1559TransactionRequest;
        let rpc = |e: String| SubmitError::Rpc(e);
        let Some(old) = self
            .client
            .get_transaction(tx)
            .await
            .map_err(|e| rpc(e.to_string()))?
        else {
            return Ok(None);
        };
        if old.block_number.is_some() {
            return Ok(None);
        }
        let (est_max, est_tip) = self
            .client
            .estimate_eip1559_fees(None)
            .await
            .map_err(|e| rpc(e.to_string()))?;
        let up = |v: U256| v + v / 4;
        let old_max = old.max_fee_per_gas.or(old.gas_price).unwrap_or_default();
        let old_tip = old.max_priority_fee_per_gas.unwrap_or_default();
        let tip = up(old_tip.max(est_tip)).max(U256::one());
        let max_fee = up(old_max.max(est_max)).max(tip);
        let replacement = Eip1559TransactionRequest::new()
            .to(old.to.unwrap_or_default())
            .data(old.input.clone())
            .value(old.value)
            .gas(old.gas)
            .nonce(old.nonce)
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(tip)
            .chain_id(old.chain_id.map_or(0, |c| c.as_u64()));
        let sent = self
            .client
            .send_transaction(TypedTransaction::Eip1559(replacement), None)
            .await
            .map_err(|e| rpc(e.to_string()))?;
        Ok(Some(sent.tx_hash()))
    }

    /// Whether the escrow has settled `transfer_id`: at the latest block, and at the newest final
    /// block. A release sent by a run that stopped before recording it is found this way, so it
    /// is never sent twice.
    pub async fn settled_on_chain(
        &self,
        transfer_id: [u8; 32],
    ) -> Result<(bool, bool), SubmitError> {
        let rpc = |e: String| SubmitError::Rpc(e);
        let head = self
            .client
            .get_block_number()
            .await
            .map_err(|e| rpc(e.to_string()))?
            .as_u64();
        let call = self
            .escrow
            .method::<_, bool>("settled", transfer_id)
            .map_err(|e| SubmitError::Config(e.to_string()))?;
        let latest = call.clone().call().await.map_err(|e| rpc(e.to_string()))?;
        let at_final = if !latest {
            false
        } else {
            call.block(head.saturating_sub(self.confirmations))
                .call()
                .await
                .map_err(|e| rpc(e.to_string()))?
        };
        Ok((latest, at_final))
    }

    /// Where `tx` stands.
    pub async fn status(&self, tx: TxHash) -> Result<ReleaseStatus, SubmitError> {
        let rpc = |e: <Client as Middleware>::Error| SubmitError::Rpc(e.to_string());
        let Some(receipt) = self.client.get_transaction_receipt(tx).await.map_err(rpc)? else {
            return Ok(ReleaseStatus::Pending);
        };
        let Some(block) = receipt.block_number.map(|b| b.as_u64()) else {
            return Ok(ReleaseStatus::Pending);
        };
        if receipt.status != Some(1u64.into()) {
            return Ok(ReleaseStatus::Reverted { block });
        }
        let head = self.client.get_block_number().await.map_err(rpc)?.as_u64();
        Ok(if head >= block + self.confirmations {
            ReleaseStatus::Final { block }
        } else {
            ReleaseStatus::Included { block }
        })
    }
}

/// A failed send as a [`SubmitError`]: a failed gas estimate is the escrow refusing the call
/// (revert data attached), anything else the node.
fn refusal<M: Middleware>(e: ethers::contract::ContractError<M>) -> SubmitError {
    let text = e.to_string();
    if e.as_revert().is_some() || text.contains("revert") {
        let reason = e
            .decode_revert::<String>()
            .or_else(|| e.as_revert().map(|d| describe_revert(d)))
            .unwrap_or(text);
        SubmitError::Refused(reason)
    } else {
        SubmitError::Rpc(text)
    }
}

/// A custom error from the escrow or a Meridian token, by name and arguments
/// (`InsufficientBalance(0x…, 69025000, 158602500)`), or the raw revert data.
fn describe_revert(data: &[u8]) -> String {
    let raw = || format!("0x{}", ethers::utils::hex::encode(data));
    if data.len() < 4 {
        return raw();
    }
    for abi in [
        contracts::BRIDGE_ESCROW_ABI,
        contracts::STABLECOIN_ABI,
        contracts::CBDC_TOKEN_ABI,
    ] {
        let Ok(abi) = serde_json::from_str::<Abi>(abi) else {
            continue;
        };
        for error in abi.errors() {
            if error.signature()[..4] != data[..4] {
                continue;
            }
            let args = error
                .decode(&data[4..])
                .map(|tokens| {
                    tokens
                        .iter()
                        .map(|t| match t {
                            ethers::abi::Token::Address(a) => format!("{a:#x}"),
                            ethers::abi::Token::Uint(u) | ethers::abi::Token::Int(u) => {
                                u.to_string()
                            }
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            return format!("{}({args})", error.name);
        }
    }
    raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_errors_are_named() {
        // InsufficientBalance(address,uint256,uint256) as the devnet's stablecoin raised it.
        let data = ethers::utils::hex::decode("db42144d0000000000000000000000009fe46736679d2d9a65f0992f2272de9f3c7fa6e000000000000000000000000000000000000000000000000000000000041d3ce80000000000000000000000000000000000000000000000000000000009741504").unwrap();
        assert_eq!(
            describe_revert(&data),
            "InsufficientBalance(0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0, 69025000, 158602500)"
        );
        assert_eq!(describe_revert(&[1, 2]), "0x0102");
    }
}
