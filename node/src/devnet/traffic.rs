//! Random but realistic traffic on the dev chains: CBDC mints and burns, stablecoin transfers
//! and cross-chain remittance locks, between the EVM chains and to and from the Substrate chain.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tracing::{info, warn};

use meridian_types::RemittanceMemo;

use super::{dev_address, dev_client, DevChain, DevSubstrate, StackClient};

/// Users (dev keys 1..=3) and the operator (dev key 0) on each chain.
pub struct TrafficGenerator {
    chains: Vec<ChainTraffic>,
    substrate: Option<SubstrateTraffic>,
}

/// The Substrate chain's users, and where their remittances go (an EVM chain's stablecoin).
struct SubstrateTraffic {
    chain: Arc<DevSubstrate>,
    dest_asset: String,
}

struct ChainTraffic {
    id: String,
    operator: StackClient,
    users: Vec<StackClient>,
    /// Where locks go: (CAIP-2 chain, CAIP-19 stablecoin) of another chain.
    dest: (String, String),
    /// Locks into the Substrate chain: (CAIP-2 chain, CAIP-19 stablecoin, its users' addresses).
    to_substrate: Option<(String, String, Vec<String>)>,
}

const USERS: usize = 3;

impl TrafficGenerator {
    /// Clients for every chain (at least two, so remittances have somewhere to go).
    pub fn new(chains: &[DevChain]) -> anyhow::Result<TrafficGenerator> {
        anyhow::ensure!(chains.len() >= 2, "traffic needs two chains");
        let mut out = Vec::new();
        for (i, c) in chains.iter().enumerate() {
            let other = &chains[(i + 1) % chains.len()];
            let url = c.anvil.http_url();
            let operator = StackClient::new(&c.stack, dev_client(&url, c.anvil.chain_id, 0)?)?;
            let users = (1..=USERS)
                .map(|k| StackClient::new(&c.stack, dev_client(&url, c.anvil.chain_id, k)?))
                .collect::<anyhow::Result<_>>()?;
            out.push(ChainTraffic {
                id: c.id().to_string(),
                operator,
                users,
                dest: (other.id().to_string(), other.stable_asset().to_string()),
                to_substrate: None,
            });
        }
        Ok(TrafficGenerator {
            chains: out,
            substrate: None,
        })
    }

    /// Adds the Substrate chain: its users transfer and remit to `hub`, and `hub`'s users
    /// remit to them.
    pub fn with_substrate(mut self, sub: Arc<DevSubstrate>, hub: &DevChain) -> TrafficGenerator {
        if let Some(c) = self
            .chains
            .iter_mut()
            .find(|c| c.id == hub.id().to_string())
        {
            c.to_substrate = Some((
                sub.chain.to_string(),
                sub.stable_asset().to_string(),
                (0..sub.users()).map(|i| sub.user_address(i)).collect(),
            ));
        }
        self.substrate = Some(SubstrateTraffic {
            chain: sub,
            dest_asset: hub.stable_asset().to_string(),
        });
        self
    }

    /// Funds users, then sends one random transaction every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        for c in &self.chains {
            if let Err(e) = c.fund().await {
                warn!(chain = %c.id, error = %e, "funding devnet users failed; traffic stops");
                return;
            }
        }
        info!("traffic generator started");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            let chains = self.chains.len() + usize::from(self.substrate.is_some());
            let (ci, action, user, amount) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_range(0..chains),
                    rng.gen_range(0..5u8),
                    rng.gen_range(0..USERS),
                    rng.gen_range(1..500u128),
                )
            };
            if let (Some(sub), true) = (&self.substrate, ci == self.chains.len()) {
                let result = tokio::select! {
                    r = sub.act(action, user, amount) => r,
                    _ = shutdown.changed() => return,
                };
                if let Err(e) = result {
                    warn!(chain = %sub.chain.chain, error = %e, "devnet extrinsic failed");
                }
                continue;
            }
            let c = &self.chains[ci];
            let result = tokio::select! {
                r = c.act(action, user, amount) => r,
                _ = shutdown.changed() => return,
            };
            if let Err(e) = result {
                warn!(chain = %c.id, error = %e, "devnet transaction failed");
            }
        }
    }
}

impl ChainTraffic {
    async fn fund(&self) -> anyhow::Result<()> {
        for k in 1..=USERS {
            let who = dev_address(k)?;
            self.operator
                .mint_stable(who, 1_000_000 * 1_000_000)
                .await?;
            self.operator.mint_cbdc(who, 100_000 * 100).await?;
        }
        self.operator
            .mint_cbdc(dev_address(0)?, 1_000_000 * 100)
            .await?;
        // The relay's own stablecoin in the escrow: what it releases to recipients on this
        // chain (the on-chain side of the corridors' destination liquidity).
        self.operator
            .mint_stable(self.operator.escrow.address(), 1_000_000_000 * 1_000_000)
            .await?;
        for u in &self.users {
            u.approve_escrow().await?;
        }
        Ok(())
    }

    async fn act(&self, action: u8, user: usize, amount: u128) -> anyhow::Result<()> {
        let recipient = dev_address(1 + (user + 1) % USERS)?;
        match action {
            0 => {
                self.operator
                    .mint_cbdc(dev_address(1 + user)?, amount * 100)
                    .await
            }
            1 => self.operator.burn_cbdc(dev_address(0)?, amount * 100).await,
            2 => {
                self.users[user]
                    .transfer_stable(recipient, amount * 1_000_000)
                    .await
            }
            3 => {
                let deadline = chrono::Utc::now().timestamp() as u64 + 3_600;
                self.users[user]
                    .lock(
                        amount * 1_000_000,
                        &self.dest.0,
                        &format!("{recipient:#x}"),
                        &self.dest.1,
                        deadline,
                    )
                    .await
            }
            _ => {
                let deadline = chrono::Utc::now().timestamp() as u64 + 3_600;
                match &self.to_substrate {
                    Some((chain, asset, users)) => {
                        self.users[user]
                            .lock(
                                amount * 1_000_000,
                                chain,
                                &users[user % users.len()],
                                asset,
                                deadline,
                            )
                            .await
                    }
                    None => {
                        self.operator
                            .mint_cbdc(dev_address(1 + user)?, amount)
                            .await
                    }
                }
            }
        }
    }
}

impl SubstrateTraffic {
    async fn act(&self, action: u8, user: usize, amount: u128) -> anyhow::Result<()> {
        use super::substrate_chain::{CBDC_ASSET, STABLE_ASSET};
        match action {
            0 | 1 => {
                self.chain
                    .transfer(user, user + 1, STABLE_ASSET, amount * 1_000_000)
                    .await
            }
            2 => {
                self.chain
                    .transfer(user, user + 2, CBDC_ASSET, amount * 100)
                    .await
            }
            _ => {
                let memo = RemittanceMemo {
                    recipient: format!("{:#x}", dev_address(1 + user % USERS)?),
                    dest_asset: self.dest_asset.parse()?,
                    deadline: Some(chrono::Utc::now().timestamp() as u64 + 3_600),
                };
                self.chain.remit(user, amount * 1_000_000, &memo).await
            }
        }
    }
}
