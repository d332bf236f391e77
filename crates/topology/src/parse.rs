//! From CPUID leaves back to a topology, the way Linux reads them.
//!
//! Follows Linux 6.9+ `arch/x86/kernel/cpu/topology_common.c` (`parse_topology()`,
//! `parse_legacy()`), `topology_ext.c` (leaves 0x1F, 0x80000026, 0xB) and `topology_amd.c`
//! (0x80000008, 0x8000001E): Intel tries 0x1F, then 0x80000026, then 0xB, then leaf 4 with
//! leaf 1; AMD and Hygon try the same extended leaves only with TOPOEXT, else 0x80000008, and
//! then read 0x8000001E. The result is a shift and a processor count per domain, as Linux's
//! `struct topo_scan` holds them.
//!
//! Where leaves disagree Linux warns (`[Firmware Bug]`) and carries on; so does this parser:
//! disagreements are [`Finding`]s beside the result, never a failure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cpuid::{bit, count_order, field, has_bit, leaf, mask, shr, CpuidAccess, Registers, EAX, EBX, ECX, EDX};
use crate::shape::{Level, Shape, VcpuIds, Vendor};

/// Sub-leaves of 0xB/0x1F/0x80000026 read before giving up on a missing terminator.
const MAX_LEVELS: u32 = 16;

/// Which leaf the domain shifts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologySource {
    /// Leaf 0x1F (V2 extended topology).
    Leaf0x1f,
    /// Leaf 0x80000026 (AMD extended topology).
    Leaf0x80000026,
    /// Leaf 0xB (extended topology).
    Leaf0xb,
    /// Intel without 0xB/0x1F: leaf 4 `EAX[31:26]` and leaf 1 `EBX[23:16]`.
    Leaf4AndLeaf1,
    /// AMD without usable extended leaves: 0x80000008 ECX (and 0x8000001E for SMT).
    Leaf0x80000008,
    /// Nothing usable: one thread, one core.
    None,
}

/// A shift (APIC ID bits below the next domain) or count per Linux topology domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Domains {
    /// SMT: threads of a core.
    pub smt: u32,
    /// Core: up to the module.
    pub core: u32,
    /// Module.
    pub module: u32,
    /// Tile.
    pub tile: u32,
    /// Die.
    pub die: u32,
    /// Die group; its shift is the package shift.
    pub die_group: u32,
}

impl Domains {
    fn as_array(&self) -> [u32; 6] {
        [self.smt, self.core, self.module, self.tile, self.die, self.die_group]
    }

    fn from_array(a: [u32; 6]) -> Self {
        Self { smt: a[0], core: a[1], module: a[2], tile: a[3], die: a[4], die_group: a[5] }
    }
}

/// Linux's domain numbers (`enum x86_topology_domains`), without the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Domain {
    Smt = 0,
    Core = 1,
    Module = 2,
    Tile = 3,
    Die = 4,
    DieGroup = 5,
}

