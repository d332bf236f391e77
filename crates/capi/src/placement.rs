//! Fleets: which VM may run on which host (`cpupolicy_placement`), and what a change to the
//! pool would strand (`cpupolicy_plan`).

use std::ffi::c_char;

use featureset::GuestKind;
use policy::{plan, Change, CpuPolicy, Fleet, FleetVm, PlacementError, PlacementOptions, PoolHost};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::host::cpupolicy_host;
use crate::policy::cpupolicy_policy;
use crate::pool::{cpupolicy_guest_kind, guest_kind, level_failure, pool_host};

/// Options of `cpupolicy_placement` and `cpupolicy_plan`: an OR of the `CPUPOLICY_PLACEMENT_*`
/// bits.
#[allow(non_camel_case_types)]
pub type cpupolicy_placement_flags = u32;
/// Count what the guest would see change or leak (host-reflected differences, PV leak-through,
/// MXCSR bits that fault) as the host refusing the VM, as `cpupolicy check --strict`.
pub const CPUPOLICY_PLACEMENT_STRICT: cpupolicy_placement_flags = 1 << 0;
/// (`cpupolicy_plan`) Level hosts of different CPU vendors anyway.
pub const CPUPOLICY_PLACEMENT_CROSS_VENDOR: cpupolicy_placement_flags = 1 << 1;

/// The form of a placement or plan: one of the `CPUPOLICY_REPORT_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_report_form = u32;
/// The JSON document (`cpupolicy-placement` or `cpupolicy-plan`), as the CLI's `--format json`.
pub const CPUPOLICY_REPORT_JSON: cpupolicy_report_form = 0;
/// Text for people, as the CLI prints it by default.
pub const CPUPOLICY_REPORT_TEXT: cpupolicy_report_form = 1;
/// (`cpupolicy_placement`) The matrix of VM classes by host classes.
pub const CPUPOLICY_REPORT_MATRIX: cpupolicy_report_form = 2;

/// What a `cpupolicy_change` does: one of the `CPUPOLICY_CHANGE_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_change_type = u32;
/// A host joins: `host`, named `name`.
pub const CPUPOLICY_CHANGE_ADD: cpupolicy_change_type = 0;
/// The host named `name` leaves (`host` unused).
pub const CPUPOLICY_CHANGE_REMOVE: cpupolicy_change_type = 1;
/// The host named `name` is replaced by `host` (a bundle fetched after a microcode or Xen
/// update).
pub const CPUPOLICY_CHANGE_REPLACE: cpupolicy_change_type = 2;

/// One change to a pool, for `cpupolicy_plan`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cpupolicy_change {
    /// `CPUPOLICY_CHANGE_ADD`, `_REMOVE` or `_REPLACE`.
    pub action: cpupolicy_change_type,
    /// The host's name: the one joining, leaving or replaced.
    pub name: *const c_char,
    /// The joining host's policies, or the replacement's; NULL for a removal.
    pub host: *const cpupolicy_host,
}

fn placement_failure(error: PlacementError) -> Failure {
    match error {
        PlacementError::Level { error, .. } => level_failure(error),
        other => Failure::new(CPUPOLICY_INVALID_ARGUMENT, other.to_string()),
    }
}

fn flags_of(flags: cpupolicy_placement_flags) -> Result<PlacementOptions, Failure> {
    let known = CPUPOLICY_PLACEMENT_STRICT | CPUPOLICY_PLACEMENT_CROSS_VENDOR;
    if flags & !known != 0 {
        return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("unknown placement flags {:#x}", flags & !known)));
    }
    Ok(PlacementOptions {
        strict: flags & CPUPOLICY_PLACEMENT_STRICT != 0,
        cross_vendor: flags & CPUPOLICY_PLACEMENT_CROSS_VENDOR != 0,
    })
}

