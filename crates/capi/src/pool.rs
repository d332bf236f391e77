//! Pools: levelling hosts into the policies every host can run, with the explanation of what
//! was lost; the libvirt-style baseline of single policies; legacy policies for VMs that
//! arrive without one.

use std::ffi::c_char;

use featureset::GuestKind;
use policy::{
    explanation_text, hazards_text, level_pool, pool_hazards, pool_json, synthesise_legacy, CpuPolicy, HostBundle,
    LegacyRules, LevelError, LevelOptions, LevelledPool, PoolHost, SystemPolicy, XenVersion,
};

use crate::ffi::cpupolicy_status::*;
use crate::ffi::*;
use crate::host::cpupolicy_host;
use crate::policy::cpupolicy_policy;

/// A levelled pool: the default and acceptance policies, the explanation when asked for, and
/// the host-reflected bits on which the hosts differ.
#[derive(Clone, Debug)]
pub struct Pool {
    levelled: LevelledPool,
    kind: GuestKind,
    hosts: Vec<PoolHost>,
    explained: bool,
}

/// An opaque levelled-pool handle, from `cpupolicy_level`; release with `cpupolicy_pool_free`.
#[allow(non_camel_case_types)]
pub type cpupolicy_pool = Handle<Pool>;

impl Pool {
    pub(crate) fn hosts(&self) -> &[PoolHost] {
        &self.hosts
    }

    pub(crate) fn levelled(&self) -> &LevelledPool {
        &self.levelled
    }

    pub(crate) fn kind(&self) -> GuestKind {
        self.kind
    }
}

impl Tagged for Pool {
    const TAG: Tag = Tag::Pool;
    const NAME: &'static str = "pool";
}

/// The kind of guest: one of the `CPUPOLICY_GUEST_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_guest_kind = u32;
/// A PV guest.
pub const CPUPOLICY_GUEST_PV: cpupolicy_guest_kind = 0;
/// An HVM guest with hardware-assisted paging (HAP).
pub const CPUPOLICY_GUEST_HVM: cpupolicy_guest_kind = 1;
/// An HVM guest with shadow paging.
pub const CPUPOLICY_GUEST_HVM_SHADOW: cpupolicy_guest_kind = 2;

/// Options of `cpupolicy_level`: an OR of the `CPUPOLICY_LEVEL_*` bits.
#[allow(non_camel_case_types)]
pub type cpupolicy_level_flags = u32;
/// Compute the explanation of every loss (`cpupolicy_pool_explain`).
pub const CPUPOLICY_LEVEL_EXPLAIN: cpupolicy_level_flags = 1 << 0;
/// Level hosts of different CPU vendors anyway (the result takes the first host's vendor);
/// guests that depend on vendor-specific behaviour will break.
pub const CPUPOLICY_LEVEL_CROSS_VENDOR: cpupolicy_level_flags = 1 << 1;

/// Which policy of a pool, for `cpupolicy_pool_policy`: one of the `CPUPOLICY_POOL_*` values.
#[allow(non_camel_case_types)]
pub type cpupolicy_pool_role = u32;
/// What new VMs boot with.
pub const CPUPOLICY_POOL_DEFAULT: cpupolicy_pool_role = 0;
/// What every host of the pool accepts from a migration.
pub const CPUPOLICY_POOL_ACCEPTANCE: cpupolicy_pool_role = 1;

pub(crate) fn guest_kind(kind: cpupolicy_guest_kind) -> Result<GuestKind, Failure> {
    match kind {
        CPUPOLICY_GUEST_PV => Ok(GuestKind::Pv),
        CPUPOLICY_GUEST_HVM => Ok(GuestKind::HvmHap),
        CPUPOLICY_GUEST_HVM_SHADOW => Ok(GuestKind::HvmShadow),
        other => Err(out_of_range("guest kind", other)),
    }
}

pub(crate) fn level_failure(error: LevelError) -> Failure {
    let status = match error {
        LevelError::EmptyPool => CPUPOLICY_INVALID_ARGUMENT,
        LevelError::MixedVendors { .. } | LevelError::CrossVendorRefused { .. } => CPUPOLICY_MIXED_VENDORS,
        LevelError::MissingPolicy { .. } => CPUPOLICY_NOT_AVAILABLE,
        LevelError::XstateSize { .. } => CPUPOLICY_INVALID_ARGUMENT,
    };
    Failure::new(status, error.to_string())
}

