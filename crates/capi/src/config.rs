//! Applying a levelled pool with the tools people run: xl's `cpuid=` and libvirt's
//! `<cpu mode='host-passthrough'>`, both ways.

use std::ffi::c_char;

use featureset::XenRelease;
use policy::xl::{libvirt_for_pool, xl_for_pool, xl_release, XlCpuid};
use policy::{CpuPolicy, XenVersion};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::host::cpupolicy_host;
use crate::policy::cpupolicy_policy;
use crate::pool::{cpupolicy_guest_kind, cpupolicy_pool, guest_kind, pool_host, Pool};

/// Which configuration `cpupolicy_pool_config` writes: one of the `CPUPOLICY_CONFIG_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_config_form = u32;
/// xl's `cpuid = …` line (name form, or the list form where it loses less).
pub const CPUPOLICY_CONFIG_XL: cpupolicy_config_form = 0;
/// libvirt's `<cpu mode='host-passthrough'>` element (libxl driver).
pub const CPUPOLICY_CONFIG_LIBVIRT_DOMAIN: cpupolicy_config_form = 1;

/// The release `xen_version` names (NULL: the newest known), for libxl's names.
fn release_of(xen_version: *const c_char) -> Result<XenRelease, Failure> {
    // SAFETY: the callers' contracts make `xen_version` NULL or a NUL-terminated string.
    let Some(text) = (unsafe { opt_c_str(xen_version, "xen_version")? }) else { return Ok(XenRelease::V4_22) };
    XenVersion::parse(text).and_then(|v| xl_release(&v)).ok_or_else(|| {
        Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("xen_version '{text}' is not a Xen release from 4.14 on"))
    })
}

/// The configuration text and its notes for a pool.
fn plan(pool: &Pool, release: XenRelease, form: cpupolicy_config_form) -> Result<(String, Vec<String>), Failure> {
    let defaults: Vec<(&str, &CpuPolicy)> = pool.hosts().iter().map(|h| (h.name.as_str(), &h.default)).collect();
    let default = &pool.levelled().default.policy;
    match form {
        CPUPOLICY_CONFIG_XL => {
            let plan = xl_for_pool(default, &defaults, release);
            Ok((format!("{}\n", plan.line), plan.notes(release)))
        }
        CPUPOLICY_CONFIG_LIBVIRT_DOMAIN => {
            let plan = libvirt_for_pool(default, &defaults, release);
            let notes = plan.notes(release, pool.kind());
            Ok((plan.xml, notes))
        }
        other => Err(out_of_range("config form", other)),
    }
}

/// The configuration that gives the pool default's features on every host of the pool, as
/// `cpupolicy level --format xl|libvirt-domain` prints it: `form` is `CPUPOLICY_CONFIG_XL` or
/// `CPUPOLICY_CONFIG_LIBVIRT_DOMAIN`, `xen_version` the release whose libxl reads it (NULL: the
/// newest known). What it cannot express is in `cpupolicy_pool_config_notes`. NUL-terminated,
/// size-query convention. Thread-safe for readers.
///
/// # Safety
/// `pool` a pool handle; `xen_version` NULL or a NUL-terminated string; `buffer` NULL or valid
/// for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_config(
    pool: *const cpupolicy_pool,
    form: cpupolicy_config_form,
    xen_version: *const c_char,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(pool, "pool", buffer, capacity, needed, |pool| Ok(plan(pool, release_of(xen_version)?, form)?.0)) }
}

/// What `cpupolicy_pool_config` of the same arguments cannot express, one line each (features
/// with the hosts that differ, limits it cannot lower, with the paused-domain route); empty
/// when nothing. NUL-terminated, size-query convention. Thread-safe for readers.
///
/// # Safety
/// As for `cpupolicy_pool_config`.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_config_notes(
    pool: *const cpupolicy_pool,
    form: cpupolicy_config_form,
    xen_version: *const c_char,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(pool, "pool", buffer, capacity, needed, |pool| {
            let notes = plan(pool, release_of(xen_version)?, form)?.1;
            Ok(notes.iter().map(|n| format!("{n}\n")).collect())
        })
    }
}

/// The policy a VM gets on `host` from an xl configuration's `cpuid=` setting (`config`: the
/// whole `.cfg` text, or the value alone, either form), as libxl of `xen_version` (NULL: the
/// newest) applies it to the host's default policy for `kind` and Xen clamps it to the host's
/// max: a new policy in `*out`, owned by the caller. An unknown name or a malformed value gets
/// `CPUPOLICY_PARSE_ERROR`, the message naming the token. Thread-safe for readers of `host`.
///
/// # Safety
/// `host` a host handle; `xen_version` NULL or a NUL-terminated string; `config` a
/// NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xl_apply(
    host: *const cpupolicy_host,
    kind: cpupolicy_guest_kind,
    xen_version: *const c_char,
    config: *const c_char,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (bundle, config) = unsafe { (borrow(host, "host")?, c_str(config, "config")?) };
        let release = release_of(xen_version)?;
        let host = pool_host("host", bundle, guest_kind(kind)?)?;
        let cpuid = XlCpuid::parse(config, release).map_err(|e| Failure::new(CPUPOLICY_PARSE_ERROR, e.to_string()))?;
        let policy = cpuid.apply(&host.default, host.reflected_source(), &host.max);
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}
