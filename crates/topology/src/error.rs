//! Errors for shapes that cannot be built and leaves that cannot be written.

use crate::cpuid::{SubleafSuffix, UnstorableLeaf};
use crate::shape::{Level, Vendor};

/// Why a topology cannot be built or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A level of the shape has a count of zero.
    #[error("the number of {level} is zero; every level needs at least 1")]
    ZeroCount {
        /// The level whose count is zero.
        level: Level,
    },

    /// The shape has more vCPUs than this crate models.
    #[error(
        "the shape has {}{vcpus} vCPUs; at most {limit} are supported",
        if *vcpus == u64::MAX { "at least " } else { "" }
    )]
    TooManyVcpus {
        /// vCPUs in the shape (product of all levels), `u64::MAX` when the product is that
        /// or more.
        vcpus: u64,
        /// The limit.
        limit: u32,
    },

    /// The APIC ID fields of all levels do not fit in a 32-bit x2APIC ID.
    #[error("APIC IDs for this shape need {bits} bits; an x2APIC ID has 32")]
    ApicIdOverflow {
        /// Bits the shape needs.
        bits: u32,
    },

    /// A vCPU's APIC ID needs x2APIC but the guest is not offered x2APIC.
    #[error(
        "vCPU {vcpu} gets APIC ID {apic_id:#x}, which needs x2APIC (xAPIC IDs stop at 0xfe), \
         but x2APIC is not offered to the guest"
    )]
    X2apicRequired {
        /// The first vCPU whose APIC ID is 0xFF or more.
        vcpu: u32,
        /// Its APIC ID.
        apic_id: u32,
    },

    /// Xen's legacy scheme (APIC ID = 2 × vCPU) cannot address this many vCPUs.
    #[error(
        "Xen's legacy topology gives vCPU n APIC ID 2n and Xen limits such HVM guests to \
         {limit} vCPUs; the shape has {vcpus}"
    )]
    XenLegacyTooManyVcpus {
        /// vCPUs in the shape.
        vcpus: u32,
        /// Xen's `HVM_MAX_VCPUS`.
        limit: u32,
    },

    /// The vendor's CPUID leaves have no field for this level.
    #[error("{vendor} CPUID has no field for {level}; a {vendor} shape must have 1 of them per parent")]
    UnsupportedLevel {
        /// The vendor.
        vendor: Vendor,
        /// The level that must be 1.
        level: Level,
    },

    /// A value does not fit the CPUID field that must carry it.
    #[error(
        "CPUID leaf {leaf:#x}{} {register}[{field}] must hold {value}, more than its maximum {max}",
        SubleafSuffix(*.subleaf)
    )]
    FieldOverflow {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf, if any.
        subleaf: Option<u32>,
        /// The register name.
        register: &'static str,
        /// The field's bit range and name.
        field: &'static str,
        /// The value that does not fit.
        value: u32,
        /// The field's largest value.
        max: u32,
    },

    /// The list of Hyper-V VP indices does not have one entry per vCPU.
    #[error("{given} Hyper-V VP indices given for {vcpus} vCPUs")]
    VpIndexCount {
        /// vCPUs in the shape.
        vcpus: u32,
        /// Entries given.
        given: usize,
    },

    /// Two vCPUs were given the same Hyper-V VP index.
    #[error("vCPUs {first} and {second} both have Hyper-V VP index {vp_index}")]
    DuplicateVpIndex {
        /// The repeated index.
        vp_index: u32,
        /// The first vCPU that has it.
        first: u32,
        /// The second vCPU that has it.
        second: u32,
    },

    /// A vCPU number outside the shape.
    #[error("there is no vCPU {vcpu}; the shape has {vcpus}")]
    NoSuchVcpu {
        /// The vCPU asked for.
        vcpu: u32,
        /// vCPUs in the shape.
        vcpus: u32,
    },

    /// The target CPU policy cannot hold a leaf the topology needs.
    #[error(transparent)]
    Unstorable(#[from] UnstorableLeaf),
}
