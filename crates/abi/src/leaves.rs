//! Which CPUID leaves have sub-leaves, and how each enumerates them.
//!
//! The architecture's facts (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E), not only
//! the four leaves Xen's policy indexes (4, 7, 0xb, 0xd): a dump of real hardware records the
//! others too, and the model keeps them. The table serves two readers: importers that must
//! tell "sub-leaf 0" from "no sub-leaf" (libvirt records both as `ecx_in='0x00'`), and the
//! native reader that walks the sub-leaves of this machine's CPU.

use crate::Register;

use crate::Registers;

/// The most sub-leaves any walk reads: a bound against hardware or hypervisors that never
/// report an end.
pub const MAX_WALKED_SUBLEAVES: u32 = 64;

/// A leaf with sub-leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubleafLeaf {
    /// The leaf.
    pub leaf: u32,
    /// What it describes.
    pub name: &'static str,
    /// How its sub-leaves are enumerated.
    pub walk: SubleafWalk,
}

/// How the sub-leaves of a leaf are enumerated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubleafWalk {
    /// 0, 1, … up to and including the first whose `EAX[4:0]` (cache type) is 0.
    UntilNullCacheType,
    /// 0, 1, … up to and including the first whose `ECX[15:8]` (level type) is 0; that last one
    /// still carries `ECX[7:0]` and the x2APIC ID.
    UntilNullLevelType,
    /// 0 to the EAX of sub-leaf 0 (the highest sub-leaf).
    UpToSubleaf0Eax,
    /// 0 and 1, then every component 2–62 enumerated in XCR0 | XSS (0xd:0 EDX:EAX, 0xd:1 EDX:ECX).
    XstateComponents,
    /// 0, then every sub-leaf 1–31 whose bit is set in this register of sub-leaf 0.
    BitmapInSubleaf0(Register),
    /// 0 and 1, then 2, 3, … up to and including the first whose `EAX[3:0]` (section type) is 0.
    UntilNullSgxSection,
    /// 0, 1, … up to and including the first whose `EAX[11:0]` (sub-leaf type) is 0.
    UntilNullPconfigType,
}

const fn row(leaf: u32, name: &'static str, walk: SubleafWalk) -> SubleafLeaf {
    SubleafLeaf { leaf, name, walk }
}

use SubleafWalk::*;

/// Every leaf known to have sub-leaves, by leaf.
pub static SUBLEAF_LEAVES: &[SubleafLeaf] = &[
    row(0x4, "deterministic cache parameters", UntilNullCacheType),
    row(0x7, "structured extended features", UpToSubleaf0Eax),
    row(0xb, "extended topology", UntilNullLevelType),
    row(0xd, "xsave state components", XstateComponents),
    row(0xf, "RDT monitoring", BitmapInSubleaf0(Register::Edx)),
    row(0x10, "RDT allocation", BitmapInSubleaf0(Register::Ebx)),
    row(0x12, "SGX", UntilNullSgxSection),
    row(0x14, "processor trace", UpToSubleaf0Eax),
    row(0x17, "SoC vendor attributes", UpToSubleaf0Eax),
    row(0x18, "deterministic address translation", UpToSubleaf0Eax),
    row(0x1b, "PCONFIG", UntilNullPconfigType),
    row(0x1d, "tile information", UpToSubleaf0Eax),
    row(0x1e, "TMUL information", UpToSubleaf0Eax),
    row(0x1f, "V2 extended topology", UntilNullLevelType),
    row(0x20, "HRESET", UpToSubleaf0Eax),
    row(0x23, "architectural performance monitoring extended", BitmapInSubleaf0(Register::Eax)),
    row(0x24, "AVX10", UpToSubleaf0Eax),
    row(0x8000_001d, "AMD cache topology", UntilNullCacheType),
    row(0x8000_0020, "AMD platform QoS", BitmapInSubleaf0(Register::Ebx)),
    row(0x8000_0026, "AMD extended CPU topology", UntilNullLevelType),
];

/// The table row for `leaf`, if it has sub-leaves.
pub fn subleaf_leaf(leaf: u32) -> Option<&'static SubleafLeaf> {
    SUBLEAF_LEAVES.iter().find(|row| row.leaf == leaf)
}

