//! A fleet's placement (which VM may run on which host) and the plan of a change to its pool
//! (a host joins, leaves, or is replaced by a bundle fetched after a microcode or Xen update):
//! what the pool's policies gain and lose, and which VMs the change would strand.
//!
//! Whether a VM may run on a host depends only on the VM's policy and the host's policies
//! ([`check_migration`]), so hosts whose policies are identical form one class, and VMs that
//! booted with the same policy (and run on hosts with the same MXCSR mask) form one: a fleet is
//! judged class by class, one check per pair of classes, however many hosts and VMs share
//! them. [`Fleet`] groups as it is filled, keeping one copy of each class's policies, so a
//! fleet of thousands of identical hosts costs one host's policies and a name each.
//!
//! # What strands a VM
//!
//! A plan compares the pool before and after the change. A VM is **stranded** by it when:
//! - its own host is replaced and the new bundle cannot keep it ([`Stranding::CannotStay`]):
//!   it must move (or be shut down) before the update;
//! - after the change no host but its own can take it, although one could before, or its own
//!   host leaves and no host remains that can take it ([`Stranding::NowhereToGo`]): it can
//!   no longer be evacuated;
//! - a host that joins, or a replaced host that could take it before, cannot take it
//!   ([`Stranding::ShutOut`]): the pool is no longer one place for it. This is how VMs booted
//!   on a pool's default find themselves after an older CPU joins: they run, and cannot go
//!   there until they reboot with the new, lower default.
//!
//! A host that leaves costs nothing else: whether a VM may run on a host does not depend on
//! the other hosts. The pool's new default and acceptance policies are what VMs booted after
//! the change get and what every host then accepts ([`level_pool`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use cpupolicy_featureset::{FeatureId, NR_WORDS};

use crate::level::feature_name;
use crate::{
    check_migration, level_pool, CpuPolicy, LevelError, LevelOptions, Levelled, LimitField, MigrationCheck, Mismatch,
    PoolHost, Warning,
};

/// A VM of a fleet: the policy it booted with and, when known, the host it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetVm {
    /// How the VM is named in reports.
    pub name: String,
    /// The policy the VM booted with (what its guest saw).
    pub policy: CpuPolicy,
    /// The name of the host it runs on, when known.
    pub host: Option<String>,
}

/// Why a fleet or a change cannot be judged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Two hosts have one name.
    #[error("two hosts are named '{0}': host names must differ")]
    DuplicateHost(String),
    /// Two VMs have one name.
    #[error("two VMs are named '{0}': VM names must differ")]
    DuplicateVm(String),
    /// A VM names a host that is not in the fleet.
    #[error("VM '{vm}' runs on '{host}', which is not one of the hosts")]
    UnknownHost {
        /// The VM.
        vm: String,
        /// The host it names.
        host: String,
    },
    /// A change names a host that is not in the pool at that point.
    #[error("--{change} {host}: no host of that name in the pool")]
    NoSuchHost {
        /// `remove` or `replace`.
        change: &'static str,
        /// The name.
        host: String,
    },
    /// A host joins under a name the pool already has.
    #[error("--add {0}: the pool already has a host of that name (use --replace)")]
    AlreadyInPool(String),
    /// The change leaves the pool without hosts.
    #[error("the change leaves the pool without hosts")]
    EmptyAfter,
    /// The pool has no hosts.
    #[error("the pool has no hosts")]
    NoHosts,
    /// Levelling the pool before or after the change failed.
    #[error("levelling the pool {when} the change: {error}")]
    Level {
        /// `before` or `after`.
        when: &'static str,
        /// Why.
        error: LevelError,
    },
}

/// What may be asked of [`Fleet::place`] and [`plan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlacementOptions {
    /// Count what the guest would see change or leak (host-reflected differences, PV
    /// leak-through, MXCSR bits that fault) as a host refusing the VM, as `check --strict`.
    pub strict: bool,
    /// Level hosts of different vendors anyway (for the plan's pool policies).
    pub cross_vendor: bool,
}

/// Hosts and VMs, grouped into classes of identical policies as they are added.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    host_names: Vec<String>,
    host_class: Vec<u32>,
    host_by_name: HashMap<String, u32>,
    /// One representative per class (named after its first member).
    host_classes: Vec<PoolHost>,
    host_class_by_hash: HashMap<u64, Vec<u32>>,
    vms: Vec<VmEntry>,
    vm_by_name: HashMap<String, u32>,
    vm_classes: Vec<VmClass>,
    vm_class_by_hash: HashMap<u64, Vec<u32>>,
}

#[derive(Clone, Debug)]
struct VmEntry {
    name: String,
    host: Option<u32>,
    class: u32,
}

