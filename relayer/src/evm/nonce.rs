//! The one nonce authority of a signer on one chain.
//!
//! Every transaction the relay signs takes its nonce here, so many can be in flight in one block
//! (nothing asks the node for `eth_getTransactionCount` per transaction). It starts above both
//! what the chain has mined and what the node has recorded (see [`NonceAuthority::starting_at`]);
//! a nonce that was taken but whose transaction was never recorded is given back and handed out
//! again first, so nonces are neither reused nor skipped.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Hands out the nonces of one signer on one chain.
#[derive(Debug)]
pub struct NonceAuthority {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The lowest nonce never handed out.
    next: u64,
    /// Nonces handed out and given back unused, below `next`.
    returned: BTreeSet<u64>,
}

impl NonceAuthority {
    /// An authority whose first nonce is the larger of the chain's transaction count at its
    /// latest block (`mined`) and one above the highest nonce recorded for this signer.
    pub fn starting_at(mined: u64, highest_recorded: Option<u64>) -> NonceAuthority {
        let next = highest_recorded.map_or(mined, |h| mined.max(h.saturating_add(1)));
        NonceAuthority {
            state: Mutex::new(State {
                next,
                returned: BTreeSet::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain integers behind: still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The nonce for the next transaction: the lowest given back, else a new one.
    pub fn take(&self) -> u64 {
        let mut s = self.state();
        if let Some(n) = s.returned.pop_first() {
            return n;
        }
        let n = s.next;
        s.next += 1;
        n
    }

    /// Gives back `nonce`, taken but not used (its transaction was not recorded, so it was never
    /// broadcast); the next [`NonceAuthority::take`] hands it out again.
    pub fn give_back(&self, nonce: u64) {
        let mut guard = self.state();
        let s = &mut *guard;
        if nonce + 1 == s.next {
            s.next = nonce;
            // Returned nonces just below fold back into `next` too.
            while s.next > 0 && s.returned.remove(&(s.next - 1)) {
                s.next -= 1;
            }
        } else if nonce < s.next {
            s.returned.insert(nonce);
        }
    }

    /// Skips past `mined`, the signer's transaction count on chain, when transactions that are
    /// not ours used nonces this authority had not handed out yet.
    pub fn advance_to(&self, mined: u64) {
        let mut s = self.state();
        if mined > s.next {
            s.next = mined;
        }
        s.returned.retain(|n| *n >= mined);
    }

    /// Whether `nonce` was given back and waits to be handed out again.
    pub fn is_returned(&self, nonce: u64) -> bool {
        self.state().returned.contains(&nonce)
    }

    /// The lowest nonce never handed out.
    pub fn next_unused(&self) -> u64 {
        self.state().next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_above_the_chain_and_the_records() {
        assert_eq!(NonceAuthority::starting_at(5, None).take(), 5);
        assert_eq!(NonceAuthority::starting_at(5, Some(9)).take(), 10);
        assert_eq!(NonceAuthority::starting_at(12, Some(9)).take(), 12);
    }

    #[test]
    fn nonces_are_consecutive_and_given_back_ones_come_first() {
        let a = NonceAuthority::starting_at(0, None);
        let taken: Vec<u64> = (0..4).map(|_| a.take()).collect();
        assert_eq!(taken, [0, 1, 2, 3]);
        a.give_back(1);
        a.give_back(3);
        assert!(a.is_returned(1) && !a.is_returned(2));
        assert_eq!(a.next_unused(), 3);
        assert_eq!(a.take(), 1);
        assert_eq!(a.take(), 3);
        assert_eq!(a.take(), 4);
        // Giving back the newest ones rolls `next` back over the returned run below it.
        a.give_back(2);
        a.give_back(4);
        a.give_back(3);
        assert_eq!(a.next_unused(), 2);
    }

    #[test]
    fn many_threads_never_share_a_nonce() {
        let a = std::sync::Arc::new(NonceAuthority::starting_at(100, None));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..250).map(|_| a.take()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (100..1100).collect::<Vec<_>>());
    }
}
