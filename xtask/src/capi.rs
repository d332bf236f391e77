//! The C ABI's build products: the cbindgen header, the install layout (library, header,
//! pkg-config file), and the C programs that exercise it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the checked-in header lives.
pub fn header_path(root: &Path) -> PathBuf {
    root.join("include/cpupolicy.h")
}

/// Generates the header text from `crates/capi` with cbindgen.
pub fn generate_header(root: &Path) -> Result<String, String> {
    let crate_dir = root.join("crates/capi");
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).map_err(|e| format!("cbindgen.toml: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| format!("cbindgen output: {e}"))
}

/// `cargo xtask header`: regenerates `include/cpupolicy.h`.
pub fn write_header(root: &Path) -> Result<(), String> {
    let text = generate_header(root)?;
    std::fs::write(header_path(root), text).map_err(|e| format!("write header: {e}"))?;
    println!("wrote {}", header_path(root).display());
    Ok(())
}

/// Fails when the checked-in header differs from a fresh generation.
pub fn check_header(root: &Path) -> Result<(), String> {
    let fresh = generate_header(root)?;
    let checked_in = std::fs::read_to_string(header_path(root)).unwrap_or_default();
    if fresh != checked_in {
        return Err("include/cpupolicy.h is stale: run `cargo xtask header` and commit it".into());
    }
    println!("include/cpupolicy.h is up to date");
    Ok(())
}

/// The library version (from the capi crate's manifest, through cargo's metadata env).
fn version(root: &Path) -> Result<String, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let in_workspace_package = manifest.split("[workspace.package]").nth(1).ok_or("no [workspace.package]")?;
    in_workspace_package
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = ").map(|v| v.trim_matches('"').to_string()))
        .ok_or_else(|| "no version in [workspace.package]".into())
}

/// The shared library's soname, as `crates/capi/build.rs` sets it: `libcpupolicy.so.0.MINOR`
/// before 1.0, `libcpupolicy.so.MAJOR` after.
fn soname(root: &Path) -> String {
    let version = version(root).unwrap_or_default();
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    if major == "0" {
        format!("libcpupolicy.so.0.{minor}")
    } else {
        format!("libcpupolicy.so.{major}")
    }
}

