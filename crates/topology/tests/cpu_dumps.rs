//! Survey of the real hosts' CPUID dumps in `shared/cpu-dumps/libvirt/` (see its README).
//!
//! Each dump is one host processor's raw CPUID. The parser must recover a topology from every
//! dump that carries topology leaves, and that topology must agree with the dump's other
//! leaves and with what each CPU's name says about it.

use std::path::{Path, PathBuf};

use cpupolicy_topology::cpuid::has_subleaves;
use cpupolicy_topology::{parse_vcpu, CpuidLeaves, Finding, ParsedVcpu, TopologySource, Vendor};

fn dump_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/cpu-dumps/libvirt");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; the CPU dump survey needs shared/cpu-dumps beside the repository",
            dir.display()
        );
        None
    }
}

/// A minimal reader for libvirt's `<cpuid eax_in=… ecx_in=… eax=… ebx=… ecx=… edx=…/>` lines.
/// The policy crate owns the real importer; this one only serves the survey.
fn read_dump(path: &Path) -> CpuidLeaves {
    let text = std::fs::read_to_string(path).unwrap();
    let mut leaves = CpuidLeaves::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with("<cpuid ")) {
        let attr = |name: &str| -> u32 {
            let start =
                line.find(&format!(" {name}='")).unwrap_or_else(|| panic!("{}: no {name} in {line}", path.display()));
            let rest = &line[start + name.len() + 3..];
            let value = &rest[..rest.find('\'').unwrap()];
            u32::from_str_radix(value.trim_start_matches("0x"), 16).unwrap()
        };
        let leaf = attr("eax_in");
        let subleaf = has_subleaves(leaf).then(|| attr("ecx_in"));
        leaves.insert(leaf, subleaf, [attr("eax"), attr("ebx"), attr("ecx"), attr("edx")]);
    }
    leaves
}

fn has_topology_leaves(leaves: &CpuidLeaves, vendor: Vendor) -> bool {
    let any = |l: u32| leaves.subleaves(l).next().is_some();
    any(0xb)
        || any(0x1f)
        || any(0x8000_001e)
        || any(0x8000_0026)
        || match vendor {
            Vendor::Intel => any(4),
            Vendor::Amd | Vendor::Hygon => any(0x8000_0008),
        }
}

struct Survey {
    name: String,
    vendor: Vendor,
    parsed: ParsedVcpu,
}

fn survey() -> Option<Vec<Survey>> {
    let dir = dump_dir()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let leaves = read_dump(&path);
        let vendor = Vendor::from_cpuid(&leaves).unwrap_or_else(|| panic!("{}: unknown vendor", path.display()));
        if !has_topology_leaves(&leaves, vendor) {
            eprintln!("{}: no topology leaves", path.display());
            continue;
        }
        let name = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("x86_64-cpuid-")
            .trim_start_matches("x86-cpuid-")
            .to_owned();
        out.push(Survey { name, vendor, parsed: parse_vcpu(&leaves, vendor) });
    }
    Some(out)
}

/// A finding's kind, as serde names it (`apic-id-mismatch`, …).
fn kind(f: &Finding) -> String {
    serde_json::to_value(f).unwrap()["kind"].as_str().unwrap().to_owned()
}

fn row(s: &Survey) -> String {
    let p = &s.parsed;
    format!(
        "{:<36} {:<6} {:<15} threads/core {:>2}  cores/pkg {:>3}  threads/pkg {:>3}  pkg shift {:>2}  nodes {}",
        s.name,
        s.vendor.to_string(),
        format!("{:?}", p.source),
        p.threads_per_core(),
        p.cores_per_package(),
        p.threads_per_package(),
        p.package_shift(),
        p.amd_nodes_per_package,
    )
}

/// Prints the survey (`cargo test -p cpupolicy-topology --test cpu_dumps -- --nocapture`).
#[test]
fn every_dump_with_topology_leaves_parses() {
    let Some(all) = survey() else { return };
    assert!(all.len() >= 70, "only {} dumps carry topology leaves", all.len());
    println!("{} dumps carry topology leaves", all.len());
    for s in &all {
        println!("{}", row(s));
        for f in &s.parsed.findings {
            println!("    finding: {f}");
        }
        assert_ne!(s.parsed.source, TopologySource::None, "{}: no topology recovered", s.name);
    }
}

