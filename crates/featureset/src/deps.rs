//! Feature dependencies: turning a feature off turns off everything built on it.
//!
//! The table lists *direct* dependents, with the reason beside each row. The facts are the
//! x86 architecture's as Xen 4.21 records them (`xen/tools/gen-cpuid.py`, `deps`); where the
//! vendor manuals are silent, Xen's choice is kept so a guest never sees a combination real
//! hardware would not have. [`Featureset::apply_dependencies`] computes the transitive closure.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::{feature_by_name, FeatureId, Featureset, FEATURES, NR_WORDS};

/// The features directly depending on one feature.
#[derive(Debug)]
pub struct Dependency {
    /// The prerequisite.
    pub feature: &'static str,
    /// What needs it.
    pub dependents: Dependents,
    /// Why.
    pub reason: &'static str,
}

/// The dependents of a [`Dependency`].
#[derive(Debug)]
pub enum Dependents {
    /// These named features.
    Named(&'static [&'static str]),
    /// Every named feature in these featureset words.
    Words(&'static [usize]),
}

const fn dep(feature: &'static str, dependents: &'static [&'static str], reason: &'static str) -> Dependency {
    Dependency { feature, dependents: Dependents::Named(dependents), reason }
}

/// Direct dependencies: `feature` is a prerequisite of each of `dependents`.
pub static DEPENDENCIES: &[Dependency] = &[
    dep("fpu", &["mmx", "rstr-fp-err-ptrs"], "MMX aliases the x87 registers; FPU error pointers need an FPU"),
    dep("pse", &["pse36"], "PSE36 extends PSE superpages with extra address bits"),
    dep("pae", &["lm", "nx"], "long mode requires CR4.PAE; NX exists only in the PAE PTE format"),
    dep("tsc", &["tsc-deadline", "rdtscp", "tsc-adjust", "itsc"], "all refine the time stamp counter"),
    dep("apic", &["x2apic", "tsc-deadline", "extapic"], "extensions of the local APIC"),
    dep("clflush", &["clzero"], "CLZERO finds the cache line size through CLFLUSH's leaf 1 field"),
    dep("mmx", &["mmxext", "3dnow"], "AMD built MMX extensions and 3DNow! on MMX"),
    dep("fxsr", &["ffxsr", "sse"], "SSE state is saved with FXSAVE; fast FXSAVE optimises it"),
    dep("sse", &["sse2", "misalignsse"], "SSE means the XMM registers, which these build on"),
    dep(
        "sse2",
        &["sse3", "lm", "aesni", "pclmulqdq", "sha", "gfni"],
        "SSE2 is baseline for 64-bit; vector-integer extensions build on it",
    ),
    dep("sse3", &["ssse3", "sse4a"], "each SSE level builds on the previous"),
    dep("ssse3", &["sse4-1"], "each SSE level builds on the previous"),
    dep("sse4-1", &["sse4-2"], "each SSE level builds on the previous"),
    dep(
        "xsave",
        &["xsaveopt", "xsavec", "xgetbv1", "xsaves", "avx", "mpx", "pku", "amx-tile", "lwp"],
        "XSAVE variants extend it; new register state is only managed through XSAVE",
    ),
    dep(
        "avx",
        &["fma", "fma4", "f16c", "avx2", "xop", "avx-ne-convert", "sm3"],
        "AVX means the 256-bit YMM state these instructions use",
    ),
    dep("nx", &["smap"], "Xen's shadow paging cannot provide SMAP without NX"),
    dep(
        "lm",
        &["cx16", "pcid", "lahf-lm", "page1gb", "pku", "no-lmsl", "amx-tile", "cmpccxadd", "lkgs", "movrs"],
        "only meaningful or encodable in long mode / 4-level paging",
    ),
    dep("3dnow", &["3dnowext"], "AMD's 3DNow!+ extends 3DNow!"),
    dep(
        "avx2",
        &["avx512f", "vaes", "vpclmulqdq", "avx-vnni", "avx-ifma", "avx-vnni-int8", "avx-vnni-int16", "sha512", "sm4"],
        "AVX-512 requires AVX2; 256-bit integer-vector extensions build on AVX2",
    ),
    dep(
        "avx512f",
        &[
            "avx512dq",
            "avx512-ifma",
            "avx512pf",
            "avx512er",
            "avx512cd",
            "avx512bw",
            "avx512vl",
            "avx512-4vnniw",
            "avx512-4fmaps",
            "avx512-vnni",
            "avx512-vpopcntdq",
            "avx512-vp2intersect",
        ],
        "AVX512F means the ZMM and mask register state every AVX-512 extension uses",
    ),
    dep(
        "avx512bw",
        &["avx512-vbmi", "avx512-vbmi2", "avx512-bitalg", "avx512-bf16", "avx512-fp16"],
        "byte/word element extensions need the 64-bit mask registers of AVX512BW",
    ),
    dep("pclmulqdq", &["vpclmulqdq"], "the vector form extends the legacy instruction"),
    dep("aesni", &["vaes"], "the vector form extends the legacy instruction"),
    dep(
        "ibrsb",
        &["stibp", "ssbd", "intel-psfd", "eibrs", "ipred-ctrl", "rrsba-ctrl", "bhi-ctrl"],
        "IBRSB enumerates MSR_SPEC_CTRL; the others are bits in it (Intel)",
    ),
    dep(
        "ibrs",
        &["amd-stibp", "amd-ssbd", "psfd", "auto-ibrs", "ibrs-always", "ibrs-fast", "ibrs-same-mode"],
        "IBRS enumerates MSR_SPEC_CTRL; the others are bits in it or hints about it (AMD)",
    ),
    dep("ibpb", &["ibpb-ret", "sbpb", "ibpb-brtype"], "refinements of the IBPB barrier"),
    dep("amd-stibp", &["stibp-always"], "a hint about STIBP"),
    dep("rtm", &["tsxldtrk"], "TSX load-tracking suspend works inside RTM transactions"),
    dep("psfd", &["epsf"], "enhanced predictive store forwarding is a note on top of PSF"),
    Dependency {
        feature: "arch-caps",
        dependents: Dependents::Words(&[16, 17]),
        reason: "the CPUID bit enumerates MSR_ARCH_CAPABILITIES itself: every bit of it goes with it",
    },
    dep("eibrs", &["rrsba"], "RRSBA describes behaviour only with eIBRS active"),
    dep("amx-tile", &["amx-bf16", "amx-int8", "amx-fp16", "amx-complex"], "AMX means the tile registers"),
];

/// The direct dependents of each prerequisite, resolved to feature ids.
///
/// Panics only if the static table names an unknown feature, which a unit test rules out.
fn direct() -> &'static HashMap<FeatureId, Vec<FeatureId>> {
    static DIRECT: OnceLock<HashMap<FeatureId, Vec<FeatureId>>> = OnceLock::new();
    DIRECT.get_or_init(|| {
        let mut map: HashMap<FeatureId, Vec<FeatureId>> = HashMap::new();
        for dependency in DEPENDENCIES {
            let Some(prerequisite) = feature_by_name(dependency.feature) else { continue };
            let entry = map.entry(prerequisite.id).or_default();
            match dependency.dependents {
                Dependents::Named(names) => entry.extend(names.iter().filter_map(|n| feature_by_name(n)).map(|f| f.id)),
                Dependents::Words(words) => {
                    entry.extend(FEATURES.iter().filter(|f| words.contains(&f.word())).map(|f| f.id))
                }
            }
        }
        map
    })
}

