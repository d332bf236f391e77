//! `cpupolicy placement` and `cpupolicy plan`, run as an operator would: on real CPU dumps (Xen's
//! policies predicted from them), on host bundles recorded from real Xen 4.20 boots (QEMU's
//! Skylake-Server and Nehalem), and on updates made from real dumps. Every expected answer is
//! taken from another command: `level` for the pool's policies, `check` for each VM and host.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cpupolicy::featureset::Featureset;

fn cpupolicy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy")
}

fn dumps() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cpu-dumps/libvirt");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", path.display());
        None
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies a dump under a short host name.
fn host(dumps: &Path, model: &str, dir: &Path, name: &str) -> String {
    let to = dir.join(format!("{name}.xml"));
    std::fs::copy(dumps.join(format!("x86_64-cpuid-{model}.xml")), &to).unwrap();
    to.display().to_string()
}

/// The pool document `level --format json` writes for these hosts, saved as `name`.
fn pool_document(hosts: &[&str], dir: &Path, name: &str) -> String {
    let mut args = vec!["level", "--format", "json"];
    args.extend(hosts);
    let out = cpupolicy(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).unwrap();
    path.display().to_string()
}

/// The pool default's featureset, as `level --format featureset` prints it.
fn level_default(hosts: &[&str]) -> Featureset {
    let mut args = vec!["level", "--format", "featureset"];
    args.extend(hosts);
    let out = cpupolicy(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    Featureset::parse(text(&out.stdout).trim()).unwrap()
}

fn names(set: &Featureset) -> BTreeSet<String> {
    set.names().into_iter().collect()
}

/// The features `check` names as mismatches for this VM on this host.
fn check_mismatches(vm: &str, host: &str) -> (i32, BTreeSet<String>) {
    let out = cpupolicy(&["check", "--vm", vm, "--host", host, "--format", "json"]);
    let code = out.status.code().unwrap();
    assert!(code < 2, "{}", text(&out.stderr));
    let features = json(&out)["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["feature"].as_str().map(String::from))
        .collect();
    (code, features)
}

fn plan(args: &[&str]) -> (i32, String, serde_json::Value) {
    let out = cpupolicy(&[&["plan"], args].concat());
    let code = out.status.code().unwrap();
    assert!(code < 2, "{}", text(&out.stderr));
    let json_out = cpupolicy(&[&["plan", "--format", "json"], args].concat());
    assert_eq!(json_out.status.code(), Some(code), "{}", text(&json_out.stderr));
    (code, text(&out.stdout), json(&json_out))
}

fn feature_list(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_array().unwrap().iter().map(|f| f["feature"].as_str().unwrap().to_string()).collect()
}

/// A Nehalem joining a pool of three Skylake-SP hosts strands the VMs booted on the pool's
/// default (they cannot go there) and costs new VMs what the Nehalem lacks; removing it again
/// strands nothing and gives the features back; replacing a host by an identical bundle changes
/// nothing.
#[test]
fn an_old_host_joining_strands_vms_and_leaving_restores_them() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("plan-nehalem");
    let sky: Vec<String> = [("Xeon-Gold-6130", "sky1"), ("Xeon-Gold-6148", "sky2"), ("Xeon-Gold-5115", "sky3")]
        .iter()
        .map(|(model, name)| host(&dumps, model, &dir, name))
        .collect();
    let nehalem = host(&dumps, "Xeon-W3520", &dir, "nehalem");
    let sky_refs: Vec<&str> = sky.iter().map(String::as_str).collect();
    let pool = pool_document(&sky_refs, &dir, "skypool.json");
    let mut args: Vec<String> = Vec::new();
    for h in &sky {
        args.extend(["--host".into(), h.clone()]);
    }
    for (i, on) in ["sky1", "sky2", "sky3", "sky1"].iter().enumerate() {
        args.extend(["--vm".into(), format!("web{}={pool}@{on}", i + 1)]);
    }
    let mut join = args.clone();
    join.extend(["--add".into(), nehalem.clone()]);
    let join: Vec<&str> = join.iter().map(String::as_str).collect();
    let (code, stdout, plan_json) = plan(&join);

    // What the VMs cannot have there, as `check` says.
    let (check_code, missing) = check_mismatches(&pool, &nehalem);
    assert_eq!(check_code, 1);
    assert!(!missing.is_empty());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("STRANDED: 4 of 4 VMs"), "{stdout}");
    assert!(stdout.contains("web1 (on sky1): cannot migrate to nehalem: features it cannot give: "), "{stdout}");
    assert_eq!(plan_json["strands"], true);
    for vm in plan_json["vms"].as_array().unwrap() {
        let strandings = vm["strandings"].as_array().unwrap();
        assert_eq!(strandings.len(), 1, "{vm}");
        assert_eq!(strandings[0]["kind"], "shut-out");
        assert_eq!(strandings[0]["host"], "nehalem");
        let features: BTreeSet<String> =
            strandings[0]["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
        assert_eq!(features, missing, "{vm}");
        assert_eq!(vm["reach"], serde_json::json!({"before": 3, "after": 3}));
    }

    // What new VMs lose, as `level` says of the pools before and after.
    let before = level_default(&sky_refs);
    let mut with_nehalem = sky_refs.clone();
    with_nehalem.push(&nehalem);
    let after = level_default(&with_nehalem);
    let lost: BTreeSet<String> = names(&before).difference(&names(&after)).cloned().collect();
    assert!(lost.contains("pclmulqdq") && lost.contains("rdrand"), "{lost:?}");
    assert_eq!(feature_list(&plan_json["default"]["lost"]), lost);
    assert!(feature_list(&plan_json["default"]["gained"]).is_empty());
    assert_eq!(plan_json["default"]["after"].as_str().unwrap(), after.to_xen_string());
    let line = stdout.lines().find(|l| l.starts_with("  loses (lacked by nehalem): ")).expect("a loss line");
    let named: BTreeSet<String> = line.split(": ").nth(1).unwrap().split(' ').map(String::from).collect();
    assert_eq!(named, lost, "{stdout}");

    // The pool with the Nehalem; its VMs booted on the Skylake default (before the join) and on
    // the new default. Removing the Nehalem strands nothing and gives the features back.
    let pool4 = pool_document(&with_nehalem, &dir, "pool4.json");
    let mut leave: Vec<String> = args.clone();
    leave.extend(["--host".into(), nehalem.clone(), "--vm".into(), format!("new1={pool4}@nehalem")]);
    leave.extend(["--remove".into(), "nehalem".into()]);
    let leave: Vec<&str> = leave.iter().map(String::as_str).collect();
    let (code, stdout, plan_json) = plan(&leave);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("stranded: none"), "{stdout}");
    assert_eq!(feature_list(&plan_json["default"]["gained"]), lost);
    assert_eq!(plan_json["default"]["after"].as_str().unwrap(), before.to_xen_string());
    let new1 = plan_json["vms"].as_array().unwrap().iter().find(|v| v["name"] == "new1").unwrap();
    assert_eq!(new1["reach"], serde_json::json!({"before": 4, "after": 3}));
    assert_eq!(new1["no_longer_reaches"], serde_json::json!(["nehalem"]));

    // An identical bundle in place of sky2: nothing changes.
    let copy = dir.join("sky2-again.xml");
    std::fs::copy(&sky[1], &copy).unwrap();
    let mut same = args.clone();
    same.extend(["--replace".into(), format!("sky2={}", copy.display())]);
    let same: Vec<&str> = same.iter().map(String::as_str).collect();
    let (code, stdout, plan_json) = plan(&same);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("stranded: none"), "{stdout}");
    assert!(stdout.contains("pool default (what new VMs boot with):\n  unchanged"), "{stdout}");
    assert!(stdout.contains("VMs: no VM's reach changes"), "{stdout}");
    assert!(plan_json["default"]["lost"].as_array().unwrap().is_empty());
    assert!(plan_json["acceptance"]["lost"].as_array().unwrap().is_empty());
}

