//! A levelled pool as people and programs read it: the explanation of what levelling cost, the
//! hazards levelling cannot hide (PV leak-through per host, host-reflected differences), and
//! the JSON document of the whole pool. The command line and the C API print the same text.

use cpupolicy_featureset::{FeatureId, GuestKind};
use serde_json::{json, Value};

use crate::host_set::HostSet;
use crate::level::{feature_name, Levelled, LevelledPool, LossCause, PoolHost};

/// Something about a pool that levelling cannot fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hazard {
    /// The features a PV guest with the pool's default policy sees anyway from user space on
    /// this host (empty: checked, nothing leaks), and the host's levelling mechanism.
    LeakThrough {
        /// The host's name.
        host: String,
        /// How the host levels CPUID (its [`Levelling`](crate::Levelling), displayed).
        mechanism: String,
        /// What leaks.
        features: Vec<FeatureId>,
    },
    /// The host's levelling capabilities (or raw policy) are not known, so leak-through to PV
    /// guests is not judged.
    UnknownLevelling {
        /// The host's name.
        host: String,
    },
    /// Hosts whose FXSAVE MXCSR masks differ: a guest may set an MXCSR bit (DAZ, AMD's MM)
    /// one host accepts and another faults on (`#GP` in `LDMXCSR`/`FXRSTOR`/`XRSTOR`); no
    /// CPUID bit describes it, so no policy can hide it.
    MxcsrMask {
        /// Each known mask and the hosts that report it, widest mask first.
        masks: Vec<(u32, Vec<String>)>,
    },
    /// A host-reflected bit on which hosts differ: guests see it change on migration.
    Reflected {
        /// The bit.
        feature: FeatureId,
        /// The hosts that set it.
        with: Vec<String>,
        /// The hosts that do not.
        without: Vec<String>,
    },
}

impl Hazard {
    /// Whether a guest would really see something the policy does not say (not the case for
    /// "nothing leaks" and for unknown capabilities); what `--strict` fails on.
    pub fn is_hazard(&self) -> bool {
        match self {
            Hazard::LeakThrough { features, .. } => !features.is_empty(),
            Hazard::UnknownLevelling { .. } => false,
            Hazard::MxcsrMask { .. } | Hazard::Reflected { .. } => true,
        }
    }

    /// The hazard as a JSON object with a `kind` of `leak-through`, `levelling-unknown` or
    /// `host-reflected`.
    pub fn to_json(&self) -> Value {
        match self {
            Hazard::LeakThrough { host, mechanism, features } => json!({
                "kind": "leak-through", "host": host, "mechanism": mechanism,
                "features": names(features),
            }),
            Hazard::UnknownLevelling { host } => json!({"kind": "levelling-unknown", "host": host}),
            Hazard::MxcsrMask { masks } => json!({
                "kind": "mxcsr-mask",
                "masks": masks.iter().map(|(mask, hosts)| json!({"mask": format!("{mask:#x}"), "hosts": hosts}))
                    .collect::<Vec<_>>(),
            }),
            Hazard::Reflected { feature, with, without } => json!({
                "kind": "host-reflected", "feature": feature_name(*feature), "with": with, "without": without,
            }),
        }
    }
}

impl std::fmt::Display for Hazard {
    /// One line, without a newline.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hazard::LeakThrough { host, mechanism, features } if features.is_empty() => {
                write!(f, "{host}: nothing leaks to PV guests ({mechanism})")
            }
            Hazard::LeakThrough { host, mechanism, features } => {
                write!(f, "{host}: leaks to PV guests' user space ({mechanism}): {}", names(features).join(" "))
            }
            Hazard::UnknownLevelling { host } => {
                write!(f, "{host}: levelling capabilities unknown (not in the input); leak-through not judged")
            }
            Hazard::MxcsrMask { masks } => {
                let listed: Vec<String> =
                    masks.iter().map(|(mask, hosts)| format!("{mask:#x} on {}", hosts.join(", "))).collect();
                write!(
                    f,
                    "MXCSR mask differs: {} (MXCSR bits one host accepts fault on another; no policy can hide it)",
                    listed.join("; ")
                )
            }
            Hazard::Reflected { feature, with, without } => write!(
                f,
                "host-reflected {}: set on {}, not on {} (no policy can hide it)",
                feature_name(*feature),
                with.join(", "),
                without.join(", ")
            ),
        }
    }
}

fn names(features: &[FeatureId]) -> Vec<String> {
    features.iter().map(|id| feature_name(*id)).collect()
}

/// The hazards of a pool levelled from `hosts` for `kind`: for PV, one entry per host on
/// leak-through (judged against the pool's default policy); one when the hosts' known MXCSR
/// masks differ; then one per host-reflected difference.
pub fn pool_hazards(pool: &LevelledPool, hosts: &[PoolHost], kind: GuestKind) -> Vec<Hazard> {
    let mut hazards = Vec::new();
    if kind == GuestKind::Pv {
        for host in hosts {
            hazards.push(match (host.pv_leak_through(&pool.default.policy), &host.levelling) {
                (Some(features), Some(levelling)) => {
                    Hazard::LeakThrough { host: host.name.clone(), mechanism: levelling.to_string(), features }
                }
                _ => Hazard::UnknownLevelling { host: host.name.clone() },
            });
        }
    }
    let mut masks: Vec<(u32, Vec<String>)> = Vec::new();
    for host in hosts {
        let Some(mask) = host.mxcsr_mask else { continue };
        match masks.iter_mut().find(|(m, _)| *m == mask) {
            Some((_, names)) => names.push(host.name.clone()),
            None => masks.push((mask, vec![host.name.clone()])),
        }
    }
    if masks.len() > 1 {
        masks.sort_by_key(|(mask, _)| std::cmp::Reverse(mask.count_ones()));
        hazards.push(Hazard::MxcsrMask { masks });
    }
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    for d in &pool.reflected {
        let (with, without) = d.names(&names);
        hazards.push(Hazard::Reflected {
            feature: d.feature,
            with: with.into_iter().map(String::from).collect(),
            without: without.into_iter().map(String::from).collect(),
        });
    }
    hazards
}

