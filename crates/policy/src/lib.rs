//! The full x86 CPU policy of a Xen host or guest: every CPUID leaf and MSR, the fields
//! toolstacks reason about, and the formats policies travel in.
//!
//! # Why it looks like this
//!
//! A featureset says which features a CPU has; a policy says everything a guest's `cpuid`
//! returns: vendor, family, max leaves, address widths, cache and topology leaves, xstate
//! sizes, and the features. Levelling a pool and checking a migration need the whole of it,
//! and the facts come from several places: Xen's hypercalls and migration stream (an array of
//! `xen_cpuid_leaf_t`, whose content depends on the Xen release), `xen-cpuid -p` output,
//! libvirt's CPU dumps, the machine's own `cpuid` instruction. So the model, [`CpuPolicy`], is
//! a plain sorted list of (leaf, sub-leaf) → registers plus MSR index → value that holds any
//! leaf any of them has, and each format is a pair of small functions over it that says what
//! it could not carry rather than dropping it quietly. Typed accessors read the few fields
//! toolstacks compare (vendor, family/model/stepping, max leaves, address bits, CPUID
//! faulting), and [`CpuPolicy::feature_words`] reads the featureset from the registers it
//! mirrors without allocating, which levelling thousands of hosts relies on.
//!
//! An all-zero leaf is the same as an absent one (the model does not store either), as for
//! the hardware and for `xen-cpuid`.
//!
//! # Where the facts come from
//!
//! - Xen's policy layout and serialisation: `xen/include/xen/lib/x86/cpu-policy.h` (`cpuid.h`
//!   and `msr.h` before 4.18) and `xen/lib/x86/{cpuid,msr}.c` of every release from 4.14.0
//!   to 4.22.0; which sizes changed when is tabled at [`WireLimits`].
//! - The text form: `tools/misc/xen-cpuid.c` (`print_policy`), checked byte for byte against
//!   recorded runs of Xen 4.14, 4.17 and 4.20 (`tests/xen_cpuid_text.rs`).
//! - The system policies and their two index numberings: `xen/include/public/sysctl.h`.
//! - The migration records: `docs/specs/libxc-migration-stream.pandoc` and
//!   `tools/libs/guest/xg_sr_common_x86.c`.
//! - Which leaves have sub-leaves and how they end: the Intel SDM and AMD APM ([`SUBLEAF_LEAVES`]).
//! - libvirt's dump format: its `tests/cputestdata/`; all 74 dumps of `../shared/cpu-dumps`
//!   are imported by the tests.
//!
//! The JSON formats are this project's own and are specified in the [`json`] module.
//!
//! There is no `unsafe` here; the only I/O is [`CpuPolicy::read_native`] and [`read_input`].

#![forbid(unsafe_code)]

mod check;
mod derive;
mod diff;
mod featuresets;
mod host_set;
mod import;
mod input;
pub mod json;
mod legacy;
mod level;
mod level_rules;
mod libvirt;
mod native;
mod placement;
mod placement_report;
mod policy;
mod pv_leak;
mod report;
mod system;
mod wire;
mod xen_cpuid;
pub mod xl;

pub use check::{check_migration, mxcsr_faults, MigrationCheck, Mismatch, Warning};
pub use cpupolicy_abi::{has_subleaves, subleaf_leaf, SubleafLeaf, SubleafWalk, MAX_WALKED_SUBLEAVES, SUBLEAF_LEAVES};
pub use cpupolicy_abi::{Vendor, VendorId};
pub use derive::{derive_system_policies, DeriveError, DeriveOptions, HvmMode};
pub use diff::{LeafDiff, MsrDiff, PolicyDiff};
pub use featuresets::{
    combine_featuresets, featureset_missing, level_featuresets, missing_features_line, xen_header_name,
};
pub use host_set::HostSet;
pub use import::{Document, ImportError, InputFormat, PoolPolicy};
pub use input::{read_input, read_stdin, InputError, MAX_INPUT_BYTES};
pub use json::{HostBundle, JsonError, HOST_BUNDLE_FORMAT, JSON_VERSION, POLICY_FORMAT, POOL_FORMAT};
pub use legacy::{synthesise_legacy, LegacyRules};
pub use level::{
    clear_out_of_range_leaves, feature_name, level_pool, level_pool_into, FeatureLoss, LevelError, LevelOptions,
    Levelled, LevelledPool, LimitField, LimitLoss, LossCause, PoolHost, ReflectedDifference,
};
pub use level_rules::{feature_rule, level_rule, FeatureRule, LevelRule, COMMON_1D_FEATURES, SPECIAL_RULES};
pub use libvirt::{LibvirtError, LibvirtWriteError};
pub use native::{NativeError, NativePolicy};
pub use placement::{
    plan, Change, Fleet, FleetVm, Placement, PlacementError, PlacementOptions, Plan, PolicyChange, Refusal, Stranding,
    Verdict, VmPlan,
};
pub use placement_report::{PLACEMENT_FORMAT, PLAN_FORMAT};
pub use policy::{
    CpuPolicy, CpuidEntries, CpuidKey, PolicyError, Registers, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO,
    PLATFORM_INFO_CPUID_FAULTING,
};
pub use pv_leak::{Levelling, LevellingCaps, Mechanism, LEVELCAP_FAULTING, LEVELCAP_MASKS};
pub use report::{explanation_text, guest_kind_name, hazards_text, pool_hazards, pool_json, Hazard};
pub use system::{FeaturesetIndex, PolicyIndex, SystemPolicies, SystemPolicy, UnknownSystemPolicy, XenVersion};
pub use wire::{
    cpuid_record_from_bytes, cpuid_record_to_bytes, msr_record_from_bytes, msr_record_to_bytes, DropReason, Dropped,
    RecordError, WireError, WireLeaf, WireLimits, WirePolicy, XenCpuidLeaf, XenMsrEntry, REC_TYPE_X86_CPUID_POLICY,
    REC_TYPE_X86_MSR_POLICY, XEN_CACHE_SUBLEAVES, XEN_CPUID_NO_SUBLEAF, XEN_HYPERVISOR_LEAVES, XEN_MAX_BASIC_LEAF,
    XEN_MAX_EXTENDED_LEAF, XEN_MAX_LEAF7_SUBLEAF, XEN_POLICY_MSRS, XEN_TOPOLOGY_SUBLEAVES, XEN_XSTATE_SUBLEAVES,
};
pub use xen_cpuid::{PrintedPolicy, ReportSection, SectionName, TextError, XenCpuidReport};
