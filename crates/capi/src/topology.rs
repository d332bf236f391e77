//! vCPU topologies: APIC IDs of a shape, the CPUID leaves each vCPU reads, and writing them
//! into a policy.

use std::ffi::c_char;

use topology::{
    parse_vcpu, CpuidAccess, CpuidLeaves, RecordError, Scheme, Shape, Topology, TopologyError, TopologyRecord, Vendor,
    XenPolicyTarget,
};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::policy::{cpupolicy_policy, wire_limits, CPUPOLICY_NO_SUBLEAF};
use abi::XenCpuidLeaf;

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

impl From<Shape> for cpupolicy_shape {
    fn from(s: Shape) -> cpupolicy_shape {
        cpupolicy_shape {
            packages: s.packages,
            dies_per_package: s.dies_per_package,
            tiles_per_die: s.tiles_per_die,
            modules_per_tile: s.modules_per_tile,
            cores_per_module: s.cores_per_module,
            threads_per_core: s.threads_per_core,
        }
    }
}

fn vendor_of(vendor: cpupolicy_vendor) -> Result<Vendor, Failure> {
    match vendor {
        CPUPOLICY_VENDOR_INTEL => Ok(Vendor::Intel),
        CPUPOLICY_VENDOR_AMD => Ok(Vendor::Amd),
        CPUPOLICY_VENDOR_HYGON => Ok(Vendor::Hygon),
        other => Err(out_of_range("vendor", other)),
    }
}

fn record_failure(error: RecordError) -> Failure {
    let status = match error {
        RecordError::Truncated { .. }
        | RecordError::TrailingBytes { .. }
        | RecordError::BadMagic { .. }
        | RecordError::UnsupportedVersion { .. }
        | RecordError::ReservedNotZero { .. }
        | RecordError::UnknownScheme { .. }
        | RecordError::UnknownVendor { .. } => CPUPOLICY_PARSE_ERROR,
        _ => CPUPOLICY_INVALID_TOPOLOGY,
    };
    Failure::new(status, error.to_string())
}

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
        require(out, "out")?;
        if shape.is_null() {
            return Err(Failure::null("shape"));
        }
        // SAFETY: non-NULL and valid for a read per the contract.
        let s = unsafe { shape.read() };
        let vendor = vendor_of(vendor)?;
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
        let topology = unsafe { borrow_mut(topology, "topology")? };
        // One index per vCPU: any other count is refused before `indices` is read.
        let vcpus = topology.vcpu_count() as usize;
        if count != vcpus {
            return Err(Failure::new(
                CPUPOLICY_INVALID_TOPOLOGY,
                format!("{count} VP indices given for {vcpus} vCPUs: one per vCPU"),
            ));
        }
        // SAFETY: per this function's contract; `count` is the vCPU count.
        let indices = unsafe { c_slice(indices, count, vcpus, "indices")? };
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
        require(count, "count")?;
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
        require(info, "info")?;
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
        require(required, "required")?;
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
    leaves: *mut XenCpuidLeaf,
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
        let entries: Vec<XenCpuidLeaf> = computed
            .iter()
            .map(|(leaf, subleaf, [a, b, c, d])| XenCpuidLeaf {
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

/// The topology's record for the VM's migration stream (binary, version 1, little-endian: magic
/// `TOPO`, version, scheme, vendor, the six shape counts, then every vCPU's APIC ID and VP
/// index; 40 + 8 × vCPUs bytes) into `record` with the size-query convention (bytes, no NUL).
/// Carry it with the VM; `cpupolicy_topology_from_record` reads it on the destination.
/// Thread-safe for readers.
///
/// # Safety
/// `topology` a topology handle; `record` NULL or valid for `capacity` bytes; `needed` NULL or
/// valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_record(
    topology: *const cpupolicy_topology,
    record: *mut u8,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let topology = unsafe { borrow(topology, "topology")? };
        let bytes = TopologyRecord::from_topology(topology).to_bytes();
        // SAFETY: per this function's contract.
        unsafe { output(&bytes, false, record, capacity, needed) }
    })
}

