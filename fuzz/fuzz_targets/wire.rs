//! Xen's wire format with each release's limits: no panic; a policy read back from what it
//! writes is itself again; a rejected `apply_wire` changes nothing; `from_wire` (one pass) gives
//! what `apply_wire` (check, then store) gives onto an empty policy, error for error.
#![no_main]

use cpupolicy_policy::{CpuPolicy, WireLimits, XenCpuidLeaf, XenMsrEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let limits = [WireLimits::XEN_4_14_0, WireLimits::XEN_4_14_1, WireLimits::XEN_4_16_0, WireLimits::XEN_4_17]
        [usize::from(selector & 3)];
    let nr_msrs = usize::from(selector >> 2 & 3);
    let (msr_bytes, leaf_bytes) = rest.split_at((nr_msrs * 16).min(rest.len()));
    let msrs: Vec<XenMsrEntry> =
        msr_bytes.chunks_exact(16).map(|c| XenMsrEntry::from_le_bytes(c.try_into().unwrap())).collect();
    let leaves: Vec<XenCpuidLeaf> =
        leaf_bytes.chunks_exact(24).map(|c| XenCpuidLeaf::from_le_bytes(c.try_into().unwrap())).collect();

    let mut onto_empty = CpuPolicy::new();
    let applied = onto_empty.apply_wire(&leaves, &msrs, &limits).map(|()| onto_empty);
    assert_eq!(CpuPolicy::from_wire(&leaves, &msrs, &limits), applied, "from_wire and apply_wire disagree");

    // All or nothing: a rejected merge leaves the policy as it was.
    let base = CpuPolicy::from_wire(&leaves[..leaves.len() / 2], &[], &limits).unwrap_or_default();
    let mut merged = base.clone();
    match merged.apply_wire(&leaves, &msrs, &limits) {
        Err(_) => assert_eq!(merged, base, "a rejected apply_wire changed the policy"),
        Ok(()) => {
            // What the format carries of a policy reads back to a policy that writes the same.
            let wire = merged.to_wire(&limits);
            let again = CpuPolicy::from_wire(&wire.leaves, &wire.msrs, &limits).expect("written entries read back");
            assert_eq!(again.to_wire(&limits).leaves, wire.leaves);
        }
    }
});
