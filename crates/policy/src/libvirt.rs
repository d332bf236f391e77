//! libvirt's `<cpudata>` CPUID dumps (`tests/cputestdata/*.xml`, `virsh`'s
//! `cpu-baseline` inputs) read as raw policies.
//!
//! The dumps put one element per line, so a small strict line parser does; anything else is
//! an error naming the line. libvirt records leaves without sub-leaves with `ecx_in='0x00'`:
//! such an entry is taken as "no sub-leaf" unless the leaf has sub-leaves ([`has_subleaves`],
//! or the dump itself records a non-zero `ecx_in` for it).

use std::collections::BTreeSet;

use crate::{has_subleaves, CpuPolicy, CpuidKey, Registers};
use cpupolicy_featureset::excerpt;

/// A line of a libvirt dump that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LibvirtError {
    /// 1-based line number (the last line for a missing `</cpudata>`).
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl CpuPolicy {
    /// Reads a libvirt `<cpudata arch='x86'>` dump: `<cpuid eax_in ecx_in eax ebx ecx edx/>`
    /// and `<msr index edx eax/>` elements, one per line, comments and an XML declaration
    /// allowed around them. A leaf or MSR recorded twice is an error.
    pub fn from_libvirt_xml(text: &str) -> Result<CpuPolicy, LibvirtError> {
        let mut state = State::Before;
        let mut cpuid: Vec<(usize, u32, u32, Registers)> = Vec::new();
        let mut msrs: Vec<(usize, u32, u64)> = Vec::new();
        let mut in_comment = false;
        let mut comment_line = 0;
        let mut last_line = 0;
        for (number, raw_line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            last_line = number;
            let line = raw_line.trim();
            if in_comment {
                in_comment = !line.contains("-->");
                continue;
            }
            if line.is_empty() {
                continue;
            }
            if line.starts_with("<!--") {
                in_comment = !line.ends_with("-->");
                comment_line = number;
                continue;
            }
            if state == State::Before && line.starts_with("<?xml") && line.ends_with("?>") {
                continue;
            }
            let fail = |problem: String| LibvirtError { line: number, problem };
            match state {
                State::Before => {
                    let attributes = element(line, "cpudata", false).map_err(fail)?;
                    match attributes.as_slice() {
                        [("arch", "x86")] => state = State::Inside,
                        _ => return Err(fail(format!("expected <cpudata arch='x86'>, found '{}'", excerpt(line)))),
                    }
                }
                State::Inside if line == "</cpudata>" => state = State::After,
                State::Inside if line.starts_with("<cpuid") => {
                    let attributes = element(line, "cpuid", true).map_err(fail)?;
                    let [eax_in, ecx_in, eax, ebx, ecx, edx] =
                        take_attributes(&attributes, ["eax_in", "ecx_in", "eax", "ebx", "ecx", "edx"]).map_err(fail)?;
                    let (leaf, subleaf) = (hex32(eax_in).map_err(fail)?, hex32(ecx_in).map_err(fail)?);
                    if subleaf != 0 && PLAIN_LEAVES.contains(&leaf) {
                        return Err(fail(format!("leaf {leaf:#x} has no sub-leaves, but ecx_in is {subleaf:#x}")));
                    }
                    let registers = Registers::new(
                        hex32(eax).map_err(fail)?,
                        hex32(ebx).map_err(fail)?,
                        hex32(ecx).map_err(fail)?,
                        hex32(edx).map_err(fail)?,
                    );
                    cpuid.push((number, leaf, subleaf, registers));
                }
                State::Inside if line.starts_with("<msr") => {
                    let attributes = element(line, "msr", true).map_err(fail)?;
                    let [index, edx, eax] = take_attributes(&attributes, ["index", "edx", "eax"]).map_err(fail)?;
                    let value = (u64::from(hex32(edx).map_err(fail)?) << 32) | u64::from(hex32(eax).map_err(fail)?);
                    msrs.push((number, hex32(index).map_err(fail)?, value));
                }
                State::Inside => {
                    return Err(fail(format!("expected <cpuid/>, <msr/> or </cpudata>, found '{}'", excerpt(line))))
                }
                State::After => return Err(fail(format!("unexpected '{}' after </cpudata>", excerpt(line)))),
            }
        }
        if in_comment {
            return Err(LibvirtError { line: comment_line, problem: "comment '<!--' is never closed by '-->'".into() });
        }
        if state != State::After {
            let problem = if state == State::Before { "no <cpudata> element" } else { "missing </cpudata>" };
            return Err(LibvirtError { line: last_line.max(1), problem: problem.into() });
        }

        // Leaves the dump itself shows with sub-leaves count as indexed even if the table does
        // not know them yet.
        let indexed: BTreeSet<u32> =
            cpuid.iter().filter(|(_, leaf, subleaf, _)| read_as_indexed(*leaf, *subleaf)).map(|e| e.1).collect();
        let mut keyed: Vec<(CpuidKey, Registers, usize)> = cpuid
            .into_iter()
            .map(|(line, leaf, subleaf, registers)| {
                let subleaf = indexed.contains(&leaf).then_some(subleaf);
                (CpuidKey::new(leaf, subleaf), registers, line)
            })
            .collect();
        keyed.sort_by_key(|(key, _, line)| (*key, *line));
        if let Some(pair) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LibvirtError {
                line: pair[1].2,
                problem: format!("leaf {} repeats line {}", pair[0].0, pair[0].2),
            });
        }
        msrs.sort_by_key(|(line, index, _)| (*index, *line));
        if let Some(pair) = msrs.windows(2).find(|w| w[0].1 == w[1].1) {
            return Err(LibvirtError {
                line: pair[1].0,
                problem: format!("MSR {:#x} repeats line {}", pair[0].1, pair[0].0),
            });
        }
        Ok(CpuPolicy::from_sorted_parts(
            keyed.into_iter().filter(|(_, r, _)| !r.is_zero()).map(|(k, r, _)| (k, r)).collect(),
            msrs.into_iter().filter(|(_, _, v)| *v != 0).map(|(_, i, v)| (i, v)).collect(),
        ))
    }
}

