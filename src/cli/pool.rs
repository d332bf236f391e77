//! `level`, `check` and `derive`: pools, migrations and predictions.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use cpupolicy::featureset::{excerpt, GuestKind};
use cpupolicy::policy::xl::{libvirt_for_pool, xl_for_pool, xl_release};
use cpupolicy::policy::{
    check_migration, derive_system_policies, explanation_text, feature_name, guest_kind_name, hazards_text, level_pool,
    mxcsr_faults, pool_hazards, pool_json, synthesise_legacy, CpuPolicy, DeriveOptions, Document, Hazard, HostBundle,
    HvmMode, InputFormat, LegacyRules, LevelOptions, MigrationCheck, PolicyDiff, PoolHost, ReportSection, SectionName,
    SystemPolicies, SystemPolicy, Warning, XenCpuidReport, XenVersion,
};
use serde_json::json;

use super::policy::{emit, read_document};
use super::{featureset_pool, CliError, Outcome, EXIT_NEGATIVE};

/// The kind of guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// HVM with hardware-assisted paging (HAP).
    Hvm,
    /// HVM with shadow paging.
    HvmShadow,
    /// PV.
    Pv,
}

impl Kind {
    pub(super) fn guest_kind(self) -> GuestKind {
        match self {
            Kind::Hvm => GuestKind::HvmHap,
            Kind::HvmShadow => GuestKind::HvmShadow,
            Kind::Pv => GuestKind::Pv,
        }
    }

    fn name(self) -> &'static str {
        guest_kind_name(self.guest_kind())
    }

    fn policies(self) -> (SystemPolicy, SystemPolicy) {
        match self {
            Kind::Pv => (SystemPolicy::PvDefault, SystemPolicy::PvMax),
            Kind::Hvm | Kind::HvmShadow => (SystemPolicy::HvmDefault, SystemPolicy::HvmMax),
        }
    }
}

/// Output formats of `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LevelFormat {
    /// A summary for people: both featuresets and, with --explain, what was lost and why.
    Text,
    /// JSON: both policies, their featuresets, and the explanation.
    Json,
    /// The levelled default featureset as one xen-cpuid-style string.
    Featureset,
    /// Both levelled policies as `xen-cpuid -p` text (labelled as the kind's default and max).
    XenCpuid,
    /// One xl `cpuid=` line giving the pool default's features on every host (for --xen);
    /// what it cannot express on standard error.
    Xl,
    /// The `<cpu mode='host-passthrough'>` element of a libvirt domain (libxl driver) giving
    /// the pool default's features on every host, in libvirt's feature names.
    LibvirtDomain,
    /// The pool default as a libvirt `<cpudata>` dump (what `import` reads back).
    Libvirt,
}

#[derive(Args)]
pub struct LevelArgs {
    /// The kind of guest to level for (not with --featuresets: a featureset is already one
    /// kind's).
    #[arg(long, value_enum, default_value = "hvm", conflicts_with = "featuresets")]
    kind: Kind,
    /// Explain every loss: which hosts lacked each feature and held down each limit.
    #[arg(long)]
    explain: bool,
    /// Level hosts of different CPU vendors anyway (guests that rely on the vendor will break).
    /// Not with --featuresets, which carry no vendor.
    #[arg(long, conflicts_with = "featuresets")]
    cross_vendor: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: LevelFormat,
    /// Fail (exit 1) when a guest would see something levelling cannot hide: features leaking
    /// through to PV guests, host-reflected bits on which hosts differ. Not with
    /// --featuresets, from which neither can be told.
    #[arg(long, conflicts_with = "featuresets")]
    strict: bool,
    /// The Xen release whose libxl reads the `--format xl` or `libvirt-domain` output (names
    /// it knows), e.g. 4.17; 4.22 when not given. Only with those formats.
    #[arg(long, value_name = "XEN_VERSION", conflicts_with = "featuresets")]
    xen: Option<String>,
    /// The hosts are featuresets, as xapi keeps them (`-`- or `:`-separated hex words, any
    /// length, or the empty string), or files holding one: print their combination with Xen's
    /// rules (text, featureset or json format), written as the first was.
    #[arg(long)]
    featuresets: bool,
    /// The hosts: JSON host bundles, `xen-cpuid -p` output, libvirt CPU dumps (raw CPUID,
    /// from which Xen 4.20's policies are predicted) or JSON policies (used as both default
    /// and max); featuresets with --featuresets.
    #[arg(required = true, value_name = "POLICY")]
    hosts: Vec<String>,
}

