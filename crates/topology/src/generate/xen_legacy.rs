//! Xen's legacy topology, exactly as Xen 4.16 … 4.22 builds it for HVM guests.
//!
//! Two places do it. The toolstack (`tools/libs/guest/xg_cpuid_x86.c`,
//! `xc_cpuid_apply_policy()`) rewrites the domain policy once: HTT on, CMP_LEGACY off, leaf 1
//! `EBX[23:16]` doubled, Intel leaf 4 core counts doubled, AMD 0x80000008 NC doubled. Xen
//! (`xen/arch/x86/cpuid.c`, `guest_cpuid()`) then fills per-vCPU values on every CPUID:
//! leaf 1 `EBX[31:24]` = 2 × vCPU, and when the policy offers x2APIC, leaf 0xB `ECX[7:0]` =
//! sub-leaf and EDX = 2 × vCPU. `xen/arch/x86/cpu-policy.c` `recalculate_misc()` has already
//! zeroed the rest of leaf 0xB, and on AMD 0x8000001D/0x8000001E; TOPOEXT has no attribute
//! in `cpufeatureset.h`, so guests never see it; Xen's basic leaves stop at 0xD, so leaf 0x1F
//! reads as zeros.
//!
//! Xen 4.14 and 4.15 differ in one case: a leaf 1 `EBX[23:16]` of 0 stays 0 (the `= 2` rule
//! came with Xen commit daaf007eb3, "ensure `CPUID[1].EBX[32:16]` is non-zero for HVM").

use super::{cache_subleaves, read, subleaves_from};
use crate::cpuid::{
    bit, field, has_bit, leaf, with_bit, with_field, CpuidAccess, CpuidLeaves, Registers, EAX, EBX, ECX,
};
use crate::shape::{Topology, Vendor};

/// Sub-leaves of leaf 0xB a Xen policy holds (`CPUID_GUEST_NR_TOPO`).
pub const XEN_TOPO_SUBLEAVES: u32 = 2;

/// Writes every topology leaf of vCPU `vcpu` under Xen's legacy scheme into `out`.
pub(crate) fn fill(t: &Topology, base: &impl CpuidAccess, vcpu: u32, out: &mut CpuidLeaves) {
    let leaf1 = read(base, leaf::FEATURES, None);
    out.insert(leaf::FEATURES, None, leaf_0x1(vcpu, leaf1));
    if t.vendor() == Vendor::Intel {
        for (s, regs) in cache_subleaves(base, leaf::CACHE_PARAMETERS) {
            out.insert(leaf::CACHE_PARAMETERS, Some(s), leaf_0x4(regs));
        }
    }
    let max_leaf = base.cpuid(leaf::BASIC_MAX, None).map(|r| r[EAX]);
    let has_0xb = max_leaf.is_none_or(|m| m >= leaf::EXTENDED_TOPOLOGY);
    let x2apic = has_bit(leaf1, bit::X2APIC);
    for s in 0..XEN_TOPO_SUBLEAVES {
        let regs = if has_0xb { leaf_0xb(vcpu, s, x2apic) } else { [0; 4] };
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), regs);
    }
    for s in subleaves_from(base, leaf::EXTENDED_TOPOLOGY, XEN_TOPO_SUBLEAVES) {
        out.insert(leaf::EXTENDED_TOPOLOGY, Some(s), [0; 4]);
    }
    for s in subleaves_from(base, leaf::V2_EXTENDED_TOPOLOGY, 0) {
        out.insert(leaf::V2_EXTENDED_TOPOLOGY, Some(s), [0; 4]);
    }
    if let Some(regs) = base.cpuid(leaf::EXTENDED_FEATURES, None) {
        out.insert(leaf::EXTENDED_FEATURES, None, leaf_0x80000001(regs));
    }
    if t.vendor().is_amd_like() {
        if let Some(regs) = base.cpuid(leaf::ADDRESS_SIZES, None) {
            out.insert(leaf::ADDRESS_SIZES, None, leaf_0x80000008(regs));
        }
        for (s, _) in cache_subleaves(base, leaf::AMD_CACHE_TOPOLOGY) {
            out.insert(leaf::AMD_CACHE_TOPOLOGY, Some(s), [0; 4]);
        }
        if base.cpuid(leaf::AMD_CACHE_TOPOLOGY, None).is_some() {
            out.insert(leaf::AMD_CACHE_TOPOLOGY, None, [0; 4]);
        }
        out.insert(leaf::AMD_EXTENDED_APIC_ID, None, [0; 4]);
    }
}

