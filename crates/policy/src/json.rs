//! This project's JSON formats: one policy, and a host bundle of system policies.
//!
//! The format is specified in `docs/json-format.md` (included below); this module is the only
//! reader and writer. Numbers that can exceed 32 bits are hex strings, which OCaml and
//! JavaScript toolstacks read without losing precision and people read more easily. Parsing is
//! strict: unknown fields, malformed hex, duplicate entries and unknown policy names are
//! errors that name the entry.
#![doc = include_str!("../docs/json-format.md")]

use std::fmt::Write as _;

use cpupolicy_featureset::excerpt;
use serde::{Deserialize, Serialize};

use crate::pv_leak::{Levelling, LevellingCaps};
use crate::{
    CpuPolicy, CpuidKey, Registers, SystemPolicies, SystemPolicy, WireLimits, XenVersion, XEN_CPUID_NO_SUBLEAF,
};

/// The `format` of a single-policy document.
pub const POLICY_FORMAT: &str = "cpupolicy-policy";
/// The `format` of a host bundle document.
pub const HOST_BUNDLE_FORMAT: &str = "cpupolicy-host";
/// The `format` of a levelled pool document (`cpupolicy level --format json`).
pub const POOL_FORMAT: &str = "cpupolicy-pool";
/// The format version this crate writes, and the newest it reads.
pub const JSON_VERSION: u32 = 1;

/// A JSON document that is not a valid policy or bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, or not the document's shape (serde_json's message, with line and column).
    #[error("{0}")]
    Syntax(String),
    /// The `format` field names another document kind.
    #[error("\"format\" is \"{found}\"; expected \"{expected}\"")]
    WrongFormat {
        /// The format wanted.
        expected: &'static str,
        /// The format found.
        found: String,
    },
    /// A version of the format this reader does not know: newer than it, or 0 (never written).
    #[error("{format} version {found} is {}", if *.found == 0 { "not a version (they start at 1)".to_string() } else { format!("newer than this reader understands (up to {supported})") })]
    UnsupportedVersion {
        /// The document kind.
        format: &'static str,
        /// The version found.
        found: u32,
        /// The newest this reader knows.
        supported: u32,
    },
    /// One entry is wrong.
    #[error("{path}: {problem}")]
    Entry {
        /// Where: `cpuid[3] (leaf 0x00000007:0x1)`, `policies.hvm_max.msrs[0]`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The system policies of one host, with what they came from: the unit a toolstack stores per
/// host and levels pools from.
///
/// Fields later work fills (levelling capabilities, featuresets as the sysctl reports them)
/// join as further `Option`s, read as absent from older documents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HostBundleJson", into = "HostBundleJson")]
pub struct HostBundle {
    /// The hypervisor's version (`XENVER_version`, `XENVER_extraversion`).
    pub xen_version: Option<XenVersion>,
    /// `XEN_SYSCTL_INTERFACE_VERSION` the policies were fetched with.
    pub sysctl_interface_version: Option<u32>,
    /// `XEN_DOMCTL_INTERFACE_VERSION` of the same hypervisor.
    pub domctl_interface_version: Option<u32>,
    /// The most CPUID leaves the hypervisor reported its policies can hold.
    pub max_leaves: Option<u32>,
    /// The most MSRs the hypervisor reported its policies can hold.
    pub max_msrs: Option<u32>,
    /// The policies Xen provided (an absent one: not supported by that Xen).
    pub policies: SystemPolicies,
    /// What `XEN_SYSCTL_get_cpu_levelling_caps` said; `None` when not recorded.
    pub levelling_caps: Option<LevellingCaps>,
    /// The MXCSR mask FXSAVE reports on the host (which MXCSR bits `LDMXCSR` accepts, e.g.
    /// DAZ, AMD's MM); `None` when not recorded. No CPUID bit describes it, so no policy can
    /// level it: hosts that differ are a hazard for migrating guests.
    pub mxcsr_mask: Option<u32>,
}

impl HostBundle {
    /// The wire format limits of the Xen these policies came from: from the reported maxima,
    /// else from the version, else the newest.
    pub fn wire_limits(&self) -> WireLimits {
        let from_maxima = match (self.max_leaves, self.max_msrs) {
            (Some(leaves), Some(msrs)) => WireLimits::from_maxima(leaves, msrs),
            _ => None,
        };
        from_maxima.or_else(|| self.xen_version.as_ref().and_then(WireLimits::for_xen)).unwrap_or(WireLimits::LATEST)
    }

    /// The host's levelling capabilities, when the bundle recorded them (read with the host
    /// policy's PLATFORM_INFO, or the raw policy's when there is no host policy).
    pub fn levelling(&self) -> Option<Levelling> {
        let caps = self.levelling_caps?;
        let host = self.policies.get(SystemPolicy::Host).or_else(|| self.policies.get(SystemPolicy::Raw))?;
        Some(Levelling::new(caps, host))
    }

    /// The bundle as a JSON document (one CPUID entry per line).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{{\n  \"format\": \"{HOST_BUNDLE_FORMAT}\",\n  \"version\": {JSON_VERSION},");
        if let Some(version) = &self.xen_version {
            let extra = serde_json::to_string(&version.extra).unwrap_or_else(|_| "\"\"".into());
            let _ = writeln!(
                out,
                "  \"xen\": {{\"major\": {}, \"minor\": {}, \"extra\": {extra}}},",
                version.major, version.minor
            );
        }
        if let Some(v) = self.sysctl_interface_version {
            let _ = writeln!(out, "  \"sysctl_interface_version\": \"{v:#x}\",");
        }
        if let Some(v) = self.domctl_interface_version {
            let _ = writeln!(out, "  \"domctl_interface_version\": \"{v:#x}\",");
        }
        if let Some(v) = self.max_leaves {
            let _ = writeln!(out, "  \"max_leaves\": {v},");
        }
        if let Some(v) = self.max_msrs {
            let _ = writeln!(out, "  \"max_msrs\": {v},");
        }
        match self.levelling_caps {
            Some(LevellingCaps::Sysctl(bits)) => {
                let _ = writeln!(out, "  \"levelling_caps\": \"{bits:#x}\",");
            }
            Some(LevellingCaps::NoSysctl) => {
                let _ = writeln!(out, "  \"levelling_caps\": \"absent\",");
            }
            None => {}
        }
        if let Some(mask) = self.mxcsr_mask {
            let _ = writeln!(out, "  \"mxcsr_mask\": \"{mask:#x}\",");
        }
        out.push_str("  \"policies\": {");
        let mut first = true;
        for (which, policy) in self.policies.iter() {
            out.push_str(if first { "\n" } else { ",\n" });
            first = false;
            let _ = writeln!(out, "    \"{}\": {{", which.name());
            write_entries(&mut out, policy, "      ");
            out.push_str("\n    }");
        }
        out.push_str(if first { "}\n}\n" } else { "\n  }\n}\n" });
        out
    }

    /// Reads a bundle document, strictly.
    pub fn from_json(text: &str) -> Result<HostBundle, JsonError> {
        check_document_header(HOST_BUNDLE_FORMAT, text)?;
        let raw: HostBundleJson = serde_json::from_str(text).map_err(syntax)?;
        HostBundle::try_from(raw)
    }
}