pub fn level(args: LevelArgs) -> Outcome {
    if args.featuresets {
        return match args.format {
            LevelFormat::XenCpuid | LevelFormat::Xl | LevelFormat::LibvirtDomain | LevelFormat::Libvirt => {
                Err(CliError("--featuresets: featuresets have no xen-cpuid -p or xl form".into()))
            }
            format => featureset_pool::level(&args.hosts, args.explain, format == LevelFormat::Json),
        };
    }
    if args.xen.is_some() && !matches!(args.format, LevelFormat::Xl | LevelFormat::LibvirtDomain) {
        return Err(CliError(
            "--xen: only the xl and libvirt-domain formats name features as a Xen release does".into(),
        ));
    }
    // Read before any host, so that a bad release is the first thing said.
    let release = xl_release_arg(args.xen.as_deref().unwrap_or("4.22"))?;
    let hosts = args.hosts.iter().map(|path| load_host(Path::new(path), args.kind)).collect::<Result<Vec<_>, _>>()?;
    let pool = level_pool(&hosts, LevelOptions { cross_vendor: args.cross_vendor, explain: args.explain })?;
    let kind = args.kind.guest_kind();
    let hazards = pool_hazards(&pool, &hosts, kind);
    let explanation = if args.explain { explanation_text(&pool, &hosts) } else { String::new() };
    match args.format {
        LevelFormat::Text => {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            emit(&format!(
                "pool of {} hosts ({}), {} guests\ndefault:    {}\nacceptance: {}\n{explanation}{}",
                hosts.len(),
                names.join(", "),
                args.kind.name(),
                pool.default.policy.featureset().to_xen_string(),
                pool.acceptance.policy.featureset().to_xen_string(),
                hazards_text(&hazards)
            ))?
        }
        LevelFormat::Json => emit(&format!("{:#}\n", pool_json(&pool, &hosts, kind, args.explain, &hazards)?))?,
        LevelFormat::Featureset => {
            err!("{explanation}{}", hazards_text(&hazards));
            emit(&format!("{}\n", pool.default.policy.featureset().to_xen_string()))?
        }
        LevelFormat::Xl => {
            err!("{explanation}{}", hazards_text(&hazards));
            let defaults: Vec<(&str, &CpuPolicy)> = hosts.iter().map(|h| (h.name.as_str(), &h.default)).collect();
            let plan = xl_for_pool(&pool.default.policy, &defaults, release);
            emit(&format!("{}\n", plan.line))?;
            for note in plan.notes(release) {
                errln!("cpupolicy: {note}");
            }
        }
        LevelFormat::LibvirtDomain => {
            err!("{explanation}{}", hazards_text(&hazards));
            let defaults: Vec<(&str, &CpuPolicy)> = hosts.iter().map(|h| (h.name.as_str(), &h.default)).collect();
            let plan = libvirt_for_pool(&pool.default.policy, &defaults, release);
            emit(&plan.xml)?;
            for note in plan.notes(release, kind) {
                errln!("cpupolicy: {note}");
            }
        }
        LevelFormat::Libvirt => {
            err!("{explanation}{}", hazards_text(&hazards));
            emit(&pool.default.policy.to_libvirt_xml().map_err(|e| e.to_string())?)?
        }
        LevelFormat::XenCpuid => {
            err!("{explanation}{}", hazards_text(&hazards));
            let (default, max) = args.kind.policies();
            let mut policies = SystemPolicies::new();
            policies.set(default, Some(pool.default.policy.clone()));
            policies.set(max, Some(pool.acceptance.policy.clone()));
            let bundle = HostBundle { policies, ..HostBundle::default() };
            let (report, _) = XenCpuidReport::from_bundle(&bundle);
            emit(&report)?
        }
    }
    Ok(if args.strict && hazards.iter().any(Hazard::is_hazard) { EXIT_NEGATIVE } else { 0 })
}

