//! The JSON formats: round trips, and strict errors that name the entry.

use cpupolicy_policy::{
    CpuPolicy, CpuidKey, HostBundle, JsonError, LevellingCaps, Registers, SystemPolicy, XenVersion,
};

fn sample() -> CpuPolicy {
    let mut p = CpuPolicy::new();
    p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
    p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(0, 0x27ab, 0, 0x9c00_0000));
    p.set_cpuid(CpuidKey::indexed(0x1f, 1), Registers::new(5, 0x10, 0x201, 3));
    p.set_msr(0x10a, 0x0000_0001_0000_000b);
    p
}

fn policy_error(text: &str) -> String {
    CpuPolicy::from_json(text).unwrap_err().to_string()
}

#[test]
fn the_documented_layout_is_what_is_written() {
    let text = sample().to_json();
    let expected = r#"{
  "format": "cpupolicy-policy",
  "version": 1,
  "cpuid": [
    {"leaf": "0x00000000", "eax": "0x0000000d", "ebx": "0x756e6547", "ecx": "0x6c65746e", "edx": "0x49656e69"},
    {"leaf": "0x00000007", "subleaf": "0x0", "eax": "0x00000000", "ebx": "0x000027ab", "ecx": "0x00000000", "edx": "0x9c000000"},
    {"leaf": "0x0000001f", "subleaf": "0x1", "eax": "0x00000005", "ebx": "0x00000010", "ecx": "0x00000201", "edx": "0x00000003"}
  ],
  "msrs": [
    {"index": "0x10a", "value": "0x000000010000000b"}
  ]
}
"#;
    assert_eq!(text, expected);
}

#[test]
fn readers_accept_any_order_case_and_padding() {
    let text = r#"{"format": "cpupolicy-policy", "version": 1,
        "msrs": [{"value": "0x10000000B", "index": "0x10A"}],
        "cpuid": [
            {"leaf": "0x1f", "subleaf": "0x00000001", "eax": "0x5", "ebx": "0x10", "ecx": "0x201", "edx": "0x3"},
            {"leaf": "0x7", "subleaf": "0x0", "eax": "0x0", "ebx": "0x27AB", "ecx": "0x0", "edx": "0x9c000000"},
            {"leaf": "0x0", "eax": "0xd", "ebx": "0x756e6547", "ecx": "0x6c65746e", "edx": "0x49656e69"},
            {"leaf": "0x2", "eax": "0x0", "ebx": "0x0", "ecx": "0x0", "edx": "0x0"}
        ]}"#;
    assert_eq!(CpuPolicy::from_json(text).unwrap(), sample());
}

#[test]
fn header_errors() {
    let wrong = sample().to_json().replace("cpupolicy-policy", "cpupolicy-host");
    assert!(matches!(CpuPolicy::from_json(&wrong), Err(JsonError::WrongFormat { .. })));
    let newer = sample().to_json().replace("\"version\": 1", "\"version\": 2");
    assert_eq!(policy_error(&newer), "cpupolicy-policy version 2 is newer than this reader understands (up to 1)");
    let zero = sample().to_json().replace("\"version\": 1", "\"version\": 0");
    assert_eq!(policy_error(&zero), "cpupolicy-policy version 0 is not a version (they start at 1)");
    let missing = r#"{"format": "cpupolicy-policy", "version": 1, "cpuid": []}"#;
    assert!(policy_error(missing).contains("missing field `msrs`"), "{}", policy_error(missing));
}

#[test]
fn entry_errors_name_the_entry() {
    let text = sample().to_json();
    let cases = [
        (text.replace("\"ebx\": \"0x000027ab\"", "\"ebx\": \"27ab\""), "cpuid[1] (leaf 0x00000007:0x0): ebx: '27ab'"),
        (
            text.replace("\"eax\": \"0x00000005\"", "\"eax\": \"0x100000005\""),
            "cpuid[2] (leaf 0x0000001f:0x1): eax: '0x100000005'",
        ),
        (text.replace("\"leaf\": \"0x0000001f\"", "\"leaf\": \"0xzz\""), "cpuid[2]: leaf: '0xzz'"),
        (text.replace("\"subleaf\": \"0x1\"", "\"subleaf\": \"0xffffffff\""), "cpuid[2]: subleaf 0xffffffff is Xen's"),
        (
            text.replace("\"subleaf\": \"0x1\"", "\"subleaf\": \"0x0\"").replace("0x0000001f", "0x00000007"),
            "cpuid[2] (leaf 0x00000007:0x0): repeats cpuid[1]",
        ),
        (
            text.replace("\"value\": \"0x000000010000000b\"", "\"value\": \"0x10000000000000000\""),
            "msrs[0] (MSR 0x10a): value:",
        ),
        (text.replace("\"index\": \"0x10a\"", "\"index\": \"266\""), "msrs[0]: index: '266'"),
    ];
    for (bad, expected) in cases {
        let error = policy_error(&bad);
        assert!(error.starts_with(expected), "{error}\n  expected to start with: {expected}");
    }
    let unknown = text.replace("\"edx\": \"0x9c000000\"", "\"edx\": \"0x9c000000\", \"esx\": \"0x0\"");
    let error = policy_error(&unknown);
    assert!(error.contains("unknown field `esx`") && error.contains("line 6"), "{error}");
    let repeated_msr = text.replace(
        "{\"index\": \"0x10a\", \"value\": \"0x000000010000000b\"}",
        "{\"index\": \"0x10a\", \"value\": \"0x1\"}, {\"index\": \"0x10A\", \"value\": \"0x2\"}",
    );
    assert!(policy_error(&repeated_msr).starts_with("msrs[1] (MSR 0x10a): repeats msrs[0]"));
}

