//! Levelling a pool: what a VM may see when it may run on any host of the pool.
//!
//! Two results, following Xen's split of default and max policies (REFERENCE §4):
//!
//! - the pool **default** policy, levelled over each host's default policy: what new VMs boot
//!   with;
//! - the pool **acceptance** policy, levelled over each host's max policy: what every host can
//!   take from an incoming migration. A VM is welcome everywhere in the pool exactly when it is
//!   compatible with this policy ([`crate::check_migration`]).
//!
//! Each feature bit follows its [`LevelRule`] ([`SPECIAL_RULES`](crate::SPECIAL_RULES) says why);
//! then the default is limited to what every host accepts (except accumulate bits, which a
//! host may lack without harm), the dependency closure is applied, numeric limits take the
//! minimum and PLATFORM_INFO the AND. Every other leaf (cache descriptors, brand string,
//! family/model) comes from one host, the one with the lowest family/model/stepping: a guest
//! that applies that part's errata workarounds is safe on the newer parts too.

use cpupolicy_featureset::ids;
use std::collections::BTreeMap;
use std::fmt;

use cpupolicy_featureset::{
    apply_dependencies_to_words, prerequisites_of, static_mask, FeatureId, Featureset, GuestKind, StaticMask, NR_WORDS,
};

use crate::featuresets::apply_rsba_rule_to_words;
use crate::host_set::HostSet;
use crate::level_rules::{each_bit, masks, LevelRule};
use crate::policy::InRange;
use crate::{
    level_rule, CpuPolicy, CpuidKey, HostBundle, Levelling, Registers, SystemPolicies, SystemPolicy, Vendor,
    MSR_PLATFORM_INFO,
};

/// One host of a pool: its name and the policies levelling needs, for one kind of guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolHost {
    /// How the host is named in explanations and errors (a host name, a file name).
    pub name: String,
    /// The host policy (what Xen itself uses), when known: host-reflected bits are read from
    /// it. Without it they are read from the default policy.
    pub host: Option<CpuPolicy>,
    /// The default policy for the guest kind: what a VM booted there gets.
    pub default: CpuPolicy,
    /// The max policy for the guest kind: what the host accepts from a migration.
    pub max: CpuPolicy,
    /// The guest kind the policies are for, when known.
    pub kind: Option<GuestKind>,
    /// The raw (hardware) policy, when known: what leaks through to PV guests.
    pub raw: Option<CpuPolicy>,
    /// The levelling capabilities, when known.
    pub levelling: Option<Levelling>,
    /// The MXCSR mask FXSAVE reports on the host, when known (see [`HostBundle::mxcsr_mask`]).
    pub mxcsr_mask: Option<u32>,
    /// The Xen the host runs, when known (a bundle fetched from Xen says).
    pub xen: Option<crate::XenVersion>,
}

impl PoolHost {
    /// A host from its default and max policies.
    pub fn new(name: impl Into<String>, default: CpuPolicy, max: CpuPolicy) -> PoolHost {
        PoolHost {
            name: name.into(),
            host: None,
            default,
            max,
            kind: None,
            raw: None,
            levelling: None,
            mxcsr_mask: None,
            xen: None,
        }
    }

    /// A host from a single policy used as both default and max (e.g. a hand-written JSON
    /// policy that stands for what a host offers).
    pub fn from_single(name: impl Into<String>, policy: CpuPolicy) -> PoolHost {
        PoolHost::new(name, policy.clone(), policy)
    }

    /// A host from its system policies (from Xen, a host bundle or `xen-cpuid -p`), for one
    /// kind of guest. For HVM with shadow paging both policies are further limited to the
    /// shadow max mask, as Xen does for a domain without HAP (`recalculate_cpuid_policy`).
    pub fn from_system(
        name: impl Into<String>,
        policies: &SystemPolicies,
        kind: GuestKind,
    ) -> Result<PoolHost, LevelError> {
        let name = name.into();
        let (default_which, max_which) = match kind {
            GuestKind::Pv => (SystemPolicy::PvDefault, SystemPolicy::PvMax),
            GuestKind::HvmShadow | GuestKind::HvmHap => (SystemPolicy::HvmDefault, SystemPolicy::HvmMax),
        };
        // Xen without support for a guest kind reports its policies empty.
        let get = |which: SystemPolicy| {
            policies
                .get(which)
                .filter(|policy| !policy.is_empty())
                .cloned()
                .ok_or_else(|| LevelError::MissingPolicy { host: name.clone(), policy: which })
        };
        let (mut default, mut max) = (get(default_which)?, get(max_which)?);
        if kind == GuestKind::HvmShadow {
            let shadow = static_mask(StaticMask::Max(GuestKind::HvmShadow));
            for policy in [&mut default, &mut max] {
                let fs = policy.featureset().intersection(shadow);
                policy.set_feature_words(&words_of(&fs));
            }
        }
        let host = policies.get(SystemPolicy::Host).cloned();
        let raw = policies.get(SystemPolicy::Raw).filter(|p| !p.is_empty()).cloned();
        Ok(PoolHost { name, host, default, max, kind: Some(kind), raw, levelling: None, mxcsr_mask: None, xen: None })
    }

    /// A host from a host bundle: its system policies and, when recorded, its levelling
    /// capabilities.
    pub fn from_bundle(name: impl Into<String>, bundle: &HostBundle, kind: GuestKind) -> Result<PoolHost, LevelError> {
        let mut host = PoolHost::from_system(name, &bundle.policies, kind)?;
        host.levelling = bundle.levelling();
        host.mxcsr_mask = bundle.mxcsr_mask;
        host.xen = bundle.xen_version.clone();
        Ok(host)
    }

    /// For a PV host with known levelling capabilities and raw policy: the features a PV guest
    /// with policy `guest` would see anyway from user space (see [`Levelling`]). `None` when
    /// unknown (no capabilities recorded, or Xen 4.22's no sysctl without faulting) or not a PV
    /// host.
    pub fn pv_leak_through(&self, guest: &CpuPolicy) -> Option<Vec<FeatureId>> {
        match (self.kind, &self.levelling, &self.raw) {
            (Some(GuestKind::Pv), Some(levelling), Some(raw)) => levelling.pv_leak_through(guest, raw),
            _ => None,
        }
    }

    /// The policy host-reflected bits are read from.
    pub fn reflected_source(&self) -> &CpuPolicy {
        self.host.as_ref().unwrap_or(&self.default)
    }
}

/// What may be asked of [`level_pool`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelOptions {
    /// Level hosts of different vendors anyway (the result takes its vendor from the first
    /// host). Guests that depend on vendor-specific behaviour will break; off by default.
    pub cross_vendor: bool,
    /// Compute the explanation of every loss ([`Levelled::lost`], [`Levelled::limits`]).
    pub explain: bool,
}

