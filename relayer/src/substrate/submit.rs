//! Delivery on a Substrate chain: an `Assets.transfer_keep_alive` (or
//! `Balances.transfer_keep_alive` for the native token) from the relay's escrow account, signed
//! with its sr25519 key, submitted and watched until it is in a block; finality is then read off
//! the chain's GRANDPA-finalized head.
//!
//! Call indices come from the metadata (`compose_call!` looks pallets and calls up by name).
//! The transaction extensions must be the ones [`AssetTxConfig`] encodes; a runtime with
//! others is refused at start-up with the list it has, instead of sending extrinsics it would
//! reject as `badProof`.

use std::rc::Rc;
use std::sync::Arc;

use parity_scale_codec::{Compact, Decode, Encode};
use sp_core::crypto::{AccountId32, Ss58AddressFormat, Ss58Codec};
use sp_core::{sr25519, Pair, H256};
use sp_runtime::generic::Era;
use substrate_api_client::ac_compose_macros::{compose_extrinsic_offline, rpc_params};
use substrate_api_client::ac_node_api::{Encoded, Metadata};
use substrate_api_client::ac_primitives::extrinsic_params_without_hash_check::{
    ImplicitWithoutHashCheck, TxExtensionWithoutHashCheck,
};
use substrate_api_client::ac_primitives::{
    AccountData, AssetTip, BlakeTwo256, Block, Config, ExtrinsicParams, ExtrinsicSigner,
    GenericAdditionalParams, MultiAddress, MultiSignature, OpaqueExtrinsic, RuntimeVersion,
};
use substrate_api_client::rpc::JsonrpseeClient;
use substrate_api_client::{Api, SubmitAndWatch, XtStatus};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::actor::{Session, SubstrateRpc};
use super::decode::signed_extensions;
use super::source::{
    block_facts, block_hash, extrinsic_hashes, hash_str, header, Header, MetadataCache,
};
use crate::payout::{
    AccountPayouts, Inclusion, Payout, PayoutError, PreparedPayout, PAYOUT_VALIDITY_BLOCKS,
};
use crate::source::SourceError;
use meridian_types::{AssetId, ChainId};
use scale_value::At as _;

/// The transaction extensions [`AssetTxConfig`] encodes, in order (Asset Hub runtimes before
/// `CheckMetadataHash`).
pub const ASSET_TX_EXTENSIONS: [&str; 8] = [
    "CheckNonZeroSender",
    "CheckSpecVersion",
    "CheckTxVersion",
    "CheckGenesis",
    "CheckMortality",
    "CheckNonce",
    "CheckWeight",
    "ChargeAssetTxPayment",
];

/// Extrinsic parameters for runtimes whose extensions are [`ASSET_TX_EXTENSIONS`]:
/// explicit (era, compact nonce, asset tip), implicit (spec and tx version, genesis, era
/// checkpoint).
#[derive(Decode, Encode, Clone, Eq, PartialEq, Debug)]
pub struct AssetTxParams {
    era: Era,
    nonce: u32,
    tip: AssetTip<u128>,
    spec_version: u32,
    transaction_version: u32,
    genesis_hash: H256,
    mortality_checkpoint: H256,
}

impl ExtrinsicParams<u32, H256> for AssetTxParams {
    type AdditionalParams = GenericAdditionalParams<AssetTip<u128>, H256>;
    type TxExtension = TxExtensionWithoutHashCheck<AssetTip<u128>, u32>;
    type Implicit = ImplicitWithoutHashCheck<H256>;

    fn new(
        spec_version: u32,
        transaction_version: u32,
        nonce: u32,
        genesis_hash: H256,
        p: Self::AdditionalParams,
    ) -> Self {
        AssetTxParams {
            era: p.era,
            tip: p.tip,
            nonce,
            spec_version,
            transaction_version,
            genesis_hash,
            mortality_checkpoint: p.mortality_checkpoint.unwrap_or(genesis_hash),
        }
    }

    fn transaction_extension(&self) -> Self::TxExtension {
        TxExtensionWithoutHashCheck::new(self.era, self.nonce, self.tip)
    }

