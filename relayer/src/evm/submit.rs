//! Payouts on EVM chains: the relay's signer calls the escrow's `release` (or `refund`), signing
//! locally with a nonce from the caller's [`NonceAuthority`](super::NonceAuthority), and the node
//! follows the transaction by its receipts.
//!
//! The exactly-once rule lives in the caller (`transfers/src/delivery.rs`): sign, record the signed
//! transaction, then broadcast; afterwards only re-broadcast it or replace it with the same nonce.
//! This module gives the pieces: [`EvmSubmitter::sign`], [`EvmSubmitter::replacement`],
//! [`EvmSubmitter::broadcast`], [`EvmSubmitter::receipt`] and the escrow's `settled` at a given
//! block. Nothing here decides that a call "would revert": a failed gas estimate says only what
//! the *pending* state would do — which may hold our own earlier transaction — so the call is
//! signed with a fixed gas limit instead and the chain decides.
//!
//! Every request goes through the chain's endpoint pool (time-out per request, failover, backoff;
//! URLs reduced to host:port in errors and logs).

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ethers::abi::{Abi, ParamType, Token};
use ethers::contract::BaseContract;
use ethers::providers::{Middleware, Provider, ProviderError, RpcError};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::transaction::eip2718::TypedTransaction;
use ethers::types::{
    Address, BlockId, BlockNumber, Bytes, Eip1559TransactionRequest, TxHash, U256, U64,
};
use meridian_storage::SignedEvmTx;

use super::{PoliteHttp, RpcPool};
use crate::contracts;

/// Gas limit used when the node cannot estimate a call (its estimate reverts against pending
/// state): the escrow's `release`/`refund` use well under half of it.
pub const CALL_GAS_FALLBACK: u64 = 300_000;
/// Gas limit of a plain value transfer (used to fill a nonce gap).
const TRANSFER_GAS: u64 = 21_000;

/// Why a payout step failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Bad configuration (key, address, ABI).
    #[error("{0}")]
    Config(String),
    /// The node answered and refused (not a transport failure): insufficient funds for gas, a
    /// malformed transaction.
    #[error("refused by the node: {0}")]
    Refused(String),
    /// No endpoint answered (time-outs, errors, garbage) after failover; try again later.
    #[error("rpc: {0}")]
    Rpc(String),
}

/// A number the node answered that must fit 64 bits (a nonce, a chain id); a larger one is a
/// garbage answer, refused instead of panicking in a cast.
fn small(n: U256, what: &str) -> Result<u64, SubmitError> {
    u64::try_from(n).map_err(|_| SubmitError::Rpc(format!("the node answered {n} as {what}")))
}

/// One release of a batch: pay `amount` of `token` to `recipient` for `transfer_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowRelease {
    /// The escrow's transfer id.
    pub transfer_id: [u8; 32],
    /// ERC-20 token.
    pub token: Address,
    /// Who is paid.
    pub recipient: Address,
    /// Base units.
    pub amount: U256,
}

/// Gas a batch's transaction is given for itself, besides its releases.
pub const BATCH_GAS_BASE: u64 = 60_000;
/// Gas a batch's transaction is given per release (one pays about 35 000–55 000: the settled
/// flag, the token's two balances, the event).
pub const BATCH_GAS_PER_RELEASE: u64 = 75_000;

/// What the escrow is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscrowCall {
    /// Pay `amount` of `token` to `recipient` for transfer `transfer_id`.
    Release {
        /// The escrow's transfer id.
        transfer_id: [u8; 32],
        /// ERC-20 token.
        token: Address,
        /// Who is paid.
        recipient: Address,
        /// Base units.
        amount: U256,
    },
    /// Pay every release it can (`releaseBatch`): each is settled by its own id; one that
    /// cannot be paid is refused by an event, not by failing the others.
    ReleaseBatch(Vec<EscrowRelease>),
    /// Return lock `lock_nonce` to its sender, for transfer `transfer_id`.
    Refund {
        /// The escrow's transfer id.
        transfer_id: [u8; 32],
        /// The lock's nonce, from its `Locked` event.
        lock_nonce: U256,
    },
}