/// Whether the architecture gives `leaf` sub-leaves.
pub fn has_subleaves(leaf: u32) -> bool {
    subleaf_leaf(leaf).is_some()
}

impl SubleafWalk {
    /// The sub-leaves to read, asking `read` for each as needed; at most
    /// [`MAX_WALKED_SUBLEAVES`]. Pure: the native reader passes the `cpuid` instruction.
    pub fn walk(self, mut read: impl FnMut(u32) -> Registers) -> Vec<(u32, Registers)> {
        let mut out = Vec::new();
        let first = read(0);
        out.push((0, first));
        match self {
            UntilNullCacheType | UntilNullLevelType | UntilNullPconfigType => {
                let is_last = |r: Registers| match self {
                    UntilNullCacheType => r.eax & 0x1f == 0,
                    UntilNullLevelType => (r.ecx >> 8) & 0xff == 0,
                    _ => r.eax & 0xfff == 0,
                };
                let mut current = first;
                let mut subleaf = 1;
                while !is_last(current) && subleaf < MAX_WALKED_SUBLEAVES {
                    current = read(subleaf);
                    out.push((subleaf, current));
                    subleaf += 1;
                }
            }
            UpToSubleaf0Eax => {
                for subleaf in 1..=first.eax.min(MAX_WALKED_SUBLEAVES - 1) {
                    out.push((subleaf, read(subleaf)));
                }
            }
            XstateComponents => {
                let second = read(1);
                out.push((1, second));
                let xstates = (u64::from(first.edx | second.edx) << 32) | u64::from(first.eax | second.ecx);
                for subleaf in 2..63 {
                    if xstates & (1 << subleaf) != 0 {
                        out.push((subleaf, read(subleaf)));
                    }
                }
            }
            BitmapInSubleaf0(register) => {
                let bitmap = first.get(register);
                for subleaf in 1..32 {
                    if bitmap & (1 << subleaf) != 0 {
                        out.push((subleaf, read(subleaf)));
                    }
                }
            }
            UntilNullSgxSection => {
                out.push((1, read(1)));
                for subleaf in 2..MAX_WALKED_SUBLEAVES {
                    let current = read(subleaf);
                    out.push((subleaf, current));
                    if current.eax & 0xf == 0 {
                        break;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(SUBLEAF_LEAVES.windows(2).all(|w| w[0].leaf < w[1].leaf));
    }

    #[test]
    fn xen_indexed_leaves_are_in_the_table() {
        for leaf in [0x4, 0x7, 0xb, 0xd] {
            assert!(has_subleaves(leaf), "{leaf:#x}");
        }
        assert!(!has_subleaves(0x1) && !has_subleaves(0x8000_0001));
    }

    #[test]
    fn cache_walk_includes_the_null_terminator() {
        let read = |s: u32| Registers::new(if s < 3 { 0x21 + s } else { 0 }, 0, 0, 0);
        let got: Vec<u32> = UntilNullCacheType.walk(read).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [0, 1, 2, 3]);
    }

    #[test]
    fn topology_walk_stops_at_the_first_null_level() {
        let read = |s: u32| Registers::new(0, 0, if s < 2 { ((s + 1) << 8) | s } else { s }, 7);
        let got: Vec<u32> = UntilNullLevelType.walk(read).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn xstate_walk_follows_the_component_bits() {
        let read = |s: u32| match s {
            0 => Registers::new(0x2e7, 0, 0, 0),
            1 => Registers::new(0xf, 0, 0x100, 0),
            _ => Registers::new(s, 0, 0, 0),
        };
        let got: Vec<u32> = XstateComponents.walk(read).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [0, 1, 2, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn walks_are_bounded() {
        let forever = |_| Registers::new(0xffff_ffff, 0, 0xff00, 0);
        for walk in [UntilNullCacheType, UntilNullLevelType, UpToSubleaf0Eax, UntilNullPconfigType, UntilNullSgxSection]
        {
            assert!(walk.walk(forever).len() <= MAX_WALKED_SUBLEAVES as usize, "{walk:?}");
        }
    }
}
