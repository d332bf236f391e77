//! Errors: one enum, each variant saying what went wrong and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::types::{DomainId, SystemPolicy, XEN_CPUID_NO_SUBLEAF};

/// Everything that can go wrong talking to Xen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither privcmd device exists.
    #[error(
        "no Xen privcmd device (tried {}): this is not a Xen domain, or the privcmd driver is not \
         loaded; in dom0 run `modprobe xen-privcmd` (and, for /proc/xen, `mount -t xenfs xenfs /proc/xen`)",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoPrivcmd {
        /// The device paths tried.
        tried: Vec<PathBuf>,
    },

    /// The device exists but may not be opened by this user.
    #[error("permission denied opening {}: run as root", path.display())]
    PermissionDenied {
        /// The device path.
        path: PathBuf,
    },

    /// Opening a device failed otherwise.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The device path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// Memory for a hypercall buffer could not be had.
    #[error(
        "cannot allocate a {len}-byte hypercall buffer from {source_name}: {source} (each open \
         /dev/xen/hypercall gives at most 64 pages by default, see the xen-privcmd `limit` \
         parameter; locked memory counts against RLIMIT_MEMLOCK)"
    )]
    BufferAllocation {
        /// Bytes requested.
        len: usize,
        /// Where from ("/dev/xen/hypercall" or "locked anonymous memory").
        source_name: &'static str,
        /// The underlying error.
        source: io::Error,
    },

    /// Xen (or the kernel, for a restricted descriptor) refused with EPERM.
    #[error(
        "{operation}: not permitted (EPERM): the privcmd descriptor is restricted to one domain \
         (IOCTL_PRIVCMD_RESTRICT), or Xen's security policy does not allow this domain the \
         operation; run in dom0 (or a domain XSM allows) on an unrestricted descriptor"
    )]
    NotPermitted {
        /// What was attempted.
        operation: Operation,
    },

    /// Xen accepted none of the interface versions this library knows.
    #[error(
        "{interface} interface version unknown: Xen{} rejected every version this library knows \
         (tried {}) with EACCES; this hypervisor is newer or older than cpupolicy supports, so \
         update cpupolicy",
        xen.as_ref().map(|v| format!(" {v}")).unwrap_or_default(),
        tried.iter().map(|v| format!("{v:#x}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownInterfaceVersion {
        /// sysctl or domctl.
        interface: Interface,
        /// Versions tried, in order.
        tried: Vec<u32>,
        /// The hypervisor's version, if it could be read.
        xen: Option<String>,
    },

    /// The hypervisor does not have what was asked for.
    #[error("{what} is not available on this host: {reason}")]
    NotAvailable {
        /// The featureset, policy or call.
        what: Unavailable,
        /// Why, as far as can be told.
        reason: &'static str,
    },

    /// Xen kept answering ENOBUFS although the buffer was sized as it asked.
    #[error(
        "{operation}: Xen still reports ENOBUFS with room for {entries} entries after \
         {attempts} attempts; the hypervisor's reported sizes are inconsistent (report a bug)"
    )]
    BufferTooSmall {
        /// What was attempted.
        operation: Operation,
        /// Entries provided on the last attempt.
        entries: usize,
        /// Attempts made.
        attempts: usize,
    },

    /// The domain does not exist.
    #[error("{operation}: no domain {domid} (ESRCH)")]
    NoSuchDomain {
        /// What was attempted.
        operation: Operation,
        /// The domain.
        domid: DomainId,
    },

    /// `set_cpu_policy` refused the policy.
    #[error("setting the CPU policy of domain {domid} failed: {rejection}")]
    SetPolicy {
        /// The domain.
        domid: DomainId,
        /// What Xen objected to.
        rejection: PolicyRejection,
    },

    /// Creating a domain is not supported for this domctl interface version.
    #[error(
        "creating a domain needs the xen_domctl_createdomain layout of domctl interface \
         {domctl:#x}, which this library does not carry (it has 0x12, 0x15/0x16 and 0x17/0x18)"
    )]
    UnsupportedCreateDomainLayout {
        /// The probed domctl interface version.
        domctl: u32,
    },

    /// Any other failure of a hypercall.
    #[error("{operation} failed: {errno}")]
    Hypercall {
        /// What was attempted.
        operation: Operation,
        /// The error Xen or the kernel returned.
        errno: Errno,
    },
}

