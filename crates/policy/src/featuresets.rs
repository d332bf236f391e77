//! Levelling and checking with featuresets alone, the way xapi (XenServer, XCP-ng) keeps CPU
//! policy: per host the default featureset (what new VMs get) and the max featureset (what the
//! host accepts from a migration), per VM the featureset it booted with.
//!
//! The rules are [`level_pool`](crate::level_pool)'s, bit by bit ([`LevelRule`]): ordinary,
//! topology, host-reflected and TSX bits are ANDed, accumulate and vulnerability bits ORed,
//! run-time-only bits cleared. Then the RSBA/RRSBA rule (below), then the dependency closure.
//! Bits of words past those this crate knows are ANDed.
//!
//! **RSBA/RRSBA.** Both mean "retpoline is not safe here"; RRSBA is the form for parts with
//! eIBRS. Xen derives the one each host's default policy shows (`cpu-policy.c`,
//! "x86/cpu-policy: Derive RSBA/RRSBA for guest policies"): with ARCH_CAPS visible and the
//! hardware having either, RRSBA when the guest sees eIBRS, RSBA otherwise. Levelled as plain
//! OR and closed over dependencies, a pool of an eIBRS+RRSBA host and a host with neither lost
//! both (RRSBA needs eIBRS, which the second host lacks): the guest would think retpoline safe
//! on hardware where it is not. So: when ARCH_CAPS survives and any input has RSBA or RRSBA,
//! the result has RRSBA if eIBRS survives and RSBA otherwise, and not the other (XenServer's
//! `xc_combine_cpu_featuresets` does the same).
//!
//! The migration check is [`check_migration`](crate::check_migration)'s feature part: a VM
//! may go to a host when every feature it saw that is judged by AND (and `rtm-always-abort`) is
//! in the host's max featureset. Accumulate bits, host-reflected, topology and run-time bits
//! never stop a migration.

use cpupolicy_featureset::ids;
use std::fmt::Write as _;

use cpupolicy_featureset::{FeatureId, Featureset, NR_WORDS};

use crate::level::words_of;
use crate::level_rules::{each_bit, masks};

/// Levels the featuresets of a pool's hosts (all defaults, or all maxes): see the module
/// documentation for the rules. The result has as many words as the longest input (inputs are
/// zero-extended); no input gives the empty set.
pub fn level_featuresets<'a>(sets: impl IntoIterator<Item = &'a Featureset>) -> Featureset {
    let mut iter = sets.into_iter();
    let Some(first) = iter.next() else { return Featureset::new() };
    let (mut and, mut or) = (first.clone(), first.clone());
    for set in iter {
        and.intersect_with(set);
        or.union_with(set);
    }
    let rules = masks();
    let mut out = Featureset::from_words(vec![0; and.len_words()]);
    for w in 0..and.len_words() {
        let word = if w < NR_WORDS {
            let anded = rules.and(w) | rules.mirror[w] | rules.topology[w] | rules.reflected[w] | rules.tsx_abort[w];
            (and.word(w) & anded) | (or.word(w) & rules.or[w])
        } else {
            and.word(w)
        };
        out.set_word(w, word);
    }
    apply_rsba_rule(&mut out, &or);
    out.apply_dependencies();
    // The closure only clears bits, but pads to the words it knows: keep the inputs' length.
    Featureset::from_words(&out.words()[..and.len_words()])
}

/// Two featuresets levelled: [`level_featuresets`] of the pair, what XenServer's
/// `xc_combine_cpu_featuresets` computes.
pub fn combine_featuresets(a: &Featureset, b: &Featureset) -> Featureset {
    level_featuresets([a, b])
}

/// The RSBA/RRSBA rule on a levelled featureset, given the union of its inputs (see the module
/// documentation). Also used by [`level_pool`](crate::level_pool) for the pool default.
/// (The rule itself is [`apply_rsba_rule_to_words`]; every bit it reads or writes lies in the
/// first [`NR_WORDS`] words.)
pub(crate) fn apply_rsba_rule(levelled: &mut Featureset, any: &Featureset) {
    let mut words = words_of(levelled);
    apply_rsba_rule_to_words(&mut words, &words_of(any));
    for id in [ids::RSBA, ids::RRSBA] {
        let now = words[id.word()] & id.mask() != 0;
        if now != levelled.contains(id) {
            levelled.set(id, now);
        }
    }
}