/// Something the leaves disagree on, or a quirk Linux fixes up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// No leaf describes the topology; Linux assumes one thread and one core per package.
    #[error("no CPUID leaf describes the topology")]
    NoTopologyLeaves,

    /// Two leaves give this processor different APIC IDs.
    #[error("CPUID leaf {leaf:#x} gives APIC ID {found:#x}, leaf {reference_leaf:#x} gives {expected:#x}")]
    ApicIdMismatch {
        /// The leaf that disagrees.
        leaf: u32,
        /// Its APIC ID (only the low 8 bits when `leaf` is 1).
        found: u32,
        /// The leaf taken as reference.
        reference_leaf: u32,
        /// The reference APIC ID (masked like `found`).
        expected: u32,
    },

    /// A sub-leaf of 0xB/0x1F gives a different x2APIC ID than sub-leaf 0.
    #[error("CPUID leaf {leaf:#x} sub-leaf {subleaf} x2APIC ID {found:#x} != {expected:#x}")]
    SubleafApicIdMismatch {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf.
        subleaf: u32,
        /// Its x2APIC ID.
        found: u32,
        /// Sub-leaf 0's.
        expected: u32,
    },

    /// A topology leaf lists only its SMT level and then lacks the next sub-leaf: the input
    /// is incomplete (libvirt's dumps keep only sub-leaf 0 of 0x80000026), so the leaf is
    /// not used and the parser moves on to the next one.
    #[error("CPUID leaf {leaf:#x} lacks sub-leaf {subleaf} after its SMT level; leaf not used")]
    IncompleteLevels {
        /// The leaf.
        leaf: u32,
        /// The first missing sub-leaf.
        subleaf: u32,
    },

    /// A level type the leaf does not define; Linux takes it as the next domain up.
    #[error("CPUID leaf {leaf:#x} sub-leaf {subleaf} has unknown level type {level_type}")]
    UnknownLevelType {
        /// The leaf.
        leaf: u32,
        /// The sub-leaf.
        subleaf: u32,
        /// The level type (`ECX[15:8]`).
        level_type: u32,
    },

    /// The SMT level has shift 0 but more than one thread; Linux fixes the shift up.
    #[error("CPUID leaf {leaf:#x} sub-leaf 0 has shift 0 but {threads} threads")]
    SmtShiftZero {
        /// The leaf.
        leaf: u32,
        /// Threads at the SMT level.
        threads: u32,
    },

    /// A level's processor count is not a multiple of the level below.
    #[error("{level}: {count} logical processors is not a multiple of {per} (from leaf {leaf:#x})")]
    UnevenCount {
        /// The leaf the counts came from.
        leaf: u32,
        /// The level whose count is being derived.
        level: Level,
        /// Processors at this level.
        count: u32,
        /// Processors at the level below.
        per: u32,
    },

    /// More processors at a level than its APIC ID bits can number.
    #[error("{count} logical processors per package do not fit a {shift}-bit APIC ID space")]
    CountExceedsIdSpace {
        /// Processors per package.
        count: u32,
        /// APIC ID bits below the package ID.
        shift: u32,
    },

    /// Two topology leaves give a domain different shifts.
    #[error("CPUID leaf {leaf:#x} gives the {domain} shift {found}, leaf {reference_leaf:#x} gives {expected}")]
    ShiftMismatch {
        /// The leaf that disagrees.
        leaf: u32,
        /// The domain (`smt`, `core`, `package`).
        domain: &'static str,
        /// Its shift.
        found: u32,
        /// The leaf taken as reference.
        reference_leaf: u32,
        /// The reference shift.
        expected: u32,
    },

    /// HTT is clear although a package has several logical processors.
    #[error("leaf 1 HTT is clear but a package has {threads} logical processors")]
    HttClear {
        /// Processors per package.
        threads: u32,
    },

    /// Leaf 1 `EBX[23:16]` disagrees with the topology leaves.
    #[error(
        "leaf 1 EBX[23:16] = {reported} disagrees with {threads} logical processors per package \
         (APIC ID shift {shift})"
    )]
    Leaf1Count {
        /// The field's value.
        reported: u32,
        /// Processors per package from the topology leaves.
        threads: u32,
        /// The package shift from the topology leaves.
        shift: u32,
    },

    /// Leaf 4 `EAX[31:26]` + 1 is smaller than the number of cores per package.
    #[error("leaf 4 EAX[31:26] + 1 = {reported} is smaller than {cores} cores per package")]
    Leaf4Cores {
        /// The field's value + 1.
        reported: u32,
        /// Cores per package from the topology leaves.
        cores: u32,
    },

    /// Linux's legacy parse: leaf 1 `EBX[23:16]` has fewer ID bits than leaf 4's cores.
    #[error("leaf 1 EBX[23:16] = {lppp} has fewer APIC ID bits than leaf 4's {cores} cores")]
    LegacyCountBelowCores {
        /// Leaf 1 `EBX[23:16]`.
        lppp: u32,
        /// Leaf 4 `EAX[31:26]` + 1.
        cores: u32,
    },

    /// AMD 0x80000008 ECX disagrees with the topology leaves.
    #[error(
        "0x80000008 ECX NC + 1 = {nc_threads} and ApicIdCoreIdSize {size} disagree with \
         {threads} logical processors per package and package shift {shift}"
    )]
    Leaf0x80000008 {
        /// NC + 1.
        nc_threads: u32,
        /// ApicIdCoreIdSize.
        size: u32,
        /// Processors per package from the topology leaves.
        threads: u32,
        /// Package shift from the topology leaves.
        shift: u32,
    },

    /// AMD 0x8000001E `EBX[15:8]` + 1 disagrees with the SMT level.
    #[error("0x8000001E gives {reported} threads per core, the topology leaves {threads}")]
    Leaf0x8000001eThreads {
        /// `EBX[15:8]` + 1.
        reported: u32,
        /// Threads per core from the topology leaves.
        threads: u32,
    },

    /// vCPUs disagree on a domain's shift (Linux: "Topology domain N shift X != Y").
    #[error("vCPU {vcpu}: {domain} shift {found} differs from vCPU 0's {expected}")]
    VcpuShiftDiffers {
        /// The vCPU (position in the input).
        vcpu: usize,
        /// The domain.
        domain: &'static str,
        /// Its shift.
        found: u32,
        /// vCPU 0's.
        expected: u32,
    },

    /// vCPUs disagree on the shape of a package.
    #[error("vCPU {vcpu} describes a different package shape than vCPU 0")]
    VcpuShapeDiffers {
        /// The vCPU (position in the input).
        vcpu: usize,
    },

    /// Two vCPUs have the same APIC ID.
    #[error("vCPUs {first} and {second} both have APIC ID {apic_id:#x}")]
    DuplicateApicId {
        /// The APIC ID.
        apic_id: u32,
        /// The first vCPU with it.
        first: usize,
        /// The second.
        second: usize,
    },

    /// The vCPUs do not fill the shape their leaves describe.
    #[error(
        "the leaves describe {packages} package(s) of {per_package} logical processors, but {vcpus} vCPUs were given"
    )]
    VcpuCountMismatch {
        /// Distinct package IDs seen.
        packages: u32,
        /// Processors per package described.
        per_package: u32,
        /// vCPUs given.
        vcpus: usize,
    },
}

/// What one processor's CPUID leaves say about the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedVcpu {
    /// The vendor whose rules were applied.
    pub vendor: Vendor,
    /// Where the domain shifts came from.
    pub source: TopologySource,
    /// The initial APIC ID as Linux settles it (x2APIC ID when a topology leaf has one,
    /// AMD 0x8000001E EAX with TOPOEXT, else leaf 1 `EBX[31:24]`).
    pub apic_id: u32,
    /// APIC ID bits below each domain's parent (`dom_shifts`).
    pub shifts: Domains,
    /// Logical processors in one instance of each domain's parent (`dom_ncpus`).
    pub counts: Domains,
    /// AMD nodes per package (0x8000001E `ECX[10:8]` + 1); 1 elsewhere.
    pub amd_nodes_per_package: u32,
    /// AMD node ID (0x8000001E `ECX[7:0]`), when read.
    pub amd_node_id: Option<u32>,
    /// Disagreements between leaves.
    pub findings: Vec<Finding>,
}

