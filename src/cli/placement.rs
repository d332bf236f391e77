//! `placement` and `plan`: which VM may run where in a fleet, and what a change to the pool
//! would strand.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use cpupolicy::policy::{plan, Change, CpuPolicy, Document, Fleet, FleetVm, PlacementOptions, PoolHost};

use super::policy::emit;
use super::pool::{host_from_document, host_name, load_vm, vm_from_document, Kind};
use super::{CliError, Outcome, EXIT_NEGATIVE};

/// Output formats of `placement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlacementFormat {
    /// Host and VM classes, where each VM class may run and why not elsewhere, what each host
    /// class accepts, and the VMs that cannot move.
    Text,
    /// A `cpupolicy-placement` JSON document.
    Json,
    /// A matrix of VM classes by host classes (`+` may run, `.` may not), then the classes.
    Matrix,
}

/// The hosts and VMs of a fleet, as `placement` and `plan` take them.
#[derive(Args)]
pub struct FleetArgs {
    /// A host (of the pool as it is now): any file `level` reads (host bundle, xen-cpuid -p
    /// output, libvirt CPU dump, JSON policy). Named after the file, without directories and
    /// extension.
    #[arg(long = "host", value_name = "POLICY", required_unless_present = "hosts_from")]
    hosts: Vec<PathBuf>,
    /// A file listing hosts, one file name per line (blank lines and `#` comments skipped), for
    /// fleets too large for a command line.
    #[arg(long, value_name = "LIST")]
    hosts_from: Option<PathBuf>,
    /// A VM: `[NAME=]FILE[@HOST]`. FILE is the policy it booted with (JSON policy, xen-cpuid
    /// -p DOMID output, the pool document it booted from, or a host's policies for a VM booted
    /// there with the default); NAME defaults to the file's name; HOST names the host it runs on.
    #[arg(long = "vm", value_name = "VM")]
    vms: Vec<String>,
    /// A file listing VMs, one `[NAME=]FILE[@HOST]` per line.
    #[arg(long, value_name = "LIST")]
    vms_from: Option<PathBuf>,
    /// The kind of guest.
    #[arg(long, value_enum, default_value = "hvm")]
    kind: Kind,
    /// Count what the guest would see change or leak (host-reflected differences, PV
    /// leak-through, MXCSR bits that fault) as the host refusing the VM.
    #[arg(long)]
    strict: bool,
}

#[derive(Args)]
pub struct PlacementArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlacementFormat,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// A host that joins (named after the file).
    #[arg(long = "add", value_name = "POLICY")]
    add: Vec<PathBuf>,
    /// The host of this name leaves.
    #[arg(long = "remove", value_name = "NAME")]
    remove: Vec<String>,
    /// `NAME=FILE`: the host NAME is replaced by the policies in FILE (a bundle fetched after
    /// a microcode or Xen update). Changes apply in this order: removals, replacements, joins.
    #[arg(long = "replace", value_name = "NAME=POLICY")]
    replace: Vec<String>,
    /// Level hosts of different CPU vendors anyway.
    #[arg(long)]
    cross_vendor: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: super::TextOrJson,
}

/// What each distinct file content was parsed into, by the content's hash (the content kept to
/// tell collisions apart).
type ByContent<T> = HashMap<u64, Vec<(String, T)>>;

/// Reads hosts and VMs' policies, parsing each distinct file content once: a fleet's files are
/// mostly copies.
#[derive(Default)]
struct Reader {
    hosts: ByContent<PoolHost>,
    /// A VM's policy, and whether its file held a host's policies.
    vms: ByContent<(CpuPolicy, bool)>,
    /// How many VM files held a host's policies (standing for its default).
    vms_from_hosts: usize,
}

/// A file's text and its hash, unless it is standard input or names a pool document's policy
/// (`FILE#acceptance`), which take the ordinary way.
fn text_of(path: &Path) -> Result<Option<(String, u64)>, CliError> {
    match path.to_str() {
        Some(p) if p != "-" && (path.exists() || !p.contains('#')) => {
            let text = super::read_text(path)?;
            let mut hasher = DefaultHasher::new();
            text.hash(&mut hasher);
            let hash = hasher.finish();
            Ok(Some((text, hash)))
        }
        _ => Ok(None),
    }
}

