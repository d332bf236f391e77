//! CPU policies: import and export in every format (JSON, `xen-cpuid -p` text, Xen's
//! `xen_cpuid_leaf_t`/`xen_msr_entry_t` arrays), typed fields, raw leaves and MSRs, the
//! featureset view, and differences.

use std::ffi::c_char;

use abi::{XenCpuidLeaf, XenMsrEntry};
use featureset::Featureset;
use policy::{
    CpuPolicy, CpuidKey, Document, ImportError, InputFormat, PolicyDiff, PoolPolicy, Registers, ReportSection,
    SectionName, WireError, WireLeaf, WireLimits, XenCpuidReport, XenVersion, XEN_CPUID_NO_SUBLEAF,
};

use crate::featureset::{cpupolicy_featureset, parse_failure};
use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::pool::{cpupolicy_pool_role, CPUPOLICY_POOL_ACCEPTANCE, CPUPOLICY_POOL_DEFAULT};

/// An opaque CPU policy handle: every CPUID leaf and MSR of one policy. Create with
/// `cpupolicy_policy_parse`, `_new`, `_from_xen`, `_clone` or an operation; release with
/// `cpupolicy_policy_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_policy = Handle<CpuPolicy>;

impl Tagged for CpuPolicy {
    const TAG: Tag = Tag::Policy;
    const NAME: &'static str = "policy";
}

/// The sub-leaf of a leaf that has none (Xen's `XEN_CPUID_NO_SUBLEAF`).
pub const CPUPOLICY_NO_SUBLEAF: u32 = u32::MAX;

// Xen's entries are the ABI crate's `XenCpuidLeaf` and `XenMsrEntry`, named
// `XenCpuidLeaf` and `XenMsrEntry` in C (cbindgen.toml).
const _: () = assert!(CPUPOLICY_NO_SUBLEAF == XEN_CPUID_NO_SUBLEAF);

/// The typed fields of a policy, for `cpupolicy_policy_field` and `cpupolicy_policy_set_field`:
/// one of the `CPUPOLICY_FIELD_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_field = u32;
/// Display family (base family, plus the extended family when the base is 0xf). Read-only.
pub const CPUPOLICY_FIELD_FAMILY: cpupolicy_field = 0;
/// Display model (with the extended model from family 6 on). Read-only.
pub const CPUPOLICY_FIELD_MODEL: cpupolicy_field = 1;
/// Stepping (leaf 1 `EAX[3:0]`). Read-only.
pub const CPUPOLICY_FIELD_STEPPING: cpupolicy_field = 2;
/// Highest basic leaf (leaf 0 EAX).
pub const CPUPOLICY_FIELD_MAX_BASIC_LEAF: cpupolicy_field = 3;
/// Highest extended leaf (leaf 0x80000000 EAX).
pub const CPUPOLICY_FIELD_MAX_EXTENDED_LEAF: cpupolicy_field = 4;
/// Highest sub-leaf of leaf 7 (leaf 7:0 EAX).
pub const CPUPOLICY_FIELD_LEAF7_MAX_SUBLEAF: cpupolicy_field = 5;
/// Physical address bits (leaf 0x80000008 `EAX[7:0]`), at most 255.
pub const CPUPOLICY_FIELD_MAX_PHYS_ADDR_BITS: cpupolicy_field = 6;
/// Linear address bits (leaf 0x80000008 `EAX[15:8]`), at most 255.
pub const CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS: cpupolicy_field = 7;
/// CPUID faulting (MSR 0xce bit 31): 0 or 1.
pub const CPUPOLICY_FIELD_CPUID_FAULTING: cpupolicy_field = 8;
/// MSR_ARCH_CAPABILITIES (0x10a). Read-only here (set it with `cpupolicy_policy_set_msr`).
pub const CPUPOLICY_FIELD_ARCH_CAPABILITIES: cpupolicy_field = 9;
/// The xstate components enumerated (leaf 0xd:0 EDX:EAX | leaf 0xd:1 EDX:ECX). Read-only.
pub const CPUPOLICY_FIELD_XSTATES: cpupolicy_field = 10;
/// The processor signature (leaf 1 EAX). Read-only.
pub const CPUPOLICY_FIELD_SIGNATURE: cpupolicy_field = 11;

/// The Xen release whose policy format applies: `NULL` for the newest (4.17 to 4.22), else a
/// version such as `"4.20.3"` (a version without point release is taken at `.0`).
pub(crate) fn wire_limits(version: Option<&str>) -> Result<WireLimits, Failure> {
    let Some(text) = version else { return Ok(WireLimits::LATEST) };
    let parsed = XenVersion::parse(text).ok_or_else(|| {
        Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("xen_version '{text}' is not a Xen version such as 4.20.3"))
    })?;
    WireLimits::for_xen(&parsed).ok_or_else(|| {
        Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("Xen {parsed} predates 4.14: no CPU policy format is known"))
    })
}

pub(crate) fn import_failure(error: ImportError) -> Failure {
    Failure::new(CPUPOLICY_PARSE_ERROR, error.to_string())
}

pub(crate) fn wire_failure(error: WireError) -> Failure {
    const NONE: u32 = CPUPOLICY_REJECTION_NONE;
    let (leaf, subleaf, msr) = match error {
        WireError::TooManyLeaves { .. } | WireError::TooManyMsrs { .. } | WireError::BufferTooSmall { .. } => {
            (NONE, NONE, NONE)
        }
        WireError::LeafOutOfRange { leaf, subleaf, .. } => (leaf, subleaf, NONE),
        WireError::MsrFlags { msr, .. }
        | WireError::MsrOutOfRange { msr, .. }
        | WireError::MsrValueTooWide { msr, .. } => (NONE, NONE, msr),
    };
    Failure::rejected(error.to_string(), cpupolicy_rejection { error_number: error.errno(), leaf, subleaf, msr })
}

/// The leaf and sub-leaf a `XenCpuidLeaf` names.
fn key_of(entry: &XenCpuidLeaf) -> CpuidKey {
    entry.key()
}

/// A new empty policy (no leaves, no MSRs) in `*out`, owned by the caller. Thread-safe.
///
/// # Safety
/// `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_new(out: *mut *mut cpupolicy_policy) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { put(out, CpuPolicy::new()) })
}

/// A copy of `policy` in `*out`, owned by the caller. Thread-safe for readers of `policy`.
///
/// # Safety
/// `policy` a policy handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_clone(
    policy: *const cpupolicy_policy,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let policy = unsafe { borrow(policy, "policy")? };
        // SAFETY: per this function's contract.
        unsafe { put(out, policy.clone()) }
    })
}

/// Releases a policy. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `policy` NULL or a policy handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_free(policy: *mut cpupolicy_policy) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(policy, "policy") })
}

/// Reads one policy from text, telling the format from its first bytes: a JSON policy
/// document, `xen-cpuid -p DOMID` output (one `Domain N` section), a libvirt `<cpudata>`
/// CPU dump (the raw policy of that CPU), or a pool document (`cpupolicy level --format json`,
/// `cpupolicy_pool_json`: its default policy; `cpupolicy_policy_parse_pool` picks either). A host's policies (a JSON host bundle or
/// `xen-cpuid -p` system output) get `CPUPOLICY_WRONG_DOCUMENT`: read those with
/// `cpupolicy_host_parse`. Malformed input gets `CPUPOLICY_PARSE_ERROR`, the message naming
/// the line or entry. `text` and `out` must not be NULL; the caller owns `*out`. Thread-safe.
///
/// # Safety
/// `text` a NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_parse(
    text: *const c_char,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(text, "text")? };
        let policy = single_policy(Document::parse(text).map_err(import_failure)?)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

