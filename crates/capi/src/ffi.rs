//! The shared machinery of the C ABI: status codes, the last-error message, the panic
//! boundary, handle tagging, and checked access to C pointers and buffers.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Result of every function. The numbers are part of the ABI: never renumbered, never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum cpupolicy_status {
    /// Success.
    CPUPOLICY_OK = 0,
    /// A required pointer was NULL, or an argument was out of range.
    CPUPOLICY_INVALID_ARGUMENT = 1,
    /// The caller's buffer is too small; `*needed` holds the size required.
    CPUPOLICY_BUFFER_TOO_SMALL = 2,
    /// A handle of another type (or not a live handle from this library) was passed.
    CPUPOLICY_WRONG_HANDLE = 3,
    /// Input text or data could not be parsed (see `cpupolicy_last_error`).
    CPUPOLICY_PARSE_ERROR = 4,
    /// A feature name is not known.
    CPUPOLICY_UNKNOWN_FEATURE = 5,
    /// A value does not fit where it must go (e.g. featureset words beyond the receiver's).
    CPUPOLICY_DOES_NOT_FIT = 6,
    /// A string argument is not valid UTF-8.
    CPUPOLICY_INVALID_UTF8 = 7,
    /// The input is a valid document of another kind: a host's policies where one policy was
    /// expected, or the reverse.
    CPUPOLICY_WRONG_DOCUMENT = 8,
    /// The host, bundle or hypervisor has no such policy or featureset (e.g. no HVM support).
    CPUPOLICY_NOT_AVAILABLE = 9,
    /// No Xen privcmd device: not running in a Xen domain, or the driver is not loaded.
    CPUPOLICY_NO_PRIVCMD = 10,
    /// The operating system or Xen refused the operation to this caller (run as root in dom0).
    CPUPOLICY_PERMISSION_DENIED = 11,
    /// The domain does not exist.
    CPUPOLICY_NO_SUCH_DOMAIN = 12,
    /// Xen (or Xen's policy format) refused a policy; the message names the leaf, sub-leaf or MSR.
    CPUPOLICY_POLICY_REJECTED = 13,
    /// Another failure talking to Xen (the message has the operation and errno).
    CPUPOLICY_XEN_ERROR = 14,
    /// Hosts or policies of different CPU vendors cannot be levelled together.
    CPUPOLICY_MIXED_VENDORS = 15,
    /// A topology shape cannot be built, or its leaves cannot be written to the policy.
    CPUPOLICY_INVALID_TOPOLOGY = 16,
    /// A raw policy describes a CPU the modelled Xen could not boot on, or contradicts the options.
    CPUPOLICY_UNSUPPORTED_CPU = 17,
    /// A file could not be read (the message has the path and the operating system's error).
    CPUPOLICY_IO_ERROR = 18,
    /// A bug in the library (a caught panic); the message says where.
    CPUPOLICY_INTERNAL_ERROR = 99,
}

use cpupolicy_status::*;

/// Every status, for turning a number from C back into one.
const STATUSES: [cpupolicy_status; 20] = [
    CPUPOLICY_OK,
    CPUPOLICY_INVALID_ARGUMENT,
    CPUPOLICY_BUFFER_TOO_SMALL,
    CPUPOLICY_WRONG_HANDLE,
    CPUPOLICY_PARSE_ERROR,
    CPUPOLICY_UNKNOWN_FEATURE,
    CPUPOLICY_DOES_NOT_FIT,
    CPUPOLICY_INVALID_UTF8,
    CPUPOLICY_WRONG_DOCUMENT,
    CPUPOLICY_NOT_AVAILABLE,
    CPUPOLICY_NO_PRIVCMD,
    CPUPOLICY_PERMISSION_DENIED,
    CPUPOLICY_NO_SUCH_DOMAIN,
    CPUPOLICY_POLICY_REJECTED,
    CPUPOLICY_XEN_ERROR,
    CPUPOLICY_MIXED_VENDORS,
    CPUPOLICY_INVALID_TOPOLOGY,
    CPUPOLICY_UNSUPPORTED_CPU,
    CPUPOLICY_IO_ERROR,
    CPUPOLICY_INTERNAL_ERROR,
];

