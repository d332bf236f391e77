//! The shape of a guest's vCPUs, how it maps to APIC IDs, and the per-vCPU table.

use std::collections::HashMap;
use std::fmt;

use cpupolicy_abi::Vendor as AbiVendor;
use serde::{Deserialize, Serialize};

use crate::cpuid::{count_order, shr, CpuidAccess, Registers};
use crate::error::TopologyError;

/// Most vCPUs a shape may have: KVM's `KVM_MAX_VCPUS` and QEMU's q35 limit. It also keeps
/// every per-package count within the 16-bit count fields of leaves 0xB/0x1F.
pub const MAX_VCPUS: u32 = 4096;

/// Xen's `HVM_MAX_VCPUS` (`xen/include/public/hvm/hvm_info_table.h`): the legacy scheme's
/// APIC IDs 2 × vCPU stay below 0xFF for all of them.
pub const XEN_LEGACY_MAX_VCPUS: u32 = 128;

/// The CPU vendor whose CPUID conventions the guest sees: the three whose topology leaves this
/// crate writes (a subset of [`cpupolicy_abi::Vendor`], which names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// GenuineIntel.
    Intel,
    /// AuthenticAMD.
    Amd,
    /// HygonGenuine: AMD's CPUID conventions.
    Hygon,
}

impl Vendor {
    /// The vendor named by leaf 0 EBX/EDX/ECX, if it is one of the three.
    pub fn from_cpuid(leaves: &impl CpuidAccess) -> Option<Self> {
        let [_, ebx, ecx, edx] = leaves.cpuid(0, None)?;
        match AbiVendor::from_leaf0(ebx, ecx, edx) {
            AbiVendor::Intel => Some(Self::Intel),
            AbiVendor::Amd => Some(Self::Amd),
            AbiVendor::Hygon => Some(Self::Hygon),
            _ => None,
        }
    }

    /// Leaf 0 registers `[max_leaf, ebx, ecx, edx]` naming this vendor.
    pub fn leaf0(self, max_leaf: u32) -> Registers {
        let (ebx, ecx, edx) = self.abi().id().leaf0();
        [max_leaf, ebx, ecx, edx]
    }

    /// The same vendor in the ABI's terms.
    pub fn abi(self) -> AbiVendor {
        match self {
            Self::Intel => AbiVendor::Intel,
            Self::Amd => AbiVendor::Amd,
            Self::Hygon => AbiVendor::Hygon,
        }
    }

    /// Whether the vendor follows AMD's CPUID topology conventions.
    pub fn is_amd_like(self) -> bool {
        matches!(self, Self::Amd | Self::Hygon)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.abi().fmt(f)
    }
}

/// How APIC IDs and topology leaves are derived from the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Real-hardware (and QEMU) style: each level gets `ceil(log2(count))` APIC ID bits.
    Modern,
    /// What Xen up to 4.22 gives every HVM guest: APIC ID = 2 × vCPU, leaf tweaks from
    /// `xc_cpuid_apply_policy()`. VMs that booted with it must keep it.
    XenLegacy,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Modern => "modern",
            Self::XenLegacy => "xen-legacy",
        })
    }
}

/// A level of the topology, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A socket.
    Package,
    /// A die within a package (on AMD: a node).
    Die,
    /// A tile within a die (Intel leaf 0x1F type 4).
    Tile,
    /// A module within a tile (Intel leaf 0x1F type 3).
    Module,
    /// A core within a module.
    Core,
    /// A hardware thread within a core.
    Thread,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Package => "packages",
            Self::Die => "dies per package",
            Self::Tile => "tiles per die",
            Self::Module => "modules per tile",
            Self::Core => "cores per module",
            Self::Thread => "threads per core",
        })
    }
}

/// How many of each level there are. Plain data; [`Topology::new`] checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Packages (sockets).
    pub packages: u32,
    /// Dies per package.
    pub dies_per_package: u32,
    /// Tiles per die.
    #[serde(default = "one")]
    pub tiles_per_die: u32,
    /// Modules per tile.
    #[serde(default = "one")]
    pub modules_per_tile: u32,
    /// Cores per module (per die when there are no modules or tiles).
    pub cores_per_module: u32,
    /// Threads per core.
    pub threads_per_core: u32,
}

