//! Xen's six system policies, their two index numberings, and Xen's version.

use std::fmt;
use std::str::FromStr;

/// One of the six policies Xen computes at boot (REFERENCE §4).
///
/// Default is what a newly booted VM gets; Max is the most Xen can give, hence what it can
/// accept from an incoming migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SystemPolicy {
    /// What the hardware says.
    Raw,
    /// What Xen itself uses.
    Host,
    /// The most a PV guest can have.
    PvMax,
    /// The most an HVM guest can have.
    HvmMax,
    /// What a new PV guest gets.
    PvDefault,
    /// What a new HVM guest gets.
    HvmDefault,
}

/// The index `XEN_SYSCTL_get_cpu_featureset` takes: raw 0, host 1, pv (default) 2,
/// hvm (default) 3, pv_max 4, hvm_max 5. Not interchangeable with [`PolicyIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeaturesetIndex(u32);

/// The index `XEN_SYSCTL_get_cpu_policy` takes: raw 0, host 1, pv_max 2, hvm_max 3,
/// pv_default 4, hvm_default 5. Not interchangeable with [`FeaturesetIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyIndex(u32);

impl FeaturesetIndex {
    /// The number to put in the sysctl.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl PolicyIndex {
    /// The number to put in the sysctl.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl SystemPolicy {
    /// All six, in [`PolicyIndex`] order (the order `xen-cpuid -p` prints them).
    pub const ALL: [SystemPolicy; 6] = [
        SystemPolicy::Raw,
        SystemPolicy::Host,
        SystemPolicy::PvMax,
        SystemPolicy::HvmMax,
        SystemPolicy::PvDefault,
        SystemPolicy::HvmDefault,
    ];

    /// Its index for `XEN_SYSCTL_get_cpu_featureset`.
    #[inline]
    pub const fn featureset_index(self) -> FeaturesetIndex {
        FeaturesetIndex(match self {
            SystemPolicy::Raw => 0,
            SystemPolicy::Host => 1,
            SystemPolicy::PvDefault => 2,
            SystemPolicy::HvmDefault => 3,
            SystemPolicy::PvMax => 4,
            SystemPolicy::HvmMax => 5,
        })
    }

    /// Its index for `XEN_SYSCTL_get_cpu_policy`.
    #[inline]
    pub const fn policy_index(self) -> PolicyIndex {
        PolicyIndex(match self {
            SystemPolicy::Raw => 0,
            SystemPolicy::Host => 1,
            SystemPolicy::PvMax => 2,
            SystemPolicy::HvmMax => 3,
            SystemPolicy::PvDefault => 4,
            SystemPolicy::HvmDefault => 5,
        })
    }

    /// The policy with this featureset index.
    #[inline]
    pub fn from_featureset_index(index: u32) -> Option<SystemPolicy> {
        SystemPolicy::ALL.into_iter().find(|p| p.featureset_index().0 == index)
    }

    /// The policy with this policy index.
    #[inline]
    pub fn from_policy_index(index: u32) -> Option<SystemPolicy> {
        SystemPolicy::ALL.into_iter().find(|p| p.policy_index().0 == index)
    }

    /// The name used in this project's JSON and command line: `raw`, `pv_max`, …
    #[inline]
    pub const fn name(self) -> &'static str {
        match self {
            SystemPolicy::Raw => "raw",
            SystemPolicy::Host => "host",
            SystemPolicy::PvMax => "pv_max",
            SystemPolicy::HvmMax => "hvm_max",
            SystemPolicy::PvDefault => "pv_default",
            SystemPolicy::HvmDefault => "hvm_default",
        }
    }

    /// The label `xen-cpuid -p` prints: `Raw`, `PV Max`, …
    #[inline]
    pub const fn xen_cpuid_label(self) -> &'static str {
        match self {
            SystemPolicy::Raw => "Raw",
            SystemPolicy::Host => "Host",
            SystemPolicy::PvMax => "PV Max",
            SystemPolicy::HvmMax => "HVM Max",
            SystemPolicy::PvDefault => "PV Default",
            SystemPolicy::HvmDefault => "HVM Default",
        }
    }
}

impl fmt::Display for SystemPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SystemPolicy {
    type Err = UnknownSystemPolicy;

    /// The JSON name (`pv_max`), with `-` for `_` (`pv-max`), or `xen-cpuid`'s label (`PV Max`);
    /// case does not matter.
    fn from_str(text: &str) -> Result<SystemPolicy, UnknownSystemPolicy> {
        let normal = text.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        SystemPolicy::ALL
            .into_iter()
            .find(|p| p.name() == normal)
            .ok_or_else(|| UnknownSystemPolicy { name: text.to_string() })
    }
}

/// A name that is not one of the six system policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a system policy (raw, host, pv_max, hvm_max, pv_default, hvm_default)")]
pub struct UnknownSystemPolicy {
    /// The name as given.
    pub name: String,
}

/// A Xen version as the hypervisor reports it: `XENVER_version` (major, minor) and
/// `XENVER_extraversion` (`.3`, `-unstable`, `.6-pre`…).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XenVersion {
    /// Major version (4).
    pub major: u32,
    /// Minor version (20).
    pub minor: u32,
    /// The extra version string, as given (`.3`).
    #[serde(default)]
    pub extra: String,
}

