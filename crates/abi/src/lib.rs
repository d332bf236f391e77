//! The bottom of cpupolicy: Xen's own vocabulary for CPU policy, defined once, with Xen's
//! names, for every crate above (the hypercalls, the policy model, the C API).
//!
//! - [`XenCpuidLeaf`] and [`XenMsrEntry`]: `xen_cpuid_leaf_t` and `xen_msr_entry_t`, laid out
//!   as Xen lays them out, as the sysctl, the domctl and the migration stream carry them.
//! - [`SystemPolicy`]: the six system policies, with the two numberings Xen's sysctls use
//!   ([`PolicyIndex`] for `XEN_SYSCTL_get_cpu_policy`, [`FeaturesetIndex`] for
//!   `XEN_SYSCTL_get_cpu_featureset`), typed apart.
//! - [`XenVersion`]: the version the hypervisor reports.
//!
//! No `unsafe`, no I/O.

#![forbid(unsafe_code)]

mod entries;
mod system;

pub use entries::{
    XenCpuidLeaf, XenMsrEntry, REC_TYPE_X86_CPUID_POLICY, REC_TYPE_X86_MSR_POLICY, XEN_CPUID_NO_SUBLEAF,
};
pub use system::{FeaturesetIndex, PolicyIndex, SystemPolicy, UnknownSystemPolicy, XenVersion};
