//! Xen's x86 featureset: every named CPU feature, its attributes, dependencies and text forms.
//!
//! A featureset is Xen's bitmap of CPU features: an array of 32-bit words, each mirroring one
//! CPUID register or half of an MSR. Words are only ever appended, so featuresets from different
//! Xen versions differ in length and are compared as if zero-extended. Everything a toolstack
//! reasons about when it levels a pool or checks a migration starts from this bitmap.
//!
//! The design keeps facts as data a reviewer can read line by line:
//!
//! - [`FEATURES`] (`src/table.rs`): every feature named by Xen's public
//!   `xen/include/public/arch-x86/cpufeatureset.h` up to Xen 4.22 and master — word, bit, Xen's name
//!   (lower case, `-` for `_`), attribute letters, the first release naming it and a
//!   description, imported by `tools/import-header.py`. Aliases are curated by hand from Linux's
//!   `/proc/cpuinfo` names (`arch/x86/include/asm/cpufeatures.h`), QEMU/libvirt `-cpu`
//!   property names (`target/i386/cpu.c`) and Xen 4.14's `xen-cpuid` spellings
//!   (`tools/misc/xen-cpuid.c`).
//! - [`WORDS`] (`src/word.rs`): what each word mirrors, with `xen-cpuid`'s names for it.
//! - [`DEPENDENCIES`] (`src/deps.rs`): direct dependencies with the reason for each, as Xen
//!   records them in `xen/tools/gen-cpuid.py`.
//! - [`static_mask`]: Xen's static masks derived from the attribute letters exactly as
//!   `gen-cpuid.py` does; tests compare them with what Xen 4.20's `xen-cpuid` prints.
//!
//! There is no I/O here and no `unsafe`.

#![forbid(unsafe_code)]

mod deps;
mod error;
mod feature;
pub mod ids;
mod lookup;
mod masks;
mod releases;
mod set;
mod table;
mod text;
mod word;

pub use deps::{apply_dependencies_to_words, dependents_of, prerequisites_of, Dependency, Dependents, DEPENDENCIES};
pub use error::Error;
pub use feature::{Attributes, Feature, FeatureId, GuestKind, ReleaseAttributes, ReleaseDiff, XenRelease};
pub use lookup::feature_by_name;
pub use masks::{static_mask, static_mask_in, StaticMask};
pub use set::Featureset;
pub use table::FEATURES;
pub use text::{excerpt, xen_cpuid_line, DecodedWord, TextStyle, MAX_TEXT_WORDS};
pub use word::{word_info, Register, WordInfo, WordSource, WORDS};

/// Number of featureset words this crate knows (Xen 4.21: words 0–18).
pub const NR_WORDS: usize = 19;

/// A feature by its Xen name, for use in code: panics on a name not in the table.
///
/// Meant for literals in this workspace (`feature!("rtm")` style look-ups in tables); use
/// [`feature_by_name`] for anything that comes from input.
pub fn known(name: &str) -> FeatureId {
    match feature_by_name(name) {
        Some(feature) => feature.id,
        None => panic!("cpupolicy-featureset: '{name}' is not a feature name"),
    }
}

#[cfg(test)]
mod id_tests {
    /// The generated constants name the bits the table names.
    #[test]
    fn constants_match_the_table() {
        assert_eq!(crate::ids::ALL.len(), crate::FEATURES.len());
        for (id, name) in crate::ids::ALL {
            assert_eq!(crate::known(name), *id, "{name}");
        }
        assert_eq!(crate::ids::RSBA, crate::known("rsba"));
        assert_eq!(crate::ids::_3DNOW, crate::known("3dnow"));
    }
}
