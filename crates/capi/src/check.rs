//! Migration checks (every mismatch and warning, by name) and the libvirt-style comparison of a
//! host's policy with a guest's.

use std::ffi::c_char;

use policy::{check_migration, feature_name, CpuPolicy, MigrationCheck, Mismatch, PoolHost};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::host::cpupolicy_host;
use crate::policy::cpupolicy_policy;
use crate::pool::{cpupolicy_guest_kind, guest_kind, pool_host};

/// An opaque migration-check handle: the mismatches (why the VM may not go) and warnings (what
/// will differ for it). From `cpupolicy_check_migration` or `cpupolicy_check_policy`; release
/// with `cpupolicy_check_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_check = Handle<MigrationCheck>;

impl Tagged for MigrationCheck {
    const TAG: Tag = Tag::Check;
    const NAME: &'static str = "check";
}

/// Which list of a check: one of the `CPUPOLICY_CHECK_*` list values.
#[allow(non_camel_case_types)]
pub type cpupolicy_check_list = u32;
/// Why the VM may not migrate: empty exactly when it may.
pub const CPUPOLICY_CHECK_MISMATCHES: cpupolicy_check_list = 0;
/// What will differ for the guest even though it may migrate.
pub const CPUPOLICY_CHECK_WARNINGS: cpupolicy_check_list = 1;

/// Which text of a check item, for `cpupolicy_check_item`: one of the `CPUPOLICY_ITEM_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_check_part = u32;
/// A stable kind name: `vendor`, `feature` or a limit's name (`max-phys-addr-bits`, …) for
/// mismatches; `host-reflected`, `cleared-by-destination` or `guest-not-told` for warnings.
pub const CPUPOLICY_ITEM_KIND: cpupolicy_check_part = 0;
/// The message for people (`feature avx: the VM saw it, the host cannot give it`).
pub const CPUPOLICY_ITEM_MESSAGE: cpupolicy_check_part = 1;
/// The feature's Xen name (`avx`), or the empty string when the item is not about a feature.
pub const CPUPOLICY_ITEM_FEATURE: cpupolicy_check_part = 2;

/// The result of `cpupolicy_compare`: one of the `CPUPOLICY_COMPARE_*` values, numbered as
/// libvirt's `virCPUCompareResult`.
#[allow(non_camel_case_types)]
pub type cpupolicy_compare_result = u32;
/// The guest may not run on the host.
pub const CPUPOLICY_COMPARE_INCOMPATIBLE: cpupolicy_compare_result = 0;
/// The two policies are identical.
pub const CPUPOLICY_COMPARE_IDENTICAL: cpupolicy_compare_result = 1;
/// The host offers everything the guest saw, and possibly more.
pub const CPUPOLICY_COMPARE_SUPERSET: cpupolicy_compare_result = 2;

/// Checks whether a VM that booted with policy `vm` may run on `host` as a guest of `kind`
/// (`CPUPOLICY_GUEST_*`), against the host's max policy for that kind: every mismatch (vendor,
/// each feature the host cannot give, each limit above the host's) and the warnings, in a new
/// check in `*out` owned by the caller. A host without the kind's policies gets
/// `CPUPOLICY_NOT_AVAILABLE`. Thread-safe for readers.
///
/// # Safety
/// `vm` a policy handle; `host` a host handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_migration(
    vm: *const cpupolicy_policy,
    host: *const cpupolicy_host,
    kind: cpupolicy_guest_kind,
    out: *mut *mut cpupolicy_check,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (vm, host) = unsafe { (borrow(vm, "vm")?, borrow(host, "host")?) };
        let destination = pool_host("host", host, guest_kind(kind)?)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, check_migration(vm, &destination)) }
    })
}

/// Checks whether a VM that booted with policy `vm` may run where `destination` is the most a
/// guest may have (e.g. a pool's acceptance policy, or one host's max policy), in a new check in
/// `*out` owned by the caller. Thread-safe for readers.
///
/// # Safety
/// `vm`, `destination` policy handles; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_policy(
    vm: *const cpupolicy_policy,
    destination: *const cpupolicy_policy,
    out: *mut *mut cpupolicy_check,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (vm, destination) = unsafe { (borrow(vm, "vm")?, borrow(destination, "destination")?) };
        let destination = PoolHost::from_single("destination", destination.clone());
        // SAFETY: per this function's contract.
        unsafe { put(out, check_migration(vm, &destination)) }
    })
}