impl Error {
    /// The errno Xen or the kernel returned, where there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Hypercall { errno, .. } => Some(*errno),
            Error::SetPolicy { rejection, .. } => Some(rejection.errno()),
            Error::NotPermitted { .. } => Some(Errno(libc::EPERM)),
            Error::NoSuchDomain { .. } => Some(Errno(libc::ESRCH)),
            Error::Open { source, .. } => source.raw_os_error().map(Errno),
            _ => None,
        }
    }

    /// Maps a failed hypercall's errno to the variant that explains it best.
    pub(crate) fn from_hypercall(operation: Operation, errno: Errno) -> Error {
        match errno.0 {
            libc::EPERM => Error::NotPermitted { operation },
            libc::ESRCH => match operation.domain() {
                Some(domid) => Error::NoSuchDomain { operation, domid },
                None => Error::Hypercall { operation, errno },
            },
            _ => Error::Hypercall { operation, errno },
        }
    }
}

/// The two versioned hypercall interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    /// `__HYPERVISOR_sysctl` (system-wide operations).
    Sysctl,
    /// `__HYPERVISOR_domctl` (per-domain operations).
    Domctl,
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interface::Sysctl => "sysctl",
            Interface::Domctl => "domctl",
        })
    }
}

/// Something this hypervisor may not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// A system featureset (pv_max/hvm_max before Xen 4.18 without the backport; HVM ones
    /// without HVM support).
    Featureset(SystemPolicy),
    /// A system policy (HVM ones on a host without HVM support, PV ones without PV).
    Policy(SystemPolicy),
    /// `XEN_SYSCTL_get_cpu_levelling_caps` (removed in Xen 4.22).
    LevellingCaps,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Featureset(fs) => write!(f, "the {fs} featureset"),
            Unavailable::Policy(p) => write!(f, "the {p} CPU policy"),
            Unavailable::LevellingCaps => f.write_str("get_cpu_levelling_caps"),
        }
    }
}

/// A hypercall operation, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `xen_version`.
    XenVersion,
    /// Probing an interface version.
    Probe(Interface),
    /// `sysctl physinfo`.
    Physinfo,
    /// `sysctl get_cpu_levelling_caps`.
    LevellingCaps,
    /// `sysctl get_cpu_featureset`.
    Featureset(SystemPolicy),
    /// `sysctl get_cpu_policy`.
    SystemPolicy(SystemPolicy),
    /// `domctl get_cpu_policy`.
    DomainPolicy(DomainId),
    /// `domctl set_cpu_policy`.
    SetDomainPolicy(DomainId),
    /// `domctl createdomain`.
    CreateDomain,
    /// `domctl destroydomain`.
    DestroyDomain(DomainId),
    /// `IOCTL_PRIVCMD_RESTRICT`.
    Restrict(DomainId),
}

impl Operation {
    fn domain(self) -> Option<DomainId> {
        match self {
            Operation::DomainPolicy(d)
            | Operation::SetDomainPolicy(d)
            | Operation::DestroyDomain(d)
            | Operation::Restrict(d) => Some(d),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::XenVersion => f.write_str("xen_version"),
            Operation::Probe(i) => write!(f, "probing the {i} interface version"),
            Operation::Physinfo => f.write_str("sysctl physinfo"),
            Operation::LevellingCaps => f.write_str("sysctl get_cpu_levelling_caps"),
            Operation::Featureset(fs) => write!(f, "sysctl get_cpu_featureset ({fs})"),
            Operation::SystemPolicy(p) => write!(f, "sysctl get_cpu_policy ({p})"),
            Operation::DomainPolicy(d) => write!(f, "domctl get_cpu_policy (domain {d})"),
            Operation::SetDomainPolicy(d) => write!(f, "domctl set_cpu_policy (domain {d})"),
            Operation::CreateDomain => f.write_str("domctl createdomain"),
            Operation::DestroyDomain(d) => write!(f, "domctl destroydomain (domain {d})"),
            Operation::Restrict(d) => write!(f, "restricting privcmd to domain {d}"),
        }
    }
}

