//! Synthetic workloads for benchmarks and property tests: the shapes operators see (uniform
//! traffic, skewed traffic, a hot fee account, one big payer).

use rand::{Rng, SeedableRng};

use crate::ledger::{AccountFlags, AccountKind, AccountMeta, Ledger};
use crate::posting::{Posting, Settlement};

/// Shape of a benchmark batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Payer and payee uniform over all users.
    Uniform,
    /// Payers and payees Zipf-skewed (s = 1.0): a few accounts carry most traffic.
    Zipf,
    /// Uniform transfers, each also paying a fee to one shared fee account.
    HotFee,
    /// Every settlement debits the same payer.
    AllConflict,
}

impl Shape {
    /// All shapes, in report order.
    pub const ALL: [Shape; 4] = [
        Shape::Uniform,
        Shape::Zipf,
        Shape::HotFee,
        Shape::AllConflict,
    ];

    /// Name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Uniform => "uniform",
            Shape::Zipf => "zipf",
            Shape::HotFee => "hot-fee",
            Shape::AllConflict => "all-conflict",
        }
    }
}

/// Index of the shared fee account in ledgers built by [`funded_ledger`].
pub const FEE_ACCOUNT: u32 = 0;
/// Index of the funding (mint) account.
pub const MINT_ACCOUNT: u32 = 1;
/// First user account.
pub const FIRST_USER: u32 = 2;

/// A ledger with a fee account, a mint account and `users` no-overdraft user accounts of asset 0,
/// each funded with `balance` (posted directly, as if loaded from storage).
pub fn funded_ledger(users: u32, balance: u128) -> Ledger {
    let mut l = Ledger::new();
    let open = |l: &mut Ledger, kind, flags| {
        l.open_account(AccountMeta {
            asset: 0,
            kind,
            flags,
        })
    };
    let _ = open(&mut l, AccountKind::Fee, AccountFlags::NONE);
    let _ = open(&mut l, AccountKind::Suspense, AccountFlags::NONE);
    for _ in 0..users {
        let _ = open(
            &mut l,
            AccountKind::User,
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        );
    }
    let total = balance * u128::from(users);
    l.balances[MINT_ACCOUNT as usize].debits_posted = total;
    for ix in FIRST_USER..FIRST_USER + users {
        l.balances[ix as usize].credits_posted = balance;
    }
    l.balance_bound = total;
    l
}

fn zipf_index(rng: &mut impl Rng, n: u32) -> u32 {
    // Inverse-CDF approximation of Zipf(s = 1) over 1..=n: P(k) ∝ 1/k.
    let h = (f64::from(n)).ln() + 0.577_215_664_9;
    let u: f64 = rng.gen_range(0.0..1.0);
    let k = (u * h - 0.577_215_664_9).exp();
    (k.max(0.0) as u32).min(n - 1)
}

/// `len` settlements of `shape` over `users` users; posting ids start at `first_id`.
pub fn batch(shape: Shape, users: u32, len: usize, first_id: u128, seed: u64) -> Vec<Settlement> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut id = first_id;
    let mut next_id = || {
        id += 1;
        id
    };
    (0..len)
        .map(|_| {
            let (debit, credit) = match shape {
                Shape::Uniform | Shape::HotFee => {
                    (rng.gen_range(0..users), rng.gen_range(0..users))
                }
                Shape::Zipf => (zipf_index(&mut rng, users), zipf_index(&mut rng, users)),
                Shape::AllConflict => (0, rng.gen_range(1..users.max(2))),
            };
            let (debit, credit) = (
                FIRST_USER + debit,
                FIRST_USER
                    + if credit == debit {
                        (credit + 1) % users
                    } else {
                        credit
                    },
            );
            let amount = rng.gen_range(1..100u128);
            let mut postings = vec![Posting::Transfer {
                id: next_id(),
                debit,
                credit,
                asset: 0,
                amount,
                timeout: None,
            }];
            if shape == Shape::HotFee {
                postings.push(Posting::Transfer {
                    id: next_id(),
                    debit,
                    credit: FEE_ACCOUNT,
                    asset: 0,
                    amount: 1,
                    timeout: None,
                });
            }
            Settlement { postings }
        })
        .collect()
}
