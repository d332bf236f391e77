//! A small local model of the CPUID leaves this crate reads and writes.
//!
//! The policy crate owns the full CPUID/MSR model; this crate only needs "the registers of
//! leaf L, sub-leaf S". [`CpuidAccess`] is that view, so a `CpuPolicy` can implement it and a
//! topology can be applied to it without this crate depending on the policy crate.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The four output registers of one CPUID query, in the order `[eax, ebx, ecx, edx]`.
pub type Registers = [u32; 4];

/// Index of EAX in [`Registers`].
pub const EAX: usize = 0;
/// Index of EBX in [`Registers`].
pub const EBX: usize = 1;
/// Index of ECX in [`Registers`].
pub const ECX: usize = 2;
/// Index of EDX in [`Registers`].
pub const EDX: usize = 3;

/// The leaves this crate knows by name.
pub mod leaf {
    /// Maximum basic leaf and vendor string.
    pub const BASIC_MAX: u32 = 0x0;
    /// Family/model/stepping, APIC ID, logical processor count, feature flags.
    pub const FEATURES: u32 = 0x1;
    /// Intel deterministic cache parameters (one sub-leaf per cache, ended by type 0).
    pub const CACHE_PARAMETERS: u32 = 0x4;
    /// Extended topology enumeration (Intel; AMD Zen too).
    pub const EXTENDED_TOPOLOGY: u32 = 0xb;
    /// V2 extended topology enumeration (Intel; adds module, tile, die levels).
    pub const V2_EXTENDED_TOPOLOGY: u32 = 0x1f;
    /// Maximum extended leaf and vendor string.
    pub const EXTENDED_MAX: u32 = 0x8000_0000;
    /// Extended feature flags (CMP_LEGACY, TOPOEXT).
    pub const EXTENDED_FEATURES: u32 = 0x8000_0001;
    /// Address sizes; on AMD also ApicIdCoreIdSize and NC.
    pub const ADDRESS_SIZES: u32 = 0x8000_0008;
    /// AMD cache topology (one sub-leaf per cache, ended by type 0).
    pub const AMD_CACHE_TOPOLOGY: u32 = 0x8000_001d;
    /// AMD extended APIC ID, core (compute unit) and node identifiers.
    pub const AMD_EXTENDED_APIC_ID: u32 = 0x8000_001e;
    /// AMD extended CPU topology (Zen 4 and later).
    pub const AMD_EXTENDED_TOPOLOGY: u32 = 0x8000_0026;
}

/// Feature bits this crate reads or sets, as `(register index, mask)` of their leaf.
pub mod bit {
    use super::{ECX, EDX};

    /// Leaf 1 EDX bit 28: HTT, "leaf 1 `EBX[23:16]` is valid".
    pub const HTT: (usize, u32) = (EDX, 1 << 28);
    /// Leaf 1 ECX bit 21: x2APIC.
    pub const X2APIC: (usize, u32) = (ECX, 1 << 21);
    /// Leaf 1 ECX bit 31: running under a hypervisor.
    pub const HYPERVISOR: (usize, u32) = (ECX, 1 << 31);
    /// Leaf 0x80000001 ECX bit 1: CMP_LEGACY, "0x80000008 NC is valid" (AMD).
    pub const CMP_LEGACY: (usize, u32) = (ECX, 1 << 1);
    /// Leaf 0x80000001 ECX bit 22: TOPOEXT, leaves 0x8000001D/0x8000001E are valid (AMD).
    pub const TOPOEXT: (usize, u32) = (ECX, 1 << 22);
}

/// Whether a leaf is indexed by ECX (has sub-leaves) on real hardware: the ABI's table
/// ([`cpupolicy_abi::SUBLEAF_LEAVES`], from the Intel SDM and AMD APM CPUID chapters).
///
/// Used by importers of dumps that record every leaf with an ECX input (libvirt's
/// `ecx_in='0x00'`, Linux's `/dev/cpu/N/cpuid`): leaves not listed there are stored with
/// `subleaf = None`.
pub use cpupolicy_abi::has_subleaves;

/// Read access to CPUID leaves, and the ability to change them.
///
/// `subleaf` is `None` for leaves without sub-leaves (Xen's `XEN_CPUID_NO_SUBLEAF`).
pub trait CpuidAccess {
    /// The registers of `leaf`/`subleaf`, or `None` when the model has no such entry.
    fn cpuid(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers>;

    /// Replaces the registers of `leaf`/`subleaf`.
    ///
    /// A model that cannot hold this entry (Xen's policy has no leaf 0x1F, and only sub-leaves
    /// 0–1 of leaf 0xB) says so instead of silently dropping it.
    fn set_cpuid(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) -> Result<(), UnstorableLeaf>;

    /// Whether [`CpuidAccess::set_cpuid`] would accept `leaf`/`subleaf`, without writing:
    /// lets a writer refuse a whole change before touching anything. Models that hold every
    /// entry keep the default.
    fn check_storable(&self, leaf: u32, subleaf: Option<u32>) -> Result<(), UnstorableLeaf> {
        let _ = (leaf, subleaf);
        Ok(())
    }
}

/// A CPUID entry that the target model cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the CPU policy cannot hold CPUID leaf {leaf:#x}{}", SubleafSuffix(*.subleaf))]
pub struct UnstorableLeaf {
    /// The leaf.
    pub leaf: u32,
    /// The sub-leaf, `None` for leaves without sub-leaves.
    pub subleaf: Option<u32>,
}

/// Formats `, sub-leaf N` when there is a sub-leaf.
pub(crate) struct SubleafSuffix(pub Option<u32>);

impl fmt::Display for SubleafSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, " sub-leaf {s:#x}"),
            None => Ok(()),
        }
    }
}

