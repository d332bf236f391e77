//! Xen's wire format: arrays of `xen_cpuid_leaf_t` and `xen_msr_entry_t`, as the
//! `get/set_cpu_policy` sysctl and domctl and the migration stream's records 0x11/0x12 carry
//! them.
//!
//! Facts from Xen's `xen/lib/x86/cpuid.c` (`x86_cpuid_copy_to_buffer`,
//! `x86_cpuid_copy_from_buffer`), `xen/lib/x86/msr.c` and `cpu-policy.h` (`cpuid.h`/`msr.h`
//! before 4.18), releases 4.14.0 to 4.22.0; the serialisation logic is the same in all of them,
//! only the array sizes changed (see [`WireLimits`]).

use std::fmt;

use crate::policy::wire_slot;
use crate::{CpuPolicy, CpuidKey, Registers, MSR_PLATFORM_INFO};
use cpupolicy_abi::layout::msr_slot;

pub use cpupolicy_abi::{
    WireLimits, XenCpuidLeaf, XenMsrEntry, REC_TYPE_X86_CPUID_POLICY, REC_TYPE_X86_MSR_POLICY, XEN_CACHE_SUBLEAVES,
    XEN_CPUID_NO_SUBLEAF, XEN_HYPERVISOR_LEAVES, XEN_MAX_BASIC_LEAF, XEN_MAX_EXTENDED_LEAF, XEN_MAX_LEAF7_SUBLEAF,
    XEN_POLICY_MSRS, XEN_TOPOLOGY_SUBLEAVES, XEN_XSTATE_SUBLEAVES,
};

/// A `xen_cpuid_leaf_t` in this crate's terms: its key and registers.
pub trait WireLeaf {
    /// The entry for one leaf of a policy.
    fn from_key(key: CpuidKey, registers: Registers) -> Self;
    /// The leaf and sub-leaf (`XEN_CPUID_NO_SUBLEAF` → `None`).
    fn key(&self) -> CpuidKey;
    /// The registers.
    fn registers(&self) -> Registers;
}

impl WireLeaf for XenCpuidLeaf {
    fn from_key(key: CpuidKey, registers: Registers) -> XenCpuidLeaf {
        let subleaf = key.subleaf.unwrap_or(XEN_CPUID_NO_SUBLEAF);
        XenCpuidLeaf { leaf: key.leaf, subleaf, a: registers.eax, b: registers.ebx, c: registers.ecx, d: registers.edx }
    }

    fn key(&self) -> CpuidKey {
        let subleaf = if self.subleaf == XEN_CPUID_NO_SUBLEAF { None } else { Some(self.subleaf) };
        CpuidKey { leaf: self.leaf, subleaf }
    }

    fn registers(&self) -> Registers {
        Registers::new(self.a, self.b, self.c, self.d)
    }
}

/// A policy in Xen's wire format, with what the format could not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WirePolicy {
    /// The CPUID leaves, in Xen's order, zero leaves included, as Xen would write them.
    pub leaves: Vec<XenCpuidLeaf>,
    /// The MSRs, in Xen's order.
    pub msrs: Vec<XenMsrEntry>,
    /// Entries of the policy the format cannot carry, in key order (leaves, then MSRs).
    pub dropped: Vec<Dropped>,
}

/// An entry of a policy that Xen's format cannot carry, with why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A CPUID leaf (entirely: Xen writes zeros, or nothing, in its place).
    Leaf {
        /// The leaf.
        key: CpuidKey,
        /// What the policy holds for it.
        registers: Registers,
        /// Why it is not carried.
        reason: DropReason,
    },
    /// An MSR.
    Msr {
        /// The MSR index.
        index: u32,
        /// What the policy holds for it.
        value: u64,
        /// Why it is not carried.
        reason: DropReason,
    },
}