fn one() -> u32 {
    1
}

impl Shape {
    /// A shape without modules or tiles: `-smp sockets=P,dies=D,cores=C,threads=T`.
    pub fn new(packages: u32, dies_per_package: u32, cores_per_die: u32, threads_per_core: u32) -> Self {
        Self {
            packages,
            dies_per_package,
            tiles_per_die: 1,
            modules_per_tile: 1,
            cores_per_module: cores_per_die,
            threads_per_core,
        }
    }

    /// The same shape with `modules` modules per tile (and `cores_per_module` cores in each).
    pub fn with_modules(mut self, modules: u32) -> Self {
        self.modules_per_tile = modules;
        self
    }

    /// The same shape with `tiles` tiles per die.
    pub fn with_tiles(mut self, tiles: u32) -> Self {
        self.tiles_per_die = tiles;
        self
    }

    /// The count of each level, outermost first.
    pub fn levels(&self) -> [(Level, u32); 6] {
        [
            (Level::Package, self.packages),
            (Level::Die, self.dies_per_package),
            (Level::Tile, self.tiles_per_die),
            (Level::Module, self.modules_per_tile),
            (Level::Core, self.cores_per_module),
            (Level::Thread, self.threads_per_core),
        ]
    }

    /// Total vCPUs (saturating at `u64::MAX`, so absurd shapes cannot overflow).
    pub fn vcpu_count(&self) -> u64 {
        self.levels().iter().fold(1u64, |n, &(_, count)| n.saturating_mul(u64::from(count)))
    }

    /// Threads in one core, module, tile, die, package: saturating, meaningful once checked.
    fn threads_per(&self, level: Level) -> u32 {
        let mut n = 1u32;
        for (l, count) in self.levels().into_iter().rev() {
            if l == level {
                return n;
            }
            n = n.saturating_mul(count);
        }
        n
    }

    /// Threads per core.
    pub fn threads_in_core(&self) -> u32 {
        self.threads_per(Level::Core)
    }

    /// Threads per module.
    pub fn threads_in_module(&self) -> u32 {
        self.threads_per(Level::Module)
    }

    /// Threads per tile.
    pub fn threads_in_tile(&self) -> u32 {
        self.threads_per(Level::Tile)
    }

    /// Threads per die.
    pub fn threads_in_die(&self) -> u32 {
        self.threads_per(Level::Die)
    }

    /// Threads per package.
    pub fn threads_in_package(&self) -> u32 {
        self.threads_per(Level::Package)
    }

    /// Cores per package.
    pub fn cores_in_package(&self) -> u32 {
        self.threads_in_package() / self.threads_per_core.max(1)
    }
}

/// Where each level's ID sits in an APIC ID: `ceil(log2(count))` bits per level, threads
/// lowest (QEMU `include/hw/i386/topology.h`, Intel SDM "Topology enumeration").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApicLayout {
    /// Bits of the thread ID.
    pub thread_bits: u32,
    /// Bits of the core ID.
    pub core_bits: u32,
    /// Bits of the module ID.
    pub module_bits: u32,
    /// Bits of the tile ID.
    pub tile_bits: u32,
    /// Bits of the die ID.
    pub die_bits: u32,
}

impl ApicLayout {
    /// The layout of a shape.
    pub fn of(shape: &Shape) -> Self {
        Self {
            thread_bits: count_order(shape.threads_per_core),
            core_bits: count_order(shape.cores_per_module),
            module_bits: count_order(shape.modules_per_tile),
            tile_bits: count_order(shape.tiles_per_die),
            die_bits: count_order(shape.dies_per_package),
        }
    }

    /// Shift of the core ID (QEMU `apicid_core_offset`).
    pub fn core_offset(&self) -> u32 {
        self.thread_bits
    }

    /// Shift of the module ID.
    pub fn module_offset(&self) -> u32 {
        self.core_offset() + self.core_bits
    }

