//! Xen releases and what each one changed for CPU policy, in one table ([`RELEASES`]): the
//! interface versions its hypercalls speak, the length of its featureset, the layout of its
//! policy format ([`WireLimits`]) and what changed.
//!
//! Sources: each release tag's `xen/include/public/sysctl.h` and `domctl.h` (interface
//! versions), `xen/include/xen/lib/x86/cpu-policy.h` (`cpuid.h` before 4.18: the
//! `FEATURESET_*` words and the array sizes).

use std::fmt;

use crate::{WireLimits, XenVersion};

/// The Xen releases cpupolicy knows facts about (a branch: `x.y.0` and its point releases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum XenRelease {
    V4_14,
    V4_15,
    V4_16,
    V4_17,
    V4_18,
    V4_19,
    V4_20,
    V4_21,
    V4_22,
    /// Xen's development branch, after the newest release.
    Master,
}

impl fmt::Display for XenRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            XenRelease::V4_14 => "4.14",
            XenRelease::V4_15 => "4.15",
            XenRelease::V4_16 => "4.16",
            XenRelease::V4_17 => "4.17",
            XenRelease::V4_18 => "4.18",
            XenRelease::V4_19 => "4.19",
            XenRelease::V4_20 => "4.20",
            XenRelease::V4_21 => "4.21",
            XenRelease::V4_22 => "4.22",
            XenRelease::Master => "master",
        };
        f.write_str(text)
    }
}

impl XenRelease {
    /// Every release, oldest first, then master.
    pub const ALL: [XenRelease; 10] = [
        XenRelease::V4_14,
        XenRelease::V4_15,
        XenRelease::V4_16,
        XenRelease::V4_17,
        XenRelease::V4_18,
        XenRelease::V4_19,
        XenRelease::V4_20,
        XenRelease::V4_21,
        XenRelease::V4_22,
        XenRelease::Master,
    ];

    /// `4.20`, `4.20.3` (the point release is ignored) or `master`.
    pub fn parse(text: &str) -> Option<XenRelease> {
        let text = text.trim();
        let minor_of = |t: &str| t.split('.').take(2).collect::<Vec<_>>().join(".");
        XenRelease::ALL.into_iter().find(|r| r.to_string() == text || r.to_string() == minor_of(text))
    }

    /// `(major, minor)`; `None` for master.
    pub const fn version(self) -> Option<(u16, u16)> {
        Some(match self {
            XenRelease::V4_14 => (4, 14),
            XenRelease::V4_15 => (4, 15),
            XenRelease::V4_16 => (4, 16),
            XenRelease::V4_17 => (4, 17),
            XenRelease::V4_18 => (4, 18),
            XenRelease::V4_19 => (4, 19),
            XenRelease::V4_20 => (4, 20),
            XenRelease::V4_21 => (4, 21),
            XenRelease::V4_22 => (4, 22),
            XenRelease::Master => return None,
        })
    }

    /// The release a hypervisor reporting `version` belongs to; `None` for one older than
    /// 4.14 or newer than the newest in [`RELEASES`].
    pub fn of_version(version: &XenVersion) -> Option<XenRelease> {
        RELEASES.iter().map(|facts| facts.release).find(|r| {
            r.version()
                .is_some_and(|(major, minor)| u32::from(major) == version.major && u32::from(minor) == version.minor)
        })
    }

    /// This release's row of [`RELEASES`]; `None` for master.
    pub fn facts(self) -> Option<&'static ReleaseFacts> {
        RELEASES.iter().find(|facts| facts.release == self)
    }
}

/// What one Xen release is, as far as CPU policy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// The release.
    pub release: XenRelease,
    /// `XEN_SYSCTL_INTERFACE_VERSION` (the same at every point release of the branch).
    pub sysctl_interface_version: u32,
    /// `XEN_DOMCTL_INTERFACE_VERSION` (likewise).
    pub domctl_interface_version: u32,
    /// Featureset words (`FEATURESET_NR_ENTRIES`) at `x.y.0`.
    pub featureset_words: usize,
    /// Featureset words at the newest point release in Xen's tree ([`ReleaseFacts::newest_point`]):
    /// security fixes backported new words.
    pub featureset_words_newest: usize,
    /// That point release.
    pub newest_point: &'static str,
    /// The policy format at `x.y.0` ([`WireLimits::for_xen`] gives the point releases').
    pub wire: WireLimits,
    /// What changed for CPU policy, in a sentence or two.
    pub changes: &'static str,
}

