//! EVM payouts (releases and refunds through the escrow contract), recorded before broadcast.
//!
//! A payout owns one nonce of the relay's signer on its chain (unique per chain and signer, so no
//! two payouts can ever share one), and every transaction signed for it — the first and each
//! replacement at higher fees with the same nonce — is stored, signed bytes included, *before* it
//! is broadcast. After a crash the node therefore knows every transaction that may reach the
//! chain, and only ever re-broadcasts or replaces those. A batch (`releaseBatch`) is one payout
//! for many transfers: its row holds the nonce and the transactions, each other member's row
//! names it (`payout_id`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entities::{deliveries, delivery_transactions};
use crate::transfer_store::{advance_in, submitted_delivery, TransferMove};
use crate::{StorageError, Store};

/// One signed transaction of an EVM payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvmTx {
    /// Transaction hash, `0x` + 64 lower-case hex digits.
    pub hash: String,
    /// The signed transaction (RLP, typed envelope), exactly as broadcast.
    pub raw: Vec<u8>,
    /// EIP-1559 fee cap, wei.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip, wei.
    pub max_priority_fee_per_gas: u128,
    /// When it was recorded (just before its broadcast).
    pub recorded_at: DateTime<Utc>,
}

/// An EVM payout as recorded: its nonce and every transaction signed for it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmPayout {
    /// The `deliveries` row.
    pub delivery_id: i64,
    /// The chain it is paid on (CAIP-2).
    pub chain: String,
    /// The signer, `0x` + lower-case hex.
    pub signer: String,
    /// The nonce all its transactions carry.
    pub nonce: u64,
    /// Its transactions, oldest first; never empty.
    pub txs: Vec<SignedEvmTx>,
    /// Transfers it pays: 1, or a batch's size.
    pub members: usize,
}

impl EvmPayout {
    /// The newest transaction (the one to re-broadcast or to replace).
    pub fn latest(&self) -> &SignedEvmTx {
        // `evm_payout` refuses a payout without transactions.
        &self.txs[self.txs.len() - 1]
    }
}

fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt {
        table: "delivery_transactions",
        message,
    }
}

fn tx_row(delivery_id: i64, tx: &SignedEvmTx) -> delivery_transactions::ActiveModel {
    delivery_transactions::ActiveModel {
        delivery_id: Set(delivery_id),
        tx_hash: Set(tx.hash.clone()),
        raw_tx: Set(tx.raw.clone()),
        max_fee_per_gas: Set(tx.max_fee_per_gas.to_string()),
        max_priority_fee_per_gas: Set(tx.max_priority_fee_per_gas.to_string()),
        created_at: Set(tx.recorded_at),
        ..Default::default()
    }
}

fn tx_of(m: delivery_transactions::Model) -> Result<SignedEvmTx, StorageError> {
    let wei = |s: &str, what: &str| {
        s.parse::<u128>()
            .map_err(|_| corrupt(format!("{what} `{s}` of {} is not wei", m.tx_hash)))
    };
    Ok(SignedEvmTx {
        max_fee_per_gas: wei(&m.max_fee_per_gas, "max_fee_per_gas")?,
        max_priority_fee_per_gas: wei(&m.max_priority_fee_per_gas, "max_priority_fee_per_gas")?,
        hash: m.tx_hash,
        raw: m.raw_tx,
        recorded_at: m.created_at,
    })
}

fn nonce_column(nonce: u64) -> Result<i64, StorageError> {
    i64::try_from(nonce).map_err(|_| corrupt(format!("nonce {nonce} does not fit the column")))
}

