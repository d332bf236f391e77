//! `import`, `diff` and `host`: policies between formats, compared, and read from this host.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use cpupolicy::policy::{
    CpuPolicy, Document, Dropped, HostBundle, InputFormat, PolicyDiff, PoolPolicy, ReportSection, SectionName,
    SystemPolicies, SystemPolicy, WireLimits, XenCpuidReport,
};

use super::{CliError, Outcome, EXIT_NEGATIVE};

/// Output formats of the policy commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyFormat {
    /// This project's JSON (a policy, or a host bundle for system policies).
    Json,
    /// `xen-cpuid -p` text, byte for byte as Xen's tool prints it.
    XenCpuid,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A JSON policy or host bundle, `xen-cpuid -p` output, or a libvirt <cpudata> dump
    /// (`-` for standard input); the format is recognised from the content.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: PolicyFormat,
    /// How to label a single policy in xen-cpuid form: a system policy (raw, host, pv-max,
    /// hvm-max, pv-default, hvm-default) or `domain:N`. Default: raw.
    #[arg(long, value_name = "LABEL")]
    label: Option<String>,
}

pub fn import(args: ImportArgs) -> Outcome {
    let label = parse_label(args.label.as_deref())?;
    if args.label.is_some() && args.format != PolicyFormat::XenCpuid {
        return Err(CliError("--label: only xen-cpuid output is labelled (--format xen-cpuid)".into()));
    }
    let document = read_document(&args.file)?;
    if args.label.is_some() && !matches!(document, Document::Policy { .. }) {
        return Err(CliError(format!(
            "--label: {} holds labelled policies already (a host bundle or xen-cpuid -p output); --label names a single policy",
            args.file.display()
        )));
    }
    match document {
        Document::Policy { policy, .. } => print_policy(&policy, args.format, label)?,
        Document::Bundle(bundle) => print_bundle(&bundle, args.format)?,
        Document::XenCpuid(report) => match args.format {
            PolicyFormat::XenCpuid => emit(&report)?,
            PolicyFormat::Json => match report.sections.as_slice() {
                [ReportSection { name: SectionName::Domain(_), content: Some(printed) }] => {
                    emit(&printed.policy().to_json())?
                }
                _ => emit(&report.to_bundle().to_json())?,
            },
        },
    }
    Ok(0)
}

#[derive(Args)]
pub struct DiffArgs {
    /// The first policy (A): any format `import` reads.
    a: PathBuf,
    /// The second policy (B).
    b: PathBuf,
    /// Compare only this system policy of inputs that hold several (raw, host, pv-max, …).
    #[arg(long, value_name = "POLICY")]
    policy: Option<String>,
}

pub fn diff(args: DiffArgs) -> Outcome {
    let which = args
        .policy
        .as_deref()
        .map(|name| name.parse::<SystemPolicy>().map_err(|e| CliError(format!("--policy: {e}"))))
        .transpose()?;
    let a = Loaded::from(read_document(&args.a)?);
    let b = Loaded::from(read_document(&args.b)?);
    let pick = |loaded: Loaded, path: &Path| -> Result<Loaded, CliError> {
        match (loaded, which) {
            (Loaded::System(policies), Some(which)) => policies
                .get(which)
                .cloned()
                .map(|policy| Loaded::Single(Box::new(policy)))
                .ok_or_else(|| CliError(format!("{}: has no {which} policy", path.display()))),
            (loaded, _) => Ok(loaded),
        }
    };
    if let (Some(which), Loaded::Single(_), Loaded::Single(_)) = (which, &a, &b) {
        return Err(CliError(format!(
            "--policy {which}: neither input holds system policies (both are single policies)"
        )));
    }
    let (a, b) = (pick(a, &args.a)?, pick(b, &args.b)?);

    let mut different = false;
    match (a, b) {
        (Loaded::Single(a), Loaded::Single(b)) => {
            let diff = PolicyDiff::between(&a, &b);
            different = !diff.is_empty();
            emit(&diff)?;
        }
        (Loaded::System(a), Loaded::System(b)) => {
            for which in SystemPolicy::ALL {
                match (a.get(which), b.get(which)) {
                    (None, None) => {}
                    (Some(_), None) | (None, Some(_)) => {
                        different = true;
                        let side = if a.get(which).is_some() { "A" } else { "B" };
                        emit(&format!("{which}: only in {side}\n"))?;
                    }
                    (Some(pa), Some(pb)) => {
                        let diff = PolicyDiff::between(pa, pb);
                        if !diff.is_empty() {
                            different = true;
                            let mut text = format!("{which}:\n");
                            for line in diff.to_string().lines() {
                                text.push_str(&format!("  {line}\n"));
                            }
                            emit(&text)?;
                        }
                    }
                }
            }
        }
        _ => {
            return Err(CliError(
                "one input holds system policies and the other a single policy: choose one with --policy".into(),
            ))
        }
    }
    Ok(if different { EXIT_NEGATIVE } else { 0 })
}

