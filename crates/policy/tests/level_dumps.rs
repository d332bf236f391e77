//! Levelling and migration checks over the real CPU dumps of `../shared/cpu-dumps`: every pair
//! of Intel hosts and every pair of AMD hosts, with Xen 4.20's policies predicted from each
//! dump, for PV and HVM guests.

mod common;

use cpupolicy_featureset::{FeatureId, Featureset, GuestKind};
use cpupolicy_policy::{
    check_migration, derive_system_policies, level_pool, level_pool_into, level_rule, CpuPolicy, DeriveOptions,
    LevelError, LevelOptions, LevelRule, LevelledPool, LossCause, PoolHost, Vendor,
};

struct Host {
    name: String,
    vendor: Vendor,
    pv: PoolHost,
    hvm: Option<PoolHost>,
}

fn hosts() -> Option<Vec<Host>> {
    let dumps = common::libvirt_dumps()?;
    let mut hosts = Vec::new();
    for (name, text) in dumps {
        let raw = CpuPolicy::from_libvirt_xml(&text).unwrap();
        let policies = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).unwrap();
        let pv = PoolHost::from_system(name.clone(), &policies, GuestKind::Pv).unwrap();
        let hvm = PoolHost::from_system(name.clone(), &policies, GuestKind::HvmHap).ok();
        hosts.push(Host { name, vendor: raw.vendor(), pv, hvm });
    }
    Some(hosts)
}

/// The bits a levelled policy may have, by rule, given the hosts' policies of that role.
fn allowed(policies: &[&CpuPolicy], maxes: &[&CpuPolicy]) -> Featureset {
    let and =
        |ps: &[&CpuPolicy]| ps.iter().skip(1).fold(ps[0].featureset(), |acc, p| acc.intersection(&p.featureset()));
    let or = policies.iter().fold(Featureset::new(), |acc, p| acc.union(&p.featureset()));
    let (all, all_max) = (and(policies), and(maxes));
    let mut out = Featureset::new();
    // Xen's RSBA/RRSBA derivation may turn one into the other (RRSBA needs eIBRS).
    let (rsba, rrsba) = (cpupolicy_featureset::known("rsba"), cpupolicy_featureset::known("rrsba"));
    let mut or = or;
    if or.contains(rsba) || or.contains(rrsba) {
        or.insert(rsba);
        or.insert(rrsba);
    }
    for id in or.iter() {
        let ok = match level_rule(id) {
            LevelRule::And | LevelRule::Mirror | LevelRule::Topology | LevelRule::HostReflected => all.contains(id),
            LevelRule::Or => true,
            LevelRule::TsxAbort => all_max.contains(id),
            LevelRule::RuntimeOnly => false,
        };
        out.set(id, ok);
    }
    out
}

