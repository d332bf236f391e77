//! Comparing a topology with what a guest reads on a real hypervisor.
//!
//! The test command boots Linux on QEMU with `-smp N,sockets=…,dies=…,cores=…,threads=…`
//! ([`shape_from_smp`]), reads `/dev/cpu/N/cpuid` on every vCPU ([`observe_leaves`] says which
//! leaves) and the APIC IDs in `/proc/cpuinfo` ([`parse_cpuinfo_apic_ids`]), and compares them
//! with what this crate computes for the same shape ([`compare_guest`]; [`expected_vcpus`] and
//! [`compare_dump`] cover only the leaves that identify a vCPU). The dump format is one entry
//! per line (`#` starts a comment):
//!
//! ```text
//! cpu 0 leaf 0xb subleaf 1 0x00000002 0x00000004 0x00000201 0x00000000
//! ```
//!
//! Numbers are decimal, or hexadecimal with `0x`; the four registers are EAX EBX ECX EDX;
//! `subleaf -` marks a leaf without sub-leaves, and sub-leaf 0 of such a leaf (which is how
//! `/dev/cpu/N/cpuid` reads it) is stored as "no sub-leaf" too.
//!
//! `Modern` follows current QEMU: the addressable-ID and die fixes of QEMU 9.0, and for Intel
//! leaf 1 `EBX[23:16]` QEMU 10.1 (machine types 10.1 and later, `x-vendor-cpuid-only-v2`).
//! QEMU 7.2 (Debian 12, whose QEMU the test command boots) differs in these fields, read from
//! its `target/i386/cpu.c` `cpu_x86_cpuid()` and `encode_cache_cpuid4()`, which
//! [`qemu_7_2_cpuid_for_vcpu`] models and [`compare_guest`] reports as known differences
//! ([`QEMU_7_2_FIELDS`]):
//!
//! - leaf 1 `EBX[23:16]` is cores × threads of one *die*, a count for Intel too (not addressable
//!   IDs, and not capped: past 255 it spills into the APIC ID byte); HTT follows that count;
//! - leaf 0xB sub-leaf 1 EBX counts the logical processors of one die, not of the package;
//! - Intel leaf 4 `EAX[31:26]` is cores per die − 1 (a count; past 63 it overflows into bit 31
//!   and out), and `EAX[25:14]` is 0 for L1 (QEMU 7.2 says one thread shares it) and threads − 1
//!   for L2 (a count); L3's `(1 << die shift) − 1` agrees;
//! - AMD 0x80000008 ECX is written whole: `package shift << 12 | (cores × threads per die − 1)`,
//!   0 with one thread per die; AMD 0x80000001 CMP_LEGACY follows cores × threads per die.
//!
//! Under TCG ([`Accelerator::Tcg`], as in the test command) AMD 0x80000001 TOPOEXT is 0 as well:
//! no QEMU release's TCG can offer it (`TCG_EXT3_FEATURES`), so QEMU drops it from the model with
//! a warning ("TCG doesn't support requested feature: CPUID.80000001H:ECX.topoext") while still
//! filling 0x8000001D and 0x8000001E, which a guest then ignores.
//!
//! APIC IDs, leaf 0x1F, 0x8000001D and 0x8000001E agree for the same shape. QEMU 7.2 has no
//! modules or tiles, and under TCG refuses any shape with an APIC ID above 254 ("requires kernel
//! irqchip and X2APIC API support"), so a TCG guest has at most 255 vCPUs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cpuid::{
    bit, field, has_subleaves, leaf, with_bit, CpuidAccess, CpuidEntry, CpuidLeaves, Registers, EAX, EBX, ECX, EDX,
};
use crate::error::TopologyError;
use crate::shape::{Scheme, Shape, Topology, Vendor};

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

/// Most sub-leaves [`observe_leaves`] reads of one leaf while looking for its terminator.
const MAX_OBSERVED_SUBLEAVES: u32 = 64;

/// How [`observe_leaves`] walks a leaf's sub-leaves.
#[derive(Clone, Copy)]
enum Walk {
    /// No sub-leaves.
    Single,
    /// Caches (leaf 4, 0x8000001D): up to and including the first of type 0.
    Caches,
    /// Levels (leaf 0xB, 0x1F): up to and including the first invalid level, at least 0 … 2.
    Levels,
}

/// The leaves this crate generates, in the order a reader visits them.
const OBSERVED_LEAVES: [(u32, Walk); 8] = [
    (leaf::FEATURES, Walk::Single),
    (leaf::CACHE_PARAMETERS, Walk::Caches),
    (leaf::EXTENDED_TOPOLOGY, Walk::Levels),
    (leaf::V2_EXTENDED_TOPOLOGY, Walk::Levels),
    (leaf::EXTENDED_FEATURES, Walk::Single),
    (leaf::ADDRESS_SIZES, Walk::Single),
    (leaf::AMD_CACHE_TOPOLOGY, Walk::Caches),
    (leaf::AMD_EXTENDED_APIC_ID, Walk::Single),
];