/// Why Xen's format cannot carry an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Xen's policy has no room for this leaf or MSR in this release.
    NotInXenPolicy,
    /// A leaf above the policy's own highest basic or extended leaf: Xen serialises only up to it.
    BeyondMaxLeaf {
        /// The policy's highest leaf of that range.
        max: u32,
    },
    /// A sub-leaf Xen does not serialise: past the first null cache or topology level, past
    /// leaf 7's highest sub-leaf, past the highest xstate component, or beyond Xen's array.
    SubleafNotSerialised,
    /// A sub-leaf on a leaf Xen's policy holds without sub-leaves (AMD's 0x8000001d, …).
    UnexpectedSubleaf,
    /// No sub-leaf on a leaf Xen's policy holds by sub-leaf (4, 7, 0xb, 0xd).
    MissingSubleaf,
    /// A hypervisor leaf other than `[limit ≤ 0xff, 0, 0, 0]`: Xen keeps only an 8-bit limit.
    HypervisorLeafNotALimit,
    /// An MSR value wider than Xen stores it (MSR 0xce is 32 bits in Xen's policy).
    ValueTooWide,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::NotInXenPolicy => f.write_str("Xen's policy has no room for it"),
            DropReason::BeyondMaxLeaf { max } => write!(f, "beyond the policy's highest leaf {max:#010x}"),
            DropReason::SubleafNotSerialised => f.write_str("a sub-leaf Xen does not serialise"),
            DropReason::UnexpectedSubleaf => f.write_str("Xen's policy holds this leaf without sub-leaves"),
            DropReason::MissingSubleaf => f.write_str("Xen's policy holds this leaf by sub-leaf"),
            DropReason::HypervisorLeafNotALimit => {
                f.write_str("Xen carries only an 8-bit leaf limit in EAX of this hypervisor leaf")
            }
            DropReason::ValueTooWide => f.write_str("value wider than Xen stores this MSR"),
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Leaf { key, registers: r, reason } => {
                write!(f, "leaf {key} ({:08x}:{:08x}:{:08x}:{:08x}): {reason}", r.eax, r.ebx, r.ecx, r.edx)
            }
            Dropped::Msr { index, value, reason } => write!(f, "MSR {index:#x} ({value:#018x}): {reason}"),
        }
    }
}

/// What Xen would refuse in an incoming policy, with the errno its hypercall returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Buffers too small for the serialised policy (ENOBUFS).
    #[error("the buffers hold {leaves} leaves and {msrs} MSRs; the policy needs {needed_leaves} and {needed_msrs}")]
    BufferTooSmall {
        /// The leaves the buffer holds.
        leaves: usize,
        /// The MSRs the buffer holds.
        msrs: usize,
        /// The leaves the policy needs.
        needed_leaves: usize,
        /// The MSRs the policy needs.
        needed_msrs: usize,
    },
    /// More CPUID leaves than the format holds (E2BIG).
    #[error("{count} CPUID leaves given; this Xen accepts at most {max}")]
    TooManyLeaves {
        /// How many were given.
        count: usize,
        /// The release's maximum.
        max: u32,
    },
    /// More MSRs than the format holds (E2BIG).
    #[error("{count} MSRs given; this Xen accepts at most {max}")]
    TooManyMsrs {
        /// How many were given.
        count: usize,
        /// The release's maximum.
        max: u32,
    },
    /// A leaf or sub-leaf Xen's policy has no room for (ERANGE, Xen reports it in
    /// `err_leaf`/`err_subleaf`).
    #[error("CPUID entry {position}: leaf {leaf:#010x} sub-leaf {subleaf:#010x} is out of range of Xen's policy")]
    LeafOutOfRange {
        /// Position in the array.
        position: usize,
        /// The leaf.
        leaf: u32,
        /// The sub-leaf as given (`0xffffffff` = none).
        subleaf: u32,
    },
    /// Non-zero flags on an MSR entry (EINVAL, reported in `err_msr`).
    #[error("MSR entry {position}: MSR {msr:#x} has flags {flags:#x}; flags must be zero")]
    MsrFlags {
        /// Position in the array.
        position: usize,
        /// The MSR index.
        msr: u32,
        /// The flags given.
        flags: u32,
    },
    /// An MSR Xen's policy has no room for (ERANGE, reported in `err_msr`).
    #[error("MSR entry {position}: MSR {msr:#x} is not in Xen's policy")]
    MsrOutOfRange {
        /// Position in the array.
        position: usize,
        /// The MSR index.
        msr: u32,
    },
    /// A value wider than Xen stores the MSR (EOVERFLOW, reported in `err_msr`).
    #[error("MSR entry {position}: value {value:#x} is too wide for MSR {msr:#x} in Xen's policy")]
    MsrValueTooWide {
        /// Position in the array.
        position: usize,
        /// The MSR index.
        msr: u32,
        /// The value given.
        value: u64,
    },
}

impl WireError {
    /// The errno Xen's hypercall returns for this (Linux numbering, which Xen shares).
    pub const fn errno(&self) -> i32 {
        const E2BIG: i32 = 7;
        const EINVAL: i32 = 22;
        const ERANGE: i32 = 34;
        const EOVERFLOW: i32 = 75;
        const ENOBUFS: i32 = 105;
        match self {
            WireError::BufferTooSmall { .. } => ENOBUFS,
            WireError::TooManyLeaves { .. } | WireError::TooManyMsrs { .. } => E2BIG,
            WireError::LeafOutOfRange { .. } | WireError::MsrOutOfRange { .. } => ERANGE,
            WireError::MsrFlags { .. } => EINVAL,
            WireError::MsrValueTooWide { .. } => EOVERFLOW,
        }
    }
}

