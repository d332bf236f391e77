//! `Featureset`: a variable-length array of feature words with zero-extension semantics.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{BitAnd, BitOr, BitXor, Not, Sub};

use crate::{feature_by_name, Error, Feature, FeatureId};

/// A set of CPU features: Xen's featureset, an array of 32-bit words.
///
/// Words are only ever appended to Xen's featureset, so two sets of different lengths are
/// compared as if the shorter were padded with zero words. A set whose extra words carry bits
/// has features the shorter side does not know about: [`Featureset::fit`] reports them rather
/// than silently dropping them.
#[derive(Clone, Default)]
pub struct Featureset {
    words: Vec<u32>,
}

impl Featureset {
    /// The empty set (no words).
    pub const fn new() -> Featureset {
        Featureset { words: Vec::new() }
    }

    /// A set from its words, word 0 first.
    pub fn from_words(words: impl Into<Vec<u32>>) -> Featureset {
        Featureset { words: words.into() }
    }

    /// The set holding exactly these features.
    pub fn from_ids(ids: impl IntoIterator<Item = FeatureId>) -> Featureset {
        let mut set = Featureset::new();
        for id in ids {
            set.insert(id);
        }
        set
    }

    /// The set holding the named features (Xen names or aliases).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Featureset, Error> {
        let mut set = Featureset::new();
        for name in names {
            set.insert_name(name)?;
        }
        Ok(set)
    }

    /// The words as stored (possibly with trailing zero words).
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Number of words stored.
    pub fn len_words(&self) -> usize {
        self.words.len()
    }

    /// Word `index`; zero beyond the stored length.
    pub fn word(&self, index: usize) -> u32 {
        self.words.get(index).copied().unwrap_or(0)
    }

    /// Sets word `index`, growing the set with zero words as needed.
    pub fn set_word(&mut self, index: usize, value: u32) {
        if index >= self.words.len() {
            if value == 0 {
                return;
            }
            self.words.resize(index + 1, 0);
        }
        self.words[index] = value;
    }

    /// Whether the feature is in the set.
    pub fn contains(&self, id: FeatureId) -> bool {
        self.word(id.word()) & id.mask() != 0
    }

    /// Adds a feature.
    pub fn insert(&mut self, id: FeatureId) {
        let word = self.word(id.word());
        self.set_word(id.word(), word | id.mask());
    }

    /// Removes a feature (only that bit; see [`Featureset::remove_with_dependents`]).
    pub fn remove(&mut self, id: FeatureId) {
        if let Some(word) = self.words.get_mut(id.word()) {
            *word &= !id.mask();
        }
    }

    /// Sets or clears a feature.
    pub fn set(&mut self, id: FeatureId, present: bool) {
        if present {
            self.insert(id)
        } else {
            self.remove(id)
        }
    }

    /// Whether the named feature is in the set.
    pub fn contains_name(&self, name: &str) -> Result<bool, Error> {
        Ok(self.contains(named(name)?.id))
    }

    /// Adds the named feature.
    pub fn insert_name(&mut self, name: &str) -> Result<(), Error> {
        self.insert(named(name)?.id);
        Ok(())
    }

    /// Removes the named feature (only that bit).
    pub fn remove_name(&mut self, name: &str) -> Result<(), Error> {
        self.remove(named(name)?.id);
        Ok(())
    }

    /// No feature at all.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Every feature of `self` is in `other`.
    pub fn is_subset(&self, other: &Featureset) -> bool {
        self.words.iter().enumerate().all(|(i, &w)| w & !other.word(i) == 0)
    }

    /// Every feature of `other` is in `self`.
    pub fn is_superset(&self, other: &Featureset) -> bool {
        other.is_subset(self)
    }

    /// Features in either.
    pub fn union(&self, other: &Featureset) -> Featureset {
        self.zip_with(other, |a, b| a | b)
    }

    /// Features in both.
    pub fn intersection(&self, other: &Featureset) -> Featureset {
        self.zip_with(other, |a, b| a & b)
    }

    /// Features in `self` but not in `other`.
    pub fn difference(&self, other: &Featureset) -> Featureset {
        self.zip_with(other, |a, b| a & !b)
    }

    /// Features in exactly one of the two.
    pub fn symmetric_difference(&self, other: &Featureset) -> Featureset {
        self.zip_with(other, |a, b| a ^ b)
    }

    /// Adds every feature of `other`, in place.
    pub fn union_with(&mut self, other: &Featureset) {
        self.zip_in_place(other, |a, b| a | b)
    }

    /// Keeps only features also in `other`, in place.
    pub fn intersect_with(&mut self, other: &Featureset) {
        self.zip_in_place(other, |a, b| a & b)
    }

    /// Removes every feature of `other`, in place.
    pub fn subtract(&mut self, other: &Featureset) {
        self.zip_in_place(other, |a, b| a & !b)
    }

    /// The set bits, in order.
    pub fn iter(&self) -> impl Iterator<Item = FeatureId> + '_ {
        self.words.iter().enumerate().flat_map(|(word, &bits)| {
            (0..32).filter(move |bit| bits & (1 << bit) != 0).filter_map(move |bit| FeatureId::new(word, bit))
        })
    }

    /// The named features in the set, in order.
    pub fn features(&self) -> impl Iterator<Item = &'static Feature> + '_ {
        self.iter().filter_map(FeatureId::feature)
    }

    /// Set bits Xen does not name (reserved, or newer than this crate).
    pub fn unknown(&self) -> impl Iterator<Item = FeatureId> + '_ {
        self.iter().filter(|id| id.feature().is_none())
    }

    /// Every set bit by name; unnamed bits as `<word*32+bit>`.
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|id| id.to_string()).collect()
    }

    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The same set without trailing zero words.
    pub fn trimmed(&self) -> Featureset {
        let len = self.significant_len();
        Featureset::from_words(&self.words[..len])
    }

    /// Exactly `nr_words` words: zero-extended, or truncated when the words dropped are zero.
    /// Set bits beyond `nr_words` are an error naming them, never silently lost.
    pub fn fit(&self, nr_words: usize) -> Result<Featureset, Error> {
        if self.significant_len() > nr_words {
            let lost = self.iter().filter(|id| id.word() >= nr_words).map(|id| id.to_string()).collect();
            return Err(Error::DoesNotFit { words: self.words.len(), capacity: nr_words, lost });
        }
        let mut words = self.words.clone();
        words.resize(nr_words, 0);
        Ok(Featureset { words })
    }

    /// Number of words up to and including the last non-zero one.
    fn significant_len(&self) -> usize {
        self.words.iter().rposition(|&w| w != 0).map_or(0, |i| i + 1)
    }

    fn zip_with(&self, other: &Featureset, op: impl Fn(u32, u32) -> u32) -> Featureset {
        let len = self.words.len().max(other.words.len());
        Featureset { words: (0..len).map(|i| op(self.word(i), other.word(i))).collect() }
    }

    fn zip_in_place(&mut self, other: &Featureset, op: impl Fn(u32, u32) -> u32) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (i, word) in self.words.iter_mut().enumerate() {
            *word = op(*word, other.word(i));
        }
    }
}