/// Why a pool cannot be levelled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// No hosts were given.
    #[error("a pool needs at least one host")]
    EmptyPool,
    /// The hosts are of different vendors.
    #[error("hosts of different vendors cannot share VMs: {}", describe_vendors(.vendors))]
    MixedVendors {
        /// Each vendor with the hosts that have it, in order of first appearance.
        vendors: Vec<(Vendor, Vec<String>)>,
    },
    /// The xstate sizes of leaf 0xD do not fit 32 bits: a component's offset and size are
    /// nonsense.
    #[error(
        "host {host}: leaf 0xd sub-leaf {subleaf:#x}: the xstate area would end beyond 4 GiB (offset + size overflow 32 bits)"
    )]
    XstateSize {
        /// The host whose leaf 0xD the pool's is built from.
        host: String,
        /// The component at which the size overflowed.
        subleaf: u32,
    },
    /// Hosts of different vendors levelled anyway, but some run a Xen (4.22 or later) that
    /// refuses a guest whose vendor is not the host's.
    #[error("Xen 4.22 and later run no guest of another vendor than the host's, so no cross-vendor pool can include {}", .hosts.join(", "))]
    CrossVendorRefused {
        /// The hosts running such a Xen.
        hosts: Vec<String>,
    },
    /// A host lacks a policy the guest kind needs.
    #[error("host {host} has no {} policy, or an empty one: does it support this kind of guest?", .policy.name())]
    MissingPolicy {
        /// The host.
        host: String,
        /// The policy it lacks.
        policy: SystemPolicy,
    },
}

fn describe_vendors(vendors: &[(Vendor, Vec<String>)]) -> String {
    vendors.iter().map(|(vendor, hosts)| format!("{vendor}: {}", hosts.join(", "))).collect::<Vec<_>>().join("; ")
}

/// The levelled policies of a pool. The default value holds no result: both policies empty,
/// every list empty (what [`level_pool_into`] leaves on error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelledPool {
    /// What new VMs boot with.
    pub default: Levelled,
    /// What every host of the pool accepts from a migration.
    pub acceptance: Levelled,
    /// Host-reflected bits on which hosts differ: no policy can hide them.
    pub reflected: Vec<ReflectedDifference>,
}

/// One levelled policy and, when asked, what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levelled {
    /// The policy.
    pub policy: CpuPolicy,
    /// Every feature some host had and the pool lost, with why (empty unless explaining).
    pub lost: Vec<FeatureLoss>,
    /// Every numeric limit some host had higher, with the hosts that held it down (empty unless
    /// explaining).
    pub limits: Vec<LimitLoss>,
}

/// A feature the pool lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureLoss {
    /// The feature.
    pub feature: FeatureId,
    /// Why it was lost.
    pub cause: LossCause,
}

/// Why a feature was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LossCause {
    /// These hosts lack it (indices into the hosts levelled; [`LossCause::describe`] names them).
    LackedBy(HostSet),
    /// (Default policy only.) These hosts cannot accept it from a migration: their max lacks it.
    NotAcceptedBy(HostSet),
    /// A feature it needs was lost.
    Dependency(Vec<FeatureId>),
    /// The leaf holding it is beyond the pool's max leaf (these hosts have the lower limit).
    OutOfRange(HostSet),
    /// Its rule clears it (run-time-only bits).
    Rule(LevelRule),
}

/// A numeric limit a host had higher than the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitLoss {
    /// Which limit.
    pub field: LimitField,
    /// The highest value among the hosts.
    pub highest: u64,
    /// The pool's value.
    pub pooled: u64,
    /// The hosts whose value is lower than the highest (indices into the hosts levelled).
    pub hosts: HostSet,
}

/// The numeric fields levelling takes the minimum (or, for PLATFORM_INFO, the AND) of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitField {
    /// Leaf 0 EAX.
    MaxBasicLeaf,
    /// Leaf 7 sub-leaf 0 EAX.
    Leaf7MaxSubleaf,
    /// Leaf 0x80000000 EAX.
    MaxExtendedLeaf,
    /// Leaf 0x80000008 EAX bits 0-7.
    MaxPhysAddrBits,
    /// Leaf 0x80000008 EAX bits 8-15.
    MaxLinAddrBits,
    /// MSR 0xce (bits ANDed; bit 31 is CPUID faulting).
    PlatformInfo,
}

impl LimitField {
    /// Every field, in report order.
    pub const ALL: [LimitField; 6] = [
        LimitField::MaxBasicLeaf,
        LimitField::Leaf7MaxSubleaf,
        LimitField::MaxExtendedLeaf,
        LimitField::MaxPhysAddrBits,
        LimitField::MaxLinAddrBits,
        LimitField::PlatformInfo,
    ];

    /// A stable name for reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            LimitField::MaxBasicLeaf => "max-basic-leaf",
            LimitField::Leaf7MaxSubleaf => "leaf7-max-subleaf",
            LimitField::MaxExtendedLeaf => "max-extended-leaf",
            LimitField::MaxPhysAddrBits => "max-phys-addr-bits",
            LimitField::MaxLinAddrBits => "max-lin-addr-bits",
            LimitField::PlatformInfo => "platform-info",
        }
    }

    /// The field's value in a policy.
    pub fn read(self, policy: &CpuPolicy) -> u64 {
        match self {
            LimitField::MaxBasicLeaf => policy.max_basic_leaf().into(),
            LimitField::Leaf7MaxSubleaf => policy.leaf7_max_subleaf().into(),
            LimitField::MaxExtendedLeaf => policy.max_extended_leaf().into(),
            LimitField::MaxPhysAddrBits => policy.max_phys_addr_bits().into(),
            LimitField::MaxLinAddrBits => policy.max_lin_addr_bits().into(),
            LimitField::PlatformInfo => policy.msr(MSR_PLATFORM_INFO),
        }
    }

    /// Every field's value in a policy, in [`LimitField::ALL`] order, read in place.
    pub(crate) fn read_all(policy: &CpuPolicy) -> [u64; 6] {
        let [eax0, _, _, _, leaf7, extended, sizes] = policy.summary();
        let values = [
            eax0.into(),
            leaf7.into(),
            extended.into(),
            (sizes & 0xff).into(),
            ((sizes >> 8) & 0xff).into(),
            policy.msr(MSR_PLATFORM_INFO),
        ];
        debug_assert!(LimitField::ALL.iter().zip(values).all(|(field, value)| field.read(policy) == value));
        values
    }

    /// Whether `value` of a VM exceeds `limit` of a host (for PLATFORM_INFO: has a bit the
    /// host lacks).
    pub fn exceeds(self, value: u64, limit: u64) -> bool {
        match self {
            LimitField::PlatformInfo => value & !limit != 0,
            _ => value > limit,
        }
    }
}

impl fmt::Display for LimitField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host-reflected bit on which the hosts of a pool differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReflectedDifference {
    /// The feature.
    pub feature: FeatureId,
    /// The hosts whose hardware sets it, as indices into the hosts levelled (names are built
    /// only when a report asks: [`ReflectedDifference::names`]).
    pub with: HostSet,
    /// The hosts whose hardware does not, as indices.
    pub without: HostSet,
}

impl LevelledPool {
    /// Makes this the empty pool ([`LevelledPool::default`]), keeping the lists' storage.
    fn clear(&mut self) {
        for levelled in [&mut self.default, &mut self.acceptance] {
            levelled.policy = CpuPolicy::new();
            levelled.lost.clear();
            levelled.limits.clear();
        }
        self.reflected.clear();
    }
}

