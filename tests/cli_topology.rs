//! `cpupolicy topology`, run as an operator would.

use std::process::{Command, Output};

fn cpupolicy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy")
}

/// Runs `cpupolicy topology ARGS --format json`, which must succeed, and returns its JSON.
fn topology_json(args: &[&str]) -> serde_json::Value {
    let out = cpupolicy(&[&["topology"], args, &["--format", "json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn apic_ids(json: &serde_json::Value) -> Vec<u64> {
    json["vcpus"].as_array().unwrap().iter().map(|v| v["apic_id"].as_u64().unwrap()).collect()
}

#[test]
fn qemu_shape_gives_gapped_apic_ids_in_json() {
    // REFERENCE §6, seen on QEMU: -smp 12,sockets=2,cores=3,threads=2 gives APIC IDs 0-5 and 8-13.
    let json = topology_json(&["--vendor", "intel", "--packages", "2", "--cores", "3", "--threads", "2"]);
    assert_eq!(apic_ids(&json), [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
    assert_eq!(json["x2apic_required"], false);
    assert_eq!(json["vcpus"][7]["package"], 1);
    assert_eq!(json["vcpus"][7]["thread"], 1);
    assert_eq!(json["vcpus"][7]["vp_index"], 7);
}

#[test]
fn xen_legacy_doubles_vcpu_ids_and_large_shapes_need_x2apic() {
    let legacy = ["--vendor", "amd", "--packages", "1", "--cores", "4", "--threads", "1", "--scheme", "xen-legacy"];
    assert_eq!(apic_ids(&topology_json(&legacy)), [0, 2, 4, 6]);

    let large = ["--vendor", "intel", "--packages", "2", "--cores", "80", "--threads", "2"];
    assert_eq!(topology_json(&large)["x2apic_required"], true);

    let out = cpupolicy(&[&["topology"], &large[..], &["--no-x2apic"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).to_lowercase().contains("x2apic"));
}

#[test]
fn zero_counts_are_refused_naming_the_level() {
    let out = cpupolicy(&["topology", "--vendor", "intel", "--packages", "1", "--cores", "0", "--threads", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cores"), "{}", String::from_utf8_lossy(&out.stderr));
}
