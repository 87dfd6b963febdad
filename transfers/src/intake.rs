//! Transfer intake: every remittance request seen on a watched chain becomes one transfer —
//! screened and quoted, or refused or held with its reason — stored with its state history in
//! one transaction. The transfer id derives from the source event, so a request processed twice
//! (a restart, two nodes) is still one transfer.

use crate::handoff::QuotedSender;
use crate::operator::{requote_held, Requoted};
use crate::TransferError;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use meridian_router::compliance::ScreeningInput;
use meridian_router::{Decision, Quote, Router, RoutingState, Screening};
use meridian_storage::{NewTransfer, PendingRemittance, Store, Transition};
use meridian_types::{transfer_id, AccountId, AssetId, ChainId, Transfer, TransferState};
use tokio::sync::watch;

/// How a transfer waiting for a paused corridor is held (its hold reason starts with it).
pub const PAUSED_HOLD: &str = "waiting while paused:";

/// Requests taken per pass (and per transaction). Measured with `meridian bench pipeline` at
/// 200 000 events on SQLite (BENCHMARKS.md, session 5): 500 left the intake and the settler
/// alternating on the one writer in small commits (stages together 10.0 k/s, below a 10 000/s
/// offered load, so latency was seconds); 1 024 gave 11.3 k/s and p50 226 ms; 2 048 about the
/// same throughput with a longer p99 (each pass holds the writer longer).
const PASS_LIMIT: u64 = 1_024;

/// How a held transfer that goes on is recorded.
struct Resumption {
    /// Why it is quoted now (the start of its quoted reason).
    quoted: String,
    /// The start of its rejection reason, if screening refuses it now.
    refused: &'static str,
    /// The audit action.
    audit_action: &'static str,
    /// The audit details.
    audit_details: serde_json::Value,
}

/// Turns remittance requests into transfers.
pub struct TransferIntake {
    store: Store,
    routing: Arc<RoutingState>,
    hold_period: Option<chrono::Duration>,
    handoff: Option<QuotedSender>,
}

/// What one pass did, per resulting state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntakeSummary {
    /// Transfers created, with the state each reached.
    pub created: Vec<(String, TransferState)>,
}

/// The decision for one request: the transfer and the transitions to its state.
struct Decided {
    transfer: NewTransfer,
    path: Vec<Transition>,
    /// Usage to count against the rolling caps when the transfer goes ahead.
    usage: Option<CapUsage>,
}

/// What an accepted transfer adds to the rolling caps.
struct CapUsage {
    sender: String,
    asset: AssetId,
    amount: u128,
    /// (corridor, amount entering it) per hop.
    legs: Vec<(String, u128)>,
}

impl TransferIntake {
    /// Intake over `store`, routing with `routing`.
    pub fn new(store: Store, routing: Arc<RoutingState>) -> TransferIntake {
        TransferIntake {
            store,
            routing,
            hold_period: None,
            handoff: None,
        }
    }

    /// Hands the transfers each pass quoted to the settler in memory, after committing them.
    pub fn hand_off_to(mut self, settler: QuotedSender) -> TransferIntake {
        self.handoff = Some(settler);
        self
    }

    /// Transfers held above a corridor's hold threshold go on by themselves after `period`.
    pub fn hold_period(mut self, period: Option<chrono::Duration>) -> TransferIntake {
        self.hold_period = period;
        self
    }

    /// The corridors that are paused on the route a transfer would take if nothing were paused;
    /// `None` when something else (limits, rates, no corridor) stands in its way too.
    fn paused_route(
        router: &Router,
        from: &AssetId,
        to: &AssetId,
        amount: u128,
        screening: &Screening,
        unix: u64,
    ) -> Option<Vec<String>> {
        let quote = router
            .without_pauses()
            .quote(from, to, amount, &screening.caps, unix)
            .ok()?;
        let paused: Vec<String> = quote
            .hops
            .iter()
            .filter(|h| router.corridor(&h.corridor).is_some_and(|c| c.paused))
            .map(|h| h.corridor.clone())
            .collect();
        (!paused.is_empty()).then_some(paused)
    }

