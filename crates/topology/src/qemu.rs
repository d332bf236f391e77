//! Comparing a topology with what a guest reads on a real hypervisor.
//!
//! The plan is to boot Linux on QEMU with `-smp N,sockets=…,dies=…,cores=…,threads=…`, read
//! `/dev/cpu/N/cpuid` on every vCPU, and compare with [`expected_vcpus`]. The dump format is
//! one entry per line (`#` starts a comment):
//!
//! ```text
//! cpu 0 leaf 0xb subleaf 1 0x00000002 0x00000004 0x00000201 0x00000000
//! ```
//!
//! Numbers are decimal, or hexadecimal with `0x`; the four registers are EAX EBX ECX EDX;
//! `subleaf -` marks a leaf without sub-leaves, and sub-leaf 0 of such a leaf (which is how
//! `/dev/cpu/N/cpuid` reads it) is stored as "no sub-leaf" too.
//!
//! `Modern` follows current QEMU (9.0 and later). QEMU 7.2 (Debian 12) differs only where it
//! had bugs since fixed: with `dies` > 1 its leaf 0xB sub-leaf 1 EBX, leaf 1 `EBX[23:16]` and
//! 0x80000008 NC count one die instead of the package; its Intel leaf 4 `EAX[31:26]` is
//! `cores − 1` per die rather than the package's addressable core IDs, and its leaf 4 L2/L3
//! sharing fields are counts rather than addressable IDs; it has no modules. APIC IDs,
//! leaf 0x1F and 0x8000001E agree for the same shape (`target/i386/cpu.c`, QEMU 7.2 and
//! later).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cpuid::{bit, has_subleaves, leaf, with_bit, CpuidAccess, CpuidEntry, CpuidLeaves};
use crate::error::TopologyError;
use crate::shape::Topology;

/// What one vCPU should read in the leaves that identify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedVcpu {
    /// vCPU index.
    pub vcpu: u32,
    /// APIC ID.
    pub apic_id: u32,
    /// Leaf 0xB sub-leaves 0 … 2.
    pub leaf_0xb: Vec<CpuidEntry>,
    /// Leaf 0x1F sub-leaves, empty when the shape does not need the leaf.
    pub leaf_0x1f: Vec<CpuidEntry>,
    /// Leaf 0x8000001E, for AMD and Hygon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_0x8000001e: Option<CpuidEntry>,
}

/// One register that differs from the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RegisterMismatch {
    /// vCPU index.
    pub vcpu: u32,
    /// Leaf.
    pub leaf: u32,
    /// Sub-leaf.
    pub subleaf: Option<u32>,
    /// Register name.
    pub register: &'static str,
    /// Expected value.
    pub expected: u32,
    /// Value read, `None` when the dump lacks the entry.
    pub found: Option<u32>,
}

impl ExpectedVcpu {
    /// Every expected entry.
    pub fn entries(&self) -> impl Iterator<Item = &CpuidEntry> {
        self.leaf_0xb.iter().chain(&self.leaf_0x1f).chain(&self.leaf_0x8000001e)
    }

    /// Registers of `observed` that differ from these expectations.
    pub fn mismatches(&self, observed: &impl CpuidAccess) -> Vec<RegisterMismatch> {
        let mut out = Vec::new();
        for e in self.entries() {
            let found = observed.cpuid(e.leaf, e.subleaf);
            for (i, name) in ["EAX", "EBX", "ECX", "EDX"].into_iter().enumerate() {
                let expected = e.registers()[i];
                let got = found.map(|r| r[i]);
                if got != Some(expected) {
                    out.push(RegisterMismatch {
                        vcpu: self.vcpu,
                        leaf: e.leaf,
                        subleaf: e.subleaf,
                        register: name,
                        expected,
                        found: got,
                    });
                }
            }
        }
        out
    }
}