/// The findings each dump is expected to produce, and why; every other dump must have none.
///
/// Absence of findings is the real consistency assertion: the threads per core and
/// logical processors per package recovered from the leaf Linux uses agree with leaf 1
/// EBX[23:16] (Intel: its ID space holds them; AMD: equal), Intel leaf 4 EAX[31:26] (enough
/// core IDs), AMD 0x80000008 NC + 1 (equal) and ApicIdCoreIdSize, 0x8000001E's threads per
/// core, and every leaf's APIC ID.
const EXPECTED_FINDINGS: &[(&str, &[&str], &str)] = &[
    // AMD dumps whose 0x8000001E EAX is not the leaf 1 (and 0xB) APIC ID. On the Zen parts
    // leaves 1/0xB read 0 while 0x8000001E does not: the dump tool zeroed the APIC ID in
    // leaves 1/0xB only (the dumps' README says some older dumps kept it). On the family 15h
    // parts 0x8000001E is higher by 0x10 (A10) or 0x20 (Opterons): leaf 1 holds the initial
    // (reset) APIC ID and 0x8000001E the current one, after firmware moved the APIC IDs up;
    // the FX-8150 (3 vs 1) looks like a dump read on two CPUs. One dump cannot tell which.
    ("A10-5800K", &["apic-id-mismatch"], "APIC IDs offset by firmware"),
    ("FX-8150", &["apic-id-mismatch"], "leaves read on different CPUs"),
    ("Opteron-6234", &["apic-id-mismatch"], "APIC IDs offset by firmware"),
    ("Opteron-6282", &["apic-id-mismatch"], "APIC IDs offset by firmware"),
    ("EPYC-7713-64-Core", &["apic-id-mismatch", "apic-id-mismatch"], "APIC ID zeroed in leaves 1 and 0xB"),
    (
        "Ryzen-5-5500U-with-Radeon-Graphics",
        &["apic-id-mismatch", "apic-id-mismatch"],
        "APIC ID zeroed in leaves 1 and 0xB",
    ),
    // Zen 4/5: the dump kept only sub-leaf 0 of 0x80000026, so the parser falls back to 0xB.
    (
        "EPYC-9334-32-Core",
        &["incomplete-levels", "apic-id-mismatch", "apic-id-mismatch"],
        "0x80000026 truncated; APIC ID zeroed",
    ),
    (
        "Ryzen-9-9950X-16-Core",
        &["incomplete-levels", "apic-id-mismatch", "apic-id-mismatch"],
        "0x80000026 truncated; APIC ID zeroed",
    ),
    // Cascade Lake-AP: two dies per package. Leaf 0xB has no die level, so its core level
    // stops at the die (shift 6, 0x1F says 7), and leaf 4's core count is per die (32 < 48).
    ("Xeon-Platinum-9242", &["shift-mismatch", "leaf4-cores"], "two dies per package"),
];

