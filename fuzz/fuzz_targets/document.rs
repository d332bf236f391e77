//! Every text format `Document::parse` reads (JSON policy, host bundle, pool document,
//! `xen-cpuid -p`, libvirt dump): no panic, and what it reads writes back to the same thing.
#![no_main]

use cpupolicy_policy::{CpuPolicy, Document, HostBundle, InputFormat, XenCpuidReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(document) = Document::parse(text) else { return };
    match document {
        Document::Policy { policy, format: InputFormat::PolicyJson } => {
            assert_eq!(CpuPolicy::from_json(&policy.to_json()).expect("a written policy reads back"), policy);
        }
        Document::Policy { policy, .. } => {
            assert_eq!(CpuPolicy::from_json(&policy.to_json()).expect("a written policy reads back"), policy);
        }
        Document::Bundle(bundle) => {
            assert_eq!(HostBundle::from_json(&bundle.to_json()).expect("a written bundle reads back"), *bundle);
        }
        Document::XenCpuid(report) => {
            let again = XenCpuidReport::parse(&report.to_string()).expect("printed xen-cpuid text reads back");
            assert_eq!(again.to_string(), report.to_string());
        }
    }
});