/// A migration stream record body that is not an array of whole entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// libxc refuses empty policy records.
    #[error("record {record_type:#x}: empty body")]
    Empty {
        /// The record type.
        record_type: u32,
    },
    /// The body length is not a multiple of the entry size.
    #[error("record {record_type:#x}: body of {length} bytes is not a multiple of {entry_size}")]
    BadLength {
        /// The record type.
        record_type: u32,
        /// The body length.
        length: usize,
        /// The entry size.
        entry_size: usize,
    },
}

impl CpuPolicy {
    /// Serialises the policy the way Xen does (`x86_cpuid_copy_to_buffer`,
    /// `x86_msr_copy_to_buffer`) for a release with these limits: sorted; basic leaves up to
    /// the policy's max basic leaf (at most 0xd); leaf 4 and 0xb sub-leaves up to and including
    /// the first of null type; leaf 7 up to its max sub-leaf; leaf 0xd sub-leaves 0, 1, then up
    /// to the highest xstate component; the two hypervisor limit leaves, always; extended
    /// leaves up to the policy's max extended leaf; then each MSR of the format, always.
    ///
    /// Zero leaves are written as Xen writes them. Everything the policy holds that the format
    /// cannot carry is listed in [`WirePolicy::dropped`]; [`CpuPolicy::from_wire`] of the result
    /// plus the dropped entries is the policy again.
    pub fn to_wire(&self, limits: &WireLimits) -> WirePolicy {
        let mut leaves = vec![XenCpuidLeaf::default(); limits.max_leaves() as usize];
        let mut msrs = vec![XenMsrEntry::default(); limits.max_msrs() as usize];
        let (nr_leaves, nr_msrs) = match self.to_wire_into(limits, &mut leaves, &mut msrs) {
            Ok(counts) => counts,
            Err(error) => unreachable!("buffers of the release's maxima always suffice: {error}"),
        };
        leaves.truncate(nr_leaves);
        msrs.truncate(nr_msrs);
        let dropped = self.dropped_from(&leaves, limits);
        WirePolicy { leaves, msrs, dropped }
    }

    /// Serialises the policy into caller buffers, as `xc_cpu_policy_serialise` does: the same
    /// entries as [`CpuPolicy::to_wire`] (which is this with buffers of the release's maxima,
    /// plus what the format could not carry), no allocation. Returns how many leaves and MSRs
    /// were written; buffers too small get [`WireError::BufferTooSmall`] (Xen's ENOBUFS), naming
    /// what the policy needs.
    pub fn to_wire_into(
        &self,
        limits: &WireLimits,
        leaves: &mut [XenCpuidLeaf],
        msrs: &mut [XenMsrEntry],
    ) -> Result<(usize, usize), WireError> {
        let formatted = limits.msrs();
        // Buffers of the release's maxima always suffice; smaller ones are measured first, so a
        // refusal writes nothing.
        if leaves.len() < limits.max_leaves() as usize || msrs.len() < formatted.len() {
            let mut needed = 0;
            self.emit_wire(limits, |_, _, _| needed += 1);
            if needed > leaves.len() || formatted.len() > msrs.len() {
                return Err(WireError::BufferTooSmall {
                    leaves: leaves.len(),
                    msrs: msrs.len(),
                    needed_leaves: needed,
                    needed_msrs: formatted.len(),
                });
            }
        }
        let mut count = 0;
        self.emit_wire(limits, |leaf, subleaf, r| {
            leaves[count] = XenCpuidLeaf { leaf, subleaf, a: r.eax, b: r.ebx, c: r.ecx, d: r.edx };
            count += 1;
        });
        for (entry, &index) in msrs.iter_mut().zip(formatted) {
            let value = self.msr(index);
            *entry = XenMsrEntry::new(index, if msr_fits(index, value) { value } else { 0 });
        }
        Ok((count, formatted.len()))
    }