impl ReflectedDifference {
    /// The names of the hosts with the bit and without it, from the hosts levelled.
    pub fn names<'a>(&self, names: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
        let pick = |indices: &HostSet| indices.iter().filter_map(|i| names.get(i).copied()).collect();
        (pick(&self.with), pick(&self.without))
    }
}

/// Levels a pool: the default and acceptance policies every host can run, with, when
/// `options.explain` is set, which host cost which feature and limit.
///
/// Errors: an empty pool; hosts of different vendors (unless `options.cross_vendor`); an
/// xstate size beyond 32 bits. [`level_pool_into`] does the same into a pool the caller keeps.
pub fn level_pool(hosts: &[PoolHost], options: LevelOptions) -> Result<LevelledPool, LevelError> {
    let mut pool = LevelledPool::default();
    level_pool_into(hosts, options, &mut pool)?;
    Ok(pool)
}

/// [`level_pool`] into `pool`, reusing its storage: a toolstack that re-levels (a host joins
/// or leaves, a planner tries pool after pool) keeps one `LevelledPool` and copies no policy
/// beyond what levelling writes.
///
/// On success `pool` holds exactly what [`level_pool`] returns. On error it holds no result
/// at all: it is left as [`LevelledPool::default`] (both policies empty, every list empty),
/// never half levelled.
pub fn level_pool_into(hosts: &[PoolHost], options: LevelOptions, pool: &mut LevelledPool) -> Result<(), LevelError> {
    let result = level_into(hosts, options, pool);
    if result.is_err() {
        pool.clear();
    }
    result
}

