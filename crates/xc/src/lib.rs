//! `libcpupolicy-xc`: the two featureset functions xapi (XenServer, XCP-ng) looks for, for
//! toolstacks on upstream Xen, whose libxc lacks them.
//!
//! xapi's C stubs (`ocaml/libs/xenctrl-ext/xenctrlext_stubs.c`) declare these weak:
//!
//! ```c
//! void xc_combine_cpu_featuresets(const uint32_t *p1, const uint32_t *p2, uint32_t *out, size_t len);
//! const char *xc_cpu_featuresets_are_compatible(const uint32_t *vm, const uint32_t *host,
//!                                               size_t len, char err[128]);
//! ```
//!
//! Only XenServer's patched libxc defines them; elsewhere the stubs raise ENOSYS and xenopsd
//! falls back to a plain AND and a plain subset test, wrong for Xen's accumulate bits and for
//! RSBA/RRSBA. This library exports exactly these two symbols and nothing else, computed with
//! the rules of `cpupolicy_policy::level_featuresets` and `featureset_missing` (the same rules
//! `cpupolicy level`/`check` use on full policies).
//!
//! A weak reference alone does not make the linker keep a library (`--as-needed` drops it), so
//! link it with `-Wl,--no-as-needed -lcpupolicy-xc` (what its `cpupolicy-xc.pc` says), or
//! `LD_PRELOAD` it into the process.
//!
//! Both functions read exactly `len` words of each input and write at most `len` words (or 128
//! bytes of `err`); they allocate nothing in proportion to `len`, and no panic leaves them.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use featureset::{FeatureId, Featureset, NR_WORDS};
use policy::{featureset_missing, level_featuresets, missing_features_line, xen_header_name};

/// The size of xapi's error buffer, terminating NUL included.
const ERR_SIZE: usize = 128;

/// Reads word `i` of a caller's array.
///
/// # Safety
/// `words` valid for reading at least `i + 1` words.
unsafe fn word(words: *const u32, i: usize) -> u32 {
    // SAFETY: per this function's contract.
    unsafe { words.add(i).read_unaligned() }
}

/// The first `min(len, NR_WORDS)` words of a caller's array, as a featureset: the words whose
/// bits have rules of their own. Words past them are ANDed (combine) or all judged (check),
/// one at a time.
///
/// # Safety
/// `words` valid for reading `len` words.
unsafe fn head(words: *const u32, len: usize) -> Featureset {
    // SAFETY: per this function's contract; at most `len` words are read.
    Featureset::from_words((0..len.min(NR_WORDS)).map(|i| unsafe { word(words, i) }).collect::<Vec<_>>())
}

/// Levels two hosts' featuresets of `len` words into `out` (`len` words), with Xen's rules:
/// ordinary bits ANDed, accumulate bits ORed, RSBA/RRSBA derived from what survives, then the
/// dependency closure. `out` may be `p1` or `p2`. Nothing is written when a pointer is NULL or
/// `len` is 0.
///
/// # Safety
/// `p1`, `p2` valid for reading `len` words; `out` valid for writing `len` words.
#[no_mangle]
pub unsafe extern "C" fn xc_combine_cpu_featuresets(p1: *const u32, p2: *const u32, out: *mut u32, len: usize) {
    if p1.is_null() || p2.is_null() || out.is_null() || len == 0 {
        return;
    }
    let combined = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: both valid for `len` words per the contract.
        let (a, b) = unsafe { (head(p1, len), head(p2, len)) };
        level_featuresets([&a, &b])
    }));
    for i in 0..len {
        // SAFETY: `i < len`; inputs valid for reading and `out` for writing `len` words. Word
        // `i` of the inputs is read before word `i` of `out` is written, so aliasing is fine.
        unsafe {
            let and = word(p1, i) & word(p2, i);
            let value = match &combined {
                Ok(head) if i < NR_WORDS => head.word(i),
                // Past the known words, and (never expected) after a panic: xapi's own AND.
                _ => and,
            };
            out.add(i).write_unaligned(value);
        }
    }
}

