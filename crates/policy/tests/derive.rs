//! `derive_system_policies` against a real Xen 4.20 boot (`../shared/xen-reference/`) and
//! over every real CPU dump of `../shared/cpu-dumps/libvirt/`.

mod common;

use std::collections::BTreeMap;

use cpupolicy_featureset::{known, static_mask, Featureset, GuestKind, StaticMask};
use cpupolicy_policy::{
    derive_system_policies, CpuPolicy, CpuidKey, DeriveError, DeriveOptions, HostBundle, HvmMode, PolicyDiff,
    SystemPolicies, SystemPolicy, Vendor, WireLimits, XenCpuidReport, XenVersion,
};

/// The five policies Xen derives.
const DERIVED: [SystemPolicy; 5] =
    [SystemPolicy::Host, SystemPolicy::PvMax, SystemPolicy::HvmMax, SystemPolicy::PvDefault, SystemPolicy::HvmDefault];

/// The recorded 4.20 boot: `xen-cpuid -p` text and `xen-cpuid` featureset text.
fn recorded_4_20() -> Option<(String, String)> {
    let references = common::xen_references()?;
    let (_, policies, featuresets) = references.into_iter().find(|(release, _, _)| *release == "4.20")?;
    Some((policies, featuresets))
}

/// The labelled featureset lines of a `xen-cpuid` (no arguments) output, by label.
fn featureset_lines(text: &str) -> BTreeMap<String, Featureset> {
    text.lines()
        .filter_map(|line| {
            let (label, words) = line.trim_end().rsplit_once(' ')?;
            let set = Featureset::parse(words).ok()?;
            words.contains(':').then(|| (label.trim().to_string(), set))
        })
        .collect()
}

fn xen_4_20_limits() -> WireLimits {
    WireLimits::for_xen(&XenVersion::parse("4.20.3").unwrap()).unwrap()
}

#[test]
fn recorded_xen_4_20_boot_is_reproduced_exactly() {
    let Some((text, _)) = recorded_4_20() else { return };
    let recorded = XenCpuidReport::parse(&text).unwrap().to_bundle();
    let raw = recorded.policies.get(SystemPolicy::Raw).unwrap();

    // The recorded boot is QEMU's qemu64 under TCG: AuthenticAMD with SVM but no NPT
    // (0x8000000a EDX = 0), so Xen ran HVM with shadow paging, and no CPUID faulting
    // (MSR 0xce = 0).
    let options = DeriveOptions::detect(raw);
    assert_eq!(
        options,
        DeriveOptions {
            hvm: Some(HvmMode::Shadow),
            cpuid_faulting: None,
            current_microcode: true,
            release: cpupolicy_featureset::XenRelease::V4_20
        }
    );
    let derived = derive_system_policies(raw, &options).unwrap();

    assert_eq!(derived.get(SystemPolicy::Raw), Some(raw), "Raw is the input");
    for which in DERIVED {
        let ours = derived.get(which).unwrap();
        let xens = recorded.policies.get(which).unwrap();
        let diff = PolicyDiff::between(xens, ours);
        assert!(diff.is_empty(), "{which}: Xen 4.20 -> derived:\n{diff}");
        assert_eq!(ours, xens, "{which}");
    }

    // And printed the way xen-cpuid prints them, byte for byte (the serialised counts
    // include zero leaves: the derived policies serialise exactly Xen's leaves).
    let bundle = HostBundle { max_leaves: Some(120), max_msrs: Some(2), policies: derived, ..HostBundle::default() };
    let (report, dropped) = XenCpuidReport::from_bundle(&bundle);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(report.to_string(), text);
}