    fn implicit(&self) -> Self::Implicit {
        (
            (),
            self.spec_version,
            self.transaction_version,
            self.genesis_hash,
            self.mortality_checkpoint,
            (),
            (),
            (),
        )
    }
}

/// substrate-api-client configuration for Asset Hub-style runtimes.
#[derive(Decode, Encode, Clone, Eq, PartialEq, Debug)]
pub struct AssetTxConfig;

impl Config for AssetTxConfig {
    type Index = u32;
    type BlockNumber = u32;
    type Hash = H256;
    type AccountId = AccountId32;
    type Address = MultiAddress<AccountId32, ()>;
    type Signature = MultiSignature;
    type Hasher = BlakeTwo256;
    type Header = Header;
    type AccountData = AccountData<u128>;
    type ExtrinsicParams = AssetTxParams;
    type CryptoKey = sr25519::Pair;
    type ExtrinsicSigner = ExtrinsicSigner<Self>;
    type Block = Block<Header, OpaqueExtrinsic>;
    type Balance = u128;
    type ContractCurrency = u128;
    type StakingBalance = u128;
}

/// Why a delivery could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SubstrateSubmitError {
    /// The chain could not be reached.
    #[error(transparent)]
    Rpc(#[from] SourceError),
    /// Bad key, address or call.
    #[error("invalid delivery input: {0}")]
    Invalid(String),
    /// The runtime's transaction extensions are not the ones this signer encodes.
    #[error("runtime transaction extensions {found:?} are not supported (expected {expected:?})")]
    UnsupportedRuntime {
        /// The runtime's.
        found: Vec<String>,
        /// Ours.
        expected: Vec<String>,
    },
    /// The chain refused or failed the extrinsic.
    #[error("extrinsic refused: {0}")]
    Refused(String),
}

/// What to transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubstrateAsset {
    /// The native token (Balances pallet).
    Native,
    /// An Assets-pallet asset by id.
    Asset(u32),
}

/// An extrinsic that is in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    /// Extrinsic hash (0x-hex).
    pub extrinsic: String,
    /// Hash of the including block (0x-hex).
    pub block: String,
}

/// Whether an included block is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finality {
    /// At or above the finalized head and still canonical (or not yet decided).
    Pending,
    /// Finalized at this height.
    Final(u64),
    /// No longer canonical: the extrinsic must be looked for again.
    Orphaned,
}

/// The `[pallet, call]` index of a call, looked up by name in the metadata.
pub fn call_index(md: &Metadata, pallet: &str, call: &str) -> Result<[u8; 2], String> {
    let p = md
        .pallet_by_name(pallet)
        .ok_or_else(|| format!("the runtime has no pallet {pallet}"))?;
    let c = p
        .call_variant_by_name(call)
        .ok_or_else(|| format!("the runtime has no call {pallet}.{call}"))?;
    Ok([p.index(), c.index])
}

/// The encoded call of a keep-alive transfer of `amount` of `asset` to `dest`.
pub fn transfer_call(
    md: &Metadata,
    asset: SubstrateAsset,
    dest: [u8; 32],
    amount: u128,
) -> Result<Vec<u8>, String> {
    let to = MultiAddress::<AccountId32, ()>::Id(AccountId32::new(dest));
    let mut call = Vec::new();
    match asset {
        SubstrateAsset::Asset(id) => {
            call.extend(call_index(md, "Assets", "transfer_keep_alive")?);
            call.extend(Compact(id).encode());
        }
        SubstrateAsset::Native => {
            call.extend(call_index(md, "Balances", "transfer_keep_alive")?);
        }
    }
    call.extend(to.encode());
    call.extend(Compact(amount).encode());
    Ok(call)
}

/// The encoded call of `Assets.create(id, admin, min_balance)`: a new asset `admin` manages.
pub fn asset_create_call(
    md: &Metadata,
    id: u32,
    admin: [u8; 32],
    min_balance: u128,
) -> Result<Vec<u8>, String> {
    let mut call = call_index(md, "Assets", "create")?.to_vec();
    call.extend(Compact(id).encode());
    call.extend(MultiAddress::<AccountId32, ()>::Id(AccountId32::new(admin)).encode());
    call.extend(min_balance.encode());
    Ok(call)
}