/// `cargo xtask install --prefix P`: builds the release libraries and installs
/// `P/lib/libcpupolicy.so.X.Y.Z` (+ soname and dev symlinks), `P/lib/libcpupolicy.a`,
/// `P/include/cpupolicy.h` and `P/lib/pkgconfig/cpupolicy.pc`, and the xapi drop-in
/// `P/lib/libcpupolicy-xc.so.X.Y.Z` (+ symlinks) with `P/lib/pkgconfig/cpupolicy-xc.pc`.
pub fn install(root: &Path, prefix: &Path) -> Result<(), String> {
    crate::cargo(root, &["build", "--release", "-p", "cpupolicy-capi", "-p", "cpupolicy-xc"])?;
    let version = version(root)?;
    let soname = soname(root);
    let release = crate::target_dir(root).join("release");
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for dir in [&lib, &include, &pkgconfig] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let real = format!("libcpupolicy.so.{version}");
    copy(&release.join("libcpupolicy.so"), &lib.join(&real))?;
    copy(&release.join("libcpupolicy.a"), &lib.join("libcpupolicy.a"))?;
    copy(&header_path(root), &include.join("cpupolicy.h"))?;
    for link in [soname.as_str(), "libcpupolicy.so"] {
        let path = lib.join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(&real, &path).map_err(|e| format!("symlink {}: {e}", path.display()))?;
    }
    let pc = format!(
        "prefix={prefix}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\n\
         Name: cpupolicy\nDescription: x86 CPU policy for Xen toolstacks\nVersion: {version}\n\
         Libs: -L${{libdir}} -lcpupolicy\nLibs.private: -lpthread -ldl -lm\nCflags: -I${{includedir}}\n",
        prefix = prefix.display()
    );
    std::fs::write(pkgconfig.join("cpupolicy.pc"), pc).map_err(|e| format!("write cpupolicy.pc: {e}"))?;
    // The xapi drop-in: xapi's stubs only reference its two symbols weakly, so `--as-needed`
    // would drop it; the .pc file keeps it.
    let xc_real = format!("libcpupolicy-xc.so.{version}");
    copy(&release.join("libcpupolicy_xc.so"), &lib.join(&xc_real))?;
    for link in [soname.replace("libcpupolicy", "libcpupolicy-xc"), "libcpupolicy-xc.so".to_string()] {
        let path = lib.join(&link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(&xc_real, &path).map_err(|e| format!("symlink {}: {e}", path.display()))?;
    }
    let xc_pc = format!(
        "prefix={prefix}\nlibdir=${{prefix}}/lib\n\n\
         Name: cpupolicy-xc\nDescription: xc_combine_cpu_featuresets and xc_cpu_featuresets_are_compatible for xapi on upstream Xen\n\
         Version: {version}\nLibs: -L${{libdir}} -Wl,--push-state,--no-as-needed -lcpupolicy-xc -Wl,--pop-state\n",
        prefix = prefix.display()
    );
    std::fs::write(pkgconfig.join("cpupolicy-xc.pc"), xc_pc).map_err(|e| format!("write cpupolicy-xc.pc: {e}"))?;
    println!("installed libcpupolicy {version} into {}", prefix.display());
    Ok(())
}

/// Checks one run's exit status and output against what was expected of it.
fn judge(what: &str, expected: &CRun, out: &std::process::Output) -> Result<(), String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = || format!("{what} (args {:?}):\n--- stdout\n{stdout}--- stderr\n{stderr}", expected.args);
    if out.status.code() != Some(expected.status) {
        return Err(format!("{} exited {}, expected {}", shown(), out.status, expected.status));
    }
    if let Some(line) = expected.lines.iter().find(|line| !stdout.lines().any(|l| l == line.as_str())) {
        return Err(format!("{}\nexpected the line {line:?} in the standard output", shown()));
    }
    if let Some(text) = expected.stdout_contains.iter().find(|t| !stdout.contains(t.as_str())) {
        return Err(format!("{}\nexpected {text:?} in the standard output", shown()));
    }
    if let Some(text) = expected.stderr_contains.iter().find(|t| !stderr.contains(t.as_str())) {
        return Err(format!("{}\nexpected {text:?} in the standard error", shown()));
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map(drop).map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

/// One C program to build (shared and static) and the runs that judge it.
struct CProgram {
    source: &'static str,
    /// Its runs and their expected results, computed when the step runs (from real data: the
    /// reference files beside the workspace, and what the `cpupolicy` command line says of them).
    runs: fn(&Context) -> Result<Vec<CRun>, String>,
}

/// One run of a C program and how to judge it.
#[derive(Default)]
struct CRun {
    args: Vec<String>,
    /// The exit status it must end with.
    status: i32,
    /// Lines that must each appear, whole, in its standard output.
    lines: Vec<String>,
    /// Text that must appear somewhere in its standard output.
    stdout_contains: Vec<String>,
    /// Text that must appear somewhere in its standard error.
    stderr_contains: Vec<String>,
}

/// What the runs are computed from.
struct Context {
    /// `../shared/xen-reference` beside the workspace, when present.
    reference: Option<PathBuf>,
    /// The release `cpupolicy` command line, whose output the C programs must agree with.
    cli: PathBuf,
}

impl Context {
    /// A reference file's path, or `None` (with a SKIP note) without `../shared`.
    fn reference(&self, name: &str) -> Option<String> {
        let dir = self.reference.as_ref()?;
        Some(dir.join(name).display().to_string())
    }

    /// Runs the command line: exit status, standard output, standard error.
    fn cli(&self, args: &[String]) -> Result<(i32, String, String), String> {
        let out = Command::new(&self.cli).args(args).output().map_err(|e| format!("{}: {e}", self.cli.display()))?;
        let code = out.status.code().unwrap_or(-1);
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        if code == 2 || code < 0 {
            return Err(format!("cpupolicy {} failed ({code}):\n{stderr}", args.join(" ")));
        }
        Ok((code, stdout, stderr))
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The three recorded `xen-cpuid -p` outputs of Xen 4.14, 4.17 and 4.20 (AMD, qemu64).
fn xen_references(ctx: &Context) -> Option<[String; 3]> {
    Some([
        ctx.reference("xen-4.14-qemu64.policy.txt")?,
        ctx.reference("xen-4.17-qemu64.policy.txt")?,
        ctx.reference("xen-4.20-qemu64.policy.txt")?,
    ])
}

const C_PROGRAMS: &[CProgram] = &[
    CProgram {
        source: "tests/c/errors.c",
        runs: |_| Ok(vec![CRun { lines: strings(&["errors: all checks passed"]), ..CRun::default() }]),
    },
    CProgram {
        source: "tests/c/policy_errors.c",
        runs: |_| Ok(vec![CRun { lines: strings(&["policy_errors: all checks passed"]), ..CRun::default() }]),
    },
    CProgram { source: "tests/c/policy_serialise.c", runs: policy_serialise_runs },
    CProgram {
        source: "examples/featureset.c",
        runs: |_| {
            Ok(vec![CRun {
                args: strings(&["178bfbfd:80002001:2193fbfd:00000007", "sse3"]),
                lines: strings(&["sse3: present", "  [01] CPUID 0x00000001.ecx     sse3 cx16 hypervisor"]),
                ..CRun::default()
            }])
        },
    },
    CProgram { source: "examples/pool_level.c", runs: pool_level_runs },
    CProgram { source: "examples/pool_config.c", runs: pool_config_runs },
    CProgram { source: "examples/migration_check.c", runs: migration_check_runs },
    CProgram { source: "examples/fleet_plan.c", runs: fleet_plan_runs },
    CProgram { source: "examples/topology.c", runs: topology_runs },
    CProgram { source: "examples/xen_fetch.c", runs: xen_fetch_runs },
];

/// `cpupolicy_policy_serialise` on real policies: every system policy of the recorded Xen boots
/// and some real CPU dumps. The program checks itself against `cpupolicy_policy_to_xen_leaves`/
/// `_msrs` in every layout (and short buffers against canaries); the counts it prints for the
/// newest layout must be the ones real Xen's `xen-cpuid -p` printed (every recorded Xen has that
/// layout, as the files' first line says), and for a dump the ones `cpupolicy import --format
/// xen-cpuid` prints.
fn policy_serialise_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let Some(reference) = &ctx.reference else { return Ok(Vec::new()) };
    let (mut args, mut lines) = (Vec::new(), Vec::new());
    let mut recorded: Vec<PathBuf> = std::fs::read_dir(reference)
        .map_err(|e| format!("{}: {e}", reference.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.to_string_lossy().ends_with(".policy.txt"))
        .collect();
    recorded.sort();
    for path in recorded {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let path_text = path.display().to_string();
        // The counts the program prints are the newest layout's: compared where Xen had it.
        if text.starts_with("Xen reports there are maximum 120 leaves and 2 MSRs\n") {
            let counts = text.lines().filter(|l| l.contains(" policy: ") && l.ends_with(" MSRs"));
            lines.extend(counts.map(|l| format!("{path_text}: {l}")));
        }
        args.push(path_text);
    }
    let dumps = reference.join("../cpu-dumps/libvirt");
    match std::fs::read_to_string(dumps.join("INDEX.tsv")) {
        Ok(index) => {
            // A spread of them, both vendors, old and new.
            for file in index.lines().skip(1).step_by(9).filter_map(|l| l.split('\t').next()) {
                let path = dumps.join(file).display().to_string();
                let (_, printed, _) =
                    ctx.cli(&strings(&["import", "--format", "xen-cpuid", "--label", "domain:0", &path]))?;
                let counts = printed
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("Domain 0 policy: "))
                    .ok_or_else(|| format!("`cpupolicy import` of {path} printed no policy line:\n{printed}"))?;
                lines.push(format!("{path}: {counts}"));
                args.push(path);
            }
        }
        Err(_) => println!("SKIP: {} is absent; policy_serialise runs on the recorded boots only", dumps.display()),
    }
    lines.push("policy_serialise: all checks passed".into());
    Ok(vec![CRun { args, lines, ..CRun::default() }])
}

/// The pool of the three reference hosts, per guest kind: the default featureset must be what
/// `cpupolicy level --format featureset` prints, the acceptance featureset and every line of
/// the explanation what `cpupolicy level --explain` prints.
fn pool_level_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let Some(hosts) = xen_references(ctx) else { return Ok(Vec::new()) };
    let mut runs = Vec::new();
    for kind in ["pv", "hvm", "hvm-shadow"] {
        let mut args = strings(&["--kind", kind]);
        args.extend(hosts.iter().cloned());
        let level = |extra: &[&str]| {
            let mut cli = strings(&["level", "--kind", kind]);
            cli.extend(strings(extra));
            cli.extend(hosts.iter().cloned());
            ctx.cli(&cli)
        };
        let (_, featureset, explanation) = level(&["--explain", "--format", "featureset"])?;
        let (_, text, _) = level(&["--format", "text"])?;
        let acceptance = text
            .lines()
            .find_map(|l| l.strip_prefix("acceptance: "))
            .ok_or_else(|| format!("no acceptance line in `cpupolicy level` output:\n{text}"))?;
        let mut lines = vec![
            format!("pool of 3 hosts, {kind} guests"),
            format!("default featureset: {}", featureset.trim()),
            format!("acceptance featureset: {}", acceptance.trim()),
        ];
        lines.extend(explanation.lines().map(String::from));
        runs.push(CRun { args, lines, ..CRun::default() });
    }
    Ok(runs)
}

/// The xl line, the libvirt element and, per host, the policy the xl line gives there must be
/// what `cpupolicy level --format xl|libvirt-domain` and `cpupolicy xl apply` print for the
/// pool of the three reference hosts (HVM), for the libxl of 4.17 and of 4.22.
fn pool_config_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let Some(hosts) = xen_references(ctx) else { return Ok(Vec::new()) };
    let mut runs = Vec::new();
    for xen in ["4.17", "4.22"] {
        let level = |format: &str| {
            let mut args = strings(&["level", "--kind", "hvm", "--format", format, "--xen", xen]);
            args.extend(hosts.iter().cloned());
            ctx.cli(&args)
        };
        let (_, xl, _) = level("xl")?;
        let (_, libvirt, _) = level("libvirt-domain")?;
        let mut lines: Vec<String> = xl.lines().chain(libvirt.lines()).map(String::from).collect();
        let cfg = std::env::temp_dir().join(format!("cpupolicy-pool-config-{xen}.cfg"));
        std::fs::write(&cfg, &xl).map_err(|e| e.to_string())?;
        for (i, host) in hosts.iter().enumerate() {
            let (_, applied, _) =
                ctx.cli(&strings(&["xl", "apply", "--host", host, "--xen", xen, &cfg.display().to_string()]))?;
            lines.push(format!("applied on host {}:", i + 1));
            lines.extend(applied.lines().map(String::from));
        }
        let mut args = vec![xen.to_string()];
        args.extend(hosts.iter().cloned());
        runs.push(CRun { args, lines, ..CRun::default() });
    }
    Ok(runs)
}

/// The placement of one VM per reference host (booted there with the HVM default) and the plan
/// of adding another: every line and the exit status must be what `cpupolicy placement` and
/// `cpupolicy plan --add` print. Both ways round: a join that strands a VM and one that does not.
fn fleet_plan_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let Some([v4_14, v4_17, v4_20]) = xen_references(ctx) else { return Ok(Vec::new()) };
    let stem = |path: &String| {
        Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.clone())
    };
    let mut runs = Vec::new();
    for (joining, pool) in [(&v4_20, [&v4_14, &v4_17]), (&v4_14, [&v4_17, &v4_20])] {
        let mut placement = strings(&["placement", "--kind", "hvm"]);
        let mut plan = strings(&["plan", "--kind", "hvm", "--add", joining]);
        for (i, host) in pool.iter().enumerate() {
            let vm = format!("vm{}={host}@{}", i + 1, stem(host));
            for args in [&mut placement, &mut plan] {
                args.extend(["--host".to_string(), host.to_string(), "--vm".to_string(), vm.clone()]);
            }
        }
        let (_, placed, _) = ctx.cli(&placement)?;
        let (status, planned, _) = ctx.cli(&plan)?;
        let mut args = vec![joining.to_string()];
        args.extend(pool.iter().map(|h| h.to_string()));
        let lines = placed.lines().chain(planned.lines()).map(String::from).collect();
        runs.push(CRun { args, status, lines, ..CRun::default() });
    }
    if runs.iter().all(|r| r.status == runs[0].status) {
        return Err("the fleet cases no longer cover a join that strands and one that does not".into());
    }
    Ok(runs)
}

