//! How each feature bit is levelled across a pool and judged in a migration check.
//!
//! Most feature bits mean "this works": a pool may only offer what every host has (AND), and a
//! VM may only go where the destination can give what it saw. The exceptions are kept in one
//! table, [`SPECIAL_RULES`], with the reason beside each; every feature Xen marks `!` (special)
//! or `|` (accumulate) in `cpufeatureset.h` has a row (a test holds the table to that).
//!
//! The facts come from Xen 4.20's `xen/arch/x86/cpu-policy.c` (`guest_common_*_adjustments`,
//! `calculate_*_policy`, `recalculate_cpuid_policy`), `xen/arch/x86/cpuid.c` (`guest_cpuid`)
//! and the comments of `cpufeatureset.h`.

use std::sync::OnceLock;

use cpupolicy_featureset::{feature_by_name, FeatureId, NR_WORDS};

/// How one feature bit is combined across a pool and compared in a migration check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LevelRule {
    /// "This works": the pool has it only if every host has it; a VM that saw it needs it at
    /// the destination.
    And,
    /// "You might need to act" (VERW scrubbing, a vulnerability, a behaviour that went away):
    /// the pool has it if any host has it, because a VM may run on that host. A VM that saw it
    /// can go anywhere (it only does more work than needed); a VM that did not see it, going to
    /// a host that sets it, is reported as a warning.
    Or,
    /// Hardware behaviour no policy can hide: Xen shows every guest the current host's value
    /// whatever the policy says. Not levelled (the pool keeps what all hosts agree on); hosts
    /// that differ are reported, and a VM whose value differs from the destination's is warned.
    HostReflected,
    /// Topology bits: the toolstack sets them from the VM's vCPU topology, and Xen's max
    /// policies always allow them. Levelled as AND for the default; never a mismatch.
    Topology,
    /// Reflects guest register state at run time (CR4 bits): meaningless in a policy, always
    /// cleared in a levelled policy and never compared.
    RuntimeOnly,
    /// `RTM_ALWAYS_ABORT`, which Xen 4.20 redefined as "XBEGIN will not fault": true on any
    /// host whose max policy has RTM. The pool default has it when some host's default sets it
    /// and every host's max allows it.
    TsxAbort,
    /// The bits of 0x80000001 EDX that repeat leaf 1 EDX on AMD (FPU … FXSR, Xen's
    /// `CPUID_COMMON_1D_FEATURES`). Xen's system policies clear them and it copies them in from
    /// leaf 1 for every AMD guest (`recalculate_misc`), so a domain's policy has them and its
    /// host's max does not. Levelled by AND; judged through leaf 1, never on their own.
    Mirror,
}

/// Bit positions, within 0x80000001 EDX (featureset word 2), of the features AMD repeats from
/// leaf 1 EDX: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC MTRR PGE MCA CMOV PAT PSE36 MMX FXSR
/// (`gen-cpuid.py`'s `common_1d`).
pub const COMMON_1D_FEATURES: u32 = 0x0183_f3ff;

/// A row of the exception table: one feature, its rule, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureRule {
    /// The feature's Xen name.
    pub name: &'static str,
    /// How it is levelled.
    pub rule: LevelRule,
    /// Why, with the source of the fact.
    pub reason: &'static str,
}

const fn row(name: &'static str, rule: LevelRule, reason: &'static str) -> FeatureRule {
    FeatureRule { name, rule, reason }
}

