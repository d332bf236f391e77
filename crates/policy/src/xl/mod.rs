//! xl's `cpuid=` option, as libxl reads it (`man xl.cfg`; `libxl_cpuid_parse_config`,
//! `libxl_cpuid_parse_config_xend`, `xc_cpuid_apply_policy`):
//!
//! - the name form, `"host,NAME=VALUE,…"`: names from libxl's static table (some of them numeric
//!   fields such as `maxleaf`, `procpkg`, `nc`) and, from Xen 4.18 on, every feature name of
//!   `cpufeatureset.h` (MSR-based ones such as `rsba` too). The static table is searched first,
//!   so a feature whose name it also holds for another field (`clflush`: the line size in leaf 1
//!   EBX) must be written with another name. Values: `0`/`1` (any number, for fields), `x`
//!   (default), `k`/`s` (keep the host's);
//! - the list form of xend, `['LEAF[,SUBLEAF]:eXx=32 chars,…', …]`, one character per bit from
//!   bit 31 down, which reaches any CPUID bit but no MSR.
//!
//! libxl starts from the host's default policy, applies the entries (`x` takes the default
//! policy's bit, `k`/`s` the host policy's), and Xen then clamps what it was given to the
//! domain's max policy. [`XlCpuid::apply`] does the same for the feature bits, closing over
//! dependencies as Xen does; what else Xen and libxl adjust (topology, `pae`, invariant TSC,
//! nested virtualisation) is not modelled here.
//!
//! [`xl_for_pool`] writes one `cpuid=` value that gives a pool default's features on every host
//! of the pool, in the form that loses least, and says what neither form can express.

mod cfg;
mod libvirt_names;
mod names;

use std::fmt::{self, Write as _};

use cpupolicy_featureset::{FeatureId, Register, WordSource, XenRelease, FEATURES, WORDS};

use crate::level_rules::masks;
use crate::{CpuPolicy, CpuidKey, LimitField};
use cfg::CfgValue;

pub(crate) use names::XL_FLAGS;

/// One entry of libxl's static name table, with the releases that have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XlFlag {
    /// The name, as xl reads it (exact, case-sensitive).
    pub name: &'static str,
    /// The leaf.
    pub leaf: u32,
    /// The sub-leaf, for leaves that have them.
    pub subleaf: Option<u32>,
    /// The register.
    pub register: Register,
    /// The lowest bit of the field.
    pub bit: u8,
    /// The field's width in bits (1 for a feature).
    pub width: u8,
    /// The first release whose table has it.
    pub first: XenRelease,
    /// The last release whose table has it.
    pub last: XenRelease,
}

impl XlFlag {
    #[allow(clippy::too_many_arguments)]
    pub(crate) const fn new(
        name: &'static str,
        leaf: u32,
        subleaf: Option<u32>,
        register: Register,
        bit: u8,
        width: u8,
        first: XenRelease,
        last: XenRelease,
    ) -> XlFlag {
        XlFlag { name, leaf, subleaf, register, bit, width, first, last }
    }

    fn in_release(&self, release: XenRelease) -> bool {
        (self.first..=self.last).contains(&release)
    }
}

/// The first release whose libxl knows every feature name of `cpufeatureset.h`.
pub const XL_FEATURE_NAMES_SINCE: XenRelease = XenRelease::V4_18;

/// The release whose libxl a `x.y` version stands for: 4.14 to 4.22 as themselves, later ones as
/// the newest known; `None` before 4.14.
pub fn xl_release(version: &crate::XenVersion) -> Option<XenRelease> {
    use XenRelease::*;
    Some(match (version.major, version.minor) {
        (4, 14) => V4_14,
        (4, 15) => V4_15,
        (4, 16) => V4_16,
        (4, 17) => V4_17,
        (4, 18) => V4_18,
        (4, 19) => V4_19,
        (4, 20) => V4_20,
        (4, 21) => V4_21,
        (4, 22..) | (5.., _) => V4_22,
        _ => return None,
    })
}

/// Where a name's bits go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XlTarget {
    /// A CPUID field.
    Cpuid {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf, if any.
        subleaf: Option<u32>,
        /// The register.
        register: Register,
        /// Its lowest bit.
        bit: u8,
        /// Its width in bits.
        width: u8,
    },
    /// One bit of an MSR.
    Msr {
        /// The MSR.
        index: u32,
        /// The bit (0–63).
        bit: u8,
    },
}

/// What libxl of `release` makes of `name`, if it knows it.
pub fn resolve(name: &str, release: XenRelease) -> Option<XlTarget> {
    if let Some(flag) = XL_FLAGS.iter().find(|f| f.name == name && f.in_release(release)) {
        return Some(XlTarget::Cpuid {
            leaf: flag.leaf,
            subleaf: flag.subleaf,
            register: flag.register,
            bit: flag.bit,
            width: flag.width,
        });
    }
    if release < XL_FEATURE_NAMES_SINCE {
        return None;
    }
    let feature = FEATURES.iter().find(|f| f.name == name && f.first_release <= release)?;
    feature_target(feature.id)
}

