//! The migration check: may a VM that booted with policy P run on host H?
//!
//! The VM is compared with the destination's **max** policy, the most that host can give
//! (REFERENCE §4). Xen's own check (`x86_cpu_policies_are_compatible`) compares only the max
//! leaves and PLATFORM_INFO, and `set_cpu_policy` silently clamps features the host lacks, so a
//! VM would come up missing an instruction it already uses. This check names every problem:
//!
//! - a vendor change;
//! - every feature the VM saw that the destination cannot give (bits levelled by AND, and
//!   `rtm-always-abort`, which promises XBEGIN will not fault);
//! - every numeric limit the VM saw above the destination's: max basic/extended leaf, leaf 7
//!   max sub-leaf, physical and linear address bits; PLATFORM_INFO bits the host lacks.
//!
//! Bits judged in their own direction give warnings, not mismatches: an accumulate or
//! vulnerability bit the VM saw and the destination lacks only makes the guest do needless work
//! (Xen clears it), while one the VM did not see and the destination's default sets means the
//! guest does not know to protect itself there. Host-reflected bits that differ will change
//! under the guest. Topology and run-time bits are never compared.

use std::fmt;

use cpupolicy_featureset::{FeatureId, NR_WORDS};

use crate::level::{feature_name, LimitField};
use crate::level_rules::{each_bit, masks, RuleMasks, WARNING_WORDS};
use crate::{CpuPolicy, PoolHost, Vendor};

/// The outcome of a migration check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationCheck {
    /// Why the VM may not go there; empty when it may.
    pub mismatches: Vec<Mismatch>,
    /// What will differ for the guest even though it may go.
    pub warnings: Vec<Warning>,
}

impl MigrationCheck {
    /// Whether the VM may migrate.
    pub fn is_compatible(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// One reason a VM may not migrate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The destination's CPU vendor differs.
    Vendor {
        /// The VM's vendor.
        vm: Vendor,
        /// The destination's.
        host: Vendor,
    },
    /// A feature the VM saw that the destination cannot give.
    Feature(FeatureId),
    /// A limit the VM saw above the destination's.
    Limit {
        /// Which limit.
        field: LimitField,
        /// The VM's value.
        vm: u64,
        /// The destination's.
        host: u64,
    },
}

/// Something that will differ for the guest on the destination, without stopping it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A host-reflected bit differs: the guest will see the destination's hardware behaviour.
    HostReflected {
        /// The feature.
        feature: FeatureId,
        /// Whether the VM's policy has it.
        vm: bool,
    },
    /// An accumulate or vulnerability bit the VM saw and the destination's max lacks: Xen will
    /// clear it; the guest keeps acting on it, harmlessly.
    ClearedByDestination(FeatureId),
    /// An accumulate or vulnerability bit the destination's default sets (the hardware needs
    /// it) and the VM never saw: the guest does not know to protect itself there.
    GuestNotTold(FeatureId),
    /// (PV) The destination cannot hide this feature from the guest's user space: its hardware
    /// has it, the VM's policy does not, and there is no CPUID faulting or mask for it.
    LeakThrough(FeatureId),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Vendor { vm, host } => write!(f, "vendor: the VM saw {vm}, the host is {host}"),
            Mismatch::Feature(id) => write!(f, "feature {}: the VM saw it, the host cannot give it", feature_name(*id)),
            Mismatch::Limit { field: LimitField::PlatformInfo, vm, host } => write!(
                f,
                "platform-info: the VM saw bits {:#x} the host lacks (VM {vm:#x}, host {host:#x})",
                vm & !host
            ),
            Mismatch::Limit { field, vm, host } => write!(f, "{field}: the VM saw {vm:#x}, the host allows {host:#x}"),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::HostReflected { feature, vm: true } => {
                write!(
                    f,
                    "{}: host-reflected; the VM saw it, the host's hardware does not set it",
                    feature_name(*feature)
                )
            }
            Warning::HostReflected { feature, vm: false } => {
                write!(
                    f,
                    "{}: host-reflected; the host's hardware sets it, the VM did not see it",
                    feature_name(*feature)
                )
            }
            Warning::ClearedByDestination(id) => {
                write!(f, "{}: the VM saw it, the host's max lacks it; Xen will clear it (harmless)", feature_name(*id))
            }
            Warning::LeakThrough(id) => write!(
                f,
                "{}: leaks through: the host's hardware has it and cannot hide it from the PV guest's user space",
                feature_name(*id)
            ),
            Warning::GuestNotTold(id) => {
                write!(
                    f,
                    "{}: the host needs it, the VM never saw it; the guest will not protect itself",
                    feature_name(*id)
                )
            }
        }
    }
}