/// A pool host from a bundle (with its levelling capabilities when recorded), for one kind of
/// guest.
pub(crate) fn pool_host(name: &str, bundle: &HostBundle, kind: GuestKind) -> Result<PoolHost, Failure> {
    PoolHost::from_bundle(name, bundle, kind).map_err(level_failure)
}

/// Levels a pool of `nr_hosts` hosts for one kind of guest (`CPUPOLICY_GUEST_*`): the default
/// policy new VMs boot with and the acceptance policy every host takes from a migration, in a
/// new pool in `*out` owned by the caller. `names[i]` names host `i` in the explanation and in
/// errors; `names` may be NULL (the hosts are then `host1`, `host2`, …). `flags` is an OR of
/// `CPUPOLICY_LEVEL_*`. No hosts gets `CPUPOLICY_INVALID_ARGUMENT`; hosts of different vendors
/// `CPUPOLICY_MIXED_VENDORS` (naming them); a host without the kind's default and max policies
/// `CPUPOLICY_NOT_AVAILABLE`. Thread-safe for readers of the hosts.
///
/// # Safety
/// `hosts` valid for `nr_hosts` reads of host handles (NULL when `nr_hosts` is 0); `names`
/// NULL or valid for `nr_hosts` reads of NUL-terminated strings; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_level(
    hosts: *const *const cpupolicy_host,
    names: *const *const c_char,
    nr_hosts: usize,
    kind: cpupolicy_guest_kind,
    flags: cpupolicy_level_flags,
    out: *mut *mut cpupolicy_pool,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        let kind = guest_kind(kind)?;
        let known = CPUPOLICY_LEVEL_EXPLAIN | CPUPOLICY_LEVEL_CROSS_VENDOR;
        if flags & !known != 0 {
            return Err(Failure::new(CPUPOLICY_INVALID_ARGUMENT, format!("unknown level flags {:#x}", flags & !known)));
        }
        // SAFETY: per this function's contract.
        let handles = unsafe { c_slice(hosts, nr_hosts, MAX_POOL_HOSTS, "hosts")? };
        let names = if names.is_null() {
            None
        } else {
            // SAFETY: non-NULL, and valid for `nr_hosts` reads per the contract.
            Some(unsafe { c_slice(names, nr_hosts, MAX_POOL_HOSTS, "names")? })
        };
        let mut pool_hosts = Vec::new();
        for (i, &handle) in handles.iter().enumerate() {
            // SAFETY: per this function's contract, each element is a host handle (or NULL,
            // reported).
            let bundle = unsafe { borrow(handle, &format!("hosts[{i}]"))? };
            let name = match names {
                // SAFETY: per this function's contract.
                Some(names) => unsafe { c_str(names[i], &format!("names[{i}]"))? }.to_string(),
                None => format!("host{}", i + 1),
            };
            pool_hosts.push(pool_host(&name, bundle, kind)?);
        }
        let options = LevelOptions {
            explain: flags & CPUPOLICY_LEVEL_EXPLAIN != 0,
            cross_vendor: flags & CPUPOLICY_LEVEL_CROSS_VENDOR != 0,
        };
        let levelled = level_pool(&pool_hosts, options).map_err(level_failure)?;
        let pool = Pool { levelled, kind, hosts: pool_hosts, explained: options.explain };
        // SAFETY: per this function's contract.
        unsafe { put(out, pool) }
    })
}

/// Releases a pool. NULL is a no-op. Not to be called concurrently with other use of it.
///
/// # Safety
/// `pool` NULL or a pool handle from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_free(pool: *mut cpupolicy_pool) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    guard(|| unsafe { free(pool, "pool") })
}

/// A copy of the pool's default or acceptance policy (`CPUPOLICY_POOL_*`) in `*out`, owned by
/// the caller. Thread-safe for readers.
///
/// # Safety
/// `pool` a pool handle; `out` valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_policy(
    pool: *const cpupolicy_pool,
    role: cpupolicy_pool_role,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let pool = unsafe { borrow(pool, "pool")? };
        let levelled = match role {
            CPUPOLICY_POOL_DEFAULT => &pool.levelled.default,
            CPUPOLICY_POOL_ACCEPTANCE => &pool.levelled.acceptance,
            other => return Err(out_of_range("pool role", other)),
        };
        // SAFETY: per this function's contract.
        unsafe { put(out, levelled.policy.clone()) }
    })
}

