//! Text forms: `xen-cpuid`'s `178bfbfd:80002001:…`, xapi's `178bfbfd-80002001-…`, and decoding to
//! names per word the way `xen-cpuid FEATURESET` prints them.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::{word_info, Error, Feature, FeatureId, Featureset};

/// The most words a featureset text may carry: the words Xen's 16-bit feature indices can name
/// (far beyond any Xen: 19 in 4.21), the limit of featuresets given as words too, so that
/// whatever is formatted parses back. Longer text is refused as soon as the word beyond is seen.
pub const MAX_TEXT_WORDS: usize = 2048;

/// A piece of input as an error message quotes it: whole up to 64 characters; longer, its
/// first 64 and how long it was, so that one bad megabyte-long token or line makes a readable
/// message, not a megabyte of one.
pub fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}… ({} bytes)", &text[..end], text.len())),
    }
}

impl Featureset {
    /// Parses `xen-cpuid`'s form or xapi's: hex words separated by `:` or `-`, at most
    /// 8 hex digits each (leading zeros optional), surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<Featureset, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Empty);
        }
        let count = text.bytes().filter(|b| matches!(b, b':' | b'-')).count() + 1;
        if count > MAX_TEXT_WORDS {
            return Err(Error::TooManyWords { count, max: MAX_TEXT_WORDS });
        }
        let mut words = Vec::with_capacity(count);
        for (word, token) in text.split([':', '-']).enumerate() {
            if token.is_empty() {
                return Err(Error::EmptyWord { word });
            }
            if !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::InvalidHex { word, token: token.to_string() });
            }
            if token.len() > 8 {
                return Err(Error::WordTooWide { word, token: token.to_string() });
            }
            words.push(
                u32::from_str_radix(token, 16).map_err(|_| Error::InvalidHex { word, token: token.to_string() })?,
            );
        }
        Ok(Featureset::from_words(words))
    }

    /// Parses a featureset as a toolstack stored it and remembers how it was written, so that a
    /// result can be written back the same way ([`Featureset::to_styled_string`]). Like
    /// [`Featureset::parse`], but the empty string is the empty featureset (xapi stores it for a
    /// host without HVM), and the two separators may not be mixed.
    pub fn parse_styled(text: &str) -> Result<(Featureset, TextStyle), Error> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok((Featureset::new(), TextStyle { separator: '-', words: 0 }));
        }
        let mut first: Option<char> = None;
        let mut word = 0;
        for c in trimmed.chars() {
            if c == ':' || c == '-' {
                match first {
                    Some(f) if f != c => return Err(Error::MixedSeparators { word, first: f, found: c }),
                    _ => first = Some(c),
                }
                word += 1;
            }
        }
        let set = Featureset::parse(trimmed)?;
        // A single word has no separator: xapi's form is the default.
        let style = TextStyle { separator: first.unwrap_or('-'), words: set.len_words() };
        Ok((set, style))
    }

    /// Writes the featureset in `style`: its separator and exactly its number of words
    /// (zero-extended). Set bits beyond those words are an error naming them
    /// ([`Error::DoesNotFit`]), never dropped.
    pub fn to_styled_string(&self, style: TextStyle) -> Result<String, Error> {
        Ok(self.fit(style.words)?.join_words(style.separator))
    }

    /// `xen-cpuid`'s form: every stored word as 8 hex digits, `:`-separated.
    pub fn to_xen_string(&self) -> String {
        self.join_words(':')
    }

    /// xapi's form: every stored word as 8 hex digits, `-`-separated.
    pub fn to_xapi_string(&self) -> String {
        self.join_words('-')
    }

    fn join_words(&self, separator: char) -> String {
        let mut out = String::with_capacity(self.len_words() * 9);
        for (i, word) in self.words().iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            let _ = write!(out, "{word:08x}");
        }
        out
    }

    /// Every stored word with its set bits by name: what `xen-cpuid FEATURESET` shows.
    pub fn decode(&self) -> Vec<DecodedWord> {
        self.words()
            .iter()
            .enumerate()
            .map(|(index, &value)| DecodedWord {
                index,
                value,
                bits: (0..32)
                    .filter(|bit| value & (1 << bit) != 0)
                    .filter_map(|bit| FeatureId::new(index, bit))
                    .map(|id| (id.bit(), id.feature()))
                    .collect(),
            })
            .collect()
    }
}

/// How a featureset text was written: what [`Featureset::parse_styled`] read and
/// [`Featureset::to_styled_string`] writes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextStyle {
    /// `-` (xapi) or `:` (`xen-cpuid`).
    pub separator: char,
    /// The number of words written.
    pub words: usize,
}

impl TextStyle {
    /// The style of several inputs combined into one: the first input's separator, the longest
    /// input's length (so that no input's bits are cut off).
    pub fn combined(styles: &[TextStyle]) -> TextStyle {
        TextStyle {
            separator: styles.first().map_or('-', |s| s.separator),
            words: styles.iter().map(|s| s.words).max().unwrap_or(0),
        }
    }
}

/// One word of a decoded featureset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedWord {
    /// Word index.
    pub index: usize,
    /// The word's value.
    pub value: u32,
    /// Each set bit, with the feature Xen names there (if any).
    pub bits: Vec<(u32, Option<&'static Feature>)>,
}

impl DecodedWord {
    /// The word's long name (`CPUID 0x00000001.edx`), or `<UNKNOWN>` past the words Xen defines.
    pub fn long_name(&self) -> &'static str {
        word_info(self.index).map_or("<UNKNOWN>", |w| w.long_name)
    }
}

impl fmt::Display for DecodedWord {
    /// `xen-cpuid`'s layout: `  [00] CPUID 0x00000001.edx     fpu vme <10> …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  [{:02}] {:<24}", self.index, self.long_name())?;
        for (bit, feature) in &self.bits {
            match feature {
                Some(feature) => write!(f, " {}", feature.name)?,
                None => write!(f, " <{bit}>")?,
            }
        }
        Ok(())
    }
}

impl FromStr for Featureset {
    type Err = Error;
    fn from_str(text: &str) -> Result<Featureset, Error> {
        Featureset::parse(text)
    }
}

impl fmt::Display for Featureset {
    /// `xen-cpuid`'s form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xen_string())
    }
}

impl serde::Serialize for Featureset {
    /// As `xen-cpuid`'s string form: compact, diffable, and what toolstacks already store.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_xen_string())
    }
}

impl<'de> serde::Deserialize<'de> for Featureset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Featureset, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Featureset::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Renders featuresets in `xen-cpuid`'s layout: a 24-column label, 8 spaces, the words.
pub fn xen_cpuid_line(label: &str, set: &Featureset) -> String {
    format!("{label:<24}        {set}")
}
