//! Host bundles: the system policies of one host (from JSON, `xen-cpuid -p` text, Xen, or
//! derived from a raw CPU dump), and their export.

use std::ffi::c_char;

use policy::{
    derive_system_policies, CpuPolicy, DeriveOptions, Document, HostBundle, HvmMode, InputFormat, SectionName,
    SystemPolicy, XenCpuidReport,
};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::policy::{cpupolicy_policy, import_failure};

/// An opaque host handle: the system policies of one host (each present or not) with the Xen
/// and interface versions they came from. Create with `cpupolicy_host_parse`, `_new`,
/// `cpupolicy_xen_host` or `cpupolicy_derive`; release with `cpupolicy_host_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_host = Handle<HostBundle>;

impl Tagged for HostBundle {
    const TAG: Tag = Tag::Host;
    const NAME: &'static str = "host";
}

/// One of Xen's six system policies: one of the `CPUPOLICY_SYSTEM_*` values, numbered as
/// `XEN_SYSCTL_get_cpu_policy` numbers them.
#[allow(non_camel_case_types)]
pub type cpupolicy_system_policy = u32;
/// What the hardware reports.
pub const CPUPOLICY_SYSTEM_RAW: cpupolicy_system_policy = 0;
/// What Xen itself uses.
pub const CPUPOLICY_SYSTEM_HOST: cpupolicy_system_policy = 1;
/// The most a PV guest can have: what an incoming PV migration is checked against.
pub const CPUPOLICY_SYSTEM_PV_MAX: cpupolicy_system_policy = 2;
/// The most an HVM guest can have.
pub const CPUPOLICY_SYSTEM_HVM_MAX: cpupolicy_system_policy = 3;
/// What a new PV guest gets.
pub const CPUPOLICY_SYSTEM_PV_DEFAULT: cpupolicy_system_policy = 4;
/// What a new HVM guest gets.
pub const CPUPOLICY_SYSTEM_HVM_DEFAULT: cpupolicy_system_policy = 5;

/// How the modelled Xen runs HVM guests, for `cpupolicy_derive`: one of the `CPUPOLICY_HVM_*`
/// values.
#[allow(non_camel_case_types)]
pub type cpupolicy_hvm_mode = u32;
/// As the raw policy suggests: HVM when it enumerates VMX or SVM, with HAP unless SVM lacks NPT.
pub const CPUPOLICY_HVM_DETECT: cpupolicy_hvm_mode = 0;
/// No HVM support: no HVM policies.
pub const CPUPOLICY_HVM_NONE: cpupolicy_hvm_mode = 1;
/// HVM with hardware-assisted paging.
pub const CPUPOLICY_HVM_HAP: cpupolicy_hvm_mode = 2;
/// HVM with shadow paging only.
pub const CPUPOLICY_HVM_SHADOW: cpupolicy_hvm_mode = 3;

pub(crate) fn system_policy(which: cpupolicy_system_policy) -> Result<SystemPolicy, Failure> {
    SystemPolicy::from_policy_index(which).ok_or_else(|| out_of_range("system policy", which))
}

/// Reads a host's system policies from text, telling the format from its first bytes: a JSON
/// host bundle (`"format": "cpupolicy-host"`) or `xen-cpuid -p` output of the system policies
/// (a policy Xen printed as not supported is absent). One policy (a JSON policy, `xen-cpuid -p
/// DOMID` output, a libvirt CPU dump) gets `CPUPOLICY_WRONG_DOCUMENT`: read it with
/// `cpupolicy_policy_parse` (and predict a host's policies from a CPU dump with
/// `cpupolicy_derive`). Malformed input gets `CPUPOLICY_PARSE_ERROR` naming the line or entry.
/// `text` and `out` must not be NULL; the caller owns `*out`. Thread-safe.
///
/// # Safety
/// `text` a NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_parse(text: *const c_char, out: *mut *mut cpupolicy_host) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let bundle = parse_host(unsafe { c_str(text, "text")? })?;
        // SAFETY: per this function's contract.
        unsafe { put(out, bundle) }
    })
}