fn level_into(hosts: &[PoolHost], options: LevelOptions, pool: &mut LevelledPool) -> Result<(), LevelError> {
    let first = hosts.first().ok_or(LevelError::EmptyPool)?;
    let vendor = first.default.vendor();
    // The vendor compared as leaf 0's three registers: the vendor itself is named only for an
    // error.
    let vendor_id = |p: &CpuPolicy| {
        let [_, ebx, ecx, edx, ..] = p.summary();
        [ebx, ecx, edx]
    };
    let first_id = vendor_id(&first.default);
    let mixed = hosts.iter().any(|h| {
        (vendor_id(&h.default) != first_id && h.default.vendor() != vendor)
            || (vendor_id(&h.max) != first_id && h.max.vendor() != vendor)
    });
    // A host whose default and max policies disagree on the vendor counts under both: it would
    // refuse the pool's policies itself.
    if !options.cross_vendor && mixed {
        let mut vendors: Vec<(Vendor, Vec<String>)> = Vec::new();
        for host in hosts {
            for v in [host.default.vendor(), host.max.vendor()] {
                match vendors.iter_mut().find(|(seen, _)| *seen == v) {
                    Some((_, names)) if names.last() == Some(&host.name) => {}
                    Some((_, names)) => names.push(host.name.clone()),
                    None => vendors.push((v, vec![host.name.clone()])),
                }
            }
        }
        return Err(LevelError::MixedVendors { vendors });
    }
    if options.cross_vendor && mixed {
        // Xen 4.22 ("Remove cross-vendor support now that VMs can no longer have a different
        // vendor than the host") refuses such guests outright.
        let refusing: Vec<String> = hosts
            .iter()
            .filter(|h| h.xen.as_ref().is_some_and(|v| (v.major, v.minor) >= (4, 22)))
            .map(|h| h.name.clone())
            .collect();
        if !refusing.is_empty() {
            return Err(LevelError::CrossVendorRefused { hosts: refusing });
        }
    }

    // One pass over the hosts: word ANDs and ORs, numeric minima, the base host.
    let mut acc = Accumulated::new();
    let mut base = 0;
    let mut base_signature = (u32::MAX, u32::MAX, u32::MAX);
    for (i, host) in hosts.iter().enumerate() {
        acc.add(host);
        if vendor_id(&host.default) == first_id || host.default.vendor() == vendor {
            let signature = (host.default.family(), host.default.model(), host.default.stepping());
            if signature < base_signature {
                (base, base_signature) = (i, signature);
            }
        }
    }

    let rules = masks();
    let mut acceptance_words = [0u32; NR_WORDS];
    let mut default_words = [0u32; NR_WORDS];
    for w in 0..NR_WORDS {
        let and = rules.and(w) | rules.mirror[w] | rules.tsx_abort[w] | rules.topology[w] | rules.reflected[w];
        acceptance_words[w] = (acc.max_and[w] & and) | (acc.max_or[w] & rules.or[w]);
        let default = (acc.def_and[w] & (rules.and(w) | rules.mirror[w] | rules.topology[w] | rules.reflected[w]))
            | (acc.def_or[w] & rules.or[w])
            | (acc.def_or[w] & rules.tsx_abort[w] & acc.max_and[w]);
        // What every host accepts bounds the default; accumulate bits may go beyond (a host
        // that lacks one only clears it, harmlessly).
        default_words[w] = default & (acceptance_words[w] | rules.or[w]);
    }
    // Xen's RSBA/RRSBA derivation, as for each host's own default (see `featuresets`).
    apply_rsba_rule_to_words(&mut default_words, &acc.def_or);

    // Built in place: each levelled policy is written once, where the caller keeps it.
    let base = &hosts[base];
    finish(
        &mut pool.acceptance,
        base,
        acceptance_words,
        &acc.max_limits,
        hosts,
        Role::Acceptance,
        options.explain,
        &acc.max_or,
        None,
    )?;
    let mut default_limits = acc.def_limits;
    for (limit, bound) in default_limits.iter_mut().zip(acc.max_limits) {
        *limit = match limit.field {
            LimitField::PlatformInfo => Limit { value: limit.value & bound.value, ..*limit },
            _ => Limit { value: limit.value.min(bound.value), ..*limit },
        };
    }
    finish(
        &mut pool.default,
        base,
        default_words,
        &default_limits,
        hosts,
        Role::Default,
        options.explain,
        &acc.def_or,
        Some(&pool.acceptance.policy),
    )?;

    let reflected = &mut pool.reflected;
    reflected.clear();
    if acc.reflected_and != acc.reflected_or {
        for w in (0..NR_WORDS).filter(|&w| acc.reflected_or[w] != acc.reflected_and[w]) {
            each_bit(acc.reflected_or[w] & !acc.reflected_and[w], w, |feature| {
                let with = HostSet::from_test(hosts.len(), |i| hosts[i].reflected_source().has_feature(feature));
                let without = with.complement(hosts.len());
                reflected.push(ReflectedDifference { feature, with, without });
            });
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Default,
    Acceptance,
}

impl Role {
    fn policy(self, host: &PoolHost) -> &CpuPolicy {
        match self {
            Role::Default => &host.default,
            Role::Acceptance => &host.max,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Limit {
    field: LimitField,
    value: u64,
}

struct Accumulated {
    def_and: [u32; NR_WORDS],
    def_or: [u32; NR_WORDS],
    max_and: [u32; NR_WORDS],
    max_or: [u32; NR_WORDS],
    reflected_and: [u32; NR_WORDS],
    reflected_or: [u32; NR_WORDS],
    def_limits: [Limit; 6],
    max_limits: [Limit; 6],
}

impl Accumulated {
    fn new() -> Accumulated {
        // The identity of both min and AND.
        let limits = LimitField::ALL.map(|field| Limit { field, value: u64::MAX });
        Accumulated {
            def_and: [!0; NR_WORDS],
            def_or: [0; NR_WORDS],
            max_and: [!0; NR_WORDS],
            max_or: [0; NR_WORDS],
            // Host-reflected bits only: the AND over no host is every one of them.
            reflected_and: masks().reflected,
            reflected_or: [0; NR_WORDS],
            def_limits: limits,
            max_limits: limits,
        }
    }

    fn add(&mut self, host: &PoolHost) {
        let rules = masks();
        let (def, max) = (host.default.feature_words(), host.max.feature_words());
        for w in 0..NR_WORDS {
            self.def_and[w] &= def[w];
            self.def_or[w] |= def[w];
            self.max_and[w] &= max[w];
            self.max_or[w] |= max[w];
        }
        // Host-reflected bits live in a word or two: read only those.
        let reflected = host.reflected_source();
        for &w in &rules.reflected_words {
            let bits = reflected.feature_word(w) & rules.reflected[w];
            self.reflected_and[w] &= bits;
            self.reflected_or[w] |= bits;
        }
        // In `LimitField::ALL` order: five minima, then PLATFORM_INFO's AND.
        const _: () = assert!(matches!(LimitField::ALL[5], LimitField::PlatformInfo));
        for (limit, policy) in [(&mut self.def_limits, &host.default), (&mut self.max_limits, &host.max)] {
            let values = LimitField::read_all(policy);
            for (l, value) in limit[..5].iter_mut().zip(values) {
                l.value = l.value.min(value);
            }
            limit[5].value &= values[5];
        }
    }
}

/// Builds one levelled policy from its base host's policy (of the role), and explains it when
/// asked (`any`: the OR of the hosts' feature words of the role).
#[allow(clippy::too_many_arguments)]
fn finish(
    out: &mut Levelled,
    base: &PoolHost,
    words: [u32; NR_WORDS],
    limits: &[Limit; 6],
    hosts: &[PoolHost],
    role: Role,
    explain: bool,
    any: &[u32; NR_WORDS],
    acceptance: Option<&CpuPolicy>,
) -> Result<(), LevelError> {
    let policy = &mut out.policy;
    policy.clone_from(role.policy(base));
    let value = |field: LimitField| limits.iter().find(|l| l.field == field).map_or(0, |l| l.value);
    policy.set_max_basic_leaf(value(LimitField::MaxBasicLeaf) as u32);
    policy.set_leaf7_max_subleaf(value(LimitField::Leaf7MaxSubleaf) as u32);
    policy.set_max_extended_leaf(value(LimitField::MaxExtendedLeaf) as u32);
    policy.set_max_phys_addr_bits(value(LimitField::MaxPhysAddrBits) as u8);
    policy.set_max_lin_addr_bits(value(LimitField::MaxLinAddrBits) as u8);
    policy.set_msr(MSR_PLATFORM_INFO, value(LimitField::PlatformInfo));

    let mut words = words;
    apply_dependencies_to_words(&mut words);
    policy.set_feature_words(&words);
    clear_out_of_range_leaves(policy);
    // Words whose leaf fell out of range are gone now; their dependents go too.
    // (Unchanged words are closed already: the closure is idempotent.)
    let mut in_range = policy.feature_words();
    if in_range != words && apply_dependencies_to_words(&mut in_range) {
        policy.set_feature_words(&in_range);
    }
    level_xstate(policy, hosts, role, &base.name)?;

    if explain {
        out.lost = explain_features(&out.policy, hosts, role, any, acceptance);
        out.limits = explain_limits(&out.policy, hosts, role);
    } else {
        out.lost.clear();
        out.limits.clear();
    }
    Ok(())
}

pub(crate) fn words_of(featureset: &Featureset) -> [u32; NR_WORDS] {
    let mut words = [0; NR_WORDS];
    for (w, word) in words.iter_mut().enumerate() {
        *word = featureset.word(w);
    }
    words
}

/// Removes what lies beyond the policy's own limits, as Xen's
/// `x86_cpu_policy_clear_out_of_range_leaves` does: basic leaves beyond the max basic leaf;
/// leaf 4 and 0xB sub-leaves after the first of type 0 (`EAX[4:0]`, `ECX[15:8]`); leaf 7 sub-leaves
/// beyond its max; leaf 0xD sub-leaves above the highest xstate component (from 2 on), and all
/// of 0xD when there is none; extended leaves whose low 16 bits exceed the max extended leaf's
/// (its index from 0x80000000 beyond the max's low 16 bits; 0x80000000 itself always stays). Hypervisor leaves, and leaves Xen's arrays do not have, are
/// left alone. Time linear in the number of leaves.
pub fn clear_out_of_range_leaves(policy: &mut CpuPolicy) {
    let (basic, extended, leaf7) = (policy.max_basic_leaf(), policy.max_extended_leaf(), policy.leaf7_max_subleaf());
    // The first sub-leaf of type 0 of leaves 4 and 0xB: what follows it goes.
    let cache_end = policy.first_entry_where(4, |r| r.eax & 0x1f == 0).and_then(|k| k.subleaf);
    let topology_end = policy.first_entry_where(0xb, |r| (r.ecx >> 8) & 0xff == 0).and_then(|k| k.subleaf);
    let xstates = policy.xstates();
    // Highest valid 0xD sub-leaf: 1 at least, else that of the highest component.
    let xstate_end = (xstates != 0).then(|| (64 - xstates.leading_zeros()).max(2) - 1);
    let range = InRange { basic, extended, leaf7, cache_end, topology_end, xstate_end };
    policy.retain_in_range(&range);
}

/// Leaf 0xD: the xstate components every host supports (the AND of 0xD:0 EAX/EDX and 0xD:1
/// ECX/EDX), without the sub-leaves of the others and with the sizes recomputed from the
/// remaining components' offsets and sizes. Xen recomputes these sizes itself when a policy is
/// set (`recalculate_xstate`); they are kept right here so the policy reads sensibly.
fn level_xstate(policy: &mut CpuPolicy, hosts: &[PoolHost], role: Role, base_name: &str) -> Result<(), LevelError> {
    let xsave = ids::XSAVE;
    if !policy.has_feature(xsave) || policy.max_basic_leaf() < 0xd {
        policy.remove_leaf(0xd);
        return Ok(());
    }
    let (mut xcr0, mut xss) = (u64::MAX, u64::MAX);
    for host in hosts {
        let p = role.policy(host);
        let (sub0, sub1) = (p.subleaf(0xd, 0), p.subleaf(0xd, 1));
        xcr0 &= (u64::from(sub0.edx) << 32) | u64::from(sub0.eax);
        xss &= (u64::from(sub1.edx) << 32) | u64::from(sub1.ecx);
    }
    let components = xcr0 | xss;
    policy.retain_subleaves_in(0xd, components | 0b11);
    // Sizes are computed in 64 bits: a component whose offset and size overflow 32 bits is
    // refused, naming it, rather than wrapped or saturated into a wrong size.
    let too_big = |subleaf: u32| LevelError::XstateSize { host: base_name.to_string(), subleaf };
    // Uncompacted size: the end of the furthest user component, at least the legacy area and
    // header (512 + 64 bytes).
    let mut size = 576u64;
    for s in 2..64 {
        if xcr0 & (1 << s) != 0 {
            let r = policy.subleaf(0xd, s);
            size = size.max(u64::from(r.ebx) + u64::from(r.eax));
            if size > u64::from(u32::MAX) {
                return Err(too_big(s));
            }
        }
    }
    let size = size as u32;
    // EBX, the size for the XCR0 the guest has enabled, is computed by Xen when the guest asks
    // (guest_cpuid); its policies hold 0 there, and a policy set with another value is read
    // back with 0 (seen on Xen 4.20 with `cpupolicy domain set`).
    policy.set_cpuid(CpuidKey::indexed(0xd, 0), Registers::new(xcr0 as u32, 0, size, (xcr0 >> 32) as u32));
    // Compacted size, for XSAVEC/XSAVES: components in order, 64-byte aligned where asked.
    let mut sub1 = policy.subleaf(0xd, 1);
    if sub1.eax & 0xa != 0 {
        let mut compacted = 576u64;
        for s in 2..64 {
            if components & (1 << s) != 0 {
                let r = policy.subleaf(0xd, s);
                if r.ecx & 2 != 0 {
                    compacted = compacted.next_multiple_of(64);
                }
                compacted += u64::from(r.eax);
                if compacted > u64::from(u32::MAX) {
                    return Err(too_big(s));
                }
            }
        }
        sub1.ebx = compacted as u32;
    }
    sub1.ecx = xss as u32;
    sub1.edx = (xss >> 32) as u32;
    policy.set_cpuid(CpuidKey::indexed(0xd, 1), sub1);
    Ok(())
}

fn explain_features(
    policy: &CpuPolicy,
    hosts: &[PoolHost],
    role: Role,
    any: &[u32; NR_WORDS],
    acceptance: Option<&CpuPolicy>,
) -> Vec<FeatureLoss> {
    let result = policy.featureset();
    let result_words = policy.feature_words();
    // The lost features (some host has them, the pool has not), and one bitmap row per lost
    // feature with one bit per host.
    let stride = hosts.len().div_ceil(64);
    let mut lost_words = [0u32; NR_WORDS];
    for (lost, (&a, &r)) in lost_words.iter_mut().zip(any.iter().zip(&result_words)) {
        *lost = a & !r;
    }
    // Hosts are taken 64 at a time. For each pair of words holding lost features, a 64×64 bit
    // matrix (a row per host: the lost features it lacks) is transposed into a row per feature:
    // the block's word of that feature's bitmap. The cost is per host and word, not per
    // feature lacked.
    let pairs: Vec<[usize; 2]> = {
        let words: Vec<usize> = (0..NR_WORDS).filter(|&w| lost_words[w] != 0).collect();
        // A lone last word pairs with itself, masked out of the high half below.
        words.chunks(2).map(|c| [c[0], c[c.len() - 1]]).collect()
    };
    let pair_lost: Vec<u64> = pairs
        .iter()
        .map(|&[lo, hi]| u64::from(lost_words[lo]) | if hi != lo { u64::from(lost_words[hi]) << 32 } else { 0 })
        .collect();
    // The lost features in order (words ascending, bits ascending), and the bitmap row (as an
    // offset into `lacking_bits`) of each lost bit of each pair.
    let mut order = Vec::new();
    let mut row_of = vec![[0usize; 64]; pairs.len()];
    for ((rows, &lost), &[lo, hi]) in row_of.iter_mut().zip(&pair_lost).zip(&pairs) {
        let mut bits = lost;
        while bits != 0 {
            let p = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let word = if p < 32 { lo } else { hi };
            if let Some(feature) = FeatureId::new(word, p as u32 % 32) {
                rows[p] = order.len() * stride;
                order.push(feature);
            }
        }
    }
    let mut lacking_bits = vec![0u64; order.len() * stride];
    let mut matrices = vec![[0u64; 64]; pairs.len()];
    for (block, block_hosts) in hosts.chunks(64).enumerate() {
        for (i, h) in block_hosts.iter().enumerate() {
            let held = role.policy(h).feature_words();
            for ((matrix, &[lo, hi]), &lost) in matrices.iter_mut().zip(&pairs).zip(&pair_lost) {
                matrix[i] = lost & !(u64::from(held[lo]) | u64::from(held[hi]) << 32);
            }
        }
        for ((matrix, &lost), rows) in matrices.iter_mut().zip(&pair_lost).zip(&row_of) {
            matrix[block_hosts.len()..].fill(0);
            if matrix.iter().all(|&r| r == 0) {
                continue;
            }
            transpose64(matrix);
            let mut bits = lost;
            while bits != 0 {
                let p = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                lacking_bits[rows[p] + block] = matrix[p];
            }
        }
    }
    let mut lost = Vec::with_capacity(order.len());
    for (feature, row) in order.into_iter().zip(lacking_bits.chunks_exact(stride.max(1))) {
        let rule = level_rule(feature);
        let cause = if rule == LevelRule::RuntimeOnly {
            LossCause::Rule(rule)
        } else if row.iter().any(|&w| w != 0) && rule != LevelRule::Or {
            LossCause::LackedBy(HostSet::from_words(row))
        } else if let Some(not_accepting) = acceptance
            .filter(|a| !a.has_feature(feature) && rule != LevelRule::Or)
            .map(|_| HostSet::from_test(hosts.len(), |i| !hosts[i].max.has_feature(feature)))
            .filter(|names| !names.is_empty())
        {
            LossCause::NotAcceptedBy(not_accepting)
        } else {
            let missing = missing_prerequisites(feature, &result);
            if missing.is_empty() {
                LossCause::OutOfRange(HostSet::from_test(hosts.len(), |i| {
                    !holds_word_leaf(role.policy(&hosts[i]), feature)
                }))
            } else {
                LossCause::Dependency(missing)
            }
        };
        lost.push(FeatureLoss { feature, cause });
    }
    lost
}

/// Transposes a 64×64 bit matrix in place: bit `j` of row `i` goes to bit `i` of row `j`. Each
/// step swaps the off-diagonal blocks of every block of the size before (32, 16, … 1).
fn transpose64(m: &mut [u64; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_ffff_ffff;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            // Row k's high block of the width and row k + width's low one change places.
            let t = ((m[k] >> width) ^ m[k + width]) & mask;
            m[k] ^= t << width;
            m[k + width] ^= t;
            k = (k + width + 1) & !width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
}

/// The prerequisites of `feature` (direct or not) that `result` lacks.
fn missing_prerequisites(feature: FeatureId, result: &Featureset) -> Vec<FeatureId> {
    prerequisites_of(feature).into_iter().filter(|&p| !result.contains(p)).collect()
}

/// Whether the leaf holding `feature`'s word is within the policy's max leaves.
fn holds_word_leaf(policy: &CpuPolicy, feature: FeatureId) -> bool {
    use cpupolicy_featureset::{WordSource, WORDS};
    match WORDS.get(feature.word()).map(|w| w.source) {
        Some(WordSource::Cpuid { leaf, subleaf, .. }) => match leaf {
            0x8000_0000.. => leaf <= policy.max_extended_leaf(),
            7 => leaf <= policy.max_basic_leaf() && subleaf.unwrap_or(0) <= policy.leaf7_max_subleaf(),
            _ => leaf <= policy.max_basic_leaf(),
        },
        _ => true,
    }
}

fn explain_limits(policy: &CpuPolicy, hosts: &[PoolHost], role: Role) -> Vec<LimitLoss> {
    // Every host's six values in one read each, then per field the highest.
    let values: Vec<[u64; 6]> = hosts.iter().map(|h| LimitField::read_all(role.policy(h))).collect();
    let pooled_all = LimitField::read_all(policy);
    let mut losses = Vec::new();
    for (i, field) in LimitField::ALL.into_iter().enumerate() {
        let pooled = pooled_all[i];
        let highest = match field {
            LimitField::PlatformInfo => values.iter().fold(0, |a, v| a | v[i]),
            _ => values.iter().map(|v| v[i]).max().unwrap_or(0),
        };
        if highest == pooled {
            continue;
        }
        let below = HostSet::from_test(values.len(), |host| match field {
            LimitField::PlatformInfo => values[host][i] != highest,
            _ => values[host][i] < highest,
        });
        losses.push(LimitLoss { field, highest, pooled, hosts: below });
    }
    losses
}

impl LossCause {
    /// The cause in words, naming the hosts from `names` (the hosts levelled, in order):
    /// `lacked by host2`, `needs avx, which the pool lost`, …
    pub fn describe(&self, names: &[&str]) -> String {
        let named = |hosts: &HostSet| hosts.iter().filter_map(|i| names.get(i).copied()).collect::<Vec<_>>().join(", ");
        match self {
            LossCause::LackedBy(hosts) => format!("lacked by {}", named(hosts)),
            LossCause::NotAcceptedBy(hosts) => {
                format!("not accepted by {} (their max policy lacks it)", named(hosts))
            }
            LossCause::Dependency(needs) => {
                let needed: Vec<String> = needs.iter().map(|id| feature_name(*id)).collect();
                format!("needs {}, which the pool lost", needed.join(", "))
            }
            LossCause::OutOfRange(hosts) if hosts.is_empty() => "its leaf is beyond the pool's max leaf".into(),
            LossCause::OutOfRange(hosts) => {
                format!("its leaf is beyond the pool's max leaf (held down by {})", named(hosts))
            }
            LossCause::Rule(LevelRule::RuntimeOnly) => "reflects guest state at run time; never levelled".into(),
            LossCause::Rule(rule) => format!("rule {rule:?}"),
        }
    }
}

/// A feature's Xen name, or `word:bit` for a bit no table names.
pub fn feature_name(id: FeatureId) -> String {
    match id.feature() {
        Some(feature) => feature.name.to_string(),
        None => format!("{}:{}", id.word(), id.bit()),
    }
}

impl Levelled {
    /// The losses grouped by the hosts that caused them: host (index into the hosts levelled)
    /// → features it lacked.
    pub fn losses_by_host(&self) -> BTreeMap<usize, Vec<FeatureId>> {
        let mut by_host: BTreeMap<usize, Vec<FeatureId>> = BTreeMap::new();
        for loss in &self.lost {
            if let LossCause::LackedBy(hosts) | LossCause::NotAcceptedBy(hosts) = &loss.cause {
                for host in hosts {
                    by_host.entry(host).or_default().push(loss.feature);
                }
            }
        }
        by_host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpupolicy_featureset::known;

    fn policy(vendor: &[u8; 12], signature: u32, features: &[&str]) -> CpuPolicy {
        let mut p = CpuPolicy::new();
        let word = |i: usize| u32::from_le_bytes(vendor[i * 4..i * 4 + 4].try_into().unwrap());
        p.set_cpuid(CpuidKey::plain(0), Registers::new(0xd, word(0), word(2), word(1)));
        p.set_cpuid(CpuidKey::plain(1), Registers::new(signature, 0, 0, 0));
        p.set_cpuid(CpuidKey::indexed(7, 0), Registers::new(1, 0, 0, 0));
        p.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0008, 0, 0, 0));
        p.set_cpuid(CpuidKey::plain(0x8000_0008), Registers::new(0x3027, 0, 0, 0));
        let fs = Featureset::from_names(features.iter().copied()).unwrap();
        p.set_feature_words(&words_of(&fs));
        p
    }

    fn intel(signature: u32, features: &[&str]) -> CpuPolicy {
        policy(b"GenuineIntel", signature, features)
    }

    #[test]
    fn ordinary_bits_are_anded_and_explained() {
        let a = PoolHost::from_single("a", intel(0x50654, &["fpu", "fxsr", "sse", "sse2", "avx512f", "hypervisor"]));
        let b = PoolHost::from_single("b", intel(0x306f2, &["fpu", "fxsr", "sse", "sse2", "hypervisor"]));
        let pool = level_pool(&[a, b], LevelOptions { explain: true, ..Default::default() }).unwrap();
        let fs = pool.default.policy.featureset();
        assert!(fs.contains(ids::SSE2) && !fs.contains(ids::AVX512F));
        assert_eq!(
            pool.default.lost,
            vec![FeatureLoss { feature: ids::AVX512F, cause: LossCause::LackedBy(HostSet::from([1])) }]
        );
        assert_eq!(pool.default.lost[0].cause.describe(&["a", "b"]), "lacked by b");
        assert_eq!(pool.default.policy.leaf(1).eax, 0x306f2, "the oldest part is the base");
    }

    #[test]
    fn accumulate_and_vulnerability_bits_are_ored() {
        let a = PoolHost::from_single("a", intel(0x50654, &["arch-caps", "md-clear", "rsba"]));
        let b = PoolHost::from_single("b", intel(0x50654, &["arch-caps"]));
        let pool = level_pool(&[a, b], LevelOptions::default()).unwrap();
        for name in ["md-clear", "rsba", "arch-caps"] {
            assert!(pool.default.policy.has_feature(known(name)), "{name}");
        }
        // Without the MSR there is nowhere to report RSBA: the dependency closure removes it.
        let c = PoolHost::from_single("c", intel(0x50654, &["md-clear"]));
        let d = PoolHost::from_single("d", intel(0x50654, &["arch-caps", "rsba"]));
        let pool = level_pool(&[c, d], LevelOptions { explain: true, ..Default::default() }).unwrap();
        assert!(!pool.default.policy.has_feature(ids::RSBA));
        assert!(pool
            .default
            .lost
            .iter()
            .any(|l| l.feature == ids::RSBA && l.cause == LossCause::Dependency(vec![ids::ARCH_CAPS])));
    }

    #[test]
    fn host_reflected_and_runtime_bits() {
        let mut a = intel(0x50654, &["fpu", "no-fpu-sel", "osxsave"]);
        a.set_max_basic_leaf(0xd);
        let b = intel(0x50654, &["fpu"]);
        let pool = level_pool(&[PoolHost::from_single("a", a), PoolHost::from_single("b", b)], LevelOptions::default())
            .unwrap();
        assert!(!pool.default.policy.has_feature(ids::OSXSAVE));
        assert_eq!(pool.reflected.len(), 1);
        assert_eq!(pool.reflected[0].feature, ids::NO_FPU_SEL);
        assert_eq!(
            (pool.reflected[0].with.clone(), pool.reflected[0].without.clone()),
            (HostSet::from([0]), HostSet::from([1]))
        );
        assert_eq!(pool.reflected[0].names(&["a", "b"]), (vec!["a"], vec!["b"]));
    }

    #[test]
    fn rtm_always_abort_needs_every_max_to_have_it() {
        // Host a: TSX disabled by microcode: default hides RTM and sets RTM_ALWAYS_ABORT, max keeps both.
        let a = PoolHost::new("a", intel(0x50654, &["rtm-always-abort"]), intel(0x50654, &["rtm", "rtm-always-abort"]));
        // Host b: working TSX.
        let b = PoolHost::new("b", intel(0x50654, &["rtm"]), intel(0x50654, &["rtm", "rtm-always-abort"]));
        let pool = level_pool(&[a.clone(), b], LevelOptions::default()).unwrap();
        assert!(!pool.default.policy.has_feature(ids::RTM));
        assert!(pool.default.policy.has_feature(ids::RTM_ALWAYS_ABORT));
        assert!(pool.acceptance.policy.has_feature(ids::RTM));
        // Host c never had TSX: XBEGIN faults there.
        let c = PoolHost::from_single("c", intel(0x50654, &[]));
        let pool = level_pool(&[a, c], LevelOptions::default()).unwrap();
        assert!(!pool.default.policy.has_feature(ids::RTM_ALWAYS_ABORT));
    }

    #[test]
    fn limits_take_the_minimum_and_are_explained() {
        let mut a = intel(0x50654, &["fpu"]);
        a.set_max_phys_addr_bits(46);
        a.set_max_basic_leaf(0x16);
        a.set_msr(MSR_PLATFORM_INFO, 1 << 31);
        let mut b = intel(0x50654, &["fpu"]);
        b.set_max_phys_addr_bits(39);
        let pool = level_pool(
            &[PoolHost::from_single("a", a), PoolHost::from_single("b", b)],
            LevelOptions { explain: true, ..Default::default() },
        )
        .unwrap();
        let p = &pool.default.policy;
        assert_eq!((p.max_phys_addr_bits(), p.max_basic_leaf(), p.msr(MSR_PLATFORM_INFO)), (39, 0xd, 0));
        let fields: Vec<LimitField> = pool.default.limits.iter().map(|l| l.field).collect();
        assert_eq!(fields, [LimitField::MaxBasicLeaf, LimitField::MaxPhysAddrBits, LimitField::PlatformInfo]);
        assert!(pool.default.limits.iter().all(|l| l.hosts == vec![1]), "held down by b");
    }

    #[test]
    fn mixed_vendors_are_refused_naming_the_hosts() {
        let a = PoolHost::from_single("a", intel(0x50654, &["fpu"]));
        let b = PoolHost::from_single("b", policy(b"AuthenticAMD", 0x800f12, &["fpu"]));
        let c = PoolHost::from_single("c", intel(0x50654, &["fpu"]));
        let error = level_pool(&[a.clone(), b.clone(), c.clone()], LevelOptions::default()).unwrap_err();
        assert_eq!(error.to_string(), "hosts of different vendors cannot share VMs: Intel: a, c; AMD: b");
        let pool =
            level_pool(&[a.clone(), b.clone(), c], LevelOptions { cross_vendor: true, ..Default::default() }).unwrap();
        assert_eq!(pool.default.policy.vendor(), Vendor::Intel);
        assert_eq!(level_pool(&[], LevelOptions::default()).unwrap_err(), LevelError::EmptyPool);
        // Xen 4.22 removed cross-vendor support: a pool with a 4.22 host cannot be cross-vendor.
        let mut b422 = b;
        b422.xen = crate::XenVersion::parse("4.22.0");
        let error = level_pool(&[a, b422], LevelOptions { cross_vendor: true, ..Default::default() }).unwrap_err();
        assert_eq!(error, LevelError::CrossVendorRefused { hosts: vec!["b".into()] });
    }

    #[test]
    fn a_host_whose_default_and_max_disagree_on_vendor_is_refused() {
        let amd = policy(b"AuthenticAMD", 0x800f12, &["fpu"]);
        let odd = PoolHost::new("odd", intel(0x50654, &["fpu"]), amd);
        let error = level_pool(&[odd], LevelOptions::default()).unwrap_err();
        assert_eq!(error.to_string(), "hosts of different vendors cannot share VMs: Intel: odd; AMD: odd");
    }

    /// A component whose offset and size overflow 32 bits: refused by name, never wrapped,
    /// saturated or panicking (overflow checks are on in tests).
    #[test]
    fn xstate_sizes_that_overflow_32_bits_are_refused() {
        let mut p = intel(0x50654, &["fpu", "xsave", "xsavec", "avx"]);
        p.set_cpuid(CpuidKey::indexed(0xd, 0), Registers::new(0x7, 0x340, 0x340, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 1), Registers::new(0x2, 0, 0, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 2), Registers::new(0xffff_ffff, 0x240, 0x2, 0));
        let error = level_pool(&[PoolHost::from_single("h", p.clone())], LevelOptions::default()).unwrap_err();
        assert_eq!(error, LevelError::XstateSize { host: "h".into(), subleaf: 2 });
        assert!(error.to_string().contains("sub-leaf 0x2"), "{error}");
        // A sane size levels.
        let overflowing = p.clone();
        p.set_cpuid(CpuidKey::indexed(0xd, 2), Registers::new(0x100, 0x240, 0x2, 0));
        let pool = level_pool(&[PoolHost::from_single("h", p)], LevelOptions::default()).unwrap();
        assert_eq!(pool.default.policy.subleaf(0xd, 1).ebx, 576 + 0x100);
        // Into a kept pool: the refusal comes after the acceptance policy is built, and still
        // leaves the empty pool, not a half-levelled one or the previous result.
        let mut kept = pool.clone();
        let options = LevelOptions { explain: true, ..Default::default() };
        let error = level_pool_into(&[PoolHost::from_single("h", overflowing)], options, &mut kept).unwrap_err();
        assert_eq!(error, LevelError::XstateSize { host: "h".into(), subleaf: 2 });
        assert_eq!(kept, LevelledPool::default());
    }

    /// Levelling a policy with very many leaves beyond its max leaf costs time linear in them:
    /// 200,000 extra leaves go in one pass (one at a time this took tens of seconds).
    #[test]
    fn many_out_of_range_leaves_go_in_one_pass() {
        let base = intel(0x50654, &["fpu"]);
        let extra = (0..100_000u32).flat_map(|leaf| [0x20 + leaf, 0x8000_0100 + leaf]);
        let mut cpuid: Vec<(CpuidKey, Registers)> =
            base.cpuid_entries().chain(extra.map(|leaf| (CpuidKey::plain(leaf), Registers::new(1, 0, 0, 0)))).collect();
        cpuid.sort_by_key(|&(key, _)| key);
        let p = CpuPolicy::from_sorted_parts(cpuid, base.msrs().collect());
        let pool = level_pool(&[PoolHost::from_single("h", p)], LevelOptions::default()).unwrap();
        assert!(pool.default.policy.cpuid_len() < 10, "{}", pool.default.policy.cpuid_len());
    }

    /// Xen's rules, each pinned: the first null sub-leaf ends leaves 4 and 0xB, 0xD goes with
    /// no xstate component and beyond the highest, extended leaves compare on their low 16
    /// bits (a max extended leaf of 0 keeps 0x80000000 itself).
    #[test]
    fn out_of_range_clearing_is_xens() {
        let mut p = intel(0x50654, &["fpu"]);
        p.set_max_basic_leaf(0xd);
        for (s, eax) in [(0, 0x121), (1, 0x122), (2, 0), (3, 0x143)] {
            p.set_cpuid(CpuidKey::indexed(4, s), Registers::new(eax, 1, 1, 0));
        }
        for (s, ecx) in [(0, 0x100), (1, 0x201), (2, 0x2), (3, 0x203)] {
            p.set_cpuid(CpuidKey::indexed(0xb, s), Registers::new(1, 1, ecx, 0));
        }
        p.set_cpuid(CpuidKey::indexed(0xd, 0), Registers::new(0x7, 0x340, 0x340, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 2), Registers::new(0x100, 0x240, 0, 0));
        p.set_cpuid(CpuidKey::indexed(0xd, 5), Registers::new(0x40, 0x340, 0, 0));
        clear_out_of_range_leaves(&mut p);
        let subleaves = |p: &CpuPolicy, leaf: u32| -> Vec<u32> {
            p.cpuid_entries().filter(|(k, _)| k.leaf == leaf).filter_map(|(k, _)| k.subleaf).collect()
        };
        assert_eq!(subleaves(&p, 4), [0, 1, 2], "leaf 4 ends at its first null sub-leaf");
        assert_eq!(subleaves(&p, 0xb), [0, 1, 2], "leaf 0xb too");
        assert_eq!(subleaves(&p, 0xd), [0, 2], "0xd beyond the highest component (2) goes");
        // No xstate component at all: all of 0xd goes.
        p.set_cpuid(CpuidKey::indexed(0xd, 0), Registers::ZERO);
        clear_out_of_range_leaves(&mut p);
        assert!(subleaves(&p, 0xd).is_empty());
        // A max extended leaf of 0x80000000 with EAX's low half 0 keeps the leaf itself.
        let mut q = intel(0x50654, &["fpu"]);
        q.set_cpuid(CpuidKey::plain(0x8000_0000), Registers::new(0x8000_0000, 1, 2, 3));
        q.set_cpuid(CpuidKey::plain(0x8000_0001), Registers::new(0, 0, 1, 0));
        clear_out_of_range_leaves(&mut q);
        assert!(q.contains(CpuidKey::plain(0x8000_0000)) && !q.contains(CpuidKey::plain(0x8000_0001)));
    }

    #[test]
    fn each_lost_feature_blames_exactly_the_hosts_lacking_it_in_pools_of_every_block_shape() {
        // Features in several words (1 ECX, 0x80000001 ECX, 7:0 EBX) that are levelled by AND and
        // neither need nor are needed by another, so each loss is one host list.
        let optional: Vec<&str> = [
            "sse3",
            "pclmulqdq",
            "ssse3",
            "cx16",
            "sse4_1",
            "movbe",
            "popcnt",
            "aes",
            "rdrand",
            "lahf_lm",
            "abm",
            "fsgsbase",
            "bmi1",
            "erms",
            "adx",
            "clflushopt",
        ]
        .into_iter()
        .filter(|name| {
            let id = cpupolicy_featureset::feature_by_name(name).unwrap().id;
            level_rule(id) == LevelRule::And
                && prerequisites_of(id).is_empty()
                && cpupolicy_featureset::dependents_of(id).is_empty()
        })
        .collect();
        assert!(optional.len() >= 8, "{optional:?}");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in [1usize, 2, 63, 64, 65, 130, 200] {
            let hosts: Vec<PoolHost> = (0..n)
                .map(|i| {
                    let mut names = vec!["fpu", "fxsr", "sse", "sse2"];
                    for &name in &optional {
                        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                        // Most hosts have most features: a lost feature is lacked by a few.
                        if !(seed >> 33).is_multiple_of(8) {
                            names.push(name);
                        }
                    }
                    PoolHost::from_single(format!("h{i}"), intel(0x50654, &names))
                })
                .collect();
            let pool = level_pool(&hosts, LevelOptions { explain: true, ..Default::default() }).unwrap();
            let mut blamed = 0;
            for loss in &pool.default.lost {
                let lacking: Vec<usize> = (0..n).filter(|&i| !hosts[i].default.has_feature(loss.feature)).collect();
                match &loss.cause {
                    LossCause::LackedBy(set) => {
                        assert_eq!(set, &lacking, "{n} hosts: {:?}", loss.feature);
                        assert_eq!(set.len(), lacking.len());
                        blamed += 1;
                    }
                    other => panic!("{n} hosts: {:?} lost for {other:?}", loss.feature),
                }
            }
            // Every optional feature some host lacks and some host has is lost and explained.
            let expected = optional
                .iter()
                .filter(|name| {
                    let id = cpupolicy_featureset::feature_by_name(name).unwrap().id;
                    let with = hosts.iter().filter(|h| h.default.has_feature(id)).count();
                    with != 0 && with != n
                })
                .count();
            assert_eq!(blamed, expected, "{n} hosts");
        }
    }

    #[test]
    fn transpose64_is_the_bit_by_bit_transpose() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..50 {
            let mut m = [0u64; 64];
            for row in &mut m {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                *row = seed ^ (seed >> 29);
            }
            let mut t = m;
            transpose64(&mut t);
            for (i, row) in m.iter().enumerate() {
                for (j, column) in t.iter().enumerate() {
                    assert_eq!((column >> i) & 1, (row >> j) & 1, "row {i} bit {j}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_leaves_go() {
        let mut p = intel(0x50654, &["fpu", "xsave", "avx", "avx2", "avx-vnni"]);
        assert!(p.has_feature(ids::AVX_VNNI), "7:1 is held");
        p.set_leaf7_max_subleaf(0);
        clear_out_of_range_leaves(&mut p);
        assert!(!p.has_feature(ids::AVX_VNNI));
        assert!(p.contains(CpuidKey::indexed(7, 0)));
    }
}
