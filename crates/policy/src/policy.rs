//! `CpuPolicy`: every CPUID leaf and MSR of one policy, with typed views of the fields
//! toolstacks reason about and the featureset view.

use std::fmt;

use cpupolicy_featureset::{FeatureId, Featureset, Register, WordSource, NR_WORDS, WORDS};

use crate::Vendor;

/// MSR_INTEL_PLATFORM_INFO. Xen's policy only gives bit 31 a meaning: CPUID faulting.
pub const MSR_PLATFORM_INFO: u32 = 0xce;
/// MSR_ARCH_CAPABILITIES: enumerates hardware fixes for speculative side channels; featureset
/// words 16 (`m10Al`) and 17 (`m10Ah`).
pub const MSR_ARCH_CAPABILITIES: u32 = 0x10a;
/// Bit 31 of [`MSR_PLATFORM_INFO`]: CPUID faulting is available.
pub const PLATFORM_INFO_CPUID_FAULTING: u64 = 1 << 31;

/// Where a CPUID result lives: the leaf (EAX input) and, for leaves that have them, the
/// sub-leaf (ECX input).
///
/// Keys sort by leaf, then sub-leaf with "no sub-leaf" first; within one leaf Xen never mixes
/// the two, so this is Xen's serialisation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuidKey {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The sub-leaf (ECX input); `None` for leaves without sub-leaves.
    pub subleaf: Option<u32>,
}

impl CpuidKey {
    /// A key from its parts.
    pub const fn new(leaf: u32, subleaf: Option<u32>) -> CpuidKey {
        CpuidKey { leaf, subleaf }
    }

    /// A leaf without sub-leaves.
    pub const fn plain(leaf: u32) -> CpuidKey {
        CpuidKey { leaf, subleaf: None }
    }

    /// Sub-leaf `subleaf` of `leaf`.
    pub const fn indexed(leaf: u32, subleaf: u32) -> CpuidKey {
        CpuidKey { leaf, subleaf: Some(subleaf) }
    }
}

impl fmt::Display for CpuidKey {
    /// `0x00000001`, or `0x00000007:0x1` with a sub-leaf.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subleaf {
            None => write!(f, "{:#010x}", self.leaf),
            Some(subleaf) => write!(f, "{:#010x}:{subleaf:#x}", self.leaf),
        }
    }
}

/// The four output registers of one CPUID invocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Registers {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl Registers {
    /// All four zero: what CPUID returns for a leaf that says nothing.
    pub const ZERO: Registers = Registers { eax: 0, ebx: 0, ecx: 0, edx: 0 };

    /// Registers from their values.
    pub const fn new(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Registers {
        Registers { eax, ebx, ecx, edx }
    }

    /// From `[eax, ebx, ecx, edx]`.
    pub const fn from_array(values: [u32; 4]) -> Registers {
        Registers { eax: values[0], ebx: values[1], ecx: values[2], edx: values[3] }
    }

    /// As `[eax, ebx, ecx, edx]`.
    pub const fn to_array(self) -> [u32; 4] {
        [self.eax, self.ebx, self.ecx, self.edx]
    }

    /// One register.
    pub const fn get(self, register: Register) -> u32 {
        match register {
            Register::Eax => self.eax,
            Register::Ebx => self.ebx,
            Register::Ecx => self.ecx,
            Register::Edx => self.edx,
        }
    }

    /// Sets one register.
    pub fn set(&mut self, register: Register, value: u32) {
        match register {
            Register::Eax => self.eax = value,
            Register::Ebx => self.ebx = value,
            Register::Ecx => self.ecx = value,
            Register::Edx => self.edx = value,
        }
    }

    /// All four are zero.
    pub const fn is_zero(self) -> bool {
        self.eax == 0 && self.ebx == 0 && self.ecx == 0 && self.edx == 0
    }
}