/// An errno value from Xen or the kernel (Xen's numbers equal Linux's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`"ENOBUFS"`), where known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::ESRCH => "ESRCH",
            libc::EINTR => "EINTR",
            libc::E2BIG => "E2BIG",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOTTY => "ENOTTY",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = io::Error::from_raw_os_error(self.0).to_string();
        // io::Error renders "Some text (os error 22)"; keep the text, lead with the name.
        let text = text.split(" (os error").next().unwrap_or(&text);
        match self.name() {
            Some(name) => write!(f, "{name} ({text})"),
            None => write!(f, "errno {} ({text})", self.0),
        }
    }
}

/// Why Xen refused a domain's new CPU policy.
///
/// Xen reports the offending entry in `err_leaf`/`err_subleaf`/`err_msr`; the variants carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRejection {
    /// E2BIG: more leaves or MSRs than a policy can hold.
    TooManyEntries {
        /// Leaves given.
        leaves: usize,
        /// MSRs given.
        msrs: usize,
        /// The most Xen accepts `(leaves, msrs)`, if it could be asked.
        limit: Option<(u32, u32)>,
    },
    /// ERANGE: a leaf or sub-leaf Xen's policy has no room for.
    LeafOutOfRange {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf (`None` = [`XEN_CPUID_NO_SUBLEAF`]).
        subleaf: Option<u32>,
    },
    /// ERANGE: an MSR Xen does not keep in a CPU policy.
    MsrOutOfRange {
        /// The MSR index.
        index: u32,
    },
    /// EINVAL: an MSR entry with non-zero `flags`.
    MsrFlagsNotZero {
        /// The MSR index.
        index: u32,
    },
    /// EOVERFLOW: an MSR value wider than Xen's field for it.
    ValueTooWide {
        /// The MSR index.
        index: u32,
    },
    /// EINVAL after merging: a max leaf / sub-leaf beyond what the max policy allows.
    LeafExceedsMax {
        /// The leaf (0 = max basic leaf, 7 = max sub-leaf of leaf 7, 0x80000000 = max
        /// extended leaf).
        leaf: u32,
        /// The sub-leaf (`None` = [`XEN_CPUID_NO_SUBLEAF`]).
        subleaf: Option<u32>,
    },
    /// EINVAL after merging: MSR bits the max policy does not have (PLATFORM_INFO).
    MsrExceedsMax {
        /// The MSR index.
        index: u32,
    },
    /// EINVAL with no entry named: the target is the calling domain itself.
    CallingDomain,
    /// EEXIST: the domain has already run; its policy is fixed.
    DomainHasRun,
    /// Anything else.
    Other {
        /// The errno.
        errno: Errno,
        /// `err_leaf`, `err_subleaf`, `err_msr` as Xen left them (`~0` = none).
        err: (u32, u32, u32),
    },
}

impl PolicyRejection {
    /// The errno Xen returned for this rejection.
    pub fn errno(&self) -> Errno {
        Errno(match self {
            PolicyRejection::TooManyEntries { .. } => libc::E2BIG,
            PolicyRejection::LeafOutOfRange { .. } | PolicyRejection::MsrOutOfRange { .. } => libc::ERANGE,
            PolicyRejection::MsrFlagsNotZero { .. }
            | PolicyRejection::LeafExceedsMax { .. }
            | PolicyRejection::MsrExceedsMax { .. }
            | PolicyRejection::CallingDomain => libc::EINVAL,
            PolicyRejection::ValueTooWide { .. } => libc::EOVERFLOW,
            PolicyRejection::DomainHasRun => libc::EEXIST,
            PolicyRejection::Other { errno, .. } => return *errno,
        })
    }

