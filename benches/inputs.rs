//! The command line on very large inputs: time and peak memory of `level`, `check --legacy` and
//! `check --format json` as the input grows, to show they stay linear in its size. Untrusted
//! files may hold hundreds of thousands of leaves beyond a policy's max leaf; pools may have
//! thousands of hosts. Prints figures only (no wall-time limit: see the level bench).
//! Run with `cargo bench -p cpupolicy --bench inputs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod common;
use common::measure;

/// A JSON policy: an Intel vendor, max basic leaf 0xd, and `extra` leaves above it (out of
/// range, to be removed) — half basic, half extended.
fn policy_with(extra: u32) -> String {
    let mut out = String::from("{\n  \"format\": \"cpupolicy-policy\",\n  \"version\": 1,\n  \"cpuid\": [\n");
    let mut line = |leaf: u32, eax: u32| {
        let _ = writeln!(
            out,
            "    {{\"leaf\": \"{leaf:#010x}\", \"eax\": \"{eax:#010x}\", \"ebx\": \"0x756e6547\", \"ecx\": \"0x6c65746e\", \"edx\": \"0x49656e69\"}},"
        );
    };
    line(0, 0xd);
    line(1, 0x50654);
    for i in 0..extra / 2 {
        line(0x20 + i, 1);
    }
    line(0x8000_0000, 0x8000_0008);
    for i in 0..extra - extra / 2 {
        line(0x8000_0100 + i, 1);
    }
    out.pop();
    out.pop();
    out.push_str("\n  ],\n  \"msrs\": []\n}\n");
    out
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cpupolicy-bench-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn main() {
    let dir = scratch();
    println!("leaves beyond max leaf   file MiB   level s  level MiB   check --legacy s  MiB   µs per leaf (level)");
    for extra in [50_000u32, 100_000, 200_000, 400_000] {
        let file = dir.join(format!("extra-{extra}.json"));
        std::fs::write(&file, policy_with(extra)).unwrap();
        let size = std::fs::metadata(&file).unwrap().len() as f64 / (1 << 20) as f64;
        let (level_s, level_mib, _, _) = measure(&["level".into(), "--kind".into(), "pv".into(), s(&file), s(&file)]);
        let args = ["check", "--kind", "pv", "--legacy", "4.20", "--vm", &s(&file), "--host", &s(&file)];
        let (check_s, check_mib, _, _) = measure(&args.map(String::from));
        println!(
            "{extra:>22}   {size:>8.1}   {level_s:>7.2}  {level_mib:>9.1}   {check_s:>16.2}  {check_mib:>4.1}   {:>8.1}",
            level_s * 1e6 / f64::from(extra)
        );
        std::fs::remove_file(&file).unwrap();
    }

    // Pools of thousands of hosts: the recorded Xen 4.14 and 4.20 boots, alternating.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/xen-reference");
    if !shared.is_dir() {
        println!("no ../shared/xen-reference: pools not measured");
        return;
    }
    let (old, new) = (shared.join("xen-4.14-qemu64.policy.txt"), shared.join("xen-4.20-qemu64.policy.txt"));
    println!("hosts   level s  level MiB   check --format json s  MiB  output MiB");
    for hosts in [1_000usize, 2_500, 5_000] {
        let files: Vec<String> = (0..hosts)
            .map(|i| {
                let link = dir.join(format!("host-{i}.txt"));
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(if i % 2 == 0 { &old } else { &new }, &link).unwrap();
                s(&link)
            })
            .collect();
        let mut level = vec!["level".to_string(), "--kind".into(), "hvm".into()];
        level.extend(files.iter().cloned());
        let (level_s, level_mib, _, _) = measure(&level);
        let mut check = vec!["check".to_string(), "--kind".into(), "hvm".into(), "--format".into(), "json".into()];
        check.extend(["--vm".to_string(), s(&new)]);
        for file in &files {
            check.extend(["--host".to_string(), file.clone()]);
        }
        let (check_s, check_mib, bytes, _) = measure(&check);
        println!(
            "{hosts:>5}   {level_s:>7.2}  {level_mib:>9.1}   {check_s:>21.2}  {check_mib:>4.1}  {:>10.1}",
            bytes as f64 / (1 << 20) as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
