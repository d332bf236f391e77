//! Every real CPU dump of `../shared/cpu-dumps/libvirt/` through every format.

mod common;

use std::collections::BTreeMap;

use cpupolicy_featureset::{WordSource, WORDS};

use cpupolicy_policy::{
    cpuid_record_from_bytes, cpuid_record_to_bytes, msr_record_from_bytes, msr_record_to_bytes, CpuPolicy, CpuidKey,
    Dropped, SectionName, SystemPolicy, Vendor, WireLimits, XenCpuidReport,
};

fn policies() -> Option<Vec<(String, CpuPolicy)>> {
    let dumps = common::libvirt_dumps()?;
    assert_eq!(dumps.len(), 74, "the shared folder holds 74 dumps");
    Some(
        dumps
            .into_iter()
            .map(|(name, text)| {
                let policy = CpuPolicy::from_libvirt_xml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, policy)
            })
            .collect(),
    )
}

/// The policy with the dropped entries put back.
fn with_dropped(mut policy: CpuPolicy, dropped: &[Dropped]) -> CpuPolicy {
    for entry in dropped {
        match *entry {
            Dropped::Leaf { key, registers, .. } => policy.set_cpuid(key, registers),
            Dropped::Msr { index, value, .. } => policy.set_msr(index, value),
        }
    }
    policy
}

#[test]
fn every_dump_imports_and_agrees_with_the_index() {
    let Some(policies) = policies() else { return };
    let texts: BTreeMap<String, String> = common::libvirt_dumps().unwrap().into_iter().collect();
    let index = common::shared_dir("cpu-dumps/libvirt").unwrap().join("INDEX.tsv");
    let index = std::fs::read_to_string(index).unwrap();
    let rows: BTreeMap<&str, Vec<&str>> =
        index.lines().skip(1).map(|l| l.split('\t').collect::<Vec<_>>()).map(|f| (f[0], f)).collect();
    for (name, policy) in &policies {
        let row = rows.get(name.as_str()).unwrap_or_else(|| panic!("{name} not in INDEX.tsv"));
        let vendor = match policy.vendor() {
            Vendor::Intel => "GenuineIntel",
            Vendor::Amd => "AuthenticAMD",
            Vendor::Hygon => "HygonGenuine",
            other => panic!("{name}: unexpected vendor {other}"),
        };
        assert_eq!(vendor, row[1], "{name}");
        let fms = format!("{}/{}/{}", policy.family(), policy.model(), policy.stepping());
        assert!(row[2].starts_with(&format!("{fms} ")), "{name}: {fms} vs {}", row[2]);
        assert_eq!(format!("{:#x}", policy.max_basic_leaf()), row[3], "{name}");
        assert_eq!(format!("{:#x}", policy.max_extended_leaf()), row[4], "{name}");
        // Zero MSRs (0xcf on several parts) are absent in the model, as zero leaves are.
        let msrs: usize = row[6].parse().unwrap();
        let zero_msrs = texts[name]
            .lines()
            .filter(|l| l.contains("<msr") && l.contains("edx='0x00000000' eax='0x00000000'"))
            .count();
        assert_eq!(policy.msrs().len(), msrs - zero_msrs, "{name}");
    }
}

#[test]
fn json_round_trips_losslessly() {
    let Some(policies) = policies() else { return };
    for (name, policy) in &policies {
        let json = policy.to_json();
        let back = CpuPolicy::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&back, policy, "{name}");
        assert_eq!(back.to_json(), json, "{name}");
    }
}

#[test]
fn libvirt_round_trips_losslessly() {
    let Some(policies) = policies() else { return };
    for (name, policy) in &policies {
        let xml = policy.to_libvirt_xml().unwrap_or_else(|e| panic!("{name}: {e}"));
        let back = CpuPolicy::from_libvirt_xml(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&back, policy, "{name}");
    }
}

