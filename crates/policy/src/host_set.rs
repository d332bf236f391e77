//! A set of hosts by index into the hosts levelled, as a bitmap.
//!
//! Explaining a large pool means listing, for every lost feature, the hosts lacking it: at
//! 10,000 hosts about a million entries. Kept as one bit per host, each entry is one OR into a
//! word; the indices (and from them the names) are read off only when asked for. The first 64
//! hosts live in the set itself, so a set within a pool of up to 64 hosts never allocates.

use std::fmt;

/// A set of host indices (into the hosts levelled), read in ascending order.
#[derive(Clone, Default)]
pub struct HostSet {
    /// Hosts 0 to 63: bit `i` for host `i`.
    first: u64,
    /// Hosts from 64 on: bit `i % 64` of word `i / 64 - 1` for host `i`. Words past the last
    /// set bit may be present and zero: equality ignores them.
    rest: Vec<u64>,
}

impl HostSet {
    /// The empty set.
    pub const fn new() -> HostSet {
        HostSet { first: 0, rest: Vec::new() }
    }

    /// A set from its bitmap words (bit `i % 64` of word `i / 64` for host `i`).
    pub(crate) fn from_words(words: &[u64]) -> HostSet {
        match words.split_first() {
            Some((&first, rest)) => HostSet { first, rest: rest.to_vec() },
            None => HostSet::new(),
        }
    }

    /// The hosts among `0..hosts` for which `test` holds, 64 at a time.
    pub(crate) fn from_test(hosts: usize, mut test: impl FnMut(usize) -> bool) -> HostSet {
        let mut word_of = |start: usize| {
            (start..hosts.min(start + 64)).fold(0u64, |word, i| word | (u64::from(test(i)) << (i - start)))
        };
        let first = word_of(0);
        HostSet { first, rest: (64..hosts).step_by(64).map(word_of).collect() }
    }

    /// The hosts among `0..hosts` not in the set.
    pub(crate) fn complement(&self, hosts: usize) -> HostSet {
        // Word `k` with the bits of hosts from `hosts` on cleared (`k` below the word count).
        let word = |k: usize| {
            let in_range = hosts - 64 * k;
            !self.word(k) & if in_range >= 64 { !0 } else { (1u64 << in_range) - 1 }
        };
        let words = hosts.div_ceil(64);
        HostSet { first: if words == 0 { 0 } else { word(0) }, rest: (1..words).map(word).collect() }
    }

    /// Word `k` of the bitmap (hosts `64 * k` to `64 * k + 63`), zero past the stored ones.
    fn word(&self, k: usize) -> u64 {
        match k.checked_sub(1) {
            None => self.first,
            Some(k) => self.rest.get(k).copied().unwrap_or(0),
        }
    }

    /// Adds host `index`.
    pub fn insert(&mut self, index: usize) {
        let bit = 1 << (index % 64);
        match (index / 64).checked_sub(1) {
            None => self.first |= bit,
            Some(word) => {
                if word >= self.rest.len() {
                    self.rest.resize(word + 1, 0);
                }
                self.rest[word] |= bit;
            }
        }
    }

    /// Whether host `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        self.word(index / 64) & (1 << (index % 64)) != 0
    }

    /// How many hosts the set holds.
    pub fn len(&self) -> usize {
        self.first.count_ones() as usize + self.rest.iter().map(|w| w.count_ones() as usize).sum::<usize>()
    }

    /// Whether the set holds no host.
    pub fn is_empty(&self) -> bool {
        self.first == 0 && self.rest.iter().all(|&w| w == 0)
    }

    /// The host indices in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { words: &self.rest, base: 0, current: self.first }
    }

    /// The host indices in ascending order, as a vector.
    pub fn to_vec(&self) -> Vec<usize> {
        self.iter().collect()
    }
}

/// The indices of a [`HostSet`] in ascending order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    /// The words after `current`.
    words: &'a [u64],
    /// The index of bit 0 of `current`.
    base: usize,
    /// What is left of the word being read.
    current: u64,
}