    /// Interprets Xen's answer to `set_cpu_policy`: its errno, the `err_*` fields it filled
    /// (`~0` where it named nothing), and the MSRs we sent (to tell the two EINVALs that name
    /// an MSR apart).
    pub(crate) fn from_xen(
        errno: Errno,
        err_leaf: u32,
        err_subleaf: u32,
        err_msr: u32,
        msrs: &[crate::XenMsrEntry],
    ) -> PolicyRejection {
        const NONE: u32 = !0;
        let subleaf = (err_subleaf != XEN_CPUID_NO_SUBLEAF).then_some(err_subleaf);
        let sent_flags = |index| msrs.iter().any(|m| m.idx == index && m.flags != 0);
        match (errno.0, err_leaf != NONE, err_msr != NONE) {
            (libc::E2BIG, _, _) => PolicyRejection::TooManyEntries { leaves: 0, msrs: 0, limit: None },
            (libc::ERANGE, true, _) => PolicyRejection::LeafOutOfRange { leaf: err_leaf, subleaf },
            (libc::ERANGE, false, true) => PolicyRejection::MsrOutOfRange { index: err_msr },
            (libc::EOVERFLOW, _, true) => PolicyRejection::ValueTooWide { index: err_msr },
            (libc::EINVAL, false, true) if sent_flags(err_msr) => PolicyRejection::MsrFlagsNotZero { index: err_msr },
            (libc::EINVAL, false, true) => PolicyRejection::MsrExceedsMax { index: err_msr },
            (libc::EINVAL, true, _) => PolicyRejection::LeafExceedsMax { leaf: err_leaf, subleaf },
            (libc::EINVAL, false, false) => PolicyRejection::CallingDomain,
            (libc::EEXIST, _, _) => PolicyRejection::DomainHasRun,
            _ => PolicyRejection::Other { errno, err: (err_leaf, err_subleaf, err_msr) },
        }
    }
}

/// "leaf 0x7 sub-leaf 0x3" / "leaf 0x80000008".
struct LeafName(u32, Option<u32>);

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(sub) => write!(f, "CPUID leaf {:#x} sub-leaf {sub:#x}", self.0),
            None => write!(f, "CPUID leaf {:#x}", self.0),
        }
    }
}