    /// Each leaf Xen's serialisation writes, in order (see [`CpuPolicy::to_wire`]), read
    /// straight from the slots that hold them.
    #[inline]
    fn emit_wire(&self, limits: &WireLimits, mut emit: impl FnMut(u32, u32, Registers)) {
        use cpupolicy_abi::layout::{EXTENDED_BASE, HYPERVISOR_BASE, LEAF4_BASE, LEAF7_BASE, LEAFB_BASE, LEAFD_BASE};
        const NONE: u32 = XEN_CPUID_NO_SUBLEAF;
        let leaf0 = self.slot(0);
        for leaf in 0..=leaf0.eax.min(XEN_MAX_BASIC_LEAF) {
            match leaf {
                0x4 | 0xb => {
                    let (count, base) = if leaf == 0x4 {
                        (XEN_CACHE_SUBLEAVES, LEAF4_BASE)
                    } else {
                        (XEN_TOPOLOGY_SUBLEAVES, LEAFB_BASE)
                    };
                    for subleaf in 0..count {
                        let registers = self.slot(base + subleaf as usize);
                        emit(leaf, subleaf, registers);
                        if is_null_subleaf(leaf, registers) {
                            break;
                        }
                    }
                }
                0x7 => {
                    for subleaf in 0..=self.slot(LEAF7_BASE).eax.min(limits.max_leaf7_subleaf()) {
                        emit(leaf, subleaf, self.slot(LEAF7_BASE + subleaf as usize));
                    }
                }
                0xd => {
                    let (sub0, sub1) = (self.slot(LEAFD_BASE), self.slot(LEAFD_BASE + 1));
                    emit(leaf, 0, sub0);
                    emit(leaf, 1, sub1);
                    let mut xstates = ((u64::from(sub0.edx | sub1.edx) << 32) | u64::from(sub0.eax | sub1.ecx)) >> 2;
                    let mut subleaf = 2;
                    while xstates != 0 && subleaf < XEN_XSTATE_SUBLEAVES {
                        emit(leaf, subleaf, self.slot(LEAFD_BASE + subleaf as usize));
                        xstates >>= 1;
                        subleaf += 1;
                    }
                }
                _ => emit(leaf, NONE, self.slot(leaf as usize)),
            }
        }
        for (i, leaf) in XEN_HYPERVISOR_LEAVES.into_iter().enumerate() {
            let held = self.slot(HYPERVISOR_BASE + i);
            let limit = if hypervisor_leaf_fits(held) { held.eax } else { 0 };
            emit(leaf, NONE, Registers::new(limit, 0, 0, 0));
        }
        let max_extended = (self.slot(EXTENDED_BASE).eax & 0xffff).min(limits.max_extended_leaf() & 0xffff);
        for offset in 0..=max_extended {
            emit(0x8000_0000 | offset, NONE, self.slot(EXTENDED_BASE + offset as usize));
        }
    }

    /// Deserialises a policy from Xen's format, as Xen checks it (`x86_cpuid_copy_from_buffer`,
    /// `x86_msr_copy_from_buffer`): at most the release's number of entries; every leaf and
    /// sub-leaf within Xen's arrays (the sub-leaf must be `0xffffffff` for leaves without);
    /// MSR flags zero, MSR known, value fitting. Order does not matter; a repeated entry
    /// overwrites the earlier one, as in Xen.
    ///
    /// Xen keeps only `EAX[7:0]` of the hypervisor leaves 0x40000000/0x40000100 and ignores the
    /// rest; the model keeps what was given, and [`CpuPolicy::to_wire`] reports a value Xen
    /// would have cut.
    ///
    /// The same checks as [`CpuPolicy::apply_wire`] onto an empty policy, in one pass: each
    /// leaf is stored as soon as its slot is found, since a refusal drops the new policy.
    pub fn from_wire(
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
        limits: &WireLimits,
    ) -> Result<CpuPolicy, WireError> {
        check_leaf_count(leaves, limits)?;
        // The MSRs are checked before the one pass over the leaves, but a bad leaf is still the
        // error reported, as Xen checks the leaves first.
        if let Err(msr_error) = check_wire_msrs(msrs, limits) {
            return Err(first_leaf_error(leaves, limits).unwrap_or(msr_error));
        }
        let mut policy = CpuPolicy::new();
        for (position, entry) in leaves.iter().enumerate() {
            match wire_slot(entry.leaf, entry.subleaf, limits) {
                Some(slot) => policy.set_slot(slot, [entry.a, entry.b, entry.c, entry.d]),
                None => return Err(out_of_range(leaves, position)),
            }
        }
        policy.store_wire_msrs(msrs);
        Ok(policy)
    }

