//! Project automation: `cargo xtask test` runs every layer of tests; `cargo xtask sandbox`
//! boots real Xen under QEMU and runs a `cpupolicy` command in dom0.
//!
//! The xtask pattern keeps automation in Rust, in the workspace, with no tools to install
//! beyond cargo: what the test command needs from the system it installs itself.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bindings;
mod capi;
mod debian;
mod sandbox;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("header") => capi::write_header(&root),
        Some("bindings") => bindings::run_cli(&root, &args[1..]),
        Some("sandbox") => sandbox_command(&root, &args[1..]),
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
  sandbox [--xen 4.14|4.17|4.20] [--cpu MODEL] -- cpupolicy ARGS...
                          boot real Xen (4.20 by default) under QEMU and run a cpupolicy command in dom0
  sandbox prepare|boot|selftest|headers|userland ...   lower-level sandbox commands (sandbox help)
  bindings [--check]      regenerate (or check) the Xen ABI bindings from Xen's public headers
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
    Step { name: "bindings", run: bindings::check },
    Step { name: "c-header", run: capi::check_header },
    Step { name: "c-api", run: capi::c_tests },
    Step { name: "real-xen", run: real_xen },
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
    eprintln!("+ {shown}");
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

/// `cargo xtask sandbox [--xen V] [--cpu M] -- cpupolicy ARGS...`: builds the CLI, boots real Xen
/// under QEMU and runs the command in dom0, printing what it printed; other forms go to the
/// sandbox module's own commands.
fn sandbox_command(root: &Path, args: &[String]) -> Result<(), String> {
    let Some(split) = args.iter().position(|a| a == "--") else {
        return sandbox::run_cli(root, args);
    };
    let mut boot = sandbox::Boot::new(sandbox::Hypervisor::Xen(sandbox::XenRelease::V4_20), "");
    let mut options = args[..split].iter();
    while let Some(option) = options.next() {
        let value = options.next().ok_or_else(|| format!("{option} needs a value"))?;
        match option.as_str() {
            "--xen" => {
                boot.hypervisor =
                    sandbox::Hypervisor::parse(value).ok_or_else(|| format!("unknown Xen release '{value}'"))?
            }
            "--cpu" => boot.cpu_model = value.clone(),
            other => return Err(format!("unknown sandbox option '{other}'\n{USAGE}")),
        }
    }
    let command = &args[split + 1..];
    if command.first().map(String::as_str) != Some("cpupolicy") {
        return Err("the command to run in dom0 must start with `cpupolicy`".into());
    }
    cargo(root, &["build", "--release", "--bin", "cpupolicy"])?;
    boot.files.push((target_dir(root).join("release/cpupolicy"), "/usr/bin/cpupolicy".into()));
    boot.script = command.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    eprintln!("sandbox: booting {} on -cpu {} to run: {}", boot.hypervisor, boot.cpu_model, boot.script);
    let out = sandbox::boot(root, &boot)?;
    print!("{}", out.output);
    eprint!("{}", out.stderr);
    eprintln!("sandbox: exit status {} (boot {:.1?}, total {:.1?})", out.exit_status, out.boot_time, out.elapsed);
    if out.exit_status == 0 {
        Ok(())
    } else {
        Err(format!("the command exited with status {} in dom0", out.exit_status))
    }
}

/// Quotes an argument for busybox `sh`.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// What runs in dom0 on each real-Xen boot: the hypercall self-test, then `cpupolicy` against
/// `xen-cpuid` from the same boot (host policies, dynamic featuresets).
const REAL_XEN_SCRIPT: &str = r#"
xen-selftest; status=$?
compare() {
    if cmp -s "$2" "$3"; then echo "PASS $1"; else echo "FAIL $1"; diff "$2" "$3" | head -40; cat /tmp/stderr; fi
}
xen-cpuid -p > /tmp/ref-policy 2>&1
cpupolicy host --source xen --format xen-cpuid > /tmp/our-policy 2> /tmp/stderr
compare "cpupolicy host --source xen --format xen-cpuid = xen-cpuid -p" /tmp/ref-policy /tmp/our-policy
xen-cpuid | sed -n '/^Dynamic sets:/,$p' | sed 1d > /tmp/ref-featuresets
cpupolicy featuresets --format xen-cpuid > /tmp/our-featuresets 2> /tmp/stderr
compare "cpupolicy featuresets = xen-cpuid Dynamic sets" /tmp/ref-featuresets /tmp/our-featuresets
cpupolicy host --source auto --format json > /tmp/bundle.json 2> /tmp/stderr
grep -q 'source: xen' /tmp/stderr && echo "PASS host --source auto chose xen" || echo "FAIL host --source auto did not choose xen"
exit $status
"#;

/// The real-Xen layer: on Xen 4.14, 4.17 and 4.20 (qemu64, AMD) and 4.20 on an Intel model, the
/// hypercall self-test and `cpupolicy` compared with `xen-cpuid` from the same boot.
fn real_xen(root: &Path) -> Result<(), String> {
    cargo(root, &["build", "--release", "-p", "cpupolicy-hypercall", "--example", "xen-selftest"])?;
    cargo(root, &["build", "--release", "--bin", "cpupolicy"])?;
    let release_dir = target_dir(root).join("release");
    let mut boots: Vec<(sandbox::XenRelease, &str)> =
        sandbox::XenRelease::ALL.iter().map(|&release| (release, "qemu64")).collect();
    boots.push((sandbox::XenRelease::V4_20, "Skylake-Server,-smap,-smep"));
    let mut failures = Vec::new();
    for (release, cpu) in boots {
        let mut boot = sandbox::Boot::new(sandbox::Hypervisor::Xen(release), REAL_XEN_SCRIPT);
        boot.cpu_model = cpu.into();
        boot.files.push((release_dir.join("examples/xen-selftest"), "/usr/bin/xen-selftest".into()));
        boot.files.push((release_dir.join("cpupolicy"), "/usr/bin/cpupolicy".into()));
        let out = sandbox::boot(root, &boot)?;
        let failed: Vec<&str> = out.output.lines().filter(|l| l.starts_with("FAIL")).collect();
        let passed = out.output.lines().filter(|l| l.starts_with("PASS")).count();
        println!("real {release} ({cpu}): {passed} passed, {} failed, exit {}", failed.len(), out.exit_status);
        for line in out.output.lines().filter(|l| l.starts_with("PASS cpupolicy") || l.starts_with("PASS host")) {
            println!("    {line}");
        }
        if out.exit_status != 0 || !failed.is_empty() || passed < 40 {
            failures.push(format!("{release} ({cpu}): exit {}\n{}", out.exit_status, out.output));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}
