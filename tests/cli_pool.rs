//! `cpupolicy level` and `cpupolicy check`, run as an operator would, on the recorded
//! `xen-cpuid -p` output of real Xen 4.14, 4.17 and 4.20 boots (qemu64) and on real CPU dumps.

use std::path::PathBuf;
use std::process::{Command, Output};

use cpupolicy::featureset::Featureset;
use cpupolicy::policy::{level_rule, LevelRule, SystemPolicy, XenCpuidReport};

fn cpupolicy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy")
}

fn shared(sub: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared").join(sub);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", path.display());
        None
    }
}

fn references() -> Option<Vec<String>> {
    let dir = shared("xen-reference")?;
    Some(
        ["4.14", "4.17", "4.20"]
            .iter()
            .map(|release| dir.join(format!("xen-{release}-qemu64.policy.txt")).display().to_string())
            .collect(),
    )
}

fn featureset_of(path: &str, which: SystemPolicy) -> Featureset {
    let report = XenCpuidReport::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    report.to_bundle().policies.get(which).unwrap().featureset()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn levelled_pool_of_three_xen_releases_fits_every_host() {
    let Some(hosts) = references() else { return };
    let dir = tempdir("level-three");
    for kind in ["hvm-shadow", "pv"] {
        let mut args = vec!["level", "--kind", kind, "--format", "json", "--explain"];
        args.extend(hosts.iter().map(String::as_str));
        let out = cpupolicy(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let value = json(&out);
        let (default_which, max_which) = if kind == "pv" {
            (SystemPolicy::PvDefault, SystemPolicy::PvMax)
        } else {
            (SystemPolicy::HvmDefault, SystemPolicy::HvmMax)
        };
        let default = Featureset::parse(value["default"]["featureset"].as_str().unwrap()).unwrap();
        let acceptance = Featureset::parse(value["acceptance"]["featureset"].as_str().unwrap()).unwrap();
        for host in &hosts {
            // Every AND-levelled bit of the pool is in every host's policy.
            for id in default.iter().filter(|id| level_rule(*id) == LevelRule::And) {
                assert!(featureset_of(host, default_which).contains(id), "{kind} {host}: {id:?}");
            }
            for id in acceptance.iter().filter(|id| level_rule(*id) == LevelRule::And) {
                assert!(featureset_of(host, max_which).contains(id), "{kind} {host}: {id:?}");
            }
        }
        // A VM booted with the pool default is welcome on every host.
        let vm = dir.join(format!("pool-{kind}.json"));
        std::fs::write(&vm, value["default"]["policy"].to_string()).unwrap();
        for host in &hosts {
            let out = cpupolicy(&["check", "--kind", kind, "--vm", vm.to_str().unwrap(), "--host", host]);
            assert_eq!(out.status.code(), Some(0), "{kind} {host}: {}", text(&out.stdout));
        }
        // The featureset format prints the same default featureset.
        let mut args = vec!["level", "--kind", kind, "--format", "featureset"];
        args.extend(hosts.iter().map(String::as_str));
        let out = cpupolicy(&args);
        assert_eq!(text(&out.stdout).trim(), value["default"]["featureset"].as_str().unwrap());
    }
}

#[test]
fn check_names_every_feature_the_destination_lacks() {
    let Some(hosts) = references() else { return };
    let (old, new) = (&hosts[0], &hosts[2]);
    // Expected: what Xen 4.14's HVM default offers that Xen 4.20's HVM max lacks, among the
    // bits a migration needs, from the recorded policies themselves.
    let expected: Vec<String> = featureset_of(old, SystemPolicy::HvmDefault)
        .difference(&featureset_of(new, SystemPolicy::HvmMax))
        .iter()
        .filter(|id| matches!(level_rule(*id), LevelRule::And | LevelRule::TsxAbort))
        .map(|id| id.feature().unwrap().name.to_string())
        .collect();
    assert!(!expected.is_empty(), "the recorded 4.14 HVM default has something 4.20's max lacks");
    let out = cpupolicy(&["check", "--vm", old, "--host", new, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let value = json(&out);
    assert_eq!(value["compatible"], false);
    let named: Vec<String> = value["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "feature")
        .map(|m| m["feature"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(named, expected);
    assert!(text(&out.stderr).contains("checking a VM booted there with its default policy"));
    // A host featureset checks no VM policy: refused (it answered "compatible" against no host).
    for extra in [&["--host-featureset", "0"][..], &["--host-featureset", "0", "--host", new.as_str()][..]] {
        let out = cpupolicy(&[&["check", "--vm", old.as_str()][..], extra].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out.stdout));
        assert!(out.stdout.is_empty(), "{extra:?}");
        assert!(text(&out.stderr).contains("--host-featureset goes with --vm-featureset"), "{}", text(&out.stderr));
    }
}

#[test]
fn legacy_vm_is_synthesised_then_checked() {
    let Some(hosts) = references() else { return };
    let out = cpupolicy(&["check", "--kind", "pv", "--legacy", "4.20", "--vm", &hosts[2], "--host", &hosts[2]]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = cpupolicy(&["check", "--legacy", "4.x", "--vm", &hosts[2], "--host", &hosts[2]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--legacy: '4.x'"), "{}", text(&out.stderr));
    // A release older than the ones modelled is refused, not given 4.14's rules.
    for old in ["4.13", "3.0"] {
        let out = cpupolicy(&["check", "--legacy", old, "--vm", &hosts[2], "--host", &hosts[2]]);
        assert_eq!(out.status.code(), Some(2), "{old}");
        assert!(
            text(&out.stderr).contains(&format!("--legacy: Xen {old} is older than 4.14")),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn bad_input_is_exit_2_naming_the_file() {
    let dir = tempdir("bad-input");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"format\": \"cpupolicy-policy\", \"version\": 1, \"cpuid\": [{\"leaf\": \"zz\"}]}")
        .unwrap();
    let out = cpupolicy(&["level", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("bad.json"), "{}", text(&out.stderr));
    let out = cpupolicy(&["level", "/nonexistent/host.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/host.json"));
}

fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn raw_dumps_are_levelled_through_the_prediction_and_explained() {
    let Some(dir) = shared("cpu-dumps/libvirt") else { return };
    let (new, old) = (dir.join("x86_64-cpuid-Xeon-Platinum-8268.xml"), dir.join("x86_64-cpuid-Xeon-E5-2650.xml"));
    if !new.exists() || !old.exists() {
        panic!("expected dumps are missing from {}", dir.display());
    }
    let out = cpupolicy(&["level", "--kind", "pv", "--explain", new.to_str().unwrap(), old.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The older part (Sandy Bridge) lacks MOVBE, which the newer one (Cascade Lake) has: the
    // explanation blames it. (Xen 4.20 hides AVX on the Cascade Lake dump, whose microcode
    // predates the GDS fix: the explanation blames that host for AVX.)
    assert!(stdout.contains("movbe: lacked by x86_64-cpuid-Xeon-E5-2650"), "{stdout}");
    assert!(stdout.contains("avx: lacked by x86_64-cpuid-Xeon-Platinum-8268"), "{stdout}");
    // Raw dumps carry no levelling capabilities: leak-through is not judged, and says so.
    assert!(stdout.contains("levelling capabilities unknown"), "{stdout}");
    // The newer host's VM cannot go to the older one, by name.
    let out = cpupolicy(&["check", "--kind", "pv", "--vm", new.to_str().unwrap(), "--host", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("mismatch: feature movbe"), "{}", text(&out.stdout));
    // Prediction on its own.
    let out = cpupolicy(&["derive", "--kind", "pv", "--format", "xen-cpuid", old.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("PV Default policy:"), "{}", text(&out.stdout));
}

/// What levelling cannot hide, from bundles alone: the two Intel hosts the real-Xen step boots
/// (Xen 4.20 on QEMU's Skylake-Server and Nehalem, recorded in crates/policy/tests/data), with
/// the levelling capabilities those boots reported (0x0 and 0x1e), and MXCSR masks that differ
/// (0xffff with DAZ, 0xffbf without). PV leak-through is listed by name for the host without
/// faulting or masking, nothing for the masking host; the MXCSR difference is one hazard;
/// `--strict` turns them into exit 1; the JSON lists them too.
#[test]
fn level_lists_leak_through_and_mxcsr_hazards() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/policy/tests/data");
    let dir = tempdir("hazards");
    let mut paths = Vec::new();
    for (name, caps, mask) in [("skylake", "0x0", "0xffff"), ("nehalem", "0x1e", "0xffbf")] {
        let text = std::fs::read_to_string(data.join(format!("xen-4.20-{name}.json"))).unwrap();
        let mut bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
        bundle["levelling_caps"] = caps.into();
        bundle["mxcsr_mask"] = mask.into();
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, bundle.to_string()).unwrap();
        paths.push(path.display().to_string());
    }
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["level", "--kind", "pv"].iter().chain(extra).map(|s| s.to_string()).collect();
        args.extend(paths.iter().cloned());
        args
    };
    let run = |args: Vec<String>| cpupolicy(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(&[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let leaks =
        stdout.lines().find(|l| l.starts_with("skylake: leaks to PV guests' user space")).unwrap_or_else(|| {
            panic!("{stdout}");
        });
    // Nehalem lacks AVX2, so the pool hides it, and Skylake without faulting or masking shows it.
    assert!(leaks.split(' ').any(|w| w == "avx2"), "{leaks}");
    assert!(stdout.contains("nehalem: nothing leaks to PV guests (masking only"), "{stdout}");
    assert!(stdout.contains("MXCSR mask differs: 0xffff on skylake; 0xffbf on nehalem"), "{stdout}");

    let out = run(args(&["--strict"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));

    let out = run(args(&["--format", "json"]));
    let value = json(&out);
    let hazards = value["hazards"].as_array().unwrap();
    assert!(hazards.iter().any(|h| h["kind"] == "mxcsr-mask"), "{hazards:?}");
    let skylake = hazards.iter().find(|h| h["kind"] == "leak-through" && h["host"] == "skylake").unwrap();
    assert!(skylake["features"].as_array().unwrap().iter().any(|f| f == "avx2"), "{skylake}");

    // A VM on the host that accepts DAZ (bit 6) is warned about the host that does not; the
    // other way round nothing can fault.
    let check = |vm: &str, host: &str| cpupolicy(&["check", "--kind", "pv", "--vm", vm, "--host", host]);
    let out = check(&paths[1], &paths[0]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("MXCSR"), "{stdout}");
    let out = check(&paths[0], &paths[1]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning: MXCSR mask 0xffff where the VM runs, 0xffbf here: MXCSR bits 0x40 fault"),
        "{stdout}"
    );
}

/// The document `level --format json` writes is a policy wherever one is read: `check --vm`,
/// `diff`, `import` take its default policy, `FILE#acceptance` its acceptance policy; xapi-style
/// featuresets level and check from the command line too.
#[test]
fn a_pool_document_is_read_as_its_default_or_acceptance_policy() {
    let Some(hosts) = references() else { return };
    let dir = tempdir("pool-document");
    let pool = dir.join("pool.json");
    let mut args = vec!["level", "--kind", "pv", "--format", "json"];
    args.extend(hosts.iter().map(String::as_str));
    let out = cpupolicy(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value = json(&out);
    assert_eq!(value["format"], "cpupolicy-pool");
    std::fs::write(&pool, &out.stdout).unwrap();
    let pool = pool.display().to_string();
    let acceptance = format!("{pool}#acceptance");
    for host in &hosts {
        let out = cpupolicy(&["check", "--kind", "pv", "--vm", &pool, "--host", host]);
        assert_eq!(out.status.code(), Some(0), "{host}: {}{}", text(&out.stdout), text(&out.stderr));
        let out = cpupolicy(&["check", "--kind", "pv", "--vm", &acceptance, "--host", host]);
        assert_eq!(out.status.code(), Some(0), "{host}: {}{}", text(&out.stdout), text(&out.stderr));
    }
    // import prints the chosen policy; its featureset is the document's.
    for (which, path) in [("default", &pool), ("acceptance", &acceptance)] {
        let out = cpupolicy(&["import", path, "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let policy = cpupolicy::policy::CpuPolicy::from_json(&text(&out.stdout)).unwrap();
        let expected = Featureset::parse(value[which]["featureset"].as_str().unwrap()).unwrap();
        assert_eq!(policy.featureset(), expected, "{which}");
    }
    let differ = value["default"]["featureset"] != value["acceptance"]["featureset"];
    let out = cpupolicy(&["diff", &pool, &acceptance]);
    assert_eq!(out.status.code(), Some(i32::from(differ)), "{}", text(&out.stdout));
    // #acceptance of anything but a pool is refused by name; a pool of a newer version too.
    let out = cpupolicy(&["import", &format!("{}#acceptance", hosts[0])]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("pool document"), "{}", text(&out.stderr));
    let newer = dir.join("newer.json");
    std::fs::write(&newer, text(&out_of(&value, 99))).unwrap();
    let out = cpupolicy(&["check", "--vm", &newer.display().to_string(), "--host", &hosts[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("version"), "{}", text(&out.stderr));
}

fn out_of(value: &serde_json::Value, version: u64) -> Vec<u8> {
    let mut value = value.clone();
    value["version"] = serde_json::json!(version);
    serde_json::to_vec(&value).unwrap()
}

/// xapi-style featuresets through the command line: the HVM default featuresets of the 4.14
/// and 4.20 recordings (xen-cpuid's own lines, rewritten with xapi's separator), combined and
/// checked; the empty featureset (a host without HVM) and bad tokens.
#[test]
fn featuresets_as_xapi_stores_them_level_and_check() {
    let Some(dir) = shared("xen-reference") else { return };
    let line = |release: &str, label: &str| {
        let text = std::fs::read_to_string(dir.join(format!("xen-{release}-qemu64.featuresets.txt"))).unwrap();
        let dynamic = text.split("Dynamic sets:").nth(1).unwrap().to_string();
        let line = dynamic.lines().find(|l| l.starts_with(label)).unwrap().to_string();
        line.split_whitespace().last().unwrap().replace(':', "-")
    };
    let (old, new) = (line("4.14", "HVM Default"), line("4.20", "HVM Default"));
    let out = cpupolicy(&["level", "--featuresets", &old, &new]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let combined = text(&out.stdout).trim().to_string();
    assert!(!combined.contains(':'), "keeps xapi's separator: {combined}");
    assert_eq!(combined.split('-').count(), old.split('-').count().max(new.split('-').count()), "longest length");
    let set = Featureset::parse(&combined).unwrap();
    assert!(set.is_subset(&Featureset::parse(&old).unwrap().union(&Featureset::parse(&new).unwrap())));
    for host in [&old, &new] {
        let out = cpupolicy(&["check", "--vm-featureset", &combined, "--host-featureset", host]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    }
    // A featureset printed back unchanged, and the empty one (no HVM) changes nothing else.
    let out = cpupolicy(&["level", "--featuresets", &new]);
    assert_eq!(text(&out.stdout).trim(), new);
    let out = cpupolicy(&["level", "--featuresets", "", "--format", "json"]);
    assert_eq!(json(&out)["featureset"], "");
    // A VM with a feature the host lacks: exit 1, the feature named.
    let vm = Featureset::parse(&new).unwrap().union(&Featureset::from_names(["avx512f"]).unwrap());
    let out = cpupolicy(&["check", "--vm-featureset", &vm.to_xapi_string(), "--host-featureset", &new]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("feature avx512f"), "{}", text(&out.stdout));
    // Bad input: exit 2 naming the token.
    let out = cpupolicy(&["level", "--featuresets", &new, "1fcbfbff-zz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'zz'"), "{}", text(&out.stderr));
}

/// A featureset longer than this Xen's 19 words levels and explains a lost bit beyond them (the
/// explanation looked its prerequisites up in a 19-word table and panicked).
#[test]
fn featuresets_beyond_the_known_words_level_and_explain() {
    let long = format!("{}:1", vec!["0"; 19].join(":"));
    let out = cpupolicy(&["level", "--featuresets", "--explain", &long, "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), vec!["00000000"; 20].join(":"));
    assert!(text(&out.stderr).contains("19:0: lacked by featureset 2"), "{}", text(&out.stderr));
}

/// Options that cannot apply to what was given are refused, not ignored: `import --label` with
/// JSON output or on input whose policies are labelled already, `diff --policy` between two
/// single policies.
#[test]
fn options_that_cannot_apply_are_refused() {
    let Some(dir) = shared("xen-reference") else { return };
    let report = dir.join("xen-4.20-qemu64.policy.txt").display().to_string();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-pool-options");
    std::fs::create_dir_all(&tmp).unwrap();
    // The recorded boot's system policies, as a JSON host bundle.
    let out = cpupolicy(&["import", &report]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = tmp.join("bundle.json");
    std::fs::write(&bundle, &out.stdout).unwrap();
    let out = cpupolicy(&["diff", "--policy", "host", &bundle.display().to_string(), &report]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A single policy: a real CPU's, from its dump.
    let Some(dumps) = shared("cpu-dumps/libvirt") else { return };
    let single = tmp.join("host.json");
    let dump = dumps.join("x86_64-cpuid-Xeon-Gold-6130.xml").display().to_string();
    std::fs::write(&single, succeeded(&["import", &dump]).stdout).unwrap();
    let single = single.display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["import", "--label", "host", &single], "--label: only xen-cpuid output is labelled"),
        (&["import", "--label", "host", "--format", "xen-cpuid", &report], "holds labelled policies already"),
        (&["diff", "--policy", "host", &single, &single], "neither input holds system policies"),
        (&["import", "--label", "bogus", "--format", "xen-cpuid", &single], "--label"),
    ];
    for (args, message) in cases {
        let out = cpupolicy(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // What they may apply to still works: a single policy labelled in xen-cpuid form, and one
    // policy of the bundle against a single one.
    let out = cpupolicy(&["import", "--label", "host", "--format", "xen-cpuid", &single]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("Host policy:"), "{}", text(&out.stdout));
    let out = cpupolicy(&["diff", "--policy", "host", &bundle.display().to_string(), &single]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

fn succeeded(args: &[&str]) -> Output {
    let out = cpupolicy(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    out
}
