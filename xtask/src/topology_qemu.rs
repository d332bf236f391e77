//! The `qemu-topology` step: QEMU is the reference for the topology crate's `Modern` scheme.
//!
//! Each boot runs plain Linux (no Xen) under QEMU/TCG with one `-cpu` model and `-smp` shape;
//! in the guest `cpupolicy observe cpuid` reads every vCPU's topology leaves from
//! `/dev/cpu/N/cpuid`, and `/proc/cpuinfo` gives the APIC IDs. On the host
//! `cpupolicy observe compare` compares them with what the crate computes for the same shape
//! and vendor: every register of every leaf the crate writes, each either agreeing, differing
//! exactly as QEMU 7.2 (Debian 12, the QEMU installed here) is known to (modelled from its
//! `target/i386/cpu.c`, counted and listed per field), or failing the step.
//!
//! QEMU 7.2 under TCG refuses any shape with an APIC ID above 254 ("requires kernel irqchip and
//! X2APIC API support"), and the sandbox's `pc` machine stops at 255 vCPUs. Guests that large
//! hang in early boot on this 2-core machine too often to test with: 255 vCPUs hung in 2 of 5
//! boots by hand (1 of 9 with `tsc=reliable` and similar options) and in 3 of 6 boots in CI runs
//! (no console output after "sched_clock: Marking stable" or driver init, until the time limit).
//! 200 vCPUs booted 9 times in 9 by hand, but hung once in each of two CI runs and then three
//! boots in three in one CI run (each time right after "sched_clock: Marking stable"). So the
//! largest shape is the smallest one that still puts both Intel count fields at their caps:
//! 65 cores × 2 threads on one socket, 130 vCPUs. Its 65 cores need 7 bits of APIC ID and its
//! threads 1, so a package spans 256 IDs: leaf 1 `EBX[23:16]` is capped at 255 and leaf 4
//! `EAX[31:26]` (128 addressable cores, minus one) at 63; its APIC IDs run up to 129, and the
//! IDs of cores 65 to 127 are unused. That boot took 44 s alone; the others take 10-30 s each and run two at a time.
//! A hang before `/init` still gets up to two more boots.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sandbox;

/// One boot: QEMU `-cpu` model, the vendor the crate is asked for, `-smp`, and what it covers.
struct Shape {
    cpu: &'static str,
    vendor: &'static str,
    smp: &'static str,
    covers: &'static str,
}

/// The boots (those above [`ALONE_ABOVE_VCPUS`] run first, alone).
const SHAPES: &[Shape] = &[
    Shape {
        cpu: "Skylake-Server",
        vendor: "intel",
        smp: "130,sockets=1,cores=65,threads=2",
        covers: "130 vCPUs (APIC IDs up to 129); leaf 1 and leaf 4 count fields at their caps; 65 cores: gaps",
    },
    Shape {
        cpu: "Skylake-Server",
        vendor: "intel",
        smp: "12,sockets=2,cores=3,threads=2",
        covers: "three cores: gaps in the APIC IDs, addressable IDs above the counts",
    },
    Shape {
        cpu: "Skylake-Server",
        vendor: "intel",
        smp: "18,sockets=1,dies=2,cores=3,threads=3",
        covers: "dies (leaf 0x1F) and three threads per core",
    },
    Shape { cpu: "EPYC", vendor: "amd", smp: "10,sockets=2,cores=5,threads=1", covers: "AMD without SMT, five cores" },
    Shape {
        cpu: "EPYC",
        vendor: "amd",
        smp: "24,sockets=2,dies=2,cores=3,threads=2",
        covers: "AMD nodes (dies) in 0x8000001E, L3 per die",
    },
    Shape {
        cpu: "EPYC",
        vendor: "amd",
        smp: "18,sockets=1,dies=3,cores=3,threads=2",
        covers: "three nodes per package",
    },
];

/// What runs in the guest: the dump and the APIC IDs, between marker lines.
const SCRIPT: &str = "\
cpupolicy observe cpuid > /tmp/dump || exit 1
echo BEGIN-CPUID-DUMP
cat /tmp/dump
echo BEGIN-CPUINFO
grep -E '^(processor|apicid)' /proc/cpuinfo
echo END-OBSERVE
";

/// Wall-clock limit of one boot (the 130-vCPU boot takes about 45 s alone, the others 10-30 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(200);

/// Boots with more vCPUs than this run alone: hundreds of TCG vCPU threads on a shared 2-core
/// host stall in the guest's `stop_machine()` (soft lockups, then the boot's time limit).
const ALONE_ABOVE_VCPUS: u32 = 64;