    /// Merges entries in Xen's format onto this policy, as `XEN_DOMCTL_set_cpu_policy` does
    /// onto a domain's current policy. All or nothing: on error the policy is unchanged.
    pub fn apply_wire(
        &mut self,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
        limits: &WireLimits,
    ) -> Result<(), WireError> {
        check_leaf_count(leaves, limits)?;
        // Each entry's slot, found while checking it; a full list has at most 120 entries.
        const _: () = assert!(WireLimits::LATEST.max_leaves() <= 128);
        let mut slots = [0u8; 128];
        let slots = &mut slots[..leaves.len()];
        // Four entries a round (fewer loop steps per entry), then the rest.
        let (mut leaf_rounds, mut slot_rounds) = (leaves.chunks_exact(4), slots.chunks_exact_mut(4));
        for (round, (entries, found)) in leaf_rounds.by_ref().zip(slot_rounds.by_ref()).enumerate() {
            for k in 0..4 {
                match wire_slot(entries[k].leaf, entries[k].subleaf, limits) {
                    Some(slot) => found[k] = slot as u8,
                    None => return Err(out_of_range(leaves, round * 4 + k)),
                }
            }
        }
        let done = leaves.len() - leaf_rounds.remainder().len();
        for (k, (entry, found)) in leaf_rounds.remainder().iter().zip(slot_rounds.into_remainder()).enumerate() {
            match wire_slot(entry.leaf, entry.subleaf, limits) {
                Some(slot) => *found = slot as u8,
                None => return Err(out_of_range(leaves, done + k)),
            }
        }
        check_wire_msrs(msrs, limits)?;
        self.store_in_slots(leaves, slots);
        self.store_wire_msrs(msrs);
        Ok(())
    }

    /// Stores MSR entries already checked ([`check_wire_msrs`]).
    #[inline]
    fn store_wire_msrs(&mut self, msrs: &[XenMsrEntry]) {
        for entry in msrs {
            if let Some(slot) = msr_slot(entry.idx) {
                self.set_msr_slot(slot, entry.val);
            }
        }
    }

    /// Everything held that `carried` (this policy's serialisation) does not carry exactly.
    fn dropped_from(&self, carried: &[XenCpuidLeaf], limits: &WireLimits) -> Vec<Dropped> {
        let mut dropped = Vec::new();
        // Both sequences are sorted by key, so one merge pass finds what is missing.
        let mut wire = carried.iter().map(XenCpuidLeaf::key).peekable();
        for (key, registers) in self.cpuid_entries() {
            while wire.next_if(|k| *k < key).is_some() {}
            let is_carried = wire.peek() == Some(&key);
            let reason = if XEN_HYPERVISOR_LEAVES.contains(&key.leaf) && key.subleaf.is_none() {
                (!hypervisor_leaf_fits(registers)).then_some(DropReason::HypervisorLeafNotALimit)
            } else if is_carried {
                None
            } else {
                Some(self.drop_reason(key, limits))
            };
            if let Some(reason) = reason {
                dropped.push(Dropped::Leaf { key, registers, reason });
            }
        }
        for (index, value) in self.msrs() {
            if !limits.carries_msr(index) {
                dropped.push(Dropped::Msr { index, value, reason: DropReason::NotInXenPolicy });
            } else if !msr_fits(index, value) {
                dropped.push(Dropped::Msr { index, value, reason: DropReason::ValueTooWide });
            }
        }
        dropped
    }

    fn drop_reason(&self, key: CpuidKey, limits: &WireLimits) -> DropReason {
        let indexed_by_xen = matches!(key.leaf, 0x4 | 0x7 | 0xb | 0xd);
        match key.leaf {
            0..=XEN_MAX_BASIC_LEAF if key.leaf > self.max_basic_leaf() => {
                DropReason::BeyondMaxLeaf { max: self.max_basic_leaf() }
            }
            0..=XEN_MAX_BASIC_LEAF if indexed_by_xen && key.subleaf.is_none() => DropReason::MissingSubleaf,
            0..=XEN_MAX_BASIC_LEAF if !indexed_by_xen && key.subleaf.is_some() => DropReason::UnexpectedSubleaf,
            0..=XEN_MAX_BASIC_LEAF => DropReason::SubleafNotSerialised,
            0x8000_0000.. if key.leaf <= limits.max_extended_leaf() => {
                if key.subleaf.is_some() {
                    DropReason::UnexpectedSubleaf
                } else {
                    DropReason::BeyondMaxLeaf { max: self.max_extended_leaf() }
                }
            }
            _ if XEN_HYPERVISOR_LEAVES.contains(&key.leaf) => DropReason::UnexpectedSubleaf,
            _ => DropReason::NotInXenPolicy,
        }
    }
}

/// The first entry of `leaves` that Xen's format has no room for, as [`CpuPolicy::apply_wire`]
/// refuses it.
fn first_leaf_error(leaves: &[XenCpuidLeaf], limits: &WireLimits) -> Option<WireError> {
    let position = leaves.iter().position(|entry| wire_slot(entry.leaf, entry.subleaf, limits).is_none())?;
    Some(out_of_range(leaves, position))
}

