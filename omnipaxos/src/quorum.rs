//! Quorum arithmetic for a configuration of `n` servers.
//!
//! Invariant: `1 <= read <= n`, `1 <= write <= n` and `read + write > n`, so any read quorum
//! (the promises a new leader collects) meets any write quorum (the accepts that decided an
//! entry), and a new leader always learns every decided entry.

use crate::util::FlexibleQuorum;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quorum {
    n: usize,
    read: usize,
    write: usize,
}

impl Quorum {
    /// Majorities for both phases, unless `flexible` is given (already validated).
    pub(crate) fn new(n: usize, flexible: Option<FlexibleQuorum>) -> Self {
        let (read, write) = match flexible {
            Some(f) => (f.read_quorum_size, f.write_quorum_size),
            None => (n / 2 + 1, n / 2 + 1),
        };
        debug_assert!(
            read >= 1 && write >= 1 && read <= n && write <= n && read + write > n,
            "invalid quorum n={n} read={read} write={write}"
        );
        Quorum { n, read, write }
    }

    /// Whether `count` promises (the leader's own included) let a leader take over.
    pub(crate) fn is_prepare_quorum(&self, count: usize) -> bool {
        count >= self.read
    }

    /// Whether `count` servers reached (self included) are enough to both take over and decide:
    /// what leader election calls being quorum-connected.
    pub(crate) fn is_connected_quorum(&self, count: usize) -> bool {
        count >= self.read.max(self.write)
    }

    /// The number of promises a new leader needs.
    pub(crate) fn read_size(&self) -> usize {
        self.read
    }

    /// The number of accepts an entry needs to be decided.
    pub(crate) fn write_size(&self) -> usize {
        self.write
    }

    /// The number of servers in the configuration.
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.n
    }
}

/// The highest index that at least `quorum` of the `accepted` indices reach: the `quorum`-th
/// largest. Returns 0 if there are fewer than `quorum` values. Reorders `accepted`.
pub(crate) fn quorum_index(accepted: &mut [usize], quorum: usize) -> usize {
    if quorum == 0 || accepted.len() < quorum {
        return 0;
    }
    let k = quorum - 1;
    if accepted.len() <= SMALL {
        // A handful of servers (the common case, asked at every `Accepted`): an insertion sort,
        // largest first, costs a few comparisons where a selection pays its setup.
        for i in 1..accepted.len() {
            let mut j = i;
            while j > 0 && accepted[j - 1] < accepted[j] {
                accepted.swap(j - 1, j);
                j -= 1;
            }
        }
        return accepted[k];
    }
    let (_, kth, _) = accepted.select_nth_unstable_by(k, |a, b| b.cmp(a));
    *kth
}

/// Up to this many values, `quorum_index` sorts them by insertion.
const SMALL: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The deliberately naive reference: try every candidate index, count the servers at or past
    /// it, keep the largest that a quorum reaches.
    fn naive_quorum_index(accepted: &[usize], quorum: usize) -> usize {
        if quorum == 0 {
            return 0;
        }
        let mut best = 0;
        for &candidate in accepted {
            let count = accepted.iter().filter(|&&a| a >= candidate).count();
            if count >= quorum && candidate > best {
                best = candidate;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn quorum_index_matches_naive(mut acc in prop::collection::vec(0usize..50, 0..20), q in 0usize..21) {
            let expected = naive_quorum_index(&acc, q);
            prop_assert_eq!(quorum_index(&mut acc, q), expected);
        }

        #[test]
        fn majority_quorums_intersect(n in 1usize..20) {
            let q = Quorum::new(n, None);
            // Two majorities always share a server, and a lone majority can decide.
            prop_assert!(q.read + q.write > n);
            prop_assert!(q.is_prepare_quorum(n / 2 + 1));
            prop_assert!(!q.is_prepare_quorum(n / 2));
            prop_assert!(q.is_connected_quorum(n));
            prop_assert_eq!(q.size(), n);
        }

        #[test]
        fn flexible_quorum_connectivity_needs_both(
            (n, r, w) in (1usize..12)
                .prop_flat_map(|n| (Just(n), 1..=n))
                .prop_flat_map(|(n, r)| (Just(n), Just(r), (n - r + 1)..=n))
        ) {
            let q = Quorum::new(n, Some(FlexibleQuorum { read_quorum_size: r, write_quorum_size: w }));
            for count in 0..=n {
                prop_assert_eq!(q.is_connected_quorum(count), count >= r && count >= w);
                prop_assert_eq!(q.is_prepare_quorum(count), count >= r);
            }
            prop_assert_eq!(q.write_size(), w);
        }
    }
}