/// The step: every shape booted and compared; fails on any unexplained difference.
pub fn qemu_topology(root: &Path) -> Result<(), String> {
    crate::cargo(root, &["build", "--release", "--bin", "cpupolicy"])?;
    let cpupolicy = crate::target_dir(root).join("release/cpupolicy");
    let out_dir = crate::target_dir(root).join("qemu-topology");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    sandbox::prepare(root, &[sandbox::Hypervisor::None])?;

    let started = Instant::now();
    let vcpus = |s: &&Shape| s.smp.split(',').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    let (alone, shared): (Vec<&Shape>, Vec<&Shape>) = SHAPES.iter().partition(|s| vcpus(s) > ALONE_ABOVE_VCPUS);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    let mut failures = run_boots(root, &cpupolicy, &out_dir, &alone, 1);
    failures.extend(run_boots(root, &cpupolicy, &out_dir, &shared, workers));
    println!(
        "qemu-topology: {} boots in {:.1?} ({} alone, then {workers} at a time)",
        SHAPES.len(),
        started.elapsed(),
        alone.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Boots `shapes`, `workers` at a time, printing each report; returns the failures.
fn run_boots(root: &Path, cpupolicy: &Path, out_dir: &Path, shapes: &[&Shape], workers: usize) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(shape) = shapes.get(next.fetch_add(1, Ordering::SeqCst)) {
                    match boot_and_compare(root, cpupolicy, out_dir, shape) {
                        // One print per boot, so the workers' lines do not interleave.
                        Ok(report) => print!("{report}"),
                        Err(error) => {
                            println!("qemu {} -smp {}: FAILED", shape.cpu, shape.smp);
                            failures.lock().unwrap_or_else(|e| e.into_inner()).push(error);
                        }
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Whether a sandbox failure is the guest hanging before it ran the script (not a wrong answer).
fn is_boot_hang(error: &str) -> bool {
    error.contains("the guest never reached /init") || error.contains("/init started but did not reach the script")
}

/// The text between a marker line and the next marker line.
fn section<'a>(output: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = output.find(&format!("{begin}\n"))? + begin.len() + 1;
    let stop = start + output[start..].find(&format!("{end}\n"))?;
    Some(&output[start..stop])
}

/// Boots one shape, saves what the guest read under `out_dir`, compares it with the crate's
/// values and returns the lines to print; fails on a boot failure or unexplained differences.
fn boot_and_compare(root: &Path, cpupolicy: &Path, out_dir: &Path, shape: &Shape) -> Result<String, String> {
    let name = format!("{}-{}", shape.cpu, shape.smp.replace([',', '='], "-"));
    let what = format!("qemu {} -smp {}", shape.cpu, shape.smp);
    let mut boot = sandbox::Boot::new(sandbox::Hypervisor::None, SCRIPT);
    boot.cpu_model = shape.cpu.into();
    boot.smp = shape.smp.into();
    boot.timeout = BOOT_TIMEOUT;
    boot.files.push((cpupolicy.to_path_buf(), "/usr/bin/cpupolicy".into()));
    // A guest with over a hundred TCG vCPUs on two host cores can stall in early boot (see the
    // module documentation). Such a hang says nothing about topology, so it gets
    // up to two more boots, and the report says so; any other failure, or a third hang, fails
    // the step.
    const BOOTS: usize = 3;
    let mut hangs: Vec<String> = Vec::new();
    let out = loop {
        match sandbox::boot(root, &boot) {
            Err(error) if is_boot_hang(&error) && hangs.len() + 1 < BOOTS => {
                hangs.push(error.lines().next().unwrap_or_default().to_string());
            }
            Err(error) if is_boot_hang(&error) => {
                return Err(format!("{what}: hung in early boot {BOOTS} times: {error}"));
            }
            other => break other.map_err(|e| format!("{what}: {e}"))?,
        }
    };
    if out.exit_status != 0 {
        return Err(format!("{what}: the guest script exited with {}:\n{}{}", out.exit_status, out.output, out.stderr));
    }
    let (Some(dump), Some(cpuinfo)) = (
        section(&out.output, "BEGIN-CPUID-DUMP", "BEGIN-CPUINFO"),
        section(&out.output, "BEGIN-CPUINFO", "END-OBSERVE"),
    ) else {
        return Err(format!("{what}: no dump in the guest's output:\n{}", out.output));
    };
    let dump_path = out_dir.join(format!("{name}.cpuid"));
    let cpuinfo_path = out_dir.join(format!("{name}.cpuinfo"));
    for (path, text) in [(&dump_path, dump), (&cpuinfo_path, cpuinfo)] {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let compared = Command::new(cpupolicy)
        .args(["observe", "compare", "--accel", "tcg", "--vendor", shape.vendor, "--smp", shape.smp, "--dump"])
        .arg(&dump_path)
        .arg("--cpuinfo")
        .arg(&cpuinfo_path)
        .output()
        .map_err(|e| format!("{}: {e}", cpupolicy.display()))?;
    let stdout = String::from_utf8_lossy(&compared.stdout);
    let mut lines = stdout.lines();
    let summary = lines.next().unwrap_or("(no summary)");
    let mut report = format!("{what} ({}, {:.1} s): {summary}\n", shape.covers, out.elapsed.as_secs_f64());
    for (i, hang) in hangs.iter().enumerate() {
        report.push_str(&format!("    booted again: boot {} hung ({hang})\n", i + 1));
    }
    for line in lines {
        report.push_str(&format!("    {}\n", line.trim_start()));
    }
    if out.qemu_stderr.contains("ECX.topoext") {
        report.push_str("    QEMU: \"TCG doesn't support requested feature: CPUID.80000001H:ECX.topoext\"\n");
    }
    match compared.status.code() {
        Some(0) => Ok(report),
        _ => Err(format!(
            "{what}: the guest's CPUID differs from the crate's (dump in {}):\n{report}{}",
            dump_path.display(),
            String::from_utf8_lossy(&compared.stderr)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::is_boot_hang;

    #[test]
    fn a_hang_before_the_script_is_told_from_other_failures() {
        // The first line of a real failure of the 255-vCPU boot.
        let hang = "sandbox boot of plain Linux on -cpu Skylake-Server -smp 255,sockets=1,cores=255,threads=1 \
                    failed: the guest never reached /init: timed out after 300 s";
        assert!(is_boot_hang(hang));
        assert!(!is_boot_hang("sandbox boot of plain Linux failed: the script did not finish: QEMU exited"));
        assert!(!is_boot_hang("cannot start qemu-system-x86_64: No such file or directory"));
    }
}
