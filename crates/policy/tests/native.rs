//! Reading this machine's CPU.

use cpupolicy_featureset::known;
use cpupolicy_policy::{CpuPolicy, CpuidKey, Dropped, NativeError, WireLimits};

#[test]
fn this_machine_reads_as_a_consistent_raw_policy() {
    let native = match CpuPolicy::read_native() {
        Ok(native) => native,
        Err(NativeError::NotX86) => {
            eprintln!("SKIP: not an x86 machine");
            return;
        }
    };
    for note in &native.notes {
        eprintln!("note: {note}");
    }
    let p = &native.policy;
    assert!(p.max_basic_leaf() >= 1 && p.max_extended_leaf() >= 0x8000_0001, "{p:?}");
    assert!(p.has_feature(known("fpu")) && p.has_feature(known("lm")), "{p:?}");
    // Every leaf up to each limit was read; sub-leaves only where the leaf has them.
    for (key, _) in p.cpuid_entries() {
        assert!(cpupolicy_policy::has_subleaves(key.leaf) == key.subleaf.is_some(), "{key}");
    }
    if p.max_basic_leaf() >= 7 {
        assert!(p.contains(CpuidKey::indexed(7, 0)));
    }
    assert_eq!(CpuPolicy::from_json(&p.to_json()).unwrap(), *p);
    let wire = p.to_wire(&WireLimits::LATEST);
    let mut back = CpuPolicy::from_wire(&wire.leaves, &wire.msrs, &WireLimits::LATEST).unwrap();
    for d in &wire.dropped {
        match *d {
            Dropped::Leaf { key, registers, .. } => back.set_cpuid(key, registers),
            Dropped::Msr { index, value, .. } => back.set_msr(index, value),
        }
    }
    assert_eq!(back, *p);
    eprintln!(
        "{} family {:#x} model {:#x}: {} leaves, {} MSRs, {} not in Xen's format",
        p.vendor(),
        p.family(),
        p.model(),
        p.cpuid_len(),
        p.msrs().len(),
        wire.dropped.len()
    );
}