#[test]
fn host_bundles_round_trip_with_their_metadata() {
    let mut bundle = HostBundle {
        xen_version: Some(XenVersion::new(4, 20, ".3-\"quoted\"")),
        sysctl_interface_version: Some(0x15),
        domctl_interface_version: Some(0x17),
        max_leaves: Some(120),
        max_msrs: Some(2),
        levelling_caps: Some(LevellingCaps::Sysctl(0x1fe)),
        mxcsr_mask: Some(0x2ffff),
        ..HostBundle::default()
    };
    bundle.policies.set(SystemPolicy::Raw, Some(sample()));
    bundle.policies.set(SystemPolicy::HvmMax, Some(CpuPolicy::new()));
    let text = bundle.to_json();
    assert!(text.contains("\"sysctl_interface_version\": \"0x15\""), "{text}");
    assert!(text.contains("\"levelling_caps\": \"0x1fe\""), "{text}");
    assert!(text.contains("\"mxcsr_mask\": \"0x2ffff\""), "{text}");
    let bad_mask = text.replace("\"0x2ffff\"", "\"ffff\"");
    let error = HostBundle::from_json(&bad_mask).unwrap_err().to_string();
    assert!(error.contains("mxcsr_mask"), "{error}");
    let mut without_sysctl = bundle.clone();
    without_sysctl.levelling_caps = Some(LevellingCaps::NoSysctl);
    assert_eq!(HostBundle::from_json(&without_sysctl.to_json()).unwrap(), without_sysctl);
    assert!(text.find("\"raw\"").unwrap() < text.find("\"hvm_max\"").unwrap());
    assert_eq!(HostBundle::from_json(&text).unwrap(), bundle);
    // serde sees the same document.
    let via_serde: HostBundle = serde_json::from_str(&serde_json::to_string(&bundle).unwrap()).unwrap();
    assert_eq!(via_serde, bundle);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value, serde_json::to_value(&bundle).unwrap());
}

#[test]
fn host_bundle_errors_name_the_policy() {
    let mut bundle = HostBundle::default();
    bundle.policies.set(SystemPolicy::PvDefault, Some(sample()));
    let text = bundle.to_json();
    let bad = text.replace("\"ebx\": \"0x000027ab\"", "\"ebx\": \"0xg\"");
    let error = HostBundle::from_json(&bad).unwrap_err().to_string();
    assert!(error.starts_with("policies.pv_default.cpuid[1] (leaf 0x00000007:0x0): ebx:"), "{error}");
    let renamed = text.replace("\"pv_default\"", "\"pv\"");
    let error = HostBundle::from_json(&renamed).unwrap_err().to_string();
    assert!(error.contains("unknown field `pv`"), "{error}");
    let bad_version = text.replace("\"version\": 1,", "\"version\": 1, \"sysctl_interface_version\": \"21\",");
    let error = HostBundle::from_json(&bad_version).unwrap_err().to_string();
    assert!(error.starts_with("sysctl_interface_version: '21'"), "{error}");
    assert!(matches!(HostBundle::from_json(&sample().to_json()), Err(JsonError::WrongFormat { .. })));
}

#[test]
fn policies_embed_in_other_serde_documents() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Vm {
        name: String,
        policy: CpuPolicy,
    }
    let vm = Vm { name: "vm1".into(), policy: sample() };
    let text = serde_json::to_string(&vm).unwrap();
    assert_eq!(serde_json::from_str::<Vm>(&text).unwrap(), vm);
    let bad = text.replace("0x000027ab", "0x27ab0000000");
    let error = serde_json::from_str::<Vm>(&bad).unwrap_err().to_string();
    assert!(error.contains("cpuid[1] (leaf 0x00000007:0x0): ebx:"), "{error}");
}