impl ParsedVcpu {
    /// Threads per core.
    pub fn threads_per_core(&self) -> u32 {
        self.counts.smt.max(1)
    }

    /// Logical processors per package.
    pub fn threads_per_package(&self) -> u32 {
        self.counts.die_group.max(1)
    }

    /// Cores per package.
    pub fn cores_per_package(&self) -> u32 {
        (self.threads_per_package() / self.threads_per_core()).max(1)
    }

    /// APIC ID bits below the package ID.
    pub fn package_shift(&self) -> u32 {
        self.shifts.die_group
    }

    /// Bits of the die (node) ID for AMD, whose topology leaves have no die level.
    fn amd_node_bits(&self) -> u32 {
        if self.vendor.is_amd_like() && self.shifts.die == self.shifts.tile {
            count_order(self.amd_nodes_per_package)
        } else {
            0
        }
    }

    /// This processor's IDs, each relative to its parent, from its APIC ID and the shifts.
    pub fn ids(&self) -> VcpuIds {
        let a = self.apic_id;
        let s = &self.shifts;
        let take = |lo: u32, hi: u32| shr(a, lo) & mask(hi.saturating_sub(lo));
        let node_bits = self.amd_node_bits();
        let core_top = s.core.saturating_sub(node_bits).max(s.smt);
        VcpuIds {
            package: shr(a, s.die_group),
            die: if node_bits > 0 { take(core_top, s.core) } else { take(s.tile, s.die) },
            tile: take(s.module, s.tile),
            module: take(s.core, s.module),
            core: take(s.smt, core_top),
            thread: take(0, s.smt),
        }
    }

    /// The shape of one package (`packages` = 1), and findings for uneven counts.
    pub fn package_shape(&self) -> (Shape, Vec<Finding>) {
        let c = &self.counts;
        let leaf = match self.source {
            TopologySource::Leaf0x1f => leaf::V2_EXTENDED_TOPOLOGY,
            TopologySource::Leaf0x80000026 => leaf::AMD_EXTENDED_TOPOLOGY,
            TopologySource::Leaf0xb => leaf::EXTENDED_TOPOLOGY,
            TopologySource::Leaf4AndLeaf1 => leaf::CACHE_PARAMETERS,
            TopologySource::Leaf0x80000008 | TopologySource::None => leaf::ADDRESS_SIZES,
        };
        let mut findings = Vec::new();
        let mut ratio = |level: Level, count: u32, per: u32| {
            let per = per.max(1);
            if !count.is_multiple_of(per) {
                findings.push(Finding::UnevenCount { leaf, level, count, per });
            }
            (count / per).max(1)
        };
        let threads = c.smt.max(1);
        let nodes = if self.vendor.is_amd_like() { self.amd_nodes_per_package.max(1) } else { 1 };
        let cores = ratio(Level::Core, c.core, threads * nodes);
        let modules = ratio(Level::Module, c.module, c.core);
        let tiles = ratio(Level::Tile, c.tile, c.module);
        let dies = if nodes > 1 { nodes } else { ratio(Level::Die, c.die, c.tile) };
        let shape = Shape {
            packages: 1,
            dies_per_package: dies,
            tiles_per_die: tiles,
            modules_per_tile: modules,
            cores_per_module: cores,
            threads_per_core: threads,
        };
        (shape, findings)
    }
}

/// Parses one processor's leaves.
pub fn parse_vcpu(leaves: &impl CpuidAccess, vendor: Vendor) -> ParsedVcpu {
    let mut scan = Scan::new(leaves, vendor);
    scan.parse();
    scan.check_consistency();
    scan.finish()
}

/// The topology described by every vCPU's leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedTopology {
    /// The shape: per-package counts from vCPU 0, packages from the distinct package IDs.
    pub shape: Shape,
    /// Each vCPU's parse, in input order.
    pub vcpus: Vec<ParsedVcpu>,
    /// Disagreements between vCPUs (each vCPU's own are in its [`ParsedVcpu::findings`]).
    pub findings: Vec<Finding>,
}

impl ParsedTopology {
    /// Whether neither any vCPU nor the set of vCPUs has findings.
    pub fn is_consistent(&self) -> bool {
        self.findings.is_empty() && self.vcpus.iter().all(|v| v.findings.is_empty())
    }

    /// Every finding, with the vCPU it belongs to (`None` for findings across vCPUs).
    pub fn all_findings(&self) -> impl Iterator<Item = (Option<usize>, &Finding)> {
        self.vcpus
            .iter()
            .enumerate()
            .flat_map(|(i, v)| v.findings.iter().map(move |f| (Some(i), f)))
            .chain(self.findings.iter().map(|f| (None, f)))
    }
}