/// VMs booted on one reference host checked against another: the verdict, every mismatch and
/// warning line and the exit status must be what `cpupolicy check` says, and the features it
/// names must be listed by name.
fn migration_check_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let Some([v4_14, v4_17, v4_20]) = xen_references(ctx) else { return Ok(Vec::new()) };
    let cases = [("hvm", &v4_14, &v4_17), ("hvm", &v4_17, &v4_20), ("pv", &v4_20, &v4_14), ("hvm", &v4_20, &v4_14)];
    let mut runs = Vec::new();
    for (kind, vm, host) in cases {
        let (status, stdout, _) = ctx.cli(&strings(&["check", "--kind", kind, "--vm", vm, "--host", host]))?;
        let mut lines: Vec<String> = stdout.lines().map(String::from).collect();
        let missing: Vec<&str> =
            stdout.lines().filter_map(|l| l.strip_prefix("  mismatch: feature ")?.split(':').next()).collect();
        if !missing.is_empty() {
            lines.push(format!("missing features: {}", missing.join(" ")));
        }
        runs.push(CRun {
            args: strings(&["--kind", kind, vm, host]),
            status,
            lines,
            stderr_contains: strings(&["holds a host's policies"]),
            ..CRun::default()
        });
    }
    if runs.iter().all(|r| r.status == 0) || runs.iter().all(|r| r.status != 0) {
        return Err("the migration cases no longer cover both verdicts: pick other reference pairs".into());
    }
    Ok(runs)
}

