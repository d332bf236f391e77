//! Featuresets: parse, format, decode, names, set operations, static masks.

use std::ffi::c_char;

use featureset::{static_mask, Featureset, GuestKind, StaticMask};

use crate::ffi::*;

/// An opaque featureset handle. Create with `cpupolicy_featureset_parse`, `_from_words`,
/// `_new` or an operation; release with `cpupolicy_featureset_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_featureset = Handle<Featureset>;

impl Tagged for Featureset {
    const TAG: Tag = Tag::Featureset;
    const NAME: &'static str = "featureset";
}

/// Xen's static masks, for `cpupolicy_static_mask`: one of the `CPUPOLICY_MASK_*` values.
/// A plain integer so that an out-of-range value from C is an error status, not undefined behaviour.
#[allow(non_camel_case_types)]
pub type cpupolicy_mask = u32;
/// Every named feature.
pub const CPUPOLICY_MASK_KNOWN: cpupolicy_mask = 0;
/// `!`: features Xen derives or overrides.
pub const CPUPOLICY_MASK_SPECIAL: cpupolicy_mask = 1;
/// `|`: features accumulated (ORed) across a pool.
pub const CPUPOLICY_MASK_ACCUMULATE: cpupolicy_mask = 2;
/// PV guests by default.
pub const CPUPOLICY_MASK_PV_DEFAULT: cpupolicy_mask = 3;
/// PV guests at most.
pub const CPUPOLICY_MASK_PV_MAX: cpupolicy_mask = 4;
/// HVM shadow-paging guests by default.
pub const CPUPOLICY_MASK_HVM_SHADOW_DEFAULT: cpupolicy_mask = 5;
/// HVM shadow-paging guests at most.
pub const CPUPOLICY_MASK_HVM_SHADOW_MAX: cpupolicy_mask = 6;
/// HVM HAP guests by default.
pub const CPUPOLICY_MASK_HVM_HAP_DEFAULT: cpupolicy_mask = 7;
/// HVM HAP guests at most.
pub const CPUPOLICY_MASK_HVM_HAP_MAX: cpupolicy_mask = 8;

/// Set operations for `cpupolicy_featureset_combine`: one of the `CPUPOLICY_SET_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_set_op = u32;
/// Features in either.
pub const CPUPOLICY_SET_UNION: cpupolicy_set_op = 0;
/// Features in both.
pub const CPUPOLICY_SET_INTERSECTION: cpupolicy_set_op = 1;
/// Features in the first but not the second.
pub const CPUPOLICY_SET_DIFFERENCE: cpupolicy_set_op = 2;

pub(crate) fn parse_failure(error: featureset::Error) -> Failure {
    use featureset::Error::*;
    let status = match error {
        UnknownFeature { .. } => cpupolicy_status::CPUPOLICY_UNKNOWN_FEATURE,
        DoesNotFit { .. } => cpupolicy_status::CPUPOLICY_DOES_NOT_FIT,
        _ => cpupolicy_status::CPUPOLICY_PARSE_ERROR,
    };
    Failure::new(status, error.to_string())
}

/// The body of every function that renders a featureset as text for C.
///
/// # Safety
/// `set` a featureset handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
unsafe fn text_output(
    set: *const cpupolicy_featureset,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
    render: impl FnOnce(&Featureset) -> Result<String, Failure>,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_of(set, "set", buffer, capacity, needed, render) }
}

/// Parses `xen-cpuid`'s form (`178bfbfd:80002001:…`) or xapi's (`-`-separated; one separator
/// throughout) into a new featureset written to `*out`, keeping every word given (so
/// `cpupolicy_featureset_format` with the same separator writes the text back unchanged). The
/// empty string is the empty featureset (xapi stores it for a host without HVM). The caller
/// owns `*out`. `text` and `out` must not be NULL. Thread-safe.
///
/// # Safety
/// `text` a valid NUL-terminated string; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_parse(
    text: *const c_char,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let text = unsafe { c_str(text, "text")? };
        let (set, _) = Featureset::parse_styled(text).map_err(parse_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, set) }
    })
}

/// A new empty featureset in `*out`, owned by the caller. Thread-safe.
///
/// # Safety
/// `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_new(out: *mut *mut cpupolicy_featureset) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { put(out, Featureset::new()) })
}

/// A new featureset from `nr_words` words (word 0 first); `words` may be NULL when `nr_words`
/// is 0. The caller owns `*out`. Thread-safe.
///
/// # Safety
/// `words` valid for `nr_words` reads; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_from_words(
    words: *const u32,
    nr_words: usize,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: valid for `nr_words` reads per the contract; at most the words a feature
        // index can name (2048) are accepted.
        let slice = unsafe { c_slice(words, nr_words, MAX_FEATURESET_WORDS, "words")? };
        // SAFETY: per this function's contract.
        unsafe { put(out, Featureset::from_words(slice)) }
    })
}

