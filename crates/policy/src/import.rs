//! Reading any supported input, telling its format from its first bytes.

use std::fmt;

use crate::{
    CpuPolicy, HostBundle, JsonError, LibvirtError, TextError, XenCpuidReport, HOST_BUNDLE_FORMAT, JSON_VERSION,
    POLICY_FORMAT, POOL_FORMAT,
};

/// A document in one of the formats this crate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
// A document is parsed once and taken apart at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Document {
    /// One policy: a JSON policy document, or a libvirt dump (a raw policy).
    Policy {
        /// The policy.
        policy: CpuPolicy,
        /// Where it came from.
        format: InputFormat,
    },
    /// A JSON host bundle.
    Bundle(Box<HostBundle>),
    /// `xen-cpuid -p` output.
    XenCpuid(XenCpuidReport),
}

/// The formats [`Document::parse`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    /// A `cpupolicy-policy` JSON document.
    PolicyJson,
    /// A `cpupolicy-host` JSON document.
    HostBundleJson,
    /// `xen-cpuid -p` text.
    XenCpuid,
    /// A libvirt `<cpudata>` dump.
    Libvirt,
    /// A `cpupolicy-pool` JSON document (`cpupolicy level --format json`): one of its two
    /// policies, the default unless [`PoolPolicy::Acceptance`] was asked for.
    PoolJson(PoolPolicy),
}

/// Which policy of a pool document stands for the pool where one policy is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PoolPolicy {
    /// What new VMs boot with.
    #[default]
    Default,
    /// What every host of the pool accepts from a migration.
    Acceptance,
}

impl PoolPolicy {
    /// The document's key for it.
    pub const fn key(self) -> &'static str {
        match self {
            PoolPolicy::Default => "default",
            PoolPolicy::Acceptance => "acceptance",
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::PolicyJson => "JSON policy",
            InputFormat::HostBundleJson => "JSON host bundle",
            InputFormat::XenCpuid => "xen-cpuid -p output",
            InputFormat::Libvirt => "libvirt CPU dump",
            InputFormat::PoolJson(which) => return write!(f, "JSON pool document ({} policy)", which.key()),
        })
    }
}

