//! Errors: each names the token, word or feature that was wrong.

/// What went wrong with a featureset or a feature name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No feature has this name or alias.
    #[error("unknown feature name '{}'", crate::excerpt(name))]
    UnknownFeature {
        /// The name as given.
        name: String,
    },
    /// The featureset text was empty.
    #[error("empty featureset")]
    Empty,
    /// A word is not hexadecimal.
    #[error("featureset word {word}: '{}' is not hexadecimal", crate::excerpt(token))]
    InvalidHex {
        /// Zero-based word index.
        word: usize,
        /// The offending text.
        token: String,
    },
    /// A word has more than 8 hex digits.
    #[error("featureset word {word}: '{}' is wider than 32 bits (at most 8 hex digits)", crate::excerpt(token))]
    WordTooWide {
        /// Zero-based word index.
        word: usize,
        /// The offending text.
        token: String,
    },
    /// A separator with nothing between.
    #[error("featureset word {word} is empty")]
    EmptyWord {
        /// Zero-based word index.
        word: usize,
    },
    /// Both separators in one featureset: `-` (xapi) and `:` (`xen-cpuid`) are never mixed.
    #[error("featureset word {word}: separator '{found}' after '{first}' earlier; use one separator throughout")]
    MixedSeparators {
        /// Zero-based index of the word the second kind of separator follows.
        word: usize,
        /// The separator used first.
        first: char,
        /// The other one.
        found: char,
    },
    /// More words than any Xen could have.
    #[error("featureset has {count} words; at most {max} are accepted")]
    TooManyWords {
        /// How many words were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A longer featureset has bits the shorter receiver cannot represent.
    #[error("featureset has {words} words but only {capacity} fit; bits beyond would be lost: {}", first_of(lost))]
    DoesNotFit {
        /// Words in the featureset.
        words: usize,
        /// Words the receiver holds.
        capacity: usize,
        /// The set bits that do not fit, by name (`<word*32+bit>` when unnamed).
        lost: Vec<String>,
    },
}

/// The first 32 names, then how many more: a message stays readable however many bits a
/// featureset has beyond the receiver.
fn first_of(lost: &[String]) -> String {
    const LISTED: usize = 32;
    let mut text = lost.iter().take(LISTED).map(String::as_str).collect::<Vec<_>>().join(" ");
    if lost.len() > LISTED {
        text.push_str(&format!(" and {} more", lost.len() - LISTED));
    }
    text
}