/// What a VM class is judged by: the policy, and the MXCSR mask of the hosts its VMs run on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct VmClass {
    policy: CpuPolicy,
    mxcsr_mask: Option<u32>,
}

/// Whether two hosts are judged alike by every check and by levelling: all but the name.
fn same_host_class(a: &PoolHost, b: &PoolHost) -> bool {
    a.default == b.default
        && a.max == b.max
        && a.host == b.host
        && a.kind == b.kind
        && a.raw == b.raw
        && a.levelling == b.levelling
        && a.mxcsr_mask == b.mxcsr_mask
        && a.xen == b.xen
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

impl Fleet {
    /// An empty fleet.
    pub fn new() -> Fleet {
        Fleet::default()
    }

    /// Adds a host; its policies are dropped when an identical host is already in.
    pub fn add_host(&mut self, host: PoolHost) -> Result<(), PlacementError> {
        if self.host_by_name.contains_key(&host.name) {
            return Err(PlacementError::DuplicateHost(host.name));
        }
        let index = self.host_names.len() as u32;
        self.host_by_name.insert(host.name.clone(), index);
        self.host_names.push(host.name.clone());
        let class = self.intern_host(host);
        self.host_class.push(class);
        Ok(())
    }

    fn intern_host(&mut self, host: PoolHost) -> u32 {
        let hash = hash_of(&(&host.max, &host.default));
        let candidates = self.host_class_by_hash.entry(hash).or_default();
        if let Some(&class) = candidates.iter().find(|&&c| same_host_class(&self.host_classes[c as usize], &host)) {
            return class;
        }
        let class = self.host_classes.len() as u32;
        candidates.push(class);
        self.host_classes.push(host);
        class
    }

    /// Adds a VM. Its host, when named, must already be in the fleet.
    pub fn add_vm(&mut self, vm: FleetVm) -> Result<(), PlacementError> {
        if self.vm_by_name.contains_key(&vm.name) {
            return Err(PlacementError::DuplicateVm(vm.name));
        }
        let host = match &vm.host {
            None => None,
            Some(name) => Some(
                *self
                    .host_by_name
                    .get(name)
                    .ok_or_else(|| PlacementError::UnknownHost { vm: vm.name.clone(), host: name.clone() })?,
            ),
        };
        let mxcsr_mask = host.and_then(|h| self.host_classes[self.host_class[h as usize] as usize].mxcsr_mask);
        let class = self.intern_vm(VmClass { policy: vm.policy, mxcsr_mask });
        self.vm_by_name.insert(vm.name.clone(), self.vms.len() as u32);
        self.vms.push(VmEntry { name: vm.name, host, class });
        Ok(())
    }

    fn intern_vm(&mut self, vm: VmClass) -> u32 {
        let hash = hash_of(&vm);
        let candidates = self.vm_class_by_hash.entry(hash).or_default();
        if let Some(&class) = candidates.iter().find(|&&c| self.vm_classes[c as usize] == vm) {
            return class;
        }
        let class = self.vm_classes.len() as u32;
        candidates.push(class);
        self.vm_classes.push(vm);
        class
    }

    /// The number of hosts.
    pub fn host_count(&self) -> usize {
        self.host_names.len()
    }

    /// The number of VMs.
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// Judges every VM class against every host class.
    pub fn place(&self, options: PlacementOptions) -> Placement<'_> {
        let verdicts = self
            .vm_classes
            .iter()
            .flat_map(|vm| self.host_classes.iter().map(move |host| Verdict::of(vm, host, options.strict)))
            .collect();
        let mut class_sizes = vec![0; self.host_classes.len()];
        for &class in &self.host_class {
            class_sizes[class as usize] += 1;
        }
        Placement { fleet: self, verdicts, class_sizes }
    }
}

/// Whether a VM class may run on a host class, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The migration check.
    pub check: MigrationCheck,
    /// MXCSR bits the VM's hosts accept and this host does not (both masks known): they fault.
    pub mxcsr_faults: u32,
    /// Whether the host takes the VM (no mismatch; with `strict`, nothing that changes or leaks).
    pub accepted: bool,
}

impl Verdict {
    fn of(vm: &VmClass, host: &PoolHost, strict: bool) -> Verdict {
        let check = check_migration(&vm.policy, host);
        let mxcsr_faults = crate::mxcsr_faults(vm.mxcsr_mask, host.mxcsr_mask);
        let strict_refusal = strict && (mxcsr_faults != 0 || check.warnings.iter().any(Warning::is_strict_refusal));
        let accepted = check.is_compatible() && !strict_refusal;
        Verdict { check, mxcsr_faults, accepted }
    }