/// Shapes' tables (APIC IDs, per-vCPU leaves) as `cpupolicy topology --leaves` prints them, the
/// APIC IDs as its JSON lists them, and vCPU 0's leaf 0xb written into a reference host's HVM
/// default policy.
fn topology_runs(ctx: &Context) -> Result<Vec<CRun>, String> {
    let mut runs = Vec::new();
    let host = ctx.reference("xen-4.20-qemu64.policy.txt");
    let shapes: [(&str, &str, &str, &str, Option<&String>); 2] =
        [("intel", "2", "3", "2", None), ("amd", "1", "4", "2", host.as_ref())];
    for (vendor, packages, cores, threads, host) in shapes {
        let shape = strings(&["--vendor", vendor, "--packages", packages, "--cores", cores, "--threads", threads]);
        let (_, table, _) = ctx.cli(&[strings(&["topology", "--leaves"]), shape.clone()].concat())?;
        let (_, json, _) = ctx.cli(&[strings(&["topology", "--format", "json"]), shape].concat())?;
        let json: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("topology JSON: {e}"))?;
        let ids: Vec<String> = json["vcpus"]
            .as_array()
            .ok_or("topology JSON without vcpus")?
            .iter()
            .map(|v| v["apic_id"].to_string())
            .collect();
        let mut lines: Vec<String> = table.lines().map(String::from).collect();
        lines.push(format!("apic ids: {}", ids.join(" ")));
        // The record's size is its documented layout: a 40-byte header and 8 bytes per vCPU.
        lines.push(format!("migration record: {} bytes, read back with the same APIC IDs", 40 + 8 * ids.len()));
        let mut args = strings(&[vendor, packages, cores, threads]);
        if let Some(host) = host {
            args.extend([host.clone(), "4.20".into()]);
            // vCPU 0's leaf 0xb levels (all their fields are the topology's), as the policy holds
            // them; the terminating level (type 0 in ECX[15:8]) is not written to a policy.
            let vcpu0 = table.lines().skip(2).take_while(|l| l.starts_with("        "));
            let is_level = |registers: &str| {
                let ecx = registers.split(':').nth(2).and_then(|e| u32::from_str_radix(e, 16).ok());
                ecx.is_some_and(|ecx| (ecx >> 8) & 0xff != 0)
            };
            lines.extend(
                vcpu0
                    .filter_map(|l| l.strip_prefix("        0000000b:"))
                    .filter(|l| l.split(" -> ").nth(1).is_some_and(is_level))
                    .map(|l| format!("  0000000b:{l}")),
            );
        }
        runs.push(CRun { args, lines, ..CRun::default() });
    }
    Ok(runs)
}

/// Outside Xen: a clean failure with the "no privcmd" status and message. In a Xen dom0: the
/// host's policies in `xen-cpuid -p` form (the real-Xen harness compares them with `xen-cpuid`).
fn xen_fetch_runs(_: &Context) -> Result<Vec<CRun>, String> {
    let in_xen = ["/dev/xen/privcmd", "/proc/xen/privcmd"].iter().any(|p| Path::new(p).exists());
    Ok(vec![if in_xen {
        CRun { stdout_contains: strings(&["Host policy: "]), ..CRun::default() }
    } else {
        CRun {
            status: 2,
            stderr_contains: strings(&[
                "xen_fetch: cpupolicy_xen_open: status 10 (no Xen privcmd device",
                "tried /dev/xen/privcmd, /proc/xen/privcmd",
            ]),
            ..CRun::default()
        }
    }])
}

/// The scratch install prefix the C programs are built against.
fn c_prefix(root: &Path) -> PathBuf {
    crate::target_dir(root).join("c-install")
}

/// How the C programs are compiled against an install prefix (its pkg-config file).
struct CFlags {
    cflags: Vec<String>,
    shared: Vec<String>,
    /// What the static archive needs besides itself (the `.pc` file's `Libs.private`).
    private: Vec<String>,
}

/// The flags `pkg-config ARGS PACKAGE` gives for a package installed under `prefix`.
fn pkg_config(prefix: &Path, package: &str, args: &[&str]) -> Result<Vec<String>, String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg(package)
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .map_err(|e| format!("pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(format!("pkg-config {args:?} {package} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect())
}

impl CFlags {
    fn new(prefix: &Path) -> Result<CFlags, String> {
        let pkg_config = |args: &[&str]| pkg_config(prefix, "cpupolicy", args);
        Ok(CFlags {
            cflags: pkg_config(&["--cflags"])?,
            shared: pkg_config(&["--libs"])?,
            private: pkg_config(&["--static", "--libs"])?
                .into_iter()
                .filter(|flag| !flag.starts_with("-L") && flag != "-lcpupolicy")
                .collect(),
        })
    }

    /// Compiles `source` into `exe` with the system compiler, linked `shared` (with an rpath to
    /// the prefix), `static`, or `asan` (shared, with AddressSanitizer).
    fn compile(&self, prefix: &Path, source: &Path, exe: &Path, linkage: &str) -> Result<(), String> {
        let mut cc = Command::new("cc");
        cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-o"]).arg(exe).arg(source).args(&self.cflags);
        if linkage == "asan" {
            cc.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
        }
        if linkage == "static" {
            cc.arg(prefix.join("lib/libcpupolicy.a")).args(&self.private);
        } else {
            cc.args(&self.shared).arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
        }
        crate::run_command(&mut cc)
    }
}

/// Installs the library into the scratch prefix and builds `examples/xen_fetch.c` against it
/// for the real-Xen boots: the static executable and the shared one (the sandbox's initramfs
/// follows its run path to the installed library). Their paths, in that order.
pub fn build_xen_fetch(root: &Path) -> Result<[PathBuf; 2], String> {
    let prefix = c_prefix(root);
    install(root, &prefix)?;
    let flags = CFlags::new(&prefix)?;
    let build = crate::target_dir(root).join("c-tests");
    std::fs::create_dir_all(&build).map_err(|e| e.to_string())?;
    let source = root.join("examples/xen_fetch.c");
    let exes = [build.join("xen_fetch-static"), build.join("xen_fetch-shared")];
    flags.compile(&prefix, &source, &exes[0], "static")?;
    flags.compile(&prefix, &source, &exes[1], "shared")?;
    Ok(exes)
}