#[derive(Args)]
pub struct CheckArgs {
    /// The VM's policy: a JSON policy or `xen-cpuid -p DOMID` output. A host's policies (bundle,
    /// xen-cpuid -p, libvirt dump) stand for a VM booted there with the default policy.
    #[arg(long, value_name = "POLICY", required_unless_present = "vm_featureset", conflicts_with = "vm_featureset")]
    vm: Option<PathBuf>,
    /// The VM's featureset instead (as xapi records it: `-`- or `:`-separated hex, or a file
    /// holding it), judged by features alone against each host's max featureset.
    #[arg(long, value_name = "FEATURESET")]
    vm_featureset: Option<String>,
    /// The destination host(s): any file `level` reads. With several, the VM must fit each.
    #[arg(long = "host", value_name = "POLICY", required_unless_present = "host_featuresets")]
    hosts: Vec<PathBuf>,
    /// A destination host's max featureset (xapi's `features_hvm`/`features_pv`), or a file
    /// holding it; with --vm-featureset only.
    #[arg(long = "host-featureset", value_name = "FEATURESET", requires = "vm_featureset")]
    host_featuresets: Vec<String>,
    /// The kind of guest.
    #[arg(long, value_enum, default_value = "hvm")]
    kind: Kind,
    /// The VM's migration stream has no CPUID record (it left a Xen ≤ 4.13): --vm is then the
    /// host it runs on, and its policy is re-created as the libxl of this Xen release does on
    /// restore (e.g. 4.20).
    #[arg(long, value_name = "XEN_VERSION")]
    legacy: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: super::TextOrJson,
    /// Treat what the guest would see changing or leaking (host-reflected differences, PV
    /// leak-through) as incompatibility.
    #[arg(long)]
    strict: bool,
}

