//! `xen-cpuid -p` text: printed exactly as Xen's tool prints it, so the two can be diffed, and
//! parsed back.
//!
//! Layout from `tools/misc/xen-cpuid.c` (`print_policy` and `main`, unchanged 4.14–4.22): an
//! optional line with the format's maxima (system policies only), then per policy a header
//! with the serialised counts, the non-zero CPUID leaves in serialisation order and every MSR;
//! a policy Xen does not provide is one "not supported" line.

use std::fmt::{self, Write as _};

use crate::wire::WireLeaf;
use crate::{CpuPolicy, Dropped, HostBundle, SystemPolicy, WireLimits, XenCpuidLeaf, XenMsrEntry};
use cpupolicy_featureset::excerpt;

/// A whole `xen-cpuid -p` output: the system policies, or one domain's (`-d N`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XenCpuidReport {
    /// "Xen reports there are maximum N leaves and M MSRs" (printed for system policies only).
    pub maxima: Option<(u32, u32)>,
    /// The policies, in the order printed.
    pub sections: Vec<ReportSection>,
}

/// One policy of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSection {
    /// Which policy.
    pub name: SectionName,
    /// Its content; `None` when Xen said "policy not supported by Xen".
    pub content: Option<PrintedPolicy>,
}

/// What a section is named after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SectionName {
    /// A system policy (`Raw`, `PV Max`, …).
    System(SystemPolicy),
    /// A domain's policy (`Domain 3`).
    Domain(u32),
}

impl fmt::Display for SectionName {
    /// As `xen-cpuid` labels it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionName::System(which) => f.write_str(which.xen_cpuid_label()),
            SectionName::Domain(domid) => write!(f, "Domain {domid}"),
        }
    }
}

/// A policy as `xen-cpuid` prints it: Xen's counts of serialised entries (zero leaves
/// included, though not printed), the non-zero leaves and the MSRs in their printed order.
///
/// Holds only what Xen's format carries, so it prints back exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrintedPolicy {
    nr_leaves: u32,
    msrs: Vec<XenMsrEntry>,
    policy: CpuPolicy,
}

impl PrintedPolicy {
    /// The policy as a Xen with these limits would serialise and print it, and what it could
    /// not carry.
    pub fn new(policy: &CpuPolicy, limits: &WireLimits) -> (PrintedPolicy, Vec<Dropped>) {
        let wire = policy.to_wire(limits);
        let mut carried = CpuPolicy::new();
        for entry in &wire.leaves {
            carried.set_cpuid(entry.key(), entry.registers());
        }
        for entry in &wire.msrs {
            carried.set_msr(entry.idx, entry.val);
        }
        let printed = PrintedPolicy { nr_leaves: wire.leaves.len() as u32, msrs: wire.msrs, policy: carried };
        (printed, wire.dropped)
    }

    /// Serialised CPUID leaves, as the header counts them.
    pub fn nr_leaves(&self) -> u32 {
        self.nr_leaves
    }

    /// Serialised MSRs.
    pub fn nr_msrs(&self) -> u32 {
        self.msrs.len() as u32
    }

    /// The policy printed.
    pub fn policy(&self) -> &CpuPolicy {
        &self.policy
    }

    /// The policy printed, taken.
    pub fn into_policy(self) -> CpuPolicy {
        self.policy
    }
}

/// A line of `xen-cpuid -p` text that cannot be what the tool printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct TextError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

const CPUID_HEADER: &str = "  leaf     subleaf  -> eax      ebx      ecx      edx";
const MSR_HEADER: &str = "  index    -> value";

impl XenCpuidReport {
    /// One policy, printed the way `xen-cpuid` prints a domain's (no maxima line), and what
    /// Xen's format could not carry of it.
    pub fn single(name: SectionName, policy: &CpuPolicy, limits: &WireLimits) -> (XenCpuidReport, Vec<Dropped>) {
        let (printed, dropped) = PrintedPolicy::new(policy, limits);
        let report = XenCpuidReport { maxima: None, sections: vec![ReportSection { name, content: Some(printed) }] };
        (report, dropped)
    }

