//! Block references: the hash chain watchers follow to notice reorgs.

use serde::{Deserialize, Serialize};

/// A block as far as reorg detection cares: its height, its hash and its parent's hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    /// Height (block number).
    pub height: u64,
    /// Block hash (0x-hex for EVM).
    pub hash: String,
    /// Parent's hash, when known.
    pub parent_hash: Option<String>,
}
