//! What Xen's policy format holds, release by release, and one flat index over it.
//!
//! Xen keeps a policy as a plain struct of arrays indexed by leaf and sub-leaf (`struct
//! cpu_policy` in `cpu-policy.h`, `cpuid.h` before 4.18); its serialisation
//! (`x86_cpuid_copy_to_buffer`, `x86_cpuid_copy_from_buffer`) walks those arrays. The sizes
//! are the same in every release from 4.14 but two ([`WireLimits`]). Here the arrays of the
//! newest release are laid end to end as one index of "slots" ([`slot_of`], [`wire_slot`],
//! [`key_of_slot`]): a model of a policy can keep one fixed array of registers for everything
//! Xen's format carries, and decide what Xen would accept with the same function.

use crate::{CpuidKey, XenVersion, XEN_CPUID_NO_SUBLEAF};

pub use crate::slot_index::SlotIndex;

/// MSR_INTEL_PLATFORM_INFO. Xen's policy only gives bit 31 a meaning: CPUID faulting.
pub const MSR_PLATFORM_INFO: u32 = 0xce;
/// MSR_ARCH_CAPABILITIES: enumerates hardware fixes for speculative side channels; featureset
/// words 16 (`m10Al`) and 17 (`m10Ah`).
pub const MSR_ARCH_CAPABILITIES: u32 = 0x10a;

/// Highest basic leaf Xen's policy holds (`CPUID_GUEST_NR_BASIC` − 1), every release.
pub const XEN_MAX_BASIC_LEAF: u32 = 0xd;
/// Leaf 4 sub-leaves Xen's policy holds (`CPUID_GUEST_NR_CACHE`).
pub const XEN_CACHE_SUBLEAVES: u32 = 6;
/// Leaf 0xb sub-leaves Xen's policy holds (`CPUID_GUEST_NR_TOPO`).
pub const XEN_TOPOLOGY_SUBLEAVES: u32 = 2;
/// Leaf 0xd sub-leaves Xen's policy holds (`CPUID_GUEST_NR_XSTATE`).
pub const XEN_XSTATE_SUBLEAVES: u32 = 63;
/// The hypervisor leaves whose EAX (Xen's `hv_limit`, `hv2_limit`, 8 bits each) Xen carries.
pub const XEN_HYPERVISOR_LEAVES: [u32; 2] = [0x4000_0000, 0x4000_0100];
/// Highest leaf 7 sub-leaf the newest release's policy holds (`CPUID_GUEST_NR_FEAT` − 1).
pub const XEN_MAX_LEAF7_SUBLEAF: u32 = 2;
/// Highest extended leaf the newest release's policy holds (0x80000000 + `CPUID_GUEST_NR_EXTD` − 1).
pub const XEN_MAX_EXTENDED_LEAF: u32 = 0x8000_0021;
/// The MSRs of Xen's policy, in serialisation order (index order); a release carrying one MSR
/// carries the first. Also the MSRs a model of a policy keeps in fixed places ([`msr_slot`]).
pub const XEN_POLICY_MSRS: [u32; 2] = [MSR_PLATFORM_INFO, MSR_ARCH_CAPABILITIES];

/// What one Xen release's policy format holds: the array sizes that decide which leaves are
/// serialised and which incoming leaves are out of range.
///
/// Only two sizes ever changed (from `cpuid.h`/`cpu-policy.h` of every release tag):
///
/// | release                          | leaf 7 sub-leaves | extended leaves | leaves | MSRs |
/// |----------------------------------|-------------------|-----------------|--------|------|
/// | 4.14.0                           | 0–1               | to 0x8000001c   | 114    | 1    |
/// | 4.14.1–4.14.4, 4.15.0–4.15.2     | 0–1               | to 0x8000001c   | 114    | 2    |
/// | 4.16.0                           | 0–1               | to 0x80000021   | 119    | 2    |
/// | 4.14.5+, 4.15.3+, 4.16.1+, 4.17+ | 0–2               | to 0x80000021   | 120    | 2    |
///
/// The leaf count is Xen's `CPUID_MAX_SERIALISED_LEAVES`: 14 basic leaves, plus the extra
/// sub-leaves of leaves 4 (6), 7, 0xb (2) and 0xd (63), plus the extended leaves, plus the two
/// hypervisor leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireLimits {
    max_leaf7_subleaf: u32,
    max_extended_leaf: u32,
    max_msrs: u32,
    /// [`WireLimits::max_leaves`], counted once.
    max_leaves: u32,
    /// How far above 0x80000000 the extended leaves go (`max_extended_leaf - 0x80000000`).
    extended_span: u32,
    /// Per basic leaf, its first slot and how many sub-leaves this format holds (0: a leaf
    /// without sub-leaves), leaf 7's count cut to this release's.
    blocks: [(u8, u8); BASIC_SLOTS],
}