    /// Why the host refuses the VM, briefly: the features it cannot give (one item), the other
    /// mismatches, then (when refused under `strict` alone) the warnings that made it refuse.
    pub fn reasons(&self) -> Vec<String> {
        let features = self.features();
        let mut reasons = Vec::new();
        if !features.is_empty() {
            let names: Vec<String> = features.iter().map(|id| feature_name(*id)).collect();
            reasons.push(format!("features it cannot give: {}", names.join(" ")));
        }
        reasons.extend(
            self.check.mismatches.iter().filter(|m| !matches!(m, Mismatch::Feature(_))).map(Mismatch::to_string),
        );
        if !self.accepted && reasons.is_empty() {
            reasons
                .extend(self.check.warnings.iter().filter(|w| w.is_strict_refusal()).map(|w| format!("--strict: {w}")));
            if self.mxcsr_faults != 0 {
                reasons.push(format!("--strict: MXCSR bits {:#x} fault here", self.mxcsr_faults));
            }
        }
        reasons
    }

    /// The features the VM saw and the host cannot give.
    pub fn features(&self) -> Vec<FeatureId> {
        self.check
            .mismatches
            .iter()
            .filter_map(|m| match m {
                Mismatch::Feature(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn refusal(&self, host: &str) -> Refusal {
        Refusal { host: host.to_string(), features: self.features(), reasons: self.reasons() }
    }
}

/// A host that cannot take a VM, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The host.
    pub host: String,
    /// The features the VM saw that the host cannot give.
    pub features: Vec<FeatureId>,
    /// Every reason, briefly (see [`Verdict::reasons`]).
    pub reasons: Vec<String>,
}

/// Every VM class judged against every host class of a [`Fleet`].
#[derive(Clone, Debug)]
pub struct Placement<'a> {
    fleet: &'a Fleet,
    /// `vm_class * host_classes + host_class`.
    verdicts: Vec<Verdict>,
    /// How many hosts each host class has.
    class_sizes: Vec<usize>,
}

impl<'a> Placement<'a> {
    /// The fleet judged.
    pub fn fleet(&self) -> &'a Fleet {
        self.fleet
    }

    /// The number of host classes.
    pub fn host_classes(&self) -> usize {
        self.fleet.host_classes.len()
    }

    /// The number of VM classes.
    pub fn vm_classes(&self) -> usize {
        self.fleet.vm_classes.len()
    }

    /// The verdict for a VM class on a host class.
    pub fn verdict(&self, vm_class: usize, host_class: usize) -> &Verdict {
        &self.verdicts[vm_class * self.host_classes() + host_class]
    }

    /// Whether VM `vm` (by index) may run on host `host`.
    pub fn accepts(&self, host: usize, vm: usize) -> bool {
        self.verdict(self.fleet.vms[vm].class as usize, self.fleet.host_class[host] as usize).accepted
    }

    /// The hosts' names, in the order added.
    pub fn host_names(&self) -> &'a [String] {
        &self.fleet.host_names
    }

    /// Host `host`'s class.
    pub fn host_class(&self, host: usize) -> usize {
        self.fleet.host_class[host] as usize
    }

    /// VM `vm`'s name, class, and the host it runs on (by index) when known.
    pub fn vm(&self, vm: usize) -> (&'a str, usize, Option<usize>) {
        let entry = &self.fleet.vms[vm];
        (&entry.name, entry.class as usize, entry.host.map(|h| h as usize))
    }

    /// The members of each host class, by host index, in class order.
    pub fn host_class_members(&self) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.host_classes()];
        for (host, &class) in self.fleet.host_class.iter().enumerate() {
            members[class as usize].push(host);
        }
        members
    }

    /// The members of each VM class, by VM index, in class order.
    pub fn vm_class_members(&self) -> Vec<Vec<usize>> {
        let mut members = vec![Vec::new(); self.vm_classes()];
        for (vm, entry) in self.fleet.vms.iter().enumerate() {
            members[entry.class as usize].push(vm);
        }
        members
    }

    /// The host classes that take VM class `vm_class`.
    pub fn accepting_classes(&self, vm_class: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.host_classes()).filter(move |&h| self.verdict(vm_class, h).accepted)
    }

    /// How many hosts take VM `vm`, other than the one it runs on.
    pub fn other_hosts_accepting(&self, vm: usize) -> usize {
        let (_, class, own) = self.vm(vm);
        let mut n: usize = self.accepting_classes(class).map(|h| self.class_sizes[h]).sum();
        if let Some(own) = own {
            if self.accepts(own, vm) {
                n -= 1;
            }
        }
        n
    }
}