/// Parses every vCPU's leaves (in vCPU order) and recovers the shape; `None` for no vCPUs.
pub fn parse_vcpus<L: CpuidAccess>(views: &[L], vendor: Vendor) -> Option<ParsedTopology> {
    let vcpus: Vec<ParsedVcpu> = views.iter().map(|v| parse_vcpu(v, vendor)).collect();
    let first = vcpus.first()?;
    let (mut shape, mut findings) = first.package_shape();
    let names = ["smt", "core", "module", "tile", "die", "package"];
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut packages = BTreeSet::new();
    for (i, v) in vcpus.iter().enumerate() {
        if i > 0 {
            for ((found, expected), domain) in v.shifts.as_array().into_iter().zip(first.shifts.as_array()).zip(names) {
                if found != expected {
                    findings.push(Finding::VcpuShiftDiffers { vcpu: i, domain, found, expected });
                }
            }
            if v.package_shape().0 != shape {
                findings.push(Finding::VcpuShapeDiffers { vcpu: i });
            }
        }
        if let Some(first) = seen.insert(v.apic_id, i) {
            findings.push(Finding::DuplicateApicId { apic_id: v.apic_id, first, second: i });
        }
        packages.insert(v.ids().package);
    }
    shape.packages = packages.len() as u32;
    let per_package = shape.threads_in_package();
    if u64::from(per_package) * u64::from(shape.packages) != vcpus.len() as u64 {
        findings.push(Finding::VcpuCountMismatch { packages: shape.packages, per_package, vcpus: vcpus.len() });
    }
    Some(ParsedTopology { shape, vcpus, findings })
}

/// Linux's `struct topo_scan`, plus the leaves it reads.
struct Scan<'a, L: CpuidAccess> {
    leaves: &'a L,
    vendor: Vendor,
    max_basic: u32,
    max_extended: u32,
    source: TopologySource,
    apic_id: u32,
    shifts: [u32; 6],
    counts: [u32; 6],
    nodes: u32,
    node_id: Option<u32>,
    findings: Vec<Finding>,
}

impl<'a, L: CpuidAccess> Scan<'a, L> {
    fn new(leaves: &'a L, vendor: Vendor) -> Self {
        // Without leaf 0/0x80000000 in the model, every leaf the model holds counts as present.
        let max_basic = leaves.cpuid(leaf::BASIC_MAX, None).map_or(u32::MAX, |r| r[EAX]);
        let max_extended = leaves.cpuid(leaf::EXTENDED_MAX, None).map_or(u32::MAX, |r| r[EAX]);
        let apic_id = field(regs(leaves, leaf::FEATURES, None)[EBX], 24, 8);
        let mut scan = Self {
            leaves,
            vendor,
            max_basic,
            max_extended,
            source: TopologySource::None,
            apic_id,
            shifts: [0; 6],
            counts: [0; 6],
            nodes: 1,
            node_id: None,
            findings: Vec::new(),
        };
        // fake_topology(): one thread, one core until a leaf says otherwise.
        scan.set_dom(Domain::Smt, 0, 1);
        scan.set_dom(Domain::Core, 0, 1);
        scan
    }

    fn has_basic(&self, l: u32) -> bool {
        self.max_basic >= l
    }

    fn has_extended(&self, l: u32) -> bool {
        self.max_extended >= l && self.max_extended & 0xffff_0000 == leaf::EXTENDED_MAX
    }

    fn leaf1(&self) -> Registers {
        regs(self.leaves, leaf::FEATURES, None)
    }

    fn topoext(&self) -> bool {
        self.has_extended(leaf::EXTENDED_FEATURES)
            && has_bit(regs(self.leaves, leaf::EXTENDED_FEATURES, None), bit::TOPOEXT)
    }

    /// `topology_set_dom()`: set a domain and propagate to the ones above.
    fn set_dom(&mut self, dom: Domain, shift: u32, count: u32) {
        for d in dom as usize..6 {
            self.shifts[d] = shift;
            self.counts[d] = count;
        }
    }

    /// `topology_update_dom()`: set one domain only.
    fn update_dom(&mut self, dom: Domain, shift: u32, count: u32) {
        self.shifts[dom as usize] = shift;
        self.counts[dom as usize] = count;
    }

    fn parse(&mut self) {
        match self.vendor {
            Vendor::Intel => {
                if !self.parse_extended() {
                    self.parse_legacy();
                }
            }
            Vendor::Amd | Vendor::Hygon => self.parse_amd(),
        }
    }

    /// `cpu_parse_topology_ext()`.
    fn parse_extended(&mut self) -> bool {
        (self.has_basic(leaf::V2_EXTENDED_TOPOLOGY) && self.parse_levels(leaf::V2_EXTENDED_TOPOLOGY))
            || (self.has_extended(leaf::AMD_EXTENDED_TOPOLOGY) && self.parse_levels(leaf::AMD_EXTENDED_TOPOLOGY))
            || (self.has_basic(leaf::EXTENDED_TOPOLOGY) && self.parse_levels(leaf::EXTENDED_TOPOLOGY))
    }

