//! Xen's wire format: what Xen writes, and each error it returns on what it reads.

use cpupolicy_policy::{
    cpuid_record_from_bytes, msr_record_from_bytes, CpuPolicy, CpuidKey, DropReason, Dropped, RecordError, Registers,
    WireError, WireLeaf, WireLimits, XenCpuidLeaf, XenMsrEntry, XEN_CPUID_NO_SUBLEAF,
};

const NONE: u32 = XEN_CPUID_NO_SUBLEAF;

fn leaf(leaf: u32, subleaf: u32) -> XenCpuidLeaf {
    XenCpuidLeaf { leaf, subleaf, a: 1, b: 0, c: 0, d: 0 }
}

fn cpuid_error(entries: &[XenCpuidLeaf], limits: &WireLimits) -> WireError {
    CpuPolicy::from_wire(entries, &[], limits).unwrap_err()
}

fn msr_error(entries: &[XenMsrEntry], limits: &WireLimits) -> WireError {
    CpuPolicy::from_wire(&[], entries, limits).unwrap_err()
}

/// A small AMD-like policy: max basic leaf 0xd, leaf 7 max sub-leaf 2, AVX enabled.
fn sample() -> CpuPolicy {
    let mut p = CpuPolicy::new();
    let mut set = |leaf, subleaf, r: [u32; 4]| p.set_cpuid(CpuidKey::new(leaf, subleaf), Registers::from_array(r));
    set(0, None, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
    set(1, None, [0x00a2_0f12, 0x0020_0800, 0x1ef8_3203, 0x178b_fbff]);
    set(4, Some(0), [0x121, 0, 0, 0]);
    set(4, Some(1), [0x122, 0, 0, 0]);
    set(7, Some(0), [2, 0x219c_95a9, 0, 0]);
    set(7, Some(1), [0x10, 0, 0, 0]);
    set(7, Some(2), [0, 0, 0, 0x20]);
    set(0xb, Some(0), [1, 2, 0x100, 0]);
    set(0xb, Some(1), [7, 16, 0x201, 0]);
    set(0xd, Some(0), [0x7, 0x340, 0x340, 0]);
    set(0xd, Some(1), [0xf, 0x340, 0, 0]);
    set(0xd, Some(2), [0x100, 0x240, 0, 0]);
    set(0x8000_0000, None, [0x8000_0021, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
    set(0x8000_0008, None, [0x3030, 0, 0x1001, 0]);
    set(0x8000_0021, None, [0x0006_2fcf, 0, 0, 0]);
    p.set_msr(0x10a, 0x1234);
    p
}

#[test]
fn serialised_in_xens_order_with_its_fixed_entries() {
    let wire = sample().to_wire(&WireLimits::LATEST);
    assert!(wire.dropped.is_empty(), "{:?}", wire.dropped);
    let keys: Vec<(u32, u32)> = wire.leaves.iter().map(|l| (l.leaf, l.subleaf)).collect();
    let mut expected: Vec<(u32, u32)> = (0..4).map(|l| (l, NONE)).collect();
    expected.extend([(4, 0), (4, 1), (4, 2)]); // up to and including the null cache type
    expected.extend([(5, NONE), (6, NONE), (7, 0), (7, 1), (7, 2), (8, NONE), (9, NONE), (0xa, NONE)]);
    expected.extend([(0xb, 0), (0xb, 1), (0xc, NONE), (0xd, 0), (0xd, 1), (0xd, 2)]);
    expected.extend([(0x4000_0000, NONE), (0x4000_0100, NONE)]);
    expected.extend((0x8000_0000..=0x8000_0021).map(|l| (l, NONE)));
    assert_eq!(keys, expected);
    let msrs: Vec<(u32, u64)> = wire.msrs.iter().map(|m| (m.idx, m.val)).collect();
    assert_eq!(msrs, [(0xce, 0), (0x10a, 0x1234)]);
}

#[test]
fn older_releases_serialise_less_and_report_it() {
    let wire = sample().to_wire(&WireLimits::XEN_4_14_0);
    assert!(!wire.leaves.iter().any(|l| l.leaf == 7 && l.subleaf == 2));
    assert_eq!(wire.leaves.last().unwrap().leaf, 0x8000_001c);
    assert_eq!(wire.msrs, [XenMsrEntry::new(0xce, 0)]);
    let dropped: Vec<String> = wire.dropped.iter().map(ToString::to_string).collect();
    assert_eq!(dropped.len(), 3, "{dropped:#?}");
    assert!(dropped[0].starts_with("leaf 0x00000007:0x2 "));
    assert!(dropped[1].starts_with("leaf 0x80000021 "));
    assert!(dropped[2].starts_with("MSR 0x10a "));
}

#[test]
fn leaves_beyond_the_policys_own_limits_are_reported() {
    let mut p = sample();
    p.set_max_basic_leaf(6);
    let wire = p.to_wire(&WireLimits::LATEST);
    let reasons: Vec<(CpuidKey, DropReason)> = wire
        .dropped
        .iter()
        .map(|d| match d {
            Dropped::Leaf { key, reason, .. } => (*key, *reason),
            Dropped::Msr { .. } => panic!("{d}"),
        })
        .collect();
    // Leaf 7's three sub-leaves, 0xb's two and 0xd's three lie beyond max basic leaf 6.
    assert_eq!(reasons.len(), 8, "{reasons:?}");
    assert!(reasons.iter().all(|(k, r)| k.leaf >= 7 && *r == DropReason::BeyondMaxLeaf { max: 6 }));
}

#[test]
fn hypervisor_leaves_carry_an_8_bit_limit_only() {
    let mut p = sample();
    p.set_cpuid(CpuidKey::plain(0x4000_0000), Registers::new(5, 0, 0, 0));
    let wire = p.to_wire(&WireLimits::LATEST);
    assert!(wire.dropped.is_empty());
    assert!(wire.leaves.contains(&XenCpuidLeaf { leaf: 0x4000_0000, subleaf: NONE, a: 5, b: 0, c: 0, d: 0 }));

    // Another hypervisor's leaf (KVM's signature) cannot be carried: written as zero, reported.
    p.set_cpuid(CpuidKey::plain(0x4000_0000), Registers::new(0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d));
    let wire = p.to_wire(&WireLimits::LATEST);
    assert!(wire.leaves.contains(&XenCpuidLeaf { leaf: 0x4000_0000, subleaf: NONE, a: 0, b: 0, c: 0, d: 0 }));
    assert!(matches!(wire.dropped[..], [Dropped::Leaf { reason: DropReason::HypervisorLeafNotALimit, .. }]));
}

#[test]
fn platform_info_wider_than_32_bits_is_reported() {
    let mut p = sample();
    p.set_msr(0xce, 0x8000_0000_8000_0000);
    let wire = p.to_wire(&WireLimits::LATEST);
    assert_eq!(wire.msrs[0], XenMsrEntry::new(0xce, 0));
    assert!(matches!(wire.dropped[..], [Dropped::Msr { index: 0xce, reason: DropReason::ValueTooWide, .. }]));
}

#[test]
fn too_many_leaves_is_e2big() {
    let many = vec![leaf(0, NONE); 121];
    let error = cpuid_error(&many, &WireLimits::LATEST);
    assert_eq!(error, WireError::TooManyLeaves { count: 121, max: 120 });
    assert_eq!(error.errno(), 7);
    assert!(CpuPolicy::from_wire(&many[..120], &[], &WireLimits::LATEST).is_ok());
    assert!(matches!(cpuid_error(&many[..115], &WireLimits::XEN_4_14_0), WireError::TooManyLeaves { max: 114, .. }));
}

#[test]
fn leaves_out_of_range_are_erange_naming_the_entry() {
    let cases: &[(WireLimits, u32, u32)] = &[
        (WireLimits::LATEST, 0xe, NONE),             // beyond the basic leaves
        (WireLimits::LATEST, 0x1, 0),                // a sub-leaf on a leaf without
        (WireLimits::LATEST, 0x4, 6),                // beyond the cache sub-leaves
        (WireLimits::LATEST, 0x4, NONE),             // no sub-leaf on a leaf with
        (WireLimits::LATEST, 0x7, 3),                // beyond leaf 7's sub-leaves
        (WireLimits::XEN_4_14_0, 0x7, 2),            // … which 4.14.0 had fewer of
        (WireLimits::LATEST, 0xb, 2),                // beyond the topology sub-leaves
        (WireLimits::LATEST, 0xd, 63),               // beyond the xstate sub-leaves
        (WireLimits::LATEST, 0x4000_0001, NONE),     // not a hypervisor limit leaf
        (WireLimits::LATEST, 0x4000_0000, 0),        // a limit leaf with a sub-leaf
        (WireLimits::LATEST, 0x8000_0022, NONE),     // beyond the extended leaves
        (WireLimits::XEN_4_16_0, 0x8000_0022, NONE), //
        (WireLimits::XEN_4_14_1, 0x8000_001d, NONE), // 4.14 stopped at 0x8000001c
        (WireLimits::LATEST, 0x8000_001d, 0),        // extended leaves have no sub-leaves
        (WireLimits::LATEST, 0x1f, 0),               // a leaf Xen has no room for
    ];
    for &(limits, l, s) in cases {
        let entries = [leaf(0, NONE), leaf(l, s)];
        let error = cpuid_error(&entries, &limits);
        assert_eq!(error, WireError::LeafOutOfRange { position: 1, leaf: l, subleaf: s }, "{l:#x}:{s:#x}");
        assert_eq!(error.errno(), 34);
        assert!(error.to_string().contains(&format!("{l:#010x}")), "{error}");
    }
    // And their in-range neighbours are accepted.
    for (l, s) in [(0xc, NONE), (0x4, 5), (0x7, 2), (0xb, 1), (0xd, 62), (0x4000_0100, NONE), (0x8000_0021, NONE)] {
        CpuPolicy::from_wire(&[leaf(l, s)], &[], &WireLimits::LATEST).unwrap_or_else(|e| panic!("{l:#x}:{s:#x}: {e}"));
    }
}

#[test]
fn msr_errors_follow_xens_order_of_checks() {
    let l = WireLimits::LATEST;
    let flagged = XenMsrEntry { idx: 0x10a, flags: 1, val: 0 };
    assert_eq!(msr_error(&[flagged], &l), WireError::MsrFlags { position: 0, msr: 0x10a, flags: 1 });
    assert_eq!(msr_error(&[flagged], &l).errno(), 22);
    // Flags are checked before the index.
    let both = XenMsrEntry { idx: 0xcf, flags: 2, val: 0 };
    assert!(matches!(msr_error(&[both], &l), WireError::MsrFlags { .. }));
    let unknown = XenMsrEntry::new(0xcf, 1);
    assert_eq!(msr_error(&[unknown], &l), WireError::MsrOutOfRange { position: 0, msr: 0xcf });
    assert_eq!(msr_error(&[unknown], &l).errno(), 34);
    // 4.14.0's policy had no MSR_ARCH_CAPABILITIES, and only one MSR.
    let arch_caps = XenMsrEntry::new(0x10a, 1);
    assert_eq!(msr_error(&[arch_caps], &WireLimits::XEN_4_14_0), WireError::MsrOutOfRange { position: 0, msr: 0x10a });
    let wide = XenMsrEntry::new(0xce, 1 << 32);
    assert_eq!(
        msr_error(&[arch_caps, wide], &l),
        WireError::MsrValueTooWide { position: 1, msr: 0xce, value: 1 << 32 }
    );
    assert_eq!(msr_error(&[wide], &l).errno(), 75);
    // MSR_ARCH_CAPABILITIES is 64 bits wide in Xen's policy.
    assert!(CpuPolicy::from_wire(&[], &[XenMsrEntry::new(0x10a, u64::MAX)], &l).is_ok());
    let three = [XenMsrEntry::new(0xce, 0); 3];
    assert_eq!(msr_error(&three, &l), WireError::TooManyMsrs { count: 3, max: 2 });
    assert_eq!(msr_error(&three[..2], &WireLimits::XEN_4_14_0), WireError::TooManyMsrs { count: 2, max: 1 });
}

#[test]
fn applying_is_all_or_nothing_and_later_entries_win() {
    let mut p = sample();
    let before = p.clone();
    let bad = [XenCpuidLeaf { leaf: 1, subleaf: NONE, a: 9, b: 9, c: 9, d: 9 }, leaf(0x1f, 0)];
    assert!(p.apply_wire(&bad, &[], &WireLimits::LATEST).is_err());
    assert_eq!(p, before);
    let bad_msr = [XenMsrEntry { idx: 0xce, flags: 1, val: 0 }];
    assert!(p.apply_wire(&bad[..1], &bad_msr, &WireLimits::LATEST).is_err());
    assert_eq!(p, before, "a bad MSR leaves the CPUID part unapplied too");

    // Any order; a repeated entry overwrites, as in Xen; a zero entry clears.
    let entries = [
        XenCpuidLeaf { leaf: 0x8000_0008, subleaf: NONE, a: 0x3027, b: 0, c: 0, d: 0 },
        XenCpuidLeaf { leaf: 1, subleaf: NONE, a: 1, b: 2, c: 3, d: 4 },
        XenCpuidLeaf { leaf: 1, subleaf: NONE, a: 5, b: 6, c: 7, d: 8 },
        XenCpuidLeaf { leaf: 7, subleaf: 2, a: 0, b: 0, c: 0, d: 0 },
    ];
    p.apply_wire(&entries, &[XenMsrEntry::new(0xce, 1 << 31)], &WireLimits::LATEST).unwrap();
    assert_eq!(p.leaf(1), Registers::new(5, 6, 7, 8));
    assert_eq!(p.max_phys_addr_bits(), 0x27);
    assert!(!p.contains(CpuidKey::indexed(7, 2)));
    assert!(p.cpuid_faulting());
    assert_eq!(p.leaf(0), before.leaf(0), "leaves not given are kept");
}

#[test]
fn migration_records_must_hold_whole_entries() {
    assert_eq!(cpuid_record_from_bytes(&[]), Err(RecordError::Empty { record_type: 0x11 }));
    assert_eq!(
        cpuid_record_from_bytes(&[0; 25]),
        Err(RecordError::BadLength { record_type: 0x11, length: 25, entry_size: 24 })
    );
    assert_eq!(msr_record_from_bytes(&[]), Err(RecordError::Empty { record_type: 0x12 }));
    assert!(matches!(msr_record_from_bytes(&[0; 24]), Err(RecordError::BadLength { entry_size: 16, .. })));
    let body: Vec<u8> = [7u32, 0, 2, 3, 4, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(cpuid_record_from_bytes(&body).unwrap(), [XenCpuidLeaf { leaf: 7, subleaf: 0, a: 2, b: 3, c: 4, d: 5 }]);
}

/// Serialising into caller buffers writes what `to_wire` writes; buffers too small are refused
/// (ENOBUFS), naming what the policy needs, and nothing is written into them.
#[test]
fn serialising_into_caller_buffers() {
    let policy = sample();
    let wire = policy.to_wire(&WireLimits::LATEST);
    let (needed, needed_msrs) = (wire.leaves.len(), wire.msrs.len());
    let mut leaves = vec![XenCpuidLeaf::default(); needed];
    let mut msrs = vec![XenMsrEntry::default(); needed_msrs];
    assert_eq!(policy.to_wire_into(&WireLimits::LATEST, &mut leaves, &mut msrs), Ok((needed, needed_msrs)));
    assert_eq!((leaves, msrs), (wire.leaves.clone(), wire.msrs.clone()));
    let canary = XenCpuidLeaf { leaf: 0xdead, subleaf: 0xbeef, a: 1, b: 2, c: 3, d: 4 };
    let mut short = vec![canary; needed - 1];
    let mut msrs = vec![XenMsrEntry::default(); needed_msrs];
    let error = policy.to_wire_into(&WireLimits::LATEST, &mut short, &mut msrs).unwrap_err();
    assert_eq!(
        error,
        WireError::BufferTooSmall { leaves: needed - 1, msrs: needed_msrs, needed_leaves: needed, needed_msrs }
    );
    assert_eq!(error.errno(), 105);
    assert!(short.iter().all(|l| *l == canary), "a refusal writes nothing");
    let mut few_msrs = vec![XenMsrEntry::default(); 1];
    let mut leaves = vec![XenCpuidLeaf::default(); 200];
    assert!(matches!(
        policy.to_wire_into(&WireLimits::LATEST, &mut leaves, &mut few_msrs),
        Err(WireError::BufferTooSmall { needed_msrs: 2, .. })
    ));
}

/// `WireLimits::carries` says of each key exactly what deserialising a one-entry list says.
#[test]
fn carries_is_what_xen_accepts() {
    let mut keys = Vec::new();
    for leaf in
        [0, 1, 4, 7, 0xb, 0xd, 0xe, 0x14, 0x4000_0000, 0x4000_0001, 0x4000_0100, 0x8000_0000, 0x8000_0021, 0x8000_0022]
    {
        keys.push(CpuidKey::plain(leaf));
        for subleaf in [0, 1, 2, 3, 5, 6, 62, 63] {
            keys.push(CpuidKey::indexed(leaf, subleaf));
        }
    }
    for limits in [WireLimits::XEN_4_14_0, WireLimits::XEN_4_16_0, WireLimits::LATEST] {
        for key in &keys {
            let entry = XenCpuidLeaf::from_key(*key, Registers::new(1, 0, 0, 0));
            let accepted = CpuPolicy::from_wire(&[entry], &[], &limits).is_ok();
            assert_eq!(limits.carries(*key), accepted, "{key} {limits:?}");
        }
    }
    assert!(WireLimits::LATEST.carries(CpuidKey::indexed(7, 2)));
    assert!(!WireLimits::XEN_4_14_0.carries(CpuidKey::indexed(7, 2)));
    assert!(!WireLimits::LATEST.carries(CpuidKey::plain(0x1f)));
}
