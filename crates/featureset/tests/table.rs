//! The feature table, word table and dependency table are internally consistent.

use std::collections::{HashMap, HashSet};

use cpupolicy_featureset::*;

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

#[test]
fn positions_are_unique_sorted_and_within_known_words() {
    let mut last = None;
    for feature in FEATURES {
        assert!(feature.word() < NR_WORDS, "{}", feature.name);
        assert!(last < Some(feature.id), "{} out of order or duplicated", feature.name);
        last = Some(feature.id);
        assert_eq!(FeatureId::from_index(feature.id.index()).feature().map(|f| f.name), Some(feature.name));
    }
    assert_eq!(FEATURES.len(), 287, "Xen master names 287 features (4.22: 286, and MOVRS)");
}

#[test]
fn names_follow_xen_spelling() {
    for feature in FEATURES {
        assert_eq!(feature.name, normalise(feature.name), "lower case, '-' for '_'");
        assert!(!feature.description.is_empty(), "{}", feature.name);
    }
}

#[test]
fn names_and_aliases_are_unambiguous() {
    let mut owner: HashMap<String, &str> = HashMap::new();
    for feature in FEATURES {
        assert!(owner.insert(normalise(feature.name), feature.name).is_none(), "duplicate name {}", feature.name);
    }
    for feature in FEATURES {
        for alias in feature.aliases {
            let key = normalise(alias);
            if let Some(previous) = owner.insert(key.clone(), feature.name) {
                assert_eq!(previous, feature.name, "alias '{alias}' of {} is already {previous}", feature.name);
                panic!("alias '{alias}' of {} only restates its name", feature.name);
            }
        }
    }
}

#[test]
fn aliases_people_type_resolve() {
    for (alias, name) in [
        ("pni", "sse3"),
        ("sse4.1", "sse4-1"),
        ("sse4_2", "sse4-2"),
        ("lahf_lm", "lahf-lm"),
        ("LAHF-LM", "lahf-lm"),
        ("sse41", "sse4-1"),
        ("hyper", "hypervisor"),
        ("ht", "htt"),
        ("pdpe1gb", "page1gb"),
        ("spec-ctrl", "ibrsb"),
        ("arch-capabilities", "arch-caps"),
        ("avx512_vnni", "avx512-vnni"),
        ("tsc_deadline_timer", "tsc-deadline"),
    ] {
        assert_eq!(feature_by_name(alias).map(|f| f.name), Some(name), "{alias}");
    }
    assert!(feature_by_name("no-such-feature").is_none());
}

#[test]
fn words_are_described_in_order() {
    for (i, word) in WORDS.iter().enumerate() {
        assert_eq!(word.index, i);
    }
    assert_eq!(WORDS[16].short_name, "m10Al");
    assert_eq!(WORDS[18].source, WordSource::Cpuid { leaf: 0x8000_0021, subleaf: None, register: Register::Ecx });
}

#[test]
fn dependency_table_names_exist() {
    for dependency in DEPENDENCIES {
        assert!(feature_by_name(dependency.feature).is_some(), "unknown prerequisite {}", dependency.feature);
        assert_eq!(feature_by_name(dependency.feature).unwrap().name, dependency.feature, "use Xen's spelling");
        if let Dependents::Named(names) = dependency.dependents {
            for name in names {
                let feature = feature_by_name(name).unwrap_or_else(|| panic!("unknown dependent {name}"));
                assert_eq!(feature.name, *name, "use Xen's spelling");
                assert_ne!(*name, dependency.feature, "self-dependency");
            }
        }
        assert!(!dependency.reason.is_empty());
    }
}