    /// `parse_topology_leaf()`: every valid sub-leaf of 0xB, 0x1F or 0x80000026.
    fn parse_levels(&mut self, l: u32) -> bool {
        let (max_type, map): (u32, &[Option<Domain>]) = match l {
            leaf::EXTENDED_TOPOLOGY => (3, &[None, Some(Domain::Smt), Some(Domain::Core)]),
            leaf::V2_EXTENDED_TOPOLOGY => (
                7,
                &[
                    None,
                    Some(Domain::Smt),
                    Some(Domain::Core),
                    Some(Domain::Module),
                    Some(Domain::Tile),
                    Some(Domain::Die),
                    Some(Domain::DieGroup),
                ],
            ),
            _ => (
                5,
                // 0x80000026: 3 is the CCD (Linux: tile), 4 the socket (Linux: die).
                &[None, Some(Domain::Smt), Some(Domain::Core), Some(Domain::Tile), Some(Domain::Die)],
            ),
        };
        // Collect the levels first: a leaf whose list stops at a *missing* sub-leaf before
        // naming anything above SMT is incomplete input (a dump that kept only sub-leaf 0),
        // not a topology, and must leave the scan untouched.
        let mut last = Domain::Smt;
        let mut first_apic_id = None;
        let mut levels = Vec::new();
        let mut findings = Vec::new();
        let mut missing_at = None;
        for s in 0..MAX_LEVELS {
            let Some(r) = self.leaves.cpuid(l, Some(s)) else {
                missing_at = Some(s);
                break;
            };
            let (shift, count, level_type, x2apic_id) =
                (field(r[EAX], 0, 5), field(r[EBX], 0, 16), field(r[ECX], 8, 8), r[EDX]);
            if count == 0 || level_type == 0 {
                break;
            }
            let dom = if level_type >= max_type {
                findings.push(Finding::UnknownLevelType { leaf: l, subleaf: s, level_type });
                next_domain(last)
            } else {
                let d = map[level_type as usize].unwrap_or(Domain::DieGroup);
                last = d;
                d
            };
            match first_apic_id {
                None => first_apic_id = Some(x2apic_id),
                Some(expected) if expected != x2apic_id => {
                    findings.push(Finding::SubleafApicIdMismatch { leaf: l, subleaf: s, found: x2apic_id, expected })
                }
                Some(_) => {}
            }
            levels.push((dom, shift, count));
        }
        if levels.is_empty() {
            return false;
        }
        if let Some(subleaf) = missing_at {
            if levels.iter().all(|&(d, _, _)| d == Domain::Smt) {
                self.findings.push(Finding::IncompleteLevels { leaf: l, subleaf });
                return false;
            }
        }
        self.findings.extend(findings);
        for (dom, shift, count) in levels {
            self.set_dom(dom, shift, count);
        }
        if let Some(id) = first_apic_id {
            self.apic_id = id;
        }
        let (smt_shift, smt_count) = (self.shifts[0], self.counts[0]);
        if smt_shift == 0 && smt_count > 1 {
            self.findings.push(Finding::SmtShiftZero { leaf: l, threads: smt_count });
            self.update_dom(Domain::Smt, count_order(smt_count), smt_count);
        }
        self.source = match l {
            leaf::V2_EXTENDED_TOPOLOGY => TopologySource::Leaf0x1f,
            leaf::EXTENDED_TOPOLOGY => TopologySource::Leaf0xb,
            _ => TopologySource::Leaf0x80000026,
        };
        true
    }

    /// `parse_legacy()`: Intel without extended leaves.
    fn parse_legacy(&mut self) {
        let leaf4 = self.has_basic(leaf::CACHE_PARAMETERS).then(|| regs(self.leaves, leaf::CACHE_PARAMETERS, Some(0)));
        let mut cores = match leaf4 {
            Some(r) if r[EAX] & 0x1f != 0 => field(r[EAX], 26, 6) + 1,
            _ => 1,
        };
        let mut core_shift = count_order(cores);
        let leaf1 = self.leaf1();
        if has_bit(leaf1, bit::HTT) {
            let lppp = field(leaf1[EBX], 16, 8);
            let nproc_shift = count_order(lppp);
            let smt_shift = if nproc_shift < core_shift {
                self.findings.push(Finding::LegacyCountBelowCores { lppp, cores });
                0
            } else {
                nproc_shift - core_shift
            };
            core_shift += smt_shift;
            cores <<= smt_shift;
            self.set_dom(Domain::Smt, smt_shift, 1 << smt_shift);
        } else {
            self.set_dom(Domain::Smt, 0, 1);
        }
        self.set_dom(Domain::Core, core_shift, cores);
        self.source = if leaf4.is_some() || has_bit(leaf1, bit::HTT) {
            TopologySource::Leaf4AndLeaf1
        } else {
            TopologySource::None
        };
    }

    /// `parse_topology_amd()` (with `cpu_parse_topology_amd()`'s Hygon quirk).
    fn parse_amd(&mut self) {
        let topoext = self.topoext();
        let has_extended = topoext && self.parse_extended();
        if !has_extended && !self.parse_0x80000008() {
            return;
        }
        if topoext && self.has_extended(leaf::AMD_EXTENDED_APIC_ID) {
            let [eax, ebx, ecx, _] = regs(self.leaves, leaf::AMD_EXTENDED_APIC_ID, None);
            self.apic_id = eax;
            if !has_extended {
                let threads = field(ebx, 8, 8) + 1;
                self.update_dom(Domain::Smt, count_order(threads), threads);
            }
            self.nodes = field(ecx, 8, 3) + 1;
            self.node_id = Some(field(ecx, 0, 8));
            // Hygon family 18h models 0-3: the package ID is APIC ID bits 6 and up.
            let leaf1 = self.leaf1();
            let model = field(leaf1[EAX], 4, 4) | field(leaf1[EAX], 16, 4) << 4;
            if self.vendor == Vendor::Hygon && !has_bit(leaf1, bit::HYPERVISOR) && model <= 3 {
                let count = self.counts[Domain::Core as usize];
                self.set_dom(Domain::Core, 6, count);
            }
        }
    }