/// One change to a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A host joins (named by its [`PoolHost::name`]).
    Add(PoolHost),
    /// The host of this name leaves.
    Remove(String),
    /// The host of this name is replaced by these policies (a bundle fetched after a microcode
    /// or Xen update); the new policies keep the old name.
    Replace(String, PoolHost),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Add(host) => write!(f, "add {}", host.name),
            Change::Remove(name) => write!(f, "remove {name}"),
            Change::Replace(name, _) => write!(f, "replace {name}"),
        }
    }
}

/// How a change strands a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stranding {
    /// Its own host was replaced and cannot keep it.
    CannotStay(Refusal),
    /// No host but its own can take it after the change (one could before), or its own host
    /// leaves and no remaining host can take it.
    NowhereToGo {
        /// Whether its own host leaves.
        host_leaves: bool,
        /// The hosts it could go to before and cannot after: removed, or replaced and refusing.
        lost: Vec<String>,
    },
    /// A host that joins, or was replaced and could take it before, cannot take it.
    ShutOut(Refusal),
}

impl Stranding {
    /// A stable kind name for JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Stranding::CannotStay(_) => "cannot-stay",
            Stranding::NowhereToGo { .. } => "nowhere-to-go",
            Stranding::ShutOut(_) => "shut-out",
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Stranding::CannotStay(_) => 0,
            Stranding::NowhereToGo { .. } => 1,
            Stranding::ShutOut(_) => 2,
        }
    }
}

impl fmt::Display for Stranding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stranding::CannotStay(Refusal { host, reasons, .. }) => {
                write!(f, "its host {host}, once replaced, cannot keep it: {}", reasons.join("; "))
            }
            Stranding::NowhereToGo { host_leaves: true, lost } if lost.is_empty() => {
                f.write_str("its host leaves and no remaining host can take it")
            }
            Stranding::NowhereToGo { host_leaves: true, lost } => {
                write!(f, "its host leaves and no remaining host can take it (it could go to {})", lost.join(", "))
            }
            Stranding::NowhereToGo { host_leaves: false, lost } => {
                write!(f, "no other host can take it (it could go to {} before)", lost.join(", "))
            }
            Stranding::ShutOut(Refusal { host, reasons, .. }) => {
                write!(f, "cannot migrate to {host}: {}", reasons.join("; "))
            }
        }
    }
}

/// What a change does to one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPlan {
    /// The VM's name.
    pub name: String,
    /// The host it runs on, when known.
    pub host: Option<String>,
    /// How many hosts could take it before the change, and after.
    pub reach: (usize, usize),
    /// Hosts it could go to before and cannot after (removed, or replaced and refusing).
    pub no_longer_reaches: Vec<String>,
    /// Hosts it can go to after and could not before (joined, or replaced and now taking it).
    pub newly_reaches: Vec<String>,
    /// Hosts that join (or replace one that could not take it either) and cannot take it.
    pub joined_refusing: Vec<String>,
    /// How the change strands it, worst first; empty when it does not.
    pub strandings: Vec<Stranding>,
}

impl VmPlan {
    /// Whether the change moves where the VM may go.
    pub fn reach_changes(&self) -> bool {
        !(self.no_longer_reaches.is_empty() && self.newly_reaches.is_empty() && self.joined_refusing.is_empty())
    }

    /// Whether the change strands the VM.
    pub fn is_stranded(&self) -> bool {
        !self.strandings.is_empty()
    }
}

/// How one of the pool's policies moves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyChange {
    /// The featureset before and after.
    pub featuresets: (String, String),
    /// Features lost, with why the pool after the change lacks them (in words).
    pub lost: Vec<(FeatureId, Option<String>)>,
    /// Features gained, with why the pool before the change lacked them (in words).
    pub gained: Vec<(FeatureId, Option<String>)>,
    /// Limits that moved: field, before, after.
    pub limits: Vec<(LimitField, u64, u64)>,
}

impl PolicyChange {
    /// How `before` moved to `after`; `names` name the hosts each was levelled over.
    fn between(before: (&Levelled, &[&str]), after: (&Levelled, &[&str])) -> PolicyChange {
        let ((before, before_names), (after, after_names)) = (before, after);
        let (b, a) = (before.policy.feature_words(), after.policy.feature_words());
        let cause = |levelled: &Levelled, names: &[&str], id: FeatureId| {
            levelled.lost.iter().find(|loss| loss.feature == id).map(|loss| loss.cause.describe(names))
        };
        let (mut lost, mut gained) = (Vec::new(), Vec::new());
        for w in 0..NR_WORDS {
            crate::level_rules::each_bit(b[w] & !a[w], w, |id| lost.push((id, cause(after, after_names, id))));
            crate::level_rules::each_bit(a[w] & !b[w], w, |id| gained.push((id, cause(before, before_names, id))));
        }
        let limits = LimitField::ALL
            .into_iter()
            .map(|field| (field, field.read(&before.policy), field.read(&after.policy)))
            .filter(|(_, b, a)| b != a)
            .collect();
        PolicyChange {
            featuresets: (before.policy.featureset().to_xen_string(), after.policy.featureset().to_xen_string()),
            lost,
            gained,
            limits,
        }
    }

