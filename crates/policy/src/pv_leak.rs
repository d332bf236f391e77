//! What a PV guest really sees: which CPUID bits the host can control, and which leak through.
//!
//! A PV guest's kernel asks Xen for CPUID (the forced-emulation prefix), but its user space
//! runs the `cpuid` instruction directly and gets the hardware's answer unless the host can
//! intercept or mask it (REFERENCE §1 and issue 8):
//!
//! - **CPUID faulting** (PLATFORM_INFO bit 31 and MISC_FEATURES_ENABLES on Intel, a similar
//!   MSR on newer AMD parts): every `cpuid` traps to Xen, which answers from the domain's
//!   policy. Nothing leaks.
//! - **Masking MSRs** (older Intel and AMD parts): Xen loads AND-masks for leaf 1 ECX/EDX,
//!   0x80000001 ECX/EDX, 0xD:1 EAX, 6 ECX and 7:0 EAX/EBX on every switch to the domain. Bits
//!   of those registers can be hidden; every other leaf shows the hardware.
//! - **Neither**: every leaf shows the hardware.
//!
//! Xen reports the mechanisms through `XEN_SYSCTL_get_cpu_levelling_caps` (sysctl 25), which
//! Xen 4.22 removed along with masking support: there, CPUID faulting (from PLATFORM_INFO in
//! the host policy) is the only mechanism.

use std::fmt;

use cpupolicy_featureset::{FeatureId, NR_WORDS};

use crate::level_rules::each_bit;
use crate::{CpuPolicy, PLATFORM_INFO_CPUID_FAULTING};

/// `XEN_SYSCTL_CPU_LEVELCAP_faulting`.
pub const LEVELCAP_FAULTING: u32 = 1 << 0;

/// The masking capabilities of `XEN_SYSCTL_get_cpu_levelling_caps`, with the featureset word
/// each one controls (`None`: a register that holds no featureset word).
pub const LEVELCAP_MASKS: [(u32, &str, Option<usize>); 8] = [
    (1 << 1, "ecx", Some(1)),
    (1 << 2, "edx", Some(0)),
    (1 << 3, "extd_ecx", Some(3)),
    (1 << 4, "extd_edx", Some(2)),
    (1 << 5, "xsave_eax", Some(4)),
    (1 << 6, "thermal_ecx", None),
    (1 << 7, "l7s0_eax", None),
    (1 << 8, "l7s0_ebx", Some(5)),
];

/// What the levelling-capabilities sysctl said, as recorded in a host bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LevellingCaps {
    /// The sysctl answered with these `XEN_SYSCTL_CPU_LEVELCAP_*` bits.
    Sysctl(u32),
    /// The hypervisor has no such sysctl (Xen 4.22 and later). With CPUID faulting (read from
    /// PLATFORM_INFO) nothing leaks; without it Xen may still mask some leaves (4.22's own boot
    /// log on qemu64: `Levelling caps: 0x26`, leaves 1, 0x80000001 and 7:0), which the
    /// toolstack cannot learn: what leaks is unknown, not everything.
    NoSysctl,
}

/// How a host keeps a PV guest's user space from seeing the hardware's CPUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// CPUID faulting: nothing leaks.
    Faulting,
    /// Masking MSRs for some registers (the `XEN_SYSCTL_CPU_LEVELCAP_*` bits).
    Masking(u32),
    /// Nothing: the hardware's answer shows in every leaf.
    Nothing,
    /// Not known: no levelling-caps sysctl to ask (Xen 4.22 and later) and no CPUID faulting.
    Unknown,
}

/// A host's levelling capabilities: the sysctl's answer and the host policy's PLATFORM_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Levelling {
    /// What the sysctl said.
    pub caps: LevellingCaps,
    /// PLATFORM_INFO bit 31 (CPUID faulting) in the host policy.
    pub platform_info_faulting: bool,
}

impl Levelling {
    /// From the sysctl's answer and the host policy.
    pub fn new(caps: LevellingCaps, host: &CpuPolicy) -> Levelling {
        Levelling {
            caps,
            platform_info_faulting: host.msr(crate::MSR_PLATFORM_INFO) & PLATFORM_INFO_CPUID_FAULTING != 0,
        }
    }

    /// The strongest mechanism the host has.
    pub fn mechanism(&self) -> Mechanism {
        match self.caps {
            LevellingCaps::Sysctl(bits) if bits & LEVELCAP_FAULTING != 0 => Mechanism::Faulting,
            _ if self.platform_info_faulting => Mechanism::Faulting,
            LevellingCaps::Sysctl(bits) if bits & LEVELCAP_MASKS.iter().map(|m| m.0).fold(0, |a, b| a | b) != 0 => {
                Mechanism::Masking(bits)
            }
            LevellingCaps::NoSysctl => Mechanism::Unknown,
            LevellingCaps::Sysctl(_) => Mechanism::Nothing,
        }
    }

    /// Whether the sysctl's faulting bit and PLATFORM_INFO agree (they describe the same
    /// hardware capability); always true without the sysctl.
    pub fn is_consistent(&self) -> bool {
        match self.caps {
            LevellingCaps::Sysctl(bits) => (bits & LEVELCAP_FAULTING != 0) == self.platform_info_faulting,
            LevellingCaps::NoSysctl => true,
        }
    }

