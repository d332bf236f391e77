//! vCPU topologies: APIC IDs of a shape, the CPUID leaves each vCPU reads, and writing them
//! into a policy.

use std::ffi::c_char;

use topology::{CpuidAccess, CpuidLeaves, Scheme, Shape, Topology, TopologyError, Vendor, XenPolicyTarget};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::policy::{cpupolicy_cpuid_leaf, cpupolicy_policy, wire_limits, CPUPOLICY_NO_SUBLEAF};

/// An opaque topology handle: a checked shape with its vendor and APIC ID scheme, from
/// `cpupolicy_topology_new`; release with `cpupolicy_topology_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_topology = Handle<Topology>;

impl Tagged for Topology {
    const TAG: Tag = Tag::Topology;
    const NAME: &'static str = "topology";
}

/// How many of each level a guest has, outermost first. Every count must be at least 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct cpupolicy_shape {
    /// Packages (sockets).
    pub packages: u32,
    /// Dies per package.
    pub dies_per_package: u32,
    /// Tiles per die (Intel only; 1 otherwise).
    pub tiles_per_die: u32,
    /// Modules per tile (Intel only; 1 otherwise).
    pub modules_per_tile: u32,
    /// Cores per module (per die when there are no modules or tiles).
    pub cores_per_module: u32,
    /// Threads per core.
    pub threads_per_core: u32,
}

/// One vCPU's place in the topology.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct cpupolicy_vcpu_info {
    /// The vCPU index.
    pub vcpu: u32,
    /// Its APIC ID (and x2APIC ID).
    pub apic_id: u32,
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
    /// Hyper-V VP index.
    pub vp_index: u32,
}

/// The CPU vendor whose CPUID conventions the guest sees: one of the `CPUPOLICY_VENDOR_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_vendor = u32;
/// GenuineIntel.
pub const CPUPOLICY_VENDOR_INTEL: cpupolicy_vendor = 0;
/// AuthenticAMD.
pub const CPUPOLICY_VENDOR_AMD: cpupolicy_vendor = 1;
/// HygonGenuine (AMD's conventions).
pub const CPUPOLICY_VENDOR_HYGON: cpupolicy_vendor = 2;

/// How APIC IDs and topology leaves follow from the shape: one of the `CPUPOLICY_SCHEME_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_scheme = u32;
/// Real-hardware (and QEMU) style: each level gets `ceil(log2(count))` APIC ID bits.
pub const CPUPOLICY_SCHEME_MODERN: cpupolicy_scheme = 0;
/// What Xen up to 4.22 gives every HVM guest (APIC ID = 2 x vCPU, at most 128 vCPUs); VMs that
/// booted with it must keep it.
pub const CPUPOLICY_SCHEME_XEN_LEGACY: cpupolicy_scheme = 1;

fn topology_failure(error: TopologyError) -> Failure {
    let status = match error {
        TopologyError::NoSuchVcpu { .. } => CPUPOLICY_INVALID_ARGUMENT,
        _ => CPUPOLICY_INVALID_TOPOLOGY,
    };
    Failure::new(status, error.to_string())
}