/// The register names in CPUID output order, for messages and text formats.
pub(crate) const REGISTER_NAMES: [(Register, &str); 4] =
    [(Register::Eax, "eax"), (Register::Ebx, "ebx"), (Register::Ecx, "ecx"), (Register::Edx, "edx")];

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
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuPolicy {
    /// Sorted by key, no duplicates, no all-zero entries.
    cpuid: Vec<(CpuidKey, Registers)>,
    /// Sorted by index, no duplicates, no zero values.
    msrs: Vec<(u32, u64)>,
    /// The featureset words, kept equal to the registers they mirror by every change: reading
    /// them is the hot path of levelling and migration checks.
    words: [u32; NR_WORDS],
    /// The registers the migration check compares, kept like `words`: leaf 0 (EAX, EBX, ECX,
    /// EDX), 7:0 EAX, 0x80000000 EAX, 0x80000008 EAX.
    summary: [u32; 7],
}

/// Where each [`CpuPolicy::summary`] value lives.
const SUMMARY: [(CpuidKey, Register); 7] = [
    (CpuidKey::plain(0), Register::Eax),
    (CpuidKey::plain(0), Register::Ebx),
    (CpuidKey::plain(0), Register::Ecx),
    (CpuidKey::plain(0), Register::Edx),
    (CpuidKey::indexed(7, 0), Register::Eax),
    (CpuidKey::plain(0x8000_0000), Register::Eax),
    (CpuidKey::plain(0x8000_0008), Register::Eax),
];

impl CpuPolicy {
    /// The empty policy: no leaves, no MSRs.
    pub const fn new() -> CpuPolicy {
        CpuPolicy { cpuid: Vec::new(), msrs: Vec::new(), words: [0; NR_WORDS], summary: [0; 7] }
    }

