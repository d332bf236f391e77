//! The thin unsafe layer: privcmd file descriptors, hypercall buffers, the ioctl.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::bindings::xen;
use crate::buffer::{self, BufferSource, HypercallBuffer};
use crate::error::{Errno, Error};
use crate::numbers::{IOCTL_PRIVCMD_HYPERCALL, IOCTL_PRIVCMD_RESTRICT};
use crate::types::DomainId;

/// Issues hypercalls and provides the memory they may point at.
///
/// The real implementation is [`Privcmd`]; tests substitute a fake hypervisor, which sees the
/// same bytes Xen would.
pub(crate) trait Transport: Send + Sync {
    /// `len` zeroed bytes Xen may access during a hypercall.
    fn alloc(&self, len: usize) -> Result<HypercallBuffer, Error>;

    /// Runs hypercall `op` with `args`, returning its non-negative result or the errno.
    ///
    /// # Safety
    ///
    /// Every guest address Xen will read or write for this call (the arguments, and handles
    /// inside the structures they point at) must lie inside a live [`HypercallBuffer`] from this
    /// transport's [`Transport::alloc`], and no Rust reference to that memory may be alive
    /// during the call.
    unsafe fn hypercall(&self, op: u64, args: [u64; 5]) -> Result<u64, Errno>;

    /// Where [`Transport::alloc`] takes its memory from.
    fn buffer_source(&self) -> BufferSource;

    /// Restricts the descriptor to hypercalls about `domid` (`IOCTL_PRIVCMD_RESTRICT`).
    fn restrict(&self, domid: DomainId) -> Result<(), Errno>;
}

/// Linux's privcmd driver: `/dev/xen/privcmd` plus `/dev/xen/hypercall` for buffers.
pub(crate) struct Privcmd {
    privcmd: File,
    /// `None` on kernels without `/dev/xen/hypercall` (before Linux 4.18).
    hypercall: Option<File>,
}

/// privcmd device nodes, preferred first.
pub(crate) const PRIVCMD_PATHS: [&str; 2] = ["/dev/xen/privcmd", "/proc/xen/privcmd"];
/// The hypercall-buffer device.
pub(crate) const HYPERCALL_BUFFER_PATH: &str = "/dev/xen/hypercall";

impl Privcmd {
    /// Opens privcmd (first path that exists) and, if present, the hypercall-buffer device.
    pub(crate) fn open() -> Result<Privcmd, Error> {
        let mut tried = Vec::new();
        for path in PRIVCMD_PATHS {
            match open_rw(Path::new(path)) {
                Ok(privcmd) => {
                    let hypercall = open_rw(Path::new(HYPERCALL_BUFFER_PATH)).ok();
                    return Ok(Privcmd { privcmd, hypercall });
                }
                // No node, or a node without its driver (module not loaded, not under Xen).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV | libc::ENXIO)) => {
                    tried.push(PathBuf::from(path))
                }
                Err(e) => return Err(open_error(path, e)),
            }
        }
        Err(Error::NoPrivcmd { tried })
    }
}

impl Transport for Privcmd {
    fn alloc(&self, len: usize) -> Result<HypercallBuffer, Error> {
        match &self.hypercall {
            Some(dev) => buffer::map_device(dev.as_raw_fd(), len).map_err(|source| Error::BufferAllocation {
                len,
                source_name: HYPERCALL_BUFFER_PATH,
                source,
            }),
            None => buffer::map_locked_anonymous(len).map_err(|source| Error::BufferAllocation {
                len,
                source_name: "locked anonymous memory",
                source,
            }),
        }
    }

    unsafe fn hypercall(&self, op: u64, args: [u64; 5]) -> Result<u64, Errno> {
        let mut call = xen::privcmd_hypercall_t { op, arg: args };
        // SAFETY: the fd is an open privcmd device, and IOCTL_PRIVCMD_HYPERCALL takes a pointer
        // to a privcmd_hypercall_t, which the kernel copies in before it enters Xen (so `call`
        // itself need not be in a hypercall buffer). What Xen then touches through the
        // arguments lies in hypercall buffers: our caller's contract.
        let rc = unsafe {
            libc::ioctl(
                self.privcmd.as_raw_fd(),
                IOCTL_PRIVCMD_HYPERCALL as _,
                &mut call as *mut xen::privcmd_hypercall_t,
            )
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(rc as u64)
        }
    }

    fn buffer_source(&self) -> BufferSource {
        if self.hypercall.is_some() {
            BufferSource::HypercallDevice
        } else {
            BufferSource::LockedAnonymous
        }
    }

    fn restrict(&self, domid: DomainId) -> Result<(), Errno> {
        let mut dom: xen::domid_t = domid;
        // SAFETY: IOCTL_PRIVCMD_RESTRICT reads one domid_t through the pointer, which is valid
        // for the duration of the call.
        let rc = unsafe {
            libc::ioctl(self.privcmd.as_raw_fd(), IOCTL_PRIVCMD_RESTRICT as _, &mut dom as *mut xen::domid_t)
        };
        if rc < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path)
}

fn open_error(path: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { path: path.into() },
        _ => Error::Open { path: path.into(), source: e },
    }
}

fn last_errno() -> Errno {
    Errno(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}