/// The encoded call of `Assets.mint(id, beneficiary, amount)` (by the asset's issuer).
pub fn asset_mint_call(
    md: &Metadata,
    id: u32,
    beneficiary: [u8; 32],
    amount: u128,
) -> Result<Vec<u8>, String> {
    let mut call = call_index(md, "Assets", "mint")?.to_vec();
    call.extend(Compact(id).encode());
    call.extend(MultiAddress::<AccountId32, ()>::Id(AccountId32::new(beneficiary)).encode());
    call.extend(Compact(amount).encode());
    Ok(call)
}

/// The encoded call of `System.remark_with_event(remark)`.
pub fn remark_call(md: &Metadata, remark: &[u8]) -> Result<Vec<u8>, String> {
    let mut call = call_index(md, "System", "remark_with_event")?.to_vec();
    call.extend(remark.to_vec().encode());
    Ok(call)
}

/// The encoded call of `Utility.batch_all(calls)`: all of them or none.
pub fn batch_all_call(md: &Metadata, calls: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut call = call_index(md, "Utility", "batch_all")?.to_vec();
    call.extend(Compact(calls.len() as u32).encode());
    for c in calls {
        call.extend(c);
    }
    Ok(call)
}

/// The dispatch error of a failed extrinsic (`Token(CannotCreate)`, `Module(…)`), without the
/// encoded report substrate-api-client appends; the whole text when there is none.
fn dispatch_error(text: &str) -> String {
    match text.split_once("dispatch_error: ") {
        Some((_, rest)) => rest
            .split(", encoded_report")
            .next()
            .unwrap_or(rest)
            .to_owned(),
        None => text.to_owned(),
    }
}

fn payout_error(e: SubstrateSubmitError) -> PayoutError {
    match e {
        SubstrateSubmitError::Rpc(e) => PayoutError::Rpc(e),
        SubstrateSubmitError::Invalid(why) => PayoutError::Invalid(why),
        other => PayoutError::Refused(other.to_string()),
    }
}

/// Parses a 32-byte sr25519 seed given in hex.
pub fn sr25519_pair(seed_hex: &str) -> Result<sr25519::Pair, SubstrateSubmitError> {
    let bytes = ethers::utils::hex::decode(seed_hex.trim())
        .map_err(|_| SubstrateSubmitError::Invalid("signer key is not hex".into()))?;
    sr25519::Pair::from_seed_slice(&bytes).map_err(|_| {
        SubstrateSubmitError::Invalid("signer key is not a 32-byte sr25519 seed".into())
    })
}

/// Parses an SS58 address into its account bytes.
pub fn account_from_ss58(address: &str) -> Result<[u8; 32], SubstrateSubmitError> {
    AccountId32::from_ss58check(address)
        .map(|a| *a.as_ref())
        .map_err(|e| {
            SubstrateSubmitError::Invalid(format!("`{address}` is not an SS58 address: {e:?}"))
        })
}

/// Sends deliveries on one Substrate chain from the escrow account.
pub struct SubstrateSubmitter {
    rpc: SubstrateRpc,
    cache: Arc<MetadataCache>,
    pair: sr25519::Pair,
    ss58: u16,
    nonce: Mutex<Option<u32>>,
    /// Next height to look at, per payout transaction being looked for.
    scans: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

async fn latest_runtime(
    session: &Session,
    cache: &MetadataCache,
) -> Result<
    (
        H256,
        RuntimeVersion,
        substrate_api_client::ac_node_api::Metadata,
    ),
    String,
> {
    let genesis = block_hash(session, 0)
        .await?
        .ok_or("the node has no genesis block")?;
    let best = header(session, None)
        .await?
        .ok_or("the node has no best block")?;
    let at = best.hash();
    let version: RuntimeVersion = session
        .request("state_getRuntimeVersion", rpc_params![at])
        .await?;
    let (_, md) = cache.at(session, at).await?;
    Ok((genesis, version, (*md).clone()))
}

impl SubstrateSubmitter {
    /// A submitter signing with `pair`; checks the runtime's extensions first.
    pub async fn connect(
        rpc: SubstrateRpc,
        cache: Arc<MetadataCache>,
        pair: sr25519::Pair,
        ss58: u16,
    ) -> Result<SubstrateSubmitter, SubstrateSubmitError> {
        let c = cache.clone();
        let found = rpc
            .call("runtime extensions", move |s| {
                let c = c.clone();
                async move {
                    let (_, _, md) = latest_runtime(&s, &c).await?;
                    Ok(signed_extensions(&md))
                }
            })
            .await?;
        if found != ASSET_TX_EXTENSIONS {
            return Err(SubstrateSubmitError::UnsupportedRuntime {
                found,
                expected: ASSET_TX_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            });
        }
        Ok(SubstrateSubmitter {
            rpc,
            cache,
            pair,
            ss58,
            nonce: Mutex::new(None),
            scans: Default::default(),
        })
    }

