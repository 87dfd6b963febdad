//! Transfers and their state history: one row per remittance request (unique on the source
//! event), and one transition row per state change with its reason and actor.

use chrono::{DateTime, Utc};
use meridian_types::{
    AcceptedQuote, AccountId, AssetId, ChainId, EventPayload, EventStatus, Transfer, TransferState,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait,
};

use crate::entities::{
    audit_log, chain_events, deliveries, remittance_inbox, transfer_transitions, transfers,
};
use crate::quote_codec::{quote_to_json, transfer_from_row};
use crate::row_insert::RowInsert;
use crate::{StorageError, Store};

/// The columns of a `transfers` row, in the order `create_transfers` gives its values.
const TRANSFER_ROWS: RowInsert = RowInsert {
    table: "transfers",
    columns: &[
        "id",
        "source_event_uid",
        "source_chain",
        "dest_chain",
        "source_asset",
        "dest_asset",
        "sender",
        "recipient",
        "amount",
        "dest_amount",
        "fee",
        "rate",
        "corridor_id",
        "deadline",
        "state",
        "batch_id",
        "quote",
        "created_at",
        "updated_at",
    ],
};
/// Ids per `IN (…)` list of an UPDATE or DELETE.
const IDS_PER_STATEMENT_MAX: usize = 4_000;

/// A remittance request that has no transfer yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRemittance {
    /// Uid of the source event.
    pub uid: String,
    /// Source chain.
    pub chain: ChainId,
    /// Who locked the tokens.
    pub sender: AccountId,
    /// The asset locked.
    pub asset: AssetId,
    /// Amount locked (base units).
    pub amount: u128,
    /// Destination chain as the sender wrote it.
    pub dest_chain: String,
    /// Recipient as the sender wrote it.
    pub recipient: String,
    /// Destination asset as the sender wrote it.
    pub dest_asset: String,
    /// Unix seconds after which the transfer is refunded instead of delivered.
    pub deadline: u64,
}

/// A transfer as the router decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransfer {
    /// Derived from the source event ([`meridian_types::transfer_id`]).
    pub id: String,
    /// Uid of the source event.
    pub source_event_uid: String,
    /// Source chain.
    pub source_chain: ChainId,
    /// Destination chain as requested.
    pub dest_chain: String,
    /// Asset locked.
    pub source_asset: AssetId,
    /// Asset to deliver, as requested.
    pub dest_asset: String,
    /// Who locked.
    pub sender: AccountId,
    /// Who receives, as requested (CAIP-10 once checked).
    pub recipient: String,
    /// Amount locked (base units).
    pub amount: u128,
    /// Refund instead of delivery after this.
    pub deadline: Option<DateTime<Utc>>,
    /// The accepted quote, if it was priced.
    pub quote: Option<AcceptedQuote>,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// State left (none for the first).
    pub from: Option<TransferState>,
    /// State entered.
    pub to: TransferState,
    /// Why.
    pub reason: Option<String>,
    /// Who: `router`, `executor`, `operator:<name>`…
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A state change of an existing transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMove {
    /// The transfer.
    pub id: String,
    /// The state it must still be in.
    pub from: TransferState,
    /// The transitions from there, in order.
    pub path: Vec<Transition>,
    /// The settlement batch, if it was settled.
    pub batch_id: Option<i64>,
}

/// An audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who (`operator:<key name>`, `governance`, …).
    pub actor: String,
    /// What (`transfer.release_hold`, `corridor.pause`, …).
    pub action: String,
    /// On what (`transfer:<id>`, `corridor:<id>`).
    pub subject: String,
    /// Anything else worth keeping (the reason).
    pub details: serde_json::Value,
}

/// A stored transfer with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// The transfer.
    pub transfer: Transfer,
    /// Its transitions, oldest first.
    pub history: Vec<Transition>,
}

/// The quote columns of a transfer: the stored quote and what is derived from it for display
/// and queries (delivered amount, first fee, effective rate, route).
struct QuoteColumns {
    quote: Option<serde_json::Value>,
    dest_amount: Option<String>,
    fee: Option<String>,
    rate: Option<String>,
    route: Option<String>,
}

impl QuoteColumns {
    fn of(q: Option<&AcceptedQuote>) -> Result<QuoteColumns, StorageError> {
        Ok(match q {
            Some(q) => QuoteColumns {
                quote: Some(quote_to_json(q)?),
                dest_amount: Some(q.amount_out().to_string()),
                fee: Some(q.first_fee().to_string()),
                rate: Some(q.effective_rate.to_string()),
                route: Some(q.route()),
            },
            None => QuoteColumns {
                quote: None,
                dest_amount: None,
                fee: None,
                rate: None,
                route: None,
            },
        })
    }
}

/// One `transfer_transitions` row, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub(crate) transfer_id: String,
    pub(crate) from_state: Option<&'static str>,
    pub(crate) to_state: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) actor: String,
    pub(crate) at: DateTime<Utc>,
    pub(crate) via: Option<String>,
}

/// The history rows of `path` for transfer `id`: one row per decision. Consecutive steps merge
/// into one row while the earlier step has no reason of its own and the next follows it with the
/// same actor at the same time; the states passed through are kept in `via`.
pub(crate) fn history_rows(id: &str, path: &[Transition]) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let first = &path[i];
        let mut via: Vec<&'static str> = Vec::new();
        let mut j = i;
        while j + 1 < path.len() {
            let (step, next) = (&path[j], &path[j + 1]);
            let merges = step.reason.is_none()
                && step.actor == next.actor
                && step.at == next.at
                && next.from == Some(step.to);
            if !merges {
                break;
            }
            via.push(step.to.as_str());
            j += 1;
        }
        let last = &path[j];
        rows.push(HistoryRow {
            transfer_id: id.to_owned(),
            from_state: first.from.map(TransferState::as_str),
            to_state: last.to.as_str(),
            reason: last.reason.clone(),
            actor: last.actor.clone(),
            at: last.at,
            via: (!via.is_empty()).then(|| via.join(">")),
        });
        i = j + 1;
    }
    rows
}