impl WireLimits {
    /// Xen 4.14.0.
    pub const XEN_4_14_0: WireLimits = WireLimits::new(1, 0x8000_001c, 1);
    /// Xen 4.14.1–4.14.4 and 4.15.0–4.15.2.
    pub const XEN_4_14_1: WireLimits = WireLimits::new(1, 0x8000_001c, 2);
    /// Xen 4.16.0.
    pub const XEN_4_16_0: WireLimits = WireLimits::new(1, 0x8000_0021, 2);
    /// Xen 4.17 and later (and the backports 4.14.5+, 4.15.3+, 4.16.1+).
    pub const XEN_4_17: WireLimits = WireLimits::new(XEN_MAX_LEAF7_SUBLEAF, XEN_MAX_EXTENDED_LEAF, 2);
    /// The newest layout this crate knows (4.17 to 4.22).
    pub const LATEST: WireLimits = WireLimits::XEN_4_17;

    const fn new(max_leaf7_subleaf: u32, max_extended_leaf: u32, max_msrs: u32) -> WireLimits {
        assert!(max_leaf7_subleaf <= XEN_MAX_LEAF7_SUBLEAF);
        assert!(max_extended_leaf >= 0x8000_0008 && max_extended_leaf <= XEN_MAX_EXTENDED_LEAF);
        let mut blocks = [(0u8, 0u8); BASIC_SLOTS];
        let mut leaf = 0;
        while leaf < BASIC_SLOTS {
            let (base, count) = subleaf_block(leaf as u32);
            let count = if leaf == 7 { max_leaf7_subleaf as usize + 1 } else { count };
            blocks[leaf] = (base as u8, count as u8);
            leaf += 1;
        }
        let max_leaves = count_leaves(max_leaf7_subleaf, max_extended_leaf);
        let extended_span = max_extended_leaf - 0x8000_0000;
        WireLimits { max_leaf7_subleaf, max_extended_leaf, max_msrs, max_leaves, extended_span, blocks }
    }

    /// The limits of a Xen release (table above); `None` before 4.14. An unreadable point
    /// release is taken as `.0`, the smallest layout of its branch.
    pub fn for_xen(version: &XenVersion) -> Option<WireLimits> {
        let micro = version.micro().unwrap_or(0);
        Some(match (version.major, version.minor) {
            (4, 14) if micro == 0 => WireLimits::XEN_4_14_0,
            (4, 14) if micro <= 4 => WireLimits::XEN_4_14_1,
            (4, 15) if micro <= 2 => WireLimits::XEN_4_14_1,
            (4, 16) if micro == 0 => WireLimits::XEN_4_16_0,
            (4, 14..) | (5.., _) => WireLimits::XEN_4_17,
            _ => return None,
        })
    }

    /// The limits matching the maxima a hypervisor reports (`get_cpu_policy` with a NULL
    /// buffer: 114, 119 or 120 leaves; 1 or 2 MSRs). `None` for any other pair.
    pub fn from_maxima(max_leaves: u32, max_msrs: u32) -> Option<WireLimits> {
        [WireLimits::XEN_4_14_0, WireLimits::XEN_4_14_1, WireLimits::XEN_4_16_0, WireLimits::XEN_4_17]
            .into_iter()
            .find(|l| l.max_leaves() == max_leaves && l.max_msrs == max_msrs)
    }

    /// Xen's `CPUID_MAX_SERIALISED_LEAVES`.
    #[inline]
    pub const fn max_leaves(&self) -> u32 {
        self.max_leaves
    }

    /// Xen's `MSR_MAX_SERIALISED_ENTRIES`.
    #[inline]
    pub const fn max_msrs(&self) -> u32 {
        self.max_msrs
    }