/// The hazards, one line each.
pub fn hazards_text(hazards: &[Hazard]) -> String {
    hazards.iter().map(|h| format!("{h}\n")).collect()
}

/// What levelling cost (the pool must have been levelled with `explain`): per policy
/// (`default`, `acceptance`) `nothing lost`, or `lost` and one indented line per feature
/// (`  svm: lacked by host2`) and per limit (`  leaf7-max-subleaf: 0x2 -> 0x0, held down by
/// host1`). `hosts` are the hosts levelled, which name the causes.
pub fn explanation_text(pool: &LevelledPool, hosts: &[PoolHost]) -> String {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    explanation_text_named(pool, &names)
}

/// [`explanation_text`] with the hosts given by name only.
pub(crate) fn explanation_text_named(pool: &LevelledPool, names: &[&str]) -> String {
    let mut out = String::new();
    for (label, levelled) in [("default", &pool.default), ("acceptance", &pool.acceptance)] {
        if levelled.lost.is_empty() && levelled.limits.is_empty() {
            out += &format!("{label}: nothing lost\n");
            continue;
        }
        out += &format!("{label}: lost\n");
        for loss in &levelled.lost {
            out += &format!("  {}: {}\n", feature_name(loss.feature), loss.cause.describe(names));
        }
        for limit in &levelled.limits {
            out += &format!(
                "  {}: {:#x} -> {:#x}, held down by {}\n",
                limit.field,
                limit.highest,
                limit.pooled,
                pick(names, &limit.hosts).join(", ")
            );
        }
    }
    out
}

/// The names of these hosts (indices into `names`).
fn pick<'a>(names: &[&'a str], hosts: &HostSet) -> Vec<&'a str> {
    hosts.iter().filter_map(|i| names.get(i).copied()).collect()
}

/// The name of a kind of guest in documents: `pv`, `hvm` (HAP) or `hvm-shadow`.
pub fn guest_kind_name(kind: GuestKind) -> &'static str {
    match kind {
        GuestKind::Pv => "pv",
        GuestKind::HvmHap => "hvm",
        GuestKind::HvmShadow => "hvm-shadow",
    }
}

/// The pool as a JSON document (`format` `cpupolicy-pool`, read back by [`crate::Document`] as
/// one of its policies): `kind`, `hosts`, `default` and `acceptance` (each with
/// `featureset`, `policy` and, when `explain`, `lost` and `limits`), `host_reflected`, and
/// `hazards` (the pool's [`pool_hazards`], which the caller has already computed). Fails only
/// if a policy's own JSON does not parse back.
pub fn pool_json(
    pool: &LevelledPool,
    hosts: &[PoolHost],
    kind: GuestKind,
    explain: bool,
    hazards: &[Hazard],
) -> Result<Value, serde_json::Error> {
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    pool_json_named(pool, &names, kind, explain, hazards)
}

/// [`pool_json`] with the hosts given by name only.
pub(crate) fn pool_json_named(
    pool: &LevelledPool,
    host_names: &[&str],
    kind: GuestKind,
    explain: bool,
    hazards: &[Hazard],
) -> Result<Value, serde_json::Error> {
    let levelled = |l: &Levelled| -> Result<Value, serde_json::Error> {
        let policy: Value = serde_json::from_str(&l.policy.to_json())?;
        let mut value = json!({"featureset": l.policy.featureset().to_xen_string(), "policy": policy});
        if explain {
            value["lost"] = l
                .lost
                .iter()
                .map(|loss| {
                    let (cause, key, detail) = match &loss.cause {
                        LossCause::LackedBy(hosts) => ("lacked-by", "hosts", json!(pick(host_names, hosts))),
                        LossCause::NotAcceptedBy(hosts) => ("not-accepted-by", "hosts", json!(pick(host_names, hosts))),
                        LossCause::OutOfRange(hosts) => ("out-of-range", "hosts", json!(pick(host_names, hosts))),
                        LossCause::Dependency(needs) => ("dependency", "needs", json!(names(needs))),
                        LossCause::Rule(_) => ("runtime-only", "hosts", json!([])),
                    };
                    json!({"feature": feature_name(loss.feature), "cause": cause, key: detail})
                })
                .collect();
            value["limits"] = l
                .limits
                .iter()
                .map(|limit| {
                    json!({"field": limit.field.name(), "highest": limit.highest, "pooled": limit.pooled,
                           "hosts": pick(host_names, &limit.hosts)})
                })
                .collect();
        }
        Ok(value)
    };
    Ok(json!({
        "format": crate::POOL_FORMAT,
        "version": crate::JSON_VERSION,
        "kind": guest_kind_name(kind),
        "hosts": host_names,
        "default": levelled(&pool.default)?,
        "acceptance": levelled(&pool.acceptance)?,
        "host_reflected": pool.reflected.iter().map(|d| {
            let (with, without) = d.names(host_names);
            json!({"feature": feature_name(d.feature), "with": with, "without": without})
        }).collect::<Vec<_>>(),
        "hazards": hazards.iter().map(Hazard::to_json).collect::<Vec<_>>(),
    }))
}
