//! `xen-cpuid -p` text against what real Xen 4.14, 4.17 and 4.20 printed (`../shared/xen-reference/`).

mod common;

use cpupolicy_featureset::Featureset;
use cpupolicy_policy::{HostBundle, PrintedPolicy, SectionName, SystemPolicy, WireLimits, XenCpuidReport};

#[test]
fn recorded_outputs_parse_and_print_back_byte_for_byte() {
    let Some(references) = common::xen_references() else { return };
    for (release, text, _) in references {
        let report = XenCpuidReport::parse(&text).unwrap_or_else(|e| panic!("{release}: {e}"));
        assert_eq!(report.maxima, Some((120, 2)), "{release}");
        assert_eq!(report.sections.len(), 6, "{release}");
        assert_eq!(report.to_string(), text, "{release}");
    }
}

#[test]
fn serialising_the_parsed_policies_gives_xens_counts_and_lines() {
    // The header counts include the zero leaves xen-cpuid does not print: getting them right
    // means the serialisation walks exactly the leaves Xen's does.
    let Some(references) = common::xen_references() else { return };
    for (release, text, _) in references {
        let report = XenCpuidReport::parse(&text).unwrap();
        let limits = report.wire_limits();
        for section in &report.sections {
            let printed = section.content.as_ref().unwrap();
            let (again, dropped) = PrintedPolicy::new(printed.policy(), &limits);
            assert!(dropped.is_empty(), "{release} {}: {dropped:?}", section.name);
            assert_eq!(again, *printed, "{release} {}", section.name);
        }
    }
}

#[test]
fn bundle_and_json_carry_the_report_unchanged() {
    let Some(references) = common::xen_references() else { return };
    for (release, text, _) in references {
        let report = XenCpuidReport::parse(&text).unwrap();
        let bundle = report.to_bundle();
        assert_eq!(bundle.policies.len(), 6);
        let json = bundle.to_json();
        let back = HostBundle::from_json(&json).unwrap_or_else(|e| panic!("{release}: {e}\n{json}"));
        assert_eq!(back, bundle, "{release}");
        let (printed, dropped) = XenCpuidReport::from_bundle(&back);
        assert!(dropped.is_empty());
        assert_eq!(printed.to_string(), text, "{release}");
    }
}

#[test]
fn policy_featuresets_match_what_the_featureset_sysctl_reported() {
    // xen-cpuid's "Dynamic sets" come from XEN_SYSCTL_get_cpu_featureset, which Xen fills
    // from the same system policies: the featureset view must read the same words.
    let Some(references) = common::xen_references() else { return };
    for (release, policy_text, featureset_text) in references {
        let bundle = XenCpuidReport::parse(&policy_text).unwrap().to_bundle();
        let dynamic = featureset_text.split("Dynamic sets:").nth(1).expect("dynamic sets");
        let mut compared = 0;
        for line in dynamic.lines().filter(|l| !l.trim().is_empty()) {
            let (label, words) = line.trim_end().rsplit_once(' ').unwrap();
            let which: SystemPolicy = label.trim().parse().unwrap();
            let reported = Featureset::parse(words).unwrap();
            let from_policy = bundle.policies.get(which).unwrap().featureset();
            assert_eq!(from_policy, reported, "{release} {which}");
            compared += 1;
        }
        assert_eq!(compared, 6, "{release}");
    }
}

#[test]
fn the_tsx_story_max_keeps_what_default_hides() {
    // 4.17's HVM Max has leaf 7 max sub-leaf 2 (for migrating in) where Default has none.
    let Some(references) = common::xen_references() else { return };
    let text = &references.iter().find(|r| r.0 == "4.17").unwrap().1;
    let bundle = XenCpuidReport::parse(text).unwrap().to_bundle();
    let max = bundle.policies.get(SystemPolicy::HvmMax).unwrap();
    let default = bundle.policies.get(SystemPolicy::HvmDefault).unwrap();
    assert_eq!((max.leaf7_max_subleaf(), default.leaf7_max_subleaf()), (2, 0));
    assert!(max.cpuid_faulting() && default.cpuid_faulting());
}

#[test]
fn a_domain_section_prints_without_the_maxima_line() {
    let Some(references) = common::xen_references() else { return };
    let report = XenCpuidReport::parse(&references[2].1).unwrap();
    let raw = report.to_bundle().policies.get(SystemPolicy::Raw).unwrap().clone();
    let (single, dropped) = XenCpuidReport::single(SectionName::Domain(3), &raw, &WireLimits::LATEST);
    assert!(dropped.is_empty());
    let text = single.to_string();
    assert!(text.starts_with("Domain 3 policy: 29 leaves, 2 MSRs\n"), "{text}");
    assert_eq!(XenCpuidReport::parse(&text).unwrap(), single);
}

#[test]
fn unsupported_policies_round_trip() {
    let Some(references) = common::xen_references() else { return };
    let text = references[1].1.clone();
    // Cut the two HVM policies as a Xen without HVM support prints them.
    let mut report = XenCpuidReport::parse(&text).unwrap();
    for section in &mut report.sections {
        if matches!(section.name, SectionName::System(SystemPolicy::HvmMax | SystemPolicy::HvmDefault)) {
            section.content = None;
        }
    }
    let printed = report.to_string();
    assert!(printed.contains("\nHVM Max policy not supported by Xen\nPV Default policy:"));
    let again = XenCpuidReport::parse(&printed).unwrap();
    assert_eq!(again, report);
    assert_eq!(again.to_bundle().policies.len(), 4);
}
