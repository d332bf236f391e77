//! `CpuPolicy`: every CPUID leaf and MSR of one policy, with typed views of the fields
//! toolstacks reason about and the featureset view.

use std::fmt;

use cpupolicy_featureset::{FeatureId, Featureset, Register, WordSource, NR_WORDS, WORDS};

use crate::Vendor;

pub use cpupolicy_abi::{CpuidKey, Registers};

pub(crate) use cpupolicy_abi::layout::wire_slot;
use cpupolicy_abi::layout::{
    key_of_slot, msr_slot, slot_of, subleaf_block, SlotIndex, BASIC_SLOTS, EXTENDED_BASE, EXTENDED_SLOTS, LEAF4_BASE,
    LEAF4_SLOTS, LEAF7_BASE, LEAF7_SLOTS, LEAFB_BASE, LEAFB_SLOTS, LEAFD_BASE, LEAFD_SLOTS, SLOTS, SLOT_ORDER,
};
use cpupolicy_abi::{XenCpuidLeaf, XEN_POLICY_MSRS};
pub use cpupolicy_abi::{MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO};

/// Bit 31 of [`MSR_PLATFORM_INFO`]: CPUID faulting is available.
pub const PLATFORM_INFO_CPUID_FAULTING: u64 = 1 << 31;

/// The register names in CPUID output order, for messages and text formats.
pub(crate) const REGISTER_NAMES: [(Register, &str); 4] =
    [(Register::Eax, "eax"), (Register::Ebx, "ebx"), (Register::Ecx, "ecx"), (Register::Edx, "edx")];

/// The leaves a policy's own limits leave in range (Xen's
/// `x86_cpu_policy_clear_out_of_range_leaves`); see
/// [`clear_out_of_range_leaves`](crate::clear_out_of_range_leaves).
#[derive(Clone, Copy, Debug)]
pub(crate) struct InRange {
    /// The max basic leaf.
    pub basic: u32,
    /// The max extended leaf (its low 16 bits count).
    pub extended: u32,
    /// Leaf 7's max sub-leaf.
    pub leaf7: u32,
    /// The first leaf 4 sub-leaf of type 0, if any: later ones go.
    pub cache_end: Option<u32>,
    /// The first leaf 0xB sub-leaf of type 0, if any: later ones go.
    pub topology_end: Option<u32>,
    /// The highest valid leaf 0xD sub-leaf; `None`: all of 0xD goes.
    pub xstate_end: Option<u32>,
}

impl InRange {
    /// Whether `key` stays.
    pub(crate) fn keeps(&self, key: CpuidKey) -> bool {
        let sub = key.subleaf.unwrap_or(0);
        match key.leaf {
            0..=0x3fff_ffff if key.leaf > self.basic => false,
            4 => self.cache_end.is_none_or(|end| key.subleaf.is_none_or(|s| s <= end)),
            7 => sub <= self.leaf7,
            0xb => self.topology_end.is_none_or(|end| key.subleaf.is_none_or(|s| s <= end)),
            0xd => self.xstate_end.is_some_and(|end| sub <= end),
            0x8000_0000..=0x8fff_ffff => key.leaf - 0x8000_0000 <= (self.extended & 0xffff),
            _ => true,
        }
    }
}

/// One CPU policy: CPUID leaves and MSR values, as a CPU reports them or as Xen offers them to
/// a guest.
///
/// Any leaf, sub-leaf and MSR can be held, including those Xen's own policy has no room for
/// (leaf 0x1f, 0x40000000 of another hypervisor, 0x80000026, …): formats that cannot carry an
/// entry report it rather than lose it silently.
///
/// An all-zero leaf and a zero MSR are not stored: CPUID reads zeros for a leaf that says
/// nothing, and `xen-cpuid` omits such leaves too, so "absent" and "zero" are one state and two
/// policies that behave alike compare equal.
///
/// Stored as Xen stores a policy: one fixed array of registers indexed by leaf and sub-leaf for
/// what Xen's format carries (basic leaves 0–0xd, the sub-leaves of 4, 7, 0xb and 0xd, the two
/// hypervisor limit leaves, extended leaves 0x80000000–0x80000021), so reading or writing one
/// is an index and a load or store, and the featureset words are read in place; the few leaves
/// beyond (native dumps have them) live in a small sorted side table.
#[derive(PartialEq, Eq, Hash)]
pub struct CpuPolicy {
    /// The leaves Xen's format carries, by [`slot_of`], as `[eax, ebx, ecx, edx]`; zero where
    /// absent.
    slots: [[u32; 4]; SLOTS],
    /// Every other leaf: sorted by key, no duplicates, no all-zero entries.
    side: Vec<(CpuidKey, Registers)>,
    /// The MSRs Xen's policy holds, by [`msr_slot`]; zero where absent.
    msr_slots: [u64; 2],
    /// Every other MSR: sorted by index, no duplicates, no zero values.
    msr_side: Vec<(u32, u64)>,
}

/// Whether a slot's registers are all zero (one OR, not four compares).
#[inline]
const fn is_zero4(r: [u32; 4]) -> bool {
    r[0] | r[1] | r[2] | r[3] == 0
}

/// [`WORD_REGISTERS`]' slot for a word held in an MSR.
const MSR_WORD: u16 = u16::MAX;

/// Where each featureset word lives: its slot and register index (0 EAX … 3 EDX), or
/// [`MSR_WORD`] for the two halves of MSR_ARCH_CAPABILITIES ([`ARCH_CAPS_WORDS`]).
const WORD_REGISTERS: [(u16, u8); NR_WORDS] = {
    let mut places = [(0, 0); NR_WORDS];
    let mut i = 0;
    while i < NR_WORDS {
        places[i] = match WORDS[i].source {
            WordSource::Cpuid { leaf, subleaf, register } => match slot_of(CpuidKey::new(leaf, subleaf)) {
                Some(slot) => (
                    slot as u16,
                    match register {
                        Register::Eax => 0,
                        Register::Ebx => 1,
                        Register::Ecx => 2,
                        Register::Edx => 3,
                    },
                ),
                None => panic!("a featureset word outside the slots"),
            },
            WordSource::Msr { index, .. } => {
                assert!(index == MSR_ARCH_CAPABILITIES, "featureset words live in ARCH_CAPS only");
                (MSR_WORD, 0)
            }
        };
        i += 1;
    }
    places
};

