//! Talking to Xen: system featuresets and policies, a domain's policy (get and set).
//!
//! The glue between the hypercall crate (Xen's ABI) and the policy crate (the model) is the
//! `cpupolicy-xen` crate's, shared with the command line.

use std::ffi::c_char;

use hypercall::{Error, XenHandle};
use xen::XenError;

use crate::featureset::cpupolicy_featureset;
use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::host::{cpupolicy_host, cpupolicy_system_policy, system_policy};
use crate::policy::cpupolicy_policy;

/// An opaque connection to Xen through the privcmd driver, from `cpupolicy_xen_open`; release
/// with `cpupolicy_xen_free`. Unlike other handles, one `cpupolicy_xen` may be used by several
/// threads at once (each call has its own hypercall buffers).
#[allow(non_camel_case_types)]
pub type cpupolicy_xen = Handle<XenHandle>;

impl Tagged for XenHandle {
    const TAG: Tag = Tag::Xen;
    const NAME: &'static str = "xen handle";
}

/// The status that says what to do about a failure talking to Xen; the message is the
/// hypercall crate's, which names the operation, the errno and, for a refused policy, the leaf,
/// sub-leaf or MSR (or says which policy from Xen could not be read).
fn xen_failure(error: impl Into<XenError>) -> Failure {
    let error = error.into();
    let status = match &error {
        XenError::Hypercall(error) => hypercall_status(error),
        XenError::Policy { .. } | XenError::DomainPolicy { .. } => CPUPOLICY_XEN_ERROR,
    };
    match &error {
        XenError::Hypercall(Error::SetPolicy { rejection, .. }) => {
            Failure::rejected(error.to_string(), rejection_of(rejection))
        }
        _ => Failure::new(status, error.to_string()),
    }
}

/// Xen's refusal as C sees it: the errno and the entry Xen named in `err_leaf`/`err_subleaf`/
/// `err_msr`.
fn rejection_of(rejection: &hypercall::PolicyRejection) -> cpupolicy_rejection {
    use hypercall::PolicyRejection as R;
    const NONE: u32 = CPUPOLICY_REJECTION_NONE;
    let (leaf, subleaf, msr) = match rejection {
        R::LeafOutOfRange { leaf, subleaf } | R::LeafExceedsMax { leaf, subleaf } => {
            (*leaf, subleaf.unwrap_or(NONE), NONE)
        }
        R::MsrOutOfRange { index }
        | R::MsrFlagsNotZero { index }
        | R::ValueTooWide { index }
        | R::MsrExceedsMax { index } => (NONE, NONE, *index),
        R::Other { err, .. } => *err,
        _ => (NONE, NONE, NONE),
    };
    cpupolicy_rejection { error_number: rejection.errno().0, leaf, subleaf, msr }
}

fn hypercall_status(error: &Error) -> cpupolicy_status {
    match error {
        Error::NoPrivcmd { .. } => CPUPOLICY_NO_PRIVCMD,
        Error::PermissionDenied { .. } | Error::NotPermitted { .. } => CPUPOLICY_PERMISSION_DENIED,
        Error::NotAvailable { .. } => CPUPOLICY_NOT_AVAILABLE,
        Error::NoSuchDomain { .. } => CPUPOLICY_NO_SUCH_DOMAIN,
        Error::SetPolicy { .. } => CPUPOLICY_POLICY_REJECTED,
        _ => CPUPOLICY_XEN_ERROR,
    }
}

/// Opens `/dev/xen/privcmd` (or `/proc/xen/privcmd`) into a new handle in `*out`, owned by the
/// caller. Outside a Xen domain, or without the privcmd driver, `CPUPOLICY_NO_PRIVCMD` (the
/// message says which devices were tried and what to load); without the right to open it,
/// `CPUPOLICY_PERMISSION_DENIED`. Nothing is sent to Xen yet. Thread-safe.
///
/// # Safety
/// `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_open(out: *mut *mut cpupolicy_xen) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        let handle = XenHandle::open().map_err(xen_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, handle) }
    })
}

/// Closes a Xen handle. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `xen` NULL or a Xen handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_free(xen: *mut cpupolicy_xen) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(xen, "xen") })
}

/// The hypervisor's version (`4.20.3`, `4.21-unstable`), NUL-terminated, size-query convention.
/// Thread-safe.
///
/// # Safety
/// `xen` a Xen handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_version(
    xen: *const cpupolicy_xen,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(xen, "xen", buffer, capacity, needed, |handle| {
            Ok(handle.xen_version().map_err(xen_failure)?.to_string())
        })
    }
}

/// All six system policies of this host (those Xen does not have, such as HVM ones without HVM
/// support, absent), with the Xen and interface versions and the levelling capabilities (what
/// leaks through to PV guests), in a new host in `*out` owned by the caller. Thread-safe.
///
/// # Safety
/// `xen` a Xen handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_host(
    xen: *const cpupolicy_xen,
    out: *mut *mut cpupolicy_host,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let handle = unsafe { borrow(xen, "xen")? };
        let bundle = xen::host_bundle(handle).map_err(xen_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, bundle) }
    })
}