/// What levelling cost, as `cpupolicy level --explain` prints it: per policy (`default`,
/// `acceptance`) `nothing lost`, or `lost` and one indented line per feature (`  svm: lacked
/// by host2`) and per limit (`  leaf7-max-subleaf: 0x2 -> 0x0, held down by host1`); then the
/// hazards: for PV guests one line per host on what leaks through to PV user space despite
/// the policy (`host1: nothing leaks to PV guests (…)`, `host2: leaks to PV guests' user space
/// (…): avx2 …`, or that the host's levelling capabilities are not known), one line when the
/// hosts' recorded MXCSR masks differ, and one per host-reflected bit the hosts differ on
/// (`host-reflected …`). `CPUPOLICY_NOT_AVAILABLE` unless the pool was levelled with
/// `CPUPOLICY_LEVEL_EXPLAIN`. NUL-terminated, size-query convention. Thread-safe for readers.
///
/// # Safety
/// `pool` a pool handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_explain(
    pool: *const cpupolicy_pool,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(pool, "pool", buffer, capacity, needed, |pool| {
            if !pool.explained {
                return Err(Failure::new(
                    CPUPOLICY_NOT_AVAILABLE,
                    "the pool was levelled without CPUPOLICY_LEVEL_EXPLAIN",
                ));
            }
            let hazards = pool_hazards(&pool.levelled, &pool.hosts, pool.kind);
            Ok(explanation_text(&pool.levelled, &pool.hosts) + &hazards_text(&hazards))
        })
    }
}

/// The pool as JSON, as `cpupolicy level --format json` prints it: `kind`, `hosts`, `default`
/// and `acceptance` (each with `featureset`, `policy` and, when explained, `lost` and
/// `limits`), `host_reflected`, and `hazards` (what levelling cannot hide: for PV guests,
/// leak-through per host; differing MXCSR masks; host-reflected differences). NUL-terminated,
/// size-query convention. Thread-safe for readers.
///
/// # Safety
/// `pool` a pool handle; `buffer` NULL or valid for `capacity` bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_pool_to_json(
    pool: *const cpupolicy_pool,
    buffer: *mut c_char,
    capacity: usize,
    needed: *mut usize,
) -> cpupolicy_status {
    // SAFETY: per this function's contract.
    unsafe {
        text_of(pool, "pool", buffer, capacity, needed, |pool| {
            let hazards = pool_hazards(&pool.levelled, &pool.hosts, pool.kind);
            let value = pool_json(&pool.levelled, &pool.hosts, pool.kind, pool.explained, &hazards)
                .map_err(|e| Failure::new(CPUPOLICY_INTERNAL_ERROR, format!("policy JSON: {e}")))?;
            Ok(format!("{value:#}\n"))
        })
    }
}

/// Levels `nr_policies` single policies into one (libvirt's baseline): each stands for a host
/// offering it as both default and max, and the pool's default policy is returned in a new
/// policy in `*out`, owned by the caller. Each feature follows its levelling rule (most are
/// ANDed; vulnerability and accumulate bits are ORed, as Xen does), numeric limits take the
/// minimum. No policies gets `CPUPOLICY_INVALID_ARGUMENT`, policies of different vendors
/// `CPUPOLICY_MIXED_VENDORS`. Thread-safe for readers of the policies.
///
/// # Safety
/// `policies` valid for `nr_policies` reads of policy handles (NULL when 0); `out` valid for a
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_baseline(
    policies: *const *const cpupolicy_policy,
    nr_policies: usize,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let handles = unsafe { c_slice(policies, nr_policies, MAX_POOL_HOSTS, "policies")? };
        let mut hosts = Vec::new();
        for (i, &handle) in handles.iter().enumerate() {
            // SAFETY: per this function's contract, each element is a policy handle (or NULL,
            // reported).
            let policy: &CpuPolicy = unsafe { borrow(handle, &format!("policies[{i}]"))? };
            hosts.push(PoolHost::from_single(format!("policies[{i}]"), policy.clone()));
        }
        let pool = level_pool(&hosts, LevelOptions::default()).map_err(level_failure)?;
        // SAFETY: per this function's contract.
        unsafe { put(out, pool.default.policy) }
    })
}

