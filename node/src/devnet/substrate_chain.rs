//! The devnet's Substrate chain: Chopsticks running Rococo Asset Hub, with two assets created
//! and minted by real extrinsics (a stablecoin and a CBDC), the relay's escrow account funded
//! for deliveries, and users who transfer and send remittances (`Utility.batch_all` of a transfer
//! to the escrow and a `System.remark_with_event` memo).

use std::path::Path;

use anyhow::Context;
use meridian_relayer::substrate::{
    self, batch_all_call, remark_call, sr25519_pair, transfer_call, SubstrateAsset,
    SubstrateSubmitter,
};
use meridian_types::config::{ChainConfig, FinalityRule, Secret};
use meridian_types::{AssetId, ChainId, RemittanceMemo};

use super::ChopsticksNode;

/// Assets-pallet id of the devnet stablecoin (USDH, 6 decimals).
pub const STABLE_ASSET: u32 = 1984;
/// Assets-pallet id of the devnet CBDC (DEURH, 2 decimals).
pub const CBDC_ASSET: u32 = 1985;
/// Seed of the relay's escrow account (dev only).
pub const ESCROW_SEED: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// Users of the chain (dev only): seeds 0x22…, 0x33…, 0x44….
const USER_SEEDS: [u8; 3] = [0x22, 0x33, 0x44];

/// The running Substrate dev chain.
pub struct DevSubstrate {
    /// The Chopsticks process.
    pub node: ChopsticksNode,
    /// CAIP-2 id (`polkadot:` + genesis prefix).
    pub chain: ChainId,
    escrow: SubstrateSubmitter,
    users: Vec<SubstrateSubmitter>,
}

impl DevSubstrate {
    /// Starts Chopsticks on `port`, funds the accounts and issues the assets.
    pub async fn start(
        bin: &Path,
        spec: &Path,
        port: u16,
        log: Option<&Path>,
    ) -> anyhow::Result<DevSubstrate> {
        let node = ChopsticksNode::start(bin, spec, port, log).await?;
        let genesis = node
            .rpc("chain_getBlockHash", serde_json::json!([0]))
            .await?;
        let genesis = genesis.as_str().context("no genesis hash")?;
        let chain: ChainId = format!("polkadot:{}", &genesis[2..34]).parse()?;
        let probe = ChainConfig {
            escrow: None,
            signer_key: None,
            ..chain_config(&chain, &node, "")
        };
        let connected = substrate::connect(0, &probe, &[]).await?;
        let signer = |seed: String| {
            let (rpc, md, ss58) = (
                connected.rpc.clone(),
                connected.metadata.clone(),
                connected.ss58,
            );
            async move {
                let pair = sr25519_pair(&seed)?;
                Ok::<_, anyhow::Error>(SubstrateSubmitter::connect(rpc, md, pair, ss58).await?)
            }
        };
        let escrow = signer(ESCROW_SEED.to_owned()).await?;
        let mut users = Vec::new();
        for seed in USER_SEEDS {
            users.push(signer(format!("{seed:02x}").repeat(32)).await?);
        }
        for who in std::iter::once(&escrow).chain(&users) {
            node.fund(&who.address(), 1_000_000_000_000_000).await?;
        }
        let chain = DevSubstrate {
            node,
            chain,
            escrow,
            users,
        };
        chain.issue().await?;
        Ok(chain)
    }

    async fn issue(&self) -> anyhow::Result<()> {
        let issuer = &self.users[0];
        let issuer_account = substrate::account_from_ss58(&issuer.address())?;
        for asset in [STABLE_ASSET, CBDC_ASSET] {
            let create = issuer
                .with_metadata(move |md| substrate::asset_create_call(md, asset, issuer_account, 1))
                .await?;
            issuer.submit_call(create).await?;
        }
        let mut mints = vec![(
            STABLE_ASSET,
            self.escrow.address(),
            1_000_000_000 * 1_000_000u128,
        )];
        for u in &self.users {
            mints.push((STABLE_ASSET, u.address(), 1_000_000 * 1_000_000));
            mints.push((CBDC_ASSET, u.address(), 100_000 * 100));
        }
        for (asset, to, amount) in mints {
            let to = substrate::account_from_ss58(&to)?;
            let mint = issuer
                .with_metadata(move |md| substrate::asset_mint_call(md, asset, to, amount))
                .await?;
            issuer.submit_call(mint).await?;
        }
        Ok(())
    }

    /// The watcher and delivery config of this chain.
    pub fn chain_config(&self, name: &str) -> ChainConfig {
        ChainConfig {
            escrow: Some(self.escrow.address()),
            ..chain_config(&self.chain, &self.node, name)
        }
    }

    /// CAIP-19 id of the stablecoin.
    pub fn stable_asset(&self) -> AssetId {
        AssetId::substrate_asset(&self.chain, STABLE_ASSET.into())
    }

    /// CAIP-19 id of the CBDC.
    pub fn cbdc_asset(&self) -> AssetId {
        AssetId::substrate_asset(&self.chain, CBDC_ASSET.into())
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// SS58 address of user `i`.
    pub fn user_address(&self, i: usize) -> String {
        self.users[i % self.users.len()].address()
    }

    /// User `from` sends `amount` of `asset` to user `to`.
    pub async fn transfer(
        &self,
        from: usize,
        to: usize,
        asset: u32,
        amount: u128,
    ) -> anyhow::Result<()> {
        let dest = substrate::account_from_ss58(&self.user_address(to))?;
        let user = &self.users[from % self.users.len()];
        let call = user
            .with_metadata(move |md| transfer_call(md, SubstrateAsset::Asset(asset), dest, amount))
            .await?;
        user.submit_call(call).await?;
        Ok(())
    }

    /// User `from` sends a remittance of `amount` stablecoin to the escrow, routed by `memo`.
    pub async fn remit(
        &self,
        from: usize,
        amount: u128,
        memo: &RemittanceMemo,
    ) -> anyhow::Result<()> {
        let escrow = substrate::account_from_ss58(&self.escrow.address())?;
        let memo = memo.render().into_bytes();
        let user = &self.users[from % self.users.len()];
        let call = user
            .with_metadata(move |md| {
                batch_all_call(
                    md,
                    &[
                        transfer_call(md, SubstrateAsset::Asset(STABLE_ASSET), escrow, amount)?,
                        remark_call(md, &memo)?,
                    ],
                )
            })
            .await?;
        user.submit_call(call).await?;
        Ok(())
    }
}

fn chain_config(chain: &ChainId, node: &ChopsticksNode, name: &str) -> ChainConfig {
    ChainConfig {
        id: chain.clone(),
        name: name.to_owned(),
        rpc_urls: vec![node.ws_url().parse().expect("a ws URL")],
        ws_url: None,
        finality: FinalityRule::FinalizedTag,
        start_block: 0,
        log_range_max: 100,
        poll_interval_ms: 500,
        rpc_timeout_ms: 20_000,
        contracts: Vec::new(),
        escrow: None,
        fee: None,
        signer_key: Some(Secret(ESCROW_SEED.to_owned())),
        release_batch_max: meridian_types::config::RELEASE_BATCH_MAX_DEFAULT,
    }
}
