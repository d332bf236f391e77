//! A topology applied to real hosts' policies (the CPU dumps of `../shared/cpu-dumps`), and read
//! back the way Linux reads it.

use std::path::PathBuf;

use cpupolicy::policy::{CpuPolicy, WireLimits};
use cpupolicy::topology::{parse_vcpu, Scheme, Shape, Topology, Vendor, XenPolicyTarget};

fn dumps() -> Option<Vec<(String, CpuPolicy)>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cpu-dumps/libvirt");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", dir.display());
        return None;
    };
    let mut out: Vec<(String, CpuPolicy)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .map(|p| {
            let policy = CpuPolicy::from_libvirt_xml(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), policy)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

fn vendor_of(policy: &CpuPolicy) -> Option<Vendor> {
    match policy.vendor() {
        cpupolicy::policy::Vendor::Intel => Some(Vendor::Intel),
        cpupolicy::policy::Vendor::Amd => Some(Vendor::Amd),
        cpupolicy::policy::Vendor::Hygon => Some(Vendor::Hygon),
        _ => None,
    }
}

#[test]
fn applied_topology_reads_back_on_every_dump() {
    let Some(dumps) = dumps() else { return };
    let shape = Shape::new(2, 1, 3, 2);
    let mut applied = 0;
    for (name, mut policy) in dumps {
        let Some(vendor) = vendor_of(&policy) else { continue };
        let t = Topology::new(shape, vendor, Scheme::Modern, true).unwrap();
        if policy.max_basic_leaf() < t.min_basic_leaf() {
            policy.set_max_basic_leaf(t.min_basic_leaf());
        }
        if policy.max_extended_leaf() < t.min_extended_leaf() {
            policy.set_max_extended_leaf(t.min_extended_leaf());
        }
        t.apply(&mut policy).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = parse_vcpu(&policy, vendor);
        let context = format!("{name} ({vendor})");
        assert_eq!(parsed.apic_id, 0, "{context}");
        assert_eq!(parsed.threads_per_core(), 2, "{context}: {parsed:?}");
        assert_eq!(parsed.shifts.smt, t.layout().core_offset(), "{context}: {parsed:?}");
        assert_eq!(parsed.counts.core, 6, "{context}: logical processors per package: {parsed:?}");
        applied += 1;
    }
    assert!(applied >= 70, "only {applied} dumps took a topology");
}

#[test]
fn xen_target_refuses_leaf_0x1f() {
    let Some(dumps) = dumps() else { return };
    let (name, mut policy) = dumps
        .into_iter()
        .find(|(_, p)| p.vendor() == cpupolicy::policy::Vendor::Intel && p.max_basic_leaf() >= 0xb)
        .unwrap();
    // Dies on Intel need leaf 0x1F, which Xen's policy cannot hold.
    let t = Topology::new(Shape::new(1, 2, 2, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
    policy.set_max_basic_leaf(0x1f);
    let before = policy.clone();
    let error = t.apply(&mut XenPolicyTarget { policy: &mut policy, limits: WireLimits::LATEST }).unwrap_err();
    assert!(error.to_string().contains("0x1f"), "{name}: {error}");
    assert_eq!(policy, before, "{name}: nothing written when one leaf cannot be held");
    // Without dies the Xen-carriable leaves suffice.
    let t = Topology::new(Shape::new(1, 1, 4, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
    let mut policy = before;
    t.apply(&mut XenPolicyTarget { policy: &mut policy, limits: WireLimits::LATEST }).unwrap();
    assert_eq!(parse_vcpu(&policy, Vendor::Intel).threads_per_core(), 2);
}

/// A topology without dies goes into a Xen-bound policy made from every dump, including dumps
/// whose leaf 0xB holds more sub-leaves than Xen's format (0 and 1): the terminating level is
/// then dropped from the policy instead of refused, since Xen reads an absent sub-leaf as zeros,
/// which ends the enumeration the same way. What Xen will hold reads back as the topology.
#[test]
fn xen_target_takes_every_dump_and_drops_uncarriable_terminators() {
    use cpupolicy::policy::{CpuidKey, XEN_TOPOLOGY_SUBLEAVES};
    let Some(dumps) = dumps() else { return };
    let shape = Shape::new(2, 1, 3, 2);
    let mut with_extra_subleaves = 0;
    for (name, mut policy) in dumps {
        let Some(vendor) = vendor_of(&policy) else { continue };
        let t = Topology::new(shape, vendor, Scheme::Modern, true).unwrap();
        policy.set_max_basic_leaf(policy.max_basic_leaf().clamp(t.min_basic_leaf(), 0x1e));
        policy.set_max_extended_leaf(policy.max_extended_leaf().max(t.min_extended_leaf()));
        let extra = (XEN_TOPOLOGY_SUBLEAVES..8).filter(|s| policy.contains(CpuidKey::indexed(0xb, *s))).count();
        with_extra_subleaves += usize::from(extra > 0);
        t.apply(&mut XenPolicyTarget { policy: &mut policy, limits: WireLimits::LATEST })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for s in XEN_TOPOLOGY_SUBLEAVES..8 {
            if let Some(r) = policy.contains(CpuidKey::indexed(0xb, s)).then(|| policy.cpuid(CpuidKey::indexed(0xb, s)))
            {
                assert_ne!((r.ecx >> 8) & 0xff, 0, "{name}: 0xb:{s} left as a terminator Xen cannot carry");
            }
        }
        let parsed = parse_vcpu(&policy, vendor);
        assert_eq!(parsed.threads_per_core(), 2, "{name}: {parsed:?}");
        assert_eq!(parsed.counts.core, 6, "{name}: {parsed:?}");
    }
    assert!(with_extra_subleaves > 0, "no dump holds 0xb sub-leaves beyond Xen's two: the case is not exercised");
}

/// A topology whose APIC IDs need x2APIC is refused by a policy that does not offer x2APIC
/// (leaf 1 ECX[21]), nothing written, even when the topology was built with x2APIC allowed;
/// with the bit set it applies.
#[test]
fn x2apic_topologies_need_a_policy_that_offers_x2apic() {
    use cpupolicy::policy::{CpuidKey, Registers};
    use cpupolicy::topology::TopologyError;
    let Some(dumps) = dumps() else { return };
    let (name, mut policy) = dumps
        .into_iter()
        .find(|(_, p)| p.vendor() == cpupolicy::policy::Vendor::Intel && p.max_basic_leaf() >= 0xb)
        .unwrap();
    let big = Topology::new(Shape::new(64, 1, 3, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
    assert!(big.x2apic_required());
    let leaf1 = policy.cpuid(CpuidKey::plain(1));
    policy.set_cpuid(CpuidKey::plain(1), Registers::new(leaf1.eax, leaf1.ebx, leaf1.ecx & !(1 << 21), leaf1.edx));
    let before = policy.clone();
    let error = big.apply(&mut policy).unwrap_err();
    assert!(matches!(error, TopologyError::X2apicRequired { apic_id: 0x100, .. }), "{name}: {error}");
    assert_eq!(policy, before, "{name}: nothing written");
    policy.set_cpuid(CpuidKey::plain(1), Registers::new(leaf1.eax, leaf1.ebx, leaf1.ecx | (1 << 21), leaf1.edx));
    big.apply(&mut policy).unwrap_or_else(|e| panic!("{name}: {e}"));
}
