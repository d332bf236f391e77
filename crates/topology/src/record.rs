//! The topology record a toolstack carries in its migration stream.
//!
//! A VM must keep the APIC IDs and Hyper-V VP indices it booted with. Streams from toolstacks
//! that predate this record carry nothing, and those VMs booted with Xen's legacy scheme
//! (APIC ID = 2 × vCPU), so *absence* of the record is itself information:
//! [`TopologyRecord::from_stream`] turns `None` into [`StreamTopology::XenLegacy`] rather than
//! leaving every caller to remember it.
//!
//! Binary form, version 1, little-endian (40 bytes + 8 per vCPU):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `TOPO` |
//! | 4 | 2 | version (1) |
//! | 6 | 2 | reserved, 0 |
//! | 8 | 1 | scheme: 0 Xen legacy, 1 modern |
//! | 9 | 1 | vendor: 0 Intel, 1 AMD, 2 Hygon |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 24 | packages, dies/package, tiles/die, modules/tile, cores/module, threads/core (u32 each) |
//! | 36 | 4 | number of vCPUs *n* |
//! | 40 | 8 *n* | per vCPU: APIC ID (u32), Hyper-V VP index (u32) |
//!
//! The same struct derives serde for toolstacks that prefer JSON.

use serde::{Deserialize, Serialize};

use crate::error::TopologyError;
use crate::shape::{Scheme, Shape, Topology, Vendor};

/// Size of the fixed header.
const HEADER_LEN: usize = 40;
/// Size of one vCPU entry.
const ENTRY_LEN: usize = 8;

/// A versioned description of a VM's topology, as booted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyRecord {
    /// Format version ([`TopologyRecord::VERSION`]).
    pub version: u16,
    /// The scheme the VM booted with.
    pub scheme: Scheme,
    /// The vendor conventions the VM saw.
    pub vendor: Vendor,
    /// The shape.
    pub shape: Shape,
    /// Every vCPU's APIC ID and VP index, by vCPU.
    pub vcpus: Vec<RecordedVcpu>,
}

/// One vCPU in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedVcpu {
    /// APIC ID.
    pub apic_id: u32,
    /// Hyper-V VP index.
    pub vp_index: u32,
}

/// What a migration stream says about the VM's topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamTopology {
    /// The stream has no topology record: the VM booted with Xen's legacy scheme.
    XenLegacy,
    /// The stream's record.
    Recorded(TopologyRecord),
}

impl StreamTopology {
    /// The topology the incoming VM must keep.
    ///
    /// `vendor` and `vcpus` come from the incoming VM's policy and configuration; a record
    /// that disagrees with them is refused.
    pub fn into_topology(self, vendor: Vendor, vcpus: u32, x2apic_available: bool) -> Result<Topology, RecordError> {
        match self {
            Self::XenLegacy => Ok(Topology::xen_legacy(vendor, vcpus, x2apic_available)?),
            Self::Recorded(record) => {
                if record.vendor != vendor {
                    return Err(RecordError::VendorMismatch { recorded: record.vendor, expected: vendor });
                }
                let topology = record.to_topology(x2apic_available)?;
                if topology.vcpu_count() != vcpus {
                    return Err(RecordError::VcpuCount { recorded: topology.vcpu_count(), expected: vcpus });
                }
                Ok(topology)
            }
        }
    }
}

impl TopologyRecord {
    /// The format version this crate writes and reads.
    pub const VERSION: u16 = 1;
    /// The magic at the start of the binary form.
    pub const MAGIC: [u8; 4] = *b"TOPO";

    /// The record of a topology.
    pub fn from_topology(topology: &Topology) -> Self {
        Self {
            version: Self::VERSION,
            scheme: topology.scheme(),
            vendor: topology.vendor(),
            shape: *topology.shape(),
            vcpus: topology
                .apic_ids()
                .zip(topology.vp_indices())
                .map(|(apic_id, &vp_index)| RecordedVcpu { apic_id, vp_index })
                .collect(),
        }
    }

    /// Reads a stream's record; `None` (no record in the stream) means Xen's legacy scheme.
    pub fn from_stream(bytes: Option<&[u8]>) -> Result<StreamTopology, RecordError> {
        match bytes {
            None => Ok(StreamTopology::XenLegacy),
            Some(bytes) => Ok(StreamTopology::Recorded(Self::from_bytes(bytes)?)),
        }
    }