#[test]
fn recorded_xen_4_20_featuresets_are_reproduced_exactly() {
    let Some((text, featuresets)) = recorded_4_20() else { return };
    let raw = XenCpuidReport::parse(&text).unwrap().to_bundle().policies.get(SystemPolicy::Raw).unwrap().clone();
    let derived = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).unwrap();
    let lines = featureset_lines(&featuresets);
    // "Dynamic sets": Raw, Host, PV Default, HVM Default, PV Max, HVM Max.
    let mut compared = 0;
    for (label, set) in &lines {
        let Ok(which) = label.parse::<SystemPolicy>() else { continue };
        let ours = derived.get(which).unwrap().featureset();
        assert_eq!(ours, *set, "{label}: differs in {:?}", ours.symmetric_difference(set).names());
        compared += 1;
    }
    assert_eq!(compared, 6);
}

#[test]
fn recorded_boot_with_hap_differs_only_in_the_hap_features() {
    // The same raw policy with HAP (not what that boot had): only the HVM policies change, and
    // only by features the HAP masks add over the shadow masks (SVM itself, 'h', is max only).
    let Some((text, _)) = recorded_4_20() else { return };
    let mut raw = XenCpuidReport::parse(&text).unwrap().to_bundle().policies.get(SystemPolicy::Raw).unwrap().clone();
    let shadow = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).unwrap();
    let svm_leaf = raw.leaf(0x8000_000a);
    raw.set_cpuid(CpuidKey::plain(0x8000_000a), cpupolicy_policy::Registers { edx: 1, ..svm_leaf });
    let hap = derive_system_policies(&raw, &DeriveOptions::default()).unwrap();
    for which in [SystemPolicy::PvMax, SystemPolicy::PvDefault] {
        assert_eq!(hap.get(which), shadow.get(which), "{which}");
    }
    let (shadow_max, hap_max) = (shadow.get(SystemPolicy::HvmMax).unwrap(), hap.get(SystemPolicy::HvmMax).unwrap());
    let added = hap_max.featureset().difference(&shadow_max.featureset());
    assert_eq!(added.names(), ["svm"]);
    assert_eq!(
        hap.get(SystemPolicy::HvmDefault).unwrap().featureset(),
        shadow.get(SystemPolicy::HvmDefault).unwrap().featureset()
    );
    // NPT passes through Xen's nested-SVM clamp (with VMCB clean bits, always emulated).
    assert_eq!(hap_max.leaf(0x8000_000a).edx, 0x21);
}

// ---------------------------------------------------------------------------------------------
// Every libvirt dump.

struct Derived {
    name: String,
    raw: CpuPolicy,
    options: DeriveOptions,
    policies: SystemPolicies,
}

impl Derived {
    fn get(&self, which: SystemPolicy) -> &CpuPolicy {
        self.policies.get(which).unwrap_or_else(|| panic!("{}: no {which}", self.name))
    }

    fn hvm(&self) -> bool {
        self.options.hvm.is_some()
    }

    fn guests(&self) -> Vec<SystemPolicy> {
        let mut all = vec![SystemPolicy::PvMax, SystemPolicy::PvDefault];
        if self.hvm() {
            all.extend([SystemPolicy::HvmMax, SystemPolicy::HvmDefault]);
        }
        all
    }
}