/// The static name of a status, e.g. `"buffer too small"`; a number that is no status (the
/// parameter is an `int` so that any value is safe to pass) gets `"unknown status"`. Never
/// NULL; the string is static. Thread-safe.
#[no_mangle]
pub extern "C" fn cpupolicy_strerror(status: std::ffi::c_int) -> *const c_char {
    let Some(status) = STATUSES.into_iter().find(|s| *s as std::ffi::c_int == status) else {
        return c"unknown status".as_ptr();
    };
    let text: &'static CStr = match status {
        CPUPOLICY_OK => c"success",
        CPUPOLICY_INVALID_ARGUMENT => c"invalid argument (NULL pointer or value out of range)",
        CPUPOLICY_BUFFER_TOO_SMALL => c"buffer too small",
        CPUPOLICY_WRONG_HANDLE => c"wrong handle type",
        CPUPOLICY_PARSE_ERROR => c"parse error",
        CPUPOLICY_UNKNOWN_FEATURE => c"unknown feature name",
        CPUPOLICY_DOES_NOT_FIT => c"value does not fit",
        CPUPOLICY_INVALID_UTF8 => c"string is not valid UTF-8",
        CPUPOLICY_WRONG_DOCUMENT => c"document of another kind",
        CPUPOLICY_NOT_AVAILABLE => c"not available on this host",
        CPUPOLICY_NO_PRIVCMD => c"no Xen privcmd device (not in a Xen domain, or the driver is not loaded)",
        CPUPOLICY_PERMISSION_DENIED => c"permission denied",
        CPUPOLICY_NO_SUCH_DOMAIN => c"no such domain",
        CPUPOLICY_POLICY_REJECTED => c"policy rejected",
        CPUPOLICY_XEN_ERROR => c"Xen operation failed",
        CPUPOLICY_MIXED_VENDORS => c"CPU vendors differ",
        CPUPOLICY_INVALID_TOPOLOGY => c"invalid topology",
        CPUPOLICY_UNSUPPORTED_CPU => c"unsupported CPU",
        CPUPOLICY_IO_ERROR => c"file could not be read",
        CPUPOLICY_INTERNAL_ERROR => c"internal error",
    };
    text.as_ptr()
}

/// The library version as a static NUL-terminated string, e.g. `"0.1.0"`. Thread-safe.
#[no_mangle]
pub extern "C" fn cpupolicy_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Copies the calling thread's last error message (empty after a success) into `buffer` as a
/// NUL-terminated string. Size-query convention: `*needed` receives the size including the NUL;
/// `buffer` NULL with `capacity` 0 is the size query (OK); `capacity` too small gets
/// `CPUPOLICY_BUFFER_TOO_SMALL`; `buffer` NULL with a non-zero `capacity` is a contradiction and
/// gets `CPUPOLICY_INVALID_ARGUMENT`. Nothing is written to `buffer` unless all of the message
/// fits. `needed` may be NULL. Thread-safe: each thread has its own message.
///
/// # Safety
/// `buffer` must be NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_last_error(
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    let message = LAST_ERROR.with(|m| m.borrow().clone());
    // SAFETY: the caller guarantees `buffer`/`capacity` and `needed` per this function's contract.
    unsafe { write_c_string(&message, buffer, capacity, needed) }
}

/// "No entry": the value of a `cpupolicy_rejection` field that names nothing, as Xen's `~0`.
pub const CPUPOLICY_REJECTION_NONE: u32 = u32::MAX;