/// Releases a check. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `check` NULL or a check handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_free(check: *mut cpupolicy_check) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(check, "check") })
}

/// Whether the VM may migrate (no mismatches) into `*compatible`. Thread-safe for readers.
///
/// # Safety
/// `check` a check handle; `compatible` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_compatible(
    check: *const cpupolicy_check,
    compatible: *mut bool,
) -> cpupolicy_status {
    guard(|| {
        require(compatible, "compatible")?;
        // SAFETY: per this function's contract.
        let check = unsafe { borrow(check, "check")? };
        // SAFETY: per this function's contract.
        unsafe { put_value(compatible, check.is_compatible(), "compatible") }
    })
}

/// The number of items in one list (`CPUPOLICY_CHECK_MISMATCHES` or `_WARNINGS`) into
/// `*count`. Thread-safe for readers.
///
/// # Safety
/// `check` a check handle; `count` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_count(
    check: *const cpupolicy_check,
    list: cpupolicy_check_list,
    count: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        require(count, "count")?;
        // SAFETY: per this function's contract.
        let check = unsafe { borrow(check, "check")? };
        let n = match list {
            CPUPOLICY_CHECK_MISMATCHES => check.mismatches.len(),
            CPUPOLICY_CHECK_WARNINGS => check.warnings.len(),
            other => return Err(out_of_range("check list", other)),
        };
        // SAFETY: per this function's contract.
        unsafe { put_value(count, n, "count") }
    })
}

/// One text (`CPUPOLICY_ITEM_KIND`, `_MESSAGE` or `_FEATURE`) of item `index` of a list, as a
/// NUL-terminated string with the size-query convention. An index at or beyond the list's count
/// gets `CPUPOLICY_INVALID_ARGUMENT`. Thread-safe for readers.
///
/// # Safety
/// `check` a check handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_item(
    check: *const cpupolicy_check,
    list: cpupolicy_check_list,
    index: usize,
    part: cpupolicy_check_part,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(check, "check", buffer, capacity, needed, |check| {
            let beyond = |count: usize| {
                Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("index {index} is beyond the list's {count} items"))
            };
            let (kind, message, feature) = match list {
                CPUPOLICY_CHECK_MISMATCHES => {
                    let item = check.mismatches.get(index).ok_or_else(|| beyond(check.mismatches.len()))?;
                    let feature = match item {
                        Mismatch::Feature(id) => feature_name(*id),
                        _ => String::new(),
                    };
                    (item.kind(), item.to_string(), feature)
                }
                CPUPOLICY_CHECK_WARNINGS => {
                    let item = check.warnings.get(index).ok_or_else(|| beyond(check.warnings.len()))?;
                    (item.kind(), item.to_string(), feature_name(item.feature()))
                }
                other => return Err(out_of_range("check list", other)),
            };
            match part {
                CPUPOLICY_ITEM_KIND => Ok(kind.to_string()),
                CPUPOLICY_ITEM_MESSAGE => Ok(message),
                CPUPOLICY_ITEM_FEATURE => Ok(feature),
                other => Err(out_of_range("item part", other)),
            }
        })
    }
}

/// The whole check as text: one `mismatch: …` line per mismatch, then one `warning: …` line per
/// warning; the empty string when there is neither. NUL-terminated, size-query convention.
/// Thread-safe for readers.
///
/// # Safety
/// `check` a check handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_check_to_text(
    check: *const cpupolicy_check,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(check, "check", buffer, capacity, needed, |check| {
            let mismatches = check.mismatches.iter().map(|m| format!("mismatch: {m}\n"));
            let warnings = check.warnings.iter().map(|w| format!("warning: {w}\n"));
            Ok(mismatches.chain(warnings).collect())
        })
    }
}