/// The refusal of `leaves[position]`, which Xen's format has no room for.
#[cold]
fn out_of_range(leaves: &[XenCpuidLeaf], position: usize) -> WireError {
    let entry = &leaves[position];
    WireError::LeafOutOfRange { position, leaf: entry.leaf, subleaf: entry.subleaf }
}

/// At most the release's number of leaves (checked before any leaf, as in Xen; the MSRs' count
/// is checked after the leaves, by [`check_wire_msrs`]).
fn check_leaf_count(leaves: &[XenCpuidLeaf], limits: &WireLimits) -> Result<(), WireError> {
    if leaves.len() > limits.max_leaves() as usize {
        return Err(WireError::TooManyLeaves { count: leaves.len(), max: limits.max_leaves() });
    }
    Ok(())
}

/// Xen's checks of MSR entries (`x86_msr_copy_from_buffer`): at most the release's number,
/// flags zero, the MSR one the format holds, the value fitting.
fn check_wire_msrs(msrs: &[XenMsrEntry], limits: &WireLimits) -> Result<(), WireError> {
    if msrs.len() > limits.max_msrs() as usize {
        return Err(WireError::TooManyMsrs { count: msrs.len(), max: limits.max_msrs() });
    }
    for (position, entry) in msrs.iter().enumerate() {
        if entry.flags != 0 {
            return Err(WireError::MsrFlags { position, msr: entry.idx, flags: entry.flags });
        }
        if !limits.carries_msr(entry.idx) {
            return Err(WireError::MsrOutOfRange { position, msr: entry.idx });
        }
        if !msr_fits(entry.idx, entry.val) {
            return Err(WireError::MsrValueTooWide { position, msr: entry.idx, value: entry.val });
        }
    }
    Ok(())
}

/// The sub-leaf that ends leaf 4 (cache type 0) or leaf 0xb (level type 0).
fn is_null_subleaf(leaf: u32, registers: Registers) -> bool {
    if leaf == 0x4 {
        registers.eax & 0x1f == 0
    } else {
        (registers.ecx >> 8) & 0xff == 0
    }
}

/// Whether Xen's 8-bit `hv_limit` can hold this hypervisor leaf exactly.
fn hypervisor_leaf_fits(registers: Registers) -> bool {
    registers.eax <= 0xff && registers.ebx == 0 && registers.ecx == 0 && registers.edx == 0
}

/// Whether Xen stores this MSR value without truncation (PLATFORM_INFO is 32 bits there).
fn msr_fits(index: u32, value: u64) -> bool {
    index != MSR_PLATFORM_INFO || value <= u64::from(u32::MAX)
}

/// The body of a migration stream `X86_CPUID_POLICY` record (0x11): the entries, little-endian.
pub fn cpuid_record_to_bytes(leaves: &[XenCpuidLeaf]) -> Vec<u8> {
    leaves.iter().flat_map(XenCpuidLeaf::to_le_bytes).collect()
}

/// The entries of a migration stream `X86_CPUID_POLICY` record body (0x11), refused as libxc
/// refuses them: empty, or not a whole number of entries.
pub fn cpuid_record_from_bytes(body: &[u8]) -> Result<Vec<XenCpuidLeaf>, RecordError> {
    check_record(REC_TYPE_X86_CPUID_POLICY, body, XenCpuidLeaf::SIZE)?;
    Ok(body
        .chunks_exact(XenCpuidLeaf::SIZE)
        .map(|chunk| {
            let mut bytes = [0; XenCpuidLeaf::SIZE];
            bytes.copy_from_slice(chunk);
            XenCpuidLeaf::from_le_bytes(&bytes)
        })
        .collect())
}

/// The body of a migration stream `X86_MSR_POLICY` record (0x12): the entries, little-endian.
pub fn msr_record_to_bytes(msrs: &[XenMsrEntry]) -> Vec<u8> {
    msrs.iter().flat_map(XenMsrEntry::to_le_bytes).collect()
}

/// The entries of a migration stream `X86_MSR_POLICY` record body (0x12), refused as libxc
/// refuses them: empty, or not a whole number of entries.
pub fn msr_record_from_bytes(body: &[u8]) -> Result<Vec<XenMsrEntry>, RecordError> {
    check_record(REC_TYPE_X86_MSR_POLICY, body, XenMsrEntry::SIZE)?;
    Ok(body
        .chunks_exact(XenMsrEntry::SIZE)
        .map(|chunk| {
            let mut bytes = [0; XenMsrEntry::SIZE];
            bytes.copy_from_slice(chunk);
            XenMsrEntry::from_le_bytes(&bytes)
        })
        .collect())
}