    /// The registers of a leaf (zero when the policy holds nothing for it).
    pub fn cpuid(&self, key: CpuidKey) -> Registers {
        match self.cpuid.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.cpuid[i].1,
            Err(_) => Registers::ZERO,
        }
    }

    /// Leaf `leaf` without sub-leaf.
    pub fn leaf(&self, leaf: u32) -> Registers {
        self.cpuid(CpuidKey::plain(leaf))
    }

    /// Sub-leaf `subleaf` of `leaf`.
    pub fn subleaf(&self, leaf: u32, subleaf: u32) -> Registers {
        self.cpuid(CpuidKey::indexed(leaf, subleaf))
    }

    /// Whether the policy holds a (non-zero) entry for this key.
    pub fn contains(&self, key: CpuidKey) -> bool {
        self.cpuid.binary_search_by(|(k, _)| k.cmp(&key)).is_ok()
    }

    /// Sets a leaf; all-zero registers remove it.
    pub fn set_cpuid(&mut self, key: CpuidKey, registers: Registers) {
        self.store_cpuid(key, registers);
        self.refresh_cpuid_words(key, registers);
    }

    /// Sets a leaf without updating the featureset words.
    fn store_cpuid(&mut self, key: CpuidKey, registers: Registers) {
        self.refresh_summary(key, registers);
        match self.cpuid.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) if registers.is_zero() => {
                self.cpuid.remove(i);
            }
            Ok(i) => self.cpuid[i].1 = registers,
            Err(_) if registers.is_zero() => {}
            Err(i) => self.cpuid.insert(i, (key, registers)),
        }
    }

    /// Removes a leaf, returning what it held.
    pub fn remove_cpuid(&mut self, key: CpuidKey) -> Registers {
        let removed = match self.cpuid.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.cpuid.remove(i).1,
            Err(_) => Registers::ZERO,
        };
        self.refresh_cpuid_words(key, Registers::ZERO);
        self.refresh_summary(key, Registers::ZERO);
        removed
    }

    /// Keeps only the leaves for which `keep` is true, in one pass: time linear in the number of
    /// leaves, however many go (removing them one at a time would be quadratic).
    pub fn retain_cpuid(&mut self, mut keep: impl FnMut(CpuidKey, Registers) -> bool) {
        let before = self.cpuid.len();
        self.cpuid.retain(|&(key, registers)| keep(key, registers));
        if self.cpuid.len() != before {
            self.words = self.computed_words();
            self.summary = SUMMARY.map(|(key, register)| self.cpuid(key).get(register));
        }
    }

    /// Sets one register of a leaf.
    pub fn set_register(&mut self, key: CpuidKey, register: Register, value: u32) {
        let mut registers = self.cpuid(key);
        registers.set(register, value);
        self.set_cpuid(key, registers);
    }

    /// Every (non-zero) leaf, in key order.
    pub fn cpuid_entries(&self) -> impl ExactSizeIterator<Item = (CpuidKey, Registers)> + '_ {
        self.cpuid.iter().copied()
    }

    /// Number of (non-zero) leaves held.
    pub fn cpuid_len(&self) -> usize {
        self.cpuid.len()
    }

    /// An MSR's value (zero when the policy holds none).
    pub fn msr(&self, index: u32) -> u64 {
        match self.msrs.binary_search_by(|(i, _)| i.cmp(&index)) {
            Ok(i) => self.msrs[i].1,
            Err(_) => 0,
        }
    }

    /// Sets an MSR; zero removes it.
    pub fn set_msr(&mut self, index: u32, value: u64) {
        self.store_msr(index, value);
        for (word, info) in self.words.iter_mut().zip(WORDS.iter()) {
            if let WordSource::Msr { index: source, high } = info.source {
                if source == index {
                    *word = if high { (value >> 32) as u32 } else { value as u32 };
                }
            }
        }
    }

    /// Sets an MSR without updating the featureset words.
    fn store_msr(&mut self, index: u32, value: u64) {
        match self.msrs.binary_search_by(|(i, _)| i.cmp(&index)) {
            Ok(i) if value == 0 => {
                self.msrs.remove(i);
            }
            Ok(i) => self.msrs[i].1 = value,
            Err(_) if value == 0 => {}
            Err(i) => self.msrs.insert(i, (index, value)),
        }
    }

    /// Every (non-zero) MSR, by index.
    pub fn msrs(&self) -> impl ExactSizeIterator<Item = (u32, u64)> + '_ {
        self.msrs.iter().copied()
    }

    /// No leaves and no MSRs.
    pub fn is_empty(&self) -> bool {
        self.cpuid.is_empty() && self.msrs.is_empty()
    }

    // Typed views (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E; Xen's `cpu-policy.h`).

    /// The vendor, from leaf 0's EBX, EDX, ECX.
    pub fn vendor(&self) -> Vendor {
        let leaf0 = self.leaf(0);
        Vendor::from_leaf0(leaf0.ebx, leaf0.ecx, leaf0.edx)
    }

    /// Leaf 1 EAX: the processor signature (stepping, model, family and their extensions).
    pub fn signature(&self) -> u32 {
        self.leaf(1).eax
    }

    /// The display family: base family, plus the extended family when the base is 0xf
    /// (Xen's `x86_cpuid_family`).
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
    pub fn stepping(&self) -> u32 {
        self.signature() & 0xf
    }

    /// The highest basic leaf (leaf 0 EAX).
    pub fn max_basic_leaf(&self) -> u32 {
        self.leaf(0).eax
    }

    /// Sets the highest basic leaf (leaf 0 EAX).
    pub fn set_max_basic_leaf(&mut self, leaf: u32) {
        self.set_register(CpuidKey::plain(0), Register::Eax, leaf);
    }

    /// The highest extended leaf (leaf 0x80000000 EAX, e.g. `0x80000021`).
    pub fn max_extended_leaf(&self) -> u32 {
        self.leaf(0x8000_0000).eax
    }

    /// Sets the highest extended leaf (leaf 0x80000000 EAX).
    pub fn set_max_extended_leaf(&mut self, leaf: u32) {
        self.set_register(CpuidKey::plain(0x8000_0000), Register::Eax, leaf);
    }

    /// The highest sub-leaf of leaf 7 (leaf 7:0 EAX).
    pub fn leaf7_max_subleaf(&self) -> u32 {
        self.subleaf(7, 0).eax
    }

    /// Sets the highest sub-leaf of leaf 7 (leaf 7:0 EAX).
    pub fn set_leaf7_max_subleaf(&mut self, subleaf: u32) {
        self.set_register(CpuidKey::indexed(7, 0), Register::Eax, subleaf);
    }

    /// Physical address bits (leaf 0x80000008 `EAX[7:0]`). A number, levelled by minimum.
    pub fn max_phys_addr_bits(&self) -> u8 {
        self.leaf(0x8000_0008).eax as u8
    }

    /// Sets the physical address bits (leaf 0x80000008 `EAX[7:0]`).
    pub fn set_max_phys_addr_bits(&mut self, bits: u8) {
        let eax = self.leaf(0x8000_0008).eax;
        self.set_register(CpuidKey::plain(0x8000_0008), Register::Eax, (eax & !0xff) | u32::from(bits));
    }

    /// Linear address bits (leaf 0x80000008 `EAX[15:8]`).
    pub fn max_lin_addr_bits(&self) -> u8 {
        (self.leaf(0x8000_0008).eax >> 8) as u8
    }

    /// Sets the linear address bits (leaf 0x80000008 `EAX[15:8]`).
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

    /// The featureset words: the registers and MSR halves each word mirrors ([`WORDS`]).
    /// A copy of 19 words, no allocation, no look-up.
    pub fn feature_words(&self) -> [u32; NR_WORDS] {
        self.words
    }

    /// The featureset, read from the leaves and MSR each word mirrors (Xen's
    /// `x86_cpu_policy_to_featureset`), all [`NR_WORDS`] words.
    pub fn featureset(&self) -> Featureset {
        Featureset::from_words(self.feature_words())
    }

    /// Whether one feature bit is set.
    pub fn has_feature(&self, id: FeatureId) -> bool {
        self.words.get(id.word()).is_some_and(|word| word & id.mask() != 0)
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
        // One update per leaf and MSR, however many words live in it.
        let mut done = [false; NR_WORDS];
        for (i, info) in WORDS.iter().enumerate() {
            if done[i] {
                continue;
            }
            match info.source {
                WordSource::Cpuid { leaf, subleaf, .. } => {
                    let key = CpuidKey::new(leaf, subleaf);
                    let mut registers = self.cpuid(key);
                    for (j, other) in WORDS.iter().enumerate().skip(i) {
                        if let WordSource::Cpuid { leaf, subleaf, register } = other.source {
                            if CpuidKey::new(leaf, subleaf) == key {
                                registers.set(register, words[j]);
                                done[j] = true;
                            }
                        }
                    }
                    self.store_cpuid(key, registers);
                }
                WordSource::Msr { index, .. } => {
                    let mut value = self.msr(index);
                    for (j, other) in WORDS.iter().enumerate().skip(i) {
                        if let WordSource::Msr { index: other_index, high } = other.source {
                            if other_index == index {
                                let shift = if high { 32 } else { 0 };
                                value = (value & !(0xffff_ffff << shift)) | (u64::from(words[j]) << shift);
                                done[j] = true;
                            }
                        }
                    }
                    self.store_msr(index, value);
                }
            }
        }
        // Every word was written to the register it mirrors.
        self.words = *words;
    }

    /// Brings the summary values held in `key` up to date with its new registers.
    fn refresh_summary(&mut self, key: CpuidKey, registers: Registers) {
        for (value, (k, register)) in self.summary.iter_mut().zip(SUMMARY) {
            if k == key {
                *value = registers.get(register);
            }
        }
    }

    /// Leaf 0 (EAX, EBX, ECX, EDX), 7:0 EAX, 0x80000000 EAX and 0x80000008 EAX, without a
    /// look-up: what the migration check compares.
    pub(crate) fn summary(&self) -> [u32; 7] {
        self.summary
    }

    /// Brings the words mirroring `key` up to date with its new registers.
    fn refresh_cpuid_words(&mut self, key: CpuidKey, registers: Registers) {
        for (word, info) in self.words.iter_mut().zip(WORDS.iter()) {
            if let WordSource::Cpuid { leaf, subleaf, register } = info.source {
                if key == CpuidKey::new(leaf, subleaf) {
                    *word = registers.get(register);
                }
            }
        }
    }

    /// The featureset words looked up afresh from the entries.
    fn computed_words(&self) -> [u32; NR_WORDS] {
        let mut words = [0; NR_WORDS];
        for (word, info) in words.iter_mut().zip(WORDS.iter()) {
            *word = self.word_value(info.source);
        }
        words
    }

    fn word_value(&self, source: WordSource) -> u32 {
        match source {
            WordSource::Cpuid { leaf, subleaf, register } => self.cpuid(CpuidKey::new(leaf, subleaf)).get(register),
            WordSource::Msr { index, high } => {
                let value = self.msr(index);
                if high {
                    (value >> 32) as u32
                } else {
                    value as u32
                }
            }
        }
    }

    /// Builds a policy from entries already known to be sorted, unique and non-zero.
    pub(crate) fn from_sorted_parts(cpuid: Vec<(CpuidKey, Registers)>, msrs: Vec<(u32, u64)>) -> CpuPolicy {
        debug_assert!(cpuid.windows(2).all(|w| w[0].0 < w[1].0) && cpuid.iter().all(|(_, r)| !r.is_zero()));
        debug_assert!(msrs.windows(2).all(|w| w[0].0 < w[1].0) && msrs.iter().all(|(_, v)| *v != 0));
        let mut policy = CpuPolicy { cpuid, msrs, words: [0; NR_WORDS], summary: [0; 7] };
        policy.words = policy.computed_words();
        policy.summary = SUMMARY.map(|(key, register)| policy.cpuid(key).get(register));
        policy
    }
}