/// Where a feature bit lives, as an xl target.
pub fn feature_target(id: FeatureId) -> Option<XlTarget> {
    let bit = id.bit() as u8;
    match WORDS.get(id.word())?.source {
        WordSource::Cpuid { leaf, subleaf, register } => {
            Some(XlTarget::Cpuid { leaf, subleaf, register, bit, width: 1 })
        }
        WordSource::Msr { index, high } => Some(XlTarget::Msr { index, bit: bit + if high { 32 } else { 0 } }),
    }
}

/// The name libxl of `release` reads as exactly feature `id`, if it has one: the feature's own
/// name where libxl knows it and its static table does not take it for something else, else a
/// static-table name for the same bit.
pub fn name_for(id: FeatureId, release: XenRelease) -> Option<&'static str> {
    let target = feature_target(id)?;
    if let Some(feature) = id.feature() {
        if resolve(feature.name, release) == Some(target) {
            return Some(feature.name);
        }
    }
    XL_FLAGS
        .iter()
        .filter(|f| f.in_release(release))
        .map(|f| f.name)
        .find(|name| resolve(name, release) == Some(target))
}

/// A `cpuid=` value that could not be read, naming the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cpuid: '{}': {problem}", cpupolicy_featureset::excerpt(token))]
pub struct XlError {
    /// The offending token (or line).
    pub token: String,
    /// What is wrong with it.
    pub problem: String,
}

fn xl_error(token: &str, problem: impl Into<String>) -> XlError {
    XlError { token: token.to_string(), problem: problem.into() }
}

/// The filters of one CPUID leaf: per register 32 characters, bit 31 first, as libxl keeps them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlLeaf {
    /// The leaf.
    pub leaf: u32,
    /// The sub-leaf, if given.
    pub subleaf: Option<u32>,
    /// EAX, EBX, ECX, EDX: `0`, `1`, `x`, `k` or `s` per bit, or `None` when not mentioned.
    pub filters: [Option<[u8; 32]>; 4],
}

/// The filter of one MSR: 64 characters, bit 63 first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlMsr {
    /// The MSR.
    pub index: u32,
    /// `0`, `1`, `x` or `k` per bit.
    pub filter: [u8; 64],
}

/// A parsed `cpuid=` setting: what libxl would hand `xc_cpuid_apply_policy`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XlCpuid {
    /// The CPUID filters, in the order first mentioned.
    pub leaves: Vec<XlLeaf>,
    /// The MSR filters.
    pub msrs: Vec<XlMsr>,
}

impl XlCpuid {
    /// Reads the `cpuid` setting from an xl configuration file, or a bare value (`"host,…"`,
    /// `host,…` or `[ '…', … ]`), as libxl of `release` reads it. Errors name the token.
    pub fn parse(text: &str, release: XenRelease) -> Result<XlCpuid, XlError> {
        match setting(text)? {
            Setting::Items(items) => {
                let mut cpuid = XlCpuid::default();
                for item in items {
                    cpuid.add_xend(&item)?;
                }
                Ok(cpuid)
            }
            Setting::String(string) => XlCpuid::from_names(&string, release),
        }
    }

    /// The name form, `host,NAME=VALUE,…` (`libxl_cpuid_parse_config`).
    fn from_names(string: &str, release: XenRelease) -> Result<XlCpuid, XlError> {
        let mut tokens = string.split(',').filter(|t| !t.is_empty());
        match tokens.next() {
            Some("host") => {}
            Some(first) => return Err(xl_error(first, "the first word must be \"host\"")),
            None => return Err(xl_error(string, "empty setting: the first word must be \"host\"")),
        }
        let mut cpuid = XlCpuid::default();
        for token in tokens {
            cpuid.add_named(token, release)?;
        }
        Ok(cpuid)
    }

    fn leaf_mut(&mut self, leaf: u32, subleaf: Option<u32>) -> &mut XlLeaf {
        let i = match self.leaves.iter().position(|l| l.leaf == leaf && l.subleaf == subleaf) {
            Some(i) => i,
            None => {
                self.leaves.push(XlLeaf { leaf, subleaf, filters: [None; 4] });
                self.leaves.len() - 1
            }
        };
        &mut self.leaves[i]
    }

    /// One `NAME=VALUE` of the name form (`libxl_cpuid_parse_config`).
    fn add_named(&mut self, token: &str, release: XenRelease) -> Result<(), XlError> {
        let (name, value) = token.split_once('=').ok_or_else(|| xl_error(token, "missing \"=\" in key=value"))?;
        let target = resolve(name, release)
            .ok_or_else(|| xl_error(token, format!("unknown CPUID flag name '{name}' for Xen {release}")))?;
        match target {
            XlTarget::Msr { index, bit } => {
                let c = match value.as_bytes() {
                    [c @ (b'0' | b'1' | b'x' | b'k')] => *c,
                    [b's'] => b'k',
                    _ => return Err(xl_error(token, "illegal CPUID value (must be: [0|1|x|k|s])")),
                };
                let i = match self.msrs.iter().position(|m| m.index == index) {
                    Some(i) => i,
                    None => {
                        self.msrs.push(XlMsr { index, filter: [b'x'; 64] });
                        self.msrs.len() - 1
                    }
                };
                self.msrs[i].filter[63 - usize::from(bit)] = c;
            }
            XlTarget::Cpuid { leaf, subleaf, register, bit, width } => {
                // A number (strtoul: decimal, 0x hex or 0 octal prefix; trailing text ignored)
                // sets the field; else x, k or s fill it.
                let bits: Vec<u8> = match leading_number(value) {
                    Some(n) => (0..width).rev().map(|i| if (n >> i) & 1 == 1 { b'1' } else { b'0' }).collect(),
                    None => match value.as_bytes().first() {
                        Some(c @ (b'x' | b'k' | b's')) => vec![*c; usize::from(width)],
                        _ => return Err(xl_error(token, "illegal CPUID value (must be: [0|1|x|k|s])")),
                    },
                };
                let entry = self.leaf_mut(leaf, subleaf);
                let filter = entry.filters[register.index()].get_or_insert([b'x'; 32]);
                place(filter, name, bit, &bits, value)?;
            }
        }
        Ok(())
    }