/// Why a policy was refused, in Xen's terms: what `XEN_DOMCTL_set_cpu_policy` returns (the
/// errno and its `err_leaf`, `err_subleaf`, `err_msr`), for a refusal by Xen itself and for one
/// this library predicts from Xen's rules (`cpupolicy_policy_from_xen`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct cpupolicy_rejection {
    /// The errno as Xen (and Linux) number it: E2BIG 7, EINVAL 22, ERANGE 34, EOVERFLOW 75,
    /// EEXIST 17, …
    pub error_number: i32,
    /// The leaf at fault, or `CPUPOLICY_REJECTION_NONE`.
    pub leaf: u32,
    /// The sub-leaf at fault, or `CPUPOLICY_REJECTION_NONE` (also for a leaf without sub-leaves).
    pub subleaf: u32,
    /// The MSR at fault, or `CPUPOLICY_REJECTION_NONE`.
    pub msr: u32,
}

thread_local! {
    static LAST_REJECTION: std::cell::Cell<Option<cpupolicy_rejection>> = const { std::cell::Cell::new(None) };
}

/// Copies why the calling thread's last call had its policy refused (it returned
/// `CPUPOLICY_POLICY_REJECTED`) into `*out`: the errno and the leaf, sub-leaf and MSR Xen names,
/// `CPUPOLICY_REJECTION_NONE` where it names none. When the last call refused no policy,
/// `CPUPOLICY_NOT_AVAILABLE` and `*out` is untouched; `out` NULL gets
/// `CPUPOLICY_INVALID_ARGUMENT`. Like `cpupolicy_last_error`, it changes neither the last error
/// message nor the rejection: both stay readable, in either order, until the next other call.
/// Thread-safe: each thread has its own.
///
/// # Safety
/// `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_last_rejection(out: *mut cpupolicy_rejection) -> cpupolicy_status {
    if out.is_null() {
        return CPUPOLICY_INVALID_ARGUMENT;
    }
    match LAST_REJECTION.with(|r| r.get()) {
        None => CPUPOLICY_NOT_AVAILABLE,
        Some(rejection) => {
            // SAFETY: non-NULL and valid for a write per this function's contract.
            unsafe { out.write(rejection) };
            CPUPOLICY_OK
        }
    }
}

/// A failure to report: a status and the detail message for `cpupolicy_last_error`, and for a
/// refused policy what `cpupolicy_last_rejection` reports.
pub(crate) struct Failure {
    pub status: cpupolicy_status,
    pub message: String,
    pub rejection: Option<cpupolicy_rejection>,
}

impl Failure {
    pub fn new(status: cpupolicy_status, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into(), rejection: None }
    }

    /// A refused policy: `CPUPOLICY_POLICY_REJECTED` with Xen's account of it.
    pub fn rejected(message: impl Into<String>, rejection: cpupolicy_rejection) -> Failure {
        Failure { status: CPUPOLICY_POLICY_REJECTED, message: message.into(), rejection: Some(rejection) }
    }

    pub fn null(what: &str) -> Failure {
        Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("{what} is NULL"))
    }
}

/// The text of the file at the C string `path` (named in the message of any failure): a
/// `CPUPOLICY_IO_ERROR` when it cannot be read, a `CPUPOLICY_PARSE_ERROR` when it is not UTF-8.
///
/// # Safety
/// `path` NULL (reported) or a NUL-terminated string.
pub(crate) unsafe fn read_c_path(path: *const c_char) -> Result<(String, String), Failure> {
    // SAFETY: per this function's contract.
    let path = unsafe { c_str(path, "path")? }.to_string();
    let text = policy::read_input(std::path::Path::new(&path)).map_err(|e| {
        let status = match e {
            policy::InputError::NotUtf8(_) => CPUPOLICY_PARSE_ERROR,
            _ => CPUPOLICY_IO_ERROR,
        };
        Failure::new(status, format!("{path}: {e}"))
    })?;
    Ok((path, text))
}

