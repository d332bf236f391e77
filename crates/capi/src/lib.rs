//! The C ABI of cpupolicy: `libcpupolicy.so` / `libcpupolicy.a`, declared in `include/cpupolicy.h`.
//!
//! Existing toolstacks (xapi/xenopsd through OCaml C stubs, libxl, libvirt's libxl driver) are C.
//! This crate gives them the whole library behind a small set of conventions, the same for every
//! function, so a caller learns them once:
//!
//! - Every function returns a [`cpupolicy_status`] (stable numbers, never reused) and writes
//!   results through out-pointers; on failure nothing is written to them.
//! - [`cpupolicy_strerror`] names a status; [`cpupolicy_last_error`] gives the calling thread's
//!   last detailed message (which leaf, which feature, which token).
//! - Caller-allocated buffers use the size-query convention: pass `NULL`/0 to learn the size
//!   through `*needed`; a short buffer gets `CPUPOLICY_BUFFER_TOO_SMALL` and is never written past.
//!   `cpupolicy_policy_serialise`, shaped after libxenguest's `xc_cpu_policy_serialise`, fills
//!   two buffers at once: its counts are capacities on entry and the counts (written, or needed)
//!   on return, and a short buffer leaves both unwritten.
//! - Objects are opaque handles created by `cpupolicy_*_new`/`_parse`/… and released by the
//!   matching `_free`. Every live handle is registered with its type: passing the wrong kind of
//!   handle, a freed one or a foreign pointer gets `CPUPOLICY_WRONG_HANDLE` without the memory
//!   being read. A freed handle whose address was reused for a new object of the same type names
//!   that object: that much no registry can detect.
//! - No panic crosses the boundary: each exported function runs inside `catch_unwind`, and a
//!   panic becomes `CPUPOLICY_INTERNAL_ERROR`.
//! - Thread safety: distinct handles may be used from different threads at once; one handle may
//!   be read from several threads at once but not written concurrently (like a C `const`).
//! - A pointer argument may be NULL only where its function says so; elsewhere NULL gets
//!   `CPUPOLICY_INVALID_ARGUMENT`, naming the argument. Enumerations are `uint32_t` typedefs
//!   with `#define`d values, so an out-of-range value is a status too.
//!
//! What it covers, one handle type per kind of object:
//!
//! - `cpupolicy_featureset`: parse, format, decode, names, set operations, static masks.
//! - `cpupolicy_policy`: one CPU policy; import from JSON, `xen-cpuid -p DOMID` text, libvirt
//!   dumps or Xen's `xen_cpuid_leaf_t`/`xen_msr_entry_t` arrays (`cpupolicy_cpuid_leaf`,
//!   `cpupolicy_msr_entry`, same layout); export to each (Xen's arrays also straight into
//!   caller buffers, without allocating); typed fields, raw leaves and MSRs, the featureset view,
//!   differences, and the libvirt-style `cpupolicy_compare` and `cpupolicy_baseline`.
//! - `cpupolicy_host`: a host's six system policies (JSON host bundle, `xen-cpuid -p`, Xen, or
//!   predicted from a raw policy by `cpupolicy_derive`).
//! - `cpupolicy_pool`: a levelled pool (`cpupolicy_level`) with its explanation, and the xl
//!   `cpuid=` line or libvirt `<cpu>` element that applies it (`cpupolicy_pool_config`);
//!   `cpupolicy_xl_apply` reads an xl configuration's `cpuid=` back onto a host.
//! - `cpupolicy_check`: a migration check, every mismatch and warning by name.
//! - Fleets, without a handle: `cpupolicy_placement` (which VM may run on which host, hosts
//!   and VMs grouped into classes of identical policies) and `cpupolicy_plan` (what a host
//!   joining, leaving or being replaced would do to the pool's policies and which VMs it would
//!   strand), as JSON or text.
//! - `cpupolicy_xen`: the running Xen: system featuresets and policies, domain policies.
//! - `cpupolicy_topology`: vCPU APIC IDs and topology leaves, applied to a policy.

mod check;
mod config;
mod featureset;
mod ffi;
mod host;
mod placement;
mod policy;
mod pool;
mod topology;
mod xen;

pub use check::*;
pub use config::*;
pub use featureset::*;
pub use host::*;
pub use policy::*;
pub use pool::*;
pub use topology::*;
pub use xen::*;

pub use ffi::{
    cpupolicy_last_error, cpupolicy_last_rejection, cpupolicy_rejection, cpupolicy_status, cpupolicy_strerror,
    cpupolicy_version, CPUPOLICY_REJECTION_NONE,
};
