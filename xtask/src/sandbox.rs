//! Sandboxes for running code under a real Xen hypervisor (or plain Linux) inside QEMU/TCG.
//!
//! * [`prepare`] fetches what a boot needs from Debian — the hypervisor and `xen-cpuid` with its
//!   libraries for each [`XenRelease`], bookworm's kernel, static busybox and C library — and
//!   unpacks it below `<workspace>/target/sandbox` (see [`crate::debian`]); it also installs
//!   `qemu-system-x86` on the host with apt-get when QEMU is missing (root only). Everything is
//!   cached: later runs do not touch the network.
//! * [`boot`](fn@boot) builds a busybox initramfs holding the kernel modules, the Xen userland
//!   (`/usr/bin/xen-cpuid`), the caller's files (with their shared libraries) and script, boots it
//!   under `qemu-system-x86_64 -accel tcg` and returns what the script printed.
//! * [`xen_headers`] gives the unpacked `libxen-dev` headers of each release.
//! * [`run_cli`] exposes all of it as `cargo xtask sandbox ...`, including `selftest`, which
//!   compares `xen-cpuid` in each release against recorded reference output.
//!
//! Inside the guest, `/init` mounts proc, sys, devtmpfs and a tmpfs on `/tmp`, loads the
//! modules (`xen-privcmd`, `xen-evtchn`, `xenfs` under Xen; `cpuid` and `msr` always), mounts
//! xenfs on `/proc/xen` under Xen, lowers the kernel's console log level, runs the script with
//! `sh` from `/`, prints its stdout and stderr between markers and powers off.
//!
//! Submodules:
//!
//! * `release`: the bootable release table ([`XenRelease`], [`Hypervisor`]).
//! * `cache`: the download cache below `<workspace>/target/sandbox` (the Debian package sets, the
//!   lock on the cache, QEMU on the host, [`prepare`], [`xen_headers`], the Xen userland).
//! * `boot`: one boot ([`Boot`], its output, the guest's `/init`, the QEMU command line, reading
//!   the console back; [`boot`](fn@boot)).
//! * `commands`: the `cargo xtask sandbox ...` command line ([`run_cli`], `selftest`).
//! * `elf`, `initramfs`, `qemu`: the ELF reader, the initramfs builder and running QEMU.

mod boot;
mod cache;
mod commands;
mod elf;
mod initramfs;
mod qemu;
mod release;

pub use boot::{boot, Boot};
pub use cache::{prepare, xen_headers};
pub use commands::run_cli;
pub use release::{Hypervisor, XenRelease};