fn check_pair(a: &PoolHost, b: &PoolHost, context: &str) -> usize {
    let pool = level_pool(&[a.clone(), b.clone()], LevelOptions { explain: true, ..Default::default() })
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    // Every input host accepts a VM booted with the pool default, and one that saw all the
    // pool accepts.
    for host in [a, b] {
        let check = check_migration(&pool.default.policy, host);
        assert!(check.is_compatible(), "{context}: pool default refused by {}: {:?}", host.name, check.mismatches);
        let check = check_migration(&pool.acceptance.policy, host);
        assert!(check.is_compatible(), "{context}: acceptance refused by {}: {:?}", host.name, check.mismatches);
    }
    // Never larger than the rules allow.
    let defaults = [&a.default, &b.default];
    let maxes = [&a.max, &b.max];
    let extra = pool.default.policy.featureset().difference(&allowed(&defaults, &maxes));
    assert!(extra.is_empty(), "{context}: default has {:?} beyond the rules", extra.names());
    let extra = pool.acceptance.policy.featureset().difference(&allowed(&maxes, &maxes));
    assert!(extra.is_empty(), "{context}: acceptance has {:?} beyond the rules", extra.names());
    // Dependency-closed.
    let mut closed = pool.default.policy.featureset();
    assert!(closed.apply_dependencies().is_empty(), "{context}: default is not dependency-closed");
    // Numeric limits are the minimum.
    let p = &pool.default.policy;
    assert_eq!(p.max_basic_leaf(), a.default.max_basic_leaf().min(b.default.max_basic_leaf()), "{context}");
    assert_eq!(p.max_phys_addr_bits(), a.default.max_phys_addr_bits().min(b.default.max_phys_addr_bits()), "{context}");
    // The explanation names the culprits truthfully: each named host lacks the feature and
    // some host has it.
    for loss in &pool.default.lost {
        if let LossCause::LackedBy(blamed) = &loss.cause {
            assert!(!blamed.is_empty(), "{context}");
            for index in blamed {
                // Indices into the hosts levelled: [a, b].
                let host = [a, b][index];
                let name = &host.name;
                assert!(!host.default.has_feature(loss.feature), "{context}: {name} was blamed for {:?}", loss.feature);
            }
            assert!(
                [a, b].iter().any(|h| h.default.has_feature(loss.feature)),
                "{context}: {:?} lost that no host had",
                loss.feature
            );
        }
    }
    pool.default.lost.len()
}

#[test]
fn every_intel_pair_and_every_amd_pair_levels_and_fits_each_host() {
    let Some(hosts) = hosts() else { return };
    let mut pairs = 0;
    let mut losses = 0;
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let same: Vec<&Host> = hosts.iter().filter(|h| h.vendor == vendor).collect();
        assert!(same.len() >= 10, "{vendor}: {} dumps", same.len());
        for (i, a) in same.iter().enumerate() {
            for b in &same[i + 1..] {
                let context = format!("pv {} + {}", a.name, b.name);
                losses += check_pair(&a.pv, &b.pv, &context);
                if let (Some(ha), Some(hb)) = (&a.hvm, &b.hvm) {
                    check_pair(ha, hb, &format!("hvm {} + {}", a.name, b.name));
                }
                pairs += 1;
            }
        }
    }
    assert!(pairs > 1500, "{pairs} pairs");
    assert!(losses > 0, "some pair lost something");
}

/// One pool kept across every Intel pair and every AMD pair, explained and not, PV and HVM, with
/// a refused mixed-vendor pool between them: each levelling into it leaves exactly what
/// `level_pool` returns, and the refused one leaves the empty pool, not the previous result.
#[test]
fn levelling_into_a_kept_pool_gives_what_level_pool_returns() {
    let Some(hosts) = hosts() else { return };
    let mut kept = LevelledPool::default();
    let mut compared = 0;
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let same: Vec<&Host> = hosts.iter().filter(|h| h.vendor == vendor).collect();
        for (i, a) in same.iter().enumerate() {
            for (j, b) in same[i + 1..].iter().enumerate() {
                let explain = (i + j) % 2 == 0;
                let options = LevelOptions { explain, ..Default::default() };
                let mut pairs = vec![([a.pv.clone(), b.pv.clone()], "pv")];
                if let (Some(ha), Some(hb)) = (&a.hvm, &b.hvm) {
                    pairs.push(([ha.clone(), hb.clone()], "hvm"));
                }
                for (pair, kind) in pairs {
                    let fresh = level_pool(&pair, options).unwrap();
                    level_pool_into(&pair, options, &mut kept).unwrap();
                    assert!(kept == fresh, "{kind} {} + {} (explain {explain})", a.name, b.name);
                    compared += 1;
                }
            }
        }
        let other = hosts.iter().find(|h| h.vendor != vendor).unwrap();
        let error = level_pool_into(&[same[0].pv.clone(), other.pv.clone()], LevelOptions::default(), &mut kept);
        assert!(matches!(error, Err(LevelError::MixedVendors { .. })), "{error:?}");
        assert!(kept == LevelledPool::default(), "a refused pool leaves no result behind");
    }
    assert!(compared > 1500, "{compared} levellings compared");
}

