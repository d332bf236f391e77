//! AMD's (and Hygon's) conventions for the `Modern` scheme (AMD APM vol. 3 "CPUID"; QEMU
//! `target/i386/cpu.c` `cpu_x86_cpuid()`, `encode_cache_cpuid8000001d()`,
//! `encode_topo_cpuid8000001e()`).
//!
//! AMD counts *processors*: leaf 1 `EBX[23:16]`, 0x80000008 NC and 0x8000001D's sharing field
//! say how many exist (real parts agree: a Ryzen 9 3900X, three cores per L3, reports 6
//! threads sharing its L3, not 8). Dies are AMD's nodes in 0x8000001E ECX.

use super::{cache_subleaves, intel, read, subleaves_from};
use crate::cpuid::{bit, field, leaf, shr, with_bit, with_field, CpuidAccess, CpuidLeaves, Registers, EAX, EBX, ECX};
use crate::error::TopologyError;
use crate::shape::{Shape, Topology};

/// Most threads per package 0x80000008 `ECX[7:0]` (NC, threads − 1) can count.
pub const MAX_THREADS_PER_PACKAGE: u32 = 256;
/// Most nodes (dies) per package 0x8000001E `ECX[10:8]` (nodes − 1) can count.
pub const MAX_NODES_PER_PACKAGE: u32 = 8;

/// Refuses shapes whose counts do not fit AMD's fields.
pub(crate) fn check_fields(shape: &Shape) -> Result<(), TopologyError> {
    let threads = shape.threads_in_package();
    if threads > MAX_THREADS_PER_PACKAGE {
        return Err(TopologyError::FieldOverflow {
            leaf: leaf::ADDRESS_SIZES,
            subleaf: None,
            register: "ECX",
            field: "7:0 NC",
            value: threads - 1,
            max: MAX_THREADS_PER_PACKAGE - 1,
        });
    }
    if shape.dies_per_package > MAX_NODES_PER_PACKAGE {
        return Err(TopologyError::FieldOverflow {
            leaf: leaf::AMD_EXTENDED_APIC_ID,
            subleaf: None,
            register: "ECX",
            field: "10:8 NodesPerProcessor",
            value: shape.dies_per_package - 1,
            max: MAX_NODES_PER_PACKAGE - 1,
        });
    }
    Ok(())
}

/// Writes every AMD topology leaf of vCPU `vcpu` into `out`.
pub(crate) fn fill(t: &Topology, base: &impl CpuidAccess, vcpu: u32, out: &mut CpuidLeaves) {
    out.insert(leaf::FEATURES, None, leaf_0x1(t, vcpu, read(base, leaf::FEATURES, None)));
    for s in 0..=2 {
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), intel::leaf_0xb(t, vcpu, s));
    }
    for s in subleaves_from(base, leaf::EXTENDED_TOPOLOGY, 3) {
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), intel::leaf_0xb(t, vcpu, s));
    }
    out.insert(leaf::EXTENDED_FEATURES, None, leaf_0x80000001(t, read(base, leaf::EXTENDED_FEATURES, None)));
    out.insert(leaf::ADDRESS_SIZES, None, leaf_0x80000008(t, read(base, leaf::ADDRESS_SIZES, None)));
    for (s, regs) in cache_subleaves(base, leaf::AMD_CACHE_TOPOLOGY) {
        out.insert(leaf::AMD_CACHE_TOPOLOGY, Some(s), leaf_0x8000001d(t, regs));
    }
    out.insert(leaf::AMD_EXTENDED_APIC_ID, None, leaf_0x8000001e(t, vcpu));
}

/// Leaf 1: `EBX[31:24]` initial APIC ID (low 8 bits), `EBX[23:16]` logical processors per
/// package (capped at 255), EDX HTT when a package has more than one thread.
pub fn leaf_0x1(t: &Topology, vcpu: u32, mut regs: Registers) -> Registers {
    let threads = t.shape().threads_in_package();
    let count = if threads > 1 { threads.min(0xff) } else { 0 };
    regs[EBX] = with_field(regs[EBX], 24, 8, t.apic_id_unchecked(vcpu) & 0xff);
    regs[EBX] = with_field(regs[EBX], 16, 8, count);
    with_bit(regs, bit::HTT, threads > 1)
}