fn derive_all() -> Option<Vec<Derived>> {
    let dumps = common::libvirt_dumps()?;
    assert_eq!(dumps.len(), 74);
    Some(
        dumps
            .into_iter()
            .map(|(name, text)| {
                let raw = CpuPolicy::from_libvirt_xml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                let options = DeriveOptions::detect(&raw);
                let policies = derive_system_policies(&raw, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
                Derived { name, raw, options, policies }
            })
            .collect(),
    )
}

fn has(policy: &CpuPolicy, name: &str) -> bool {
    policy.has_feature(known(name))
}

#[test]
fn every_dump_derives_with_the_policies_its_options_ask_for() {
    let Some(all) = derive_all() else { return };
    let mut without_hvm = Vec::new();
    for d in &all {
        assert_eq!(d.policies.get(SystemPolicy::Raw), Some(&d.raw), "{}: Raw is the input", d.name);
        assert_eq!(d.policies.len(), if d.hvm() { 6 } else { 4 }, "{}", d.name);
        if !d.hvm() {
            without_hvm.push(d.name.as_str());
            // HVM cannot be asked for without VMX/SVM.
            let error = derive_system_policies(&d.raw, &DeriveOptions::default()).unwrap_err();
            assert_eq!(error, DeriveError::NoHardwareVirtualisation, "{}", d.name);
        }
        // No dump is an AMD part with SVM but without NPT.
        assert_ne!(d.options.hvm, Some(HvmMode::Shadow), "{}", d.name);
    }
    // The three dumps whose CPUs have no VMX.
    assert_eq!(without_hvm, ["x86-cpuid-Atom-N450.xml", "x86-cpuid-Pentium-P6100.xml", "x86_64-cpuid-Atom-D510.xml"]);
}

#[test]
fn default_is_within_max_and_pv_within_hvm() {
    let Some(all) = derive_all() else { return };
    for d in &all {
        let pairs: &[(SystemPolicy, SystemPolicy)] = if d.hvm() {
            &[
                (SystemPolicy::PvDefault, SystemPolicy::PvMax),
                (SystemPolicy::HvmDefault, SystemPolicy::HvmMax),
                (SystemPolicy::PvMax, SystemPolicy::HvmMax),
                (SystemPolicy::PvDefault, SystemPolicy::HvmDefault),
            ]
        } else {
            &[(SystemPolicy::PvDefault, SystemPolicy::PvMax)]
        };
        for &(small, big) in pairs {
            let (a, b) = (d.get(small).featureset(), d.get(big).featureset());
            assert!(a.is_subset(&b), "{}: {small} has {:?} beyond {big}", d.name, a.difference(&b).names());
            assert!(!d.get(small).cpuid_faulting() || d.get(big).cpuid_faulting(), "{}: {small} vs {big}", d.name);
        }
    }
}

/// What Xen adds to a guest policy beyond its static mask (cpu-policy.c): X2APIC in PV max
/// (`calculate_pv_max_policy`), RSBA/RRSBA in every Intel max and reflected into default,
/// RTM_ALWAYS_ABORT with RTM in Intel max and with `rtm_disabled` in default
/// (`guest_common_{max,default}_feature_adjustments`), VIRT_SSBD for HVM
/// (`calculate_hvm_{max,def}_policy`). All are `!` features without a guest letter.
fn beyond_mask(which: SystemPolicy) -> &'static [&'static str] {
    match which {
        SystemPolicy::PvMax => &["x2apic", "rsba", "rrsba", "rtm-always-abort"],
        SystemPolicy::PvDefault => &["rsba", "rrsba", "rtm-always-abort"],
        _ => &["virt-ssbd", "rsba", "rrsba", "rtm-always-abort"],
    }
}

#[test]
fn guest_featuresets_are_within_their_static_masks() {
    let Some(all) = derive_all() else { return };
    for d in &all {
        let hvm_kind = match d.options.hvm {
            Some(HvmMode::Shadow) => GuestKind::HvmShadow,
            _ => GuestKind::HvmHap,
        };
        for which in d.guests() {
            let mask = match which {
                SystemPolicy::PvMax => StaticMask::Max(GuestKind::Pv),
                SystemPolicy::PvDefault => StaticMask::Default(GuestKind::Pv),
                SystemPolicy::HvmMax => StaticMask::Max(hvm_kind),
                _ => StaticMask::Default(hvm_kind),
            };
            let mut allowed = static_mask(mask).clone();
            for name in beyond_mask(which) {
                allowed.insert(known(name));
            }
            let fs = d.get(which).featureset();
            assert!(
                fs.is_subset(&allowed),
                "{} {which}: {:?} outside the mask",
                d.name,
                fs.difference(&allowed).names()
            );
            // Xen's own: every guest sees the hypervisor bit, never the OS-controlled bits.
            assert!(has(d.get(which), "hypervisor"), "{} {which}", d.name);
            assert!(!has(d.get(which), "osxsave") && !has(d.get(which), "ospke"), "{} {which}", d.name);
        }
    }
}

