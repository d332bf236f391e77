//! `level --featuresets` and `check --vm-featureset`: pools and migrations as xapi sees them,
//! with featuresets only (xapi's `-`-separated hex, `xen-cpuid`'s `:` form, or the empty string).

use std::path::Path;

use cpupolicy::featureset::{prerequisites_of, Featureset, TextStyle};
use cpupolicy::policy::{
    feature_name, featureset_missing, level_featuresets, level_rule, LevelRule, Mismatch, PoolHost,
};
use serde_json::json;

use super::policy::emit;
use super::{CliError, Outcome, TextOrJson, EXIT_NEGATIVE};

/// One featureset given on the command line.
pub struct Given {
    /// How it is named in reports: the file's stem, or `featureset N`.
    pub name: String,
    /// The set.
    pub set: Featureset,
    /// How it was written.
    pub style: TextStyle,
}

/// Reads a featureset argument: the text itself, or a file holding one (whitespace around it
/// ignored). `position` is 1-based, to name literal arguments.
pub fn given(argument: &str, position: usize) -> Result<Given, CliError> {
    let path = Path::new(argument);
    let (name, text) = if !argument.is_empty() && path.exists() {
        let text = cpupolicy::policy::read_input(path).map_err(|e| CliError(format!("{argument}: {e}")))?;
        (path.file_stem().map_or_else(|| argument.to_string(), |s| s.to_string_lossy().into_owned()), text)
    } else {
        (format!("featureset {position}"), argument.to_string())
    };
    let (set, style) = Featureset::parse_styled(&text).map_err(|e| CliError(format!("{name}: {e}")))?;
    Ok(Given { name, set, style })
}

/// `level --featuresets`: the combined featureset, written as the inputs were (the first's
/// separator, the longest's length); with `explain`, why each lost feature went, on stderr (or
/// in the JSON).
pub fn level(arguments: &[String], explain: bool, json: bool) -> Outcome {
    let inputs = arguments.iter().enumerate().map(|(i, a)| given(a, i + 1)).collect::<Result<Vec<_>, _>>()?;
    let combined = level_featuresets(inputs.iter().map(|g| &g.set));
    let text = combined.to_styled_string(TextStyle::combined(&inputs.iter().map(|g| g.style).collect::<Vec<_>>()))?;
    let lost = losses(&inputs, &combined);
    if json {
        let lost: Vec<_> = lost.iter().map(|(f, why)| json!({"feature": f, "cause": why})).collect();
        let names: Vec<&str> = inputs.iter().map(|g| g.name.as_str()).collect();
        let mut value = json!({"featureset": text, "inputs": names});
        if explain {
            value["lost"] = json!(lost);
        }
        emit(&format!("{value:#}\n"))?;
    } else {
        if explain {
            let mut out = String::new();
            for (feature, why) in &lost {
                out += &format!("  {feature}: {why}\n");
            }
            err!("{}{out}", if lost.is_empty() { "nothing lost\n" } else { "lost\n" });
        }
        emit(&format!("{text}\n"))?;
    }
    Ok(0)
}

/// Every feature some input had and the result lacks, with why.
fn losses(inputs: &[Given], combined: &Featureset) -> Vec<(String, String)> {
    let any = inputs.iter().fold(Featureset::new(), |acc, g| acc.union(&g.set));
    any.difference(combined)
        .iter()
        .map(|id| {
            let lacking: Vec<&str> = inputs.iter().filter(|g| !g.set.contains(id)).map(|g| g.name.as_str()).collect();
            let missing: Vec<String> =
                prerequisites_of(id).into_iter().filter(|p| !combined.contains(*p)).map(feature_name).collect();
            let why = match level_rule(id) {
                LevelRule::RuntimeOnly => "reflects guest state at run time; never levelled".to_string(),
                LevelRule::Or if !missing.is_empty() => format!("needs {}, which the pool lost", missing.join(", ")),
                LevelRule::Or => "replaced by the RSBA/RRSBA derivation".to_string(),
                _ if !lacking.is_empty() => format!("lacked by {}", lacking.join(", ")),
                _ => format!("needs {}, which the pool lost", missing.join(", ")),
            };
            (feature_name(id), why)
        })
        .collect()
}

/// `check --vm-featureset`: the VM's featureset against each host's max featureset (given as
/// featuresets, or read from host files).
pub fn check(vm: &str, hosts: Vec<(String, Featureset)>, format: TextOrJson) -> Outcome {
    let vm = given(vm, 1)?;
    let checks: Vec<(String, Vec<Mismatch>)> = hosts
        .into_iter()
        .map(|(name, max)| (name, featureset_missing(&vm.set, &max).into_iter().map(Mismatch::Feature).collect()))
        .collect();
    let compatible = checks.iter().all(|(_, m)| m.is_empty());
    match format {
        TextOrJson::Text => {
            let mut out = String::new();
            for (host, mismatches) in &checks {
                out += &format!("{host}: {}\n", if mismatches.is_empty() { "compatible" } else { "incompatible" });
                for m in mismatches {
                    out += &format!("  mismatch: {m}\n");
                }
            }
            emit(&out)?;
        }
        TextOrJson::Json => {
            let mismatches: Vec<_> = checks
                .iter()
                .flat_map(|(host, ms)| {
                    ms.iter().map(move |m| {
                        let feature = match m {
                            Mismatch::Feature(id) => feature_name(*id),
                            _ => String::new(),
                        };
                        json!({"host": host, "kind": m.kind(), "feature": feature, "message": m.to_string()})
                    })
                })
                .collect();
            emit(&format!("{:#}\n", json!({"compatible": compatible, "mismatches": mismatches, "warnings": []})))?;
        }
    }
    Ok(if compatible { 0 } else { EXIT_NEGATIVE })
}

/// The max featureset of a host read from a file `level` reads, for `check --vm-featureset`.
pub fn host_max(host: &PoolHost) -> (String, Featureset) {
    (host.name.clone(), host.max.featureset())
}
