//! One named feature: where it lives, what Xen says about it, what people call it.

use std::fmt;

/// A bit in the featureset: `word * 32 + bit`, Xen's own numbering (`XEN_CPUFEATURE(NAME, word*32+bit)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeatureId(u16);

impl FeatureId {
    /// The bit `bit` (0–31) of word `word`. Returns `None` when `bit` is not below 32.
    pub const fn new(word: usize, bit: u32) -> Option<FeatureId> {
        if bit >= 32 || word >= 2048 {
            return None;
        }
        Some(FeatureId((word as u16) * 32 + bit as u16))
    }

    /// Xen's flat index, `word * 32 + bit`.
    pub const fn from_index(index: u16) -> FeatureId {
        FeatureId(index)
    }

    /// Xen's flat index, `word * 32 + bit`.
    pub const fn index(self) -> u16 {
        self.0
    }

    /// The featureset word this bit lives in.
    pub const fn word(self) -> usize {
        (self.0 / 32) as usize
    }

    /// The bit within its word, 0–31.
    pub const fn bit(self) -> u32 {
        (self.0 % 32) as u32
    }

    /// The bit's mask within its word.
    pub const fn mask(self) -> u32 {
        1 << self.bit()
    }

    /// The named feature at this position, if Xen names one.
    pub fn feature(self) -> Option<&'static Feature> {
        crate::lookup::by_id(self)
    }
}

impl fmt::Display for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.feature() {
            Some(feature) => f.write_str(feature.name),
            None => write!(f, "<{}*32+{}>", self.word(), self.bit()),
        }
    }
}

/// The attribute letters Xen's `cpufeatureset.h` gives a feature (`/*!A| ...*/`).
///
/// `A`/`S`/`H`: offered by default to all guests / HVM guests / HVM guests with HAP;
/// `a`/`s`/`h`: the same, but opt-in (max policy only); `!`: special, Xen derives or
/// overrides it; `|`: accumulated across a migration pool (OR, not AND).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Attributes(u8);

impl Attributes {
    const ALL: u8 = 1 << 0;
    const HVM: u8 = 1 << 1;
    const HAP: u8 = 1 << 2;
    const ALL_OPT_IN: u8 = 1 << 3;
    const HVM_OPT_IN: u8 = 1 << 4;
    const HAP_OPT_IN: u8 = 1 << 5;
    const SPECIAL: u8 = 1 << 6;
    const ACCUMULATE: u8 = 1 << 7;
    const LETTERS: [(char, u8); 8] = [
        ('!', Self::SPECIAL),
        ('A', Self::ALL),
        ('S', Self::HVM),
        ('H', Self::HAP),
        ('a', Self::ALL_OPT_IN),
        ('s', Self::HVM_OPT_IN),
        ('h', Self::HAP_OPT_IN),
        ('|', Self::ACCUMULATE),
    ];

    /// Parses the letters as written in the header; `None` on any other character.
    pub const fn parse(letters: &str) -> Option<Attributes> {
        let bytes = letters.as_bytes();
        let mut bits = 0u8;
        let mut i = 0;
        while i < bytes.len() {
            bits |= match bytes[i] {
                b'!' => Self::SPECIAL,
                b'A' => Self::ALL,
                b'S' => Self::HVM,
                b'H' => Self::HAP,
                b'a' => Self::ALL_OPT_IN,
                b's' => Self::HVM_OPT_IN,
                b'h' => Self::HAP_OPT_IN,
                b'|' => Self::ACCUMULATE,
                _ => return None,
            };
            i += 1;
        }
        Some(Attributes(bits))
    }

    /// `!`: Xen derives or overrides this bit; it is not plain functionality.
    pub const fn is_special(self) -> bool {
        self.0 & Self::SPECIAL != 0
    }

    /// `|`: a guest should see it if any host of its pool has it.
    pub const fn is_accumulated(self) -> bool {
        self.0 & Self::ACCUMULATE != 0
    }

    /// In the default policy of this guest kind (`A`, `S`, `H` as applicable).
    pub const fn in_default(self, kind: GuestKind) -> bool {
        let mask = match kind {
            GuestKind::Pv => Self::ALL,
            GuestKind::HvmShadow => Self::ALL | Self::HVM,
            GuestKind::HvmHap => Self::ALL | Self::HVM | Self::HAP,
        };
        self.0 & mask != 0
    }