#[test]
fn guest_featuresets_are_dependency_closed_and_host_within_known() {
    let Some(all) = derive_all() else { return };
    let Some((_, featuresets)) = recorded_4_20() else { return };
    let known_4_20 = featureset_lines(&featuresets).remove("Known").unwrap();
    for d in &all {
        for which in d.guests() {
            let mut fs = d.get(which).featureset();
            let cleared = fs.apply_dependencies();
            assert!(cleared.is_empty(), "{} {which}: {:?} lack a prerequisite", d.name, cleared.names());
        }
        for which in DERIVED.into_iter().filter(|w| d.policies.get(*w).is_some()) {
            let mut fs = d.get(which).featureset();
            // recalculate_misc() copies leaf 1's common EDX bits (FPU … FXSR) into
            // 0x80000001 EDX of the AMD host policy: not features of that word.
            fs.set_word(2, fs.word(2) & !0x0183_f3ff);
            let unknown = fs.difference(&known_4_20);
            assert!(unknown.is_empty(), "{} {which}: {:?} unknown to Xen 4.20", d.name, unknown.names());
        }
    }
}

#[test]
fn max_leaves_follow_xens_bounds() {
    let Some(all) = derive_all() else { return };
    for d in &all {
        let raw = &d.raw;
        let host = d.get(SystemPolicy::Host);
        // calculate_host_policy(): basic and leaf 7 clamped to what the policy holds; the
        // extended max clamped to 0x80000021, and raised to it for LFENCE_DISPATCH (forced on
        // every AMD/Hygon part).
        assert_eq!(host.max_basic_leaf(), raw.max_basic_leaf().min(0xd), "{}", d.name);
        let raw_leaf7 = if raw.max_basic_leaf() >= 7 { raw.leaf7_max_subleaf() } else { 0 };
        assert_eq!(host.leaf7_max_subleaf(), raw_leaf7.min(2), "{}", d.name);
        let mut extended = raw.max_extended_leaf() & 0xffff;
        if raw.vendor().is_amd_like() {
            extended = extended.max(0x21);
        }
        assert_eq!(host.max_extended_leaf(), 0x8000_0000 | extended.min(0x21), "{}", d.name);
        assert!(host.max_basic_leaf() <= raw.max_basic_leaf(), "{}", d.name);
        for which in d.guests() {
            let p = d.get(which);
            let leaves = (p.max_basic_leaf(), p.leaf7_max_subleaf(), p.max_extended_leaf());
            let expected = if matches!(which, SystemPolicy::PvMax | SystemPolicy::HvmMax) {
                (0xd, 2, 0x8000_0021) // guest_common_max_leaves()
            } else {
                (host.max_basic_leaf(), host.leaf7_max_subleaf(), host.max_extended_leaf())
            };
            assert_eq!(leaves, expected, "{} {which}", d.name);
        }
    }
}

#[test]
fn derived_policies_serialise_for_xen_4_20() {
    let Some(all) = derive_all() else { return };
    let limits = xen_4_20_limits();
    for d in &all {
        for which in DERIVED.into_iter().filter(|w| d.policies.get(*w).is_some()) {
            let policy = d.get(which);
            let wire = policy.to_wire(&limits);
            assert!(wire.dropped.is_empty(), "{} {which}: {:?}", d.name, wire.dropped);
            assert!(wire.leaves.len() <= limits.max_leaves() as usize, "{} {which}", d.name);
            let back = CpuPolicy::from_wire(&wire.leaves, &wire.msrs, &limits).unwrap();
            assert_eq!(&back, policy, "{} {which}", d.name);
        }
    }
}

