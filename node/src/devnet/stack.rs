//! Deploys Meridian's contracts (CBDC token, stablecoin, bridge escrow) onto a dev chain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ethers::abi::{Abi, Tokenize};
use ethers::contract::{Contract, ContractFactory};
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Provider};
use ethers::signers::{LocalWallet, Signer};
use ethers::types::{Address, Bytes, U256};
use meridian_relayer::contracts as art;

/// Anvil's well-known development keys (from its default mnemonic); never use them elsewhere.
pub const DEV_KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// The escrow's relayer on every dev chain: anvil's tenth development key, which nothing else
/// signs with — the relay's nonces are its own (one nonce authority per signer).
pub const RELAYER_KEY: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

/// A client that signs with one dev key.
pub type DevClient = SignerMiddleware<Provider<Http>, LocalWallet>;

/// A signing client for dev key `index` on the chain at `rpc_url`.
pub fn dev_client(rpc_url: &str, chain_id: u64, index: usize) -> anyhow::Result<Arc<DevClient>> {
    key_client(
        rpc_url,
        chain_id,
        DEV_KEYS.get(index).context("no such dev key")?,
    )
}

/// A signing client for `key` (hex) on the chain at `rpc_url`.
pub fn key_client(rpc_url: &str, chain_id: u64, key: &str) -> anyhow::Result<Arc<DevClient>> {
    let provider = Provider::<Http>::try_from(rpc_url)?.interval(Duration::from_millis(50));
    let wallet: LocalWallet = key.parse::<LocalWallet>()?.with_chain_id(chain_id);
    Ok(Arc::new(SignerMiddleware::new(provider, wallet)))
}

/// The escrow relayer's address ([`RELAYER_KEY`]).
pub fn relayer_address() -> anyhow::Result<Address> {
    Ok(RELAYER_KEY.parse::<LocalWallet>()?.address())
}

/// The deployed contracts of one chain.
#[derive(Debug, Clone)]
pub struct Stack {
    /// CBDC token (2 decimals); the deployer is its issuer.
    pub cbdc: Address,
    /// Stablecoin (6 decimals); the deployer is its owner.
    pub stablecoin: Address,
    /// Bridge escrow; [`RELAYER_KEY`] is its relayer.
    pub escrow: Address,
}

/// Deploys a contract from its ABI and creation bytecode (hex) with constructor `args`.
pub async fn deploy<T: Tokenize>(
    client: Arc<DevClient>,
    abi: &str,
    bin: &str,
    args: T,
) -> anyhow::Result<Address> {
    let abi: Abi = serde_json::from_str(abi)?;
    let code = Bytes::from(ethers::utils::hex::decode(bin.trim())?);
    let contract = ContractFactory::new(abi, code, client)
        .deploy(args)?
        .send()
        .await?;
    Ok(contract.address())
}

/// Deploys the three contracts with `client`'s key as issuer and owner, and [`RELAYER_KEY`] as
/// the escrow's relayer.
pub async fn deploy_stack(client: Arc<DevClient>) -> anyhow::Result<Stack> {
    let me = client.address();
    let cbdc = deploy(
        client.clone(),
        art::CBDC_TOKEN_ABI,
        art::CBDC_TOKEN_BIN,
        ("Digital Euro".to_string(), "DEUR".to_string(), 2u8, me),
    )
    .await
    .context("deploying CbdcToken")?;
    let stablecoin = deploy(
        client.clone(),
        art::STABLECOIN_ABI,
        art::STABLECOIN_BIN,
        ("Meridian USD".to_string(), "USDM".to_string(), 6u8),
    )
    .await
    .context("deploying Stablecoin")?;
    let escrow = deploy(
        client.clone(),
        art::BRIDGE_ESCROW_ABI,
        art::BRIDGE_ESCROW_BIN,
        relayer_address()?,
    )
    .await
    .context("deploying BridgeEscrow")?;
    Ok(Stack {
        cbdc,
        stablecoin,
        escrow,
    })
}

/// Handles on the deployed contracts for one signer.
pub struct StackClient {
    /// CBDC token.
    pub cbdc: Contract<DevClient>,
    /// Stablecoin.
    pub stablecoin: Contract<DevClient>,
    /// Escrow.
    pub escrow: Contract<DevClient>,
}

impl StackClient {
    /// Binds `stack` to `client`.
    pub fn new(stack: &Stack, client: Arc<DevClient>) -> anyhow::Result<StackClient> {
        let abi = |s: &str| serde_json::from_str::<Abi>(s);
        Ok(StackClient {
            cbdc: Contract::new(stack.cbdc, abi(art::CBDC_TOKEN_ABI)?, client.clone()),
            stablecoin: Contract::new(stack.stablecoin, abi(art::STABLECOIN_ABI)?, client.clone()),
            escrow: Contract::new(stack.escrow, abi(art::BRIDGE_ESCROW_ABI)?, client),
        })
    }

    /// Sends a state-changing call and waits for its receipt; reverts become errors.
    pub async fn send<T: Tokenize>(
        contract: &Contract<DevClient>,
        method: &str,
        args: T,
    ) -> anyhow::Result<()> {
        let call = contract.method::<_, ()>(method, args)?;
        let pending = call
            .send()
            .await
            .with_context(|| format!("sending {method}"))?;
        let receipt = pending
            .await?
            .with_context(|| format!("{method}: no receipt"))?;
        if receipt.status != Some(1u64.into()) {
            anyhow::bail!("{method} reverted");
        }
        Ok(())
    }

    /// Mints CBDC (issuer only).
    pub async fn mint_cbdc(&self, to: Address, amount: u128) -> anyhow::Result<()> {
        Self::send(&self.cbdc, "mint", (to, U256::from(amount))).await
    }

    /// Burns CBDC from `from` (issuer only).
    pub async fn burn_cbdc(&self, from: Address, amount: u128) -> anyhow::Result<()> {
        Self::send(&self.cbdc, "burn", (from, U256::from(amount))).await
    }

    /// Mints stablecoin (owner only).
    pub async fn mint_stable(&self, to: Address, amount: u128) -> anyhow::Result<()> {
        Self::send(&self.stablecoin, "mint", (to, U256::from(amount))).await
    }

    /// Transfers stablecoin from this signer.
    pub async fn transfer_stable(&self, to: Address, amount: u128) -> anyhow::Result<()> {
        Self::send(&self.stablecoin, "transfer", (to, U256::from(amount))).await
    }

    /// Approves the escrow to take this signer's stablecoin.
    pub async fn approve_escrow(&self) -> anyhow::Result<()> {
        Self::send(
            &self.stablecoin,
            "approve",
            (self.escrow.address(), U256::MAX),
        )
        .await
    }

    /// Locks stablecoin in the escrow for a cross-border transfer.
    pub async fn lock(
        &self,
        amount: u128,
        dest_chain: &str,
        recipient: &str,
        dest_asset: &str,
        deadline: u64,
    ) -> anyhow::Result<()> {
        Self::send(
            &self.escrow,
            "lock",
            (
                self.stablecoin.address(),
                U256::from(amount),
                dest_chain.to_string(),
                recipient.to_string(),
                dest_asset.to_string(),
                deadline,
            ),
        )
        .await
    }
}
