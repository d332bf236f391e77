//! Predicting the system policies Xen 4.20 builds at boot from a raw (hardware) policy.
//!
//! Given what the hardware reports (a libvirt CPU dump, the machine's own `cpuid`, or Xen's Raw
//! policy), [`derive_system_policies`] computes the Host, PV Max, PV Default, HVM Max and
//! HVM Default policies Xen 4.20 would compute on that machine: the static masks, the
//! dependency closure, the max-leaf bounding, the xstate leaf recomputation, the leaves Xen
//! clears or rewrites, and the vendor/model-specific adjustments its boot code makes.
//!
//! # Where the facts come from
//!
//! Xen 4.20's source, `RELEASE-4.20.3` (4.20.4 changes none of it; 4.20.0–4.20.2 differ, see
//! `docs/derive.md`):
//!
//! - `xen/arch/x86/cpu-policy.c`: `calculate_host_policy`, `calculate_{pv,hvm}_{max,def}_policy`,
//!   `guest_common_{max,default}_{leaves,feature_adjustments}`, `guest_common_feature_adjustments`,
//!   `sanitise_featureset`, `recalculate_xstate`, `recalculate_misc`;
//! - `xen/lib/x86/cpuid.c`: `x86_cpu_policy_fill_native`, `x86_cpu_policy_{to,from}_featureset`,
//!   `x86_cpuid_copy_to_buffer`;
//! - the boot code that decides the host featureset (`boot_cpu_data.x86_capability`):
//!   `xen/arch/x86/cpu/{common,amd,hygon,intel}.c`, `tsx.c`, `spec_ctrl.c`, `xstate.c`, `apic.c`,
//!   in the order `__start_xen` (`setup.c`) runs them;
//! - `xen/tools/gen-cpuid.py` (dependencies) and `cpufeatureset.h` (attributes), through the
//!   featureset crate's tables.
//!
//! What cannot be known from a raw dump (command line, microcode revision, MSR contents, VMX
//! capability MSRs, …) is taken at Xen's defaults, or made an explicit [`DeriveOptions`] field;
//! `docs/derive.md` lists every adjustment as modelled or not, with why.

use std::sync::OnceLock;

use cpupolicy_featureset::{
    dependents_of, feature_by_name, static_mask, static_mask_in, FeatureId, GuestKind, StaticMask, WordSource,
    XenRelease, DEPENDENCIES, FEATURES, NR_WORDS, WORDS,
};

use crate::{CpuPolicy, CpuidKey, Registers, SystemPolicies, SystemPolicy, Vendor, MSR_ARCH_CAPABILITIES};
use crate::{MSR_PLATFORM_INFO, PLATFORM_INFO_CPUID_FAULTING};
use cpupolicy_featureset::ids;

/// How Xen runs HVM guests: with hardware-assisted paging (EPT/NPT) or shadow paging. Decides
/// which static masks the HVM policies start from (`hvm_hap_supported()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HvmMode {
    /// Hardware-assisted paging: the HVM HAP masks.
    Hap,
    /// Shadow paging: the HVM shadow masks.
    Shadow,
}

/// What a raw policy cannot tell about the boot, made explicit.
///
/// Everything else Xen decides at boot is taken at its default: no `cpuid=`, `tsx=`,
/// `spec-ctrl=`, `smt=`, `vpmu=` or `dom0-cpuid=` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeriveOptions {
    /// HVM support and its paging mode; `None` for a Xen without HVM (no VMX/SVM, or
    /// `hvm=0`), which builds no HVM policies.
    pub hvm: Option<HvmMode>,
    /// Whether `MSR_PLATFORM_INFO` bit 31 (CPUID faulting) is set on this machine; `None` reads
    /// it from the raw policy's MSR 0xce (absent = clear). libvirt dumps do not record 0xce;
    /// most Intel parts since Ivy Bridge set it.
    pub cpuid_faulting: Option<bool>,
    /// Assume the machine runs current microcode: decides the adjustments Xen bases on the
    /// microcode revision (SBPB on AMD family 0x19, VERW_CLEAR for TSA on family 0x19,
    /// Broadwell's retpoline safety, the TSC_DEADLINE errata). Adjustments that need the
    /// revision and have no answer for a stepping are applied whatever this says.
    pub current_microcode: bool,
    /// The release whose construction is modelled: 4.20's in full, and each other release as
    /// 4.20 with what differs, each difference gated on the release that brought it (ERMS in
    /// max from 4.21; the host policy without `recalculate_misc` from 4.22; the SVM leaf clamped
    /// in the host policy before 4.19; max leaves extended and x2APIC tolerated in PV max from
    /// 4.17 — Debian's 4.17.7 has them as backports, 4.14.6 not), with each release's feature
    /// letters, names and dependencies. Exact on real boots of 4.14, 4.17 and 4.20 and on the
    /// 4.21.2 and 4.22.0 recordings; 4.15, 4.16, 4.18 and 4.19 follow the same gates unchecked.
    pub release: XenRelease,
}

impl Default for DeriveOptions {
    /// HVM with HAP, CPUID faulting as the raw policy says, current microcode, Xen 4.20.
    fn default() -> DeriveOptions {
        DeriveOptions {
            hvm: Some(HvmMode::Hap),
            cpuid_faulting: None,
            current_microcode: true,
            release: XenRelease::V4_20,
        }
    }
}

impl DeriveOptions {
    /// The options a raw policy suggests: HVM when it enumerates VMX or SVM, with HAP unless
    /// SVM lacks NPT (leaf 0x8000000a EDX bit 0; VMX's EPT is not in CPUID and is assumed),
    /// CPUID faulting from MSR 0xce, current microcode.
    pub fn detect(raw: &CpuPolicy) -> DeriveOptions {
        let words = raw.feature_words();
        let hvm = if has(&words, ids::VMX) {
            Some(HvmMode::Hap)
        } else if has(&words, ids::SVM) {
            Some(if svm_has_npt(raw) { HvmMode::Hap } else { HvmMode::Shadow })
        } else {
            None
        };
        DeriveOptions { hvm, ..DeriveOptions::default() }
    }
}

/// A raw policy Xen 4.20 could not have booted on, or options it contradicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    /// A leaf every x86-64 CPU has is absent (leaf 0: vendor and max leaf; leaf 1: signature
    /// and base features).
    #[error("the raw policy has no leaf {leaf:#x}; every x86-64 CPU reports it")]
    MissingLeaf {
        /// The leaf.
        leaf: u32,
    },
    /// Xen 4.20 supports Intel, AMD, Hygon, Centaur and Shanghai.
    #[error("vendor '{vendor}' is not one Xen 4.20 supports (Intel, AMD, Hygon, Centaur, Shanghai)")]
    UnknownVendor {
        /// The vendor string of leaf 0.
        vendor: String,
    },
    /// HVM asked for, but neither VMX nor SVM is enumerated: Xen enables HVM only with one.
    #[error("HVM requested, but the raw policy enumerates neither VMX nor SVM")]
    NoHardwareVirtualisation,
    /// HAP asked for on SVM hardware without NPT (leaf 0x8000000a EDX bit 0).
    #[error("HAP requested, but SVM without nested paging (leaf 0x8000000a EDX bit 0) can only shadow")]
    NoNestedPaging,
}

/// Computes the system policies Xen 4.20 builds from `raw` (Xen's `init_guest_cpu_policies`
/// after the boot code has settled the host featureset).
///
/// The result holds Raw (`raw` itself, unchanged), Host, PV Max and PV Default, and HVM Max
/// and HVM Default unless `options.hvm` is `None`. Each derived policy holds exactly what
/// Xen's format serialises of it (leaves up to its max leaves, zero leaves absent, MSRs 0xce
/// and 0x10a).
pub fn derive_system_policies(raw: &CpuPolicy, options: &DeriveOptions) -> Result<SystemPolicies, DeriveError> {
    if !raw.contains(CpuidKey::plain(0)) {
        return Err(DeriveError::MissingLeaf { leaf: 0 });
    }
    let vendor = raw.vendor();
    if let Vendor::Other(_) = vendor {
        return Err(DeriveError::UnknownVendor { vendor: vendor.to_string() });
    }
    if raw.max_basic_leaf() < 1 || !raw.contains(CpuidKey::plain(1)) {
        return Err(DeriveError::MissingLeaf { leaf: 1 });
    }
    let raw_words = raw.feature_words();
    if let Some(mode) = options.hvm {
        if !has(&raw_words, ids::VMX) && !has(&raw_words, ids::SVM) {
            return Err(DeriveError::NoHardwareVirtualisation);
        }
        if mode == HvmMode::Hap && !has(&raw_words, ids::VMX) && !svm_has_npt(raw) {
            return Err(DeriveError::NoNestedPaging);
        }
    }

    let xen_raw = XenPolicy::fill_native(raw);
    let cpu = Cpu::new(raw, vendor);
    let boot = Boot::new(&xen_raw, &cpu, raw, options);

    let host = host_policy(&xen_raw, &boot);
    let pv_max = pv_max_policy(&xen_raw, &host, &boot);
    let pv_def = pv_def_policy(&xen_raw, &host, &pv_max, &boot);

    let mut policies = SystemPolicies::new();
    policies.set(SystemPolicy::Raw, Some(raw.clone()));
    policies.set(SystemPolicy::Host, Some(host.to_cpu_policy()));
    policies.set(SystemPolicy::PvMax, Some(pv_max.to_cpu_policy()));
    policies.set(SystemPolicy::PvDefault, Some(pv_def.to_cpu_policy()));
    if let Some(mode) = options.hvm {
        let hvm_max = hvm_max_policy(&xen_raw, &host, &boot, mode);
        let hvm_def = hvm_def_policy(&xen_raw, &host, &hvm_max, &boot, mode);
        policies.set(SystemPolicy::HvmMax, Some(hvm_max.to_cpu_policy()));
        policies.set(SystemPolicy::HvmDefault, Some(hvm_def.to_cpu_policy()));
    }
    Ok(policies)
}

/// Whether SVM's leaf 0x8000000a enumerates nested paging (NPT, EDX bit 0).
fn svm_has_npt(raw: &CpuPolicy) -> bool {
    raw.max_extended_leaf() >= 0x8000_000a && raw.leaf(0x8000_000a).edx & 1 != 0
}

// ---------------------------------------------------------------------------------------------
// Featureset words, Xen 4.20's known set, masks and dependencies.

type Words = [u32; NR_WORDS];

/// Features the featureset crate marks as new in 4.21 that `RELEASE-4.20.3` already names
/// (backported with XSA-471/ITS/FRED work: `git diff RELEASE-4.20.0 RELEASE-4.20.3 --
/// xen/include/public/arch-x86/cpufeatureset.h`).
const BACKPORTED_TO_4_20_3: [FeatureId; 6] =
    [ids::VERW_CLEAR, ids::ITS_NO, ids::TSA_SQ_NO, ids::TSA_L1_NO, ids::PB_OPT_CTRL, ids::FRED];

