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

mod boot;
mod policies;
#[cfg(test)]
mod tests;
mod words;
mod xen_policy;

use boot::*;
use policies::*;
use words::*;
use xen_policy::*;