pub fn check(args: CheckArgs) -> Outcome {
    if let Some(vm) = &args.vm_featureset {
        let mut hosts = args
            .host_featuresets
            .iter()
            .enumerate()
            .map(|(i, text)| featureset_pool::given(text, i + 2).map(|g| (g.name, g.set)))
            .collect::<Result<Vec<_>, _>>()?;
        for path in &args.hosts {
            hosts.push(featureset_pool::host_max(&load_host(path, args.kind)?));
        }
        if args.legacy.is_some() {
            return Err(CliError("--legacy needs --vm (the host the VM runs on)".into()));
        }
        return featureset_pool::check(vm, hosts, args.format);
    }
    let vm_path = args.vm.as_deref().ok_or_else(|| CliError("--vm or --vm-featureset is needed".into()))?;
    // A featureset names no policy to check a VM's policy against: refused, not ignored (with no
    // --host left, the check would otherwise pass against no host at all).
    if !args.host_featuresets.is_empty() {
        return Err(CliError(
            "--host-featureset goes with --vm-featureset; to check --vm, give the host as --host".into(),
        ));
    }
    if args.hosts.is_empty() {
        return Err(CliError("--host is needed: the host(s) to check the VM against".into()));
    }
    let (vm, vm_mxcsr) = match &args.legacy {
        None => load_vm(vm_path, args.kind)?,
        Some(version) => {
            let version = XenVersion::parse(version).ok_or_else(|| {
                CliError(format!("--legacy: '{}' is not a Xen version such as 4.20", excerpt(version)))
            })?;
            if (version.major, version.minor) < (4, 14) {
                return Err(CliError(format!(
                    "--legacy: Xen {version} is older than 4.14: name the Xen that restores the VM, 4.14 or \
                     later (the releases whose restore rules this models)"
                )));
            }
            let source = load_host(vm_path, args.kind)?;
            let host = source.host.as_ref().map(CpuPolicy::featureset).unwrap_or_else(|| source.max.featureset());
            let policy =
                synthesise_legacy(&source.default, &host, args.kind.guest_kind(), LegacyRules::for_xen(&version));
            (policy, source.mxcsr_mask)
        }
    };
    let hosts = args.hosts.iter().map(|path| load_host(path, args.kind)).collect::<Result<Vec<_>, _>>()?;
    let checks: Vec<(&PoolHost, MigrationCheck, Option<String>)> =
        hosts.iter().map(|h| (h, check_migration(&vm, h), mxcsr_warning(vm_mxcsr, h))).collect();
    let strict_failure = |c: &MigrationCheck, mxcsr: &Option<String>| {
        args.strict && (mxcsr.is_some() || c.warnings.iter().any(Warning::is_strict_refusal))
    };
    let compatible = checks.iter().all(|(_, c, mxcsr)| c.is_compatible() && !strict_failure(c, mxcsr));
    match args.format {
        super::TextOrJson::Text => {
            let mut out = String::new();
            for (host, check, mxcsr) in &checks {
                let verdict = match (check.is_compatible(), strict_failure(check, mxcsr)) {
                    (true, false) => "compatible",
                    (true, true) => "incompatible (--strict: what the guest sees would change or leak)",
                    (false, _) => "incompatible",
                };
                out += &format!("{}: {verdict}\n", host.name);
                for mismatch in &check.mismatches {
                    out += &format!("  mismatch: {mismatch}\n");
                }
                for warning in &check.warnings {
                    out += &format!("  warning: {warning}\n");
                }
                if let Some(mxcsr) = mxcsr {
                    out += &format!("  warning: {mxcsr}\n");
                }
            }
            emit(&out)?;
        }
        super::TextOrJson::Json => {
            // Written as it is produced: over thousands of hosts a document tree in memory
            // took ten times the size of the output.
            let mut out = super::policy::Stream::stdout();
            out.write(&format!("{{\n  \"compatible\": {compatible},\n  \"mismatches\": ["))?;
            let mut items = out.array();
            for (host, check, _) in &checks {
                for m in &check.mismatches {
                    let mut value = json!({"host": host.name, "kind": m.kind(), "message": m.to_string()});
                    match m {
                        cpupolicy::policy::Mismatch::Feature(id) => value["feature"] = json!(feature_name(*id)),
                        cpupolicy::policy::Mismatch::Limit { vm, host, .. } => {
                            value["vm"] = json!(vm);
                            value["host_value"] = json!(host);
                        }
                        cpupolicy::policy::Mismatch::Vendor { vm, host } => {
                            value["vm"] = json!(vm.to_string());
                            value["host_value"] = json!(host.to_string());
                        }
                    }
                    items.item(&value)?;
                }
            }
            items.end()?;
            out.write(",\n  \"warnings\": [")?;
            let mut items = out.array();
            for (host, check, mxcsr) in &checks {
                for w in &check.warnings {
                    items.item(&json!({"host": host.name, "kind": w.kind(), "feature": feature_name(w.feature()),
                                       "message": w.to_string()}))?;
                }
                if let Some(mxcsr) = mxcsr {
                    items.item(&json!({"host": host.name, "kind": "mxcsr-mask", "message": mxcsr}))?;
                }
            }
            items.end()?;
            out.write("\n}\n")?;
            out.finish()?;
        }
    }
    Ok(if compatible { 0 } else { EXIT_NEGATIVE })
}