    /// Rebuilds the topology, checking that every recorded APIC ID is the one the shape and
    /// scheme give (a record is a promise, not a free-form table).
    pub fn to_topology(&self, x2apic_available: bool) -> Result<Topology, RecordError> {
        if self.version != Self::VERSION {
            return Err(RecordError::UnsupportedVersion { version: self.version });
        }
        let topology = Topology::new(self.shape, self.vendor, self.scheme, x2apic_available)?;
        if self.vcpus.len() != topology.vcpu_count() as usize {
            return Err(RecordError::VcpuCount { recorded: self.vcpus.len() as u32, expected: topology.vcpu_count() });
        }
        for ((vcpu, recorded), computed) in self.vcpus.iter().enumerate().zip(topology.apic_ids()) {
            if recorded.apic_id != computed {
                return Err(RecordError::ApicIdMismatch { vcpu: vcpu as u32, recorded: recorded.apic_id, computed });
            }
        }
        Ok(topology.with_vp_indices(self.vcpus.iter().map(|v| v.vp_index).collect())?)
    }

    /// The binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * self.vcpus.len());
        out.extend_from_slice(&Self::MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.push(match self.scheme {
            Scheme::XenLegacy => 0,
            Scheme::Modern => 1,
        });
        out.push(match self.vendor {
            Vendor::Intel => 0,
            Vendor::Amd => 1,
            Vendor::Hygon => 2,
        });
        out.extend_from_slice(&[0, 0]);
        let s = &self.shape;
        for n in [
            s.packages,
            s.dies_per_package,
            s.tiles_per_die,
            s.modules_per_tile,
            s.cores_per_module,
            s.threads_per_core,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&(self.vcpus.len() as u32).to_le_bytes());
        for v in &self.vcpus {
            out.extend_from_slice(&v.apic_id.to_le_bytes());
            out.extend_from_slice(&v.vp_index.to_le_bytes());
        }
        out
    }

    /// Parses the binary form (syntax only; [`TopologyRecord::to_topology`] checks meaning).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::Truncated { needed: HEADER_LEN, len: bytes.len() });
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != Self::MAGIC {
            return Err(RecordError::BadMagic { found: magic });
        }
        let version = u16_at(4);
        if version != Self::VERSION {
            return Err(RecordError::UnsupportedVersion { version });
        }
        for offset in [6, 10] {
            if u16_at(offset) != 0 {
                return Err(RecordError::ReservedNotZero { offset });
            }
        }
        let scheme = match bytes[8] {
            0 => Scheme::XenLegacy,
            1 => Scheme::Modern,
            code => return Err(RecordError::UnknownScheme { code }),
        };
        let vendor = match bytes[9] {
            0 => Vendor::Intel,
            1 => Vendor::Amd,
            2 => Vendor::Hygon,
            code => return Err(RecordError::UnknownVendor { code }),
        };
        let shape = Shape {
            packages: u32_at(12),
            dies_per_package: u32_at(16),
            tiles_per_die: u32_at(20),
            modules_per_tile: u32_at(24),
            cores_per_module: u32_at(28),
            threads_per_core: u32_at(32),
        };
        let count = u32_at(36) as usize;
        let needed = count
            .checked_mul(ENTRY_LEN)
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or(RecordError::Truncated { needed: usize::MAX, len: bytes.len() })?;
        if bytes.len() < needed {
            return Err(RecordError::Truncated { needed, len: bytes.len() });
        }
        if bytes.len() > needed {
            return Err(RecordError::TrailingBytes { extra: bytes.len() - needed });
        }
        let vcpus = (0..count)
            .map(|i| {
                let o = HEADER_LEN + i * ENTRY_LEN;
                RecordedVcpu { apic_id: u32_at(o), vp_index: u32_at(o + 4) }
            })
            .collect();
        Ok(Self { version, scheme, vendor, shape, vcpus })
    }
}

