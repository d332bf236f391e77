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

/// `cargo xtask install --prefix P`: builds the release library and installs
/// `P/lib/libcpupolicy.so.X.Y.Z` (+ soname and dev symlinks), `P/lib/libcpupolicy.a`,
/// `P/include/cpupolicy.h` and `P/lib/pkgconfig/cpupolicy.pc`.
pub fn install(root: &Path, prefix: &Path) -> Result<(), String> {
    crate::cargo(root, &["build", "--release", "-p", "cpupolicy-capi"])?;
    let version = version(root)?;
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    let soname = if major == "0" { format!("libcpupolicy.so.0.{minor}") } else { format!("libcpupolicy.so.{major}") };
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
    println!("installed libcpupolicy {version} into {}", prefix.display());
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map(drop).map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

/// One C program to build and run, and how to judge its output.
struct CProgram {
    source: &'static str,
    args: &'static [&'static str],
    /// Every line here must appear in its standard output.
    expect: &'static [&'static str],
}

const C_PROGRAMS: &[CProgram] = &[
    CProgram { source: "tests/c/errors.c", args: &[], expect: &["errors: all checks passed"] },
    CProgram {
        source: "examples/featureset.c",
        args: &["178bfbfd:80002001:2193fbfd:00000007", "sse3"],
        expect: &["sse3: present", "  [01] CPUID 0x00000001.ecx     sse3 cx16 hypervisor"],
    },
];

/// Installs into a scratch prefix, builds each C program against the installed header with the
/// system compiler, shared and static, runs each (also under valgrind) and checks its output.
pub fn c_tests(root: &Path) -> Result<(), String> {
    let prefix = crate::target_dir(root).join("c-install");
    let _ = std::fs::remove_dir_all(&prefix);
    install(root, &prefix)?;
    let build = crate::target_dir(root).join("c-tests");
    std::fs::create_dir_all(&build).map_err(|e| e.to_string())?;
    let pkg_config = |arg: &str| -> Result<Vec<String>, String> {
        let out = Command::new("pkg-config")
            .args([arg, "cpupolicy"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .output()
            .map_err(|e| format!("pkg-config: {e}"))?;
        if !out.status.success() {
            return Err(format!("pkg-config {arg} cpupolicy failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect())
    };
    let cflags = pkg_config("--cflags")?;
    let libs = pkg_config("--libs")?;
    let static_libs = pkg_config("--static")?; // validates Libs.private parses
    let _ = static_libs;
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    for program in C_PROGRAMS {
        let source = root.join(program.source);
        let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("prog").to_string();
        for linkage in ["shared", "static"] {
            let exe = build.join(format!("{stem}-{linkage}"));
            let mut cc = Command::new("cc");
            cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-o"]).arg(&exe).arg(&source).args(&cflags);
            if linkage == "shared" {
                cc.args(&libs).arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()));
            } else {
                cc.arg(prefix.join("lib/libcpupolicy.a")).args(["-lpthread", "-ldl", "-lm"]);
            }
            crate::run_command(&mut cc)?;
            let mut runs = vec![Command::new(&exe)];
            if valgrind {
                let mut vg = Command::new("valgrind");
                vg.args(["--quiet", "--error-exitcode=97", "--leak-check=full", "--errors-for-leak-kinds=definite"])
                    .arg(&exe);
                runs.push(vg);
            }
            for mut run in runs {
                run.args(program.args);
                let what =
                    format!("{stem} ({linkage}{})", if run.get_program() == "valgrind" { ", valgrind" } else { "" });
                let out = run.output().map_err(|e| format!("{what}: {e}"))?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    return Err(format!(
                        "{what} exited {}:\n{stdout}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                for line in program.expect {
                    if !stdout.lines().any(|l| l == *line) {
                        return Err(format!("{what}: expected line {line:?} in output:\n{stdout}"));
                    }
                }
                println!("C: {what} ok");
            }
        }
    }
    Ok(())
}