/// Compares a host's policy with a guest's, as libvirt's CPU comparison does:
/// `CPUPOLICY_COMPARE_IDENTICAL` when they hold the same leaves and MSRs;
/// `CPUPOLICY_COMPARE_SUPERSET` when the guest may run on the host (the migration check, with
/// `host` as the most the host can give, finds no mismatch); `CPUPOLICY_COMPARE_INCOMPATIBLE`
/// otherwise (`cpupolicy_check_policy` tells why). Thread-safe for readers.
///
/// # Safety
/// `host`, `guest` policy handles; `result` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_compare(
    host: *const cpupolicy_policy,
    guest: *const cpupolicy_policy,
    result: *mut cpupolicy_compare_result,
) -> cpupolicy_status {
    guard(|| {
        require(result, "result")?;
        // SAFETY: per this function's contract.
        let (host, guest): (&CpuPolicy, &CpuPolicy) = unsafe { (borrow(host, "host")?, borrow(guest, "guest")?) };
        let compared = if host == guest {
            CPUPOLICY_COMPARE_IDENTICAL
        } else if check_migration(guest, &PoolHost::from_single("host", host.clone())).is_compatible() {
            CPUPOLICY_COMPARE_SUPERSET
        } else {
            CPUPOLICY_COMPARE_INCOMPATIBLE
        };
        // SAFETY: per this function's contract.
        unsafe { put_value(result, compared, "result") }
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::null_mut;

    use featureset::Featureset;
    use policy::{CpuidKey, Registers};

    use super::*;
    use crate::ffi::testing::{last_error, text};
    use crate::policy::cpupolicy_policy_free;

    fn intel(features: &[&str]) -> *mut cpupolicy_policy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        p.set_featureset(&Featureset::from_names(features.iter().copied()).unwrap()).unwrap();
        p.into_handle()
    }

    #[test]
    fn compare_follows_the_migration_check() {
        let (big, small) = (intel(&["fpu", "avx", "xsave"]), intel(&["fpu", "xsave"]));
        let mut result = 99;
        // SAFETY: live policy handles; `result` a valid place.
        unsafe {
            assert_eq!(cpupolicy_compare(big, big, &mut result), CPUPOLICY_OK);
            assert_eq!(result, CPUPOLICY_COMPARE_IDENTICAL);
            assert_eq!(cpupolicy_compare(big, small, &mut result), CPUPOLICY_OK);
            assert_eq!(result, CPUPOLICY_COMPARE_SUPERSET);
            assert_eq!(cpupolicy_compare(small, big, &mut result), CPUPOLICY_OK);
            assert_eq!(result, CPUPOLICY_COMPARE_INCOMPATIBLE);
            assert_eq!(cpupolicy_compare(small, big, null_mut()), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(last_error(), "result is NULL");
        }
        let mut check = null_mut();
        // SAFETY: live policy handles; `check` a valid place.
        assert_eq!(unsafe { cpupolicy_check_policy(big, small, &mut check) }, CPUPOLICY_OK);
        let item = |list, index, part| {
            // SAFETY: `check` is a live check handle; the closure passes the harness's buffers.
            text(|b, c, n| unsafe { cpupolicy_check_item(check, list, index, part, b, c, n) })
        };
        assert_eq!(item(CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_FEATURE).as_deref(), Ok("avx"));
        assert_eq!(item(CPUPOLICY_CHECK_MISMATCHES, 0, CPUPOLICY_ITEM_KIND).as_deref(), Ok("feature"));
        assert_eq!(item(CPUPOLICY_CHECK_MISMATCHES, 1, CPUPOLICY_ITEM_KIND), Err(CPUPOLICY_INVALID_ARGUMENT));
        assert_eq!(last_error(), "index 1 is beyond the list's 1 items");
        assert_eq!(item(CPUPOLICY_CHECK_WARNINGS, 0, CPUPOLICY_ITEM_KIND), Err(CPUPOLICY_INVALID_ARGUMENT));
        assert_eq!(item(2, 0, CPUPOLICY_ITEM_KIND), Err(CPUPOLICY_INVALID_ARGUMENT));
        assert_eq!(item(CPUPOLICY_CHECK_MISMATCHES, 0, 3), Err(CPUPOLICY_INVALID_ARGUMENT));
        // SAFETY: a policy handle where a check is expected: the tag tells.
        assert_eq!(unsafe { cpupolicy_check_free(big.cast()) }, CPUPOLICY_WRONG_HANDLE);
        // SAFETY: live handles, not used afterwards.
        unsafe { (cpupolicy_check_free(check), cpupolicy_policy_free(big), cpupolicy_policy_free(small)) };
    }
}
