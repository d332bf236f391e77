//! The `cpupolicy` binary's featureset commands, run as an operator would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn cpupolicy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cpupolicy")).args(args).output().expect("run cpupolicy")
}

fn reference(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/xen-reference").join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(_) => {
            eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", path.display());
            None
        }
    }
}

fn line_value<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(label)).and_then(|l| l.split_whitespace().last()).expect(label)
}

#[test]
fn masks_within_xen_4_20_known_print_exactly_what_xen_cpuid_prints() {
    let Some(text) = reference("xen-4.20-qemu64.featuresets.txt") else { return };
    let out = cpupolicy(&["masks", "--within", line_value(&text, "Known")]);
    assert!(out.status.success());
    let static_part: String = text.split_inclusive('\n').take(13).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), static_part);
}

#[test]
fn masks_json_lists_every_mask_by_name() {
    let out = cpupolicy(&["masks", "--format", "json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["nr_words"], 19);
    for key in ["known", "special", "accumulate", "pv-default", "pv-max", "hvm-hap-max", "hvm-shadow-default"] {
        assert!(json[key]["featureset"].as_str().unwrap().contains(':'), "{key}");
    }
    let accumulate: Vec<&str> =
        json["accumulate"]["features"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(accumulate, ["no-lmsl", "md-clear", "fs-gs-ns", "verw-clear", "fb-clear", "rfds-clear"]);
}

#[test]
fn decode_names_every_bit_of_xen_dynamic_sets() {
    let Some(text) = reference("xen-4.20-qemu64.featuresets.txt") else { return };
    let dynamic = text.split("Dynamic sets:").nth(1).unwrap();
    let hvm_max = line_value(dynamic, "HVM Max");
    let out = cpupolicy(&["decode", hvm_max]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!("Featureset                      {hvm_max}\n")));
    assert!(stdout.contains("  [00] CPUID 0x00000001.edx     fpu de pse tsc msr pae mce cx8 apic sep"), "{stdout}");
    // Xen offers guests only named features: nothing decodes as an unknown bit.
    assert!(!stdout.contains('<'), "{stdout}");
    assert_eq!(stdout.lines().count(), 1 + 19);
}

#[test]
fn decode_json_and_dash_form() {
    let out = cpupolicy(&["decode", "--format", "json", "00000201-00000000-00000000-00000001"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["words"][0]["features"], serde_json::json!(["fpu", "apic"]));
    assert_eq!(json[0]["words"][3]["name"], "e1c");
    assert_eq!(json[0]["words"][3]["features"], serde_json::json!(["lahf-lm"]));
}

#[test]
fn bad_input_exits_2_naming_the_token_without_output() {
    for (input, expected) in [
        ("178bfbfd:zz", "'zz' is not hexadecimal"),
        ("123456789", "'123456789' is wider than 32 bits"),
        ("1::2", "word 1 is empty"),
    ] {
        let out = cpupolicy(&["decode", "1", input]);
        assert_eq!(out.status.code(), Some(2), "{input}");
        assert!(out.stdout.is_empty(), "nothing printed before the error");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(expected), "{input}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    // One word beyond the 2048 a featureset may have (the words 16-bit feature indices name).
    let many = vec!["0"; 2049].join(":");
    let out = cpupolicy(&["decode", &many]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("2049 words"));
    let out = cpupolicy(&["masks", "--within", "nothex"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("'nothex'"));
    let out = cpupolicy(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `level --featuresets` refuses the options that only mean something for whole policies (a
/// featureset is one kind's already, has no vendor, and tells no leak or host-reflected
/// difference), rather than ignoring them.
#[test]
fn level_featuresets_refuses_policy_options() {
    let (a, b) = ("178bfbff-80002001", "178bfbfd-80002001");
    for option in [&["--strict"][..], &["--cross-vendor"], &["--kind", "pv"]] {
        let mut args = vec!["level", "--featuresets"];
        args.extend(option);
        args.extend([a, b]);
        let out = cpupolicy(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot be used with") && stderr.contains(option[0]), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Without them the same featuresets level (vme lacked by the second).
    let out = cpupolicy(&["level", "--featuresets", a, b]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("178bfbfd-"));
}