impl fmt::Debug for CpuPolicy {
    /// One line per entry, in hex, the way `xen-cpuid -p` lays them out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CpuPolicy {{")?;
        for (key, r) in &self.cpuid {
            writeln!(f, "    {key}: {:08x}:{:08x}:{:08x}:{:08x}", r.eax, r.ebx, r.ecx, r.edx)?;
        }
        for (index, value) in &self.msrs {
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
    use cpupolicy_featureset::known;

    fn sample() -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(0x0006_0fb1, 0x0002_0800, 0x8000_2001, 0x178b_fbfd));
        p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(2, 0x0000_0209, 0, 0));
        p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3028, 0, 0x1001, 0));
        p.set_msr(MSR_ARCH_CAPABILITIES, 0x1_0000_0004);
        p
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
        assert!(p.has_feature(known("hypervisor")));
        assert!(!p.has_feature(known("avx2")));
    }

    #[test]
    fn featureset_written_back_reads_back_equal() {
        let mut p = sample();
        let mut fs = p.featureset();
        fs.remove(known("hypervisor"));
        fs.insert(known("avx2"));
        fs.insert(known("rdcl-no"));
        p.set_featureset(&fs).unwrap();
        assert_eq!(p.featureset(), fs);
        assert_eq!(p.feature_words(), p.computed_words(), "the registers hold what was written");
        assert_eq!(p.leaf(1).eax, 0x0006_0fb1, "non-feature registers untouched");
    }

    #[test]
    fn cached_words_follow_every_change() {
        let mut p = sample();
        assert_eq!(p.feature_words(), p.computed_words());
        p.set_cpuid(CpuidKey::indexed(7, 1), Registers::new(0x10, 0, 0, 0));
        p.remove_cpuid(CpuidKey::plain(1));
        p.set_msr(MSR_ARCH_CAPABILITIES, 0x2_0000_0000);
        p.set_register(CpuidKey::plain(0x8000_0021), Register::Ecx, 4);
        assert_eq!(p.feature_words(), p.computed_words());
        assert_eq!((p.feature_words()[0], p.feature_words()[10], p.feature_words()[17]), (0, 0x10, 2));
        p.set_max_extended_leaf(0x8000_0021);
        p.remove_cpuid(CpuidKey::plain(0));
        assert_eq!(p.summary(), SUMMARY.map(|(key, register)| p.cpuid(key).get(register)));
        let rebuilt = CpuPolicy::from_sorted_parts(p.cpuid.clone(), p.msrs.clone());
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