    /// All six system policies of a bundle, as `xen-cpuid -p` prints them on that host, and
    /// what Xen's format could not carry of each.
    pub fn from_bundle(bundle: &HostBundle) -> (XenCpuidReport, Vec<(SystemPolicy, Dropped)>) {
        let limits = bundle.wire_limits();
        let maxima = (
            bundle.max_leaves.unwrap_or_else(|| limits.max_leaves()),
            bundle.max_msrs.unwrap_or_else(|| limits.max_msrs()),
        );
        let mut all_dropped = Vec::new();
        let sections = SystemPolicy::ALL
            .into_iter()
            .map(|which| {
                let content = bundle.policies.get(which).map(|policy| {
                    let (printed, dropped) = PrintedPolicy::new(policy, &limits);
                    all_dropped.extend(dropped.into_iter().map(|d| (which, d)));
                    printed
                });
                ReportSection { name: SectionName::System(which), content }
            })
            .collect();
        (XenCpuidReport { maxima: Some(maxima), sections }, all_dropped)
    }

    /// The system policies of the report (domain sections are left out), with the maxima.
    pub fn to_bundle(&self) -> HostBundle {
        let mut bundle = HostBundle {
            max_leaves: self.maxima.map(|m| m.0),
            max_msrs: self.maxima.map(|m| m.1),
            ..HostBundle::default()
        };
        for section in &self.sections {
            if let (SectionName::System(which), Some(content)) = (section.name, &section.content) {
                bundle.policies.set(which, Some(content.policy.clone()));
            }
        }
        bundle
    }

    /// The wire limits the report's maxima imply, or the newest.
    pub fn wire_limits(&self) -> WireLimits {
        self.maxima.and_then(|(leaves, msrs)| WireLimits::from_maxima(leaves, msrs)).unwrap_or(WireLimits::LATEST)
    }

    /// Parses `xen-cpuid -p` output (system policies, or one `Domain N`), strictly: every
    /// line must be one the tool prints. Trailing spaces on the column headers may be missing.
    pub fn parse(text: &str) -> Result<XenCpuidReport, TextError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
        let mut report = XenCpuidReport::default();
        if let Some(&(number, line)) = lines.peek() {
            if let Some(rest) = line.strip_prefix("Xen reports there are maximum ") {
                report.maxima =
                    Some(parse_maxima(rest).ok_or_else(|| error(number, format!("cannot read '{}'", excerpt(line))))?);
                lines.next();
            }
        }
        let limits = report.wire_limits();
        // Each section's first line: `xen-cpuid -p` prints each system policy once, or one
        // domain's alone. Anything else would lose a policy when read, so it is refused.
        let mut starts: Vec<(SectionName, usize)> = Vec::new();
        let mut section = |name: SectionName, number: usize| -> Result<(), TextError> {
            if let Some((_, first)) = starts.iter().find(|(seen, _)| *seen == name) {
                return Err(error(number, format!("a second '{name}' policy (the first is at line {first})")));
            }
            let domain = |n: &SectionName| matches!(n, SectionName::Domain(_));
            if let Some((other, first)) = starts.iter().find(|(seen, _)| domain(seen) || domain(&name)) {
                return Err(error(
                    number,
                    format!(
                        "'{name}' policy after the '{other}' policy at line {first}: xen-cpuid prints \
                         either the system policies or one domain's"
                    ),
                ));
            }
            starts.push((name, number));
            Ok(())
        };
        while let Some((number, line)) = lines.next() {
            if line.trim().is_empty() && lines.clone().all(|(_, l)| l.trim().is_empty()) {
                break;
            }
            // The section's name, from the header `line` it starts.
            let named = |name: &str| {
                parse_name(name).ok_or_else(|| error(number, format!("unknown policy name in '{}'", excerpt(line))))
            };
            if let Some(name) = line.strip_suffix(" policy not supported by Xen") {
                let name = named(name)?;
                section(name, number)?;
                report.sections.push(ReportSection { name, content: None });
                continue;
            }
            let (name, counts) = line
                .split_once(" policy: ")
                .ok_or_else(|| error(number, format!("expected a policy header, found '{}'", excerpt(line))))?;
            let name = named(name)?;
            section(name, number)?;
            let (nr_leaves, nr_msrs) = parse_counts(counts)
                .ok_or_else(|| error(number, format!("cannot read the counts in '{}'", excerpt(line))))?;
            let content = parse_body(&mut lines, number, nr_leaves, nr_msrs, &limits)?;
            report.sections.push(ReportSection { name, content: Some(content) });
        }
        Ok(report)
    }
}