impl CpuPolicy {
    /// The policy as a JSON document (one CPUID entry per line).
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\n  \"format\": \"{POLICY_FORMAT}\",\n  \"version\": {JSON_VERSION},\n");
        write_entries(&mut out, self, "  ");
        out.push_str("\n}\n");
        out
    }

    /// Reads a policy document, strictly.
    pub fn from_json(text: &str) -> Result<CpuPolicy, JsonError> {
        check_document_header(POLICY_FORMAT, text)?;
        let raw: PolicyDocumentJson = serde_json::from_str(text).map_err(syntax)?;
        CpuPolicy::try_from(raw)
    }
}

/// `"cpuid": [...],\n"msrs": [...]` at `indent`, without a trailing newline.
fn write_entries(out: &mut String, policy: &CpuPolicy, indent: &str) {
    let _ = write!(out, "{indent}\"cpuid\": [");
    for (i, (key, r)) in policy.cpuid_entries().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = write!(out, "{indent}  {{\"leaf\": \"{:#010x}\"", key.leaf);
        if let Some(subleaf) = key.subleaf {
            let _ = write!(out, ", \"subleaf\": \"{subleaf:#x}\"");
        }
        let _ = write!(
            out,
            ", \"eax\": \"{:#010x}\", \"ebx\": \"{:#010x}\", \"ecx\": \"{:#010x}\", \"edx\": \"{:#010x}\"}}",
            r.eax, r.ebx, r.ecx, r.edx
        );
    }
    if policy.cpuid_len() > 0 {
        let _ = write!(out, "\n{indent}");
    }
    let _ = write!(out, "],\n{indent}\"msrs\": [");
    for (i, (index, value)) in policy.msrs().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = write!(out, "{indent}  {{\"index\": \"{index:#x}\", \"value\": \"{value:#018x}\"}}");
    }
    if policy.msrs().len() > 0 {
        let _ = write!(out, "\n{indent}");
    }
    out.push(']');
}