/// The most words a featureset may have: the words Xen's feature indices (16 bits) can name,
/// as many as its text may carry.
const MAX_FEATURESET_WORDS: usize = featureset::MAX_TEXT_WORDS;

/// Releases a featureset. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `set` NULL or a featureset handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_free(set: *mut cpupolicy_featureset) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(set, "set") })
}

/// Copies the words into `words` (capacity `capacity` words); `*needed` receives the count.
/// Size query: `words` NULL and `capacity` 0. `needed` may be NULL. Thread-safe for readers.
///
/// # Safety
/// `set` a featureset handle; `words` NULL or valid for `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_words(
    set: *const cpupolicy_featureset,
    words: *mut u32,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let set = unsafe { borrow(set, "set")? };
        // SAFETY: per this function's contract.
        unsafe { output(set.words(), false, words, capacity, needed) }
    })
}

/// Formats the featureset as text: `separator` is `':'` (`xen-cpuid`) or `'-'` (xapi). Writes a
/// NUL-terminated string with the size-query convention (`*needed` includes the NUL).
///
/// # Safety
/// `set` a featureset handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_format(
    set: *const cpupolicy_featureset,
    separator: c_char,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_output(set, buffer, capacity, needed, |set| match separator as u8 {
            b':' => Ok(set.to_xen_string()),
            b'-' => Ok(set.to_xapi_string()),
            other => Err(Failure::new(
                cpupolicy_status::CPUPOLICY_INVALID_ARGUMENT,
                format!("separator {:?} is neither ':' nor '-'", other as char),
            )),
        })
    }
}

/// The set features' names, space-separated (unnamed bits as `<word*32+bit>`), NUL-terminated,
/// size-query convention.
///
/// # Safety
/// As for `cpupolicy_featureset_format`.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_names(
    set: *const cpupolicy_featureset,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe { text_output(set, buffer, capacity, needed, |set| Ok(set.names().join(" "))) }
}

/// The decoded featureset in `xen-cpuid`'s layout, one line per word (`  [00] CPUID … fpu …`),
/// NUL-terminated, size-query convention.
///
/// # Safety
/// As for `cpupolicy_featureset_format`.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_decode(
    set: *const cpupolicy_featureset,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_output(set, buffer, capacity, needed, |set| Ok(set.decode().iter().map(|w| format!("{w}\n")).collect()))
    }
}

/// Whether the named feature (Xen name or alias such as `sse4.1`, `lahf_lm`) is in the set.
///
/// # Safety
/// `set` a featureset handle; `name` a NUL-terminated string; `present` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_contains(
    set: *const cpupolicy_featureset,
    name: *const c_char,
    present: *mut bool,
) -> cpupolicy_status {
    guard(|| {
        require(present, "present")?;
        // SAFETY: per this function's contract.
        let (set, name) = unsafe { (borrow(set, "set")?, c_str(name, "name")?) };
        let found = set.contains_name(name).map_err(parse_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put_value(present, found, "present") }
    })
}

/// Adds (`present` true) or removes the named feature. Removing does not remove dependents;
/// see `cpupolicy_featureset_apply_dependencies`. Not thread-safe on the same handle.
///
/// # Safety
/// `set` a featureset handle; `name` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_set(
    set: *mut cpupolicy_featureset,
    name: *const c_char,
    present: bool,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let name = unsafe { c_str(name, "name")? };
        // SAFETY: per this function's contract; checked before the mutable borrow below.
        unsafe { borrow(set.cast_const(), "set")? };
        let feature = featureset::feature_by_name(name).ok_or_else(|| {
            Failure::new(cpupolicy_status::CPUPOLICY_UNKNOWN_FEATURE, format!("unknown feature name '{name}'"))
        })?;
        // SAFETY: checked live featureset handle; the caller does not share it during the call.
        unsafe { (*set).value.set(feature.id, present) };
        Ok(())
    })
}

/// Clears every feature whose prerequisite is missing, transitively (Xen's dependency rules).
/// Not thread-safe on the same handle.
///
/// # Safety
/// `set` a featureset handle.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_apply_dependencies(set: *mut cpupolicy_featureset) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        unsafe { borrow(set.cast_const(), "set")? };
        // SAFETY: checked live featureset handle; the caller does not share it during the call.
        unsafe { (*set).value.apply_dependencies() };
        Ok(())
    })
}