#[test]
fn the_rules_show_on_real_parts() {
    let Some(all) = derive_all() else { return };
    let (mut amd, mut skx, mut intel, mut lost_avx, mut taa) = (0, 0, 0, 0, 0);
    for d in &all {
        let (host, pv_max, pv_def) =
            (d.get(SystemPolicy::Host), d.get(SystemPolicy::PvMax), d.get(SystemPolicy::PvDefault));
        match d.raw.vendor() {
            Vendor::Amd | Vendor::Hygon => {
                amd += 1;
                // init_amd()/init_hygon(): no SYSENTER in long mode; calculate_hvm_max_policy()
                // gives it back to HVM guests.
                assert!(!has(host, "sep") && !has(pv_max, "sep"), "{}", d.name);
                assert_eq!(has(d.get(SystemPolicy::HvmMax), "sep"), has(&d.raw, "sep"), "{}", d.name);
                assert!(has(host, "lfence-dispatch"), "{}", d.name);
                // VERW_CLEAR in AMD max (not Hygon); default only with the host's.
                let verw = d.raw.vendor() == Vendor::Amd;
                assert_eq!(has(pv_max, "verw-clear"), verw, "{}", d.name);
                assert_eq!(has(pv_def, "verw-clear"), has(host, "verw-clear"), "{}", d.name);
                // 0x80000001 mirrors leaf 1's signature and common EDX bits in the host.
                assert_eq!(host.leaf(0x8000_0001).eax, host.leaf(1).eax, "{}", d.name);
            }
            Vendor::Intel => {
                intel += 1;
                // MSR_ARCH_CAPS is offered by default on every Intel part.
                for p in [pv_max, pv_def] {
                    assert!(has(p, "arch-caps"), "{}", d.name);
                }
                // MD_CLEAR/FB_CLEAR/RFDS_CLEAR in max, back to the host's in default.
                for name in ["md-clear", "fb-clear", "rfds-clear"] {
                    assert!(has(pv_max, name), "{} {name}", d.name);
                    assert_eq!(has(pv_def, name), has(host, name), "{} {name}", d.name);
                }
                // gds_calculations(): AVX (and all built on it) off on the models Xen lists
                // as GDS-affected, unless GDS_NO or the GDS_CTRL microcode is there.
                if d.raw.family() == 6 && has(&d.raw, "avx") {
                    let listed = [0x55, 0x6a, 0x6c, 0x7e, 0x8c, 0x8d, 0x8e, 0x9e, 0xa5, 0xa6, 0xa7];
                    let affected = listed.contains(&d.raw.model()) || has(&d.raw, "hypervisor");
                    let keeps = !affected || has(&d.raw, "gds-ctrl") || has(&d.raw, "gds-no");
                    assert_eq!(has(host, "avx"), keeps, "{}", d.name);
                    assert_eq!(has(pv_def, "avx2"), keeps && has(&d.raw, "avx2"), "{}", d.name);
                    lost_avx += usize::from(!keeps);
                }
                // tsx.c/spec_ctrl.c: a TAA-affected part with TSX_CTRL defaults to tsx=0: RTM
                // and RTM_ALWAYS_ABORT in max, RTM_ALWAYS_ABORT without RTM in default.
                if has(&d.raw, "tsx-ctrl") && has(&d.raw, "mds-no") && !has(&d.raw, "taa-no") {
                    taa += 1;
                    assert!(has(host, "rtm") && has(pv_max, "rtm") && has(pv_max, "rtm-always-abort"), "{}", d.name);
                    assert!(!has(pv_def, "rtm") && has(pv_def, "rtm-always-abort"), "{}", d.name);
                }
                // SKX/CLX/CPX: CLWB hidden from Xen and by default, kept in max.
                if d.raw.family() == 6 && d.raw.model() == 0x55 && has(&d.raw, "clwb") {
                    skx += 1;
                    assert!(!has(host, "clwb") && !has(pv_def, "clwb") && has(pv_max, "clwb"), "{}", d.name);
                }
            }
            other => panic!("{}: {other}", d.name),
        }
        // The host policy never shows the OS-controlled bits or the hypervisor leaves, and
        // always clears the initial APIC ID.
        assert!(!has(host, "osxsave"), "{}", d.name);
        assert_eq!(host.leaf(1).ebx >> 24, 0, "{}", d.name);
        assert_eq!(host.hypervisor_limits(), [0, 0], "{}", d.name);
    }
    assert_eq!((intel, amd), (57, 17));
    assert_eq!(skx, 8, "Skylake/Cascade/Cooper Lake SP dumps with CLWB");
    assert!(lost_avx > 0, "some dumps predate the GDS microcode");
    assert!(taa > 0, "some dumps are TAA-affected Cascade Lakes");
}

