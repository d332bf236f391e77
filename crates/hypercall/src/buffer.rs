//! Hypercall buffers: memory Xen reads and writes while a hypercall runs.
//!
//! Xen accesses these pages by their guest virtual address while it handles the hypercall, so
//! they must stay mapped at the same place the whole time. `mlock` does not promise that
//! (compaction and migration may briefly unmap a locked page, and Xen then fails with EFAULT);
//! Linux's `/dev/xen/hypercall` hands out pages that are never moved. Where that device is
//! missing, the fallback is anonymous memory mapped `MAP_LOCKED`, excluded from `fork`, with
//! every page touched so that none is left to be faulted in during the hypercall.

use std::io;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

/// Plain old data: `Copy`, `repr(C)`, no padding-sensitive invariants, and valid for every bit
/// pattern, so it may be copied in and out of memory Xen has written.
///
/// # Safety
///
/// Implement only for types for which every bit pattern of `size_of::<Self>()` bytes is a valid
/// value (integers, arrays and `repr(C)` structs/unions of them; no `bool`, `char`, references,
/// enums or niches).
pub(crate) unsafe trait Pod: Copy {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl Pod for u32 {}
// SAFETY: integers are valid for every bit pattern.
unsafe impl Pod for u64 {}
// SAFETY: an array of bytes is valid for every bit pattern.
unsafe impl Pod for [u8; 16] {}
// SAFETY: `c_char` is an integer type.
unsafe impl Pod for [libc::c_char; 16] {}

/// Where hypercall buffers come from (for diagnostics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferSource {
    /// Pages from `/dev/xen/hypercall`, which the kernel never moves.
    HypercallDevice,
    /// Anonymous `MAP_LOCKED` memory with `MADV_DONTFORK`, every page touched: the fallback for
    /// kernels without `/dev/xen/hypercall`.
    LockedAnonymous,
    /// Ordinary heap memory owned by a fake hypervisor in tests.
    #[cfg(test)]
    Fake,
}

/// A page-aligned, zero-initialised region Xen may access during a hypercall.
///
/// Dropping it unmaps the memory (Xen is done with it once the hypercall has returned).
pub(crate) struct HypercallBuffer {
    ptr: NonNull<u8>,
    len: usize,
    release: Release,
}

enum Release {
    /// `munmap(ptr, mapped_len)` on drop.
    Munmap { mapped_len: usize },
    /// Memory owned by someone else that outlives the buffer (a test's fake hypervisor).
    #[cfg(test)]
    Borrowed,
}

impl HypercallBuffer {
    /// Takes ownership of a mapping of `mapped_len` bytes at `ptr`, of which `len` are used.
    ///
    /// # Safety
    ///
    /// `ptr` must be the start of a live, readable and writable, page-aligned mapping of
    /// `mapped_len >= len` bytes that nothing else will unmap or use.
    pub(crate) unsafe fn from_mapping(ptr: NonNull<u8>, len: usize, mapped_len: usize) -> Self {
        debug_assert!(len <= mapped_len);
        HypercallBuffer { ptr, len, release: Release::Munmap { mapped_len } }
    }

    /// Wraps memory owned elsewhere (a fake hypervisor's arena).
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads and writes of `len` bytes, aligned to 8, for as long as the
    /// buffer lives, and used by nothing else meanwhile.
    #[cfg(test)]
    pub(crate) unsafe fn borrowed(ptr: NonNull<u8>, len: usize) -> Self {
        HypercallBuffer { ptr, len, release: Release::Borrowed }
    }

    /// The guest virtual address Xen is given for this buffer.
    pub(crate) fn address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Usable length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `value` in at byte `offset`.
    ///
    /// Panics if it does not fit or is misaligned: offsets are computed by this crate from
    /// `size_of`, so that would be a bug here, not an input error.
    pub(crate) fn write<T: Pod>(&mut self, offset: usize, value: T) {
        let p = self.checked::<T>(offset, 1);
        // SAFETY: `checked` proved [offset, offset + size_of::<T>()) lies inside the buffer and
        // is aligned for T; `&mut self` gives exclusive access (no hypercall is running on it).
        unsafe { p.cast::<T>().write(value) }
    }

    /// Copies a `T` out from byte `offset` (what Xen wrote there).
    pub(crate) fn read<T: Pod>(&self, offset: usize) -> T {
        let p = self.checked::<T>(offset, 1);
        // SAFETY: in bounds and aligned (checked above); T is Pod, so whatever bytes Xen left
        // there form a valid T.
        unsafe { p.cast::<T>().read() }
    }

    /// Copies `values` in, starting at byte 0.
    pub(crate) fn write_slice<T: Pod>(&mut self, values: &[T]) {
        let p = self.checked::<T>(0, values.len());
        // SAFETY: the destination range is inside the buffer and aligned (checked); source and
        // destination cannot overlap because the buffer is exclusively ours.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), p.cast::<T>(), values.len()) }
    }

