//! `Featureset` semantics: zero extension, set operations, names, text forms, errors.

use cpupolicy_featureset::*;

#[test]
fn shorter_sets_compare_as_zero_extended() {
    let short = Featureset::from_words(vec![1, 2]);
    let long = Featureset::from_words(vec![1, 2, 0, 0]);
    assert_eq!(short, long);
    assert!(short.is_subset(&long) && long.is_subset(&short));
    assert_ne!(short, Featureset::from_words(vec![1, 2, 0, 4]));
    assert!(short.is_subset(&Featureset::from_words(vec![1, 2, 0, 4])));
    assert_eq!(long.trimmed().len_words(), 2);
}

#[test]
fn fitting_refuses_to_drop_bits() {
    let set = Featureset::from_names(["fpu", "tsa-sq-no"]).unwrap();
    assert_eq!(set.len_words(), 19);
    let err = set.fit(18).unwrap_err();
    assert!(matches!(&err, Error::DoesNotFit { capacity: 18, lost, .. } if lost == &["tsa-sq-no".to_string()]));
    assert!(err.to_string().contains("tsa-sq-no"));
    let padded = Featureset::from_words(vec![1]).fit(4).unwrap();
    assert_eq!(padded.words(), &[1, 0, 0, 0]);
    let trimmed = Featureset::from_words(vec![1, 0, 0]).fit(1).unwrap();
    assert_eq!(trimmed.words(), &[1]);
}