/// A new featureset `a OP b` in `*out`, owned by the caller. Shorter sets count as zero-extended.
///
/// # Safety
/// `a`, `b` featureset handles; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_combine(
    a: *const cpupolicy_featureset,
    op: cpupolicy_set_op,
    b: *const cpupolicy_featureset,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (a, b) = unsafe { (borrow(a, "a")?, borrow(b, "b")?) };
        let result = match op {
            CPUPOLICY_SET_UNION => a.union(b),
            CPUPOLICY_SET_INTERSECTION => a.intersection(b),
            CPUPOLICY_SET_DIFFERENCE => a.difference(b),
            other => return Err(out_of_range("set operation", other)),
        };
        // SAFETY: per this function's contract.
        unsafe { put(out, result) }
    })
}

/// Levels the featuresets of a pool's hosts (all their default featuresets, or all their max
/// ones) with Xen's rules into a new featureset in `*out`, owned by the caller: ordinary bits
/// ANDed, accumulate bits ORed, RSBA/RRSBA derived from what survives (RRSBA with eIBRS, RSBA
/// otherwise), then the dependency closure; as many words as the longest input. `sets` holds
/// `nr_sets` handles (`sets` may be NULL when `nr_sets` is 0, giving the empty set).
/// Thread-safe for readers.
///
/// # Safety
/// `sets` valid for reading `nr_sets` pointers, each a featureset handle; `out` valid for a
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_level(
    sets: *const *const cpupolicy_featureset,
    nr_sets: usize,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: `sets` valid for `nr_sets` reads per the contract; a count beyond any pool is
        // refused before the array is read.
        let sets = unsafe { c_slice(sets, nr_sets, MAX_POOL_HOSTS, "sets")? };
        // SAFETY: each element is a featureset handle (or NULL, reported) per the contract.
        let handle = |i: usize| unsafe { borrow(sets[i], &format!("sets[{i}]")) };
        for i in 0..sets.len() {
            handle(i)?;
        }
        let result = policy::level_featuresets((0..sets.len()).filter_map(|i| handle(i).ok()));
        // SAFETY: per this function's contract.
        unsafe { put(out, result) }
    })
}

/// The features a VM that booted with featureset `vm` saw and a host whose max featureset is
/// `host` cannot give, judged by each bit's rule (accumulate, host-reflected, topology and
/// run-time bits never count), as a new featureset in `*out`, owned by the caller: empty when
/// the VM may migrate there. Name them with `cpupolicy_featureset_names`. Thread-safe for
/// readers.
///
/// # Safety
/// `vm`, `host` featureset handles; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_missing(
    vm: *const cpupolicy_featureset,
    host: *const cpupolicy_featureset,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (vm, host) = unsafe { (borrow(vm, "vm")?, borrow(host, "host")?) };
        let missing = Featureset::from_ids(policy::featureset_missing(vm, host));
        // SAFETY: per this function's contract.
        unsafe { put(out, missing) }
    })
}

/// Compares two featuresets: `*equal` (zero-extended equality) and `*subset` (every feature of
/// `a` is in `b`). Either out-pointer may be NULL.
///
/// # Safety
/// `a`, `b` featureset handles; `equal`, `subset` NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_featureset_compare(
    a: *const cpupolicy_featureset,
    b: *const cpupolicy_featureset,
    equal: *mut bool,
    subset: *mut bool,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (a, b) = unsafe { (borrow(a, "a")?, borrow(b, "b")?) };
        if !equal.is_null() {
            // SAFETY: non-NULL and valid per the contract.
            unsafe { equal.write(a == b) };
        }
        if !subset.is_null() {
            // SAFETY: non-NULL and valid per the contract.
            unsafe { subset.write(a.is_subset(b)) };
        }
        Ok(())
    })
}

/// One of Xen's static masks as a new featureset in `*out`, owned by the caller.
///
/// # Safety
/// `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_static_mask(
    mask: cpupolicy_mask,
    out: *mut *mut cpupolicy_featureset,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        let mask = match mask {
            CPUPOLICY_MASK_KNOWN => StaticMask::Known,
            CPUPOLICY_MASK_SPECIAL => StaticMask::Special,
            CPUPOLICY_MASK_ACCUMULATE => StaticMask::Accumulate,
            CPUPOLICY_MASK_PV_DEFAULT => StaticMask::Default(GuestKind::Pv),
            CPUPOLICY_MASK_PV_MAX => StaticMask::Max(GuestKind::Pv),
            CPUPOLICY_MASK_HVM_SHADOW_DEFAULT => StaticMask::Default(GuestKind::HvmShadow),
            CPUPOLICY_MASK_HVM_SHADOW_MAX => StaticMask::Max(GuestKind::HvmShadow),
            CPUPOLICY_MASK_HVM_HAP_DEFAULT => StaticMask::Default(GuestKind::HvmHap),
            CPUPOLICY_MASK_HVM_HAP_MAX => StaticMask::Max(GuestKind::HvmHap),
            other => return Err(out_of_range("mask", other)),
        };
        // SAFETY: per this function's contract.
        unsafe { put(out, static_mask(mask).clone()) }
    })
}