/// The policy a VM that arrives without one (a migration stream from Xen 4.13 or older) is
/// given on restore, as the libxl of Xen `xen_version` does: the host's default policy for the
/// guest kind, with RDRAND (and, from 4.16, HLE and RTM; MPX for HVM) put back from the host
/// policy's featureset (the max policy's when the host policy is absent), and the max leaves
/// clamped as that release clamps them. `xen_version` (e.g. `"4.20"`) may be NULL when the host
/// records its own version. A new policy in `*out`, owned by the caller. Thread-safe for readers.
///
/// # Safety
/// `host` a host handle; `xen_version` NULL or a NUL-terminated string; `out` valid for a
/// pointer write.
#[no_mangle]
pub unsafe extern "C" fn cpupolicy_synthesise_legacy(
    host: *const cpupolicy_host,
    kind: cpupolicy_guest_kind,
    xen_version: *const c_char,
    out: *mut *mut cpupolicy_policy,
) -> cpupolicy_status {
    guard(|| {
        require(out, "out")?;
        // SAFETY: per this function's contract.
        let (bundle, version) = unsafe { (borrow(host, "host")?, opt_c_str(xen_version, "xen_version")?) };
        let kind = guest_kind(kind)?;
        let version = match version {
            Some(text) => XenVersion::parse(text).ok_or_else(|| {
                Failure::new(
                    CPUPOLICY_INVALID_ARGUMENT,
                    format!("xen_version '{text}' is not a Xen version such as 4.20"),
                )
            })?,
            None => bundle.xen_version.clone().ok_or_else(|| {
                Failure::new(CPUPOLICY_INVALID_ARGUMENT, "xen_version is NULL and the host does not record its version")
            })?,
        };
        let source = pool_host("host", bundle, kind)?;
        let host_featureset = bundle
            .policies
            .get(SystemPolicy::Host)
            .map(CpuPolicy::featureset)
            .unwrap_or_else(|| source.max.featureset());
        let policy = synthesise_legacy(&source.default, &host_featureset, kind, LegacyRules::for_xen(&version));
        // SAFETY: per this function's contract.
        unsafe { put(out, policy) }
    })
}

#[cfg(test)]
mod tests {
    use std::ptr::{null, null_mut};

    use policy::{CpuidKey, Registers, SystemPolicies};
    use serde_json::{json, Value};

    use super::*;
    use crate::ffi::testing::{last_error, text};
    use crate::host::cpupolicy_host_free;
    use crate::policy::cpupolicy_policy_free;

