//! Meridian's shared vocabulary.
//!
//! Every crate talks about chains, assets, accounts and chain events in the same terms, and none
//! of these types mention a chain client library (ethers, substrate, tendermint): watchers
//! translate into them at the edge, so the router, executor, governance and GraphQL never depend
//! on how a chain is reached.

pub mod block;
pub mod cluster;
pub mod config;
pub mod event;
pub mod ids;
pub mod memo;
pub mod money;
pub mod relay_action;
pub mod transfer;

pub use block::BlockRef;
pub use event::{ChainEvent, EventId, EventKind, EventPayload, EventStatus, WeightedOption};
pub use ids::{AccountId, AssetId, ChainFamily, ChainId, IdError};
pub use memo::{MemoError, PayoutMarker, RemittanceMemo};
pub use relay_action::RelayAction;
pub use transfer::{transfer_id, AcceptedQuote, QuotedHop, Transfer, TransferState};
