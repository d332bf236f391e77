//! Levelling and migration-check speed, on the real CPU dumps of `../shared/cpu-dumps` (with
//! the PV policies Xen 4.20 would build on each).
//!
//! Prints the figures beside their targets (levelling under 2 µs per host policy, a migration
//! check under 200 ns) and only reports: wall time on a shared machine varies with its load, and
//! a test that fails on it fails for reasons that are not the code's. Run with
//! `cargo bench -p cpupolicy-policy --bench level`.

use std::hint::black_box;
use std::time::Duration;

use cpupolicy_featureset::GuestKind;
use cpupolicy_policy::{
    check_migration, derive_system_policies, level_pool, CpuPolicy, DeriveOptions, LevelOptions, PoolHost, Vendor,
};

#[path = "../tests/common/mod.rs"]
mod common;
mod timing;

use timing::best_of;

const LEVEL_TARGET_NS_PER_HOST: f64 = 2000.0;
const CHECK_TARGET_NS: f64 = 200.0;

fn main() {
    let Some(dumps) = common::libvirt_dumps() else {
        eprintln!("no dumps: nothing measured");
        return;
    };
    // Every Intel dump, with Xen 4.20's PV policies predicted from it: real host policies.
    let intel: Vec<(String, PoolHost)> = dumps
        .iter()
        .filter_map(|(name, text)| CpuPolicy::from_libvirt_xml(text).ok().map(|p| (name.clone(), p)))
        .filter(|(_, p)| p.vendor() == Vendor::Intel)
        .map(|(name, raw)| {
            let policies = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).expect("derive");
            let host = PoolHost::from_system(name.clone(), &policies, GuestKind::Pv).expect("PV policies");
            (name, host)
        })
        .collect();
    let hosts_of = |n: usize| -> Vec<PoolHost> {
        (0..n)
            .map(|i| {
                let (name, host) = &intel[i % intel.len()];
                PoolHost { name: format!("{i}-{name}"), ..host.clone() }
            })
            .collect()
    };

    println!("{} Intel dumps, cycled to make the pools", intel.len());
    for (n, explain) in [(64, false), (10_000, false), (64, true), (10_000, true)] {
        let hosts = hosts_of(n);
        let time = best_of(Duration::from_millis(if n > 1000 { 2000 } else { 500 }), || {
            black_box(level_pool(black_box(&hosts), LevelOptions { explain, ..LevelOptions::default() }).unwrap());
        });
        let per_host = time.as_nanos() as f64 / n as f64;
        let verdict = if explain {
            "(explanation: no target)"
        } else if per_host < LEVEL_TARGET_NS_PER_HOST {
            "ok"
        } else {
            "over target (reported, not enforced)"
        };
        println!(
            "level {n:>6} hosts{}: {:>10.1} µs total, {per_host:>7.1} ns per host (target < {LEVEL_TARGET_NS_PER_HOST} ns) {verdict}",
            if explain { " with --explain" } else { "" },
            time.as_nanos() as f64 / 1000.0
        );
    }

    let hosts = hosts_of(10_000);
    let pool = level_pool(&hosts, LevelOptions::default()).unwrap();
    let vm = pool.default.policy.clone();
    let mut compatible = 0;
    let time = best_of(Duration::from_millis(2000), || {
        compatible = hosts.iter().filter(|h| check_migration(black_box(&vm), h).is_compatible()).count();
    });
    assert_eq!(compatible, hosts.len(), "the pool default fits every host");
    let warned = hosts.iter().filter(|h| !check_migration(&vm, h).warnings.is_empty()).count();
    println!("{warned} of {} checks carry warnings", hosts.len());
    let per_check = time.as_nanos() as f64 / hosts.len() as f64;
    let verdict = if per_check < CHECK_TARGET_NS { "ok" } else { "over target (reported, not enforced)" };
    println!(
        "check one VM against {} hosts: {:>10.1} µs total, {per_check:>7.1} ns per check (target < {CHECK_TARGET_NS} ns) {verdict}",
        hosts.len(),
        time.as_nanos() as f64 / 1000.0
    );
}