impl Serialize for CpuPolicy {
    /// The single-policy document.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = PolicyBodyJson::from(self);
        PolicyDocumentJson { format: POLICY_FORMAT.into(), version: JSON_VERSION, cpuid: body.cpuid, msrs: body.msrs }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CpuPolicy {
    /// The single-policy document, strictly.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<CpuPolicy, D::Error> {
        let raw = PolicyDocumentJson::deserialize(deserializer)?;
        CpuPolicy::try_from(raw).map_err(serde::de::Error::custom)
    }
}

// The documents as serde sees them: strings where the model has numbers, checked on conversion.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuidJson {
    leaf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subleaf: Option<String>,
    eax: String,
    ebx: String,
    ecx: String,
    edx: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MsrJson {
    index: String,
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBodyJson {
    cpuid: Vec<CpuidJson>,
    msrs: Vec<MsrJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDocumentJson {
    format: String,
    version: u32,
    cpuid: Vec<CpuidJson>,
    msrs: Vec<MsrJson>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SystemPoliciesJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<PolicyBodyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<PolicyBodyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pv_max: Option<PolicyBodyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hvm_max: Option<PolicyBodyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pv_default: Option<PolicyBodyJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hvm_default: Option<PolicyBodyJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostBundleJson {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xen: Option<XenVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sysctl_interface_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domctl_interface_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_leaves: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_msrs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    levelling_caps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mxcsr_mask: Option<String>,
    policies: SystemPoliciesJson,
}

impl SystemPoliciesJson {
    fn slot(&mut self, which: SystemPolicy) -> &mut Option<PolicyBodyJson> {
        match which {
            SystemPolicy::Raw => &mut self.raw,
            SystemPolicy::Host => &mut self.host,
            SystemPolicy::PvMax => &mut self.pv_max,
            SystemPolicy::HvmMax => &mut self.hvm_max,
            SystemPolicy::PvDefault => &mut self.pv_default,
            SystemPolicy::HvmDefault => &mut self.hvm_default,
        }
    }
}

impl From<&CpuPolicy> for PolicyBodyJson {
    fn from(policy: &CpuPolicy) -> PolicyBodyJson {
        PolicyBodyJson {
            cpuid: policy
                .cpuid_entries()
                .map(|(key, r)| CpuidJson {
                    leaf: format!("{:#010x}", key.leaf),
                    subleaf: key.subleaf.map(|s| format!("{s:#x}")),
                    eax: format!("{:#010x}", r.eax),
                    ebx: format!("{:#010x}", r.ebx),
                    ecx: format!("{:#010x}", r.ecx),
                    edx: format!("{:#010x}", r.edx),
                })
                .collect(),
            msrs: policy
                .msrs()
                .map(|(index, value)| MsrJson { index: format!("{index:#x}"), value: format!("{value:#018x}") })
                .collect(),
        }
    }
}

impl TryFrom<PolicyDocumentJson> for CpuPolicy {
    type Error = JsonError;

    fn try_from(raw: PolicyDocumentJson) -> Result<CpuPolicy, JsonError> {
        check_header(POLICY_FORMAT, &raw.format, raw.version)?;
        policy_from_body(PolicyBodyJson { cpuid: raw.cpuid, msrs: raw.msrs }, "")
    }
}

impl From<HostBundle> for HostBundleJson {
    fn from(bundle: HostBundle) -> HostBundleJson {
        let mut policies = SystemPoliciesJson::default();
        for (which, policy) in bundle.policies.iter() {
            *policies.slot(which) = Some(PolicyBodyJson::from(policy));
        }
        HostBundleJson {
            format: HOST_BUNDLE_FORMAT.into(),
            version: JSON_VERSION,
            xen: bundle.xen_version,
            sysctl_interface_version: bundle.sysctl_interface_version.map(|v| format!("{v:#x}")),
            domctl_interface_version: bundle.domctl_interface_version.map(|v| format!("{v:#x}")),
            max_leaves: bundle.max_leaves,
            max_msrs: bundle.max_msrs,
            levelling_caps: bundle.levelling_caps.map(|caps| match caps {
                LevellingCaps::Sysctl(bits) => format!("{bits:#x}"),
                LevellingCaps::NoSysctl => "absent".into(),
            }),
            mxcsr_mask: bundle.mxcsr_mask.map(|mask| format!("{mask:#x}")),
            policies,
        }
    }
}

impl TryFrom<HostBundleJson> for HostBundle {
    type Error = JsonError;

    fn try_from(mut raw: HostBundleJson) -> Result<HostBundle, JsonError> {
        check_header(HOST_BUNDLE_FORMAT, &raw.format, raw.version)?;
        let interface = |field: &str, text: &Option<String>| -> Result<Option<u32>, JsonError> {
            text.as_deref()
                .map(|t| parse_hex(t, 8).map(|v| v as u32).map_err(|problem| entry_error(field, problem)))
                .transpose()
        };
        let mut bundle = HostBundle {
            xen_version: raw.xen.take(),
            sysctl_interface_version: interface("sysctl_interface_version", &raw.sysctl_interface_version)?,
            domctl_interface_version: interface("domctl_interface_version", &raw.domctl_interface_version)?,
            max_leaves: raw.max_leaves,
            max_msrs: raw.max_msrs,
            policies: SystemPolicies::new(),
            levelling_caps: match raw.levelling_caps.as_deref() {
                None => None,
                Some("absent") => Some(LevellingCaps::NoSysctl),
                Some(text) => Some(LevellingCaps::Sysctl(
                    parse_hex(text, 8).map_err(|problem| entry_error("levelling_caps", problem))? as u32,
                )),
            },
            mxcsr_mask: interface("mxcsr_mask", &raw.mxcsr_mask)?,
        };
        for which in SystemPolicy::ALL {
            if let Some(body) = raw.policies.slot(which).take() {
                let policy = policy_from_body(body, &format!("policies.{}.", which.name()))?;
                bundle.policies.set(which, Some(policy));
            }
        }
        Ok(bundle)
    }
}

/// Checks `format` and `version` before the rest, so a document of the other kind is named as
/// such rather than reported for its first unexpected field.
fn check_document_header(expected: &'static str, text: &str) -> Result<(), JsonError> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        version: Option<u32>,
    }
    match serde_json::from_str::<Header>(text) {
        Ok(Header { format: Some(format), version: Some(version) }) => check_header(expected, &format, version),
        // Missing or mistyped: the full parse reports it with its position.
        _ => Ok(()),
    }
}

fn check_header(expected: &'static str, format: &str, version: u32) -> Result<(), JsonError> {
    if format != expected {
        return Err(JsonError::WrongFormat { expected, found: format.to_string() });
    }
    if version == 0 || version > JSON_VERSION {
        return Err(JsonError::UnsupportedVersion { format: expected, found: version, supported: JSON_VERSION });
    }
    Ok(())
}

fn entry_error(path: impl Into<String>, problem: impl Into<String>) -> JsonError {
    JsonError::Entry { path: path.into(), problem: problem.into() }
}

/// The model from one `{"cpuid": [...], "msrs": [...]}`; `prefix` locates it in the document.
fn policy_from_body(body: PolicyBodyJson, prefix: &str) -> Result<CpuPolicy, JsonError> {
    let mut cpuid: Vec<(CpuidKey, Registers, usize)> = Vec::with_capacity(body.cpuid.len());
    for (i, entry) in body.cpuid.iter().enumerate() {
        let mut path = format!("{prefix}cpuid[{i}]");
        let leaf = parse_hex(&entry.leaf, 8).map_err(|p| entry_error(&path, format!("leaf: {p}")))? as u32;
        let subleaf = match &entry.subleaf {
            None => None,
            Some(text) => {
                let subleaf = parse_hex(text, 8).map_err(|p| entry_error(&path, format!("subleaf: {p}")))? as u32;
                if subleaf == XEN_CPUID_NO_SUBLEAF {
                    return Err(entry_error(
                        &path,
                        "subleaf 0xffffffff is Xen's \"no sub-leaf\" marker; leave \"subleaf\" out instead",
                    ));
                }
                Some(subleaf)
            }
        };
        let key = CpuidKey::new(leaf, subleaf);
        path = format!("{path} (leaf {key})");
        let mut values = [0u32; 4];
        for (value, (name, text)) in
            values.iter_mut().zip([("eax", &entry.eax), ("ebx", &entry.ebx), ("ecx", &entry.ecx), ("edx", &entry.edx)])
        {
            *value = parse_hex(text, 8).map_err(|p| entry_error(&path, format!("{name}: {p}")))? as u32;
        }
        cpuid.push((key, Registers::from_array(values), i));
    }
    cpuid.sort_by_key(|(key, _, _)| *key);
    if let Some(pair) = cpuid.windows(2).find(|w| w[0].0 == w[1].0) {
        let (first, second) = (pair[0].2.min(pair[1].2), pair[0].2.max(pair[1].2));
        return Err(entry_error(
            format!("{prefix}cpuid[{second}] (leaf {})", pair[0].0),
            format!("repeats {prefix}cpuid[{first}]"),
        ));
    }

    let mut msrs: Vec<(u32, u64, usize)> = Vec::with_capacity(body.msrs.len());
    for (i, entry) in body.msrs.iter().enumerate() {
        let path = format!("{prefix}msrs[{i}]");
        let index = parse_hex(&entry.index, 8).map_err(|p| entry_error(&path, format!("index: {p}")))? as u32;
        let path = format!("{path} (MSR {index:#x})");
        let value = parse_hex(&entry.value, 16).map_err(|p| entry_error(&path, format!("value: {p}")))?;
        msrs.push((index, value, i));
    }
    msrs.sort_by_key(|(index, _, _)| *index);
    if let Some(pair) = msrs.windows(2).find(|w| w[0].0 == w[1].0) {
        let (first, second) = (pair[0].2.min(pair[1].2), pair[0].2.max(pair[1].2));
        return Err(entry_error(
            format!("{prefix}msrs[{second}] (MSR {:#x})", pair[0].0),
            format!("repeats {prefix}msrs[{first}]"),
        ));
    }

    Ok(CpuPolicy::from_sorted_parts(
        cpuid.into_iter().filter(|(_, r, _)| !r.is_zero()).map(|(k, r, _)| (k, r)).collect(),
        msrs.into_iter().filter(|(_, v, _)| *v != 0).map(|(i, v, _)| (i, v)).collect(),
    ))
}

/// serde_json's message as a [`JsonError::Syntax`], with each name or string it quotes (in
/// backticks or double quotes) cut to an [`excerpt`]: an unknown key a megabyte long makes a
/// readable message.
pub(crate) fn syntax(error: serde_json::Error) -> JsonError {
    let message = error.to_string();
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message.as_str();
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=open]);
        let inside = &rest[open + 1..];
        match inside.find(quote) {
            Some(close) => {
                out.push_str(&excerpt(&inside[..close]));
                out.push(quote);
                rest = &inside[close + 1..];
            }
            None => {
                out.push_str(&excerpt(inside));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    JsonError::Syntax(out)
}

/// `0x` followed by 1 to `max_digits` hex digits.
pub(crate) fn parse_hex(text: &str, max_digits: usize) -> Result<u64, String> {
    let digits = text
        .strip_prefix("0x")
        .filter(|d| !d.is_empty() && d.len() <= max_digits && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("'{}' is not \"0x\" and 1 to {max_digits} hex digits", excerpt(text)))?;
    u64::from_str_radix(digits, 16).map_err(|_| format!("'{}' is not hexadecimal", excerpt(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 1, 2, 3));
        p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(2, 0x209, 0, 0));
        p.set_msr(0x10a, 0xffff_ffff_0000_0001);
        p
    }

    #[test]
    fn policy_json_round_trips() {
        let p = sample();
        let text = p.to_json();
        assert_eq!(CpuPolicy::from_json(&text).unwrap(), p);
        let via_serde: CpuPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(via_serde, p);
        assert!(text.contains(r#"{"leaf": "0x00000007", "subleaf": "0x0", "eax": "0x00000002""#), "{text}");
    }

    #[test]
    fn empty_policy_is_valid_json() {
        let text = CpuPolicy::new().to_json();
        assert_eq!(CpuPolicy::from_json(&text).unwrap(), CpuPolicy::new());
        let bundle = HostBundle::default();
        assert_eq!(HostBundle::from_json(&bundle.to_json()).unwrap(), bundle);
    }

    #[test]
    fn hex_is_strict() {
        assert_eq!(parse_hex("0x1f", 8), Ok(0x1f));
        assert_eq!(parse_hex("0xFFFFFFFF", 8), Ok(0xffff_ffff));
        for bad in ["1f", "0x", "0x123456789", "0x1g", " 0x1", "0X1"] {
            assert!(parse_hex(bad, 8).is_err(), "{bad}");
        }
    }
}