/// Checks a shape and builds a topology for `vendor` (`CPUPOLICY_VENDOR_*`) and `scheme`
/// (`CPUPOLICY_SCHEME_*`), with VP index = vCPU index, in a new topology in `*out` owned by the
/// caller. `x2apic_available` says whether the guest is offered x2APIC. A shape that cannot be
/// built (a zero count, too many vCPUs, APIC IDs needing x2APIC without it, a level the
/// vendor's leaves cannot express) gets `CPUPOLICY_INVALID_TOPOLOGY`, the message naming the
/// level or field. Thread-safe.
///
/// # Safety
/// `shape` valid for a read; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_new(
    shape: *const cpupolicy_shape,
    vendor: cpupolicy_vendor,
    scheme: cpupolicy_scheme,
    x2apic_available: bool,
    out: *mut *mut cpupolicy_topology,
) -> cpupolicy_status {
    guard(|| {
        if shape.is_null() {
            return Err(Failure::null("shape"));
        }
        // SAFETY: non-NULL and valid for a read per the contract.
        let s = unsafe { shape.read() };
        let vendor = match vendor {
            CPUPOLICY_VENDOR_INTEL => Vendor::Intel,
            CPUPOLICY_VENDOR_AMD => Vendor::Amd,
            CPUPOLICY_VENDOR_HYGON => Vendor::Hygon,
            other => return Err(out_of_range("vendor", other)),
        };
        let scheme = match scheme {
            CPUPOLICY_SCHEME_MODERN => Scheme::Modern,
            CPUPOLICY_SCHEME_XEN_LEGACY => Scheme::XenLegacy,
            other => return Err(out_of_range("scheme", other)),
        };
        let shape = Shape {
            packages: s.packages,
            dies_per_package: s.dies_per_package,
            tiles_per_die: s.tiles_per_die,
            modules_per_tile: s.modules_per_tile,
            cores_per_module: s.cores_per_module,
            threads_per_core: s.threads_per_core,
        };
        let topology = Topology::new(shape, vendor, scheme, x2apic_available).map_err(topology_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, topology) }
    })
}

/// Releases a topology. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `topology` NULL or a topology handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_free(topology: *mut cpupolicy_topology) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(topology, "topology") })
}

/// Gives the vCPUs explicit Hyper-V VP indices, one per vCPU, all distinct (a VM must keep
/// them across migration); a wrong count or a repeated index gets `CPUPOLICY_INVALID_TOPOLOGY`
/// and changes nothing. Not thread-safe on the same topology.
///
/// # Safety
/// `topology` a topology handle; `indices` valid for `count` reads.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_set_vp_indices(
    topology: *mut cpupolicy_topology,
    indices: *const u32,
    count: usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let indices = unsafe { c_slice(indices, count, "indices")? };
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow_mut(topology, "topology")? };
        *topology = topology.clone().with_vp_indices(indices.to_vec()).map_err(topology_failure)?;
        Ok(())
    })
}

/// The number of vCPUs into `*count`. Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `count` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_vcpu_count(
    topology: *const cpupolicy_topology,
    count: *mut u32,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        // SAFETY: per this function's contract.
        unsafe { put_value(count, topology.vcpu_count(), "count") }
    })
}

/// Every vCPU's APIC ID, by vCPU, into `ids` (capacity `capacity`) with the size-query
/// convention (`*needed` receives the vCPU count). Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `ids` NULL or valid for `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_apic_ids(
    topology: *const cpupolicy_topology,
    ids: *mut u32,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        let all: Vec<u32> = topology.apic_ids().collect();
        // SAFETY: per this function's contract.
        unsafe { output(&all, false, ids, capacity, needed) }
    })
}

/// One vCPU's IDs, APIC ID and VP index into `*info`; a vCPU beyond the shape gets
/// `CPUPOLICY_INVALID_ARGUMENT`. Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `info` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_vcpu(
    topology: *const cpupolicy_topology,
    vcpu: u32,
    info: *mut cpupolicy_vcpu_info,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        let ids = topology.ids(vcpu).map_err(topology_failure)?;
        let row = cpupolicy_vcpu_info {
            vcpu,
            apic_id: topology.apic_id(vcpu).map_err(topology_failure)?,
            package: ids.package,
            die: ids.die,
            tile: ids.tile,
            module: ids.module,
            core: ids.core,
            thread: ids.thread,
            vp_index: topology.vp_indices()[vcpu as usize],
        };
        // SAFETY: per this function's contract.
        unsafe { put_value(info, row, "info") }
    })
}

/// Whether any vCPU's APIC ID is 0xFF or more (the guest then needs x2APIC) into `*required`.
/// Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `required` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_x2apic_required(
    topology: *const cpupolicy_topology,
    required: *mut bool,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        // SAFETY: per this function's contract.
        unsafe { put_value(required, topology.x2apic_required(), "required") }
    })
}