    /// `parse_8000_0008()`.
    fn parse_0x80000008(&mut self) -> bool {
        if !self.has_extended(leaf::ADDRESS_SIZES) {
            return false;
        }
        let ecx = regs(self.leaves, leaf::ADDRESS_SIZES, None)[ECX];
        let threads = field(ecx, 0, 8) + 1;
        let shift = match field(ecx, 12, 4) {
            0 => count_order(threads),
            s => s,
        };
        self.update_dom(Domain::Smt, 0, 1);
        self.set_dom(Domain::Core, shift, threads);
        self.source = TopologySource::Leaf0x80000008;
        true
    }

    /// Cross-checks the leaves Linux did not use against the result.
    fn check_consistency(&mut self) {
        if self.source == TopologySource::None {
            self.findings.push(Finding::NoTopologyLeaves);
            return;
        }
        let leaf1 = self.leaf1();
        let threads = self.counts[5].max(1);
        let shift = self.shifts[5];
        let smt_shift = self.shifts[0];
        let extended_source =
            matches!(self.source, TopologySource::Leaf0x1f | TopologySource::Leaf0xb | TopologySource::Leaf0x80000026);

        // Leaf 1's 8-bit initial APIC ID against the full one.
        let leaf1_id = field(leaf1[EBX], 24, 8);
        if self.apic_id & 0xff != leaf1_id {
            let reference_leaf = self.apic_id_leaf();
            self.findings.push(Finding::ApicIdMismatch {
                leaf: leaf::FEATURES,
                found: leaf1_id,
                reference_leaf,
                expected: self.apic_id & 0xff,
            });
        }
        // 0xB against 0x1F where both exist.
        if self.source == TopologySource::Leaf0x1f && self.has_basic(leaf::EXTENDED_TOPOLOGY) {
            let b0 = self.leaves.cpuid(leaf::EXTENDED_TOPOLOGY, Some(0));
            let b1 = self.leaves.cpuid(leaf::EXTENDED_TOPOLOGY, Some(1));
            if let (Some(b0), Some(b1)) = (b0, b1) {
                if field(b0[ECX], 8, 8) == 1 && b0[EDX] != self.apic_id {
                    self.findings.push(Finding::ApicIdMismatch {
                        leaf: leaf::EXTENDED_TOPOLOGY,
                        found: b0[EDX],
                        reference_leaf: leaf::V2_EXTENDED_TOPOLOGY,
                        expected: self.apic_id,
                    });
                }
                for (r, domain, expected) in [(b0, "smt", smt_shift), (b1, "package", shift)] {
                    let found = field(r[EAX], 0, 5);
                    if field(r[ECX], 8, 8) != 0 && found != expected {
                        self.findings.push(Finding::ShiftMismatch {
                            leaf: leaf::EXTENDED_TOPOLOGY,
                            domain,
                            found,
                            reference_leaf: leaf::V2_EXTENDED_TOPOLOGY,
                            expected,
                        });
                    }
                }
            }
        }
        if extended_source && count_order(threads) > shift {
            self.findings.push(Finding::CountExceedsIdSpace { count: threads, shift });
        }
        let htt = has_bit(leaf1, bit::HTT);
        if !htt && threads > 1 && extended_source {
            self.findings.push(Finding::HttClear { threads });
        }
        let lppp = field(leaf1[EBX], 16, 8);
        match self.vendor {
            Vendor::Intel => {
                // Addressable IDs: the field's ID space must hold the package's processors.
                let saturated = lppp == 0xff && threads > 0xff;
                if htt && extended_source && !saturated && (lppp == 0 || count_order(lppp) < count_order(threads)) {
                    self.findings.push(Finding::Leaf1Count { reported: lppp, threads, shift });
                }
                if extended_source && self.has_basic(leaf::CACHE_PARAMETERS) {
                    let r = regs(self.leaves, leaf::CACHE_PARAMETERS, Some(0));
                    let cores = threads / self.counts[0].max(1);
                    let reported = field(r[EAX], 26, 6) + 1;
                    if r[EAX] & 0x1f != 0 && reported < cores.min(64) {
                        self.findings.push(Finding::Leaf4Cores { reported, cores });
                    }
                }
            }
            Vendor::Amd | Vendor::Hygon => {
                // AMD counts processors: the field should equal the package's count.
                if htt && lppp != threads.min(0xff) && !(lppp == 0 && threads > 0xff) {
                    self.findings.push(Finding::Leaf1Count { reported: lppp, threads, shift });
                }
                if self.source != TopologySource::Leaf0x80000008 && self.has_extended(leaf::ADDRESS_SIZES) {
                    let ecx = regs(self.leaves, leaf::ADDRESS_SIZES, None)[ECX];
                    let (nc_threads, size) = (field(ecx, 0, 8) + 1, field(ecx, 12, 4));
                    if nc_threads != threads || (size != 0 && size < shift) {
                        self.findings.push(Finding::Leaf0x80000008 { nc_threads, size, threads, shift });
                    }
                }
                if self.node_id.is_some() {
                    let ebx = regs(self.leaves, leaf::AMD_EXTENDED_APIC_ID, None)[EBX];
                    let reported = field(ebx, 8, 8) + 1;
                    if reported != self.counts[0] {
                        self.findings.push(Finding::Leaf0x8000001eThreads { reported, threads: self.counts[0] });
                    }
                    if extended_source {
                        let x2apic_id = self.extended_x2apic_id();
                        if let Some(x2) = x2apic_id.filter(|&x2| x2 != self.apic_id) {
                            self.findings.push(Finding::ApicIdMismatch {
                                leaf: self.extended_leaf(),
                                found: x2,
                                reference_leaf: leaf::AMD_EXTENDED_APIC_ID,
                                expected: self.apic_id,
                            });
                        }
                    }
                }
            }
        }
    }

