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
                args[4] = "featureset";
                let pool = Featureset::parse(text(&cpupolicy(&args).stdout).trim()).unwrap();
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
