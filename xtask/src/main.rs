//! Project automation: `cargo xtask test` runs every layer of tests; `cargo xtask sandbox`
//! boots real Xen under QEMU and runs a `cpupolicy` command in dom0.
//!
//! The xtask pattern keeps automation in Rust, in the workspace, with no tools to install
//! beyond cargo: what the test command needs from the system it installs itself.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod capi;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("header") => capi::write_header(&root),
        Some("install") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("--prefix"), Some(prefix)) => capi::install(&root, Path::new(prefix)),
            _ => Err("usage: cargo xtask install --prefix PREFIX".into()),
        },
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown xtask command '{other}'\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "\
usage: cargo xtask <command>
  test [--skip|--only STEP]...  every layer: format, lints, unit and integration tests, C, real Xen
  header                  regenerate include/cpupolicy.h from crates/capi (cbindgen)
  install --prefix P      install libcpupolicy (.so and .a), cpupolicy.h and cpupolicy.pc under P
  help                    this text
";

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).map(|d| root.join(d)).unwrap_or_else(|| root.join("target"))
}

/// One step of the test command.
struct Step {
    name: &'static str,
    run: fn(&Path) -> Result<(), String>,
}

const STEPS: &[Step] = &[
    Step { name: "setup", run: setup },
    Step { name: "fmt", run: fmt },
    Step { name: "clippy", run: clippy },
    Step { name: "unit-and-integration", run: cargo_tests },
    Step { name: "release-build", run: release_build },
    Step { name: "c-header", run: capi::check_header },
    Step { name: "c-api", run: capi::c_tests },
];

/// Runs every step, stops at the first failure, and prints a closing tally.
fn test(root: &Path, args: &[String]) -> Result<(), String> {
    let mut skip = Vec::new();
    let mut only = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--skip" => skip.push(args.next().ok_or("--skip needs a step name")?.clone()),
            "--only" => only.push(args.next().ok_or("--only needs a step name")?.clone()),
            other => return Err(format!("unknown test option '{other}'")),
        }
    }
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for step in STEPS {
        if skip.iter().any(|s| s == step.name) || (!only.is_empty() && !only.iter().any(|s| s == step.name)) {
            println!("==> {} (skipped on request)", step.name);
            continue;
        }
        println!("==> {}", step.name);
        let t = Instant::now();
        match (step.run)(root) {
            Ok(()) => {
                passed += 1;
                println!("<== {} ok ({:.0?})", step.name, t.elapsed());
            }
            Err(message) => {
                failed += 1;
                println!("<== {} FAILED ({:.0?}): {message}", step.name, t.elapsed());
                break;
            }
        }
    }
    println!("xtask test finished in {:.0?}", started.elapsed());
    println!("steps: {passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err("test command failed".into())
    }
}

/// Runs a command in the workspace root, failing with its status.
fn run(root: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    run_command(Command::new(program).args(args).current_dir(root))
}

/// Runs a prepared command, echoing it, failing with its status.
fn run_command(command: &mut Command) -> Result<(), String> {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    println!("+ {shown}");
    let status = command.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} exited with {status}"))
    }
}

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    run(root, env!("CARGO"), args)
}

/// System packages the tests use, installed when missing (the test command runs as root in CI).
const SYSTEM_PACKAGES: &[&str] = &["gcc", "make", "pkg-config", "valgrind", "cpio", "qemu-system-x86", "libclang-dev"];

fn setup(root: &Path) -> Result<(), String> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        println!("system packages present: {}", SYSTEM_PACKAGES.join(" "));
        return Ok(());
    }
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    run(root, "apt-get", &["update", "-q"])?;
    run(root, "apt-get", &install)
}

fn fmt(root: &Path) -> Result<(), String> {
    cargo(root, &["fmt", "--all", "--", "--check"])
}

fn clippy(root: &Path) -> Result<(), String> {
    cargo(root, &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
}

fn cargo_tests(root: &Path) -> Result<(), String> {
    cargo(root, &["test", "--workspace"])
}

fn release_build(root: &Path) -> Result<(), String> {
    cargo(root, &["build", "--release"])
}