/// Installs into a scratch prefix, builds each C program against the installed header with the
/// system compiler, shared and static, runs each (also under valgrind) and checks its output.
pub fn c_tests(root: &Path) -> Result<(), String> {
    let prefix = c_prefix(root);
    let _ = std::fs::remove_dir_all(&prefix);
    install(root, &prefix)?;
    let build = crate::target_dir(root).join("c-tests");
    std::fs::create_dir_all(&build).map_err(|e| e.to_string())?;
    let flags = CFlags::new(&prefix)?;
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    crate::cargo(root, &["build", "--release", "--bin", "cpupolicy"])?;
    let reference = root.join("..").join("shared").join("xen-reference");
    let ctx = Context {
        reference: reference.is_dir().then_some(reference.clone()),
        cli: crate::target_dir(root).join("release/cpupolicy"),
    };
    if ctx.reference.is_none() {
        println!("SKIP: {} is absent; the C examples that read reference files are only built", reference.display());
    }
    xapi_dropin(root, &prefix, &flags, &ctx, valgrind)?;
    every_function(root, &prefix, &flags, valgrind)?;
    xl_oracle(root, &ctx)?;
    for program in C_PROGRAMS {
        let source = root.join(program.source);
        let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("prog").to_string();
        let runs = (program.runs)(&ctx).map_err(|e| format!("{stem}: {e}"))?;
        // The test programs (which call every function with bad arguments) also run with
        // AddressSanitizer; the examples are checked plain and under valgrind.
        let asan = program.source.starts_with("tests/");
        for linkage in ["shared", "static", "asan"].into_iter().filter(|l| *l != "asan" || asan) {
            let exe = build.join(format!("{stem}-{linkage}"));
            flags.compile(&prefix, &source, &exe, linkage)?;
            for (i, expected) in runs.iter().enumerate() {
                let mut commands = vec![Command::new(&exe)];
                if valgrind && linkage != "asan" {
                    let mut vg = Command::new("valgrind");
                    vg.args([
                        "--quiet",
                        "--error-exitcode=97",
                        "--leak-check=full",
                        "--errors-for-leak-kinds=definite",
                    ])
                    .arg(&exe);
                    commands.push(vg);
                }
                for mut run in commands {
                    run.args(&expected.args);
                    let what = format!(
                        "{stem} run {} ({linkage}{})",
                        i + 1,
                        if run.get_program() == "valgrind" { ", valgrind" } else { "" }
                    );
                    let out = run.output().map_err(|e| format!("{what}: {e}"))?;
                    judge(&what, expected, &out)?;
                    println!("C: {what} ok");
                }
            }
        }
    }
    Ok(())
}

/// The xapi drop-in (`libcpupolicy-xc`): it exports exactly xapi's two symbols; the C test that
/// declares them weak as xapi does passes linked (plain, under valgrind, with AddressSanitizer)
/// and preloaded, and sees them absent without the library; its combinations of real featuresets
/// equal `cpupolicy level --featuresets`.
fn xapi_dropin(root: &Path, prefix: &Path, flags: &CFlags, ctx: &Context, valgrind: bool) -> Result<(), String> {
    let lib = prefix.join("lib/libcpupolicy-xc.so");
    let nm = Command::new("nm").args(["-D", "--defined-only", "--extern-only"]).arg(&lib).output();
    let nm = nm.map_err(|e| format!("nm: {e}"))?;
    let mut exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(String::from))
        .collect();
    exported.sort();
    if exported != ["xc_combine_cpu_featuresets", "xc_cpu_featuresets_are_compatible"] {
        return Err(format!("{} exports {exported:?}, not exactly xapi's two symbols", lib.display()));
    }
    println!("C: {} exports exactly {}", lib.display(), exported.join(", "));

    let build = crate::target_dir(root).join("c-tests");
    let source = root.join("tests/c/xapi_featuresets.c");
    let xc_libs = pkg_config(prefix, "cpupolicy-xc", &["--libs"])?;
    let compile = |exe: &Path, extra: &[String]| -> Result<(), String> {
        let mut cc = Command::new("cc");
        cc.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-g", "-o"])
            .arg(exe)
            .arg(&source)
            .args(&flags.cflags)
            .args(extra)
            .args(&flags.shared)
            .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
        crate::run_command(&mut cc)
    };
    let linked = build.join("xapi_featuresets-linked");
    let unlinked = build.join("xapi_featuresets-unlinked");
    let asan = build.join("xapi_featuresets-asan");
    compile(&linked, &xc_libs)?;
    compile(&unlinked, &[])?;
    compile(
        &asan,
        &[&["-fsanitize=address".to_string(), "-fno-omit-frame-pointer".to_string()][..], &xc_libs].concat(),
    )?;

    let dumps = dump_featuresets(root, ctx)?;
    let mut args: Vec<String> = Vec::new();
    if let Some(file) = &dumps {
        args.push(file.display().to_string());
    } else {
        println!("SKIP: ../shared/cpu-dumps is absent; the drop-in is checked on constructed featuresets only");
    }
    let passed = ["xapi_featuresets: all checks passed"];
    let mut runs: Vec<(String, Command, &[&str])> = Vec::new();
    let mut plain = Command::new(&linked);
    plain.args(&args);
    runs.push(("linked".into(), plain, &passed));
    if valgrind {
        let mut vg = Command::new("valgrind");
        vg.args(["--quiet", "--error-exitcode=97", "--leak-check=full", "--errors-for-leak-kinds=definite"])
            .arg(&linked)
            .args(&args);
        runs.push(("linked, valgrind".into(), vg, &passed));
    }
    let mut sanitized = Command::new(&asan);
    sanitized.args(&args).env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0");
    runs.push(("AddressSanitizer".into(), sanitized, &passed));
    let mut preloaded = Command::new(&unlinked);
    preloaded.args(&args).env("LD_PRELOAD", &lib);
    runs.push(("LD_PRELOAD".into(), preloaded, &passed));
    let mut absent = Command::new(&unlinked);
    absent.arg("absent");
    runs.push(("not linked".into(), absent, &["xapi_featuresets: symbols absent, as with upstream libxc"]));
    for (what, mut command, lines) in runs {
        let out = command.output().map_err(|e| format!("xapi_featuresets ({what}): {e}"))?;
        let expected = CRun { lines: strings(lines), ..CRun::default() };
        judge(&format!("xapi_featuresets ({what})"), &expected, &out)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        println!("C: xapi_featuresets ({what}) ok");
    }

    // The drop-in's combinations of real featuresets are what the command line prints.
    if let Some(file) = &dumps {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        let mut compared = 0;
        for (i, a) in rows.iter().enumerate().step_by(7) {
            for b in rows[i + 1..].iter().filter(|b| b[0] == a[0]).step_by(11) {
                let (_, cli, _) = ctx.cli(&strings(&["level", "--featuresets", a[2], b[2]]))?;
                let out = Command::new(&linked).args(["combine", a[2], b[2]]).output().map_err(|e| e.to_string())?;
                let c = String::from_utf8_lossy(&out.stdout);
                if c.trim() != cli.trim() {
                    return Err(format!("{} + {}: drop-in {} / cpupolicy level {}", a[1], b[1], c.trim(), cli.trim()));
                }
                compared += 1;
            }
        }
        println!(
            "C: the drop-in's combination equals `cpupolicy level --featuresets` on {compared} pairs of real dumps"
        );
    }
    Ok(())
}