    /// Whether nothing moved.
    pub fn is_empty(&self) -> bool {
        self.lost.is_empty() && self.gained.is_empty() && self.limits.is_empty()
    }
}

/// The plan of a change to a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The changes, in order.
    pub changes: Vec<String>,
    /// The hosts before and after.
    pub hosts: (Vec<String>, Vec<String>),
    /// How the pool default (what new VMs boot with) moves.
    pub default: PolicyChange,
    /// How the acceptance policy (what every host takes from a migration) moves.
    pub acceptance: PolicyChange,
    /// The levelled pool after the change.
    pub after: crate::LevelledPool,
    /// The names `after` was levelled under, one per class of host: `h1`, or
    /// `h1 (and 9 identical)` (what its explanation and host-reflected indices refer to).
    pub after_labels: Vec<String>,
    /// Every VM, stranded ones first (worst first), then in the order given.
    pub vms: Vec<VmPlan>,
}

impl Plan {
    /// Whether the change strands any VM.
    pub fn strands(&self) -> bool {
        self.vms.iter().any(VmPlan::is_stranded)
    }
}

/// Which host a slot of the plan holds, before and after the change.
struct Slot {
    name: String,
    before: bool,
    after: bool,
    /// For a replacement: the slot it replaces.
    replaces: Option<usize>,
}