/// Whether a VM that booted with featureset `vm` may run on a host whose max featureset is
/// `host` (`len` words each): NULL when it may; otherwise `err` holding the names of the
/// features the host lacks (Xen's spelling, space-separated, cut with `...` to fit 127 bytes
/// and a NUL), and `err` is returned. With `err` NULL, a fixed message is returned instead.
///
/// # Safety
/// `vm`, `host` valid for reading `len` words (or NULL with `len` 0); `err` NULL or valid for
/// writing 128 bytes.
#[no_mangle]
pub unsafe extern "C" fn xc_cpu_featuresets_are_compatible(
    vm: *const u32,
    host: *const u32,
    len: usize,
    err: *mut c_char,
) -> *const c_char {
    const NO_BUFFER: &std::ffi::CStr = c"the host lacks features the VM saw (no buffer to name them)";
    const NO_INPUT: &std::ffi::CStr = c"no featureset given (NULL pointer)";
    const INTERNAL: &str = "internal error while comparing featuresets";
    if len == 0 {
        return std::ptr::null();
    }
    if vm.is_null() || host.is_null() {
        return write_err(err, NO_INPUT.to_bytes()).unwrap_or(NO_INPUT.as_ptr());
    }
    let line = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: both valid for `len` words per the contract.
        let (vm_head, host_head) = unsafe { (head(vm, len), head(host, len)) };
        let known = featureset_missing(&vm_head, &host_head).into_iter().map(xen_header_name);
        // Past the known words every bit is judged; bits are named by position.
        let beyond = (NR_WORDS..len).flat_map(|i| {
            // SAFETY: `i < len`.
            let missing = unsafe { word(vm, i) & !word(host, i) };
            (0..32).filter(move |bit| missing & (1 << bit) != 0).map(move |bit| match FeatureId::new(i, bit) {
                Some(id) => xen_header_name(id),
                None => format!("<{i}*32+{bit}>"),
            })
        });
        let mut names = known.chain(beyond).peekable();
        names.peek().is_some().then(|| missing_features_line(names, ERR_SIZE - 1))
    }));
    match line {
        Ok(None) => std::ptr::null(),
        Ok(Some(line)) => write_err(err, line.as_bytes()).unwrap_or(NO_BUFFER.as_ptr()),
        Err(_) => write_err(err, INTERNAL.as_bytes()).unwrap_or(NO_BUFFER.as_ptr()),
    }
}

/// Copies `text` (at most 127 bytes of it) and a NUL into `err`; `None` when `err` is NULL.
fn write_err(err: *mut c_char, text: &[u8]) -> Option<*const c_char> {
    if err.is_null() {
        return None;
    }
    let n = text.len().min(ERR_SIZE - 1);
    // SAFETY: `err` is valid for 128 bytes per the callers' contracts and `n < 128`; `text`
    // is a distinct Rust buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), err.cast::<u8>(), n);
        err.add(n).write(0);
    }
    Some(err.cast_const())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn words(names: &[&str], len: usize) -> Vec<u32> {
        let set = Featureset::from_names(names.iter().copied()).unwrap();
        (0..len).map(|i| set.word(i)).collect()
    }

    #[test]
    fn combine_writes_len_words_and_no_more() {
        let a = words(&["ibrsb", "arch-caps", "eibrs", "rrsba", "md-clear"], 19);
        let b = words(&["ibrsb", "arch-caps"], 19);
        let mut out = vec![0xdead_beef; 21];
        // SAFETY: arrays of 19 words; out has room for 21.
        unsafe { xc_combine_cpu_featuresets(a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), 19) };
        assert_eq!(&out[..19], &words(&["ibrsb", "arch-caps", "rsba", "md-clear"], 19)[..]);
        assert_eq!(&out[19..], &[0xdead_beef, 0xdead_beef]);
        // In place, and past the known words: AND.
        let mut c: Vec<u32> = a.iter().copied().chain([0xff, 0xf0]).collect();
        let d: Vec<u32> = b.iter().copied().chain([0x0f, 0xff]).collect();
        let p = c.as_mut_ptr();
        // SAFETY: 21 words each; `out` aliases `p1`, which the function allows.
        unsafe { xc_combine_cpu_featuresets(p, d.as_ptr(), p, 21) };
        assert_eq!(&c[19..], &[0x0f, 0xf0]);
    }

    #[test]
    fn compatible_is_null_and_missing_features_are_named() {
        let vm = words(&["fpu", "xsave", "avx", "md-clear"], 14);
        let host = words(&["fpu", "xsave"], 14);
        let mut err = [0x55 as c_char; 130];
        // SAFETY: 14 words each; err has 130 bytes.
        let r = unsafe { xc_cpu_featuresets_are_compatible(vm.as_ptr(), host.as_ptr(), 14, err.as_mut_ptr()) };
        assert_eq!(r, err.as_ptr());
        // SAFETY: the function wrote a NUL-terminated string there.
        assert_eq!(unsafe { CStr::from_ptr(r) }.to_str().unwrap(), "AVX");
        // SAFETY: as above.
        let ok = unsafe { xc_cpu_featuresets_are_compatible(host.as_ptr(), vm.as_ptr(), 14, err.as_mut_ptr()) };
        assert!(ok.is_null());
        // Every bit of a long unknown tail missing: cut to 127 bytes, never past 128.
        let vm = [!0u32; 40];
        let host = [0u32; 40];
        // SAFETY: 40 words each; err has 130 bytes.
        let r = unsafe { xc_cpu_featuresets_are_compatible(vm.as_ptr(), host.as_ptr(), 40, err.as_mut_ptr()) };
        // SAFETY: NUL-terminated by the function.
        let text = unsafe { CStr::from_ptr(r) }.to_str().unwrap();
        assert!(text.len() <= 127 && text.ends_with(" ..."), "{text}");
        assert_eq!((err[128], err[129]), (0x55, 0x55));
        // SAFETY: NULL err is allowed.
        let r = unsafe { xc_cpu_featuresets_are_compatible(vm.as_ptr(), host.as_ptr(), 40, std::ptr::null_mut()) };
        assert!(!r.is_null());
    }
}