/// Reads one policy of a pool document (`cpupolicy level --format json`, `cpupolicy_pool_json`):
/// `which` is `CPUPOLICY_POOL_DEFAULT` or `CPUPOLICY_POOL_ACCEPTANCE`. Any other document gets
/// `CPUPOLICY_WRONG_DOCUMENT`. `text` and `out` must not be NULL; the caller owns `*out`.
/// Thread-safe.
///
/// # Safety
/// `text` a NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_parse_pool(
    text: *const c_char,
    which: cpupolicy_pool_role,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(text, "text")? };
        let which = match which {
            CPUPOLICY_POOL_DEFAULT => PoolPolicy::Default,
            CPUPOLICY_POOL_ACCEPTANCE => PoolPolicy::Acceptance,
            other => return Err(out_of_range("pool policy", other)),
        };
        let document = Document::parse_choosing(text, which).map_err(import_failure)?;
        if !matches!(document.format(), InputFormat::PoolJson(_)) {
            return Err(Failure::new(
                cpupolicy_status::CPUPOLICY_WRONG_DOCUMENT,
                format!("a {} is not a pool document", document.format()),
            ));
        }
        let policy = single_policy(document)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

/// Reads one policy from the file at `path`, as `cpupolicy_policy_parse` reads text; every
/// message starts with the path. A file that cannot be read gets `CPUPOLICY_IO_ERROR`. `path`
/// and `out` must not be NULL; the caller owns `*out`. Thread-safe.
///
/// # Safety
/// `path` a NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_read(
    path: *const c_char,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (path, text) = unsafe { read_c_path(path)? };
        let policy = Document::parse(&text).map_err(import_failure).and_then(single_policy);
        // SAFETY: per this function's contract.
        unsafe { put(out, policy.map_err(|f| f.in_file(&path))?) }
    })
}

/// The one policy a document holds, or `CPUPOLICY_WRONG_DOCUMENT`.
fn single_policy(document: Document) -> Result<CpuPolicy, Failure> {
    let format = document.format();
    match document {
        Document::Policy { policy, .. } => Ok(policy),
        Document::XenCpuid(report) => match report.sections.as_slice() {
            [ReportSection { name: SectionName::Domain(_), content: Some(printed) }] => Ok(printed.policy().clone()),
            _ => Err(Failure::new(
                CPUPOLICY_WRONG_DOCUMENT,
                format!(
                    "{format} of the system policies is a host's policies, not one policy: use cpupolicy_host_parse"
                ),
            )),
        },
        Document::Bundle(_) => Err(Failure::new(
            CPUPOLICY_WRONG_DOCUMENT,
            format!("a {format} holds a host's policies, not one policy: use cpupolicy_host_parse"),
        )),
    }
}

/// The policy as this project's JSON policy document (`"format": "cpupolicy-policy"`),
/// NUL-terminated, with the size-query convention. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_to_json(
    policy: *const cpupolicy_policy,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(policy, "policy", buffer, capacity, needed, |p| Ok(p.to_json())) }
}

/// The policy as a libvirt `<cpudata arch='x86'>` dump (what `cpupolicy_policy_parse` reads
/// back), NUL-terminated, size-query convention. A leaf the format cannot carry as the policy
/// holds it (a leaf both with and without sub-leaves, sub-leaf 0 of a leaf without
/// sub-leaves, a sub-leaf of leaf 0, 1, 0x80000000 or 0x80000001) gets
/// `CPUPOLICY_DOES_NOT_FIT`, naming it, and nothing is written. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_to_libvirt(
    policy: *const cpupolicy_policy,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let render = |p: &CpuPolicy| p.to_libvirt_xml().map_err(|e| Failure::new(CPUPOLICY_DOES_NOT_FIT, e.to_string()));
    // SAFETY: per this function's contract.
    unsafe { text_of(policy, "policy", buffer, capacity, needed, render) }
}

/// The policy as `xen-cpuid -p DOMID` prints a domain's (`Domain <domid> policy: …`), as the
/// Xen release `xen_version` (NULL: the newest format) serialises it; entries that format
/// cannot carry are left out (list them with `cpupolicy_policy_xen_dropped`). NUL-terminated,
/// size-query convention. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `xen_version` NULL or a NUL-terminated string; `buffer` NULL or
/// valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_to_xen_cpuid(
    policy: *const cpupolicy_policy,
    domid: u32,
    xen_version: *const c_char,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let render = |p: &CpuPolicy| {
        // SAFETY: per this function's contract.
        let limits = wire_limits(unsafe { opt_c_str(xen_version, "xen_version")? })?;
        Ok(XenCpuidReport::single(SectionName::Domain(domid), p, &limits).0.to_string())
    };
    // SAFETY: per this function's contract.
    unsafe { text_of(policy, "policy", buffer, capacity, needed, render) }
}

/// A new policy from Xen's arrays (as `XEN_DOMCTL_get_cpu_policy` or a migration stream
/// returns them), checked as the Xen release `xen_version` (NULL: the newest format) checks
/// them: too many entries, a leaf or MSR outside Xen's policy, non-zero MSR flags or a value
/// too wide get `CPUPOLICY_POLICY_REJECTED`, the message naming the entry. `leaves` may be
/// NULL when `nr_leaves` is 0, `msrs` when `nr_msrs` is 0. The caller owns `*out`. Thread-safe.
///
/// # Safety
/// `leaves` valid for `nr_leaves` reads, `msrs` for `nr_msrs`; `xen_version` NULL or a
/// NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_from_xen(
    leaves: *const XenCpuidLeaf,
    nr_leaves: usize,
    msrs: *const XenMsrEntry,
    nr_msrs: usize,
    xen_version: *const c_char,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let version = unsafe { opt_c_str(xen_version, "xen_version")? };
        let limits = wire_limits(version)?;
        // As Xen's deserialiser: counts beyond the format are E2BIG before anything is read.
        if nr_leaves > limits.max_leaves() as usize {
            return Err(wire_failure(WireError::TooManyLeaves { count: nr_leaves, max: limits.max_leaves() }));
        }
        if nr_msrs > limits.max_msrs() as usize {
            return Err(wire_failure(WireError::TooManyMsrs { count: nr_msrs, max: limits.max_msrs() }));
        }
        // SAFETY: per this function's contract; the counts are within the format's limits.
        let (leaves, msrs) =
            unsafe { (c_slice(leaves, nr_leaves, nr_leaves, "leaves")?, c_slice(msrs, nr_msrs, nr_msrs, "msrs")?) };
        let policy = CpuPolicy::from_wire(leaves, msrs, &limits).map_err(wire_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

/// The policy's CPUID leaves as the Xen release `xen_version` (NULL: the newest format)
/// serialises them (`xen_cpuid_leaf_t` order, zero leaves included, as
/// `XEN_DOMCTL_set_cpu_policy` takes them), into `leaves` (capacity `capacity` entries) with
/// the size-query convention: `*needed` receives the count. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `xen_version` NULL or a NUL-terminated string; `leaves` NULL or
/// valid for `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_to_xen_leaves(
    policy: *const cpupolicy_policy,
    xen_version: *const c_char,
    leaves: *mut XenCpuidLeaf,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { to_xen_entries(policy, xen_version, Serialised::leaves, leaves, capacity, needed) }
}

/// The policy's MSRs as the Xen release `xen_version` (NULL: the newest format) serialises
/// them (`xen_msr_entry_t`), with the size-query convention. Thread-safe for readers.
///
/// # Safety
/// As for `cpupolicy_policy_to_xen_leaves`, with `msrs` for `leaves`.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_to_xen_msrs(
    policy: *const cpupolicy_policy,
    xen_version: *const c_char,
    msrs: *mut XenMsrEntry,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { to_xen_entries(policy, xen_version, Serialised::msrs, msrs, capacity, needed) }
}

