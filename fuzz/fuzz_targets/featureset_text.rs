//! Featureset text, both separators, any length, the empty string: no panic; what reads writes
//! back in its own style and reads again to the same set.
#![no_main]

use cpupolicy_featureset::Featureset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let plain = Featureset::parse(text);
    let Ok((set, style)) = Featureset::parse_styled(text) else { return };
    if !text.trim().is_empty() {
        assert_eq!(plain.as_ref().ok(), Some(&set));
    }
    let written = set.to_styled_string(style).expect("a set fits its own style");
    let (again, again_style) = Featureset::parse_styled(&written).expect("written text reads back");
    assert_eq!((again, again_style.words), (set.clone(), style.words));
    assert_eq!(Featureset::parse(&set.to_xapi_string()).ok().unwrap_or_default(), set);
});