impl Failure {
    /// The same failure, its message prefixed with where the input came from.
    pub fn in_file(self, path: &str) -> Failure {
        Failure { message: format!("{path}: {}", self.message), ..self }
    }
}

/// Runs an exported function's body: catches panics, records the message, returns the status.
/// Out-pointers must only be written by `body` after everything that can fail has succeeded.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> cpupolicy_status {
    let (status, message, rejection) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => (CPUPOLICY_OK, String::new(), None),
        Ok(Err(failure)) => (failure.status, failure.message, failure.rejection),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            (CPUPOLICY_INTERNAL_ERROR, format!("internal error: {what}"), None)
        }
    };
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
    LAST_REJECTION.with(|r| r.set(rejection));
    status
}

/// Tags at the start of every handle, to catch handles of the wrong type.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tag {
    Featureset = 0x4653_4554, // "FSET"
    Policy = 0x504f_4c49,     // "POLI"
    Host = 0x484f_5354,       // "HOST"
    Pool = 0x504f_4f4c,       // "POOL"
    Check = 0x4348_434b,      // "CHCK"
    Xen = 0x5845_4e5f,        // "XEN_"
    Topology = 0x544f_504f,   // "TOPO"
}

/// Every live handle's address and type. A handle is looked up here before its memory is
/// touched, so a freed handle (or any pointer this library did not hand out) is reported as
/// `CPUPOLICY_WRONG_HANDLE` without reading freed memory. What it cannot tell: a freed handle
/// whose address the allocator has since given to a new object of the same type names that new
/// object (the header says so).
fn live_handles() -> std::sync::MutexGuard<'static, std::collections::HashMap<usize, Tag>> {
    static LIVE: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<usize, Tag>>> =
        std::sync::OnceLock::new();
    // A panic while the lock was held cannot leave the map half-updated (each use is one call).
    LIVE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An opaque object handed to C. Every handle starts with a type tag so that a handle of the
/// wrong type is detected instead of misread, and is registered among the live handles.
#[repr(C)]
pub struct Handle<T> {
    tag: Tag,
    pub(crate) value: T,
}

/// Handle types: which tag identifies them.
pub(crate) trait Tagged: Sized {
    const TAG: Tag;
    const NAME: &'static str;

    /// Moves a value into a new handle for C.
    fn into_handle(self) -> *mut Handle<Self> {
        let ptr = Box::into_raw(Box::new(Handle { tag: Self::TAG, value: self }));
        live_handles().insert(ptr as usize, Self::TAG);
        ptr
    }
}

/// Borrows the value behind a handle, checking it is non-NULL and of the right type.
///
/// # Safety
/// `ptr` may be anything: it is only dereferenced when it is registered as a live handle of
/// type `T` (the handle must then not be freed by another thread during the call).
pub(crate) unsafe fn borrow<'a, T: Tagged>(ptr: *const Handle<T>, what: &str) -> Result<&'a T, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    let kind = match live_handles().get(&(ptr as usize)) {
        Some(&tag) if tag == T::TAG => None,
        Some(_) => Some("a handle of another type"),
        None => Some("a pointer that is not a live handle (freed, or not from this library)"),
    };
    if let Some(kind) = kind {
        return Err(Failure::new(
            cpupolicy_status::CPUPOLICY_WRONG_HANDLE,
            format!("{what}: expected a {}, got {kind}", T::NAME),
        ));
    }
    // SAFETY: registered as a live `Handle<T>` created by `into_handle` and not yet freed.
    Ok(unsafe { &(*ptr).value })
}

/// Takes a handle's value back, unregistering it (tests build handles and unwrap them).
///
/// # Safety
/// `ptr` a live handle of type `T`, not used afterwards.
#[cfg(test)]
pub(crate) unsafe fn take<T: Tagged>(ptr: *mut Handle<T>) -> T {
    live_handles().remove(&(ptr as usize));
    // SAFETY: per this function's contract.
    unsafe { Box::from_raw(ptr) }.value
}