/// The same join on host bundles recorded from real Xen 4.20 boots (QEMU's Skylake-Server and
/// Nehalem CPU models), for PV guests (under QEMU's TCG those boots have no HVM): the VM booted
/// on the Skylake host's default is shut out of the Nehalem, as `check` says, and removing the
/// Nehalem again strands nothing.
#[test]
fn real_xen_bundles_nehalem_joining_skylake() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/policy/tests/data");
    let dir = tempdir("plan-real-xen");
    let (sky, neh) = (dir.join("skylake.json"), dir.join("nehalem.json"));
    std::fs::copy(data.join("xen-4.20-skylake.json"), &sky).unwrap();
    std::fs::copy(data.join("xen-4.20-nehalem.json"), &neh).unwrap();
    let (sky, neh) = (sky.display().to_string(), neh.display().to_string());
    {
        let kind = "pv";
        let args = ["--kind", kind, "--host", &sky, "--vm", &format!("vm1={sky}@skylake"), "--add", &neh];
        let out = cpupolicy(&[&["plan"], &args[..]].concat());
        let stdout = text(&out.stdout);
        // `check` says what the VM (booted on the Skylake host's default) lacks on the Nehalem.
        let check = cpupolicy(&["check", "--kind", kind, "--vm", &sky, "--host", &neh]);
        match check.status.code() {
            Some(1) => {
                assert_eq!(out.status.code(), Some(1), "{kind}: {stdout}{}", text(&out.stderr));
                assert!(stdout.contains("vm1 (on skylake): cannot migrate to nehalem"), "{kind}: {stdout}");
            }
            other => panic!("{kind}: check exited {other:?}: a Skylake VM should not fit a Nehalem"),
        }
        // Removing the Nehalem again from the pool of both strands nothing.
        let args = ["--kind", kind, "--host", &sky, "--host", &neh, "--vm", &format!("vm1={sky}@skylake")];
        let out = cpupolicy(&[&["plan"], &args[..], &["--remove", "nehalem"]].concat());
        assert_eq!(out.status.code(), Some(0), "{kind}: {}{}", text(&out.stdout), text(&out.stderr));
    }
}

