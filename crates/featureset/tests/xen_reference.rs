//! The table and masks against what real Xen's `xen-cpuid` printed (`../shared/xen-reference/`).

use std::path::PathBuf;

use cpupolicy_featureset::{static_mask, Featureset, StaticMask, TextStyle, NR_WORDS};

fn reference_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/xen-reference");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: {} is absent; these tests need ../shared beside the checkout", dir.display());
        None
    }
}

/// The labelled featureset lines of a `xen-cpuid` (no arguments) output.
fn featureset_lines(text: &str) -> Vec<(String, Featureset)> {
    text.lines()
        .filter_map(|line| {
            let (label, words) = line.rsplit_once(' ')?;
            let set = Featureset::parse(words).ok()?;
            (words.contains(':')).then(|| (label.trim().to_string(), set))
        })
        .collect()
}

/// Every `xen-cpuid` (no arguments) recording: its path and text.
fn featureset_recordings(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".featuresets.txt"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// Every recording named `xen-VERSION-…`: its file name, the release it is of, and its text.
fn release_recordings(dir: &std::path::Path) -> Vec<(String, cpupolicy_featureset::XenRelease, String)> {
    featureset_recordings(dir)
        .into_iter()
        .filter_map(|(path, text)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let version = name.strip_prefix("xen-")?.split('-').next()?;
            let release = cpupolicy_featureset::XenRelease::parse(version).unwrap_or_else(|| panic!("{name}"));
            Some((name, release, text))
        })
        .collect()
}

