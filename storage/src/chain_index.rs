//! The watcher's side of storage: chain registration, checkpoints, recent block hashes and the
//! atomic commit of a range of events.
//!
//! One [`IngestBatch`] is one database transaction: events, block hashes and the new checkpoint
//! land together or not at all, so a crash anywhere leaves the checkpoint consistent with the
//! events that are stored, and a restart resumes exactly after the last committed range.

use std::collections::HashMap;

use chrono::Utc;
use meridian_types::{BlockRef, ChainEvent, ChainFamily, ChainId, EventKind, EventStatus};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::json;

use crate::entities::{
    audit_log, chain_blocks, chain_events, chains, checkpoints, remittance_inbox,
};
use crate::{height_from_db, height_to_db, StorageError, Store};

/// How many recent block hashes are kept per chain; a reorg deeper than this cannot be followed
/// automatically and stops the watcher loudly.
pub const RETAINED_BLOCKS_MAX: u64 = 256;
/// Rows per INSERT statement; keeps SQLite under its bound-parameter limit.
const INSERT_CHUNK_ROWS: usize = 200;

/// Everything one watcher step commits atomically.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    /// The chain.
    pub chain: ChainId,
    /// Events found in the range, in chain order.
    pub events: Vec<ChainEvent>,
    /// Block hashes seen in the range (for reorg detection).
    pub blocks: Vec<BlockRef>,
    /// The last block of the range: the new checkpoint.
    pub checkpoint: BlockRef,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Events stored for the first time.
    pub inserted: u64,
    /// Events already stored (a replay after a restart): left untouched.
    pub duplicates: u64,
    /// Events that had been retracted by a reorg and are canonical again.
    pub restored: u64,
}

/// What a rewind did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewindOutcome {
    /// Events marked retracted.
    pub retracted: u64,
    /// The checkpoint height before the rewind.
    pub from_height: u64,
}

/// A stored checkpoint: the last block whose events are all committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Height of that block.
    pub height: u64,
    /// Its hash, unknown only for the virtual block before `start_block`.
    pub block_hash: Option<String>,
}

impl Store {
    /// Registers a chain (or renames it); idempotent, called at start-up for every configured chain.
    pub async fn register_chain(
        &self,
        chain: &ChainId,
        name: &str,
        family: ChainFamily,
    ) -> Result<(), StorageError> {
        let model = chains::ActiveModel {
            id: Set(chain.to_string()),
            name: Set(name.to_owned()),
            family: Set(family.as_str().to_owned()),
            head_height: Set(None),
            head_hash: Set(None),
            finalized_height: Set(None),
            updated_at: Set(Utc::now()),
        };
        let turn = self.write_turn().await;
        chains::Entity::insert(model)
            .on_conflict(
                OnConflict::column(chains::Column::Id)
                    .update_columns([chains::Column::Name, chains::Column::Family])
                    .to_owned(),
            )
            .exec_without_returning(turn.conn())
            .await?;
        Ok(())
    }