/// Runs `$each!(w)` for every featureset word `w`, as literals, so that each word's place
/// ([`WORD_REGISTERS`]) is a constant where it is used.
macro_rules! each_word {
    ($each:ident) => {
        const _: () = assert!(NR_WORDS == 19, "each_word! lists every featureset word");
        $each!(0);
        $each!(1);
        $each!(2);
        $each!(3);
        $each!(4);
        $each!(5);
        $each!(6);
        $each!(7);
        $each!(8);
        $each!(9);
        $each!(10);
        $each!(11);
        $each!(12);
        $each!(13);
        $each!(14);
        $each!(15);
        $each!(16);
        $each!(17);
        $each!(18);
    };
}

/// The featureset words holding MSR_ARCH_CAPABILITIES' low and high halves.
const ARCH_CAPS_WORDS: [usize; 2] = {
    let mut found = [usize::MAX; 2];
    let mut i = 0;
    while i < NR_WORDS {
        if let WordSource::Msr { high, .. } = WORDS[i].source {
            found[high as usize] = i;
        }
        i += 1;
    }
    assert!(found[0] != usize::MAX && found[1] != usize::MAX, "both halves of ARCH_CAPS are words");
    found
};

impl Clone for CpuPolicy {
    fn clone(&self) -> CpuPolicy {
        CpuPolicy {
            slots: self.slots,
            side: self.side.clone(),
            msr_slots: self.msr_slots,
            msr_side: self.msr_side.clone(),
        }
    }

    /// In place: one copy of the registers, and the side tables' allocations reused.
    fn clone_from(&mut self, source: &CpuPolicy) {
        self.slots = source.slots;
        self.side.clone_from(&source.side);
        self.msr_slots = source.msr_slots;
        self.msr_side.clone_from(&source.msr_side);
    }
}

impl Default for CpuPolicy {
    fn default() -> CpuPolicy {
        CpuPolicy::new()
    }
}

/// The (non-zero) leaves of a policy in key order: the slots merged with the side table.
#[derive(Clone)]
pub struct CpuidEntries<'a> {
    policy: &'a CpuPolicy,
    /// Next position in [`SLOT_ORDER`].
    slot: usize,
    /// Next position in the side table.
    side: usize,
    remaining: usize,
}

impl Iterator for CpuidEntries<'_> {
    type Item = (CpuidKey, Registers);

    fn next(&mut self) -> Option<(CpuidKey, Registers)> {
        // The next non-zero slot.
        while self.slot < SLOTS && is_zero4(self.policy.slots[SLOT_ORDER[self.slot]]) {
            self.slot += 1;
        }
        let from_slot = (self.slot < SLOTS).then(|| key_of_slot(SLOT_ORDER[self.slot]));
        let from_side = self.policy.side.get(self.side).copied();
        let item = match (from_slot, from_side) {
            (Some(key), Some((side_key, _))) if key < side_key => {
                self.slot += 1;
                (key, Registers::from_array(self.policy.slots[SLOT_ORDER[self.slot - 1]]))
            }
            (_, Some(entry)) => {
                self.side += 1;
                entry
            }
            (Some(key), None) => {
                self.slot += 1;
                (key, Registers::from_array(self.policy.slots[SLOT_ORDER[self.slot - 1]]))
            }
            (None, None) => return None,
        };
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for CpuidEntries<'_> {}

/// The (non-zero) MSRs of a policy by index: the fixed ones merged with the side table.
struct MsrEntries<'a> {
    policy: &'a CpuPolicy,
    fixed: usize,
    side: usize,
    remaining: usize,
}

