//! Property tests: the parallel executor equals the sequential oracle — results, balances and
//! pending records — on random batches with conflicts, linked chains, two-phase postings, repeated
//! ids and bad input; and the ledger's invariants always hold.

use meridian_executor::ledger::PendingRecord;
use meridian_executor::{
    execute_sequential, AccountFlags, AccountKind, AccountMeta, Ledger, ParallelExecutor, Posting,
    PostingError, Settlement, SettlementResult, Tuning,
};
use proptest::prelude::*;

const ASSETS: u32 = 2;

/// Batches that took the parallel path (checked below so the property cannot pass vacuously).
static PARALLEL_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Clone)]
struct Setup {
    /// (asset, flags bits) of each user account.
    accounts: Vec<(u32, u8)>,
    /// Initial credit of each user account from its asset's mint account.
    funding: Vec<u64>,
}

fn build(setup: &Setup) -> Ledger {
    let mut l = Ledger::new();
    for asset in 0..ASSETS {
        l.open_account(AccountMeta {
            asset,
            kind: AccountKind::Suspense,
            flags: AccountFlags::NONE,
        })
        .unwrap();
    }
    for &(asset, bits) in &setup.accounts {
        let flags = match bits % 4 {
            0 => AccountFlags::NONE,
            1 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            _ => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                .union(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        };
        l.open_account(AccountMeta {
            asset,
            kind: AccountKind::User,
            flags,
        })
        .unwrap();
    }
    // Fund users whose flags allow receiving without prior debits.
    let funding: Vec<Settlement> = setup
        .accounts
        .iter()
        .zip(&setup.funding)
        .enumerate()
        .map(|(i, (&(asset, _), &amount))| {
            Settlement::single(Posting::Transfer {
                id: 1_000_000 + i as u128,
                debit: asset,
                credit: ASSETS + i as u32,
                asset,
                amount: u128::from(amount),
                timeout: None,
            })
        })
        .collect();
    execute_sequential(&mut l, &funding, 0);
    l
}

fn posting(n_accounts: u32) -> impl Strategy<Value = Posting> {
    let id = 1u128..400;
    let account = 0..n_accounts + 1; // one past the end: unknown account
                                     // Huge amounts are rare: one in a batch sends the whole batch down the sequential path.
    let amount = prop_oneof![
        400 => 1u128..500,
        20 => Just(0u128),
        1 => Just(u128::MAX / 3),
    ];
    prop_oneof![
        6 => (id.clone(), account.clone(), account, 0..ASSETS, amount, prop::option::weighted(0.25, 1u64..4))
            .prop_map(|(id, debit, credit, asset, amount, timeout)| Posting::Transfer { id, debit, credit, asset, amount, timeout }),
        1 => (id.clone(), 1u128..400).prop_map(|(id, pending_id)| Posting::PostPending { id, pending_id }),
        1 => (id, 1u128..400).prop_map(|(id, pending_id)| Posting::VoidPending { id, pending_id }),
    ]
}

fn scenario() -> impl Strategy<Value = (Setup, Vec<Vec<Settlement>>)> {
    (2usize..14).prop_flat_map(|n| {
        let setup = (
            prop::collection::vec((0..ASSETS, 0u8..4), n),
            prop::collection::vec(0u64..2_000, n),
        )
            .prop_map(|(accounts, funding)| Setup { accounts, funding });
        let total = n as u32 + ASSETS;
        let settlement = prop::collection::vec(posting(total), 0..4)
            .prop_map(|postings| Settlement { postings });
        let batches = prop::collection::vec(prop::collection::vec(settlement, 1..300), 1..4);
        (setup, batches)
    })
}

fn pendings(l: &Ledger) -> Vec<(u128, Option<PendingRecord>)> {
    (1u128..400).map(|id| (id, l.pending(id))).collect()
}

/// Thread counts and thresholds that drive every path: tiny parts (so rounds are split over
/// two or three workers and cross-part conflicts occur), no serial fallback, and the defaults.
fn tunings() -> Vec<(usize, Tuning)> {
    vec![
        (
            2,
            Tuning {
                batch_min: 0,
                level_min: 2,
                serial_fallback: false,
                part_min: 8,
            },
        ),
        (
            3,
            Tuning {
                batch_min: 0,
                level_min: 1,
                serial_fallback: true,
                part_min: 4,
            },
        ),
        (
            2,
            Tuning {
                batch_min: 0,
                level_min: 1,
                serial_fallback: true,
                ..Tuning::default()
            },
        ),
        (2, Tuning::default()),
    ]
}

fn check_equal(
    (setup, batches): (Setup, Vec<Vec<Settlement>>),
    tuning_ix: usize,
) -> Result<(), TestCaseError> {
    let mut oracle = build(&setup);
    let mut ledger = build(&setup);
    let (threads, tuning) = tunings()[tuning_ix];
    let mut exec = ParallelExecutor::with_tuning(threads, tuning).unwrap();
    for (k, batch) in batches.iter().enumerate() {
        let now = k as u64 * 2;
        let expected = execute_sequential(&mut oracle, batch, now);
        let (got, stats) = exec.execute(&mut ledger, batch, now);
        if stats.rounds > 0 && stats.parallel > 0 {
            PARALLEL_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        prop_assert_eq!(&got, &expected, "results differ in batch {}", k);
        prop_assert_eq!(
            ledger.balances_snapshot(),
            oracle.balances_snapshot(),
            "balances differ after batch {}",
            k
        );
        prop_assert_eq!(pendings(&ledger), pendings(&oracle));
        prop_assert_eq!(ledger.check_invariants(), Ok(()));
    }
    Ok(())
}

#[test]
fn parallel_equals_sequential() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    });
    let result = runner.run(&(scenario(), 0usize..4), |(scenario, tuning)| {
        check_equal(scenario, tuning)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let parallel = PARALLEL_RUNS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        parallel > 500,
        "only {parallel} batches took the parallel path; the property is too weak"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn replaying_accepted_settlements_changes_nothing((setup, batches) in scenario()) {
        let mut ledger = build(&setup);
        let mut exec = ParallelExecutor::with_tuning(2, Tuning { batch_min: 0, level_min: 2, serial_fallback: false, part_min: 8 }).unwrap();
        let batch = &batches[0];
        let (results, _) = exec.execute(&mut ledger, batch, 0);
        let accepted: Vec<Settlement> = batch.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(s, _)| s.clone()).collect();
        let before = ledger.balances_snapshot();
        let before_pending = pendings(&ledger);
        let (replay, _) = exec.execute(&mut ledger, &accepted, 0);
        prop_assert!(replay.iter().all(|r: &SettlementResult| matches!(r, Err(e) if e.error == PostingError::IdExists)), "{:?}", replay);
        prop_assert_eq!(ledger.balances_snapshot(), before);
        prop_assert_eq!(pendings(&ledger), before_pending);
    }
}