/// Reads, through `cpuid(leaf, subleaf)`, every leaf this crate generates, as a guest would.
///
/// Leaf 0 and 0x80000000 come first; other leaves are read only up to those maxima (beyond
/// them a CPU answers with the data of another leaf). Leaf 4 and 0x8000001D are read up to and
/// including their first sub-leaf of type 0, 0xB and 0x1F up to and including their first
/// invalid level but always sub-leaves 0 … 2 (which this crate always writes). The caller does
/// the I/O (`/dev/cpu/N/cpuid`, the CPUID instruction); this function only decides what to read.
pub fn observe_leaves<E>(mut cpuid: impl FnMut(u32, u32) -> Result<Registers, E>) -> Result<CpuidLeaves, E> {
    let mut out = CpuidLeaves::new();
    let mut read = |out: &mut CpuidLeaves, l: u32, s: u32| -> Result<Registers, E> {
        let registers = cpuid(l, s)?;
        out.insert(l, Some(s).filter(|_| has_subleaves(l)), registers);
        Ok(registers)
    };
    let max_basic = read(&mut out, leaf::BASIC_MAX, 0)?[EAX];
    let max_extended = read(&mut out, leaf::EXTENDED_MAX, 0)?[EAX];
    for (l, walk) in OBSERVED_LEAVES {
        let present = if l >= leaf::EXTENDED_MAX {
            max_extended >= leaf::EXTENDED_MAX && l <= max_extended
        } else {
            l <= max_basic
        };
        if !present {
            continue;
        }
        match walk {
            Walk::Single => {
                read(&mut out, l, 0)?;
            }
            Walk::Caches => {
                for s in 0..MAX_OBSERVED_SUBLEAVES {
                    if read(&mut out, l, s)?[EAX] & 0x1f == 0 {
                        break;
                    }
                }
            }
            Walk::Levels => {
                for s in 0..MAX_OBSERVED_SUBLEAVES {
                    if field(read(&mut out, l, s)?[ECX], 8, 8) == 0 && s >= 2 {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Each CPU's APIC ID from `/proc/cpuinfo` text: `processor` number → `apicid`.
///
/// Lines other than `processor` and `apicid` are ignored (so the whole file, or the output of
/// `grep -E '^(processor|apicid)'`, will do).
pub fn parse_cpuinfo_apic_ids(text: &str) -> Result<BTreeMap<u32, u32>, String> {
    let mut ids = BTreeMap::new();
    let mut processor = None;
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let number = || value.trim().parse::<u32>().map_err(|_| format!("/proc/cpuinfo line {}: {line:?}", i + 1));
        match key.trim() {
            "processor" => processor = Some(number()?),
            "apicid" => {
                let cpu =
                    processor.take().ok_or_else(|| format!("/proc/cpuinfo line {}: apicid before processor", i + 1))?;
                if ids.insert(cpu, number()?).is_some() {
                    return Err(format!("/proc/cpuinfo line {}: processor {cpu} twice", i + 1));
                }
            }
            _ => {}
        }
    }
    Ok(ids)
}

/// The shape of a QEMU `-smp` value such as `12,sockets=2,cores=3,threads=2`.
///
/// Follows QEMU's `smp_parse()` for PC machines (7.2 and later): `dies` and `threads` default to
/// 1, an omitted `cores` (else `sockets`) is derived from the CPU count, and the product must be
/// the CPU count. `maxcpus`, `clusters`, `books` and `drawers` are refused: the comparison needs
/// every vCPU present and x86 has no such levels.
pub fn shape_from_smp(spec: &str) -> Result<Shape, String> {
    let (mut cpus, mut sockets, mut dies, mut cores, mut threads) = (None, None, None, None, None);
    for (i, part) in spec.split(',').enumerate() {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None if i == 0 => ("cpus", part.trim()),
            None => return Err(format!("-smp {spec}: `{part}` is not KEY=VALUE")),
        };
        let value: u32 = value.parse().map_err(|_| format!("-smp {spec}: {key} `{value}` is not a number"))?;
        let slot = match key {
            "cpus" => &mut cpus,
            "sockets" => &mut sockets,
            "dies" => &mut dies,
            "cores" => &mut cores,
            "threads" => &mut threads,
            other => return Err(format!("-smp {spec}: `{other}` is not supported here")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("-smp {spec}: {key} given twice"));
        }
    }
    if [cpus, sockets, dies, cores, threads].contains(&Some(0)) {
        return Err(format!("-smp {spec}: counts must be at least 1"));
    }
    let (dies, threads) = (dies.unwrap_or(1), threads.unwrap_or(1));
    let derive = |given: Option<u32>, others: u32| -> Result<u32, String> {
        match (given, cpus) {
            (Some(n), _) => Ok(n),
            (None, Some(c)) if others > 0 && c % others == 0 => Ok(c / others),
            (None, Some(_)) => Err(format!("-smp {spec}: the CPU count is not a multiple of the other levels")),
            (None, None) => Ok(1),
        }
    };
    let sockets_or_one = sockets.unwrap_or(1);
    let cores = derive(cores, sockets_or_one.saturating_mul(dies).saturating_mul(threads))?;
    let sockets = derive(sockets, dies.saturating_mul(cores).saturating_mul(threads))?;
    let shape = Shape::new(sockets, dies, cores, threads);
    match cpus {
        Some(c) if u64::from(c) != shape.vcpu_count() => Err(format!(
            "-smp {spec}: {sockets} sockets × {dies} dies × {cores} cores × {threads} threads is {} CPUs, not {c}",
            shape.vcpu_count()
        )),
        _ => Ok(shape),
    }
}

/// How QEMU runs the guest, which decides what it can offer beyond the CPU model's topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// QEMU's own translator, which drops features it cannot emulate from every model, TOPOEXT
    /// among them.
    Tcg,
    /// KVM or another hardware accelerator, which keeps the model's TOPOEXT.
    Hardware,
}

/// Why a guest cannot be compared with QEMU 7.2's view of a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestCompareError {
    /// The topology itself is refused.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// QEMU 7.2 cannot build this topology.
    #[error("QEMU 7.2 cannot build this topology: {0}")]
    NotQemu72(&'static str),
}

/// A field where QEMU 7.2 gives a value other than `Modern`'s, with the reason from its
/// `target/i386/cpu.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Qemu72Field {
    /// Leaf.
    pub leaf: u32,
    /// Register index (`EAX` … `EDX`).
    pub register: usize,
    /// Lowest bit.
    pub lo: u32,
    /// Width in bits.
    pub width: u32,
    /// The field and what QEMU 7.2 puts there.
    pub what: &'static str,
}

/// Every field [`qemu_7_2_cpuid_for_vcpu`] changes, for naming known differences.
pub const QEMU_7_2_FIELDS: &[Qemu72Field] = &[
    Qemu72Field {
        leaf: leaf::FEATURES,
        register: EBX,
        lo: 16,
        width: 8,
        what: "leaf 0x1 EBX[23:16]: QEMU 7.2 counts cores × threads of one die",
    },
    Qemu72Field {
        leaf: leaf::FEATURES,
        register: EDX,
        lo: 28,
        width: 1,
        what: "leaf 0x1 EDX[28] HTT: QEMU 7.2 sets it from cores × threads of one die",
    },
    Qemu72Field {
        leaf: leaf::CACHE_PARAMETERS,
        register: EAX,
        lo: 26,
        width: 6,
        what: "leaf 0x4 EAX[31:26]: QEMU 7.2 gives cores per die − 1, a count",
    },
    Qemu72Field {
        leaf: leaf::CACHE_PARAMETERS,
        register: EAX,
        lo: 14,
        width: 12,
        what: "leaf 0x4 EAX[25:14]: QEMU 7.2 gives 0 for L1 and threads − 1 for L2, counts",
    },
    Qemu72Field {
        leaf: leaf::EXTENDED_TOPOLOGY,
        register: EBX,
        lo: 0,
        width: 16,
        what: "leaf 0xB sub-leaf 1 EBX: QEMU 7.2 counts the logical processors of one die",
    },
    Qemu72Field {
        leaf: leaf::EXTENDED_FEATURES,
        register: ECX,
        lo: 1,
        width: 1,
        what: "leaf 0x80000001 ECX[1] CMP_LEGACY: QEMU 7.2 sets it from cores × threads of one die",
    },
    Qemu72Field {
        leaf: leaf::EXTENDED_FEATURES,
        register: ECX,
        lo: 22,
        width: 1,
        what: "leaf 0x80000001 ECX[22] TOPOEXT: QEMU's TCG cannot offer it and drops it from the model",
    },
    Qemu72Field {
        leaf: leaf::ADDRESS_SIZES,
        register: ECX,
        lo: 0,
        width: 8,
        what: "leaf 0x80000008 ECX[7:0] NC: QEMU 7.2 counts one die",
    },
    Qemu72Field {
        leaf: leaf::ADDRESS_SIZES,
        register: ECX,
        lo: 12,
        width: 4,
        what: "leaf 0x80000008 ECX[15:12]: QEMU 7.2 writes 0 when a die has one thread",
    },
];

const REGISTER_NAMES: [&str; 4] = ["EAX", "EBX", "ECX", "EDX"];

/// Refuses topologies QEMU 7.2 cannot build (no modules or tiles; only the modern layout).
fn check_qemu_7_2(topology: &Topology) -> Result<(), GuestCompareError> {
    let s = topology.shape();
    if topology.scheme() != Scheme::Modern {
        Err(GuestCompareError::NotQemu72("QEMU lays APIC IDs out as the modern scheme does"))
    } else if s.modules_per_tile > 1 || s.tiles_per_die > 1 {
        Err(GuestCompareError::NotQemu72("QEMU 7.2 has no modules or tiles"))
    } else {
        Ok(())
    }
}

/// The leaves of [`Topology::cpuid_for_vcpu`] as QEMU 7.2 fills them: the same entries, with
/// the fields of [`QEMU_7_2_FIELDS`] computed as QEMU 7.2's `cpu_x86_cpuid()` does (see the
/// module docs).
///
/// Where QEMU 7.2 leaves a bit to the CPU model (HTT and CMP_LEGACY with one thread per die),
/// this assumes a named model, which sets neither; under [`Accelerator::Tcg`] TOPOEXT is 0.
pub fn qemu_7_2_cpuid_for_vcpu(
    topology: &Topology,
    base: &impl CpuidAccess,
    vcpu: u32,
    accelerator: Accelerator,
) -> Result<CpuidLeaves, GuestCompareError> {
    check_qemu_7_2(topology)?;
    let (s, l) = (topology.shape(), topology.layout());
    // QEMU 7.2's `cs->nr_cores * cs->nr_threads`: `nr_cores` is the cores of one die.
    let per_die = s.cores_per_module.saturating_mul(s.threads_per_core);
    let amd_like = topology.vendor().is_amd_like();
    let mut out = topology.cpuid_for_vcpu(base, vcpu)?;
    let modern: Vec<_> = out.iter().collect();
    for (lf, sub, mut r) in modern {
        match lf {
            leaf::FEATURES => {
                // `*ebx |= (nr_cores * nr_threads) << 16`, unmasked.
                r[EBX] &= !0x00ff_0000;
                if per_die > 1 {
                    r[EBX] |= per_die << 16;
                }
                r = with_bit(r, bit::HTT, per_die > 1);
            }
            leaf::CACHE_PARAMETERS if !amd_like => {
                // encode_cache_cpuid4(cache, num_apic_ids, nr_cores): L1 1, L2 nr_threads,
                // L3 1 << die offset.
                let sharing = match field(r[EAX], 5, 3) {
                    1 => 1,
                    2 => s.threads_per_core,
                    _ => 1u32.checked_shl(l.die_offset()).unwrap_or(0),
                };
                r[EAX] = (r[EAX] & 0x3fff) | s.cores_per_module.wrapping_sub(1) << 26 | sharing.wrapping_sub(1) << 14;
            }
            leaf::EXTENDED_TOPOLOGY if sub == Some(1) => r[EBX] = per_die & 0xffff,
            leaf::EXTENDED_FEATURES if amd_like => {
                r = with_bit(r, bit::CMP_LEGACY, per_die > 1);
                if accelerator == Accelerator::Tcg {
                    r = with_bit(r, bit::TOPOEXT, false);
                }
            }
            leaf::ADDRESS_SIZES if amd_like => {
                r[ECX] = if per_die > 1 { l.package_offset() << 12 | (per_die - 1) } else { 0 };
            }
            _ => continue,
        }
        out.insert(lf, sub, r);
    }
    Ok(out)
}

/// One register that differs from `Modern`'s value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisterDifference {
    /// vCPU index.
    pub vcpu: u32,
    /// Leaf.
    pub leaf: u32,
    /// Sub-leaf.
    pub subleaf: Option<u32>,
    /// Register name.
    pub register: &'static str,
    /// What this crate computes (`Modern`).
    pub modern: u32,
    /// What QEMU 7.2 computes ([`qemu_7_2_cpuid_for_vcpu`]).
    pub qemu_7_2: u32,
    /// What the guest read; `None` when the dump lacks the entry.
    pub found: Option<u32>,
    /// The [`QEMU_7_2_FIELDS`] in which `modern` and `found` differ.
    pub fields: Vec<&'static str>,
}

impl std::fmt::Display for RegisterDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sub = self.subleaf.map_or_else(String::new, |s| format!(" sub-leaf {s}"));
        let found = self.found.map_or_else(|| "nothing".to_owned(), |v| format!("{v:#010x}"));
        write!(
            f,
            "vCPU {} leaf {:#x}{sub} {}: modern {:#010x}, QEMU 7.2 {:#010x}, guest {found}",
            self.vcpu, self.leaf, self.register, self.modern, self.qemu_7_2
        )
    }
}