fn named(name: &str) -> Result<&'static Feature, Error> {
    feature_by_name(name).ok_or_else(|| Error::UnknownFeature { name: name.to_string() })
}

impl PartialEq for Featureset {
    /// Equal when equal after padding the shorter with zero words.
    fn eq(&self, other: &Featureset) -> bool {
        let len = self.words.len().max(other.words.len());
        (0..len).all(|i| self.word(i) == other.word(i))
    }
}

impl Eq for Featureset {}

impl Hash for Featureset {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.words[..self.significant_len()].hash(state)
    }
}

impl fmt::Debug for Featureset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Featureset({self})")
    }
}

impl FromIterator<FeatureId> for Featureset {
    fn from_iter<I: IntoIterator<Item = FeatureId>>(iter: I) -> Featureset {
        Featureset::from_ids(iter)
    }
}

impl BitAnd for &Featureset {
    type Output = Featureset;
    fn bitand(self, rhs: &Featureset) -> Featureset {
        self.intersection(rhs)
    }
}

impl BitOr for &Featureset {
    type Output = Featureset;
    fn bitor(self, rhs: &Featureset) -> Featureset {
        self.union(rhs)
    }
}

impl BitXor for &Featureset {
    type Output = Featureset;
    fn bitxor(self, rhs: &Featureset) -> Featureset {
        self.symmetric_difference(rhs)
    }
}

impl Sub for &Featureset {
    type Output = Featureset;
    fn sub(self, rhs: &Featureset) -> Featureset {
        self.difference(rhs)
    }
}

impl Not for &Featureset {
    type Output = Featureset;
    /// The complement within the stored words.
    fn not(self) -> Featureset {
        Featureset { words: self.words.iter().map(|w| !w).collect() }
    }
}