/// Borrows the value behind a handle mutably, checking it is non-NULL and of the right type.
///
/// # Safety
/// As for [`borrow`]; in addition the caller must not use the handle elsewhere during the call
/// (the C contract: one handle is not written concurrently).
pub(crate) unsafe fn borrow_mut<'a, T: Tagged>(ptr: *mut Handle<T>, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: as for `borrow`, which checks the tag.
    unsafe { borrow(ptr.cast_const(), what)? };
    // SAFETY: a live handle of this type, and the caller does not share it during the call.
    Ok(unsafe { &mut (*ptr).value })
}

/// Frees a handle created by `into_handle`; NULL is a no-op.
///
/// # Safety
/// As for [`borrow`]; the handle must not be used afterwards.
pub(crate) unsafe fn free<T: Tagged>(ptr: *mut Handle<T>, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    // Checked and unregistered under one lock, so two threads freeing the same handle cannot
    // both free it.
    {
        let mut live = live_handles();
        match live.get(&(ptr as usize)) {
            Some(&tag) if tag == T::TAG => {}
            found => {
                let kind = if found.is_some() {
                    "a handle of another type"
                } else {
                    "a pointer that is not a live handle (already freed, or not from this library)"
                };
                return Err(Failure::new(
                    cpupolicy_status::CPUPOLICY_WRONG_HANDLE,
                    format!("{what}: expected a {}, got {kind}", T::NAME),
                ));
            }
        }
        live.remove(&(ptr as usize));
    }
    // SAFETY: it was a live handle of this type, created by `Box::into_raw`, and is no longer
    // registered, so no other call can reach it.
    drop(unsafe { Box::from_raw(ptr) });
    Ok(())
}

/// Writes a handle to an out-pointer.
///
/// # Safety
/// `out` must be NULL (reported) or valid for a pointer write.
pub(crate) unsafe fn put<T: Tagged>(out: *mut *mut Handle<T>, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null("out"));
    }
    // SAFETY: non-NULL and valid for writes per the caller's contract.
    unsafe { out.write(value.into_handle()) };
    Ok(())
}

/// Refuses a NULL out-pointer before any other work, so that a NULL out-pointer gets
/// `CPUPOLICY_INVALID_ARGUMENT` whatever else is wrong with the call (every function that fills
/// one checks it first; [`put`] and [`put_value`] check again where they write).
pub(crate) fn require<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(())
    }
}

/// Writes a plain value to an out-pointer.
///
/// # Safety
/// `out` must be NULL (reported) or valid for a write of `T`.
pub(crate) unsafe fn put_value<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and valid for writes per the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Borrows a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` must be NULL or a valid NUL-terminated string that outlives the call.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes
        .to_str()
        .map_err(|_| Failure::new(cpupolicy_status::CPUPOLICY_INVALID_UTF8, format!("{what} is not valid UTF-8")))
}

/// Borrows an optional NUL-terminated UTF-8 string argument: NULL is `None`.
///
/// # Safety
/// As for [`c_str`].
pub(crate) unsafe fn opt_c_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { c_str(ptr, what) }.map(Some)
}

/// The most hosts or policies one call levels: far beyond any real pool.
pub(crate) const MAX_POOL_HOSTS: usize = 1 << 20;
/// The most bytes of a topology migration record (a header and 8 bytes per vCPU).
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 24;

/// Borrows an array argument of `len` elements; `ptr` may be NULL only when `len` is 0.
///
/// # Safety
/// `ptr` NULL or valid for `len` reads of `T`, not written during the call. A `len` above
/// `max` is refused before `ptr` is read.
pub(crate) unsafe fn c_slice<'a, T>(ptr: *const T, len: usize, max: usize, what: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    // A count no caller can mean is refused before anything is read or allocated for it.
    if len > max {
        return Err(Failure::new(
            CPUPOLICY_INVALID_ARGUMENT,
            format!("{what}: {len} entries; at most {max} are accepted"),
        ));
    }
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and valid for `len` reads per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The body of every function that renders a handle's value as text for C: checks the handle,
/// renders, and copies the NUL-terminated text with the size-query convention.
///
/// # Safety
/// `handle` NULL or a handle from this library; `buffer` NULL or valid for `capacity` bytes;
/// `needed` NULL or valid for a write.
pub(crate) unsafe fn text_of<T: Tagged>(
    handle: *const Handle<T>,
    what: &str,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
    render: impl FnOnce(&T) -> Result<String, Failure>,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let value = unsafe { borrow(handle, what)? };
        let text = render(value)?;
        // SAFETY: per this function's contract.
        unsafe { output(text.as_bytes(), true, buffer.cast(), capacity, needed) }
    })
}

/// An out-of-range value of one of the `u32` enumerations.
pub(crate) fn out_of_range(what: &str, value: u32) -> Failure {
    Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("{what} {value} is not one of the defined values"))
}

/// Copies `text` plus a NUL into a caller buffer with the size-query convention.
///
/// # Safety
/// `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid for a write.
pub(crate) unsafe fn write_c_string(
    text: &str,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: forwarded contract.
    unsafe { write_slice(text.as_bytes(), true, buffer.cast::<u8>(), capacity, needed) }
}