/// A vCPU whose APIC ID in `/proc/cpuinfo` is not the topology's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApicIdMismatch {
    /// vCPU index.
    pub vcpu: u32,
    /// [`Topology::apic_id`].
    pub expected: u32,
    /// What the guest reported, `None` when it lists no such CPU.
    pub found: Option<u32>,
}

/// The outcome of [`compare_guest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuestComparison {
    /// vCPUs of the topology.
    pub vcpus: u32,
    /// Registers compared: all four of every entry [`Topology::cpuid_for_vcpu`] writes.
    pub registers: usize,
    /// Registers equal to `Modern`'s value.
    pub agreeing: usize,
    /// Registers that differ from `Modern` exactly as QEMU 7.2 is known to.
    pub known_qemu_7_2: Vec<RegisterDifference>,
    /// Registers that match neither.
    pub mismatches: Vec<RegisterDifference>,
    /// APIC IDs checked.
    pub apic_ids: usize,
    /// APIC IDs that differ.
    pub apic_id_mismatches: Vec<ApicIdMismatch>,
    /// Anything else wrong: missing or extra CPUs, another vendor, maximum leaves too low.
    pub problems: Vec<String>,
}

impl GuestComparison {
    /// Whether every difference is explained.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty() && self.apic_id_mismatches.is_empty() && self.problems.is_empty()
    }

    /// How many known QEMU 7.2 differences each field accounts for.
    pub fn known_by_field(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for d in &self.known_qemu_7_2 {
            for &f in &d.fields {
                *counts.entry(f).or_insert(0) += 1;
            }
        }
        counts
    }

    /// One line of counts.
    pub fn summary(&self) -> String {
        format!(
            "{} vCPUs, {} registers compared: {} agree, {} known QEMU 7.2/TCG differences, {} unexplained; \
             APIC IDs {}/{} agree; {} other problems",
            self.vcpus,
            self.registers,
            self.agreeing,
            self.known_qemu_7_2.len(),
            self.mismatches.len(),
            self.apic_ids - self.apic_id_mismatches.len(),
            self.apic_ids,
            self.problems.len()
        )
    }
}

