//! `level --format xl` and `xl apply` on pools of real CPU dumps (Xen 4.20's policies predicted
//! from each): the `cpuid=` line written for a pool, applied as libxl does to each host's default
//! policy and clamped to the host's max as Xen does, gives the pool default's features there.

use std::path::PathBuf;
use std::process::{Command, Output};

use cpupolicy::featureset::Featureset;
use cpupolicy::policy::CpuPolicy;

fn cpupolicy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dumps() -> Option<Vec<(String, String)>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cpu-dumps/libvirt");
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).ok()?;
    Some(
        index
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .map(|(file, vendor)| (dir.join(file).display().to_string(), vendor))
            .collect(),
    )
}

/// The featureset a policy file (JSON) holds.
fn featureset_of_json(json: &[u8]) -> Featureset {
    CpuPolicy::from_json(&text(json)).expect("a JSON policy").featureset()
}

#[test]
fn the_xl_line_for_a_pool_gives_the_pool_default_on_every_host() {
    let Some(dumps) = dumps() else { return };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xl");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pools = 0;
    for vendor in ["GenuineIntel", "AuthenticAMD"] {
        let same: Vec<&String> = dumps.iter().filter(|(_, v)| v == vendor).map(|(f, _)| f).collect();
        // Pools of 2 to 5 neighbouring dumps that have HVM.
        for (size, start) in [(2, 0), (3, 5), (5, 10), (2, 20), (4, 30), (2, 40), (3, 50)] {
            let Some(members) = same.get(start..start + size) else { continue };
            for (xen, kind) in [("4.22", "hvm"), ("4.17", "hvm"), ("4.20", "pv")] {
                let mut args = vec!["level", "--kind", kind, "--format", "xl", "--xen", xen];
                args.extend(members.iter().map(|s| s.as_str()));
                let out = cpupolicy(&args);
                if out.status.code() == Some(2) && text(&out.stderr).contains("no hvm_default") {
                    continue;
                }
                assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
                let line = text(&out.stdout);
                assert!(line.starts_with("cpuid = "), "{line}");
                let cfg = dir.join(format!("pool-{pools}.cfg"));
                std::fs::write(&cfg, format!("name = \"vm\"\n{line}")).unwrap();
                // The same pool as a featureset (a form `--xen` does not apply to).
                let mut featureset_args = vec!["level", "--kind", kind, "--format", "featureset"];
                featureset_args.extend(members.iter().map(|s| s.as_str()));
                let pool = Featureset::parse(text(&cpupolicy(&featureset_args).stdout).trim()).unwrap();
                // What no form could express is named on stderr; it is only checked that the
                // rest arrived.
                let unexpressed: Vec<String> = text(&out.stderr)
                    .lines()
                    .filter_map(|l| l.split(" cannot express ").nth(1)?.split(',').next().map(String::from))
                    .collect();
                for host in members {
                    let out = cpupolicy(&[
                        "xl",
                        "apply",
                        "--host",
                        host,
                        "--kind",
                        kind,
                        "--xen",
                        xen,
                        &cfg.display().to_string(),
                    ]);
                    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
                    let applied = featureset_of_json(&out.stdout);
                    // Xen clamps to the host's max: the pool's accumulate bits a host's max lacks go there.
                    let max_out = cpupolicy(&["level", "--kind", kind, "--format", "text", host]);
                    let acceptance = text(&max_out.stdout)
                        .lines()
                        .find_map(|l| l.strip_prefix("acceptance: ").map(|s| Featureset::parse(s.trim()).unwrap()))
                        .unwrap();
                    let expected = pool.intersection(&acceptance);
                    let differ: Vec<String> = applied
                        .symmetric_difference(&expected)
                        .features()
                        .map(|f| f.name.to_string())
                        .filter(|name| !unexpressed.contains(name))
                        .filter(|name| {
                            !["htt", "cmp-legacy", "no-fpu-sel", "fdp-excp-only", "osxsave", "ospke"]
                                .contains(&name.as_str())
                        })
                        .collect();
                    assert!(
                        differ.is_empty(),
                        "Xen {xen} {kind} pool {members:?}: on {host} {differ:?} differ\n{line}"
                    );
                }
                pools += 1;
            }
        }
    }
    assert!(pools >= 10, "{pools} pools checked");
}

