//! Featureset words, the modelled release's known set, masks and dependencies.

use super::*;

pub(super) type Words = [u32; NR_WORDS];

/// Features the featureset crate marks as new in 4.21 that `RELEASE-4.20.3` already names
/// (backported with XSA-471/ITS/FRED work: `git diff RELEASE-4.20.0 RELEASE-4.20.3 --
/// xen/include/public/arch-x86/cpufeatureset.h`).
pub(super) const BACKPORTED_TO_4_20_3: [FeatureId; 6] =
    [ids::VERW_CLEAR, ids::ITS_NO, ids::TSA_SQ_NO, ids::TSA_L1_NO, ids::PB_OPT_CTRL, ids::FRED];

pub(super) fn has(words: &Words, id: FeatureId) -> bool {
    words[id.word()] & id.mask() != 0
}

pub(super) fn set(words: &mut Words, id: FeatureId) {
    words[id.word()] |= id.mask();
}

pub(super) fn clear(words: &mut Words, id: FeatureId) {
    words[id.word()] &= !id.mask();
}

pub(super) fn and(words: &mut Words, mask: &Words) {
    for (word, m) in words.iter_mut().zip(mask) {
        *word &= m;
    }
}

/// `known_features[]` of Xen 4.20.3: every feature its header names.
pub(super) fn known_4_20() -> &'static Words {
    static KNOWN: OnceLock<Words> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut words = [0; NR_WORDS];
        for feature in FEATURES {
            if feature.first_release <= XenRelease::V4_20 || BACKPORTED_TO_4_20_3.contains(&feature.id) {
                words[feature.word()] |= feature.id.mask();
            }
        }
        words
    })
}

/// `known_features[]` of the modelled release (4.20: 4.20.3's; other releases: their newest
/// point release's header).
pub(super) fn known(release: XenRelease) -> Words {
    if release == XenRelease::V4_20 {
        *known_4_20()
    } else {
        crate::level::words_of(&static_mask_in(StaticMask::Known, release))
    }
}

/// One of gen-cpuid.py's static masks, as the modelled release computes it.
pub(super) fn mask(which: StaticMask, release: XenRelease) -> Words {
    let set = if release == XenRelease::V4_20 { static_mask(which).clone() } else { static_mask_in(which, release) };
    let mut words = crate::level::words_of(&set);
    and(&mut words, &known(release));
    words
}

/// Every feature with dependents and the (transitive) set depending on it: gen-cpuid.py's
/// `deep_deps`. 4.21 added `CLFLUSH: [CLZERO]`; 4.20 has no such row.
pub(super) fn deep_deps(release: XenRelease) -> &'static [(FeatureId, Words)] {
    static DEEP: OnceLock<[Vec<(FeatureId, Words)>; 2]> = OnceLock::new();
    let both = DEEP.get_or_init(|| {
        let rows = |with_clflush: bool| -> Vec<(FeatureId, Words)> {
            DEPENDENCIES
                .iter()
                .filter(|d| with_clflush || d.feature != "clflush")
                .filter_map(|d| feature_by_name(d.feature))
                .map(|feature| (feature.id, crate::level::words_of(&dependents_of(feature.id))))
                .collect()
        };
        [rows(false), rows(true)]
    });
    &both[usize::from(release > XenRelease::V4_20)]
}

/// The features that depend on `id` (`x86_cpu_policy_lookup_deep_deps`), empty if none.
pub(super) fn dependents(id: FeatureId, release: XenRelease) -> Words {
    deep_deps(release).iter().find(|(f, _)| *f == id).map_or([0; NR_WORDS], |(_, words)| *words)
}

/// `sanitise_featureset` (cpu-policy.c): clamp to the known features, then clear everything
/// whose prerequisite is absent, transitively.
pub(super) fn sanitise(words: &mut Words, release: XenRelease) {
    and(words, &known(release));
    let disabled: Vec<Words> =
        deep_deps(release).iter().filter(|(id, _)| words[id.word()] & id.mask() == 0).map(|(_, deps)| *deps).collect();
    for deps in disabled {
        for (word, dep) in words.iter_mut().zip(deps) {
            *word &= !dep;
        }
    }
}