/// Leaf 1: `EBX[31:24]` = 2 × vCPU (the shift drops bits above 7), `EBX[23:16]` doubled unless
/// bit 7 is set (overflow), 2 when it was 0; HTT set.
pub fn leaf_0x1(vcpu: u32, mut regs: Registers) -> Registers {
    let lppp = match field(regs[EBX], 16, 8) {
        0 => 2,
        n if n & 0x80 == 0 => n * 2,
        n => n,
    };
    regs[EBX] = with_field(regs[EBX], 16, 8, lppp);
    regs[EBX] = with_field(regs[EBX], 24, 8, vcpu.wrapping_mul(2) & 0xff);
    with_bit(regs, bit::HTT, true)
}

/// Intel leaf 4, one cache: `EAX[31:26]` = (n << 1) | 1, truncated to the 6-bit field as the C
/// bit-field assignment does; `EAX[25:14]` (threads sharing the cache) = 0.
pub fn leaf_0x4(mut regs: Registers) -> Registers {
    let cores = field(regs[EAX], 26, 6);
    regs[EAX] = with_field(regs[EAX], 26, 6, (cores << 1) | 1);
    regs[EAX] = with_field(regs[EAX], 14, 12, 0);
    regs
}

/// Leaf 0xB sub-leaf 0 or 1: with x2APIC offered, `ECX[7:0]` = sub-leaf and EDX = 2 × vCPU,
/// everything else 0 (no level type, so guests fall back to leaves 1 and 4); without x2APIC
/// all zeros.
pub fn leaf_0xb(vcpu: u32, subleaf: u32, x2apic: bool) -> Registers {
    if x2apic {
        [0, 0, subleaf & 0xff, vcpu.wrapping_mul(2)]
    } else {
        [0; 4]
    }
}

/// Leaf 0x80000001 ECX: CMP_LEGACY off (for every vendor) and TOPOEXT off (never offered).
pub fn leaf_0x80000001(regs: Registers) -> Registers {
    with_bit(with_bit(regs, bit::CMP_LEGACY, false), bit::TOPOEXT, false)
}