/// Stores `path` as transitions of transfer `id`, inside `txn`.
async fn insert_transitions(
    txn: &sea_orm::DatabaseTransaction,
    id: &str,
    path: &[Transition],
) -> Result<(), StorageError> {
    insert_transition_rows(txn, history_rows(id, path)).await
}

/// The columns of a `transfer_transitions` row, in [`HistoryRow::values`] order.
const TRANSITION_ROWS: RowInsert = RowInsert {
    table: "transfer_transitions",
    columns: &[
        "transfer_id",
        "from_state",
        "to_state",
        "reason",
        "actor",
        "at",
        "via",
    ],
};

impl HistoryRow {
    /// Appends this row's values in [`TRANSITION_ROWS`] order.
    fn values(self, out: &mut Vec<sea_orm::Value>) {
        out.push(self.transfer_id.into());
        out.push(self.from_state.map(str::to_owned).into());
        out.push(self.to_state.to_owned().into());
        out.push(self.reason.into());
        out.push(self.actor.into());
        out.push(self.at.into());
        out.push(self.via.into());
    }
}

/// Stores transition rows of many transfers, in as few statements as the parameter limit allows.
async fn insert_transition_rows(
    txn: &sea_orm::DatabaseTransaction,
    rows: Vec<HistoryRow>,
) -> Result<(), StorageError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut values = Vec::with_capacity(rows.len() * TRANSITION_ROWS.columns.len());
    for row in rows {
        row.values(&mut values);
    }
    TRANSITION_ROWS.exec(txn, values).await?;
    Ok(())
}

/// How a group of moves ends: from state, to state, time and settlement batch. Moves that end
/// alike share one guarded UPDATE.
pub(crate) type MoveEnding = (&'static str, &'static str, DateTime<Utc>, Option<i64>);

/// The ids of `moves` by how they end, in a stable order.
pub(crate) fn move_groups(
    moves: &[TransferMove],
) -> std::collections::BTreeMap<MoveEnding, Vec<&str>> {
    let mut groups: std::collections::BTreeMap<MoveEnding, Vec<&str>> = Default::default();
    for m in moves {
        if let Some(last) = m.path.last() {
            groups
                .entry((m.from.as_str(), last.to.as_str(), last.at, m.batch_id))
                .or_default()
                .push(m.id.as_str());
        }
    }
    groups
}

/// Moves transfers on inside `txn`, each only from the state it was read in; returns the ids
/// that moved (their transitions are written too).
pub(crate) async fn advance_many_in(
    txn: &sea_orm::DatabaseTransaction,
    moves: &[TransferMove],
) -> Result<std::collections::HashSet<String>, StorageError> {
    use sea_orm::sea_query::Expr;
    let backend = txn.get_database_backend();
    let mut moved = std::collections::HashSet::with_capacity(moves.len());
    for ((from, to, at, batch), ids) in &move_groups(moves) {
        for chunk in ids.chunks(IDS_PER_STATEMENT_MAX) {
            let mut update = transfers::Entity::update_many()
                .col_expr(transfers::Column::State, Expr::value(*to))
                .col_expr(transfers::Column::UpdatedAt, Expr::value(*at))
                .filter(transfers::Column::Id.is_in(chunk.iter().copied()))
                .filter(transfers::Column::State.eq(*from));
            if let Some(batch) = batch {
                update = update.col_expr(transfers::Column::BatchId, Expr::value(*batch));
            }
            if backend == DbBackend::Sqlite {
                // One writer and a serializable transaction: the transfers not in `from` now
                // are exactly those the guarded UPDATE leaves alone. Reading those few (usually
                // none) instead of `RETURNING` every moved id saves a row sent from SQLite's
                // worker thread per transfer (issue 14).
                let stay = ids_where(
                    txn,
                    transfers::Entity::find()
                        .select_only()
                        .column(transfers::Column::Id)
                        .filter(transfers::Column::Id.is_in(chunk.iter().copied()))
                        .filter(transfers::Column::State.ne(*from)),
                )
                .await?;
                let expected = chunk.iter().filter(|id| !stay.contains(**id)).count();
                let updated = update.exec(txn).await?.rows_affected;
                if updated != expected as u64 {
                    return Err(StorageError::Integrity {
                        table: "transfers",
                        message: format!(
                            "{updated} transfers moved from {from} where {expected} were in it"
                        ),
                    });
                }
                moved.extend(
                    chunk
                        .iter()
                        .filter(|id| !stay.contains(**id))
                        .map(|id| (*id).to_owned()),
                );
            } else {
                let mut stmt = update.into_query();
                stmt.returning_col(transfers::Column::Id);
                moved.extend(returned_ids(txn, backend.build(&stmt)).await?);
            }
        }
    }
    let transitions: Vec<HistoryRow> = moves
        .iter()
        .filter(|m| moved.contains(&m.id))
        .flat_map(|m| history_rows(&m.id, &m.path))
        .collect();
    insert_transition_rows(txn, transitions).await?;
    Ok(moved)
}