/// Each prerequisite, in table order, with everything depending on it, directly or not, as
/// featureset words: Xen's "deep dependencies" bitmaps. Closing a featureset is then a walk of
/// this table, no look-up and no allocation.
fn deep_table() -> &'static [(FeatureId, [u32; NR_WORDS])] {
    static DEEP: OnceLock<Vec<(FeatureId, [u32; NR_WORDS])>> = OnceLock::new();
    DEEP.get_or_init(|| {
        let direct = direct();
        let mut table: Vec<(FeatureId, [u32; NR_WORDS])> = Vec::new();
        for root in DEPENDENCIES.iter().filter_map(|d| feature_by_name(d.feature)).map(|f| f.id) {
            if table.iter().any(|(id, _)| *id == root) {
                continue;
            }
            let mut seen = [0u32; NR_WORDS];
            let mut stack = direct[&root].clone();
            while let Some(next) = stack.pop() {
                if next != root && seen[next.word()] & next.mask() == 0 {
                    seen[next.word()] |= next.mask();
                    stack.extend(direct.get(&next).into_iter().flatten().copied());
                }
            }
            table.push((root, seen));
        }
        table
    })
}

/// Everything that depends on `id`, directly or transitively (not `id` itself).
pub fn dependents_of(id: FeatureId) -> Featureset {
    deep_table()
        .iter()
        .find(|(root, _)| *root == id)
        .map(|(_, words)| Featureset::from_words(words.to_vec()))
        .unwrap_or_default()
}

/// Every feature `feature` depends on, directly or not, in table order: those whose absence
/// clears it. None for a feature beyond the known words (a featureset may be longer).
pub fn prerequisites_of(feature: FeatureId) -> Vec<FeatureId> {
    deep_table()
        .iter()
        .filter(|(_, deep)| deep.get(feature.word()).is_some_and(|word| word & feature.mask() != 0))
        .map(|(id, _)| *id)
        .collect()
}