/// Two hosts of one real dump (`first`, `second`), a VM on each booted on their pool's default,
/// and the plan of replacing `second` by the dump with `line` changed from `from` to `to` (an
/// update). Returns the plan (exit status, text, JSON), the pool document and the updated dump.
fn plan_update(
    dumps: &Path,
    dir: &Path,
    model: &str,
    (first, second): (&str, &str),
    line: &str,
    (from, to): (&str, &str),
) -> ((i32, String, serde_json::Value), String, String) {
    let a = host(dumps, model, dir, first);
    let b = host(dumps, model, dir, second);
    let original = std::fs::read_to_string(&b).unwrap();
    assert!(original.contains(line), "the dump's line changed: {line}");
    let updated = dir.join(format!("{second}-updated.xml"));
    std::fs::write(&updated, original.replace(line, &line.replace(from, to))).unwrap();
    let updated = updated.display().to_string();
    let pool = pool_document(&[&a, &b], dir, "pool.json");
    let (vm1, vm2, replace) =
        (format!("vm1={pool}@{first}"), format!("vm2={pool}@{second}"), format!("{second}={updated}"));
    let args = ["--host", &a, "--host", &b, "--vm", &vm1, "--vm", &vm2, "--replace", &replace];
    (plan(&args), pool, updated)
}

/// Intel's 2021 microcode for client Skylake makes TSX always abort (it enumerates
/// RTM_ALWAYS_ABORT, CPUID 7:0 EDX bit 11, beside TSX_FORCE_ABORT): Xen then hides RTM from
/// its default policy and keeps it in max, so a VM that booted with RTM may still arrive.
/// Replacing a host by its bundle after that update strands nothing; new VMs lose RTM. The
/// update is made on the real Xeon E3-1225 v5 dump, which already enumerates TSX_FORCE_ABORT.
#[test]
fn tsx_microcode_update_strands_nothing() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("plan-tsx");
    let leaf7 = "eax_in='0x00000007' ecx_in='0x00' eax='0x00000000' ebx='0x029c6fbf' ecx='0x00000000' edx='0x9c002400'";
    let ((code, stdout, plan_json), pool, updated) =
        plan_update(&dumps, &dir, "Xeon-E3-1225-v5", ("e3a", "e3b"), leaf7, ("0x9c002400", "0x9c002c00"));
    let a = dir.join("e3a.xml").display().to_string();
    let b = dir.join("e3b.xml").display().to_string();
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("stranded: none"), "{stdout}");
    // What new VMs lose and gain, as `level` says; RTM among the losses, nothing for migration.
    let before = names(&level_default(&[&a, &b]));
    let after = names(&level_default(&[&a, &updated]));
    let lost: BTreeSet<String> = before.difference(&after).cloned().collect();
    let gained: BTreeSet<String> = after.difference(&before).cloned().collect();
    assert!(lost.contains("rtm"), "{lost:?}");
    assert_eq!(feature_list(&plan_json["default"]["lost"]), lost);
    assert_eq!(feature_list(&plan_json["default"]["gained"]), gained);
    assert!(plan_json["acceptance"]["lost"].as_array().unwrap().is_empty(), "{}", plan_json["acceptance"]);
    // The VM on the updated host stays: `check` agrees.
    assert_eq!(check_mismatches(&pool, &updated), (0, BTreeSet::new()));
}