/// The fleet of the arguments' hosts and VMs.
///
/// # Safety
/// As `cpupolicy_placement`'s contract for these arguments.
#[allow(clippy::too_many_arguments)]
unsafe fn fleet_of(
    hosts: *const *const cpupolicy_host,
    host_names: *const *const c_char,
    nr_hosts: usize,
    vms: *const *const cpupolicy_policy,
    vm_names: *const *const c_char,
    vm_hosts: *const *const c_char,
    nr_vms: usize,
    kind: GuestKind,
) -> Result<Fleet, Failure> {
    // SAFETY: per the caller's contract.
    let handles = unsafe { c_slice(hosts, nr_hosts, MAX_POOL_HOSTS, "hosts")? };
    // SAFETY: per the caller's contract.
    let names = unsafe { c_slice(host_names, nr_hosts, MAX_POOL_HOSTS, "host_names")? };
    if handles.is_empty() {
        return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, "no hosts"));
    }
    let mut fleet = Fleet::new();
    for (i, &handle) in handles.iter().enumerate() {
        // SAFETY: per the caller's contract, each element is a host handle (or NULL, reported).
        let bundle = unsafe { borrow(handle, &format!("hosts[{i}]"))? };
        // SAFETY: per the caller's contract.
        let name = unsafe { c_str(names[i], &format!("host_names[{i}]"))? };
        fleet.add_host(pool_host(name, bundle, kind)?).map_err(placement_failure)?;
    }
    // SAFETY: per the caller's contract.
    let policies = unsafe { c_slice(vms, nr_vms, MAX_POOL_HOSTS, "vms")? };
    // SAFETY: per the caller's contract.
    let vm_names = unsafe { c_slice(vm_names, nr_vms, MAX_POOL_HOSTS, "vm_names")? };
    let vm_hosts = if vm_hosts.is_null() {
        None
    } else {
        // SAFETY: non-NULL, and valid for `nr_vms` reads per the caller's contract.
        Some(unsafe { c_slice(vm_hosts, nr_vms, MAX_POOL_HOSTS, "vm_hosts")? })
    };
    for (i, &handle) in policies.iter().enumerate() {
        // SAFETY: per the caller's contract, each element is a policy handle (or NULL, reported).
        let policy: &CpuPolicy = unsafe { borrow(handle, &format!("vms[{i}]"))? };
        // SAFETY: per the caller's contract.
        let name = unsafe { c_str(vm_names[i], &format!("vm_names[{i}]"))? }.to_string();
        let host = match vm_hosts {
            // SAFETY: per the caller's contract, each element NULL or a string.
            Some(hosts) => unsafe { opt_c_str(hosts[i], &format!("vm_hosts[{i}]"))? }.map(str::to_string),
            None => None,
        };
        fleet.add_vm(FleetVm { name, policy: policy.clone(), host }).map_err(placement_failure)?;
    }
    Ok(fleet)
}

/// Which VM may run on which host of a fleet, as `cpupolicy placement` prints it: hosts and VMs
/// grouped into classes of identical policies, each VM class judged against each host class by
/// the migration check (`cpupolicy_check_migration`). `hosts[i]` is named `host_names[i]`
/// (names must differ); VM `j` booted with policy `vms[j]`, is named `vm_names[j]` and runs on
/// the host named `vm_hosts[j]` (`vm_hosts` may be NULL, and any element NULL, where unknown).
/// `flags` is an OR of `CPUPOLICY_PLACEMENT_*`; `form` a `CPUPOLICY_REPORT_*`. The text is
/// written NUL-terminated with the size-query convention (each call recomputes it). No hosts,
/// duplicate names or a VM naming an unknown host get `CPUPOLICY_INVALID_ARGUMENT`, naming it.
/// Thread-safe for readers of the handles.
///
/// # Safety
/// `hosts` and `host_names` valid for `nr_hosts` reads of host handles and NUL-terminated
/// strings; `vms` and `vm_names` for `nr_vms` reads of policy handles and strings (NULL when
/// `nr_vms` is 0); `vm_hosts` NULL or valid for `nr_vms` reads of NULL or strings; `buffer`
/// NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_placement(
    hosts: *const *const cpupolicy_host,
    host_names: *const *const c_char,
    nr_hosts: usize,
    vms: *const *const cpupolicy_policy,
    vm_names: *const *const c_char,
    vm_hosts: *const *const c_char,
    nr_vms: usize,
    kind: cpupolicy_guest_kind,
    flags: cpupolicy_placement_flags,
    form: cpupolicy_report_form,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        let kind = guest_kind(kind)?;
        let options = flags_of(flags)?;
        if form > CPUPOLICY_REPORT_MATRIX {
            return Err(out_of_range("report form", form));
        }
        // SAFETY: per this function's contract.
        let fleet = unsafe { fleet_of(hosts, host_names, nr_hosts, vms, vm_names, vm_hosts, nr_vms, kind)? };
        let placement = fleet.place(options);
        let text = match form {
            CPUPOLICY_REPORT_JSON => format!("{:#}\n", placement.to_json(kind)),
            CPUPOLICY_REPORT_TEXT => placement.to_text(kind),
            _ => placement.to_matrix(),
        };
        // SAFETY: per this function's contract.
        unsafe { output(text.as_bytes(), true, buffer.cast(), capacity, needed) }
    })
}

