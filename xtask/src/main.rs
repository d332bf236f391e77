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
mod every_function;
mod fuzz;
mod sandbox;
mod topology_qemu;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root, &args[1..]),
        Some("header") => capi::write_header(&root),
        Some("fuzz") => fuzz::command(&root, &args[1..]),
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
  fuzz [--seconds N] [--target T]...   run the libFuzzer targets of fuzz/ (nightly), 60 s each by default
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
    Step { name: "bench", run: bench },
    Step { name: "release-build", run: release_build },
    Step { name: "bindings", run: bindings::check },
    Step { name: "c-header", run: capi::check_header },
    Step { name: "c-api", run: capi::c_tests },
    Step { name: "fuzz", run: fuzz::step },
    Step { name: "qemu-topology", run: topology_qemu::qemu_topology },
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
const SYSTEM_PACKAGES: &[&str] = &[
    "gcc",
    "make",
    "pkg-config",
    "valgrind",
    "cpio",
    "qemu-system-x86",
    "libclang-dev",
    "libxen-dev",
    "libyajl-dev",
    "libvirt-clients",
    "libxml2-utils",
    "time",
];

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
for fetch in xen_fetch xen_fetch-shared; do
    $fetch > /tmp/c-policy 2> /tmp/stderr
    compare "C examples/xen_fetch.c ($fetch) = xen-cpuid -p" /tmp/ref-policy /tmp/c-policy
    $fetch featuresets > /tmp/c-featuresets 2> /tmp/stderr
    compare "C examples/xen_fetch.c featuresets ($fetch) = xen-cpuid Dynamic sets" /tmp/ref-featuresets /tmp/c-featuresets
done
cpupolicy host --source auto --format json > /tmp/bundle.json 2> /tmp/stderr
grep -q 'source: xen' /tmp/stderr && echo "PASS host --source auto chose xen" || echo "FAIL host --source auto did not choose xen"
if grep -q '^cpupolicy: levelling: ' /tmp/stderr && ! grep -q 'disagree' /tmp/stderr; then
    echo "PASS host levelling caps consistent with PLATFORM_INFO: $(sed -n 's/^cpupolicy: levelling: //p' /tmp/stderr)"
else
    echo "FAIL host levelling caps"; cat /tmp/stderr
fi
# The MXCSR mask in the bundle is FXSAVE's in dom0 (what `host --source native` reads too).
bundle_mask=$(sed -n 's/^  "mxcsr_mask": "\(0x[0-9a-f]*\)",$/\1/p' /tmp/bundle.json)
cpupolicy host --source native > /dev/null 2> /tmp/stderr
native_mask=$(sed -n 's/^cpupolicy: mxcsr mask: \(0x[0-9a-f]*\) .*/\1/p' /tmp/stderr)
if [ -n "$bundle_mask" ] && [ "$bundle_mask" = "$native_mask" ]; then
    echo "PASS host bundle records the MXCSR mask FXSAVE gives in dom0: $bundle_mask"
else
    echo "FAIL host bundle MXCSR mask '$bundle_mask' vs FXSAVE '$native_mask'"; cat /tmp/stderr
fi
for kind in pv hvm-shadow; do
    if domid=$(xen-selftest create-domain $kind 2> /tmp/stderr); then
        xen-cpuid -p $domid > /tmp/ref-domain 2>&1
        cpupolicy domain get $domid --format xen-cpuid > /tmp/our-domain 2> /tmp/stderr
        compare "cpupolicy domain get = xen-cpuid -p DOMID ($kind domain $domid)" /tmp/ref-domain /tmp/our-domain
        xen_fetch domain $domid > /tmp/c-domain 2> /tmp/stderr
        compare "C examples/xen_fetch.c domain = xen-cpuid -p DOMID ($kind domain $domid)" /tmp/ref-domain /tmp/c-domain
        # Set the policy read back (a new domain may be given one) and read it again.
        cpupolicy domain get $domid --format json > /tmp/domain.json 2> /tmp/stderr
        if xen_fetch set $domid /tmp/domain.json > /tmp/set 2> /tmp/stderr; then
            xen-cpuid -p $domid > /tmp/ref-domain-after 2>&1
            compare "C examples/xen_fetch.c set (the domain's own policy) leaves xen-cpuid -p DOMID unchanged ($kind domain $domid)" /tmp/ref-domain /tmp/ref-domain-after
        else
            echo "FAIL C examples/xen_fetch.c set $domid"; cat /tmp/set /tmp/stderr
        fi
        if cpupolicy check --kind $kind --vm /tmp/our-domain --host /tmp/bundle.json > /tmp/check 2>&1; then
            echo "PASS cpupolicy check: the new $kind domain fits its own host"
        else
            echo "FAIL cpupolicy check: the new $kind domain does not fit its own host"; cat /tmp/check
        fi
        xen-selftest destroy-domain $domid && echo "PASS destroy $kind domain $domid" || echo "FAIL destroy $kind domain $domid"
    elif [ $kind = pv ]; then
        echo "FAIL create a pv domain to compare with xen-cpuid -p DOMID"; cat /tmp/stderr
    else
        echo "NOTE no $kind domain on this Xen: $(cat /tmp/stderr)"
    fi