/// Every featureset the word limit allows formats to text that parses back: 65 words (beyond
/// the old text limit of 64) and the full 2048.
#[test]
fn the_longest_featuresets_format_and_parse_back() {
    for len in [65, MAX_TEXT_WORDS] {
        let words: Vec<u32> = (0..len as u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        let set = Featureset::from_words(words);
        assert_eq!(Featureset::parse(&set.to_string()).unwrap(), set, "{len} words");
    }
}

/// A featureset far longer than its receiver is refused with a message of bounded length: the
/// first 32 lost bits named, then how many more (the error itself keeps every one).
#[test]
fn a_long_list_of_lost_bits_is_summarised() {
    let set = Featureset::from_words(vec![!0; 64]);
    let err = set.fit(19).unwrap_err();
    let Error::DoesNotFit { lost, .. } = &err else { panic!("{err:?}") };
    assert_eq!(lost.len(), 45 * 32);
    let text = err.to_string();
    assert!(text.ends_with(&format!("{} and {} more", lost[31], 45 * 32 - 32)), "{text}");
    assert!(!text.contains(&lost[32]), "{text}");
}

#[test]
fn set_operations() {
    let a = Featureset::from_names(["fpu", "sse", "avx"]).unwrap();
    let b = Featureset::from_names(["sse", "avx", "rtm"]).unwrap();
    assert_eq!(&a & &b, Featureset::from_names(["sse", "avx"]).unwrap());
    assert_eq!(&a | &b, Featureset::from_names(["fpu", "sse", "avx", "rtm"]).unwrap());
    assert_eq!(&a - &b, Featureset::from_names(["fpu"]).unwrap());
    assert_eq!(&a ^ &b, Featureset::from_names(["fpu", "rtm"]).unwrap());
    let mut c = a.clone();
    c.intersect_with(&b);
    assert_eq!(c, &a & &b);
    c.union_with(&a);
    assert_eq!(c, a);
    c.subtract(&b);
    assert_eq!(c.names(), vec!["fpu"]);
    assert_eq!(a.count(), 3);
}

#[test]
fn membership_and_iteration_by_name() {
    let mut set = Featureset::new();
    set.insert_name("sse4.2").unwrap();
    set.insert_name("lahf_lm").unwrap();
    assert!(set.contains_name("sse4-2").unwrap());
    assert!(!set.contains_name("avx").unwrap());
    assert_eq!(set.names(), vec!["sse4-2", "lahf-lm"]);
    assert_eq!(set.features().map(|f| f.word()).collect::<Vec<_>>(), vec![1, 3]);
    let err = set.contains_name("warp-drive").unwrap_err();
    assert_eq!(err.to_string(), "unknown feature name 'warp-drive'");
    set.remove_name("pni").unwrap();
    set.remove_name("sse4_2").unwrap();
    assert_eq!(set.names(), vec!["lahf-lm"]);
}

#[test]
fn unknown_bits_are_kept_and_shown() {
    let set = Featureset::from_words(vec![1 << 10]);
    assert_eq!(set.unknown().count(), 1);
    assert_eq!(set.names(), vec!["<0*32+10>"]);
    assert_eq!(set.decode()[0].to_string(), "  [00] CPUID 0x00000001.edx     <10>");
}

#[test]
fn text_forms() {
    let set = Featureset::parse("178bfbfd:80002001:2193fbfd").unwrap();
    assert_eq!(set.words(), &[0x178bfbfd, 0x80002001, 0x2193fbfd]);
    assert_eq!(set.to_xen_string(), "178bfbfd:80002001:2193fbfd");
    assert_eq!(set.to_xapi_string(), "178bfbfd-80002001-2193fbfd");
    assert_eq!(Featureset::parse("178bfbfd-80002001-2193fbfd").unwrap(), set);
    assert_eq!(Featureset::parse(" 1:0 \n").unwrap().words(), &[1, 0]);
    assert_eq!(set.to_string().parse::<Featureset>().unwrap(), set);
    let json = serde_json::to_string(&set).unwrap();
    assert_eq!(json, "\"178bfbfd:80002001:2193fbfd\"");
    assert_eq!(serde_json::from_str::<Featureset>(&json).unwrap(), set);
    let err = serde_json::from_str::<Featureset>("\"1:zz\"").unwrap_err();
    assert!(err.to_string().contains("'zz'"), "{err}");
}

/// A long bad token is quoted as its first 64 characters and its length, whole when short.
#[test]
fn long_tokens_are_quoted_as_an_excerpt() {
    assert_eq!(excerpt("zz"), "zz");
    let long = "é".repeat(100);
    assert_eq!(excerpt(&long), format!("{}… (200 bytes)", "é".repeat(64)));
    let e = Featureset::parse(&format!("1:{}", "z".repeat(1 << 20))).unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
    assert!(e.to_string().contains(&format!("'{}… (1048576 bytes)'", "z".repeat(64))), "{e}");
}

#[test]
fn text_errors_name_the_token() {
    assert_eq!(Featureset::parse("").unwrap_err(), Error::Empty);
    assert_eq!(Featureset::parse("1:xyz").unwrap_err(), Error::InvalidHex { word: 1, token: "xyz".into() });
    assert_eq!(Featureset::parse("123456789").unwrap_err(), Error::WordTooWide { word: 0, token: "123456789".into() });
    assert_eq!(Featureset::parse("1::2").unwrap_err(), Error::EmptyWord { word: 1 });
    assert_eq!(Featureset::parse("0x1").unwrap_err(), Error::InvalidHex { word: 0, token: "0x1".into() });
    let many = vec!["0"; MAX_TEXT_WORDS + 1].join(":");
    assert_eq!(Featureset::parse(&many).unwrap_err(), Error::TooManyWords { count: 2049, max: 2048 });
    assert!(Featureset::parse("1:xyz").unwrap_err().to_string().contains("'xyz'"));
}

#[test]
fn decode_uses_xen_cpuid_layout() {
    let set = Featureset::parse("00000201:00000000:00000000:00000001").unwrap();
    let lines: Vec<String> = set.decode().iter().map(|w| w.to_string()).collect();
    assert_eq!(lines[0], "  [00] CPUID 0x00000001.edx     fpu apic");
    assert_eq!(lines[1], "  [01] CPUID 0x00000001.ecx    ");
    assert_eq!(lines[3], "  [03] CPUID 0x80000001.ecx     lahf-lm");
}

#[test]
fn attributes_round_trip_and_drive_masks() {
    for feature in FEATURES {
        assert_eq!(Attributes::parse(&feature.attributes.to_string()), Some(feature.attributes));
    }
    let md_clear = feature_by_name("md-clear").unwrap();
    assert_eq!(md_clear.attributes.to_string(), "!A|");
    assert!(static_mask(StaticMask::Accumulate).contains(md_clear.id));
    let hle = known("hle");
    assert!(!static_mask(StaticMask::Default(GuestKind::Pv)).contains(hle));
    assert!(static_mask(StaticMask::Max(GuestKind::Pv)).contains(hle));
    let vmx = known("vmx");
    assert!(!static_mask(StaticMask::Max(GuestKind::HvmShadow)).contains(vmx));
    assert!(static_mask(StaticMask::Max(GuestKind::HvmHap)).contains(vmx));
    for kind in GuestKind::ALL {
        assert!(static_mask(StaticMask::Default(kind)).is_subset(static_mask(StaticMask::Max(kind))));
    }
}

#[test]
fn styled_text_refuses_mixed_separators_and_cutting_away_bits() {
    let err = Featureset::parse_styled("178bfbfd-80002001:2193fbfd").unwrap_err();
    assert_eq!(err, Error::MixedSeparators { word: 1, first: '-', found: ':' });
    assert!(err.to_string().contains("word 1"), "{err}");
    let (set, style) = Featureset::parse_styled(" 178bfbfd ").unwrap();
    assert_eq!((set.words(), style), (&[0x178b_fbfd][..], TextStyle { separator: '-', words: 1 }));
    // A result with a bit beyond the words the input had cannot be written in its style.
    let mut wider = set.clone();
    wider.insert_name("avx512f").unwrap();
    let err = wider.to_styled_string(style).unwrap_err();
    assert!(err.to_string().contains("avx512f"), "{err}");
    assert_eq!(
        TextStyle::combined(&[style, TextStyle { separator: ':', words: 4 }]),
        TextStyle { separator: '-', words: 4 }
    );
    // Bad tokens are still named.
    assert!(Featureset::parse_styled("1-zz").unwrap_err().to_string().contains("'zz'"));
}

/// Letters change between releases and bits are added: the table answers per release.
#[test]
fn attributes_and_features_per_release() {
    use cpupolicy_featureset::{feature_by_name, XenRelease};
    let lass = feature_by_name("lass").unwrap();
    assert_eq!(XenRelease::V4_21.attributes_of(lass).unwrap().to_string(), "");
    assert_eq!(XenRelease::V4_22.attributes_of(lass).unwrap().to_string(), "s");
    let md_clear = feature_by_name("md-clear").unwrap();
    assert!(!XenRelease::V4_17.attributes_of(md_clear).unwrap().is_accumulated());
    assert!(XenRelease::V4_19.attributes_of(md_clear).unwrap().is_accumulated());
    let bmm = feature_by_name("avx512-bmm").unwrap();
    assert!(XenRelease::V4_21.attributes_of(bmm).is_none() && XenRelease::V4_22.attributes_of(bmm).is_some());
    let movrs = feature_by_name("movrs").unwrap();
    assert_eq!((movrs.word(), movrs.bit(), movrs.first_release), (10, 31, XenRelease::Master));
    assert!(XenRelease::V4_22.attributes_of(movrs).is_none());
    assert_eq!(Featureset::from_words(vec![0; 10].into_iter().chain([1 << 31]).collect::<Vec<_>>()).names(), ["movrs"]);
    assert_eq!(XenRelease::parse("4.20.3"), Some(XenRelease::V4_20));
    assert_eq!(XenRelease::parse("master"), Some(XenRelease::Master));
    assert_eq!(XenRelease::parse("4.13"), None);
}