/// The [`QEMU_7_2_FIELDS`] of `l`/`register` in which `modern` and `found` differ; bits outside
/// them are named as such.
fn differing_fields(l: u32, register: usize, modern: u32, found: Option<u32>) -> Vec<&'static str> {
    let Some(found) = found else { return Vec::new() };
    let known: Vec<&Qemu72Field> = QEMU_7_2_FIELDS.iter().filter(|f| f.leaf == l && f.register == register).collect();
    let mut out: Vec<&'static str> =
        known.iter().filter(|f| field(modern, f.lo, f.width) != field(found, f.lo, f.width)).map(|f| f.what).collect();
    let covered = known.iter().fold(0u32, |m, f| m | crate::cpuid::mask(f.width) << f.lo);
    if (modern ^ found) & !covered != 0 {
        out.push("bits outside the fields QEMU 7.2 is known to fill differently");
    }
    out
}

/// Compares what a QEMU guest read with this crate's `Modern` values for the same topology.
///
/// `dump` holds each vCPU's leaves as read ([`observe_leaves`], [`parse_cpuid_dump`]) and
/// `apic_ids` each CPU's APIC ID ([`parse_cpuinfo_apic_ids`]). Each vCPU's dump is the base
/// policy of [`Topology::cpuid_for_vcpu`], so fields the crate does not own (family, cache
/// sizes, features) are the guest's own; every register of every entry the crate writes is
/// compared. A register equal to `Modern`'s agrees; one equal to
/// [`qemu_7_2_cpuid_for_vcpu`]'s (on `accelerator`) instead is a known QEMU 7.2 difference;
/// anything else,
/// including a missing entry, is a mismatch. Maximum leaves below
/// [`Topology::min_basic_leaf`] / [`Topology::min_extended_leaf`], a vendor other than the
/// topology's, and missing or extra CPUs are problems.
pub fn compare_guest(
    topology: &Topology,
    dump: &BTreeMap<u32, CpuidLeaves>,
    apic_ids: &BTreeMap<u32, u32>,
    accelerator: Accelerator,
) -> Result<GuestComparison, GuestCompareError> {
    check_qemu_7_2(topology)?;
    let n = topology.vcpu_count();
    let mut c = GuestComparison { vcpus: n, ..GuestComparison::default() };
    for (what, cpus) in [
        ("CPUID dump", dump.keys().copied().collect::<Vec<_>>()),
        ("/proc/cpuinfo", apic_ids.keys().copied().collect()),
    ] {
        let extra: Vec<u32> = cpus.into_iter().filter(|&v| v >= n).collect();
        if !extra.is_empty() {
            c.problems.push(format!("the {what} has CPUs {extra:?} beyond the shape's {n} vCPUs"));
        }
    }
    let problem = |c: &mut GuestComparison, p: String| {
        if !c.problems.contains(&p) {
            c.problems.push(p);
        }
    };
    for vcpu in 0..n {
        let expected = topology.apic_id(vcpu)?;
        let found = apic_ids.get(&vcpu).copied();
        c.apic_ids += 1;
        if found != Some(expected) {
            c.apic_id_mismatches.push(ApicIdMismatch { vcpu, expected, found });
        }
        let Some(observed) = dump.get(&vcpu) else {
            problem(&mut c, format!("vCPU {vcpu} is missing from the CPUID dump"));
            continue;
        };
        match Vendor::from_cpuid(observed) {
            Some(v) if v == topology.vendor() => {}
            other => problem(&mut c, format!("the guest's vendor is {other:?}, the topology's {}", topology.vendor())),
        }
        for (l, min) in
            [(leaf::BASIC_MAX, topology.min_basic_leaf()), (leaf::EXTENDED_MAX, topology.min_extended_leaf())]
        {
            let max = observed.get(l, None).map(|r| r[EAX]);
            if max.is_none_or(|m| m < min) {
                let max = max.map_or_else(|| "missing".to_owned(), |m| format!("{m:#x}"));
                problem(&mut c, format!("leaf {l:#x} EAX (maximum leaf) is {max}, the topology needs {min:#x}"));
            }
        }
        let modern = topology.cpuid_for_vcpu(observed, vcpu)?;
        let old = qemu_7_2_cpuid_for_vcpu(topology, observed, vcpu, accelerator)?;
        for (l, s, regs) in modern.iter() {
            let read = observed.get(l, s);
            let q = old.get(l, s).unwrap_or(regs);
            for (i, register) in REGISTER_NAMES.into_iter().enumerate() {
                c.registers += 1;
                let found = read.map(|r| r[i]);
                if found == Some(regs[i]) {
                    c.agreeing += 1;
                    continue;
                }
                let d = RegisterDifference {
                    vcpu,
                    leaf: l,
                    subleaf: s,
                    register,
                    modern: regs[i],
                    qemu_7_2: q[i],
                    found,
                    fields: differing_fields(l, i, regs[i], found),
                };
                if found == Some(q[i]) {
                    c.known_qemu_7_2.push(d);
                } else {
                    c.mismatches.push(d);
                }
            }
        }
    }
    Ok(c)
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
    /// What QEMU 7.2.22 (Debian 12) guests read from `/dev/cpu/N/cpuid` under TCG, recorded by
    /// the test command's `qemu-topology` step (`target/qemu-topology/*.cpuid`): one vCPU per boot.
    const RECORDED: [(&str, Vendor, &str, u32, &str); 4] = [
        (
            "Skylake-Server",
            Vendor::Intel,
            "12,sockets=2,cores=3,threads=2",
            7,
            "cpu 7 leaf 0x0 subleaf - 0x0000000d 0x756e6547 0x6c65746e 0x49656e69
             cpu 7 leaf 0x1 subleaf - 0x00050654 0x09060800 0xfed83203 0x178bfbfd
             cpu 7 leaf 0x4 subleaf 0 0x08000121 0x01c0003f 0x0000003f 0x00000001
             cpu 7 leaf 0x4 subleaf 1 0x08000122 0x01c0003f 0x0000003f 0x00000001
             cpu 7 leaf 0x4 subleaf 2 0x08004143 0x03c0003f 0x00000fff 0x00000001
             cpu 7 leaf 0x4 subleaf 3 0x0801c163 0x03c0003f 0x00003fff 0x00000006
             cpu 7 leaf 0x4 subleaf 4 0x00000000 0x00000000 0x00000000 0x00000000
             cpu 7 leaf 0xb subleaf 0 0x00000001 0x00000002 0x00000100 0x00000009
             cpu 7 leaf 0xb subleaf 1 0x00000003 0x00000006 0x00000201 0x00000009
             cpu 7 leaf 0xb subleaf 2 0x00000000 0x00000000 0x00000002 0x00000009
             cpu 7 leaf 0x80000000 subleaf - 0x80000008 0x756e6547 0x6c65746e 0x49656e69
             cpu 7 leaf 0x80000001 subleaf - 0x00050654 0x00000000 0x00000021 0x2c100800
             cpu 7 leaf 0x80000008 subleaf - 0x00003028 0x00000000 0x00003005 0x00000000",
        ),
        (
            "Skylake-Server",
            Vendor::Intel,
            "18,sockets=1,dies=2,cores=3,threads=3",
            17,
            "cpu 17 leaf 0x0 subleaf - 0x0000001f 0x756e6547 0x6c65746e 0x49656e69
             cpu 17 leaf 0x1 subleaf - 0x00050654 0x1a090800 0xfed83203 0x178bfbfd
             cpu 17 leaf 0x4 subleaf 0 0x08000121 0x01c0003f 0x0000003f 0x00000001
             cpu 17 leaf 0x4 subleaf 1 0x08000122 0x01c0003f 0x0000003f 0x00000001
             cpu 17 leaf 0x4 subleaf 2 0x08008143 0x03c0003f 0x00000fff 0x00000001
             cpu 17 leaf 0x4 subleaf 3 0x0803c163 0x03c0003f 0x00003fff 0x00000006
             cpu 17 leaf 0x4 subleaf 4 0x00000000 0x00000000 0x00000000 0x00000000
             cpu 17 leaf 0xb subleaf 0 0x00000002 0x00000003 0x00000100 0x0000001a
             cpu 17 leaf 0xb subleaf 1 0x00000005 0x00000009 0x00000201 0x0000001a
             cpu 17 leaf 0xb subleaf 2 0x00000000 0x00000000 0x00000002 0x0000001a
             cpu 17 leaf 0x1f subleaf 0 0x00000002 0x00000003 0x00000100 0x0000001a
             cpu 17 leaf 0x1f subleaf 1 0x00000004 0x00000009 0x00000201 0x0000001a
             cpu 17 leaf 0x1f subleaf 2 0x00000005 0x00000012 0x00000502 0x0000001a
             cpu 17 leaf 0x1f subleaf 3 0x00000000 0x00000000 0x00000003 0x0000001a
             cpu 17 leaf 0x80000000 subleaf - 0x80000008 0x756e6547 0x6c65746e 0x49656e69
             cpu 17 leaf 0x80000001 subleaf - 0x00050654 0x00000000 0x00000021 0x2c100800
             cpu 17 leaf 0x80000008 subleaf - 0x00003028 0x00000000 0x00005008 0x00000000",
        ),
        (
            "EPYC",
            Vendor::Amd,
            "24,sockets=2,dies=2,cores=3,threads=2",
            23,
            "cpu 23 leaf 0x0 subleaf - 0x0000000d 0x68747541 0x444d4163 0x69746e65
             cpu 23 leaf 0x1 subleaf - 0x00800f12 0x1d060800 0xfed8320b 0x178bfbfd
             cpu 23 leaf 0x4 subleaf 0 0x00000000 0x00000000 0x00000000 0x00000000
             cpu 23 leaf 0xb subleaf 0 0x00000001 0x00000002 0x00000100 0x0000001d
             cpu 23 leaf 0xb subleaf 1 0x00000004 0x00000006 0x00000201 0x0000001d
             cpu 23 leaf 0xb subleaf 2 0x00000000 0x00000000 0x00000002 0x0000001d
             cpu 23 leaf 0x80000000 subleaf - 0x8000001e 0x68747541 0x444d4163 0x69746e65
             cpu 23 leaf 0x80000001 subleaf - 0x00800f12 0x00000000 0x00000077 0x2dd3fbfd
             cpu 23 leaf 0x80000008 subleaf - 0x00003028 0x00000000 0x00004005 0x00000000
             cpu 23 leaf 0x8000001d subleaf 0 0x00004121 0x01c0003f 0x0000003f 0x00000001
             cpu 23 leaf 0x8000001d subleaf 1 0x00004122 0x00c0003f 0x000000ff 0x00000001
             cpu 23 leaf 0x8000001d subleaf 2 0x00004043 0x01c0003f 0x000003ff 0x00000000
             cpu 23 leaf 0x8000001d subleaf 3 0x00014163 0x03c0003f 0x00001fff 0x00000006
             cpu 23 leaf 0x8000001d subleaf 4 0x00000000 0x00000000 0x00000000 0x00000000
             cpu 23 leaf 0x8000001e subleaf - 0x0000001d 0x00000102 0x00000103 0x00000000",
        ),
        (
            "Skylake-Server",
            Vendor::Intel,
            "255,sockets=1,cores=255,threads=1",
            254,
            "cpu 254 leaf 0x0 subleaf - 0x0000000d 0x756e6547 0x6c65746e 0x49656e69
             cpu 254 leaf 0x1 subleaf - 0x00050654 0xfeff0800 0xfed83203 0x178bfbfd
             cpu 254 leaf 0x4 subleaf 0 0xf8000121 0x01c0003f 0x0000003f 0x00000001
             cpu 254 leaf 0x4 subleaf 1 0xf8000122 0x01c0003f 0x0000003f 0x00000001
             cpu 254 leaf 0x4 subleaf 2 0xf8000143 0x03c0003f 0x00000fff 0x00000001
             cpu 254 leaf 0x4 subleaf 3 0xf83fc163 0x03c0003f 0x00003fff 0x00000006
             cpu 254 leaf 0x4 subleaf 4 0x00000000 0x00000000 0x00000000 0x00000000
             cpu 254 leaf 0xb subleaf 0 0x00000000 0x00000001 0x00000100 0x000000fe
             cpu 254 leaf 0xb subleaf 1 0x00000008 0x000000ff 0x00000201 0x000000fe
             cpu 254 leaf 0xb subleaf 2 0x00000000 0x00000000 0x00000002 0x000000fe
             cpu 254 leaf 0x80000000 subleaf - 0x80000008 0x756e6547 0x6c65746e 0x49656e69
             cpu 254 leaf 0x80000001 subleaf - 0x00050654 0x00000000 0x00000021 0x2c100800
             cpu 254 leaf 0x80000008 subleaf - 0x00003028 0x00000000 0x000080fe 0x00000000",
        ),
    ];

    #[test]
    fn the_qemu_7_2_model_reproduces_recorded_guests() {
        for (model, vendor, smp, vcpu, text) in RECORDED {
            let t = Topology::new(shape_from_smp(smp).unwrap(), vendor, Scheme::Modern, false).unwrap();
            let dump = parse_cpuid_dump(text).unwrap();
            let observed = &dump[&vcpu];
            let old = qemu_7_2_cpuid_for_vcpu(&t, observed, vcpu, Accelerator::Tcg).unwrap();
            assert!(old.len() > 5, "{model} {smp}");
            for (l, s, regs) in old.iter() {
                assert_eq!(observed.get(l, s), Some(regs), "{model} -smp {smp} vCPU {vcpu} leaf {l:#x} {s:?}");
            }
            assert_eq!(t.apic_id(vcpu).unwrap(), observed.get(0xb, Some(0)).unwrap()[EDX], "{model} {smp}");
        }
    }

    #[test]
    fn recorded_guests_differ_from_modern_only_in_known_fields() {
        let names = |c: &GuestComparison| {
            c.known_by_field().into_keys().map(|f| f.split(':').next().unwrap()).collect::<Vec<_>>()
        };
        let mut seen = Vec::new();
        for (model, vendor, smp, vcpu, text) in RECORDED {
            // Compare the one recorded vCPU as a one-vCPU dump of the same shape.
            let t = Topology::new(shape_from_smp(smp).unwrap(), vendor, Scheme::Modern, false).unwrap();
            let dump = parse_cpuid_dump(text).unwrap();
            let apic_ids: BTreeMap<u32, u32> = [(vcpu, t.apic_id(vcpu).unwrap())].into();
            let c = compare_guest(&t, &dump, &apic_ids, Accelerator::Tcg).unwrap();
            assert!(c.mismatches.is_empty(), "{model} {smp}: {:?}", c.mismatches);
            assert_eq!(c.problems.len(), t.vcpu_count() as usize - 1, "only the other vCPUs are missing");
            seen.push((smp, names(&c)));
            // Without TCG's missing TOPOEXT the AMD guest has unexplained differences.
            if vendor == Vendor::Amd {
                let c = compare_guest(&t, &dump, &apic_ids, Accelerator::Hardware).unwrap();
                assert_eq!(c.mismatches.len(), 1);
                assert_eq!((c.mismatches[0].leaf, c.mismatches[0].register), (0x8000_0001, "ECX"));
            }
        }
        assert_eq!(
            seen,
            [
                ("12,sockets=2,cores=3,threads=2", vec!["leaf 0x1 EBX[23", "leaf 0x4 EAX[25", "leaf 0x4 EAX[31"]),
                (
                    "18,sockets=1,dies=2,cores=3,threads=3",
                    vec!["leaf 0x1 EBX[23", "leaf 0x4 EAX[25", "leaf 0x4 EAX[31", "leaf 0xB sub-leaf 1 EBX"]
                ),
                (
                    "24,sockets=2,dies=2,cores=3,threads=2",
                    vec![
                        "leaf 0x1 EBX[23",
                        "leaf 0x80000001 ECX[22] TOPOEXT",
                        "leaf 0x80000008 ECX[7",
                        "leaf 0xB sub-leaf 1 EBX"
                    ]
                ),
                ("255,sockets=1,cores=255,threads=1", vec!["leaf 0x4 EAX[31"]),
            ]
        );
    }

    #[test]
    fn a_guest_reading_the_crates_own_values_agrees_everywhere() {
        let t = Topology::new(Shape::new(2, 1, 3, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
        let mut base = CpuidLeaves::new();
        base.insert(0, None, Vendor::Intel.leaf0(0xd));
        base.insert(0x8000_0000, None, [0x8000_0008, 0, 0, 0]);
        base.insert(0xd, None, [7, 0x340, 0x340, 0]);
        for (s, regs) in [[0x121, 0x1c0_003f, 0x3f, 1], [0x122, 0x1c0_003f, 0x3f, 1], [0x143, 0x3c0_003f, 0xfff, 1]]
            .into_iter()
            .enumerate()
        {
            base.insert(4, Some(s as u32), regs);
        }
        base.insert(4, Some(3), [0; 4]);
        let mut dump = BTreeMap::new();
        let mut apic_ids = BTreeMap::new();
        for vcpu in 0..t.vcpu_count() {
            let view = t.guest_cpuid(&base, vcpu).unwrap();
            // Like an Intel CPU: leaves above the maximum answer as the maximum basic leaf.
            let read = |l: u32, s: u32| -> Result<Registers, ()> {
                let l = if l > 0xd && l < 0x8000_0000 || l > 0x8000_0008 { 0xd } else { l };
                Ok(view.get(l, Some(s).filter(|_| has_subleaves(l))).unwrap_or([0; 4]))
            };
            let observed = observe_leaves(read).unwrap();
            assert_eq!(observed.subleaves(4).count(), 4, "three caches and the terminator");
            assert_eq!(observed.subleaves(0xb).count(), 3);
            assert!(observed.get(0x1f, Some(0)).is_none() && observed.get(0x8000_001e, None).is_none());
            dump.insert(vcpu, observed);
            apic_ids.insert(vcpu, t.apic_id(vcpu).unwrap());
        }
        let c = compare_guest(&t, &dump, &apic_ids, Accelerator::Tcg).unwrap();
        assert!(c.is_ok() && c.known_qemu_7_2.is_empty(), "{c:?}");
        assert_eq!(c.registers, 12 * 4 * (1 + 3 + 3 + 1));
        assert_eq!(c.agreeing, c.registers);

        // A wrong register, a wrong APIC ID, a missing vCPU and an extra CPU are all reported.
        dump.get_mut(&3).unwrap().insert(0xb, Some(1), [3, 6, 0x201, 4]);
        apic_ids.insert(6, 6);
        dump.remove(&11);
        dump.insert(12, CpuidLeaves::new());
        let c = compare_guest(&t, &dump, &apic_ids, Accelerator::Tcg).unwrap();
        assert!(!c.is_ok());
        assert_eq!(c.mismatches.len(), 1);
        assert_eq!(
            c.mismatches[0].to_string(),
            "vCPU 3 leaf 0xb sub-leaf 1 EDX: modern 0x00000003, QEMU 7.2 0x00000003, guest 0x00000004"
        );
        assert_eq!(c.apic_id_mismatches, [ApicIdMismatch { vcpu: 6, expected: 8, found: Some(6) }]);
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        assert!(c.summary().contains("1 unexplained; APIC IDs 11/12 agree; 2 other problems"), "{}", c.summary());
    }

    #[test]
    fn smp_values_follow_qemu() {
        let ok = [
            ("12,sockets=2,cores=3,threads=2", Shape::new(2, 1, 3, 2)),
            ("18,sockets=1,dies=2,cores=3,threads=3", Shape::new(1, 2, 3, 3)),
            ("8", Shape::new(1, 1, 8, 1)),
            ("8,sockets=2", Shape::new(2, 1, 4, 1)),
            ("8,cores=2", Shape::new(4, 1, 2, 1)),
            ("8,threads=2", Shape::new(1, 1, 4, 2)),
            ("cpus=4,sockets=2,cores=2", Shape::new(2, 1, 2, 1)),
            ("sockets=2,cores=2", Shape::new(2, 1, 2, 1)),
        ];
        for (spec, shape) in ok {
            assert_eq!(shape_from_smp(spec), Ok(shape), "{spec}");
        }
        for bad in ["12,sockets=2,cores=4", "4,maxcpus=8", "6,sockets=4", "4,cores=0", "4,cores=2,cores=2", "x"] {
            assert!(shape_from_smp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpuinfo_apic_ids_are_read_per_processor() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\napicid\t\t: 0\ninitial apicid\t: 0\n\n\
                    processor\t: 1\napicid\t\t: 4\n";
        assert_eq!(parse_cpuinfo_apic_ids(text), Ok([(0, 0), (1, 4)].into()));
        assert!(parse_cpuinfo_apic_ids("apicid : 3\n").is_err());
        assert!(parse_cpuinfo_apic_ids("processor : 0\napicid : x\n").is_err());
    }
}
