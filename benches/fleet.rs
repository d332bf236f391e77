//! A fleet of 10,000 hosts and 10,000 VMs: time and peak memory of `placement` and `plan` (a
//! host joining), through the command line as an operator runs them. The hosts are the real
//! CPU dumps of `../shared/cpu-dumps` (Xen's policies predicted by `derive`), each standing for
//! many identical machines: 10,000 host files, hard links to the bundles of the Intel dumps (a
//! pool has one vendor); each VM booted on
//! its host's PV default policy, or on the default of one of a few levelled pools. Prints figures
//! only (no wall-time limit). Run with `cargo bench -p cpupolicy --bench fleet`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;
use common::measure;

fn cli(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy");
    assert!(out.status.success(), "cpupolicy {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn main() {
    let dumps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cpu-dumps/libvirt");
    let Ok(entries) = std::fs::read_dir(&dumps) else {
        println!("SKIP: {} is absent", dumps.display());
        return;
    };
    let mut dumps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    dumps.sort();
    // One vendor, as a pool is: the Intel dumps (leaf 0 EBX "Genu").
    dumps.retain(|d| {
        std::fs::read_to_string(d)
            .is_ok_and(|t| t.contains("eax_in='0x00000000' ecx_in='0x00' eax=") && t.contains("ebx='0x756e6547'"))
    });
    let dir = std::env::temp_dir().join(format!("cpupolicy-bench-fleet-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("hosts")).unwrap();
    let start = Instant::now();
    let mut bundles = Vec::new();
    for (i, dump) in dumps.iter().enumerate() {
        let bundle = dir.join(format!("model{i:02}.json"));
        std::fs::write(&bundle, cli(&["derive", &s(dump)])).unwrap();
        bundles.push(bundle);
    }
    // Three levelled pools whose defaults some VMs booted on (neighbouring models of a vendor).
    let mut pools = Vec::new();
    for (p, members) in [[0usize, 1, 2], [10, 11, 12], [30, 31, 32]].iter().enumerate() {
        let mut args = vec!["level".to_string(), "--kind".into(), "pv".into(), "--format".into(), "json".into()];
        args.extend(members.iter().map(|&m| s(&bundles[m % bundles.len()])));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Ok(document) = std::panic::catch_unwind(|| cli(&refs)) {
            let path = dir.join(format!("pool{p}.json"));
            std::fs::write(&path, document).unwrap();
            pools.push(path);
        }
    }
    println!(
        "fleet bench: {} bundles predicted from the dumps, {} pool documents, in {:.1} s",
        bundles.len(),
        pools.len(),
        start.elapsed().as_secs_f64()
    );
    println!("hosts    VMs      command             seconds   peak MiB   output KiB   exit");
    for n in [1_000usize, 10_000] {
        let (mut hosts, mut vms) = (String::new(), String::new());
        for i in 0..n {
            let link = dir.join("hosts").join(format!("host{i:05}.json"));
            if !link.exists() {
                std::fs::hard_link(&bundles[i % bundles.len()], &link).unwrap();
            }
            let _ = writeln!(hosts, "{}", s(&link));
            let booted_on = if i % 7 == 0 && !pools.is_empty() { &pools[i % pools.len()] } else { &link };
            let _ = writeln!(vms, "vm{i:05}={}@host{i:05}", s(booted_on));
        }
        let (hosts_list, vms_list) = (dir.join(format!("hosts-{n}.txt")), dir.join(format!("vms-{n}.txt")));
        std::fs::write(&hosts_list, hosts).unwrap();
        std::fs::write(&vms_list, vms).unwrap();
        // PV: every dump's host can run PV guests; some older ones have no HVM.
        let fleet = [
            "--kind".to_string(),
            "pv".into(),
            "--hosts-from".into(),
            s(&hosts_list),
            "--vms-from".into(),
            s(&vms_list),
        ];
        let runs: [(&str, Vec<String>); 4] = [
            ("placement json", [&["placement".to_string(), "--format".into(), "json".into()][..], &fleet].concat()),
            ("placement matrix", [&["placement".to_string(), "--format".into(), "matrix".into()][..], &fleet].concat()),
            ("plan --add", [&["plan".to_string(), "--add".into(), s(&bundles[0])][..], &fleet].concat()),
            ("plan --remove", [&["plan".to_string(), "--remove".into(), "host00001".into()][..], &fleet].concat()),
        ];
        for (label, args) in runs {
            let (seconds, mib, bytes, code) = measure(&args);
            println!("{n:<8} {n:<8} {label:<18} {seconds:>8.2} {mib:>10.1} {:>12.0} {code:>6}", bytes as f64 / 1024.0);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