    fn extended_leaf(&self) -> u32 {
        match self.source {
            TopologySource::Leaf0x1f => leaf::V2_EXTENDED_TOPOLOGY,
            TopologySource::Leaf0x80000026 => leaf::AMD_EXTENDED_TOPOLOGY,
            _ => leaf::EXTENDED_TOPOLOGY,
        }
    }

    fn extended_x2apic_id(&self) -> Option<u32> {
        self.leaves.cpuid(self.extended_leaf(), Some(0)).map(|r| r[EDX])
    }

    /// The leaf `self.apic_id` came from.
    fn apic_id_leaf(&self) -> u32 {
        if self.node_id.is_some() {
            leaf::AMD_EXTENDED_APIC_ID
        } else {
            match self.source {
                TopologySource::Leaf0x1f | TopologySource::Leaf0xb | TopologySource::Leaf0x80000026 => {
                    self.extended_leaf()
                }
                _ => leaf::FEATURES,
            }
        }
    }

    fn finish(self) -> ParsedVcpu {
        ParsedVcpu {
            vendor: self.vendor,
            source: self.source,
            apic_id: self.apic_id,
            shifts: Domains::from_array(self.shifts),
            counts: Domains::from_array(self.counts),
            amd_nodes_per_package: self.nodes,
            amd_node_id: self.node_id,
            findings: self.findings,
        }
    }
}

fn next_domain(d: Domain) -> Domain {
    match d {
        Domain::Smt => Domain::Core,
        Domain::Core => Domain::Module,
        Domain::Module => Domain::Tile,
        Domain::Tile => Domain::Die,
        Domain::Die | Domain::DieGroup => Domain::DieGroup,
    }
}