/// `VENDOR NAME FEATURESET` per real CPU dump with HVM: the HVM default featureset Xen 4.20
/// builds there, as xapi would store it (`-`-separated), predicted by `cpupolicy level` of the
/// dump alone. `None` without `../shared/cpu-dumps`.
fn dump_featuresets(root: &Path, ctx: &Context) -> Result<Option<PathBuf>, String> {
    let dir = root.join("../shared/cpu-dumps/libvirt");
    let Ok(index) = std::fs::read_to_string(dir.join("INDEX.tsv")) else { return Ok(None) };
    let mut out = String::new();
    for line in index.lines().skip(1) {
        let mut fields = line.split('\t');
        let (Some(file), Some(vendor)) = (fields.next(), fields.next()) else { continue };
        let run = Command::new(&ctx.cli)
            .args(["level", "--kind", "hvm", "--format", "featureset"])
            .arg(dir.join(file))
            .output()
            .map_err(|e| format!("{}: {e}", ctx.cli.display()))?;
        match run.status.code() {
            Some(0) => {
                let set = String::from_utf8_lossy(&run.stdout).trim().replace(':', "-");
                out += &format!("{vendor} {file} {set}\n");
            }
            // A part without VMX or SVM has no HVM policies: nothing for xapi's HVM featureset.
            _ if String::from_utf8_lossy(&run.stderr).contains("no hvm_default") => {}
            _ => return Err(format!("cpupolicy level of {file}: {}", String::from_utf8_lossy(&run.stderr))),
        }
    }
    let path = crate::target_dir(root).join("c-tests/dump-hvm-featuresets.txt");
    std::fs::write(&path, out).map_err(|e| e.to_string())?;
    Ok(Some(path))
}