    /// The featureset words the host can hide bits of.
    pub fn controlled_words(&self) -> [bool; NR_WORDS] {
        match self.mechanism() {
            Mechanism::Faulting => [true; NR_WORDS],
            Mechanism::Masking(bits) => {
                let mut words = [false; NR_WORDS];
                for (bit, _, word) in LEVELCAP_MASKS {
                    if let Some(word) = word.filter(|_| bits & bit != 0) {
                        words[word] = true;
                    }
                }
                words
            }
            Mechanism::Nothing | Mechanism::Unknown => [false; NR_WORDS],
        }
    }

    /// The features a PV guest with policy `guest` would see anyway from its user space on
    /// hardware `raw` (the host's raw policy): set by the hardware, hidden by the policy, in a
    /// register the host cannot control. `None` when the host's mechanism is unknown.
    pub fn pv_leak_through(&self, guest: &CpuPolicy, raw: &CpuPolicy) -> Option<Vec<FeatureId>> {
        if self.mechanism() == Mechanism::Unknown {
            return None;
        }
        let controlled = self.controlled_words();
        let (guest, raw) = (guest.feature_words(), raw.feature_words());
        let mut leaks = Vec::new();
        for w in 0..NR_WORDS {
            if controlled[w] {
                continue;
            }
            each_bit(raw[w] & !guest[w], w, |id| leaks.push(id));
        }
        Some(leaks)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mechanism::Faulting => f.write_str("CPUID faulting"),
            Mechanism::Nothing => f.write_str("no CPUID faulting and no masking"),
            Mechanism::Unknown => f.write_str("no CPUID faulting; masking unknown (no levelling-caps sysctl)"),
            Mechanism::Masking(bits) => {
                let names: Vec<&str> = LEVELCAP_MASKS.iter().filter(|m| bits & m.0 != 0).map(|m| m.1).collect();
                write!(f, "masking only ({})", names.join(", "))
            }
        }
    }
}

impl fmt::Display for Levelling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.caps {
            LevellingCaps::Sysctl(bits) => write!(f, "{} (levelling caps {bits:#x}", self.mechanism())?,
            LevellingCaps::NoSysctl => write!(f, "{} (no levelling-caps sysctl", self.mechanism())?,
        }
        write!(f, "; PLATFORM_INFO CPUID faulting {})", if self.platform_info_faulting { "yes" } else { "no" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::words_of;
    use crate::{CpuidKey, Registers};
    use cpupolicy_featureset::ids;
    use cpupolicy_featureset::Featureset;

    fn policy(features: &[&str]) -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        p.set_feature_words(&words_of(&Featureset::from_names(features.iter().copied()).unwrap()));
        p
    }

    #[test]
    fn faulting_hides_everything() {
        let raw = policy(&["avx2", "sse4-2", "avx512f"]);
        let guest = policy(&["sse4-2"]);
        let l = Levelling { caps: LevellingCaps::Sysctl(LEVELCAP_FAULTING), platform_info_faulting: true };
        assert_eq!(l.mechanism(), Mechanism::Faulting);
        assert_eq!(l.pv_leak_through(&guest, &raw), Some(vec![]));
        assert!(l.is_consistent());
        // Xen 4.22: no sysctl, faulting known from PLATFORM_INFO.
        let l = Levelling { caps: LevellingCaps::NoSysctl, platform_info_faulting: true };
        assert_eq!(l.mechanism(), Mechanism::Faulting);
    }

    /// Xen 4.22 has no levelling-caps sysctl yet still masks leaves 1, 0x80000001 and 7:0 where
    /// it can: without CPUID faulting, what leaks is unknown, not everything.
    #[test]
    fn no_levelling_sysctl_means_unknown_not_absent() {
        let raw = policy(&["avx", "avx2"]);
        let guest = policy(&[]);
        let l = Levelling { caps: LevellingCaps::NoSysctl, platform_info_faulting: false };
        assert_eq!(l.mechanism(), Mechanism::Unknown);
        assert_eq!(l.pv_leak_through(&guest, &raw), None);
        assert!(l.to_string().contains("unknown"), "{l}");
        let faulting = Levelling { caps: LevellingCaps::NoSysctl, platform_info_faulting: true };
        assert_eq!(faulting.pv_leak_through(&guest, &raw), Some(vec![]));
    }

    #[test]
    fn masks_cover_their_registers_only() {
        let raw = policy(&["avx", "avx2", "sse4-2", "avx512f"]);
        let guest = policy(&["sse4-2"]);
        // Leaf 1 ECX masked (avx hidden), leaf 7:0 EBX not (avx2, avx512f leak).
        let l = Levelling { caps: LevellingCaps::Sysctl(1 << 1 | 1 << 2), platform_info_faulting: false };
        assert_eq!(l.pv_leak_through(&guest, &raw), Some(vec![ids::AVX2, ids::AVX512F]));
        assert_eq!(l.mechanism().to_string(), "masking only (ecx, edx)");
        let l = Levelling { caps: LevellingCaps::Sysctl(0x1fe), platform_info_faulting: false };
        assert_eq!(l.pv_leak_through(&guest, &raw), Some(vec![]));
        let l = Levelling { caps: LevellingCaps::Sysctl(0), platform_info_faulting: false };
        assert_eq!(l.pv_leak_through(&guest, &raw), Some(vec![ids::AVX, ids::AVX2, ids::AVX512F]));
        assert!(!Levelling { caps: LevellingCaps::Sysctl(1), platform_info_faulting: false }.is_consistent());
    }
}