    /// The escrow's SS58 address.
    pub fn address(&self) -> String {
        AccountId32::from(self.pair.public())
            .to_ss58check_with_version(Ss58AddressFormat::custom(self.ss58))
    }

    /// Transfers `amount` of `asset` to `dest` and waits until the extrinsic is in a block.
    pub async fn transfer(
        &self,
        asset: SubstrateAsset,
        dest: [u8; 32],
        amount: u128,
    ) -> Result<Included, SubstrateSubmitError> {
        let call = self
            .with_metadata(move |md| transfer_call(md, asset, dest, amount))
            .await?;
        self.submit_call(call).await
    }

    /// Runs `f` on the latest runtime's metadata.
    pub async fn with_metadata<T: Send + 'static>(
        &self,
        f: impl Fn(&Metadata) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<T, SubstrateSubmitError> {
        let cache = self.cache.clone();
        let f = Arc::new(f);
        Ok(self
            .rpc
            .call("metadata", move |s| {
                let (cache, f) = (cache.clone(), f.clone());
                async move {
                    let (_, _, md) = latest_runtime(&s, &cache).await?;
                    f(&md)
                }
            })
            .await?)
    }

    /// Signs the encoded `call` with the next nonce, submits it and waits until it is in a block.
    pub async fn submit_call(&self, call: Vec<u8>) -> Result<Included, SubstrateSubmitError> {
        let mut nonce = self.nonce.lock().await;
        if nonce.is_none() {
            let who = self.address();
            let next: u32 = self
                .rpc
                .call("system_accountNextIndex", move |s| {
                    let who = who.clone();
                    async move { s.request("system_accountNextIndex", rpc_params![who]).await }
                })
                .await?;
            *nonce = Some(next);
        }
        let n = nonce.unwrap_or_default();
        let (cache, pair) = (self.cache.clone(), self.pair.clone());
        let result = self
            .rpc
            .run_once(
                "author_submitAndWatchExtrinsic",
                move |s: Rc<Session>| async move {
                    let (genesis, version, md) = latest_runtime(&s, &cache).await?;
                    let client: JsonrpseeClient = s.client().await?;
                    let mut api = Api::<AssetTxConfig, JsonrpseeClient>::new_offline(
                        genesis, md, version, client,
                    );
                    api.set_signer(ExtrinsicSigner::<AssetTxConfig>::new(pair));
                    let signer = api.signer().ok_or("no signer")?;
                    let call = Encoded(call);
                    let xt = compose_extrinsic_offline!(signer, call, api.extrinsic_params(n));
                    let report = api
                        .submit_and_watch_opaque_extrinsic_until(
                            &xt.encode().into(),
                            XtStatus::InBlock,
                        )
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    let block = report.block_hash.ok_or("no block in the in-block report")?;
                    Ok(Included {
                        extrinsic: hash_str(&report.extrinsic_hash),
                        block: hash_str(&block),
                    })
                },
            )
            .await;
        match result {
            Ok(included) => {
                *nonce = Some(n + 1);
                info!(chain = %self.rpc.chain(), extrinsic = %included.extrinsic, block = %included.block, "extrinsic in block");
                Ok(included)
            }
            Err(e) => {
                // The pool's view of the nonce is the truth after any failure.
                *nonce = None;
                warn!(chain = %self.rpc.chain(), error = %e, "extrinsic failed");
                match e {
                    SourceError::Unavailable { last_error, .. }
                        if last_error.contains("1010")
                            || last_error.contains("FailedExtrinsic")
                            || last_error.contains("Invalid") =>
                    {
                        Err(SubstrateSubmitError::Refused(dispatch_error(&last_error)))
                    }
                    other => Err(other.into()),
                }
            }
        }
    }