/// The generated program calling every exported function with hostile arguments
/// (`every_function.rs`): built against the installed header, shared, static and with
/// AddressSanitizer, run plain and under valgrind.
fn every_function(root: &Path, prefix: &Path, flags: &CFlags, valgrind: bool) -> Result<(), String> {
    let header = std::fs::read_to_string(prefix.join("include/cpupolicy.h")).map_err(|e| e.to_string())?;
    let functions = crate::every_function::functions(&header)?;
    let build = crate::target_dir(root).join("c-tests");
    let source = build.join("every_function.c");
    std::fs::write(&source, crate::every_function::program(&functions)).map_err(|e| e.to_string())?;
    let expected = CRun {
        stdout_contains: strings(&["calls of every exported function with hostile arguments behaved"]),
        ..CRun::default()
    };
    for linkage in ["shared", "static", "asan"] {
        let exe = build.join(format!("every_function-{linkage}"));
        flags.compile(prefix, &source, &exe, linkage)?;
        let mut runs = vec![(linkage.to_string(), Command::new(&exe))];
        if valgrind && linkage != "asan" {
            let mut vg = Command::new("valgrind");
            vg.args(["--quiet", "--error-exitcode=97", "--leak-check=full", "--errors-for-leak-kinds=definite"])
                .arg(&exe);
            runs.push((format!("{linkage}, valgrind"), vg));
        }
        for (what, mut command) in runs {
            let out = command.output().map_err(|e| format!("every_function ({what}): {e}"))?;
            judge(&format!("every_function ({what})"), &expected, &out)?;
            println!("C: every_function ({what}): {}", String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    Ok(())
}

/// libxl's own parser (Debian's libxenlight 4.17) as the oracle for `level --format xl`: for
/// pools of 2 to 5 real dumps of each vendor, the line the command line writes is parsed by
/// libxl (`tests/c/xl_oracle.c`), and the filters libxl keeps, applied to each host's default
/// featureset, give the pool default's (but for what the command said it could not express, and
/// the bits Xen sets itself). Names libxl refuses, `xl apply` refuses too.
fn xl_oracle(root: &Path, ctx: &Context) -> Result<(), String> {
    use cpupolicy_featureset::{Featureset, WordSource, WORDS};

    let build = crate::target_dir(root).join("c-tests");
    let exe = build.join("xl_oracle");
    let flags = Command::new("pkg-config").args(["--cflags", "--libs", "xenlight", "xlutil", "yajl"]).output();
    let flags = flags.map_err(|e| format!("pkg-config: {e}"))?;
    if !flags.status.success() {
        return Err(format!("pkg-config xenlight xlutil yajl: {}", String::from_utf8_lossy(&flags.stderr)));
    }
    let flags: Vec<String> = String::from_utf8_lossy(&flags.stdout).split_whitespace().map(String::from).collect();
    crate::run_command(
        Command::new("cc")
            .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-DHAVE_YAJL_YAJL_VERSION_H", "-o"])
            .arg(&exe)
            .arg(root.join("tests/c/xl_oracle.c"))
            .args(&flags),
    )?;
    let oracle = |line: &str| -> Result<std::process::Output, String> {
        let mut command = Command::new(&exe);
        if let Some(names) = line.strip_prefix("cpuid = \"").and_then(|l| l.strip_suffix('"')) {
            command.args(["names", names]);
        } else {
            command.arg("list");
            command.args(line.split('\'').skip(1).step_by(2));
        }
        command.output().map_err(|e| format!("xl_oracle: {e}"))
    };
    let dir = root.join("../shared/cpu-dumps/libvirt");
    let Ok(index) = std::fs::read_to_string(dir.join("INDEX.tsv")) else {
        println!("SKIP: ../shared/cpu-dumps is absent; the xl oracle test needs real dumps");
        return Ok(());
    };
    let rows: Vec<(String, String)> = index
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((dir.join(f.next()?).display().to_string(), f.next()?.to_string()))
        })
        .collect();
    let featureset = |args: &[String]| -> Result<Option<Featureset>, String> {
        let out = Command::new(&ctx.cli).args(args).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Ok(None); // no HVM there
        }
        Featureset::parse(String::from_utf8_lossy(&out.stdout).trim()).map(Some).map_err(|e| e.to_string())
    };
    let word_of = |leaf: u64, subleaf: Option<u64>, register: usize| {
        WORDS.iter().position(|w| {
            matches!(w.source, WordSource::Cpuid { leaf: l, subleaf: s, register: r }
                if u64::from(l) == leaf && s.map(u64::from) == subleaf && r.index() == register)
        })
    };
    let mut pools = 0;
    for vendor in ["GenuineIntel", "AuthenticAMD"] {
        let same: Vec<&String> = rows.iter().filter(|(_, v)| v == vendor).map(|(f, _)| f).collect();
        for (size, start) in [(2, 0), (3, 3), (5, 8), (2, 14), (4, 20), (2, 30), (3, 40), (5, 50)] {
            let Some(members) = same.get(start..start + size) else { continue };
            let mut args = strings(&["level", "--kind", "hvm", "--format", "xl", "--xen", "4.17"]);
            args.extend(members.iter().map(|m| m.to_string()));
            let out = Command::new(&ctx.cli).args(&args).output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                continue; // a member without HVM
            }
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let unexpressed: Vec<String> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter_map(|l| l.split(" cannot express ").nth(1)?.split(',').next().map(String::from))
                .collect();
            // The same pool as a featureset (without --xen, which that format refuses).
            let mut featureset_args = strings(&["level", "--kind", "hvm", "--format", "featureset"]);
            featureset_args.extend(members.iter().map(|m| m.to_string()));
            let pool = featureset(&featureset_args)?.ok_or("the pool levels as xl but not as a featureset")?;
            let parsed = oracle(&line)?;
            if !parsed.status.success() {
                return Err(format!("libxl refuses {line}: {}", String::from_utf8_lossy(&parsed.stderr)));
            }
            let json: serde_json::Value =
                serde_json::from_slice(&parsed.stdout).map_err(|e| format!("xl_oracle output: {e}"))?;
            for member in members {
                let host = featureset(&strings(&["level", "--kind", "hvm", "--format", "featureset", member]))?
                    .ok_or("a pool member without HVM")?;
                let mut applied = host.clone();
                let mut apply = |word: usize, filter: &str, offset: usize| {
                    for (i, c) in filter.bytes().enumerate() {
                        let bit = filter.len() - 1 - i + offset;
                        let (w, b) = (word + bit / 32, bit % 32);
                        let value = applied.word(w);
                        match c {
                            b'1' => applied.set_word(w, value | 1 << b),
                            b'0' => applied.set_word(w, value & !(1 << b)),
                            _ => {}
                        }
                    }
                };
                for entry in json["cpuid"].as_array().into_iter().flatten() {
                    let leaf = entry["leaf"].as_u64().unwrap_or(u64::MAX);
                    for (r, name) in ["eax", "ebx", "ecx", "edx"].iter().enumerate() {
                        if let (Some(filter), Some(word)) =
                            (entry[name].as_str(), word_of(leaf, entry["subleaf"].as_u64(), r))
                        {
                            apply(word, filter, 0);
                        }
                    }
                }
                for entry in json["msr"].as_array().into_iter().flatten() {
                    if let (Some(266), Some(filter)) = (entry["index"].as_u64(), entry["policy"].as_str()) {
                        apply(16, filter, 0);
                    }
                }
                // A lowered max basic leaf (leaf 0 EAX, all bits forced) takes the leaves beyond
                // it away, as Xen does when the policy is set.
                let maxleaf = json["cpuid"].as_array().into_iter().flatten().find_map(|e| {
                    let eax = e["eax"].as_str().filter(|_| e["leaf"].as_u64() == Some(0))?;
                    u32::from_str_radix(eax, 2).ok()
                });
                if let Some(maxleaf) = maxleaf {
                    for (w, word) in WORDS.iter().enumerate() {
                        if matches!(word.source, WordSource::Cpuid { leaf, .. } if leaf < 0x4000_0000 && leaf > maxleaf)
                        {
                            applied.set_word(w, 0);
                        }
                    }
                }
                let set_by_xen = ["htt", "cmp-legacy", "no-fpu-sel", "fdp-excp-only", "osxsave", "ospke"];
                let differ: Vec<&str> = applied
                    .symmetric_difference(&pool)
                    .features()
                    .map(|f| f.name)
                    .filter(|n| !set_by_xen.contains(n) && !unexpressed.iter().any(|u| u == n))
                    .collect();
                if !differ.is_empty() {
                    return Err(format!(
                        "libxl's reading of {line}\napplied to {member}: {differ:?} differ from the pool"
                    ));
                }
            }
            pools += 1;
        }
    }
    if pools < 8 {
        return Err(format!("only {pools} pools checked against libxl"));
    }
    println!(
        "C: libxl 4.17 (Debian's libxenlight) reads the xl lines of {pools} pools of real dumps as the pool defaults"
    );
    // What libxl refuses, xl apply refuses, naming the token.
    let host = &rows[0].0;
    for bad in ["host,nosuch=1", "host,sse3", "host,sse3=q"] {
        let refused = oracle(&format!("cpuid = \"{bad}\""))?;
        let cfg = build.join("xl-bad.cfg");
        std::fs::write(&cfg, format!("cpuid = \"{bad}\"\n")).map_err(|e| e.to_string())?;
        let ours = Command::new(&ctx.cli)
            .args(["xl", "apply", "--kind", "pv", "--xen", "4.17", "--host", host])
            .arg(&cfg)
            .output()
            .map_err(|e| e.to_string())?;
        let token = bad.trim_start_matches("host,");
        if refused.status.code() != Some(2)
            || ours.status.code() != Some(2)
            || !String::from_utf8_lossy(&ours.stderr).contains(&format!("'{token}'"))
        {
            return Err(format!(
                "'{bad}': libxl exit {}, xl apply exit {}: {}",
                refused.status,
                ours.status,
                String::from_utf8_lossy(&ours.stderr)
            ));
        }
    }
    println!("C: unknown names and malformed values are refused by libxl and by xl apply alike, naming the token");
    // A host with SSE4.2 and AVX (Haswell), so that which setting wins shows in the policy.
    let haswell = rows
        .iter()
        .find(|(file, _)| file.ends_with("x86-cpuid-Core-i5-4670T.xml"))
        .ok_or("the Core-i5-4670T dump is missing")?;
    xl_config_oracle(&build, &exe, ctx, &haswell.0)
}

