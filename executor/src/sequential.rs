//! The sequential oracle: settlements applied one by one in batch order. This *defines* a batch's
//! result; the parallel executor must reproduce it exactly.

use crate::ledger::{
    apply_settlement, AccountMeta, Balances, IdTables, Ledger, LedgerView, PendingRecord, Scratch,
};
use crate::posting::{Settlement, SettlementResult};
use crate::AccountIx;

struct SequentialView<'a> {
    metas: &'a [AccountMeta],
    balances: &'a mut [Balances],
    tables: &'a mut IdTables,
}

impl LedgerView for SequentialView<'_> {
    fn metas(&self) -> &[AccountMeta] {
        self.metas
    }
    fn is_delta(&self, _: AccountIx) -> bool {
        false
    }
    fn balances_mut(&mut self, ix: AccountIx) -> &mut Balances {
        &mut self.balances[ix as usize]
    }
    fn id_known(&self, id: crate::PostingId) -> bool {
        self.tables.contains(id)
    }
    fn pending(&self, id: crate::PostingId) -> Option<PendingRecord> {
        self.tables.pending(id)
    }
    fn commit(
        &mut self,
        new_ids: &[crate::PostingId],
        pending_ops: &[(crate::PostingId, PendingRecord)],
    ) {
        for id in new_ids {
            self.tables.insert(*id);
        }
        for (id, rec) in pending_ops {
            self.tables.set_pending(*id, *rec);
        }
    }
}

/// Executes `batch` at batch clock `now`, one settlement after another.
pub fn execute_sequential(
    ledger: &mut Ledger,
    batch: &[Settlement],
    now: u64,
) -> Vec<SettlementResult> {
    let _expired = ledger.expire_pending(now);
    run(ledger, batch, now)
}

/// The sequential path after expiry (the parallel executor falls back to it).
pub(crate) fn run(ledger: &mut Ledger, batch: &[Settlement], now: u64) -> Vec<SettlementResult> {
    let total: u128 = batch
        .iter()
        .flat_map(|s| &s.postings)
        .fold(0u128, |acc, p| acc.saturating_add(p.amount()));
    let mut scratch = Scratch::default();
    let mut view = SequentialView {
        metas: &ledger.metas,
        balances: &mut ledger.balances,
        tables: &mut ledger.tables,
    };
    let results = batch
        .iter()
        .map(|s| apply_settlement(&mut view, s, now, &mut scratch))
        .collect();
    ledger.balance_bound = ledger.balance_bound.saturating_add(total);
    results
}