/// The ids `select` (a query of the `id` column alone) finds inside `txn`.
async fn ids_where(
    txn: &sea_orm::DatabaseTransaction,
    select: sea_orm::Select<transfers::Entity>,
) -> Result<std::collections::HashSet<String>, StorageError> {
    Ok(select
        .into_tuple::<String>()
        .all(txn)
        .await?
        .into_iter()
        .collect())
}

/// Runs `stmt` (an INSERT or UPDATE … `RETURNING id`) and reads the returned transfer ids.
async fn returned_ids(
    txn: &sea_orm::DatabaseTransaction,
    stmt: sea_orm::Statement,
) -> Result<Vec<String>, StorageError> {
    txn.query_all(stmt)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "id").map_err(StorageError::from))
        .collect()
}

/// A `deliveries` row for a payout transaction `tx_hash` of transfer `transfer_id` on `chain`,
/// submitted at `at` (first attempt; chain-specific columns unset).
pub(crate) fn submitted_delivery(
    transfer_id: &str,
    chain: &str,
    tx_hash: &str,
    at: DateTime<Utc>,
) -> deliveries::ActiveModel {
    deliveries::ActiveModel {
        transfer_id: Set(transfer_id.to_owned()),
        dest_chain: Set(chain.to_owned()),
        tx_hash: Set(Some(tx_hash.to_owned())),
        state: Set("submitted".into()),
        attempts: Set(1),
        last_error: Set(None),
        submitted_at: Set(Some(at)),
        finalized_at: Set(None),
        updated_at: Set(at),
        ..Default::default()
    }
}

/// One transfer move inside `txn`: the guarded state update and its transitions.
pub(crate) async fn advance_in(
    txn: &sea_orm::DatabaseTransaction,
    m: &TransferMove,
) -> Result<bool, StorageError> {
    use sea_orm::sea_query::Expr;
    let Some(last) = m.path.last() else {
        return Ok(false);
    };
    let mut update = transfers::Entity::update_many()
        .col_expr(transfers::Column::State, Expr::value(last.to.as_str()))
        .col_expr(transfers::Column::UpdatedAt, Expr::value(last.at))
        .filter(transfers::Column::Id.eq(m.id.as_str()))
        .filter(transfers::Column::State.eq(m.from.as_str()));
    if let Some(batch) = m.batch_id {
        update = update.col_expr(transfers::Column::BatchId, Expr::value(batch));
    }
    if update.exec(txn).await?.rows_affected == 0 {
        return Ok(false);
    }
    insert_transitions(txn, &m.id, &m.path).await?;
    Ok(true)
}

pub(crate) fn audit_row(e: &AuditEntry) -> audit_log::ActiveModel {
    audit_log::ActiveModel {
        actor: Set(e.actor.clone()),
        action: Set(e.action.clone()),
        subject: Set(e.subject.clone()),
        details: Set(e.details.clone()),
        at: Set(Utc::now()),
        ..Default::default()
    }
}

fn corrupt(message: String) -> StorageError {
    StorageError::Corrupt {
        table: "transfers",
        message,
    }
}

/// The steps of one history row, oldest first: its `via` states (without reasons), then its
/// last step with the row's reason.
fn steps_of(m: transfer_transitions::Model) -> Result<Vec<Transition>, StorageError> {
    let state =
        |s: &str| TransferState::parse(s).ok_or_else(|| corrupt(format!("unknown state `{s}`")));
    let mut from = m.from_state.as_deref().map(state).transpose()?;
    let mut steps = Vec::new();
    for via in m.via.as_deref().into_iter().flat_map(|v| v.split('>')) {
        let to = state(via)?;
        steps.push(Transition {
            from,
            to,
            reason: None,
            actor: m.actor.clone(),
            at: m.at,
        });
        from = Some(to);
    }
    steps.push(Transition {
        from,
        to: state(&m.to_state)?,
        reason: m.reason,
        actor: m.actor,
        at: m.at,
    });
    Ok(steps)
}

/// A transfer's payout as recorded in `deliveries`: its latest transaction and how often it was
/// sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRecord {
    /// The `deliveries` row.
    pub id: i64,
    /// The chain it is paid on (CAIP-2).
    pub chain: String,
    /// Its latest transaction, as the chain names it.
    pub tx_hash: Option<String>,
    /// Account-based chains: the last height that transaction can be included at.
    pub valid_until: Option<u64>,
    /// Transactions sent for it (1 + replacements).
    pub attempts: u32,
    /// When the first one was recorded.
    pub submitted_at: DateTime<Utc>,
    /// Why the last one was replaced, if it was.
    pub last_error: Option<String>,
}

impl PayoutRecord {
    fn from_row(d: deliveries::Model) -> Result<PayoutRecord, StorageError> {
        let corrupt = |field: &str, value: String| StorageError::Corrupt {
            table: "deliveries",
            message: format!("delivery {}: {field} `{value}`", d.id),
        };
        Ok(PayoutRecord {
            id: d.id,
            valid_until: d
                .valid_until
                .map(|h| u64::try_from(h).map_err(|_| corrupt("valid_until", h.to_string())))
                .transpose()?,
            attempts: u32::try_from(d.attempts)
                .map_err(|_| corrupt("attempts", d.attempts.to_string()))?,
            submitted_at: d.submitted_at.unwrap_or(d.updated_at),
            chain: d.dest_chain,
            tx_hash: d.tx_hash,
            last_error: d.last_error,
        })
    }
}