/// The topology leaves vCPU `vcpu` reads, given the domain's `base` policy (fields the topology
/// does not own, such as family or cache sizes, are copied from it), in `(leaf, sub-leaf)`
/// order into `leaves` with the size-query convention. `base` may be NULL: the leaves are then
/// computed against a policy that only names the vendor (leaf 0, max leaf 0x1f), as
/// `cpupolicy topology --leaves` prints them. A vCPU beyond the shape gets
/// `CPUPOLICY_INVALID_ARGUMENT`. Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `base` NULL or a policy handle; `leaves` NULL or valid for
/// `capacity` writes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_vcpu_leaves(
    topology: *const cpupolicy_topology,
    base: *const cpupolicy_policy,
    vcpu: u32,
    leaves: *mut cpupolicy_cpuid_leaf,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        let computed = if base.is_null() {
            let mut minimal = CpuidLeaves::new();
            minimal.insert(0, None, topology.vendor().leaf0(0x1f));
            topology.cpuid_for_vcpu(&minimal, vcpu)
        } else {
            // SAFETY: non-NULL, a policy handle per the contract.
            topology.cpuid_for_vcpu(unsafe { borrow(base, "base")? }, vcpu)
        }
        .map_err(topology_failure)?;
        let entries: Vec<cpupolicy_cpuid_leaf> = computed
            .iter()
            .map(|(leaf, subleaf, [a, b, c, d])| cpupolicy_cpuid_leaf {
                leaf,
                subleaf: subleaf.unwrap_or(CPUPOLICY_NO_SUBLEAF),
                a,
                b,
                c,
                d,
            })
            .collect();
        // SAFETY: per this function's contract.
        unsafe { output(&entries, false, leaves, capacity, needed) }
    })
}

/// Writes the topology into a domain's policy: vCPU 0's view of every topology leaf (Xen fills
/// the per-vCPU IDs when each vCPU executes CPUID). With `xen_version` NULL any leaf is
/// written; with a Xen version (`"4.20"`), a leaf that release's policy format cannot carry
/// (leaf 0x1f, leaf 0xb sub-leaves past 1, …) gets `CPUPOLICY_INVALID_TOPOLOGY` naming it, and
/// then nothing is written. The policy's max leaves are not raised: check them against the
/// topology (leaf 0xb, 0x1f for Intel shapes with modules or tiles, 0x8000001e for AMD).
/// Not thread-safe on the same policy.
///
/// # Safety
/// `topology` a topology handle; `policy` a policy handle; `xen_version` NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_apply(
    topology: *const cpupolicy_topology,
    policy: *mut cpupolicy_policy,
    xen_version: *const c_char,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (topology, version) = unsafe { (borrow(topology, "topology")?, opt_c_str(xen_version, "xen_version")?) };
        let limits = version.map(|v| wire_limits(Some(v))).transpose()?;
        // SAFETY: per this function's contract; a topology and a policy cannot be one handle.
        let policy = unsafe { borrow_mut(policy, "policy")? };
        match limits {
            None => apply(topology, policy),
            Some(limits) => apply(topology, &mut XenPolicyTarget { policy, limits }),
        }
    })
}