/// Whether an entry recorded with this `ecx_in` makes the reader index its leaf: the leaf is
/// known to have sub-leaves, or the dump shows a non-zero one.
fn read_as_indexed(leaf: u32, ecx_in: u32) -> bool {
    ecx_in != 0 || has_subleaves(leaf)
}

/// Leaves that architecturally have no sub-leaves and that everything else is read through
/// (vendor, signature, features): a dump recording one with a sub-leaf is wrong, not a leaf to
/// index.
const PLAIN_LEAVES: [u32; 4] = [0, 1, 0x8000_0000, 0x8000_0001];

impl CpuPolicy {
    /// The policy as a libvirt `<cpudata arch='x86'>` dump, which [`CpuPolicy::from_libvirt_xml`]
    /// reads back: one `<cpuid>` per leaf (`ecx_in='0x00'` for leaves without sub-leaves, as
    /// libvirt writes them), one `<msr>` per MSR.
    ///
    /// A leaf the format cannot carry as it is held is refused, naming it, rather than written
    /// as something that reads back as another leaf or not at all: a leaf without sub-leaf
    /// where the leaf has sub-leaves (the table's, or a non-zero one the policy holds), which
    /// libvirt's `ecx_in='0x00'` would make sub-leaf 0; sub-leaf 0 of a leaf without sub-leaves
    /// (held with the plain leaf or not), which would read back as the plain leaf; a sub-leaf of
    /// leaf 0, 1, 0x80000000 or 0x80000001, which the reader refuses.
    pub fn to_libvirt_xml(&self) -> Result<String, LibvirtWriteError> {
        use std::fmt::Write as _;
        // The leaves the reader will index, from the ecx_in each entry is written with.
        let indexed: BTreeSet<u32> = self
            .cpuid_entries()
            .filter(|(key, _)| read_as_indexed(key.leaf, key.subleaf.unwrap_or(0)))
            .map(|(key, _)| key.leaf)
            .collect();
        for (key, _) in self.cpuid_entries() {
            let reason = match key.subleaf {
                Some(s) if s != 0 && PLAIN_LEAVES.contains(&key.leaf) => {
                    "the leaf has no sub-leaves, and a dump recording one is refused when read"
                }
                None if indexed.contains(&key.leaf) => {
                    "the leaf has sub-leaves, so libvirt's ecx_in='0x00' would make this sub-leaf 0"
                }
                Some(0) if !indexed.contains(&key.leaf) => {
                    "libvirt writes a leaf without sub-leaves with ecx_in='0x00', so sub-leaf 0 of one \
                     would read back as the leaf without sub-leaf"
                }
                _ => continue,
            };
            return Err(LibvirtWriteError { key, reason });
        }
        let mut out = String::from("<cpudata arch='x86'>\n");
        for (key, r) in self.cpuid_entries() {
            let _ = writeln!(
                out,
                "  <cpuid eax_in='{:#010x}' ecx_in='{:#04x}' eax='{:#010x}' ebx='{:#010x}' ecx='{:#010x}' edx='{:#010x}'/>",
                key.leaf,
                key.subleaf.unwrap_or(0),
                r.eax,
                r.ebx,
                r.ecx,
                r.edx
            );
        }
        for (index, value) in self.msrs() {
            let _ =
                writeln!(out, "  <msr index='{index:#x}' edx='{:#010x}' eax='{:#010x}'/>", value >> 32, value as u32);
        }
        out.push_str("</cpudata>\n");
        Ok(out)
    }
}