/// Where `host` reads the policy from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Xen where privcmd exists (the six system policies), else this machine's CPU; says which.
    Auto,
    /// The hypervisor, through privcmd hypercalls: all six system policies.
    Xen,
    /// This machine's CPU through the `cpuid` instruction (and MSRs where readable): a raw policy.
    Native,
}

#[derive(Args)]
pub struct HostArgs {
    /// Where to read the policy from.
    #[arg(long, value_enum, default_value = "auto")]
    source: Source,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: PolicyFormat,
}

pub fn host(args: HostArgs) -> Outcome {
    let source = match args.source {
        Source::Auto => match cpupolicy::hypercall::XenHandle::open() {
            Ok(handle) => {
                errln!("cpupolicy: source: xen (privcmd found)");
                Some(handle)
            }
            Err(error @ cpupolicy::hypercall::Error::NoPrivcmd { .. }) => {
                errln!("cpupolicy: source: native CPU ({error})");
                None
            }
            Err(error) => return Err(error.into()),
        },
        Source::Xen => Some(cpupolicy::hypercall::XenHandle::open()?),
        Source::Native => None,
    };
    match source {
        Some(handle) => {
            let bundle = cpupolicy::xen::host_bundle(&handle)?;
            if let Some(levelling) = bundle.levelling() {
                errln!("cpupolicy: levelling: {levelling}");
                if !levelling.is_consistent() {
                    errln!("cpupolicy: note: the levelling-caps sysctl and PLATFORM_INFO disagree on CPUID faulting");
                }
            }
            if let Some(mask) = bundle.mxcsr_mask {
                errln!("cpupolicy: mxcsr mask: {mask:#x} (FXSAVE; recorded in the bundle)");
            }
            print_bundle(&bundle, args.format)?;
        }
        None => {
            let native = CpuPolicy::read_native()?;
            for note in &native.notes {
                errln!("cpupolicy: note: {note}");
            }
            if let Some(mask) = cpupolicy::xen::mxcsr_mask() {
                errln!("cpupolicy: mxcsr mask: {mask:#x} (FXSAVE)");
            }
            print_policy(&native.policy, args.format, SectionName::System(SystemPolicy::Raw))?;
        }
    }
    Ok(0)
}

/// One policy, or the system policies of a host.
enum Loaded {
    Single(Box<CpuPolicy>),
    System(Box<SystemPolicies>),
}

impl From<Document> for Loaded {
    fn from(document: Document) -> Loaded {
        match document {
            Document::Policy { policy, .. } => Loaded::Single(Box::new(policy)),
            Document::Bundle(bundle) => Loaded::System(Box::new(bundle.policies)),
            Document::XenCpuid(report) => match report.sections.as_slice() {
                [ReportSection { name: SectionName::Domain(_), content: Some(printed) }] => {
                    Loaded::Single(Box::new(printed.policy().clone()))
                }
                _ => Loaded::System(Box::new(report.to_bundle().policies)),
            },
        }
    }
}

/// Reads any document. A pool document stands for its default policy; `FILE#acceptance` (when
/// no file has that very name) picks its acceptance policy, `FILE#default` says the default.
pub(super) fn read_document(path: &Path) -> Result<Document, CliError> {
    let mut which = PoolPolicy::Default;
    let mut path = path;
    let given = path.to_string_lossy();
    if !path.exists() {
        for choice in [PoolPolicy::Default, PoolPolicy::Acceptance] {
            if let Some(file) = given.strip_suffix(&format!("#{}", choice.key())) {
                (which, path) = (choice, Path::new(file));
            }
        }
    }
    let text = super::read_text_or_stdin(path)?;
    let name = if path == Path::new("-") { "standard input".into() } else { path.display().to_string() };
    let document = Document::parse_choosing(&text, which).map_err(|e| CliError(format!("{name}: {e}")))?;
    if which == PoolPolicy::Acceptance && !matches!(document.format(), InputFormat::PoolJson(_)) {
        return Err(CliError(format!(
            "{name}: #acceptance picks a pool document's policy; this is a {}",
            document.format()
        )));
    }
    Ok(document)
}

