//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` with the nightly toolchain
//! (coverage instrumentation as cargo-fuzz sets it, debug assertions and overflow checks on) and
//! runs each for a while on a corpus seeded from `../shared/`. The test command's `fuzz` step runs
//! each for 20 seconds; a crash, a failed invariant, an input taking over 10 s or over 2 GiB
//! fails it, with the input saved under `target/fuzz/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: &[&str] = &["document", "featureset_text", "wire", "records", "level_check", "derive", "xl_cpuid"];

/// Seconds per target in the test command.
const STEP_SECONDS: u64 = 20;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The coverage flags cargo-fuzz passes to rustc (libFuzzer's inline 8-bit counters).
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing";

/// The test command's step.
pub fn step(root: &Path) -> Result<(), String> {
    run(root, TARGETS, STEP_SECONDS)
}

/// `cargo xtask fuzz [--seconds N] [--target NAME]...`.
pub fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let mut seconds = 60;
    let mut targets: Vec<&str> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a number")?;
                seconds = value.parse().map_err(|_| format!("--seconds: '{value}' is not a number"))?;
            }
            "--target" => {
                let name = args.next().ok_or("--target needs a name")?;
                let known = TARGETS
                    .iter()
                    .find(|t| *t == name)
                    .ok_or_else(|| format!("--target: no target '{name}' (targets: {})", TARGETS.join(", ")))?;
                targets.push(known);
            }
            other => return Err(format!("unknown fuzz option '{other}'")),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    run(root, &targets, seconds)
}

fn run(root: &Path, targets: &[&str], seconds: u64) -> Result<(), String> {
    let build_dir = crate::target_dir(root).join("fuzz-build");
    crate::run_command(
        Command::new("cargo")
            .args(["+nightly", "build", "--release", "--manifest-path"])
            .arg(root.join("fuzz/Cargo.toml"))
            .arg("--target-dir")
            .arg(&build_dir)
            .args(["--target", TRIPLE])
            .env("RUSTFLAGS", RUSTFLAGS)
            .current_dir(root),
    )
    .map_err(|e| format!("{e} (the fuzz targets need the nightly toolchain: rustup toolchain install nightly)"))?;
    let work = crate::target_dir(root).join("fuzz");
    let seeds = seed(root, &work)?;
    for target in targets {
        let corpus = work.join("corpus").join(target);
        let artifacts = work.join("artifacts").join(target);
        for dir in [&corpus, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut fuzzer = Command::new(build_dir.join(TRIPLE).join("release").join(target));
        fuzzer
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus);
        if let Some(seed) = seeds.get(*target) {
            fuzzer.arg(seed);
        }
        let out = fuzzer.output().map_err(|e| format!("{target}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |name: &str| {
            log.lines().find_map(|l| l.strip_prefix(&format!("stat::{name}:")).map(|v| v.trim().to_string()))
        };
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(format!(
                "fuzz target {target} failed ({}); the input is in {}:\n{}",
                out.status,
                artifacts.display(),
                tail.join("\n")
            ));
        }
        let inputs = std::fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0);
        println!(
            "fuzz: {target}: {} runs in {seconds} s ({} per second), peak RSS {} MB, corpus {inputs} inputs, no failure",
            stat("number_of_executed_units").unwrap_or_else(|| "?".into()),
            stat("average_exec_per_sec").unwrap_or_else(|| "?".into()),
            stat("peak_rss_mb").unwrap_or_else(|| "?".into()),
        );
    }
    Ok(())
}

/// Seed directories per target, from the real inputs in `../shared/` (absent: no seeds).
fn seed(root: &Path, work: &Path) -> Result<std::collections::HashMap<&'static str, PathBuf>, String> {
    let shared = root.join("../shared");
    let mut seeds = std::collections::HashMap::new();
    if !shared.is_dir() {
        println!("SKIP: {} is absent; the fuzzers start without seeds", shared.display());
        return Ok(seeds);
    }
    let write = |dir: &Path, name: &str, bytes: &[u8]| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"))
    };
    let documents = work.join("seeds/document");
    let featuresets = work.join("seeds/featureset_text");
    for sub in ["xen-reference", "cpu-dumps/libvirt"] {
        let Ok(entries) = std::fs::read_dir(shared.join(sub)) else { continue };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            if name.ends_with(".featuresets.txt") {
                // Each featureset line, in both separators.
                for (i, words) in text.lines().filter_map(|l| l.split_whitespace().last()).enumerate() {
                    if words.contains(':') {
                        write(&featuresets, &format!("{name}-{i}"), words.as_bytes())?;
                        write(&featuresets, &format!("{name}-{i}-xapi"), words.replace(':', "-").as_bytes())?;
                    }
                }
            } else if name.ends_with(".txt") || name.ends_with(".xml") {
                write(&documents, &name, text.as_bytes())?;
            }
        }
    }
    // xl settings: the forms the command line writes and reads.
    let xl = work.join("seeds/xl_cpuid");
    for (i, text) in [
        "cpuid = \"host,maxleaf=11,sse4_1=0,avx=0,rsba=1,family=0x19,model=x\"\n",
        "name = 'vm'\ncpuid = [ '0x1:ecx=xxxxxxxxxxxx0xxxxxxxxxxxxxxxxxxx,edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1',\n '7,0:ebx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk0' ]\n",
        "host,tm=0,nc=4,procpkg=k",
    ]
    .iter()
    .enumerate()
    {
        write(&xl, &format!("seed-{i}"), text.as_bytes())?;
    }
    seeds.insert("xl_cpuid", xl);
    seeds.insert("document", documents);
    seeds.insert("featureset_text", featuresets);
    Ok(seeds)
}