/// Per vCPU: the APIC ID, leaf 0xB and 0x1F sub-leaves, and 0x8000001E a guest should read.
///
/// These leaves depend only on the topology (for `XenLegacy`, on whether x2APIC is offered),
/// not on the rest of the CPU model.
pub fn expected_vcpus(topology: &Topology) -> Result<Vec<ExpectedVcpu>, TopologyError> {
    let mut base = CpuidLeaves::new();
    base.insert(leaf::FEATURES, None, with_bit([0; 4], bit::X2APIC, topology.x2apic_available()));
    (0..topology.vcpu_count())
        .map(|vcpu| {
            let leaves = topology.cpuid_for_vcpu(&base, vcpu)?;
            let of = |l: u32| -> Vec<CpuidEntry> {
                leaves.subleaves(l).map(|(s, r)| CpuidEntry::new(l, s, r)).filter(|e| e.leaf == l).collect()
            };
            Ok(ExpectedVcpu {
                vcpu,
                apic_id: topology.apic_id(vcpu)?,
                leaf_0xb: of(leaf::EXTENDED_TOPOLOGY),
                leaf_0x1f: of(leaf::V2_EXTENDED_TOPOLOGY),
                leaf_0x8000001e: (topology.vendor().is_amd_like())
                    .then(|| leaves.get(leaf::AMD_EXTENDED_APIC_ID, None))
                    .flatten()
                    .map(|r| CpuidEntry::new(leaf::AMD_EXTENDED_APIC_ID, None, r)),
            })
        })
        .collect()
}

/// Compares a dump with the expectations: every mismatch, across all vCPUs, before failing.
pub fn compare_dump(expected: &[ExpectedVcpu], dump: &BTreeMap<u32, CpuidLeaves>) -> Vec<RegisterMismatch> {
    let empty = CpuidLeaves::new();
    expected.iter().flat_map(|e| e.mismatches(dump.get(&e.vcpu).unwrap_or(&empty))).collect()
}

/// A line of a per-vCPU dump that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CPUID dump line {line}: {problem}")]
pub struct DumpParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// Reads a per-vCPU CPUID dump (format in the module docs) into one leaf set per CPU.
pub fn parse_cpuid_dump(text: &str) -> Result<BTreeMap<u32, CpuidLeaves>, DumpParseError> {
    let mut cpus: BTreeMap<u32, CpuidLeaves> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let err = |problem: String| DumpParseError { line, problem };
        let tokens: Vec<&str> = content.split_whitespace().collect();
        let [cpu_kw, cpu, leaf_kw, l, sub_kw, s, eax, ebx, ecx, edx] = tokens[..] else {
            return Err(err(format!(
                "expected `cpu N leaf L subleaf S EAX EBX ECX EDX`, found {} fields",
                tokens.len()
            )));
        };
        for (kw, want) in [(cpu_kw, "cpu"), (leaf_kw, "leaf"), (sub_kw, "subleaf")] {
            if kw != want {
                return Err(err(format!("expected `{want}`, found `{kw}`")));
            }
        }
        let num = |name: &str, t: &str| parse_number(t).ok_or_else(|| err(format!("{name} `{t}` is not a number")));
        let (cpu, l) = (num("cpu", cpu)?, num("leaf", l)?);
        let subleaf = match s {
            "-" => None,
            _ => Some(num("subleaf", s)?).filter(|&s| s != 0 || has_subleaves(l)),
        };
        let registers = [num("EAX", eax)?, num("EBX", ebx)?, num("ECX", ecx)?, num("EDX", edx)?];
        cpus.entry(cpu).or_default().insert(l, subleaf, registers);
    }
    Ok(cpus)
}

/// Writes leaf sets in the dump format [`parse_cpuid_dump`] reads.
pub fn format_cpuid_dump(cpus: &BTreeMap<u32, CpuidLeaves>) -> String {
    let mut out = String::new();
    for (cpu, leaves) in cpus {
        for (l, s, [a, b, c, d]) in leaves.iter() {
            let s = s.map_or_else(|| "-".to_owned(), |s| s.to_string());
            let _ = writeln!(out, "cpu {cpu} leaf {l:#x} subleaf {s} {a:#010x} {b:#010x} {c:#010x} {d:#010x}");
        }
    }
    out
}