impl fmt::Display for XenCpuidReport {
    /// Exactly what `xen-cpuid -p` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((leaves, msrs)) = self.maxima {
            writeln!(f, "Xen reports there are maximum {leaves} leaves and {msrs} MSRs")?;
        }
        for section in &self.sections {
            match &section.content {
                None => writeln!(f, "{} policy not supported by Xen", section.name)?,
                Some(printed) => print_policy(f, &section.name, printed)?,
            }
        }
        Ok(())
    }
}

fn print_policy(f: &mut fmt::Formatter<'_>, name: &SectionName, printed: &PrintedPolicy) -> fmt::Result {
    let mut out = String::with_capacity(64 * (printed.policy.cpuid_len() + 8));
    let _ = writeln!(out, "{name} policy: {} leaves, {} MSRs", printed.nr_leaves, printed.nr_msrs());
    out.push_str(" CPUID:\n");
    let _ = writeln!(out, "  {:<8} {:<8} -> {:<8} {:<8} {:<8} {:<8}", "leaf", "subleaf", "eax", "ebx", "ecx", "edx");
    for (key, r) in printed.policy.cpuid_entries() {
        let wire = XenCpuidLeaf::from_key(key, r);
        let _ = writeln!(
            out,
            "  {:08x}:{:08x} -> {:08x}:{:08x}:{:08x}:{:08x}",
            wire.leaf, wire.subleaf, wire.a, wire.b, wire.c, wire.d
        );
    }
    out.push_str(" MSRs:\n");
    let _ = writeln!(out, "  {:<8} -> {:<16}", "index", "value");
    for msr in &printed.msrs {
        let _ = writeln!(out, "  {:08x} -> {:016x}", msr.idx, msr.val);
    }
    f.write_str(&out)
}

fn error(line: usize, problem: impl Into<String>) -> TextError {
    TextError { line, problem: problem.into() }
}

/// `N leaves and M MSRs`.
fn parse_maxima(text: &str) -> Option<(u32, u32)> {
    let (leaves, rest) = text.split_once(" leaves and ")?;
    let msrs = rest.strip_suffix(" MSRs")?;
    Some((parse_decimal(leaves)?, parse_decimal(msrs)?))
}

/// `N leaves, M MSRs`.
fn parse_counts(text: &str) -> Option<(u32, u32)> {
    let (leaves, rest) = text.split_once(" leaves, ")?;
    let msrs = rest.strip_suffix(" MSRs")?;
    Some((parse_decimal(leaves)?, parse_decimal(msrs)?))
}

fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_name(text: &str) -> Option<SectionName> {
    if let Some(domid) = text.strip_prefix("Domain ") {
        return parse_decimal(domid).map(SectionName::Domain);
    }
    SystemPolicy::ALL.into_iter().find(|p| p.xen_cpuid_label() == text).map(SectionName::System)
}

fn parse_hex_field(text: &str, digits: usize) -> Option<u64> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// `  LLLLLLLL:SSSSSSSS -> AAAAAAAA:BBBBBBBB:CCCCCCCC:DDDDDDDD`
fn parse_leaf_line(line: &str) -> Option<XenCpuidLeaf> {
    let (key, values) = line.strip_prefix("  ")?.split_once(" -> ")?;
    let (leaf, subleaf) = key.split_once(':')?;
    let mut registers = values.split(':').map(|v| parse_hex_field(v, 8).map(|v| v as u32));
    let entry = XenCpuidLeaf {
        leaf: parse_hex_field(leaf, 8)? as u32,
        subleaf: parse_hex_field(subleaf, 8)? as u32,
        a: registers.next()??,
        b: registers.next()??,
        c: registers.next()??,
        d: registers.next()??,
    };
    registers.next().is_none().then_some(entry)
}

