//! Intel's conventions for the `Modern` scheme (Intel SDM vol. 2A "CPUID"; QEMU
//! `target/i386/cpu.c` `cpu_x86_cpuid()`, `encode_cache_cpuid4()`, `encode_topo_cpuid1f()`).
//!
//! Intel counts in *addressable IDs*: leaf 1 `EBX[23:16]` and leaf 4's fields give the size of
//! the APIC ID space (a power of two), not how many processors exist.

use super::{cache_subleaves, read, subleaves_from};
use crate::cpuid::{bit, field, leaf, with_bit, with_field, CpuidAccess, CpuidLeaves, Registers, EAX, EBX};
use crate::shape::{Shape, Topology};

/// Leaf 0xB/0x1F level type: SMT.
pub const LEVEL_SMT: u32 = 1;
/// Leaf 0xB/0x1F level type: core.
pub const LEVEL_CORE: u32 = 2;
/// Leaf 0x1F level type: module.
pub const LEVEL_MODULE: u32 = 3;
/// Leaf 0x1F level type: tile.
pub const LEVEL_TILE: u32 = 4;
/// Leaf 0x1F level type: die.
pub const LEVEL_DIE: u32 = 5;

/// Writes every Intel topology leaf of vCPU `vcpu` into `out`.
pub(crate) fn fill(t: &Topology, base: &impl CpuidAccess, vcpu: u32, out: &mut CpuidLeaves) {
    out.insert(leaf::FEATURES, None, leaf_0x1(t, vcpu, read(base, leaf::FEATURES, None)));
    for (s, regs) in cache_subleaves(base, leaf::CACHE_PARAMETERS) {
        out.insert(leaf::CACHE_PARAMETERS, Some(s), leaf_0x4(t, regs));
    }
    for s in 0..=2 {
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), leaf_0xb(t, vcpu, s));
    }
    for s in subleaves_from(base, leaf::EXTENDED_TOPOLOGY, 3) {
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), leaf_0xb(t, vcpu, s));
    }
    let levels = leaf_0x1f_levels(t.shape());
    let used = if needs_leaf_0x1f(t.shape()) { levels.len() as u32 + 1 } else { 0 };
    for s in 0..used {
        out.insert(leaf::V2_EXTENDED_TOPOLOGY, Some(s), leaf_0x1f(t, vcpu, s));
    }
    // A host's own 0x1F levels left in the base would contradict the guest's shape.
    for s in subleaves_from(base, leaf::V2_EXTENDED_TOPOLOGY, used) {
        out.insert(leaf::V2_EXTENDED_TOPOLOGY, Some(s), [0; 4]);
    }
    if let Some(regs) = base.cpuid(leaf::EXTENDED_FEATURES, None) {
        out.insert(leaf::EXTENDED_FEATURES, None, leaf_0x80000001(regs));
    }
}

/// Leaf 1: `EBX[31:24]` initial APIC ID (low 8 bits), `EBX[23:16]` addressable IDs per package
/// (capped at 255 as QEMU does), EDX HTT when a package has more than one thread.
pub fn leaf_0x1(t: &Topology, vcpu: u32, mut regs: Registers) -> Registers {
    let threads = t.shape().threads_in_package();
    let addressable = if threads > 1 { (1u32 << t.layout().package_offset()).min(0xff) } else { 0 };
    regs[EBX] = with_field(regs[EBX], 24, 8, t.apic_id_unchecked(vcpu) & 0xff);
    regs[EBX] = with_field(regs[EBX], 16, 8, addressable);
    with_bit(regs, bit::HTT, threads > 1)
}

/// Leaf 4, one cache: `EAX[31:26]` addressable core IDs per package − 1, `EAX[25:14]`
/// addressable thread IDs sharing the cache − 1. L1 and L2 are per core, L3 and beyond per
/// die (QEMU's default share levels). Both are capped at their field widths.
pub fn leaf_0x4(t: &Topology, mut regs: Registers) -> Registers {
    let l = t.layout();
    let cores = ((1u32 << (l.package_offset() - l.core_offset())) - 1).min(0x3f);
    let cache_level = field(regs[EAX], 5, 3);
    let share_offset = if cache_level >= 3 { l.die_offset() } else { l.core_offset() };
    let sharing = ((1u32 << share_offset) - 1).min(0xfff);
    regs[EAX] = with_field(regs[EAX], 26, 6, cores);
    regs[EAX] = with_field(regs[EAX], 14, 12, sharing);
    regs
}

/// Leaf 0xB sub-leaf `subleaf`: 0 is the SMT level, 1 the core level (shift to the package
/// ID, logical processors per package), 2 and above the invalid level that ends the list.
/// EDX is the x2APIC ID at every sub-leaf. Also used for AMD, as QEMU and Zen parts do.
pub fn leaf_0xb(t: &Topology, vcpu: u32, subleaf: u32) -> Registers {
    let (l, s) = (t.layout(), t.shape());
    let apic_id = t.apic_id_unchecked(vcpu);
    match subleaf {
        0 => [l.core_offset(), s.threads_in_core(), LEVEL_SMT << 8, apic_id],
        1 => [l.package_offset(), s.threads_in_package() & 0xffff, 1 | LEVEL_CORE << 8, apic_id],
        n => [0, 0, n & 0xff, apic_id],
    }
}

/// Whether the shape needs leaf 0x1F: it has levels leaf 0xB cannot name (QEMU exposes
/// 0x1F only then).
pub fn needs_leaf_0x1f(shape: &Shape) -> bool {
    shape.dies_per_package > 1 || shape.tiles_per_die > 1 || shape.modules_per_tile > 1
}