    /// One `LEAF[,SUBLEAF]:eXx=…,…` item of the list form (`libxl_cpuid_parse_config_xend`).
    fn add_xend(&mut self, item: &str) -> Result<(), XlError> {
        let (head, registers) =
            item.split_once(':').ok_or_else(|| xl_error(item, "expected LEAF[,SUBLEAF]:eXx=… (no ':')"))?;
        let (leaf, subleaf) = match head.split_once(',') {
            Some((leaf, subleaf)) => (leaf, Some(subleaf)),
            None => (head, None),
        };
        let number = |text: &str, what: &str| {
            leading_number(text.trim()).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                xl_error(item, format!("{what} '{}' is not a number", cpupolicy_featureset::excerpt(text)))
            })
        };
        let leaf = number(leaf, "leaf")?;
        let subleaf = subleaf.map(|s| number(s, "sub-leaf")).transpose()?;
        let mut parsed = Vec::new();
        for part in registers.split(',').map(|p| p.trim_start_matches([' ', '\n'])) {
            let (register, filter) =
                part.split_once('=').ok_or_else(|| xl_error(part, "expected eXx=32 characters"))?;
            let register = match register {
                "eax" => 0,
                "ebx" => 1,
                "ecx" => 2,
                "edx" => 3,
                _ => return Err(xl_error(part, format!("'{register}' is not eax, ebx, ecx or edx"))),
            };
            let filter: [u8; 32] = filter.as_bytes().try_into().map_err(|_| {
                xl_error(part, format!("{} characters; exactly 32 are needed, bit 31 first", filter.len()))
            })?;
            if let Some(bad) = filter.iter().find(|c| !b"01xks".contains(c)) {
                return Err(xl_error(part, format!("'{}' is not one of 0, 1, x, k, s", *bad as char)));
            }
            parsed.push((register, filter));
        }
        let entry = self.leaf_mut(leaf, subleaf);
        for (register, filter) in parsed {
            entry.filters[register] = Some(filter);
        }
        Ok(())
    }

    /// The policy a VM gets on a host: its `default` policy with the filters applied (`x` takes
    /// the default's bit, `k`/`s` the `host` policy's), the features then clamped to the host's
    /// `max` policy and closed over dependencies as Xen does when the policy is set, and AMD's
    /// copies of leaf 1 EDX in 0x80000001 EDX made as Xen makes them (`recalculate_misc`).
    pub fn apply(&self, default: &CpuPolicy, host: &CpuPolicy, max: &CpuPolicy) -> CpuPolicy {
        let mut policy = default.clone();
        for entry in &self.leaves {
            let key = CpuidKey::new(entry.leaf, entry.subleaf);
            let (mut registers, from_default, from_host) = (policy.cpuid(key), default.cpuid(key), host.cpuid(key));
            for (r, filter) in entry.filters.iter().enumerate() {
                let Some(filter) = filter else { continue };
                let register = Register::ALL[r];
                let value = filtered(filter, from_default.get(register).into(), from_host.get(register).into());
                registers.set(register, value as u32);
            }
            policy.set_cpuid(key, registers);
        }
        for msr in &self.msrs {
            let value = filtered(&msr.filter, default.msr(msr.index), host.msr(msr.index));
            policy.set_msr(msr.index, value);
        }
        // Xen drops the leaves beyond the (possibly lowered) max leaves, then clamps to max.
        crate::level::clear_out_of_range_leaves(&mut policy);
        let mut features = policy.featureset().intersection(&max.featureset());
        features.apply_dependencies();
        let mut words = crate::level::words_of(&features);
        // Xen's recalculate_misc: AMD guests see leaf 1 EDX's common bits repeated in
        // 0x80000001 EDX; other vendors see them clear.
        let common = crate::level_rules::COMMON_1D_FEATURES;
        words[2] &= !common;
        if policy.vendor().is_amd_like() {
            words[2] |= words[0] & common;
        }
        policy.set_feature_words(&words);
        policy
    }
}

/// Applies a filter (bit N-1 first) to a value: `1`/`0` force, `x` takes `default`, `k`/`s`
/// take `host`.
fn filtered(filter: &[u8], default: u64, host: u64) -> u64 {
    let n = filter.len();
    let mut value = 0u64;
    for (i, c) in filter.iter().enumerate() {
        let bit = n - 1 - i;
        let on = match c {
            b'1' => true,
            b'0' => false,
            b'k' | b's' => host >> bit & 1 == 1,
            _ => default >> bit & 1 == 1,
        };
        value |= u64::from(on) << bit;
    }
    value
}