/// The topology an incoming VM must keep, from the record its migration stream carried, in a
/// new topology in `*out` owned by the caller. `record` NULL (with `length` 0) means the stream
/// had no record: the VM booted with Xen's legacy scheme (APIC ID = 2 × vCPU), which is then
/// what it gets, for `nr_vcpus` vCPUs of `vendor`. A record that cannot be read (truncated, not
/// a record, an unknown version) gets `CPUPOLICY_PARSE_ERROR`; one whose vendor or vCPU count
/// disagrees with `vendor` and `nr_vcpus`, or whose APIC IDs do not follow from its shape, gets
/// `CPUPOLICY_INVALID_TOPOLOGY`; the message says which. Thread-safe.
///
/// # Safety
/// `record` NULL or valid for `length` bytes; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_topology_from_record(
    record: *const u8,
    length: usize,
    vendor_id: cpupolicy_vendor,
    nr_vcpus: u32,
    x2apic_available: bool,
    out: *mut *mut cpupolicy_topology,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        let bytes = if record.is_null() {
            if length != 0 {
                return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, "record is NULL but length is not 0"));
            }
            None
        } else {
            // SAFETY: non-NULL and valid for `length` bytes per the contract.
            Some(unsafe { c_slice(record, length, MAX_RECORD_BYTES, "record")? })
        };
        let stream = TopologyRecord::from_stream(bytes).map_err(record_failure)?;
        let topology =
            stream.into_topology(vendor_of(vendor_id)?, nr_vcpus, x2apic_available).map_err(record_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, topology) }
    })
}

