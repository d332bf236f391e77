//! Topology leaves written into the policy crate's [`CpuPolicy`] (feature `policy`).
//!
//! [`CpuPolicy`] holds any leaf, so it accepts everything [`Topology::apply`] writes. A policy
//! headed for Xen cannot carry every leaf (no 0x1F, only sub-leaves 0–1 of 0xB, 0–5 of leaf 4):
//! [`XenPolicyTarget`] refuses those with [`UnstorableLeaf`] instead of letting them vanish when
//! the policy is serialised.
//!
//! [`Topology::apply`]: crate::Topology::apply

use cpupolicy_policy::{CpuPolicy, CpuidKey, Registers as PolicyRegisters, WireLimits};

use crate::cpuid::{CpuidAccess, Registers, UnstorableLeaf, EAX, EBX, ECX, EDX};

fn read(policy: &CpuPolicy, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
    let key = CpuidKey::new(leaf, subleaf);
    policy.contains(key).then(|| {
        let r = policy.cpuid(key);
        [r.eax, r.ebx, r.ecx, r.edx]
    })
}

fn write(policy: &mut CpuPolicy, leaf: u32, subleaf: Option<u32>, regs: Registers) {
    policy.set_cpuid(CpuidKey::new(leaf, subleaf), PolicyRegisters::new(regs[EAX], regs[EBX], regs[ECX], regs[EDX]));
}

impl CpuidAccess for CpuPolicy {
    fn cpuid(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
        read(self, leaf, subleaf)
    }

    fn set_cpuid(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) -> Result<(), UnstorableLeaf> {
        write(self, leaf, subleaf, registers);
        Ok(())
    }
}

/// A [`CpuPolicy`] seen as Xen's policy of one release: writes of leaves Xen's format cannot
/// carry are refused.
#[derive(Debug)]
pub struct XenPolicyTarget<'a> {
    /// The policy written to.
    pub policy: &'a mut CpuPolicy,
    /// The release's format.
    pub limits: WireLimits,
}

impl XenPolicyTarget<'_> {
    /// What `x86_cpuid_copy_from_buffer` of this release accepts ([`WireLimits::carries`]),
    /// and AMD's cache topology sub-leaves (0x8000001d): Xen's format holds that leaf only
    /// without sub-leaves, and Xen empties it for every AMD and Hygon guest
    /// (`recalculate_misc`, "TopoExt Cache"), so what a topology writes there stays in the
    /// model and is listed as dropped when serialised ([`CpuPolicy::to_wire`]) rather than
    /// refused.
    fn carries(&self, leaf: u32, subleaf: Option<u32>) -> bool {
        self.limits.carries(CpuidKey::new(leaf, subleaf))
            || (leaf == crate::cpuid::leaf::AMD_CACHE_TOPOLOGY && leaf <= self.limits.max_extended_leaf())
    }
}

impl CpuidAccess for XenPolicyTarget<'_> {
    fn cpuid(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
        read(self.policy, leaf, subleaf)
    }

    /// An entry Xen's format cannot carry is refused, unless the write ends an enumeration
    /// (all zeros, or a 0xB/0x1F level of type 0): then the entry is removed, which is what
    /// Xen will see (an absent sub-leaf reads as zeros and ends the enumeration too).
    fn set_cpuid(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) -> Result<(), UnstorableLeaf> {
        if !self.carries(leaf, subleaf) && crate::generate::ends_enumeration(leaf, registers) {
            self.policy.remove_cpuid(CpuidKey::new(leaf, subleaf));
            return Ok(());
        }
        self.check_storable(leaf, subleaf)?;
        write(self.policy, leaf, subleaf, registers);
        Ok(())
    }

    fn check_storable(&self, leaf: u32, subleaf: Option<u32>) -> Result<(), UnstorableLeaf> {
        if self.carries(leaf, subleaf) {
            Ok(())
        } else {
            Err(UnstorableLeaf { leaf, subleaf })
        }
    }
}