impl Mismatch {
    /// A stable kind name for JSON: `vendor`, `feature`, or the limit's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Mismatch::Vendor { .. } => "vendor",
            Mismatch::Feature(_) => "feature",
            Mismatch::Limit { field, .. } => field.name(),
        }
    }
}

impl Warning {
    /// A stable kind name for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::HostReflected { .. } => "host-reflected",
            Warning::ClearedByDestination(_) => "cleared-by-destination",
            Warning::GuestNotTold(_) => "guest-not-told",
            Warning::LeakThrough(_) => "leak-through",
        }
    }

    /// Whether `--strict` counts it as the destination refusing the VM: what the guest sees
    /// would change under it (host-reflected) or leak to it (PV).
    pub fn is_strict_refusal(&self) -> bool {
        matches!(self, Warning::HostReflected { .. } | Warning::LeakThrough(_))
    }

    /// The feature the warning is about.
    pub fn feature(&self) -> FeatureId {
        match self {
            Warning::HostReflected { feature, .. } => *feature,
            Warning::ClearedByDestination(id) | Warning::GuestNotTold(id) | Warning::LeakThrough(id) => *id,
        }
    }
}

/// Checks whether a VM that booted with `vm` may run on `destination`: every mismatch, by name,
/// and the warnings. Allocates nothing when there is nothing to report.
pub fn check_migration(vm: &CpuPolicy, destination: &PoolHost) -> MigrationCheck {
    let mut result = MigrationCheck::default();
    let max = &destination.max;
    let (vm_limits, host_limits) = (Limits::of(vm), Limits::of(max));
    if vm_limits.vendor != host_limits.vendor {
        result.mismatches.push(Mismatch::Vendor { vm: vm.vendor(), host: max.vendor() });
    }

    let rules = masks();
    // Whether there is anything to report is found reading the policies in place; most checks
    // have nothing, and only then are the words gathered to name it. Warnings can only come
    // from the few words with host-reflected or accumulate bits.
    let (default, reflected) = (&destination.default, destination.reflected_source());
    let missing_any = vm.any_beyond(max, &rules.needed);
    let mut warning_any = 0;
    for w in WARNING_WORDS {
        let (v, m) = (vm.feature_word(w), max.feature_word(w));
        warning_any |= ((v ^ reflected.feature_word(w)) & rules.reflected[w])
            | (v & !m & rules.or[w])
            | (!v & default.feature_word(w) & rules.or[w]);
    }
    if missing_any {
        missing_features(vm, max, &rules.needed, &mut result.mismatches);
    }
    for (i, field) in LimitField::ALL.into_iter().enumerate() {
        let (v, h) = (vm_limits.values[i], host_limits.values[i]);
        if field.exceeds(v, h) {
            result.mismatches.push(Mismatch::Limit { field, vm: v, host: h });
        }
    }
    if warning_any != 0 {
        feature_warnings([vm, max, default, reflected], rules, &mut result.warnings);
    }
    if let Some(leaks) = destination.pv_leak_through(vm) {
        result.warnings.extend(leaks.into_iter().map(Warning::LeakThrough));
    }
    result
}

/// The features `vm` has, `rules` needs and `max` lacks, as mismatches (only once a check found
/// some: the words are gathered here, not on the way of a check with nothing to report).
#[cold]
fn missing_features(vm: &CpuPolicy, max: &CpuPolicy, needed: &[u32; NR_WORDS], mismatches: &mut Vec<Mismatch>) {
    let (vm_words, max_words) = (vm.feature_words(), max.feature_words());
    for w in 0..NR_WORDS {
        each_bit(vm_words[w] & !max_words[w] & needed[w], w, |id| mismatches.push(Mismatch::Feature(id)));
    }
}

