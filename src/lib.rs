//! cpupolicy: x86 CPU policy for Xen toolstacks.
//!
//! A pool of Xen hosts rarely has identical CPUs, and a VM must only see features every host it
//! may migrate to can give it. This crate is the facade over the pieces that answer that:
//!
//! - [`featureset`]: Xen's featureset: every named feature, attributes, dependencies, text forms.
//! - [`policy`]: the full CPUID + MSR policy, its formats, levelling and migration checks.
//! - [`topology`]: vCPU APIC IDs and the CPUID leaves that describe them.
//! - [`hypercall`]: fetching and setting policies from Xen through privcmd, without libxc.
//! - [`xen`]: the two joined: system featuresets and policies, host bundles, domain policies.
//!
//! Each is a separate crate so a toolstack can depend on only what it needs; the `cpupolicy`
//! command line is built on this facade, the C ABI (`libcpupolicy`) on the same crates.

pub use cpupolicy_featureset as featureset;
pub use cpupolicy_hypercall as hypercall;
pub use cpupolicy_policy as policy;
pub use cpupolicy_topology as topology;
pub use cpupolicy_xen as xen;
