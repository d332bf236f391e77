//! A set of hosts by index into the hosts levelled, as a bitmap.
//!
//! Explaining a large pool means listing, for every lost feature, the hosts lacking it: at
//! 10,000 hosts about a million entries. Kept as one bit per host, each entry is one OR into a
//! word; the indices (and from them the names) are read off only when asked for.

use std::fmt;

/// A set of host indices (into the hosts levelled), read in ascending order.
#[derive(Clone, Default)]
pub struct HostSet {
    /// Bit `i % 64` of word `i / 64` is set for host `i`. Words past the last set bit may be
    /// present and zero: equality ignores them.
    words: Vec<u64>,
}

impl HostSet {
    /// The empty set.
    pub const fn new() -> HostSet {
        HostSet { words: Vec::new() }
    }

    /// A set from its bitmap words (bit `i % 64` of word `i / 64` for host `i`).
    pub(crate) fn from_words(words: Vec<u64>) -> HostSet {
        HostSet { words }
    }

    /// Adds host `index`.
    pub fn insert(&mut self, index: usize) {
        let word = index / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (index % 64);
    }

    /// Whether host `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        self.words.get(index / 64).is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// How many hosts the set holds.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set holds no host.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The host indices in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { words: &self.words, base: 0, current: self.words.first().copied().unwrap_or(0) }
    }

    /// The host indices in ascending order, as a vector.
    pub fn to_vec(&self) -> Vec<usize> {
        self.iter().collect()
    }
}

/// The indices of a [`HostSet`] in ascending order.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
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
            self.words = self.words.get(1..).filter(|rest| !rest.is_empty())?;
            self.base += 64;
            self.current = self.words[0];
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

impl FromIterator<usize> for HostSet {
    fn from_iter<I: IntoIterator<Item = usize>>(indices: I) -> HostSet {
        let mut set = HostSet::new();
        indices.into_iter().for_each(|i| set.insert(i));
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
        let (short, long) = if self.words.len() <= other.words.len() { (self, other) } else { (other, self) };
        short.words == long.words[..short.words.len()] && long.words[short.words.len()..].iter().all(|&w| w == 0)
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
        let wide = HostSet::from_words(vec![0; 5]);
        assert!(wide.is_empty());
        assert_eq!(wide.len(), 0);
        assert_eq!(wide.iter().next(), None);
        assert_eq!(wide, HostSet::new());
        assert_eq!(HostSet::new(), wide);
        assert_eq!(wide, Vec::<usize>::new());
    }

    #[test]
    fn equality_ignores_trailing_zero_words_only() {
        let mut wide = HostSet::from_words(vec![0; 4]);
        wide.insert(70);
        assert_eq!(wide, HostSet::from([70]));
        assert_ne!(wide, HostSet::from([70, 200]));
        assert_ne!(HostSet::from([71]), wide);
        assert_eq!(wide, vec![70]);
        assert_ne!(wide, vec![70, 70]);
        assert_eq!(format!("{wide:?}"), "[70]");
    }

    #[test]
    fn iteration_skips_zero_words() {
        let set = HostSet::from_words(vec![0, 0, 1 << 63, 0, 0b101]);
        assert_eq!(set.to_vec(), vec![191, 256, 258]);
    }
}