fn apply(topology: &Topology, target: &mut impl CpuidAccess) -> Result<(), Failure> {
    topology.apply(target).map_err(topology_failure)
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use policy::{CpuPolicy, CpuidKey, Registers};

    use super::*;
    use crate::ffi::testing::last_error;
    use crate::policy::cpupolicy_policy_free;

    fn shape(packages: u32, modules: u32, cores: u32, threads: u32) -> cpupolicy_shape {
        cpupolicy_shape {
            packages,
            dies_per_package: 1,
            tiles_per_die: 1,
            modules_per_tile: modules,
            cores_per_module: cores,
            threads_per_core: threads,
        }
    }

    fn new(shape: &cpupolicy_shape, vendor: cpupolicy_vendor) -> Result<*mut cpupolicy_topology, cpupolicy_status> {
        let mut out = null_mut();
        // SAFETY: `shape` and `out` are valid places.
        match unsafe { cpupolicy_topology_new(shape, vendor, CPUPOLICY_SCHEME_MODERN, true, &mut out) } {
            CPUPOLICY_OK => Ok(out),
            status => Err(status),
        }
    }

    #[test]
    fn bad_shapes_name_the_level() {
        assert_eq!(new(&shape(1, 1, 0, 1), CPUPOLICY_VENDOR_INTEL), Err(CPUPOLICY_INVALID_TOPOLOGY));
        assert!(last_error().contains("cores per module"), "{}", last_error());
        assert_eq!(new(&shape(1, 2, 2, 1), CPUPOLICY_VENDOR_AMD), Err(CPUPOLICY_INVALID_TOPOLOGY));
        assert_eq!(new(&shape(1, 1, 2, 1), 7), Err(CPUPOLICY_INVALID_ARGUMENT));
        let mut out = null_mut();
        // SAFETY: NULL shape is reported.
        let status = unsafe { cpupolicy_topology_new(null(), 0, 0, true, &mut out) };
        assert_eq!((status, last_error().as_str()), (CPUPOLICY_INVALID_ARGUMENT, "shape is NULL"));
    }

    #[test]
    fn ids_follow_the_size_query_convention() {
        let t = new(&shape(2, 1, 3, 2), CPUPOLICY_VENDOR_INTEL).unwrap();
        let mut ids = [0xdead_u32; 13];
        let mut needed = 0;
        // SAFETY: `t` is live; `ids` holds 13 entries, fewer offered.
        unsafe {
            assert_eq!(cpupolicy_topology_apic_ids(t, ids.as_mut_ptr(), 4, &mut needed), CPUPOLICY_BUFFER_TOO_SMALL);
            assert_eq!((needed, ids[0]), (12, 0xdead));
            assert_eq!(cpupolicy_topology_apic_ids(t, ids.as_mut_ptr(), 13, &mut needed), CPUPOLICY_OK);
        }
        assert_eq!(ids[..12], [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
        assert_eq!(ids[12], 0xdead, "never written past what is needed");
        let mut info = cpupolicy_vcpu_info::default();
        // SAFETY: `t` is live; `info` a valid place.
        assert_eq!(unsafe { cpupolicy_topology_vcpu(t, 12, &mut info) }, CPUPOLICY_INVALID_ARGUMENT);
        // SAFETY: the live handle, not used afterwards.
        unsafe { cpupolicy_topology_free(t) };
    }

    #[test]
    fn applying_for_xen_is_all_or_nothing() {
        let t = new(&shape(1, 2, 2, 2), CPUPOLICY_VENDOR_INTEL).unwrap();
        let mut base = CpuPolicy::new();
        base.set_cpuid(CpuidKey::plain(0), Registers::new(0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        let p = base.clone().into_handle();
        // SAFETY: live topology and policy handles; NUL-terminated versions.
        unsafe {
            assert_eq!(cpupolicy_topology_apply(t, p, c"4.20".as_ptr()), CPUPOLICY_INVALID_TOPOLOGY);
            assert!(last_error().contains("leaf 0x1f"), "{}", last_error());
            assert_eq!((*p).value, base, "nothing written");
            assert_eq!(cpupolicy_topology_apply(t, p, null()), CPUPOLICY_OK);
            assert!((*p).value.contains(CpuidKey::indexed(0x1f, 0)));
            assert_eq!(cpupolicy_topology_apply(p.cast_const().cast(), p, null()), CPUPOLICY_WRONG_HANDLE);
            cpupolicy_policy_free(p);
            cpupolicy_topology_free(t);
        }
    }
}