/// An update that takes a feature out of a host's max strands the VMs that booted with it: a
/// firmware update turning AES-NI off (an option of many servers' firmware), made on the real
/// Xeon Gold 6130 dump (CPUID 1 ECX bit 25 cleared). The VM on that host cannot stay, and the
/// plan names the feature and the host.
#[test]
fn update_removing_a_feature_from_max_strands() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("plan-aesni");
    let leaf1 = "eax_in='0x00000001' ecx_in='0x00' eax='0x00050654' ebx='0x29200800' ecx='0x7ffefbff'";
    let ((code, stdout, plan_json), pool, updated) =
        plan_update(&dumps, &dir, "Xeon-Gold-6130", ("gold1", "gold2"), leaf1, ("0x7ffefbff", "0x7dfefbff"));
    assert_eq!(code, 1, "{stdout}");
    let (_, missing) = check_mismatches(&pool, &updated);
    assert_eq!(missing, BTreeSet::from(["aesni".to_string()]));
    assert!(
        stdout
            .contains("vm2 (on gold2): its host gold2, once replaced, cannot keep it: features it cannot give: aesni"),
        "{stdout}"
    );
    assert!(stdout.contains("vm1 (on gold1): cannot migrate to gold2: features it cannot give: aesni"), "{stdout}");
    // Stranded first, the VM that cannot stay before the one shut out.
    let vms = plan_json["vms"].as_array().unwrap();
    assert_eq!(vms[0]["name"], "vm2");
    assert_eq!(vms[0]["strandings"][0]["kind"], "cannot-stay");
    assert_eq!(vms[0]["strandings"][0]["features"], serde_json::json!(["aesni"]));
    // gold2 was vm1's only other host.
    let kinds: Vec<&str> =
        vms[1]["strandings"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["nowhere-to-go", "shut-out"]);
    assert!(stdout.contains("vm1 (on gold1): no other host can take it (it could go to gold2 before)"), "{stdout}");
    assert!(feature_list(&plan_json["default"]["lost"]).contains("aesni"));
}