fn read(name: &str) -> Option<String> {
    let dir = reference_dir()?;
    Some(std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

#[test]
fn static_masks_match_xen_4_20_for_every_feature_it_knows() {
    let Some(text) = read("xen-4.20-qemu64.featuresets.txt") else { return };
    let lines = featureset_lines(&text);
    let known_4_20 = &lines.iter().find(|(l, _)| l == "Known").expect("Known line").1;
    assert_eq!(known_4_20.len_words(), 19, "4.20's nr_features");
    let mut compared = 0;
    for (mask, label) in StaticMask::XEN_CPUID_ORDER {
        let xen = &lines.iter().find(|(l, _)| l == label).unwrap_or_else(|| panic!("no '{label}' line")).1;
        let ours = static_mask(mask).intersection(known_4_20);
        let diff = ours.symmetric_difference(xen);
        assert!(diff.is_empty(), "{label}: differs from Xen 4.20 in {:?}", diff.names());
        compared += 1;
    }
    assert_eq!(compared, 8);
}

#[test]
fn every_feature_xen_4_20_knows_is_in_the_table() {
    let Some(text) = read("xen-4.20-qemu64.featuresets.txt") else { return };
    let known_4_20 = featureset_lines(&text).into_iter().find(|(l, _)| l == "Known").unwrap().1;
    let unnamed: Vec<String> = known_4_20.unknown().map(|id| id.to_string()).collect();
    assert!(unnamed.is_empty(), "bits Xen 4.20 knows but the table does not name: {unnamed:?}");
    // And our table is a superset: what we know beyond 4.20 is later releases' additions only.
    let ours = static_mask(StaticMask::Known);
    assert!(known_4_20.is_subset(ours));
    for feature in ours.difference(&known_4_20).features() {
        assert!(feature.first_release > cpupolicy_featureset::XenRelease::V4_20, "{}", feature.name);
    }
}

#[test]
fn every_reference_featureset_line_decodes_to_table_names() {
    let Some(dir) = reference_dir() else { return };
    let mut lines_checked = 0;
    for (path, text) in featureset_recordings(&dir) {
        let lines = featureset_lines(&text);
        assert!(lines.len() >= 14, "{}: expected 8 static and 6 dynamic sets", path.display());
        let known = lines[0].1.clone();
        for (label, set) in &lines {
            // What Xen offers guests is within what that Xen knows; only the hardware's own
            // sets (Raw, and Host which Xen derives from it) may carry bits nobody named.
            if !matches!(label.as_str(), "Raw" | "Host") {
                assert!(set.is_subset(&known), "{}: {label} has bits outside Known", path.display());
            }
            // What that Xen knows decodes to a name from our table, at the same word and bit.
            for word in set.intersection(&known).decode() {
                assert!(word.index < NR_WORDS);
                for (bit, feature) in &word.bits {
                    let feature = feature.unwrap_or_else(|| {
                        panic!("{}: {label}: word {} bit {bit} has no name in the table", path.display(), word.index)
                    });
                    assert_eq!((feature.word(), feature.bit()), (word.index, *bit));
                }
            }
            // Text round trip.
            assert_eq!(Featureset::parse(&set.to_xen_string()).unwrap().words(), set.words());
            lines_checked += 1;
        }
    }
    assert!(lines_checked >= 42, "checked {lines_checked} lines");
}

#[test]
fn special_sets_of_older_xen_are_within_ours() {
    // 4.14 and 4.17 printed fewer special bits (some became special later); never more.
    for name in ["xen-4.14-qemu64.featuresets.txt", "xen-4.17-qemu64.featuresets.txt"] {
        let Some(text) = read(name) else { return };
        let lines = featureset_lines(&text);
        let special = &lines.iter().find(|(l, _)| l == "Special").unwrap().1;
        let extra = special.difference(static_mask(StaticMask::Special));
        assert!(extra.is_empty(), "{name}: special there but not here: {:?}", extra.names());
    }
}

/// xapi stores each host's featuresets as `-`-separated words, as many as the host's Xen has
/// (4.14: fewer than 4.20), and the empty string for a host without HVM: every featureset line
/// of every recording, in either separator and cut to each length a Xen release has had (the
/// words cut away are zero there or the line is skipped), reads and writes back unchanged.
#[test]
fn featureset_text_as_xapi_and_xen_cpuid_store_it_reads_and_writes_back_unchanged() {
    let Some(dir) = reference_dir() else { return };
    let mut checked = 0;
    for (path, text) in featureset_recordings(&dir) {
        for (label, set) in featureset_lines(&text) {
            for words in [11, 14, 18, 19, set.len_words()] {
                let Ok(cut) = set.fit(words) else { continue };
                for separator in ['-', ':'] {
                    let written: Vec<String> = cut.words().iter().map(|w| format!("{w:08x}")).collect();
                    let written = written.join(&separator.to_string());
                    let (read, style) = Featureset::parse_styled(&written)
                        .unwrap_or_else(|e| panic!("{}: {label}: {e}", path.display()));
                    assert_eq!(style, TextStyle { separator, words }, "{label}");
                    assert_eq!(read, cut, "{label}");
                    assert_eq!(read.to_styled_string(style).unwrap(), written, "{label}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} featureset texts checked");
    let (empty, style) = Featureset::parse_styled("").unwrap();
    assert!(empty.is_empty() && style.words == 0);
    assert_eq!(empty.to_styled_string(style).unwrap(), "");
}

/// Each recording's static sets are exactly what the table says of its release (the newest
/// point release of the branch, as Debian ships 4.14, 4.17 and 4.20; 4.21.2 and 4.22.0 built
/// from their tags).
#[test]
fn static_sets_of_every_recorded_release_are_the_tables() {
    let Some(dir) = reference_dir() else { return };
    let mut compared = 0;
    for (name, release, text) in release_recordings(&dir) {
        let lines = featureset_lines(&text);
        for (mask, label) in StaticMask::XEN_CPUID_ORDER {
            let recorded = &lines.iter().find(|(l, _)| l == label).unwrap_or_else(|| panic!("{name}: {label}")).1;
            let ours = cpupolicy_featureset::static_mask_in(mask, release);
            assert_eq!(
                &ours,
                recorded,
                "{name}: {label}: ours beyond Xen's {:?}, Xen's beyond ours {:?}",
                ours.difference(recorded).names(),
                recorded.difference(&ours).names()
            );
            compared += 1;
        }
    }
    assert!(compared >= 8 * 7, "{compared} static sets compared");
}

/// The featureset length each recorded hypervisor reports (`nr_features`, what the sysctl
/// returns for a NULL buffer) is the release table's length at the newest point release of its
/// branch (Debian ships 4.14.6, 4.17.x and 4.20.x; 4.21.2 and 4.22.0 were built from their tags).
#[test]
fn recorded_featureset_lengths_are_the_release_tables() {
    let Some(dir) = reference_dir() else { return };
    let mut compared = 0;
    for (name, release, text) in release_recordings(&dir) {
        let facts = release.facts().unwrap_or_else(|| panic!("{name}: no release table row"));
        let recorded: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("nr_features:"))
            .unwrap_or_else(|| panic!("{name}: no nr_features line"))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(recorded, facts.featureset_words_newest, "{name} ({})", facts.newest_point);
        compared += 1;
    }
    assert!(compared >= 7, "{compared} recordings compared");
}