/// The RSBA/RRSBA rule on featureset words, without allocating (see [`apply_rsba_rule`]).
pub(crate) fn apply_rsba_rule_to_words(levelled: &mut [u32; NR_WORDS], any: &[u32; NR_WORDS]) {
    let has = |words: &[u32; NR_WORDS], id: FeatureId| words[id.word()] & id.mask() != 0;
    let (rsba, rrsba) = (ids::RSBA, ids::RRSBA);
    if has(levelled, ids::ARCH_CAPS) && (has(any, rsba) || has(any, rrsba)) {
        let eibrs = has(levelled, ids::EIBRS);
        levelled[rsba.word()] &= !rsba.mask();
        levelled[rrsba.word()] &= !rrsba.mask();
        let kept = if eibrs { rrsba } else { rsba };
        levelled[kept.word()] |= kept.mask();
    }
}

/// The features a VM that booted with `vm` saw and a host whose max featureset is `host`
/// cannot give, in order: empty when the VM may go there.
pub fn featureset_missing(vm: &Featureset, host: &Featureset) -> Vec<FeatureId> {
    let rules = masks();
    let mut missing = Vec::new();
    for w in 0..vm.len_words() {
        let judged = if w < NR_WORDS { rules.and(w) | rules.tsx_abort[w] } else { !0 };
        each_bit(vm.word(w) & !host.word(w) & judged, w, |id| missing.push(id));
    }
    missing
}

/// A feature as Xen's public header spells it (`AVX512F`, `MD_CLEAR`), or `<word*32+bit>` for a
/// bit no table names: the names XenServer's libxc puts in its messages.
pub fn xen_header_name(id: FeatureId) -> String {
    match id.feature() {
        Some(feature) => feature.name.to_ascii_uppercase().replace('-', "_"),
        None => format!("<{}*32+{}>", id.word(), id.bit()),
    }
}