/// Writes a field's bits into a register filter at libxl's place for it (`family` and `model`
/// spread over their extended fields as libxl's `cpuid_add` does).
fn place(filter: &mut [u8; 32], name: &str, bit: u8, bits: &[u8], value: &str) -> Result<(), XlError> {
    let at = |filter: &mut [u8; 32], lowest: usize, chars: &[u8]| {
        let start = 32 - chars.len() - lowest;
        filter[start..start + chars.len()].copy_from_slice(chars);
    };
    match name {
        "family" => {
            let n = leading_number(value).unwrap_or(0);
            if n < 16 {
                at(filter, 8, &bits[4..]);
                at(filter, 20, b"00000000");
            } else {
                at(filter, 8, b"1111");
                // As libxl writes it (libxl_cpuid_parse_config, RELEASE-4.17.0): the low seven
                // extended-family bits from the value less 15, the top one still the value's own
                // bit 7 (its first rendering of the number is only partly overwritten).
                let bit = |i: u64| {
                    let source = if i == 7 { n } else { n - 15 };
                    b'0' + ((source >> i) & 1) as u8
                };
                let extended: Vec<u8> = (0..8).rev().map(bit).collect();
                at(filter, 20, &extended);
            }
        }
        "model" => {
            at(filter, 16, &bits[..4]);
            at(filter, 4, &bits[4..]);
        }
        _ => at(filter, usize::from(bit), bits),
    }
    Ok(())
}

/// The number C's `strtoull(text, &end, 0)` reads at the start of `text`, if any (libxl reads
/// values so): leading white space, an optional sign (a `-` negates, wrapping), then `0x` hex
/// (`0x` without a hex digit is the `0` alone), `0` octal or decimal; too large is `u64::MAX`.
fn leading_number(text: &str) -> Option<u64> {
    let text = text.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    let (digits, radix) = match hex {
        Some(hex) if hex.starts_with(|c: char| c.is_ascii_hexdigit()) => (hex, 16),
        _ if text.starts_with('0') => (&text[1..], 8),
        _ => (text, 10),
    };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    let value = match (end, radix) {
        (0, 8) => 0,
        (0, _) => return None,
        _ => match u64::from_str_radix(&digits[..end], radix) {
            Ok(value) if negative => value.wrapping_neg(),
            Ok(value) => value,
            Err(_) => u64::MAX,
        },
    };
    Some(value)
}

/// The `cpuid` setting: a list of strings (the xend form) or one string (the name form).
#[derive(Debug, PartialEq, Eq)]
enum Setting {
    Items(Vec<String>),
    String(String),
}

/// The `cpuid` setting of an xl configuration file, read as libxlutil reads the file
/// ([`cfg::read_settings`]), or the text itself when it is a bare value (`"host,…"`, `host,…`,
/// `[ '…', … ]`).
fn setting(text: &str) -> Result<Setting, XlError> {
    let bare = text.trim();
    if bare.starts_with('"') || bare.starts_with('\'') || bare.starts_with('[') || bare.starts_with("host") {
        return Ok(if bare.starts_with('[') {
            Setting::Items(list_items(bare)?)
        } else {
            Setting::String(unquote(bare).unwrap_or(bare).to_string())
        });
    }
    match cfg::read_settings(text)?.remove("cpuid") {
        None => Err(xl_error("cpuid", "no cpuid setting in the configuration")),
        Some(CfgValue::Atom(string)) => Ok(Setting::String(string)),
        Some(CfgValue::List(items)) => items
            .into_iter()
            .map(|item| match item {
                CfgValue::Atom(item) => Ok(item),
                CfgValue::List(_) => Err(xl_error("[", "a list inside the cpuid list: its items must be strings")),
            })
            .collect::<Result<_, _>>()
            .map(Setting::Items),
    }
}

fn unquote(text: &str) -> Option<&str> {
    let first = text.chars().next()?;
    if first != '"' && first != '\'' {
        return None;
    }
    text[1..].strip_suffix(first)
}

/// The quoted strings of a `[ '…', "…" ]` list.
fn list_items(text: &str) -> Result<Vec<String>, XlError> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.trim_end().strip_suffix(']'))
        .ok_or_else(|| xl_error(text, "a list must be [ '…', … ]"))?;
    let mut items = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let quote = rest
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| xl_error(rest.split(',').next().unwrap_or(rest), "list items must be quoted strings"))?;
        let end = rest[1..].find(quote).ok_or_else(|| xl_error(rest, "unterminated string"))? + 1;
        items.push(rest[1..end].to_string());
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(items)
}

/// The form of a `cpuid=` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XlForm {
    /// `"host,NAME=VALUE,…"`.
    Names,
    /// `['LEAF:eXx=…', …]`.
    List,
}

/// What [`xl_for_pool`] wrote, and what it could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlPlan {
    /// The `cpuid = …` line.
    pub line: String,
    /// The form chosen.
    pub form: XlForm,
    /// Feature bits the pool default needs forced on some host that the chosen form cannot
    /// express for this release, with the hosts whose default differs.
    pub unexpressed: Vec<(FeatureId, Vec<String>)>,
    /// Limits the pool lowers that `cpuid=` cannot (all but the max basic leaf).
    pub limits: Vec<String>,
}

