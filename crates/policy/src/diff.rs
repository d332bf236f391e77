//! Differences between two policies: register by register, MSR by MSR, and feature by name.

use std::fmt;

use cpupolicy_featureset::FeatureId;

use crate::policy::REGISTER_NAMES;
use crate::{CpuPolicy, CpuidKey, Registers};

/// Everything that differs between policy A and policy B.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDiff {
    /// Leaves whose registers differ (a leaf one side lacks reads as zero there), by key.
    pub leaves: Vec<LeafDiff>,
    /// MSRs whose values differ, by index.
    pub msrs: Vec<MsrDiff>,
    /// Features A has and B lacks.
    pub only_in_a: Vec<FeatureId>,
    /// Features B has and A lacks.
    pub only_in_b: Vec<FeatureId>,
}

/// One leaf that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafDiff {
    /// The leaf.
    pub key: CpuidKey,
    /// Its registers in A (zero when A lacks it).
    pub a: Registers,
    /// Its registers in B (zero when B lacks it).
    pub b: Registers,
}

/// One MSR that differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrDiff {
    /// The MSR index.
    pub index: u32,
    /// Its value in A (zero when A lacks it).
    pub a: u64,
    /// Its value in B (zero when B lacks it).
    pub b: u64,
}

impl PolicyDiff {
    /// What differs from `a` to `b`.
    pub fn between(a: &CpuPolicy, b: &CpuPolicy) -> PolicyDiff {
        let mut leaves = Vec::new();
        let (mut left, mut right) = (a.cpuid_entries().peekable(), b.cpuid_entries().peekable());
        loop {
            let next = match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some(&(key, _)), None) => key,
                (None, Some(&(key, _))) => key,
                (Some(&(ka, _)), Some(&(kb, _))) => ka.min(kb),
            };
            let ra = left.next_if(|(k, _)| *k == next).map_or(Registers::ZERO, |(_, r)| r);
            let rb = right.next_if(|(k, _)| *k == next).map_or(Registers::ZERO, |(_, r)| r);
            if ra != rb {
                leaves.push(LeafDiff { key: next, a: ra, b: rb });
            }
        }

        let mut indexes: Vec<u32> = a.msrs().chain(b.msrs()).map(|(index, _)| index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let msrs = indexes
            .into_iter()
            .filter(|&index| a.msr(index) != b.msr(index))
            .map(|index| MsrDiff { index, a: a.msr(index), b: b.msr(index) })
            .collect();

        let (fa, fb) = (a.featureset(), b.featureset());
        PolicyDiff {
            leaves,
            msrs,
            only_in_a: fa.difference(&fb).iter().collect(),
            only_in_b: fb.difference(&fa).iter().collect(),
        }
    }

    /// The two policies are equal.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty() && self.msrs.is_empty()
    }
}

impl fmt::Display for PolicyDiff {
    /// One line per differing register and MSR (`A -> B`), then the features by name. Nothing
    /// when the policies are equal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for leaf in &self.leaves {
            for (register, name) in REGISTER_NAMES {
                let (a, b) = (leaf.a.get(register), leaf.b.get(register));
                if a != b {
                    writeln!(f, "leaf {} {name}: {a:08x} -> {b:08x}", leaf.key)?;
                }
            }
        }
        for msr in &self.msrs {
            writeln!(f, "MSR {:#x}: {:016x} -> {:016x}", msr.index, msr.a, msr.b)?;
        }
        for (label, features) in [("only in A", &self.only_in_a), ("only in B", &self.only_in_b)] {
            if !features.is_empty() {
                let names: Vec<String> = features.iter().map(FeatureId::to_string).collect();
                writeln!(f, "features {label}: {}", names.join(" "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpupolicy_featureset::ids;

    #[test]
    fn differences_are_named() {
        let mut a = CpuPolicy::new();
        a.set_cpuid(CpuidKey::plain(1), Registers::new(0x306c3, 0, 0x8000_0000, 0));
        a.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3028, 0, 0, 0));
        let mut b = a.clone();
        b.set_register(CpuidKey::plain(1), cpupolicy_featureset::Register::Ecx, 0x1000_0000);
        b.remove_cpuid(CpuidKey::plain(0x8000_0008));
        b.set_cpuid_faulting(true);
        let diff = PolicyDiff::between(&a, &b);
        assert_eq!(diff.leaves.len(), 2);
        assert_eq!(diff.only_in_a, [ids::HYPERVISOR]);
        assert_eq!(diff.only_in_b, [ids::AVX]);
        let text = diff.to_string();
        assert_eq!(
            text,
            "leaf 0x00000001 ecx: 80000000 -> 10000000\n\
             leaf 0x80000008 eax: 00003028 -> 00000000\n\
             MSR 0xce: 0000000000000000 -> 0000000080000000\n\
             features only in A: hypervisor\n\
             features only in B: avx\n"
        );
        assert!(PolicyDiff::between(&a, &a).is_empty());
    }
}