/// A sorted set of CPUID entries: `(leaf, subleaf) -> [eax, ebx, ecx, edx]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidLeaves {
    entries: BTreeMap<(u32, Option<u32>), Registers>,
}

impl CpuidLeaves {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces one entry.
    pub fn insert(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) {
        self.entries.insert((leaf, subleaf), registers);
    }

    /// The registers of one entry.
    pub fn get(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
        self.entries.get(&(leaf, subleaf)).copied()
    }

    /// Removes one entry, returning it.
    pub fn remove(&mut self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
        self.entries.remove(&(leaf, subleaf))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in `(leaf, subleaf)` order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<u32>, Registers)> + '_ {
        self.entries.iter().map(|(&(l, s), &r)| (l, s, r))
    }

    /// All entries of one leaf, in sub-leaf order.
    pub fn subleaves(&self, leaf: u32) -> impl Iterator<Item = (Option<u32>, Registers)> + '_ {
        self.entries.range((leaf, None)..=(leaf, Some(u32::MAX))).map(|(&(_, s), &r)| (s, r))
    }

    /// Overwrites `self` with every entry of `other`.
    pub fn overlay(&mut self, other: &CpuidLeaves) {
        for (l, s, r) in other.iter() {
            self.insert(l, s, r);
        }
    }

    /// The entries as a flat list, for serialisation.
    pub fn entries(&self) -> Vec<CpuidEntry> {
        self.iter().map(|(l, s, r)| CpuidEntry::new(l, s, r)).collect()
    }
}

impl CpuidAccess for CpuidLeaves {
    fn cpuid(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
        self.get(leaf, subleaf)
    }

    fn set_cpuid(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) -> Result<(), UnstorableLeaf> {
        self.insert(leaf, subleaf, registers);
        Ok(())
    }
}

impl FromIterator<(u32, Option<u32>, Registers)> for CpuidLeaves {
    fn from_iter<T: IntoIterator<Item = (u32, Option<u32>, Registers)>>(iter: T) -> Self {
        let mut leaves = Self::new();
        for (l, s, r) in iter {
            leaves.insert(l, s, r);
        }
        leaves
    }
}

/// One CPUID entry in a flat, serialisable form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuidEntry {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The sub-leaf (ECX input), absent for leaves without sub-leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subleaf: Option<u32>,
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

impl CpuidEntry {
    /// An entry from its parts.
    pub fn new(leaf: u32, subleaf: Option<u32>, registers: Registers) -> Self {
        let [eax, ebx, ecx, edx] = registers;
        Self { leaf, subleaf, eax, ebx, ecx, edx }
    }

    /// The registers as `[eax, ebx, ecx, edx]`.
    pub fn registers(&self) -> Registers {
        [self.eax, self.ebx, self.ecx, self.edx]
    }
}

/// Bits `[lo + width - 1 : lo]` of `value`.
pub(crate) fn field(value: u32, lo: u32, width: u32) -> u32 {
    (value >> lo) & mask(width)
}

/// `value` with bits `[lo + width - 1 : lo]` replaced by `new` (truncated to `width` bits).
pub(crate) fn with_field(value: u32, lo: u32, width: u32, new: u32) -> u32 {
    let m = mask(width) << lo;
    (value & !m) | ((new << lo) & m)
}

/// A mask of the low `width` bits (`width` may be 32).
pub(crate) fn mask(width: u32) -> u32 {
    if width >= 32 {
        u32::MAX
    } else {
        (1 << width) - 1
    }
}

/// `value >> shift`, where a shift of 32 or more gives 0.
pub(crate) fn shr(value: u32, shift: u32) -> u32 {
    value.checked_shr(shift).unwrap_or(0)
}

/// Whether a feature bit is set in the registers of its leaf.
pub(crate) fn has_bit(registers: Registers, (reg, m): (usize, u32)) -> bool {
    registers[reg] & m != 0
}

/// The registers with a feature bit set or cleared.
pub(crate) fn with_bit(mut registers: Registers, (reg, m): (usize, u32), on: bool) -> Registers {
    if on {
        registers[reg] |= m;
    } else {
        registers[reg] &= !m;
    }
    registers
}

/// `ceil(log2(n))`: bits needed for `n` distinct IDs (0 for 0 or 1). Linux's `get_count_order`.
pub(crate) fn count_order(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let v = with_field(0xffff_ffff, 14, 12, 5);
        assert_eq!(field(v, 14, 12), 5);
        assert_eq!(v | (0xfff << 14), 0xffff_ffff);
        assert_eq!(with_field(0, 26, 6, 64), 0, "truncated to the field width");
        assert_eq!(mask(32), u32::MAX);
        assert_eq!(shr(1, 32), 0);
    }

    #[test]
    fn count_order_matches_linux_get_count_order() {
        let cases = [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (12, 4), (255, 8), (256, 8)];
        for (n, order) in cases {
            assert_eq!(count_order(n), order, "n = {n}");
        }
    }

    #[test]
    fn subleaves_are_ranged_by_leaf() {
        let leaves: CpuidLeaves =
            [(0xb, Some(1), [1, 2, 3, 4]), (0xb, Some(0), [0, 0, 0, 0]), (0xc, None, [9; 4]), (0xa, None, [8; 4])]
                .into_iter()
                .collect();
        let subs: Vec<_> = leaves.subleaves(0xb).map(|(s, _)| s).collect();
        assert_eq!(subs, [Some(0), Some(1)]);
        assert_eq!(leaves.subleaves(0xc).count(), 1);
    }

    #[test]
    fn unstorable_leaf_names_the_leaf() {
        let e = UnstorableLeaf { leaf: 0x1f, subleaf: Some(2) };
        assert_eq!(e.to_string(), "the CPU policy cannot hold CPUID leaf 0x1f sub-leaf 0x2");
    }
}
