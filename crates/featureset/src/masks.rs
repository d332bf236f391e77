//! Xen's static featureset masks, computed from the attribute letters of the table.
//!
//! PV default = `A`; HVM shadow default = PV default + `S`; HVM HAP default = shadow default + `H`;
//! each max adds the lower-case (opt-in) letters of the same levels (REFERENCE §3,
//! `gen-cpuid.py` `crunch_numbers`). `xen-cpuid` prints these as "Static sets".

use std::sync::OnceLock;

use crate::{Attributes, Featureset, GuestKind, ReleaseAttributes, FEATURES};

/// One of Xen's static masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaticMask {
    /// Every named feature.
    Known,
    /// `!` features: Xen derives or overrides them.
    Special,
    /// `|` features: accumulated (ORed) across a migration pool.
    Accumulate,
    /// Features offered by default to this kind of guest.
    Default(GuestKind),
    /// Features this kind of guest may be given at most.
    Max(GuestKind),
}

impl StaticMask {
    /// The masks in the order and with the labels `xen-cpuid` prints under "Static sets"
    /// (accumulate is ours; `xen-cpuid` does not print it).
    pub const XEN_CPUID_ORDER: [(StaticMask, &'static str); 8] = [
        (StaticMask::Known, "Known"),
        (StaticMask::Special, "Special"),
        (StaticMask::Max(GuestKind::Pv), "PV Max"),
        (StaticMask::Default(GuestKind::Pv), "PV Default"),
        (StaticMask::Max(GuestKind::HvmShadow), "HVM Shadow Max"),
        (StaticMask::Default(GuestKind::HvmShadow), "HVM Shadow Default"),
        (StaticMask::Max(GuestKind::HvmHap), "HVM Hap Max"),
        (StaticMask::Default(GuestKind::HvmHap), "HVM Hap Default"),
    ];

    /// Every mask, in a stable order.
    pub const ALL: [StaticMask; 9] = [
        StaticMask::Known,
        StaticMask::Special,
        StaticMask::Accumulate,
        StaticMask::Max(GuestKind::Pv),
        StaticMask::Default(GuestKind::Pv),
        StaticMask::Max(GuestKind::HvmShadow),
        StaticMask::Default(GuestKind::HvmShadow),
        StaticMask::Max(GuestKind::HvmHap),
        StaticMask::Default(GuestKind::HvmHap),
    ];

    /// A stable machine-readable name (`known`, `pv-max`, `hvm-hap-default`, …).
    pub fn key(self) -> &'static str {
        match self {
            StaticMask::Known => "known",
            StaticMask::Special => "special",
            StaticMask::Accumulate => "accumulate",
            StaticMask::Default(GuestKind::Pv) => "pv-default",
            StaticMask::Default(GuestKind::HvmShadow) => "hvm-shadow-default",
            StaticMask::Default(GuestKind::HvmHap) => "hvm-hap-default",
            StaticMask::Max(GuestKind::Pv) => "pv-max",
            StaticMask::Max(GuestKind::HvmShadow) => "hvm-shadow-max",
            StaticMask::Max(GuestKind::HvmHap) => "hvm-hap-max",
        }
    }

    fn selects(self, attributes: Attributes) -> bool {
        match self {
            StaticMask::Known => true,
            StaticMask::Special => attributes.is_special(),
            StaticMask::Accumulate => attributes.is_accumulated(),
            StaticMask::Default(kind) => attributes.in_default(kind),
            StaticMask::Max(kind) => attributes.in_max(kind),
        }
    }
}

/// The mask, with exactly [`crate::NR_WORDS`] words.
pub fn static_mask(mask: StaticMask) -> &'static Featureset {
    static MASKS: OnceLock<Vec<Featureset>> = OnceLock::new();
    let masks = MASKS.get_or_init(|| {
        StaticMask::ALL
            .iter()
            .map(|&m| {
                let mut set = Featureset::from_words(vec![0; crate::NR_WORDS]);
                for feature in FEATURES.iter().filter(|f| m.selects(f.attributes)) {
                    set.insert(feature.id);
                }
                set
            })
            .collect()
    });
    let index = StaticMask::ALL.iter().position(|&m| m == mask).unwrap_or(0);
    &masks[index]
}

/// The mask as `release`'s Xen computes it (its newest point release: the features its header
/// names, with the letters it gives them), with exactly [`crate::NR_WORDS`] words.
pub fn static_mask_in(mask: StaticMask, release: crate::XenRelease) -> Featureset {
    let mut set = Featureset::from_words(vec![0; crate::NR_WORDS]);
    for feature in FEATURES {
        if release.attributes_of(feature).is_some_and(|a| mask.selects(a)) {
            set.insert(feature.id);
        }
    }
    set
}