/// [`cpupolicy_policy_to_xen_leaves`] and [`cpupolicy_policy_to_xen_msrs`]: the entries `pick`
/// takes from the serialised policy, with the size-query convention.
///
/// # Safety
/// As for those functions, with `out` the buffer.
unsafe fn to_xen_entries<T: Copy + Default>(
    policy: *const cpupolicy_policy,
    xen_version: *const c_char,
    pick: fn(&Serialised) -> &[T],
    out: *mut T,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per the caller's contract.
        let (policy, version) = unsafe { (borrow(policy, "policy")?, opt_c_str(xen_version, "xen_version")?) };
        let wire = Serialised::of(policy, &wire_limits(version)?)?;
        // SAFETY: per the caller's contract.
        unsafe { output(pick(&wire), false, out, capacity, needed) }
    })
}

/// The policy's CPUID leaves and MSRs as the Xen release `xen_version` (NULL: the newest
/// format) serialises them, into caller buffers in one call, in the shape of libxenguest's
/// `xc_cpu_policy_serialise`: the entries `cpupolicy_policy_to_xen_leaves` and
/// `cpupolicy_policy_to_xen_msrs` give. On entry `*nr_leaves` and `*nr_msrs` are the capacities
/// of `leaves` and `msrs` in entries; on success they are the counts written.
///
/// - A buffer too small for its entries gets `CPUPOLICY_BUFFER_TOO_SMALL`, with `*nr_leaves`
///   and `*nr_msrs` both set to the counts the policy needs and nothing written to either
///   buffer (libxenguest writes what fits and fails with ENOBUFS).
/// - `leaves` NULL with `*nr_leaves` 0 is a size query for the leaves: none are written and
///   `*nr_leaves` receives their count; likewise `msrs` with `*nr_msrs`. A buffer passed beside
///   a size query is filled as usual (libxenguest skips a NULL array); both NULL with 0 is a size
///   query of both.
/// - `policy`, `nr_leaves` and `nr_msrs` must not be NULL. A NULL buffer with a non-zero
///   capacity, and a `xen_version` that is no version or predates 4.14, get
///   `CPUPOLICY_INVALID_ARGUMENT`; the counts are then untouched.
///
/// Nothing is allocated for the entries (only a failure's message is): the policy is serialised
/// once into arrays of the largest format's size on the stack (120 leaves and 2 MSRs, under
/// 3 KiB whatever the policy holds), which gives the counts before any buffer is written, and
/// the entries are copied out from there. The caller's buffers may be uninitialised memory: they
/// are only written, never read. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `xen_version` NULL or a NUL-terminated string; `nr_leaves` and
/// `nr_msrs` valid for a read and a write; `leaves` NULL or valid for `*nr_leaves` writes,
/// `msrs` NULL or valid for `*nr_msrs` writes.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_serialise(
    policy: *const cpupolicy_policy,
    xen_version: *const c_char,
    leaves: *mut XenCpuidLeaf,
    nr_leaves: *mut usize,
    msrs: *mut XenMsrEntry,
    nr_msrs: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (policy, version) = unsafe { (borrow(policy, "policy")?, opt_c_str(xen_version, "xen_version")?) };
        let limits = wire_limits(version)?;
        // SAFETY: per this function's contract; NULL is reported.
        let (leaf_capacity, msr_capacity) =
            unsafe { (capacity_of(nr_leaves, "nr_leaves")?, capacity_of(nr_msrs, "nr_msrs")?) };
        let parts = [
            (leaves.is_null(), leaf_capacity, "leaves", "nr_leaves"),
            (msrs.is_null(), msr_capacity, "msrs", "nr_msrs"),
        ];
        if let Some((_, capacity, what, count)) =
            parts.iter().find(|(is_null, capacity, ..)| *is_null && *capacity != 0)
        {
            return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("{what} is NULL but *{count} is {capacity}")));
        }
        let wire = Serialised::of(policy, &limits)?;
        let needed = [wire.nr_leaves, wire.nr_msrs];
        let short: Vec<String> = parts
            .iter()
            .zip(needed)
            .filter(|((is_null, capacity, ..), needed)| !is_null && capacity < needed)
            .map(|((_, capacity, what, _), needed)| format!("{what}: buffer of {capacity} too small: {needed} needed"))
            .collect();
        if short.is_empty() {
            let (from_leaves, from_msrs) = (wire.leaves(), wire.msrs());
            // SAFETY: each non-NULL buffer is valid for its capacity's writes per this function's
            // contract, and that capacity is at least the entries copied (checked just above);
            // the sources are slices of this function's own stack, so they cannot overlap.
            unsafe {
                if !leaves.is_null() {
                    std::ptr::copy_nonoverlapping(from_leaves.as_ptr(), leaves, from_leaves.len());
                }
                if !msrs.is_null() {
                    std::ptr::copy_nonoverlapping(from_msrs.as_ptr(), msrs, from_msrs.len());
                }
            }
        }
        // The counts are written on success and, as the size-query convention's `*needed`, when
        // a buffer is too short.
        // SAFETY: both non-NULL (checked above) and valid for writes per this function's contract.
        unsafe {
            nr_leaves.write(wire.nr_leaves);
            nr_msrs.write(wire.nr_msrs);
        }
        if short.is_empty() {
            Ok(())
        } else {
            Err(Failure::new(CPUPOLICY_BUFFER_TOO_SMALL, short.join("; ")))
        }
    })
}

/// The capacity an in/out count holds on entry.
///
/// # Safety
/// `count` NULL (reported) or valid for a read.
unsafe fn capacity_of(count: *const usize, what: &str) -> Result<usize, Failure> {
    if count.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and valid for a read per this function's contract.
    Ok(unsafe { count.read() })
}

/// The most leaves and MSRs any known release's format serialises (Xen 4.17 on).
const MAX_WIRE_LEAVES: usize = WireLimits::LATEST.max_leaves() as usize;
const MAX_WIRE_MSRS: usize = WireLimits::LATEST.max_msrs() as usize;
const _: () = {
    let layouts = [WireLimits::XEN_4_14_0, WireLimits::XEN_4_14_1, WireLimits::XEN_4_16_0, WireLimits::XEN_4_17];
    let mut i = 0;
    while i < layouts.len() {
        assert!(layouts[i].max_leaves() as usize <= MAX_WIRE_LEAVES);
        assert!(layouts[i].max_msrs() as usize <= MAX_WIRE_MSRS);
        i += 1;
    }
};

/// A policy serialised in Xen's format (`CpuPolicy::to_wire_into`) into arrays of the largest
/// format's size: no allocation, whatever the policy holds.
struct Serialised {
    leaves: [XenCpuidLeaf; MAX_WIRE_LEAVES],
    nr_leaves: usize,
    msrs: [XenMsrEntry; MAX_WIRE_MSRS],
    nr_msrs: usize,
}

impl Serialised {
    fn of(policy: &CpuPolicy, limits: &WireLimits) -> Result<Serialised, Failure> {
        let mut wire = Serialised {
            leaves: [XenCpuidLeaf::default(); MAX_WIRE_LEAVES],
            nr_leaves: 0,
            msrs: [XenMsrEntry::default(); MAX_WIRE_MSRS],
            nr_msrs: 0,
        };
        // Arrays of the format's maxima always suffice (and every known format fits in these).
        let (nr_leaves, nr_msrs) = policy.to_wire_into(limits, &mut wire.leaves, &mut wire.msrs).map_err(|e| {
            Failure::new(CPUPOLICY_INTERNAL_ERROR, format!("serialising into arrays of the largest format: {e}"))
        })?;
        wire.nr_leaves = nr_leaves;
        wire.nr_msrs = nr_msrs;
        Ok(wire)
    }

    fn leaves(&self) -> &[XenCpuidLeaf] {
        &self.leaves[..self.nr_leaves]
    }