    /// Copies `count` values of `T` out, starting at byte 0.
    pub(crate) fn read_slice<T: Pod>(&self, count: usize) -> Vec<T> {
        let p = self.checked::<T>(0, count);
        let mut out = Vec::with_capacity(count);
        // SAFETY: the source range is inside the buffer and aligned (checked), `out` has room for
        // `count` values, and Pod makes any bytes a valid T; set_len follows the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(p.cast::<T>(), out.as_mut_ptr(), count);
            out.set_len(count);
        }
        out
    }

    fn checked<T>(&self, offset: usize, count: usize) -> *mut u8 {
        let bytes = size_of::<T>().checked_mul(count).and_then(|n| n.checked_add(offset));
        assert!(
            bytes.is_some_and(|end| end <= self.len),
            "hypercall buffer overrun: {count} x {} bytes at {offset} in {} bytes",
            size_of::<T>(),
            self.len
        );
        assert_eq!(offset % align_of::<T>(), 0, "misaligned hypercall buffer access");
        // SAFETY: offset <= len (asserted), so the result stays inside the allocation.
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Drop for HypercallBuffer {
    fn drop(&mut self) {
        match self.release {
            Release::Munmap { mapped_len } => {
                // SAFETY: we own this mapping (from_mapping's contract) and no hypercall uses it
                // any more: hypercalls borrow the buffer, so none can be running during drop.
                let rc = unsafe { libc::munmap(self.ptr.as_ptr().cast(), mapped_len) };
                debug_assert_eq!(rc, 0, "munmap of a hypercall buffer failed");
            }
            #[cfg(test)]
            Release::Borrowed => {}
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `len` rounded up to whole pages (at least one).
pub(crate) fn round_to_pages(len: usize) -> usize {
    let page = page_size();
    len.max(1).div_ceil(page) * page
}

/// Maps `len` bytes from the `/dev/xen/hypercall` file `fd`.
pub(crate) fn map_device(fd: libc::c_int, len: usize) -> io::Result<HypercallBuffer> {
    let mapped_len = round_to_pages(len);
    // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL), so no existing memory
    // is affected; fd is a valid open descriptor of /dev/xen/hypercall, which only supports
    // MAP_SHARED mappings at offset 0.
    let ptr = unsafe {
        libc::mmap(std::ptr::null_mut(), mapped_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
    // SAFETY: the mapping was just created, is page-aligned, RW and ours alone. The device
    // zeroes its pages, but zero again: fields such as `_rsvd` must be zero for Xen.
    unsafe {
        std::ptr::write_bytes(ptr.as_ptr(), 0, mapped_len);
        Ok(HypercallBuffer::from_mapping(ptr, len, mapped_len))
    }
}

/// Maps `len` bytes of locked anonymous memory that is not inherited by `fork` and is fully
/// faulted in: the fallback when `/dev/xen/hypercall` is missing.
pub(crate) fn map_locked_anonymous(len: usize) -> io::Result<HypercallBuffer> {
    let mapped_len = round_to_pages(len);
    // SAFETY: a fresh private anonymous mapping chosen by the kernel; nothing else is touched.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mapped_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
    // SAFETY: from here on we own the mapping; wrap it first so every error path unmaps it.
    let buffer = unsafe { HypercallBuffer::from_mapping(ptr, len, mapped_len) };
    // SAFETY: the range is exactly our mapping. A child process must not share (copy-on-write)
    // these pages: a write by either side would move them while Xen may use them.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), mapped_len, libc::MADV_DONTFORK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let page = page_size();
    for offset in (0..mapped_len).step_by(page) {
        // SAFETY: offset < mapped_len, inside our RW mapping; a volatile write makes sure every
        // page is really faulted in now rather than during the hypercall.
        unsafe { ptr.as_ptr().add(offset).write_volatile(0) };
    }
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_buffer_round_trips_values() {
        // MAP_LOCKED may be refused by RLIMIT_MEMLOCK on a developer machine; that is the
        // kernel's decision, not a bug here.
        let Ok(mut buf) = map_locked_anonymous(100) else { return };
        assert_eq!(buf.len(), 100);
        assert_eq!(buf.address() % page_size() as u64, 0);
        assert_eq!(buf.read::<u64>(8), 0, "fresh buffers are zeroed");
        buf.write(8, 0xdead_beef_u64);
        assert_eq!(buf.read::<u64>(8), 0xdead_beef);
        buf.write_slice(&[1u32, 2, 3]);
        assert_eq!(buf.read_slice::<u32>(3), vec![1, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "overrun")]
    fn overrun_is_caught() {
        let Ok(buf) = map_locked_anonymous(16) else { panic!("overrun (skipped: no memlock)") };
        let _ = buf.read::<u64>(16);
    }

    #[test]
    fn rounding_is_to_whole_pages() {
        let page = page_size();
        assert_eq!(round_to_pages(0), page);
        assert_eq!(round_to_pages(1), page);
        assert_eq!(round_to_pages(page), page);
        assert_eq!(round_to_pages(page + 1), 2 * page);
    }
}
