//! Xen's `struct cpu_policy`: fixed arrays, as `cpu-policy.h` sizes them.

use super::*;

// The array sizes of the newest release, as the ABI crate's layout of Xen's arrays has them.
pub(super) const NR_BASIC: usize = cpupolicy_abi::layout::BASIC_SLOTS;
pub(super) const NR_CACHE: usize = cpupolicy_abi::layout::LEAF4_SLOTS;
pub(super) const NR_FEAT: usize = cpupolicy_abi::layout::LEAF7_SLOTS;
pub(super) const NR_TOPO: usize = cpupolicy_abi::layout::LEAFB_SLOTS;
pub(super) const NR_XSTATE: usize = cpupolicy_abi::layout::LEAFD_SLOTS;
pub(super) const NR_EXTD: usize = cpupolicy_abi::layout::EXTENDED_SLOTS;
pub(super) const EXTD: u32 = 0x8000_0000;

/// `CPUID_COMMON_1D_FEATURES`: the leaf 1 EDX bits AMD mirrors in 0x80000001 EDX (FPU, VME,
/// DE, PSE, TSC, MSR, PAE, MCE, CX8, APIC, MTRR, PGE, MCA, CMOV, PAT, PSE36, MMX, FXSR).
pub(super) const COMMON_1D: u32 = 0x0183_f3ff;

/// Xen's in-memory policy: what a system policy holds, whether serialised or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct XenPolicy {
    pub(super) basic: [Registers; NR_BASIC],
    pub(super) cache: [Registers; NR_CACHE],
    pub(super) feat: [Registers; NR_FEAT],
    pub(super) topo: [Registers; NR_TOPO],
    pub(super) xstate: [Registers; NR_XSTATE],
    pub(super) extd: [Registers; NR_EXTD],
    /// MSR_PLATFORM_INFO: Xen keeps only bit 31.
    pub(super) cpuid_faulting: bool,
    /// MSR_ARCH_CAPABILITIES.
    pub(super) arch_caps: u64,
}

impl XenPolicy {
    pub(super) fn empty() -> XenPolicy {
        XenPolicy {
            basic: [Registers::ZERO; NR_BASIC],
            cache: [Registers::ZERO; NR_CACHE],
            feat: [Registers::ZERO; NR_FEAT],
            topo: [Registers::ZERO; NR_TOPO],
            xstate: [Registers::ZERO; NR_XSTATE],
            extd: [Registers::ZERO; NR_EXTD],
            cpuid_faulting: false,
            arch_caps: 0,
        }
    }

    /// What Xen's raw policy would hold, read from `raw` the way `x86_cpu_policy_fill_native`
    /// and `calculate_raw_cpu_policy` read the hardware: basic leaves up to min(max, 0xd);
    /// leaf 4 and 0xb up to the first null sub-leaf; leaf 7 up to min(max sub-leaf, 2); leaf
    /// 0xd sub-leaves 0, 1 and those its xstate masks enumerate, with 0xd:0/1 EBX cleared
    /// (they vary with XCR0); extended leaves up to min(max, 0x80000021); MSR_ARCH_CAPS only
    /// when enumerated; no hypervisor leaves. CPUID faulting is set later (`Boot`).
    pub(super) fn fill_native(raw: &CpuPolicy) -> XenPolicy {
        let mut p = XenPolicy::empty();
        p.basic[0] = raw.leaf(0);
        let max_basic = p.max_basic();
        for leaf in 1..=max_basic.min(NR_BASIC as u32 - 1) {
            if !matches!(leaf, 0x4 | 0x7 | 0xb | 0xd) {
                p.basic[leaf as usize] = raw.leaf(leaf);
            }
        }
        if max_basic >= 4 {
            for (i, slot) in p.cache.iter_mut().enumerate() {
                let registers = raw.subleaf(4, i as u32);
                if registers.eax & 0x1f == 0 {
                    break;
                }
                *slot = registers;
            }
        }
        if max_basic >= 7 {
            p.feat[0] = raw.subleaf(7, 0);
            for i in 1..=p.feat[0].eax.min(NR_FEAT as u32 - 1) {
                p.feat[i as usize] = raw.subleaf(7, i);
            }
        }
        if max_basic >= 0xb {
            for (i, slot) in p.topo.iter_mut().enumerate() {
                let registers = raw.subleaf(0xb, i as u32);
                if (registers.ecx >> 8) & 0xff == 0 {
                    break;
                }
                *slot = registers;
            }
        }
        if max_basic >= 0xd {
            p.xstate[0] = raw.subleaf(0xd, 0);
            p.xstate[1] = raw.subleaf(0xd, 1);
            let xstates = p.xstates();
            for i in 2..NR_XSTATE {
                if xstates & (1 << i) != 0 {
                    p.xstate[i] = raw.subleaf(0xd, i as u32);
                }
            }
            p.xstate[0].ebx = 0;
            p.xstate[1].ebx = 0;
        }
        p.extd[0] = raw.leaf(EXTD);
        for i in 1..=(p.max_extd() & 0xffff).min(NR_EXTD as u32 - 1) {
            p.extd[i as usize] = raw.leaf(EXTD + i);
        }
        if has(&p.words(), ids::ARCH_CAPS) {
            p.arch_caps = raw.msr(MSR_ARCH_CAPABILITIES);
        }
        p
    }

