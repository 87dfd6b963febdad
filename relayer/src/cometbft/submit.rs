//! Delivery on a Cosmos SDK chain: a bank send from the relay's escrow account, signed with its
//! secp256k1 key (SIGN_MODE_DIRECT), broadcast with `broadcast_tx_sync` and confirmed by the
//! `/tx` query once a block includes it.
//!
//! The account number and sequence come from the chain (`/cosmos.auth.v1beta1.Query/Account`
//! over `abci_query`); the sequence is then tracked locally and re-read when the chain says it
//! is wrong (code 32), so a restart or a transaction sent by someone else with the same key
//! costs one retry, not a stuck relay.

use std::sync::Arc;

use cosmrs::bank::MsgSend;
use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::prost::Message;
use cosmrs::tx::{Body, Fee, Msg, SignDoc, SignerInfo};
use cosmrs::{AccountId, Coin, Denom};
use meridian_types::ChainId;
use tendermint::Hash;
use tendermint_rpc::Client;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::source::{tx_hash, CometRpcPool};
use crate::payout::{
    AccountPayouts, Inclusion, Payout, PayoutError, PreparedPayout, PAYOUT_VALIDITY_BLOCKS,
};
use crate::source::SourceError;

/// ABCI code of the auth module for a wrong account sequence.
const CODE_WRONG_SEQUENCE: u32 = 32;

/// Why a delivery could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum CosmosSubmitError {
    /// The chain could not be reached.
    #[error(transparent)]
    Rpc(#[from] SourceError),
    /// The signer key, an address or an amount is unusable.
    #[error("invalid delivery input: {0}")]
    Invalid(String),
    /// The chain refused the transaction in CheckTx.
    #[error("chain refused the transaction (code {code}): {log}")]
    Refused {
        /// ABCI code.
        code: u32,
        /// The node's log line.
        log: String,
    },
    /// The escrow account does not exist on the chain (never funded).
    #[error("account {0} does not exist on the chain")]
    NoAccount(String),
}

/// What the chain says about a sent transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosmosTxStatus {
    /// Not in a block (yet).
    Pending,
    /// Included and executed successfully at `height`.
    Succeeded {
        /// The including block.
        height: u64,
    },
    /// Included but failed; nothing moved except the fee.
    Failed {
        /// The including block.
        height: u64,
        /// ABCI code.
        code: u32,
        /// The node's log line.
        log: String,
    },
}

/// Fee and gas of delivery transactions.
#[derive(Debug, Clone)]
pub struct FeeSettings {
    /// Denomination the fee is paid in.
    pub denom: String,
    /// Fee amount per transaction.
    pub amount: u128,
    /// Gas limit per transaction.
    pub gas_limit: u64,
}

/// A signed transaction, ready to broadcast.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// The `TxRaw` bytes.
    pub bytes: Vec<u8>,
    /// CometBFT's name for it.
    pub hash: String,
}

/// Builds and signs a bank send (SIGN_MODE_DIRECT): the exact bytes a Cosmos SDK wallet would
/// broadcast.
#[allow(clippy::too_many_arguments)]
pub fn sign_bank_send(
    key: &SigningKey,
    chain_id: &str,
    account_number: u64,
    sequence: u64,
    to: &str,
    coin: (&str, u128),
    memo: &str,
    fee: &FeeSettings,
    timeout_height: u64,
) -> Result<SignedTx, CosmosSubmitError> {
    let invalid = |e: cosmrs::ErrorReport| CosmosSubmitError::Invalid(e.to_string());
    let to: AccountId = to.parse().map_err(|e: cosmrs::ErrorReport| {
        CosmosSubmitError::Invalid(format!("recipient `{to}`: {e}"))
    })?;
    let from = key.public_key().account_id(to.prefix()).map_err(invalid)?;
    let denom: Denom = coin.0.parse().map_err(invalid)?;
    let fee_denom: Denom = fee.denom.parse().map_err(invalid)?;
    let msg = MsgSend {
        from_address: from,
        to_address: to,
        amount: vec![Coin {
            denom,
            amount: coin.1,
        }],
    }
    .to_any()
    .map_err(invalid)?;
    let timeout = u32::try_from(timeout_height)
        .map_err(|_| CosmosSubmitError::Invalid(format!("timeout height {timeout_height}")))?;
    let body = Body::new(vec![msg], memo, timeout);
    let auth_info = SignerInfo::single_direct(Some(key.public_key()), sequence).auth_info(
        Fee::from_amount_and_gas(
            Coin {
                denom: fee_denom,
                amount: fee.amount,
            },
            fee.gas_limit,
        ),
    );
    let chain_id: tendermint::chain::Id = chain_id
        .parse()
        .map_err(|e: tendermint::Error| CosmosSubmitError::Invalid(e.to_string()))?;
    let raw = SignDoc::new(&body, &auth_info, &chain_id, account_number)
        .map_err(invalid)?
        .sign(key)
        .map_err(invalid)?;
    let bytes = raw.to_bytes().map_err(invalid)?;
    Ok(SignedTx {
        hash: tx_hash(&bytes),
        bytes,
    })
}