/// A transaction of ours in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mined {
    /// The including block.
    pub block: u64,
    /// Whether it succeeded (`status == 1`).
    pub success: bool,
    /// Transfer ids the escrow released in it (`Released` events of our escrow).
    pub released: Vec<[u8; 32]>,
    /// Transfer ids of a batch the escrow refused in it (`ReleaseRefused`), with the reason.
    pub refused: Vec<([u8; 32], String)>,
}

/// The relay's signer on one EVM chain, bound to that chain's escrow.
pub struct EvmSubmitter {
    pool: Arc<RpcPool>,
    wallet: LocalWallet,
    chain_id: u64,
    escrow: Address,
    abi: BaseContract,
    confirmations: u64,
}

/// A node's JSON-RPC error answer that is an answer (a revert, the pool's verdict on a
/// transaction), not a reason to try another endpoint.
fn answer_of(e: &ProviderError) -> Option<String> {
    let r = e.as_error_response()?;
    let m = r.message.to_lowercase();
    let is_answer = r.code == 3
        || r.as_revert_data().is_some()
        || [
            "revert",
            "already known",
            "already imported",
            "known transaction",
            "nonce too low",
            "underpriced",
            "insufficient funds",
            "exceeds block gas limit",
            "invalid sender",
        ]
        .iter()
        .any(|s| m.contains(s));
    is_answer.then(|| match r.as_revert_data() {
        Some(data) if !data.is_empty() => format!("reverted with {}", describe_revert(&data)),
        _ => r.message.clone(),
    })
}

impl EvmSubmitter {
    /// A submitter signing with `key` (hex) for chain `chain_id` through `pool`; payouts go to
    /// `escrow` and are final `confirmations` blocks deep.
    pub fn new(
        pool: Arc<RpcPool>,
        chain_id: u64,
        key: &str,
        escrow: &str,
        confirmations: u64,
    ) -> Result<EvmSubmitter, SubmitError> {
        let wallet: LocalWallet = key
            .trim()
            .parse::<LocalWallet>()
            .map_err(|_| SubmitError::Config("signer key is not a 32-byte hex private key".into()))?
            .with_chain_id(chain_id);
        let escrow: Address = escrow
            .parse()
            .map_err(|_| SubmitError::Config(format!("escrow `{escrow}` is not an address")))?;
        let abi: Abi = serde_json::from_str(contracts::BRIDGE_ESCROW_ABI)
            .map_err(|e| SubmitError::Config(format!("escrow ABI: {e}")))?;
        Ok(EvmSubmitter {
            pool,
            wallet,
            chain_id,
            escrow,
            abi: BaseContract::from(abi),
            confirmations,
        })
    }

    /// The signer's address (the escrow's relayer must be this).
    pub fn signer(&self) -> Address {
        self.wallet.address()
    }

    /// Blocks a transaction needs beneath the head to be final.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// Runs one JSON-RPC request through the pool. `Ok(Err(answer))` is the node's error answer
    /// (a revert, a refused transaction): the same on every endpoint, so not failed over.
    async fn rpc<T, F, Fut>(
        &self,
        method: &'static str,
        f: F,
    ) -> Result<Result<T, String>, SubmitError>
    where
        F: Fn(Provider<PoliteHttp>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        self.pool
            .call(method, |p| {
                let call = f(p);
                async move {
                    match call.await {
                        Ok(v) => Ok(Ok(v)),
                        Err(e) => match answer_of(&e) {
                            Some(answer) => Ok(Err(answer)),
                            None => Err(e),
                        },
                    }
                }
            })
            .await
            .map_err(|e| SubmitError::Rpc(e.to_string()))
    }