#[test]
fn dependency_graph_has_no_cycles() {
    // Depth-first search with colours over the direct edges.
    let edges: HashMap<&str, Vec<&str>> = DEPENDENCIES
        .iter()
        .map(|d| {
            let names: Vec<&str> = match d.dependents {
                Dependents::Named(names) => names.to_vec(),
                Dependents::Words(words) => {
                    FEATURES.iter().filter(|f| words.contains(&f.word())).map(|f| f.name).collect()
                }
            };
            (d.feature, names)
        })
        .collect();
    fn visit<'a>(
        node: &'a str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        grey: &mut Vec<&'a str>,
        black: &mut HashSet<&'a str>,
    ) {
        if black.contains(node) {
            return;
        }
        assert!(!grey.contains(&node), "cycle: {} -> {node}", grey.join(" -> "));
        grey.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, grey, black);
        }
        grey.pop();
        black.insert(node);
    }
    let mut black = HashSet::new();
    for root in edges.keys() {
        visit(root, &edges, &mut Vec::new(), &mut black);
    }
    assert_eq!(DEPENDENCIES.len(), edges.len(), "each prerequisite has one row");
}

#[test]
fn dependency_closure_is_transitive() {
    let xsave = dependents_of(known("xsave"));
    for name in ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512-vbmi", "vaes", "amx-tile", "amx-int8"] {
        assert!(xsave.contains(known(name)), "xsave must take {name} with it");
    }
    assert!(!xsave.contains(known("sse2")));
    let arch_caps = dependents_of(known("arch-caps"));
    for feature in FEATURES.iter().filter(|f| f.word() == 16 || f.word() == 17) {
        assert!(arch_caps.contains(feature.id), "{}", feature.name);
    }
    assert!(dependents_of(known("eibrs")).contains(known("rrsba")));
    assert!(dependents_of(known("ibrsb")).contains(known("rrsba")), "through eibrs");
    assert!(dependents_of(known("avx512-vbmi")).is_empty());
    // FXSR goes, so SSE, the SSE family and long mode (through SSE2) go with it; AVX hangs off XSAVE.
    let fxsr = dependents_of(known("fxsr"));
    assert!(fxsr.contains(known("sse2")) && fxsr.contains(known("sse4-2")) && fxsr.contains(known("lm")));
    assert!(!fxsr.contains(known("avx")));
}

#[test]
fn clearing_a_prerequisite_clears_its_dependents() {
    let mut set =
        Featureset::from_names(["xsave", "avx", "avx2", "avx512f", "avx512bw", "fma", "fxsr", "sse2", "sse"]).unwrap();
    set.remove_name("xsave").unwrap();
    let cleared = set.apply_dependencies();
    assert_eq!(set, Featureset::from_names(["fxsr", "sse", "sse2"]).unwrap());
    assert_eq!(cleared, Featureset::from_names(["avx", "avx2", "avx512f", "avx512bw", "fma"]).unwrap());

    let mut set = Featureset::from_names(["arch-caps", "rdcl-no", "its-no", "eibrs", "rrsba", "ibrsb"]).unwrap();
    set.remove_with_dependents(known("arch-caps"));
    assert_eq!(set, Featureset::from_names(["ibrsb"]).unwrap());
}

#[test]
fn prerequisites_are_the_inverse_of_dependents() {
    let avx2 = prerequisites_of(known("avx2"));
    for name in ["xsave", "avx"] {
        assert!(avx2.contains(&known(name)), "avx2 needs {name}: {avx2:?}");
    }
    assert!(prerequisites_of(known("fpu")).is_empty());
    // A feature of a word beyond the table (featuresets may be longer) has none, and no panic.
    assert!(prerequisites_of(FeatureId::new(NR_WORDS, 0).unwrap()).is_empty());
    assert!(prerequisites_of(FeatureId::new(2047, 31).unwrap()).is_empty());
    // p is a prerequisite of f exactly when f is among p's dependents.
    for feature in FEATURES {
        for p in prerequisites_of(feature.id) {
            assert!(dependents_of(p).contains(feature.id), "{}", feature.name);
        }
    }
    for dependency in DEPENDENCIES {
        let p = known(dependency.feature);
        for id in dependents_of(p).iter() {
            assert!(prerequisites_of(id).contains(&p), "{} -> {id:?}", dependency.feature);
        }
    }
}
