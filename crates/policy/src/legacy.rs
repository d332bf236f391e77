//! VMs that arrive with no policy: what they saw, re-created the way libxl does.
//!
//! Migration streams from Xen 4.13 and older carry no CPUID records. On restore, libxl's
//! `xc_cpuid_apply_policy(..., restore = true)` invents the policy such a VM most likely saw:
//! the host's default policy for the guest kind, with features that have since become
//! off-by-default put back from the host featureset, and the max leaves clamped to what Xen 4.12
//! and 4.13 offered. The details changed between releases (REFERENCE §5, and
//! `tools/libs/guest/xg_cpuid_x86.c` of each release):
//!
//! | Xen doing the restore | features taken from the host            | clamps (basic, leaf 7, extended) |
//! |-----------------------|-----------------------------------------|----------------------------------|
//! | 4.14, 4.15            | rdrand; mpx (HVM)                       | none                             |
//! | 4.16 – 4.19           | rdrand, hle, rtm; mpx (HVM)             | ≤ 0xd, = 0, ≤ 0x8000001c         |
//! | 4.20 and later        | rdrand, hle, rtm; mpx (HVM)             | ≤ 0xd, ≤ 2, ≤ 0x80000021         |
//!
//! libxl then applies the legacy topology (HTT and CMP_LEGACY from the host featureset, APIC
//! IDs 2×vCPU): the topology crate's `xen-legacy` scheme describes those leaves.

use cpupolicy_featureset::{known, Featureset, GuestKind};

use crate::level::clear_out_of_range_leaves;
use crate::{CpuPolicy, XenVersion};

/// Which release's restore rules to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyRules {
    /// Also take HLE and RTM from the host featureset (4.16+).
    pub restore_tsx: bool,
    /// Clamp (max basic leaf, leaf 7 max sub-leaf, max extended leaf), when the release does.
    pub clamp: Option<(u32, u32, u32)>,
}

impl LegacyRules {
    /// The rules of the libxl of Xen `version` (the release doing the restore). Releases
    /// before 4.14 could not restore a stream into a policy-carrying Xen and get 4.14's rules.
    pub fn for_xen(version: &XenVersion) -> LegacyRules {
        match (version.major, version.minor) {
            (4, ..=15) | (..=3, _) => LegacyRules { restore_tsx: false, clamp: None },
            (4, 16..=19) => LegacyRules { restore_tsx: true, clamp: Some((0xd, 0, 0x8000_001c)) },
            _ => LegacyRules { restore_tsx: true, clamp: Some((0xd, 2, 0x8000_0021)) },
        }
    }
}

/// The policy a VM without a recorded policy is given on restore: `default` (the host's
/// default policy for the guest kind) adjusted by `rules` from `host_featureset` (the host
/// policy's featureset). `kind` decides whether MPX is restored (HVM only).
pub fn synthesise_legacy(
    default: &CpuPolicy,
    host_featureset: &Featureset,
    kind: GuestKind,
    rules: LegacyRules,
) -> CpuPolicy {
    let mut policy = default.clone();
    let mut featureset = policy.featureset();
    let mut restored = vec!["rdrand"];
    if rules.restore_tsx {
        restored.extend(["hle", "rtm"]);
    }
    if kind != GuestKind::Pv {
        restored.push("mpx");
    }
    for name in restored {
        let id = known(name);
        featureset.set(id, host_featureset.contains(id));
    }
    policy.set_feature_words(&crate::level::words_of(&featureset));
    if let Some((basic, leaf7, extended)) = rules.clamp {
        policy.set_max_basic_leaf(policy.max_basic_leaf().min(basic));
        policy.set_leaf7_max_subleaf(policy.leaf7_max_subleaf().min(leaf7));
        if policy.max_extended_leaf() >= 0x8000_0000 {
            policy.set_max_extended_leaf(policy.max_extended_leaf().min(extended));
        }
        clear_out_of_range_leaves(&mut policy);
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidKey, Registers};
    use cpupolicy_featureset::ids;

    #[test]
    fn rules_follow_the_release() {
        let rules = |v: &str| LegacyRules::for_xen(&XenVersion::parse(v).unwrap());
        assert_eq!(rules("4.14.6"), LegacyRules { restore_tsx: false, clamp: None });
        assert_eq!(rules("4.17.7").clamp, Some((0xd, 0, 0x8000_001c)));
        assert_eq!(rules("4.20.4").clamp, Some((0xd, 2, 0x8000_0021)));
        assert_eq!(rules("4.22.0"), rules("4.20.0"));
    }

    #[test]
    fn tsx_comes_back_from_the_host_and_leaves_are_clamped() {
        let mut default = CpuPolicy::new();
        default.set_cpuid(CpuidKey::plain(0), Registers::new(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        default.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(1, 0, 0, 0));
        default.set_cpuid(CpuidKey::indexed(7, 1), Registers::new(0x10, 0, 0, 0));
        default.set_cpuid(CpuidKey::plain(0x14), Registers::new(1, 0, 0, 0));
        default.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0008, 0, 0, 0));
        let host = Featureset::from_names(["rtm", "hle", "rdrand", "mpx"]).unwrap();
        let pv = synthesise_legacy(&default, &host, GuestKind::Pv, LegacyRules::for_xen(&XenVersion::new(4, 17, ".7")));
        assert!(pv.has_feature(ids::RTM) && pv.has_feature(ids::HLE) && pv.has_feature(ids::RDRAND));
        assert!(!pv.has_feature(ids::MPX), "MPX is restored for HVM only");
        assert_eq!((pv.max_basic_leaf(), pv.leaf7_max_subleaf()), (0xd, 0));
        assert!(!pv.contains(CpuidKey::plain(0x14)) && !pv.contains(CpuidKey::indexed(7, 1)));
        let hvm =
            synthesise_legacy(&default, &host, GuestKind::HvmHap, LegacyRules::for_xen(&XenVersion::new(4, 20, ".4")));
        assert!(hvm.has_feature(ids::MPX));
        assert_eq!(hvm.leaf7_max_subleaf(), 1);
    }
}