done
# xl: the cpuid= line cpupolicy writes for a pool of this host and a real part of its vendor, on
# a domain xl creates paused; then the same pool default set through cpupolicy domain set.
partner=/partner-amd.xml; grep -q GenuineIntel /proc/cpuinfo && partner=/partner-intel.xml
if ! command -v xl > /dev/null || [ ! -f $partner ]; then
    echo "NOTE no xl toolstack or no real dump in this boot: xl create not tried"
elif ! { mkdir -p /var/run/xenstored /var/lib/xenstored /var/lib/xen /var/log/xen/console /run/xen /var/run/xen /var/lock /etc/xen /dev/pts \
        && mount -t devpts devpts /dev/pts && touch /etc/xen/xl.conf && xenstored --pid-file=/run/xenstored.pid \
        && xen-init-dom0 > /dev/null && xenconsoled --pid-file=/run/xenconsoled.pid; }; then
    echo "FAIL start xenstored, xen-init-dom0 and xenconsoled for xl"
else
    release=$(sed -n 's/^  "xen": {"major": \([0-9]*\), "minor": \([0-9]*\).*/\1.\2/p' /tmp/bundle.json)
    cpupolicy level --kind pv --format xl --xen $release /tmp/bundle.json $partner > /tmp/cpuid.line 2> /tmp/xl-notes
    printf 'name = "xlpool"\ntype = "pv"\nkernel = "/boot/guest"\nmemory = 256\nvcpus = 1\n' > /tmp/vm.cfg
    cat /tmp/cpuid.line >> /tmp/vm.cfg
    if xl create -p /tmp/vm.cfg > /tmp/xl-create 2>&1 && domid=$(xl domid xlpool 2> /dev/null); then
        echo "PASS xl create -p (Xen $release) with cpupolicy's $(cut -c1-60 /tmp/cpuid.line)..."
        sed -n 's/^cpupolicy: /    NOTE /p' /tmp/xl-notes | grep -v 'leak' | head -8
        xen-cpuid -p $domid > /tmp/ref-xl 2>&1
        cpupolicy domain get $domid --format xen-cpuid > /tmp/our-xl 2> /tmp/stderr
        compare "cpupolicy domain get = xen-cpuid -p DOMID (xl domain $domid)" /tmp/ref-xl /tmp/our-xl
        cpupolicy domain get $domid --format json > /tmp/xl-domain.json 2> /tmp/stderr
        cpupolicy xl apply --host /tmp/bundle.json --kind pv --xen $release /tmp/vm.cfg > /tmp/xl-predicted.json 2> /tmp/stderr
        if cpupolicy diff /tmp/xl-predicted.json /tmp/xl-domain.json > /tmp/xl-diff 2>&1; then
            echo "PASS xl create: the domain's policy is exactly what cpupolicy xl apply predicted for this host"
        else
            echo "FAIL xl create: the domain's policy (B) differs from cpupolicy xl apply's (A)"; cat /tmp/xl-diff /tmp/vm.cfg
        fi
        # The exact route: the pool default itself, set before the domain first runs.
        cpupolicy level --kind pv --format json /tmp/bundle.json $partner > /tmp/pool.json 2> /dev/null
        cpupolicy import /tmp/pool.json --format json > /tmp/pool-default.json 2> /tmp/stderr
        if cpupolicy domain set $domid /tmp/pool.json > /tmp/set 2>&1; then
            cpupolicy domain get $domid --format json > /tmp/set-domain.json 2> /tmp/stderr
            if cpupolicy diff /tmp/pool-default.json /tmp/set-domain.json > /tmp/set-diff 2>&1; then
                echo "PASS cpupolicy domain set: the paused domain has exactly the pool default"
            elif grep -v -e '^leaf 0x80000001 edx: ' -e '^features only in B: <2\*32+[0-9]*>\( <2\*32+[0-9]*>\)*$' /tmp/set-diff > /tmp/other; then
                echo "FAIL cpupolicy domain set: Xen changed more than AMD's leaf-1 copies"; cat /tmp/set-diff
            else
                echo "PASS cpupolicy domain set: the paused domain has the pool default; Xen itself set AMD's copies of leaf 1 EDX in 0x80000001 EDX ($(sed -n 's/^features only in B: //p' /tmp/set-diff))"
            fi
        else
            echo "FAIL cpupolicy domain set $domid"; cat /tmp/set
        fi
        xl destroy $domid > /tmp/xl-destroy 2>&1 && echo "PASS xl destroy $domid" || { echo "FAIL xl destroy $domid"; cat /tmp/xl-destroy; }
    else
        echo "FAIL xl create -p (Xen $release) with cpupolicy's cpuid="; cat /tmp/xl-create /tmp/vm.cfg /tmp/xl-notes
    fi
