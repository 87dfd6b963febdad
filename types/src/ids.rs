//! Chain-agnostic identifiers (CAIP-2 chains, CAIP-10 accounts, CAIP-19 assets).
//!
//! Identifiers are validated once when they enter the system (config, decoded events, GraphQL
//! input) so that everything downstream can treat them as opaque, comparable strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string does not have the `namespace:reference` shape of CAIP-2.
    #[error("`{0}` is not a CAIP-2 chain id (expected `namespace:reference`, e.g. `eip155:1`)")]
    ChainId(String),
    /// The string does not have the `chain/namespace:reference` shape of CAIP-19.
    #[error("`{0}` is not a CAIP-19 asset id (expected e.g. `eip155:1/erc20:0xabc…`)")]
    AssetId(String),
    /// The string does not have the `chain:address` shape of CAIP-10.
    #[error("`{0}` is not a CAIP-10 account id (expected e.g. `eip155:1:0xabc…`)")]
    AccountId(String),
}

/// The family a chain belongs to; decides which watcher and submitter serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainFamily {
    /// Ethereum-compatible chains (`eip155:*`).
    Evm,
    /// Substrate/Polkadot chains (`polkadot:*`).
    Substrate,
    /// CometBFT/Cosmos SDK chains (`cosmos:*`).
    Cometbft,
}

impl ChainFamily {
    /// The CAIP-2 namespace chains of this family use.
    pub fn namespace(self) -> &'static str {
        match self {
            ChainFamily::Evm => "eip155",
            ChainFamily::Substrate => "polkadot",
            ChainFamily::Cometbft => "cosmos",
        }
    }

    /// Stable lowercase name, as stored and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainFamily::Evm => "evm",
            ChainFamily::Substrate => "substrate",
            ChainFamily::Cometbft => "cometbft",
        }
    }
}

impl fmt::Display for ChainFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_caip_token(s: &str, max_len: usize, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= max_len
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
}

/// A CAIP-2 chain id such as `eip155:31337` or `cosmos:cosmoshub-4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChainId(String);

impl ChainId {
    /// Builds the CAIP-2 id of an EVM chain from its numeric chain id.
    pub fn evm(chain_id: u64) -> Self {
        ChainId(format!("eip155:{chain_id}"))
    }

    /// The namespace part (`eip155`).
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map(|(ns, _)| ns).unwrap_or_default()
    }

    /// The reference part (`31337`).
    pub fn reference(&self) -> &str {
        self.0.split_once(':').map(|(_, r)| r).unwrap_or_default()
    }

    /// The family implied by the namespace, if Meridian knows it.
    pub fn family(&self) -> Option<ChainFamily> {
        match self.namespace() {
            "eip155" => Some(ChainFamily::Evm),
            "polkadot" => Some(ChainFamily::Substrate),
            "cosmos" => Some(ChainFamily::Cometbft),
            _ => None,
        }
    }

    /// For `eip155:*` chains, the numeric EVM chain id.
    pub fn evm_chain_id(&self) -> Option<u64> {
        (self.namespace() == "eip155")
            .then(|| self.reference().parse().ok())
            .flatten()
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ChainId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, reference) = s
            .split_once(':')
            .ok_or_else(|| IdError::ChainId(s.into()))?;
        // CAIP-2: namespace [-a-z0-9]{3,8}, reference [-_a-zA-Z0-9]{1,32}.
        let ns_ok = (3..=8).contains(&ns.len())
            && ns
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ns_ok || !is_caip_token(reference, 32, &['_']) {
            return Err(IdError::ChainId(s.into()));
        }
        Ok(ChainId(s.to_owned()))
    }
}