    /// Shift of the tile ID.
    pub fn tile_offset(&self) -> u32 {
        self.module_offset() + self.module_bits
    }

    /// Shift of the die ID.
    pub fn die_offset(&self) -> u32 {
        self.tile_offset() + self.tile_bits
    }

    /// Shift of the package ID (QEMU `apicid_pkg_offset`).
    pub fn package_offset(&self) -> u32 {
        self.die_offset() + self.die_bits
    }

    /// The APIC ID of a vCPU with these IDs.
    pub fn apic_id(&self, ids: &VcpuIds) -> u32 {
        (ids.package << self.package_offset())
            | (ids.die << self.die_offset())
            | (ids.tile << self.tile_offset())
            | (ids.module << self.module_offset())
            | (ids.core << self.core_offset())
            | ids.thread
    }

    /// The IDs encoded in an APIC ID.
    pub fn ids(&self, apic_id: u32) -> VcpuIds {
        let take = |offset: u32, bits: u32| shr(apic_id, offset) & crate::cpuid::mask(bits);
        VcpuIds {
            package: shr(apic_id, self.package_offset()),
            die: take(self.die_offset(), self.die_bits),
            tile: take(self.tile_offset(), self.tile_bits),
            module: take(self.module_offset(), self.module_bits),
            core: take(self.core_offset(), self.core_bits),
            thread: take(0, self.thread_bits),
        }
    }
}

/// A vCPU's position: each ID relative to its parent level, the package ID global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct VcpuIds {
    /// Package.
    pub package: u32,
    /// Die within the package.
    pub die: u32,
    /// Tile within the die.
    pub tile: u32,
    /// Module within the tile.
    pub module: u32,
    /// Core within the module.
    pub core: u32,
    /// Thread within the core.
    pub thread: u32,
}

/// A checked topology: shape, vendor, scheme and each vCPU's Hyper-V VP index.
///
/// Construct with [`Topology::new`]; a value that exists is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    shape: Shape,
    vendor: Vendor,
    scheme: Scheme,
    layout: ApicLayout,
    vp_indices: Vec<u32>,
    x2apic_available: bool,
}

impl Topology {
    /// Checks a shape and builds the topology, with VP index = vCPU index.
    ///
    /// `x2apic_available` says whether the guest is offered x2APIC; a shape whose APIC IDs
    /// reach 0xFF is refused without it.
    pub fn new(shape: Shape, vendor: Vendor, scheme: Scheme, x2apic_available: bool) -> Result<Self, TopologyError> {
        for (level, count) in shape.levels() {
            if count == 0 {
                return Err(TopologyError::ZeroCount { level });
            }
        }
        let vcpus = shape.vcpu_count();
        if vcpus > u64::from(MAX_VCPUS) {
            return Err(TopologyError::TooManyVcpus { vcpus, limit: MAX_VCPUS });
        }
        let vcpus = vcpus as u32; // ≤ MAX_VCPUS
        let layout = ApicLayout::of(&shape);
        match scheme {
            Scheme::Modern => {
                let bits = layout.package_offset() + count_order(shape.packages);
                if bits > 32 {
                    return Err(TopologyError::ApicIdOverflow { bits });
                }
                if vendor.is_amd_like() {
                    // 0x8000001E has a core and a node field but nothing between them.
                    for (level, count) in [(Level::Module, shape.modules_per_tile), (Level::Tile, shape.tiles_per_die)]
                    {
                        if count > 1 {
                            return Err(TopologyError::UnsupportedLevel { vendor, level });
                        }
                    }
                    crate::generate::amd::check_fields(&shape)?;
                }
            }
            Scheme::XenLegacy => {
                if vcpus > XEN_LEGACY_MAX_VCPUS {
                    return Err(TopologyError::XenLegacyTooManyVcpus { vcpus, limit: XEN_LEGACY_MAX_VCPUS });
                }
            }
        }
        let topology = Self { shape, vendor, scheme, layout, vp_indices: (0..vcpus).collect(), x2apic_available };
        if !x2apic_available {
            topology.check_xapic_only()?;
        }
        Ok(topology)
    }