impl XenVersion {
    /// A version from its parts.
    pub fn new(major: u32, minor: u32, extra: impl Into<String>) -> XenVersion {
        XenVersion { major, minor, extra: extra.into() }
    }

    /// The point release, when the extra version starts with `.N` (`.3` → 3, `.6-pre` → 6).
    pub fn micro(&self) -> Option<u32> {
        let digits: String = self.extra.strip_prefix('.')?.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// Parses `4.20.3`, `4.21-unstable`, `4.17.6-pre`: the version as Xen prints it, the
    /// extra version empty, `.N` (a point release that fits 32 bits) or `-…`, either followed
    /// by a suffix of letters, digits and `.`, `-`, `+`, `~` (`.6-pre`, `.0-rc2`, `-unstable`).
    /// Anything else (`4.14junk`, `4.14.-5`, `4.14.99999999999`, `04.14`, `+4.14`) is no
    /// version: it is refused rather than read as some other release.
    pub fn parse(text: &str) -> Option<XenVersion> {
        /// A decimal number as Xen prints one: digits, no sign, no leading zero, fitting 32 bits.
        fn number(digits: &str) -> Option<u32> {
            let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            (plain && (digits == "0" || !digits.starts_with('0'))).then(|| digits.parse().ok()).flatten()
        }
        let (major, rest) = text.trim().split_once('.')?;
        let split = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (minor, extra) = rest.split_at(split);
        let suffix = match extra.as_bytes().first() {
            None => "",
            Some(b'.') => {
                let digits = &extra[1..];
                let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
                number(&digits[..end])?;
                match &digits[end..] {
                    "" => "",
                    rest if rest.starts_with(['-', '+', '.', '~']) => rest,
                    _ => return None,
                }
            }
            Some(b'-') => extra,
            Some(_) => return None,
        };
        if !suffix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'~')) {
            return None;
        }
        Some(XenVersion::new(number(major)?, number(minor)?, extra))
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}{}", self.major, self.minor, self.extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_numberings_differ_exactly_where_xen_says() {
        let featureset: Vec<u32> = SystemPolicy::ALL.iter().map(|p| p.featureset_index().get()).collect();
        let policy: Vec<u32> = SystemPolicy::ALL.iter().map(|p| p.policy_index().get()).collect();
        // ALL is raw, host, pv_max, hvm_max, pv_default, hvm_default.
        assert_eq!(featureset, [0, 1, 4, 5, 2, 3]);
        assert_eq!(policy, [0, 1, 2, 3, 4, 5]);
        for p in SystemPolicy::ALL {
            assert_eq!(SystemPolicy::from_featureset_index(p.featureset_index().get()), Some(p));
            assert_eq!(SystemPolicy::from_policy_index(p.policy_index().get()), Some(p));
        }
        assert_eq!(SystemPolicy::from_policy_index(6), None);
    }

    #[test]
    fn names_parse_in_every_spelling() {
        for p in SystemPolicy::ALL {
            assert_eq!(p.name().parse::<SystemPolicy>(), Ok(p));
            assert_eq!(p.xen_cpuid_label().parse::<SystemPolicy>(), Ok(p));
        }
        assert_eq!("hvm-default".parse::<SystemPolicy>(), Ok(SystemPolicy::HvmDefault));
        assert!("pv".parse::<SystemPolicy>().is_err());
    }

    #[test]
    fn xen_versions_parse_and_print() {
        let v = XenVersion::parse("4.20.3").unwrap();
        assert_eq!((v.major, v.minor, v.extra.as_str(), v.micro()), (4, 20, ".3", Some(3)));
        assert_eq!(v.to_string(), "4.20.3");
        assert_eq!(XenVersion::parse("4.21-unstable").unwrap().micro(), None);
        assert_eq!(XenVersion::parse("4.17.6-pre").unwrap().micro(), Some(6));
        assert_eq!(XenVersion::parse("four"), None);
        assert_eq!(XenVersion::parse("4.14").unwrap().micro(), None);
        assert_eq!(XenVersion::parse(" 4.17.2 ").unwrap(), XenVersion::new(4, 17, ".2"));
        assert_eq!(XenVersion::parse("4.20.0-rc2").unwrap().micro(), Some(0));
        assert_eq!(XenVersion::parse("4.19.1+debian~b1").unwrap().micro(), Some(1));
        assert_eq!(XenVersion::parse("5.0").unwrap(), XenVersion::new(5, 0, ""));
        // What is no version is refused, not read as some other release.
        for text in [
            "4.14junk",
            "4.14.-5",
            "4.14 .5",
            "4.14.",
            "4.14.5x",
            "4.14.99999999999",
            "4.4294967296",
            "04.14",
            "4.014",
            "+4.14",
            "4.20;rm -rf",
            "4.20.1-a b",
            "4",
            ".4",
        ] {
            assert_eq!(XenVersion::parse(text), None, "{text}");
        }
    }
}