    /// The signer's transaction count at the latest block: the lowest nonce not yet mined.
    pub async fn mined_nonce(&self) -> Result<u64, SubmitError> {
        let me = self.signer();
        let n = self
            .rpc("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(me, Some(BlockNumber::Latest.into()))
                    .await
            })
            .await?
            .map_err(SubmitError::Refused)?;
        small(n, "a transaction count")
    }

    /// The chain id the node reports.
    pub async fn chain_id(&self) -> Result<u64, SubmitError> {
        let id = self
            .rpc("eth_chainId", |p| async move { p.get_chainid().await })
            .await?
            .map_err(SubmitError::Refused)?;
        small(id, "a chain id")
    }

    /// The signer's transaction count as of `block`.
    pub async fn mined_nonce_at(&self, block: u64) -> Result<u64, SubmitError> {
        let me = self.signer();
        let at: BlockId = BlockNumber::Number(block.into()).into();
        let n = self
            .rpc("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(me, Some(at)).await
            })
            .await?
            .map_err(SubmitError::Refused)?;
        small(n, "a transaction count")
    }

    /// The latest block number.
    pub async fn head(&self) -> Result<u64, SubmitError> {
        let n = self
            .rpc(
                "eth_blockNumber",
                |p| async move { p.get_block_number().await },
            )
            .await?
            .map_err(SubmitError::Refused)?;
        Ok(n.as_u64())
    }

    fn calldata(&self, call: &EscrowCall) -> Result<Bytes, SubmitError> {
        let encoded = match call {
            EscrowCall::Release {
                transfer_id,
                token,
                recipient,
                amount,
            } => self
                .abi
                .encode("release", (*transfer_id, *token, *recipient, *amount)),
            EscrowCall::ReleaseBatch(releases) => {
                let items: Vec<Token> = releases
                    .iter()
                    .map(|r| {
                        Token::Tuple(vec![
                            Token::FixedBytes(r.transfer_id.to_vec()),
                            Token::Address(r.token),
                            Token::Address(r.recipient),
                            Token::Uint(r.amount),
                        ])
                    })
                    .collect();
                self.abi.encode("releaseBatch", Token::Array(items))
            }
            EscrowCall::Refund {
                transfer_id,
                lock_nonce,
            } => self.abi.encode("refund", (*transfer_id, *lock_nonce)),
        };
        encoded.map_err(|e| SubmitError::Config(format!("escrow call: {e}")))
    }

    /// Current EIP-1559 fees: (max fee per gas, priority fee per gas).
    async fn fees(&self) -> Result<(U256, U256), SubmitError> {
        self.rpc("eth_feeHistory", |p| async move {
            p.estimate_eip1559_fees(None).await
        })
        .await?
        .map_err(SubmitError::Refused)
    }

    fn sign_request(
        &self,
        req: Eip1559TransactionRequest,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let max_fee = req.max_fee_per_gas.unwrap_or_default();
        let tip = req.max_priority_fee_per_gas.unwrap_or_default();
        let tx = TypedTransaction::Eip1559(req);
        let signature = self
            .wallet
            .sign_transaction_sync(&tx)
            .map_err(|e| SubmitError::Config(format!("signing: {e}")))?;
        let raw = tx.rlp_signed(&signature);
        let wei = |v: U256, what: &str| {
            u128::try_from(v).map_err(|_| SubmitError::Config(format!("{what} {v} exceeds u128")))
        };
        Ok(SignedEvmTx {
            hash: format!("{:#x}", TxHash::from(ethers::utils::keccak256(&raw))),
            raw: raw.to_vec(),
            max_fee_per_gas: wei(max_fee, "max fee per gas")?,
            max_priority_fee_per_gas: wei(tip, "priority fee")?,
            recorded_at: at,
        })
    }

    /// Signs `call` with `nonce` at current fees, without sending it. The gas limit is the
    /// node's estimate plus a fifth, or [`CALL_GAS_FALLBACK`] when the estimate reverts.
    pub async fn sign(
        &self,
        call: &EscrowCall,
        nonce: u64,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let data = self.calldata(call)?;
        let (max_fee, tip) = self.fees().await?;
        let req = Eip1559TransactionRequest::new()
            .from(self.signer())
            .to(self.escrow)
            .data(data)
            .nonce(nonce)
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(tip)
            .chain_id(self.chain_id);
        // A batch is given gas for every release: an estimate runs against pending state,
        // where releases of batches still in flight look settled (refused, and cheaper).
        if let EscrowCall::ReleaseBatch(releases) = call {
            let gas = BATCH_GAS_BASE + BATCH_GAS_PER_RELEASE * releases.len() as u64;
            return self.sign_request(req.gas(gas), at);
        }
        let probe = TypedTransaction::Eip1559(req.clone());
        let estimate = self
            .rpc("eth_estimateGas", |p| {
                let probe = probe.clone();
                async move { p.estimate_gas(&probe, None).await }
            })
            .await?;
        let gas = match estimate {
            Ok(g) => g + g / 5,
            Err(answer) => {
                tracing::warn!(
                    chain_id = self.chain_id,
                    nonce,
                    %answer,
                    "gas estimate reverted against pending state; signing with the fixed limit, the chain decides"
                );
                U256::from(CALL_GAS_FALLBACK)
            }
        };
        self.sign_request(req.gas(gas), at)
    }

    /// The replacement of `previous` (one of our signed transactions): the same call, nonce and
    /// gas, at fees a quarter above both its own and the current estimate (nodes accept a
    /// replacement only at ≥ 10 % more).
    pub async fn replacement(
        &self,
        previous: &SignedEvmTx,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let (max_fee, tip) = self.bumped_fees(previous).await?;
        self.resign(previous, None, max_fee, tip, at)
    }

    /// `previous`'s call signed again with a new `nonce` at current fees: for a payout whose
    /// nonce was taken by a transaction that is not ours.
    pub async fn with_nonce(
        &self,
        previous: &SignedEvmTx,
        nonce: u64,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let (max_fee, tip) = self.fees().await?;
        self.resign(previous, Some(nonce), max_fee, tip, at)
    }

    /// Fees for a transaction replacing `previous`: a quarter above both its own and the current
    /// estimate (nodes accept a replacement only at ≥ 10 % more). (max fee, tip).
    async fn bumped_fees(&self, previous: &SignedEvmTx) -> Result<(U256, U256), SubmitError> {
        let (est_max, est_tip) = self.fees().await?;
        let up = |v: U256| v + v / 4;
        let tip = up(U256::from(previous.max_priority_fee_per_gas).max(est_tip)).max(U256::one());
        let max_fee = up(U256::from(previous.max_fee_per_gas).max(est_max)).max(tip);
        Ok((max_fee, tip))
    }

    fn resign(
        &self,
        previous: &SignedEvmTx,
        nonce: Option<u64>,
        max_fee: U256,
        tip: U256,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let old = decoded(previous)?;
        let nonce = nonce.map_or_else(|| old.nonce().copied().unwrap_or_default(), U256::from);
        let mut req = Eip1559TransactionRequest::new()
            .from(self.signer())
            .data(old.data().cloned().unwrap_or_default())
            .value(old.value().copied().unwrap_or_default())
            .gas(old.gas().copied().unwrap_or(U256::from(CALL_GAS_FALLBACK)))
            .nonce(nonce)
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(tip)
            .chain_id(self.chain_id);
        if let Some(to) = old.to() {
            req = req.to(to.clone());
        }
        self.sign_request(req, at)
    }

    /// The cancellation of `previous`, one of our pending payouts: a zero-value transfer to
    /// ourselves with its nonce, at fees a quarter above its own and the current estimate, so that
    /// the payout can no longer be mined (its deposit is gone).
    pub async fn cancellation(
        &self,
        previous: &SignedEvmTx,
        at: DateTime<Utc>,
    ) -> Result<SignedEvmTx, SubmitError> {
        let old = decoded(previous)?;
        let (max_fee, tip) = self.bumped_fees(previous).await?;
        let req = Eip1559TransactionRequest::new()
            .from(self.signer())
            .to(self.signer())
            .value(U256::zero())
            .gas(TRANSFER_GAS)
            .nonce(old.nonce().copied().unwrap_or_default())
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(tip)
            .chain_id(self.chain_id);
        self.sign_request(req, at)
    }

    /// Whether `tx` is a transfer to ourselves (a cancellation or a nonce filler), not a call.
    pub fn is_to_self(&self, tx: &SignedEvmTx) -> bool {
        decoded(tx).is_ok_and(|t| t.to_addr() == Some(&self.signer()))
    }

    /// A zero-value transfer to ourselves with `nonce`: fills a nonce that was taken and lost
    /// (recorded transactions above it could never be mined otherwise).
    pub async fn filler(&self, nonce: u64, at: DateTime<Utc>) -> Result<SignedEvmTx, SubmitError> {
        let (max_fee, tip) = self.fees().await?;
        let req = Eip1559TransactionRequest::new()
            .from(self.signer())
            .to(self.signer())
            .value(U256::zero())
            .gas(TRANSFER_GAS)
            .nonce(nonce)
            .max_fee_per_gas(max_fee)
            .max_priority_fee_per_gas(tip)
            .chain_id(self.chain_id);
        self.sign_request(req, at)
    }

    /// Sends a signed transaction. Sending one the node already has, or whose nonce is already
    /// mined, is not an error: the receipts decide what happened. The answer comes from the
    /// pool's current endpoint; every other endpoint is sent the same bytes in the background
    /// (each within the time-out), so one node that accepts but does not propagate cannot hold a
    /// payout back.
    pub async fn broadcast(&self, tx: &SignedEvmTx) -> Result<(), SubmitError> {
        let raw = Bytes::from(tx.raw.clone());
        for i in 0..self.pool.len() {
            let (Some(p), timeout) = (self.pool.client(i).cloned(), self.pool.timeout()) else {
                continue;
            };
            let raw = raw.clone();
            tokio::spawn(async move {
                // Its answer is the current endpoint's business; this copy only spreads it.
                let _ = tokio::time::timeout(timeout, p.send_raw_transaction(raw)).await;
            });
        }
        let sent = self
            .rpc("eth_sendRawTransaction", |p| {
                let raw = raw.clone();
                async move {
                    p.send_raw_transaction(raw)
                        .await
                        .map(|pending| pending.tx_hash())
                }
            })
            .await?;
        match sent {
            Ok(_) => Ok(()),
            Err(answer) => {
                let a = answer.to_lowercase();
                let benign = [
                    "already known",
                    "already imported",
                    "known transaction",
                    "nonce too low",
                ];
                if benign.iter().any(|b| a.contains(b)) {
                    Ok(())
                } else {
                    Err(SubmitError::Refused(answer))
                }
            }
        }
    }

    /// Whether transaction `hash` is in a block of the canonical chain, and how it went.
    pub async fn receipt(&self, hash: &str) -> Result<Option<Mined>, SubmitError> {
        let hash: TxHash = hash
            .parse()
            .map_err(|_| SubmitError::Config(format!("`{hash}` is not a transaction hash")))?;
        let receipt = self
            .rpc("eth_getTransactionReceipt", |p| async move {
                p.get_transaction_receipt(hash).await
            })
            .await?
            .map_err(SubmitError::Refused)?;
        let released_sig = self.abi.abi().event("Released").map(|e| e.signature());
        let refused_sig = self
            .abi
            .abi()
            .event("ReleaseRefused")
            .map(|e| e.signature());
        Ok(receipt.and_then(|r| {
            let block = r.block_number?.as_u64();
            let mut released = Vec::new();
            let mut refused = Vec::new();
            for log in r.logs.iter().filter(|l| l.address == self.escrow) {
                let (Some(topic0), Some(id)) = (log.topics.first(), log.topics.get(1)) else {
                    continue;
                };
                if released_sig.as_ref().is_ok_and(|s| s == topic0) {
                    released.push(id.0);
                } else if refused_sig.as_ref().is_ok_and(|s| s == topic0) {
                    let reason = ethers::abi::decode(&[ParamType::Bytes], &log.data)
                        .ok()
                        .and_then(|t| t.into_iter().next())
                        .and_then(Token::into_bytes)
                        .map_or_else(
                            || "undecodable reason".to_owned(),
                            // No data: the token call ran out of gas or reverted bare.
                            |b| {
                                if b.is_empty() {
                                    String::new()
                                } else {
                                    describe_revert(&b)
                                }
                            },
                        );
                    refused.push((id.0, reason));
                }
            }
            Some(Mined {
                block,
                success: r.status == Some(U64::one()),
                released,
                refused,
            })
        }))
    }

    /// The latest block's gas limit.
    pub async fn block_gas_limit(&self) -> Result<u64, SubmitError> {
        let block = self
            .rpc("eth_getBlockByNumber", |p| async move {
                p.get_block(BlockNumber::Latest).await
            })
            .await?
            .map_err(SubmitError::Refused)?
            .ok_or_else(|| SubmitError::Rpc("no latest block".into()))?;
        Ok(block.gas_limit.low_u64())
    }

    /// Whether the escrow has `releaseBatch` (an escrow deployed before it has not): an empty
    /// batch, called from the signer, succeeds only there.
    pub async fn supports_release_batch(&self) -> Result<bool, SubmitError> {
        let data = self.calldata(&EscrowCall::ReleaseBatch(Vec::new()))?;
        let call: TypedTransaction = Eip1559TransactionRequest::new()
            .from(self.signer())
            .to(self.escrow)
            .data(data)
            .into();
        let answer = self
            .rpc("eth_call", |p| {
                let call = call.clone();
                async move { p.call(&call, None).await }
            })
            .await?;
        Ok(answer.is_ok())
    }

    /// Whether the escrow has settled `transfer_id` as of `block` (latest when `None`).
    pub async fn settled_at(
        &self,
        transfer_id: [u8; 32],
        block: Option<u64>,
    ) -> Result<bool, SubmitError> {
        let data = self
            .abi
            .encode("settled", transfer_id)
            .map_err(|e| SubmitError::Config(format!("escrow call: {e}")))?;
        let call: TypedTransaction = Eip1559TransactionRequest::new()
            .to(self.escrow)
            .data(data)
            .into();
        let at: Option<BlockId> = block.map(|b| BlockNumber::Number(b.into()).into());
        let answer = self
            .rpc("eth_call", |p| {
                let call = call.clone();
                async move { p.call(&call, at).await }
            })
            .await?
            .map_err(SubmitError::Refused)?;
        self.abi
            .decode_output::<bool, _>("settled", answer)
            .map_err(|e| SubmitError::Rpc(format!("settled(): {e}")))
    }

    /// Whether the escrow has settled `transfer_id`: at the latest block, and at the newest final
    /// block. A payout made by someone else with this key (or by a node that kept no record) is
    /// found this way.
    pub async fn settled_on_chain(
        &self,
        transfer_id: [u8; 32],
    ) -> Result<(bool, bool), SubmitError> {
        let head = self.head().await?;
        let latest = self.settled_at(transfer_id, Some(head)).await?;
        let at_final = latest
            && self
                .settled_at(transfer_id, Some(head.saturating_sub(self.confirmations)))
                .await?;
        Ok((latest, at_final))
    }

    /// Why our transaction `tx`, mined and reverted in `block`, reverted: the same call replayed
    /// on the state before that block, decoded. `None` when the replay does not revert.
    pub async fn revert_reason(&self, tx: &SignedEvmTx, block: u64) -> Option<String> {
        let mut call = decoded(tx).ok()?;
        call.set_from(self.signer());
        let at: BlockId = BlockNumber::Number(block.saturating_sub(1).into()).into();
        match self
            .rpc("eth_call", |p| {
                let call = call.clone();
                async move { p.call(&call, Some(at)).await }
            })
            .await
        {
            Ok(Err(answer)) => Some(answer),
            _ => None,
        }
    }
}

