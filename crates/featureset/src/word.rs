//! The featureset words: which CPUID register or MSR half each one mirrors.

/// Where a featureset word's bits come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WordSource {
    /// A CPUID register: `leaf`, `subleaf` (`None` for leaves without sub-leaves) and register.
    Cpuid {
        /// The CPUID leaf (EAX input).
        leaf: u32,
        /// The sub-leaf (ECX input), for leaves that have them.
        subleaf: Option<u32>,
        /// The output register.
        register: Register,
    },
    /// Half of an MSR: `index`, and `high` for bits 32–63.
    Msr {
        /// The MSR index.
        index: u32,
        /// Bits 32–63 rather than 0–31.
        high: bool,
    },
}

/// One featureset word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordInfo {
    /// Index in the featureset.
    pub index: usize,
    /// Xen's short name (`1d`, `7b0`, `m10Al`), the column header `xen-cpuid` prints.
    pub short_name: &'static str,
    /// Xen's long name (`CPUID 0x00000001.edx`), as `xen-cpuid` prints it when decoding.
    pub long_name: &'static str,
    /// The register or MSR half it mirrors.
    pub source: WordSource,
}

const fn cpuid(
    index: usize,
    short_name: &'static str,
    long_name: &'static str,
    leaf: u32,
    subleaf: Option<u32>,
    register: Register,
) -> WordInfo {
    WordInfo { index, short_name, long_name, source: WordSource::Cpuid { leaf, subleaf, register } }
}

pub use cpupolicy_abi::Register;
use Register::*;

/// Every word Xen defines up to 4.21, in order (REFERENCE §3; xen-cpuid.c `leaf_info[]`).
pub static WORDS: [WordInfo; crate::NR_WORDS] = [
    cpuid(0, "1d", "CPUID 0x00000001.edx", 0x1, None, Edx),
    cpuid(1, "1c", "CPUID 0x00000001.ecx", 0x1, None, Ecx),
    cpuid(2, "e1d", "CPUID 0x80000001.edx", 0x8000_0001, None, Edx),
    cpuid(3, "e1c", "CPUID 0x80000001.ecx", 0x8000_0001, None, Ecx),
    cpuid(4, "Da1", "CPUID 0x0000000d:1.eax", 0xd, Some(1), Eax),
    cpuid(5, "7b0", "CPUID 0x00000007:0.ebx", 0x7, Some(0), Ebx),
    cpuid(6, "7c0", "CPUID 0x00000007:0.ecx", 0x7, Some(0), Ecx),
    cpuid(7, "e7d", "CPUID 0x80000007.edx", 0x8000_0007, None, Edx),
    cpuid(8, "e8b", "CPUID 0x80000008.ebx", 0x8000_0008, None, Ebx),
    cpuid(9, "7d0", "CPUID 0x00000007:0.edx", 0x7, Some(0), Edx),
    cpuid(10, "7a1", "CPUID 0x00000007:1.eax", 0x7, Some(1), Eax),
    cpuid(11, "e21a", "CPUID 0x80000021.eax", 0x8000_0021, None, Eax),
    cpuid(12, "7b1", "CPUID 0x00000007:1.ebx", 0x7, Some(1), Ebx),
    cpuid(13, "7d2", "CPUID 0x00000007:2.edx", 0x7, Some(2), Edx),
    cpuid(14, "7c1", "CPUID 0x00000007:1.ecx", 0x7, Some(1), Ecx),
    cpuid(15, "7d1", "CPUID 0x00000007:1.edx", 0x7, Some(1), Edx),
    WordInfo {
        index: 16,
        short_name: "m10Al",
        long_name: "MSR_ARCH_CAPS.lo",
        source: WordSource::Msr { index: 0x10a, high: false },
    },
    WordInfo {
        index: 17,
        short_name: "m10Ah",
        long_name: "MSR_ARCH_CAPS.hi",
        source: WordSource::Msr { index: 0x10a, high: true },
    },
    cpuid(18, "e21c", "CPUID 0x80000021.ecx", 0x8000_0021, None, Ecx),
];

/// The word with this index, if Xen defines one.
pub fn word_info(index: usize) -> Option<&'static WordInfo> {
    WORDS.get(index)
}