    pub(super) fn max_basic(&self) -> u32 {
        self.basic[0].eax
    }

    pub(super) fn max_extd(&self) -> u32 {
        self.extd[0].eax
    }

    /// `cpu_policy_xstates`: XCR0 | XSS components enumerated.
    pub(super) fn xstates(&self) -> u64 {
        (u64::from(self.xstate[0].edx | self.xstate[1].edx) << 32) | u64::from(self.xstate[0].eax | self.xstate[1].ecx)
    }

    /// The struct's slot for a leaf, if it has one.
    pub(super) fn slot(&self, leaf: u32, subleaf: Option<u32>) -> Option<&Registers> {
        match (leaf, subleaf) {
            (0x4, Some(s)) => self.cache.get(s as usize),
            (0x7, Some(s)) => self.feat.get(s as usize),
            (0xb, Some(s)) => self.topo.get(s as usize),
            (0xd, Some(s)) => self.xstate.get(s as usize),
            (0x4 | 0x7 | 0xb | 0xd, None) => None,
            (0..=0xd, None) => self.basic.get(leaf as usize),
            (EXTD.., None) => self.extd.get((leaf - EXTD) as usize),
            _ => None,
        }
    }

    pub(super) fn slot_mut(&mut self, leaf: u32, subleaf: Option<u32>) -> Option<&mut Registers> {
        match (leaf, subleaf) {
            (0x4, Some(s)) => self.cache.get_mut(s as usize),
            (0x7, Some(s)) => self.feat.get_mut(s as usize),
            (0xb, Some(s)) => self.topo.get_mut(s as usize),
            (0xd, Some(s)) => self.xstate.get_mut(s as usize),
            (0x4 | 0x7 | 0xb | 0xd, None) => None,
            (0..=0xd, None) => self.basic.get_mut(leaf as usize),
            (EXTD.., None) => self.extd.get_mut((leaf - EXTD) as usize),
            _ => None,
        }
    }

    /// `x86_cpu_policy_to_featureset`: the words, from wherever the struct holds them
    /// (whatever the max leaves say).
    pub(super) fn words(&self) -> Words {
        let mut words = [0; NR_WORDS];
        for (word, info) in words.iter_mut().zip(WORDS.iter()) {
            *word = match info.source {
                WordSource::Cpuid { leaf, subleaf, register } => {
                    self.slot(leaf, subleaf).map_or(0, |registers| registers.get(register))
                }
                WordSource::Msr { index, high } if index == MSR_ARCH_CAPABILITIES => {
                    if high {
                        (self.arch_caps >> 32) as u32
                    } else {
                        self.arch_caps as u32
                    }
                }
                WordSource::Msr { .. } => 0,
            };
        }
        words
    }