    /// In the max policy of this guest kind (default letters plus their opt-in lower case).
    pub const fn in_max(self, kind: GuestKind) -> bool {
        let mask = match kind {
            GuestKind::Pv => Self::ALL | Self::ALL_OPT_IN,
            GuestKind::HvmShadow => Self::ALL | Self::ALL_OPT_IN | Self::HVM | Self::HVM_OPT_IN,
            GuestKind::HvmHap => {
                Self::ALL | Self::ALL_OPT_IN | Self::HVM | Self::HVM_OPT_IN | Self::HAP | Self::HAP_OPT_IN
            }
        };
        self.0 & mask != 0
    }

    /// Offered to some guest at all (any of `A S H a s h`).
    pub const fn offered_to_guests(self) -> bool {
        self.in_max(GuestKind::HvmHap)
    }
}

impl fmt::Display for Attributes {
    /// The letters in the header's customary order (`!A|`, `!a`, `S|`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, bit) in Self::LETTERS {
            if self.0 & bit != 0 {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// The three kinds of guest Xen builds policies for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestKind {
    /// Paravirtualised guest.
    Pv,
    /// HVM guest with shadow paging.
    HvmShadow,
    /// HVM guest with hardware-assisted paging (EPT/NPT).
    HvmHap,
}

impl GuestKind {
    /// All three, in Xen's order.
    pub const ALL: [GuestKind; 3] = [GuestKind::Pv, GuestKind::HvmShadow, GuestKind::HvmHap];
}

pub use cpupolicy_abi::XenRelease;

/// What a Xen release's `cpufeatureset.h` says of a feature (the feature table is master's).
pub trait ReleaseAttributes {
    /// What this release's `cpufeatureset.h` (at the newest point release of its branch) says
    /// of a feature: its attribute letters then, or `None` when it does not name the bit.
    fn attributes_of(self, feature: &Feature) -> Option<Attributes>;
}

impl ReleaseAttributes for XenRelease {
    fn attributes_of(self, feature: &Feature) -> Option<Attributes> {
        let Some(diff) = crate::releases::RELEASE_DIFFS.iter().find(|d| d.release == self) else {
            return Some(feature.attributes); // master: the table itself
        };
        let index = feature.id.index();
        if diff.absent.contains(&index) {
            return None;
        }
        match diff.attributes.iter().find(|(i, _)| *i == index) {
            Some((_, letters)) => Attributes::parse(letters),
            None => Some(feature.attributes),
        }
    }
}

/// How one release's `cpufeatureset.h` differs from the table's (master's).
#[derive(Debug)]
pub struct ReleaseDiff {
    /// The release.
    pub release: XenRelease,
    /// Feature indices (`word * 32 + bit`) it does not name.
    pub absent: &'static [u16],
    /// Indices whose attribute letters differ, with that release's letters.
    pub attributes: &'static [(u16, &'static str)],
}

/// One named CPU feature, as Xen's public `cpufeatureset.h` describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Feature {
    /// Where it lives in a featureset.
    pub id: FeatureId,
    /// Xen's name, lower case with `-` for `_` (`lahf-lm`), as `xen-cpuid` prints it.
    pub name: &'static str,
    /// Xen's attribute letters.
    pub attributes: Attributes,
    /// The first `x.y.0` Xen release whose header names it. Security-related bits were often
    /// backported to point releases of older branches, so a host may know it earlier.
    pub first_release: XenRelease,
    /// Other spellings people type: Linux `/proc/cpuinfo`, QEMU/libvirt, Xen 4.14's `xen-cpuid`.
    pub aliases: &'static [&'static str],
    /// The header's one-line description.
    pub description: &'static str,
}

impl Feature {
    /// The featureset word.
    pub const fn word(&self) -> usize {
        self.id.word()
    }

    /// The bit within the word.
    pub const fn bit(&self) -> u32 {
        self.id.bit()
    }
}

/// Builds a table row; a mistyped row fails the build (`const` evaluation panics at compile time).
pub(crate) const fn feature(
    word: usize,
    bit: u32,
    name: &'static str,
    attributes: &'static str,
    first_release: XenRelease,
    aliases: &'static [&'static str],
    description: &'static str,
) -> Feature {
    let id = match FeatureId::new(word, bit) {
        Some(id) => id,
        None => panic!("feature table: bit out of range"),
    };
    let attributes = match Attributes::parse(attributes) {
        Some(attributes) => attributes,
        None => panic!("feature table: unknown attribute letter"),
    };
    Feature { id, name, attributes, first_release, aliases, description }
}