/// Every feature that is not levelled by plain AND, and every `!`/`|` feature of Xen's table
/// (some of which are plain AND, with the reason why that is right).
pub static SPECIAL_RULES: &[FeatureRule] = &[
    // Accumulate (`|`) bits: "you might migrate somewhere this matters".
    row(
        "md-clear",
        LevelRule::Or,
        "VERW may scrub buffers on some host of the pool; a guest must know to use it anywhere \
         (Xen sets it in every Intel max policy for this reason)",
    ),
    row("fb-clear", LevelRule::Or, "as md-clear: VERW clears fill buffers on some host of the pool"),
    row("rfds-clear", LevelRule::Or, "as md-clear: VERW clears register files on some host of the pool"),
    row("verw-clear", LevelRule::Or, "as md-clear (Xen 4.21): VERW clears buffers on some host of the pool"),
    row("no-lmsl", LevelRule::Or, "EFER.LMSLE is gone on some host: a guest must not rely on it anywhere in the pool"),
    row(
        "fs-gs-ns",
        LevelRule::Or,
        "FS/GS base writes are non-serialising on some host: a guest must serialise itself anywhere",
    ),
    // Vulnerability bits: "present anywhere, present".
    row(
        "rsba",
        LevelRule::Or,
        "RSB underflow may use alternative predictors (retpoline unsafe) on some host; Xen 4.20 \
         sets it in every max policy so VMs that saw it can run anywhere",
    ),
    row("rrsba", LevelRule::Or, "restricted RSBA: as rsba, for eIBRS parts; the dependency on eibrs still applies"),
    // Host-reflected behaviour.
    row(
        "no-fpu-sel",
        LevelRule::HostReflected,
        "the FPU no longer saves CS/DS on this hardware; recalculate_cpuid_policy folds the host's \
         value into every guest whatever the policy says",
    ),
    row(
        "fdp-excp-only",
        LevelRule::HostReflected,
        "x87 FDP is only saved on exceptions on this hardware; folded in from the host like no-fpu-sel",
    ),
    // Topology.
    row(
        "htt",
        LevelRule::Topology,
        "says leaf 1 EBX's logical processor count is valid; the toolstack's topology decides, and \
         Xen's max policies always set it (guest_common_max_feature_adjustments)",
    ),
    row("cmp-legacy", LevelRule::Topology, "says 0x80000008 ECX's core count is valid; set from the topology like htt"),
    // Run-time reflections of guest state.
    row("osxsave", LevelRule::RuntimeOnly, "reflects the guest's CR4.OSXSAVE at run time (guest_cpuid)"),
    row("ospke", LevelRule::RuntimeOnly, "reflects the guest's CR4.PKE at run time (guest_cpuid)"),
    // TSX.
    row(
        "rtm-always-abort",
        LevelRule::TsxAbort,
        "Xen 4.20 reads it as \"XBEGIN will not fault\", true wherever max has RTM; a host whose TSX \
         was disabled by microcode sets it in its default instead of RTM",
    ),
    // Special (`!`) bits for which AND is the right rule.
    row(
        "apic",
        LevelRule::And,
        "Xen derives the run-time value from the vLAPIC's enable state; the policy bit levels by AND",
    ),
    row(
        "x2apic",
        LevelRule::And,
        "HVM: emulated, set in every HVM max; PV: tolerated in max since 4.19 for VMs that saw it",
    ),
    row(
        "rdrand",
        LevelRule::And,
        "hidden from the default policy on IvyBridge (SRBDS) but kept in max, so VMs that used it can come in",
    ),
    row("hypervisor", LevelRule::And, "Xen sets it in every guest policy"),
    row("hle", LevelRule::And, "TSX: off by default, kept in max where the hardware has it (opt-in, `a`)"),
    row(
        "rtm",
        LevelRule::And,
        "TSX: hidden from the default when microcode made it always abort, kept in max (an aborting \
         RTM is architecturally valid), so VMs that booted with it can still migrate in",
    ),
    row(
        "clwb",
        LevelRule::And,
        "hidden from the default on Skylake-SP after the GDS microcode, re-added to max for VMs that saw it",
    ),
    row("virt-ssbd", LevelRule::And, "offered when Xen can emulate VIRT_SPEC_CTRL on this host"),
    row("arch-caps", LevelRule::And, "MSR_ARCH_CAPABILITIES is offered to Intel guests; its bits level word by word"),
    row("srso-us-no", LevelRule::And, "a \"not vulnerable\" bit: one host that is vulnerable hides it from the pool"),
    row("its-no", LevelRule::And, "a \"not vulnerable\" bit (Xen 4.21): AND"),
];

/// The rule for one feature bit (plain AND for every bit not in [`SPECIAL_RULES`], including
/// bits no table names).
pub fn level_rule(id: FeatureId) -> LevelRule {
    masks().rule_of(id)
}

