//! Every number this crate sends to the kernel or to Xen, in one table.
//!
//! The values come from the generated bindings where the headers define them; the ioctl numbers
//! are computed the way Linux's `_IOC` does, and checked against the known constants below.

use crate::bindings::xen;
use cpupolicy_abi::RELEASES;

/// `_IOC_NONE`: privcmd's ioctls carry no direction bits.
const IOC_NONE: u32 = 0;

/// Linux's `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u32, kind: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32
}

/// `IOCTL_PRIVCMD_HYPERCALL`: `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))`.
pub(crate) const IOCTL_PRIVCMD_HYPERCALL: u32 = ioc(IOC_NONE, b'P', 0, size_of::<xen::privcmd_hypercall_t>());

/// `IOCTL_PRIVCMD_RESTRICT`: `_IOC(_IOC_NONE, 'P', 6, sizeof(domid_t))`.
pub(crate) const IOCTL_PRIVCMD_RESTRICT: u32 = ioc(IOC_NONE, b'P', 6, size_of::<xen::domid_t>());

/// Hypercall numbers (`__HYPERVISOR_*`).
pub(crate) const HYPERCALL_XEN_VERSION: u64 = xen::__HYPERVISOR_xen_version as u64;
pub(crate) const HYPERCALL_SYSCTL: u64 = xen::__HYPERVISOR_sysctl as u64;
pub(crate) const HYPERCALL_DOMCTL: u64 = xen::__HYPERVISOR_domctl as u64;

/// `xen_version` sub-commands.
pub(crate) const XENVER_VERSION: u64 = xen::XENVER_version as u64;
pub(crate) const XENVER_EXTRAVERSION: u64 = xen::XENVER_extraversion as u64;

/// sysctl commands.
pub(crate) const SYSCTL_PHYSINFO: u32 = xen::XEN_SYSCTL_physinfo;
pub(crate) const SYSCTL_GET_CPU_LEVELLING_CAPS: u32 = xen::XEN_SYSCTL_get_cpu_levelling_caps;
pub(crate) const SYSCTL_GET_CPU_FEATURESET: u32 = xen::XEN_SYSCTL_get_cpu_featureset;
pub(crate) const SYSCTL_GET_CPU_POLICY: u32 = xen::XEN_SYSCTL_get_cpu_policy;

/// domctl commands.
pub(crate) const DOMCTL_CREATEDOMAIN: u32 = xen::XEN_DOMCTL_createdomain;
pub(crate) const DOMCTL_DESTROYDOMAIN: u32 = xen::XEN_DOMCTL_destroydomain;
pub(crate) const DOMCTL_GET_CPU_POLICY: u32 = xen::XEN_DOMCTL_get_cpu_policy;
pub(crate) const DOMCTL_SET_CPU_POLICY: u32 = xen::XEN_DOMCTL_set_cpu_policy;

/// `DOMID_INVALID` (a macro bindgen cannot evaluate: `xen_mk_uint(0x7FF4)`).
pub(crate) const DOMID_INVALID: u16 = 0x7ff4;
/// `DOMID_FIRST_RESERVED`: domain ids from here on are special, never a real domain.
pub(crate) const DOMID_FIRST_RESERVED: u16 = 0x7ff0;

/// Known `(Xen major, minor, XEN_SYSCTL_INTERFACE_VERSION, XEN_DOMCTL_INTERFACE_VERSION)`,
/// from the release table ([`cpupolicy_abi::RELEASES`]).
///
/// The versions are bumped for changes elsewhere in the sysctl/domctl unions; the CPU-policy
/// structures have kept one layout throughout, so every listed version is safe to speak. Only
/// `xen_domctl_createdomain` follows the domctl version (see `createdomain.rs`). A version not
/// listed here is never guessed: its layouts are unknown.
pub(crate) const INTERFACE_VERSIONS: [(u16, u16, u32, u32); RELEASES.len()] = {
    let mut out = [(0, 0, 0, 0); RELEASES.len()];
    let mut i = 0;
    while i < RELEASES.len() {
        let facts = &RELEASES[i];
        let Some((major, minor)) = facts.release.version() else { panic!("a release table row without a version") };
        out[i] = (major, minor, facts.sysctl_interface_version, facts.domctl_interface_version);
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        // Values from xen/sys/privcmd.h as compiled on x86-64 Linux.
        assert_eq!(IOCTL_PRIVCMD_HYPERCALL, 0x0030_5000);
        assert_eq!(IOCTL_PRIVCMD_RESTRICT, 0x0002_5006);
    }

    #[test]
    fn hypercall_numbers_match_reference() {
        assert_eq!(HYPERCALL_XEN_VERSION, 17);
        assert_eq!(HYPERCALL_SYSCTL, 35);
        assert_eq!(HYPERCALL_DOMCTL, 36);
        assert_eq!((SYSCTL_GET_CPU_LEVELLING_CAPS, SYSCTL_GET_CPU_FEATURESET, SYSCTL_GET_CPU_POLICY), (25, 26, 29));
        assert_eq!((DOMCTL_GET_CPU_POLICY, DOMCTL_SET_CPU_POLICY), (82, 83));
        assert_eq!((DOMCTL_CREATEDOMAIN, DOMCTL_DESTROYDOMAIN), (1, 2));
    }

    #[test]
    fn canonical_headers_are_in_the_version_table() {
        assert!(INTERFACE_VERSIONS.contains(&(
            4,
            20,
            xen::XEN_SYSCTL_INTERFACE_VERSION,
            xen::XEN_DOMCTL_INTERFACE_VERSION
        )));
    }

    #[test]
    fn version_table_is_ordered_and_monotonic() {
        for pair in INTERFACE_VERSIONS.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!((a.0, a.1) < (b.0, b.1));
            assert!(a.2 <= b.2 && a.3 <= b.3);
        }
    }
}