    /// Highest leaf 7 sub-leaf the format holds.
    #[inline]
    pub const fn max_leaf7_subleaf(&self) -> u32 {
        self.max_leaf7_subleaf
    }

    /// Highest extended leaf the format holds.
    #[inline]
    pub const fn max_extended_leaf(&self) -> u32 {
        self.max_extended_leaf
    }

    /// Whether the format holds an entry for this key: what `x86_cpuid_copy_from_buffer`
    /// accepts (a leaf without sub-leaves only as such).
    #[inline]
    pub fn carries(&self, key: CpuidKey) -> bool {
        key_slot(key, self).is_some()
    }

    /// The MSRs the format holds, in order.
    #[inline]
    pub fn msrs(&self) -> &'static [u32] {
        &XEN_POLICY_MSRS[..self.max_msrs as usize]
    }

    /// Whether the format holds this MSR (one of [`WireLimits::msrs`]): its fixed place
    /// ([`msr_slot`]) is among the first `max_msrs`.
    #[inline]
    pub const fn carries_msr(&self, index: u32) -> bool {
        match msr_slot(index) {
            Some(slot) => slot < self.max_msrs as usize,
            None => false,
        }
    }
}

/// Xen's `CPUID_MAX_SERIALISED_LEAVES` for a format with these maxima.
const fn count_leaves(max_leaf7_subleaf: u32, max_extended_leaf: u32) -> u32 {
    let nr_extd = (max_extended_leaf & 0xffff) + 1;
    let nr_extd = if nr_extd < 9 { 9 } else { nr_extd };
    (XEN_MAX_BASIC_LEAF + 1)
        + (max_leaf7_subleaf + 1 - 1)
        + (XEN_CACHE_SUBLEAVES - 1)
        + (XEN_TOPOLOGY_SUBLEAVES - 1)
        + (XEN_XSTATE_SUBLEAVES - 1)
        + nr_extd
        + XEN_HYPERVISOR_LEAVES.len() as u32
}

/// The place of an MSR in [`XEN_POLICY_MSRS`] (which is index order too), or `None`.
#[inline]
pub const fn msr_slot(index: u32) -> Option<usize> {
    match index {
        MSR_PLATFORM_INFO => Some(0),
        MSR_ARCH_CAPABILITIES => Some(1),
        _ => None,
    }
}

// The slot layout, Xen's arrays of the newest release one after the other: basic leaves
// 0..=0xd without sub-leaves at their own number (the plain slots of 4, 7, 0xb and 0xd stay
// unused); then the sub-leaves of 4, 7, 0xb and 0xd; the hypervisor limit leaves; the
// extended leaves.
/// Slots of the basic leaves 0..=0xd.
pub const BASIC_SLOTS: usize = XEN_MAX_BASIC_LEAF as usize + 1;
/// Slots of leaf 4's sub-leaves (`CPUID_GUEST_NR_CACHE`).
pub const LEAF4_SLOTS: usize = XEN_CACHE_SUBLEAVES as usize;
/// Slots of leaf 7's sub-leaves (`CPUID_GUEST_NR_FEAT` of the newest release).
pub const LEAF7_SLOTS: usize = XEN_MAX_LEAF7_SUBLEAF as usize + 1;
/// Slots of leaf 0xB's sub-leaves (`CPUID_GUEST_NR_TOPO`).
pub const LEAFB_SLOTS: usize = XEN_TOPOLOGY_SUBLEAVES as usize;
/// Slots of leaf 0xD's sub-leaves (`CPUID_GUEST_NR_XSTATE`).
pub const LEAFD_SLOTS: usize = XEN_XSTATE_SUBLEAVES as usize;
/// Slots of the extended leaves 0x80000000 up to the newest release's highest.
pub const EXTENDED_SLOTS: usize = (XEN_MAX_EXTENDED_LEAF - 0x8000_0000) as usize + 1;
/// The first slot of leaf 4's sub-leaves.
pub const LEAF4_BASE: usize = BASIC_SLOTS;
/// The first slot of leaf 7's sub-leaves.
pub const LEAF7_BASE: usize = LEAF4_BASE + LEAF4_SLOTS;
/// The first slot of leaf 0xB's sub-leaves.
pub const LEAFB_BASE: usize = LEAF7_BASE + LEAF7_SLOTS;
/// The first slot of leaf 0xD's sub-leaves.
pub const LEAFD_BASE: usize = LEAFB_BASE + LEAFB_SLOTS;
/// The slot of 0x40000000 (0x40000100 follows).
pub const HYPERVISOR_BASE: usize = LEAFD_BASE + LEAFD_SLOTS;
/// The slot of 0x80000000.
pub const EXTENDED_BASE: usize = HYPERVISOR_BASE + XEN_HYPERVISOR_LEAVES.len();
/// Every slot.
pub const SLOTS: usize = EXTENDED_BASE + EXTENDED_SLOTS;

