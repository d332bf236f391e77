//! The plain values this crate hands out and takes in.

use std::fmt;

use crate::bindings::xen;
use crate::buffer::Pod;

/// A Xen domain id (`domid_t`).
pub type DomainId = u16;

/// One serialised CPUID leaf, laid out exactly as Xen's `xen_cpuid_leaf_t` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuidLeaf {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The sub-leaf (ECX input), or [`CpuidLeaf::NO_SUBLEAF`].
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}

impl CpuidLeaf {
    /// Sub-leaf value of leaves that have no sub-leaves (`XEN_CPUID_NO_SUBLEAF`).
    pub const NO_SUBLEAF: u32 = xen::XEN_CPUID_NO_SUBLEAF;
}

// SAFETY: repr(C) struct of six u32, no padding; every bit pattern is valid.
unsafe impl Pod for CpuidLeaf {}

/// One serialised MSR, laid out exactly as Xen's `xen_msr_entry_t` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsrEntry {
    /// MSR index.
    pub index: u32,
    /// Reserved, must be zero (Xen rejects anything else with EINVAL).
    pub flags: u32,
    /// MSR value.
    pub value: u64,
}

// SAFETY: repr(C) struct of u32, u32, u64 with no padding; every bit pattern is valid.
unsafe impl Pod for MsrEntry {}

/// A CPU policy as Xen serialises it: CPUID leaves and MSRs, in Xen's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerialisedPolicy {
    /// CPUID leaves.
    pub leaves: Vec<CpuidLeaf>,
    /// MSR entries.
    pub msrs: Vec<MsrEntry>,
}

/// Which system featureset to fetch (`XEN_SYSCTL_cpu_featureset_*`).
///
/// Not the same numbering as [`SystemPolicy`]: the two sysctls number their indices differently,
/// and keeping them apart by type makes mixing them up a compile error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemFeatureset {
    /// What the hardware reports.
    Raw,
    /// What Xen itself uses.
    Host,
    /// What a new PV guest gets.
    PvDefault,
    /// What a new HVM guest gets.
    HvmDefault,
    /// The most a PV guest may have (Xen 4.18+, and backports without a version bump).
    PvMax,
    /// The most an HVM guest may have (Xen 4.18+, and backports without a version bump).
    HvmMax,
}

impl SystemFeatureset {
    /// Every featureset, in index order.
    pub const ALL: [SystemFeatureset; 6] = [
        SystemFeatureset::Raw,
        SystemFeatureset::Host,
        SystemFeatureset::PvDefault,
        SystemFeatureset::HvmDefault,
        SystemFeatureset::PvMax,
        SystemFeatureset::HvmMax,
    ];

    /// The sysctl's index for this featureset.
    pub fn index(self) -> u32 {
        match self {
            SystemFeatureset::Raw => xen::XEN_SYSCTL_cpu_featureset_raw,
            SystemFeatureset::Host => xen::XEN_SYSCTL_cpu_featureset_host,
            SystemFeatureset::PvDefault => xen::XEN_SYSCTL_cpu_featureset_pv,
            SystemFeatureset::HvmDefault => xen::XEN_SYSCTL_cpu_featureset_hvm,
            SystemFeatureset::PvMax => xen::XEN_SYSCTL_cpu_featureset_pv_max,
            SystemFeatureset::HvmMax => xen::XEN_SYSCTL_cpu_featureset_hvm_max,
        }
    }

    /// Short name, as `xen-cpuid` prints it.
    pub fn name(self) -> &'static str {
        match self {
            SystemFeatureset::Raw => "raw",
            SystemFeatureset::Host => "host",
            SystemFeatureset::PvDefault => "pv_default",
            SystemFeatureset::HvmDefault => "hvm_default",
            SystemFeatureset::PvMax => "pv_max",
            SystemFeatureset::HvmMax => "hvm_max",
        }
    }
}