/// Placement over a fleet of copies: 12 hosts of 3 CPU models (and a fourth vendor) form 4
/// classes, and every VM's verdict on every host is what `check` says of that pair.
#[test]
fn placement_groups_classes_and_agrees_with_check() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("placement");
    let models = ["Xeon-Gold-6130", "Xeon-E5-2650-v4", "Xeon-W3520", "EPYC-7601-32-Core"];
    let mut hosts = Vec::new();
    for i in 0..12 {
        hosts.push((format!("h{i:02}"), host(&dumps, models[i % 4], &dir, &format!("h{i:02}"))));
    }
    let pool = pool_document(&[&hosts[0].1, &hosts[1].1], &dir, "pool.json");
    let vms = [
        ("a".to_string(), format!("{pool}@h00")),
        ("b".to_string(), format!("{}@h02", hosts[2].1)),
        ("c".to_string(), hosts[3].1.clone()),
        ("d".to_string(), format!("{pool}@h05")),
    ];
    let mut args = vec!["placement".to_string(), "--format".to_string(), "json".to_string()];
    for (_, path) in &hosts {
        args.extend(["--host".into(), path.clone()]);
    }
    for (name, spec) in &vms {
        args.extend(["--vm".into(), format!("{name}={spec}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cpupolicy(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let placement = json(&out);
    assert_eq!(placement["format"], "cpupolicy-placement");
    assert_eq!(placement["host_classes"].as_array().unwrap().len(), 4);
    assert_eq!(placement["vm_classes"].as_array().unwrap().len(), 3, "a and d booted on one policy");
    for (v, (name, spec)) in vms.iter().enumerate() {
        let vm = &placement["vms"][v];
        assert_eq!(vm["name"], name.as_str());
        let class = &placement["vm_classes"][vm["class"].as_u64().unwrap() as usize];
        let accepted: Vec<u64> = class["accepted_by"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
        let file = spec.split('@').next().unwrap();
        for (h, (_, path)) in hosts.iter().enumerate() {
            let host_class = placement["hosts"][h]["class"].as_u64().unwrap();
            let (code, _) = check_mismatches(file, path);
            assert_eq!(accepted.contains(&host_class), code == 0, "VM {name} on host h{h:02}");
        }
    }
    // The text and the matrix say the same.
    let mut matrix_args = args.clone();
    matrix_args[2] = "matrix";
    let matrix = text(&cpupolicy(&matrix_args).stdout);
    assert!(matrix.starts_with("   H1 H2 H3 H4\nV1 "), "{matrix}");
    assert!(matrix.contains("H1: h00 h04 h08\n"), "{matrix}");
    let mut text_args = args.clone();
    text_args[2] = "text";
    let out = text(&cpupolicy(&text_args).stdout);
    assert!(out.starts_with("12 hosts in 4 classes, 4 VMs in 3 classes (hvm guests)\n"), "{out}");
    assert!(out.contains("  V1 (2 VMs): a@h00 d@h05\n"), "{out}");
}

#[test]
fn bad_input_is_exit_2_naming_it() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("placement-bad");
    let a = host(&dumps, "Xeon-Gold-6130", &dir, "a");
    let b = host(&dumps, "Xeon-W3520", &dir, "b");
    let cases: [(&[&str], &str); 7] = [
        (&["placement", "--host", &a, "--vm", &format!("{b}@nowhere")], "'nowhere', which is not one of the hosts"),
        (&["placement", "--host", &a, "--host", &a], "two hosts are named 'a'"),
        (&["placement", "--host", &a, "--vm", &format!("x={a}"), "--vm", &format!("x={b}")], "two VMs are named 'x'"),
        (&["plan", "--host", &a, "--remove", "zz"], "--remove zz: no host of that name"),
        (&["plan", "--host", &a, "--remove", "a"], "leaves the pool without hosts"),
        (&["plan", "--host", &a, "--add", &a], "--add a: the pool already has a host of that name"),
        (&["plan", "--host", &a, "--replace", "a"], "--replace a: expected NAME=FILE"),
    ];
    for (args, message) in cases {
        let out = cpupolicy(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
    }
    let out = cpupolicy(&["plan", "--host", &a]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no change"), "{}", text(&out.stderr));
}

/// Hosts and VMs read from list files: an error about one names the list and its line; a
/// host list with no host in it is refused, not taken for an empty fleet.
#[test]
fn list_files_name_the_line_of_a_bad_entry() {
    let Some(dumps) = dumps() else { return };
    let dir = tempdir("placement-lists");
    let a = host(&dumps, "Xeon-Gold-6130", &dir, "a");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let empty = write("empty.txt", "# no hosts yet\n\n".into());
    let missing = write("missing.txt", format!("# hosts\n{a}\n\n{}\n", dir.join("gone.xml").display()));
    let twice = write("twice.txt", format!("{a}\n{a}\n"));
    let one = write("one.txt", format!("{a}\n"));
    let vms = write("vms.txt", format!("v1={a}@a\nv2={a}@nowhere\n"));
    let cases: [(&[&str], String); 5] = [
        (&["placement", "--hosts-from", &empty], format!("no hosts: {empty} lists none")),
        (&["plan", "--hosts-from", &empty, "--remove", "a"], format!("no hosts: {empty} lists none")),
        (&["placement", "--hosts-from", &missing], format!("{missing} line 4: {}", dir.join("gone.xml").display())),
        (&["placement", "--hosts-from", &twice], format!("{twice} line 2: two hosts are named 'a'")),
        (&["placement", "--hosts-from", &one, "--vms-from", &vms], format!("{vms} line 2: VM 'v2' runs on 'nowhere'")),
    ];
    for (args, message) in cases {
        let out = cpupolicy(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(&message), "{args:?}: {}", text(&out.stderr));
    }
    // The same lists without the bad entries are read.
    let out = cpupolicy(&["placement", "--hosts-from", &one, "--vms-from", &write("good.txt", format!("v1={a}@a\n"))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
