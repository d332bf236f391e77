//! `decode` and `masks`.

use clap::Args;
use cpupolicy::featureset::{
    excerpt, static_mask, static_mask_in, xen_cpuid_line, Featureset, StaticMask, XenRelease, NR_WORDS, WORDS,
};
use serde::Serialize;

use super::{print_json, CliError, Outcome, TextOrJson};

#[derive(Args)]
pub struct DecodeArgs {
    /// Featuresets: hex words separated by `:` or `-`.
    #[arg(required = true)]
    featuresets: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: TextOrJson,
}

#[derive(Serialize)]
struct DecodedJson {
    featureset: String,
    words: Vec<WordJson>,
}

#[derive(Serialize)]
struct WordJson {
    index: usize,
    name: Option<&'static str>,
    source: &'static str,
    value: String,
    features: Vec<&'static str>,
    unknown_bits: Vec<u32>,
}

pub fn decode(args: DecodeArgs) -> Outcome {
    // Parse everything first: bad input prints nothing but the error.
    let sets = args
        .featuresets
        .iter()
        .map(|text| Featureset::parse(text).map_err(|e| CliError(format!("'{}': {e}", excerpt(text)))))
        .collect::<Result<Vec<_>, _>>()?;
    match args.format {
        TextOrJson::Text => {
            for set in &sets {
                outln!("{}", xen_cpuid_line("Featureset", set));
                for word in set.decode() {
                    outln!("{word}");
                }
            }
        }
        TextOrJson::Json => {
            let decoded: Vec<DecodedJson> = sets
                .iter()
                .map(|set| DecodedJson {
                    featureset: set.to_xen_string(),
                    words: set
                        .decode()
                        .into_iter()
                        .map(|word| WordJson {
                            index: word.index,
                            name: WORDS.get(word.index).map(|w| w.short_name),
                            source: word.long_name(),
                            value: format!("{:08x}", word.value),
                            features: word.bits.iter().filter_map(|(_, f)| f.map(|f| f.name)).collect(),
                            unknown_bits: word.bits.iter().filter(|(_, f)| f.is_none()).map(|(b, _)| *b).collect(),
                        })
                        .collect(),
                })
                .collect();
            print_json(&decoded)?;
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct MasksArgs {
    /// Output format (text is `xen-cpuid`'s "Static sets" layout).
    #[arg(long, value_enum, default_value = "text")]
    format: TextOrJson,
    /// Only features within this featureset, e.g. the "Known" line of an older Xen's
    /// `xen-cpuid`, to see the masks as that Xen has them. Its length sets the word count.
    #[arg(long, value_name = "FEATURESET")]
    within: Option<String>,
    /// The static sets of this Xen release (4.14 … 4.22, or master) as its newest point release
    /// computes them: the features its header names, with the attribute letters it gives them.
    #[arg(long, value_name = "XEN_VERSION")]
    xen: Option<String>,
}

#[derive(Serialize)]
struct MaskJson {
    featureset: String,
    features: Vec<&'static str>,
}

pub fn masks(args: MasksArgs) -> Outcome {
    let within = match &args.within {
        Some(text) => Featureset::parse(text).map_err(|e| CliError(format!("--within '{}': {e}", excerpt(text))))?,
        None => static_mask(StaticMask::Known).clone(),
    };
    let release = match &args.xen {
        Some(text) => Some(XenRelease::parse(text).ok_or_else(|| {
            CliError(format!("--xen: '{}' is not a Xen release this table knows (4.14 to 4.22, master)", excerpt(text)))
        })?),
        None => None,
    };
    let nr_words = within.len_words();
    let mask = |m: StaticMask| -> Result<Featureset, CliError> {
        let set = match release {
            Some(release) => static_mask_in(m, release),
            None => static_mask(m).clone(),
        };
        Ok(set.intersection(&within).fit(nr_words)?)
    };
    match args.format {
        TextOrJson::Text => {
            outln!("nr_features: {nr_words}");
            let mut key = format!("       {:>24} ", "KEY");
            for word in WORDS.iter().take(nr_words.min(NR_WORDS)) {
                key.push_str(&format!("{:<8} ", word.short_name));
            }
            outln!("{key}");
            outln!("\nStatic sets:");
            for (m, label) in StaticMask::XEN_CPUID_ORDER {
                outln!("{}", xen_cpuid_line(label, &mask(m)?));
            }
            outln!("");
        }
        TextOrJson::Json => {
            let mut out = serde_json::Map::new();
            out.insert("nr_words".into(), nr_words.into());
            for m in StaticMask::ALL {
                let set = mask(m)?;
                let entry =
                    MaskJson { featureset: set.to_xen_string(), features: set.features().map(|f| f.name).collect() };
                out.insert(m.key().into(), serde_json::to_value(entry)?);
            }
            print_json(&out)?;
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct FeaturesetsArgs {
    /// Output format: `xen-cpuid` prints the lines of its "Dynamic sets".
    #[arg(long, value_enum, default_value = "xen-cpuid")]
    format: FeaturesetsFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FeaturesetsFormat {
    /// `xen-cpuid`'s "Dynamic sets" lines.
    XenCpuid,
    /// JSON: each featureset's string form and names (null where Xen does not provide it).
    Json,
}

/// `featuresets`: the six system featuresets from Xen.
pub fn featuresets(args: FeaturesetsArgs) -> Outcome {
    let handle = cpupolicy::hypercall::XenHandle::open()?;
    let sets = cpupolicy::xen::system_featuresets(&handle)?;
    let labelled = cpupolicy::xen::FEATURESETS.iter().map(|(_, label)| *label).zip(&sets);
    match args.format {
        FeaturesetsFormat::XenCpuid => {
            for (label, set) in labelled {
                match set {
                    Some(set) => outln!("{}", xen_cpuid_line(label, set)),
                    None => outln!("{label} featureset not supported by Xen"),
                }
            }
        }
        FeaturesetsFormat::Json => {
            let mut out = serde_json::Map::new();
            for (label, set) in labelled {
                let value = match set {
                    Some(set) => serde_json::to_value(MaskJson {
                        featureset: set.to_xen_string(),
                        features: set.features().map(|f| f.name).collect(),
                    })?,
                    None => serde_json::Value::Null,
                };
                out.insert(label.to_ascii_lowercase().replace(' ', "-"), value);
            }
            print_json(&out)?;
        }
    }
    Ok(0)
}