/// Reads a host's system policies from the file at `path`, as `cpupolicy_host_parse` reads
/// text; every message starts with the path. A file that cannot be read gets
/// `CPUPOLICY_IO_ERROR`. `path` and `out` must not be NULL; the caller owns `*out`. Thread-safe.
///
/// # Safety
/// `path` a NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_read(path: *const c_char, out: *mut *mut cpupolicy_host) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (path, text) = unsafe { read_c_path(path)? };
        let bundle = parse_host(&text).map_err(|f| f.in_file(&path))?;
        // SAFETY: per this function's contract.
        unsafe { put(out, bundle) }
    })
}

/// A host's system policies from a document's text, or why not.
fn parse_host(text: &str) -> Result<HostBundle, Failure> {
    let document = Document::parse(text).map_err(import_failure)?;
    let format = document.format();
    let wrong = |what: &str| {
        Failure::new(
            CPUPOLICY_WRONG_DOCUMENT,
            format!("{what} holds one policy, not a host's system policies: use cpupolicy_policy_parse"),
        )
    };
    Ok(match document {
        Document::Bundle(bundle) => *bundle,
        Document::XenCpuid(report) if report.sections.iter().any(|s| matches!(s.name, SectionName::Domain(_))) => {
            return Err(wrong("xen-cpuid -p output of a domain"))
        }
        Document::XenCpuid(report) => report.to_bundle(),
        Document::Policy { format: InputFormat::Libvirt, .. } => {
            return Err(wrong("a libvirt CPU dump (a raw policy; cpupolicy_derive predicts a host's from it)"))
        }
        Document::Policy { .. } => return Err(wrong(&format!("a {format}"))),
    })
}

/// A new host with no policies and no versions in `*out`, owned by the caller; fill it with
/// `cpupolicy_host_set_policy`. Thread-safe.
///
/// # Safety
/// `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_new(out: *mut *mut cpupolicy_host) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { put(out, HostBundle::default()) })
}

/// Releases a host. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `host` NULL or a host handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_free(host: *mut cpupolicy_host) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(host, "host") })
}

/// The host as this project's JSON host bundle (`"format": "cpupolicy-host"`), NUL-terminated,
/// size-query convention. Thread-safe for readers.
///
/// # Safety
/// `host` a host handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_to_json(
    host: *const cpupolicy_host,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(host, "host", buffer, capacity, needed, |h| Ok(h.to_json())) }
}

/// The host's policies exactly as `xen-cpuid -p` prints them on that host (the maxima line,
/// then all six policies, absent ones as `… policy not supported by Xen`), in the format of
/// the Xen the bundle came from (the newest when unknown). NUL-terminated, size-query
/// convention. Thread-safe for readers.
///
/// # Safety
/// `host` a host handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_to_xen_cpuid(
    host: *const cpupolicy_host,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(host, "host", buffer, capacity, needed, |h| Ok(XenCpuidReport::from_bundle(h).0.to_string())) }
}

/// A copy of one system policy (`CPUPOLICY_SYSTEM_*`) of the host in `*out`, owned by the
/// caller; `CPUPOLICY_NOT_AVAILABLE` when the host has none (e.g. HVM policies of a host
/// without HVM support). Thread-safe for readers.
///
/// # Safety
/// `host` a host handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_policy(
    host: *const cpupolicy_host,
    which: cpupolicy_system_policy,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let host = unsafe { borrow(host, "host")? };
        let which = system_policy(which)?;
        let policy = host
            .policies
            .get(which)
            .cloned()
            .ok_or_else(|| Failure::new(CPUPOLICY_NOT_AVAILABLE, format!("the host has no {which} policy")))?;
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

/// Sets (a copy of `policy`) or, with `policy` NULL, removes one system policy of the host.
/// Not thread-safe on the same host.
///
/// # Safety
/// `host` a host handle; `policy` NULL or a policy handle.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_set_policy(
    host: *mut cpupolicy_host,
    which: cpupolicy_system_policy,
    policy: *const cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        let which = system_policy(which)?;
        let policy = if policy.is_null() {
            None
        } else {
            // SAFETY: per this function's contract.
            Some(unsafe { borrow(policy, "policy")? }.clone())
        };
        // SAFETY: per this function's contract; a host and a policy cannot be one handle.
        unsafe { borrow_mut(host, "host")? }.policies.set(which, policy);
        Ok(())
    })
}

