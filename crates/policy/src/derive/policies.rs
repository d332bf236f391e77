//! The policies (`cpu-policy.c`).

use super::*;

/// `recalculate_xstate`: leaf 0xd rebuilt from the features: XCR0 components for XSAVE (x87,
/// SSE), AVX, MPX, AVX512F, PKU, AMX-TILE; sizes and offsets from the raw sub-leaves; the
/// uncompressed size the largest offset + size; 0xd:1 EAX the Da1 word, ECX/EDX (XSS) zero
/// (4.20 has no XSAVES-only state); component ECX attributes only as XSAVEC/XSAVES allow. No
/// XSAVE: the whole leaf is zero, Da1 included.
///
/// A component the raw policy enumerates no size/offset for (a virtual CPU offering MPX with
/// no BNDREGS in XCR0, say) counts as size 0 at offset 0, as in a release build of Xen (a
/// debug build asserts).
pub(super) fn recalculate_xstate(p: &mut XenPolicy, raw: &XenPolicy) {
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
pub(super) fn recalculate_misc(p: &mut XenPolicy, vendor: Vendor) {
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
pub(super) fn host_policy(raw: &XenPolicy, boot: &Boot) -> XenPolicy {
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
pub(super) fn max_feature_adjustments(fs: &mut Words, boot: &Boot) {
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
pub(super) fn default_feature_adjustments(fs: &mut Words, boot: &Boot) {
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
pub(super) fn common_feature_adjustments(fs: &mut Words, host: &XenPolicy) {
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
pub(super) fn reflect_rsba(fs: &mut Words, boot: &Boot) {
    if has(fs, ids::ARCH_CAPS) && (has(&boot.caps, ids::RSBA) || has(&boot.caps, ids::RRSBA)) {
        set(fs, if has(fs, ids::EIBRS) { ids::RRSBA } else { ids::RSBA });
    }
}

/// What both max policies start from: the host policy (with 4.22's `recalculate_misc`), the
/// guest max leaves, and its featureset words within the kind's static max mask.
fn max_start(host: &XenPolicy, boot: &Boot, kind: GuestKind) -> (XenPolicy, Words) {
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
    and(&mut fs, &mask(StaticMask::Max(kind), boot.release));
    (p, fs)
}

/// `calculate_pv_max_policy`.
pub(super) fn pv_max_policy(raw: &XenPolicy, host: &XenPolicy, boot: &Boot) -> XenPolicy {
    let (mut p, mut fs) = max_start(host, boot, GuestKind::Pv);
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
pub(super) fn pv_def_policy(raw: &XenPolicy, host: &XenPolicy, max: &XenPolicy, boot: &Boot) -> XenPolicy {
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

pub(super) fn hvm_kind(mode: HvmMode) -> GuestKind {
    match mode {
        HvmMode::Hap => GuestKind::HvmHap,
        HvmMode::Shadow => GuestKind::HvmShadow,
    }
}

/// `calculate_hvm_max_policy`.
pub(super) fn hvm_max_policy(raw: &XenPolicy, host: &XenPolicy, boot: &Boot, mode: HvmMode) -> XenPolicy {
    let (mut p, mut fs) = max_start(host, boot, hvm_kind(mode));
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
pub(super) fn hvm_def_policy(
    raw: &XenPolicy,
    host: &XenPolicy,
    max: &XenPolicy,
    boot: &Boot,
    mode: HvmMode,
) -> XenPolicy {
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