    /// Xen's legacy topology for `vcpus` vCPUs: shape 1 package × `vcpus` cores × 1 thread.
    pub fn xen_legacy(vendor: Vendor, vcpus: u32, x2apic_available: bool) -> Result<Self, TopologyError> {
        Self::new(Shape::new(1, 1, vcpus, 1), vendor, Scheme::XenLegacy, x2apic_available)
    }

    /// The same topology with explicit Hyper-V VP indices, one per vCPU, all distinct.
    pub fn with_vp_indices(mut self, vp_indices: Vec<u32>) -> Result<Self, TopologyError> {
        let vcpus = self.vcpu_count();
        if vp_indices.len() != vcpus as usize {
            return Err(TopologyError::VpIndexCount { vcpus, given: vp_indices.len() });
        }
        let mut seen = HashMap::with_capacity(vp_indices.len());
        for (vcpu, &vp_index) in vp_indices.iter().enumerate() {
            if let Some(first) = seen.insert(vp_index, vcpu as u32) {
                return Err(TopologyError::DuplicateVpIndex { vp_index, first, second: vcpu as u32 });
            }
        }
        self.vp_indices = vp_indices;
        Ok(self)
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The vendor.
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The APIC ID layout of the shape (the `Modern` scheme's; `XenLegacy` ignores it).
    pub fn layout(&self) -> &ApicLayout {
        &self.layout
    }

    /// Whether the guest is offered x2APIC.
    pub fn x2apic_available(&self) -> bool {
        self.x2apic_available
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> u32 {
        self.vp_indices.len() as u32
    }

    /// Each vCPU's Hyper-V VP index, by vCPU.
    pub fn vp_indices(&self) -> &[u32] {
        &self.vp_indices
    }

    /// A vCPU's IDs, from its index in QEMU's order (`x86_topo_ids_from_idx`: threads of a
    /// core are consecutive, then cores, modules, tiles, dies, packages).
    pub fn ids(&self, vcpu: u32) -> Result<VcpuIds, TopologyError> {
        self.check_vcpu(vcpu)?;
        Ok(self.ids_unchecked(vcpu))
    }

    pub(crate) fn ids_unchecked(&self, vcpu: u32) -> VcpuIds {
        let s = &self.shape;
        let mut rest = vcpu;
        let mut next = |count: u32| {
            let id = rest % count;
            rest /= count;
            id
        };
        let thread = next(s.threads_per_core);
        let core = next(s.cores_per_module);
        let module = next(s.modules_per_tile);
        let tile = next(s.tiles_per_die);
        let die = next(s.dies_per_package);
        VcpuIds { package: rest, die, tile, module, core, thread }
    }

    /// A vCPU's APIC ID (and x2APIC ID).
    pub fn apic_id(&self, vcpu: u32) -> Result<u32, TopologyError> {
        self.check_vcpu(vcpu)?;
        Ok(self.apic_id_unchecked(vcpu))
    }

    pub(crate) fn apic_id_unchecked(&self, vcpu: u32) -> u32 {
        match self.scheme {
            Scheme::Modern => self.layout.apic_id(&self.ids_unchecked(vcpu)),
            // Xen `xen/arch/x86/hvm/vlapic.c` set_x2apic_id() and guest_cpuid(): vcpu_id * 2.
            Scheme::XenLegacy => vcpu * 2,
        }
    }

    /// Every vCPU's APIC ID, by vCPU.
    pub fn apic_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.vcpu_count()).map(|v| self.apic_id_unchecked(v))
    }

    /// Whether any vCPU's APIC ID is 0xFF or more (0xFF is the xAPIC broadcast ID).
    pub fn x2apic_required(&self) -> bool {
        self.check_xapic_only().is_err()
    }

    /// Fails with [`TopologyError::X2apicRequired`], naming the first vCPU whose APIC ID is 0xFF
    /// or more, when the topology cannot work without x2APIC.
    pub(crate) fn check_xapic_only(&self) -> Result<(), TopologyError> {
        match self.apic_ids().enumerate().find(|&(_, id)| id >= 0xff) {
            Some((vcpu, apic_id)) => Err(TopologyError::X2apicRequired { vcpu: vcpu as u32, apic_id }),
            None => Ok(()),
        }
    }

    /// The per-vCPU table a CLI prints.
    pub fn vcpu_table(&self) -> VcpuTable {
        let extended = self.shape.modules_per_tile > 1 || self.shape.tiles_per_die > 1;
        let vcpus = (0..self.vcpu_count())
            .map(|vcpu| {
                let ids = self.ids_unchecked(vcpu);
                VcpuInfo {
                    vcpu,
                    apic_id: self.apic_id_unchecked(vcpu),
                    package: ids.package,
                    die: ids.die,
                    tile: extended.then_some(ids.tile),
                    module: extended.then_some(ids.module),
                    core: ids.core,
                    thread: ids.thread,
                    vp_index: self.vp_indices[vcpu as usize],
                }
            })
            .collect();
        VcpuTable { vcpus, x2apic_required: self.x2apic_required() }
    }

    pub(crate) fn check_vcpu(&self, vcpu: u32) -> Result<(), TopologyError> {
        if vcpu < self.vcpu_count() {
            Ok(())
        } else {
            Err(TopologyError::NoSuchVcpu { vcpu, vcpus: self.vcpu_count() })
        }
    }
}

/// One vCPU's row in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuInfo {
    /// vCPU index.
    pub vcpu: u32,
    /// APIC ID (and x2APIC ID).
    pub apic_id: u32,
    /// Package.
    pub package: u32,
    /// Die within the package.
    pub die: u32,
    /// Tile within the die; only for shapes with tiles or modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<u32>,
    /// Module within the tile; only for shapes with tiles or modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<u32>,
    /// Core within its module (within the die when there are no modules).
    pub core: u32,
    /// Thread within the core.
    pub thread: u32,
    /// Hyper-V VP index (`HV_X64_MSR_VP_INDEX`).
    pub vp_index: u32,
}