impl Store {
    /// Decoded remittance requests with no transfer yet, oldest first: read from the intake's
    /// inbox, so the cost is the page asked for, however many requests were ever stored.
    pub async fn pending_remittances(
        &self,
        limit: u64,
    ) -> Result<Vec<PendingRemittance>, StorageError> {
        // Two steps, each driven by an index: a page of the inbox in order, then those events.
        // (One join let SQLite's planner drive from chain_events and scan every stored event on
        // each call.) A request a reorg retracted waits in the inbox, skipped here, and comes
        // back if its block does; pages of such requests are stepped over, never returned empty
        // while later requests wait.
        let mut rows = Vec::new();
        let mut after = 0i64;
        while (rows.len() as u64) < limit {
            let page: Vec<(i64, String)> = remittance_inbox::Entity::find()
                .select_only()
                .column(remittance_inbox::Column::Id)
                .column(remittance_inbox::Column::EventUid)
                .filter(remittance_inbox::Column::Id.gt(after))
                .order_by_asc(remittance_inbox::Column::Id)
                .limit(limit - rows.len() as u64)
                .into_tuple()
                .all(self.connection())
                .await?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            after = last;
            let mut events: std::collections::HashMap<String, chain_events::Model> =
                chain_events::Entity::find()
                    .filter(chain_events::Column::Uid.is_in(page.iter().map(|(_, u)| u.as_str())))
                    .filter(chain_events::Column::Status.eq(EventStatus::Decoded.as_str()))
                    .all(self.connection())
                    .await?
                    .into_iter()
                    .map(|e| (e.uid.clone(), e))
                    .collect();
            rows.extend(page.iter().filter_map(|(_, uid)| events.remove(uid)));
        }
        rows.into_iter()
            .map(|r| {
                let bad = |message: String| StorageError::Corrupt {
                    table: "chain_events",
                    message: format!("{}: {message}", r.uid),
                };
                let payload: EventPayload =
                    serde_json::from_value(r.payload).map_err(|e| bad(e.to_string()))?;
                let EventPayload::RemittanceRequested {
                    sender,
                    asset,
                    amount,
                    dest_chain,
                    recipient,
                    dest_asset,
                    deadline,
                    ..
                } = payload
                else {
                    return Err(bad(format!(
                        "kind remittance_requested with a {:?} payload",
                        payload.kind()
                    )));
                };
                let chain = r
                    .chain_id
                    .parse()
                    .map_err(|_| bad(format!("chain `{}` is not a CAIP-2 id", r.chain_id)))?;
                Ok(PendingRemittance {
                    uid: r.uid,
                    chain,
                    sender,
                    asset,
                    amount,
                    dest_chain,
                    recipient,
                    dest_asset,
                    deadline,
                })
            })
            .collect()
    }

    /// Stores a new transfer and the transitions that brought it to its current state, in one
    /// transaction. Returns `false` (and writes nothing) when the source event has a transfer
    /// already: a remittance becomes one transfer, however often it is processed.
    pub async fn create_transfer(
        &self,
        t: &NewTransfer,
        path: &[Transition],
    ) -> Result<bool, StorageError> {
        let created = self.create_transfers(&[(t.clone(), path.to_vec())]).await?;
        Ok(created.first().copied().unwrap_or(false))
    }

