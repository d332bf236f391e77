//! The bootable release table: which Xen releases can be booted, the Debian suite and packages
//! of each, and what runs under the kernel of a boot ([`Hypervisor`]).

use crate::debian::{Follow, PackageSet, Suite};

/// A Xen release that can be booted, with the Debian suite that ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenRelease {
    /// Xen 4.14, from Debian bullseye.
    V4_14,
    /// Xen 4.17, from Debian bookworm.
    V4_17,
    /// Xen 4.20, from Debian trixie.
    V4_20,
}

impl XenRelease {
    /// All releases.
    pub const ALL: [XenRelease; 3] = [XenRelease::V4_14, XenRelease::V4_17, XenRelease::V4_20];

    /// `"4.14"`, `"4.17"` or `"4.20"`.
    pub fn version(self) -> &'static str {
        match self {
            XenRelease::V4_14 => "4.14",
            XenRelease::V4_17 => "4.17",
            XenRelease::V4_20 => "4.20",
        }
    }

    /// Parses `"4.14"`, `"4.17"` or `"4.20"` (a leading `xen-` or `v` is allowed).
    pub fn parse(s: &str) -> Option<XenRelease> {
        let s = s.trim_start_matches("xen-").trim_start_matches('v');
        XenRelease::ALL.into_iter().find(|r| r.version() == s)
    }

    /// The Debian suite that ships this release.
    pub fn suite(self) -> Suite {
        match self {
            XenRelease::V4_14 => Suite::Bullseye,
            XenRelease::V4_17 => Suite::Bookworm,
            XenRelease::V4_20 => Suite::Trixie,
        }
    }

    /// The hypervisor package, e.g. `xen-hypervisor-4.20-amd64`.
    pub fn hypervisor_package(self) -> String {
        format!("xen-hypervisor-{}-amd64", self.version())
    }

    /// The tools package holding `xen-cpuid`, e.g. `xen-utils-4.20`.
    pub fn utils_package(self) -> String {
        format!("xen-utils-{}", self.version())
    }

    /// The package with the version-specific libraries (libxenctrl, libxenguest, ...).
    pub fn misc_package(self) -> String {
        format!("libxenmisc{}", self.version())
    }

    /// Where `xen-cpuid` is in the unpacked userland root.
    pub fn xen_cpuid_path(self) -> String {
        format!("usr/lib/xen-{}/bin/xen-cpuid", self.version())
    }

    /// Whether the userland needs its own suite's C library: trixie's tools need glibc 2.41,
    /// while bullseye's and bookworm's run on bookworm's glibc (which the project's own binaries,
    /// built on bookworm, need anyway).
    fn own_libc(self) -> bool {
        self == XenRelease::V4_20
    }

    pub(super) fn package_set(self) -> PackageSet {
        let follow = if self.own_libc() { Follow::Libraries } else { Follow::LibrariesButLibc };
        PackageSet::new(self.suite(), &format!("xen-{}", self.version()), &[&self.hypervisor_package()])
            .following(&self.utils_package(), follow)
            .following(&self.misc_package(), follow)
    }
}

impl std::fmt::Display for XenRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xen {}", self.version())
    }
}

/// What runs under the dom0 / guest kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hypervisor {
    /// Linux as dom0 of this Xen release.
    Xen(XenRelease),
    /// Linux on the bare (emulated) machine.
    None,
}

impl Hypervisor {
    /// Parses `"4.14"`/`"xen-4.14"` etc., or `"none"`/`"linux"` for plain Linux.
    pub fn parse(s: &str) -> Option<Hypervisor> {
        match s {
            "none" | "linux" => Some(Hypervisor::None),
            _ => XenRelease::parse(s).map(Hypervisor::Xen),
        }
    }
}

impl std::fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hypervisor::Xen(r) => r.fmt(f),
            Hypervisor::None => f.write_str("plain Linux"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hypervisors() {
        assert_eq!(Hypervisor::parse("4.14"), Some(Hypervisor::Xen(XenRelease::V4_14)));
        assert_eq!(Hypervisor::parse("xen-4.20"), Some(Hypervisor::Xen(XenRelease::V4_20)));
        assert_eq!(Hypervisor::parse("none"), Some(Hypervisor::None));
        assert_eq!(Hypervisor::parse("4.15"), None);
        assert_eq!(XenRelease::V4_17.suite(), Suite::Bookworm);
        assert_eq!(XenRelease::V4_20.hypervisor_package(), "xen-hypervisor-4.20-amd64");
    }
}