/// Every release from 4.14, oldest first.
pub const RELEASES: [ReleaseFacts; 9] = [
    ReleaseFacts {
        release: XenRelease::V4_14,
        sysctl_interface_version: 0x13,
        domctl_interface_version: 0x12,
        featureset_words: 11,
        featureset_words_newest: 18,
        newest_point: "4.14.6",
        wire: WireLimits::XEN_4_14_0,
        changes: "11 featureset words (to 7a1); leaf 7 sub-leaves 0-1, extended leaves to 0x8000001c and \
                  MSR_PLATFORM_INFO only. MSR_ARCH_CAPABILITIES from 4.14.1; leaf 7:2 and extended leaves \
                  to 0x80000021 from 4.14.5.",
    },
    ReleaseFacts {
        release: XenRelease::V4_15,
        sysctl_interface_version: 0x13,
        domctl_interface_version: 0x13,
        featureset_words: 11,
        featureset_words_newest: 18,
        newest_point: "4.15.7",
        wire: WireLimits::XEN_4_14_1,
        changes: "The format of 4.14.1 (both MSRs); leaf 7:2 and extended leaves to 0x80000021 from 4.15.3.",
    },
    ReleaseFacts {
        release: XenRelease::V4_16,
        sysctl_interface_version: 0x14,
        domctl_interface_version: 0x14,
        featureset_words: 12,
        featureset_words_newest: 18,
        newest_point: "4.16.7",
        wire: WireLimits::XEN_4_16_0,
        changes: "Featureset word 11 (e21a); extended leaves to 0x80000021. Leaf 7:2 from 4.16.1.",
    },
    ReleaseFacts {
        release: XenRelease::V4_17,
        sysctl_interface_version: 0x15,
        domctl_interface_version: 0x15,
        featureset_words: 14,
        featureset_words_newest: 19,
        newest_point: "4.17.7",
        wire: WireLimits::XEN_4_17,
        changes: "Featureset words 12-13 (7b1, 7d2); leaf 7 sub-leaves 0-2: the format (120 leaves, 2 MSRs) \
                  every later release keeps.",
    },
    ReleaseFacts {
        release: XenRelease::V4_18,
        sysctl_interface_version: 0x15,
        domctl_interface_version: 0x16,
        featureset_words: 18,
        featureset_words_newest: 19,
        newest_point: "4.18.6",
        wire: WireLimits::XEN_4_17,
        changes: "Featureset words 14-17 (7c1, 7d1, and MSR_ARCH_CAPABILITIES as m10Al/m10Ah); the policy \
                  header became cpu-policy.h.",
    },
    ReleaseFacts {
        release: XenRelease::V4_19,
        sysctl_interface_version: 0x15,
        domctl_interface_version: 0x17,
        featureset_words: 18,
        featureset_words_newest: 19,
        newest_point: "4.19.6",
        wire: WireLimits::XEN_4_17,
        changes: "The `|` attribute: features a pool ORs rather than ANDs.",
    },
    ReleaseFacts {
        release: XenRelease::V4_20,
        sysctl_interface_version: 0x15,
        domctl_interface_version: 0x17,
        featureset_words: 18,
        featureset_words_newest: 19,
        newest_point: "4.20.4",
        wire: WireLimits::XEN_4_17,
        changes: "No change to the interfaces, the format or the featureset length; new feature names only.",
    },
    ReleaseFacts {
        release: XenRelease::V4_21,
        sysctl_interface_version: 0x16,
        domctl_interface_version: 0x17,
        featureset_words: 19,
        featureset_words_newest: 19,
        newest_point: "4.21.2",
        wire: WireLimits::XEN_4_17,
        changes: "Featureset word 18 (e21c); sysctl interface 0x16.",
    },
    ReleaseFacts {
        release: XenRelease::V4_22,
        sysctl_interface_version: 0x16,
        domctl_interface_version: 0x18,
        featureset_words: 19,
        featureset_words_newest: 19,
        newest_point: "4.22.0",
        wire: WireLimits::XEN_4_17,
        changes: "domctl interface 0x18 (xen_domctl_createdomain keeps its 4.19 layout); the policy format is \
                  4.17's.",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is in release order, each row's format is what [`WireLimits::for_xen`] says of
    /// its `x.y.0`, and versions only grow.
    #[test]
    fn table_agrees_with_itself() {
        for (facts, release) in RELEASES.iter().zip(XenRelease::ALL) {
            assert_eq!(facts.release, release);
            let (major, minor) = release.version().unwrap();
            let version = XenVersion::new(major.into(), minor.into(), ".0");
            assert_eq!(WireLimits::for_xen(&version), Some(facts.wire), "{release}");
            assert_eq!(XenRelease::of_version(&version), Some(release));
            assert!(facts.newest_point.starts_with(&format!("{release}.")));
            assert!(facts.featureset_words <= facts.featureset_words_newest);
        }
        for pair in RELEASES.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.sysctl_interface_version <= b.sysctl_interface_version);
            assert!(a.domctl_interface_version <= b.domctl_interface_version);
            assert!(a.featureset_words <= b.featureset_words);
        }
        assert_eq!(XenRelease::of_version(&XenVersion::new(4, 13, ".0")), None);
        assert_eq!(XenRelease::Master.facts(), None);
    }
}