/// Why a topology record cannot be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header or the vCPU table needs.
    #[error("topology record truncated: {len} bytes, {needed} needed")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// More bytes than the record describes.
    #[error("topology record has {extra} bytes after its vCPU table")]
    TrailingBytes {
        /// Extra bytes.
        extra: usize,
    },
    /// Not a topology record.
    #[error("not a topology record: magic {found:?}, expected \"TOPO\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A version this crate does not know.
    #[error("topology record version {version} is not supported (this build reads version 1)")]
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// A reserved field is not zero.
    #[error("topology record reserved field at byte {offset} is not zero")]
    ReservedNotZero {
        /// Byte offset of the field.
        offset: usize,
    },
    /// An unknown scheme code.
    #[error("topology record names unknown scheme {code}")]
    UnknownScheme {
        /// The code.
        code: u8,
    },
    /// An unknown vendor code.
    #[error("topology record names unknown vendor {code}")]
    UnknownVendor {
        /// The code.
        code: u8,
    },
    /// The record's vCPU count disagrees with its shape or the VM.
    #[error("topology record has {recorded} vCPUs, expected {expected}")]
    VcpuCount {
        /// vCPUs in the record.
        recorded: u32,
        /// vCPUs expected.
        expected: u32,
    },
    /// A recorded APIC ID is not the one the shape and scheme give.
    #[error("topology record gives vCPU {vcpu} APIC ID {recorded:#x}, its shape gives {computed:#x}")]
    ApicIdMismatch {
        /// The vCPU.
        vcpu: u32,
        /// The recorded APIC ID.
        recorded: u32,
        /// The computed one.
        computed: u32,
    },
    /// The record is for another vendor than the incoming VM's policy.
    #[error("topology record is for {recorded} CPUs, the VM's policy is {expected}")]
    VendorMismatch {
        /// The record's vendor.
        recorded: Vendor,
        /// The policy's vendor.
        expected: Vendor,
    },
    /// The record's shape is not a valid topology.
    #[error("topology record: {0}")]
    Topology(#[from] TopologyError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Topology {
        Topology::new(Shape::new(2, 1, 3, 2), Vendor::Intel, Scheme::Modern, true)
            .unwrap()
            .with_vp_indices(vec![11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
            .unwrap()
    }

    #[test]
    fn binary_round_trip_keeps_apic_ids_and_vp_indices() {
        let t = sample();
        let bytes = TopologyRecord::from_topology(&t).to_bytes();
        assert_eq!(bytes.len(), 40 + 12 * 8);
        let back = TopologyRecord::from_stream(Some(&bytes)).unwrap();
        assert_eq!(back.into_topology(Vendor::Intel, 12, true).unwrap(), t);
    }

    #[test]
    fn json_round_trip() {
        let record = TopologyRecord::from_topology(&sample());
        let json = serde_json::to_string(&record).unwrap();
        let back: TopologyRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
        assert!(json.contains(r#""scheme":"modern""#), "{json}");
    }

    #[test]
    fn no_record_in_the_stream_means_xen_legacy() {
        let stream = TopologyRecord::from_stream(None).unwrap();
        assert_eq!(stream, StreamTopology::XenLegacy);
        let t = stream.into_topology(Vendor::Amd, 4, false).unwrap();
        assert_eq!(t.scheme(), Scheme::XenLegacy);
        assert_eq!(t.apic_ids().collect::<Vec<_>>(), [0, 2, 4, 6]);
    }

    #[test]
    fn damaged_records_are_named_errors() {
        let good = TopologyRecord::from_topology(&sample()).to_bytes();
        assert_eq!(TopologyRecord::from_bytes(&good[..39]), Err(RecordError::Truncated { needed: 40, len: 39 }));
        assert_eq!(
            TopologyRecord::from_bytes(&good[..good.len() - 1]),
            Err(RecordError::Truncated { needed: good.len(), len: good.len() - 1 })
        );
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(TopologyRecord::from_bytes(&extra), Err(RecordError::TrailingBytes { extra: 1 }));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(TopologyRecord::from_bytes(&bad), Err(RecordError::UnsupportedVersion { version: 2 }));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(TopologyRecord::from_bytes(&bad), Err(RecordError::BadMagic { .. })));
        let mut bad = good.clone();
        bad[8] = 9;
        assert_eq!(TopologyRecord::from_bytes(&bad), Err(RecordError::UnknownScheme { code: 9 }));
        let mut bad = good.clone();
        bad[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(TopologyRecord::from_bytes(&bad), Err(RecordError::Truncated { .. })));
    }

    #[test]
    fn a_record_must_agree_with_its_shape_and_the_vm() {
        let mut record = TopologyRecord::from_topology(&sample());
        record.vcpus[6].apic_id = 6;
        assert_eq!(record.to_topology(true), Err(RecordError::ApicIdMismatch { vcpu: 6, recorded: 6, computed: 8 }));
        let record = TopologyRecord::from_topology(&sample());
        assert_eq!(
            StreamTopology::Recorded(record.clone()).into_topology(Vendor::Amd, 12, true),
            Err(RecordError::VendorMismatch { recorded: Vendor::Intel, expected: Vendor::Amd })
        );
        assert_eq!(
            StreamTopology::Recorded(record).into_topology(Vendor::Intel, 8, true),
            Err(RecordError::VcpuCount { recorded: 12, expected: 8 })
        );
        let mut zero = TopologyRecord::from_topology(&sample());
        zero.shape.threads_per_core = 0;
        assert!(matches!(zero.to_topology(true), Err(RecordError::Topology(TopologyError::ZeroCount { .. }))));
    }
}