    /// A policy naming a vendor by its leaf 0 registers (EBX, ECX, EDX).
    fn policy(vendor: [u32; 3]) -> CpuPolicy {
        let mut p = CpuPolicy::new();
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, vendor[0], vendor[1], vendor[2]));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(0x306c3, 0, 0x8000_2001, 0x178b_fbfd));
        p
    }

    const INTEL: [u32; 3] = [0x756e_6547, 0x6c65_746e, 0x4965_6e69];
    const AMD: [u32; 3] = [0x6874_7541, 0x444d_4163, 0x6974_6e65];

    fn host(vendor: [u32; 3]) -> *mut cpupolicy_host {
        let mut policies = SystemPolicies::new();
        for which in [SystemPolicy::PvDefault, SystemPolicy::PvMax, SystemPolicy::HvmDefault, SystemPolicy::HvmMax] {
            policies.set(which, Some(policy(vendor)));
        }
        HostBundle { policies, ..HostBundle::default() }.into_handle()
    }

    #[test]
    fn levelling_errors_are_statuses() {
        let (intel, amd) = (host(INTEL), host(AMD));
        let hosts = [intel.cast_const(), amd.cast_const()];
        let names = [c"left".as_ptr(), c"right".as_ptr()];
        let mut pool = std::ptr::dangling_mut::<cpupolicy_pool>();
        // SAFETY: the arrays hold the counts given; `pool` is a valid place.
        unsafe {
            assert_eq!(
                cpupolicy_level(null(), null(), 0, CPUPOLICY_GUEST_PV, 0, &mut pool),
                CPUPOLICY_INVALID_ARGUMENT
            );
            assert_eq!(last_error(), "a pool needs at least one host");
            let status = cpupolicy_level(hosts.as_ptr(), names.as_ptr(), 2, CPUPOLICY_GUEST_HVM, 0, &mut pool);
            assert_eq!(status, CPUPOLICY_MIXED_VENDORS);
            assert!(last_error().contains("Intel: left; AMD: right"), "{}", last_error());
            assert_eq!(cpupolicy_level(hosts.as_ptr(), null(), 2, 9, 0, &mut pool), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(cpupolicy_level(hosts.as_ptr(), null(), 2, 0, 4, &mut pool), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(last_error(), "unknown level flags 0x4");
        }
        assert_eq!(pool, std::ptr::dangling_mut::<cpupolicy_pool>());
        // SAFETY: live handles, not used afterwards.
        unsafe { (cpupolicy_host_free(intel), cpupolicy_host_free(amd)) };
    }

    #[test]
    fn explanation_needs_the_flag_and_names_the_hosts() {
        let intel = host(INTEL);
        let hosts = [intel.cast_const(), intel.cast_const()];
        let (mut plain, mut explained) = (null_mut(), null_mut());
        // SAFETY: the array holds two live host handles; the out-pointers are valid places.
        unsafe {
            assert_eq!(cpupolicy_level(hosts.as_ptr(), null(), 2, CPUPOLICY_GUEST_PV, 0, &mut plain), CPUPOLICY_OK);
            let flags = CPUPOLICY_LEVEL_EXPLAIN;
            assert_eq!(
                cpupolicy_level(hosts.as_ptr(), null(), 2, CPUPOLICY_GUEST_PV, flags, &mut explained),
                CPUPOLICY_OK
            );
        }
        // SAFETY: live pool handles; the closures pass the harness's buffers.
        assert_eq!(text(|b, c, n| unsafe { cpupolicy_pool_explain(plain, b, c, n) }), Err(CPUPOLICY_NOT_AVAILABLE));
        // SAFETY: as above.
        let explanation = text(|b, c, n| unsafe { cpupolicy_pool_explain(explained, b, c, n) }).unwrap();
        // Leaf 1 has CX16, but without leaf 0x80000001 the pool has no long mode it depends on.
        assert!(explanation.starts_with("default: lost\n  cx16: needs lm, which the pool lost\n"), "{explanation}");
        assert!(explanation.contains("host2: levelling capabilities unknown"), "{explanation}");
        // SAFETY: as above.
        let json = text(|b, c, n| unsafe { cpupolicy_pool_to_json(explained, b, c, n) }).unwrap();
        let json: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json["hosts"], json!(["host1", "host2"]));
        assert_eq!(json["default"]["lost"], json!([{"feature": "cx16", "cause": "dependency", "needs": ["lm"]}]));
        let mut out = std::ptr::dangling_mut::<cpupolicy_policy>();
        // SAFETY: a live pool handle; `out` a valid place.
        assert_eq!(unsafe { cpupolicy_pool_policy(plain, 2, &mut out) }, CPUPOLICY_INVALID_ARGUMENT);
        // SAFETY: live handles, not used afterwards.
        unsafe { (cpupolicy_pool_free(plain), cpupolicy_pool_free(explained), cpupolicy_host_free(intel)) };
    }

    #[test]
    fn baseline_and_legacy_report_their_arguments() {
        let p = policy(INTEL).into_handle();
        let mut out = std::ptr::dangling_mut::<cpupolicy_policy>();
        let with_null = [p.cast_const(), null()];
        // SAFETY: the array holds the count given; `out` a valid place.
        unsafe {
            assert_eq!(cpupolicy_baseline(with_null.as_ptr(), 2, &mut out), CPUPOLICY_INVALID_ARGUMENT);
            assert_eq!(last_error(), "policies[1] is NULL");
        }
        let intel = host(INTEL);
        // SAFETY: a live host handle; NULL version is reported, the bundle recording none.
        unsafe {
            let status = cpupolicy_synthesise_legacy(intel, CPUPOLICY_GUEST_PV, null(), &mut out);
            assert_eq!(status, CPUPOLICY_INVALID_ARGUMENT);
            assert!(last_error().contains("does not record its version"));
        }
        assert_eq!(out, std::ptr::dangling_mut::<cpupolicy_policy>());
        // SAFETY: as above with a version; `out` receives a new policy.
        unsafe {
            assert_eq!(
                cpupolicy_synthesise_legacy(intel, CPUPOLICY_GUEST_PV, c"4.20".as_ptr(), &mut out),
                CPUPOLICY_OK
            );
            cpupolicy_policy_free(out);
            cpupolicy_policy_free(p);
            cpupolicy_host_free(intel);
        }
    }
}