/// The warnings on host-reflected and accumulate bits, `policies` being the VM's, then the
/// destination's max, default and reflected source (only once a check found some).
#[cold]
fn feature_warnings(policies: [&CpuPolicy; 4], rules: &RuleMasks, warnings: &mut Vec<Warning>) {
    let [vm_words, max_words, default_words, reflected_words] = policies.map(CpuPolicy::feature_words);
    for w in 0..NR_WORDS {
        each_bit((vm_words[w] ^ reflected_words[w]) & rules.reflected[w], w, |id| {
            warnings.push(Warning::HostReflected { feature: id, vm: vm_words[w] & id.mask() != 0 })
        });
        each_bit(vm_words[w] & !max_words[w] & rules.or[w], w, |id| warnings.push(Warning::ClearedByDestination(id)));
        each_bit(!vm_words[w] & default_words[w] & rules.or[w], w, |id| warnings.push(Warning::GuestNotTold(id)));
    }
}

/// MXCSR bits a guest may have set where it runs (FXSAVE's mask `from`) that fault on a host
/// whose mask is `to` (LDMXCSR/FXRSTOR/XRSTOR #GP, whatever the CPUID policy says); 0 when
/// either mask is unknown.
pub fn mxcsr_faults(from: Option<u32>, to: Option<u32>) -> u32 {
    match (from, to) {
        (Some(from), Some(to)) => from & !to,
        _ => 0,
    }
}

/// The vendor string and the limits of a policy, read with one look-up per leaf.
struct Limits {
    vendor: [u32; 3],
    /// In [`LimitField::ALL`] order.
    values: [u64; 6],
}

impl Limits {
    fn of(policy: &CpuPolicy) -> Limits {
        let [_, ebx0, ecx0, edx0, ..] = policy.summary();
        Limits { vendor: [ebx0, ecx0, edx0], values: LimitField::read_all(policy) }
    }
}

/// An Intel policy with these features, max leaves 0xd and 0x80000008, 39/48 address bits (for
/// tests).
#[cfg(test)]
pub(crate) fn intel(features: &[&str]) -> CpuPolicy {
    use crate::{CpuidKey, Registers};
    let mut p = CpuPolicy::new();
    p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
    p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(0, 0, 0, 0));
    p.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0008, 0, 0, 0));
    p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3027, 0, 0, 0));
    let features = cpupolicy_featureset::Featureset::from_names(features.iter().copied()).unwrap();
    p.set_feature_words(&crate::level::words_of(&features));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuidKey, Registers, MSR_PLATFORM_INFO};
    use cpupolicy_featureset::ids;

    #[test]
    fn every_mismatch_is_reported() {
        let mut vm = intel(&["fpu", "avx", "xsave", "rtm", "hle"]);
        vm.set_max_phys_addr_bits(46);
        vm.set_msr(MSR_PLATFORM_INFO, 1 << 31);
        let host = PoolHost::from_single("h", intel(&["fpu", "xsave"]));
        let check = check_migration(&vm, &host);
        let text: Vec<String> = check.mismatches.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [
                "feature avx: the VM saw it, the host cannot give it",
                "feature hle: the VM saw it, the host cannot give it",
                "feature rtm: the VM saw it, the host cannot give it",
                "max-phys-addr-bits: the VM saw 0x2e, the host allows 0x27",
                "platform-info: the VM saw bits 0x80000000 the host lacks (VM 0x80000000, host 0x0)",
            ]
        );
        assert!(!check.is_compatible());
    }

    #[test]
    fn directional_bits_warn() {
        let vm = intel(&["fpu", "arch-caps", "md-clear", "no-fpu-sel", "htt", "osxsave"]);
        let host = PoolHost::new("h", intel(&["fpu", "arch-caps", "rsba"]), intel(&["fpu", "arch-caps", "rsba"]));
        let check = check_migration(&vm, &host);
        assert!(check.is_compatible(), "{:?}", check.mismatches);
        assert_eq!(
            check.warnings,
            [
                Warning::HostReflected { feature: ids::NO_FPU_SEL, vm: true },
                Warning::ClearedByDestination(ids::MD_CLEAR),
                Warning::GuestNotTold(ids::RSBA),
            ]
        );
    }

    #[test]
    fn vendor_change_is_a_mismatch() {
        let vm = intel(&["fpu"]);
        let mut amd = intel(&["fpu"]);
        amd.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65));
        let check = check_migration(&vm, &PoolHost::from_single("h", amd));
        assert_eq!(check.mismatches, [Mismatch::Vendor { vm: Vendor::Intel, host: Vendor::Amd }]);
    }
}