/// Copies `items` (plus a zero terminator when `nul`) into a caller buffer of `capacity`
/// elements, with the size-query convention. Returns OK, BUFFER_TOO_SMALL when `buffer` is too
/// short (with `*needed` set, as the convention asks), INVALID_ARGUMENT when it is NULL with a
/// non-zero capacity (and `*needed` untouched, like every out-pointer on failure); a NULL buffer
/// with capacity 0 is a size query and returns OK.
///
/// # Safety
/// `buffer` NULL or valid for `capacity` elements; `needed` NULL or valid for a write.
pub(crate) unsafe fn write_slice<T: Copy + Default>(
    items: &[T],
    nul: bool,
    buffer: *mut T,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    if buffer.is_null() && capacity != 0 {
        return CPUPOLICY_INVALID_ARGUMENT;
    }
    let size = items.len() + usize::from(nul);
    if !needed.is_null() {
        // SAFETY: non-NULL and valid per the caller's contract.
        unsafe { needed.write(size) };
    }
    if buffer.is_null() {
        return CPUPOLICY_OK;
    }
    if capacity < size {
        return CPUPOLICY_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buffer` holds at least `size` elements; source and destination cannot overlap
    // (the source is this library's own memory).
    unsafe {
        std::ptr::copy_nonoverlapping(items.as_ptr(), buffer, items.len());
        if nul {
            buffer.add(items.len()).write(T::default());
        }
    }
    CPUPOLICY_OK
}

/// Wraps [`write_slice`] for use inside [`guard`], turning its status into a `Failure`.
///
/// # Safety
/// As for [`write_slice`].
pub(crate) unsafe fn output<T: Copy + Default>(
    items: &[T],
    nul: bool,
    buffer: *mut T,
    capacity: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    match unsafe { write_slice(items, nul, buffer, capacity, needed) } {
        CPUPOLICY_OK => Ok(()),
        CPUPOLICY_BUFFER_TOO_SMALL => Err(Failure::new(
            CPUPOLICY_BUFFER_TOO_SMALL,
            format!("buffer of {capacity} too small: {} needed", items.len() + usize::from(nul)),
        )),
        status => Err(Failure::new(status, "buffer is NULL but capacity is not 0")),
    }
}

/// Helpers for the unit tests: the last error as a `String`, and text outputs.
#[cfg(test)]
pub(crate) mod testing {
    use std::ffi::{c_char, CStr};
    use std::ptr::null_mut;

    use super::cpupolicy_status::*;
    use super::{cpupolicy_last_error, cpupolicy_status};

    /// The calling thread's last error message.
    pub fn last_error() -> String {
        let mut buffer = vec![0 as c_char; 4096];
        // SAFETY: the buffer holds `buffer.len()` bytes; `needed` may be NULL.
        let status = unsafe { cpupolicy_last_error(buffer.as_mut_ptr(), buffer.len(), null_mut()) };
        assert_eq!(status, CPUPOLICY_OK);
        // SAFETY: on success the function wrote a NUL-terminated string into the buffer.
        unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Calls a text function with the size-query convention: size, then text.
    pub fn text(call: impl Fn(*mut c_char, usize, *mut usize) -> cpupolicy_status) -> Result<String, cpupolicy_status> {
        let mut needed = 0;
        match call(null_mut(), 0, &mut needed) {
            CPUPOLICY_OK => {}
            status => return Err(status),
        }
        let mut buffer = vec![0 as c_char; needed];
        match call(buffer.as_mut_ptr(), needed, null_mut()) {
            CPUPOLICY_OK => {}
            status => return Err(status),
        }
        // SAFETY: on success the function wrote a NUL-terminated string into the buffer.
        Ok(unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_slice_sets_needed_on_success_and_short_buffers_only() {
        let items = [1u32, 2, 3];
        let mut buffer = [0u32; 4];
        let mut needed = 77usize;
        // A NULL buffer with a capacity is refused and leaves `*needed` alone.
        // SAFETY: `needed` is valid; the buffer is NULL.
        let status = unsafe { write_slice(&items, true, std::ptr::null_mut(), 4, &mut needed) };
        assert_eq!((status, needed), (CPUPOLICY_INVALID_ARGUMENT, 77));
        // A size query, a short buffer and a fitting one all say what is needed.
        // SAFETY: as above, capacity 0.
        let status = unsafe { write_slice(&items, true, std::ptr::null_mut(), 0, &mut needed) };
        assert_eq!((status, needed), (CPUPOLICY_OK, 4));
        needed = 0;
        // SAFETY: `buffer` holds 4 elements; 3 are claimed.
        let status = unsafe { write_slice(&items, true, buffer.as_mut_ptr(), 3, &mut needed) };
        assert_eq!((status, needed, buffer), (CPUPOLICY_BUFFER_TOO_SMALL, 4, [0; 4]));
        needed = 0;
        // SAFETY: `buffer` holds 4 elements.
        let status = unsafe { write_slice(&items, true, buffer.as_mut_ptr(), 4, &mut needed) };
        assert_eq!((status, needed, buffer), (CPUPOLICY_OK, 4, [1, 2, 3, 0]));
    }

    /// A panic inside an exported function's body becomes a status and a message, never an
    /// unwind into C; the next success clears the message.
    #[test]
    fn a_panic_becomes_an_internal_error() {
        let status = guard(|| -> Result<(), Failure> { panic!("deliberate failure in a test") });
        assert_eq!(status, CPUPOLICY_INTERNAL_ERROR);
        let message = testing::last_error();
        assert!(message.contains("deliberate failure in a test"), "{message}");
        assert_eq!(guard(|| Ok(())), CPUPOLICY_OK);
        assert_eq!(testing::last_error(), "");
    }

    /// Every status number names itself; numbers that are no status are said to be unknown.
    #[test]
    fn strerror_takes_any_number() {
        for status in STATUSES {
            // SAFETY: cpupolicy_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(cpupolicy_strerror(status as std::ffi::c_int)) };
            assert_ne!(text.to_str().unwrap(), "unknown status", "{status:?}");
        }
        for number in [-1, 19, 98, 100, i32::MAX] {
            // SAFETY: as above.
            let text = unsafe { CStr::from_ptr(cpupolicy_strerror(number)) };
            assert_eq!(text.to_str().unwrap(), "unknown status", "{number}");
        }
    }
}