/// What `parse` makes of the file at `path`, parsed once per distinct content in `cache`;
/// `None` for a path [`text_of`] leaves to the ordinary reading.
fn parsed_once<T: Clone>(
    cache: &mut ByContent<T>,
    path: &Path,
    parse: impl FnOnce(Document) -> Result<T, CliError>,
) -> Result<Option<T>, CliError> {
    let Some((text, hash)) = text_of(path)? else { return Ok(None) };
    let entries = cache.entry(hash).or_default();
    if let Some((_, value)) = entries.iter().find(|(t, _)| *t == text) {
        return Ok(Some(value.clone()));
    }
    let document = Document::parse(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let value = parse(document)?;
    entries.push((text, value.clone()));
    Ok(Some(value))
}

impl Reader {
    fn host(&mut self, path: &Path, kind: Kind) -> Result<PoolHost, CliError> {
        match parsed_once(&mut self.hosts, path, |document| host_from_document(path, document, kind))? {
            Some(mut host) => {
                host.name = host_name(path);
                Ok(host)
            }
            None => super::pool::load_host(path, kind),
        }
    }

    fn vm_policy(&mut self, path: &Path, kind: Kind) -> Result<CpuPolicy, CliError> {
        let parse = |document| vm_from_document(path, document, kind).map(|(policy, _, from_host)| (policy, from_host));
        let Some((policy, from_host)) = parsed_once(&mut self.vms, path, parse)? else {
            return Ok(load_vm(path, kind)?.0);
        };
        self.vms_from_hosts += usize::from(from_host);
        Ok(policy)
    }

    /// Reads the VMs.
    fn vms(&mut self, specs: &[Listed], kind: Kind) -> Result<Vec<FleetVm>, CliError> {
        let mut vms = Vec::with_capacity(specs.len());
        for spec in specs {
            let (name, path, host) = spec.context(parse_vm_spec(&spec.text))?;
            vms.push(FleetVm { name, policy: spec.context(self.vm_policy(&path, kind))?, host });
        }
        if self.vms_from_hosts > 0 {
            errln!(
                "cpupolicy: note: {} of the VMs' files hold a host's policies: each stands for a VM booted there with its default policy",
                self.vms_from_hosts
            );
        }
        Ok(vms)
    }
}

/// A host or VM as given: its text, and where it came from when a list file gave it
/// (`LIST line N`), which is put before any error about it.
struct Listed {
    text: String,
    origin: Option<String>,
}

impl Listed {
    /// `result`, its error prefixed with where this item came from.
    fn context<T>(&self, result: Result<T, CliError>) -> Result<T, CliError> {
        match (&self.origin, result) {
            (Some(origin), Err(error)) => Err(CliError(format!("{origin}: {}", error.0))),
            (_, result) => result,
        }
    }
}

/// The given items, then the lines of the list file (blank lines and `#` comments skipped),
/// each with its line.
fn with_list(given: &[String], list: Option<&Path>) -> Result<Vec<Listed>, CliError> {
    let mut items: Vec<Listed> = given.iter().map(|text| Listed { text: text.clone(), origin: None }).collect();
    if let Some(list) = list {
        let text = super::read_text(list)?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                let origin = Some(format!("{} line {}", list.display(), number + 1));
                items.push(Listed { text: line.to_string(), origin });
            }
        }
    }
    Ok(items)
}

/// The hosts given and listed; none at all is an error (a list file with no host in it).
fn host_paths(given: &[PathBuf], list: Option<&Path>) -> Result<Vec<Listed>, CliError> {
    let given: Vec<String> = given.iter().map(|p| p.display().to_string()).collect();
    let hosts = with_list(&given, list)?;
    if hosts.is_empty() {
        let list = list.map_or_else(String::new, |l| format!(": {} lists none", l.display()));
        return Err(CliError(format!("no hosts{list}")));
    }
    Ok(hosts)
}