impl XlPlan {
    /// What the line cannot do, one sentence each: the bits its form cannot express (with the
    /// hosts whose default differs) and the limits it cannot lower, each with the route that can.
    pub fn notes(&self, release: XenRelease) -> Vec<String> {
        let mut notes: Vec<String> = self
            .unexpressed
            .iter()
            .map(|(feature, hosts)| {
                format!(
                    "xl ({} form, Xen {release}) cannot express {}, which differs on {}: create the domain paused (xl create -p), then cpupolicy domain set DOMID POLICY",
                    self.form,
                    crate::feature_name(*feature),
                    hosts.join(", ")
                )
            })
            .collect();
        notes.extend(
            self.limits.iter().map(|limit| {
                format!("xl cannot lower the {limit}: xl create -p, then cpupolicy domain set DOMID POLICY")
            }),
        );
        notes
    }
}

/// The bits levelling decides that a `cpuid=` must force: everything but host-reflected,
/// topology, run-time and AMD's leaf-1 copies, which Xen or libxl set themselves.
fn forced_mask(word: usize) -> u32 {
    let rules = masks();
    !(rules.reflected[word] | rules.topology[word] | rules.runtime[word] | rules.mirror[word])
}

/// Every feature bit a configuration must force for the pool default on each host: the bit,
/// whether the pool has it, and the hosts whose default differs.
type Forced = Vec<(FeatureId, bool, Vec<String>)>;

fn forced_bits(pool_default: &CpuPolicy, hosts: &[(&str, &CpuPolicy)]) -> Forced {
    let target = pool_default.feature_words();
    let mut forced: Forced = Vec::new();
    for (w, &pooled) in target.iter().enumerate() {
        let mut differ = 0u32;
        for (_, policy) in hosts {
            differ |= (policy.feature_words()[w] ^ pooled) & forced_mask(w);
        }
        crate::level_rules::each_bit(differ, w, |id| {
            let on = pooled & id.mask() != 0;
            let culprits = hosts
                .iter()
                .filter(|(_, p)| (p.feature_words()[w] & id.mask() != 0) != on)
                .map(|(n, _)| n.to_string())
                .collect();
            forced.push((id, on, culprits));
        });
    }
    forced
}

/// Splits the forced bits into those whose leaf every host has (libxl applies an entry only to a
/// leaf the domain's policy holds: `Missing leaf` otherwise, and the domain is not built) and
/// those beyond the pool default's ranges, which no entry may name. Beyond the pool's max basic
/// leaf, when `maxleaf` is lowered, the bits vanish with their leaves and are dropped; the rest
/// are returned second, to be reported.
fn in_range(pool: &CpuPolicy, forced: Forced, maxleaf_lowered: bool) -> (Forced, Vec<(FeatureId, Vec<String>)>) {
    let (mut kept, mut beyond) = (Vec::new(), Vec::new());
    for (id, on, culprits) in forced {
        let (inside, basic) = match feature_target(id) {
            Some(XlTarget::Cpuid { leaf, .. }) if leaf >= 0x8000_0000 => (leaf <= pool.max_extended_leaf(), false),
            Some(XlTarget::Cpuid { leaf, subleaf, .. }) => {
                let leaf7 = leaf != 7 || subleaf.unwrap_or(0) <= pool.leaf7_max_subleaf();
                (leaf <= pool.max_basic_leaf() && leaf7, leaf > pool.max_basic_leaf())
            }
            _ => (true, false),
        };
        match (inside, basic && maxleaf_lowered) {
            (true, _) => kept.push((id, on, culprits)),
            (false, true) => {}
            (false, false) => beyond.push((id, culprits)),
        }
    }
    (kept, beyond)
}

/// One `cpuid=` value that, applied by libxl of `release` to each host's default policy,
/// gives the pool default's features: names where libxl knows them, else the list form when it
/// expresses more. `hosts` are (name, default policy).
pub fn xl_for_pool(pool_default: &CpuPolicy, hosts: &[(&str, &CpuPolicy)], release: XenRelease) -> XlPlan {
    let maxleaf = pool_default.max_basic_leaf();
    let lower_leaf = hosts.iter().any(|(_, p)| p.max_basic_leaf() != maxleaf);
    // `maxleaf=` takes the basic leaves beyond the pool's away on every host, and their bits
    // with them; libxl refuses entries for leaves a host does not have, so none are written.
    let (forced, beyond) = in_range(pool_default, forced_bits(pool_default, hosts), lower_leaf);

    // The name form.
    let mut names = String::from("host");
    let mut names_lost = Vec::new();
    if lower_leaf {
        let _ = write!(names, ",maxleaf={maxleaf}");
    }
    for (id, on, culprits) in &forced {
        match name_for(*id, release) {
            Some(name) => {
                let _ = write!(names, ",{name}={}", u8::from(*on));
            }
            None => names_lost.push((*id, culprits.clone())),
        }
    }
    // The list form.
    let mut list = XlCpuid::default();
    let mut list_lost = Vec::new();
    if lower_leaf {
        let bits: Vec<u8> = (0..32).rev().map(|i| if (maxleaf >> i) & 1 == 1 { b'1' } else { b'0' }).collect();
        list.leaf_mut(0, None).filters[0] = Some(bits.try_into().unwrap_or([b'x'; 32]));
    }
    for (id, on, culprits) in &forced {
        match feature_target(*id) {
            Some(XlTarget::Cpuid { leaf, subleaf, register, bit, .. }) => {
                let filter = list.leaf_mut(leaf, subleaf).filters[register.index()].get_or_insert([b'x'; 32]);
                filter[31 - usize::from(bit)] = if *on { b'1' } else { b'0' };
            }
            _ => list_lost.push((*id, culprits.clone())),
        }
    }
    let (line, form, mut unexpressed) = if list_lost.len() < names_lost.len() {
        (format!("cpuid = {}", list.to_list_text()), XlForm::List, list_lost)
    } else {
        (format!("cpuid = \"{names}\""), XlForm::Names, names_lost)
    };
    unexpressed.extend(beyond);
    let mut limits = Vec::new();
    for field in [
        LimitField::MaxExtendedLeaf,
        LimitField::Leaf7MaxSubleaf,
        LimitField::MaxPhysAddrBits,
        LimitField::MaxLinAddrBits,
    ] {
        let pooled = field.read(pool_default);
        let higher: Vec<&str> = hosts.iter().filter(|(_, p)| field.read(p) > pooled).map(|(n, _)| *n).collect();
        if !higher.is_empty() {
            limits.push(format!("{field} {pooled:#x}: higher on {}", higher.join(", ")));
        }
    }
    XlPlan { line, form, unexpressed, limits }
}

