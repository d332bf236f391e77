//! From a topology to the CPUID leaves each vCPU reads.
//!
//! One small function per leaf, named after it, in a module per vendor convention (the layout
//! of Firecracker's `cpu_config`): [`intel`], [`amd`] (also Hygon) and [`xen_legacy`]. Each
//! takes the registers of the base policy's leaf and returns the registers the guest sees, so
//! fields this crate does not own (family, features, cache sizes) pass through unchanged.

pub mod amd;
pub mod intel;
pub mod xen_legacy;

use crate::cpuid::{bit, leaf, CpuidAccess, CpuidLeaves, Registers, EBX, ECX};
use crate::error::TopologyError;
use crate::shape::{Scheme, Topology, Vendor};

/// Sub-leaves of leaf 4 / 0x8000001D probed before giving up on a missing type-0 terminator.
const MAX_CACHE_SUBLEAVES: u32 = 64;

impl Topology {
    /// The topology leaves vCPU `vcpu` reads, given the domain's `base` policy.
    ///
    /// Only leaves this crate owns are returned, each with all four registers (fields it does
    /// not own copied from `base`). Overlay them on `base` for the vCPU's full view
    /// ([`Topology::guest_cpuid`]).
    pub fn cpuid_for_vcpu(&self, base: &impl CpuidAccess, vcpu: u32) -> Result<CpuidLeaves, TopologyError> {
        self.check_vcpu(vcpu)?;
        let mut out = CpuidLeaves::new();
        match (self.scheme(), self.vendor()) {
            (Scheme::Modern, Vendor::Intel) => intel::fill(self, base, vcpu, &mut out),
            (Scheme::Modern, Vendor::Amd | Vendor::Hygon) => amd::fill(self, base, vcpu, &mut out),
            (Scheme::XenLegacy, _) => xen_legacy::fill(self, base, vcpu, &mut out),
        }
        Ok(out)
    }

    /// `base` with vCPU `vcpu`'s topology leaves written over it: everything that vCPU reads.
    pub fn guest_cpuid(&self, base: &CpuidLeaves, vcpu: u32) -> Result<CpuidLeaves, TopologyError> {
        let mut view = base.clone();
        view.overlay(&self.cpuid_for_vcpu(base, vcpu)?);
        Ok(view)
    }

    /// Writes the topology into a domain's policy.
    ///
    /// A domain policy holds one value per leaf, so this writes vCPU 0's view; the hypervisor
    /// fills per-vCPU IDs (leaf 1 `EBX[31:24]`, x2APIC IDs) when each vCPU executes CPUID, as
    /// Xen's `guest_cpuid()` does. Terminator sub-leaves of 0xB/0x1F (level type 0) that the
    /// policy does not hold are skipped: an absent sub-leaf reads as zeros, which also ends
    /// the enumeration.
    ///
    /// All or nothing: when the policy cannot hold one of the leaves, nothing is written.
    ///
    /// A topology that needs x2APIC (an APIC ID of 0xFF or more) is refused for a policy that
    /// does not offer it (leaf 1 `ECX[21]` clear), whatever [`Topology::new`] was told.
    pub fn apply(&self, policy: &mut impl CpuidAccess) -> Result<(), TopologyError> {
        let (register, x2apic) = bit::X2APIC;
        let offers_x2apic = policy.cpuid(leaf::FEATURES, None).is_some_and(|r| r[register] & x2apic != 0);
        if !offers_x2apic {
            self.check_xapic_only()?;
        }
        let leaves = self.cpuid_for_vcpu(policy, 0)?;
        let writes: Vec<(u32, Option<u32>, Registers)> = leaves
            .iter()
            .filter(|&(l, s, regs)| !(policy.cpuid(l, s).is_none() && ends_enumeration(l, regs)))
            .collect();
        // A write that ends an enumeration is storable anywhere: a model that cannot hold the
        // entry drops it, which reads the same.
        for &(l, s, regs) in &writes {
            if !ends_enumeration(l, regs) {
                policy.check_storable(l, s)?;
            }
        }
        for (l, s, regs) in writes {
            policy.set_cpuid(l, s, regs)?;
        }
        Ok(())
    }

    /// The smallest maximum basic leaf (leaf 0 EAX) under which guests see every topology
    /// leaf this topology writes: 0x1F when it has modules, tiles or dies on Intel, else 0xB.
    pub fn min_basic_leaf(&self) -> u32 {
        if self.scheme() == Scheme::Modern && self.vendor() == Vendor::Intel && intel::needs_leaf_0x1f(self.shape()) {
            leaf::V2_EXTENDED_TOPOLOGY
        } else {
            leaf::EXTENDED_TOPOLOGY
        }
    }

    /// The smallest maximum extended leaf under which guests see every topology leaf:
    /// 0x8000001E for AMD-style `Modern` topologies, else 0x80000008.
    pub fn min_extended_leaf(&self) -> u32 {
        if self.scheme() == Scheme::Modern && self.vendor().is_amd_like() {
            leaf::AMD_EXTENDED_APIC_ID
        } else {
            leaf::ADDRESS_SIZES
        }
    }
}

/// Whether writing `regs` to `l` ends an enumeration: all zeros, or the invalid level of 0xB/0x1F.
pub(crate) fn ends_enumeration(l: u32, regs: Registers) -> bool {
    regs == [0; 4] || is_level_terminator(l, regs)
}

/// Whether a leaf 0xB/0x1F sub-leaf is the invalid-level one that ends the enumeration.
fn is_level_terminator(l: u32, regs: Registers) -> bool {
    matches!(l, leaf::EXTENDED_TOPOLOGY | leaf::V2_EXTENDED_TOPOLOGY)
        && crate::cpuid::field(regs[ECX], 8, 8) == 0
        && regs[EBX] & 0xffff == 0
}

/// Registers of a leaf in `base`, zeros when absent.
fn read(base: &impl CpuidAccess, l: u32, s: Option<u32>) -> Registers {
    base.cpuid(l, s).unwrap_or([0; 4])
}

/// The cache sub-leaves of leaf 4 or 0x8000001D present in `base`, in order, before the
/// first of type 0 (`EAX[4:0]` = 0, "no more caches"), which is left as it is (Xen's loop in
/// `xc_cpuid_apply_policy()` stops there too).
fn cache_subleaves(base: &impl CpuidAccess, l: u32) -> Vec<(u32, Registers)> {
    (0..MAX_CACHE_SUBLEAVES)
        .map_while(|s| base.cpuid(l, Some(s)).map(|r| (s, r)))
        .take_while(|(_, r)| r[0] & 0x1f != 0)
        .collect()
}

/// Sub-leaves of `l` present in `base` at or above `from` (for zeroing stale host levels).
fn subleaves_from(base: &impl CpuidAccess, l: u32, from: u32) -> Vec<u32> {
    (from..from + 8).filter(|&s| base.cpuid(l, Some(s)).is_some()).collect()
}
