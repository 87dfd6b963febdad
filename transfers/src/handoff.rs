//! The intake hands the transfers it just quoted to the settler in memory, so the settler does
//! not read back from the database what the intake has just written.
//!
//! The database stays the record: a handed-over transfer was committed as `quoted` first, and
//! the settler still looks for quoted transfers in the database after it drained the hand-off,
//! so what did not fit ([`HANDOFF_BATCHES_MAX`]), what a restart left behind and what other paths
//! quoted (a released hold, a resumed corridor, an operator) are settled all the same. A transfer
//! that arrives both ways settles once: its postings' ids derive from it, and its move to
//! `settled` is guarded by its state.

use meridian_types::Transfer;
use tokio::sync::mpsc;

/// Batches of quoted transfers the hand-off holds at most; when it is full the intake drops
/// the batch (it is committed) and the settler finds it in the database.
pub const HANDOFF_BATCHES_MAX: usize = 64;

/// The intake's end of the hand-off.
#[derive(Debug, Clone)]
pub struct QuotedSender {
    tx: mpsc::Sender<Vec<Transfer>>,
}

/// The settler's end of the hand-off.
#[derive(Debug)]
pub struct QuotedReceiver {
    rx: mpsc::Receiver<Vec<Transfer>>,
}

/// A hand-off from the intake to the settler.
pub fn quoted_handoff() -> (QuotedSender, QuotedReceiver) {
    let (tx, rx) = mpsc::channel(HANDOFF_BATCHES_MAX);
    (QuotedSender { tx }, QuotedReceiver { rx })
}

impl QuotedSender {
    /// Hands over committed quoted transfers; `false` when they were left to the database (the
    /// hand-off is full or the settler stopped).
    pub fn hand_over(&self, quoted: Vec<Transfer>) -> bool {
        if quoted.is_empty() {
            return true;
        }
        match self.tx.try_send(quoted) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(batch)) => {
                tracing::debug!(
                    transfers = batch.len(),
                    "hand-off to the settler is full; it will read them from the database"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl QuotedReceiver {
    /// Takes handed-over transfers, whole batches, until at least `limit` or none are left.
    pub fn take(&mut self, limit: usize) -> Vec<Transfer> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.rx.try_recv() {
                Ok(batch) => out.extend(batch),
                Err(_) => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use meridian_types::{AccountId, AssetId, ChainId, TransferState};

    fn transfer(n: u32) -> Transfer {
        let chain: ChainId = "eip155:1".parse().unwrap();
        Transfer {
            id: format!("tr:{n}"),
            source_event_uid: format!("{n}"),
            source_chain: chain.clone(),
            sender: AccountId::new(&chain, "0x01"),
            source_asset: AssetId::erc20(&chain, "0x02"),
            amount: 1,
            dest_chain: "eip155:2".into(),
            dest_asset: "eip155:2/erc20:0x03".into(),
            recipient: "eip155:2:0x04".into(),
            state: TransferState::Quoted,
            quote: None,
            batch_id: None,
            deadline: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn batches_come_out_whole_and_in_order_and_a_full_handoff_refuses() {
        let (tx, mut rx) = quoted_handoff();
        for b in 0..HANDOFF_BATCHES_MAX as u32 {
            assert!(tx.hand_over(vec![transfer(2 * b), transfer(2 * b + 1)]));
        }
        assert!(
            !tx.hand_over(vec![transfer(9_999)]),
            "full: left to the database"
        );
        let first = rx.take(3);
        assert_eq!(
            first.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["tr:0", "tr:1", "tr:2", "tr:3"],
            "whole batches until the limit is reached"
        );
        let rest = rx.take(usize::MAX);
        assert_eq!(rest.len(), 2 * HANDOFF_BATCHES_MAX - 4);
        assert!(rx.take(10).is_empty());
        drop(rx);
        assert!(!tx.hand_over(vec![transfer(1)]), "the settler stopped");
    }
}