impl TryFrom<String> for ChainId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ChainId> for String {
    fn from(id: ChainId) -> Self {
        id.0
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CAIP-19 asset id such as `eip155:1/erc20:0x6b17…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetId(String);

impl AssetId {
    /// The asset id of an ERC-20 token; the address is lower-cased so ids compare equal.
    pub fn erc20(chain: &ChainId, address: &str) -> Self {
        AssetId(format!("{chain}/erc20:{}", address.to_ascii_lowercase()))
    }

    /// The asset id of a Cosmos SDK bank denomination (`uatom`, `ibc/27394F…`,
    /// `factory/osmo1…/x`): namespace `bank`, with the characters CAIP-19 forbids
    /// percent-encoded so distinct denoms stay distinct ids.
    pub fn cosmos_denom(chain: &ChainId, denom: &str) -> Self {
        let mut reference = String::with_capacity(denom.len());
        for c in denom.chars() {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                reference.push(c);
            } else {
                for b in c.to_string().bytes() {
                    reference.push_str(&format!("%{b:02X}"));
                }
            }
        }
        AssetId(format!("{chain}/bank:{reference}"))
    }

    /// The bank denomination of a [`AssetId::cosmos_denom`] id.
    pub fn cosmos_denom_of(&self) -> Option<String> {
        let (_, asset) = self.0.split_once('/')?;
        let encoded = asset.strip_prefix("bank:")?;
        let mut bytes = Vec::with_capacity(encoded.len());
        let mut rest = encoded.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' && tail.len() >= 2 {
                let hex = std::str::from_utf8(&tail[..2]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    /// The asset id of an asset of Substrate's Assets pallet, by its numeric id.
    pub fn substrate_asset(chain: &ChainId, asset_id: u128) -> Self {
        AssetId(format!("{chain}/asset:{asset_id}"))
    }

    /// The asset id of a Substrate chain's native balance (Balances pallet).
    pub fn substrate_native(chain: &ChainId) -> Self {
        AssetId(format!("{chain}/native:balances"))
    }

    /// The id of a [`AssetId::substrate_asset`] asset.
    pub fn substrate_asset_of(&self) -> Option<u128> {
        self.0
            .split_once('/')?
            .1
            .strip_prefix("asset:")?
            .parse()
            .ok()
    }

    /// The chain the asset lives on.
    pub fn chain(&self) -> ChainId {
        // Validated at construction, so the prefix is a valid chain id.
        ChainId(
            self.0
                .split_once('/')
                .map(|(c, _)| c)
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AssetId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (chain, asset) = s
            .split_once('/')
            .ok_or_else(|| IdError::AssetId(s.into()))?;
        chain
            .parse::<ChainId>()
            .map_err(|_| IdError::AssetId(s.into()))?;
        let (ns, reference) = asset
            .split_once(':')
            .ok_or_else(|| IdError::AssetId(s.into()))?;
        let ns_ok = (3..=8).contains(&ns.len()) && is_caip_token(ns, 8, &[]);
        if !ns_ok || !is_caip_token(reference, 128, &['.', '%', '_']) {
            return Err(IdError::AssetId(s.into()));
        }
        Ok(AssetId(s.to_owned()))
    }
}

impl TryFrom<String> for AssetId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AssetId> for String {
    fn from(id: AssetId) -> Self {
        id.0
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CAIP-10 account id such as `eip155:1:0xab16…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Builds an account id from a chain and an address in that chain's own format.
    /// EVM addresses are lower-cased so the same account always has the same id.
    pub fn new(chain: &ChainId, address: &str) -> Self {
        let address = if chain.family() == Some(ChainFamily::Evm) {
            address.to_ascii_lowercase()
        } else {
            address.to_owned()
        };
        AccountId(format!("{chain}:{address}"))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (chain, address) = s
            .rsplit_once(':')
            .ok_or_else(|| IdError::AccountId(s.into()))?;
        chain
            .parse::<ChainId>()
            .map_err(|_| IdError::AccountId(s.into()))?;
        if !is_caip_token(address, 128, &['.', '%', '_']) {
            return Err(IdError::AccountId(s.into()));
        }
        Ok(AccountId(s.to_owned()))
    }
}

impl TryFrom<String> for AccountId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosmos_denoms_round_trip_through_asset_ids() {
        let chain: ChainId = "cosmos:osmosis-1".parse().unwrap();
        for denom in [
            "uosmo",
            "ibc/27394FB092D2ECCD56123C74F36E4C1F926001CEADA9CA97EA622B25F41E5EB2",
            "factory/osmo1x/sub:x",
        ] {
            let id = AssetId::cosmos_denom(&chain, denom);
            assert!(id.as_str().parse::<AssetId>().is_ok(), "{id}");
            assert_eq!(id.cosmos_denom_of().as_deref(), Some(denom));
        }
        assert_eq!(
            AssetId::cosmos_denom(&chain, "ibc/A").as_str(),
            "cosmos:osmosis-1/bank:ibc%2FA"
        );
        let sub: ChainId = "polkadot:4545454545".parse().unwrap();
        assert_eq!(
            AssetId::substrate_asset(&sub, 7).substrate_asset_of(),
            Some(7)
        );
        assert_eq!(AssetId::substrate_native(&sub).substrate_asset_of(), None);
    }

    #[test]
    fn chain_ids_parse_and_reject() {
        let id: ChainId = "eip155:31337".parse().unwrap();
        assert_eq!(id.evm_chain_id(), Some(31337));
        assert_eq!(id.family(), Some(ChainFamily::Evm));
        assert_eq!(
            "cosmos:cosmoshub-4".parse::<ChainId>().unwrap().reference(),
            "cosmoshub-4"
        );
        for bad in [
            "",
            "eip155",
            "e:1",
            "eip155:",
            "EIP155:1",
            "eip155:1 2",
            "toolongnamespace:1",
        ] {
            assert!(bad.parse::<ChainId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn asset_and_account_ids_normalise_evm_addresses() {
        let chain = ChainId::evm(1);
        let asset = AssetId::erc20(&chain, "0xABCdef0000000000000000000000000000000001");
        assert_eq!(
            asset.as_str(),
            "eip155:1/erc20:0xabcdef0000000000000000000000000000000001"
        );
        assert_eq!(asset.chain(), chain);
        assert_eq!(asset.as_str().parse::<AssetId>().unwrap(), asset);
        assert!("eip155:1/erc20".parse::<AssetId>().is_err());
        assert!("nochain/erc20:0x1".parse::<AssetId>().is_err());
        let acct = AccountId::new(&chain, "0xAB");
        assert_eq!(acct.as_str(), "eip155:1:0xab");
        assert!("eip155:1:".parse::<AccountId>().is_err());
    }
}