    /// Moves on the transfers waiting for a paused corridor: priced again once it resumed (and
    /// screened again), refunded once their deadline passed while waiting.
    pub async fn resume_paused(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TransferState)>, TransferError> {
        let mut moved = Vec::new();
        for t in self
            .store
            .transfers_in_state(TransferState::Held, PASS_LIMIT)
            .await?
        {
            let Some(rec) = self.store.transfer(&t.id).await? else {
                continue;
            };
            let waiting = rec
                .history
                .last()
                .and_then(|h| h.reason.as_deref())
                .is_some_and(|r| r.starts_with(PAUSED_HOLD));
            if !waiting {
                continue;
            }
            let step = |to, reason: String| Transition {
                from: Some(TransferState::Held),
                to,
                reason: Some(reason),
                actor: "router".into(),
                at: now,
            };
            if t.deadline.is_some_and(|d| d <= now) {
                let m = meridian_storage::TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Held,
                    path: vec![step(
                        TransferState::Rejected,
                        "deadline passed while its corridor was paused".into(),
                    )],
                    batch_id: None,
                };
                if self.store.advance_transfers(&[m]).await? > 0 {
                    moved.push((t.id.clone(), TransferState::Rejected));
                }
                continue;
            }
            if let Some(to) = self
                .requote_held(
                    &t,
                    now,
                    Resumption {
                        quoted: "corridor resumed".into(),
                        refused: "on resuming",
                        audit_action: "transfer.corridor_resumed",
                        audit_details: serde_json::json!({}),
                    },
                )
                .await?
            {
                moved.push((t.id.clone(), to));
            }
        }
        Ok(moved)
    }

    /// Prices a held transfer again and moves it on: quoted, or rejected (and so refunded) when
    /// screening refuses it now; `None` while no route carries it yet (it keeps waiting).
    async fn requote_held(
        &self,
        t: &Transfer,
        now: DateTime<Utc>,
        how: Resumption,
    ) -> Result<Option<TransferState>, TransferError> {
        let audit = meridian_storage::AuditEntry {
            actor: "router".into(),
            action: how.audit_action.into(),
            subject: format!("transfer:{}", t.id),
            details: how.audit_details,
        };
        match requote_held(
            &self.store,
            &self.routing,
            t,
            "router",
            &how.quoted,
            &audit,
            now,
        )
        .await?
        {
            Requoted::Quoted => Ok(Some(TransferState::Quoted)),
            Requoted::Changed | Requoted::NoRoute(_) => Ok(None),
            Requoted::BadDestination(asset) => {
                tracing::error!(transfer = %t.id, dest_asset = %asset, "held transfer's destination asset does not parse; left held for an operator");
                Ok(None)
            }
            Requoted::Refused(why) => {
                let m = meridian_storage::TransferMove {
                    id: t.id.clone(),
                    from: TransferState::Held,
                    path: vec![Transition {
                        from: Some(TransferState::Held),
                        to: TransferState::Rejected,
                        reason: Some(format!("{}: {why}", how.refused)),
                        actor: "router".into(),
                        at: now,
                    }],
                    batch_id: None,
                };
                Ok((self.store.advance_transfers(&[m]).await? > 0)
                    .then_some(TransferState::Rejected))
            }
        }
    }

    /// Releases the large-transfer holds whose period has ended: priced again and screened
    /// again; refused (and so refunded) if a party is sanctioned meanwhile, kept waiting if no
    /// corridor carries it right now.
    pub async fn release_expired_holds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, TransferState)>, TransferError> {
        let Some(period) = self.hold_period else {
            return Ok(Vec::new());
        };
        let mut moved = Vec::new();
        for t in self
            .store
            .transfers_in_state(TransferState::Held, PASS_LIMIT)
            .await?
        {
            if t.updated_at + period > now {
                continue;
            }
            let Some(rec) = self.store.transfer(&t.id).await? else {
                continue;
            };
            let large = rec
                .history
                .last()
                .and_then(|h| h.reason.as_deref())
                .is_some_and(|r| r.contains("above the hold threshold"));
            if !large {
                continue;
            }
            let resumed = self
                .requote_held(
                    &t,
                    now,
                    Resumption {
                        quoted: format!("hold period of {}s ended", period.num_seconds()),
                        refused: "at the end of its hold",
                        audit_action: "transfer.hold_expired",
                        audit_details: serde_json::json!({ "hold_period_secs": period.num_seconds() }),
                    },
                )
                .await?;
            match resumed {
                Some(to) => moved.push((t.id.clone(), to)),
                None => tracing::info!(transfer = %t.id, "hold ended but no route now; still held"),
            }
        }
        Ok(moved)
    }

    /// Takes every pending request once.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<IntakeSummary, TransferError> {
        let mut summary = IntakeSummary::default();
        // A changed sanctions file applies from this pass on; a broken one keeps the old list.
        if let Err(e) = self.routing.reload_denylist() {
            tracing::error!(error = %e, "denylist not reloaded; the previous list stays in force");
        }
        loop {
            let pending = self.store.pending_remittances(PASS_LIMIT).await?;
            if pending.is_empty() {
                return Ok(summary);
            }
            // Decided one after another (each sees the cap usage of those before it), stored
            // together in one database transaction.
            let mut decided = Vec::with_capacity(pending.len());
            for p in &pending {
                let d = self.decide(p, now);
                if let Some(u) = &d.usage {
                    let legs: Vec<(&str, u128)> =
                        u.legs.iter().map(|(c, a)| (c.as_str(), *a)).collect();
                    self.routing.record_usage(
                        &u.sender,
                        &u.asset,
                        u.amount,
                        &legs,
                        now.timestamp().max(0) as u64,
                    );
                }
                decided.push((d.transfer, d.path));
            }
            let created = self.store.create_transfers(&decided).await?;
            crate::failpoint::crash_point("intake-stored");
            let mut quoted = Vec::new();
            for ((transfer, path), new) in decided.iter().zip(created) {
                // Not new: another node created it (its usage was real all the same).
                if !new {
                    continue;
                }
                let state = path.last().map_or(TransferState::Requested, |t| t.to);
                if state == TransferState::Quoted && self.handoff.is_some() {
                    quoted.extend(stored_transfer(transfer, path));
                }
                metrics::counter!("meridian_transfers_total", "state" => state.as_str())
                    .increment(1);
                tracing::info!(
                    transfer = %transfer.id,
                    state = state.as_str(),
                    reason = path.last().and_then(|t| t.reason.as_deref()).unwrap_or(""),
                    "transfer created"
                );
                summary.created.push((transfer.id.clone(), state));
            }
            if let Some(handoff) = &self.handoff {
                handoff.hand_over(quoted);
            }
            if (pending.len() as u64) < PASS_LIMIT {
                return Ok(summary);
            }
        }
    }

    /// Counts the last 24 hours' transfers against the rolling caps again (they live in memory),
    /// so a restart does not reopen caps that traffic had used up. Returns how many counted.
    pub async fn restore_cap_usage(&self, now: DateTime<Utc>) -> Result<usize, TransferError> {
        let since = now - chrono::Duration::seconds(meridian_router::compliance::DAY_SECS as i64);
        let rows = self.store.transfers_going_ahead_since(since).await?;
        let mut counted = 0;
        for t in &rows {
            let Some(quote) = t.quote.as_ref() else {
                continue;
            };
            let legs: Vec<(&str, u128)> = quote
                .hops
                .iter()
                .map(|h| (h.corridor.as_str(), h.amount_in))
                .collect();
            self.routing.record_usage(
                t.sender.as_str(),
                &t.source_asset,
                t.amount,
                &legs,
                t.created_at.timestamp().max(0) as u64,
            );
            counted += 1;
        }
        Ok(counted)
    }

    /// Runs a pass whenever work for it is committed, and every `interval` anyway, until
    /// `shutdown`.
    pub async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.pass(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "transfer intake pass failed; retrying");
            }
            if let Err(e) = self.release_expired_holds(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "releasing expired holds failed; retrying");
            }
            if let Err(e) = self.resume_paused(Utc::now()).await {
                tracing::error!(error = %format!("{e:#}"), "resuming transfers of paused corridors failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.store.work_for(meridian_storage::Stage::Intake) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// The router's decision for one request, against the routing state as it is now.
    fn decide(&self, p: &PendingRemittance, now: DateTime<Utc>) -> Decided {
        self.routing
            .read(|router, screening| Self::decide_with(router, screening, p, now))
    }

    fn decide_with(
        router: &Router,
        screening: &Screening,
        p: &PendingRemittance,
        now: DateTime<Utc>,
    ) -> Decided {
        let unix = now.timestamp().max(0) as u64;
        let step = |from: Option<TransferState>, to, reason: Option<String>| Transition {
            from,
            to,
            reason,
            actor: "router".into(),
            at: now,
        };
        let PendingRemittance {
            sender,
            asset,
            amount,
            dest_chain,
            recipient,
            dest_asset,
            deadline,
            ..
        } = p;
        let mut transfer = NewTransfer {
            id: transfer_id(&p.uid),
            source_event_uid: p.uid.clone(),
            source_chain: p.chain.clone(),
            dest_chain: dest_chain.clone(),
            source_asset: asset.clone(),
            dest_asset: dest_asset.clone(),
            sender: sender.clone(),
            recipient: recipient.clone(),
            amount: *amount,
            deadline: Utc
                .timestamp_opt(i64::try_from(*deadline).unwrap_or(i64::MAX), 0)
                .single(),
            quote: None,
        };
        let requested = step(None, TransferState::Requested, None);
        // Refusals before screening passes go straight from Requested to Rejected.
        let reject = |transfer: NewTransfer, reason: String| Decided {
            transfer,
            path: vec![
                requested.clone(),
                step(
                    Some(TransferState::Requested),
                    TransferState::Rejected,
                    Some(reason),
                ),
            ],
            usage: None,
        };
        // The requested destination must be a listed asset on the chain the sender named.
        let dest: AssetId = match dest_asset.parse() {
            Ok(a) => a,
            Err(_) => {
                return reject(
                    transfer,
                    format!("destination asset `{dest_asset}` is not a CAIP-19 id"),
                )
            }
        };
        if dest.chain().as_str() != dest_chain {
            return reject(
                transfer,
                format!("destination asset {dest} is not on chain {dest_chain}"),
            );
        }
        let recipient_id = match dest_chain.parse::<ChainId>() {
            Ok(chain) => AccountId::new(&chain, recipient),
            Err(_) => {
                return reject(
                    transfer,
                    format!("destination chain `{dest_chain}` is not a CAIP-2 id"),
                )
            }
        };
        transfer.recipient = recipient_id.to_string();
        if *deadline <= unix {
            return reject(
                transfer,
                format!("deadline {deadline} passed before the request was routed"),
            );
        }

        let mut input = ScreeningInput {
            sender: sender.as_str(),
            recipient: recipient_id.as_str(),
            asset,
            amount: *amount,
            travel_rule_data: false,
            holds: &[],
            now: unix,
        };
        if let Decision::Reject(reason) = screening.screen(&input) {
            return reject(transfer, reason.to_string());
        }
        let screened = step(
            Some(TransferState::Requested),
            TransferState::Screened,
            None,
        );
        let quote = router.quote(asset, &dest, *amount, &screening.caps, unix);
        let quote: Quote = match quote {
            Ok(q) => q,
            Err(e) => {
                // Only paused corridors in the way: the transfer waits for them to resume.
                if let Some(paused) =
                    Self::paused_route(router, asset, &dest, *amount, screening, unix)
                {
                    return Decided {
                        transfer,
                        path: vec![
                            requested,
                            screened,
                            step(
                                Some(TransferState::Screened),
                                TransferState::Held,
                                Some(format!("{PAUSED_HOLD} {}", paused.join(", "))),
                            ),
                        ],
                        usage: None,
                    };
                }
                return Decided {
                    transfer,
                    path: vec![
                        requested,
                        screened,
                        step(
                            Some(TransferState::Screened),
                            TransferState::Rejected,
                            Some(e.to_string()),
                        ),
                    ],
                    usage: None,
                };
            }
        };
        transfer.quote = Some(quote.accepted());
        let holds: Vec<(&str, Option<u128>, u128)> = {
            quote
                .hops
                .iter()
                .map(|h| {
                    let threshold = router
                        .corridor(&h.corridor)
                        .and_then(|c| c.hold_threshold)
                        .map(|a| a.0);
                    (h.corridor.as_str(), threshold, h.amount_in)
                })
                .collect()
        };
        input.holds = &holds;
        let quoted_reason = format!(
            "route {}, delivers {}, cost {} bps, quote expires at {}",
            quote.route(),
            quote.amount_out,
            quote.cost_bps,
            Utc.timestamp_opt(i64::try_from(quote.expires_at).unwrap_or(i64::MAX), 0)
                .single()
                .map_or_else(|| quote.expires_at.to_string(), |t| t.to_rfc3339())
        );
        let quoted = step(
            Some(TransferState::Screened),
            TransferState::Quoted,
            Some(quoted_reason),
        );
        match screening.screen(&input) {
            Decision::Accept => Decided {
                usage: Some(CapUsage {
                    sender: sender.to_string(),
                    asset: asset.clone(),
                    amount: *amount,
                    legs: quote
                        .hops
                        .iter()
                        .map(|h| (h.corridor.clone(), h.amount_in))
                        .collect(),
                }),
                transfer,
                path: vec![requested, screened, quoted],
            },
            Decision::Hold(reason) => Decided {
                transfer,
                path: vec![
                    requested,
                    screened,
                    quoted,
                    step(
                        Some(TransferState::Quoted),
                        TransferState::Held,
                        Some(reason.to_string()),
                    ),
                ],
                usage: None,
            },
            Decision::Reject(reason) => Decided {
                transfer,
                path: vec![
                    requested,
                    screened,
                    quoted,
                    step(
                        Some(TransferState::Quoted),
                        TransferState::Rejected,
                        Some(reason.to_string()),
                    ),
                ],
                usage: None,
            },
        }
    }
}

/// The transfer `t` as stored with the transitions `path` (never empty: storage refuses a
/// transfer without a state).
fn stored_transfer(t: &NewTransfer, path: &[Transition]) -> Option<Transfer> {
    let (first, last) = (path.first()?, path.last()?);
    Some(Transfer {
        id: t.id.clone(),
        source_event_uid: t.source_event_uid.clone(),
        source_chain: t.source_chain.clone(),
        sender: t.sender.clone(),
        source_asset: t.source_asset.clone(),
        amount: t.amount,
        dest_chain: t.dest_chain.clone(),
        dest_asset: t.dest_asset.clone(),
        recipient: t.recipient.clone(),
        state: last.to,
        quote: t.quote.clone(),
        batch_id: None,
        deadline: t.deadline,
        created_at: first.at,
        updated_at: last.at,
    })
}