/// The slot of a key, or `None` when the newest release's format cannot carry it.
#[inline]
pub const fn slot_of(key: CpuidKey) -> Option<usize> {
    key_slot(key, &WireLimits::LATEST)
}

/// [`wire_slot`] for a key. Sub-leaf 0xffffffff is a sub-leaf like any other here, which
/// Xen's format cannot tell from "no sub-leaf": it has no slot.
#[inline]
const fn key_slot(key: CpuidKey, limits: &WireLimits) -> Option<usize> {
    match key.subleaf {
        None => wire_slot(key.leaf, XEN_CPUID_NO_SUBLEAF, limits),
        Some(XEN_CPUID_NO_SUBLEAF) => None,
        Some(subleaf) => wire_slot(key.leaf, subleaf, limits),
    }
}

/// The slot of an entry of Xen's format (`leaf`, `subleaf` as Xen writes them, sub-leaf
/// `0xffffffff` for none), or `None` when Xen's policy has no room for it
/// (`x86_cpuid_copy_from_buffer`'s checks) in the format of `limits`: leaf 7 up to its max
/// sub-leaf, extended leaves up to its max extended leaf.
#[inline]
pub const fn wire_slot(leaf: u32, subleaf: u32, limits: &WireLimits) -> Option<usize> {
    const NONE: u32 = XEN_CPUID_NO_SUBLEAF;
    if leaf <= XEN_MAX_BASIC_LEAF {
        let (base, count) = limits.blocks[leaf as usize];
        let (base, count) = (base as usize, count as u32);
        if count == 0 {
            if subleaf == NONE {
                Some(leaf as usize)
            } else {
                None
            }
        } else if subleaf < count {
            Some(base + subleaf as usize)
        } else {
            None
        }
    } else if leaf.wrapping_sub(0x8000_0000) <= limits.extended_span {
        // One compare for "extended and within the max" (below 0x80000000 wraps high); `new`
        // keeps the max within the slots.
        if subleaf == NONE {
            Some(EXTENDED_BASE + (leaf - 0x8000_0000) as usize)
        } else {
            None
        }
    } else if subleaf == NONE && leaf == 0x4000_0000 {
        Some(HYPERVISOR_BASE)
    } else if subleaf == NONE && leaf == 0x4000_0100 {
        Some(HYPERVISOR_BASE + 1)
    } else {
        None
    }
}

// Slot numbers fit the table's bytes.
const _: () = assert!(SLOTS <= 256);

/// The run of slots holding the sub-leaves of `leaf`: `(base, count)`, `count` 0 for a leaf
/// without.
#[inline]
pub const fn subleaf_block(leaf: u32) -> (usize, usize) {
    match leaf {
        0x4 => (LEAF4_BASE, LEAF4_SLOTS),
        0x7 => (LEAF7_BASE, LEAF7_SLOTS),
        0xb => (LEAFB_BASE, LEAFB_SLOTS),
        0xd => (LEAFD_BASE, LEAFD_SLOTS),
        _ => (0, 0),
    }
}

