//! What can stop a stage of the transfer lifecycle.

use meridian_relayer::evm::SubmitError;
use meridian_relayer::payout::PayoutError;
use meridian_storage::StorageError;

/// A failure of a lifecycle stage. A pass that fails leaves the database as it was before the
/// failing transaction (each write is one transaction) and is retried by the next pass.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The database refused or failed a read or a write.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A configuration value cannot be used; `key` names it as the config file spells it.
    #[error("{key}: {message}")]
    Config {
        /// The config key (`chains[2].signer_key`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The ledger and the database disagree, or a ledger step could not run.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The ledger refused to open or restore an account.
    #[error("ledger: {0}")]
    LedgerRefused(#[from] meridian_executor::LedgerError),
    /// A chain's signer could not be connected at start.
    #[error(transparent)]
    Startup(#[from] meridian_relayer::evm::ChainStartupError),
    /// A stored transfer holds a value that does not parse.
    #[error("transfer {id}: stored {field} `{value}` does not parse")]
    Corrupt {
        /// The transfer.
        id: String,
        /// The column.
        field: &'static str,
        /// What is stored.
        value: String,
    },
    /// An EVM chain could not be asked or told something.
    #[error("EVM payouts: {0}")]
    Evm(#[from] SubmitError),
    /// An account-based chain (Cosmos, Substrate) could not be asked or told something.
    #[error("payouts: {0}")]
    Payout(#[from] PayoutError),
}

impl TransferError {
    /// A [`TransferError::Config`] for `key`.
    pub fn config(key: impl Into<String>, message: impl std::fmt::Display) -> TransferError {
        TransferError::Config {
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// Whether a chain or its RPC failed (worth asking again), rather than the database or the
    /// node's own state.
    pub fn is_chain_fault(&self) -> bool {
        matches!(self, TransferError::Evm(_) | TransferError::Payout(_))
    }
}