    /// Stores a batch of new transfers with their transitions, all in one database transaction
    /// (one commit for the batch, however large, and a few multi-row statements), and takes
    /// their requests out of the intake's inbox. Returns, per transfer, whether it was created:
    /// `false` for one whose source event has a transfer already.
    pub async fn create_transfers(
        &self,
        batch: &[(NewTransfer, Vec<Transition>)],
    ) -> Result<Vec<bool>, StorageError> {
        use std::collections::HashSet;
        if let Some((t, _)) = batch.iter().find(|(_, path)| path.is_empty()) {
            return Err(corrupt(format!("transfer {} has no state", t.id)));
        }
        let backend = self.connection().get_database_backend();
        // Rows (and their quotes' JSON) are built before the write turn: the single writer
        // is the pipeline's bound, so it only runs statements.
        let width = TRANSFER_ROWS.columns.len();
        let mut values: Vec<Vec<sea_orm::Value>> = Vec::with_capacity(batch.len());
        for (t, path) in batch {
            let (first, last) = (&path[0], &path[path.len() - 1]);
            let q = QuoteColumns::of(t.quote.as_ref())?;
            let mut row: Vec<sea_orm::Value> = Vec::with_capacity(width);
            row.push(t.id.clone().into());
            row.push(t.source_event_uid.clone().into());
            row.push(t.source_chain.to_string().into());
            row.push(t.dest_chain.clone().into());
            row.push(t.source_asset.to_string().into());
            row.push(t.dest_asset.clone().into());
            row.push(t.sender.to_string().into());
            row.push(t.recipient.clone().into());
            row.push(t.amount.to_string().into());
            row.push(q.dest_amount.into());
            row.push(q.fee.into());
            row.push(q.rate.into());
            row.push(q.route.into());
            row.push(t.deadline.into());
            row.push(last.to.as_str().to_owned().into());
            row.push(Option::<i64>::None.into());
            row.push(q.quote.into());
            row.push(first.at.into());
            row.push(last.at.into());
            values.push(row);
        }
        let (_gate, txn) = self.begin_write().await?;
        let t_rows = std::time::Instant::now();
        let mut inserted: HashSet<String> = HashSet::with_capacity(batch.len());
        let mut values = values.into_iter();
        for chunk in batch.chunks(TRANSFER_ROWS.rows_per_statement_max()) {
            let chunk_values: Vec<Vec<sea_orm::Value>> =
                values.by_ref().take(chunk.len()).collect();
            if backend == DbBackend::Sqlite {
                // One writer and a serializable transaction: the transfers that exist already
                // (usually none) are read first and the others inserted without `RETURNING`,
                // which would send every new id back from SQLite's worker thread (issue 14).
                // A transfer exists when its id or its source event is taken.
                let taken: Vec<(String, String)> = transfers::Entity::find()
                    .select_only()
                    .column(transfers::Column::Id)
                    .column(transfers::Column::SourceEventUid)
                    .filter(
                        transfers::Column::Id
                            .is_in(chunk.iter().map(|(t, _)| t.id.as_str()))
                            .or(transfers::Column::SourceEventUid
                                .is_in(chunk.iter().map(|(t, _)| t.source_event_uid.as_str()))),
                    )
                    .into_tuple()
                    .all(&txn)
                    .await?;
                let mut taken_ids: HashSet<String> = HashSet::with_capacity(taken.len());
                let mut taken_uids: HashSet<String> = HashSet::with_capacity(taken.len());
                for (id, uid) in taken {
                    taken_ids.insert(id);
                    taken_uids.insert(uid);
                }
                let mut fresh: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * width);
                for ((t, _), row) in chunk.iter().zip(chunk_values) {
                    // Taken before, or earlier in this batch: stored once.
                    if !taken_ids.contains(&t.id)
                        && !taken_uids.contains(&t.source_event_uid)
                        && !inserted.contains(&t.id)
                    {
                        taken_uids.insert(t.source_event_uid.clone());
                        inserted.insert(t.id.clone());
                        fresh.extend(row);
                    }
                }
                if !fresh.is_empty() {
                    TRANSFER_ROWS.exec(&txn, fresh).await?;
                }
            } else {
                let stmt = TRANSFER_ROWS.statement(
                    backend,
                    chunk_values.into_iter().flatten().collect(),
                    "ON CONFLICT DO NOTHING RETURNING id",
                )?;
                inserted.extend(returned_ids(&txn, stmt).await?);
            }
        }
        let transitions: Vec<HistoryRow> = batch
            .iter()
            .filter(|(t, _)| inserted.contains(&t.id))
            .flat_map(|(t, path)| history_rows(&t.id, path))
            .collect();
        let transfers_ms = t_rows.elapsed().as_millis() as u64;
        let t_history = std::time::Instant::now();
        insert_transition_rows(&txn, transitions).await?;
        let history_ms = t_history.elapsed().as_millis() as u64;
        let t_inbox = std::time::Instant::now();
        for chunk in batch.chunks(IDS_PER_STATEMENT_MAX) {
            remittance_inbox::Entity::delete_many()
                .filter(
                    remittance_inbox::Column::EventUid
                        .is_in(chunk.iter().map(|(t, _)| t.source_event_uid.as_str())),
                )
                .exec(&txn)
                .await?;
        }
        let inbox_ms = t_inbox.elapsed().as_millis() as u64;
        let t_commit = std::time::Instant::now();
        txn.commit().await?;
        tracing::debug!(
            transfers = batch.len(),
            transfers_ms,
            history_ms,
            inbox_ms,
            commit_ms = t_commit.elapsed().as_millis() as u64,
            "transfers created"
        );
        let created: Vec<bool> = batch
            .iter()
            .map(|(t, _)| inserted.contains(&t.id))
            .collect();
        for ((t, _), new) in batch.iter().zip(&created) {
            if *new {
                self.announce_transfer(&t.id);
            }
        }
        Ok(created)
    }

    /// Transfers, newest first, optionally in one state, with their histories.
    pub async fn transfers(
        &self,
        state: Option<TransferState>,
        limit: u64,
    ) -> Result<Vec<TransferRecord>, StorageError> {
        let mut q = transfers::Entity::find();
        if let Some(s) = state {
            q = q.filter(transfers::Column::State.eq(s.as_str()));
        }
        let rows = q
            .order_by_desc(transfers::Column::CreatedAt)
            .order_by_desc(transfers::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?;
        self.with_history(rows).await
    }

    /// The state of each of `ids` that exists (a transfer not created yet is absent).
    pub async fn transfer_states(
        &self,
        ids: &[&str],
    ) -> Result<Vec<(String, TransferState)>, StorageError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_STATEMENT_MAX) {
            let rows: Vec<(String, String)> = transfers::Entity::find()
                .select_only()
                .column(transfers::Column::Id)
                .column(transfers::Column::State)
                .filter(transfers::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(self.connection())
                .await?;
            for (id, state) in rows {
                let state = TransferState::parse(&state)
                    .ok_or_else(|| corrupt(format!("{id}: unknown state `{state}`")))?;
                out.push((id, state));
            }
        }
        Ok(out)
    }

    /// How many transfers are in each state (states without any left out).
    pub async fn transfer_state_counts(&self) -> Result<Vec<(TransferState, usize)>, StorageError> {
        let rows: Vec<(String, i64)> = transfers::Entity::find()
            .select_only()
            .column(transfers::Column::State)
            .column_as(transfers::Column::Id.count(), "n")
            .group_by(transfers::Column::State)
            .into_tuple()
            .all(self.connection())
            .await?;
        rows.into_iter()
            .map(|(state, n)| {
                let parsed = TransferState::parse(&state)
                    .ok_or_else(|| corrupt(format!("unknown state `{state}`")))?;
                let n = usize::try_from(n)
                    .map_err(|_| corrupt(format!("{n} transfers in state {state}")))?;
                Ok((parsed, n))
            })
            .collect()
    }

    /// Transfers in `state`, oldest first (the order they are worked on).
    pub async fn transfers_in_state(
        &self,
        state: TransferState,
        limit: u64,
    ) -> Result<Vec<Transfer>, StorageError> {
        transfers::Entity::find()
            .filter(transfers::Column::State.eq(state.as_str()))
            .order_by_asc(transfers::Column::CreatedAt)
            .order_by_asc(transfers::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(transfer_from_row)
            .collect()
    }

    /// Transfers in `state` whose source chain (`source_side`) or destination chain is one of
    /// `chains`, oldest first: a stage working on some chains only is never starved by another
    /// chain's backlog in the same state.
    pub async fn transfers_in_state_on(
        &self,
        state: TransferState,
        source_side: bool,
        chains: &[String],
        limit: u64,
    ) -> Result<Vec<Transfer>, StorageError> {
        if chains.is_empty() {
            return Ok(Vec::new());
        }
        let on = if source_side {
            transfers::Column::SourceChain.is_in(chains.iter().cloned())
        } else {
            transfers::Column::DestChain.is_in(chains.iter().cloned())
        };
        transfers::Entity::find()
            .filter(transfers::Column::State.eq(state.as_str()))
            .filter(on)
            .order_by_asc(transfers::Column::CreatedAt)
            .order_by_asc(transfers::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(transfer_from_row)
            .collect()
    }

    /// Transfers in one of `states` whose source event a reorg retracted, oldest first, leaving
    /// out those with an audit entry `skip_audited` (subject `transfer:<id>`): what the reorg
    /// guard still has to act on. Rows it has dealt with never fill the page.
    pub async fn transfers_with_retracted_source(
        &self,
        states: &[TransferState],
        skip_audited: &str,
        limit: u64,
    ) -> Result<Vec<Transfer>, StorageError> {
        use sea_orm::sea_query::Query;
        let retracted = Query::select()
            .column(chain_events::Column::Uid)
            .from(chain_events::Entity)
            .and_where(chain_events::Column::Status.eq(EventStatus::Retracted.as_str()))
            .to_owned();
        // Audited transfers are few (each one a recorded loss): read them, leave them out.
        let audited: Vec<String> = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::Subject)
            .filter(audit_log::Column::Action.eq(skip_audited))
            .into_tuple::<String>()
            .all(self.connection())
            .await?
            .into_iter()
            .filter_map(|s| s.strip_prefix("transfer:").map(str::to_owned))
            .collect();
        transfers::Entity::find()
            .filter(transfers::Column::SourceEventUid.in_subquery(retracted))
            .filter(transfers::Column::State.is_in(states.iter().map(|s| s.as_str())))
            .filter(transfers::Column::Id.is_not_in(audited))
            .order_by_asc(transfers::Column::CreatedAt)
            .order_by_asc(transfers::Column::Id)
            .limit(limit)
            .all(self.connection())
            .await?
            .into_iter()
            .map(transfer_from_row)
            .collect()
    }

    /// Whether a reorg retracted the source event of the transfer whose source is `uid`.
    pub async fn source_retracted(&self, uid: &str) -> Result<bool, StorageError> {
        Ok(self
            .event_by_uid(uid)
            .await?
            .is_some_and(|e| e.status == EventStatus::Retracted.as_str()))
    }

    /// Whether an audit entry `action` on `subject` exists.
    pub async fn audited(&self, action: &str, subject: &str) -> Result<bool, StorageError> {
        use sea_orm::PaginatorTrait;
        Ok(audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq(action))
            .filter(audit_log::Column::Subject.eq(subject))
            .count(self.connection())
            .await?
            > 0)
    }

    /// Transfers in a working state (not yet final, refunded, held or refused) that have not
    /// moved since `before`: what an operator should look at.
    pub async fn stuck_transfers(&self, before: DateTime<Utc>) -> Result<u64, StorageError> {
        use sea_orm::PaginatorTrait;
        let working = [
            TransferState::Requested,
            TransferState::Screened,
            TransferState::Quoted,
            TransferState::Settling,
            TransferState::Settled,
            TransferState::Delivering,
            TransferState::Delivered,
            TransferState::Refunding,
        ]
        .map(|s| s.as_str());
        Ok(transfers::Entity::find()
            .filter(transfers::Column::State.is_in(working))
            .filter(transfers::Column::UpdatedAt.lt(before))
            .count(self.connection())
            .await?)
    }

    /// Transfers created since `since` that went ahead (quoted or further along the delivery
    /// path): what counts against the rolling 24 h caps.
    pub async fn transfers_going_ahead_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<Transfer>, StorageError> {
        let ahead = [
            TransferState::Quoted,
            TransferState::Settling,
            TransferState::Settled,
            TransferState::Delivering,
            TransferState::Delivered,
            TransferState::Finalized,
        ]
        .map(|s| s.as_str());
        transfers::Entity::find()
            .filter(transfers::Column::CreatedAt.gte(since))
            .filter(transfers::Column::State.is_in(ahead))
            .order_by_asc(transfers::Column::CreatedAt)
            .all(self.connection())
            .await?
            .into_iter()
            .map(transfer_from_row)
            .collect()
    }

    /// Moves transfers on, each from the state it was read in, in one transaction: the state,
    /// its settlement batch, and the transitions. A transfer no longer in its expected state
    /// (changed by someone else meanwhile) is left alone; returns how many moved. Moves that
    /// end alike (same states, time and batch: a settled batch) share one guarded UPDATE.
    pub async fn advance_transfers(&self, moves: &[TransferMove]) -> Result<usize, StorageError> {
        Ok(self.advance_transfers_which(moves).await?.len())
    }

    /// [`Store::advance_transfers`], returning the ids that moved.
    pub async fn advance_transfers_which(
        &self,
        moves: &[TransferMove],
    ) -> Result<std::collections::HashSet<String>, StorageError> {
        if moves.iter().all(|m| m.path.is_empty()) {
            return Ok(Default::default());
        }
        let (_gate, txn) = self.begin_write().await?;
        let moved = advance_many_in(&txn, moves).await?;
        txn.commit().await?;
        self.announce_moves(moves, &moved);
        Ok(moved)
    }

    /// Announces the moves among `moves` that happened.
    pub(crate) fn announce_moves(
        &self,
        moves: &[TransferMove],
        moved: &std::collections::HashSet<String>,
    ) {
        for m in moves.iter().filter(|m| moved.contains(&m.id)) {
            self.announce_transfer(&m.id);
        }
    }

    /// Moves a transfer (to `delivering` or `refunding`) and records its payout on an
    /// account-based chain — the transaction, includable only up to height `valid_until` — in one
    /// database transaction, *before* it is broadcast. `false` (nothing written) when the
    /// transfer left its expected state meanwhile.
    pub async fn start_payout(
        &self,
        m: &TransferMove,
        dest_chain: &str,
        tx_hash: &str,
        valid_until: Option<u64>,
    ) -> Result<bool, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        if !advance_in(&txn, m).await? {
            return Ok(false);
        }
        let at = m.path.last().map_or_else(Utc::now, |p| p.at);
        deliveries::Entity::insert(deliveries::ActiveModel {
            valid_until: Set(valid_until.map(|h| h.min(i64::MAX as u64) as i64)),
            ..submitted_delivery(&m.id, dest_chain, tx_hash, at)
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        self.announce_transfer(&m.id);
        Ok(true)
    }

    /// The block of the `Released` (or `Refunded`) event of transfer `transfer_id` on `chain`
    /// ingested since `since` (the payout's first submission), if the chain's watcher has one:
    /// the proof an account-chain payout happened, final.
    pub async fn payout_event_block(
        &self,
        chain: &str,
        transfer_id: &str,
        refund: bool,
        since: DateTime<Utc>,
    ) -> Result<Option<u64>, StorageError> {
        let kind = if refund { "refunded" } else { "released" };
        let rows = chain_events::Entity::find()
            .filter(chain_events::Column::ChainId.eq(chain))
            .filter(chain_events::Column::IngestedAt.gte(since))
            .filter(chain_events::Column::Kind.eq(kind))
            .filter(chain_events::Column::Status.eq(EventStatus::Decoded.as_str()))
            .order_by_desc(chain_events::Column::Id)
            .all(self.connection())
            .await?;
        for r in rows {
            // Another transfer's event that does not decode must not stop this one's delivery:
            // it is named in the log and passed over (it cannot be this transfer's proof).
            let payload = match serde_json::from_value::<EventPayload>(r.payload) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(event = %r.uid, error = %e, "stored payout event does not decode; skipped");
                    continue;
                }
            };
            if matches!(payload, EventPayload::Released { transfer_id: t, .. } | EventPayload::Refunded { transfer_id: t, .. } if t == transfer_id)
            {
                return u64::try_from(r.block_number).map(Some).map_err(|_| {
                    StorageError::Corrupt {
                        table: "chain_events",
                        message: format!("event {}: block number {}", r.uid, r.block_number),
                    }
                });
            }
        }
        Ok(None)
    }

    /// The transaction of a transfer's latest delivery, if it has one.
    pub async fn delivery_tx(&self, transfer_id: &str) -> Result<Option<String>, StorageError> {
        Ok(self.delivery(transfer_id).await?.and_then(|d| d.tx_hash))
    }

    /// A transfer's latest payout (release or refund transaction), as recorded.
    pub async fn delivery(&self, transfer_id: &str) -> Result<Option<PayoutRecord>, StorageError> {
        deliveries::Entity::find()
            .filter(deliveries::Column::TransferId.eq(transfer_id))
            .order_by_desc(deliveries::Column::Id)
            .one(self.connection())
            .await?
            .map(PayoutRecord::from_row)
            .transpose()
    }

    /// Records that payout `id`'s transaction expired unincluded and `tx_hash`, valid until
    /// `valid_until`, replaces it; called before the new one is broadcast.
    pub async fn replace_payout_tx(
        &self,
        id: i64,
        replaced: &str,
        tx_hash: &str,
        valid_until: Option<u64>,
    ) -> Result<(), StorageError> {
        use sea_orm::sea_query::Expr;
        let (_gate, txn) = self.begin_write().await?;
        deliveries::Entity::update_many()
            .col_expr(deliveries::Column::TxHash, Expr::value(tx_hash))
            .col_expr(
                deliveries::Column::ValidUntil,
                Expr::value(valid_until.map(|h| h.min(i64::MAX as u64) as i64)),
            )
            .col_expr(
                deliveries::Column::Attempts,
                Expr::col(deliveries::Column::Attempts).add(1),
            )
            .col_expr(
                deliveries::Column::LastError,
                Expr::value(format!(
                    "replaced {replaced} ({})",
                    if valid_until.is_some() {
                        "expired"
                    } else {
                        "stuck"
                    }
                )),
            )
            .col_expr(deliveries::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(deliveries::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The details of every audit entry with `action`, oldest first.
    pub async fn audit_actions(
        &self,
        action: &str,
    ) -> Result<Vec<serde_json::Value>, StorageError> {
        Ok(audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq(action))
            .order_by_asc(audit_log::Column::Id)
            .all(self.connection())
            .await?
            .into_iter()
            .map(|r| r.details)
            .collect())
    }

    /// Writes an audit entry.
    pub async fn record_audit(&self, e: &AuditEntry) -> Result<(), StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        audit_log::Entity::insert(audit_row(e))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Writes `e` unless an entry with its action and subject is stored already; `true` when
    /// written. For facts recorded once (a reorg loss) that several nodes' stages may find at
    /// the same moment: the check and the insert are one transaction, and on PostgreSQL two
    /// such transactions for one subject take turns (a transaction-scoped advisory lock).
    pub async fn record_audit_once(&self, e: &AuditEntry) -> Result<bool, StorageError> {
        use sea_orm::PaginatorTrait;
        let (_gate, txn) = self.begin_write().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            txn.query_one(sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                [format!("audit once:{}:{}", e.action, e.subject).into()],
            ))
            .await?;
        }
        let stored = audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq(e.action.as_str()))
            .filter(audit_log::Column::Subject.eq(e.subject.as_str()))
            .count(&txn)
            .await?;
        if stored > 0 {
            return Ok(false);
        }
        audit_log::Entity::insert(audit_row(e))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Moves one transfer and writes its audit entry, in one transaction; `false` (nothing
    /// written) when it is no longer in `m.from`.
    pub async fn advance_audited(
        &self,
        m: &TransferMove,
        audit: &AuditEntry,
    ) -> Result<bool, StorageError> {
        let (_gate, txn) = self.begin_write().await?;
        if !advance_in(&txn, m).await? {
            return Ok(false);
        }
        audit_log::Entity::insert(audit_row(audit))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        self.announce_transfer(&m.id);
        Ok(true)
    }

    /// Prices a transfer again (`quote`) and moves it on, with its audit entry, in one
    /// transaction; `false` (nothing written) when it is no longer in `m.from`.
    pub async fn requote_transfer(
        &self,
        m: &TransferMove,
        quote: &AcceptedQuote,
        audit: &AuditEntry,
    ) -> Result<bool, StorageError> {
        use sea_orm::sea_query::Expr;
        let q = QuoteColumns::of(Some(quote))?;
        let (_gate, txn) = self.begin_write().await?;
        if !advance_in(&txn, m).await? {
            return Ok(false);
        }
        transfers::Entity::update_many()
            .col_expr(transfers::Column::Quote, Expr::value(q.quote))
            .col_expr(transfers::Column::DestAmount, Expr::value(q.dest_amount))
            .col_expr(transfers::Column::Fee, Expr::value(q.fee))
            .col_expr(transfers::Column::Rate, Expr::value(q.rate))
            .col_expr(transfers::Column::CorridorId, Expr::value(q.route))
            .filter(transfers::Column::Id.eq(m.id.as_str()))
            .exec(&txn)
            .await?;
        audit_log::Entity::insert(audit_row(audit))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        self.announce_transfer(&m.id);
        Ok(true)
    }

    /// Transfer changes (history rows) with an id above `after`, lowest first, at most `limit`:
    /// `(row id, transfer id)`. The change feed of several nodes reads them.
    pub async fn transfer_changes_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<(i64, String)>, StorageError> {
        Ok(transfer_transitions::Entity::find()
            .select_only()
            .column(transfer_transitions::Column::Id)
            .column(transfer_transitions::Column::TransferId)
            .filter(transfer_transitions::Column::Id.gt(after))
            .order_by_asc(transfer_transitions::Column::Id)
            .limit(limit)
            .into_tuple::<(i64, String)>()
            .all(self.connection())
            .await?)
    }

    /// The id of the newest transfer change (history row); 0 without any.
    pub async fn last_transfer_change(&self) -> Result<i64, StorageError> {
        let last: Option<Option<i64>> = transfer_transitions::Entity::find()
            .select_only()
            .expr(sea_orm::sea_query::Expr::col(transfer_transitions::Column::Id).max())
            .into_tuple()
            .one(self.connection())
            .await?;
        Ok(last.flatten().unwrap_or(0))
    }

    /// One transfer with its history.
    pub async fn transfer(&self, id: &str) -> Result<Option<TransferRecord>, StorageError> {
        let Some(row) = transfers::Entity::find_by_id(id.to_owned())
            .one(self.connection())
            .await?
        else {
            return Ok(None);
        };
        Ok(self.with_history(vec![row]).await?.pop())
    }

    async fn with_history(
        &self,
        rows: Vec<transfers::Model>,
    ) -> Result<Vec<TransferRecord>, StorageError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let transitions = transfer_transitions::Entity::find()
            .filter(transfer_transitions::Column::TransferId.is_in(ids))
            .order_by_asc(transfer_transitions::Column::Id)
            .all(self.connection())
            .await?;
        let mut out: Vec<TransferRecord> = rows
            .into_iter()
            .map(|row| {
                Ok(TransferRecord {
                    transfer: transfer_from_row(row)?,
                    history: Vec::new(),
                })
            })
            .collect::<Result<_, StorageError>>()?;
        let position: std::collections::HashMap<String, usize> = out
            .iter()
            .enumerate()
            .map(|(i, r)| (r.transfer.id.clone(), i))
            .collect();
        for t in transitions {
            if let Some(&i) = position.get(&t.transfer_id) {
                out[i].history.extend(steps_of(t)?);
            }
        }
        Ok(out)
    }
}