/// The exception-table row for a feature, if it has one.
pub fn feature_rule(id: FeatureId) -> Option<&'static FeatureRule> {
    SPECIAL_RULES.iter().find(|row| feature_by_name(row.name).is_some_and(|f| f.id == id))
}

/// Calls `f` with each feature whose bit is set in `bits`, a mask of featureset word `word`,
/// lowest bit first.
pub(crate) fn each_bit(mut bits: u32, word: usize, mut f: impl FnMut(FeatureId)) {
    while bits != 0 {
        let bit = bits.trailing_zeros();
        bits &= bits - 1;
        if let Some(id) = FeatureId::new(word, bit) {
            f(id);
        }
    }
}

/// The rules as one word mask per rule, for word-at-a-time levelling.
#[derive(Debug)]
pub(crate) struct RuleMasks {
    /// Bits levelled by AND: everything not in another mask.
    pub and: [u32; NR_WORDS],
    /// What a migration needs the destination to give: the AND bits and `rtm-always-abort`.
    pub needed: [u32; NR_WORDS],
    /// The words holding host-reflected bits.
    pub reflected_words: Vec<usize>,
    pub or: [u32; NR_WORDS],
    pub reflected: [u32; NR_WORDS],
    pub topology: [u32; NR_WORDS],
    pub runtime: [u32; NR_WORDS],
    pub tsx_abort: [u32; NR_WORDS],
    pub mirror: [u32; NR_WORDS],
}

impl RuleMasks {
    /// Bits levelled by AND: everything not in another mask.
    #[inline]
    pub fn and(&self, word: usize) -> u32 {
        self.and[word]
    }

    fn rule_of(&self, id: FeatureId) -> LevelRule {
        let (w, m) = (id.word(), id.mask());
        if w >= NR_WORDS {
            LevelRule::And
        } else if self.or[w] & m != 0 {
            LevelRule::Or
        } else if self.reflected[w] & m != 0 {
            LevelRule::HostReflected
        } else if self.topology[w] & m != 0 {
            LevelRule::Topology
        } else if self.runtime[w] & m != 0 {
            LevelRule::RuntimeOnly
        } else if self.tsx_abort[w] & m != 0 {
            LevelRule::TsxAbort
        } else if self.mirror[w] & m != 0 {
            LevelRule::Mirror
        } else {
            LevelRule::And
        }
    }
}

/// The featureset words holding host-reflected or accumulate bits: the only words in which a
/// migration check can warn. A constant, so the check reads just these words of the
/// destination's default and reflected policies; a test keeps it equal to the rule table's.
pub(crate) const WARNING_WORDS: [usize; 5] = [5, 8, 9, 11, 16];