fn parse_label(label: Option<&str>) -> Result<SectionName, CliError> {
    let Some(label) = label else { return Ok(SectionName::System(SystemPolicy::Raw)) };
    if let Some(domid) = label.strip_prefix("domain:") {
        return domid
            .parse()
            .map(SectionName::Domain)
            .map_err(|_| CliError(format!("--label: bad domain id '{domid}'")));
    }
    label.parse().map(SectionName::System).map_err(|e| CliError(format!("--label: {e}")))
}

pub(super) fn print_policy(policy: &CpuPolicy, format: PolicyFormat, label: SectionName) -> Result<(), CliError> {
    match format {
        PolicyFormat::Json => emit(&policy.to_json()),
        PolicyFormat::XenCpuid => {
            let (report, dropped) = XenCpuidReport::single(label, policy, &WireLimits::LATEST);
            note_dropped(dropped.iter().map(|d| (None, d)));
            emit(&report)
        }
    }
}

fn print_bundle(bundle: &HostBundle, format: PolicyFormat) -> Result<(), CliError> {
    match format {
        PolicyFormat::Json => emit(&bundle.to_json()),
        PolicyFormat::XenCpuid => {
            let (report, dropped) = XenCpuidReport::from_bundle(bundle);
            note_dropped(dropped.iter().map(|(which, d)| (Some(*which), d)));
            emit(&report)
        }
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
pub(super) fn emit(text: &dyn std::fmt::Display) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError(format!("standard output: {error}")))
        }
        _ => Ok(()),
    }
}

/// Standard output written piece by piece through a buffer, for documents too large to build
/// in memory first; like [`emit`], a reader that went away ends the output quietly.
pub(super) struct Stream {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    closed: bool,
}

impl Stream {
    pub(super) fn stdout() -> Stream {
        Stream { out: std::io::BufWriter::new(std::io::stdout().lock()), closed: false }
    }

    pub(super) fn write(&mut self, text: &str) -> Result<(), CliError> {
        use std::io::Write;
        if self.closed {
            return Ok(());
        }
        match self.out.write_all(text.as_bytes()) {
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => Err(CliError(format!("standard output: {error}"))),
            Ok(()) => Ok(()),
        }
    }

    /// A JSON array's items, one per line, four spaces in; [`JsonItems::end`] closes it.
    pub(super) fn array(&mut self) -> JsonItems<'_> {
        JsonItems { stream: self, first: true }
    }

    pub(super) fn finish(mut self) -> Result<(), CliError> {
        use std::io::Write;
        match self.out.flush() {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe && !self.closed => {
                Err(CliError(format!("standard output: {error}")))
            }
            _ => {
                self.closed = true;
                Ok(())
            }
        }
    }
}

/// The items of a JSON array being streamed.
pub(super) struct JsonItems<'a> {
    stream: &'a mut Stream,
    first: bool,
}

impl JsonItems<'_> {
    pub(super) fn item(&mut self, value: &serde_json::Value) -> Result<(), CliError> {
        let separator = if self.first { "\n    " } else { ",\n    " };
        self.first = false;
        self.stream.write(&format!("{separator}{value}"))
    }

    pub(super) fn end(self) -> Result<(), CliError> {
        self.stream.write(if self.first { "]" } else { "\n  ]" })
    }
}

/// Tells the operator, on standard error, what Xen's format could not show.
fn note_dropped<'a>(dropped: impl Iterator<Item = (Option<SystemPolicy>, &'a Dropped)>) {
    let lines: Vec<String> = dropped
        .map(|(which, d)| match which {
            Some(which) => format!("  {which}: {d}"),
            None => format!("  {d}"),
        })
        .collect();
    if !lines.is_empty() {
        errln!("cpupolicy: note: {} entries cannot be expressed in xen-cpuid form and are not shown:", lines.len());
        for line in lines {
            errln!("{line}");
        }
    }
}