/// Inserts a payout's delivery row (signer, nonce) and its first transaction inside `txn`;
/// returns the row's id.
async fn insert_payout(
    txn: &sea_orm::DatabaseTransaction,
    transfer_id: &str,
    chain: &str,
    signer: &str,
    nonce: u64,
    tx: &SignedEvmTx,
    note: Option<&str>,
) -> Result<i64, StorageError> {
    let delivery = deliveries::Entity::insert(deliveries::ActiveModel {
        signer: Set(Some(signer.to_owned())),
        nonce: Set(Some(nonce_column(nonce)?)),
        last_error: Set(note.map(str::to_owned)),
        ..submitted_delivery(transfer_id, chain, &tx.hash, tx.recorded_at)
    })
    .exec(txn)
    .await?;
    delivery_transactions::Entity::insert(tx_row(delivery.last_insert_id, tx))
        .exec_without_returning(txn)
        .await?;
    Ok(delivery.last_insert_id)
}

impl Store {
    /// Moves a transfer (to `delivering` or `refunding`) and records its EVM payout — signer,
    /// nonce and first signed transaction — in one database transaction, *before* the
    /// transaction is broadcast. `false` (nothing written) when the transfer left its expected
    /// state meanwhile. A nonce already recorded for this chain and signer is refused.
    pub async fn start_evm_payout(
        &self,
        m: &TransferMove,
        chain: &str,
        signer: &str,
        nonce: u64,
        tx: &SignedEvmTx,
    ) -> Result<bool, StorageError> {
        self.start_evm_batch(std::slice::from_ref(m), chain, signer, nonce, tx)
            .await
    }

    /// Like [`Store::start_evm_payout`] for a batch: every transfer of `moves` is moved, and the
    /// one payout (nonce, first transaction) that pays them all is recorded, in one database
    /// transaction. `false` (nothing written) when any of them left its expected state.
    pub async fn start_evm_batch(
        &self,
        moves: &[TransferMove],
        chain: &str,
        signer: &str,
        nonce: u64,
        tx: &SignedEvmTx,
    ) -> Result<bool, StorageError> {
        let Some((first, others)) = moves.split_first() else {
            return Ok(false);
        };
        let (_gate, txn) = self.begin_write().await?;
        for m in moves {
            if !advance_in(&txn, m).await? {
                // Dropped without commit: nothing of the batch is written.
                return Ok(false);
            }
        }
        let payout = insert_payout(&txn, &first.id, chain, signer, nonce, tx, None).await?;
        if !others.is_empty() {
            deliveries::Entity::insert_many(others.iter().map(|m| deliveries::ActiveModel {
                signer: Set(Some(signer.to_owned())),
                payout_id: Set(Some(payout)),
                ..submitted_delivery(&m.id, chain, &tx.hash, tx.recorded_at)
            }))
            .exec_without_returning(&txn)
            .await?;
        }
        txn.commit().await?;
        for m in moves {
            self.announce_transfer(&m.id);
        }
        Ok(true)
    }