/// The bech32 address of `key` with `prefix`.
pub fn address_of(key: &SigningKey, prefix: &str) -> Result<String, CosmosSubmitError> {
    key.public_key()
        .account_id(prefix)
        .map(|a| a.to_string())
        .map_err(|e| CosmosSubmitError::Invalid(e.to_string()))
}

/// Parses a 32-byte secp256k1 key given in hex.
pub fn signing_key(hex: &str) -> Result<SigningKey, CosmosSubmitError> {
    let bytes = ethers::utils::hex::decode(hex.trim())
        .map_err(|_| CosmosSubmitError::Invalid("signer key is not hex".into()))?;
    SigningKey::from_slice(&bytes)
        .map_err(|_| CosmosSubmitError::Invalid("signer key is not a secp256k1 key".into()))
}

struct AccountState {
    number: u64,
    sequence: u64,
}

/// Sends deliveries on one Cosmos SDK chain from the escrow account.
pub struct CosmosSubmitter {
    chain: ChainId,
    pool: Arc<CometRpcPool>,
    key: SigningKey,
    address: String,
    fee: FeeSettings,
    account: Mutex<Option<AccountState>>,
}

impl CosmosSubmitter {
    /// A submitter for `chain` signing with `key`; its address uses `prefix` (`cosmos`, `osmo`…).
    pub fn new(
        pool: Arc<CometRpcPool>,
        key: SigningKey,
        prefix: &str,
        fee: FeeSettings,
    ) -> Result<CosmosSubmitter, CosmosSubmitError> {
        let address = address_of(&key, prefix)?;
        Ok(CosmosSubmitter {
            chain: pool.chain().clone(),
            pool,
            key,
            address,
            fee,
            account: Mutex::new(None),
        })
    }

    /// The address deliveries are paid from.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads the escrow account's number and sequence from the chain.
    async fn load_account(&self) -> Result<AccountState, CosmosSubmitError> {
        let request = QueryAccountRequest {
            address: self.address.clone(),
        }
        .encode_to_vec();
        let answer = self
            .pool
            .call("abci_query(auth/Account)", |c| {
                let request = request.clone();
                async move {
                    c.abci_query(
                        Some("/cosmos.auth.v1beta1.Query/Account".into()),
                        request,
                        None,
                        false,
                    )
                    .await
                }
            })
            .await?;
        if answer.code.is_err() {
            return Err(CosmosSubmitError::NoAccount(format!(
                "{} ({})",
                self.address, answer.log
            )));
        }
        let response = QueryAccountResponse::decode(answer.value.as_slice())
            .map_err(|e| CosmosSubmitError::Invalid(format!("account query answer: {e}")))?;
        let any = response
            .account
            .ok_or_else(|| CosmosSubmitError::NoAccount(self.address.clone()))?;
        let account = BaseAccount::decode(any.value.as_slice()).map_err(|e| {
            CosmosSubmitError::Invalid(format!("account is not a BaseAccount: {e}"))
        })?;
        Ok(AccountState {
            number: account.account_number,
            sequence: account.sequence,
        })
    }

    /// The chain's latest height.
    pub async fn latest_height(&self) -> Result<u64, CosmosSubmitError> {
        let status = self
            .pool
            .call("status", |c| async move { c.status().await })
            .await?;
        Ok(status.sync_info.latest_block_height.value())
    }

    /// Signs a bank send of `amount` `denom` to `to` with `memo`, valid until `timeout_height`
    /// (0: forever), with the account's next sequence, which it reserves.
    pub async fn sign(
        &self,
        to: &str,
        denom: &str,
        amount: u128,
        memo: &str,
        timeout_height: u64,
    ) -> Result<SignedTx, CosmosSubmitError> {
        let mut account = self.account.lock().await;
        if account.is_none() {
            *account = Some(self.load_account().await?);
        }
        let state = account
            .as_mut()
            .ok_or_else(|| CosmosSubmitError::NoAccount(self.address.clone()))?;
        let tx = sign_bank_send(
            &self.key,
            self.chain.reference(),
            state.number,
            state.sequence,
            to,
            (denom, amount),
            memo,
            &self.fee,
            timeout_height,
        )?;
        state.sequence += 1;
        Ok(tx)
    }