/// The levels leaf 0x1F lists, innermost first: `(level type, shift to the next level's ID,
/// logical processors in one instance of the next level)`. SMT and core always; module,
/// tile, die when the shape has more than one of them. A level's shift is its own upper
/// boundary, which is also where the next *listed* level starts: absent levels take no APIC
/// ID bits and multiply the count by 1, so the outermost level's shift is the package shift.
pub fn leaf_0x1f_levels(shape: &Shape) -> Vec<(u32, u32, u32)> {
    let l = crate::shape::ApicLayout::of(shape);
    let mut levels = vec![
        (LEVEL_SMT, l.core_offset(), shape.threads_in_core()),
        (LEVEL_CORE, l.module_offset(), shape.threads_in_module()),
    ];
    if shape.modules_per_tile > 1 {
        levels.push((LEVEL_MODULE, l.tile_offset(), shape.threads_in_tile()));
    }
    if shape.tiles_per_die > 1 {
        levels.push((LEVEL_TILE, l.die_offset(), shape.threads_in_die()));
    }
    if shape.dies_per_package > 1 {
        levels.push((LEVEL_DIE, l.package_offset(), shape.threads_in_package()));
    }
    levels
}

/// Leaf 0x1F sub-leaf `subleaf`: the levels of [`leaf_0x1f_levels`], then the invalid level.
pub fn leaf_0x1f(t: &Topology, vcpu: u32, subleaf: u32) -> Registers {
    let apic_id = t.apic_id_unchecked(vcpu);
    match leaf_0x1f_levels(t.shape()).get(subleaf as usize) {
        Some(&(kind, shift, count)) => [shift, count & 0xffff, (subleaf & 0xff) | kind << 8, apic_id],
        None => [0, 0, subleaf & 0xff, apic_id],
    }
}

/// Leaf 0x80000001: CMP_LEGACY is an AMD bit; QEMU never sets it for Intel.
pub fn leaf_0x80000001(regs: Registers) -> Registers {
    with_bit(regs, bit::CMP_LEGACY, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scheme, Vendor};

    fn topology(shape: Shape) -> Topology {
        Topology::new(shape, Vendor::Intel, Scheme::Modern, true).unwrap()
    }

    #[test]
    fn leaf_0x1_counts_addressable_ids() {
        // 3 cores × 2 threads: 6 threads, but a 3-bit package space of 8 IDs.
        let r = leaf_0x1(&topology(Shape::new(2, 1, 3, 2)), 7, [0, 0x800, 0, 0]);
        assert_eq!(r[EBX], 0x0908_0800);
        assert!(crate::cpuid::has_bit(r, bit::HTT));
        let single = leaf_0x1(&topology(Shape::new(4, 1, 1, 1)), 3, [0, 0, 0, bit::HTT.1]);
        assert_eq!(single[EBX], 0x0300_0000, "one thread per package: no count, no HTT");
        assert!(!crate::cpuid::has_bit(single, bit::HTT));
        let big = leaf_0x1(&topology(Shape::new(1, 1, 300, 1)), 0, [0; 4]);
        assert_eq!(field(big[EBX], 16, 8), 0xff, "512 IDs capped at 255");
    }

    #[test]
    fn leaf_0x4_uses_addressable_ids_per_cache_level() {
        let t = topology(Shape::new(1, 2, 3, 2));
        let l1 = leaf_0x4(&t, [0x121, 1, 2, 3]);
        // Cores: 2 bits core + 1 bit die above the 1 thread bit = 8 core IDs.
        assert_eq!((field(l1[EAX], 26, 6), field(l1[EAX], 14, 12)), (7, 1));
        let l3 = leaf_0x4(&t, [0x163, 0, 0, 0]);
        assert_eq!(field(l3[EAX], 14, 12), 7, "L3 per die: 8 thread IDs");
        assert_eq!(l3[EAX] & 0x3fff, 0x163);
    }

    #[test]
    fn leaf_0x1f_lists_module_tile_and_die_levels() {
        let s = Shape::new(1, 2, 3, 2).with_modules(2).with_tiles(3);
        // thread 1 bit, core 2, module 1, tile 2, die 1.
        assert_eq!(
            leaf_0x1f_levels(&s),
            [(LEVEL_SMT, 1, 2), (LEVEL_CORE, 3, 6), (LEVEL_MODULE, 4, 12), (LEVEL_TILE, 6, 36), (LEVEL_DIE, 7, 72)]
        );
        let only_dies = Shape::new(1, 3, 3, 1);
        assert_eq!(leaf_0x1f_levels(&only_dies), [(LEVEL_SMT, 0, 1), (LEVEL_CORE, 2, 3), (LEVEL_DIE, 4, 9)]);
        assert!(!needs_leaf_0x1f(&Shape::new(8, 1, 3, 2)));
    }

    #[test]
    fn host_0x1f_levels_are_cleared_when_the_guest_needs_none() {
        let t = topology(Shape::new(1, 1, 2, 2));
        let mut base = CpuidLeaves::new();
        base.insert(0x1f, Some(0), [1, 2, 0x100, 4]);
        base.insert(0x1f, Some(1), [7, 0x80, 0x201, 4]);
        let out = t.cpuid_for_vcpu(&base, 1).unwrap();
        assert_eq!(out.get(0x1f, Some(0)), Some([0; 4]));
        assert_eq!(out.get(0x1f, Some(1)), Some([0; 4]));
    }
}