fn has(words: &Words, id: FeatureId) -> bool {
    words[id.word()] & id.mask() != 0
}

fn set(words: &mut Words, id: FeatureId) {
    words[id.word()] |= id.mask();
}

fn clear(words: &mut Words, id: FeatureId) {
    words[id.word()] &= !id.mask();
}

fn and(words: &mut Words, mask: &Words) {
    for (word, m) in words.iter_mut().zip(mask) {
        *word &= m;
    }
}

/// `known_features[]` of Xen 4.20.3: every feature its header names.
fn known_4_20() -> &'static Words {
    static KNOWN: OnceLock<Words> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut words = [0; NR_WORDS];
        for feature in FEATURES {
            if feature.first_release <= XenRelease::V4_20 || BACKPORTED_TO_4_20_3.contains(&feature.id) {
                words[feature.word()] |= feature.id.mask();
            }
        }
        words
    })
}

/// `known_features[]` of the modelled release (4.20: 4.20.3's; other releases: their newest
/// point release's header).
fn known(release: XenRelease) -> Words {
    if release == XenRelease::V4_20 {
        *known_4_20()
    } else {
        crate::level::words_of(&static_mask_in(StaticMask::Known, release))
    }
}

/// One of gen-cpuid.py's static masks, as the modelled release computes it.
fn mask(which: StaticMask, release: XenRelease) -> Words {
    let set = if release == XenRelease::V4_20 { static_mask(which).clone() } else { static_mask_in(which, release) };
    let mut words = crate::level::words_of(&set);
    and(&mut words, &known(release));
    words
}

/// Every feature with dependents and the (transitive) set depending on it: gen-cpuid.py's
/// `deep_deps`. 4.21 added `CLFLUSH: [CLZERO]`; 4.20 has no such row.
fn deep_deps(release: XenRelease) -> &'static [(FeatureId, Words)] {
    static DEEP: OnceLock<[Vec<(FeatureId, Words)>; 2]> = OnceLock::new();
    let both = DEEP.get_or_init(|| {
        let rows = |with_clflush: bool| -> Vec<(FeatureId, Words)> {
            DEPENDENCIES
                .iter()
                .filter(|d| with_clflush || d.feature != "clflush")
                .filter_map(|d| feature_by_name(d.feature))
                .map(|feature| (feature.id, crate::level::words_of(&dependents_of(feature.id))))
                .collect()
        };
        [rows(false), rows(true)]
    });
    &both[usize::from(release > XenRelease::V4_20)]
}

/// The features that depend on `id` (`x86_cpu_policy_lookup_deep_deps`), empty if none.
fn dependents(id: FeatureId, release: XenRelease) -> Words {
    deep_deps(release).iter().find(|(f, _)| *f == id).map_or([0; NR_WORDS], |(_, words)| *words)
}

