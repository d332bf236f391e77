//! The prediction, piece by piece, on hand-made raw policies.

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