/// Leaf 0x80000001 ECX: CMP_LEGACY when a package has more than one thread (QEMU and real
/// multi-core parts), TOPOEXT so the guest reads 0x8000001D/0x8000001E.
pub fn leaf_0x80000001(t: &Topology, regs: Registers) -> Registers {
    let regs = with_bit(regs, bit::CMP_LEGACY, t.shape().threads_in_package() > 1);
    with_bit(regs, bit::TOPOEXT, true)
}

/// Leaf 0x80000008 ECX: `[15:12]` ApicIdCoreIdSize = APIC ID bits below the package ID,
/// `[7:0]` NC = threads per package − 1. Other ECX bits (PerfTscSize) pass through.
pub fn leaf_0x80000008(t: &Topology, mut regs: Registers) -> Registers {
    let threads = t.shape().threads_in_package();
    regs[ECX] = with_field(regs[ECX], 12, 4, t.layout().package_offset());
    regs[ECX] = with_field(regs[ECX], 0, 8, threads - 1);
    regs
}

/// Leaf 0x8000001D, one cache: `EAX[25:14]` logical processors sharing it − 1. L1 and L2 are
/// per core, L3 per die (CCX/node), as QEMU builds them.
pub fn leaf_0x8000001d(t: &Topology, mut regs: Registers) -> Registers {
    let s = t.shape();
    let cache_level = field(regs[EAX], 5, 3);
    let sharing = if cache_level >= 3 { s.threads_in_die() } else { s.threads_in_core() };
    regs[EAX] = with_field(regs[EAX], 14, 12, (sharing - 1).min(0xfff));
    regs
}

/// Leaf 0x8000001E: EAX extended APIC ID; `EBX[15:8]` threads per core − 1, `EBX[7:0]` core ID
/// within the die; `ECX[10:8]` nodes (dies) per package − 1, `ECX[7:0]` node ID = the APIC ID
/// above the core bits, so package and die together (QEMU's `legacy-multi-node` encoding,
/// and real multi-node parts such as EPYC 7601).
pub fn leaf_0x8000001e(t: &Topology, vcpu: u32) -> Registers {
    let (s, l) = (t.shape(), t.layout());
    let apic_id = t.apic_id_unchecked(vcpu);
    let core = t.ids_unchecked(vcpu).core;
    let ebx = (s.threads_per_core - 1) << 8 | (core & 0xff);
    let ecx = (s.dies_per_package - 1) << 8 | (shr(apic_id, l.die_offset()) & 0xff);
    [apic_id, ebx, ecx, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scheme, Vendor};

    fn topology(shape: Shape) -> Topology {
        Topology::new(shape, Vendor::Amd, Scheme::Modern, true).unwrap()
    }

    #[test]
    fn counts_are_processor_counts() {
        let t = topology(Shape::new(1, 2, 3, 2));
        assert_eq!(field(leaf_0x1(&t, 0, [0; 4])[EBX], 16, 8), 12);
        let e8 = leaf_0x80000008(&t, [0x3030, 0, 0x1_0000, 0]);
        assert_eq!(e8[ECX], 0x1_0000 | 4 << 12 | 11, "PerfTscSize kept, size 4, NC 11");
        // Like the Ryzen 9 3900X: three cores × two threads share an L3 → 6, not 8.
        let l3 = leaf_0x8000001d(&t, [0x163, 0, 0, 0]);
        assert_eq!(field(l3[EAX], 14, 12), 5);
        let l2 = leaf_0x8000001d(&t, [0x143, 0, 0, 0]);
        assert_eq!(field(l2[EAX], 14, 12), 1);
        let e1 = leaf_0x80000001(&t, [0; 4]);
        assert!(crate::cpuid::has_bit(e1, bit::CMP_LEGACY) && crate::cpuid::has_bit(e1, bit::TOPOEXT));
    }

    #[test]
    fn fields_that_cannot_hold_the_shape_are_errors() {
        let err = Topology::new(Shape::new(1, 1, 129, 2), Vendor::Amd, Scheme::Modern, true).unwrap_err();
        assert_eq!(err.to_string(), "CPUID leaf 0x80000008 ECX[7:0 NC] must hold 257, more than its maximum 255");
        assert!(matches!(
            Topology::new(Shape::new(1, 9, 1, 1), Vendor::Hygon, Scheme::Modern, true),
            Err(TopologyError::FieldOverflow { leaf: 0x8000_001e, .. })
        ));
        assert!(Topology::new(Shape::new(1, 1, 128, 2), Vendor::Amd, Scheme::Modern, true).is_ok());
    }
}