/// A leaf libvirt's dump format cannot carry as the policy holds it
/// ([`CpuPolicy::to_libvirt_xml`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("leaf {key} cannot be written as a libvirt dump: {reason}")]
pub struct LibvirtWriteError {
    /// The leaf.
    pub key: CpuidKey,
    /// Why.
    pub reason: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Before,
    Inside,
    After,
}

/// The attributes of `<name a='1' b="2">` (or `.../>` when `empty`), in order.
fn element<'a>(line: &'a str, name: &str, empty: bool) -> Result<Vec<(&'a str, &'a str)>, String> {
    let close = if empty { "/>" } else { ">" };
    let inner = line
        .strip_prefix('<')
        .and_then(|l| l.strip_prefix(name))
        .and_then(|l| l.strip_suffix(close))
        .filter(|l| l.is_empty() || l.starts_with(char::is_whitespace))
        .ok_or_else(|| format!("expected <{name} …{close}, found '{}'", excerpt(line)))?;
    let mut attributes = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let (attribute, after) =
            rest.split_once('=').ok_or_else(|| format!("cannot read attributes of '{}'", excerpt(line)))?;
        // XML allows white space on either side of the `=`.
        let after = after.trim_start();
        let quote = after.chars().next().filter(|q| *q == '\'' || *q == '"');
        let quote = quote
            .ok_or_else(|| format!("attribute '{}' is not quoted in '{}'", excerpt(attribute.trim()), excerpt(line)))?;
        let (value, after) =
            after[1..].split_once(quote).ok_or_else(|| format!("unterminated attribute in '{}'", excerpt(line)))?;
        attributes.push((attribute.trim(), value));
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err(format!("cannot read attributes of '{}'", excerpt(line)));
        }
        rest = after.trim_start();
    }
    Ok(attributes)
}