#[test]
fn a_whole_vendor_pool_levels_and_the_acceptance_check_matches_each_host() {
    let Some(hosts) = hosts() else { return };
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let pool_hosts: Vec<PoolHost> = hosts.iter().filter(|h| h.vendor == vendor).map(|h| h.pv.clone()).collect();
        let pool = level_pool(&pool_hosts, LevelOptions::default()).unwrap();
        for host in &pool_hosts {
            assert!(check_migration(&pool.default.policy, host).is_compatible(), "{vendor}: {}", host.name);
        }
        // A VM is welcome everywhere exactly when the pool's acceptance policy takes it.
        let acceptance = PoolHost::new("pool", pool.acceptance.policy.clone(), pool.acceptance.policy.clone());
        for vm_host in &pool_hosts {
            let vm = &vm_host.default;
            let everywhere = pool_hosts.iter().all(|h| check_migration(vm, h).is_compatible());
            assert_eq!(
                check_migration(vm, &acceptance).is_compatible(),
                everywhere,
                "{vendor}: a VM booted on {}",
                vm_host.name
            );
        }
    }
}

#[test]
fn vendor_mixes_are_refused_naming_the_hosts() {
    let Some(hosts) = hosts() else { return };
    let intel = hosts.iter().find(|h| h.vendor == Vendor::Intel).unwrap();
    let amd = hosts.iter().find(|h| h.vendor == Vendor::Amd).unwrap();
    let error = level_pool(&[intel.pv.clone(), amd.pv.clone()], LevelOptions::default()).unwrap_err();
    let LevelError::MixedVendors { vendors } = &error else { panic!("{error}") };
    assert_eq!(vendors.len(), 2);
    let text = error.to_string();
    assert!(text.contains(&intel.name) && text.contains(&amd.name), "{text}");
    // A VM from one vendor is refused by the other, by name.
    let check = check_migration(&intel.pv.default, &amd.pv);
    assert!(check.mismatches.iter().any(|m| m.kind() == "vendor"), "{:?}", check.mismatches);
}

#[test]
fn tsx_vm_goes_where_max_keeps_rtm_and_not_where_it_does_not() {
    let Some(hosts) = hosts() else { return };
    let rtm = cpupolicy_featureset::known("rtm");
    // A host whose default hides RTM (TSX disabled by default: TAA, microcode) but whose max
    // keeps it, as Xen 4.20 builds it from a real dump.
    let hiding = hosts
        .iter()
        .map(|h| &h.pv)
        .find(|h| !h.default.has_feature(rtm) && h.max.has_feature(rtm))
        .expect("some real Intel host hides RTM by default but keeps it in max");
    // A VM that booted with RTM and HLE (on a host with working TSX).
    let vm = hosts
        .iter()
        .map(|h| &h.pv.default)
        .find(|p| p.has_feature(rtm) && p.vendor() == Vendor::Intel)
        .expect("some real Intel host offers RTM by default");
    let check = check_migration(vm, hiding);
    assert!(
        !check.mismatches.iter().any(|m| m.to_string().contains("rtm") || m.to_string().contains("hle")),
        "{}: {:?}",
        hiding.name,
        check.mismatches
    );
    // Refused, naming RTM, by an Intel host without TSX in max.
    let lacking = hosts
        .iter()
        .map(|h| &h.pv)
        .find(|h| h.max.vendor() == Vendor::Intel && !h.max.has_feature(rtm))
        .expect("some real Intel host has no TSX");
    let check = check_migration(vm, lacking);
    assert!(
        check.mismatches.contains(&cpupolicy_policy::Mismatch::Feature(rtm)),
        "{}: {:?}",
        lacking.name,
        check.mismatches
    );
}

