//! vCPU topology for Xen guests: shapes, APIC IDs, and the CPUID leaves that describe them.
//!
//! Why it is built this way. A guest learns its topology only from CPUID (and its APIC IDs),
//! and once booted it must keep what it learnt across migration. Xen up to 4.22 gives every
//! HVM vCPU APIC ID 2 × vCPU and patches a few leaf fields; VMs that booted that way must keep
//! it, so the scheme is an explicit choice ([`Scheme::XenLegacy`] beside [`Scheme::Modern`])
//! and the migration record treats "no record" as "legacy" ([`TopologyRecord::from_stream`]).
//! Everything here is a pure function of a checked [`Topology`] and a base policy, seen
//! through the small [`CpuidAccess`] trait so the policy crate's `CpuPolicy` can be the
//! target without this crate depending on it (the `policy` feature adds that implementation
//! and [`XenPolicyTarget`], which refuses leaves Xen's format cannot carry). Generation has one small function per leaf in
//! a module per vendor convention ([`generate::intel`], [`generate::amd`],
//! [`generate::xen_legacy`]); the inverse ([`parse_vcpu`], [`parse_vcpus`]) follows Linux's
//! parser and reports disagreements as [`Finding`]s instead of failing, because real
//! firmware disagrees with itself and a tool that refuses such hosts is no use.
//!
//! Where the facts come from:
//!
//! - APIC ID layout (each level `ceil(log2(count))` bits, thread lowest) and vCPU order:
//!   QEMU `include/hw/i386/topology.h` (`x86_apicid_from_cpu_idx`), the Intel SDM
//!   "Processor topology" chapter.
//! - Intel leaves 1, 4, 0xB, 0x1F: Intel SDM vol. 2A "CPUID"; QEMU `target/i386/cpu.c`
//!   `cpu_x86_cpuid()`, `encode_cache_cpuid4()`, `encode_topo_cpuid1f()` (0x1F only with
//!   modules or dies). AMD leaves 1, 0x80000001, 0x80000008, 0x8000001D, 0x8000001E: AMD APM
//!   vol. 3 "CPUID"; QEMU `encode_cache_cpuid8000001d()`, `encode_topo_cpuid8000001e()`.
//! - Xen's legacy scheme: `tools/libs/guest/xg_cpuid_x86.c` `xc_cpuid_apply_policy()`,
//!   `xen/arch/x86/cpuid.c` `guest_cpuid()`, `xen/arch/x86/cpu-policy.c`
//!   `recalculate_misc()`, `xen/arch/x86/hvm/vlapic.c` `set_x2apic_id()` (Xen 4.14–4.22;
//!   the differences are noted in [`generate::xen_legacy`]).
//! - Parsing: Linux 6.9+ `arch/x86/kernel/cpu/topology_common.c`, `topology_ext.c`,
//!   `topology_amd.c`.
//! - x2APIC need (IDs ≥ 0xFF) and Hyper-V VP index stability: REFERENCE §6, QEMU and KVM.
//!
//! There is no I/O here and no `unsafe`. Bad shapes are [`TopologyError`]s naming the level
//! or field; nothing panics on input.

#![forbid(unsafe_code)]

pub mod cpuid;
mod error;
pub mod generate;
pub mod parse;
#[cfg(feature = "policy")]
mod policy;
#[cfg(feature = "qemu")]
pub mod qemu;
mod record;
mod shape;

pub use cpuid::{CpuidAccess, CpuidEntry, CpuidLeaves, Registers, UnstorableLeaf};
pub use error::TopologyError;
pub use parse::{parse_vcpu, parse_vcpus, Domains, Finding, ParsedTopology, ParsedVcpu, TopologySource};
#[cfg(feature = "policy")]
pub use policy::XenPolicyTarget;
pub use record::{RecordError, RecordedVcpu, StreamTopology, TopologyRecord};
pub use shape::{
    ApicLayout, Level, Scheme, Shape, Topology, VcpuIds, VcpuInfo, VcpuTable, Vendor, MAX_VCPUS, XEN_LEGACY_MAX_VCPUS,
};