    /// `x86_cpu_featureset_to_policy`: writes the words back in place.
    pub(super) fn set_words(&mut self, words: &Words) {
        for (&word, info) in words.iter().zip(WORDS.iter()) {
            match info.source {
                WordSource::Cpuid { leaf, subleaf, register } => {
                    if let Some(registers) = self.slot_mut(leaf, subleaf) {
                        registers.set(register, word);
                    }
                }
                WordSource::Msr { index, high } if index == MSR_ARCH_CAPABILITIES => {
                    let shift = if high { 32 } else { 0 };
                    self.arch_caps = (self.arch_caps & !(0xffff_ffff << shift)) | (u64::from(word) << shift);
                }
                WordSource::Msr { .. } => {}
            }
        }
    }

    /// `guest_common_max_leaves`: every leaf the struct can hold.
    pub(super) fn set_max_leaves(&mut self) {
        self.basic[0].eax = NR_BASIC as u32 - 1;
        self.feat[0].eax = NR_FEAT as u32 - 1;
        self.extd[0].eax = EXTD + NR_EXTD as u32 - 1;
    }

    /// `guest_common_default_leaves`: the host's max leaves.
    pub(super) fn set_leaves_of(&mut self, host: &XenPolicy) {
        self.basic[0].eax = host.basic[0].eax;
        self.feat[0].eax = host.feat[0].eax;
        self.extd[0].eax = host.extd[0].eax;
    }

    /// What `x86_cpuid_copy_to_buffer`/`x86_msr_copy_to_buffer` serialise, as a policy (zero
    /// leaves, including the hypervisor limit leaves Xen leaves at 0, are absent).
    pub(super) fn to_cpu_policy(&self) -> CpuPolicy {
        let mut out = CpuPolicy::new();
        for leaf in 0..=self.max_basic().min(NR_BASIC as u32 - 1) {
            match leaf {
                0x4 => {
                    for (i, registers) in self.cache.iter().enumerate() {
                        out.set_cpuid(CpuidKey::indexed(leaf, i as u32), *registers);
                        if registers.eax & 0x1f == 0 {
                            break;
                        }
                    }
                }
                0x7 => {
                    for i in 0..=self.feat[0].eax.min(NR_FEAT as u32 - 1) {
                        out.set_cpuid(CpuidKey::indexed(leaf, i), self.feat[i as usize]);
                    }
                }
                0xb => {
                    for (i, registers) in self.topo.iter().enumerate() {
                        out.set_cpuid(CpuidKey::indexed(leaf, i as u32), *registers);
                        if (registers.ecx >> 8) & 0xff == 0 {
                            break;
                        }
                    }
                }
                0xd => {
                    out.set_cpuid(CpuidKey::indexed(leaf, 0), self.xstate[0]);
                    out.set_cpuid(CpuidKey::indexed(leaf, 1), self.xstate[1]);
                    let mut xstates = self.xstates() >> 2;
                    let mut i = 2;
                    while xstates != 0 && i < NR_XSTATE {
                        out.set_cpuid(CpuidKey::indexed(leaf, i as u32), self.xstate[i]);
                        xstates >>= 1;
                        i += 1;
                    }
                }
                _ => out.set_cpuid(CpuidKey::plain(leaf), self.basic[leaf as usize]),
            }
        }
        for i in 0..=(self.max_extd() & 0xffff).min(NR_EXTD as u32 - 1) {
            out.set_cpuid(CpuidKey::plain(EXTD + i), self.extd[i as usize]);
        }
        out.set_msr(MSR_PLATFORM_INFO, if self.cpuid_faulting { PLATFORM_INFO_CPUID_FAULTING } else { 0 });
        out.set_msr(MSR_ARCH_CAPABILITIES, self.arch_caps);
        out
    }
}