/// Host bundles recorded by the real-Xen harness (`cargo xtask test --only real-xen` writes them
/// to `target/real-xen/`): Debian's Xen 4.20 booted under QEMU TCG on two Intel models.
#[test]
fn recorded_intel_boots_are_reproduced_exactly() {
    for name in ["xen-4.20-skylake.json", "xen-4.20-nehalem.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
        let bundle = HostBundle::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let raw = bundle.policies.get(SystemPolicy::Raw).unwrap();
        assert_eq!(raw.vendor(), cpupolicy_policy::Vendor::Intel, "{name}");
        let options = DeriveOptions::detect(raw);
        assert_eq!(options.hvm, None, "{name}: TCG offers no VMX");
        let derived = derive_system_policies(raw, &options).unwrap();
        let mut compared = 0;
        for which in SystemPolicy::ALL {
            let real = bundle.policies.get(which).filter(|p| !p.is_empty());
            assert_eq!(derived.get(which), real, "{name}: {}", which.name());
            compared += usize::from(real.is_some());
        }
        assert_eq!(compared, 4, "{name}: raw, host, PV max and PV default");
    }
}

/// Debian's 4.14.6 and 4.17.7 (qemu64) and Xen 4.21.2 and 4.22.0 (qemu64, Skylake-Server),
/// recorded in `../shared/xen-reference`: each release's model reproduces every policy exactly;
/// 4.20's model does not (so the recordings tell the releases apart).
#[test]
fn derive_is_exact_on_the_4_14_4_17_4_21_and_4_22_recordings() {
    use cpupolicy_featureset::XenRelease;
    let Some(dir) = common::shared_dir("xen-reference") else { return };
    let mut exact = 0;
    for (name, release) in [
        ("xen-4.14-qemu64", XenRelease::V4_14),
        ("xen-4.17-qemu64", XenRelease::V4_17),
        ("xen-4.21-qemu64", XenRelease::V4_21),
        ("xen-4.21-Skylake-Server", XenRelease::V4_21),
        ("xen-4.22-qemu64", XenRelease::V4_22),
        ("xen-4.22-Skylake-Server", XenRelease::V4_22),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.policy.txt"))).unwrap();
        let recorded = XenCpuidReport::parse(&text).unwrap().to_bundle();
        let raw = recorded.policies.get(SystemPolicy::Raw).unwrap();
        let options = DeriveOptions { release, ..DeriveOptions::detect(raw) };
        let derived = derive_system_policies(raw, &options).unwrap();
        for which in DERIVED {
            let (Some(ours), Some(xens)) = (derived.get(which), recorded.policies.get(which)) else { continue };
            let diff = PolicyDiff::between(xens, ours);
            assert!(diff.is_empty(), "{name} {which}: Xen {release} -> derived:\n{diff}");
            exact += 1;
        }
        let as_4_20 = derive_system_policies(raw, &DeriveOptions { release: XenRelease::V4_20, ..options }).unwrap();
        assert!(
            DERIVED.iter().any(|w| as_4_20.get(*w) != recorded.policies.get(*w) && recorded.policies.get(*w).is_some()),
            "{name}: 4.20's model reproduces it too"
        );
    }
    assert!(exact >= 24, "{exact} policies compared");
}
