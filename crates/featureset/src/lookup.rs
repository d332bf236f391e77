//! Finding features by position and by name (Xen's, or an alias), case- and `-`/`_`-insensitively.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::{Feature, FeatureId, FEATURES};

/// The feature Xen names at this position.
pub(crate) fn by_id(id: FeatureId) -> Option<&'static Feature> {
    static INDEX: OnceLock<HashMap<FeatureId, &'static Feature>> = OnceLock::new();
    INDEX.get_or_init(|| FEATURES.iter().map(|f| (f.id, f)).collect()).get(&id).copied()
}

/// Looks a feature up by Xen name or alias. Case does not matter, nor `-` versus `_`, so
/// `lahf_lm`, `LAHF-LM` and `lahf-lm` are one name; `sse4.1` and `pni` are aliases.
pub fn feature_by_name(name: &str) -> Option<&'static Feature> {
    static INDEX: OnceLock<HashMap<String, &'static Feature>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = HashMap::new();
        for feature in FEATURES {
            index.insert(normalise(feature.name), feature);
        }
        for feature in FEATURES {
            for alias in feature.aliases {
                // A Xen name always wins over somebody else's alias.
                index.entry(normalise(alias)).or_insert(feature);
            }
        }
        index
    });
    index.get(&normalise(name)).copied()
}

/// The spelling used for lookups: lower case, `_` as `-`.
pub(crate) fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}