impl Iterator for MsrEntries<'_> {
    type Item = (u32, u64);

    fn next(&mut self) -> Option<(u32, u64)> {
        while self.fixed < XEN_POLICY_MSRS.len() && self.policy.msr_slots[self.fixed] == 0 {
            self.fixed += 1;
        }
        let fixed = (self.fixed < XEN_POLICY_MSRS.len())
            .then(|| (XEN_POLICY_MSRS[self.fixed], self.policy.msr_slots[self.fixed]));
        let side = self.policy.msr_side.get(self.side).copied();
        let item = match (fixed, side) {
            (Some(f), Some(s)) if f.0 < s.0 => {
                self.fixed += 1;
                f
            }
            (_, Some(s)) => {
                self.side += 1;
                s
            }
            (Some(f), None) => {
                self.fixed += 1;
                f
            }
            (None, None) => return None,
        };
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for MsrEntries<'_> {}

impl CpuPolicy {
    /// The empty policy: no leaves, no MSRs.
    pub const fn new() -> CpuPolicy {
        CpuPolicy { slots: [[0; 4]; SLOTS], side: Vec::new(), msr_slots: [0; 2], msr_side: Vec::new() }
    }

    /// The registers of a leaf (zero when the policy holds nothing for it).
    #[inline(always)]
    pub fn cpuid(&self, key: CpuidKey) -> Registers {
        match slot_of(key) {
            Some(slot) => Registers::from_array(self.slots[slot]),
            None => self.side_cpuid(key),
        }
    }

    /// [`CpuPolicy::cpuid`] of a key without a slot: a search of the side table, kept out of
    /// line so the slot read inlines (and folds, for a constant key) wherever it is used.
    #[inline(never)]
    fn side_cpuid(&self, key: CpuidKey) -> Registers {
        match self.side.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.side[i].1,
            Err(_) => Registers::ZERO,
        }
    }

    /// Leaf `leaf` without sub-leaf.
    #[inline(always)]
    pub fn leaf(&self, leaf: u32) -> Registers {
        self.cpuid(CpuidKey::plain(leaf))
    }

    /// Sub-leaf `subleaf` of `leaf`.
    #[inline(always)]
    pub fn subleaf(&self, leaf: u32, subleaf: u32) -> Registers {
        self.cpuid(CpuidKey::indexed(leaf, subleaf))
    }

    /// Whether the policy holds a (non-zero) entry for this key.
    pub fn contains(&self, key: CpuidKey) -> bool {
        !self.cpuid(key).is_zero()
    }

    /// Sets a leaf; all-zero registers remove it.
    #[inline(always)]
    pub fn set_cpuid(&mut self, key: CpuidKey, registers: Registers) {
        match slot_of(key) {
            Some(slot) => self.set_slot(slot, registers.to_array()),
            None => self.set_side_cpuid(key, registers),
        }
    }

    /// [`CpuPolicy::set_cpuid`] of a key without a slot, out of line (see
    /// [`CpuPolicy::cpuid`]).
    #[inline(never)]
    fn set_side_cpuid(&mut self, key: CpuidKey, registers: Registers) {
        match self.side.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) if registers.is_zero() => {
                self.side.remove(i);
            }
            Ok(i) => self.side[i].1 = registers,
            Err(_) if registers.is_zero() => {}
            Err(i) => self.side.insert(i, (key, registers)),
        }
    }

    /// Removes a leaf, returning what it held.
    pub fn remove_cpuid(&mut self, key: CpuidKey) -> Registers {
        let removed = self.cpuid(key);
        self.set_cpuid(key, Registers::ZERO);
        removed
    }

    /// Keeps only the leaves for which `keep` is true, in one pass: time linear in the number of
    /// leaves, however many go (removing them one at a time would be quadratic).
    pub fn retain_cpuid(&mut self, mut keep: impl FnMut(CpuidKey, Registers) -> bool) {
        for slot in 0..SLOTS {
            let registers = self.slots[slot];
            if !is_zero4(registers) && !keep(key_of_slot(slot), Registers::from_array(registers)) {
                self.slots[slot] = [0; 4];
            }
        }
        self.side.retain(|&(key, registers)| keep(key, registers));
    }

    /// Removes every entry of `leaf`: the leaf and all its sub-leaves.
    pub fn remove_leaf(&mut self, leaf: u32) {
        let (base, count) = subleaf_block(leaf);
        self.slots[base..base + count].fill([0; 4]);
        if let Some(slot) = slot_of(CpuidKey::plain(leaf)) {
            self.slots[slot] = [0; 4];
        }
        if self.side.is_empty() {
            return;
        }
        let start = self.side.partition_point(|(k, _)| k.leaf < leaf);
        let end = start + self.side[start..].partition_point(|(k, _)| k.leaf == leaf);
        self.side.drain(start..end);
    }

    /// Keeps, of the sub-leaves of `leaf`, only those below 64 whose bit is set in `keep`
    /// (the plain leaf stays): [`CpuPolicy::retain_cpuid`] with that rule on that leaf, one store per
    /// sub-leaf cleared.
    pub(crate) fn retain_subleaves_in(&mut self, leaf: u32, keep: u64) {
        let (base, count) = subleaf_block(leaf);
        let in_block = if count >= 64 { u64::MAX } else { (1u64 << count) - 1 };
        let mut clear = !keep & in_block;
        while clear != 0 {
            let subleaf = clear.trailing_zeros() as usize;
            clear &= clear - 1;
            self.slots[base + subleaf] = [0; 4];
        }
        let kept = |key: CpuidKey| key.subleaf.is_none_or(|s| s < 64 && keep & (1 << s) != 0);
        if self.side.iter().any(|(key, _)| key.leaf == leaf && !kept(*key)) {
            self.side.retain(|(key, _)| key.leaf != leaf || kept(*key));
        }
    }

    /// The first held entry of `leaf`, in [`CpuPolicy::leaf_entries`] order, whose registers
    /// satisfy `matches`.
    pub(crate) fn first_entry_where(&self, leaf: u32, mut matches: impl FnMut(Registers) -> bool) -> Option<CpuidKey> {
        let (base, count) = subleaf_block(leaf);
        if self.side.is_empty() && slot_of(CpuidKey::plain(leaf)).is_none() {
            // The usual case for a leaf with sub-leaves: its slots are all there is.
            let found =
                self.slots[base..base + count].iter().position(|r| !is_zero4(*r) && matches(Registers::from_array(*r)));
            return found.map(|subleaf| CpuidKey::indexed(leaf, subleaf as u32));
        }
        let start = self.side.partition_point(|(k, _)| k.leaf < leaf);
        let side = self.side[start..].iter().take_while(|(k, _)| k.leaf == leaf);
        let mut side = side.peekable();
        if let Some((key, registers)) = side.next_if(|(k, _)| k.subleaf.is_none()) {
            if matches(*registers) {
                return Some(*key);
            }
        }
        if let Some(slot) = slot_of(CpuidKey::plain(leaf)) {
            let registers = self.slots[slot];
            if !is_zero4(registers) && matches(Registers::from_array(registers)) {
                return Some(CpuidKey::plain(leaf));
            }
        }
        for (subleaf, registers) in self.slots[base..base + count].iter().enumerate() {
            if !is_zero4(*registers) && matches(Registers::from_array(*registers)) {
                return Some(CpuidKey::indexed(leaf, subleaf as u32));
            }
        }
        side.find(|(_, registers)| matches(*registers)).map(|(key, _)| *key)
    }

    /// Keeps only the leaves `range` keeps: [`InRange::keeps`], applied to whole runs of slots at
    /// once (what [`clear_out_of_range_leaves`](crate::clear_out_of_range_leaves) needs on every
    /// levelled policy), then to the side table entry by entry.
    pub(crate) fn retain_in_range(&mut self, range: &InRange) {
        let basic = range.basic as usize;
        self.slots[(basic + 1).min(BASIC_SLOTS)..BASIC_SLOTS].fill([0; 4]);
        let blocks = [
            (0x4, LEAF4_BASE, LEAF4_SLOTS, range.cache_end),
            (0x7, LEAF7_BASE, LEAF7_SLOTS, Some(range.leaf7)),
            (0xb, LEAFB_BASE, LEAFB_SLOTS, range.topology_end),
            (0xd, LEAFD_BASE, LEAFD_SLOTS, Some(range.xstate_end.unwrap_or(u32::MAX))),
        ];
        for (leaf, base, count, end) in blocks {
            let kept = if leaf > basic || (leaf == 0xd && range.xstate_end.is_none()) {
                0
            } else {
                end.map_or(count, |end| (end as usize).saturating_add(1).min(count))
            };
            self.slots[base + kept..base + count].fill([0; 4]);
        }
        let extended = ((range.extended & 0xffff) as usize).saturating_add(1).min(EXTENDED_SLOTS);
        self.slots[EXTENDED_BASE + extended..SLOTS].fill([0; 4]);
        self.side.retain(|&(key, _)| range.keeps(key));
    }

    /// Sets one register of a leaf.
    #[inline]
    pub fn set_register(&mut self, key: CpuidKey, register: Register, value: u32) {
        let mut registers = self.cpuid(key);
        registers.set(register, value);
        self.set_cpuid(key, registers);
    }

    /// The held (non-zero) entries of one leaf, in key order: the leaf without sub-leaf first,
    /// then its sub-leaves.
    pub fn leaf_entries(&self, leaf: u32) -> impl Iterator<Item = (CpuidKey, Registers)> + '_ {
        let (base, count) = subleaf_block(leaf);
        let side_start = self.side.partition_point(|(k, _)| k.leaf < leaf);
        let side = self.side[side_start..].iter().copied().take_while(move |(k, _)| k.leaf == leaf);
        let in_slots = (base..base + count)
            .filter(|&slot| !is_zero4(self.slots[slot]))
            .map(|slot| (key_of_slot(slot), Registers::from_array(self.slots[slot])));
        let plain_slot = slot_of(CpuidKey::plain(leaf))
            .filter(|&slot| !is_zero4(self.slots[slot]))
            .map(|slot| (CpuidKey::plain(leaf), Registers::from_array(self.slots[slot])));
        // Slot entries of a sub-leaf leaf come after its plain form (in the side table) and
        // before its sub-leaves beyond the slots (also in the side table).
        let mut side = side.peekable();
        let plain_side = side.next_if(|(k, _)| k.subleaf.is_none());
        plain_side.into_iter().chain(plain_slot).chain(in_slots).chain(side)
    }

    /// Every (non-zero) leaf, in key order.
    pub fn cpuid_entries(&self) -> CpuidEntries<'_> {
        CpuidEntries { policy: self, slot: 0, side: 0, remaining: self.cpuid_len() }
    }

    /// Number of (non-zero) leaves held.
    pub fn cpuid_len(&self) -> usize {
        self.slots.iter().filter(|r| !is_zero4(**r)).count() + self.side.len()
    }

    /// An MSR's value (zero when the policy holds none).
    #[inline]
    pub fn msr(&self, index: u32) -> u64 {
        match msr_slot(index) {
            Some(slot) => self.msr_slots[slot],
            None => match self.msr_side.binary_search_by(|(i, _)| i.cmp(&index)) {
                Ok(i) => self.msr_side[i].1,
                Err(_) => 0,
            },
        }
    }

    /// Sets an MSR; zero removes it.
    #[inline]
    pub fn set_msr(&mut self, index: u32, value: u64) {
        if let Some(slot) = msr_slot(index) {
            self.msr_slots[slot] = value;
            return;
        }
        match self.msr_side.binary_search_by(|(i, _)| i.cmp(&index)) {
            Ok(i) if value == 0 => {
                self.msr_side.remove(i);
            }
            Ok(i) => self.msr_side[i].1 = value,
            Err(_) if value == 0 => {}
            Err(i) => self.msr_side.insert(i, (index, value)),
        }
    }

    /// Every (non-zero) MSR, by index.
    pub fn msrs(&self) -> impl ExactSizeIterator<Item = (u32, u64)> + '_ {
        let remaining = self.msr_slots.iter().filter(|v| **v != 0).count() + self.msr_side.len();
        MsrEntries { policy: self, fixed: 0, side: 0, remaining }
    }

    /// No leaves and no MSRs.
    pub fn is_empty(&self) -> bool {
        self.cpuid_len() == 0 && self.msr_slots == [0; 2] && self.msr_side.is_empty()
    }

    // Typed views (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E; Xen's `cpu-policy.h`).

    /// The vendor, from leaf 0's EBX, EDX, ECX.
    pub fn vendor(&self) -> Vendor {
        let leaf0 = self.leaf(0);
        Vendor::from_leaf0(leaf0.ebx, leaf0.ecx, leaf0.edx)
    }

    /// Leaf 1 EAX: the processor signature (stepping, model, family and their extensions).
    #[inline]
    pub fn signature(&self) -> u32 {
        self.leaf(1).eax
    }

    /// The display family: base family, plus the extended family when the base is 0xf
    /// (Xen's `x86_cpuid_family`).
    #[inline]
    pub fn family(&self) -> u32 {
        let raw = self.signature();
        let base = (raw >> 8) & 0xf;
        if base == 0xf {
            base + ((raw >> 20) & 0xff)
        } else {
            base
        }
    }

    /// The display model: base model, with the extended model above it from family 6 on
    /// (Xen's `x86_cpuid_model`).
    #[inline]
    pub fn model(&self) -> u32 {
        let raw = self.signature();
        let model = (raw >> 4) & 0xf;
        if self.family() >= 6 {
            model | ((raw >> 12) & 0xf0)
        } else {
            model
        }
    }

    /// The stepping (leaf 1 `EAX[3:0]`).
    #[inline]
    pub fn stepping(&self) -> u32 {
        self.signature() & 0xf
    }

    /// The highest basic leaf (leaf 0 EAX).
    #[inline]
    pub fn max_basic_leaf(&self) -> u32 {
        self.leaf(0).eax
    }

    /// Sets the highest basic leaf (leaf 0 EAX).
    #[inline]
    pub fn set_max_basic_leaf(&mut self, leaf: u32) {
        self.set_register(CpuidKey::plain(0), Register::Eax, leaf);
    }

    /// The highest extended leaf (leaf 0x80000000 EAX, e.g. `0x80000021`).
    #[inline]
    pub fn max_extended_leaf(&self) -> u32 {
        self.leaf(0x8000_0000).eax
    }

    /// Sets the highest extended leaf (leaf 0x80000000 EAX).
    #[inline]
    pub fn set_max_extended_leaf(&mut self, leaf: u32) {
        self.set_register(CpuidKey::plain(0x8000_0000), Register::Eax, leaf);
    }

    /// The highest sub-leaf of leaf 7 (leaf 7:0 EAX).
    #[inline]
    pub fn leaf7_max_subleaf(&self) -> u32 {
        self.subleaf(7, 0).eax
    }

    /// Sets the highest sub-leaf of leaf 7 (leaf 7:0 EAX).
    #[inline]
    pub fn set_leaf7_max_subleaf(&mut self, subleaf: u32) {
        self.set_register(CpuidKey::indexed(7, 0), Register::Eax, subleaf);
    }

    /// Physical address bits (leaf 0x80000008 `EAX[7:0]`). A number, levelled by minimum.
    #[inline]
    pub fn max_phys_addr_bits(&self) -> u8 {
        self.leaf(0x8000_0008).eax as u8
    }

    /// Sets the physical address bits (leaf 0x80000008 `EAX[7:0]`).
    #[inline]
    pub fn set_max_phys_addr_bits(&mut self, bits: u8) {
        let eax = self.leaf(0x8000_0008).eax;
        self.set_register(CpuidKey::plain(0x8000_0008), Register::Eax, (eax & !0xff) | u32::from(bits));
    }

    /// Linear address bits (leaf 0x80000008 `EAX[15:8]`).
    #[inline]
    pub fn max_lin_addr_bits(&self) -> u8 {
        (self.leaf(0x8000_0008).eax >> 8) as u8
    }

    /// Sets the linear address bits (leaf 0x80000008 `EAX[15:8]`).
    #[inline]
    pub fn set_max_lin_addr_bits(&mut self, bits: u8) {
        let eax = self.leaf(0x8000_0008).eax;
        self.set_register(CpuidKey::plain(0x8000_0008), Register::Eax, (eax & !0xff00) | (u32::from(bits) << 8));
    }

    /// The xstate components the policy enumerates: XCR0-managed (leaf 0xd:0 EDX:EAX) and
    /// XSS-managed (leaf 0xd:1 EDX:ECX) together, as Xen's `cpu_policy_xstates`.
    pub fn xstates(&self) -> u64 {
        let (sub0, sub1) = (self.subleaf(0xd, 0), self.subleaf(0xd, 1));
        (u64::from(sub0.edx | sub1.edx) << 32) | u64::from(sub0.eax | sub1.ecx)
    }

    /// CPUID faulting (MSR 0xce PLATFORM_INFO bit 31).
    pub fn cpuid_faulting(&self) -> bool {
        self.msr(MSR_PLATFORM_INFO) & PLATFORM_INFO_CPUID_FAULTING != 0
    }

    /// Sets or clears CPUID faulting (MSR 0xce bit 31), leaving the other bits alone.
    pub fn set_cpuid_faulting(&mut self, available: bool) {
        let value = self.msr(MSR_PLATFORM_INFO) & !PLATFORM_INFO_CPUID_FAULTING;
        let bit = if available { PLATFORM_INFO_CPUID_FAULTING } else { 0 };
        self.set_msr(MSR_PLATFORM_INFO, value | bit);
    }

    /// MSR_ARCH_CAPABILITIES (0x10a).
    pub fn arch_capabilities(&self) -> u64 {
        self.msr(MSR_ARCH_CAPABILITIES)
    }

    /// The hypervisor leaf limits Xen's policy carries: EAX of leaf 0x40000000 and of
    /// 0x40000100. In a Xen policy they are the toolstack's limit on Xen's (and, with Viridian,
    /// the second block's) leaves, an offset of at most 8 bits, 0 meaning Xen's default; in a
    /// dump taken under another hypervisor, leaf 0x40000000 is that hypervisor's own.
    pub fn hypervisor_limits(&self) -> [u32; 2] {
        [self.leaf(0x4000_0000).eax, self.leaf(0x4000_0100).eax]
    }

    // The featureset view.

    /// The featureset words: the registers and MSR halves each word mirrors ([`WORDS`]), read
    /// in place: no allocation, no look-up.
    #[inline]
    pub fn feature_words(&self) -> [u32; NR_WORDS] {
        let mut words = [0; NR_WORDS];
        for (word, &(slot, register)) in words.iter_mut().zip(&WORD_REGISTERS) {
            if slot != MSR_WORD {
                *word = self.slots[usize::from(slot)][usize::from(register)];
            }
        }
        let arch_caps = self.msr(MSR_ARCH_CAPABILITIES);
        words[ARCH_CAPS_WORDS[0]] = arch_caps as u32;
        words[ARCH_CAPS_WORDS[1]] = (arch_caps >> 32) as u32;
        words
    }

    /// Whether any featureset word has a bit set in `self`, clear in `other` and set in `mask`
    /// (`self & !other & mask`): read in place, word by word at fixed places, nothing built.
    #[inline(always)]
    pub(crate) fn any_beyond(&self, other: &CpuPolicy, mask: &[u32; NR_WORDS]) -> bool {
        let mut any = 0;
        macro_rules! beyond {
            ($w:literal) => {
                if WORD_REGISTERS[$w].0 != MSR_WORD {
                    let (slot, register) = (WORD_REGISTERS[$w].0 as usize, WORD_REGISTERS[$w].1 as usize);
                    any |= self.slots[slot][register] & !other.slots[slot][register] & mask[$w];
                }
            };
        }
        each_word!(beyond);
        let (a, b) = (self.msr(MSR_ARCH_CAPABILITIES), other.msr(MSR_ARCH_CAPABILITIES));
        any |= (a as u32) & !(b as u32) & mask[ARCH_CAPS_WORDS[0]];
        any |= ((a >> 32) as u32) & !((b >> 32) as u32) & mask[ARCH_CAPS_WORDS[1]];
        any != 0
    }

    /// One featureset word, read in place.
    #[inline]
    pub(crate) fn feature_word(&self, word: usize) -> u32 {
        let (slot, register) = WORD_REGISTERS[word];
        if slot != MSR_WORD {
            self.slots[usize::from(slot)][usize::from(register)]
        } else {
            let arch_caps = self.msr(MSR_ARCH_CAPABILITIES);
            if word == ARCH_CAPS_WORDS[1] {
                (arch_caps >> 32) as u32
            } else {
                arch_caps as u32
            }
        }
    }

    /// The featureset, read from the leaves and MSR each word mirrors (Xen's
    /// `x86_cpu_policy_to_featureset`), all [`NR_WORDS`] words.
    pub fn featureset(&self) -> Featureset {
        Featureset::from_words(self.feature_words())
    }

    /// Whether one feature bit is set.
    pub fn has_feature(&self, id: FeatureId) -> bool {
        let Some(&(slot, register)) = WORD_REGISTERS.get(id.word()) else { return false };
        let word = if slot != MSR_WORD {
            self.slots[usize::from(slot)][usize::from(register)]
        } else {
            let arch_caps = self.msr(MSR_ARCH_CAPABILITIES);
            if id.word() == ARCH_CAPS_WORDS[1] {
                (arch_caps >> 32) as u32
            } else {
                arch_caps as u32
            }
        };
        word & id.mask() != 0
    }

    /// Writes a featureset back into the leaves and MSR its words mirror (Xen's
    /// `x86_cpu_featureset_to_policy`). Words are written in place whatever the policy's max
    /// leaves say; [`CpuPolicy::to_wire`] reports bits Xen's format then cannot carry.
    ///
    /// A featureset with set bits beyond the [`NR_WORDS`] words this crate knows is refused,
    /// naming them, rather than truncated.
    pub fn set_featureset(&mut self, featureset: &Featureset) -> Result<(), PolicyError> {
        let fitted = featureset.fit(NR_WORDS).map_err(|source| PolicyError::FeaturesetDoesNotFit { source })?;
        let mut words = [0; NR_WORDS];
        words.copy_from_slice(fitted.words());
        self.set_feature_words(&words);
        Ok(())
    }

    /// Writes all [`NR_WORDS`] featureset words back in place (see [`CpuPolicy::set_featureset`]).
    pub fn set_feature_words(&mut self, words: &[u32; NR_WORDS]) {
        macro_rules! write {
            ($w:literal) => {
                if WORD_REGISTERS[$w].0 != MSR_WORD {
                    self.slots[WORD_REGISTERS[$w].0 as usize][WORD_REGISTERS[$w].1 as usize] = words[$w];
                }
            };
        }
        each_word!(write);
        let arch_caps = u64::from(words[ARCH_CAPS_WORDS[0]]) | (u64::from(words[ARCH_CAPS_WORDS[1]]) << 32);
        self.set_msr(MSR_ARCH_CAPABILITIES, arch_caps);
    }

    /// The registers in a slot (see [`slot_of`]).
    #[inline]
    pub(crate) fn slot(&self, slot: usize) -> Registers {
        Registers::from_array(self.slots[slot])
    }

    /// Stores into a slot.
    #[inline]
    pub(crate) fn set_slot(&mut self, slot: usize, registers: [u32; 4]) {
        self.slots[slot] = registers;
    }

    /// Stores each leaf's registers in its slot, `slots[i]` that of `leaves[i]`: the store pass
    /// of [`CpuPolicy::apply_wire`], four entries a round. Each slot number is one
    /// [`wire_slot`] found, below [`SLOTS`]; read as a [`SlotIndex`] it needs no bounds check.
    #[inline]
    pub(crate) fn store_in_slots(&mut self, leaves: &[XenCpuidLeaf], slots: &[u8]) {
        let mut store = |entry: &XenCpuidLeaf, slot: u8| {
            self.slots[SlotIndex::from_byte(slot).get()] = [entry.a, entry.b, entry.c, entry.d];
        };
        let (leaf_rounds, slot_rounds) = (leaves.chunks_exact(4), slots.chunks_exact(4));
        let (leaf_rest, slot_rest) = (leaf_rounds.remainder(), slot_rounds.remainder());
        for (entries, found) in leaf_rounds.zip(slot_rounds) {
            store(&entries[0], found[0]);
            store(&entries[1], found[1]);
            store(&entries[2], found[2]);
            store(&entries[3], found[3]);
        }
        for (entry, &slot) in leaf_rest.iter().zip(slot_rest) {
            store(entry, slot);
        }
    }

    /// Stores the MSR of a fixed MSR slot ([`msr_slot`]).
    #[inline]
    pub(crate) fn set_msr_slot(&mut self, slot: usize, value: u64) {
        self.msr_slots[slot] = value;
    }

    /// Leaf 0 (EAX, EBX, ECX, EDX), 7:0 EAX, 0x80000000 EAX and 0x80000008 EAX, read in place:
    /// what the migration check compares.
    #[inline]
    pub(crate) fn summary(&self) -> [u32; 7] {
        let [eax, ebx, ecx, edx] = self.slots[0];
        [eax, ebx, ecx, edx, self.slots[LEAF7_BASE][0], self.slots[EXTENDED_BASE][0], self.slots[EXTENDED_BASE + 8][0]]
    }

    /// Builds a policy from entries already known to be sorted, unique and non-zero.
    pub(crate) fn from_sorted_parts(cpuid: Vec<(CpuidKey, Registers)>, msrs: Vec<(u32, u64)>) -> CpuPolicy {
        debug_assert!(cpuid.windows(2).all(|w| w[0].0 < w[1].0) && cpuid.iter().all(|(_, r)| !r.is_zero()));
        debug_assert!(msrs.windows(2).all(|w| w[0].0 < w[1].0) && msrs.iter().all(|(_, v)| *v != 0));
        let mut policy = CpuPolicy::new();
        for (index, value) in msrs {
            policy.set_msr(index, value);
        }
        let mut side = Vec::new();
        for (key, registers) in cpuid {
            match slot_of(key) {
                Some(slot) => policy.set_slot(slot, registers.to_array()),
                None => side.push((key, registers)),
            }
        }
        policy.side = side;
        policy
    }
}