/// libxlutil (Debian's, as xl links it) as the oracle for reading an xl config file: for
/// configs with several `cpuid` lines, `+=` appends and comments, the setting libxlutil gives xl
/// (`xl_oracle setting`) applied alone, and the whole file given to `xl apply`, must give the
/// same policy; a file libxlutil refuses (a list added to a string, a syntax or lexical error),
/// `xl apply` refuses too.
fn xl_config_oracle(build: &Path, exe: &Path, ctx: &Context, host: &str) -> Result<(), String> {
    const ECX0: &str = "1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    const EDX0: &str = "1:edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0";
    let configs = [
        "name = \"vm\"\ncpuid = \"host,sse4_2=0\"\nmemory = 512\ncpuid = \"host,sse4_2=1\"\n".to_string(),
        "cpuid = \"host,sse4_2=0\" # first\ncpuid += \",avx=0\"\n".to_string(),
        format!("cpuid = ['{ECX0}']\ncpuid += [ '{EDX0}' ]\n"),
        format!("cpuid = ['{ECX0}',\n  '{EDX0}']\ncpuid = \"host,avx=0\"\n"),
        "cpuid += \"host,avx=0,sse4_2=0\"\n".to_string(),
        format!("cpuid = \"host,avx=0\"\ncpuid = ['{EDX0}']\n"),
        format!("cpuid = ['{ECX0}']\ncpuid += \"host\"\n"),
        // libxlutil's grammar: statements end at ';' too, lists span lines and may end in a
        // comma, a setting's text inside another setting's list is not a setting.
        "cpuid = \"host,avx=0\"; cpuid = \"host,sse4_2=0\"\n".to_string(),
        format!("cpuid = [\n\n  '{ECX0}' ,\n  '{EDX0}',\n]\n"),
        "extra = [ 'a',\n  'cpuid = \"host,avx=0\"' ]\ncpuid=\"host,sse4_2=0\"\n".to_string(),
        "# comment only\n\n;;\ncpuid = 'host,sse4_2=0'".to_string(),
        // What it refuses: a stray word, upper case, a comment on a last line without a newline,
        // DOS line ends, a bare word as value, a string over two lines, a stray ']'.
        "garbage\ncpuid = \"host,sse4_2=0\"\n".to_string(),
        "CPUID = \"host,sse4_2=0\"\n".to_string(),
        "cpuid = \"host,sse4_2=0\" # no newline".to_string(),
        "cpuid = \"host,sse4_2=0\"\r\n".to_string(),
        "cpuid = host\n".to_string(),
        "cpuid = \"host,\nsse4_2=0\"\n".to_string(),
        "cpuid = \"host,sse4_2=0\"\nname = \"x\" ]\n".to_string(),
    ];
    let apply = |file: &Path| {
        Command::new(&ctx.cli)
            .args(["xl", "apply", "--kind", "pv", "--xen", "4.17", "--host", host])
            .arg(file)
            .output()
            .map_err(|e| e.to_string())
    };
    // `text` written to `name` in the build directory, then given to `xl apply`.
    let apply_text = |name: String, text: &str| {
        let file = build.join(name);
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
        apply(&file)
    };
    // The settings must tell in the policy: SSE4.2 off and on give different ones.
    let off = apply_text("xl-config-off.value".into(), "\"host,sse4_2=0\"")?;
    let on = apply_text("xl-config-on.value".into(), "\"host,sse4_2=1\"")?;
    if !off.status.success() || off.stdout == on.stdout {
        return Err(format!("sse4_2=0 and =1 do not give different policies on {host}"));
    }
    // What libxl reads alike (strtoull's sign, "0x" alone, a negative family), xl apply reads
    // alike, and accepts.
    for (i, (odd, plain)) in [
        ("host,sse4_2=+0", "host,sse4_2=0"),
        ("host,avx=-1", "host,avx=1"),
        ("host,sse4_2=0x", "host,sse4_2=0"),
        ("host,family=-1", "host,family=255"),
    ]
    .into_iter()
    .enumerate()
    {
        let libxl = |value: &str| Command::new(exe).args(["names", value]).output().map_err(|e| e.to_string());
        let (a, b) = (libxl(odd)?, libxl(plain)?);
        if !a.status.success() || a.stdout != b.stdout {
            return Err(format!("libxl does not read '{odd}' as '{plain}': exit {}", a.status));
        }
        let ours_odd = apply_text(format!("xl-spelling-{i}.a"), &format!("cpuid = \"{odd}\"\n"))?;
        let ours_plain = apply_text(format!("xl-spelling-{i}.b"), &format!("cpuid = \"{plain}\"\n"))?;
        if !ours_odd.status.success() || ours_odd.stdout != ours_plain.stdout {
            return Err(format!(
                "libxl reads '{odd}' as '{plain}'; xl apply does not (exit {}): {}",
                ours_odd.status,
                String::from_utf8_lossy(&ours_odd.stderr)
            ));
        }
    }
    println!("C: libxl 4.17 and xl apply read numbers alike: a sign, \"0x\" alone, a negative family");
    let (mut agreed, mut refused) = (0, 0);
    for (i, config) in configs.iter().enumerate() {
        let (cfg, value) = (build.join(format!("xl-config-{i}.cfg")), build.join(format!("xl-config-{i}.value")));
        std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
        let setting = Command::new(exe).arg("setting").arg(&cfg).output().map_err(|e| format!("xl_oracle: {e}"))?;
        let ours = apply(&cfg)?;
        match setting.status.code() {
            Some(0) => {
                std::fs::write(&value, &setting.stdout).map_err(|e| e.to_string())?;
                let alone = apply(&value)?;
                if !ours.status.success() || !alone.status.success() || ours.stdout != alone.stdout {
                    return Err(format!(
                        "xl config {config:?}: libxlutil reads {}, and xl apply of the file (exit {}) differs \
                         from xl apply of that value (exit {}): {}",
                        String::from_utf8_lossy(&setting.stdout).trim(),
                        ours.status,
                        alone.status,
                        String::from_utf8_lossy(&ours.stderr)
                    ));
                }
                agreed += 1;
            }
            Some(2) if ours.status.code() == Some(2) => refused += 1,
            _ => {
                return Err(format!(
                    "xl config {config:?}: libxlutil exit {} ({}), xl apply exit {}",
                    setting.status,
                    String::from_utf8_lossy(&setting.stderr).trim(),
                    ours.status
                ))
            }
        }
    }
    println!(
        "C: libxlutil 4.17 and xl apply read the same cpuid setting from {agreed} xl configs (repeats: the last wins; \
         += appends) and both refuse {refused}"
    );
    Ok(())
}