/// An input that is not any supported format, or not a valid document of the one it looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The first bytes match no format.
    #[error("cannot tell the format: expected JSON, xen-cpuid -p output or a libvirt <cpudata> dump")]
    UnknownFormat,
    /// JSON without a known `format`.
    #[error(
        "JSON document with \"format\" {0}; expected \"{POLICY_FORMAT}\", \"{HOST_BUNDLE_FORMAT}\" or \"{POOL_FORMAT}\""
    )]
    UnknownJsonFormat(String),
    /// A JSON document that is not valid.
    #[error("{format}: {source}")]
    Json {
        /// Which JSON document.
        format: InputFormat,
        /// What is wrong.
        source: JsonError,
    },
    /// `xen-cpuid` text that is not valid.
    #[error("xen-cpuid -p output: {0}")]
    XenCpuid(#[from] TextError),
    /// A libvirt dump that is not valid.
    #[error("libvirt CPU dump: {0}")]
    Libvirt(#[from] LibvirtError),
}

impl Document {
    /// Reads a JSON policy or host bundle (by its `format`), `xen-cpuid -p` text (its first
    /// line) or a libvirt dump (an XML element first).
    pub fn parse(text: &str) -> Result<Document, ImportError> {
        Document::parse_choosing(text, PoolPolicy::Default)
    }

    /// As [`Document::parse`], taking `which` policy of a pool document.
    pub fn parse_choosing(text: &str, which: PoolPolicy) -> Result<Document, ImportError> {
        let start = text.trim_start();
        if start.starts_with('{') {
            // Only the `format` is read here (the rest is skipped without being kept): a tree of
            // the whole document would take many times its size.
            #[derive(serde::Deserialize)]
            struct Header {
                format: Option<serde_json::Value>,
            }
            let header: Header = serde_json::from_str(text).map_err(|e| ImportError::Json {
                format: sniff_json_format(text, which),
                source: crate::json::syntax(e),
            })?;
            return match header.format.as_ref().and_then(|f| f.as_str()) {
                Some(POLICY_FORMAT) => CpuPolicy::from_json(text)
                    .map(|policy| Document::Policy { policy, format: InputFormat::PolicyJson })
                    .map_err(|source| ImportError::Json { format: InputFormat::PolicyJson, source }),
                Some(HOST_BUNDLE_FORMAT) => HostBundle::from_json(text)
                    .map(|bundle| Document::Bundle(Box::new(bundle)))
                    .map_err(|source| ImportError::Json { format: InputFormat::HostBundleJson, source }),
                Some(POOL_FORMAT) => {
                    let format = InputFormat::PoolJson(which);
                    let value: serde_json::Value = serde_json::from_str(text)
                        .map_err(|e| ImportError::Json { format, source: crate::json::syntax(e) })?;
                    pool_policy(&value, which)
                        .map(|policy| Document::Policy { policy, format })
                        .map_err(|source| ImportError::Json { format, source })
                }
                _ => Err(ImportError::UnknownJsonFormat(
                    header.format.map_or_else(|| "missing".to_string(), |f| f.to_string()),
                )),
            };
        }
        if start.starts_with('<') {
            let policy = CpuPolicy::from_libvirt_xml(text)?;
            return Ok(Document::Policy { policy, format: InputFormat::Libvirt });
        }
        let first = start.lines().next().unwrap_or("");
        if first.starts_with("Xen reports there are maximum ")
            || first.contains(" policy: ")
            || first.ends_with(" policy not supported by Xen")
        {
            return Ok(Document::XenCpuid(XenCpuidReport::parse(text)?));
        }
        Err(ImportError::UnknownFormat)
    }

    /// The format it was read from.
    pub fn format(&self) -> InputFormat {
        match self {
            Document::Policy { format, .. } => *format,
            Document::Bundle(_) => InputFormat::HostBundleJson,
            Document::XenCpuid(_) => InputFormat::XenCpuid,
        }
    }
}

/// The kind of a JSON document that does not parse, from its `format` string where one can be
/// seen (a truncated host bundle is still a host bundle): a policy otherwise.
fn sniff_json_format(text: &str, which: PoolPolicy) -> InputFormat {
    let quoted = |format: &str| text.contains(&format!("\"{format}\""));
    if quoted(HOST_BUNDLE_FORMAT) {
        InputFormat::HostBundleJson
    } else if quoted(POOL_FORMAT) {
        InputFormat::PoolJson(which)
    } else {
        InputFormat::PolicyJson
    }
}

/// One policy of a pool document: `DEFAULT_OR_ACCEPTANCE.policy`, itself a policy document.
/// The document is read as strictly as the other JSON documents: only the fields
/// [`crate::pool_json`] writes, each of its type, `kind` one of the guest kinds, and the chosen
/// section's `featureset` (when given) that of its policy.
fn pool_policy(value: &serde_json::Value, which: PoolPolicy) -> Result<CpuPolicy, JsonError> {
    use serde_json::Value;
    let entry = |path: &str, problem: String| JsonError::Entry { path: path.into(), problem };
    let fields = value.as_object().ok_or_else(|| entry("(document)", "is not a JSON object".into()))?;
    const FIELDS: [&str; 8] =
        ["format", "version", "kind", "hosts", "default", "acceptance", "host_reflected", "hazards"];
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(entry(unknown, format!("unknown field; a {POOL_FORMAT} document has {}", FIELDS.join(", "))));
    }
    match value.get("version") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (1..=u64::from(JSON_VERSION)).contains(&v)) => {}
        found => {
            let found = found
                .map_or_else(|| "missing".to_string(), |v| cpupolicy_featureset::excerpt(&v.to_string()).into_owned());
            return Err(entry(
                "version",
                format!("{found} is not a {POOL_FORMAT} version this reader knows (1 to {JSON_VERSION})"),
            ));
        }
    }
    if let Some(kind) = value.get("kind") {
        if !matches!(kind.as_str(), Some("pv" | "hvm" | "hvm-shadow")) {
            let kind = cpupolicy_featureset::excerpt(&kind.to_string()).into_owned();
            return Err(entry("kind", format!("{kind} is not a guest kind (\"pv\", \"hvm\", \"hvm-shadow\")")));
        }
    }
    for list in ["hosts", "host_reflected", "hazards"] {
        if value.get(list).is_some_and(|v| !v.is_array()) {
            return Err(entry(list, "is not a list".into()));
        }
    }
    let key = which.key();
    let section = value.get(key).ok_or_else(|| entry(key, "missing".into()))?;
    let section = section.as_object().ok_or_else(|| entry(key, "is not a JSON object".into()))?;
    if let Some(unknown) = section.keys().find(|k| !["featureset", "policy", "lost", "limits"].contains(&k.as_str())) {
        return Err(entry(
            &format!("{key}.{unknown}"),
            "unknown field; a pool policy has featureset, policy, lost, limits".into(),
        ));
    }
    let path = format!("{key}.policy");
    let policy = section.get("policy").ok_or_else(|| entry(&path, "missing".into()))?;
    let policy = CpuPolicy::from_json(&policy.to_string()).map_err(|e| entry(&path, e.to_string()))?;
    if let Some(featureset) = section.get("featureset") {
        let written = policy.featureset().to_xen_string();
        if featureset.as_str() != Some(written.as_str()) {
            let given = cpupolicy_featureset::excerpt(&featureset.to_string()).into_owned();
            return Err(entry(
                &format!("{key}.featureset"),
                format!("{given} is not the featureset of {key}.policy (\"{written}\")"),
            ));
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        let policy = CpuPolicy::new();
        assert_eq!(Document::parse(&policy.to_json()).unwrap().format(), InputFormat::PolicyJson);
        assert_eq!(Document::parse(&HostBundle::default().to_json()).unwrap().format(), InputFormat::HostBundleJson);
        let xml = "<cpudata arch='x86'>\n</cpudata>\n";
        assert_eq!(Document::parse(xml).unwrap().format(), InputFormat::Libvirt);
        assert!(matches!(Document::parse("{\"format\": \"other\"}"), Err(ImportError::UnknownJsonFormat(_))));
        assert!(matches!(Document::parse("hello"), Err(ImportError::UnknownFormat)));
        // A truncated document is named by the format it says it is.
        let bundle = HostBundle::default().to_json();
        let error = Document::parse(&bundle[..bundle.len() / 2]).unwrap_err();
        assert!(error.to_string().starts_with("JSON host bundle: "), "{error}");
        let text = "Raw policy not supported by Xen\n";
        assert_eq!(Document::parse(text).unwrap().format(), InputFormat::XenCpuid);
    }

    /// A pool document is read as strictly as the others: what `pool_json` writes reads back;
    /// an unknown field, a wrong type, an unknown kind or version, or a featureset that is not
    /// its policy's is refused, naming where.
    #[test]
    fn pool_documents_are_read_strictly() {
        let host = crate::PoolHost::from_single("a", CpuPolicy::new());
        let pool = crate::level_pool(std::slice::from_ref(&host), crate::LevelOptions::default());
        let pool = pool.unwrap_or_else(|e| panic!("{e}"));
        let written = crate::pool_json(&pool, &[host], cpupolicy_featureset::GuestKind::HvmHap, false, &[]).unwrap();
        assert!(Document::parse(&written.to_string()).is_ok());
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = written.clone();
            edit(&mut value);
            Document::parse(&value.to_string()).unwrap_err().to_string()
        };
        type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
        let refusals: [(Edit, &str); 8] = [
            (&|v| v["extra"] = 1.into(), "extra: unknown field"),
            (&|v| v["kind"] = "bogus".into(), "kind: \"bogus\" is not a guest kind"),
            (&|v| v["version"] = 2.into(), "version: 2 is not a cpupolicy-pool version"),
            (&|v| v["version"] = "1".into(), "version: \"1\" is not"),
            (&|v| v["hazards"] = 5.into(), "hazards: is not a list"),
            (&|v| v["default"]["featureset"] = "zz".into(), "default.featureset: \"zz\" is not the featureset"),
            (&|v| v["default"]["extra"] = 1.into(), "default.extra: unknown field"),
            (&|v| drop(v.as_object_mut().unwrap().remove("default")), "default: missing"),
        ];
        for (edit, expected) in refusals {
            let error = with(edit);
            assert!(error.contains(expected), "{error}");
        }
    }
}
