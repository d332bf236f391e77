//! The system policies of one host; the numberings and Xen's version are the ABI crate's.

use crate::CpuPolicy;

pub use cpupolicy_abi::{FeaturesetIndex, PolicyIndex, SystemPolicy, UnknownSystemPolicy, XenVersion};

/// The system policies of one host, each present or not (Xen without HVM support has no HVM
/// policies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemPolicies([Option<CpuPolicy>; 6]);

impl SystemPolicies {
    /// None present.
    pub fn new() -> SystemPolicies {
        SystemPolicies::default()
    }

    /// One policy, if present.
    pub fn get(&self, which: SystemPolicy) -> Option<&CpuPolicy> {
        self.0[which.policy_index().get() as usize].as_ref()
    }

    /// One policy, mutable, if present.
    pub fn get_mut(&mut self, which: SystemPolicy) -> Option<&mut CpuPolicy> {
        self.0[which.policy_index().get() as usize].as_mut()
    }

    /// Sets (or with `None` removes) one policy.
    pub fn set(&mut self, which: SystemPolicy, policy: Option<CpuPolicy>) {
        self.0[which.policy_index().get() as usize] = policy;
    }

    /// Every present policy, in [`SystemPolicy::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SystemPolicy, &CpuPolicy)> + '_ {
        SystemPolicy::ALL.into_iter().filter_map(|which| self.get(which).map(|p| (which, p)))
    }

    /// Number present.
    pub fn len(&self) -> usize {
        self.0.iter().flatten().count()
    }

    /// None present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