fn transfer(id: u128, debit: u32, credit: u32, amount: u128) -> Posting {
    Posting::Transfer {
        id,
        debit,
        credit,
        asset: 0,
        amount,
        timeout: None,
    }
}

#[test]
fn bad_input_gets_typed_errors_and_the_batch_goes_on() {
    let setup = Setup {
        accounts: vec![(0, 1), (0, 1), (1, 1)],
        funding: vec![100, 0, 50],
    };
    let mut l = build(&setup);
    let (a, b, other_asset) = (ASSETS, ASSETS + 1, ASSETS + 2);
    let batch = vec![
        Settlement::single(transfer(1, a, b, 0)),
        Settlement::single(transfer(2, a, 99, 5)),
        Settlement::single(transfer(3, a, other_asset, 5)),
        Settlement::single(transfer(4, a, b, 500)),
        Settlement::single(transfer(5, a, b, 60)),
        Settlement::single(transfer(5, a, b, 1)),
        // Linked: the second fails, so the first is rolled back.
        Settlement {
            postings: vec![transfer(6, a, b, 10), transfer(7, b, a, 1_000)],
        },
        Settlement::single(Posting::VoidPending {
            id: 8,
            pending_id: 5,
        }),
        Settlement::single(Posting::PostPending {
            id: 9,
            pending_id: 77,
        }),
        Settlement::default(),
    ];
    let mut exec = ParallelExecutor::with_tuning(
        2,
        Tuning {
            batch_min: 0,
            level_min: 1,
            serial_fallback: false,
            part_min: 2,
        },
    )
    .unwrap();
    let (r, _) = exec.execute(&mut l, &batch, 0);
    let errors: Vec<Option<(usize, PostingError)>> = r
        .iter()
        .map(|r| r.err().map(|e| (e.posting, e.error)))
        .collect();
    assert_eq!(
        errors,
        vec![
            Some((0, PostingError::ZeroAmount)),
            Some((0, PostingError::CreditAccountNotFound)),
            Some((0, PostingError::AssetMismatch)),
            Some((0, PostingError::ExceedsCredits)),
            None,
            Some((0, PostingError::IdExists)),
            Some((1, PostingError::ExceedsCredits)),
            Some((0, PostingError::PendingNotFound)),
            Some((0, PostingError::PendingNotFound)),
            Some((0, PostingError::EmptySettlement)),
        ]
    );
    assert_eq!(
        l.balances(a).unwrap().credits_posted - l.balances(a).unwrap().debits_posted,
        40
    );
    assert_eq!(l.balances(b).unwrap().credits_posted, 60);
    l.check_invariants().unwrap();
}