    fn msrs(&self) -> &[XenMsrEntry] {
        &self.msrs[..self.nr_msrs]
    }
}

/// What Xen's format of release `xen_version` (NULL: the newest) cannot carry of the policy,
/// one line per entry with the reason (`leaf 0x0000001f:0x0 (…): Xen's policy has no room for
/// it`); the empty string when it carries everything. NUL-terminated, size-query convention.
/// Thread-safe for readers.
///
/// # Safety
/// As for `cpupolicy_policy_to_xen_cpuid`.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_xen_dropped(
    policy: *const cpupolicy_policy,
    xen_version: *const c_char,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let render = |p: &CpuPolicy| {
        // SAFETY: per this function's contract.
        let wire = p.to_wire(&wire_limits(unsafe { opt_c_str(xen_version, "xen_version")? })?);
        Ok(wire.dropped.iter().map(|d| format!("{d}\n")).collect())
    };
    // SAFETY: per this function's contract.
    unsafe { text_of(policy, "policy", buffer, capacity, needed, render) }
}

/// The policy's featureset (the words its leaves and MSRs mirror) as a new featureset in
/// `*out`, owned by the caller. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_featureset(
    policy: *const cpupolicy_policy,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let policy = unsafe { borrow(policy, "policy")? };
        // SAFETY: per this function's contract.
        unsafe { put(out, policy.featureset()) }
    })
}

/// Writes a featureset into the leaves and MSRs its words mirror (Xen's
/// `x86_cpu_featureset_to_policy`). A featureset with bits beyond the words a policy holds gets
/// `CPUPOLICY_DOES_NOT_FIT` and changes nothing. Not thread-safe on the same policy.
///
/// # Safety
/// `policy` a policy handle; `set` a featureset handle.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_set_featureset(
    policy: *mut cpupolicy_policy,
    set: *const cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let set: &Featureset = unsafe { borrow(set, "set")? };
        // SAFETY: per this function's contract; a policy and a featureset cannot be one handle.
        let policy = unsafe { borrow_mut(policy, "policy")? };
        policy.set_featureset(set).map_err(|e| match e {
            policy::PolicyError::FeaturesetDoesNotFit { source } => parse_failure(source),
        })
    })
}

/// Reads one typed field (`CPUPOLICY_FIELD_*`) into `*value`. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `value` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_field(
    policy: *const cpupolicy_policy,
    field: cpupolicy_field,
    value: *mut u64,
) -> cpupolicy_status {
    guard(|| {
        require(value, "value")?;
        // SAFETY: per this function's contract.
        let p = unsafe { borrow(policy, "policy")? };
        let read = match field {
            CPUPOLICY_FIELD_FAMILY => p.family().into(),
            CPUPOLICY_FIELD_MODEL => p.model().into(),
            CPUPOLICY_FIELD_STEPPING => p.stepping().into(),
            CPUPOLICY_FIELD_MAX_BASIC_LEAF => p.max_basic_leaf().into(),
            CPUPOLICY_FIELD_MAX_EXTENDED_LEAF => p.max_extended_leaf().into(),
            CPUPOLICY_FIELD_LEAF7_MAX_SUBLEAF => p.leaf7_max_subleaf().into(),
            CPUPOLICY_FIELD_MAX_PHYS_ADDR_BITS => p.max_phys_addr_bits().into(),
            CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS => p.max_lin_addr_bits().into(),
            CPUPOLICY_FIELD_CPUID_FAULTING => p.cpuid_faulting().into(),
            CPUPOLICY_FIELD_ARCH_CAPABILITIES => p.arch_capabilities(),
            CPUPOLICY_FIELD_XSTATES => p.xstates(),
            CPUPOLICY_FIELD_SIGNATURE => p.signature().into(),
            other => return Err(out_of_range("field", other)),
        };
        // SAFETY: per this function's contract.
        unsafe { put_value(value, read, "value") }
    })
}

/// Sets one writable typed field: the max leaves (up to 0xffffffff), the address widths (up to
/// 255) or CPUID faulting (0 or 1); the read-only fields and out-of-range values get
/// `CPUPOLICY_INVALID_ARGUMENT` and change nothing. Not thread-safe on the same policy.
///
/// # Safety
/// `policy` a policy handle.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_set_field(
    policy: *mut cpupolicy_policy,
    field: cpupolicy_field,
    value: u64,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let p = unsafe { borrow_mut(policy, "policy")? };
        let too_big = |max: u64| {
            Failure::new(
                CPUPOLICY_INVALID_ARGUMENT,
                format!("value {value:#x} is above field {field}'s maximum {max:#x}"),
            )
        };
        let leaf = || u32::try_from(value).map_err(|_| too_big(u32::MAX.into()));
        let bits = || u8::try_from(value).map_err(|_| too_big(u8::MAX.into()));
        match field {
            CPUPOLICY_FIELD_MAX_BASIC_LEAF => p.set_max_basic_leaf(leaf()?),
            CPUPOLICY_FIELD_MAX_EXTENDED_LEAF => p.set_max_extended_leaf(leaf()?),
            CPUPOLICY_FIELD_LEAF7_MAX_SUBLEAF => p.set_leaf7_max_subleaf(leaf()?),
            CPUPOLICY_FIELD_MAX_PHYS_ADDR_BITS => p.set_max_phys_addr_bits(bits()?),
            CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS => p.set_max_lin_addr_bits(bits()?),
            CPUPOLICY_FIELD_CPUID_FAULTING if value <= 1 => p.set_cpuid_faulting(value == 1),
            CPUPOLICY_FIELD_CPUID_FAULTING => return Err(too_big(1)),
            CPUPOLICY_FIELD_FAMILY..=CPUPOLICY_FIELD_SIGNATURE => {
                return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("field {field} is read-only")))
            }
            other => return Err(out_of_range("field", other)),
        }
        Ok(())
    })
}

/// The vendor's name as Xen prints it (`Intel`, `AMD`, `Hygon`, `Centaur`, `Shanghai`, or the
/// leaf 0 string of another), NUL-terminated, size-query convention. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_vendor(
    policy: *const cpupolicy_policy,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(policy, "policy", buffer, capacity, needed, |p| Ok(p.vendor().to_string())) }
}

/// The registers of one leaf (`subleaf` `CPUPOLICY_NO_SUBLEAF` for leaves without) into
/// `*entry`, all zero when the policy holds nothing for it. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `entry` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_cpuid(
    policy: *const cpupolicy_policy,
    leaf: u32,
    subleaf: u32,
    entry: *mut XenCpuidLeaf,
) -> cpupolicy_status {
    guard(|| {
        require(entry, "entry")?;
        // SAFETY: per this function's contract.
        let p = unsafe { borrow(policy, "policy")? };
        let key = key_of(&XenCpuidLeaf { leaf, subleaf, ..Default::default() });
        let registers = p.cpuid(key);
        // SAFETY: per this function's contract.
        unsafe { put_value(entry, XenCpuidLeaf::from_key(key, registers), "entry") }
    })
}

/// Sets one leaf from `*entry` (its `subleaf` `CPUPOLICY_NO_SUBLEAF` for leaves without);
/// all-zero registers remove it. Any leaf may be held; Xen's format may not carry it (see
/// `cpupolicy_policy_xen_dropped`). Not thread-safe on the same policy.
///
/// # Safety
/// `policy` a policy handle; `entry` valid for a read.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_set_cpuid(
    policy: *mut cpupolicy_policy,
    entry: *const XenCpuidLeaf,
) -> cpupolicy_status {
    guard(|| {
        if entry.is_null() {
            return Err(Failure::null("entry"));
        }
        // SAFETY: non-NULL and valid for a read per the contract.
        let entry = unsafe { entry.read() };
        // SAFETY: per this function's contract.
        let p = unsafe { borrow_mut(policy, "policy")? };
        p.set_cpuid(key_of(&entry), Registers::new(entry.a, entry.b, entry.c, entry.d));
        Ok(())
    })
}