/// The key each slot holds (the inverse of [`slot_of`]).
#[inline]
pub const fn key_of_slot(slot: usize) -> CpuidKey {
    if slot < LEAF4_BASE {
        CpuidKey::plain(slot as u32)
    } else if slot < LEAF7_BASE {
        CpuidKey::indexed(4, (slot - LEAF4_BASE) as u32)
    } else if slot < LEAFB_BASE {
        CpuidKey::indexed(7, (slot - LEAF7_BASE) as u32)
    } else if slot < LEAFD_BASE {
        CpuidKey::indexed(0xb, (slot - LEAFB_BASE) as u32)
    } else if slot < HYPERVISOR_BASE {
        CpuidKey::indexed(0xd, (slot - LEAFD_BASE) as u32)
    } else if slot == HYPERVISOR_BASE {
        CpuidKey::plain(0x4000_0000)
    } else if slot == HYPERVISOR_BASE + 1 {
        CpuidKey::plain(0x4000_0100)
    } else {
        CpuidKey::plain(0x8000_0000 + (slot - EXTENDED_BASE) as u32)
    }
}

/// The slots in key order (slot order is key order but for the unused plain slots of the
/// sub-leaf leaves, which stay zero and are skipped as such).
pub const SLOT_ORDER: [usize; SLOTS] = {
    let mut order = [0; SLOTS];
    let mut i = 0;
    // Basic leaves interleave with their sub-leaves: 0..=3, 4:*, 5, 6, 7:*, 8..=0xa, 0xb:*, 0xc, 0xd:*.
    let mut leaf = 0;
    while leaf < BASIC_SLOTS {
        let (base, count) = match leaf {
            0x4 => (LEAF4_BASE, LEAF4_SLOTS),
            0x7 => (LEAF7_BASE, LEAF7_SLOTS),
            0xb => (LEAFB_BASE, LEAFB_SLOTS),
            0xd => (LEAFD_BASE, LEAFD_SLOTS),
            _ => (leaf, 1),
        };
        let mut j = 0;
        while j < count {
            order[i] = base + j;
            i += 1;
            j += 1;
        }
        leaf += 1;
    }
    // The unused plain slots of 4, 7, 0xb and 0xd (always zero) keep the array full.
    order[i] = 0x4;
    order[i + 1] = 0x7;
    order[i + 2] = 0xb;
    order[i + 3] = 0xd;
    i += 4;
    let mut slot = HYPERVISOR_BASE;
    while slot < SLOTS {
        order[i] = slot;
        i += 1;
        slot += 1;
    }
    order
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every used slot round-trips through its key, the four unused plain slots hold no key,
    /// and [`SLOT_ORDER`] lists every slot once, the used ones in key order.
    #[test]
    fn slots_and_keys_are_inverse_and_ordered() {
        let unused = [0x4, 0x7, 0xb, 0xd];
        for slot in 0..SLOTS {
            let key = key_of_slot(slot);
            if unused.contains(&slot) {
                assert_eq!(slot_of(key), None, "{slot}");
            } else {
                assert_eq!(slot_of(key), Some(slot), "{slot} {key}");
            }
        }
        let mut seen = [false; SLOTS];
        SLOT_ORDER.iter().for_each(|&slot| seen[slot] = true);
        assert!(seen.iter().all(|&s| s));
        let used: Vec<CpuidKey> =
            SLOT_ORDER.iter().filter(|slot| !unused.contains(slot)).map(|&slot| key_of_slot(slot)).collect();
        assert!(used.windows(2).all(|w| w[0] < w[1]));
        // Xen's arrays of the newest release: 14 basic, 6 cache, 3 feature, 2 topology,
        // 63 xstate, 2 hypervisor, 0x22 extended leaves.
        assert_eq!(SLOTS, 14 + 6 + 3 + 2 + 63 + 2 + 0x22);
        assert_eq!(slot_of(CpuidKey::indexed(1, XEN_CPUID_NO_SUBLEAF)), None);
        assert!(!WireLimits::LATEST.carries(CpuidKey::indexed(1, XEN_CPUID_NO_SUBLEAF)));
    }

    /// `carries_msr` is membership in `msrs()`, in every format.
    #[test]
    fn carried_msrs_are_the_listed_ones() {
        for limits in [WireLimits::XEN_4_14_0, WireLimits::XEN_4_14_1, WireLimits::XEN_4_16_0, WireLimits::XEN_4_17] {
            for index in [0, 0xce, 0xcf, 0x10a, 0x10b, 0xc000_0080, u32::MAX] {
                assert_eq!(limits.carries_msr(index), limits.msrs().contains(&index), "{index:#x}");
            }
        }
    }
}