#[test]
fn two_phase_post_void_and_expiry() {
    let setup = Setup {
        accounts: vec![(0, 1), (0, 1)],
        funding: vec![100, 0],
    };
    let mut l = build(&setup);
    let (a, b) = (ASSETS, ASSETS + 1);
    let pending = |id, amount, timeout| Posting::Transfer {
        id,
        debit: a,
        credit: b,
        asset: 0,
        amount,
        timeout: Some(timeout),
    };
    let r = execute_sequential(
        &mut l,
        &[
            Settlement::single(pending(1, 30, 10)),
            Settlement::single(pending(2, 30, 10)),
            Settlement::single(pending(3, 30, 5)),
        ],
        0,
    );
    assert!(r.iter().all(|r| r.is_ok()));
    // 90 reserved: a fourth reservation of 30 would overdraw.
    let r = execute_sequential(&mut l, &[Settlement::single(pending(4, 30, 10))], 1);
    assert_eq!(r[0].unwrap_err().error, PostingError::ExceedsCredits);
    let r = execute_sequential(
        &mut l,
        &[
            Settlement::single(Posting::PostPending {
                id: 10,
                pending_id: 1,
            }),
            Settlement::single(Posting::VoidPending {
                id: 11,
                pending_id: 2,
            }),
            Settlement::single(Posting::PostPending {
                id: 12,
                pending_id: 1,
            }),
            Settlement::single(Posting::VoidPending {
                id: 13,
                pending_id: 2,
            }),
        ],
        2,
    );
    assert_eq!(r[0], Ok(()));
    assert_eq!(r[1], Ok(()));
    assert_eq!(r[2].unwrap_err().error, PostingError::PendingAlreadyPosted);
    assert_eq!(r[3].unwrap_err().error, PostingError::PendingAlreadyVoided);
    // Pending 3 expires at 5: at batch clock 6 it is released and cannot be posted.
    let r = execute_sequential(
        &mut l,
        &[Settlement::single(Posting::PostPending {
            id: 14,
            pending_id: 3,
        })],
        6,
    );
    assert_eq!(r[0].unwrap_err().error, PostingError::PendingExpired);
    let ab = l.balances(a).unwrap();
    assert_eq!((ab.debits_posted, ab.debits_pending), (30, 0));
    assert_eq!(l.balances(b).unwrap().credits_posted, 30);
    l.check_invariants().unwrap();
}

#[test]
fn workloads_take_the_parallel_path_and_match_the_oracle() {
    use meridian_executor::workload::{batch, funded_ledger, Shape};
    for shape in Shape::ALL {
        let mut oracle = funded_ledger(20_000, 1_000);
        let mut ledger = funded_ledger(20_000, 1_000);
        let mut exec = ParallelExecutor::new(2).unwrap();
        let b = batch(shape, 20_000, 4_096, 0, 7);
        let expected = execute_sequential(&mut oracle, &b, 0);
        let (got, stats) = exec.execute(&mut ledger, &b, 0);
        assert_eq!(got, expected, "{shape:?}");
        assert_eq!(
            ledger.balances_snapshot(),
            oracle.balances_snapshot(),
            "{shape:?}"
        );
        match shape {
            // One payer: a single conflict chain, run one by one.
            Shape::AllConflict => assert!(stats.sequential_reason.is_some(), "{stats:?}"),
            // Rounds free the settlements off the hottest accounts; the chains through them
            // remain for the serial tail.
            Shape::Zipf => assert!(stats.rounds > 0 && stats.serial > 0, "{stats:?}"),
            Shape::Uniform | Shape::HotFee => {
                assert!(
                    stats.rounds > 0 && stats.parallel > b.len() * 9 / 10,
                    "{shape:?}: {stats:?}"
                )
            }
        }
    }
}

#[test]
fn a_resolution_of_an_earlier_batch_pending_transfer_keeps_its_place() {
    // A pending transfer from an earlier batch reserves most of `a`; this batch first voids it,
    // then spends what the void released. The spend may only run after the void, although no
    // posting of the void names `a`: the executor must take the account from the stored record.
    let setup = Setup {
        accounts: vec![(0, 1), (0, 1), (0, 1)],
        funding: vec![100, 0, 0],
    };
    let (a, b, c) = (ASSETS, ASSETS + 1, ASSETS + 2);
    let run = |parallel: bool| {
        let mut l = build(&setup);
        let first = vec![Settlement::single(Posting::Transfer {
            id: 1,
            debit: a,
            credit: b,
            asset: 0,
            amount: 90,
            timeout: Some(100),
        })];
        let second = vec![
            Settlement::single(Posting::VoidPending {
                id: 2,
                pending_id: 1,
            }),
            Settlement::single(transfer(3, a, c, 50)),
        ];
        let mut exec = ParallelExecutor::with_tuning(
            2,
            Tuning {
                batch_min: 0,
                level_min: 1,
                serial_fallback: false,
                part_min: 1,
            },
        )
        .unwrap();
        if parallel {
            exec.execute(&mut l, &first, 0);
            (exec.execute(&mut l, &second, 1).0, l.balances_snapshot())
        } else {
            execute_sequential(&mut l, &first, 0);
            (
                execute_sequential(&mut l, &second, 1),
                l.balances_snapshot(),
            )
        }
    };
    let (expected, expected_balances) = run(false);
    assert_eq!(expected, vec![Ok(()), Ok(())]);
    let (got, balances) = run(true);
    assert_eq!(got, expected);
    assert_eq!(balances, expected_balances);
}
