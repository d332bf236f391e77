//! The CPU vendor, from the 12-byte identification string of leaf 0.

use std::fmt;

/// The CPU vendor, as leaf 0's EBX, EDX, ECX spell it (Xen's `x86_cpuid_lookup_vendor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// `GenuineIntel`.
    Intel,
    /// `AuthenticAMD`.
    Amd,
    /// `HygonGenuine`: AMD's Zen licensed to Hygon; AMD-like in every leaf Xen cares about.
    Hygon,
    /// `CentaurHauls` (VIA, Zhaoxin).
    Centaur,
    /// `  Shanghai  ` (Zhaoxin).
    Shanghai,
    /// Anything else, kept as its 12 bytes (EBX, EDX, ECX order).
    Other(VendorId),
}

/// A 12-byte vendor identification string, in EBX, EDX, ECX order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VendorId(pub [u8; 12]);

impl Vendor {
    /// The vendor from leaf 0's registers.
    #[inline]
    pub fn from_leaf0(ebx: u32, ecx: u32, edx: u32) -> Vendor {
        let id = VendorId::from_leaf0(ebx, ecx, edx);
        [Vendor::Intel, Vendor::Amd, Vendor::Hygon, Vendor::Centaur, Vendor::Shanghai]
            .into_iter()
            .find(|known| known.id() == id)
            .unwrap_or(Vendor::Other(id))
    }

    /// The 12-byte identification string, in EBX, EDX, ECX order.
    #[inline]
    pub const fn id(self) -> VendorId {
        VendorId(*match self {
            Vendor::Intel => b"GenuineIntel",
            Vendor::Amd => b"AuthenticAMD",
            Vendor::Hygon => b"HygonGenuine",
            Vendor::Centaur => b"CentaurHauls",
            Vendor::Shanghai => b"  Shanghai  ",
            Vendor::Other(id) => return id,
        })
    }

    /// AMD or Hygon: the vendors whose extended leaves follow AMD's layout.
    #[inline]
    pub fn is_amd_like(self) -> bool {
        matches!(self, Vendor::Amd | Vendor::Hygon)
    }
}

impl fmt::Display for Vendor {
    /// Xen's names (`x86_cpuid_vendor_to_str`); other vendors by their string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vendor::Intel => f.write_str("Intel"),
            Vendor::Amd => f.write_str("AMD"),
            Vendor::Hygon => f.write_str("Hygon"),
            Vendor::Centaur => f.write_str("Centaur"),
            Vendor::Shanghai => f.write_str("Shanghai"),
            Vendor::Other(id) => write!(f, "{id}"),
        }
    }
}

impl VendorId {
    /// The string from leaf 0's registers.
    #[inline]
    pub fn from_leaf0(ebx: u32, ecx: u32, edx: u32) -> VendorId {
        let mut bytes = [0; 12];
        bytes[0..4].copy_from_slice(&ebx.to_le_bytes());
        bytes[4..8].copy_from_slice(&edx.to_le_bytes());
        bytes[8..12].copy_from_slice(&ecx.to_le_bytes());
        VendorId(bytes)
    }
}

impl VendorId {
    /// Leaf 0's EBX, ECX, EDX spelling this string.
    #[inline]
    pub const fn leaf0(self) -> (u32, u32, u32) {
        let b = self.0;
        (
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        )
    }
}

impl fmt::Display for VendorId {
    /// Printable ASCII as is, anything else as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &byte in &self.0 {
            if byte.is_ascii_graphic() || byte == b' ' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for VendorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorId(\"{self}\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vendors_by_their_strings() {
        assert_eq!(Vendor::from_leaf0(0x756e_6547, 0x6c65_746e, 0x4965_6e69), Vendor::Intel);
        assert_eq!(Vendor::from_leaf0(0x6874_7541, 0x444d_4163, 0x6974_6e65), Vendor::Amd);
        let other = Vendor::from_leaf0(0x4b4d_564b, 0x0000_004d, 0x564b_4d56);
        assert_eq!(other.to_string(), "KVMKVMKVM\\x00\\x00\\x00");
        assert!(Vendor::Hygon.is_amd_like() && !Vendor::Intel.is_amd_like());
        for vendor in [Vendor::Intel, Vendor::Amd, Vendor::Hygon, Vendor::Centaur, Vendor::Shanghai, other] {
            let (ebx, ecx, edx) = vendor.id().leaf0();
            assert_eq!(Vendor::from_leaf0(ebx, ecx, edx), vendor);
        }
    }
}