/// What `nr_changes` changes to a pool would do, as `cpupolicy plan` prints it: the pool
/// default and acceptance before and after (features gained and lost, by name and cause), and
/// per VM the hosts it no longer or newly reaches and how the change strands it (its replaced
/// host cannot keep it; no other host can take it; a joining or replaced host cannot take it).
/// Hosts and VMs as for `cpupolicy_placement`; `changes` apply in order. `*strands` (when not
/// NULL) is set to whether any VM would be stranded. `form` is `CPUPOLICY_REPORT_JSON` or
/// `_TEXT`. The text is written NUL-terminated with the size-query convention (each call
/// recomputes it). No hosts or changes, unknown or duplicate names, or a change that leaves
/// no host get `CPUPOLICY_INVALID_ARGUMENT`; hosts of different vendors (without
/// `CPUPOLICY_PLACEMENT_CROSS_VENDOR`) `CPUPOLICY_MIXED_VENDORS`. Thread-safe for readers.
///
/// # Safety
/// As `cpupolicy_placement`; `changes` valid for `nr_changes` reads, each `name` a
/// NUL-terminated string and each `host` NULL (removals) or a host handle; `strands` NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_plan(
    hosts: *const *const cpupolicy_host,
    host_names: *const *const c_char,
    nr_hosts: usize,
    vms: *const *const cpupolicy_policy,
    vm_names: *const *const c_char,
    vm_hosts: *const *const c_char,
    nr_vms: usize,
    changes: *const cpupolicy_change,
    nr_changes: usize,
    kind: cpupolicy_guest_kind,
    flags: cpupolicy_placement_flags,
    form: cpupolicy_report_form,
    strands: *mut bool,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        let kind = guest_kind(kind)?;
        let options = flags_of(flags)?;
        if form > CPUPOLICY_REPORT_TEXT {
            return Err(out_of_range("report form", form));
        }
        // SAFETY: per this function's contract.
        let fleet = unsafe { fleet_of(hosts, host_names, nr_hosts, vms, vm_names, vm_hosts, nr_vms, kind)? };
        // SAFETY: per this function's contract.
        let given = unsafe { c_slice(changes, nr_changes, MAX_POOL_HOSTS, "changes")? };
        if given.is_empty() {
            return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, "no changes"));
        }
        let mut list = Vec::with_capacity(given.len());
        for (i, change) in given.iter().enumerate() {
            // SAFETY: per this function's contract.
            let name = unsafe { c_str(change.name, &format!("changes[{i}].name"))? }.to_string();
            let host = |name: &str| -> Result<PoolHost, Failure> {
                // SAFETY: per this function's contract, a host handle (or NULL, reported).
                let bundle = unsafe { borrow(change.host, &format!("changes[{i}].host"))? };
                pool_host(name, bundle, kind)
            };
            list.push(match change.action {
                CPUPOLICY_CHANGE_ADD => Change::Add(host(&name)?),
                CPUPOLICY_CHANGE_REMOVE => Change::Remove(name),
                CPUPOLICY_CHANGE_REPLACE => Change::Replace(name.clone(), host(&name)?),
                other => return Err(out_of_range(&format!("changes[{i}].action"), other)),
            });
        }
        let plan = plan(fleet, list, options).map_err(placement_failure)?;
        let text = match form {
            CPUPOLICY_REPORT_JSON => format!(
                "{:#}\n",
                plan.to_json(kind).map_err(|e| Failure::new(CPUPOLICY_INTERNAL_ERROR, format!("policy JSON: {e}")))?
            ),
            _ => plan.to_text(kind),
        };
        // SAFETY: per this function's contract.
        unsafe { output(text.as_bytes(), true, buffer.cast(), capacity, needed)? };
        if !strands.is_null() {
            // SAFETY: non-NULL, valid for a write per this function's contract.
            unsafe { put_value(strands, plan.strands(), "strands")? };
        }
        Ok(())
    })
}