/// A feature name of libvirt's x86 CPU map (`src/cpu_map/x86_features.xml`) and its bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibvirtName {
    /// libvirt's name.
    pub name: &'static str,
    /// Its bit.
    pub place: Place,
}

/// Where one feature bit lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A CPUID bit.
    Cpuid {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf, if any.
        subleaf: Option<u32>,
        /// The register.
        register: Register,
        /// The bit.
        bit: u8,
    },
    /// An MSR bit.
    Msr {
        /// The MSR.
        index: u32,
        /// The bit.
        bit: u8,
    },
}

pub(crate) use libvirt_names::LIBVIRT_NAMES;

/// libvirt's libxl driver renames these features before handing `NAME=0|1` to libxl
/// (`xenTranslateCPUFeature`, `src/libxl/xen_xl.c`: libvirt name, libxl name); other names go
/// through unchanged.
pub const LIBVIRT_TO_LIBXL: [(&str, &str); 17] = [
    ("cx16", "cmpxchg16"),
    ("cid", "cntxid"),
    ("ds_cpl", "dscpl"),
    ("pclmuldq", "pclmulqdq"),
    ("pni", "sse3"),
    ("ht", "htt"),
    ("pn", "psn"),
    ("clflush", "clfsh"),
    ("sep", "sysenter"),
    ("cx8", "cmpxchg8"),
    ("nodeid_msr", "nodeid"),
    ("cr8legacy", "altmovcr8"),
    ("lahf_lm", "lahfsahf"),
    ("cmp_legacy", "cmplegacy"),
    ("fxsr_opt", "ffxsr"),
    ("pdpe1gb", "page1gb"),
    ("spec-ctrl", "ibrsb"),
];

/// The libxl name libvirt's driver passes for a libvirt feature name.
pub fn libvirt_to_libxl(name: &str) -> &str {
    LIBVIRT_TO_LIBXL.iter().find(|(v, _)| *v == name).map_or(name, |(_, x)| x)
}

/// The libvirt name whose `<feature>` reaches exactly feature `id` through libvirt's libxl
/// driver and libxl of `release`, if any.
pub fn libvirt_name_for(id: FeatureId, release: XenRelease) -> Option<&'static str> {
    let target = feature_target(id)?;
    let place = match target {
        XlTarget::Cpuid { leaf, subleaf, register, bit, .. } => Place::Cpuid { leaf, subleaf, register, bit },
        XlTarget::Msr { index, bit } => Place::Msr { index, bit },
    };
    LIBVIRT_NAMES
        .iter()
        .filter(|n| n.place == place)
        .map(|n| n.name)
        .find(|name| resolve(libvirt_to_libxl(name), release) == Some(target))
}

/// What [`libvirt_for_pool`] wrote, and what it could not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibvirtPlan {
    /// The `<cpu mode='host-passthrough'>` element.
    pub xml: String,
    /// Feature bits with no libvirt name that reaches them, with the hosts whose default differs.
    pub unexpressed: Vec<(FeatureId, Vec<String>)>,
    /// VMX/SVM, which libvirt's libxl driver turns into nested virtualisation rather than CPUID.
    pub nested: Vec<FeatureId>,
}