    /// Whether the block `block` (0x-hex) is final.
    pub async fn finality(&self, block: &str) -> Result<Finality, SubstrateSubmitError> {
        let hash: H256 = block
            .parse()
            .map_err(|_| SubstrateSubmitError::Invalid(format!("`{block}` is not a block hash")))?;
        Ok(self
            .rpc
            .call("finality", move |s| async move {
                let Some(h) = header(&s, Some(hash)).await? else {
                    return Ok(Finality::Orphaned);
                };
                let number = u64::from(h.number);
                let finalized: H256 = s.request("chain_getFinalizedHead", rpc_params![]).await?;
                let fin = header(&s, Some(finalized))
                    .await?
                    .map_or(0, |f| u64::from(f.number));
                let canonical = block_hash(&s, number).await?;
                Ok(match canonical {
                    Some(c) if c == hash && number <= fin => Finality::Final(number),
                    Some(c) if c == hash => Finality::Pending,
                    _ if number > fin => Finality::Pending,
                    _ => Finality::Orphaned,
                })
            })
            .await?)
    }
}

impl SubstrateSubmitter {
    async fn next_nonce(&self) -> Result<u32, SubstrateSubmitError> {
        let mut nonce = self.nonce.lock().await;
        let n = match *nonce {
            Some(n) => n,
            None => {
                let who = self.address();
                self.rpc
                    .call("system_accountNextIndex", move |s| {
                        let who = who.clone();
                        async move { s.request("system_accountNextIndex", rpc_params![who]).await }
                    })
                    .await?
            }
        };
        *nonce = Some(n + 1);
        Ok(n)
    }

    /// Signs `call` with the next nonce and a mortal era of `period` blocks from the best block,
    /// without sending it.
    pub async fn sign_mortal(
        &self,
        call: Vec<u8>,
        period: u64,
    ) -> Result<PreparedPayout, SubstrateSubmitError> {
        let n = self.next_nonce().await?;
        let (cache, pair) = (self.cache.clone(), self.pair.clone());
        Ok(self
            .rpc
            .run_once("sign", move |s: Rc<Session>| async move {
                let (genesis, version, md) = latest_runtime(&s, &cache).await?;
                let best = header(&s, None)
                    .await?
                    .ok_or("the node has no best block")?;
                let current = u64::from(best.number);
                let era = Era::mortal(period, current);
                let birth = era.birth(current);
                let checkpoint = block_hash(&s, birth)
                    .await?
                    .ok_or("the era's birth block is unknown")?;
                let client: JsonrpseeClient = s.client().await?;
                let mut api = Api::<AssetTxConfig, JsonrpseeClient>::new_offline(
                    genesis, md, version, client,
                );
                api.set_signer(ExtrinsicSigner::<AssetTxConfig>::new(pair));
                api.set_additional_params(GenericAdditionalParams::new().era(era, checkpoint));
                let signer = api.signer().ok_or("no signer")?;
                let call = Encoded(call);
                let xt = compose_extrinsic_offline!(signer, call, api.extrinsic_params(n));
                let bytes = xt.encode();
                Ok(PreparedPayout {
                    tx: hash_str(&H256(sp_core::hashing::blake2_256(&bytes))),
                    valid_until: era.death(current).saturating_sub(1),
                    bytes,
                })
            })
            .await?)
    }