/// Plans `changes` to the pool of the fleet's hosts, with the fleet's VMs on it (see the
/// module's documentation for what strands a VM). The pool's policies before and after are
/// levelled over one host of each class, named for the class (`h1`, or `h1 (and 9 identical)`).
/// Errors: unknown names, a host joining under a name the pool has, a change that leaves no
/// host, or a pool that cannot be levelled (mixed vendors without `cross_vendor`).
pub fn plan(mut fleet: Fleet, changes: Vec<Change>, options: PlacementOptions) -> Result<Plan, PlacementError> {
    if fleet.host_count() == 0 {
        return Err(PlacementError::NoHosts);
    }
    let mut slots: Vec<Slot> = fleet
        .host_names
        .iter()
        .map(|name| Slot { name: name.clone(), before: true, after: true, replaces: None })
        .collect();
    let changes_text: Vec<String> = changes.iter().map(Change::to_string).collect();
    // The current slot of each name after the changes applied so far.
    let mut current: HashMap<String, usize> = slots.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    for change in changes {
        let (name, mut host, replaces) = match change {
            Change::Add(host) => {
                if current.contains_key(&host.name) {
                    return Err(PlacementError::AlreadyInPool(host.name));
                }
                (host.name.clone(), host, None)
            }
            Change::Remove(name) => {
                let slot = current
                    .remove(&name)
                    .ok_or_else(|| PlacementError::NoSuchHost { change: "remove", host: name.clone() })?;
                slots[slot].after = false;
                continue;
            }
            Change::Replace(name, host) => {
                let slot = *current
                    .get(&name)
                    .ok_or_else(|| PlacementError::NoSuchHost { change: "replace", host: name.clone() })?;
                slots[slot].after = false;
                // The slot it replaces, as the pool had it before the change.
                let original = slots[slot].replaces.unwrap_or(slot);
                (name, host, Some(original).filter(|&o| slots[o].before))
            }
        };
        let index = slots.len();
        // Added by the change (joined, or a replacement): not in the pool before.
        slots.push(Slot { name: name.clone(), before: false, after: true, replaces });
        current.insert(name.clone(), index);
        // Inside the fleet a slot's name is unique (and no VM can name it); reports use
        // `Slot::name`.
        host.name = format!("{name}\u{0}{index}");
        fleet.add_host(host)?;
    }
    if !slots.iter().any(|s| s.after) {
        return Err(PlacementError::EmptyAfter);
    }
    let level_options = LevelOptions { cross_vendor: options.cross_vendor, explain: true };
    let representatives = |after: bool| {
        let mut members: Vec<Vec<&str>> = vec![Vec::new(); fleet.host_classes.len()];
        for (i, slot) in slots.iter().enumerate() {
            if (after && slot.after) || (!after && slot.before) {
                members[fleet.host_class[i] as usize].push(&slot.name);
            }
        }
        members
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(class, m)| {
                let mut host = fleet.host_classes[class].clone();
                host.name = match m.len() {
                    1 => m[0].to_string(),
                    n => format!("{} (and {} identical)", m[0], n - 1),
                };
                host
            })
            .collect::<Vec<PoolHost>>()
    };
    let before_hosts = representatives(false);
    let before_labels: Vec<&str> = before_hosts.iter().map(|h| h.name.as_str()).collect();
    let before =
        level_pool(&before_hosts, level_options).map_err(|error| PlacementError::Level { when: "before", error })?;
    let after_hosts = representatives(true);
    let after_labels: Vec<String> = after_hosts.iter().map(|h| h.name.clone()).collect();
    let after_refs: Vec<&str> = after_labels.iter().map(String::as_str).collect();
    let after =
        level_pool(&after_hosts, level_options).map_err(|error| PlacementError::Level { when: "after", error })?;
    let hosts_before: Vec<String> = slots.iter().filter(|s| s.before).map(|s| s.name.clone()).collect();
    let hosts_after: Vec<String> = slots.iter().filter(|s| s.after).map(|s| s.name.clone()).collect();

    let placement = fleet.place(options);
    // Per host class, how many hosts of it the pool has before and after; per VM class, how
    // many hosts take it then: a VM's reach, counted once per class.
    let mut counts = vec![(0usize, 0usize); placement.host_classes()];
    for (i, slot) in slots.iter().enumerate() {
        let count = &mut counts[placement.host_class(i)];
        count.0 += usize::from(slot.before);
        count.1 += usize::from(slot.after);
    }
    let reach: Vec<(usize, usize)> = (0..placement.vm_classes())
        .map(|vm| placement.accepting_classes(vm).fold((0, 0), |(b, a), h| (b + counts[h].0, a + counts[h].1)))
        .collect();
    // The hosts a change touched (removed, replaced, new), and where each name ends up.
    let changed: Vec<usize> = (0..slots.len()).filter(|&i| !slots[i].before || !slots[i].after).collect();
    let successor: HashMap<&str, usize> =
        slots.iter().enumerate().filter(|(_, s)| s.after).map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut plans = Vec::with_capacity(fleet.vm_count());
    for v in 0..fleet.vm_count() {
        let (name, class, own) = placement.vm(v);
        let own_name = own.map(|o| slots[o].name.clone());
        let takes = |slot: usize| placement.accepts(slot, v);
        let refusal = |slot: usize| placement.verdict(class, placement.host_class(slot)).refusal(&slots[slot].name);
        let (reach_before, reach_after) = reach[class];
        let mut no_longer = Vec::new();
        let mut newly = Vec::new();
        let mut joined_refusing = Vec::new();
        let mut strandings = Vec::new();
        for &i in &changed {
            let slot = &slots[i];
            // A host it could go to and cannot after: removed, or replaced and refusing.
            if slot.before && !slot.after && takes(i) && successor.get(slot.name.as_str()).is_none_or(|&s| !takes(s)) {
                no_longer.push(slot.name.clone());
            }
            // Only hosts the change brought in can be newly reached or refuse.
            if slot.before || !slot.after {
                continue;
            }
            let took_before = slot.replaces.is_some_and(takes);
            if takes(i) && !took_before {
                newly.push(slot.name.clone());
            } else if !takes(i) && slot.replaces.is_none() {
                joined_refusing.push(slot.name.clone());
                strandings.push(Stranding::ShutOut(refusal(i)));
            } else if !takes(i) && took_before {
                if own.is_some() && slot.replaces == own {
                    strandings.push(Stranding::CannotStay(refusal(i)));
                } else {
                    strandings.push(Stranding::ShutOut(refusal(i)));
                }
            }
        }
        // Its own host after the change: the same, or what replaced it.
        let own_after = own.and_then(|o| {
            if slots[o].after {
                Some(o)
            } else {
                changed.iter().copied().find(|&i| slots[i].after && slots[i].replaces == Some(o))
            }
        });
        let others_before = reach_before - usize::from(own.is_some_and(takes));
        let others_after = reach_after - usize::from(own_after.is_some_and(takes));
        let own_leaves = own.is_some() && own_after.is_none();
        if others_after == 0 && (own_leaves || others_before > 0) {
            let lost = no_longer.iter().filter(|n| Some(*n) != own_name.as_ref()).cloned().collect();
            strandings.push(Stranding::NowhereToGo { host_leaves: own_leaves, lost });
        }
        strandings.sort_by_key(Stranding::rank);
        plans.push(VmPlan {
            name: name.to_string(),
            host: own_name,
            reach: (reach_before, reach_after),
            no_longer_reaches: no_longer,
            newly_reaches: newly,
            joined_refusing,
            strandings,
        });
    }
    plans.sort_by_key(|p| p.strandings.first().map_or(3, Stranding::rank));
    Ok(Plan {
        changes: changes_text,
        hosts: (hosts_before, hosts_after),
        default: PolicyChange::between((&before.default, &before_labels), (&after.default, &after_refs)),
        acceptance: PolicyChange::between((&before.acceptance, &before_labels), (&after.acceptance, &after_refs)),
        after,
        after_labels,
        vms: plans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::intel;
    use cpupolicy_featureset::ids;

    fn host(name: &str, features: &[&str]) -> PoolHost {
        PoolHost::from_single(name, intel(features))
    }

    fn vm(name: &str, features: &[&str], on: Option<&str>) -> FleetVm {
        FleetVm { name: name.into(), policy: intel(features), host: on.map(String::from) }
    }

    fn fleet(hosts: Vec<PoolHost>, vms: Vec<FleetVm>) -> Fleet {
        let mut fleet = Fleet::new();
        for h in hosts {
            fleet.add_host(h).unwrap();
        }
        for v in vms {
            fleet.add_vm(v).unwrap();
        }
        fleet
    }

    fn vm_plan<'a>(plan: &'a Plan, name: &str) -> &'a VmPlan {
        plan.vms.iter().find(|v| v.name == name).unwrap()
    }

    #[test]
    fn identical_hosts_and_vms_are_one_class_judged_as_check_migration_judges() {
        let hosts = vec![
            host("a", &["fpu", "avx", "xsave"]),
            host("b", &["fpu", "avx", "xsave"]),
            host("c", &["fpu"]),
            host("d", &["fpu", "avx", "xsave"]),
        ];
        let vms =
            vec![vm("v1", &["fpu", "avx", "xsave"], Some("a")), vm("v2", &["fpu"], None), vm("v3", &["fpu"], None)];
        let f = fleet(hosts.clone(), vms.clone());
        let placement = f.place(PlacementOptions::default());
        assert_eq!((placement.host_classes(), placement.vm_classes()), (2, 2));
        assert_eq!(placement.host_class_members(), [vec![0, 1, 3], vec![2]]);
        for (v, vm) in vms.iter().enumerate() {
            for (h, host) in hosts.iter().enumerate() {
                assert_eq!(placement.accepts(h, v), check_migration(&vm.policy, host).is_compatible(), "{v} on {h}");
            }
        }
        assert_eq!(placement.other_hosts_accepting(0), 2);
        assert_eq!(placement.other_hosts_accepting(1), 4);
        let verdict = placement.verdict(0, 1);
        assert!(!verdict.accepted);
        assert_eq!(verdict.features(), [ids::XSAVE, ids::AVX]);
        assert_eq!(verdict.reasons(), ["features it cannot give: xsave avx"]);
    }

    #[test]
    fn a_replaced_host_that_cannot_keep_its_vm() {
        let f = fleet(
            vec![host("a", &["fpu", "avx", "xsave"]), host("b", &["fpu", "avx", "xsave"])],
            vec![vm("v", &["fpu", "avx", "xsave"], Some("a")), vm("w", &["fpu"], Some("a"))],
        );
        let plan =
            plan(f, vec![Change::Replace("a".into(), host("ignored", &["fpu"]))], PlacementOptions::default()).unwrap();
        assert!(plan.strands());
        let v = vm_plan(&plan, "v");
        assert_eq!(
            v.strandings,
            [Stranding::CannotStay(Refusal {
                host: "a".into(),
                features: vec![ids::XSAVE, ids::AVX],
                reasons: vec!["features it cannot give: xsave avx".into()],
            })]
        );
        assert_eq!((v.reach, v.no_longer_reaches.as_slice()), ((2, 1), &["a".to_string()][..]));
        assert!(!vm_plan(&plan, "w").is_stranded());
        assert_eq!(plan.vms[0].name, "v", "stranded first");
        assert_eq!(plan.hosts, (vec!["a".to_string(), "b".into()], vec!["b".to_string(), "a".into()]));
    }

    #[test]
    fn removals_that_leave_a_vm_nowhere_to_go() {
        let hosts = vec![host("a", &["fpu", "avx", "xsave"]), host("b", &["fpu", "avx", "xsave"]), host("c", &["fpu"])];
        let vms = vec![vm("v", &["fpu", "avx", "xsave"], Some("a")), vm("u", &["fpu", "avx", "xsave"], None)];
        // b was v's only other host.
        let p = plan(fleet(hosts.clone(), vms.clone()), vec![Change::Remove("b".into())], PlacementOptions::default())
            .unwrap();
        assert_eq!(
            vm_plan(&p, "v").strandings,
            [Stranding::NowhereToGo { host_leaves: false, lost: vec!["b".into()] }]
        );
        assert!(!vm_plan(&p, "u").is_stranded(), "a still takes it");
        // v's own host leaves with b.
        let changes = vec![Change::Remove("a".into()), Change::Remove("b".into())];
        let p = plan(fleet(hosts.clone(), vms.clone()), changes, PlacementOptions::default()).unwrap();
        assert_eq!(vm_plan(&p, "v").strandings, [Stranding::NowhereToGo { host_leaves: true, lost: vec!["b".into()] }]);
        assert_eq!(
            vm_plan(&p, "u").strandings,
            [Stranding::NowhereToGo { host_leaves: false, lost: vec!["a".into(), "b".into()] }]
        );
        // Its own host leaving while another takes it strands nothing.
        let p = plan(fleet(hosts, vms), vec![Change::Remove("a".into())], PlacementOptions::default()).unwrap();
        assert!(!p.strands());
        assert_eq!(vm_plan(&p, "v").no_longer_reaches, ["a"]);
    }

    #[test]
    fn a_join_then_its_replacement_is_one_join() {
        let f = fleet(vec![host("a", &["fpu", "avx", "xsave"])], vec![vm("v", &["fpu", "avx", "xsave"], Some("a"))]);
        let changes =
            vec![Change::Add(host("x", &["fpu"])), Change::Replace("x".into(), host("x", &["fpu", "avx", "xsave"]))];
        let p = plan(f, changes, PlacementOptions::default()).unwrap();
        assert!(!p.strands(), "{:?}", p.vms);
        assert_eq!(vm_plan(&p, "v").newly_reaches, ["x"]);
        assert_eq!(p.hosts.1, ["a", "x"]);
        // A name already in the pool, or unknown.
        let f = fleet(vec![host("a", &["fpu"])], vec![]);
        assert_eq!(
            plan(f.clone(), vec![Change::Add(host("a", &["fpu"]))], PlacementOptions::default()).unwrap_err(),
            PlacementError::AlreadyInPool("a".into())
        );
        assert_eq!(
            plan(f.clone(), vec![Change::Remove("z".into())], PlacementOptions::default()).unwrap_err(),
            PlacementError::NoSuchHost { change: "remove", host: "z".into() }
        );
        assert_eq!(
            plan(f, vec![Change::Remove("a".into())], PlacementOptions::default()).unwrap_err(),
            PlacementError::EmptyAfter
        );
    }

    #[test]
    fn mxcsr_masks_refuse_only_when_strict() {
        let mut a = host("a", &["fpu"]);
        a.mxcsr_mask = Some(0xffff);
        let mut b = host("b", &["fpu"]);
        b.mxcsr_mask = Some(0xffbf);
        let f = fleet(vec![a, b], vec![vm("v", &["fpu"], Some("a"))]);
        assert!(f.place(PlacementOptions::default()).accepts(1, 0));
        let strict = f.place(PlacementOptions { strict: true, cross_vendor: false });
        assert!(!strict.accepts(1, 0));
        assert_eq!(strict.verdict(0, 1).reasons(), ["--strict: MXCSR bits 0x40 fault here"]);
    }

    #[test]
    fn pools_levelled_per_class_equal_pools_levelled_per_host() {
        let hosts = vec![
            host("a", &["fpu", "avx", "xsave", "md-clear"]),
            host("b", &["fpu", "avx", "xsave", "md-clear"]),
            host("c", &["fpu", "xsave"]),
        ];
        let p =
            plan(fleet(hosts.clone(), vec![]), vec![Change::Remove("c".into())], PlacementOptions::default()).unwrap();
        let options = LevelOptions { cross_vendor: false, explain: true };
        let (all, after) = (level_pool(&hosts, options).unwrap(), level_pool(&hosts[..2], options).unwrap());
        assert_eq!(p.after.default.policy, after.default.policy);
        assert_eq!(p.default.featuresets.0, all.default.policy.featureset().to_xen_string());
        assert_eq!(p.default.gained, [(ids::AVX, Some("lacked by c".to_string()))]);
        // Causes name a class by its first host.
        let p =
            plan(fleet(hosts, vec![]), vec![Change::Add(host("d", &["fpu"]))], PlacementOptions::default()).unwrap();
        let lost: Vec<_> = p.default.lost.iter().map(|(id, cause)| (feature_name(*id), cause.clone())).collect();
        assert_eq!(lost, [("xsave".to_string(), Some("lacked by d".to_string()))]);
        assert!(p.acceptance.lost.iter().all(|(_, c)| c.is_some()));
    }
}