/// The release `--xen` names, for xl.
pub(super) fn xl_release_arg(text: &str) -> Result<cpupolicy::featureset::XenRelease, CliError> {
    XenVersion::parse(text)
        .and_then(|v| xl_release(&v))
        .ok_or_else(|| CliError(format!("--xen: '{}' is not a Xen release from 4.14 on (such as 4.17)", excerpt(text))))
}

/// A file name without directories and extension, to name a host.
pub(super) fn host_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// A pool host from any file `level` reads.
pub(super) fn load_host(path: &Path, kind: Kind) -> Result<PoolHost, CliError> {
    host_from_document(path, read_document(path)?, kind)
}

pub(super) fn host_from_document(path: &Path, document: Document, kind: Kind) -> Result<PoolHost, CliError> {
    let name = host_name(path);
    let in_file = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    match document {
        Document::Bundle(bundle) => PoolHost::from_bundle(name, &bundle, kind.guest_kind()).map_err(|e| in_file(&e)),
        Document::XenCpuid(report) => match report.sections.as_slice() {
            [ReportSection { name: SectionName::Domain(_), content: Some(printed) }] => {
                Ok(PoolHost::from_single(name, printed.policy().clone()))
            }
            _ => PoolHost::from_system(name, &report.to_bundle().policies, kind.guest_kind()).map_err(|e| in_file(&e)),
        },
        Document::Policy { policy, format: InputFormat::Libvirt } => {
            let policies = derive_policies(&policy, kind).map_err(|e| in_file(&e))?;
            PoolHost::from_system(name, &policies, kind.guest_kind()).map_err(|e| in_file(&e))
        }
        Document::Policy { policy, .. } => Ok(PoolHost::from_single(name, policy)),
    }
}

/// The one policy a document holds: a JSON policy or a single domain's `xen-cpuid -p` output.
pub(super) fn policy_of_document(path: &Path, document: Document) -> Result<CpuPolicy, CliError> {
    single_policy(document).map_err(|document| {
        CliError(format!(
            "{}: expected one policy (JSON policy or xen-cpuid -p DOMID), found a {}",
            path.display(),
            document.format()
        ))
    })
}

/// The document's one policy, or the document back when it holds a host's policies.
fn single_policy(document: Document) -> Result<CpuPolicy, Box<Document>> {
    match document {
        Document::Policy { policy, format } if format != InputFormat::Libvirt => Ok(policy),
        Document::XenCpuid(report) => match report.sections.as_slice() {
            [ReportSection { name: SectionName::Domain(_), content: Some(printed) }] => Ok(printed.policy().clone()),
            _ => Err(Box::new(Document::XenCpuid(report))),
        },
        other => Err(Box::new(other)),
    }
}

/// A VM's policy: a single policy as is, or a host's default policy for the kind.
/// The VM's policy, and the MXCSR mask of the host it runs on when the file is that host's bundle.
pub(super) fn load_vm(path: &Path, kind: Kind) -> Result<(CpuPolicy, Option<u32>), CliError> {
    let (policy, mxcsr, from_host) = vm_from_document(path, read_document(path)?, kind)?;
    if from_host {
        errln!(
            "cpupolicy: note: {} holds a host's policies; checking a VM booted there with its default policy",
            path.display()
        );
    }
    Ok((policy, mxcsr))
}

/// A VM's policy from a document: a single policy as is, or (`true`) a host's default policy
/// for the kind, with the MXCSR mask of that host.
pub(super) fn vm_from_document(
    path: &Path,
    document: Document,
    kind: Kind,
) -> Result<(CpuPolicy, Option<u32>, bool), CliError> {
    match single_policy(document) {
        Ok(policy) => Ok((policy, None, false)),
        Err(document) => {
            let host = host_from_document(path, *document, kind)?;
            Ok((host.default, host.mxcsr_mask, true))
        }
    }
}