/// The `<cpu mode='host-passthrough'>` element for a libvirt domain (libxl driver) that gives
/// the pool default's features on every host: `<feature policy='disable'/'require'>` in libvirt's
/// names, as its driver hands them to libxl of `release`.
pub fn libvirt_for_pool(pool_default: &CpuPolicy, hosts: &[(&str, &CpuPolicy)], release: XenRelease) -> LibvirtPlan {
    let mut xml = String::from("<cpu mode='host-passthrough'>\n");
    let (mut unexpressed, mut nested) = (Vec::new(), Vec::new());
    let nested_names = ["vmx", "svm"];
    // libvirt cannot lower the max leaf: bits of leaves beyond the pool's stay where hosts have them.
    let (forced, beyond) = in_range(pool_default, forced_bits(pool_default, hosts), false);
    unexpressed.extend(beyond);
    for (id, on, culprits) in forced {
        if id.feature().is_some_and(|f| nested_names.contains(&f.name)) {
            nested.push(id);
            continue;
        }
        match libvirt_name_for(id, release) {
            Some(name) => {
                let policy = if on { "require" } else { "disable" };
                let _ = writeln!(xml, "  <feature policy='{policy}' name='{name}'/>");
            }
            None => unexpressed.push((id, culprits)),
        }
    }
    xml.push_str("</cpu>\n");
    LibvirtPlan { xml, unexpressed, nested }
}

impl LibvirtPlan {
    /// What the element cannot do, one sentence each.
    pub fn notes(&self, release: XenRelease, kind: cpupolicy_featureset::GuestKind) -> Vec<String> {
        let mut notes = Vec::new();
        if kind == cpupolicy_featureset::GuestKind::Pv {
            notes.push("libvirt's libxl driver applies <cpu> features to HVM and PVH guests only, not PV".to_string());
        }
        for (feature, hosts) in &self.unexpressed {
            notes.push(format!(
                "libvirt has no name that reaches {} through libxl (Xen {release}); it differs on {}: create the domain paused, then cpupolicy domain set DOMID POLICY",
                crate::feature_name(*feature),
                hosts.join(", ")
            ));
        }
        for feature in &self.nested {
            notes.push(format!(
                "libvirt's libxl driver turns {} into nested virtualisation (nestedhvm), not CPUID",
                crate::feature_name(*feature)
            ));
        }
        notes
    }
}

impl XlCpuid {
    /// The list form: `[ '0x1:ecx=…', … ]`.
    pub fn to_list_text(&self) -> String {
        let items: Vec<String> = self
            .leaves
            .iter()
            .map(|entry| {
                let mut item = format!("{:#x}", entry.leaf);
                if let Some(subleaf) = entry.subleaf {
                    let _ = write!(item, ",{subleaf}");
                }
                item.push(':');
                let registers: Vec<String> = entry
                    .filters
                    .iter()
                    .zip(["eax", "ebx", "ecx", "edx"])
                    .filter_map(|(f, name)| f.map(|f| format!("{name}={}", String::from_utf8_lossy(&f))))
                    .collect();
                item.push_str(&registers.join(","));
                format!("'{item}'")
            })
            .collect();
        format!("[ {} ]", items.join(", "))
    }
}