pub(crate) fn masks() -> &'static RuleMasks {
    static MASKS: OnceLock<RuleMasks> = OnceLock::new();
    MASKS.get_or_init(|| {
        let mut masks = RuleMasks {
            and: [0; NR_WORDS],
            needed: [0; NR_WORDS],
            reflected_words: Vec::new(),
            or: [0; NR_WORDS],
            reflected: [0; NR_WORDS],
            topology: [0; NR_WORDS],
            runtime: [0; NR_WORDS],
            tsx_abort: [0; NR_WORDS],
            mirror: [0; NR_WORDS],
        };
        masks.mirror[2] = COMMON_1D_FEATURES;
        for row in SPECIAL_RULES {
            // Every row names a known feature (a test checks); a row that did not would level by AND.
            let Some(feature) = feature_by_name(row.name) else { continue };
            let target = match row.rule {
                LevelRule::And | LevelRule::Mirror => continue,
                LevelRule::Or => &mut masks.or,
                LevelRule::HostReflected => &mut masks.reflected,
                LevelRule::Topology => &mut masks.topology,
                LevelRule::RuntimeOnly => &mut masks.runtime,
                LevelRule::TsxAbort => &mut masks.tsx_abort,
            };
            target[feature.word()] |= feature.id.mask();
        }
        for w in 0..NR_WORDS {
            masks.and[w] = !(masks.or[w]
                | masks.reflected[w]
                | masks.topology[w]
                | masks.runtime[w]
                | masks.tsx_abort[w]
                | masks.mirror[w]);
            masks.needed[w] = masks.and[w] | masks.tsx_abort[w];
        }
        masks.reflected_words = (0..NR_WORDS).filter(|&w| masks.reflected[w] != 0).collect();
        masks
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_words_are_the_words_with_reflected_or_accumulate_bits() {
        let masks = masks();
        let words: Vec<usize> = (0..NR_WORDS).filter(|&w| masks.reflected[w] | masks.or[w] != 0).collect();
        assert_eq!(WARNING_WORDS.to_vec(), words);
    }
    use cpupolicy_featureset::ids;
    use cpupolicy_featureset::{known, FEATURES};

    #[test]
    fn every_row_names_one_known_feature_once() {
        let mut seen = std::collections::HashSet::new();
        for row in SPECIAL_RULES {
            let feature = feature_by_name(row.name).unwrap_or_else(|| panic!("{} is not a feature", row.name));
            assert_eq!(feature.name, row.name, "rows use Xen's spelling");
            assert!(seen.insert(row.name), "{} has two rows", row.name);
            assert!(!row.reason.is_empty());
        }
    }

    #[test]
    fn every_special_and_accumulate_feature_has_a_row() {
        for feature in FEATURES {
            if feature.attributes.is_special() || feature.attributes.is_accumulated() {
                assert!(
                    feature_rule(feature.id).is_some(),
                    "{} ({}) has no levelling rule",
                    feature.name,
                    feature.attributes
                );
            }
        }
    }

    #[test]
    fn every_accumulate_feature_is_ored() {
        for feature in FEATURES.iter().filter(|f| f.attributes.is_accumulated()) {
            assert_eq!(level_rule(feature.id), LevelRule::Or, "{}", feature.name);
        }
    }

    #[test]
    fn the_common_1d_mask_is_the_leaf_1_edx_features_amd_repeats() {
        let names = [
            "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "mtrr", "pge", "mca", "cmov", "pat",
            "pse36", "mmx", "fxsr",
        ];
        let mask = names.iter().map(|n| known(n)).inspect(|id| assert_eq!(id.word(), 0)).fold(0, |m, id| m | id.mask());
        assert_eq!(mask, COMMON_1D_FEATURES);
        for bit in 0..32 {
            if let Some(id) = FeatureId::new(2, bit).filter(|_| COMMON_1D_FEATURES & (1 << bit) != 0) {
                assert!(id.feature().is_none(), "word 2 bit {bit} is a copy, not a named feature");
            }
        }
    }

    #[test]
    fn rules_read_back_from_the_masks() {
        assert_eq!(level_rule(ids::AVX2), LevelRule::And);
        assert_eq!(level_rule(ids::RSBA), LevelRule::Or);
        assert_eq!(level_rule(ids::NO_FPU_SEL), LevelRule::HostReflected);
        assert_eq!(level_rule(ids::HTT), LevelRule::Topology);
        assert_eq!(level_rule(ids::OSXSAVE), LevelRule::RuntimeOnly);
        assert_eq!(level_rule(ids::RTM_ALWAYS_ABORT), LevelRule::TsxAbort);
        assert_eq!(level_rule(FeatureId::from_index(18 * 32 + 31)), LevelRule::And, "unnamed bits level by AND");
        assert_eq!(level_rule(FeatureId::new(2, 24).unwrap()), LevelRule::Mirror, "FXSR's AMD copy");
        assert_eq!(level_rule(ids::SYSCALL), LevelRule::And);
        let m = masks();
        for w in 0..NR_WORDS {
            let all = m.and(w) | m.or[w] | m.reflected[w] | m.topology[w] | m.runtime[w] | m.tsx_abort[w] | m.mirror[w];
            assert_eq!(all, !0, "word {w}: every bit has exactly one rule");
            assert_eq!(m.and(w) & (m.or[w] | m.reflected[w]), 0);
        }
    }
}