/// The topology a policy (a CPU dump, or a domain's policy) describes, read the way Linux
/// reads it (leaf 0x1f, else 0xb, else leaves 4 and 1 on Intel; 0x8000001e and 0x80000008 on
/// AMD): the shape of one package into `*shape` (`packages` is 1), and what the leaves
/// disagree on, one line each (empty when consistent), into `findings`, NUL-terminated, with
/// the size-query convention (`*shape` is written when the status is OK, including the
/// NULL/0 size query). A policy of a vendor with no topology convention here (not Intel, AMD
/// or Hygon) gets `CPUPOLICY_INVALID_ARGUMENT`. Thread-safe for readers.
///
/// # Safety
/// `policy` a policy handle; `shape` valid for a write; `findings` NULL or valid for
/// `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_policy_topology(
    policy: *const cpupolicy_policy,
    shape: *mut cpupolicy_shape,
    findings: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let policy = unsafe { borrow(policy, "policy")? };
        if shape.is_null() {
            return Err(Failure::null("shape"));
        }
        let vendor = match policy.vendor() {
            policy::Vendor::Intel => Vendor::Intel,
            policy::Vendor::Amd => Vendor::Amd,
            policy::Vendor::Hygon => Vendor::Hygon,
            other => {
                return Err(Failure::new(
                    CPUPOLICY_INVALID_ARGUMENT,
                    format!("the policy's vendor ({other}) has no topology convention here"),
                ))
            }
        };
        let parsed = parse_vcpu(policy, vendor);
        let (package, uneven) = parsed.package_shape();
        let text: String = parsed.findings.iter().chain(&uneven).map(|f| format!("{f}\n")).collect();
        // SAFETY: per this function's contract.
        match unsafe { output(text.as_bytes(), true, findings.cast(), capacity, needed) } {
            Ok(()) => {
                // SAFETY: non-NULL and valid for a write per the contract.
                unsafe { shape.write(package.into()) };
                Ok(())
            }
            Err(failure) => Err(Failure { message: format!("findings: {}", failure.message), ..failure }),
        }
    })
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

    /// Record, then read back on the "destination": the same APIC IDs and VP indices. No record
    /// is the legacy scheme; a damaged record or one for another VM is refused with a reason.
    #[test]
    fn records_carry_the_topology_across_a_migration() {
        let t = new(&shape(2, 1, 3, 2), CPUPOLICY_VENDOR_AMD).unwrap();
        let indices: Vec<u32> = (0..12).rev().collect();
        let mut needed = 0;
        let mut record = vec![0u8; 200];
        // SAFETY: live handle; `indices` holds 12 entries; `record` holds 200 bytes.
        unsafe {
            assert_eq!(cpupolicy_topology_set_vp_indices(t, indices.as_ptr(), 12), CPUPOLICY_OK);
            assert_eq!(cpupolicy_topology_record(t, null_mut(), 0, &mut needed), CPUPOLICY_OK);
            assert_eq!(needed, 40 + 8 * 12);
            assert_eq!(cpupolicy_topology_record(t, record.as_mut_ptr(), 200, &mut needed), CPUPOLICY_OK);
        }
        record.truncate(needed);
        let mut back = null_mut();
        // SAFETY: `record` valid for its length; `back` a valid place.
        unsafe {
            let status = cpupolicy_topology_from_record(
                record.as_ptr(),
                record.len(),
                CPUPOLICY_VENDOR_AMD,
                12,
                false,
                &mut back,
            );
            assert_eq!(status, CPUPOLICY_OK, "{}", last_error());
            assert_eq!((*back).value.apic_ids().collect::<Vec<_>>(), (*t).value.apic_ids().collect::<Vec<_>>());
            assert_eq!((*back).value.shape(), (*t).value.shape());
            assert_eq!((*back).value.vp_indices(), indices.as_slice());
            cpupolicy_topology_free(back);
            // Another VM (13 vCPUs), another vendor, a damaged record.
            assert_eq!(
                cpupolicy_topology_from_record(
                    record.as_ptr(),
                    record.len(),
                    CPUPOLICY_VENDOR_AMD,
                    13,
                    false,
                    &mut back
                ),
                CPUPOLICY_INVALID_TOPOLOGY
            );
            assert!(last_error().contains("12 vCPUs, expected 13"), "{}", last_error());
            assert_eq!(
                cpupolicy_topology_from_record(
                    record.as_ptr(),
                    record.len(),
                    CPUPOLICY_VENDOR_INTEL,
                    12,
                    false,
                    &mut back
                ),
                CPUPOLICY_INVALID_TOPOLOGY
            );
            assert_eq!(
                cpupolicy_topology_from_record(record.as_ptr(), 30, CPUPOLICY_VENDOR_AMD, 12, false, &mut back),
                CPUPOLICY_PARSE_ERROR
            );
            assert!(last_error().contains("truncated"), "{}", last_error());
            assert_eq!(
                cpupolicy_topology_from_record(null(), 3, CPUPOLICY_VENDOR_AMD, 12, false, &mut back),
                CPUPOLICY_INVALID_ARGUMENT
            );
            // No record: the VM booted with Xen's legacy scheme.
            assert_eq!(
                cpupolicy_topology_from_record(null(), 0, CPUPOLICY_VENDOR_AMD, 4, false, &mut back),
                CPUPOLICY_OK
            );
            assert_eq!((*back).value.apic_ids().collect::<Vec<_>>(), [0, 2, 4, 6]);
            assert_eq!((*back).value.scheme(), Scheme::XenLegacy);
            cpupolicy_topology_free(back);
            cpupolicy_topology_free(t);
        }
    }

    /// A topology written into a policy reads back as its shape, with no findings.
    #[test]
    fn a_policy_topology_reads_back() {
        let t = new(&shape(1, 1, 4, 2), CPUPOLICY_VENDOR_INTEL).unwrap();
        let mut base = CpuPolicy::new();
        base.set_cpuid(CpuidKey::plain(0), Registers::new(0xb, 0x756e_6547, 0x6c65_746e, 0x4965_6e69));
        base.set_cpuid(CpuidKey::plain(1), Registers::new(0x506e3, 0, 0x0020_0000, 0x1000_0000));
        let p = base.into_handle();
        let mut read = cpupolicy_shape::default();
        let mut needed = 0;
        // SAFETY: live handles; `read` and `needed` valid places.
        unsafe {
            assert_eq!(cpupolicy_topology_apply(t, p, null()), CPUPOLICY_OK, "{}", last_error());
            assert_eq!(cpupolicy_policy_topology(p, &mut read, null_mut(), 0, &mut needed), CPUPOLICY_OK);
            assert_eq!(read, cpupolicy_shape { packages: 1, ..shape(1, 1, 4, 2) });
            assert_eq!(needed, 1, "no findings: the empty string");
            assert_eq!(cpupolicy_policy_topology(p, null_mut(), null_mut(), 0, null_mut()), CPUPOLICY_INVALID_ARGUMENT);
            // The size-query convention's errors, worded as every other function words them.
            let mut byte = 0 as c_char;
            assert_eq!(cpupolicy_policy_topology(p, &mut read, &mut byte, 0, &mut needed), CPUPOLICY_BUFFER_TOO_SMALL);
            assert_eq!(last_error(), "findings: buffer of 0 too small: 1 needed");
            assert_eq!(cpupolicy_policy_topology(p, &mut read, null_mut(), 5, &mut needed), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(last_error(), "findings: buffer is NULL but capacity is not 0");
            cpupolicy_policy_free(p);
            cpupolicy_topology_free(t);
        }
    }
}