/// Clears, in featureset words, every feature whose prerequisite is absent, transitively, as
/// Xen does before handing a featureset to a guest; without allocating. Returns whether
/// anything was cleared.
///
/// The deep dependencies are transitive already, so one pass suffices: what goes is the union
/// of the deep dependencies of every prerequisite absent from `words` (a dependent that is
/// itself a prerequisite brings its own dependents in through the absent root's bitmap).
pub fn apply_dependencies_to_words(words: &mut [u32; NR_WORDS]) -> bool {
    let closure = closure_table();
    let mut cleared = [0u32; NR_WORDS];
    for (w, (&word, &prerequisites)) in words.iter().zip(closure.prerequisites.iter()).enumerate() {
        let mut absent = !word & prerequisites;
        while absent != 0 {
            let bit = absent.trailing_zeros();
            absent &= absent - 1;
            let row = &closure.rows[usize::from(closure.row_of[w * 32 + bit as usize])];
            for (c, d) in cleared.iter_mut().zip(row.iter()) {
                *c |= *d;
            }
        }
    }
    let mut any = 0;
    for (word, clear) in words.iter_mut().zip(cleared) {
        any |= *word & clear;
        *word &= !clear;
    }
    any != 0
}

/// [`deep_table`] laid out for [`apply_dependencies_to_words`]: which bits of each word are
/// prerequisites, and each one's row of dependents by feature index.
struct ClosureTable {
    /// Per word, the bits that are prerequisites of something.
    prerequisites: [u32; NR_WORDS],
    /// Per feature index (`word * 32 + bit`), its row in `rows` (meaningful only for
    /// prerequisites).
    row_of: [u8; NR_WORDS * 32],
    /// The deep dependents of each prerequisite, as featureset words.
    rows: Vec<[u32; NR_WORDS]>,
}

fn closure_table() -> &'static ClosureTable {
    static TABLE: OnceLock<ClosureTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let deep = deep_table();
        assert!(deep.len() <= usize::from(u8::MAX), "more prerequisites than a u8 row index holds");
        let mut table = ClosureTable { prerequisites: [0; NR_WORDS], row_of: [0; NR_WORDS * 32], rows: Vec::new() };
        for (row, (prerequisite, dependents)) in deep.iter().enumerate() {
            table.prerequisites[prerequisite.word()] |= prerequisite.mask();
            table.row_of[usize::from(prerequisite.index())] = row as u8;
            table.rows.push(*dependents);
        }
        table
    })
}

impl Featureset {
    /// Removes a feature and everything that depends on it, transitively.
    pub fn remove_with_dependents(&mut self, id: FeatureId) {
        self.remove(id);
        self.subtract(&dependents_of(id));
    }

    /// Clears every feature whose prerequisite is absent, transitively, as Xen does before
    /// handing a featureset to a guest. Returns what was cleared.
    pub fn apply_dependencies(&mut self) -> Featureset {
        let before = self.clone();
        let mut words = [0u32; NR_WORDS];
        for (w, word) in words.iter_mut().enumerate() {
            *word = self.word(w);
        }
        if apply_dependencies_to_words(&mut words) {
            for (w, &word) in words.iter().enumerate() {
                if self.word(w) != word {
                    self.set_word(w, word);
                }
            }
        }
        before.difference(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive fixed point over the direct table.
    fn naive_closure(mut naive: [u32; NR_WORDS]) -> [u32; NR_WORDS] {
        loop {
            let before = naive;
            for (root, dependents) in direct() {
                if naive[root.word()] & root.mask() == 0 {
                    for d in dependents {
                        naive[d.word()] &= !d.mask();
                    }
                }
            }
            if naive == before {
                return naive;
            }
        }
    }

    /// The closure on words and on a featureset agree with each other and with the naive one.
    fn assert_closures_agree(mut words: [u32; NR_WORDS], what: &str) {
        let naive = naive_closure(words);
        let mut set = Featureset::from_words(words.to_vec());
        let cleared = set.apply_dependencies();
        assert_eq!(apply_dependencies_to_words(&mut words), !cleared.is_empty(), "{what}");
        assert_eq!(words, naive, "{what}");
        assert_eq!(set.words(), &words[..], "{what}");
    }

    /// The closure on words and on a featureset agree, and agree with a naive fixed point over
    /// the direct table: for the full set with each prerequisite removed in turn, and for
    /// pseudo-random subsets of the named features (a fixed xorshift sequence, so every run
    /// checks the same sets).
    #[test]
    fn word_closure_is_the_fixed_point_of_the_direct_table() {
        let mut all = [0u32; NR_WORDS];
        for feature in FEATURES {
            all[feature.word()] |= feature.id.mask();
        }
        for (prerequisite, _) in deep_table() {
            let mut words = all;
            words[prerequisite.word()] &= !prerequisite.mask();
            assert_closures_agree(words, &format!("{prerequisite:?}"));
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..500 {
            let mut words = all;
            for word in &mut words {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly present, as in real policies: clear about one bit in eight.
                *word &= (state | state >> 1 | state >> 2) as u32;
            }
            assert_closures_agree(words, &format!("round {round}"));
        }
    }
}