    /// Records a new payout for a transfer already moving, because its earlier payout can never
    /// pay it (`why`: its nonce was used by a transaction that is not ours, or its batch
    /// reverted as a whole): a new nonce and its first signed transaction, before it is
    /// broadcast.
    pub async fn restart_evm_payout(
        &self,
        transfer_id: &str,
        chain: &str,
        signer: &str,
        nonce: u64,
        tx: &SignedEvmTx,
        why: &str,
    ) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        insert_payout(&txn, transfer_id, chain, signer, nonce, tx, Some(why)).await?;
        txn.commit().await?;
        self.announce_transfer(transfer_id);
        Ok(())
    }

    /// Records `tx`, a replacement (same nonce, higher fees) of payout `delivery_id`'s newest
    /// transaction `replaced`, before it is broadcast. `false` (nothing written) when `replaced`
    /// is no longer the newest: another member of the same batch replaced it first.
    pub async fn add_evm_replacement(
        &self,
        delivery_id: i64,
        replaced: &str,
        tx: &SignedEvmTx,
    ) -> Result<bool, StorageError> {
        use sea_orm::sea_query::Expr;
        let (_gate, txn) = self.begin_write().await?;
        // Compare and set in one statement: only the writer that saw the newest transaction
        // replaces it (another member of the same batch, another process).
        let swapped = deliveries::Entity::update_many()
            .col_expr(deliveries::Column::TxHash, Expr::value(tx.hash.clone()))
            .col_expr(
                deliveries::Column::Attempts,
                Expr::col(deliveries::Column::Attempts).add(1),
            )
            .col_expr(
                deliveries::Column::LastError,
                Expr::value(format!("replaced {replaced} (stuck)")),
            )
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(tx.recorded_at))
            .filter(deliveries::Column::Id.eq(delivery_id))
            .filter(deliveries::Column::TxHash.eq(replaced))
            .exec(&txn)
            .await?;
        if swapped.rows_affected != 1 {
            return Ok(false);
        }
        delivery_transactions::Entity::insert(tx_row(delivery_id, tx))
            .exec_without_returning(&txn)
            .await?;
        // The batch's other transfers show the newest transaction too.
        deliveries::Entity::update_many()
            .col_expr(deliveries::Column::TxHash, Expr::value(tx.hash.clone()))
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(tx.recorded_at))
            .filter(deliveries::Column::PayoutId.eq(delivery_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// A transfer's latest EVM payout on `chain` with all its transactions, if it has one.
    pub async fn evm_payout(
        &self,
        transfer_id: &str,
        chain: &str,
    ) -> Result<Option<EvmPayout>, StorageError> {
        let Some(own) = deliveries::Entity::find()
            .filter(deliveries::Column::TransferId.eq(transfer_id))
            .filter(deliveries::Column::DestChain.eq(chain))
            .filter(
                sea_orm::Condition::any()
                    .add(deliveries::Column::Nonce.is_not_null())
                    .add(deliveries::Column::PayoutId.is_not_null()),
            )
            .order_by_desc(deliveries::Column::Id)
            .one(self.connection())
            .await?
        else {
            return Ok(None);
        };
        // A batch member's payout is the row it names.
        let d = match own.payout_id {
            None => own,
            Some(payout) => deliveries::Entity::find_by_id(payout)
                .one(self.connection())
                .await?
                .ok_or_else(|| {
                    corrupt(format!(
                        "delivery {} names payout {payout}, which does not exist",
                        own.id
                    ))
                })?,
        };
        let members = 1 + deliveries::Entity::find()
            .filter(deliveries::Column::PayoutId.eq(d.id))
            .count(self.connection())
            .await? as usize;
        let txs = delivery_transactions::Entity::find()
            .filter(delivery_transactions::Column::DeliveryId.eq(d.id))
            .order_by_asc(delivery_transactions::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(tx_of)
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(signer), Some(nonce)) = (d.signer, d.nonce) else {
            return Err(corrupt(format!(
                "delivery {} has a nonce but no signer",
                d.id
            )));
        };
        if txs.is_empty() {
            return Err(corrupt(format!("delivery {} has no transaction", d.id)));
        }
        Ok(Some(EvmPayout {
            delivery_id: d.id,
            chain: d.dest_chain,
            signer,
            nonce: u64::try_from(nonce)
                .map_err(|_| corrupt(format!("delivery {} has nonce {nonce}", d.id)))?,
            txs,
            members,
        }))
    }

    /// Nonces recorded for payouts of `signer` on `chain` at or above `from`, ascending.
    pub async fn evm_payout_nonces_from(
        &self,
        chain: &str,
        signer: &str,
        from: u64,
    ) -> Result<Vec<u64>, StorageError> {
        let rows: Vec<Option<i64>> = deliveries::Entity::find()
            .select_only()
            .column(deliveries::Column::Nonce)
            .filter(deliveries::Column::DestChain.eq(chain))
            .filter(deliveries::Column::Signer.eq(signer))
            .filter(deliveries::Column::Nonce.gte(nonce_column(from)?))
            .order_by_asc(deliveries::Column::Nonce)
            .into_tuple()
            .all(self.connection())
            .await?;
        rows.into_iter()
            .flatten()
            .map(|n| u64::try_from(n).map_err(|_| corrupt(format!("nonce {n}"))))
            .collect()
    }
}
