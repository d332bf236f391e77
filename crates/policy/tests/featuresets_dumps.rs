//! Levelling and checking with featuresets alone (xapi's view), on Xen 4.20's policies predicted
//! from the real CPU dumps of `../shared/cpu-dumps`, against the full-policy levelling.

mod common;

use cpupolicy_featureset::{known, Featureset, GuestKind};
use cpupolicy_policy::{
    check_migration, combine_featuresets, derive_system_policies, featureset_missing, level_featuresets, level_pool,
    CpuPolicy, DeriveOptions, LevelOptions, PoolHost, Vendor,
};

struct Host {
    name: String,
    vendor: Vendor,
    hvm: Option<PoolHost>,
    pv: PoolHost,
}

fn hosts() -> Option<Vec<Host>> {
    let mut hosts = Vec::new();
    for (name, text) in common::libvirt_dumps()? {
        let raw = CpuPolicy::from_libvirt_xml(&text).unwrap();
        let policies = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).unwrap();
        let pv = PoolHost::from_system(name.clone(), &policies, GuestKind::Pv).unwrap();
        let hvm = PoolHost::from_system(name.clone(), &policies, GuestKind::HvmHap).ok();
        hosts.push(Host { name, vendor: raw.vendor(), hvm, pv });
    }
    Some(hosts)
}

fn find<'a>(hosts: &'a [Host], name: &str) -> &'a Host {
    hosts.iter().find(|h| h.name.contains(name)).unwrap_or_else(|| panic!("no dump named {name}"))
}

/// Every same-vendor pair, PV and HVM: combining the hosts' default featuresets gives the
/// featureset of the full-policy pool default of the same hosts (each host's default standing
/// for both its policies, as xapi has only the one featureset); the combination is symmetric;
/// a VM booted on the combination is accepted by each host's max featureset exactly when the
/// full migration check accepts the pool default there.
#[test]
fn every_same_vendor_pair_combines_as_the_full_policy_pool_does() {
    let Some(hosts) = hosts() else { return };
    let mut pairs = 0;
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let same: Vec<&Host> = hosts.iter().filter(|h| h.vendor == vendor).collect();
        for (i, a) in same.iter().enumerate() {
            for b in &same[i + 1..] {
                let kinds = [Some((&a.pv, &b.pv)), a.hvm.as_ref().zip(b.hvm.as_ref())];
                for (ha, hb) in kinds.into_iter().flatten() {
                    let context = format!("{} + {}", a.name, b.name);
                    let (da, db) = (ha.default.featureset(), hb.default.featureset());
                    let combined = combine_featuresets(&da, &db);
                    assert_eq!(combined, combine_featuresets(&db, &da), "{context}: symmetric");
                    let singles = [
                        PoolHost::from_single(&ha.name, ha.default.clone()),
                        PoolHost::from_single(&hb.name, hb.default.clone()),
                    ];
                    let pool = level_pool(&singles, LevelOptions::default()).unwrap();
                    assert_eq!(combined, pool.default.policy.featureset(), "{context}");
                    for host in [ha, hb] {
                        let missing = featureset_missing(&combined, &host.max.featureset());
                        assert_eq!(
                            missing.is_empty(),
                            check_migration(&pool.default.policy, host).is_compatible(),
                            "{context}: on {}",
                            host.name
                        );
                    }
                    pairs += 1;
                }
            }
        }
    }
    assert!(pairs > 2000, "{pairs} pairs");
}

/// xapi folds a pool two hosts at a time; the order must not matter, and the fold must equal
/// levelling all at once.
#[test]
fn folding_pairwise_equals_levelling_the_whole_pool() {
    let Some(hosts) = hosts() else { return };
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let sets: Vec<Featureset> =
            hosts.iter().filter(|h| h.vendor == vendor).map(|h| h.pv.default.featureset()).collect();
        let whole = level_featuresets(&sets);
        let forward = sets.iter().skip(1).fold(sets[0].clone(), |acc, s| combine_featuresets(&acc, s));
        let backward =
            sets.iter().rev().skip(1).fold(sets[sets.len() - 1].clone(), |acc, s| combine_featuresets(&acc, s));
        assert_eq!(forward, whole, "{vendor}");
        assert_eq!(backward, whole, "{vendor}");
    }
}

/// The RSBA/RRSBA regression on real parts: a Broadwell Xeon (no eIBRS, and with current
/// microcode retpoline is safe there, so Xen shows neither bit) and an Ice Lake server (eIBRS
/// with RRSBA: retpoline is not safe there). Levelled, both as full policies and as featuresets,
/// the pool default keeps ARCH_CAPS and loses eIBRS, so it must say RSBA: a guest told nothing
/// would use retpoline on the Ice Lake.
#[test]
fn broadwell_and_ice_lake_keep_rsba() {
    let Some(hosts) = hosts() else { return };
    let (broadwell, ice_lake) = (find(&hosts, "Xeon-E5-2650-v4"), find(&hosts, "Ice-Lake-Server"));
    let (rsba, rrsba, eibrs, arch_caps) = (known("rsba"), known("rrsba"), known("eibrs"), known("arch-caps"));
    for (a, b) in [(&broadwell.pv, &ice_lake.pv), (broadwell.hvm.as_ref().unwrap(), ice_lake.hvm.as_ref().unwrap())] {
        // The facts the case rests on, as Xen 4.20 derives them from the dumps.
        assert!(!a.default.has_feature(rsba) && !a.default.has_feature(rrsba), "{}", a.name);
        assert!(a.default.has_feature(arch_caps) && !a.default.has_feature(eibrs), "{}", a.name);
        assert!(b.default.has_feature(rrsba) && b.default.has_feature(eibrs), "{}", b.name);
        let pool = level_pool(&[a.clone(), b.clone()], LevelOptions::default()).unwrap();
        let default = pool.default.policy.featureset();
        assert!(default.contains(arch_caps));
        assert!(default.contains(rsba) && !default.contains(rrsba), "{:?}", default.names());
        let combined = combine_featuresets(&a.default.featureset(), &b.default.featureset());
        assert!(combined.contains(rsba) && !combined.contains(rrsba));
        // Two Ice Lakes keep RRSBA.
        let both = combine_featuresets(&b.default.featureset(), &b.default.featureset());
        assert!(both.contains(rrsba) && !both.contains(rsba));
    }
}