fi
echo BEGIN-HOST-BUNDLE
cat /tmp/bundle.json
echo END-HOST-BUNDLE
exit $status
"#;

/// The benchmarks: levelling and migration-check speed, the same and Xen's wire format against
/// Debian's libxenguest in callgrind instruction counts, the command line's time and peak memory
/// on very large inputs, and placement and planning over 10,000 hosts and 10,000 VMs. They print figures and fail only when a run fails, never on
/// wall time (which a busy shared machine decides as much as the code).
fn bench(root: &Path) -> Result<(), String> {
    cargo(root, &["bench", "-p", "cpupolicy-policy", "--bench", "level"])?;
    cargo(root, &["bench", "-p", "cpupolicy-policy", "--bench", "xenguest"])?;
    cargo(root, &["bench", "-p", "cpupolicy", "--bench", "inputs"])?;
    cargo(root, &["bench", "-p", "cpupolicy", "--bench", "fleet"])
}

/// The QEMU CPU models the real-Xen layer boots, per release, with a short name for the host.
const REAL_XEN_BOOTS: &[(sandbox::XenRelease, &str, &str)] = &[
    (sandbox::XenRelease::V4_14, "qemu64", "qemu64"),
    (sandbox::XenRelease::V4_17, "qemu64", "qemu64"),
    (sandbox::XenRelease::V4_20, "qemu64", "qemu64"),
    (sandbox::XenRelease::V4_20, "Skylake-Server,-smap,-smep", "skylake"),
    (sandbox::XenRelease::V4_20, "Nehalem", "nehalem"),
    (sandbox::XenRelease::V4_20, "EPYC,-monitor,-smap,-smep", "epyc"),
];

/// The text between two marker lines.
fn between<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    Some(&text[start..stop])
}