#[test]
fn pv_leak_through_on_real_parts() {
    use cpupolicy_policy::{Levelling, LevellingCaps};
    let Some(hosts) = hosts() else { return };
    let mut leaking = 0;
    for host in &hosts {
        let raw = host.pv.raw.as_ref().unwrap();
        let guest = &host.pv.default;
        // Faulting: nothing leaks.
        let faulting = Levelling { caps: LevellingCaps::Sysctl(1), platform_info_faulting: true };
        assert_eq!(faulting.pv_leak_through(guest, raw), Some(vec![]), "{}", host.name);
        // Nothing: exactly what the hardware has and the policy hides.
        let nothing = Levelling { caps: LevellingCaps::Sysctl(0), platform_info_faulting: false };
        let leaks = nothing.pv_leak_through(guest, raw).unwrap();
        let expected: Vec<_> = raw.featureset().difference(&guest.featureset()).iter().collect();
        assert_eq!(leaks, expected, "{}", host.name);
        // Masks for leaf 1 and 0x80000001 only: nothing leaks from those words, the rest does.
        let masks = Levelling { caps: LevellingCaps::Sysctl(0x1e), platform_info_faulting: false };
        let masked_leaks = masks.pv_leak_through(guest, raw).unwrap();
        assert!(masked_leaks.iter().all(|id| id.word() > 3), "{}: {masked_leaks:?}", host.name);
        assert!(masked_leaks.iter().all(|id| leaks.contains(id)), "{}", host.name);
        // Real parts have features Xen hides from PV guests (VMX/SVM, MONITOR, …): they leak
        // without faulting.
        leaking += usize::from(!leaks.is_empty());
    }
    assert_eq!(leaking, hosts.len(), "every real part leaks something to PV guests without faulting");
}

/// The hazard report on real parts: whole-vendor pools and pairs of neighbouring dumps, PV, every
/// host without faulting or masking. Each host's leak-through entry is what its raw policy shows
/// and the pool's default hides; a host-reflected entry appears exactly for the host-reflected
/// bits whose host policies differ, naming each host on the right side; known MXCSR masks that
/// differ make one entry, equal or unknown ones none.
#[test]
fn hazard_reports_on_real_parts() {
    use cpupolicy_policy::{level_rule, pool_hazards, Hazard, LevelRule, Levelling, LevellingCaps};
    let Some(hosts) = hosts() else { return };
    let reflected: Vec<FeatureId> = cpupolicy_featureset::FEATURES
        .iter()
        .map(|f| f.id)
        .filter(|id| level_rule(*id) == LevelRule::HostReflected)
        .collect();
    assert!(reflected.len() >= 2, "no-fpu-sel and fdp-excp-only at least: {reflected:?}");
    let mut pools: Vec<Vec<PoolHost>> = Vec::new();
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let of_vendor: Vec<PoolHost> = hosts.iter().filter(|h| h.vendor == vendor).map(|h| h.pv.clone()).collect();
        pools.extend(of_vendor.windows(2).map(|pair| pair.to_vec()));
        pools.push(of_vendor);
    }
    let nothing = Levelling { caps: LevellingCaps::Sysctl(0), platform_info_faulting: false };
    let mut seen_reflected = 0;
    for mut pool_hosts in pools {
        for host in &mut pool_hosts {
            host.levelling = Some(nothing);
        }
        let pool = level_pool(&pool_hosts, LevelOptions::default()).unwrap();
        let hazards = pool_hazards(&pool, &pool_hosts, GuestKind::Pv);
        let names: Vec<String> = pool_hosts.iter().map(|h| h.name.clone()).collect();
        for host in &pool_hosts {
            let expected: Vec<FeatureId> =
                host.raw.as_ref().unwrap().featureset().difference(&pool.default.policy.featureset()).iter().collect();
            let reported = hazards.iter().find_map(|h| match h {
                Hazard::LeakThrough { host: name, features, .. } if *name == host.name => Some(features),
                _ => None,
            });
            assert_eq!(reported, Some(&expected), "{names:?}: leak-through of {}", host.name);
        }
        for id in &reflected {
            let with: Vec<String> =
                pool_hosts.iter().filter(|h| h.reflected_source().has_feature(*id)).map(|h| h.name.clone()).collect();
            let without: Vec<String> =
                pool_hosts.iter().filter(|h| !h.reflected_source().has_feature(*id)).map(|h| h.name.clone()).collect();
            let reported = hazards.iter().find(|h| matches!(h, Hazard::Reflected { feature, .. } if feature == id));
            if with.is_empty() || without.is_empty() {
                assert_eq!(reported, None, "{names:?}: {id:?} does not differ");
            } else {
                seen_reflected += 1;
                assert_eq!(reported, Some(&Hazard::Reflected { feature: *id, with, without }), "{names:?}");
            }
        }
        assert!(!hazards.iter().any(|h| matches!(h, Hazard::MxcsrMask { .. })), "no masks known: {names:?}");
        // Masks recorded on two hosts that differ (the values of a CPU with AMD's misaligned-SSE
        // mode bit and one without): one entry, widest first. Equal masks: none.
        if pool_hosts.len() == 2 {
            pool_hosts[0].mxcsr_mask = Some(0xffff);
            pool_hosts[1].mxcsr_mask = Some(0x2ffff);
            let hazards = pool_hazards(&pool, &pool_hosts, GuestKind::Pv);
            let masks = vec![(0x2ffff, vec![names[1].clone()]), (0xffff, vec![names[0].clone()])];
            assert!(hazards.contains(&Hazard::MxcsrMask { masks }), "{hazards:?}");
            pool_hosts[1].mxcsr_mask = Some(0xffff);
            let hazards = pool_hazards(&pool, &pool_hosts, GuestKind::Pv);
            assert!(!hazards.iter().any(|h| matches!(h, Hazard::MxcsrMask { .. })));
        }
    }
    // The dumps include hosts on both sides of a host-reflected bit, so the report is exercised.
    assert!(seen_reflected > 0, "no pool of real parts differs in a host-reflected bit");
}