    /// Sends signed extrinsic bytes to the pool (`author_submitExtrinsic`).
    pub async fn submit_bytes(&self, bytes: &[u8]) -> Result<(), SubstrateSubmitError> {
        let hex = format!("0x{}", ethers::utils::hex::encode(bytes));
        let result = self
            .rpc
            .run_once("author_submitExtrinsic", move |s: Rc<Session>| async move {
                s.request::<H256>("author_submitExtrinsic", rpc_params![hex])
                    .await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                *self.nonce.lock().await = None;
                Err(SubstrateSubmitError::Refused(e.to_string()))
            }
        }
    }
}

#[async_trait::async_trait]
impl AccountPayouts for SubstrateSubmitter {
    fn chain(&self) -> &ChainId {
        self.rpc.chain()
    }

    async fn prepare(&self, payout: &Payout) -> Result<PreparedPayout, PayoutError> {
        let asset = if payout.asset == AssetId::substrate_native(self.rpc.chain()) {
            SubstrateAsset::Native
        } else {
            let id = payout
                .asset
                .substrate_asset_of()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| {
                    PayoutError::Invalid(format!("{} is not an asset of this chain", payout.asset))
                })?;
            SubstrateAsset::Asset(id)
        };
        let dest = account_from_ss58(&payout.to).map_err(payout_error)?;
        let (amount, marker) = (payout.amount, payout.marker.render().into_bytes());
        let call = self
            .with_metadata(move |md| {
                batch_all_call(
                    md,
                    &[
                        transfer_call(md, asset, dest, amount)?,
                        remark_call(md, &marker)?,
                    ],
                )
            })
            .await
            .map_err(payout_error)?;
        self.sign_mortal(call, PAYOUT_VALIDITY_BLOCKS)
            .await
            .map_err(payout_error)
    }

    async fn broadcast(&self, prepared: &PreparedPayout) -> Result<(), PayoutError> {
        self.submit_bytes(&prepared.bytes)
            .await
            .map_err(payout_error)
    }

    async fn final_height(&self) -> Result<u64, PayoutError> {
        Ok(self
            .rpc
            .call("chain_getFinalizedHead", |s| async move {
                let hash: H256 = s.request("chain_getFinalizedHead", rpc_params![]).await?;
                Ok(header(&s, Some(hash))
                    .await?
                    .map_or(0, |h| u64::from(h.number)))
            })
            .await?)
    }

    async fn inclusion(&self, tx: &str, valid_until: u64) -> Result<Inclusion, PayoutError> {
        let target: H256 = tx
            .parse()
            .map_err(|_| PayoutError::Invalid(format!("`{tx}` is not an extrinsic hash")))?;
        let final_height = self.final_height().await?;
        let first = {
            let scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
            scans
                .get(tx)
                .copied()
                .unwrap_or_else(|| valid_until.saturating_sub(PAYOUT_VALIDITY_BLOCKS + 1))
        };
        let last = final_height.min(valid_until);
        if first > last {
            return Ok(Inclusion::Unknown);
        }
        let cache = self.cache.clone();
        let found = self
            .rpc
            .call("scan for payout", move |s| {
                let cache = cache.clone();
                async move {
                    for height in first..=last {
                        let Some(hashes) = extrinsic_hashes(&s, height).await? else {
                            continue;
                        };
                        if let Some(i) = hashes.iter().position(|h| *h == target) {
                            let facts = block_facts(s.clone(), cache.clone(), height)
                                .await?
                                .ok_or("block vanished")?;
                            let failed = facts.events.iter().find(|e| {
                                e.extrinsic == Some(i as u32)
                                    && e.pallet == "System"
                                    && e.variant == "ExtrinsicFailed"
                            });
                            return Ok(Some(match failed {
                                Some(e) => Inclusion::Failed {
                                    height,
                                    reason: e
                                        .fields
                                        .at("dispatch_error")
                                        .map_or_else(|| e.fields.to_string(), |v| v.to_string()),
                                },
                                None => Inclusion::Succeeded { height },
                            }));
                        }
                    }
                    Ok(None)
                }
            })
            .await?;
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        match found {
            Some(inclusion) => {
                scans.remove(tx);
                Ok(inclusion)
            }
            None => {
                scans.insert(tx.to_owned(), last + 1);
                Ok(Inclusion::Unknown)
            }
        }
    }
}