/// One system featureset (`CPUPOLICY_SYSTEM_*`, mapped to the featureset sysctl's own
/// numbering) as Xen reports it, in a new featureset in `*out` owned by the caller;
/// `CPUPOLICY_NOT_AVAILABLE` where this Xen has none (PV/HVM max before Xen 4.18 without the
/// backports, HVM ones without HVM support). Thread-safe.
///
/// # Safety
/// `xen` a Xen handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_featureset(
    xen: *const cpupolicy_xen,
    which: cpupolicy_system_policy,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let handle = unsafe { borrow(xen, "xen")? };
        let which = system_policy(which)?;
        let set = handle.system_featureset(which).map_err(xen_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, set) }
    })
}

/// The CPU policy of domain `domid`, in a new policy in `*out` owned by the caller;
/// `CPUPOLICY_NO_SUCH_DOMAIN` when there is no such domain. Thread-safe.
///
/// # Safety
/// `xen` a Xen handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_domain_policy(
    xen: *const cpupolicy_xen,
    domid: u16,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let handle = unsafe { borrow(xen, "xen")? };
        let policy = xen::domain_policy(handle, domid).map_err(xen_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

/// Sets the CPU policy of domain `domid`, which must not have run yet, serialised in the running
/// Xen's format. Entries that format cannot carry are not sent: their count goes to
/// `*nr_dropped` (which may be NULL; `cpupolicy_policy_xen_dropped` lists them). A refusal gets
/// `CPUPOLICY_POLICY_REJECTED`, the message naming the leaf, sub-leaf or MSR Xen objected to.
/// Xen silently clears features the host cannot give: read the policy back to see what was
/// applied. Thread-safe.
///
/// # Safety
/// `xen` a Xen handle; `policy` a policy handle; `nr_dropped` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_xen_set_domain_policy(
    xen: *const cpupolicy_xen,
    domid: u16,
    policy: *const cpupolicy_policy,
    nr_dropped: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (handle, policy) = unsafe { (borrow(xen, "xen")?, borrow(policy, "policy")?) };
        let dropped = xen::set_domain_policy(handle, domid, policy).map_err(xen_failure)?;
        if !nr_dropped.is_null() {
            // SAFETY: non-NULL and valid for a write per the contract.
            unsafe { nr_dropped.write(dropped.len()) };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::null_mut;

    use hypercall::PolicyRejection;

    use super::*;
    use crate::ffi::testing::last_error;

    #[test]
    fn failures_say_what_to_do_and_name_the_entry() {
        let none = xen_failure(Error::NoPrivcmd { tried: vec!["/dev/xen/privcmd".into()] });
        assert_eq!(none.status, CPUPOLICY_NO_PRIVCMD);
        assert!(none.message.contains("modprobe xen-privcmd"), "{}", none.message);
        let rejection = PolicyRejection::LeafOutOfRange { leaf: 7, subleaf: Some(99) };
        let refused = xen_failure(Error::SetPolicy { domid: 3, rejection });
        assert_eq!(refused.status, CPUPOLICY_POLICY_REJECTED);
        assert!(refused.message.contains("domain 3") && refused.message.contains("leaf 0x7 sub-leaf 0x63"));
        assert_eq!(refused.rejection, Some(cpupolicy_rejection { error_number: 34, leaf: 7, subleaf: 99, msr: !0 }));
        let msr = xen_failure(Error::SetPolicy { domid: 3, rejection: PolicyRejection::ValueTooWide { index: 0xce } });
        assert_eq!(msr.rejection, Some(cpupolicy_rejection { error_number: 75, leaf: !0, subleaf: !0, msr: 0xce }));
        let gone = xen_failure(Error::NoSuchDomain { operation: hypercall::Operation::DomainPolicy(9), domid: 9 });
        assert_eq!(gone.status, CPUPOLICY_NO_SUCH_DOMAIN);
    }

    #[test]
    fn opening_reports_null_and_a_missing_privcmd() {
        // SAFETY: NULL out is reported before anything is opened.
        assert_eq!(unsafe { cpupolicy_xen_open(null_mut()) }, CPUPOLICY_INVALID_ARGUMENT);
        if ["/dev/xen/privcmd", "/proc/xen/privcmd"].iter().any(|p| std::path::Path::new(p).exists()) {
            return; // in a Xen domain: the real-Xen harness covers it
        }
        let mut xen = std::ptr::dangling_mut::<cpupolicy_xen>();
        // SAFETY: `xen` is a valid place.
        assert_eq!(unsafe { cpupolicy_xen_open(&mut xen) }, CPUPOLICY_NO_PRIVCMD);
        assert!(last_error().starts_with("no Xen privcmd device (tried /dev/xen/privcmd"), "{}", last_error());
        assert_eq!(xen, std::ptr::dangling_mut::<cpupolicy_xen>());
    }
}