fn regs(leaves: &impl CpuidAccess, l: u32, s: Option<u32>) -> Registers {
    leaves.cpuid(l, s).unwrap_or([0; 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpuid::CpuidLeaves;
    use crate::{Scheme, Topology};

    fn leaves(entries: &[(u32, Option<u32>, Registers)]) -> CpuidLeaves {
        entries.iter().copied().collect()
    }

    #[test]
    fn intel_without_0xb_uses_leaf_4_and_leaf_1() {
        // Like a Core i7-920: 4 cores in leaf 4, 16 IDs in leaf 1, HTT.
        let l = leaves(&[
            (0, None, Vendor::Intel.leaf0(0xa)),
            (1, None, [0x106a5, 0x0510_0800, 0, 1 << 28]),
            (4, Some(0), [0x0c00_4121, 0, 0, 0]),
        ]);
        let p = parse_vcpu(&l, Vendor::Intel);
        assert_eq!(p.source, TopologySource::Leaf4AndLeaf1);
        assert_eq!((p.threads_per_core(), p.cores_per_package(), p.package_shift()), (4, 4, 4));
        assert_eq!(p.shifts.smt, 2, "16 IDs / 4 cores: 2 SMT bits, as Linux computes it");
        assert_eq!(p.apic_id, 5);
        assert!(p.findings.is_empty(), "{:?}", p.findings);
    }

    #[test]
    fn leaf_1_count_below_leaf_4_cores_is_linux_s_warning() {
        let l = leaves(&[(1, None, [0, 0x0002_0000, 0, 1 << 28]), (4, Some(0), [0x0c00_0121, 0, 0, 0])]);
        let p = parse_vcpu(&l, Vendor::Intel);
        assert_eq!(p.findings, [Finding::LegacyCountBelowCores { lppp: 2, cores: 4 }]);
    }

    #[test]
    fn smt_shift_zero_is_fixed_up() {
        let l = leaves(&[
            (0xb, Some(0), [0, 2, 0x100, 0]),
            (0xb, Some(1), [4, 8, 0x201, 0]),
            (1, None, [0, 0x0010_0000, 0, 1 << 28]),
        ]);
        let p = parse_vcpu(&l, Vendor::Intel);
        assert_eq!(p.shifts.smt, 1);
        assert!(p.findings.contains(&Finding::SmtShiftZero { leaf: 0xb, threads: 2 }));
    }

    #[test]
    fn disagreeing_apic_ids_are_findings_not_failures() {
        let t = Topology::new(Shape::new(1, 1, 4, 2), Vendor::Intel, Scheme::Modern, true).unwrap();
        let mut view = t.cpuid_for_vcpu(&CpuidLeaves::new(), 5).unwrap();
        let mut leaf1 = view.get(1, None).unwrap();
        leaf1[EBX] &= 0x00ff_ffff;
        view.insert(1, None, leaf1);
        view.insert(0xb, Some(1), [3, 8, 0x201, 4]);
        let p = parse_vcpu(&view, Vendor::Intel);
        assert_eq!(p.apic_id, 5, "the x2APIC ID of sub-leaf 0 wins, as in Linux");
        assert_eq!(
            p.findings,
            [
                Finding::SubleafApicIdMismatch { leaf: 0xb, subleaf: 1, found: 4, expected: 5 },
                Finding::ApicIdMismatch { leaf: 1, found: 0, reference_leaf: 0xb, expected: 5 },
            ]
        );
    }

    #[test]
    fn unknown_level_types_count_as_the_next_domain() {
        let l = leaves(&[
            (0x1f, Some(0), [1, 2, 0x100, 0]),
            (0x1f, Some(1), [4, 16, 0x201, 0]),
            (0x1f, Some(2), [6, 64, 0x902, 0]),
            (1, None, [0; 4]),
        ]);
        let p = parse_vcpu(&l, Vendor::Intel);
        assert!(p.findings.contains(&Finding::UnknownLevelType { leaf: 0x1f, subleaf: 2, level_type: 9 }));
        assert_eq!((p.shifts.module, p.package_shift()), (6, 6));
    }

    #[test]
    fn amd_without_topoext_reads_0x80000008() {
        // Phenom-like: 4 cores, ApicIdCoreIdSize 2, no TOPOEXT.
        let l = leaves(&[
            (0x8000_0000, None, [0x8000_001b, 0, 0, 0]),
            (0x8000_0001, None, [0, 0, 1 << 1, 0]),
            (0x8000_0008, None, [0, 0, 0x2003, 0]),
            (1, None, [0, 0x0104_0800, 0, 1 << 28]),
        ]);
        let p = parse_vcpu(&l, Vendor::Amd);
        assert_eq!(p.source, TopologySource::Leaf0x80000008);
        assert_eq!((p.threads_per_core(), p.cores_per_package(), p.apic_id), (1, 4, 1));
        assert!(p.findings.is_empty(), "{:?}", p.findings);
    }

    #[test]
    fn hygon_family_18h_model_0_has_its_package_at_bit_6() {
        let l = leaves(&[
            (0x8000_0000, None, [0x8000_001f, 0, 0, 0]),
            (0x8000_0001, None, [0, 0, 1 << 22, 0]),
            (0x8000_0008, None, [0, 0, 0x400f, 0]),
            (0x8000_001e, None, [0x41, 0x100, 0x100, 0]),
            (1, None, [0x00900f01, 0x4110_0800, 0, 1 << 28]),
        ]);
        let p = parse_vcpu(&l, Vendor::Hygon);
        assert_eq!(p.package_shift(), 6);
        assert_eq!(p.ids().package, 1);
    }

    #[test]
    fn a_xen_legacy_guest_sees_every_other_thread_slot_used() {
        // Intel host with 8 cores × 2 threads; Xen doubles leaf 4 and leaf 1 counts.
        let mut base = CpuidLeaves::new();
        base.insert(0, None, Vendor::Intel.leaf0(0xd));
        base.insert(1, None, [0x906ea, 0x0010_0800, 1 << 21, 1 << 28]);
        base.insert(4, Some(0), [0x1c00_4121, 0, 0, 0]);
        base.insert(4, Some(1), [0; 4]);
        let t = Topology::xen_legacy(Vendor::Intel, 20, true).unwrap();
        let views: Vec<_> = (0..20).map(|v| t.guest_cpuid(&base, v).unwrap()).collect();
        let parsed = parse_vcpus(&views, Vendor::Intel).unwrap();
        let v = &parsed.vcpus[17];
        assert_eq!(v.source, TopologySource::Leaf4AndLeaf1, "0xB has no level types");
        assert_eq!((v.apic_id, v.threads_per_core(), v.cores_per_package()), (34, 2, 16));
        assert_eq!(v.ids(), VcpuIds { package: 1, core: 1, ..VcpuIds::default() });
        assert_eq!(parsed.shape.packages, 2);
        assert_eq!(parsed.findings, [Finding::VcpuCountMismatch { packages: 2, per_package: 32, vcpus: 20 }]);
    }

    #[test]
    fn no_vcpus_is_none() {
        assert!(parse_vcpus::<CpuidLeaves>(&[], Vendor::Intel).is_none());
        let p = parse_vcpu(&CpuidLeaves::new(), Vendor::Amd);
        assert_eq!(p.findings, [Finding::NoTopologyLeaves]);
    }

    #[test]
    fn arbitrary_register_values_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u32
        };
        let keys = [
            (0, None),
            (1, None),
            (4, Some(0)),
            (0xb, Some(0)),
            (0xb, Some(1)),
            (0xb, Some(2)),
            (0x1f, Some(0)),
            (0x1f, Some(1)),
            (0x1f, Some(2)),
            (0x8000_0000, None),
            (0x8000_0001, None),
            (0x8000_0008, None),
            (0x8000_001e, None),
            (0x8000_0026, Some(0)),
            (0x8000_0026, Some(1)),
        ];
        for round in 0..3000 {
            let mut l = CpuidLeaves::new();
            for &(leaf, sub) in &keys {
                if next() % 4 != 0 {
                    let mut r = [next(), next(), next(), next()];
                    if leaf == 0 || leaf == 0x8000_0000 {
                        r[0] = leaf | (r[0] & 0x3f);
                    }
                    l.insert(leaf, sub, r);
                }
            }
            let vendor = [Vendor::Intel, Vendor::Amd, Vendor::Hygon][round % 3];
            let p = parse_vcpu(&l, vendor);
            let _ = (p.ids(), p.package_shape(), p.cores_per_package());
            let _ = parse_vcpus(&[l.clone(), l], vendor);
        }
    }
}