/// One of our recorded transactions, decoded.
fn decoded(tx: &SignedEvmTx) -> Result<TypedTransaction, SubmitError> {
    let rlp = ethers::utils::rlp::Rlp::new(&tx.raw);
    TypedTransaction::decode_signed(&rlp)
        .map(|(t, _)| t)
        .map_err(|e| SubmitError::Config(format!("recorded transaction {}: {e}", tx.hash)))
}

/// A revert's data by name and arguments: a custom error of the escrow or a Meridian token
/// (`InsufficientBalance(0x…, 69025000, 158602500)`), a Solidity `Error(string)`, else raw hex.
pub fn describe_revert(data: &[u8]) -> String {
    let raw = || format!("0x{}", ethers::utils::hex::encode(data));
    if data.len() < 4 {
        return raw();
    }
    // Error(string)
    if data[..4] == [0x08, 0xc3, 0x79, 0xa0] {
        if let Ok(tokens) = ethers::abi::decode(&[ParamType::String], &data[4..]) {
            if let Some(ethers::abi::Token::String(s)) = tokens.into_iter().next() {
                return s;
            }
        }
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
        let reason = ethers::abi::encode(&[ethers::abi::Token::String("nope".into())]);
        assert_eq!(
            describe_revert(&[&[0x08, 0xc3, 0x79, 0xa0][..], &reason].concat()),
            "nope"
        );
    }
}