/// When the VM's host accepts MXCSR bits the destination does not (both masks known): a
/// guest that set them faults on the destination, whatever its CPUID policy says.
fn mxcsr_warning(vm_mask: Option<u32>, host: &PoolHost) -> Option<String> {
    let faults = mxcsr_faults(vm_mask, host.mxcsr_mask);
    let (from, to) = (vm_mask?, host.mxcsr_mask?);
    (faults != 0).then(|| {
        format!(
            "MXCSR mask {from:#x} where the VM runs, {to:#x} here: MXCSR bits {faults:#x} fault here (LDMXCSR/FXRSTOR/XRSTOR #GP); no policy can hide it"
        )
    })
}

/// Xen 4.20's system policies predicted from a raw policy, with the options the raw policy
/// suggests (HVM with HAP where VMX or SVM with NPT is enumerated).
fn derive_policies(raw: &CpuPolicy, kind: Kind) -> Result<SystemPolicies, String> {
    let mut options = DeriveOptions::detect(raw);
    if kind == Kind::HvmShadow && options.hvm.is_some() {
        options.hvm = Some(HvmMode::Shadow);
    }
    derive_system_policies(raw, &options).map_err(|e| format!("predicting Xen 4.20's policies: {e}"))
}

/// Whether to predict HVM policies, and with which paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HvmChoice {
    /// As the raw policy suggests: HAP with VMX or SVM+NPT, shadow with SVM alone, none without.
    Detect,
    /// Hardware-assisted paging.
    Hap,
    /// Shadow paging only.
    Shadow,
    /// No HVM support.
    None,
}

#[derive(Args)]
pub struct DeriveArgs {
    /// The raw policy: a libvirt CPU dump or JSON policy, or a host bundle / `xen-cpuid -p`
    /// output (its raw policy is used).
    file: PathBuf,
    /// HVM support to assume.
    #[arg(long, value_enum, default_value = "detect")]
    hvm: HvmChoice,
    /// Print only the host policy and this kind's default and max policies.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: super::policy::PolicyFormat,
    /// Compare the prediction with the policies FILE holds (a host bundle or xen-cpuid -p output
    /// from the real Xen): print what differs, exit 1 if anything does.
    #[arg(long)]
    compare: bool,
    /// The release whose construction to model (4.14 … 4.22; checked on boots or recordings of
    /// 4.14, 4.17, 4.20, 4.21, 4.22). Default: the release a host bundle names, else 4.22.
    #[arg(long, value_name = "XEN_VERSION")]
    xen: Option<String>,
}