/// `sanitise_featureset` (cpu-policy.c): clamp to the known features, then clear everything
/// whose prerequisite is absent, transitively.
fn sanitise(words: &mut Words, release: XenRelease) {
    and(words, &known(release));
    let disabled: Vec<Words> =
        deep_deps(release).iter().filter(|(id, _)| words[id.word()] & id.mask() == 0).map(|(_, deps)| *deps).collect();
    for deps in disabled {
        for (word, dep) in words.iter_mut().zip(deps) {
            *word &= !dep;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Xen's `struct cpu_policy`: fixed arrays, as `cpu-policy.h` sizes them.

const NR_BASIC: usize = 0xd + 1;
const NR_CACHE: usize = 5 + 1;
const NR_FEAT: usize = 2 + 1;
const NR_TOPO: usize = 1 + 1;
const NR_XSTATE: usize = 62 + 1;
const NR_EXTD: usize = 0x21 + 1;
const EXTD: u32 = 0x8000_0000;

/// `CPUID_COMMON_1D_FEATURES`: the leaf 1 EDX bits AMD mirrors in 0x80000001 EDX (FPU, VME,
/// DE, PSE, TSC, MSR, PAE, MCE, CX8, APIC, MTRR, PGE, MCA, CMOV, PAT, PSE36, MMX, FXSR).
const COMMON_1D: u32 = 0x0183_f3ff;

/// Xen's in-memory policy: what a system policy holds, whether serialised or not.
#[derive(Clone, Debug, PartialEq, Eq)]
struct XenPolicy {
    basic: [Registers; NR_BASIC],
    cache: [Registers; NR_CACHE],
    feat: [Registers; NR_FEAT],
    topo: [Registers; NR_TOPO],
    xstate: [Registers; NR_XSTATE],
    extd: [Registers; NR_EXTD],
    /// MSR_PLATFORM_INFO: Xen keeps only bit 31.
    cpuid_faulting: bool,
    /// MSR_ARCH_CAPABILITIES.
    arch_caps: u64,
}

impl XenPolicy {
    fn empty() -> XenPolicy {
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
    fn fill_native(raw: &CpuPolicy) -> XenPolicy {
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

    fn max_basic(&self) -> u32 {
        self.basic[0].eax
    }

    fn max_extd(&self) -> u32 {
        self.extd[0].eax
    }

    /// `cpu_policy_xstates`: XCR0 | XSS components enumerated.
    fn xstates(&self) -> u64 {
        (u64::from(self.xstate[0].edx | self.xstate[1].edx) << 32) | u64::from(self.xstate[0].eax | self.xstate[1].ecx)
    }

    /// The struct's slot for a leaf, if it has one.
    fn slot(&self, leaf: u32, subleaf: Option<u32>) -> Option<&Registers> {
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

    fn slot_mut(&mut self, leaf: u32, subleaf: Option<u32>) -> Option<&mut Registers> {
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
    fn words(&self) -> Words {
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
    fn set_words(&mut self, words: &Words) {
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
    fn set_max_leaves(&mut self) {
        self.basic[0].eax = NR_BASIC as u32 - 1;
        self.feat[0].eax = NR_FEAT as u32 - 1;
        self.extd[0].eax = EXTD + NR_EXTD as u32 - 1;
    }

    /// `guest_common_default_leaves`: the host's max leaves.
    fn set_leaves_of(&mut self, host: &XenPolicy) {
        self.basic[0].eax = host.basic[0].eax;
        self.feat[0].eax = host.feat[0].eax;
        self.extd[0].eax = host.extd[0].eax;
    }

    /// What `x86_cpuid_copy_to_buffer`/`x86_msr_copy_to_buffer` serialise, as a policy (zero
    /// leaves, including the hypervisor limit leaves Xen leaves at 0, are absent).
    fn to_cpu_policy(&self) -> CpuPolicy {
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

// ---------------------------------------------------------------------------------------------
// The boot: what `boot_cpu_data.x86_capability` and the spec-ctrl/TSX globals end up as.

/// `boot_cpu_data`'s identity of the CPU.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    vendor: Vendor,
    /// `x86` (`get_cpu_family`): base family, plus the extended family for 0xf.
    family: u32,
    /// `x86_model`: base model, with the extended model from family 6 on.
    model: u32,
    /// `x86_mask`.
    stepping: u32,
    /// Leaf 1 EAX.
    signature: u32,
}

impl Cpu {
    fn new(raw: &CpuPolicy, vendor: Vendor) -> Cpu {
        Cpu { vendor, family: raw.family(), model: raw.model(), stepping: raw.stepping(), signature: raw.signature() }
    }

    fn intel_fam6(&self) -> bool {
        self.vendor == Vendor::Intel && self.family == 6
    }

    fn intel_fam6_model(&self, models: &[u32]) -> bool {
        self.intel_fam6() && models.contains(&self.model)
    }
}

/// The host featureset as Xen's boot code leaves it, and the decisions guests' policies read.
#[derive(Clone, Debug)]
struct Boot {
    /// The modelled release.
    release: XenRelease,
    cpu: Cpu,
    /// `boot_cpu_data.x86_capability` (the featureset words).
    caps: Words,
    /// `setup_force_cpu_cap` calls, re-applied on every CPU.
    forced: Words,
    /// `setup_clear_cpu_cap` calls (with their dependents), re-applied on every CPU.
    cleared: Words,
    /// tsx.c `rtm_disabled`.
    rtm_disabled: bool,
    /// X86_FEATURE_SC_MSR_PV: Xen virtualises MSR_SPEC_CTRL for PV guests.
    sc_msr_pv: bool,
    /// X86_FEATURE_SC_MSR_HVM.
    sc_msr_hvm: bool,
    /// amd.c `amd_virt_spec_ctrl`: VIRT_SPEC_CTRL.SSBD offered to HVM guests.
    amd_virt_spec_ctrl: bool,
    /// `cpu_has_cpuid_faulting` (the synthetic feature `probe_cpuid_faulting` forces).
    cpuid_faulting: bool,
    /// The raw policy's SEP and CLWB (read from `raw_cpu_policy` by the guest policies).
    raw_sep: bool,
    raw_clwb: bool,
}

impl Boot {
    fn new(raw: &XenPolicy, cpu: &Cpu, input: &CpuPolicy, options: &DeriveOptions) -> Boot {
        let raw_words = raw.words();
        let mut boot = Boot {
            release: options.release,
            cpu: *cpu,
            caps: [0; NR_WORDS],
            forced: [0; NR_WORDS],
            cleared: [0; NR_WORDS],
            rtm_disabled: false,
            sc_msr_pv: false,
            sc_msr_hvm: false,
            amd_virt_spec_ctrl: false,
            cpuid_faulting: false,
            raw_sep: has(&raw_words, ids::SEP),
            raw_clwb: has(&raw_words, ids::CLWB),
        };
        let hypervisor = has(&raw_words, ids::HYPERVISOR);

        // setup.c runs tsx_init() before the CPU is identified; it sees early_cpu_init()'s
        // words (leaf 1, 7:0 ECX/EDX, MSR_ARCH_CAPS).
        let mut opt_tsx = boot.tsx_init(&raw_words);

        // identify_cpu() -> generic_identify(): the CPUID words. The BSP is identified before
        // xstate_init() sets CR4.OSXSAVE and before setup.c sets CR4.PKE, so the OS bits read
        // 0 (and the APs' words are ANDed in). Extended words only with a valid 0x8000xxxx max.
        boot.caps = raw_words;
        clear(&mut boot.caps, ids::OSXSAVE);
        clear(&mut boot.caps, ids::OSPKE);
        if raw.max_extd() >> 16 != 0x8000 {
            for word in ["e1d", "e1c", "e7d", "e8b", "e21a", "e21c"] {
                if let Some(info) = WORDS.iter().find(|w| w.short_name == word) {
                    boot.caps[info.index] = 0;
                }
            }
        }
        boot.vendor_init(hypervisor);
        // identify_cpu(): clamp to known, then every CPU gets the forced/cleared bits.
        and(&mut boot.caps, &known(boot.release));
        for i in 0..NR_WORDS {
            boot.caps[i] = (boot.caps[i] | boot.forced[i]) & !boot.cleared[i];
        }
        // xstate_init(): no XSAVE without leaf 0xd.
        if has(&boot.caps, ids::XSAVE) && raw.max_basic() < 0xd {
            boot.clear_cap(ids::XSAVE);
        }

        // init_speculation_mitigations() and the errata checks of the boot path.
        boot.retpoline_calculations(options);
        boot.srso_calculations(raw, hypervisor, options);
        boot.rfds_calculations(hypervisor);
        boot.tsa_calculations(hypervisor, options);
        opt_tsx = boot.taa_tsx_choice(opt_tsx);
        boot.rtm_disabled =
            (has(&boot.caps, ids::TSX_CTRL) || has(&boot.caps, ids::TSX_FORCE_ABORT)) && opt_tsx & 1 == 0;
        boot.gds_calculations(hypervisor);
        boot.its_calculations(hypervisor);
        boot.msr_spec_ctrl(raw);
        boot.deadline_errata(hypervisor, options);

        // probe_cpuid_faulting(): Intel probes (not on family 0xf unless virtualised); AMD and
        // Hygon only when virtualised (amd_init_levelling); Centaur/Shanghai never.
        let probed = match cpu.vendor {
            Vendor::Intel => cpu.family != 0xf || hypervisor,
            Vendor::Amd | Vendor::Hygon => hypervisor,
            _ => false,
        };
        boot.cpuid_faulting = probed && options.cpuid_faulting.unwrap_or(input.cpuid_faulting());
        boot
    }

    /// `setup_force_cpu_cap`: refused for a feature already cleared.
    fn force_cap(&mut self, id: FeatureId) {
        if self.cleared[id.word()] & id.mask() != 0 {
            return;
        }
        self.forced[id.word()] |= id.mask();
        self.caps[id.word()] |= id.mask();
    }

    /// `setup_clear_cpu_cap`: the feature and everything depending on it.
    fn clear_cap(&mut self, id: FeatureId) {
        let mut gone = dependents(id, self.release);
        gone[id.word()] |= id.mask();
        for ((cleared, cap), gone) in self.cleared.iter_mut().zip(self.caps.iter_mut()).zip(gone) {
            *cleared |= gone;
            *cap &= !gone;
        }
    }

    fn has(&self, id: FeatureId) -> bool {
        has(&self.caps, id)
    }

    /// tsx.c `tsx_init` (first call): returns `opt_tsx` (-1 default, 0 off, 1 on).
    ///
    /// - TSX_CTRL with SRBDS_CTRL and RTM_ALWAYS_ABORT (Feb 2022 microcode de-featuring TSX on
    ///   client parts): default `tsx=0`.
    /// - TSX_FORCE_ABORT: default `tsx = !RTM_ALWAYS_ABORT`.
    /// - HLE and RTM forced visible in Xen's view whenever either control exists.
    fn tsx_init(&mut self, early: &Words) -> i8 {
        let mut opt_tsx: i8 = -1;
        let tsx_ctrl = has(early, ids::TSX_CTRL);
        let force_abort = has(early, ids::TSX_FORCE_ABORT);
        let always_abort = has(early, ids::RTM_ALWAYS_ABORT);
        if tsx_ctrl && has(early, ids::SRBDS_CTRL) && always_abort {
            opt_tsx = 0;
        }
        if force_abort && opt_tsx < 0 {
            opt_tsx = i8::from(!always_abort);
        }
        if always_abort {
            self.force_cap(ids::RTM_ALWAYS_ABORT);
        }
        if tsx_ctrl || force_abort {
            self.force_cap(ids::HLE);
            self.force_cap(ids::RTM);
        }
        opt_tsx
    }

    /// The vendor `c_init` hooks (amd.c `init_amd`, hygon.c `init_hygon`, intel.c
    /// `init_intel`, common.c `default_init`): plain bit edits on every CPU and their
    /// `setup_*_cpu_cap` calls.
    fn vendor_init(&mut self, hypervisor: bool) {
        let cpu = self.cpu;
        match cpu.vendor {
            Vendor::Amd | Vendor::Hygon => {
                // Family 0xf/0x11 LFENCE is dispatch serialising; on later parts amd_init_lfence()
                // sets DE_CFG.LFENCE_SERIALISE and reads it back. Under a hypervisor the MSR is
                // taken not to stick (as under QEMU/TCG, the virtualised Xen this project boots:
                // Xen 4.20 on `-cpu EPYC` reports no LFENCE_DISPATCH).
                let always = matches!(cpu.family, 0xf | 0x11);
                if !self.has(ids::LFENCE_DISPATCH) && (always || !hypervisor) {
                    self.force_cap(ids::LFENCE_DISPATCH);
                }
                if cpu.vendor == Vendor::Amd {
                    // The 3DNow! alias of PBE.
                    clear(&mut self.caps, ids::PBE);
                    // Erratum #110: LAHF_LM before K8 revision D.
                    if cpu.family == 0xf && cpu.model < 0x14 {
                        clear(&mut self.caps, ids::LAHF_LM);
                    }
                    // Zen2's null-selector behaviour, probed when not virtualised.
                    if !hypervisor && !self.has(ids::NSCB) && cpu.family == 0x17 && self.has(ids::AMD_STIBP) {
                        self.force_cap(ids::NSCB);
                    }
                    match cpu.family {
                        // RDRAND may stop working after S3 on Fam15h/16h.
                        0x15 | 0x16 if self.has(ids::RDRAND) => self.clear_cap(ids::RDRAND),
                        // Zen3 predates BTC_NO.
                        0x19 if !hypervisor => set(&mut self.caps, ids::BTC_NO),
                        _ => {}
                    }
                    // Fam15h models 0x10-0x1f: re-enable TopologyExtensions hidden by firmware.
                    if cpu.family == 0x15 && (0x10..=0x1f).contains(&cpu.model) && !hypervisor {
                        set(&mut self.caps, ids::TOPOEXT);
                    }
                    // MWAIT does not deep-sleep on Fam10h.
                    if cpu.family == 0x10 {
                        clear(&mut self.caps, ids::MONITOR);
                    }
                }
                // SYSENTER does not work in long mode.
                clear(&mut self.caps, ids::SEP);
            }
            Vendor::Intel => {
                // The GDS microcode makes CLWB slow on SKX/CLX/CPX.
                if cpu.intel_fam6_model(&[0x55]) {
                    self.clear_cap(ids::CLWB);
                }
            }
            // centaur.c/shanghai.c change no featureset bit; other vendors are refused.
            Vendor::Centaur | Vendor::Shanghai | Vendor::Other(_) => {}
        }
    }

    /// spec_ctrl.c `retpoline_calculations`: RRSBA with eIBRS; RSBA on parts where retpoline
    /// is unsafe.
    fn retpoline_calculations(&mut self, options: &DeriveOptions) {
        if !self.cpu.intel_fam6() {
            return;
        }
        if self.has(ids::EIBRS) {
            if !self.has(ids::RRSBA) {
                self.force_cap(ids::RRSBA);
            }
            return;
        }
        if self.has(ids::RSBA) || self.has(ids::ARCH_CAPS) {
            return;
        }
        let safe = match self.cpu.model {
            0x17 | 0x1d | 0x1e | 0x1f | 0x1a | 0x2e | 0x25 | 0x2c | 0x2f | 0x2a | 0x2d | 0x3a | 0x3e | 0x3c | 0x3f
            | 0x45 | 0x46 => true,
            // Broadwell: safe from a microcode revision on (per stepping for Broadwell D).
            0x3d | 0x47 | 0x4f => options.current_microcode,
            0x56 => (2..=5).contains(&self.cpu.stepping) && options.current_microcode,
            0x1c | 0x26 | 0x27 | 0x35 | 0x36 | 0x37 | 0x4d | 0x4c | 0x4a | 0x5a | 0x5c | 0x5f => true,
            _ => false,
        };
        if !safe {
            self.force_cap(ids::RSBA);
        }
    }

    /// spec_ctrl.c `srso_calculations` (AMD/Hygon, not virtualised).
    fn srso_calculations(&mut self, raw: &XenPolicy, hypervisor: bool, options: &DeriveOptions) {
        if !self.cpu.vendor.is_amd_like() || hypervisor {
            return;
        }
        let family = self.cpu.family;
        if family == 0x19 {
            // The SBPB write succeeds with the SRSO microcode.
            if options.current_microcode {
                self.force_cap(ids::IBPB_BRTYPE);
                self.force_cap(ids::SBPB);
            }
        } else if family < 0x19 && self.has(ids::IBPB) {
            self.force_cap(ids::IBPB_BRTYPE);
        }
        // check_smt_enabled(): siblings from 0x8000001e EBX[15:8] (TOPOEXT).
        let smt = self.has(ids::TOPOEXT) && raw.max_extd() >= 0x8000_001e && (raw.extd[0x1e].ebx >> 8) & 0xff != 0;
        if !smt && (family == 0x17 || family == 0x18) {
            self.force_cap(ids::SRSO_NO);
        }
    }

    /// spec_ctrl.c `rfds_calculations`: RFDS_NO on unaffected Intel family 6 parts.
    fn rfds_calculations(&mut self, hypervisor: bool) {
        if !self.cpu.intel_fam6() || self.has(ids::RFDS_NO) || self.has(ids::RFDS_CLEAR) || hypervisor {
            return;
        }
        let affected = match self.cpu.model {
            // Alder/Raptor Lake: the Xeon SKUs (not hybrid) have no Gracemont cores.
            0x97 | 0xb7 => self.has(ids::HYBRID),
            0x9a | 0xba | 0xbf | 0x5c | 0x5f | 0x7a | 0x86 | 0x96 | 0x9c | 0xbe => true,
            _ => false,
        };
        if !affected {
            self.force_cap(ids::RFDS_NO);
        }
    }

    /// spec_ctrl.c `tsa_calculations` (AMD, not virtualised).
    fn tsa_calculations(&mut self, hypervisor: bool, options: &DeriveOptions) {
        if self.cpu.vendor != Vendor::Amd || hypervisor || self.has(ids::TSA_SQ_NO) || self.has(ids::TSA_L1_NO) {
            return;
        }
        if self.cpu.family != 0x19 {
            self.force_cap(ids::TSA_SQ_NO);
            self.force_cap(ids::TSA_L1_NO);
            return;
        }
        // The microcode patch level's top 24 bits name the part (`cpu_sig.rev >> 8`).
        const KNOWN: [u32; 16] = [
            0x0a0011, 0x0a0012, 0x0a0082, 0x0a1011, 0x0a1012, 0x0a1081, 0x0a2010, 0x0a2012, 0x0a4041, 0x0a5000,
            0x0a6012, 0x0a7041, 0x0a7052, 0x0a7080, 0x0a70c0, 0x0aa002,
        ];
        if options.current_microcode && KNOWN.contains(&amd_patch_part(self.cpu.signature)) {
            self.force_cap(ids::VERW_CLEAR);
        }
    }

    /// spec_ctrl.c: the TAA default (`opt_tsx == -1` on a TAA-affected part with TSX_CTRL →
    /// `tsx=0`; the SMT/VERW condition is always true at the defaults) and the second
    /// `tsx_init()` call it makes.
    fn taa_tsx_choice(&mut self, opt_tsx: i8) -> i8 {
        let taa = (self.has(ids::RTM) || self.has(ids::TSX_CTRL)) && self.has(ids::MDS_NO) && !self.has(ids::TAA_NO);
        if opt_tsx == -1 && taa && self.has(ids::TSX_CTRL) {
            0
        } else {
            opt_tsx
        }
    }

    /// spec_ctrl.c `gds_calculations`: GDS_NO when unaffected or mitigated by microcode
    /// (GDS_CTRL, assumed not locked off); AVX off when affected without it.
    fn gds_calculations(&mut self, hypervisor: bool) {
        if !self.cpu.intel_fam6() {
            return;
        }
        let affected = if self.has(ids::GDS_NO) {
            false
        } else if self.has(ids::GDS_CTRL) {
            true
        } else if !self.has(ids::AVX) {
            false
        } else {
            matches!(self.cpu.model, 0x55 | 0x6a | 0x6c | 0x7e | 0x8c | 0x8d | 0x8e | 0x9e | 0xa5 | 0xa6 | 0xa7)
                || hypervisor
        };
        if self.has(ids::GDS_CTRL) {
            if !self.has(ids::GDS_NO) {
                self.force_cap(ids::GDS_NO);
            }
        } else if !affected {
            self.force_cap(ids::GDS_NO);
        } else if self.has(ids::AVX) {
            self.clear_cap(ids::AVX);
        }
    }

    /// spec_ctrl.c `its_calculations`: ITS_NO synthesised on unaffected parts.
    fn its_calculations(&mut self, hypervisor: bool) {
        if self.has(ids::ITS_NO) || hypervisor || self.cpu.vendor != Vendor::Intel {
            return;
        }
        let affected = self.cpu.family == 6
            && self.has(ids::EIBRS)
            && !self.has(ids::BHI_CTRL)
            && matches!(self.cpu.model, 0x55 | 0x8e | 0x9e | 0xa5 | 0xa6 | 0x6a | 0x6c | 0x7e | 0x8c | 0x8d | 0xa7);
        if !affected {
            self.force_cap(ids::ITS_NO);
        }
    }

    /// spec_ctrl.c: SC_MSR_PV/HVM (MSR_SPEC_CTRL virtualised: always on Intel with IBRSB; on
    /// AMD for HVM only, with IBRS and SVM's SPEC_CTRL bit) and amd.c/spec_ctrl.c
    /// `amd_virt_spec_ctrl` (VIRT_SSBD without AMD_SSBD: from the outer hypervisor, or the
    /// LS_CFG MSR of families 0x15–0x18).
    fn msr_spec_ctrl(&mut self, raw: &XenPolicy) {
        if self.has(ids::IBRSB) {
            self.sc_msr_pv = true;
            self.sc_msr_hvm = true;
        }
        if self.has(ids::IBRS) && raw.max_extd() >= 0x8000_000a && raw.extd[0xa].edx & (1 << 20) != 0 {
            self.sc_msr_hvm = true;
        }
        // set_legacy_ssbd(): LS_CFG's SSBD bit, read back. Under QEMU/TCG it sticks (Xen 4.20
        // on `-cpu EPYC` offers VIRT_SSBD to HVM guests), so a hypervisor does not rule it out.
        let legacy_ssbd = self.cpu.vendor.is_amd_like()
            && (0x15..=0x18).contains(&self.cpu.family)
            && !self.has(ids::SSB_NO)
            && !self.has(ids::AMD_SSBD)
            && !self.has(ids::VIRT_SSBD);
        self.amd_virt_spec_ctrl = !self.has(ids::AMD_SSBD) && (self.has(ids::VIRT_SSBD) || legacy_ssbd);
    }

    /// apic.c `check_deadline_errata`: TSC_DEADLINE off on parts whose microcode is older
    /// than the fix (always for steppings with no fixed revision).
    fn deadline_errata(&mut self, hypervisor: bool, options: &DeriveOptions) {
        if hypervisor || !self.cpu.intel_fam6() || !self.has(ids::TSC_DEADLINE) {
            return;
        }
        // None: no fixed revision (always affected); Some(0): never affected.
        let stepping = self.cpu.stepping;
        let fixed: Option<u32> = match self.cpu.model {
            0x3c => Some(0x22),
            0x3f => match stepping {
                2 => Some(0x3a),
                4 => Some(0x0f),
                _ => None,
            },
            0x45 => Some(0x20),
            0x46 => Some(0x17),
            0x3d => Some(0x25),
            0x47 => Some(0x17),
            0x4f => Some(0x0b00_0020),
            0x56 => match stepping {
                2 => Some(0x11),
                3 => Some(0x0700_000e),
                4 => Some(0x0f00_000c),
                5 => Some(0x0e00_0003),
                _ => None,
            },
            0x4e | 0x5e => Some(0xb2),
            0x55 => match stepping {
                0..=2 => None,
                3 => Some(0x0100_0136),
                4 => Some(0x0200_0014),
                _ => Some(0),
            },
            0x8e | 0x9e => Some(0x52),
            _ => Some(0),
        };
        let affected = match fixed {
            None => true,
            Some(0) => false,
            Some(_) => !options.current_microcode,
        };
        if affected {
            self.clear_cap(ids::TSC_DEADLINE);
        }
    }
}

/// The part an AMD microcode patch level names (`cpu_sig.rev >> 8`), from leaf 1 EAX:
/// extended family, extended model, 0, base model, stepping.
fn amd_patch_part(signature: u32) -> u32 {
    let ext_family = (signature >> 20) & 0xff;
    let ext_model = (signature >> 16) & 0xf;
    let model = (signature >> 4) & 0xf;
    let stepping = signature & 0xf;
    (ext_family << 16) | (ext_model << 12) | (model << 4) | stepping
}

// ---------------------------------------------------------------------------------------------
// The policies (cpu-policy.c).

/// `recalculate_xstate`: leaf 0xd rebuilt from the features: XCR0 components for XSAVE (x87,
/// SSE), AVX, MPX, AVX512F, PKU, AMX-TILE; sizes and offsets from the raw sub-leaves; the
/// uncompressed size the largest offset + size; 0xd:1 EAX the Da1 word, ECX/EDX (XSS) zero
/// (4.20 has no XSAVES-only state); component ECX attributes only as XSAVEC/XSAVES allow. No
/// XSAVE: the whole leaf is zero, Da1 included.
///
/// A component the raw policy enumerates no size/offset for (a virtual CPU offering MPX with
/// no BNDREGS in XCR0, say) counts as size 0 at offset 0, as in a release build of Xen (a
/// debug build asserts).
fn recalculate_xstate(p: &mut XenPolicy, raw: &XenPolicy) {
    let da1 = p.xstate[1].eax;
    p.xstate = [Registers::ZERO; NR_XSTATE];
    let words = p.words();
    if !has(&words, ids::XSAVE) {
        return;
    }
    let components: [(FeatureId, &[u32]); 5] = [
        (ids::AVX, &[2]),
        (ids::MPX, &[3, 4]),
        (ids::AVX512F, &[5, 6, 7]),
        (ids::PKU, &[9]),
        (ids::AMX_TILE, &[17, 18]),
    ];
    let mut xstates: u64 = 0b11;
    let mut size = 512 + 64;
    for (feature, bits) in components {
        if has(&words, feature) {
            for &bit in bits {
                xstates |= 1 << bit;
                let component = raw.xstate[bit as usize];
                size = size.max(component.ebx.saturating_add(component.eax));
            }
        }
    }
    p.xstate[0] = Registers::new(xstates as u32, 0, size, (xstates >> 32) as u32);
    p.xstate[1].eax = da1;
    let xsavec = da1 & ids::XSAVEC.mask() != 0;
    let xsaves = da1 & ids::XSAVES.mask() != 0;
    let ecx_mask = (if xsavec { 1 << 1 } else { 0 }) | (if xsaves { 1 } else { 0 });
    for i in 2..NR_XSTATE {
        if xstates & (1 << i) != 0 {
            let component = raw.xstate[i];
            p.xstate[i] = Registers::new(component.eax, component.ebx, component.ecx & ecx_mask, 0);
        }
    }
}

/// `recalculate_misc`: reserved and dynamic fields cleared, leaves not offered emptied, AMD's
/// duplicated fields copied.
fn recalculate_misc(p: &mut XenPolicy, vendor: Vendor) {
    p.basic[1].eax &= 0x0fff_0fff; // Processor type.
    p.basic[1].ebx &= 0x00ff_ffff; // Initial APIC ID: dynamic.
    for leaf in [0x5, 0x6, 0x8, 0xc] {
        p.basic[leaf] = Registers::ZERO; // MONITOR, thermal/power, reserved.
    }
    p.topo = [Registers::ZERO; NR_TOPO];
    p.extd[1].edx &= !COMMON_1D;
    p.extd[7] = Registers::new(0, 0, 0, p.extd[7].edx);
    p.extd[8].edx = 0;
    match vendor {
        Vendor::Intel => {
            p.basic[2].eax = (p.basic[2].eax & !0xff) | 1; // One leaf 2 query.
            p.basic[3] = Registers::ZERO; // PSN.
            p.basic[9] = Registers::ZERO; // DCA.
            p.extd[0] = Registers::new(p.extd[0].eax, 0, 0, 0);
            p.extd[1].eax = 0;
            p.extd[1].ebx = 0;
            p.extd[5] = Registers::ZERO;
            p.extd[6] = Registers::new(0, 0, p.extd[6].ecx, 0);
            p.extd[8].eax &= 0xffff;
            p.extd[8].ecx = 0;
        }
        Vendor::Amd | Vendor::Hygon => {
            p.basic[2] = Registers::ZERO;
            p.basic[3] = Registers::ZERO;
            p.cache = [Registers::ZERO; NR_CACHE];
            p.basic[9] = Registers::ZERO;
            p.basic[0xa] = Registers::ZERO;
            p.extd[0] = Registers::new(p.extd[0].eax, p.basic[0].ebx, p.basic[0].ecx, p.basic[0].edx);
            p.extd[1].eax = p.basic[1].eax;
            p.extd[1].ebx &= 0xff00_ffff;
            p.extd[1].edx |= p.basic[1].edx & COMMON_1D;
            p.extd[8].eax &= 0xffff; // GuestMaxPhysAddr hidden.
            p.extd[8].ecx &= 0x0003_f0ff;
            p.extd[9] = Registers::ZERO;
            for leaf in (0xb..=0x18).chain(0x1b..=0x20) {
                p.extd[leaf] = Registers::ZERO;
            }
            p.extd[0x21].ebx = 0;
            p.extd[0x21].edx = 0;
        }
        _ => {}
    }
}

/// `calculate_host_policy`.
fn host_policy(raw: &XenPolicy, boot: &Boot) -> XenPolicy {
    let mut p = raw.clone();
    p.basic[0].eax = p.basic[0].eax.min(NR_BASIC as u32 - 1);
    p.feat[0].eax = p.feat[0].eax.min(NR_FEAT as u32 - 1);
    let mut max_extd = p.max_extd();
    // LFENCE made dispatch serialising: extend to the leaf enumerating it.
    if has(&boot.caps, ids::LFENCE_DISPATCH) {
        max_extd = max_extd.max(0x8000_0021);
    }
    p.extd[0].eax = EXTD | (max_extd & 0xffff).min(NR_EXTD as u32 - 1);
    p.set_words(&boot.caps);
    recalculate_xstate(&mut p, raw);
    // 4.22 ("move invocation of recalculate_misc()") applies it to the guest policies only.
    if boot.release < XenRelease::V4_22 {
        recalculate_misc(&mut p, boot.cpu.vendor);
    }
    // Before 4.19 the host policy's SVM leaf was clamped to what nested SVM implements, with
    // VMCB clean bits and the TSC ratio MSR (disabled for guests in 4.19) always emulated.
    if boot.release < XenRelease::V4_19 && has(&p.words(), ids::SVM) {
        // NPT (0), LBRV (1), NRIPS (3), DECODEASSISTS (7), PAUSEFILTER (10); VMCBCLEAN (5), TSCRATEMSR (4).
        const KEPT: u32 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 7) | (1 << 10);
        p.extd[0xa].edx = (p.extd[0xa].edx & KEPT) | (1 << 5) | (1 << 4);
    }
    // vpmu is off by default: no architectural PMU leaf.
    p.basic[0xa] = Registers::ZERO;
    p.cpuid_faulting = boot.cpuid_faulting;
    p
}

/// `guest_common_max_feature_adjustments`.
fn max_feature_adjustments(fs: &mut Words, boot: &Boot) {
    match boot.cpu.vendor {
        Vendor::Intel => {
            // ARCH_CAPS is plain data; RSBA/RRSBA mean "may migrate to a part with RSB
            // underflow to alternative predictors", visible in max in every case.
            set(fs, ids::ARCH_CAPS);
            set(fs, ids::RSBA);
            set(fs, ids::RRSBA);
            // VERW may have scrubbing side effects somewhere in the pool.
            set(fs, ids::MD_CLEAR);
            set(fs, ids::FB_CLEAR);
            set(fs, ids::RFDS_CLEAR);
            // CLWB hidden in the host on SKX/CLX/CPX for speed, still safe for VMs.
            if boot.cpu.intel_fam6_model(&[0x55]) && boot.raw_clwb {
                set(fs, ids::CLWB);
            }
            // RTM_ALWAYS_ABORT means "XBEGIN won't fault": fine wherever RTM is.
            if has(fs, ids::RTM) {
                set(fs, ids::RTM_ALWAYS_ABORT);
            }
        }
        Vendor::Amd => set(fs, ids::VERW_CLEAR),
        _ => {}
    }
    // Topology is the toolstack's choice.
    set(fs, ids::HTT);
    set(fs, ids::CMP_LEGACY);
    // 4.21: ERMS is a performance hint; a VM that saw it works anywhere.
    if boot.release >= XenRelease::V4_21 {
        set(fs, ids::ERMS);
    }
}

/// `guest_common_default_feature_adjustments`.
fn default_feature_adjustments(fs: &mut Words, boot: &Boot) {
    let host = &boot.caps;
    // 4.21: ERMS, set in every max, defaults to the host's.
    if boot.release >= XenRelease::V4_21 && !has(host, ids::ERMS) {
        clear(fs, ids::ERMS);
    }
    match boot.cpu.vendor {
        Vendor::Intel => {
            // SRBDS: Ivy Bridge client RDRAND leaks and gets no microcode (XSA-320).
            if boot.cpu.intel_fam6_model(&[0x3a]) && has(host, ids::RDRAND) {
                clear(fs, ids::RDRAND);
            }
            for id in [ids::MD_CLEAR, ids::FB_CLEAR, ids::RFDS_CLEAR] {
                if !has(host, id) {
                    clear(fs, id);
                }
            }
            if boot.cpu.intel_fam6_model(&[0x55]) && boot.raw_clwb {
                clear(fs, ids::CLWB);
            }
            // TSX force-aborting: no RTM by default, but XBEGIN is safe to use.
            if boot.rtm_disabled {
                clear(fs, ids::RTM);
                set(fs, ids::RTM_ALWAYS_ABORT);
            }
        }
        Vendor::Amd if !has(host, ids::VERW_CLEAR) => clear(fs, ids::VERW_CLEAR),
        _ => {}
    }
    if !has(host, ids::HTT) {
        clear(fs, ids::HTT);
    }
    if !has(host, ids::CMP_LEGACY) {
        clear(fs, ids::CMP_LEGACY);
    }
}

/// `guest_common_feature_adjustments`.
fn common_feature_adjustments(fs: &mut Words, host: &XenPolicy) {
    set(fs, ids::HYPERVISOR);
    if has(fs, ids::IBRSB) {
        set(fs, ids::STIBP);
    }
    if has(fs, ids::IBRS) {
        set(fs, ids::AMD_STIBP);
    }
    if has(&host.words(), ids::IBRSB) {
        set(fs, ids::IBPB);
    }
}

/// The RSBA/RRSBA reflection of the default policies: with ARCH_CAPS visible on a host with
/// RSBA or RRSBA, RRSBA if the guest sees eIBRS, else RSBA.
fn reflect_rsba(fs: &mut Words, boot: &Boot) {
    if has(fs, ids::ARCH_CAPS) && (has(&boot.caps, ids::RSBA) || has(&boot.caps, ids::RRSBA)) {
        set(fs, if has(fs, ids::EIBRS) { ids::RRSBA } else { ids::RSBA });
    }
}

/// `calculate_pv_max_policy`.
fn pv_max_policy(raw: &XenPolicy, host: &XenPolicy, boot: &Boot) -> XenPolicy {
    let mut p = host.clone();
    if boot.release >= XenRelease::V4_22 {
        recalculate_misc(&mut p, boot.cpu.vendor);
    }
    // guest_common_max_leaves (4.20's "Extend the guest max policy max leaf/subleaves", in
    // Debian's 4.17.7 as a backport; 4.14.6 keeps the host's).
    if boot.release >= XenRelease::V4_17 {
        p.set_max_leaves();
    }
    let mut fs = p.words();
    and(&mut fs, &mask(StaticMask::Max(GuestKind::Pv), boot.release));
    // Xen used to leak the host's x2APIC bit: tolerate VMs which saw it (4.19's "Hide x2APIC
    // from PV guests", in Debian's 4.17.7 as a backport; not in 4.14.6).
    if boot.release >= XenRelease::V4_17 {
        set(&mut fs, ids::X2APIC);
    }
    if !boot.sc_msr_pv {
        clear(&mut fs, ids::IBRSB);
        clear(&mut fs, ids::IBRS);
    }
    // SRSO_U/S_NO fits PV64 only with BP_SPEC_REDUCE active (default on with SRSO_MSR_FIX).
    if !has(&boot.caps, ids::SRSO_MSR_FIX) {
        clear(&mut fs, ids::SRSO_US_NO);
    }
    max_feature_adjustments(&mut fs, boot);
    common_feature_adjustments(&mut fs, host);
    sanitise(&mut fs, boot.release);
    p.set_words(&fs);
    recalculate_xstate(&mut p, raw);
    p.extd[0xa] = Registers::ZERO; // No SVM for PV guests.
    p
}

/// `calculate_pv_def_policy`.
fn pv_def_policy(raw: &XenPolicy, host: &XenPolicy, max: &XenPolicy, boot: &Boot) -> XenPolicy {
    let mut p = max.clone();
    p.set_leaves_of(host);
    let mut fs = p.words();
    and(&mut fs, &mask(StaticMask::Default(GuestKind::Pv), boot.release));
    common_feature_adjustments(&mut fs, host);
    default_feature_adjustments(&mut fs, boot);
    sanitise(&mut fs, boot.release);
    reflect_rsba(&mut fs, boot);
    p.set_words(&fs);
    recalculate_xstate(&mut p, raw);
    p
}

fn hvm_kind(mode: HvmMode) -> GuestKind {
    match mode {
        HvmMode::Hap => GuestKind::HvmHap,
        HvmMode::Shadow => GuestKind::HvmShadow,
    }
}

/// `calculate_hvm_max_policy`.
fn hvm_max_policy(raw: &XenPolicy, host: &XenPolicy, boot: &Boot, mode: HvmMode) -> XenPolicy {
    let mut p = host.clone();
    if boot.release >= XenRelease::V4_22 {
        recalculate_misc(&mut p, boot.cpu.vendor);
    }
    // guest_common_max_leaves (4.20's "Extend the guest max policy max leaf/subleaves", in
    // Debian's 4.17.7 as a backport; 4.14.6 keeps the host's).
    if boot.release >= XenRelease::V4_17 {
        p.set_max_leaves();
    }
    let mut fs = p.words();
    and(&mut fs, &mask(StaticMask::Max(hvm_kind(mode)), boot.release));
    // Xen emulates the (x2)APIC whatever the host's state.
    set(&mut fs, ids::APIC);
    set(&mut fs, ids::X2APIC);
    // EFER.LMSLE is not supported.
    set(&mut fs, ids::NO_LMSL);
    // AMD: SYSENTER works for HVM guests in protected mode.
    if boot.cpu.vendor.is_amd_like() && boot.raw_sep {
        set(&mut fs, ids::SEP);
    }
    if boot.amd_virt_spec_ctrl {
        set(&mut fs, ids::VIRT_SSBD);
    }
    if !boot.sc_msr_hvm {
        clear(&mut fs, ids::IBRSB);
        clear(&mut fs, ids::IBRS);
    } else if has(&boot.caps, ids::AMD_SSBD) {
        // VIRT_SPEC_CTRL.SSBD implementable with SPEC_CTRL.SSBD: max only.
        set(&mut fs, ids::VIRT_SSBD);
    }
    // PKS needs the VMX entry/exit controls.
    if !has(&boot.caps, ids::VMX) {
        clear(&mut fs, ids::PKS);
    }
    // Nested SVM: only the features Xen implements, plus VMCB clean bits (always emulated).
    // Before 4.19 ("Move SVM features exposed to guest into hvm_max_cpu_policy") this was done
    // to the host policy, which the HVM max copied.
    if boot.release >= XenRelease::V4_19 && has(&host.words(), ids::SVM) {
        // NPT (0), LBRV (1), NRIPS (3), DECODEASSISTS (7), PAUSEFILTER (10).
        const KEPT: u32 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 7) | (1 << 10);
        p.extd[0xa].edx = (p.extd[0xa].edx & KEPT) | (1 << 5);
    }
    max_feature_adjustments(&mut fs, boot);
    common_feature_adjustments(&mut fs, host);
    sanitise(&mut fs, boot.release);
    p.set_words(&fs);
    recalculate_xstate(&mut p, raw);
    // CPUID faulting can always be emulated for HVM guests.
    p.cpuid_faulting = true;
    p
}

/// `calculate_hvm_def_policy`.
fn hvm_def_policy(raw: &XenPolicy, host: &XenPolicy, max: &XenPolicy, boot: &Boot, mode: HvmMode) -> XenPolicy {
    let mut p = max.clone();
    p.set_leaves_of(host);
    let mut fs = p.words();
    and(&mut fs, &mask(StaticMask::Default(hvm_kind(mode)), boot.release));
    common_feature_adjustments(&mut fs, host);
    default_feature_adjustments(&mut fs, boot);
    if boot.amd_virt_spec_ctrl {
        set(&mut fs, ids::VIRT_SSBD);
    }
    sanitise(&mut fs, boot.release);
    reflect_rsba(&mut fs, boot);
    p.set_words(&fs);
    recalculate_xstate(&mut p, raw);
    p
}

#[cfg(test)]
mod tests {
    //! Each adjustment against a small synthetic raw policy; the facts quoted are Xen
    //! `RELEASE-4.20.3`'s.

    use super::*;
    use cpupolicy_featureset::{known, Featureset};

    const INTEL: [u32; 3] = [0x756e_6547, 0x6c65_746e, 0x4965_6e69]; // EBX ECX EDX
    const AMD: [u32; 3] = [0x6874_7541, 0x444d_4163, 0x6974_6e65];

    /// A minimal 64-bit raw policy: leaves 0, 1, 0xd (x87/SSE/AVX), 0x80000000/1/8, with
    /// VMX (Intel) or SVM with NPT (AMD, leaf 0x8000000a).
    fn raw(vendor: [u32; 3], signature: u32, features: &[&str]) -> CpuPolicy {
        let mut p = raw_without_hvm(vendor, signature, features);
        if vendor == INTEL {
            let mut fs = p.featureset();
            fs.insert(ids::VMX);
            p.set_featureset(&fs).unwrap();
        } else {
            let mut fs = p.featureset();
            fs.insert(ids::SVM);
            p.set_featureset(&fs).unwrap();
            p.set_max_extended_leaf(0x8000_000a);
            p.set_cpuid(CpuidKey::plain(0x8000_000a), Registers::new(1, 0x10, 0, 1));
        }
        p
    }

    /// [`raw`] without VMX/SVM.
    fn raw_without_hvm(vendor: [u32; 3], signature: u32, features: &[&str]) -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, vendor[0], vendor[1], vendor[2]));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(signature, 0x0102_0800, 0, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 0), Registers::new(0x7, 0x340, 0x340, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 1), Registers::new(0, 0x240, 0, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 2), Registers::new(0x100, 0x240, 0, 0));
        p.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0008, vendor[0], vendor[1], vendor[2]));
        p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3030, 0, 0, 0));
        let base = ["fpu", "pae", "tsc", "apic", "cx8", "fxsr", "sse", "sse2", "lm", "nx", "syscall", "sse3"];
        let mut fs = Featureset::from_names(base.iter().chain(features).copied()).unwrap();
        fs.union_with(&p.featureset());
        p.set_featureset(&fs).unwrap();
        p
    }

    fn derive(raw: &CpuPolicy, options: DeriveOptions) -> SystemPolicies {
        derive_system_policies(raw, &options).unwrap()
    }

    fn get(policies: &SystemPolicies, which: SystemPolicy) -> &CpuPolicy {
        policies.get(which).unwrap()
    }

    fn has_in(policies: &SystemPolicies, which: SystemPolicy, id: FeatureId) -> bool {
        get(policies, which).has_feature(id)
    }

    const SKYLAKE_SP: u32 = 0x0005_0654; // family 6 model 0x55 stepping 4
    const HASWELL: u32 = 0x0003_06c3; // family 6 model 0x3c stepping 3
    const ZEN2: u32 = 0x0083_0f10; // family 0x17 model 0x31
    const ZEN3: u32 = 0x00a0_0f11; // family 0x19 model 0x01 stepping 1 (Milan B1)

    #[test]
    fn arbitrary_input_never_panics() {
        // xorshift: leaves and MSRs at random, for each vendor, with every option.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let vendors = [INTEL, AMD, [0x6f67_7948, 0x656e_6975, 0x6e65_476e], [0x746e_6543, 0x736c_7561, 0x4872_7561]];
        let mut derived = 0;
        for round in 0..400 {
            let mut p = CpuPolicy::new();
            let vendor = vendors[round % vendors.len()];
            let n = (next() % 40) as usize;
            for _ in 0..n {
                let r = next();
                let leaf = match r % 4 {
                    0 => (r >> 8) as u32 % 0x20,
                    1 => 0x8000_0000 | ((r >> 8) as u32 % 0x30),
                    2 => 0x4000_0000 | ((r >> 8) as u32 % 0x200),
                    _ => (r >> 8) as u32,
                };
                let subleaf = if r & 0x10 != 0 { Some((r >> 40) as u32 % 70) } else { None };
                let regs = Registers::new(next() as u32, next() as u32, next() as u32, next() as u32);
                p.set_cpuid(CpuidKey::new(leaf, subleaf), regs);
            }
            if round % 3 != 0 {
                let leaf0 = p.leaf(0);
                p.set_cpuid(CpuidKey::plain(0), Registers::new(leaf0.eax | 1, vendor[0], vendor[1], vendor[2]));
                p.set_cpuid(CpuidKey::plain(1), Registers::new(next() as u32, 0, next() as u32, next() as u32));
            }
            p.set_msr(MSR_ARCH_CAPABILITIES, next());
            p.set_msr(MSR_PLATFORM_INFO, next());
            for hvm in [None, Some(HvmMode::Hap), Some(HvmMode::Shadow)] {
                for current_microcode in [false, true] {
                    let options =
                        DeriveOptions { hvm, cpuid_faulting: None, current_microcode, ..DeriveOptions::default() };
                    if let Ok(policies) = derive_system_policies(&p, &options) {
                        derived += 1;
                        for (which, policy) in policies.iter().filter(|(w, _)| *w != SystemPolicy::Raw) {
                            let wire = policy.to_wire(&crate::WireLimits::LATEST);
                            assert!(wire.dropped.is_empty(), "{which}: {:?}", wire.dropped);
                        }
                    }
                }
            }
        }
        assert!(derived > 300, "{derived}");
    }

    #[test]
    fn known_set_is_4_20_3s() {
        // gen-cpuid.py 4.21 names LASS, LAM, CPPC, … which 4.20.3 does not: a host policy
        // never carries them. FRED, VERW_CLEAR and ITS_NO were backported to 4.20.3.
        let known = known_4_20();
        for name in ["fred", "verw-clear", "its-no", "tsa-sq-no", "avx", "srso-msr-fix"] {
            assert!(has(known, cpupolicy_featureset::known(name)), "{name}");
        }
        for name in ["lass", "lam", "cppc", "msrlist", "arch-perf-mon"] {
            assert!(!has(known, cpupolicy_featureset::known(name)), "{name}");
        }
    }

    #[test]
    fn dependencies_are_4_20s() {
        // gen-cpuid.py 4.20.3 has no `CLFLUSH: [CLZERO]` row (added in 4.21).
        let mut fs = [0; NR_WORDS];
        set(&mut fs, ids::CLZERO);
        sanitise(&mut fs, XenRelease::V4_20);
        assert!(has(&fs, ids::CLZERO));
        // 4.21 has it.
        sanitise(&mut fs, XenRelease::V4_21);
        assert!(!has(&fs, ids::CLZERO));
        // XSAVE: [.., AVX, ..], AVX: [.., AVX2, ..], AVX2: [AVX512F, ..].
        let mut fs = [0; NR_WORDS];
        for name in ["avx", "avx2", "avx512f", "avx512bw", "fma"] {
            set(&mut fs, cpupolicy_featureset::known(name));
        }
        sanitise(&mut fs, XenRelease::V4_20);
        assert_eq!(fs, [0; NR_WORDS]);
    }

    #[test]
    fn rtm_always_abort_hides_rtm_from_default_but_not_max() {
        // tsx.c tsx_init(): TSX_FORCE_ABORT with RTM_ALWAYS_ABORT → `opt_tsx = 0` →
        // rtm_disabled; HLE/RTM forced visible in Xen's own view.
        // cpu-policy.c guest_common_default_feature_adjustments(): `if ( rtm_disabled )
        // { __clear_bit(RTM); __set_bit(RTM_ALWAYS_ABORT); }`; max keeps RTM and, from
        // guest_common_max_feature_adjustments(), RTM_ALWAYS_ABORT since RTM is there.
        let p = raw(INTEL, 0x0008_06ea, &["tsx-force-abort", "rtm-always-abort"]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::Host, ids::RTM));
        assert!(has_in(&policies, SystemPolicy::Host, ids::HLE));
        for which in [SystemPolicy::PvMax, SystemPolicy::HvmMax] {
            assert!(has_in(&policies, which, ids::RTM), "{which}");
            assert!(has_in(&policies, which, ids::HLE), "{which}: HLE is 'a', max only");
            assert!(has_in(&policies, which, ids::RTM_ALWAYS_ABORT), "{which}");
        }
        for which in [SystemPolicy::PvDefault, SystemPolicy::HvmDefault] {
            assert!(!has_in(&policies, which, ids::RTM), "{which}");
            assert!(!has_in(&policies, which, ids::HLE), "{which}");
            assert!(has_in(&policies, which, ids::RTM_ALWAYS_ABORT), "{which}");
        }
    }

    #[test]
    fn working_tsx_stays_in_default() {
        // TSX_FORCE_ABORT without RTM_ALWAYS_ABORT (server SKX): `opt_tsx = 1`.
        let p = raw(INTEL, SKYLAKE_SP, &["tsx-force-abort", "rtm", "hle"]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::HvmDefault, ids::RTM));
        assert!(!has_in(&policies, SystemPolicy::HvmDefault, ids::RTM_ALWAYS_ABORT));
        assert!(has_in(&policies, SystemPolicy::HvmMax, ids::RTM_ALWAYS_ABORT));
    }

    #[test]
    fn taa_affected_parts_default_to_tsx_off() {
        // spec_ctrl.c: `cpu_has_bug_taa = (rtm || tsx_ctrl) && mds_no && !taa_no`; with
        // TSX_CTRL and no tsx= choice, `opt_tsx = 0; tsx_init();`.
        let mut p = raw(INTEL, 0x0005_0657, &["arch-caps", "rtm", "hle"]);
        p.set_msr(MSR_ARCH_CAPABILITIES, (1 << 5) | (1 << 7)); // MDS_NO, TSX_CTRL
        let policies = derive(&p, DeriveOptions::default());
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::RTM));
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::RTM));
        // TAA_NO too: TSX stays on.
        p.set_msr(MSR_ARCH_CAPABILITIES, (1 << 5) | (1 << 7) | (1 << 8));
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::PvDefault, ids::RTM));
    }

    #[test]
    fn intel_max_offers_arch_caps_and_rsba_default_reflects_the_host() {
        // guest_common_max_feature_adjustments(): ARCH_CAPS, RSBA, RRSBA, MD_CLEAR, FB_CLEAR,
        // RFDS_CLEAR set in max on Intel; sanitise_featureset() then drops RRSBA without
        // EIBRS (`EIBRS: [RRSBA]`).
        let p = raw(INTEL, HASWELL, &["md-clear"]);
        let policies = derive(&p, DeriveOptions::default());
        for name in ["arch-caps", "rsba", "md-clear", "fb-clear", "rfds-clear"] {
            assert!(has_in(&policies, SystemPolicy::PvMax, known(name)), "{name}");
        }
        assert!(!has_in(&policies, SystemPolicy::PvMax, ids::RRSBA));
        // Default: the *_CLEAR bits back to the host's (MD_CLEAR kept, FB/RFDS_CLEAR not).
        // ARCH_CAPS ('!A') stays: calculate_pv_def_policy() starts from PV max and nothing
        // clears it, so every Intel default policy enumerates MSR_ARCH_CAPS, with the bits
        // the host synthesised (GDS_NO, RFDS_NO, ITS_NO on this unaffected Haswell).
        assert!(has_in(&policies, SystemPolicy::PvDefault, ids::MD_CLEAR));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::FB_CLEAR));
        assert!(has_in(&policies, SystemPolicy::PvDefault, ids::ARCH_CAPS));
        for name in ["gds-no", "rfds-no", "its-no"] {
            assert!(has_in(&policies, SystemPolicy::PvDefault, known(name)), "{name}");
        }
        // Haswell is retpoline-safe: no RSBA in the host, none reflected.
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::RSBA));
        // Skylake is not: RSBA forced in the host and reflected (no eIBRS → RSBA).
        let p = raw(INTEL, 0x0004_06e3, &[]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::HvmDefault, ids::RSBA));
        assert!(!has_in(&policies, SystemPolicy::HvmDefault, ids::RRSBA));
    }

    #[test]
    fn eibrs_hosts_get_rrsba_forced_and_reflected() {
        // retpoline_calculations(): eIBRS without RRSBA → setup_force_cpu_cap(RRSBA).
        // calculate_*_def_policy(): ARCH_CAPS && (rsba || rrsba) → RRSBA when eIBRS visible.
        let mut p = raw(INTEL, 0x0006_06a6, &["arch-caps", "ibrsb"]);
        p.set_msr(MSR_ARCH_CAPABILITIES, 1 << 1); // IBRS_ALL (eIBRS)
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::Host, ids::RRSBA));
        for which in [SystemPolicy::PvDefault, SystemPolicy::HvmDefault] {
            assert!(has_in(&policies, which, ids::RRSBA), "{which}");
            assert!(!has_in(&policies, which, ids::RSBA), "{which}");
        }
    }

    #[test]
    fn old_intel_gets_rsba_and_gds_no_in_the_host_msr_without_arch_caps() {
        // retpoline_calculations(): Skylake (0x4e/0x55/…) not retpoline safe → RSBA forced.
        // gds_calculations(): unaffected → GDS_NO forced. rfds_calculations(): RFDS_NO.
        // Forced bits land in the host's MSR_ARCH_CAPS words whether or not ARCH_CAPS is
        // enumerated (calculate_host_policy() does not sanitise).
        let p = raw(INTEL, 0x0004_06e3, &[]); // Skylake M, no AVX: GDS unaffected
        let policies = derive(&p, DeriveOptions::default());
        let host = get(&policies, SystemPolicy::Host);
        assert!(!host.has_feature(ids::ARCH_CAPS));
        for name in ["rsba", "gds-no", "rfds-no", "its-no"] {
            assert!(host.has_feature(known(name)), "{name}");
        }
    }

    #[test]
    fn gds_affected_without_microcode_loses_avx() {
        // gds_calculations(): affected (model 0x55, AVX), no GDS_CTRL → clear AVX and, through
        // setup_clear_cpu_cap()'s deep deps, AVX2/FMA/… too.
        let p = raw(INTEL, SKYLAKE_SP, &["xsave", "avx", "avx2", "fma"]);
        let policies = derive(&p, DeriveOptions::default());
        for which in [SystemPolicy::Host, SystemPolicy::PvMax, SystemPolicy::HvmDefault] {
            assert!(!has_in(&policies, which, ids::AVX), "{which}");
            assert!(!has_in(&policies, which, ids::AVX2), "{which}");
        }
        // With the microcode (GDS_CTRL), AVX stays and GDS_NO is synthesised.
        let mut p = raw(INTEL, SKYLAKE_SP, &["xsave", "avx", "avx2", "fma", "arch-caps"]);
        p.set_msr(MSR_ARCH_CAPABILITIES, 1 << 25);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::HvmDefault, ids::AVX2));
        assert!(has_in(&policies, SystemPolicy::HvmDefault, ids::GDS_NO));
    }

    #[test]
    fn skx_clwb_hidden_from_host_and_default_kept_in_max() {
        // intel.c init_intel(): SKX → setup_clear_cpu_cap(CLWB); max re-adds it when the raw
        // policy had it, default re-hides it.
        let p = raw(INTEL, SKYLAKE_SP, &["clwb"]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(!has_in(&policies, SystemPolicy::Host, ids::CLWB));
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::CLWB));
        assert!(has_in(&policies, SystemPolicy::HvmMax, ids::CLWB));
        assert!(!has_in(&policies, SystemPolicy::HvmDefault, ids::CLWB));
    }

    #[test]
    fn ivy_bridge_rdrand_hidden_by_default() {
        // guest_common_default_feature_adjustments(): IvyBridge (0x3a) RDRAND (XSA-320).
        let p = raw(INTEL, 0x0003_06a9, &["rdrand"]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::RDRAND));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::RDRAND));
    }

    #[test]
    fn amd_host_adjustments() {
        // init_amd(): SEP cleared; LFENCE_DISPATCH forced (DE_CFG); Zen2 NSCB probed.
        // calculate_host_policy(): max extended leaf raised to 0x80000021 for LFENCE_DISPATCH.
        let p = raw(AMD, ZEN2, &["sep", "amd-stibp", "ibpb", "ibrs"]);
        let policies = derive(&p, DeriveOptions { hvm: None, ..DeriveOptions::default() });
        let host = get(&policies, SystemPolicy::Host);
        assert!(!host.has_feature(ids::SEP));
        assert!(host.has_feature(ids::LFENCE_DISPATCH));
        assert!(host.has_feature(ids::NSCB));
        assert_eq!(host.max_extended_leaf(), 0x8000_0021);
        // srso_calculations(): family < 0x19 with IBPB → IBPB_BRTYPE; no TOPOEXT so no SMT
        // seen → SRSO_NO on Zen1/2. tsa_calculations(): not family 0x19 → TSA_*_NO.
        for name in ["ibpb-brtype", "srso-no", "tsa-sq-no", "tsa-l1-no"] {
            assert!(host.has_feature(known(name)), "{name}");
        }
        // 0x80000001 mirrors leaf 1's common bits on AMD (recalculate_misc()).
        assert_eq!(host.leaf(0x8000_0001).edx & COMMON_1D, host.leaf(1).edx & COMMON_1D);
        assert_eq!(host.leaf(0x8000_0001).eax, host.leaf(1).eax);
        // SC_MSR_PV is only ever set on Intel (IBRSB): PV guests on AMD lose IBRS and all
        // that depends on it.
        let pv = get(&policies, SystemPolicy::PvMax);
        assert!(!pv.has_feature(ids::IBRS));
        assert!(!pv.has_feature(ids::AMD_STIBP));
    }

    #[test]
    fn amd_hvm_gets_sep_and_verw_clear_in_max() {
        // calculate_hvm_max_policy(): AMD/Hygon with raw SEP → SEP for HVM.
        // guest_common_max_feature_adjustments(): AMD → VERW_CLEAR; default clears it unless
        // the host has it.
        let mut p = raw(AMD, ZEN2, &["sep"]);
        p.set_cpuid(CpuidKey::plain(0x8000_000a), Registers::new(1, 0x10, 0, 0x0013_bcff));
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::HvmMax, ids::SEP));
        assert!(!has_in(&policies, SystemPolicy::PvMax, ids::SEP));
        assert!(has_in(&policies, SystemPolicy::HvmMax, ids::VERW_CLEAR));
        assert!(!has_in(&policies, SystemPolicy::HvmDefault, ids::VERW_CLEAR));
        // Nested SVM features clamped to NPT|LBRV|NRIPS|DECODEASSISTS|PAUSEFILTER, plus
        // VMCBCLEAN.
        let svm = get(&policies, SystemPolicy::HvmMax).leaf(0x8000_000a);
        assert_eq!(svm.edx, 0x0013_bcff & 0x48b | 0x20);
        assert_eq!(get(&policies, SystemPolicy::PvMax).leaf(0x8000_000a), Registers::ZERO);
    }

    #[test]
    fn zen3_tsa_verw_clear_needs_current_microcode() {
        // tsa_calculations(): family 0x19, patch level 0x0a0011xx ≥ 0x0a0011d7 → VERW_CLEAR,
        // which the default policy then keeps.
        let p = raw(AMD, ZEN3, &[]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::Host, ids::VERW_CLEAR));
        assert!(has_in(&policies, SystemPolicy::PvDefault, ids::VERW_CLEAR));
        assert!(has_in(&policies, SystemPolicy::Host, ids::BTC_NO), "init_amd(): Zen3 BTC_NO");
        let old = DeriveOptions { current_microcode: false, ..DeriveOptions::default() };
        let policies = derive(&p, old);
        assert!(!has_in(&policies, SystemPolicy::Host, ids::VERW_CLEAR));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::VERW_CLEAR));
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::VERW_CLEAR));
    }

    #[test]
    fn hvm_gets_apic_x2apic_no_lmsl_and_pv_max_x2apic() {
        // calculate_hvm_max_policy(): APIC, X2APIC, NO_LMSL always; calculate_pv_max_policy():
        // X2APIC in PV max only (PV default mask lacks it: '!S').
        let p = raw(INTEL, HASWELL, &["vmx"]);
        let policies = derive(&p, DeriveOptions::default());
        for name in ["apic", "x2apic", "no-lmsl"] {
            assert!(has_in(&policies, SystemPolicy::HvmMax, known(name)), "{name}");
            assert!(has_in(&policies, SystemPolicy::HvmDefault, known(name)), "{name}");
        }
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::X2APIC));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::X2APIC));
        assert!(get(&policies, SystemPolicy::HvmMax).cpuid_faulting());
    }

    #[test]
    fn htt_and_cmp_legacy_max_always_default_as_host() {
        let p = raw(INTEL, HASWELL, &[]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::HTT));
        assert!(has_in(&policies, SystemPolicy::PvMax, ids::CMP_LEGACY));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::HTT));
        let p = raw(INTEL, HASWELL, &["htt"]);
        let policies = derive(&p, DeriveOptions::default());
        assert!(has_in(&policies, SystemPolicy::PvDefault, ids::HTT));
        assert!(!has_in(&policies, SystemPolicy::PvDefault, ids::CMP_LEGACY));
    }

    #[test]
    fn xstate_leaf_is_rebuilt_from_the_features() {
        // recalculate_xstate(): XCR0 = x87|SSE|YMM with AVX, uncompressed size = max
        // offset+size = 0x240+0x100; 0xd:0/1 EBX (dynamic) zero.
        let p = raw(INTEL, HASWELL, &["xsave", "avx", "xsaveopt"]);
        let policies = derive(&p, DeriveOptions::default());
        let host = get(&policies, SystemPolicy::Host);
        assert_eq!(host.subleaf(0xd, 0), Registers::new(0x7, 0, 0x340, 0));
        assert_eq!(host.subleaf(0xd, 1), Registers::new(1, 0, 0, 0));
        assert_eq!(host.subleaf(0xd, 2), Registers::new(0x100, 0x240, 0, 0));
        // GDS-affected parts lose AVX: YMM goes from the leaf.
        let p = raw(INTEL, SKYLAKE_SP, &["xsave", "avx", "xsaveopt"]);
        let host = derive(&p, DeriveOptions::default()).get(SystemPolicy::Host).unwrap().clone();
        assert_eq!(host.subleaf(0xd, 0), Registers::new(0x3, 0, 0x240, 0));
        assert!(!host.contains(CpuidKey::indexed(0xd, 2)));
        // No XSAVE: no leaf 0xd at all, Da1 gone with it.
        let p = raw(INTEL, HASWELL, &["xsaveopt"]);
        let host = derive(&p, DeriveOptions::default()).get(SystemPolicy::Host).unwrap().clone();
        assert!(!host.contains(CpuidKey::indexed(0xd, 0)) && !host.contains(CpuidKey::indexed(0xd, 1)));
        // The OS-controlled bits read 0 in Xen's host view.
        let p = raw(INTEL, HASWELL, &["xsave", "osxsave", "avx"]);
        let host = derive(&p, DeriveOptions::default()).get(SystemPolicy::Host).unwrap().clone();
        assert!(!host.has_feature(ids::OSXSAVE));
    }

    #[test]
    fn xstate_component_without_size_counts_as_zero() {
        // xstate_uncompressed_size(): `ASSERT(c->offset && c->size)` only in debug builds; a
        // release build takes max(576, 0 + 0) and recalculate_xstate() still lists the bits.
        let p = raw(INTEL, 0x0008_06f8, &["xsave", "avx", "mpx"]); // Sapphire Rapids: no GDS
        let policies = derive(&p, DeriveOptions::default());
        let max = get(&policies, SystemPolicy::HvmMax);
        assert_eq!(max.subleaf(0xd, 0), Registers::new(0x1f, 0, 0x340, 0));
        assert_eq!(max.subleaf(0xd, 3), Registers::ZERO);
        assert!(!has_in(&policies, SystemPolicy::PvMax, ids::MPX), "MPX is 's': HVM only");
        assert_eq!(get(&policies, SystemPolicy::PvMax).subleaf(0xd, 0).eax, 0x7);
    }

    #[test]
    fn max_leaves_are_bounded_and_raised() {
        // calculate_host_policy(): basic ≤ 0xd, leaf 7 ≤ sub-leaf 2; guest_common_max_leaves():
        // 0xd, 2, 0x80000021; defaults take the host's.
        let mut p = raw(INTEL, HASWELL, &[]);
        p.set_max_basic_leaf(0x1f);
        p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(3, 0, 0, 0));
        p.set_cpuid(CpuidKey::indexed(0x1f, 0), Registers::new(1, 2, 0x100, 0));
        p.set_cpuid(CpuidKey::plain(0x4000_0000), Registers::new(0x4000_0001, 1, 2, 3));
        let policies = derive(&p, DeriveOptions::default());
        let host = get(&policies, SystemPolicy::Host);
        assert_eq!((host.max_basic_leaf(), host.leaf7_max_subleaf(), host.max_extended_leaf()), (0xd, 2, 0x8000_0008));
        assert!(!host.contains(CpuidKey::indexed(0x1f, 0)));
        assert!(!host.contains(CpuidKey::plain(0x4000_0000)));
        let max = get(&policies, SystemPolicy::PvMax);
        assert_eq!((max.max_basic_leaf(), max.leaf7_max_subleaf(), max.max_extended_leaf()), (0xd, 2, 0x8000_0021));
        let def = get(&policies, SystemPolicy::HvmDefault);
        assert_eq!((def.max_basic_leaf(), def.leaf7_max_subleaf(), def.max_extended_leaf()), (0xd, 2, 0x8000_0008));
    }

    #[test]
    fn intel_misc_leaves() {
        // recalculate_misc(): APIC ID and processor type cleared, leaf 2 one query, 0x80000008
        // EAX[31:16] and ECX cleared, leaf 5/6 empty; vpmu off → leaf 0xa empty.
        let mut p = raw(INTEL, HASWELL | (1 << 12), &[]); // processor type 1
        p.set_cpuid(CpuidKey::plain(1), Registers { ebx: 0x0510_0800, ..p.leaf(1) });
        p.set_cpuid(CpuidKey::plain(2), Registers::new(0x0076_0302, 0, 0, 0));
        p.set_cpuid(CpuidKey::plain(5), Registers::new(0x40, 0x40, 3, 0x1120));
        p.set_cpuid(CpuidKey::plain(0xa), Registers::new(0x0704_3004, 0, 0, 0x603));
        p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x0030_3027, 0, 0x1234, 0));
        let policies = derive(&p, DeriveOptions::default());
        for which in [SystemPolicy::Host, SystemPolicy::PvMax, SystemPolicy::HvmDefault] {
            let q = get(&policies, which);
            assert_eq!(q.leaf(1).eax, HASWELL, "{which}");
            assert_eq!(q.leaf(1).ebx, 0x0010_0800, "{which}");
            assert_eq!(q.leaf(2).eax, 0x0076_0301, "{which}");
            assert_eq!(q.leaf(5), Registers::ZERO, "{which}");
            assert_eq!(q.leaf(0xa), Registers::ZERO, "{which}");
            let leaf = q.leaf(0x8000_0008);
            assert_eq!((leaf.eax, leaf.ecx, leaf.edx), (0x3027, 0, 0), "{which}");
        }
    }

    #[test]
    fn cpuid_faulting_follows_probe_rules() {
        // probe_cpuid_faulting() on Intel (family != 0xf); AMD only when virtualised;
        // calculate_hvm_max_policy(): always for HVM.
        let mut p = raw(INTEL, HASWELL, &[]);
        p.set_cpuid_faulting(true);
        let policies = derive(&p, DeriveOptions::default());
        assert!(get(&policies, SystemPolicy::Host).cpuid_faulting());
        assert!(get(&policies, SystemPolicy::PvDefault).cpuid_faulting());
        let p = raw(INTEL, HASWELL, &[]);
        let forced = DeriveOptions { cpuid_faulting: Some(true), ..DeriveOptions::default() };
        assert!(get(&derive(&p, forced), SystemPolicy::PvMax).cpuid_faulting());
        let mut p = raw(AMD, ZEN2, &[]);
        p.set_cpuid_faulting(true);
        let policies = derive(&p, DeriveOptions { hvm: None, ..DeriveOptions::default() });
        assert!(!get(&policies, SystemPolicy::PvMax).cpuid_faulting());
    }

    #[test]
    fn bad_inputs_are_named_errors() {
        let options = DeriveOptions::default();
        assert_eq!(derive_system_policies(&CpuPolicy::new(), &options), Err(DeriveError::MissingLeaf { leaf: 0 }));
        let mut p = raw(INTEL, HASWELL, &[]);
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 1, 2, 3));
        let error = derive_system_policies(&p, &options).unwrap_err();
        assert!(matches!(error, DeriveError::UnknownVendor { .. }), "{error}");
        let mut p = raw(INTEL, HASWELL, &[]);
        p.set_max_basic_leaf(0);
        assert_eq!(derive_system_policies(&p, &options), Err(DeriveError::MissingLeaf { leaf: 1 }));
        let p = raw_without_hvm(AMD, ZEN2, &[]);
        assert_eq!(derive_system_policies(&p, &options), Err(DeriveError::NoHardwareVirtualisation));
        assert_eq!(DeriveOptions::detect(&p).hvm, None);
        let mut p = raw(AMD, ZEN2, &[]);
        assert_eq!(DeriveOptions::detect(&p).hvm, Some(HvmMode::Hap));
        p.set_cpuid(CpuidKey::plain(0x8000_000a), Registers::new(1, 0x10, 0, 0));
        assert_eq!(derive_system_policies(&p, &options), Err(DeriveError::NoNestedPaging));
        assert_eq!(DeriveOptions::detect(&p).hvm, Some(HvmMode::Shadow));
        let error = DeriveError::UnknownVendor { vendor: "Foo".into() };
        assert!(error.to_string().contains("'Foo'"), "{error}");
    }

    #[test]
    fn amd_patch_part_matches_xens_tables() {
        // amd.c zenbleed_use_chickenbit(): 0x083010 is Rome (0x00830f10).
        assert_eq!(amd_patch_part(0x0083_0f10), 0x08_3010);
        assert_eq!(amd_patch_part(0x00a1_0f11), 0x0a_1011);
        assert_eq!(amd_patch_part(0x00aa_0f02), 0x0a_a002);
    }
}