/// The Xen version the host's policies came from (`4.20.3`), NUL-terminated, size-query
/// convention; `CPUPOLICY_NOT_AVAILABLE` when the bundle does not record it (`xen-cpuid -p`
/// text does not). Thread-safe for readers.
///
/// # Safety
/// `host` a host handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_host_xen_version(
    host: *const cpupolicy_host,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(host, "host", buffer, capacity, needed, |h| {
            h.xen_version
                .as_ref()
                .map(|v| v.to_string())
                .ok_or_else(|| Failure::new(CPUPOLICY_NOT_AVAILABLE, "the host bundle does not record its Xen version"))
        })
    }
}

/// Predicts the system policies Xen 4.20 builds at boot on the CPU whose raw policy is `raw`
/// (a libvirt CPU dump, the machine's own `cpuid`, or Xen's Raw policy), as a new host in
/// `*out` owned by the caller: Raw (`raw` itself), Host, PV Max/Default and, unless `hvm` is
/// `CPUPOLICY_HVM_NONE` (or detection finds no VMX/SVM), HVM Max/Default. CPUID faulting is read
/// from the raw policy's MSR 0xce and current microcode is assumed. A CPU that Xen 4.20 could
/// not boot on, or a mode it contradicts (HAP without NPT), gets `CPUPOLICY_UNSUPPORTED_CPU`.
/// Thread-safe for readers of `raw`.
///
/// # Safety
/// `raw` a policy handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_derive(
    raw: *const cpupolicy_policy,
    hvm: cpupolicy_hvm_mode,
    out: *mut *mut cpupolicy_host,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let raw: &CpuPolicy = unsafe { borrow(raw, "raw")? };
        let detected = DeriveOptions::detect(raw);
        let options = match hvm {
            CPUPOLICY_HVM_DETECT => detected,
            CPUPOLICY_HVM_NONE => DeriveOptions { hvm: None, ..detected },
            CPUPOLICY_HVM_HAP => DeriveOptions { hvm: Some(HvmMode::Hap), ..detected },
            CPUPOLICY_HVM_SHADOW => DeriveOptions { hvm: Some(HvmMode::Shadow), ..detected },
            other => return Err(out_of_range("hvm mode", other)),
        };
        let policies = derive_system_policies(raw, &options)
            .map_err(|e| Failure::new(CPUPOLICY_UNSUPPORTED_CPU, e.to_string()))?;
        // SAFETY: per this function's contract.
        unsafe { put(out, HostBundle { policies, ..HostBundle::default() }) }
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::*;
    use crate::ffi::testing::{last_error, text};
    use crate::policy::cpupolicy_policy_free;

    #[test]
    fn parse_tells_documents_apart() {
        let mut host = std::ptr::dangling_mut::<cpupolicy_host>();
        let mut parse = |text: &std::ffi::CStr| {
            // SAFETY: a NUL-terminated string; `host` a valid place.
            unsafe { cpupolicy_host_parse(text.as_ptr(), &mut host) }
        };
        let policy = std::ffi::CString::new(CpuPolicy::new().to_json()).unwrap();
        assert_eq!(parse(&policy), CPUPOLICY_WRONG_DOCUMENT);
        assert!(last_error().contains("cpupolicy_policy_parse"), "{}", last_error());
        assert_eq!(parse(c"<cpudata arch='x86'>\n</cpudata>\n"), CPUPOLICY_WRONG_DOCUMENT);
        assert!(last_error().contains("cpupolicy_derive"), "{}", last_error());
        assert_eq!(parse(c"Host policy: 1 leaves"), CPUPOLICY_PARSE_ERROR);
        assert!(last_error().starts_with("xen-cpuid -p output: line "), "{}", last_error());
        // SAFETY: NULL text is reported.
        assert_eq!(unsafe { cpupolicy_host_parse(null(), &mut host) }, CPUPOLICY_INVALID_ARGUMENT);
        assert_eq!(host, std::ptr::dangling_mut::<cpupolicy_host>());
    }

    #[test]
    fn absent_policies_and_versions_are_not_available() {
        let host = HostBundle::default().into_handle();
        let mut policy = null_mut();
        // SAFETY: `host` is a live host handle; `policy` a valid place.
        unsafe {
            assert_eq!(cpupolicy_host_policy(host, CPUPOLICY_SYSTEM_HVM_MAX, &mut policy), CPUPOLICY_NOT_AVAILABLE);
            assert_eq!(last_error(), "the host has no hvm_max policy");
            assert_eq!(cpupolicy_host_policy(host, 6, &mut policy), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(
                cpupolicy_host_set_policy(host, CPUPOLICY_SYSTEM_RAW, CpuPolicy::new().into_handle()),
                CPUPOLICY_OK
            );
        }
        assert!(policy.is_null());
        // SAFETY: `host` is live; the closure passes the harness's buffers.
        assert_eq!(text(|b, c, n| unsafe { cpupolicy_host_xen_version(host, b, c, n) }), Err(CPUPOLICY_NOT_AVAILABLE));
        // SAFETY: `host` is live.
        let printed = text(|b, c, n| unsafe { cpupolicy_host_to_xen_cpuid(host, b, c, n) }).unwrap();
        assert!(printed.contains("\nHost policy not supported by Xen\n"), "{printed}");
        // SAFETY: the live handle, not used afterwards.
        unsafe { cpupolicy_host_free(host) };
    }

    #[test]
    fn derive_predicts_the_recorded_xen_4_20_boot() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/xen-reference/xen-4.20-qemu64.policy.txt");
        let Ok(recorded) = std::fs::read_to_string(path) else {
            eprintln!("SKIP: {path} is absent; this test needs ../shared beside the checkout");
            return;
        };
        let recorded = std::ffi::CString::new(recorded).unwrap();
        let (mut host, mut raw, mut derived) = (null_mut(), null_mut(), null_mut());
        // SAFETY: a NUL-terminated string and valid places; the handles are live when passed.
        unsafe {
            assert_eq!(cpupolicy_host_parse(recorded.as_ptr(), &mut host), CPUPOLICY_OK);
            assert_eq!(cpupolicy_host_policy(host, CPUPOLICY_SYSTEM_RAW, &mut raw), CPUPOLICY_OK);
            assert_eq!(cpupolicy_derive(raw, CPUPOLICY_HVM_DETECT, &mut derived), CPUPOLICY_OK);
        }
        // SAFETY: both handles are live host handles.
        let (expected, predicted) = unsafe { (&(*host).value, &(*derived).value) };
        for which in SystemPolicy::ALL {
            assert_eq!(predicted.policies.get(which), expected.policies.get(which), "{which}");
        }
        // SAFETY: live handles, not used afterwards.
        unsafe {
            cpupolicy_policy_free(raw);
            cpupolicy_host_free(derived);
            cpupolicy_host_free(host);
        }
    }

    #[test]
    fn derive_refuses_what_xen_could_not_boot() {
        let raw = CpuPolicy::new().into_handle();
        let mut out = std::ptr::dangling_mut::<cpupolicy_host>();
        // SAFETY: `raw` is a live policy handle; `out` a valid place.
        unsafe {
            assert_eq!(cpupolicy_derive(raw, CPUPOLICY_HVM_DETECT, &mut out), CPUPOLICY_UNSUPPORTED_CPU);
            assert!(last_error().contains("no leaf 0x0"), "{}", last_error());
            assert_eq!(cpupolicy_derive(raw, 4, &mut out), CPUPOLICY_INVALID_ARGUMENT);
            // A NULL out-pointer is refused before the policy is looked at (the header: NULL gets
            // CPUPOLICY_INVALID_ARGUMENT).
            assert_eq!(cpupolicy_derive(raw, CPUPOLICY_HVM_NONE, null_mut()), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(last_error(), "out is NULL");
            cpupolicy_policy_free(raw);
        }
        assert_eq!(out, std::ptr::dangling_mut::<cpupolicy_host>());
    }
}