impl fmt::Display for SystemFeatureset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which system CPU policy to fetch (`XEN_SYSCTL_cpu_policy_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemPolicy {
    /// What the hardware reports.
    Raw,
    /// What Xen itself uses.
    Host,
    /// The most a PV guest may have: what an incoming PV migration is checked against.
    PvMax,
    /// The most an HVM guest may have: what an incoming HVM migration is checked against.
    HvmMax,
    /// What a newly booted PV guest gets.
    PvDefault,
    /// What a newly booted HVM guest gets.
    HvmDefault,
}

impl SystemPolicy {
    /// Every policy, in index order.
    pub const ALL: [SystemPolicy; 6] = [
        SystemPolicy::Raw,
        SystemPolicy::Host,
        SystemPolicy::PvMax,
        SystemPolicy::HvmMax,
        SystemPolicy::PvDefault,
        SystemPolicy::HvmDefault,
    ];

    /// The sysctl's index for this policy.
    pub fn index(self) -> u32 {
        match self {
            SystemPolicy::Raw => xen::XEN_SYSCTL_cpu_policy_raw,
            SystemPolicy::Host => xen::XEN_SYSCTL_cpu_policy_host,
            SystemPolicy::PvMax => xen::XEN_SYSCTL_cpu_policy_pv_max,
            SystemPolicy::HvmMax => xen::XEN_SYSCTL_cpu_policy_hvm_max,
            SystemPolicy::PvDefault => xen::XEN_SYSCTL_cpu_policy_pv_default,
            SystemPolicy::HvmDefault => xen::XEN_SYSCTL_cpu_policy_hvm_default,
        }
    }

    /// Short name, as `xen-cpuid -p` prints it.
    pub fn name(self) -> &'static str {
        match self {
            SystemPolicy::Raw => "raw",
            SystemPolicy::Host => "host",
            SystemPolicy::PvMax => "pv_max",
            SystemPolicy::HvmMax => "hvm_max",
            SystemPolicy::PvDefault => "pv_default",
            SystemPolicy::HvmDefault => "hvm_default",
        }
    }
}

impl fmt::Display for SystemPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The running hypervisor's version (`XENVER_version`, `XENVER_extraversion`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenVersion {
    /// Major version (4 in 4.20.3).
    pub major: u16,
    /// Minor version (20 in 4.20.3).
    pub minor: u16,
    /// The rest, as Xen reports it (".3" or "-unstable"; distributions append their own tags).
    pub extra: String,
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}{}", self.major, self.minor, self.extra)
    }
}

/// The sysctl and domctl interface versions this hypervisor accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceVersions {
    /// `XEN_SYSCTL_INTERFACE_VERSION`.
    pub sysctl: u32,
    /// `XEN_DOMCTL_INTERFACE_VERSION`.
    pub domctl: u32,
}

impl fmt::Display for InterfaceVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sysctl {:#x}, domctl {:#x}", self.sysctl, self.domctl)
    }
}

/// Which CPUID levelling mechanisms the hardware offers Xen (`XEN_SYSCTL_CPU_LEVELCAP_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevellingCaps {
    /// The raw bit mask.
    pub bits: u32,
}

impl LevellingCaps {
    /// Bit and name of every known capability.
    pub const NAMES: [(u32, &'static str); 9] = [
        (xen::XEN_SYSCTL_CPU_LEVELCAP_faulting, "faulting"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_ecx, "ecx"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_edx, "edx"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_extd_ecx, "extd_ecx"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_extd_edx, "extd_edx"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_xsave_eax, "xsave_eax"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_thermal_ecx, "thermal_ecx"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_l7s0_eax, "l7s0_eax"),
        (xen::XEN_SYSCTL_CPU_LEVELCAP_l7s0_ebx, "l7s0_ebx"),
    ];

    /// CPUID faulting: the strongest mechanism (every CPUID instruction traps to Xen).
    pub fn faulting(self) -> bool {
        self.bits & xen::XEN_SYSCTL_CPU_LEVELCAP_faulting != 0
    }

    /// Names of the capabilities present (unknown bits as hex).
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> =
            Self::NAMES.iter().filter(|(bit, _)| self.bits & bit != 0).map(|(_, name)| name.to_string()).collect();
        let known = Self::NAMES.iter().fold(0, |acc, (bit, _)| acc | bit);
        if self.bits & !known != 0 {
            names.push(format!("{:#x}", self.bits & !known));
        }
        names
    }
}

/// What kinds of guest the hypervisor can run (`xen_sysctl_physinfo.capabilities`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCapabilities {
    /// HVM guests are possible.
    pub hvm: bool,
    /// PV guests are possible.
    pub pv: bool,
    /// Hardware-assisted paging is available to HVM guests.
    pub hap: bool,
    /// Shadow paging is available.
    pub shadow: bool,
}