impl fmt::Debug for CpuPolicy {
    /// One line per entry, in hex, the way `xen-cpuid -p` lays them out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CpuPolicy {{")?;
        for (key, r) in self.cpuid_entries() {
            writeln!(f, "    {key}: {:08x}:{:08x}:{:08x}:{:08x}", r.eax, r.ebx, r.ecx, r.edx)?;
        }
        for (index, value) in self.msrs() {
            writeln!(f, "    msr {index:#010x}: {value:016x}")?;
        }
        write!(f, "}}")
    }
}

/// What went wrong changing a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The featureset has bits beyond the words a policy holds.
    #[error("featureset does not fit the policy: {source}")]
    FeaturesetDoesNotFit {
        /// The featureset crate's error, naming the bits.
        source: cpupolicy_featureset::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpupolicy_featureset::ids;

    /// The leaves in [`CpuPolicy::summary`] order: leaf 0 (EAX, EBX, ECX, EDX), 7:0 EAX,
    /// 0x80000000 EAX, 0x80000008 EAX.
    const SUMMARY: [(CpuidKey, Register); 7] = [
        (CpuidKey::plain(0), Register::Eax),
        (CpuidKey::plain(0), Register::Ebx),
        (CpuidKey::plain(0), Register::Ecx),
        (CpuidKey::plain(0), Register::Edx),
        (CpuidKey::indexed(7, 0), Register::Eax),
        (CpuidKey::plain(0x8000_0000), Register::Eax),
        (CpuidKey::plain(0x8000_0008), Register::Eax),
    ];

    /// The featureset words looked up key by key, as a reference for the in-place read.
    fn looked_up(p: &CpuPolicy) -> [u32; NR_WORDS] {
        WORDS.map(|info| match info.source {
            WordSource::Cpuid { leaf, subleaf, register } => p.cpuid(CpuidKey::new(leaf, subleaf)).get(register),
            WordSource::Msr { index, high } => {
                let value = p.msr(index);
                if high {
                    (value >> 32) as u32
                } else {
                    value as u32
                }
            }
        })
    }

    fn sample() -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(0x0006_0fb1, 0x0002_0800, 0x8000_2001, 0x178b_fbfd));
        p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(2, 0x0000_0209, 0, 0));
        p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3028, 0, 0x1001, 0));
        p.set_msr(MSR_ARCH_CAPABILITIES, 0x1_0000_0004);
        p
    }

    /// Reading in place agrees with comparing the gathered words, bit by bit, MSR words
    /// included.
    #[test]
    fn any_beyond_is_the_word_comparison() {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let (mut a, mut b) = (CpuPolicy::new(), CpuPolicy::new());
            let words = |next: &mut dyn FnMut() -> u64| std::array::from_fn::<u32, NR_WORDS, _>(|_| next() as u32);
            a.set_feature_words(&words(&mut next));
            b.set_feature_words(&words(&mut next));
            for w in 0..NR_WORDS {
                // Often equal words, so that single bits decide.
                if next() % 2 == 0 {
                    let mut bw = b.feature_words();
                    bw[w] = a.feature_words()[w];
                    b.set_feature_words(&bw);
                }
            }
            for bit in 0..NR_WORDS * 32 {
                let mut mask = [0u32; NR_WORDS];
                mask[bit / 32] = 1 << (bit % 32);
                let (fa, fb) = (a.feature_words(), b.feature_words());
                let expected = (0..NR_WORDS).any(|w| fa[w] & !fb[w] & mask[w] != 0);
                assert_eq!(a.any_beyond(&b, &mask), expected, "bit {bit}");
            }
        }
    }

    /// Clearing runs of slots keeps exactly what [`InRange::keeps`] keeps, entry by entry: on a
    /// policy holding every slot and side-table keys of the same leaves, for limits at and
    /// around every boundary.
    #[test]
    fn range_clearing_by_slots_matches_the_rule() {
        let mut full = CpuPolicy::new();
        for slot in 0..SLOTS {
            let key = key_of_slot(slot);
            if slot_of(key) == Some(slot) {
                full.set_cpuid(key, Registers::new(slot as u32 + 1, 0, 0, 0));
            }
        }
        for key in [
            CpuidKey::plain(4),
            CpuidKey::indexed(4, 9),
            CpuidKey::indexed(7, 5),
            CpuidKey::indexed(0xb, 6),
            CpuidKey::indexed(0xd, 64),
            CpuidKey::plain(0x1f),
            CpuidKey::plain(0x4000_0010),
            CpuidKey::indexed(0x8000_001d, 0),
            CpuidKey::plain(0x8000_0026),
        ] {
            full.set_cpuid(key, Registers::new(7, 7, 7, 7));
        }
        let ends = [None, Some(0), Some(1), Some(3), Some(7), Some(70)];
        for basic in [0, 3, 4, 6, 7, 0xa, 0xb, 0xc, 0xd, 0x1f] {
            for extended in [0x8000_0000, 0x8000_0008, 0x8000_0021, 0x8000_0030, 0x8000_ffff] {
                for (i, end) in ends.iter().enumerate() {
                    let range = InRange {
                        basic,
                        extended,
                        leaf7: end.unwrap_or(0),
                        cache_end: *end,
                        topology_end: ends[(i + 1) % ends.len()],
                        xstate_end: ends[(i + 2) % ends.len()],
                    };
                    let (mut by_slots, mut by_entry) = (full.clone(), full.clone());
                    by_slots.retain_in_range(&range);
                    by_entry.retain_cpuid(|key, _| range.keeps(key));
                    assert_eq!(by_slots, by_entry, "{range:?}");
                }
            }
        }
        // One leaf's removal, trim and search agree with the whole-policy walk and `leaf_entries`.
        for leaf in [0, 4, 7, 0xb, 0xd, 0x1f, 0x4000_0000, 0x8000_001d, 0x8000_0008] {
            for modulus in [1, 2, 3] {
                let (mut removed, mut by_rule) = (full.clone(), full.clone());
                removed.remove_leaf(leaf);
                by_rule.retain_cpuid(|key, _| key.leaf != leaf);
                assert_eq!(removed, by_rule, "{leaf:#x}");
                let keep_bits = 0x5555_5555_5555_5557u64.rotate_left(modulus);
                let (mut by_mask, mut by_rule) = (full.clone(), full.clone());
                by_mask.retain_subleaves_in(leaf, keep_bits);
                by_rule.retain_cpuid(|key, _| {
                    key.leaf != leaf || key.subleaf.is_none_or(|s| s < 64 && keep_bits & (1 << s) != 0)
                });
                assert_eq!(by_mask, by_rule, "{leaf:#x} {keep_bits:#x}");
                let found = full.first_entry_where(leaf, |r| r.eax.is_multiple_of(modulus));
                assert_eq!(found, full.leaf_entries(leaf).find(|(_, r)| r.eax.is_multiple_of(modulus)).map(|(k, _)| k));
            }
        }
    }

    #[test]
    fn zero_entries_are_not_stored() {
        let mut p = sample();
        let before = p.cpuid_len();
        p.set_cpuid(CpuidKey::plain(5), Registers::ZERO);
        assert_eq!(p.cpuid_len(), before);
        p.set_cpuid(CpuidKey::plain(1), Registers::ZERO);
        assert_eq!(p.cpuid_len(), before - 1);
        p.set_msr(MSR_ARCH_CAPABILITIES, 0);
        assert_eq!(p.msrs().count(), 0);
    }

    #[test]
    fn entries_stay_sorted_whatever_the_insertion_order() {
        let mut p = CpuPolicy::new();
        for key in [CpuidKey::plain(0x8000_0001), CpuidKey::indexed(7, 1), CpuidKey::plain(1), CpuidKey::indexed(7, 0)]
        {
            p.set_cpuid(key, Registers::new(1, 0, 0, 0));
        }
        let keys: Vec<_> = p.cpuid_entries().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    /// Slots and side table together behave as one sorted map: a model checks every read,
    /// the order, the count and equality over many pseudo-random changes, with keys in both
    /// stores and at their edges (plain keys of sub-leaf leaves, sub-leaves of plain leaves,
    /// sub-leaves beyond the slots, leaves between the hypervisor slots, past 0x80000021).
    #[test]
    fn slots_and_side_table_are_one_sorted_map() {
        let leaves = [0, 1, 4, 7, 0xb, 0xd, 0xe, 0x14, 0x1f, 0x4000_0000, 0x4000_0001, 0x4000_0100, 0x8000_0000];
        let mut keys = Vec::new();
        for &leaf in &leaves {
            keys.push(CpuidKey::plain(leaf));
            for subleaf in [0, 1, 3, 4, 7, 8, 63, 64, u32::MAX] {
                keys.push(CpuidKey::indexed(leaf, subleaf));
            }
        }
        keys.extend([0x8000_0008, 0x8000_0021, 0x8000_0022, 0x8000_0026].map(CpuidKey::plain));
        let mut model = std::collections::BTreeMap::new();
        let mut policy = CpuPolicy::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = keys[(state % keys.len() as u64) as usize];
            let value = if state >> 60 < 4 { Registers::ZERO } else { Registers::new((state >> 8) as u32, step, 0, 1) };
            policy.set_cpuid(key, value);
            if value.is_zero() {
                model.remove(&key);
            } else {
                model.insert(key, value);
            }
            assert_eq!(policy.cpuid(key), value);
        }
        let entries: Vec<_> = policy.cpuid_entries().collect();
        let expected: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(entries, expected);
        for &leaf in &leaves {
            let of_leaf: Vec<_> = expected.iter().copied().filter(|(k, _)| k.leaf == leaf).collect();
            assert_eq!(policy.leaf_entries(leaf).collect::<Vec<_>>(), of_leaf, "{leaf:#x}");
        }
        assert_eq!((policy.cpuid_len(), policy.cpuid_entries().len()), (model.len(), model.len()));
        // Built another way round, it is equal (and hashes alike).
        let rebuilt = CpuPolicy::from_sorted_parts(expected.clone(), Vec::new());
        assert_eq!(rebuilt, policy);
        let hash = |p: &CpuPolicy| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&rebuilt), hash(&policy));
        policy.retain_cpuid(|key, _| key.leaf % 2 == 0);
        assert!(policy.cpuid_entries().eq(model.iter().filter(|(k, _)| k.leaf % 2 == 0).map(|(k, v)| (*k, *v))));
    }

    #[test]
    fn fixed_and_side_msrs_are_one_sorted_map() {
        let indices = [0x48, 0xce, 0xcf, 0x10a, 0x10b, 0x1000, 0];
        let mut model = std::collections::BTreeMap::new();
        let mut policy = CpuPolicy::new();
        for step in 0..500u64 {
            let index = indices[(step * 7 % indices.len() as u64) as usize];
            let value = if step % 5 == 0 { 0 } else { step << 20 };
            policy.set_msr(index, value);
            if value == 0 {
                model.remove(&index);
            } else {
                model.insert(index, value);
            }
            assert_eq!(policy.msr(index), value);
            assert!(policy.msrs().eq(model.iter().map(|(i, v)| (*i, *v))));
            assert_eq!(policy.msrs().len(), model.len());
        }
    }

    #[test]
    fn typed_fields_decode_like_xen() {
        let p = sample();
        assert_eq!(p.vendor(), Vendor::Amd);
        assert_eq!((p.family(), p.model(), p.stepping()), (0xf, 0x6b, 1));
        assert_eq!(p.max_basic_leaf(), 0xd);
        assert_eq!(p.leaf7_max_subleaf(), 2);
        assert_eq!((p.max_phys_addr_bits(), p.max_lin_addr_bits()), (40, 48));
        assert!(!p.cpuid_faulting());
    }

    #[test]
    fn setters_touch_only_their_field() {
        let mut p = sample();
        p.set_max_phys_addr_bits(36);
        assert_eq!((p.max_phys_addr_bits(), p.max_lin_addr_bits()), (36, 48));
        p.set_cpuid_faulting(true);
        assert!(p.cpuid_faulting());
        assert_eq!(p.msr(MSR_PLATFORM_INFO), 1 << 31);
        p.set_leaf7_max_subleaf(0);
        assert_eq!(p.subleaf(7, 0).ebx, 0x209);
    }

    #[test]
    fn featureset_reads_every_word_in_place() {
        let p = sample();
        let words = p.feature_words();
        assert_eq!(words[0], 0x178b_fbfd);
        assert_eq!(words[1], 0x8000_2001);
        assert_eq!(words[5], 0x209);
        assert_eq!((words[16], words[17]), (4, 1));
        assert!(p.has_feature(ids::HYPERVISOR));
        assert!(!p.has_feature(ids::AVX2));
    }

    #[test]
    fn featureset_written_back_reads_back_equal() {
        let mut p = sample();
        let mut fs = p.featureset();
        fs.remove(ids::HYPERVISOR);
        fs.insert(ids::AVX2);
        fs.insert(ids::RDCL_NO);
        p.set_featureset(&fs).unwrap();
        assert_eq!(p.featureset(), fs);
        assert_eq!(p.feature_words(), looked_up(&p), "the registers hold what was written");
        assert_eq!(p.leaf(1).eax, 0x0006_0fb1, "non-feature registers untouched");
    }

    #[test]
    fn words_read_in_place_follow_every_change() {
        let mut p = sample();
        assert_eq!(p.feature_words(), looked_up(&p));
        p.set_cpuid(CpuidKey::indexed(7, 1), Registers::new(0x10, 0, 0, 0));
        p.remove_cpuid(CpuidKey::plain(1));
        p.set_msr(MSR_ARCH_CAPABILITIES, 0x2_0000_0000);
        p.set_register(CpuidKey::plain(0x8000_0021), Register::Ecx, 4);
        assert_eq!(p.feature_words(), looked_up(&p));
        assert_eq!((p.feature_words()[0], p.feature_words()[10], p.feature_words()[17]), (0, 0x10, 2));
        p.set_max_extended_leaf(0x8000_0021);
        p.remove_cpuid(CpuidKey::plain(0));
        assert_eq!(p.summary(), SUMMARY.map(|(key, register)| p.cpuid(key).get(register)));
        let rebuilt = CpuPolicy::from_sorted_parts(p.cpuid_entries().collect(), p.msrs().collect());
        assert_eq!(rebuilt, p);
    }

    #[test]
    fn featureset_longer_than_the_policy_is_refused() {
        let mut p = sample();
        let mut words = vec![0; NR_WORDS + 1];
        words[NR_WORDS] = 1;
        let error = p.set_featureset(&Featureset::from_words(words)).unwrap_err();
        assert!(error.to_string().contains("do"), "{error}");
        assert_eq!(p, sample(), "nothing written");
    }
}