/// An MSR's value into `*value` (zero when the policy holds none). Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `value` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_msr(
    policy: *const cpupolicy_policy,
    index: u32,
    value: *mut u64,
) -> cpupolicy_status {
    guard(|| {
        require(value, "value")?;
        // SAFETY: per this function's contract.
        let p = unsafe { borrow(policy, "policy")? };
        // SAFETY: per this function's contract.
        unsafe { put_value(value, p.msr(index), "value") }
    })
}

/// Sets an MSR; zero removes it. Not thread-safe on the same policy.
///
/// # Safety
/// `policy` a policy handle.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_set_msr(
    policy: *mut cpupolicy_policy,
    index: u32,
    value: u64,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        unsafe { borrow_mut(policy, "policy")? }.set_msr(index, value);
        Ok(())
    })
}

/// Every (non-zero) leaf the policy holds, in key order, whether or not Xen's format carries
/// it, with the size-query convention. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `leaves` NULL or valid for `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_cpuid_entries(
    policy: *const cpupolicy_policy,
    leaves: *mut XenCpuidLeaf,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let entries = |p: &CpuPolicy| p.cpuid_entries().map(|(k, r)| XenCpuidLeaf::from_key(k, r)).collect();
    // SAFETY: per this function's contract.
    unsafe { held_entries(policy, entries, leaves, capacity, needed) }
}

/// Every (non-zero) MSR the policy holds, by index, with the size-query convention.
/// Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `msrs` NULL or valid for `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_msr_entries(
    policy: *const cpupolicy_policy,
    msrs: *mut XenMsrEntry,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let entries = |p: &CpuPolicy| p.msrs().map(|(i, v)| XenMsrEntry::new(i, v)).collect();
    // SAFETY: per this function's contract.
    unsafe { held_entries(policy, entries, msrs, capacity, needed) }
}

/// [`cpupolicy_policy_cpuid_entries`] and [`cpupolicy_policy_msr_entries`]: the entries
/// `entries` lists from the policy, with the size-query convention.
///
/// # Safety
/// As for those functions, with `out` the buffer.
unsafe fn held_entries<T: Copy + Default>(
    policy: *const cpupolicy_policy,
    entries: impl FnOnce(&CpuPolicy) -> Vec<T>,
    out: *mut T,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per the caller's contract.
        let entries = entries(unsafe { borrow(policy, "policy")? });
        // SAFETY: per the caller's contract.
        unsafe { output(&entries, false, out, capacity, needed) }
    })
}

/// Whether two policies hold the same leaves and MSRs (an absent leaf equals an all-zero one).
/// Thread-safe for readers.
///
/// # Safety
/// `a`, `b` policy handles; `equal` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_equal(
    a: *const cpupolicy_policy,
    b: *const cpupolicy_policy,
    equal: *mut bool,
) -> cpupolicy_status {
    guard(|| {
        require(equal, "equal")?;
        // SAFETY: per this function's contract.
        let (a, b) = unsafe { (borrow(a, "a")?, borrow(b, "b")?) };
        // SAFETY: per this function's contract.
        unsafe { put_value(equal, a == b, "equal") }
    })
}

