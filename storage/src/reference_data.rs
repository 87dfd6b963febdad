//! Reference data the operator configures (assets, corridors) and the chain overview.
//!
//! The config file is the source of truth at start-up; it is mirrored into the database so that
//! GraphQL, governance (which changes corridors by proposal) and other nodes see one view.

use chrono::Utc;
use meridian_types::config::{AssetConfig, CorridorConfig};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};

use crate::entities::{assets, chains, checkpoints, corridors};
use crate::{height_from_db, StorageError, Store};

/// A chain as operators see it: head, finalized height, checkpoint and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// CAIP-2 id.
    pub id: String,
    /// Configured name.
    pub name: String,
    /// `evm`, `substrate` or `cometbft`.
    pub family: String,
    /// Last head seen.
    pub head_height: Option<u64>,
    /// Hash of that head.
    pub head_hash: Option<String>,
    /// Highest height the finality rule allows.
    pub finalized_height: Option<u64>,
    /// Last fully ingested height.
    pub checkpoint_height: Option<u64>,
    /// Hash of the checkpoint block.
    pub checkpoint_hash: Option<String>,
    /// When the head was last seen.
    pub updated_at: chrono::DateTime<Utc>,
}

impl ChainStatus {
    /// Blocks between the head and the checkpoint.
    pub fn lag(&self) -> Option<u64> {
        Some(
            self.head_height?
                .saturating_sub(self.checkpoint_height.unwrap_or(0)),
        )
    }
}

impl Store {
    /// Mirrors configured assets and corridors into the database in one transaction.
    pub async fn sync_reference_data(
        &self,
        asset_list: &[AssetConfig],
        corridor_list: &[CorridorConfig],
    ) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let now = Utc::now();
        for a in asset_list {
            assets::Entity::insert(assets::ActiveModel {
                id: Set(a.id.to_string()),
                chain_id: Set(a.id.chain().to_string()),
                symbol: Set(a.symbol.clone()),
                decimals: Set(i16::from(a.decimals)),
                kind: Set(a.kind.as_str().to_owned()),
                listed: Set(true),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(assets::Column::Id)
                    .update_columns([
                        assets::Column::Symbol,
                        assets::Column::Decimals,
                        assets::Column::Kind,
                        assets::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        for c in corridor_list {
            corridors::Entity::insert(corridors::ActiveModel {
                id: Set(c.id.clone()),
                source_chain: Set(c.source_asset.chain().to_string()),
                source_asset: Set(c.source_asset.to_string()),
                dest_chain: Set(c.dest_asset.chain().to_string()),
                dest_asset: Set(c.dest_asset.to_string()),
                fee_bps: Set(i32::try_from(c.fee_bps).unwrap_or(i32::MAX)),
                min_amount: Set(c.min_amount.0.to_string()),
                max_amount: Set(c.max_amount.0.to_string()),
                daily_cap: Set(c.daily_cap.0.to_string()),
                hold_threshold: Set(c.hold_threshold.map(|a| a.0.to_string())),
                paused: Set(c.paused),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(corridors::Column::Id)
                    .update_columns([
                        corridors::Column::SourceChain,
                        corridors::Column::SourceAsset,
                        corridors::Column::DestChain,
                        corridors::Column::DestAsset,
                        corridors::Column::FeeBps,
                        corridors::Column::MinAmount,
                        corridors::Column::MaxAmount,
                        corridors::Column::DailyCap,
                        corridors::Column::HoldThreshold,
                        corridors::Column::Paused,
                        corridors::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Every registered chain with its head and checkpoint, ordered by id.
    pub async fn chain_statuses(&self) -> Result<Vec<ChainStatus>, StorageError> {
        let rows = chains::Entity::find()
            .order_by_asc(chains::Column::Id)
            .all(self.connection())
            .await?;
        let mut cps: std::collections::HashMap<String, checkpoints::Model> =
            checkpoints::Entity::find()
                .all(self.connection())
                .await?
                .into_iter()
                .map(|cp| (cp.chain_id.clone(), cp))
                .collect();
        rows.into_iter()
            .map(|c| {
                let cp = cps.remove(&c.id);
                Ok(ChainStatus {
                    head_height: c
                        .head_height
                        .map(|h| height_from_db("chains", h))
                        .transpose()?,
                    finalized_height: c
                        .finalized_height
                        .map(|h| height_from_db("chains", h))
                        .transpose()?,
                    checkpoint_height: cp
                        .as_ref()
                        .map(|cp| height_from_db("checkpoints", cp.height))
                        .transpose()?,
                    checkpoint_hash: cp.and_then(|cp| cp.block_hash),
                    id: c.id,
                    name: c.name,
                    family: c.family,
                    head_hash: c.head_hash,
                    updated_at: c.updated_at,
                })
            })
            .collect()
    }
}
