//! xl's `cpuid=` setting, both forms, whole configuration files: no panic for any release; what
//! reads applies to a policy without panicking, and the list form it writes reads back the same.
#![no_main]

use cpupolicy_featureset::XenRelease;
use cpupolicy_policy::xl::XlCpuid;
use cpupolicy_policy::CpuPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for release in [XenRelease::V4_14, XenRelease::V4_17, XenRelease::V4_22] {
        let Ok(cpuid) = XlCpuid::parse(text, release) else { continue };
        let policy = CpuPolicy::new();
        let _ = cpuid.apply(&policy, &policy, &policy);
        if cpuid.msrs.is_empty() && !cpuid.leaves.is_empty() {
            let again = XlCpuid::parse(&cpuid.to_list_text(), release).expect("the list form written reads back");
            assert_eq!(again, cpuid);
        }
    }
});