pub fn derive(args: DeriveArgs) -> Outcome {
    let document = read_document(&args.file)?;
    let actual = match &document {
        Document::Bundle(bundle) => Some(bundle.policies.clone()),
        Document::XenCpuid(report) => Some(report.to_bundle().policies),
        Document::Policy { .. } => None,
    };
    let raw = match (&document, &actual) {
        (Document::Policy { policy, .. }, _) => policy.clone(),
        (_, Some(policies)) => policies
            .get(SystemPolicy::Raw)
            .cloned()
            .ok_or_else(|| CliError(format!("{}: holds no raw policy to predict from", args.file.display())))?,
        _ => return Err(CliError(format!("{}: no raw policy", args.file.display()))),
    };
    let mut options = DeriveOptions::detect(&raw);
    let named = match &document {
        Document::Bundle(bundle) => bundle.xen_version.as_ref().map(|v| format!("{}.{}", v.major, v.minor)),
        _ => None,
    };
    let (text, whose) = match (args.xen.as_deref(), named.as_deref()) {
        (Some(text), _) => (Some(text), "--xen"),
        (None, Some(text)) => (Some(text), "the bundle's Xen version"),
        (None, None) => (None, ""),
    };
    options.release = match text {
        Some(text) => cpupolicy::featureset::XenRelease::parse(text)
            .filter(|r| *r != cpupolicy::featureset::XenRelease::Master)
            .ok_or_else(|| {
                let hint = if whose == "--xen" { "" } else { " (--xen names the release to predict)" };
                CliError(format!("{whose}: '{}' is not a Xen release from 4.14 to 4.22{hint}", excerpt(text)))
            })?,
        None => cpupolicy::featureset::XenRelease::V4_22,
    };
    options.hvm = match args.hvm {
        HvmChoice::Detect => options.hvm,
        HvmChoice::Hap => Some(HvmMode::Hap),
        HvmChoice::Shadow => Some(HvmMode::Shadow),
        HvmChoice::None => None,
    };
    let mut derived =
        derive_system_policies(&raw, &options).map_err(|e| CliError(format!("{}: {e}", args.file.display())))?;
    if let Some(kind) = args.kind {
        let (default, max) = kind.policies();
        for which in SystemPolicy::ALL {
            if ![SystemPolicy::Raw, SystemPolicy::Host, default, max].contains(&which) {
                derived.set(which, None);
            }
        }
    }
    if args.compare {
        // derive models Xen 4.20's construction: a bundle from another release differs for the
        // release's reasons as well as the model's.
        use cpupolicy::featureset::XenRelease;
        let checked = matches!(
            options.release,
            XenRelease::V4_14 | XenRelease::V4_17 | XenRelease::V4_20 | XenRelease::V4_21 | XenRelease::V4_22
        );
        match &document {
            Document::Bundle(bundle) if bundle.xen_version.is_none() => errln!(
                "cpupolicy: warning: {} does not say which Xen it comes from; comparing with Xen {}'s construction",
                args.file.display(),
                options.release
            ),
            Document::XenCpuid(_) => errln!(
                "cpupolicy: warning: xen-cpuid -p output does not say which Xen printed it; comparing with Xen {}'s construction (--xen to choose)",
                options.release
            ),
            _ => {}
        }
        if !checked {
            errln!(
                "cpupolicy: warning: Xen {}'s construction is modelled from its neighbours' rules, not checked on a boot of it (4.14, 4.17, 4.20, 4.21 and 4.22 are)",
                options.release
            );
        }
        let Some(actual) = actual else {
            return Err(CliError(format!(
                "{}: --compare needs a host bundle or xen-cpuid -p output",
                args.file.display()
            )));
        };
        let mut out = String::new();
        let mut different = false;
        for (which, predicted) in derived.iter() {
            let Some(real) = actual.get(which) else {
                out += &format!("{}: not in {}\n", which.name(), args.file.display());
                continue;
            };
            let diff = PolicyDiff::between(predicted, real);
            if diff.leaves.is_empty() && diff.msrs.is_empty() {
                out += &format!("{}: predicted exactly\n", which.name());
                continue;
            }
            different = true;
            out += &format!("{}: differs (predicted, then Xen's)\n", which.name());
            for leaf in &diff.leaves {
                out += &format!("  leaf {}: {:?} / {:?}\n", leaf.key, leaf.a, leaf.b);
            }
            for msr in &diff.msrs {
                out += &format!("  msr {:#x}: {:#x} / {:#x}\n", msr.index, msr.a, msr.b);
            }
            let names = |ids: &[cpupolicy::featureset::FeatureId]| {
                ids.iter().map(|id| feature_name(*id)).collect::<Vec<_>>().join(" ")
            };
            if !diff.only_in_a.is_empty() {
                out += &format!("  features predicted, not in Xen's: {}\n", names(&diff.only_in_a));
            }
            if !diff.only_in_b.is_empty() {
                out += &format!("  features in Xen's, not predicted: {}\n", names(&diff.only_in_b));
            }
        }
        emit(&out)?;
        return Ok(if different { EXIT_NEGATIVE } else { 0 });
    }
    let bundle = HostBundle { policies: derived, ..HostBundle::default() };
    match args.format {
        super::policy::PolicyFormat::Json => emit(&bundle.to_json())?,
        super::policy::PolicyFormat::XenCpuid => emit(&XenCpuidReport::from_bundle(&bundle).0)?,
    }
    Ok(0)
}