    /// Records the chain's head and the height the finality rule allows, for lag reporting.
    pub async fn record_head(
        &self,
        chain: &ChainId,
        head: &BlockRef,
        final_height: u64,
    ) -> Result<(), StorageError> {
        let turn = self.write_turn().await;
        chains::Entity::update_many()
            .col_expr(
                chains::Column::HeadHeight,
                Expr::value(height_to_db(head.height)),
            )
            .col_expr(chains::Column::HeadHash, Expr::value(head.hash.clone()))
            .col_expr(
                chains::Column::FinalizedHeight,
                Expr::value(height_to_db(final_height)),
            )
            .col_expr(chains::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(chains::Column::Id.eq(chain.as_str()))
            .exec(turn.conn())
            .await?;
        Ok(())
    }

    /// The stored checkpoint of a chain, if it has one.
    pub async fn checkpoint(&self, chain: &ChainId) -> Result<Option<Checkpoint>, StorageError> {
        let row = checkpoints::Entity::find_by_id(chain.to_string())
            .one(self.connection())
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                height: height_from_db("checkpoints", r.height)?,
                block_hash: r.block_hash,
            })
        })
        .transpose()
    }

    /// Recent block hashes at or below `height`, newest first, for finding a reorg's common ancestor.
    pub async fn recent_blocks(
        &self,
        chain: &ChainId,
        height: u64,
        limit: u64,
    ) -> Result<Vec<BlockRef>, StorageError> {
        let rows = chain_blocks::Entity::find()
            .filter(chain_blocks::Column::ChainId.eq(chain.as_str()))
            .filter(chain_blocks::Column::Height.lte(height_to_db(height)))
            .order_by_desc(chain_blocks::Column::Height)
            .limit(limit)
            .all(self.connection())
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(BlockRef {
                    height: height_from_db("chain_blocks", r.height)?,
                    hash: r.hash,
                    parent_hash: r.parent_hash,
                })
            })
            .collect()
    }

    /// Commits one range atomically: events (deduplicated by uid), block hashes and the checkpoint.
    pub async fn commit_ingest(&self, batch: &IngestBatch) -> Result<IngestOutcome, StorageError> {
        if let Some(e) = batch.events.iter().find(|e| e.id.chain != batch.chain) {
            return Err(StorageError::ChainMismatch {
                batch: batch.chain.to_string(),
                event: e.id.uid(),
            });
        }
        let (_gate, txn) = self.begin_write().await?;
        let chain = batch.chain.as_str();

        let current = checkpoints::Entity::find_by_id(chain.to_owned())
            .one(&txn)
            .await?;
        if let Some(current) = &current {
            let from = height_from_db("checkpoints", current.height)?;
            if batch.checkpoint.height < from {
                return Err(StorageError::CheckpointRegression {
                    chain: chain.to_owned(),
                    from,
                    to: batch.checkpoint.height,
                });
            }
        }

        // Which of these events are stored already, and in which state.
        let uids: Vec<String> = batch.events.iter().map(|e| e.id.uid()).collect();
        let mut existing: HashMap<String, String> = HashMap::new();
        for chunk in uids.chunks(INSERT_CHUNK_ROWS) {
            let rows: Vec<(String, String)> = chain_events::Entity::find()
                .select_only()
                .column(chain_events::Column::Uid)
                .column(chain_events::Column::Status)
                .filter(chain_events::Column::Uid.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(&txn)
                .await?;
            existing.extend(rows);
        }

        let mut outcome = IngestOutcome::default();
        let now = Utc::now();
        let mut fresh = Vec::new();
        let mut restore = Vec::new();
        for (event, uid) in batch.events.iter().zip(uids) {
            match existing.get(&uid).map(String::as_str) {
                None => {
                    let payload = serde_json::to_value(&event.payload).map_err(|e| {
                        StorageError::Corrupt {
                            table: "chain_events",
                            message: e.to_string(),
                        }
                    })?;
                    let error = match &event.payload {
                        meridian_types::EventPayload::Undecodable { reason, .. } => {
                            Some(reason.clone())
                        }
                        _ => None,
                    };
                    fresh.push(chain_events::ActiveModel {
                        uid: Set(uid.clone()),
                        chain_id: Set(chain.to_owned()),
                        block_number: Set(height_to_db(event.id.block_number)),
                        block_hash: Set(event.id.block_hash.clone()),
                        tx_hash: Set(event.id.tx.clone()),
                        log_index: Set(i32::try_from(event.id.index).unwrap_or(i32::MAX)),
                        contract: Set(event.contract.clone()),
                        kind: Set(event.payload.kind().as_str().to_owned()),
                        status: Set(event.status().as_str().to_owned()),
                        error: Set(error),
                        payload: Set(payload),
                        ingested_at: Set(now),
                        ..Default::default()
                    });
                    existing.insert(uid, event.status().as_str().to_owned());
                }
                Some(s) if s == EventStatus::Retracted.as_str() => {
                    restore.push((uid, event.status()));
                }
                Some(_) => outcome.duplicates += 1,
            }
        }
        outcome.inserted = fresh.len() as u64;
        for chunk in fresh.chunks(INSERT_CHUNK_ROWS) {
            chain_events::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        // Each new remittance request waits in the intake's inbox until its transfer exists.
        let requests: Vec<remittance_inbox::ActiveModel> = fresh
            .iter()
            .filter(|e| matches!(&e.kind, Set(k) if k == EventKind::RemittanceRequested.as_str()))
            .map(|e| remittance_inbox::ActiveModel {
                event_uid: e.uid.clone(),
                ..Default::default()
            })
            .collect();
        for chunk in requests.chunks(INSERT_CHUNK_ROWS) {
            remittance_inbox::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::column(remittance_inbox::Column::EventUid)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        for (uid, status) in restore {
            chain_events::Entity::update_many()
                .col_expr(chain_events::Column::Status, Expr::value(status.as_str()))
                .filter(chain_events::Column::Uid.eq(uid))
                .exec(&txn)
                .await?;
            outcome.restored += 1;
        }

        let mut blocks: Vec<&BlockRef> = batch.blocks.iter().collect();
        blocks.push(&batch.checkpoint);
        blocks.sort_by_key(|b| b.height);
        blocks.dedup_by_key(|b| b.height);
        let block_models: Vec<chain_blocks::ActiveModel> = blocks
            .into_iter()
            .map(|b| chain_blocks::ActiveModel {
                chain_id: Set(chain.to_owned()),
                height: Set(height_to_db(b.height)),
                hash: Set(b.hash.clone()),
                parent_hash: Set(b.parent_hash.clone()),
            })
            .collect();
        for chunk in block_models.chunks(INSERT_CHUNK_ROWS) {
            chain_blocks::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        chain_blocks::Column::ChainId,
                        chain_blocks::Column::Height,
                    ])
                    .update_columns([chain_blocks::Column::Hash, chain_blocks::Column::ParentHash])
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        let keep_from = batch.checkpoint.height.saturating_sub(RETAINED_BLOCKS_MAX);
        chain_blocks::Entity::delete_many()
            .filter(chain_blocks::Column::ChainId.eq(chain))
            .filter(chain_blocks::Column::Height.lt(height_to_db(keep_from)))
            .exec(&txn)
            .await?;

        upsert_checkpoint(&txn, chain, &batch.checkpoint).await?;
        txn.commit().await?;
        if !requests.is_empty() {
            self.wake(crate::Stage::Intake);
        }
        Ok(outcome)
    }

    /// Rewinds a chain to `ancestor` after a reorg: retracts every event above it, forgets the
    /// block hashes above it, moves the checkpoint back and records the rewind in the audit log,
    /// all in one transaction.
    pub async fn rewind(
        &self,
        chain: &ChainId,
        ancestor: &BlockRef,
    ) -> Result<RewindOutcome, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        let from_height = match checkpoints::Entity::find_by_id(chain.to_string())
            .one(&txn)
            .await?
        {
            Some(c) => height_from_db("checkpoints", c.height)?,
            None => return Err(StorageError::UnknownChain(chain.to_string())),
        };
        if ancestor.height > from_height {
            return Err(StorageError::RewindForward {
                chain: chain.to_string(),
                from: from_height,
                to: ancestor.height,
            });
        }
        let above = height_to_db(ancestor.height);
        let retracted = chain_events::Entity::update_many()
            .col_expr(
                chain_events::Column::Status,
                Expr::value(EventStatus::Retracted.as_str()),
            )
            .filter(chain_events::Column::ChainId.eq(chain.as_str()))
            .filter(chain_events::Column::BlockNumber.gt(above))
            .filter(chain_events::Column::Status.ne(EventStatus::Retracted.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        chain_blocks::Entity::delete_many()
            .filter(chain_blocks::Column::ChainId.eq(chain.as_str()))
            .filter(chain_blocks::Column::Height.gt(above))
            .exec(&txn)
            .await?;
        upsert_checkpoint(&txn, chain.as_str(), ancestor).await?;
        audit_log::Entity::insert(audit_log::ActiveModel {
            actor: Set("relayer".into()),
            action: Set("reorg_rewind".into()),
            subject: Set(chain.to_string()),
            details: Set(json!({
                "from_height": from_height,
                "to_height": ancestor.height,
                "ancestor_hash": ancestor.hash,
                "retracted_events": retracted,
            })),
            at: Set(Utc::now()),
            ..Default::default()
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(RewindOutcome {
            retracted,
            from_height,
        })
    }
}

async fn upsert_checkpoint<C: sea_orm::ConnectionTrait>(
    db: &C,
    chain: &str,
    block: &BlockRef,
) -> Result<(), StorageError> {
    checkpoints::Entity::insert(checkpoints::ActiveModel {
        chain_id: Set(chain.to_owned()),
        height: Set(height_to_db(block.height)),
        block_hash: Set(Some(block.hash.clone())),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(checkpoints::Column::ChainId)
            .update_columns([
                checkpoints::Column::Height,
                checkpoints::Column::BlockHash,
                checkpoints::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