impl fmt::Display for PolicyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errno = self.errno();
        match self {
            PolicyRejection::TooManyEntries { leaves, msrs, limit } => {
                write!(f, "{errno}: too many entries ({leaves} leaves, {msrs} MSRs)")?;
                if let Some((l, m)) = limit {
                    write!(f, "; Xen accepts at most {l} leaves and {m} MSRs")?;
                }
                f.write_str(": send each leaf and MSR once")
            }
            PolicyRejection::LeafOutOfRange { leaf, subleaf } => write!(
                f,
                "{errno}: {} is outside what Xen's policy holds (leaves without sub-leaves take \
                 sub-leaf 0xffffffff): drop or fix that entry",
                LeafName(*leaf, *subleaf)
            ),
            PolicyRejection::MsrOutOfRange { index } => {
                write!(f, "{errno}: MSR {index:#x} is not part of a Xen CPU policy: drop that entry")
            }
            PolicyRejection::MsrFlagsNotZero { index } => {
                write!(f, "{errno}: MSR {index:#x} has non-zero flags (reserved, must be 0)")
            }
            PolicyRejection::ValueTooWide { index } => {
                write!(f, "{errno}: the value for MSR {index:#x} has bits beyond the width Xen keeps for it")
            }
            PolicyRejection::LeafExceedsMax { leaf, subleaf } => write!(
                f,
                "{errno}: {} exceeds the domain type's max policy (max leaf or sub-leaf too \
                 high): level against the max policy first",
                LeafName(*leaf, *subleaf)
            ),
            PolicyRejection::MsrExceedsMax { index } => write!(
                f,
                "{errno}: MSR {index:#x} has bits the domain type's max policy lacks: level \
                 against the max policy first"
            ),
            PolicyRejection::CallingDomain => {
                write!(f, "{errno}: a domain cannot change its own CPU policy")
            }
            PolicyRejection::DomainHasRun => write!(
                f,
                "{errno}: the domain has already run; a CPU policy can only be set before the \
                 domain is first unpaused"
            ),
            PolicyRejection::Other { err: (l, s, m), .. } => {
                write!(f, "{errno} (err_leaf {l:#x}, err_subleaf {s:#x}, err_msr {m:#x})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XenMsrEntry;

    const NONE: u32 = !0;

    fn reject(errno: i32, leaf: u32, sub: u32, msr: u32, msrs: &[XenMsrEntry]) -> PolicyRejection {
        PolicyRejection::from_xen(Errno(errno), leaf, sub, msr, msrs)
    }

    #[test]
    fn set_policy_errnos_map_to_named_entries() {
        assert!(matches!(reject(libc::E2BIG, NONE, NONE, NONE, &[]), PolicyRejection::TooManyEntries { .. }));
        assert_eq!(
            reject(libc::ERANGE, 7, 99, NONE, &[]),
            PolicyRejection::LeafOutOfRange { leaf: 7, subleaf: Some(99) }
        );
        assert_eq!(
            reject(libc::ERANGE, 0x5000_0000, NONE, NONE, &[]),
            PolicyRejection::LeafOutOfRange { leaf: 0x5000_0000, subleaf: None }
        );
        assert_eq!(reject(libc::ERANGE, NONE, NONE, 0x10, &[]), PolicyRejection::MsrOutOfRange { index: 0x10 });
        assert_eq!(reject(libc::EOVERFLOW, NONE, NONE, 0xce, &[]), PolicyRejection::ValueTooWide { index: 0xce });
        let flagged = [XenMsrEntry { idx: 0xce, flags: 1, val: 0 }];
        assert_eq!(reject(libc::EINVAL, NONE, NONE, 0xce, &flagged), PolicyRejection::MsrFlagsNotZero { index: 0xce });
        assert_eq!(reject(libc::EINVAL, NONE, NONE, 0xce, &[]), PolicyRejection::MsrExceedsMax { index: 0xce });
        assert_eq!(
            reject(libc::EINVAL, 0, NONE, NONE, &[]),
            PolicyRejection::LeafExceedsMax { leaf: 0, subleaf: None }
        );
        assert_eq!(reject(libc::EINVAL, NONE, NONE, NONE, &[]), PolicyRejection::CallingDomain);
        assert_eq!(reject(libc::EEXIST, NONE, NONE, NONE, &[]), PolicyRejection::DomainHasRun);
        assert!(matches!(
            reject(libc::ENOMEM, NONE, NONE, NONE, &[]),
            PolicyRejection::Other { errno: Errno(libc::ENOMEM), .. }
        ));
    }

    #[test]
    fn rejection_messages_name_the_entry() {
        let msg = PolicyRejection::LeafOutOfRange { leaf: 7, subleaf: Some(99) }.to_string();
        assert!(msg.starts_with("ERANGE"), "{msg}");
        assert!(msg.contains("leaf 0x7 sub-leaf 0x63"), "{msg}");
        let msg = PolicyRejection::ValueTooWide { index: 0xce }.to_string();
        assert!(msg.contains("EOVERFLOW") && msg.contains("MSR 0xce"), "{msg}");
        let msg = PolicyRejection::MsrFlagsNotZero { index: 0xce }.to_string();
        assert!(msg.contains("EINVAL") && msg.contains("flags"), "{msg}");
    }

    #[test]
    fn errno_mapping_picks_the_explaining_variant() {
        let e = Error::from_hypercall(Operation::SystemPolicy(SystemPolicy::Host), Errno(1));
        assert!(matches!(e, Error::NotPermitted { .. }));
        assert!(e.to_string().contains("restricted"), "{e}");
        let e = Error::from_hypercall(Operation::DomainPolicy(9), Errno(libc::ESRCH));
        assert!(matches!(e, Error::NoSuchDomain { domid: 9, .. }));
        let e = Error::from_hypercall(Operation::Physinfo, Errno(libc::EFAULT));
        assert_eq!(e.to_string(), "sysctl physinfo failed: EFAULT (Bad address)");
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = Error::NoPrivcmd { tried: vec!["/dev/xen/privcmd".into()] };
        assert!(e.to_string().contains("modprobe xen-privcmd"), "{e}");
        let e = Error::PermissionDenied { path: "/dev/xen/privcmd".into() };
        assert!(e.to_string().contains("root"), "{e}");
        let e = Error::UnknownInterfaceVersion {
            interface: Interface::Domctl,
            tried: vec![0x18, 0x17],
            xen: Some("4.99".into()),
        };
        assert!(e.to_string().contains("tried 0x18, 0x17"), "{e}");
        assert!(e.to_string().contains("Xen 4.99"), "{e}");
    }

    #[test]
    fn errno_display_has_name_and_text() {
        assert_eq!(Errno(libc::ENOBUFS).to_string(), "ENOBUFS (No buffer space available)");
        assert_eq!(Errno(4095).name(), None);
    }
}