/// Exactly these attributes, in any order, each once.
fn take_attributes<'a, const N: usize>(
    attributes: &[(&str, &'a str)],
    names: [&str; N],
) -> Result<[&'a str; N], String> {
    let mut values = [""; N];
    let mut seen = [false; N];
    for (name, value) in attributes {
        let slot = names.iter().position(|n| n == name).ok_or_else(|| format!("unknown attribute '{name}'"))?;
        if std::mem::replace(&mut seen[slot], true) {
            return Err(format!("attribute '{name}' given twice"));
        }
        values[slot] = value;
    }
    if let Some(missing) = names.iter().zip(seen).find(|(_, seen)| !seen) {
        return Err(format!("missing attribute '{}'", missing.0));
    }
    Ok(values)
}

/// `0x` and 1 to 8 hex digits, as libvirt writes them.
fn hex32(text: &str) -> Result<u32, String> {
    crate::json::parse_hex(text, 8).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "<!-- test CPU -->
<cpudata arch='x86'>
  <cpuid eax_in='0x00000000' ecx_in='0x00' eax='0x0000000d' ebx='0x756e6547' ecx='0x6c65746e' edx='0x49656e69'/>
  <cpuid eax_in='0x00000001' ecx_in='0x00' eax='0x000306c3' ebx='0x00100800' ecx='0x7ffafbff' edx='0xbfebfbff'/>
  <cpuid eax_in='0x00000007' ecx_in='0x00' eax='0x00000000' ebx='0x000027ab' ecx='0x00000000' edx='0x9c000000'/>
  <cpuid eax_in='0x00000011' ecx_in='0x00' eax='0x00000005' ebx='0x00000000' ecx='0x00000000' edx='0x00000000'/>
  <cpuid eax_in='0x00000011' ecx_in='0x01' eax='0x00000006' ebx='0x00000000' ecx='0x00000000' edx='0x00000000'/>
  <cpuid eax_in='0x00000002' ecx_in='0x00' eax='0x00000000' ebx='0x00000000' ecx='0x00000000' edx='0x00000000'/>
  <msr index='0x10a' edx='0x00000001' eax='0x0000000b'/>
</cpudata>
";

    #[test]
    fn leaves_get_the_subleaf_form_they_have() {
        let p = CpuPolicy::from_libvirt_xml(DUMP).unwrap();
        assert_eq!(p.leaf(1).eax, 0x306c3);
        assert_eq!(p.subleaf(7, 0).ebx, 0x27ab, "leaf 7 is indexed");
        assert_eq!(p.subleaf(0x11, 0).eax, 5, "an unknown leaf with a sub-leaf 1 in the dump is indexed");
        assert!(!p.contains(CpuidKey::plain(2)), "zero leaves are not kept");
        assert_eq!(p.arch_capabilities(), 0x1_0000_000b);
    }

    #[test]
    fn errors_name_the_line() {
        let e = CpuPolicy::from_libvirt_xml(&DUMP.replace("ebx='0x000027ab'", "ebx='27ab'")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e = CpuPolicy::from_libvirt_xml(&DUMP.replace("ecx_in='0x01'", "ecx_in='0x00'")).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.problem.contains("repeats line 6"), "{e}");
        let e = CpuPolicy::from_libvirt_xml(&DUMP.replace("</cpudata>\n", "")).unwrap_err();
        assert!(e.problem.contains("missing </cpudata>"), "{e}");
        let e = CpuPolicy::from_libvirt_xml(&DUMP.replace(" edx='0x00000001'", "")).unwrap_err();
        assert_eq!((e.line, e.problem.as_str()), (9, "missing attribute 'edx'"));
        let e = CpuPolicy::from_libvirt_xml(&DUMP.replace("<msr", "<msrx")).unwrap_err();
        assert_eq!(e.line, 9, "{e}");
    }

    #[test]
    fn an_unterminated_comment_after_cpudata_is_refused() {
        let e = CpuPolicy::from_libvirt_xml(&format!("{DUMP}<!-- never closed\n")).unwrap_err();
        assert_eq!((e.line, e.problem.as_str()), (11, "comment '<!--' is never closed by '-->'"));
        assert!(CpuPolicy::from_libvirt_xml(&format!("{DUMP}<!-- closed\n-->\n")).is_ok());
    }

    /// What the format cannot carry is refused, naming the leaf; what it can reads back as it
    /// was held (a leaf the table does not know, held with sub-leaves 0 and 1, stays indexed).
    #[test]
    fn only_what_reads_back_is_written() {
        let regs = Registers::new(1, 2, 3, 4);
        let with = |keys: &[CpuidKey]| {
            let mut p = CpuPolicy::from_libvirt_xml(DUMP).unwrap();
            for &key in keys {
                p.set_cpuid(key, regs);
            }
            p
        };
        let refused = [
            (vec![CpuidKey::plain(0x8000_0001), CpuidKey::indexed(0x8000_0001, 0)], CpuidKey::indexed(0x8000_0001, 0)),
            (vec![CpuidKey::indexed(0x8000_0001, 2)], CpuidKey::indexed(0x8000_0001, 2)),
            (vec![CpuidKey::plain(0x12)], CpuidKey::plain(0x12)),
            (vec![CpuidKey::plain(0x40), CpuidKey::indexed(0x40, 3)], CpuidKey::plain(0x40)),
            (vec![CpuidKey::indexed(0x41, 0)], CpuidKey::indexed(0x41, 0)),
        ];
        for (keys, named) in refused {
            let e = with(&keys).to_libvirt_xml().unwrap_err();
            assert_eq!(e.key, named, "{keys:?}: {e}");
            assert!(e.to_string().starts_with(&format!("leaf {named} cannot be written")), "{e}");
        }
        for keys in [vec![CpuidKey::indexed(0x41, 0), CpuidKey::indexed(0x41, 1)], vec![CpuidKey::plain(0x41)]] {
            let p = with(&keys);
            assert_eq!(CpuPolicy::from_libvirt_xml(&p.to_libvirt_xml().unwrap()).unwrap(), p, "{keys:?}");
        }
    }

    /// XML's other spellings of the same attributes read the same: double quotes, white space
    /// around `=` and before `/>`.
    #[test]
    fn attributes_read_in_either_quote_and_with_spaces() {
        let respelled = DUMP
            .replace("eax_in='0x00000001'", "eax_in = \"0x00000001\"")
            .replace("eax='0x0000000b'/>", "eax= '0x0000000b' />")
            .replace("<cpudata arch='x86'>", "<cpudata arch=\"x86\">");
        assert_ne!(respelled, DUMP);
        assert_eq!(CpuPolicy::from_libvirt_xml(&respelled).unwrap(), CpuPolicy::from_libvirt_xml(DUMP).unwrap());
    }

    #[test]
    fn leaf_1_with_ecx_in_set_is_named() {
        let bad = DUMP.replace("eax_in='0x00000001' ecx_in='0x00'", "eax_in='0x00000001' ecx_in='0x01'");
        let e = CpuPolicy::from_libvirt_xml(&bad).unwrap_err();
        assert_eq!((e.line, e.problem.as_str()), (4, "leaf 0x1 has no sub-leaves, but ecx_in is 0x1"));
    }
}