    /// Broadcasts signed bytes (`broadcast_tx_sync`); a refusal for a wrong sequence makes the
    /// next [`CosmosSubmitter::sign`] re-read the account.
    pub async fn broadcast(&self, bytes: &[u8]) -> Result<(), CosmosSubmitError> {
        let bytes = bytes.to_vec();
        let answer = self
            .pool
            .call("broadcast_tx_sync", |c| {
                let bytes = bytes.clone();
                async move { c.broadcast_tx_sync(bytes).await }
            })
            .await?;
        let code = answer.code.value();
        if code == 0 {
            return Ok(());
        }
        // Whatever was refused, the reserved sequence was not used: the chain's count is truth.
        *self.account.lock().await = None;
        if code == CODE_WRONG_SEQUENCE {
            warn!(chain = %self.chain, log = %answer.log, "account sequence out of date; re-reading it");
        }
        Err(CosmosSubmitError::Refused {
            code,
            log: answer.log.to_string(),
        })
    }

    /// Signs and broadcasts a bank send of `amount` `denom` to `to` with `memo`; returns the
    /// transaction hash once the node accepted it into its mempool. One retry after the chain
    /// says the sequence is wrong.
    pub async fn send(
        &self,
        to: &str,
        denom: &str,
        amount: u128,
        memo: &str,
    ) -> Result<String, CosmosSubmitError> {
        for attempt in 0..2 {
            let tx = self.sign(to, denom, amount, memo, 0).await?;
            match self.broadcast(&tx.bytes).await {
                Ok(()) => {
                    info!(chain = %self.chain, tx = %tx.hash, %to, amount, %denom, "sent");
                    return Ok(tx.hash);
                }
                Err(CosmosSubmitError::Refused { code, .. })
                    if code == CODE_WRONG_SEQUENCE && attempt == 0 => {}
                Err(e) => return Err(e),
            }
        }
        Err(CosmosSubmitError::Refused {
            code: CODE_WRONG_SEQUENCE,
            log: "account sequence still wrong after re-reading it".into(),
        })
    }

    /// Whether the transaction `hash` is in a block, and how it went.
    pub async fn status(&self, hash: &str) -> Result<CosmosTxStatus, CosmosSubmitError> {
        let hash: Hash = hash
            .parse()
            .map_err(|_| CosmosSubmitError::Invalid(format!("`{hash}` is not a tx hash")))?;
        let answer = self
            .pool
            .call("tx", move |c| async move {
                match c.tx(hash, false).await {
                    Ok(r) => Ok(Some(r)),
                    Err(e) if e.to_string().contains("not found") => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(match answer {
            None => CosmosTxStatus::Pending,
            Some(r) if r.tx_result.code.is_ok() => CosmosTxStatus::Succeeded {
                height: r.height.value(),
            },
            Some(r) => CosmosTxStatus::Failed {
                height: r.height.value(),
                code: r.tx_result.code.value(),
                log: r.tx_result.log,
            },
        })
    }
}

fn payout_error(e: CosmosSubmitError) -> PayoutError {
    match e {
        CosmosSubmitError::Rpc(e) => PayoutError::Rpc(e),
        CosmosSubmitError::Invalid(why) => PayoutError::Invalid(why),
        other @ (CosmosSubmitError::Refused { .. } | CosmosSubmitError::NoAccount(_)) => {
            PayoutError::Refused(other.to_string())
        }
    }
}

#[async_trait::async_trait]
impl AccountPayouts for CosmosSubmitter {
    fn chain(&self) -> &ChainId {
        &self.chain
    }

    async fn prepare(&self, payout: &Payout) -> Result<PreparedPayout, PayoutError> {
        let denom = payout.asset.cosmos_denom_of().ok_or_else(|| {
            PayoutError::Invalid(format!("{} is not a bank denomination", payout.asset))
        })?;
        let valid_until =
            self.latest_height().await.map_err(payout_error)? + PAYOUT_VALIDITY_BLOCKS;
        let tx = self
            .sign(
                &payout.to,
                &denom,
                payout.amount,
                &payout.marker.render(),
                valid_until,
            )
            .await
            .map_err(payout_error)?;
        Ok(PreparedPayout {
            tx: tx.hash,
            valid_until,
            bytes: tx.bytes,
        })
    }

    async fn broadcast(&self, prepared: &PreparedPayout) -> Result<(), PayoutError> {
        CosmosSubmitter::broadcast(self, &prepared.bytes)
            .await
            .map_err(payout_error)
    }

    async fn final_height(&self) -> Result<u64, PayoutError> {
        // CometBFT blocks are final once committed.
        self.latest_height().await.map_err(payout_error)
    }

    async fn inclusion(&self, tx: &str, _valid_until: u64) -> Result<Inclusion, PayoutError> {
        Ok(match self.status(tx).await.map_err(payout_error)? {
            CosmosTxStatus::Pending => Inclusion::Unknown,
            CosmosTxStatus::Succeeded { height } => Inclusion::Succeeded { height },
            CosmosTxStatus::Failed { height, code, log } => Inclusion::Failed {
                height,
                reason: format!("code {code}: {log}"),
            },
        })
    }
}