/// AMD leaf 0x80000008 ECX: while NC < 0x7F, NC = (NC << 1) | 1, and ApicIdCoreIdSize + 1
/// when it is non-zero and below 7 (Xen commit 8c79c129a6: Windows fails above 7). Xen's
/// `recalculate_misc()` keeps only ECX bits 17:12 and 7:0 on AMD.
pub fn leaf_0x80000008(mut regs: Registers) -> Registers {
    let nc = field(regs[ECX], 0, 8);
    if nc < 0x7f {
        let size = field(regs[ECX], 12, 4);
        if size != 0 && size < 7 {
            regs[ECX] = with_field(regs[ECX], 12, 4, size + 1);
        }
        regs[ECX] = with_field(regs[ECX], 0, 8, (nc << 1) | 1);
    }
    regs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::UnstorableLeaf;
    use crate::{Topology, TopologyError};

    #[test]
    fn leaf_0x1_doubles_the_count_like_xen_4_16_and_later() {
        let lppp = |n: u32| field(leaf_0x1(0, [0, n << 16, 0, 0])[EBX], 16, 8);
        assert_eq!(lppp(0), 2, "0 becomes 2 (Xen commit daaf007eb3)");
        assert_eq!(lppp(16), 32);
        assert_eq!(lppp(0x7f), 0xfe);
        assert_eq!(lppp(0x80), 0x80, "bit 7 set: left alone to avoid overflow");
        assert_eq!(lppp(0xc0), 0xc0);
        let r = leaf_0x1(127, [0x906ea, 0xff10_0800, 0, 0]);
        assert_eq!(r[EBX], 0xfe20_0800, "APIC ID 2 × 127, CLFLUSH size kept");
        assert!(has_bit(r, bit::HTT));
        assert_eq!(leaf_0x1(200, [0; 4])[EBX] >> 24, 400 & 0xff, "the 8-bit field drops high bits");
    }

    #[test]
    fn leaf_0x4_doubles_cores_in_a_6_bit_field_and_clears_sharing() {
        let cores = |n: u32| field(leaf_0x4([n << 26 | 0x3 << 14 | 0x121, 0, 0, 0])[EAX], 26, 6);
        assert_eq!(cores(0), 1);
        assert_eq!(cores(7), 15);
        assert_eq!(cores(31), 63);
        assert_eq!(cores(32), 1, "(32 << 1) | 1 = 65 truncated to 6 bits, as C's bit-field is");
        assert_eq!(cores(63), 63);
        let r = leaf_0x4([7 << 26 | 0x3 << 14 | 0x121, 1, 2, 3]);
        assert_eq!(field(r[EAX], 14, 12), 0);
        assert_eq!(r[EAX] & 0x3fff, 0x121, "type and level kept");
        assert_eq!(&r[1..], [1, 2, 3]);
    }

    #[test]
    fn leaf_0x80000008_follows_xen_exactly() {
        let ecx = |size: u32, nc: u32| {
            let r = leaf_0x80000008([0, 0, 0x3_0000 | size << 12 | nc, 0]);
            (field(r[ECX], 12, 4), field(r[ECX], 0, 8), r[ECX] >> 16)
        };
        assert_eq!(ecx(6, 0x3f), (7, 0x7f, 3), "EPYC 7601: 64 threads, size 6");
        assert_eq!(ecx(7, 0x3f), (7, 0x7f, 3), "EPYC 7502: size 7 stays 7 (Xen commit 8c79c129a6)");
        assert_eq!(ecx(0, 3), (0, 7, 3), "size 0 means 'use NC': not incremented");
        assert_eq!(ecx(7, 0x7f), (7, 0x7f, 3), "NC ≥ 0x7f: nothing changes");
        assert_eq!(ecx(4, 0x7e), (5, 0xfd, 3));
    }

    #[test]
    fn leaf_0xb_only_with_x2apic() {
        assert_eq!(leaf_0xb(5, 1, true), [0, 0, 1, 10]);
        assert_eq!(leaf_0xb(5, 0, false), [0; 4]);
    }

    /// A Xen-like policy: leaf 0xB sub-leaves 0–1 only, no leaf 0x1F.
    #[derive(Default)]
    struct XenLikePolicy(CpuidLeaves);

    impl CpuidAccess for XenLikePolicy {
        fn cpuid(&self, leaf: u32, subleaf: Option<u32>) -> Option<Registers> {
            self.0.get(leaf, subleaf)
        }

        fn set_cpuid(&mut self, leaf: u32, subleaf: Option<u32>, registers: Registers) -> Result<(), UnstorableLeaf> {
            let storable = match leaf {
                0x1f => false,
                0xb => matches!(subleaf, Some(0 | 1)),
                _ => true,
            };
            if !storable {
                return Err(UnstorableLeaf { leaf, subleaf });
            }
            self.0.insert(leaf, subleaf, registers);
            Ok(())
        }
    }

    fn intel_host_policy() -> XenLikePolicy {
        // An 8-core, 16-thread Intel host as Xen's default policy shows it.
        let mut p = CpuidLeaves::new();
        p.insert(0, None, Vendor::Intel.leaf0(0xd));
        p.insert(1, None, [0x906ea, 0x0010_0800, 1 << 21, 1 << 28]);
        for (s, eax) in [0x121u32, 0x122, 0x143, 0x163, 0].into_iter().enumerate() {
            let eax = if eax == 0 { 0 } else { eax | 7 << 26 | 1 << 14 };
            p.insert(4, Some(s as u32), [eax, 0x01c0_003f, 0x3f, 0]);
        }
        p.insert(0xb, Some(0), [0; 4]);
        p.insert(0xb, Some(1), [0; 4]);
        p.insert(0x8000_0000, None, [0x8000_0008, 0, 0, 0]);
        p.insert(0x8000_0001, None, [0, 0, 0x121, 0x2c10_0800]);
        XenLikePolicy(p)
    }

    #[test]
    fn applying_to_a_xen_policy_writes_only_what_xen_holds() {
        let mut policy = intel_host_policy();
        let t = Topology::xen_legacy(Vendor::Intel, 4, true).unwrap();
        t.apply(&mut policy).unwrap();
        let p = &policy.0;
        assert_eq!(p.get(1, None).unwrap()[EBX], 0x0020_0800, "vCPU 0: APIC ID 0, count 32");
        assert_eq!(field(p.get(4, Some(3)).unwrap()[EAX], 26, 6), 15);
        assert_eq!(field(p.get(4, Some(3)).unwrap()[EAX], 14, 12), 0);
        assert_eq!(p.get(4, Some(4)), Some([0, 0x01c0_003f, 0x3f, 0]), "terminator untouched");
        assert_eq!(p.get(0xb, Some(1)), Some([0, 0, 1, 0]));
        assert_eq!(p.get(0x1f, Some(0)), None);
    }

    #[test]
    fn modern_topology_on_a_xen_policy_reports_the_leaf_it_cannot_hold() {
        let mut policy = intel_host_policy();
        let t = Topology::new(crate::Shape::new(1, 2, 2, 1), Vendor::Intel, crate::Scheme::Modern, true).unwrap();
        assert_eq!(t.min_basic_leaf(), 0x1f);
        assert_eq!(
            t.apply(&mut policy),
            Err(TopologyError::Unstorable(UnstorableLeaf { leaf: 0x1f, subleaf: Some(0) }))
        );
    }

    #[test]
    fn guests_see_no_topology_leaves_beyond_xen_s() {
        let base = intel_host_policy().0;
        let t = Topology::xen_legacy(Vendor::Intel, 8, true).unwrap();
        let view = t.guest_cpuid(&base, 3).unwrap();
        assert_eq!(view.get(0xb, Some(0)), Some([0, 0, 0, 6]));
        assert_eq!(view.get(1, None).unwrap()[EBX] >> 24, 6);
        assert!(!has_bit(view.get(0x8000_0001, None).unwrap(), bit::CMP_LEGACY));

        let mut amd = CpuidLeaves::new();
        amd.insert(0, None, Vendor::Amd.leaf0(0xd));
        amd.insert(1, None, [0x830f10, 0x0040_0800, 0, 1 << 28]);
        amd.insert(0x8000_0001, None, [0, 0, 1 << 22 | 1 << 1, 0]);
        amd.insert(0x8000_0008, None, [0x3030, 0, 0x703f, 0]);
        amd.insert(0x8000_001d, Some(0), [0x4121, 0x01c0_003f, 0x3f, 0]);
        amd.insert(0x8000_001e, None, [0x31, 0x118, 0, 0]);
        let t = Topology::xen_legacy(Vendor::Amd, 2, false).unwrap();
        let view = t.guest_cpuid(&amd, 1).unwrap();
        assert_eq!(view.get(0x8000_0001, None).unwrap()[ECX], 0, "CMP_LEGACY and TOPOEXT off");
        assert_eq!(view.get(0x8000_0008, None).unwrap()[ECX], 0x707f);
        assert_eq!(view.get(0x8000_001d, Some(0)), Some([0; 4]));
        assert_eq!(view.get(0x8000_001e, None), Some([0; 4]));
        assert_eq!(view.get(0xb, Some(0)), Some([0; 4]), "no x2APIC offered");
    }
}