impl HostCapabilities {
    pub(crate) fn from_bits(bits: u32) -> Self {
        HostCapabilities {
            hvm: bits & xen::XEN_SYSCTL_PHYSCAP_hvm != 0,
            pv: bits & xen::XEN_SYSCTL_PHYSCAP_pv != 0,
            hap: bits & xen::XEN_SYSCTL_PHYSCAP_hap != 0,
            shadow: bits & xen::XEN_SYSCTL_PHYSCAP_shadow != 0,
        }
    }

    /// The guest kind a bare test domain should use: HVM if possible (with HAP if possible),
    /// else PV.
    pub fn preferred_domain_kind(self) -> Option<DomainKind> {
        if self.hvm && (self.hap || self.shadow) {
            Some(DomainKind::Hvm { hap: self.hap })
        } else if self.pv {
            Some(DomainKind::Pv)
        } else {
            None
        }
    }
}

/// The kind of domain [`crate::XenHandle::create_domain`] creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// A PV guest.
    Pv,
    /// An HVM guest, with hardware-assisted paging or shadow paging.
    Hvm {
        /// Use HAP (EPT/NPT); shadow paging otherwise.
        hap: bool,
    },
}

impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainKind::Pv => f.write_str("PV"),
            DomainKind::Hvm { hap: true } => f.write_str("HVM (HAP)"),
            DomainKind::Hvm { hap: false } => f.write_str("HVM (shadow)"),
        }
    }
}

// Our leaf/MSR types are written straight into hypercall buffers Xen reads as its own types.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<CpuidLeaf>() == size_of::<xen::xen_cpuid_leaf_t>());
    assert!(size_of::<CpuidLeaf>() == 24);
    assert!(offset_of!(CpuidLeaf, leaf) == offset_of!(xen::xen_cpuid_leaf_t, leaf));
    assert!(offset_of!(CpuidLeaf, subleaf) == offset_of!(xen::xen_cpuid_leaf_t, subleaf));
    assert!(offset_of!(CpuidLeaf, a) == offset_of!(xen::xen_cpuid_leaf_t, a));
    assert!(offset_of!(CpuidLeaf, b) == offset_of!(xen::xen_cpuid_leaf_t, b));
    assert!(offset_of!(CpuidLeaf, c) == offset_of!(xen::xen_cpuid_leaf_t, c));
    assert!(offset_of!(CpuidLeaf, d) == offset_of!(xen::xen_cpuid_leaf_t, d));
    assert!(size_of::<MsrEntry>() == size_of::<xen::xen_msr_entry_t>());
    assert!(size_of::<MsrEntry>() == 16);
    assert!(offset_of!(MsrEntry, index) == offset_of!(xen::xen_msr_entry_t, idx));
    assert!(offset_of!(MsrEntry, flags) == offset_of!(xen::xen_msr_entry_t, flags));
    assert!(offset_of!(MsrEntry, value) == offset_of!(xen::xen_msr_entry_t, val));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_numberings_differ_where_xen_says() {
        // Featureset: pv/hvm default are 2/3, max 4/5. Policy: max 2/3, default 4/5.
        let fs: Vec<u32> = SystemFeatureset::ALL.iter().map(|f| f.index()).collect();
        let pol: Vec<u32> = SystemPolicy::ALL.iter().map(|p| p.index()).collect();
        assert_eq!(fs, [0, 1, 2, 3, 4, 5]);
        assert_eq!(pol, [0, 1, 2, 3, 4, 5]);
        assert_eq!(SystemFeatureset::PvDefault.index(), 2);
        assert_eq!(SystemPolicy::PvDefault.index(), 4);
        assert_eq!(SystemFeatureset::HvmMax.index(), 5);
        assert_eq!(SystemPolicy::HvmMax.index(), 3);
    }

    #[test]
    fn levelling_caps_names() {
        let caps = LevellingCaps { bits: 0x1 | 0x2 | 0x1000 };
        assert!(caps.faulting());
        assert_eq!(caps.names(), ["faulting", "ecx", "0x1000"]);
    }

    #[test]
    fn preferred_domain_kind_prefers_hvm_then_hap() {
        let caps = |bits| HostCapabilities::from_bits(bits).preferred_domain_kind();
        assert_eq!(caps(0b11011), Some(DomainKind::Hvm { hap: true }));
        assert_eq!(caps(0b10011), Some(DomainKind::Hvm { hap: false }));
        assert_eq!(caps(0b00010), Some(DomainKind::Pv));
        assert_eq!(caps(0), None);
    }
}