#[test]
fn dumps_are_consistent_apart_from_the_listed_findings() {
    let Some(all) = survey() else { return };
    let mut failures = Vec::new();
    for s in &all {
        let found: Vec<String> = s.parsed.findings.iter().map(kind).collect();
        let expected: Vec<&str> = EXPECTED_FINDINGS.iter().find(|e| e.0 == s.name).map_or(&[][..], |e| e.1).to_vec();
        if found != expected {
            failures.push(format!("{}: findings {found:?}, expected {expected:?}", s.name));
        }
    }
    for e in EXPECTED_FINDINGS {
        assert!(all.iter().any(|s| s.name == e.0), "{} is listed but was not surveyed", e.0);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Facts in the dump file names themselves: "32-Core", "12-Core", "Eight-Core".
const CORES_FROM_NAMES: &[(&str, u32)] = &[
    ("EPYC-7502-32-Core", 32),
    ("EPYC-7601-32-Core", 32),
    ("EPYC-7601-32-Core-ibpb", 32),
    ("EPYC-7713-64-Core", 64),
    ("EPYC-9334-32-Core", 32),
    ("Hygon-C86-7185-32-core", 32),
    ("Ryzen-7-1800X-Eight-Core", 8),
    ("Ryzen-9-3900X-12-Core", 12),
    ("Ryzen-9-9950X-16-Core", 16),
];

/// `(dump, cores per package, threads per core)` from the vendors' published specifications
/// of the model in the name (not from the name itself).
const FROM_SPECIFICATIONS: &[(&str, u32, u32)] = &[
    ("Atom-N450", 1, 2),
    ("Atom-D510", 2, 2),
    ("Atom-P5362", 24, 1),
    ("Core2-E6850", 2, 1),
    ("Core2-Q9500", 4, 1),
    ("Core-i5-2500", 4, 1),
    ("Core-i5-2540M", 2, 2),
    ("Core-i5-4670T", 4, 1),
    ("Core-i5-650", 2, 2),
    ("Core-i5-6600", 4, 1),
    ("Core-i7-2600", 4, 2),
    ("Core-i7-3520M", 2, 2),
    ("Core-i7-3740QM", 4, 2),
    ("Core-i7-3770", 4, 2),
    ("Core-i7-4510U", 2, 2),
    ("Core-i7-4600U", 2, 2),
    ("Core-i7-5600U", 2, 2),
    ("Core-i7-7600U", 2, 2),
    ("Core-i7-7700", 4, 2),
    ("Core-i7-8550U", 4, 2),
    ("Core-i7-8700", 6, 2),
    ("Pentium-P6100", 2, 1),
    ("Xeon-5110", 2, 1),
    ("Xeon-X5460", 4, 1),
    ("Xeon-E3-1225-v5", 4, 1),
    ("Xeon-E3-1245-v5", 4, 2),
    ("Xeon-E3-1270-v5", 4, 2),
    ("Xeon-E5-2609-v3", 6, 1),
    ("Xeon-E5-2623-v4", 4, 2),
    ("Xeon-E5-2630-v4", 10, 2),
    ("Xeon-E5-2650", 8, 2),
    ("Xeon-E5-2650-v4", 12, 2),
    ("Xeon-E7-4820", 8, 2),
    ("Xeon-E7-4830", 8, 2),
    ("Xeon-E7-8890-v3", 18, 2),
    ("Xeon-E7540", 6, 2),
    ("Xeon-Gold-5115", 10, 2),
    ("Xeon-Gold-6130", 16, 2),
    ("Xeon-Gold-6148", 20, 2),
    ("Xeon-Gold-6152", 22, 2),
    ("Xeon-Gold-6530", 32, 2),
    ("Xeon-Platinum-8268", 24, 2),
    ("Xeon-Platinum-9242", 48, 2),
    ("Xeon-Silver-4214R", 12, 2),
    ("Xeon-W3520", 4, 2),
    ("Xeon-w7-3465X", 28, 2),
    ("Xeon-Bronze-3408U", 8, 1),
    ("Xeon-6731E", 96, 1),
    ("Xeon-6788P", 86, 2),
    ("Opteron-1352", 4, 1),
    ("Opteron-2350", 4, 1),
    ("Phenom-B95", 4, 1),
    ("Ryzen-5-5500U-with-Radeon-Graphics", 6, 2),
];

/// Parts where CPUID cannot give the marketed count, with what it gives instead.
/// `(dump, logical processors per package CPUID describes, why)`.
const CPUID_DIFFERS_FROM_SPECIFICATION: &[(&str, u32, &str)] = &[
    // Sandy Bridge-EP, 6 of the die's 8 cores enabled: leaf 1 EBX[23:16], 0xB sub-leaf 1 EBX
    // and leaf 4 all describe the die's 8 cores × 2 threads. The SDM warns that 0xB's count
    // "must not be used to enumerate processor topology".
    ("Xeon-E5-2630", 16, "8-core die, 6 enabled"),
    // Hybrid Alder/Raptor Lake: P-cores have 2 threads, E-cores 1. Linux's parser divides
    // threads per package by the SMT width of the CPU it runs on (its own "bug compatible"
    // comment), so only the thread count is meaningful: 4P+8E = 16, 2P+8E = 12.
    ("Core-i7-1270P", 16, "hybrid 4P+8E"),
    ("Core-i7-1365U", 12, "hybrid 2P+8E"),
    // Bulldozer family: a compute unit's two integer cores are one core with two threads
    // in 0x8000001E, as Linux counts them: 4 CUs (A10 2), 6 and 8 CUs on the Opterons.
    ("FX-8150", 8, "4 compute units of 2 cores"),
    ("A10-5800K", 4, "2 compute units of 2 cores"),
    ("Opteron-6234", 12, "two nodes of 3 compute units"),
    ("Opteron-6282", 16, "two nodes of 4 compute units"),
];

#[test]
fn recovered_counts_match_the_names_and_specifications() {
    let Some(all) = survey() else { return };
    let get = |name: &str| all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} not surveyed"));
    let mut failures = Vec::new();
    for &(name, cores) in CORES_FROM_NAMES {
        let p = &get(name).parsed;
        if p.cores_per_package() != cores {
            failures.push(format!("{name}: {} cores per package, its name says {cores}", p.cores_per_package()));
        }
    }
    for &(name, cores, threads) in FROM_SPECIFICATIONS {
        let p = &get(name).parsed;
        if (p.cores_per_package(), p.threads_per_core()) != (cores, threads) {
            failures.push(format!(
                "{name}: {} cores × {} threads, specification {cores} × {threads}",
                p.cores_per_package(),
                p.threads_per_core()
            ));
        }
    }
    for &(name, threads, why) in CPUID_DIFFERS_FROM_SPECIFICATION {
        let p = &get(name).parsed;
        if p.threads_per_package() != threads {
            failures
                .push(format!("{name} ({why}): {} threads per package, expected {threads}", p.threads_per_package()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Multi-node AMD parts report their nodes in 0x8000001E ECX[10:8].
#[test]
fn amd_multi_node_parts_report_their_nodes() {
    let Some(all) = survey() else { return };
    let nodes: Vec<(&str, u32)> = all
        .iter()
        .filter(|s| s.parsed.amd_nodes_per_package > 1)
        .map(|s| (s.name.as_str(), s.parsed.amd_nodes_per_package))
        .collect();
    assert_eq!(
        nodes,
        [
            ("EPYC-7601-32-Core-ibpb", 4),
            ("EPYC-7601-32-Core", 4),
            ("Hygon-C86-7185-32-core", 4),
            ("Opteron-6234", 2),
            ("Opteron-6282", 2),
        ]
    );
}