fn check_record(record_type: u32, body: &[u8], entry_size: usize) -> Result<(), RecordError> {
    if body.is_empty() {
        return Err(RecordError::Empty { record_type });
    }
    if !body.len().is_multiple_of(entry_size) {
        return Err(RecordError::BadLength { record_type, length: body.len(), entry_size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XenVersion;

    #[test]
    fn abi_sizes_match_xen() {
        assert_eq!(std::mem::size_of::<XenCpuidLeaf>(), XenCpuidLeaf::SIZE);
        assert_eq!(std::mem::size_of::<XenMsrEntry>(), XenMsrEntry::SIZE);
        assert_eq!(std::mem::align_of::<XenMsrEntry>(), 8);
    }

    #[test]
    fn maxima_match_each_release() {
        assert_eq!((WireLimits::XEN_4_14_0.max_leaves(), WireLimits::XEN_4_14_0.max_msrs()), (114, 1));
        assert_eq!((WireLimits::XEN_4_14_1.max_leaves(), WireLimits::XEN_4_14_1.max_msrs()), (114, 2));
        assert_eq!(WireLimits::XEN_4_16_0.max_leaves(), 119);
        assert_eq!((WireLimits::XEN_4_17.max_leaves(), WireLimits::XEN_4_17.max_msrs()), (120, 2));
        for limits in [WireLimits::XEN_4_14_0, WireLimits::XEN_4_14_1, WireLimits::XEN_4_16_0, WireLimits::XEN_4_17] {
            assert_eq!(WireLimits::from_maxima(limits.max_leaves(), limits.max_msrs()), Some(limits));
        }
        assert_eq!(WireLimits::from_maxima(121, 2), None);
    }

    #[test]
    fn releases_map_to_their_layout() {
        let limits = |v: &str| WireLimits::for_xen(&XenVersion::parse(v).unwrap());
        assert_eq!(limits("4.14.0"), Some(WireLimits::XEN_4_14_0));
        assert_eq!(limits("4.14.4"), Some(WireLimits::XEN_4_14_1));
        assert_eq!(limits("4.14.6"), Some(WireLimits::XEN_4_17));
        assert_eq!(limits("4.15.2"), Some(WireLimits::XEN_4_14_1));
        assert_eq!(limits("4.15.3"), Some(WireLimits::XEN_4_17));
        assert_eq!(limits("4.16.0"), Some(WireLimits::XEN_4_16_0));
        assert_eq!(limits("4.16.1"), Some(WireLimits::XEN_4_17));
        assert_eq!(limits("4.20.3"), Some(WireLimits::XEN_4_17));
        assert_eq!(limits("4.22-unstable"), Some(WireLimits::XEN_4_17));
        assert_eq!(limits("4.13.0"), None);
    }

    /// `from_wire` stores as it checks and `apply_wire` checks before it stores: both report the
    /// same first error, in Xen's order (the leaves' count, each leaf, the MSRs' count, each
    /// MSR), and `apply_wire` leaves the policy untouched.
    #[test]
    fn both_readers_report_the_same_first_error() {
        let limits = WireLimits::XEN_4_17;
        let leaf = |leaf: u32, subleaf: u32| XenCpuidLeaf { leaf, subleaf, a: 1, b: 2, c: 3, d: 4 };
        let none = XEN_CPUID_NO_SUBLEAF;
        let good = vec![leaf(0, none), leaf(7, 0), leaf(0x8000_0000, none)];
        let bad_leaf = vec![leaf(0, none), leaf(1, 0), leaf(0x8000_0000, none)];
        let bad_msr = vec![XenMsrEntry::new(MSR_PLATFORM_INFO, 1 << 40)];
        let flagged = vec![XenMsrEntry { flags: 1, ..XenMsrEntry::new(MSR_PLATFORM_INFO, 1) }];
        let cases: [(Vec<XenCpuidLeaf>, Vec<XenMsrEntry>, Option<WireError>); 6] = [
            (good.clone(), vec![], None),
            (bad_leaf.clone(), bad_msr.clone(), Some(WireError::LeafOutOfRange { position: 1, leaf: 1, subleaf: 0 })),
            (
                good.clone(),
                bad_msr.clone(),
                Some(WireError::MsrValueTooWide { position: 0, msr: MSR_PLATFORM_INFO, value: 1 << 40 }),
            ),
            (good.clone(), flagged, Some(WireError::MsrFlags { position: 0, msr: MSR_PLATFORM_INFO, flags: 1 })),
            (vec![leaf(0, none); 121], bad_msr.clone(), Some(WireError::TooManyLeaves { count: 121, max: 120 })),
            (
                bad_leaf,
                vec![XenMsrEntry::new(MSR_PLATFORM_INFO, 1); 3],
                Some(WireError::LeafOutOfRange { position: 1, leaf: 1, subleaf: 0 }),
            ),
        ];
        for (leaves, msrs, expected) in cases {
            let read = CpuPolicy::from_wire(&leaves, &msrs, &limits);
            let mut merged = CpuPolicy::from_wire(&good, &[], &limits).unwrap();
            let before = merged.clone();
            let applied = merged.apply_wire(&leaves, &msrs, &limits);
            assert_eq!(read.as_ref().err(), expected.as_ref(), "{leaves:?} {msrs:?}");
            assert_eq!(applied.err(), expected, "{leaves:?} {msrs:?}");
            if expected.is_some() {
                assert_eq!(merged, before, "a refused merge changed the policy");
            }
        }
        let too_many_msrs = CpuPolicy::from_wire(&good, &[XenMsrEntry::new(MSR_PLATFORM_INFO, 1); 3], &limits);
        assert_eq!(too_many_msrs, Err(WireError::TooManyMsrs { count: 3, max: 2 }));
    }

    /// `apply_wire` checks four entries a round, then the rest: a refused entry is named at its
    /// own position wherever it falls, and nothing is stored. The edges of each range: the
    /// release's last extended leaf and the one after, the hypervisor leaves, the leaves
    /// between, a sub-leaf where none is carried.
    #[test]
    fn a_refused_entry_is_named_at_its_position_in_any_round() {
        let none = XEN_CPUID_NO_SUBLEAF;
        let entry = |leaf: u32, subleaf: u32| XenCpuidLeaf { leaf, subleaf, a: 9, b: 8, c: 7, d: 6 };
        let limits = WireLimits::XEN_4_14_1; // extended leaves up to 0x8000001c
        let good: Vec<XenCpuidLeaf> = [
            (0, none),
            (4, 5),
            (7, 1),
            (0xd, 62),
            (0x4000_0000, none),
            (0x4000_0100, none),
            (0x8000_0000, none),
            (0x8000_001c, none),
            (1, none),
        ]
        .iter()
        .map(|&(l, s)| entry(l, s))
        .collect();
        // The policy merged onto holds other values at the same leaves, so that a store made
        // before the refusal would show.
        let other: Vec<XenCpuidLeaf> = good.iter().map(|e| XenCpuidLeaf { a: 1, b: 2, c: 3, d: 4, ..*e }).collect();
        let base = CpuPolicy::from_wire(&other, &[], &limits).unwrap();
        let refused = [(0x8000_001d, none), (0x8000_0000, 0), (7, 2), (4, 6), (0x3fff_ffff, none), (0x4000_0001, none)];
        for position in 0..good.len() {
            for &(leaf, subleaf) in &refused {
                let mut leaves = good.clone();
                leaves[position] = entry(leaf, subleaf);
                let mut merged = base.clone();
                assert_eq!(
                    merged.apply_wire(&leaves, &[], &limits),
                    Err(WireError::LeafOutOfRange { position, leaf, subleaf }),
                    "{leaf:#x}/{subleaf:#x} at {position}"
                );
                assert_eq!(merged, base, "{leaf:#x}/{subleaf:#x} at {position}: a refused merge changed the policy");
                assert_eq!(
                    CpuPolicy::from_wire(&leaves, &[], &limits),
                    Err(WireError::LeafOutOfRange { position, leaf, subleaf })
                );
            }
        }
        // Every good entry is stored, whichever round it falls in.
        let mut merged = base.clone();
        merged.apply_wire(&good, &[], &limits).unwrap();
        assert_eq!(merged, CpuPolicy::from_wire(&good, &[], &limits).unwrap());
        for e in &good {
            let key = e.key();
            assert_eq!(merged.cpuid(key), Registers::new(9, 8, 7, 6), "{key}");
        }
    }

    #[test]
    fn entries_round_trip_through_bytes() {
        let leaf = XenCpuidLeaf { leaf: 7, subleaf: 0, a: 2, b: 0xdead_beef, c: 3, d: 4 };
        assert_eq!(XenCpuidLeaf::from_le_bytes(&leaf.to_le_bytes()), leaf);
        assert_eq!(&leaf.to_le_bytes()[8..12], &[2, 0, 0, 0]);
        let msr = XenMsrEntry::new(0x10a, 0x0123_4567_89ab_cdef);
        assert_eq!(XenMsrEntry::from_le_bytes(&msr.to_le_bytes()), msr);
    }
}