/// Names of missing features as one line of at most `max_len` bytes, separated by spaces, cut
/// at a name with a closing `...` when they do not all fit. Takes the names lazily, so a caller
/// with very many stops paying once the line is full.
pub fn missing_features_line(names: impl IntoIterator<Item = String>, max_len: usize) -> String {
    const MORE: &str = " ...";
    let mut line = String::new();
    let mut names = names.into_iter().peekable();
    while let Some(name) = names.next() {
        let separator = if line.is_empty() { "" } else { " " };
        let more = if names.peek().is_some() { MORE.len() } else { 0 };
        if line.len() + separator.len() + name.len() + more > max_len {
            if line.len() + MORE.len() <= max_len {
                line.push_str(MORE);
            }
            break;
        }
        let _ = write!(line, "{separator}{name}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Featureset {
        Featureset::from_names(names.iter().copied()).unwrap()
    }

    /// The rule on words and on featuresets agree on every combination of the bits it reads.
    #[test]
    fn rsba_rule_on_words_is_the_rule_on_featuresets() {
        let bits = [ids::ARCH_CAPS, ids::EIBRS, ids::RSBA, ids::RRSBA];
        for combination in 0u32..1 << 8 {
            let (mut levelled, mut any) = ([0u32; NR_WORDS], [0u32; NR_WORDS]);
            for (i, id) in bits.iter().enumerate() {
                if combination & (1 << i) != 0 {
                    levelled[id.word()] |= id.mask();
                }
                if combination & (1 << (i + 4)) != 0 {
                    any[id.word()] |= id.mask();
                }
            }
            let mut set = Featureset::from_words(levelled.to_vec());
            apply_rsba_rule(&mut set, &Featureset::from_words(any.to_vec()));
            apply_rsba_rule_to_words(&mut levelled, &any);
            assert_eq!(Featureset::from_words(levelled.to_vec()), set, "{combination:#x}");
        }
    }

    #[test]
    fn ordinary_bits_and_accumulate_bits_or() {
        let a = set(&["fpu", "fxsr", "sse", "avx512f", "xsave", "avx", "md-clear"]);
        let b = set(&["fpu", "fxsr", "sse", "xsave", "avx"]);
        assert_eq!(combine_featuresets(&a, &b), set(&["fpu", "fxsr", "sse", "xsave", "avx", "md-clear"]));
        // Run-time-only bits never survive; dependencies are closed.
        let c = set(&["fpu", "osxsave", "avx"]);
        assert_eq!(combine_featuresets(&c, &c), set(&["fpu"]));
    }

    #[test]
    fn rsba_and_rrsba_follow_eibrs() {
        let eibrs = set(&["ibrsb", "arch-caps", "eibrs", "rrsba"]);
        let neither = set(&["ibrsb", "arch-caps"]);
        let rsba = set(&["ibrsb", "arch-caps", "rsba"]);
        assert_eq!(combine_featuresets(&eibrs, &eibrs), eibrs);
        assert_eq!(combine_featuresets(&eibrs, &neither), rsba, "retpoline is unsafe on the first host");
        assert_eq!(combine_featuresets(&rsba, &eibrs), rsba);
        assert_eq!(combine_featuresets(&rsba, &neither), rsba);
        assert_eq!(combine_featuresets(&neither, &neither), neither);
        // Without ARCH_CAPS there is nowhere to say it.
        assert_eq!(combine_featuresets(&eibrs, &set(&["ibrsb"])), set(&["ibrsb"]));
        // Max featuresets carry both; the rule keeps the one that fits.
        let max = set(&["ibrsb", "arch-caps", "eibrs", "rsba", "rrsba"]);
        assert_eq!(combine_featuresets(&max, &max), eibrs);
    }

    #[test]
    fn length_is_the_longest_input() {
        let short = Featureset::from_words(vec![1, 2]);
        let long = Featureset::from_words(vec![1, 2, 0, 0, 0]);
        assert_eq!(combine_featuresets(&short, &long).len_words(), 5);
        assert_eq!(level_featuresets([&short]).len_words(), 2);
        assert_eq!(level_featuresets(std::iter::empty()), Featureset::new());
        // Words beyond those known are ANDed.
        let a = Featureset::from_words(vec![0; 21].into_iter().chain([3]).collect::<Vec<_>>());
        let b = Featureset::from_words(vec![0; 21].into_iter().chain([6]).collect::<Vec<_>>());
        assert_eq!(combine_featuresets(&a, &b).word(21), 2);
    }

    #[test]
    fn missing_features_by_rule_and_message() {
        let vm = set(&["fpu", "avx512f", "xsave", "avx", "md-clear", "no-fpu-sel", "htt", "rtm-always-abort"]);
        let host = set(&["fpu", "xsave"]);
        let missing = featureset_missing(&vm, &host);
        let names: Vec<String> = missing.iter().map(|&id| xen_header_name(id)).collect();
        assert_eq!(names, ["AVX", "AVX512F", "RTM_ALWAYS_ABORT"]);
        let line = |max| missing_features_line(missing.iter().map(|&id| xen_header_name(id)), max);
        assert_eq!(line(127), "AVX AVX512F RTM_ALWAYS_ABORT");
        assert_eq!(line(28), "AVX AVX512F RTM_ALWAYS_ABORT");
        assert_eq!(line(27), "AVX AVX512F ...");
        assert_eq!(line(10), "AVX ...");
        assert_eq!(line(3), "");
        assert!(featureset_missing(&host, &vm).is_empty());
        let unnamed = FeatureId::from_index(18 * 32 + 31);
        assert_eq!(xen_header_name(unnamed), "<18*32+31>");
        assert_eq!(
            featureset_missing(&Featureset::from_words(vec![0; 25].into_iter().chain([1]).collect::<Vec<_>>()), &host)
                .len(),
            1,
            "bits of unknown words are judged"
        );
    }
}
