//! Xen's policy entries: `xen_cpuid_leaf_t` and `xen_msr_entry_t`, as the
//! `get/set_cpu_policy` sysctl and domctl and the migration stream's records 0x11/0x12 carry
//! them (`xen/include/public/arch-x86/xen.h`).

/// `XEN_CPUID_NO_SUBLEAF`: the sub-leaf of a leaf that has none.
pub const XEN_CPUID_NO_SUBLEAF: u32 = 0xffff_ffff;

/// Migration stream record type carrying a `xen_cpuid_leaf_t` array.
pub const REC_TYPE_X86_CPUID_POLICY: u32 = 0x11;
/// Migration stream record type carrying a `xen_msr_entry_t` array.
pub const REC_TYPE_X86_MSR_POLICY: u32 = 0x12;

/// One CPUID leaf, laid out exactly as Xen's `xen_cpuid_leaf_t` (24 bytes), so arrays of it
/// can be passed to and from libxc/libxl or a migration stream as they are.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XenCpuidLeaf {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The sub-leaf (ECX input), or `0xffffffff` (`XEN_CPUID_NO_SUBLEAF`) for none.
    pub subleaf: u32,
    /// EAX output.
    pub a: u32,
    /// EBX output.
    pub b: u32,
    /// ECX output.
    pub c: u32,
    /// EDX output.
    pub d: u32,
}

/// One MSR, laid out exactly as Xen's `xen_msr_entry_t` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct XenMsrEntry {
    /// The MSR index.
    pub idx: u32,
    /// Reserved: must be zero.
    pub flags: u32,
    /// The value.
    pub val: u64,
}

impl XenCpuidLeaf {
    /// Size in bytes, as in the ABI.
    pub const SIZE: usize = 24;

    /// Little-endian bytes, as the migration stream stores them.
    #[inline]
    pub fn to_le_bytes(&self) -> [u8; 24] {
        let mut out = [0; 24];
        for (chunk, value) in out.chunks_exact_mut(4).zip([self.leaf, self.subleaf, self.a, self.b, self.c, self.d]) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// From little-endian bytes.
    #[inline]
    pub fn from_le_bytes(bytes: &[u8; 24]) -> XenCpuidLeaf {
        let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        XenCpuidLeaf { leaf: word(0), subleaf: word(4), a: word(8), b: word(12), c: word(16), d: word(20) }
    }
}

impl XenMsrEntry {
    /// Size in bytes, as in the ABI.
    pub const SIZE: usize = 16;

    /// The entry for one MSR (flags zero).
    #[inline]
    pub const fn new(idx: u32, val: u64) -> XenMsrEntry {
        XenMsrEntry { idx, flags: 0, val }
    }

    /// Little-endian bytes, as the migration stream stores them.
    #[inline]
    pub fn to_le_bytes(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[0..4].copy_from_slice(&self.idx.to_le_bytes());
        out[4..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..16].copy_from_slice(&self.val.to_le_bytes());
        out
    }

    /// From little-endian bytes.
    #[inline]
    pub fn from_le_bytes(bytes: &[u8; 16]) -> XenMsrEntry {
        let mut idx = [0; 4];
        let mut flags = [0; 4];
        let mut val = [0; 8];
        idx.copy_from_slice(&bytes[0..4]);
        flags.copy_from_slice(&bytes[4..8]);
        val.copy_from_slice(&bytes[8..16]);
        XenMsrEntry { idx: u32::from_le_bytes(idx), flags: u32::from_le_bytes(flags), val: u64::from_le_bytes(val) }
    }
}

// The layouts are Xen's ABI.
const _: () = assert!(std::mem::size_of::<XenCpuidLeaf>() == XenCpuidLeaf::SIZE);
const _: () = assert!(std::mem::size_of::<XenMsrEntry>() == XenMsrEntry::SIZE);