/// What differs from `a` to `b`: one line per differing register (`leaf 0x00000001 ecx:
/// 80000000 -> 10000000`) and MSR, then `features only in A: …` / `features only in B: …`;
/// the empty string when they are equal. NUL-terminated, size-query convention. Thread-safe
/// for readers.
///
/// # Safety
/// `a`, `b` policy handles; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_diff(
    a: *const cpupolicy_policy,
    b: *const cpupolicy_policy,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let render = |a: &CpuPolicy| {
        // SAFETY: per this function's contract.
        let b = unsafe { borrow(b, "b")? };
        Ok(PolicyDiff::between(a, b).to_string())
    };
    // SAFETY: per this function's contract.
    unsafe { text_of(a, "a", buffer, capacity, needed, render) }
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use super::*;
    use crate::ffi::testing::{last_error, text};

    /// An Intel policy with leaf 0, leaf 1 and the max extended leaf, as a handle.
    fn intel() -> *mut cpupolicy_policy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(0x306c3, 0x800, 0x9600_2201, 0x178b_fbfd));
        p.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0008, 0, 0, 0));
        p.into_handle()
    }

    #[test]
    fn a_pool_document_reads_as_its_default_or_acceptance_policy() {
        // SAFETY: a valid handle, taken back here.
        let base = unsafe { take(intel()) };
        let mut richer = base.clone();
        richer.set_feature_words(&[0x178b_fbfd, 0x9608_2201, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let host = policy::PoolHost::new("h", base.clone(), richer.clone());
        let pool = policy::level_pool(std::slice::from_ref(&host), policy::LevelOptions::default()).unwrap();
        let hazards = policy::pool_hazards(&pool, std::slice::from_ref(&host), featureset::GuestKind::Pv);
        let json = policy::pool_json(&pool, &[host], featureset::GuestKind::Pv, false, &hazards).unwrap();
        let text = std::ffi::CString::new(json.to_string()).unwrap();
        let read = |which: Option<u32>| {
            let mut out = null_mut();
            // SAFETY: a NUL-terminated string; `out` is a valid place.
            let status = unsafe {
                match which {
                    None => cpupolicy_policy_parse(text.as_ptr(), &mut out),
                    Some(which) => cpupolicy_policy_parse_pool(text.as_ptr(), which, &mut out),
                }
            };
            assert_eq!(status, CPUPOLICY_OK, "{}", last_error());
            // SAFETY: a handle the call just made.
            unsafe { take(out) }
        };
        assert_eq!(read(None), pool.default.policy);
        assert_eq!(read(Some(CPUPOLICY_POOL_DEFAULT)), pool.default.policy);
        assert_eq!(read(Some(CPUPOLICY_POOL_ACCEPTANCE)), pool.acceptance.policy);
        assert_ne!(pool.default.policy, pool.acceptance.policy, "the two differ, so the choice is seen");
        let mut out = null_mut();
        // SAFETY: as above.
        assert_eq!(unsafe { cpupolicy_policy_parse_pool(text.as_ptr(), 7, &mut out) }, CPUPOLICY_INVALID_ARGUMENT);
        let single = std::ffi::CString::new(base.to_json()).unwrap();
        // SAFETY: as above.
        let status = unsafe { cpupolicy_policy_parse_pool(single.as_ptr(), CPUPOLICY_POOL_DEFAULT, &mut out) };
        assert_eq!(status, CPUPOLICY_WRONG_DOCUMENT);
        assert!(out.is_null());
    }

    #[test]
    fn parse_reports_null_malformed_and_other_documents() {
        let mut out = std::ptr::dangling_mut::<cpupolicy_policy>();
        // SAFETY: NULL text is reported; `out` is a valid place.
        assert_eq!(unsafe { cpupolicy_policy_parse(null(), &mut out) }, CPUPOLICY_INVALID_ARGUMENT);
        assert_eq!(last_error(), "text is NULL");
        // SAFETY: a NUL-terminated literal; `out` is a valid place.
        assert_eq!(unsafe { cpupolicy_policy_parse(c"{\"format\": 1}".as_ptr(), &mut out) }, CPUPOLICY_PARSE_ERROR);
        let bundle = std::ffi::CString::new(policy::HostBundle::default().to_json()).unwrap();
        // SAFETY: a NUL-terminated string; `out` is a valid place.
        assert_eq!(unsafe { cpupolicy_policy_parse(bundle.as_ptr(), &mut out) }, CPUPOLICY_WRONG_DOCUMENT);
        assert!(last_error().contains("cpupolicy_host_parse"), "{}", last_error());
        assert_eq!(out, std::ptr::dangling_mut::<cpupolicy_policy>(), "untouched on failure");
    }

    #[test]
    fn json_round_trips_and_short_buffers_are_not_written() {
        let p = intel();
        // SAFETY: `p` is a live policy handle; the closure passes the harness's buffers.
        let json = text(|b, c, n| unsafe { cpupolicy_policy_to_json(p, b, c, n) }).unwrap();
        let mut small = [b'X' as c_char; 8];
        let mut needed = 0;
        // SAFETY: `small` holds 8 bytes.
        let status = unsafe { cpupolicy_policy_to_json(p, small.as_mut_ptr(), small.len(), &mut needed) };
        assert_eq!((status, needed), (CPUPOLICY_BUFFER_TOO_SMALL, json.len() + 1));
        assert!(small.iter().all(|&c| c == b'X' as c_char));
        let json = std::ffi::CString::new(json).unwrap();
        let mut back = null_mut();
        // SAFETY: a NUL-terminated string; `back` is a valid place.
        assert_eq!(unsafe { cpupolicy_policy_parse(json.as_ptr(), &mut back) }, CPUPOLICY_OK);
        let mut equal = false;
        // SAFETY: two live policy handles.
        assert_eq!(unsafe { cpupolicy_policy_equal(p, back, &mut equal) }, CPUPOLICY_OK);
        assert!(equal);
        // SAFETY: live handles, not used afterwards.
        unsafe { (cpupolicy_policy_free(p), cpupolicy_policy_free(back)) };
    }

    #[test]
    fn xen_arrays_round_trip_and_rejections_name_the_entry() {
        let p = intel();
        let mut leaves = vec![XenCpuidLeaf::default(); 64];
        let mut msrs = [XenMsrEntry::default(); 2];
        let (mut nr_leaves, mut nr_msrs) = (0, 0);
        // SAFETY: the buffers hold 64 and 2 entries.
        unsafe {
            assert_eq!(
                cpupolicy_policy_to_xen_leaves(p, null(), leaves.as_mut_ptr(), 64, &mut nr_leaves),
                CPUPOLICY_OK
            );
            assert_eq!(cpupolicy_policy_to_xen_msrs(p, null(), msrs.as_mut_ptr(), 2, &mut nr_msrs), CPUPOLICY_OK);
        }
        let mut back = null_mut();
        // SAFETY: the arrays hold the counts given; `back` is a valid place.
        let status = unsafe {
            cpupolicy_policy_from_xen(leaves.as_ptr(), nr_leaves, msrs.as_ptr(), nr_msrs, c"4.20.3".as_ptr(), &mut back)
        };
        assert_eq!(status, CPUPOLICY_OK);
        msrs[0].flags = 4;
        let mut refused = std::ptr::dangling_mut::<cpupolicy_policy>();
        // SAFETY: as above.
        let status = unsafe {
            cpupolicy_policy_from_xen(leaves.as_ptr(), nr_leaves, msrs.as_ptr(), nr_msrs, null(), &mut refused)
        };
        assert_eq!(status, CPUPOLICY_POLICY_REJECTED);
        assert!(last_error().contains("MSR 0xce has flags 0x4"), "{}", last_error());
        // SAFETY: as above, with a version before any policy format.
        let status = unsafe {
            cpupolicy_policy_from_xen(leaves.as_ptr(), nr_leaves, msrs.as_ptr(), 0, c"4.13".as_ptr(), &mut refused)
        };
        assert_eq!(status, CPUPOLICY_INVALID_ARGUMENT);
        // SAFETY: a NULL array with a non-zero count is reported.
        let status = unsafe { cpupolicy_policy_from_xen(null(), 2, null(), 0, null(), &mut refused) };
        assert_eq!((status, last_error().as_str()), (CPUPOLICY_INVALID_ARGUMENT, "leaves is NULL"));
        assert_eq!(refused, std::ptr::dangling_mut::<cpupolicy_policy>());
        // SAFETY: live handles, not used afterwards.
        unsafe { (cpupolicy_policy_free(p), cpupolicy_policy_free(back)) };
    }

    /// Every byte of a caller's buffer before the call, to see what was written.
    const LEAF_CANARY: XenCpuidLeaf = XenCpuidLeaf {
        leaf: 0xdead_beef,
        subleaf: 0xdead_beef,
        a: 0xdead_beef,
        b: 0xdead_beef,
        c: 0xdead_beef,
        d: 0xdead_beef,
    };
    const MSR_CANARY: XenMsrEntry = XenMsrEntry { idx: 0xdead_beef, flags: 0xdead_beef, val: 0xdead_beef_dead_beef };

    /// Versions naming each layout (the newest; 4.14.0's one MSR; 4.16.0's leaf 7 sub-leaves)
    /// and the library's limits for them.
    const FORMATS: [(Option<&std::ffi::CStr>, WireLimits); 4] = [
        (None, WireLimits::LATEST),
        (Some(c"4.14.0"), WireLimits::XEN_4_14_0),
        (Some(c"4.16.0"), WireLimits::XEN_4_16_0),
        (Some(c"4.20.3"), WireLimits::XEN_4_17),
    ];

    /// What one call of `cpupolicy_policy_serialise` returned and left in the buffers.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        status: cpupolicy_status,
        nr_leaves: usize,
        nr_msrs: usize,
        leaves: Option<Vec<XenCpuidLeaf>>,
        msrs: Option<Vec<XenMsrEntry>>,
    }

    /// Calls `cpupolicy_policy_serialise` with buffers of these capacities full of canaries
    /// (`None`: a NULL buffer with a count of 0, the size query).
    fn serialise(
        p: *const cpupolicy_policy,
        version: Option<&std::ffi::CStr>,
        leaf_capacity: Option<usize>,
        msr_capacity: Option<usize>,
    ) -> Outcome {
        let mut leaves = leaf_capacity.map(|n| vec![LEAF_CANARY; n]);
        let mut msrs = msr_capacity.map(|n| vec![MSR_CANARY; n]);
        let (mut nr_leaves, mut nr_msrs) = (leaf_capacity.unwrap_or(0), msr_capacity.unwrap_or(0));
        // SAFETY: each buffer is NULL with a count of 0 or holds its count; the counts are valid
        // places; `version` is NULL or NUL-terminated.
        let status = unsafe {
            cpupolicy_policy_serialise(
                p,
                version.map_or(null(), |v| v.as_ptr()),
                leaves.as_mut().map_or(null_mut(), |l| l.as_mut_ptr()),
                &mut nr_leaves,
                msrs.as_mut().map_or(null_mut(), |m| m.as_mut_ptr()),
                &mut nr_msrs,
            )
        };
        Outcome { status, nr_leaves, nr_msrs, leaves, msrs }
    }

    /// The entries `cpupolicy_policy_to_xen_leaves` and `_msrs` give.
    fn to_xen(p: *const cpupolicy_policy, version: Option<&std::ffi::CStr>) -> (Vec<XenCpuidLeaf>, Vec<XenMsrEntry>) {
        let version = version.map_or(null(), |v| v.as_ptr());
        let (mut nr_leaves, mut nr_msrs) = (0, 0);
        // SAFETY: size queries (NULL, 0) with valid places for the counts.
        unsafe {
            assert_eq!(cpupolicy_policy_to_xen_leaves(p, version, null_mut(), 0, &mut nr_leaves), CPUPOLICY_OK);
            assert_eq!(cpupolicy_policy_to_xen_msrs(p, version, null_mut(), 0, &mut nr_msrs), CPUPOLICY_OK);
        }
        let (mut leaves, mut msrs) = (vec![LEAF_CANARY; nr_leaves], vec![MSR_CANARY; nr_msrs]);
        // SAFETY: the buffers hold the counts given.
        unsafe {
            assert_eq!(
                cpupolicy_policy_to_xen_leaves(p, version, leaves.as_mut_ptr(), nr_leaves, null_mut()),
                CPUPOLICY_OK
            );
            assert_eq!(cpupolicy_policy_to_xen_msrs(p, version, msrs.as_mut_ptr(), nr_msrs, null_mut()), CPUPOLICY_OK);
        }
        (leaves, msrs)
    }

    /// The constructed policy and, when `../shared` is beside the checkout, every real CPU dump
    /// of `cpu-dumps/libvirt` and every system policy that real Xen printed in `xen-reference`:
    /// (name, handle), the caller frees the handles.
    fn policies() -> Vec<(String, *mut cpupolicy_policy)> {
        let mut out = vec![("constructed Intel".to_string(), intel())];
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
        let files = |sub: &str, suffix: &str| -> Vec<std::path::PathBuf> {
            let Ok(entries) = std::fs::read_dir(shared.join(sub)) else {
                eprintln!("SKIP: {} is absent; only the constructed policy is serialised", shared.join(sub).display());
                return Vec::new();
            };
            let mut paths: Vec<_> = entries
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            paths.sort();
            paths
        };
        let c_path = |path: &std::path::Path| std::ffi::CString::new(path.to_string_lossy().into_owned()).unwrap();
        for path in files("cpu-dumps/libvirt", ".xml") {
            let mut p = null_mut();
            // SAFETY: a NUL-terminated path; `p` a valid place.
            let status = unsafe { cpupolicy_policy_read(c_path(&path).as_ptr(), &mut p) };
            assert_eq!(status, CPUPOLICY_OK, "{}", last_error());
            out.push((path.display().to_string(), p));
        }
        for path in files("xen-reference", ".policy.txt") {
            let mut host = null_mut();
            // SAFETY: a NUL-terminated path; `host` a valid place.
            let status = unsafe { crate::host::cpupolicy_host_read(c_path(&path).as_ptr(), &mut host) };
            assert_eq!(status, CPUPOLICY_OK, "{}", last_error());
            for which in 0..=crate::host::CPUPOLICY_SYSTEM_HVM_DEFAULT {
                let mut p = null_mut();
                // SAFETY: `host` is live; `p` a valid place.
                if unsafe { crate::host::cpupolicy_host_policy(host, which, &mut p) } == CPUPOLICY_OK {
                    out.push((format!("{} system policy {which}", path.display()), p));
                }
            }
            // SAFETY: the live handle, not used afterwards.
            unsafe { crate::host::cpupolicy_host_free(host) };
        }
        out
    }

    fn free_all(policies: Vec<(String, *mut cpupolicy_policy)>) {
        for (_, p) in policies {
            // SAFETY: live handles from `policies`, not used afterwards.
            assert_eq!(unsafe { cpupolicy_policy_free(p) }, CPUPOLICY_OK);
        }
    }

    /// Runs `check` on every policy of [`policies`] in every format of [`FORMATS`], with what
    /// `to_wire` gives for it and a label naming both.
    fn each_serialisation(
        mut check: impl FnMut(*mut cpupolicy_policy, Option<&std::ffi::CStr>, &policy::WirePolicy, &str),
    ) {
        let all = policies();
        for (name, p) in &all {
            for (version, limits) in FORMATS {
                // SAFETY: a live policy handle, only read here.
                let expected = unsafe { &(**p).value }.to_wire(&limits);
                check(*p, version, &expected, &format!("{name}, Xen {version:?}"));
            }
        }
        free_all(all);
    }

    #[test]
    fn serialise_writes_what_to_wire_and_the_array_functions_give() {
        each_serialisation(|p, version, expected, what| {
            let (nl, nm) = (expected.leaves.len(), expected.msrs.len());
            // Exact sizes: everything written, the counts are the entries.
            let exact = serialise(p, version, Some(nl), Some(nm));
            let written = Outcome {
                status: CPUPOLICY_OK,
                nr_leaves: nl,
                nr_msrs: nm,
                leaves: Some(expected.leaves.clone()),
                msrs: Some(expected.msrs.clone()),
            };
            assert_eq!(exact, written, "{what}: {}", last_error());
            assert_eq!(last_error(), "");
            // The array functions, now over the same serialisation, give the same entries.
            assert_eq!(to_xen(p, version), (expected.leaves.clone(), expected.msrs.clone()), "{what}");
            // Larger buffers: the entries, then the rest untouched.
            let large = serialise(p, version, Some(nl + 3), Some(nm + 1));
            assert_eq!((large.status, large.nr_leaves, large.nr_msrs), (CPUPOLICY_OK, nl, nm), "{what}");
            let (leaves, msrs) = (large.leaves.unwrap(), large.msrs.unwrap());
            assert_eq!((&leaves[..nl], &msrs[..nm]), (&expected.leaves[..], &expected.msrs[..]), "{what}");
            assert!(leaves[nl..].iter().all(|l| *l == LEAF_CANARY), "{what}");
            assert!(msrs[nm..].iter().all(|m| *m == MSR_CANARY), "{what}");
        });
    }

    #[test]
    fn serialise_into_a_short_buffer_writes_nothing_and_names_the_need() {
        each_serialisation(|p, version, expected, what| {
            let (nl, nm) = (expected.leaves.len(), expected.msrs.len());
            let untouched = |leaves: Option<usize>, msrs: Option<usize>| Outcome {
                status: CPUPOLICY_BUFFER_TOO_SMALL,
                nr_leaves: nl,
                nr_msrs: nm,
                leaves: leaves.map(|n| vec![LEAF_CANARY; n]),
                msrs: msrs.map(|n| vec![MSR_CANARY; n]),
            };
            // One leaf short: neither buffer written, both counts what is needed.
            assert_eq!(serialise(p, version, Some(nl - 1), Some(nm)), untouched(Some(nl - 1), Some(nm)), "{what}");
            assert_eq!(last_error(), format!("leaves: buffer of {} too small: {nl} needed", nl - 1));
            // One MSR short.
            assert_eq!(serialise(p, version, Some(nl), Some(nm - 1)), untouched(Some(nl), Some(nm - 1)), "{what}");
            assert_eq!(last_error(), format!("msrs: buffer of {} too small: {nm} needed", nm - 1));
            // Both short: both named.
            assert_eq!(serialise(p, version, Some(2), Some(0)), untouched(Some(2), Some(0)), "{what}");
            assert_eq!(
                last_error(),
                format!("leaves: buffer of 2 too small: {nl} needed; msrs: buffer of 0 too small: {nm} needed")
            );
            // A size query beside a short buffer: still too small, nothing written.
            assert_eq!(serialise(p, version, None, Some(nm - 1)), untouched(None, Some(nm - 1)), "{what}");
            assert_eq!(serialise(p, version, Some(nl - 1), None), untouched(Some(nl - 1), None), "{what}");
        });
    }

    #[test]
    fn serialise_size_queries_count_each_array() {
        each_serialisation(|p, version, expected, what| {
            let (nl, nm) = (expected.leaves.len(), expected.msrs.len());
            let result = |leaves: Option<Vec<XenCpuidLeaf>>, msrs: Option<Vec<XenMsrEntry>>| Outcome {
                status: CPUPOLICY_OK,
                nr_leaves: nl,
                nr_msrs: nm,
                leaves,
                msrs,
            };
            assert_eq!(serialise(p, version, None, None), result(None, None), "{what}");
            // One array queried, the other written.
            let msrs_only = serialise(p, version, None, Some(nm));
            assert_eq!(msrs_only, result(None, Some(expected.msrs.clone())), "{what}");
            let leaves_only = serialise(p, version, Some(nl), None);
            assert_eq!(leaves_only, result(Some(expected.leaves.clone()), None), "{what}");
        });
    }

    #[test]
    fn serialise_refuses_bad_arguments_touching_nothing() {
        let p = intel();
        let set = Featureset::new().into_handle();
        let mut leaves = [LEAF_CANARY; 64];
        let mut msrs = [MSR_CANARY; 2];
        // Each call with buffers of 64 leaves and 2 MSRs (enough for `p`), all else as given.
        let call = |policy: *const cpupolicy_policy,
                    version: *const c_char,
                    leaves: *mut XenCpuidLeaf,
                    nr_leaves: Option<usize>,
                    msrs: *mut XenMsrEntry,
                    nr_msrs: Option<usize>| {
            let (mut l, mut m) = (nr_leaves.unwrap_or(0), nr_msrs.unwrap_or(0));
            let l_ptr: *mut usize = if nr_leaves.is_some() { &mut l } else { null_mut() };
            let m_ptr: *mut usize = if nr_msrs.is_some() { &mut m } else { null_mut() };
            // SAFETY: the buffers hold 64 leaves and 2 MSRs, at least the counts given; the
            // counts are NULL or valid places; `version` is NULL or NUL-terminated.
            let status = unsafe { cpupolicy_policy_serialise(policy, version, leaves, l_ptr, msrs, m_ptr) };
            (status, last_error(), l, m)
        };
        let (l, m) = (leaves.as_mut_ptr(), msrs.as_mut_ptr());
        let refused = |status, message: &str| (status, message.to_string(), 64, 2);
        assert_eq!(
            call(null(), null(), l, Some(64), m, Some(2)),
            refused(CPUPOLICY_INVALID_ARGUMENT, "policy is NULL")
        );
        assert_eq!(
            call(set.cast(), null(), l, Some(64), m, Some(2)),
            refused(CPUPOLICY_WRONG_HANDLE, "policy: expected a policy, got a handle of another type")
        );
        assert_eq!(
            call(p, c"four".as_ptr(), l, Some(64), m, Some(2)),
            refused(CPUPOLICY_INVALID_ARGUMENT, "xen_version 'four' is not a Xen version such as 4.20.3")
        );
        assert_eq!(
            call(p, c"4.13".as_ptr(), l, Some(64), m, Some(2)),
            refused(CPUPOLICY_INVALID_ARGUMENT, "Xen 4.13 predates 4.14: no CPU policy format is known")
        );
        assert_eq!(call(p, null(), l, None, m, Some(2)).0, CPUPOLICY_INVALID_ARGUMENT);
        assert_eq!(last_error(), "nr_leaves is NULL");
        assert_eq!(call(p, null(), l, Some(64), m, None).0, CPUPOLICY_INVALID_ARGUMENT);
        assert_eq!(last_error(), "nr_msrs is NULL");
        assert_eq!(
            call(p, null(), null_mut(), Some(64), m, Some(2)),
            (CPUPOLICY_INVALID_ARGUMENT, "leaves is NULL but *nr_leaves is 64".to_string(), 64, 2)
        );
        assert_eq!(
            call(p, null(), l, Some(64), null_mut(), Some(2)),
            (CPUPOLICY_INVALID_ARGUMENT, "msrs is NULL but *nr_msrs is 2".to_string(), 64, 2)
        );
        assert!(leaves.iter().all(|e| *e == LEAF_CANARY) && msrs.iter().all(|e| *e == MSR_CANARY));
        // A freed handle, checked right after its free on this thread (nothing allocated
        // between, so its address names no new policy): refused without being read.
        let freed = intel();
        // SAFETY: a live handle, not used afterwards but as the freed pointer below.
        assert_eq!(unsafe { cpupolicy_policy_free(freed) }, CPUPOLICY_OK);
        let (mut nl, mut nm) = (64, 2);
        // SAFETY: the library looks a handle up before touching it; the rest as above.
        let status = unsafe { cpupolicy_policy_serialise(freed, null(), l, &mut nl, m, &mut nm) };
        assert_eq!((status, nl, nm), (CPUPOLICY_WRONG_HANDLE, 64, 2));
        assert!(last_error().starts_with("policy: expected a policy, got a pointer that is not a live handle"));
        assert!(leaves.iter().all(|e| *e == LEAF_CANARY) && msrs.iter().all(|e| *e == MSR_CANARY));
        // SAFETY: live handles, not used afterwards.
        unsafe {
            cpupolicy_policy_free(p);
            crate::featureset::cpupolicy_featureset_free(set);
        }
    }

    #[test]
    fn fields_refuse_read_only_and_out_of_range() {
        let p = intel();
        let mut value = 0;
        // SAFETY: `p` is a live policy handle; `value` a valid place.
        unsafe {
            assert_eq!(cpupolicy_policy_field(p, CPUPOLICY_FIELD_MODEL, &mut value), CPUPOLICY_OK);
            assert_eq!(value, 0x3c);
            assert_eq!(cpupolicy_policy_field(p, 99, &mut value), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_SIGNATURE, 1), CPUPOLICY_INVALID_ARGUMENT);
            assert!(last_error().contains("read-only"));
            assert_eq!(
                cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS, 300),
                CPUPOLICY_INVALID_ARGUMENT
            );
            assert_eq!(cpupolicy_policy_set_field(p, CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS, 48), CPUPOLICY_OK);
            assert_eq!(cpupolicy_policy_field(p, CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS, &mut value), CPUPOLICY_OK);
            assert_eq!(value, 48);
            assert_eq!(
                cpupolicy_policy_set_field(null_mut(), CPUPOLICY_FIELD_MAX_LIN_ADDR_BITS, 48),
                CPUPOLICY_INVALID_ARGUMENT
            );
            cpupolicy_policy_free(p);
        }
    }

    #[test]
    fn other_handles_are_refused() {
        let set = Featureset::new().into_handle();
        let mut needed = 0;
        // SAFETY: a live featureset handle passed where a policy is expected: the tag tells.
        let status = unsafe { cpupolicy_policy_to_json(set.cast(), null_mut(), 0, &mut needed) };
        assert_eq!(status, CPUPOLICY_WRONG_HANDLE);
        assert_eq!(last_error(), "policy: expected a policy, got a handle of another type");
        // SAFETY: as above, for the free function: nothing is freed.
        assert_eq!(unsafe { cpupolicy_policy_free(set.cast()) }, CPUPOLICY_WRONG_HANDLE);
        // SAFETY: the live featureset handle, not used afterwards.
        unsafe { crate::featureset::cpupolicy_featureset_free(set) };
    }

    #[test]
    fn dropped_entries_are_listed_and_versions_checked() {
        let p = intel();
        let entry = XenCpuidLeaf { leaf: 0x1f, subleaf: 0, a: 1, b: 2, c: 0x100, d: 0 };
        // SAFETY: `p` is a live policy handle; `entry` a valid place.
        assert_eq!(unsafe { cpupolicy_policy_set_cpuid(p, &entry) }, CPUPOLICY_OK);
        // SAFETY: `p` is live; the closure passes the harness's buffers.
        let dropped = text(|b, c, n| unsafe { cpupolicy_policy_xen_dropped(p, null(), b, c, n) }).unwrap();
        assert!(dropped.starts_with("leaf 0x0000001f:0x0 "), "{dropped}");
        // SAFETY: as above.
        let bad = text(|b, c, n| unsafe { cpupolicy_policy_xen_dropped(p, c"4".as_ptr(), b, c, n) });
        assert_eq!(bad, Err(CPUPOLICY_INVALID_ARGUMENT));
        // SAFETY: the live handle, not used afterwards.
        unsafe { cpupolicy_policy_free(p) };
    }
}
