//! Generate → parse round trips: for every shape tried, the leaves the `Modern` scheme gives
//! each vCPU, read back the way Linux reads them, must describe the same shape, the same APIC
//! IDs and the same per-level IDs, with no findings.

use cpupolicy_topology::{parse_vcpus, CpuidLeaves, Scheme, Shape, Topology, Vendor};

/// A base policy with every leaf the generators rewrite: caches for leaf 4 and 0x8000001D
/// (L1d, L1i, L2, L3, end), max leaves high enough for 0x1F and 0x8000001E, x2APIC offered,
/// and a non-topology bit in 0x80000008 ECX (PerfTscSize) that must pass through.
fn base(vendor: Vendor) -> CpuidLeaves {
    let mut b = CpuidLeaves::new();
    b.insert(0, None, vendor.leaf0(0x1f));
    b.insert(1, None, [0x000a_0f11, 0x0000_0800, 1 << 21, 0x178b_fbff]);
    let caches = [0x121, 0x122, 0x143, 0x163, 0];
    if vendor == Vendor::Intel {
        for (s, eax) in caches.into_iter().enumerate() {
            b.insert(4, Some(s as u32), [eax, 0x01c0_003f, 0x3f, 0]);
        }
    }
    b.insert(0x8000_0000, None, vendor.leaf0(0x8000_0021));
    b.insert(0x8000_0001, None, [0, 0, 0x75c2_37ff, 0x2fd3_fbff]);
    b.insert(0x8000_0008, None, [0x3030, 0, 0x1_0000, 0]);
    if vendor.is_amd_like() {
        for (s, eax) in caches.into_iter().enumerate() {
            b.insert(0x8000_001d, Some(s as u32), [eax, 0x01c0_003f, 0x3f, 0]);
        }
    }
    b
}

fn shapes(vendor: Vendor) -> Vec<Shape> {
    let mut out = Vec::new();
    for packages in [1, 2, 3] {
        for dies in [1, 2, 3] {
            for cores in [1, 2, 3, 5, 6, 7] {
                for threads in [1, 2, 3, 4] {
                    out.push(Shape::new(packages, dies, cores, threads));
                }
            }
        }
    }
    if vendor == Vendor::Intel {
        for modules in [2, 3] {
            for tiles in [1, 2, 3] {
                out.push(Shape::new(2, 1, 3, 2).with_modules(modules).with_tiles(tiles));
                out.push(Shape::new(1, 2, 2, 1).with_modules(modules).with_tiles(tiles));
            }
        }
        out.push(Shape::new(1, 1, 4, 1).with_tiles(3));
        // Large guests: more than 255 vCPUs, and APIC IDs past 0xff.
        out.push(Shape::new(1, 1, 200, 2));
        out.push(Shape::new(2, 2, 24, 2).with_modules(3));
        out.push(Shape::new(16, 1, 16, 2));
        out.push(Shape::new(1, 1, 300, 1));
    } else {
        // AMD counts at most 256 threads per package (0x80000008 NC) and 8 nodes.
        out.push(Shape::new(2, 1, 100, 2));
        out.push(Shape::new(4, 8, 8, 2));
        out.push(Shape::new(16, 1, 16, 2));
        out.push(Shape::new(3, 4, 7, 1));
    }
    out
}

fn round_trip(shape: Shape, vendor: Vendor) {
    let t = Topology::new(shape, vendor, Scheme::Modern, true).unwrap_or_else(|e| panic!("{shape:?}: {e}"));
    let base = base(vendor);
    let views: Vec<CpuidLeaves> = (0..t.vcpu_count()).map(|v| t.guest_cpuid(&base, v).unwrap()).collect();
    let parsed = parse_vcpus(&views, vendor).unwrap();
    let context = format!("{vendor} {shape:?}");
    let findings: Vec<String> = parsed.all_findings().map(|(v, f)| format!("vCPU {v:?}: {f}")).collect();
    assert!(findings.is_empty(), "{context}: {findings:#?}");
    assert_eq!(parsed.shape, shape, "{context}");
    for (v, p) in parsed.vcpus.iter().enumerate() {
        let v = v as u32;
        assert_eq!(p.apic_id, t.apic_id(v).unwrap(), "{context} vCPU {v} APIC ID");
        assert_eq!(p.ids(), t.ids(v).unwrap(), "{context} vCPU {v} IDs");
    }
}

#[test]
fn intel_shapes_round_trip() {
    let shapes = shapes(Vendor::Intel);
    assert!(shapes.len() > 200);
    for shape in shapes {
        round_trip(shape, Vendor::Intel);
    }
}

#[test]
fn amd_and_hygon_shapes_round_trip() {
    for vendor in [Vendor::Amd, Vendor::Hygon] {
        for shape in shapes(vendor) {
            round_trip(shape, vendor);
        }
    }
}

#[test]
fn large_shapes_need_and_use_x2apic() {
    let t = Topology::new(Shape::new(1, 1, 200, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
    assert_eq!(t.vcpu_count(), 400);
    assert!(t.x2apic_required());
    // Leaf 1's 8-bit APIC ID field wraps; 0xB carries the full x2APIC ID.
    let view = t.guest_cpuid(&base(Vendor::Intel), 399).unwrap();
    assert_eq!(t.apic_id(399).unwrap(), 0x18f);
    assert_eq!(view.get(1, None).unwrap()[1] >> 24, 0x8f);
    assert_eq!(view.get(0xb, Some(0)).unwrap()[3], 0x18f);
}