fn parse_number(t: &str) -> Option<u32> {
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{Scheme, Shape, Vendor};

    #[test]
    fn expected_values_for_qemu_smp_12_sockets_2_cores_3_threads_2() {
        let t = Topology::new(Shape::new(2, 1, 3, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
        let e = expected_vcpus(&t).unwrap();
        assert_eq!(e[7].apic_id, 9);
        let r: Vec<_> = e[7].leaf_0xb.iter().map(CpuidEntry::registers).collect();
        // SMT: shift 1, 2 threads; core: shift 3, 6 threads per package; then the end.
        assert_eq!(r, [[1, 2, 0x100, 9], [3, 6, 0x201, 9], [0, 0, 2, 9]]);
        assert!(e[7].leaf_0x1f.is_empty());
        assert!(e[7].leaf_0x8000001e.is_none());
    }

    #[test]
    fn dies_add_leaf_0x1f_and_amd_gets_0x8000001e() {
        let t = Topology::new(Shape::new(1, 2, 3, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
        let e = &expected_vcpus(&t).unwrap()[11];
        assert_eq!(e.apic_id, 13, "die 1, core 2, thread 1: 0b1_10_1");
        let r: Vec<_> = e.leaf_0x1f.iter().map(CpuidEntry::registers).collect();
        assert_eq!(r, [[1, 2, 0x100, 13], [3, 6, 0x201, 13], [4, 12, 0x502, 13], [0, 0, 3, 13]]);

        let t = Topology::new(Shape::new(2, 2, 3, 2), Vendor::Amd, Scheme::Modern, true).unwrap();
        let e = &expected_vcpus(&t).unwrap()[23];
        // Package 1, die 1, core 2, thread 1: APIC 0b1_1_10_1; node ID = APIC >> 3 = 3.
        assert_eq!(e.apic_id, 0b11101);
        assert_eq!(e.leaf_0x8000001e.unwrap().registers(), [0b11101, 0x102, 0x103, 0]);
    }

    #[test]
    fn dump_text_round_trips_and_compares() {
        let t = Topology::new(Shape::new(1, 1, 2, 2), Vendor::Amd, Scheme::Modern, true).unwrap();
        let expected = expected_vcpus(&t).unwrap();
        let mut dump: BTreeMap<u32, CpuidLeaves> = BTreeMap::new();
        for e in &expected {
            for entry in e.entries() {
                dump.entry(e.vcpu).or_default().insert(entry.leaf, entry.subleaf, entry.registers());
            }
        }
        let text = format_cpuid_dump(&dump);
        assert_eq!(parse_cpuid_dump(&text).unwrap(), dump);
        assert!(compare_dump(&expected, &dump).is_empty());

        dump.get_mut(&3).unwrap().insert(0xb, Some(0), [1, 2, 0x100, 2]);
        let m = compare_dump(&expected, &dump);
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].vcpu, m[0].register, m[0].expected, m[0].found), (3, "EDX", 3, Some(2)));
    }

    #[test]
    fn dump_lines_are_checked() {
        let ok = "# comment\ncpu 1 leaf 0x1 subleaf 0 0x1 2 0x3 0x4  # trailing\ncpu 1 leaf 0xb subleaf 0 0 0 0 0\n";
        let cpus = parse_cpuid_dump(ok).unwrap();
        assert_eq!(cpus[&1].get(1, None), Some([1, 2, 3, 4]), "leaf 1 has no sub-leaves");
        assert_eq!(cpus[&1].get(0xb, Some(0)), Some([0; 4]));
        let bad = parse_cpuid_dump("cpu 0 leaf 1 subleaf 0 1 2 3").unwrap_err();
        assert_eq!(bad.line, 1);
        let bad = parse_cpuid_dump("\ncpu 0 leaf zz subleaf 0 1 2 3 4").unwrap_err();
        assert_eq!(bad.to_string(), "CPUID dump line 2: leaf `zz` is not a number");
    }

    /// APIC IDs QEMU 7.2.22 (Debian 12) gave, read with QMP `qom-get <cpu> apic-id` on
    /// `qemu-system-x86_64 -accel tcg -machine q35 -cpu qemu64 -smp …`.
    #[test]
    fn apic_ids_match_those_qemu_7_2_assigned() {
        let observed: [(Shape, &[u32]); 3] = [
            (Shape::new(2, 1, 3, 2), &[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]),
            (
                Shape::new(2, 2, 3, 2),
                &[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 24, 25, 26, 27, 28, 29],
            ),
            (
                Shape::new(1, 5, 3, 2),
                &[
                    0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21, 24, 25, 26, 27, 28, 29, 32, 33, 34,
                    35, 36, 37,
                ],
            ),
        ];
        for (shape, ids) in observed {
            let t = Topology::new(shape, Vendor::Intel, Scheme::Modern, true).unwrap();
            assert_eq!(t.apic_ids().collect::<Vec<_>>(), ids, "{shape:?}");
        }
    }
}