#[test]
fn bad_cpuid_settings_exit_2_naming_the_token() {
    let Some(dumps) = dumps() else { return };
    let host = &dumps[0].0;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xl-bad");
    std::fs::create_dir_all(&dir).unwrap();
    for (setting, token) in [
        ("cpuid = \"host,nosuch=1\"", "'nosuch=1'"),
        ("cpuid = \"host,sse3\"", "'sse3'"),
        ("cpuid = \"sse3=0\"", "'sse3=0'"),
        ("cpuid = \"host,rsba=1\"", "'rsba=1'"),
        ("cpuid = [ '0x1:ecx=xxxx' ]", "'ecx=xxxx'"),
        ("cpuid = [ '0x1:ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxq' ]", "'ecx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxq'"),
        ("memory = 512", "'cpuid'"),
    ] {
        let cfg = dir.join("bad.cfg");
        std::fs::write(&cfg, setting).unwrap();
        // rsba is a name libxl knows from 4.18 on.
        let out =
            cpupolicy(&["xl", "apply", "--host", host, "--kind", "pv", "--xen", "4.17", &cfg.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{setting}");
        assert!(text(&out.stderr).contains(token), "{setting}: {}", text(&out.stderr));
    }
}

/// `--format libvirt-domain` for pools of real dumps: every feature name it writes is one of
/// libvirt's own (`cpu_map/x86_features.xml` of Debian's libvirt0), the element validates as part
/// of a domain with `virt-xml-validate` (libvirt-clients), and `--format libvirt` writes the pool
/// default as a `<cpudata>` dump that reads back to the same policy.
#[test]
fn libvirt_forms_use_libvirt_names_validate_and_round_trip() {
    let Some(dumps) = dumps() else { return };
    let cpu_map = std::fs::read_to_string("/usr/share/libvirt/cpu_map/x86_features.xml").ok();
    let validate = std::path::Path::new("/usr/bin/virt-xml-validate").exists();
    if cpu_map.is_none() || !validate {
        eprintln!("SKIP: libvirt's cpu_map or virt-xml-validate is absent (packages libvirt0, libvirt-clients); names and schema not checked");
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libvirt");
    std::fs::create_dir_all(&dir).unwrap();
    let mut named = 0;
    for vendor in ["GenuineIntel", "AuthenticAMD"] {
        let same: Vec<&String> = dumps.iter().filter(|(_, v)| v == vendor).map(|(f, _)| f).collect();
        for (size, start) in [(2, 1), (3, 6), (4, 12)] {
            let Some(members) = same.get(start..start + size) else { continue };
            let mut args = vec!["level", "--kind", "hvm", "--format", "libvirt-domain"];
            args.extend(members.iter().map(|s| s.as_str()));
            let out = cpupolicy(&args);
            if !out.status.success() {
                continue;
            }
            let xml = text(&out.stdout);
            assert!(xml.starts_with("<cpu mode='host-passthrough'>"), "{xml}");
            for name in xml.lines().filter_map(|l| l.split("name='").nth(1)?.split('\'').next()) {
                if let Some(map) = &cpu_map {
                    assert!(map.contains(&format!("<feature name='{name}'")), "{name} is not in libvirt's cpu_map");
                }
                named += 1;
            }
            if validate {
                let domain = dir.join("domain.xml");
                std::fs::write(
                    &domain,
                    format!("<domain type='xen'>\n  <name>vm</name>\n  <memory>1048576</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n{xml}</domain>\n"),
                )
                .unwrap();
                let check = Command::new("/usr/bin/virt-xml-validate").arg(&domain).arg("domain").output().unwrap();
                assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
            }
            // The dump form round-trips.
            args[4] = "libvirt";
            let dump = cpupolicy(&args);
            assert!(dump.status.success());
            let file = dir.join("pool.xml");
            std::fs::write(&file, &dump.stdout).unwrap();
            let back = cpupolicy(&["import", &file.display().to_string(), "--format", "json"]);
            args[4] = "json";
            let pool: serde_json::Value = serde_json::from_slice(&cpupolicy(&args).stdout).unwrap();
            let read: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
            assert_eq!(read, pool["default"]["policy"], "the <cpudata> dump reads back to the pool default");
        }
    }
    assert!(named > 10, "{named} feature names written");
}

/// `level --xen` names the release whose libxl reads the output: refused with a format that
/// names no features (it was ignored), and a bad release is said before any host is read.
#[test]
fn level_xen_only_with_the_formats_it_shapes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cpu-dumps/libvirt");
    let host = dir.join("x86_64-cpuid-Xeon-Gold-6130.xml");
    if !host.exists() {
        eprintln!("SKIP: {} is absent", host.display());
        return;
    }
    let host = host.display().to_string();
    for format in ["text", "json", "featureset", "xen-cpuid", "libvirt"] {
        let out = cpupolicy(&["level", "--xen", "4.17", "--format", format, &host]);
        assert_eq!(out.status.code(), Some(2), "{format}");
        assert!(text(&out.stderr).contains("--xen: only the xl and libvirt-domain formats"), "{format}");
        assert!(out.stdout.is_empty(), "{format}");
    }
    let out = cpupolicy(&["level", "--xen", "4.1", "--format", "xl", &host, "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--xen: '4.1' is not a Xen release"), "{}", text(&out.stderr));
    for format in ["xl", "libvirt-domain"] {
        let out = cpupolicy(&["level", "--xen", "4.17", "--format", format, &host]);
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
    }
}