/// The explanation of a whole-vendor pool, every host present twice and interleaved (so equal
/// hosts are not neighbours), blames exactly the hosts that lack each lost feature, in order,
/// and for each limit exactly the hosts below the highest: the same answer as asking every
/// host, for the default and the acceptance policy.
#[test]
fn explanations_of_a_whole_pool_blame_exactly_the_lacking_hosts() {
    use cpupolicy_policy::LimitField;
    let Some(hosts) = hosts() else { return };
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let once: Vec<PoolHost> = hosts.iter().filter(|h| h.vendor == vendor).map(|h| h.pv.clone()).collect();
        let twice: Vec<PoolHost> = once.iter().chain(once.iter().rev()).cloned().collect();
        let pool = level_pool(&twice, LevelOptions { explain: true, ..Default::default() }).unwrap();
        let mut blamed_lists = 0;
        for (levelled, policy_of) in [
            (&pool.default, (|h: &PoolHost| &h.default) as fn(&PoolHost) -> &CpuPolicy),
            (&pool.acceptance, |h: &PoolHost| &h.max),
        ] {
            let policies: Vec<&CpuPolicy> = twice.iter().map(policy_of).collect();
            for loss in &levelled.lost {
                if let LossCause::LackedBy(blamed) = &loss.cause {
                    let lacking: Vec<usize> =
                        (0..policies.len()).filter(|&i| !policies[i].has_feature(loss.feature)).collect();
                    assert_eq!(blamed, &lacking, "{vendor}: {:?}", loss.feature);
                    blamed_lists += 1;
                }
            }
            for limit in &levelled.limits {
                let below: Vec<usize> = (0..policies.len())
                    .filter(|&i| {
                        let value = limit.field.read(policies[i]);
                        match limit.field {
                            LimitField::PlatformInfo => value != limit.highest,
                            _ => value < limit.highest,
                        }
                    })
                    .collect();
                assert_eq!(limit.hosts, below, "{vendor}: {:?}", limit.field);
            }
        }
        assert!(blamed_lists > 0, "{vendor}: nothing was blamed; the case is not exercised");
    }
}
