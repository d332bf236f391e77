//! Fetching from Xen into the policy model: the glue between `cpupolicy-hypercall`, which speaks
//! Xen's ABI, and `cpupolicy-policy`, which models what it carries. The `cpupolicy` facade
//! re-exports it as `cpupolicy::xen`; the C API uses it too.

use cpupolicy_featureset::Featureset;
use cpupolicy_hypercall::{self as hypercall, XenHandle};
use cpupolicy_policy::{CpuPolicy, HostBundle, LevellingCaps, SystemPolicies, SystemPolicy, WireLimits, XenVersion};

/// A failure fetching from Xen.
#[derive(Debug, thiserror::Error)]
pub enum XenError {
    /// The hypercall layer failed (no privcmd, permission, interface version, …).
    #[error(transparent)]
    Hypercall(#[from] hypercall::Error),
    /// Xen returned a policy this library cannot read.
    #[error("{which} policy from Xen: {error}")]
    Policy {
        /// Which policy.
        which: SystemPolicy,
        /// What was wrong with it.
        error: cpupolicy_policy::WireError,
    },
    /// Xen returned a domain policy this library cannot read.
    #[error("policy of domain {domid} from Xen: {error}")]
    DomainPolicy {
        /// The domain.
        domid: hypercall::DomainId,
        /// What was wrong with it.
        error: cpupolicy_policy::WireError,
    },
}

/// The six system featuresets in `xen-cpuid`'s order ("Dynamic sets"), each with its label and
/// `None` where this Xen does not provide it.
pub const FEATURESETS: [(SystemPolicy, &str); 6] = [
    (SystemPolicy::Raw, "Raw"),
    (SystemPolicy::Host, "Host"),
    (SystemPolicy::PvDefault, "PV Default"),
    (SystemPolicy::HvmDefault, "HVM Default"),
    (SystemPolicy::PvMax, "PV Max"),
    (SystemPolicy::HvmMax, "HVM Max"),
];

/// Every system featureset, in [`FEATURESETS`] order; `None` where Xen does not provide it.
pub fn system_featuresets(handle: &XenHandle) -> Result<Vec<Option<Featureset>>, XenError> {
    FEATURESETS
        .iter()
        .map(|(which, _)| match handle.system_featureset(*which) {
            Ok(set) => Ok(Some(set)),
            Err(hypercall::Error::NotAvailable { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        })
        .collect()
}

/// The version of the Xen behind `handle`.
pub fn xen_version(handle: &XenHandle) -> Result<XenVersion, XenError> {
    Ok(handle.xen_version()?)
}

/// The running Xen's version and its policy format (the newest known one where the version
/// has none in the table, i.e. before 4.14).
fn version_and_limits(handle: &XenHandle) -> Result<(XenVersion, WireLimits), XenError> {
    let version = xen_version(handle)?;
    let limits = WireLimits::for_xen(&version).unwrap_or(WireLimits::LATEST);
    Ok((version, limits))
}

/// All six system policies with the Xen and interface versions they came from.
pub fn host_bundle(handle: &XenHandle) -> Result<HostBundle, XenError> {
    let (xen_version, limits) = version_and_limits(handle)?;
    let interfaces = handle.interface_versions()?;
    let mut policies = SystemPolicies::new();
    for which in SystemPolicy::ALL {
        let serialised = match handle.system_policy(which) {
            Ok(serialised) => serialised,
            Err(hypercall::Error::NotAvailable { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let policy = policy_from_xen(&serialised, &limits).map_err(|error| XenError::Policy { which, error })?;
        policies.set(which, Some(policy));
    }
    Ok(HostBundle {
        xen_version: Some(xen_version),
        sysctl_interface_version: Some(interfaces.sysctl),
        domctl_interface_version: Some(interfaces.domctl),
        max_leaves: None,
        max_msrs: None,
        policies,
        levelling_caps: Some(levelling_caps(handle)?),
        mxcsr_mask: mxcsr_mask(),
    })
}

/// The MXCSR mask of the CPU this runs on, as `FXSAVE` stores it (bytes 28–31 of the save
/// area; 0 there means a CPU from before the field, whose mask is 0xffbf). In dom0 this is the
/// hardware's: `FXSAVE` is not intercepted. `None` off x86-64.
pub fn mxcsr_mask() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        #[repr(C, align(16))]
        struct SaveArea([u8; 512]);
        let mut area = SaveArea([0; 512]);
        // SAFETY: FXSAVE writes exactly 512 bytes at a 16-byte-aligned address, which `area`
        // is; FXSR is part of the x86-64 baseline, and FXSAVE only reads the FPU/SSE state.
        unsafe { core::arch::x86_64::_fxsave(area.0.as_mut_ptr()) };
        let stored = u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]);
        Some(if stored == 0 { 0xffbf } else { stored })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// What the levelling-capabilities sysctl says; its absence (Xen 4.22+) is an answer too.
pub fn levelling_caps(handle: &XenHandle) -> Result<LevellingCaps, XenError> {
    match handle.cpu_levelling_caps() {
        Ok(caps) => Ok(LevellingCaps::Sysctl(caps.bits)),
        Err(hypercall::Error::NotAvailable { .. }) => Ok(LevellingCaps::NoSysctl),
        Err(error) => Err(error.into()),
    }
}

/// A domain's policy.
pub fn domain_policy(handle: &XenHandle, domid: hypercall::DomainId) -> Result<CpuPolicy, XenError> {
    let (_, limits) = version_and_limits(handle)?;
    let serialised = handle.domain_policy(domid)?;
    policy_from_xen(&serialised, &limits).map_err(|error| XenError::DomainPolicy { domid, error })
}

/// Sets a domain's policy. Entries Xen's format for this release cannot carry are not sent; they
/// are returned so the caller can say so. Xen's rejection names the leaf, sub-leaf or MSR.
pub fn set_domain_policy(
    handle: &XenHandle,
    domid: hypercall::DomainId,
    policy: &CpuPolicy,
) -> Result<Vec<cpupolicy_policy::Dropped>, XenError> {
    let (_, limits) = version_and_limits(handle)?;
    let wire = policy.to_wire(&limits);
    handle.set_domain_policy(domid, &wire.leaves, &wire.msrs)?;
    Ok(wire.dropped)
}

/// Reads Xen's arrays (the ABI crate's entries, as the hypercall crate returns them) into a policy.
pub fn policy_from_xen(
    serialised: &hypercall::SerialisedPolicy,
    limits: &WireLimits,
) -> Result<CpuPolicy, cpupolicy_policy::WireError> {
    CpuPolicy::from_wire(&serialised.leaves, &serialised.msrs, limits)
}

#[cfg(test)]
mod tests {
    /// Every CPU with SSE accepts at least the MXCSR bits of the architectural default mask
    /// (0xffbf: all of bits 0-15 but DAZ; Intel SDM vol. 1, 11.6.6), and none above bit 17.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_mxcsr_mask_holds_the_architectural_bits() {
        let mask = super::mxcsr_mask().expect("x86-64 has FXSAVE");
        assert_eq!(mask & 0xffbf, 0xffbf, "{mask:#x}");
        assert_eq!(mask >> 18, 0, "{mask:#x}");
    }
}