/// `  IIIIIIII -> VVVVVVVVVVVVVVVV`
fn parse_msr_line(line: &str) -> Option<XenMsrEntry> {
    let (index, value) = line.strip_prefix("  ")?.split_once(" -> ")?;
    Some(XenMsrEntry::new(parse_hex_field(index, 8)? as u32, parse_hex_field(value, 16)?))
}

/// The next line, which must be `wanted` (trailing spaces aside).
fn expect_line<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    header_line: usize,
    wanted: &str,
) -> Result<(), TextError> {
    match lines.next() {
        Some((_, line)) if line.trim_end() == wanted => Ok(()),
        Some((number, line)) => Err(error(number, format!("expected '{wanted}', found '{}'", excerpt(line)))),
        None => Err(error(header_line, format!("policy ends before '{wanted}'"))),
    }
}

/// The lines after a policy header, up to the next header or the end.
fn parse_body<'a>(
    lines: &mut std::iter::Peekable<impl Iterator<Item = (usize, &'a str)> + Clone>,
    header_line: usize,
    nr_leaves: u32,
    nr_msrs: u32,
    limits: &WireLimits,
) -> Result<PrintedPolicy, TextError> {
    expect_line(lines, header_line, " CPUID:")?;
    expect_line(lines, header_line, CPUID_HEADER)?;

    let mut leaves: Vec<(usize, XenCpuidLeaf)> = Vec::new();
    while let Some(&(number, line)) = lines.peek() {
        if line == " MSRs:" {
            break;
        }
        let entry = parse_leaf_line(line)
            .ok_or_else(|| error(number, format!("expected a CPUID leaf line, found '{}'", excerpt(line))))?;
        if entry.registers().is_zero() {
            return Err(error(number, "all-zero leaf: xen-cpuid never prints these"));
        }
        if let Some((_, previous)) = leaves.last() {
            if previous.key() >= entry.key() {
                return Err(error(
                    number,
                    format!("leaf {} is out of Xen's order (after {})", entry.key(), previous.key()),
                ));
            }
        }
        leaves.push((number, entry));
        lines.next();
    }
    if leaves.len() > nr_leaves as usize {
        return Err(error(header_line, format!("{} leaves printed but the header counts {nr_leaves}", leaves.len())));
    }
    expect_line(lines, header_line, " MSRs:")?;
    expect_line(lines, header_line, MSR_HEADER)?;

    let mut msrs: Vec<(usize, XenMsrEntry)> = Vec::new();
    while let Some(&(number, line)) = lines.peek() {
        if !line.starts_with("  ") {
            break;
        }
        let entry = parse_msr_line(line)
            .ok_or_else(|| error(number, format!("expected an MSR line, found '{}'", excerpt(line))))?;
        msrs.push((number, entry));
        lines.next();
    }
    if msrs.len() != nr_msrs as usize {
        return Err(error(header_line, format!("{} MSRs printed but the header counts {nr_msrs}", msrs.len())));
    }

    let wire_leaves: Vec<XenCpuidLeaf> = leaves.iter().map(|(_, e)| *e).collect();
    let wire_msrs: Vec<XenMsrEntry> = msrs.iter().map(|(_, e)| *e).collect();
    let policy = CpuPolicy::from_wire(&wire_leaves, &wire_msrs, limits).map_err(|e| {
        let line = match e {
            crate::WireError::LeafOutOfRange { position, .. } => leaves[position].0,
            crate::WireError::MsrFlags { position, .. }
            | crate::WireError::MsrOutOfRange { position, .. }
            | crate::WireError::MsrValueTooWide { position, .. } => msrs[position].0,
            _ => header_line,
        };
        error(line, e.to_string())
    })?;
    // The printed policy must be exactly what Xen's serialisation of it prints.
    let serialised = policy.to_wire(limits);
    if let Some(dropped) = serialised.dropped.first() {
        return Err(error(header_line, format!("Xen would not print this policy so: {dropped}")));
    }
    // The header counts what Xen serialised, all-zero leaves too: the leaves printed must
    // serialise to that many (a section cut short or edited does not).
    if serialised.leaves.len() != nr_leaves as usize {
        return Err(error(
            header_line,
            format!(
                "the header counts {nr_leaves} leaves, but Xen serialises the leaves printed as {}",
                serialised.leaves.len()
            ),
        ));
    }
    Ok(PrintedPolicy { nr_leaves, msrs: wire_msrs, policy })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "\
Domain 7 policy: 5 leaves, 2 MSRs
 CPUID:
  leaf     subleaf  -> eax      ebx      ecx      edx     
  00000000:ffffffff -> 00000001:68747541:444d4163:69746e65
  00000001:ffffffff -> 00060fb1:00020800:80002001:178bfbfd
 MSRs:
  index    -> value           
  000000ce -> 0000000080000000
  0000010a -> 0000000000000000
";

    #[test]
    fn domain_form_round_trips() {
        let report = XenCpuidReport::parse(DOMAIN).unwrap();
        assert_eq!(report.maxima, None);
        assert_eq!(report.sections[0].name, SectionName::Domain(7));
        let printed = report.sections[0].content.as_ref().unwrap();
        assert_eq!((printed.nr_leaves(), printed.nr_msrs()), (5, 2));
        assert!(printed.policy().cpuid_faulting());
        assert_eq!(report.to_string(), DOMAIN);
    }

    #[test]
    fn recomputed_counts_match_a_model_print() {
        let report = XenCpuidReport::parse(DOMAIN).unwrap();
        let policy = report.sections[0].content.as_ref().unwrap().policy();
        let (again, dropped) = XenCpuidReport::single(SectionName::Domain(7), policy, &WireLimits::LATEST);
        assert!(dropped.is_empty());
        assert_eq!(again.to_string(), DOMAIN);
    }

    #[test]
    fn errors_name_the_line() {
        let bad = DOMAIN.replace("00060fb1:00020800", "00060fb1:0002080");
        assert_eq!(XenCpuidReport::parse(&bad).unwrap_err().line, 5);
        let bad = DOMAIN.replace("000000ce ->", "000000cf ->");
        let e = XenCpuidReport::parse(&bad).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
        let bad = DOMAIN.replace("Domain 7", "Dom0");
        assert_eq!(XenCpuidReport::parse(&bad).unwrap_err().line, 1);
    }

    /// The header's leaf count is what Xen serialised (leaves 0 and 1, the two hypervisor
    /// leaves and 0x80000000 here): a count the printed leaves do not serialise to is refused
    /// at the header.
    #[test]
    fn a_header_count_the_leaves_do_not_make_is_refused() {
        for count in ["4 leaves", "6 leaves", "120 leaves"] {
            let bad = DOMAIN.replace("5 leaves", count);
            let e = XenCpuidReport::parse(&bad).unwrap_err();
            assert_eq!(e.line, 1, "{count}: {e}");
            assert!(e.to_string().contains("Xen serialises the leaves printed as 5"), "{count}: {e}");
        }
    }

    /// `xen-cpuid -p` prints each system policy once, or one domain's alone: a repeated section,
    /// a second domain or a domain beside system policies is refused at its first line (reading
    /// kept only one of the repeats, or none of the domains).
    #[test]
    fn sections_xen_cpuid_never_prints_together_are_refused() {
        let raw = DOMAIN.replace("Domain 7", "Raw");
        let host = DOMAIN.replace("Domain 7", "Host");
        let cases = [
            (format!("{raw}{host}{raw}"), 19, "a second 'Raw' policy (the first is at line 1)"),
            (
                format!("{DOMAIN}{}", DOMAIN.replace("Domain 7", "Domain 8")),
                10,
                "'Domain 8' policy after the 'Domain 7'",
            ),
            (format!("{DOMAIN}{DOMAIN}"), 10, "a second 'Domain 7' policy"),
            (format!("{DOMAIN}{raw}"), 10, "'Raw' policy after the 'Domain 7' policy at line 1"),
            (format!("{raw}PV Max policy not supported by Xen\n{DOMAIN}"), 11, "'Domain 7' policy after the 'Raw'"),
            (format!("{raw}Raw policy not supported by Xen\n"), 10, "a second 'Raw' policy"),
        ];
        for (text, line, problem) in cases {
            let e = XenCpuidReport::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.problem.starts_with(problem), "{e}");
        }
        let report = XenCpuidReport::parse(&format!("{raw}{host}")).unwrap();
        assert_eq!(report.to_bundle().policies.iter().count(), 2);
    }
}