/// Pools of the booted hosts, levelled and checked with the `cpupolicy` CLI on their bundles.
fn real_xen_pools(cpupolicy: &Path, dir: &Path) -> Result<(), String> {
    let bundle = |name: &str| dir.join(format!("xen-{name}.json")).display().to_string();
    let run = |args: &[String]| -> Result<(i32, String, String), String> {
        let out = Command::new(cpupolicy).args(args).output().map_err(|e| format!("{}: {e}", cpupolicy.display()))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool, detail: &str| {
        println!("    {} pool: {what}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            problems.push(format!("pool: {what}\n{detail}"));
        }
    };
    // Under TCG the Intel models have neither VMX nor (in Debian's 4.20) shadow paging: no HVM there.
    let pools: [(&str, Vec<String>, &[&str]); 2] = [
        ("intel", vec![bundle("4.20-skylake"), bundle("4.20-nehalem")], &["pv"]),
        ("amd", vec![bundle("4.14-qemu64"), bundle("4.17-qemu64"), bundle("4.20-qemu64")], &["pv", "hvm-shadow"]),
    ];
    for (vendor, hosts, kinds) in &pools {
        for &kind in kinds.iter() {
            let mut args = strings(&["level", "--kind", kind, "--format", "json"]);
            args.extend(hosts.iter().cloned());
            let (status, stdout, stderr) = run(&args)?;
            expect(&format!("{vendor} {kind}: level exits 0"), status == 0, &stderr);
            if status != 0 {
                continue;
            }
            let levelled = dir.join(format!("pool-{vendor}-{kind}.json"));
            let value: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| format!("level output: {e}"))?;
            let policy = value["default"]["policy"].to_string();
            std::fs::write(&levelled, policy).map_err(|e| format!("{}: {e}", levelled.display()))?;
            for host in hosts {
                let (status, stdout, _) =
                    run(&strings(&["check", "--kind", kind, "--vm", &levelled.display().to_string(), "--host", host]))?;
                expect(&format!("{vendor} {kind}: pool default fits {host}"), status == 0, &stdout);
            }
        }
    }
    // The prediction of each boot's policies from its raw policy, for the release it booted, is exact.
    for host in ["4.14-qemu64", "4.17-qemu64", "4.20-qemu64", "4.20-skylake", "4.20-nehalem", "4.20-epyc"] {
        let (status, stdout, _) = run(&strings(&["derive", "--compare", &bundle(host)]))?;
        expect(&format!("derive predicts every policy of xen-{host} exactly"), status == 0, &stdout);
    }
    // The newer Intel model's default does not fit the older one, and the check names what is missing.
    let (status, stdout, _) =
        run(&strings(&["check", "--kind", "pv", "--vm", &bundle("4.20-skylake"), "--host", &bundle("4.20-nehalem")]))?;
    expect(
        "a Skylake-Server VM is refused by the Nehalem host, by feature name",
        status == 1 && stdout.contains("mismatch: feature "),
        &stdout,
    );
    let (status, stdout, _) =
        run(&strings(&["level", "--kind", "pv", "--explain", &bundle("4.20-skylake"), &bundle("4.20-nehalem")]))?;
    expect(
        "--explain names the Nehalem host as the culprit",
        status == 0 && stdout.contains("lacked by xen-4.20-nehalem"),
        &stdout,
    );
    // What leaks to PV guests on each Intel host, by name (or that nothing does, and why).
    let (status, stdout, stderr) =
        run(&strings(&["level", "--kind", "pv", &bundle("4.20-skylake"), &bundle("4.20-nehalem")]))?;
    let leak_lines: Vec<&str> =
        stdout.lines().filter(|l| l.contains("leaks to PV guests") || l.contains("nothing leaks")).collect();
    for line in &leak_lines {
        println!("        {line}");
    }
    expect(
        "leak-through judged for both PV hosts from their levelling caps",
        status == 0 && leak_lines.len() == 2,
        &stderr,
    );
    let (status, _, stderr) =
        run(&strings(&["level", "--kind", "hvm", &bundle("4.20-skylake"), &bundle("4.20-nehalem")]))?;
    expect(
        "an HVM pool of hosts without HVM is refused, saying so",
        status == 2 && stderr.contains("no hvm_default policy"),
        &stderr,
    );
    // Planning on this run's bundles: a VM booted on the Skylake host is shut out of the Nehalem
    // when it joins (exit 1, naming the features `check` names); removing the Nehalem again and
    // replacing the Skylake host by its own bundle strand nothing (exit 0).
    let (sky, neh) = (bundle("4.20-skylake"), bundle("4.20-nehalem"));
    let vm = format!("vm1={sky}@xen-4.20-skylake");
    let (status, stdout, stderr) =
        run(&strings(&["plan", "--kind", "pv", "--host", &sky, "--vm", &vm, "--add", &neh, "--format", "json"]))?;
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let stranding = &value["vms"][0]["strandings"][0];
    let (_, check_out, _) =
        run(&strings(&["check", "--kind", "pv", "--vm", &sky, "--host", &neh, "--format", "json"]))?;
    let check_value: serde_json::Value = serde_json::from_str(&check_out).unwrap_or_default();
    let named: Vec<&serde_json::Value> = check_value["mismatches"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m.get("feature")).collect())
        .unwrap_or_default();
    let planned: Vec<&serde_json::Value> =
        stranding["features"].as_array().map(|f| f.iter().collect()).unwrap_or_default();
    expect(
        "plan: the Nehalem joining strands the Skylake VM, naming what check names",
        status == 1 && stranding["kind"] == "shut-out" && !named.is_empty() && named == planned,
        &format!("{stdout}{stderr}"),
    );
    // Both hosts in the pool, the VM on the Skylake, and one change.
    let plan_both = |change: &[&str]| {
        let pool = ["plan", "--kind", "pv", "--host", &sky, "--host", &neh, "--vm", &vm];
        run(&strings(&[&pool[..], change].concat()))
    };
    let (status, stdout, stderr) = plan_both(&["--remove", "xen-4.20-nehalem"])?;
    expect(
        "plan: removing the Nehalem strands nothing",
        status == 0 && stdout.contains("stranded: none"),
        &format!("{stdout}{stderr}"),
    );
    let (status, stdout, stderr) = plan_both(&["--replace", &format!("xen-4.20-skylake={sky}")])?;
    expect(
        "plan: replacing a host by its own bundle changes nothing",
        status == 0 && stdout.contains("stranded: none") && stdout.contains("VMs: no VM's reach changes"),
        &format!("{stdout}{stderr}"),
    );
    let (status, _, stderr) =
        run(&strings(&["level", "--kind", "pv", &bundle("4.20-skylake"), &bundle("4.20-qemu64")]))?;
    expect(
        "a pool of Intel and AMD hosts is refused, naming both",
        status == 2 && stderr.contains("xen-4.20-skylake") && stderr.contains("xen-4.20-qemu64"),
        &stderr,
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The real-Xen layer: on Xen 4.14, 4.17 and 4.20 (qemu64, AMD) and 4.20 on two Intel models, the
/// hypercall self-test and `cpupolicy` compared with `xen-cpuid` from the same boot; then pools of
/// the booted hosts levelled and checked.
fn real_xen(root: &Path) -> Result<(), String> {
    cargo(root, &["build", "--release", "-p", "cpupolicy-hypercall", "--example", "xen-selftest"])?;
    cargo(root, &["build", "--release", "--bin", "cpupolicy"])?;
    let [xen_fetch_static, xen_fetch_shared] = capi::build_xen_fetch(root)?;
    let release_dir = target_dir(root).join("release");
    let bundles_dir = target_dir(root).join("real-xen");
    std::fs::create_dir_all(&bundles_dir).map_err(|e| format!("{}: {e}", bundles_dir.display()))?;
    let mut failures = Vec::new();
    let mut bundles = Vec::new();
    for &(release, cpu, short) in REAL_XEN_BOOTS {
        let mut boot = sandbox::Boot::new(sandbox::Hypervisor::Xen(release), REAL_XEN_SCRIPT);
        boot.cpu_model = cpu.into();
        boot.files.push((release_dir.join("examples/xen-selftest"), "/usr/bin/xen-selftest".into()));
        boot.files.push((release_dir.join("cpupolicy"), "/usr/bin/cpupolicy".into()));
        boot.files.push((xen_fetch_static.clone(), "/usr/bin/xen_fetch".into()));
        boot.files.push((xen_fetch_shared.clone(), "/usr/bin/xen_fetch-shared".into()));
        boot.xl_toolstack = true;
        let dumps = root.join("../shared/cpu-dumps/libvirt");
        for (vendor, dump) in
            [("amd", "x86_64-cpuid-EPYC-7601-32-Core.xml"), ("intel", "x86_64-cpuid-Xeon-E5-2650-v4.xml")]
        {
            if dumps.join(dump).is_file() {
                boot.files.push((dumps.join(dump), format!("/partner-{vendor}.xml")));
            }
        }
        let out = sandbox::boot(root, &boot)?;
        let failed: Vec<&str> = out.output.lines().filter(|l| l.starts_with("FAIL")).collect();
        let passed = out.output.lines().filter(|l| l.starts_with("PASS")).count();
        println!("real {release} ({cpu}): {passed} passed, {} failed, exit {}", failed.len(), out.exit_status);
        for line in out.output.lines().filter(|l| {
            ["PASS cpupolicy", "PASS host", "PASS C ", "NOTE no", "PASS xl", "    NOTE"]
                .iter()
                .any(|prefix| l.starts_with(prefix))
        }) {
            println!("    {line}");
        }
        let xl_expected = root.join("../shared/cpu-dumps/libvirt").is_dir();
        let xl_ran = out.output.contains("PASS xl create: ") && out.output.contains("PASS cpupolicy domain set: ");
        if out.exit_status != 0 || !failed.is_empty() || passed < 49 || (xl_expected && !xl_ran) {
            failures.push(format!("{release} ({cpu}): exit {}\n{}", out.exit_status, out.output));
        }
        match between(&out.output, "BEGIN-HOST-BUNDLE\n", "END-HOST-BUNDLE\n") {
            Some(bundle) => {
                let path = bundles_dir.join(format!("xen-{}-{short}.json", release.version()));
                std::fs::write(&path, bundle).map_err(|e| format!("{}: {e}", path.display()))?;
                bundles.push(path);
            }
            None => failures.push(format!("{release} ({cpu}): no host bundle in the output")),
        }
    }
    if failures.is_empty() {
        if let Err(error) = real_xen_pools(&release_dir.join("cpupolicy"), &bundles_dir) {
            failures.push(error);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}