/// A `--vm` argument: `[NAME=]FILE[@HOST]`.
fn parse_vm_spec(spec: &str) -> Result<(String, PathBuf, Option<String>), CliError> {
    let (name, rest) = match spec.split_once('=') {
        Some((name, rest)) if !Path::new(spec).exists() && !name.is_empty() && !name.contains('/') => {
            (Some(name.to_string()), rest)
        }
        _ => (None, spec),
    };
    let (file, host) = match rest.rsplit_once('@') {
        Some((file, host)) if !Path::new(rest).exists() => {
            if host.is_empty() {
                return Err(CliError(format!("--vm {spec}: no host name after '@'")));
            }
            (file, Some(host.to_string()))
        }
        _ => (rest, None),
    };
    if file.is_empty() {
        return Err(CliError(format!("--vm {spec}: no file")));
    }
    let path = PathBuf::from(file);
    Ok((name.unwrap_or_else(|| host_name(&path)), path, host))
}

/// The fleet's hosts, then (`before_vms`, e.g. the changes of a plan, read with the same
/// reader) and its VMs.
fn read_fleet(
    args: &FleetArgs,
    before_vms: impl FnOnce(&mut Reader) -> Result<(), CliError>,
) -> Result<Fleet, CliError> {
    let mut reader = Reader::default();
    let mut fleet = Fleet::new();
    for listed in host_paths(&args.hosts, args.hosts_from.as_deref())? {
        let host = listed.context(reader.host(Path::new(&listed.text), args.kind))?;
        listed.context(fleet.add_host(host).map_err(CliError::from))?;
    }
    before_vms(&mut reader)?;
    let listed = with_list(&args.vms, args.vms_from.as_deref())?;
    for (vm, listed) in reader.vms(&listed, args.kind)?.into_iter().zip(&listed) {
        listed.context(fleet.add_vm(vm).map_err(CliError::from))?;
    }
    Ok(fleet)
}

pub fn placement(args: PlacementArgs) -> Outcome {
    let fleet = read_fleet(&args.fleet, |_| Ok(()))?;
    let placement = fleet.place(PlacementOptions { strict: args.fleet.strict, cross_vendor: false });
    let kind = args.fleet.kind.guest_kind();
    match args.format {
        PlacementFormat::Text => emit(&placement.to_text(kind))?,
        PlacementFormat::Matrix => emit(&placement.to_matrix())?,
        PlacementFormat::Json => emit(&format!("{:#}\n", placement.to_json(kind)))?,
    }
    Ok(0)
}

pub fn plan_change(args: PlanArgs) -> Outcome {
    let kind = args.fleet.kind;
    let mut changes: Vec<Change> = args.remove.iter().cloned().map(Change::Remove).collect();
    let fleet = read_fleet(&args.fleet, |reader| {
        for spec in &args.replace {
            let (name, file) = spec
                .split_once('=')
                .filter(|(name, file)| !name.is_empty() && !file.is_empty())
                .ok_or_else(|| CliError(format!("--replace {spec}: expected NAME=FILE")))?;
            changes.push(Change::Replace(name.to_string(), reader.host(Path::new(file), kind)?));
        }
        for path in &args.add {
            changes.push(Change::Add(reader.host(path, kind)?));
        }
        if changes.is_empty() {
            return Err(CliError("no change: give --add, --remove or --replace".into()));
        }
        Ok(())
    })?;
    let options = PlacementOptions { strict: args.fleet.strict, cross_vendor: args.cross_vendor };
    let plan = plan(fleet, changes, options)?;
    match args.format {
        super::TextOrJson::Text => emit(&plan.to_text(kind.guest_kind()))?,
        super::TextOrJson::Json => emit(&format!("{:#}\n", plan.to_json(kind.guest_kind())?))?,
    }
    Ok(if plan.strands() { EXIT_NEGATIVE } else { 0 })
}