/// The per-vCPU table: `{"vcpus": [...], "x2apic_required": bool}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuTable {
    /// One row per vCPU, by vCPU index.
    pub vcpus: Vec<VcpuInfo>,
    /// Whether any APIC ID is 0xFF or more.
    pub x2apic_required: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern(shape: Shape) -> Topology {
        Topology::new(shape, Vendor::Intel, Scheme::Modern, true).unwrap()
    }

    #[test]
    fn qemu_smp_12_sockets_2_cores_3_threads_2_gives_gapped_apic_ids() {
        // REFERENCE §6: seen on QEMU `-smp 12,sockets=2,cores=3,threads=2`.
        let t = modern(Shape::new(2, 1, 3, 2));
        let ids: Vec<u32> = t.apic_ids().collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
    }

    #[test]
    fn ids_round_trip_through_the_layout() {
        let t = modern(Shape::new(3, 2, 5, 2).with_modules(3).with_tiles(2));
        for v in 0..t.vcpu_count() {
            let ids = t.ids(v).unwrap();
            assert_eq!(t.layout().ids(t.apic_id(v).unwrap()), ids);
        }
        let ids: std::collections::HashSet<u32> = t.apic_ids().collect();
        assert_eq!(ids.len(), t.vcpu_count() as usize);
    }

    #[test]
    fn xen_legacy_apic_ids_are_twice_the_vcpu() {
        let t = Topology::xen_legacy(Vendor::Amd, 128, false).unwrap();
        assert_eq!(t.apic_id(127).unwrap(), 254);
        assert!(!t.x2apic_required());
        assert_eq!(
            Topology::xen_legacy(Vendor::Amd, 129, true),
            Err(TopologyError::XenLegacyTooManyVcpus { vcpus: 129, limit: 128 })
        );
    }

    #[test]
    fn bad_shapes_are_named_errors() {
        let zero = Shape::new(1, 1, 0, 2);
        assert_eq!(
            Topology::new(zero, Vendor::Intel, Scheme::Modern, true),
            Err(TopologyError::ZeroCount { level: Level::Core })
        );
        let huge = Shape::new(4096, 1, 1, 2);
        assert!(matches!(
            Topology::new(huge, Vendor::Intel, Scheme::Modern, true),
            Err(TopologyError::TooManyVcpus { vcpus: 8192, .. })
        ));
        let absurd = Shape::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX).with_modules(u32::MAX).with_tiles(u32::MAX);
        assert_eq!(absurd.vcpu_count(), u64::MAX);
        for scheme in [Scheme::Modern, Scheme::XenLegacy] {
            let error = Topology::new(absurd, Vendor::Amd, scheme, false).unwrap_err();
            assert!(matches!(error, TopologyError::TooManyVcpus { .. }));
            // The product saturated: the message says so rather than give it as the count.
            assert!(error.to_string().starts_with("the shape has at least 18446744073709551615 vCPUs"), "{error}");
        }
        let overflow = Shape::new(u32::MAX, 1, 1, 1);
        assert!(matches!(
            Topology::new(overflow, Vendor::Intel, Scheme::Modern, true),
            Err(TopologyError::TooManyVcpus { .. })
        ));
        let amd_modules = Shape::new(1, 1, 2, 2).with_modules(2);
        assert_eq!(
            Topology::new(amd_modules, Vendor::Amd, Scheme::Modern, true),
            Err(TopologyError::UnsupportedLevel { vendor: Vendor::Amd, level: Level::Module })
        );
    }

    #[test]
    fn x2apic_required_but_not_offered_is_refused() {
        // 2 packages × 3 cores × 2 threads × 32: package offset 3, IDs reach 0xfd.
        let fits = Shape::new(32, 1, 3, 2);
        assert!(!Topology::new(fits, Vendor::Intel, Scheme::Modern, false).unwrap().x2apic_required());
        let too_big = Shape::new(64, 1, 3, 2);
        let err = Topology::new(too_big, Vendor::Intel, Scheme::Modern, false).unwrap_err();
        assert_eq!(err, TopologyError::X2apicRequired { vcpu: 192, apic_id: 0x100 });
        assert!(Topology::new(too_big, Vendor::Intel, Scheme::Modern, true).unwrap().x2apic_required());
    }

    #[test]
    fn vp_indices_are_explicit_and_checked() {
        let t = modern(Shape::new(1, 1, 2, 1));
        assert_eq!(t.vp_indices(), [0, 1]);
        let t = t.with_vp_indices(vec![7, 3]).unwrap();
        assert_eq!(t.vcpu_table().vcpus[1].vp_index, 3);
        assert_eq!(t.clone().with_vp_indices(vec![1]), Err(TopologyError::VpIndexCount { vcpus: 2, given: 1 }));
        assert_eq!(
            t.with_vp_indices(vec![5, 5]),
            Err(TopologyError::DuplicateVpIndex { vp_index: 5, first: 0, second: 1 })
        );
    }

    #[test]
    fn table_json_has_the_documented_shape() {
        let t = modern(Shape::new(1, 1, 2, 1));
        let json = serde_json::to_value(t.vcpu_table()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "vcpus": [
                    {"vcpu": 0, "apic_id": 0, "package": 0, "die": 0, "core": 0, "thread": 0, "vp_index": 0},
                    {"vcpu": 1, "apic_id": 1, "package": 0, "die": 0, "core": 1, "thread": 0, "vp_index": 1}
                ],
                "x2apic_required": false
            })
        );
    }

    #[test]
    fn vendor_strings_round_trip() {
        for v in [Vendor::Intel, Vendor::Amd, Vendor::Hygon] {
            let mut leaves = crate::CpuidLeaves::new();
            leaves.insert(0, None, v.leaf0(0xd));
            assert_eq!(Vendor::from_cpuid(&leaves), Some(v));
        }
        // Leaf 0 of a real AMD host (EPYC 7502 dump): EBX "Auth", EDX "enti", ECX "cAMD".
        let mut leaves = crate::CpuidLeaves::new();
        leaves.insert(0, None, [0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
        assert_eq!(Vendor::from_cpuid(&leaves), Some(Vendor::Amd));
    }
}
