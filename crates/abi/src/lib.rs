//! The bottom of cpupolicy: Xen's own vocabulary for CPU policy, defined once, with Xen's
//! names, for every crate above (the hypercalls, the policy model, the C API).
//!
//! - [`XenCpuidLeaf`] and [`XenMsrEntry`]: `xen_cpuid_leaf_t` and `xen_msr_entry_t`, laid out
//!   as Xen lays them out, as the sysctl, the domctl and the migration stream carry them.
//! - [`SystemPolicy`]: the six system policies, with the two numberings Xen's sysctls use
//!   ([`PolicyIndex`] for `XEN_SYSCTL_get_cpu_policy`, [`FeaturesetIndex`] for
//!   `XEN_SYSCTL_get_cpu_featureset`), typed apart.
//! - [`XenVersion`]: the version the hypervisor reports.
//! - [`WireLimits`] and [`layout`]: what Xen's policy format holds, release by release, and
//!   one flat index of its arrays.
//! - [`XenRelease`] and [`RELEASES`]: every release from 4.14 with its interface versions,
//!   featureset length, policy format and what changed.
//! - [`Vendor`]: the CPU vendor from leaf 0.
//! - [`SUBLEAF_LEAVES`]: which leaves have sub-leaves and how each enumerates them.
//! - [`CpuidKey`], [`Registers`], [`Register`]: a CPUID leaf and sub-leaf and its output.
//!
//! No `unsafe`, no I/O.

#![forbid(unsafe_code)]

mod cpuid;
mod entries;
pub mod layout;
mod leaves;
mod release;
mod slot_index;
mod system;
mod vendor;

pub use cpuid::{CpuidKey, Register, Registers};
pub use entries::{
    XenCpuidLeaf, XenMsrEntry, REC_TYPE_X86_CPUID_POLICY, REC_TYPE_X86_MSR_POLICY, XEN_CPUID_NO_SUBLEAF,
};
pub use layout::{
    WireLimits, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, XEN_CACHE_SUBLEAVES, XEN_HYPERVISOR_LEAVES,
    XEN_MAX_BASIC_LEAF, XEN_MAX_EXTENDED_LEAF, XEN_MAX_LEAF7_SUBLEAF, XEN_POLICY_MSRS, XEN_TOPOLOGY_SUBLEAVES,
    XEN_XSTATE_SUBLEAVES,
};
pub use leaves::{has_subleaves, subleaf_leaf, SubleafLeaf, SubleafWalk, MAX_WALKED_SUBLEAVES, SUBLEAF_LEAVES};
pub use release::{ReleaseFacts, XenRelease, RELEASES};
pub use system::{FeaturesetIndex, PolicyIndex, SystemPolicy, UnknownSystemPolicy, XenVersion};
pub use vendor::{Vendor, VendorId};
