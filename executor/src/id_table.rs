//! The set of accepted posting ids: open addressing over a flat array of ids.
//!
//! Every posting costs one look-up here, and with millions of ids that look-up is a cache miss.
//! A general-purpose hash set keeps control bytes and keys apart (two misses) and offers no way
//! to ask for a slot early; this one keeps the id in its slot (one miss) and lets the executor
//! [`prefetch`](IdSet::prefetch) the slots of upcoming postings while it works on the current
//! ones. Id 0 is never accepted (it is refused as `ZeroId`), so 0 marks an empty slot.

use crate::PostingId;

/// Mixes an id into 64 well-spread bits: the top four pick the shard, the low ones the slot.
/// Client ids are often sequential, so every bit must depend on every input bit (splitmix64).
#[inline]
pub(crate) fn mix(id: PostingId) -> u64 {
    let mut z = (id as u64) ^ ((id >> 64) as u64).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Asks the CPU to start loading the cache line at `p`; a hint, never a fault.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Smallest table; grows by doubling when three quarters full.
const MIN_SLOTS: usize = 64;

/// A set of non-zero posting ids. Aligned to two cache lines: the shards of the ledger's id
/// table sit side by side and are filled by different workers, which would otherwise contend
/// for the line holding their lengths.
#[derive(Debug, Clone)]
#[repr(align(128))]
pub struct IdSet {
    slots: Vec<PostingId>,
    len: usize,
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet {
            slots: zeroed_slots(MIN_SLOTS),
            len: 0,
        }
    }
}

/// `n` empty slots, written rather than mapped lazily: a calloc'd table is backed by the shared
/// zero page until written, so each first write to a page would fault a second time and flush
/// the other cores' TLBs. The huge-page hint goes in before the first write.
fn zeroed_slots(n: usize) -> Vec<PostingId> {
    let mut v: Vec<PostingId> = Vec::with_capacity(n);
    crate::ledger::advise_huge_pages(v.spare_capacity_mut());
    v.resize(n, 0);
    v
}

impl IdSet {
    /// Makes room for `additional` more ids without growing. Growing a large table inside a
    /// batch means faulting in and rehashing a fresh allocation on the hot path; a node that
    /// knows how many ids it holds sizes the table once at start-up.
    pub fn reserve(&mut self, additional: usize) {
        let needed = (self.len + additional).saturating_mul(4).div_ceil(3);
        if needed > self.slots.len() {
            self.rehash(needed.next_power_of_two());
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn home(&self, id: PostingId) -> usize {
        mix(id) as usize & self.mask()
    }

    /// Starts loading the slot where `id` would be.
    #[inline]
    pub fn prefetch(&self, id: PostingId) {
        prefetch(self.slots.as_ptr().wrapping_add(self.home(id)));
    }

    /// The slot holding `id`, or the empty slot where it would go.
    #[inline]
    fn find(&self, id: PostingId) -> usize {
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            let s = self.slots[i];
            if s == id || s == 0 {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `id` is in the set (id 0 never is).
    #[inline]
    pub fn contains(&self, id: PostingId) -> bool {
        id != 0 && self.slots[self.find(id)] == id
    }

    /// Adds `id`; `false` when it was there already. Id 0 is not stored (and reported as new).
    #[inline]
    pub fn insert(&mut self, id: PostingId) -> bool {
        if id == 0 {
            return true;
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let i = self.find(id);
        if self.slots[i] == id {
            return false;
        }
        self.slots[i] = id;
        self.len += 1;
        true
    }

    /// Removes `id`; `false` when it was not there. Shifts later entries of the probe run back
    /// so that no tombstone is needed.
    pub fn remove(&mut self, id: PostingId) -> bool {
        if id == 0 {
            return false;
        }
        let mut hole = self.find(id);
        if self.slots[hole] != id {
            return false;
        }
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(s);
            // `s` may move into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        self.rehash(self.slots.len() * 2);
    }

    fn rehash(&mut self, slots: usize) {
        let fresh = zeroed_slots(slots);
        let old = std::mem::replace(&mut self.slots, fresh);
        let mask = self.mask();
        for id in old.into_iter().filter(|&id| id != 0) {
            let mut i = self.home(id);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = id;
        }
    }

    /// Every id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = PostingId> + '_ {
        self.slots.iter().copied().filter(|&id| id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn behaves_like_a_hash_set_under_inserts_and_removes() {
        let mut ours = IdSet::default();
        let mut reference = HashSet::new();
        // Half the ids fit the reserved table; the rest make it grow on the way.
        ours.reserve(2_500);
        let mut x = 0x1234_5678_9abc_def0u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A small id range forces collisions, long probe runs and removals inside them.
            let id = u128::from(x % 5_000) + if step % 7 == 0 { 1 << 100 } else { 0 };
            if x % 3 == 0 {
                assert_eq!(ours.remove(id), reference.remove(&id), "remove {id}");
            } else if id != 0 {
                assert_eq!(ours.insert(id), reference.insert(id), "insert {id}");
            }
            assert_eq!(ours.len(), reference.len());
        }
        for id in 0..5_000u128 {
            assert_eq!(ours.contains(id), reference.contains(&id), "contains {id}");
        }
        let mut all: Vec<_> = ours.iter().collect();
        all.sort_unstable();
        let mut expected: Vec<_> = reference.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn id_zero_is_never_stored() {
        let mut s = IdSet::default();
        assert!(s.insert(0));
        assert!(!s.contains(0));
        assert!(!s.remove(0));
        assert!(s.is_empty());
    }
}
