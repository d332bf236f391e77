//! Predicting Xen's policies from an arbitrary raw policy: an error or six policies, never a
//! panic, and the predicted default never beyond the max.
#![no_main]

use cpupolicy_policy::{derive_system_policies, DeriveOptions, SystemPolicy};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let raw = policy_from(data);
    let Ok(policies) = derive_system_policies(&raw, &DeriveOptions::detect(&raw)) else { return };
    for (default, max) in
        [(SystemPolicy::PvDefault, SystemPolicy::PvMax), (SystemPolicy::HvmDefault, SystemPolicy::HvmMax)]
    {
        if let (Some(default), Some(max)) = (policies.get(default), policies.get(max)) {
            let extra = default.featureset().difference(&max.featureset());
            // Accumulate bits and RSBA/RRSBA may differ by design; everything else must be within max.
            let extra: Vec<_> = extra
                .iter()
                .filter(|id| cpupolicy_policy::level_rule(*id) != cpupolicy_policy::LevelRule::Or)
                .collect();
            assert!(extra.is_empty(), "default beyond max: {extra:?}");
        }
    }
});