impl Iterator for Iter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.current == 0 {
            let (&next, rest) = self.words.split_first()?;
            (self.words, self.current) = (rest, next);
            self.base += 64;
        }
        let bit = self.current.trailing_zeros() as usize;
        self.current &= self.current - 1;
        Some(self.base + bit)
    }
}

impl<'a> IntoIterator for &'a HostSet {
    type Item = usize;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Extend<usize> for HostSet {
    fn extend<I: IntoIterator<Item = usize>>(&mut self, indices: I) {
        indices.into_iter().for_each(|i| self.insert(i));
    }
}

impl FromIterator<usize> for HostSet {
    fn from_iter<I: IntoIterator<Item = usize>>(indices: I) -> HostSet {
        let mut set = HostSet::new();
        set.extend(indices);
        set
    }
}

impl From<Vec<usize>> for HostSet {
    fn from(indices: Vec<usize>) -> HostSet {
        indices.into_iter().collect()
    }
}

impl<const N: usize> From<[usize; N]> for HostSet {
    fn from(indices: [usize; N]) -> HostSet {
        indices.into_iter().collect()
    }
}

impl PartialEq for HostSet {
    fn eq(&self, other: &HostSet) -> bool {
        let (short, long) = if self.rest.len() <= other.rest.len() { (self, other) } else { (other, self) };
        self.first == other.first
            && short.rest == long.rest[..short.rest.len()]
            && long.rest[short.rest.len()..].iter().all(|&w| w == 0)
    }
}

impl Eq for HostSet {}

impl PartialEq<Vec<usize>> for HostSet {
    /// Equal when the vector lists exactly the set's hosts, in ascending order.
    fn eq(&self, other: &Vec<usize>) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

impl fmt::Debug for HostSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_went_in_in_order() {
        let indices = [0usize, 1, 63, 64, 65, 127, 128, 1000, 9999];
        let set: HostSet = indices.iter().rev().copied().collect();
        assert_eq!(set.to_vec(), indices);
        assert_eq!(set.len(), indices.len());
        for i in 0..10_000 {
            assert_eq!(set.contains(i), indices.contains(&i), "{i}");
        }
        assert!(!set.contains(usize::MAX));
    }

    #[test]
    fn empty_sets_of_any_width_are_equal_and_empty() {
        let wide = HostSet::from_words(&[0; 5]);
        assert!(wide.is_empty());
        assert_eq!(wide.len(), 0);
        assert_eq!(wide.iter().next(), None);
        assert_eq!(wide, HostSet::new());
        assert_eq!(HostSet::new(), wide);
        assert_eq!(wide, Vec::<usize>::new());
    }

    #[test]
    fn equality_ignores_trailing_zero_words_only() {
        let mut wide = HostSet::from_words(&[0; 4]);
        wide.insert(70);
        assert_eq!(wide, HostSet::from([70]));
        assert_ne!(wide, HostSet::from([70, 200]));
        assert_ne!(HostSet::from([71]), wide);
        assert_eq!(wide, vec![70]);
        assert_ne!(wide, vec![70, 70]);
        assert_eq!(format!("{wide:?}"), "[70]");
    }

    #[test]
    fn a_test_and_its_complement_split_the_hosts() {
        for hosts in [0usize, 1, 2, 63, 64, 65, 128, 200] {
            let test = |i: usize| i % 3 == 1 || i == 64;
            let with = HostSet::from_test(hosts, test);
            let without = with.complement(hosts);
            assert_eq!(with.to_vec(), (0..hosts).filter(|&i| test(i)).collect::<Vec<_>>(), "{hosts}");
            assert_eq!(without.to_vec(), (0..hosts).filter(|&i| !test(i)).collect::<Vec<_>>(), "{hosts}");
        }
    }

    #[test]
    fn iteration_skips_zero_words() {
        let set = HostSet::from_words(&[0, 0, 1 << 63, 0, 0b101]);
        assert_eq!(set.to_vec(), vec![191, 256, 258]);
    }
}