impl fmt::Display for XlForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XlForm::Names => "names",
            XlForm::List => "list",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpupolicy_featureset::ids;

    #[test]
    fn names_resolve_per_release() {
        use XenRelease::*;
        // The static table wins: `clflush` is leaf 1 EBX's line size, not the feature.
        assert_eq!(
            resolve("clflush", V4_20),
            Some(XlTarget::Cpuid { leaf: 1, subleaf: None, register: Register::Ebx, bit: 8, width: 8 })
        );
        assert_eq!(name_for(ids::CLFLUSH, V4_20), Some("clfsh"));
        // Feature names from 4.18; MSR ones too.
        assert_eq!(name_for(ids::AVX512_VNNI, V4_20), Some("avx512-vnni"));
        assert_eq!(resolve("rsba", V4_20), Some(XlTarget::Msr { index: 0x10a, bit: 2 }));
        assert_eq!(resolve("rsba", V4_17), None);
        assert_eq!(name_for(ids::SSE4_1, V4_17), Some("sse4_1"));
        assert_eq!(name_for(ids::AVX512_BMM, V4_20), None, "4.22's feature, unknown to 4.20's libxl");
    }

    #[test]
    fn both_forms_parse_and_errors_name_the_token() {
        let c = XlCpuid::parse("cpuid = \"host,sse4_1=0,maxleaf=7,rsba=1\" # comment\n", XenRelease::V4_20).unwrap();
        let ecx = c.leaves.iter().find(|l| l.leaf == 1).unwrap().filters[2].unwrap();
        assert_eq!(ecx[31 - 19], b'0');
        assert_eq!(c.msrs[0].filter[63 - 2], b'1');
        let list = "name = 'vm'\ncpuid = [ '0x1:ecx=xxxxxxxxxxxx0xxxxxxxxxxxxxxxxxxx,edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1',\n '7,0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0' ]\n";
        let c = XlCpuid::parse(list, XenRelease::V4_17).unwrap();
        assert_eq!(c.leaves.len(), 2);
        assert_eq!(c.leaves[1].subleaf, Some(0));
        // A string does not run over a line end: libxlutil 4.17 refuses the file (lexical error).
        let split = list.replace(",edx=", ",\n edx=");
        let e = XlCpuid::parse(&split, XenRelease::V4_17).unwrap_err();
        assert!(e.problem.contains("line 2 of the xl configuration: a string not closed on its line"), "{e}");
        for (text, token) in [
            ("host,nosuch=1", "nosuch=1"),
            ("host,sse3", "sse3"),
            ("host,sse3=q", "sse3=q"),
            ("\"tm=0\"", "tm=0"),
            ("['0x1:ecx=xx']", "ecx=xx"),
            ("['0x1:efx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']", "efx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        ] {
            let e = XlCpuid::parse(text, XenRelease::V4_20).unwrap_err();
            assert_eq!(e.token, token, "{text}: {e}");
        }
        assert!(XlCpuid::parse("name = 'vm'\n", XenRelease::V4_20).is_err());
    }

    /// As libxlutil reads a config (the c-api step compares with Debian's): the last `cpuid =`
    /// wins, `cpuid +=` appends a string to a string and a list to a list, and refuses a mix.
    #[test]
    fn repeated_and_appended_settings_read_as_xl_reads_them() {
        let string = |s: &str| Setting::String(s.to_string());
        let items = |i: &[&str]| Setting::Items(i.iter().map(|s| s.to_string()).collect());
        assert_eq!(setting("cpuid = \"host,avx=0\"\ncpuid = \"host,avx=1\"\n").unwrap(), string("host,avx=1"));
        assert_eq!(setting("cpuid = \"host,avx=0\"\ncpuid += \",sse3=0\"\n").unwrap(), string("host,avx=0,sse3=0"));
        assert_eq!(setting("cpuid += \"host\"\n").unwrap(), string("host"));
        assert_eq!(setting("cpuid = ['1:eax=x']\ncpuid += [ \"2:ebx=y\" ]\n").unwrap(), items(&["1:eax=x", "2:ebx=y"]));
        assert_eq!(setting("cpuid = ['1:eax=x']\ncpuid = \"host\"\n").unwrap(), string("host"));
        let e = setting("cpuid = ['1:eax=x']\ncpuid += \"host\"\n").unwrap_err();
        assert!(e.problem.contains("can't add [list] to \"string\""), "{e}");
        // A list inside the list: xl would take the strings before it and drop the rest.
        let e = setting("cpuid = [ '1:eax=x', [ '2:ebx=y' ] ]\n").unwrap_err();
        assert!(e.problem.contains("a list inside the cpuid list"), "{e}");
        // Bare values, as before.
        assert_eq!(setting("  host,avx=0 \n").unwrap(), string("host,avx=0"));
        assert_eq!(setting("['1:eax=x']").unwrap(), items(&["1:eax=x"]));
    }

    #[test]
    fn libvirt_names_reach_the_feature_through_the_driver() {
        use XenRelease::*;
        assert_eq!(libvirt_name_for(ids::SSE3, V4_20), Some("pni"));
        assert_eq!(libvirt_name_for(ids::CLFLUSH, V4_20), Some("clflush"), "renamed clfsh by the driver");
        assert_eq!(libvirt_name_for(ids::RSBA, V4_20), Some("rsba"));
        assert_eq!(libvirt_name_for(ids::RSBA, V4_17), None, "libxl 4.17 has no MSR names");
        assert_eq!(libvirt_to_libxl("lahf_lm"), "lahfsahf");
        assert_eq!(libvirt_to_libxl("avx2"), "avx2");
    }

    /// `family=N` as libxl writes it into leaf 1 EAX (RELEASE-4.17.0's libxl_cpuid.c): below 16
    /// the family bits and a zero extended family; from 16 the family bits all ones and the
    /// extended family N - 15, but for its top bit, which stays N's own bit 7.
    #[test]
    fn family_is_written_as_libxl_writes_it() {
        let eax = |n: &str| {
            let c = XlCpuid::parse(&format!("host,family={n}"), XenRelease::V4_17).unwrap();
            let filter = c.leaves.iter().find(|l| l.leaf == 1).unwrap().filters[0].unwrap();
            // Bits 27..20 (extended family), then bits 11..8 (family).
            (String::from_utf8(filter[4..12].to_vec()).unwrap(), String::from_utf8(filter[20..24].to_vec()).unwrap())
        };
        assert_eq!(eax("6"), ("00000000".into(), "0110".into()));
        assert_eq!(eax("23"), ("00001000".into(), "1111".into()));
        // 142 - 15 = 127 = 0b0111_1111; 142 has bit 7 set, which libxl keeps.
        assert_eq!(eax("142"), ("11111111".into(), "1111".into()));
        // 270 - 15 = 255, but 270 (0x10e) has bit 7 clear.
        assert_eq!(eax("270"), ("01111111".into(), "1111".into()));
    }

    #[test]
    fn numbers_as_strtoul_reads_them() {
        assert_eq!(leading_number("13"), Some(13));
        assert_eq!(leading_number("0x1f"), Some(31));
        assert_eq!(leading_number("010"), Some(8));
        assert_eq!(leading_number("0"), Some(0));
        assert_eq!(leading_number("1junk"), Some(1));
        assert_eq!(leading_number("x"), None);
        // As strtoull: a sign, "0x" without hex digits, white space first, overflow.
        assert_eq!(leading_number("+0"), Some(0));
        assert_eq!(leading_number("-1"), Some(u64::MAX));
        assert_eq!(leading_number("-0x10"), Some(0u64.wrapping_sub(16)));
        assert_eq!(leading_number("0x"), Some(0));
        assert_eq!(leading_number("0xg"), Some(0));
        assert_eq!(leading_number(" \t7"), Some(7));
        assert_eq!(leading_number("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(leading_number("+"), None);
        assert_eq!(leading_number("-x"), None);
    }
}