#[test]
fn wire_round_trip_is_lossless_for_what_it_carries_and_reports_the_rest() {
    let Some(policies) = policies() else { return };
    let mut dropped_per_dump = Vec::new();
    for limits in [WireLimits::LATEST, WireLimits::XEN_4_16_0, WireLimits::XEN_4_14_0] {
        for (name, policy) in &policies {
            let wire = policy.to_wire(&limits);
            assert!(wire.leaves.len() <= limits.max_leaves() as usize, "{name}");
            let back =
                CpuPolicy::from_wire(&wire.leaves, &wire.msrs, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(with_dropped(back.clone(), &wire.dropped), *policy, "{name}: carried + dropped = original");
            // Nothing carried is reported as dropped.
            for d in &wire.dropped {
                if let Dropped::Leaf { key, .. } = d {
                    assert!(!back.contains(*key), "{name}: {d}");
                }
            }
            // wire → model → wire is the identity.
            let again = back.to_wire(&limits);
            assert_eq!((again.leaves, again.msrs), (wire.leaves.clone(), wire.msrs.clone()), "{name}");
            assert!(again.dropped.is_empty(), "{name}");
            if limits == WireLimits::LATEST {
                dropped_per_dump.push((name.as_str(), wire.dropped.len()));
            }
        }
    }
    let total: usize = dropped_per_dump.iter().map(|d| d.1).sum();
    eprintln!("Xen 4.17+ format: {total} entries of {} dumps reported as not carried", dropped_per_dump.len());
}

#[test]
fn migration_records_round_trip_through_bytes() {
    let Some(policies) = policies() else { return };
    for (name, policy) in &policies {
        let wire = policy.to_wire(&WireLimits::LATEST);
        let cpuid = cpuid_record_to_bytes(&wire.leaves);
        let msrs = msr_record_to_bytes(&wire.msrs);
        assert_eq!((cpuid.len(), msrs.len()), (wire.leaves.len() * 24, wire.msrs.len() * 16), "{name}");
        assert_eq!(cpuid_record_from_bytes(&cpuid).unwrap(), wire.leaves, "{name}");
        assert_eq!(msr_record_from_bytes(&msrs).unwrap(), wire.msrs, "{name}");
    }
}

#[test]
fn xen_cpuid_text_of_each_dump_parses_back() {
    let Some(policies) = policies() else { return };
    for (name, policy) in &policies {
        let (report, _) = XenCpuidReport::single(SectionName::System(SystemPolicy::Raw), policy, &WireLimits::LATEST);
        let text = report.to_string();
        let back = XenCpuidReport::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(back, report, "{name}");
    }
}

#[test]
fn featureset_written_back_changes_nothing() {
    let Some(policies) = policies() else { return };
    for (name, policy) in &policies {
        let mut copy = policy.clone();
        copy.set_featureset(&policy.featureset()).unwrap();
        assert_eq!(&copy, policy, "{name}");
        // The words read are the registers each word mirrors.
        let looked_up: Vec<u32> = WORDS
            .iter()
            .map(|info| match info.source {
                WordSource::Cpuid { leaf, subleaf, register } => {
                    policy.cpuid(CpuidKey::new(leaf, subleaf)).get(register)
                }
                WordSource::Msr { index, high } => (policy.msr(index) >> if high { 32 } else { 0 }) as u32,
            })
            .collect();
        assert_eq!(policy.feature_words().as_slice(), looked_up, "{name}");
    }
}

#[test]
fn what_is_not_carried_is_what_xen_has_no_room_for() {
    // Spot checks on dumps whose contents are known.
    let Some(policies) = policies() else { return };
    let find = |name: &str| &policies.iter().find(|(n, _)| n == name).unwrap().1;

    // A Sapphire-Rapids-class Xeon: leaf 0x1f, 0xb sub-leaf 2 and MSR 0xcf go; leaf 7:2 stays.
    let xeon = find("x86_64-cpuid-Xeon-Gold-6530.xml");
    let wire = xeon.to_wire(&WireLimits::LATEST);
    let dropped: Vec<String> = wire.dropped.iter().map(ToString::to_string).collect();
    assert!(dropped.iter().any(|d| d.starts_with("leaf 0x0000001f:0x0 ")), "{dropped:#?}");
    assert!(dropped.iter().any(|d| d.starts_with("leaf 0x0000000b:0x2 ")), "{dropped:#?}");
    assert!(dropped.iter().any(|d| d.starts_with("MSR 0xcf ")), "{dropped:#?}");
    assert!(wire.leaves.iter().any(|l| (l.leaf, l.subleaf, l.d) == (7, 2, 0x1f)));
    // Xen 4.14.0 had no room for leaf 7:2 or MSR_ARCH_CAPABILITIES.
    let old = xeon.to_wire(&WireLimits::XEN_4_14_0);
    assert!(old.dropped.iter().any(|d| d.to_string().starts_with("leaf 0x00000007:0x2 ")));
    assert!(old.dropped.iter().any(|d| d.to_string().starts_with("MSR 0x10a ")));
}
