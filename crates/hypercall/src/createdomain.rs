//! `xen_domctl_createdomain`, whose layout follows the domctl interface version.
//!
//! | domctl      | Xen       | layout (bytes)                                            |
//! |-------------|-----------|-----------------------------------------------------------|
//! | 0x12        | 4.14      | ... max_maptrack_frames, arch{emulation_flags} (48)       |
//! | 0x13        | 4.15      | + vmtrace_size, arch.misc_flags (56): not carried         |
//! | 0x14        | 4.16      | + grant_opts (60): not carried                            |
//! | 0x15, 0x16  | 4.17-4.18 | + cpupool_id (64)                                         |
//! | 0x17, 0x18  | 4.19-4.22 | + altp2m options (68)                                     |
//!
//! Each carried layout is generated from that release's headers (see `bindings`). Only what a
//! bare, never-run domain needs is filled in; everything else stays zero.

use crate::bindings::{createdomain_4_14 as v12, createdomain_4_17 as v15, xen as v17};
use crate::buffer::Pod;
use crate::error::Error;
use crate::types::DomainKind;

// SAFETY: repr(C) structs of integers and byte arrays (bindgen output); every bit pattern is a
// valid value.
unsafe impl Pod for v12::xen_domctl_createdomain {}
// SAFETY: as above.
unsafe impl Pod for v15::xen_domctl_createdomain {}
// SAFETY: as above (4.21 splits `altp2m_opts` into two u16, same bytes).
unsafe impl Pod for v17::xen_domctl_createdomain {}

/// A createdomain payload in the layout of one domctl interface version.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CreateDomainConfig {
    /// Domctl 0x12 (Xen 4.14).
    V12(v12::xen_domctl_createdomain),
    /// Domctl 0x15/0x16 (Xen 4.17, 4.18).
    V15(v15::xen_domctl_createdomain),
    /// Domctl 0x17/0x18 (Xen 4.19 - 4.22).
    V17(v17::xen_domctl_createdomain),
}

/// Grant table version 1: since domctl 0x14 Xen refuses a domain without a grant version.
const GRANT_VERSION_1: u32 = 1;

/// Device models Xen emulates itself for an HVM guest: everything but vPCI (dom0 only). This
/// keeps `USE_PIRQ`, which 4.14 insists on and later versions accept either way.
const HVM_EMULATION: u32 = v17::XEN_X86_EMU_ALL & !v17::XEN_X86_EMU_VPCI;

impl CreateDomainConfig {
    /// The config for a bare domain of `kind` with one vCPU, for domctl interface `domctl`.
    pub(crate) fn bare(domctl: u32, kind: DomainKind) -> Result<CreateDomainConfig, Error> {
        let flags = match kind {
            DomainKind::Pv => 0,
            DomainKind::Hvm { hap: true } => v17::XEN_DOMCTL_CDF_hvm | v17::XEN_DOMCTL_CDF_hap,
            DomainKind::Hvm { hap: false } => v17::XEN_DOMCTL_CDF_hvm,
        };
        let emulation_flags = match kind {
            DomainKind::Pv => 0,
            DomainKind::Hvm { .. } => HVM_EMULATION,
        };
        // Negative grant/maptrack frame limits mean "Xen's default" in every version here.
        Ok(match domctl {
            0x12 => CreateDomainConfig::V12(v12::xen_domctl_createdomain {
                flags,
                max_vcpus: 1,
                max_grant_frames: -1,
                max_maptrack_frames: -1,
                arch: v12::xen_arch_domainconfig { emulation_flags },
                ..Default::default()
            }),
            0x15 | 0x16 => CreateDomainConfig::V15(v15::xen_domctl_createdomain {
                flags,
                max_vcpus: 1,
                max_grant_frames: -1,
                max_maptrack_frames: -1,
                grant_opts: GRANT_VERSION_1,
                arch: v15::xen_arch_domainconfig { emulation_flags, misc_flags: 0 },
                ..Default::default()
            }),
            0x17 | 0x18 => CreateDomainConfig::V17(v17::xen_domctl_createdomain {
                flags,
                max_vcpus: 1,
                max_grant_frames: -1,
                max_maptrack_frames: -1,
                grant_opts: GRANT_VERSION_1,
                arch: v17::xen_arch_domainconfig { emulation_flags, misc_flags: 0 },
                ..Default::default()
            }),
            _ => return Err(Error::UnsupportedCreateDomainLayout { domctl }),
        })
    }

    /// Size of the payload in bytes.
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        match self {
            CreateDomainConfig::V12(c) => size_of_val(c),
            CreateDomainConfig::V15(c) => size_of_val(c),
            CreateDomainConfig::V17(c) => size_of_val(c),
        }
    }
}

// Sizes Xen's own headers give (also proven by `cargo xtask bindings --check`), and the payload
// must fit the 128-byte domctl union.
const _: () = {
    assert!(size_of::<v12::xen_domctl_createdomain>() == 48);
    assert!(size_of::<v15::xen_domctl_createdomain>() == 64);
    assert!(size_of::<v17::xen_domctl_createdomain>() == 68);
    assert!(size_of::<v17::xen_domctl__bindgen_ty_1>() == 128);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_gets_its_layout() {
        let hvm = DomainKind::Hvm { hap: false };
        let size = |v| CreateDomainConfig::bare(v, hvm).map(|c| c.size());
        assert_eq!(size(0x12).unwrap(), 48);
        assert_eq!(size(0x15).unwrap(), 64);
        assert_eq!(size(0x16).unwrap(), 64);
        assert_eq!(size(0x17).unwrap(), 68);
        assert_eq!(size(0x18).unwrap(), 68);
        for v in [0x11, 0x13, 0x14, 0x19] {
            assert!(matches!(
                CreateDomainConfig::bare(v, hvm),
                Err(Error::UnsupportedCreateDomainLayout { domctl }) if domctl == v
            ));
        }
    }

    #[test]
    fn hvm_gets_full_emulation_and_grant_version() {
        let CreateDomainConfig::V17(c) = CreateDomainConfig::bare(0x17, DomainKind::Hvm { hap: true }).unwrap() else {
            panic!()
        };
        assert_eq!(c.flags, 0b11);
        assert_eq!(c.grant_opts, 1);
        assert_eq!(c.arch.emulation_flags, 0x3ff, "all but vPCI");
        let CreateDomainConfig::V12(c) = CreateDomainConfig::bare(0x12, DomainKind::Pv).unwrap() else { panic!() };
        assert_eq!((c.flags, c.arch.emulation_flags, c.max_vcpus), (0, 0, 1));
    }
}
