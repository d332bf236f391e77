//! `placement` and `plan`: which VM may run where in a fleet, and what a change to the pool
//! would strand.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use cpupolicy::policy::{plan, Change, CpuPolicy, Document, Fleet, FleetVm, PlacementOptions, PoolHost};

use super::policy::emit;
use super::pool::{host_from_document, host_name, load_vm, Kind};
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

#[derive(Args)]
pub struct PlacementArgs {
    /// A host: any file `level` reads (host bundle, xen-cpuid -p output, libvirt CPU dump,
    /// JSON policy). Named after the file, without directories and extension.
    #[arg(long = "host", value_name = "POLICY", required = true)]
    hosts: Vec<PathBuf>,
    /// A VM: `[NAME=]FILE[@HOST]`. FILE is the policy it booted with (JSON policy, xen-cpuid
    /// -p DOMID output, the pool document it booted from, or a host's policies for a VM booted
    /// there with the default); NAME defaults to the file's name; HOST names the host it runs on.
    #[arg(long = "vm", value_name = "VM")]
    vms: Vec<String>,
    /// The kind of guest.
    #[arg(long, value_enum, default_value = "hvm")]
    kind: Kind,
    /// Count what the guest would see change or leak (host-reflected differences, PV
    /// leak-through, MXCSR bits that fault) as the host refusing the VM.
    #[arg(long)]
    strict: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlacementFormat,
}

#[derive(Args)]
pub struct PlanArgs {
    /// A host of the pool as it is now: any file `level` reads, named after the file.
    #[arg(long = "host", value_name = "POLICY", required = true)]
    hosts: Vec<PathBuf>,
    /// A VM: `[NAME=]FILE[@HOST]`, as for `placement`.
    #[arg(long = "vm", value_name = "VM")]
    vms: Vec<String>,
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
    /// The kind of guest.
    #[arg(long, value_enum, default_value = "hvm")]
    kind: Kind,
    /// Count what the guest would see change or leak as the host refusing the VM.
    #[arg(long)]
    strict: bool,
    /// Level hosts of different CPU vendors anyway.
    #[arg(long)]
    cross_vendor: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: super::TextOrJson,
}

/// Reads hosts, parsing each distinct file content once: a fleet's bundles are mostly copies.
#[derive(Default)]
struct HostReader {
    seen: HashMap<u64, Vec<(String, PoolHost)>>,
}

impl HostReader {
    fn read(&mut self, path: &Path, kind: Kind) -> Result<PoolHost, CliError> {
        let name = host_name(path);
        let text = match path.to_str() {
            Some(p) if p != "-" && !p.contains('#') => cpupolicy::policy::read_input(path).ok(),
            _ => None,
        };
        let Some(text) = text else {
            // Standard input, pool documents' #acceptance, unreadable files: the ordinary way,
            // which names the problem.
            return super::pool::load_host(path, kind);
        };
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        let entries = self.seen.entry(hasher.finish()).or_default();
        if let Some((_, host)) = entries.iter().find(|(t, _)| *t == text) {
            let mut host = host.clone();
            host.name = name;
            return Ok(host);
        }
        let document = Document::parse(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        let host = host_from_document(path, document, kind)?;
        entries.push((text, host.clone()));
        Ok(host)
    }
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

/// Reads the VMs, each file once however many VMs name it.
fn read_vms(specs: &[String], kind: Kind) -> Result<Vec<FleetVm>, CliError> {
    let mut policies: HashMap<PathBuf, CpuPolicy> = HashMap::new();
    let mut vms = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, path, host) = parse_vm_spec(spec)?;
        let policy = match policies.get(&path) {
            Some(policy) => policy.clone(),
            None => {
                let (policy, _) = load_vm(&path, kind)?;
                policies.insert(path.clone(), policy.clone());
                policy
            }
        };
        vms.push(FleetVm { name, policy, host });
    }
    Ok(vms)
}

pub fn placement(args: PlacementArgs) -> Outcome {
    let mut fleet = Fleet::new();
    let mut reader = HostReader::default();
    for path in &args.hosts {
        fleet.add_host(reader.read(path, args.kind)?)?;
    }
    drop(reader);
    for vm in read_vms(&args.vms, args.kind)? {
        fleet.add_vm(vm)?;
    }
    let placement = fleet.place(PlacementOptions { strict: args.strict, cross_vendor: false });
    let kind = args.kind.guest_kind();
    match args.format {
        PlacementFormat::Text => emit(&placement.to_text(kind))?,
        PlacementFormat::Matrix => emit(&placement.to_matrix())?,
        PlacementFormat::Json => emit(&format!("{:#}\n", placement.to_json(kind)))?,
    }
    Ok(0)
}

pub fn plan_change(args: PlanArgs) -> Outcome {
    let mut reader = HostReader::default();
    let hosts = args.hosts.iter().map(|p| reader.read(p, args.kind)).collect::<Result<Vec<_>, _>>()?;
    let mut changes: Vec<Change> = args.remove.iter().cloned().map(Change::Remove).collect();
    for spec in &args.replace {
        let (name, file) = spec
            .split_once('=')
            .filter(|(name, file)| !name.is_empty() && !file.is_empty())
            .ok_or_else(|| CliError(format!("--replace {spec}: expected NAME=FILE")))?;
        changes.push(Change::Replace(name.to_string(), reader.read(Path::new(file), args.kind)?));
    }
    for path in &args.add {
        changes.push(Change::Add(reader.read(path, args.kind)?));
    }
    if changes.is_empty() {
        return Err(CliError("no change: give --add, --remove or --replace".into()));
    }
    drop(reader);
    let vms = read_vms(&args.vms, args.kind)?;
    let options = PlacementOptions { strict: args.strict, cross_vendor: args.cross_vendor };
    let plan = plan(hosts, vms, changes, options)?;
    let kind = args.kind.guest_kind();
    match args.format {
        super::TextOrJson::Text => emit(&plan.to_text(kind))?,
        super::TextOrJson::Json => emit(&format!("{:#}\n", plan.to_json(kind)?))?,
    }
    Ok(if plan.strands() { EXIT_NEGATIVE } else { 0 })
}
