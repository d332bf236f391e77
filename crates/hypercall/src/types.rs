//! The plain values this crate hands out and takes in.

use std::fmt;

use crate::bindings::xen;
use crate::buffer::Pod;

/// A Xen domain id (`domid_t`).
pub type DomainId = u16;

pub use cpupolicy_abi::{SystemPolicy, XenCpuidLeaf, XenMsrEntry, XenVersion, XEN_CPUID_NO_SUBLEAF};

// SAFETY: repr(C) struct of six u32, no padding; every bit pattern is valid.
unsafe impl Pod for XenCpuidLeaf {}

// SAFETY: repr(C) struct of u32, u32, u64 with no padding; every bit pattern is valid.
unsafe impl Pod for XenMsrEntry {}

// Xen's numbering, as the ABI crate has it, is the one in Xen's own headers.
const _: () = {
    assert!(XEN_CPUID_NO_SUBLEAF == xen::XEN_CPUID_NO_SUBLEAF);
    assert!(SystemPolicy::Raw.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_raw);
    assert!(SystemPolicy::Host.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_host);
    assert!(SystemPolicy::PvMax.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_pv_max);
    assert!(SystemPolicy::HvmMax.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_hvm_max);
    assert!(SystemPolicy::PvDefault.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_pv_default);
    assert!(SystemPolicy::HvmDefault.policy_index().get() == xen::XEN_SYSCTL_cpu_policy_hvm_default);
    assert!(SystemPolicy::Raw.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_raw);
    assert!(SystemPolicy::Host.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_host);
    assert!(SystemPolicy::PvDefault.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_pv);
    assert!(SystemPolicy::HvmDefault.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_hvm);
    assert!(SystemPolicy::PvMax.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_pv_max);
    assert!(SystemPolicy::HvmMax.featureset_index().get() == xen::XEN_SYSCTL_cpu_featureset_hvm_max);
};

/// A CPU policy as Xen serialises it: CPUID leaves and MSRs, in Xen's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerialisedPolicy {
    /// CPUID leaves.
    pub leaves: Vec<XenCpuidLeaf>,
    /// MSR entries.
    pub msrs: Vec<XenMsrEntry>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_numberings_differ_where_xen_says() {
        // Featureset: pv/hvm default are 2/3, max 4/5. Policy: max 2/3, default 4/5.
        assert_eq!(SystemPolicy::PvDefault.featureset_index().get(), xen::XEN_SYSCTL_cpu_featureset_pv);
        assert_eq!(SystemPolicy::PvDefault.featureset_index().get(), 2);
        assert_eq!(SystemPolicy::PvDefault.policy_index().get(), 4);
        assert_eq!(SystemPolicy::HvmMax.featureset_index().get(), 5);
        assert_eq!(SystemPolicy::HvmMax.policy_index().get(), 3);
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
