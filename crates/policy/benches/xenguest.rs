//! cpupolicy against Xen's own library, Debian's libxenguest 4.17 (`libxen-dev`), on the same Xen
//! leaf lists of five real policies: three predicted from real CPU dumps of `../shared/cpu-dumps`
//! (Xen 4.20's HVM default) and the host policies of two recorded Xen boots (4.20 on qemu64,
//! 4.22 on Skylake-Server). Leaves to policy (`apply_wire` / `xc_cpu_policy_update_cpuid` and
//! `_update_msrs`, each onto a policy object it reuses), policy to leaves (`to_wire_into` /
//! `xc_cpu_policy_serialise`, each into caller buffers), the migration check
//! (`check_migration` / `xc_cpu_policy_is_compatible`, which compares four limits only), and
//! levelling pools of 2, 64 and 10,000 hosts (nothing in libxenguest levels).
//!
//! Each figure is an instruction count from `valgrind --tool=callgrind` (deterministic here,
//! unlike wall time on a shared machine), counted inside the measured function only and divided
//! by the number of calls, after one uncounted call of the same work on each side (tables built
//! on first use are not per-call cost), with the wall time of the same work run natively beside it; then the
//! targets. It also checks that both libraries serialise each policy to the same leaves. Prints
//! figures only; fails only when a run fails. Run with `cargo bench -p cpupolicy-policy --bench
//! xenguest`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cpupolicy_featureset::GuestKind;
use cpupolicy_policy::{
    check_migration, derive_system_policies, level_pool, level_pool_into, CpuPolicy, DeriveOptions, LevelOptions,
    LevelledPool, PoolHost, SystemPolicy, Vendor, WireLimits, XenCpuidLeaf, XenCpuidReport, XenMsrEntry,
};

#[path = "../tests/common/mod.rs"]
mod common;
mod timing;

use timing::best_of;

/// Counts the heap in use, and its peak, to report a large pool's memory.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the caller's layout; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// Debian's libxenguest 4.17 (`xenguest.h`): the policy object and its four operations.
#[link(name = "xenguest")]
extern "C" {
    fn xc_cpu_policy_init() -> *mut c_void;
    fn xc_cpu_policy_destroy(policy: *mut c_void);
    fn xc_cpu_policy_serialise(
        xch: *mut c_void,
        policy: *const c_void,
        leaves: *mut XenCpuidLeaf,
        nr_leaves: *mut u32,
        msrs: *mut XenMsrEntry,
        nr_msrs: *mut u32,
    ) -> i32;
    fn xc_cpu_policy_update_cpuid(xch: *mut c_void, policy: *mut c_void, leaves: *const XenCpuidLeaf, nr: u32) -> i32;
    fn xc_cpu_policy_update_msrs(xch: *mut c_void, policy: *mut c_void, msrs: *const XenMsrEntry, nr: u32) -> i32;
    fn xc_cpu_policy_is_compatible(xch: *mut c_void, host: *mut c_void, guest: *mut c_void) -> bool;
}

const LIMITS: WireLimits = WireLimits::XEN_4_17;

/// One input: its name and Xen's leaf list and MSRs for it.
struct Input {
    name: String,
    leaves: Vec<XenCpuidLeaf>,
    msrs: Vec<XenMsrEntry>,
}

fn inputs() -> Vec<Input> {
    let mut out = Vec::new();
    let dumps = common::libvirt_dumps().unwrap_or_default();
    for model in ["Xeon-Gold-6130", "EPYC-7601-32-Core", "Xeon-W3520"] {
        let Some((_, text)) = dumps.iter().find(|(name, _)| name == &format!("x86_64-cpuid-{model}.xml")) else {
            continue;
        };
        let raw = CpuPolicy::from_libvirt_xml(text).expect("dump");
        let policies = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).expect("derive");
        let policy = policies.get(SystemPolicy::HvmDefault).expect("HVM default").clone();
        let wire = policy.to_wire(&LIMITS);
        out.push(Input { name: format!("{model} (HVM default)"), leaves: wire.leaves, msrs: wire.msrs });
    }
    if let Some(dir) = common::shared_dir("xen-reference") {
        for (file, name) in [
            ("xen-4.20-qemu64.policy.txt", "Xen 4.20 qemu64 (host)"),
            ("xen-4.22-Skylake-Server.policy.txt", "Xen 4.22 Skylake (host)"),
        ] {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else { continue };
            let bundle = XenCpuidReport::parse(&text).expect("recorded xen-cpuid -p").to_bundle();
            let wire = bundle.policies.get(SystemPolicy::Host).expect("host policy").to_wire(&LIMITS);
            out.push(Input { name: name.to_string(), leaves: wire.leaves, msrs: wire.msrs });
        }
    }
    out
}

/// Intel hosts with Xen 4.20's PV policies predicted from each Intel dump, `n` of them.
fn pool_of(n: usize) -> Vec<PoolHost> {
    let intel: Vec<PoolHost> = common::libvirt_dumps()
        .unwrap_or_default()
        .iter()
        .filter_map(|(name, text)| CpuPolicy::from_libvirt_xml(text).ok().map(|p| (name.clone(), p)))
        .filter(|(_, p)| p.vendor() == Vendor::Intel)
        .map(|(name, raw)| {
            let policies = derive_system_policies(&raw, &DeriveOptions::detect(&raw)).expect("derive");
            PoolHost::from_system(name, &policies, GuestKind::Pv).expect("PV policies")
        })
        .collect();
    (0..n).map(|i| PoolHost { name: format!("host{i}"), ..intel[i % intel.len()].clone() }).collect()
}

// The measured functions: callgrind counts instructions from entry to return of each
// (`--toggle-collect=measured_*`), so they are kept out of line with plain symbol names.

#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_deserialise(policy: &mut CpuPolicy, input: &Input) {
    policy.apply_wire(black_box(&input.leaves), black_box(&input.msrs), &LIMITS).expect("apply_wire");
}

/// Deserialising into a new policy, dropped after: what reading a policy from Xen or from a
/// migration record costs.
#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_new_deserialise(input: &Input) -> u32 {
    let policy = CpuPolicy::from_wire(black_box(&input.leaves), black_box(&input.msrs), &LIMITS).expect("from_wire");
    black_box(&policy).max_basic_leaf()
}

/// libxenguest's equivalent: a new `xc_cpu_policy`, the entries deserialised onto it, destroyed after.
#[no_mangle]
#[inline(never)]
fn measured_xenguest_new_deserialise(input: &Input) {
    // SAFETY: plain constructor; NULL only when out of memory.
    let policy = unsafe { xc_cpu_policy_init() };
    assert!(!policy.is_null());
    xenguest_update(policy, input);
    // SAFETY: from xc_cpu_policy_init, not used afterwards.
    unsafe { xc_cpu_policy_destroy(policy) };
}

fn cpupolicy_policy(input: &Input) -> CpuPolicy {
    CpuPolicy::from_wire(&input.leaves, &input.msrs, &LIMITS).expect("from_wire")
}

#[no_mangle]
#[inline(never)]
fn measured_xenguest_deserialise(policy: *mut c_void, input: &Input) {
    xenguest_update(policy, input);
}

/// libxenguest's deserialisation of `input` onto `policy` (a live xc_cpu_policy).
fn xenguest_update(policy: *mut c_void, input: &Input) {
    // SAFETY: `policy` is a live xc_cpu_policy; the arrays are valid for their lengths and laid
    // out as xen_cpuid_leaf_t / xen_msr_entry_t (repr(C), same fields).
    let status = unsafe {
        xc_cpu_policy_update_cpuid(std::ptr::null_mut(), policy, input.leaves.as_ptr(), input.leaves.len() as u32)
            | xc_cpu_policy_update_msrs(std::ptr::null_mut(), policy, input.msrs.as_ptr(), input.msrs.len() as u32)
    };
    assert_eq!(status, 0, "libxenguest refused {}", input.name);
}

#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_serialise(policy: &CpuPolicy, leaves: &mut [XenCpuidLeaf], msrs: &mut [XenMsrEntry]) -> usize {
    policy.to_wire_into(&LIMITS, leaves, msrs).expect("to_wire_into").0
}

#[no_mangle]
#[inline(never)]
fn measured_xenguest_serialise(policy: *const c_void, leaves: &mut [XenCpuidLeaf], msrs: &mut [XenMsrEntry]) -> u32 {
    xenguest_serialise(policy, leaves, msrs)
}

/// libxenguest's serialisation of `policy` (a live xc_cpu_policy) into the buffers.
fn xenguest_serialise(policy: *const c_void, leaves: &mut [XenCpuidLeaf], msrs: &mut [XenMsrEntry]) -> u32 {
    let (mut nr_leaves, mut nr_msrs) = (leaves.len() as u32, msrs.len() as u32);
    // SAFETY: `policy` is live; the buffers are valid for the lengths passed.
    let status = unsafe {
        xc_cpu_policy_serialise(
            std::ptr::null_mut(),
            policy,
            leaves.as_mut_ptr(),
            &mut nr_leaves,
            msrs.as_mut_ptr(),
            &mut nr_msrs,
        )
    };
    assert_eq!(status, 0, "xc_cpu_policy_serialise");
    nr_leaves
}

#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_check(vm: &CpuPolicy, host: &PoolHost) -> bool {
    check_migration(black_box(vm), black_box(host)).is_compatible()
}

#[no_mangle]
#[inline(never)]
fn measured_xenguest_check(host: *mut c_void, guest: *mut c_void) -> bool {
    // SAFETY: both are live xc_cpu_policy objects.
    unsafe { xc_cpu_policy_is_compatible(std::ptr::null_mut(), host, guest) }
}

#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_level(hosts: &[PoolHost], explain: bool) -> usize {
    let pool = level_pool(black_box(hosts), LevelOptions { cross_vendor: false, explain }).expect("level");
    pool.default.lost.len()
}

#[no_mangle]
#[inline(never)]
fn measured_cpupolicy_level_into(hosts: &[PoolHost], explain: bool, pool: &mut LevelledPool) -> usize {
    level_pool_into(black_box(hosts), LevelOptions { cross_vendor: false, explain }, pool).expect("level");
    pool.default.lost.len()
}

fn xenguest_policy(input: &Input) -> *mut c_void {
    // SAFETY: plain constructor; NULL only when out of memory.
    let policy = unsafe { xc_cpu_policy_init() };
    assert!(!policy.is_null());
    // Not through `measured_xenguest_deserialise`: building the object is not what is counted.
    xenguest_update(policy, input);
    policy
}

/// Runs operation `op` on input `index` `calls` times (the child under callgrind).
fn run(op: &str, index: usize, calls: usize) {
    let inputs = inputs();
    let input = &inputs[index.min(inputs.len().saturating_sub(1))];
    match op {
        "cpupolicy-deserialise" => {
            let mut policy = CpuPolicy::new();
            policy.apply_wire(&input.leaves, &input.msrs, &LIMITS).expect("warm-up");
            (0..calls).for_each(|_| measured_cpupolicy_deserialise(&mut policy, input));
        }
        "xenguest-deserialise" => {
            // SAFETY: plain constructor.
            let policy = unsafe { xc_cpu_policy_init() };
            xenguest_update(policy, input); // the warm-up, not counted
            (0..calls).for_each(|_| measured_xenguest_deserialise(policy, input));
            // SAFETY: from xc_cpu_policy_init, not used afterwards.
            unsafe { xc_cpu_policy_destroy(policy) };
        }
        "cpupolicy-new-deserialise" => {
            let _ = black_box(cpupolicy_policy(input)); // the warm-up, not counted
            (0..calls).for_each(|_| {
                let _ = black_box(measured_cpupolicy_new_deserialise(input));
            });
        }
        "xenguest-new-deserialise" => {
            // SAFETY: the warm-up, not counted: from xc_cpu_policy_init, destroyed once updated.
            unsafe { xc_cpu_policy_destroy(xenguest_policy(input)) };
            (0..calls).for_each(|_| measured_xenguest_new_deserialise(input));
        }
        "cpupolicy-serialise" => {
            let policy = cpupolicy_policy(input);
            let (mut leaves, mut msrs) = (vec![XenCpuidLeaf::default(); 256], vec![XenMsrEntry::default(); 16]);
            policy.to_wire_into(&LIMITS, &mut leaves, &mut msrs).expect("warm-up");
            (0..calls).for_each(|_| {
                let _ = black_box(measured_cpupolicy_serialise(&policy, &mut leaves, &mut msrs));
            });
        }
        "xenguest-serialise" => {
            let policy = xenguest_policy(input);
            let (mut leaves, mut msrs) = (vec![XenCpuidLeaf::default(); 256], vec![XenMsrEntry::default(); 16]);
            xenguest_serialise(policy, &mut leaves, &mut msrs); // the warm-up, not counted
            (0..calls).for_each(|_| {
                let _ = black_box(measured_xenguest_serialise(policy, &mut leaves, &mut msrs));
            });
            // SAFETY: from xc_cpu_policy_init, not used afterwards.
            unsafe { xc_cpu_policy_destroy(policy) };
        }
        "cpupolicy-check" => {
            let policy = cpupolicy_policy(input);
            let host = PoolHost::from_single("host", policy.clone());
            let _ = black_box(check_migration(&policy, &host));
            (0..calls).for_each(|_| {
                let _ = black_box(measured_cpupolicy_check(&policy, &host));
            });
        }
        "xenguest-check" => {
            let (host, guest) = (xenguest_policy(input), xenguest_policy(input));
            // SAFETY: the warm-up, as in `measured_xenguest_check`.
            let _ = black_box(unsafe { xc_cpu_policy_is_compatible(std::ptr::null_mut(), host, guest) });
            (0..calls).for_each(|_| {
                let _ = black_box(measured_xenguest_check(host, guest));
            });
            // SAFETY: from xc_cpu_policy_init, not used afterwards.
            unsafe { (xc_cpu_policy_destroy(host), xc_cpu_policy_destroy(guest)) };
        }
        level => {
            let (into, level) = match level.strip_prefix("level-into-") {
                Some(rest) => (true, rest),
                None => (false, level.strip_prefix("level-").unwrap_or_else(|| panic!("unknown operation {op}"))),
            };
            let (n, explain) = match level.strip_suffix("-explain") {
                Some(n) => (n.parse().expect("hosts"), true),
                None => (level.parse().expect("hosts"), false),
            };
            let hosts = pool_of(n);
            let options = LevelOptions { cross_vendor: false, explain };
            if into {
                // The warm-up levels this pool once into the pool kept: what a re-levelling finds.
                let mut pool = LevelledPool::default();
                level_pool_into(&hosts, options, &mut pool).expect("warm-up");
                (0..calls).for_each(|_| {
                    let _ = black_box(measured_cpupolicy_level_into(&hosts, explain, &mut pool));
                });
            } else {
                // Warm-up on two hosts: the rule tables are built on first use.
                let _ = black_box(level_pool(&hosts[..n.min(2)], options));
                (0..calls).for_each(|_| {
                    let _ = black_box(measured_cpupolicy_level(&hosts, explain));
                });
            }
        }
    }
}

/// Instructions per call of `op` on input `index`, counted by callgrind inside `measured_*`.
fn instructions(op: &str, index: usize, calls: usize) -> Option<f64> {
    let out = std::env::temp_dir().join(format!("cpupolicy-callgrind-{}-{op}-{index}", std::process::id()));
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--toggle-collect=measured_*", "--collect-atstart=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().ok()?)
        .args(["--child", op, &index.to_string(), &calls.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    assert!(status.success(), "the callgrind run of {op} on input {index} failed");
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let total: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))?
        .trim()
        .parse()
        .ok()?;
    Some(total / calls as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, op, index, calls, ..] = args.as_slice() {
        if flag == "--child" {
            run(op, index.parse().expect("input"), calls.parse().expect("calls"));
            return;
        }
    }
    let inputs = inputs();
    if inputs.is_empty() {
        println!("SKIP: ../shared is absent: no real policies to measure");
        return;
    }
    let has_valgrind = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    let count = |op: &str, index: usize, calls: usize| {
        if has_valgrind {
            instructions(op, index, calls).map_or("?".to_string(), |n| format!("{n:.0}"))
        } else {
            "-".to_string()
        }
    };
    let budget = Duration::from_millis(200);
    println!("instructions per call (callgrind), native ns per call in brackets; Debian's libxenguest 4.17 beside");
    println!("{:<40} {:>26} {:>20} {:>20}", "input (leaves)", "op", "cpupolicy", "libxenguest");
    for (i, input) in inputs.iter().enumerate() {
        let policy = cpupolicy_policy(input);
        let xg = xenguest_policy(input);
        let mut reused = CpuPolicy::new();
        // Both libraries must write the same leaves for the policy.
        let (mut leaves, mut msrs) = (vec![XenCpuidLeaf::default(); 256], vec![XenMsrEntry::default(); 16]);
        let nr = measured_xenguest_serialise(xg, &mut leaves, &mut msrs) as usize;
        let ours = policy.to_wire(&LIMITS);
        let agree = ours.leaves == leaves[..nr];
        let host = PoolHost::from_single("host", policy.clone());
        let (mut scratch_leaves, mut scratch_msrs) = (leaves.clone(), msrs.clone());
        let (mut ours_leaves, mut ours_msrs) = (leaves.clone(), msrs.clone());
        let rows: [(&str, &str, Duration, Duration); 4] = [
            (
                "deserialise",
                "deserialise",
                best_of(budget, || measured_cpupolicy_deserialise(&mut reused, input)),
                best_of(budget, || measured_xenguest_deserialise(xg, input)),
            ),
            (
                "deserialise into a new policy",
                "new-deserialise",
                best_of(budget, || {
                    let _ = black_box(measured_cpupolicy_new_deserialise(input));
                }),
                best_of(budget, || measured_xenguest_new_deserialise(input)),
            ),
            (
                "serialise",
                "serialise",
                best_of(budget, || {
                    let _ = black_box(measured_cpupolicy_serialise(&policy, &mut ours_leaves, &mut ours_msrs));
                }),
                best_of(budget, || {
                    let _ = black_box(measured_xenguest_serialise(xg, &mut scratch_leaves, &mut scratch_msrs));
                }),
            ),
            (
                "check (xenguest: 4 limits)",
                "check",
                best_of(budget, || {
                    let _ = black_box(measured_cpupolicy_check(&policy, &host));
                }),
                best_of(budget, || {
                    let _ = black_box(measured_xenguest_check(xg, xg));
                }),
            ),
        ];
        for (op, key, ours_time, theirs_time) in rows {
            let (a, b) = (count(&format!("cpupolicy-{key}"), i, 200), count(&format!("xenguest-{key}"), i, 200));
            println!(
                "{:<40} {:>26} {:>20} {:>20}",
                format!("{} ({} leaves)", input.name, input.leaves.len()),
                op,
                format!("{a} [{:.0}]", ours_time.as_nanos()),
                format!("{b} [{:.0}]", theirs_time.as_nanos())
            );
        }
        println!("{:<40} {:>26} {:>20}", "", "same leaves written", if agree { "yes" } else { "NO" });
        // SAFETY: from xc_cpu_policy_init, not used afterwards.
        unsafe { xc_cpu_policy_destroy(xg) };
    }
    println!("\nlevelling (Xen 4.20's PV policies of the Intel dumps), per host");
    let configurations = [(2usize, false, 50usize), (64, false, 5), (10_000, false, 1), (10_000, true, 1)];
    for ((n, explain, calls), into) in configurations.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        let hosts = pool_of(n);
        let op = format!("level-{}{n}{}", if into { "into-" } else { "" }, if explain { "-explain" } else { "" });
        let per_host = if has_valgrind {
            instructions(&op, 0, calls).map_or("?".to_string(), |total| match n {
                // The 2-host target is for the whole pool.
                2 => format!("{:.0} (pool {total:.0})", total / n as f64),
                _ => format!("{:.0}", total / n as f64),
            })
        } else {
            "-".to_string()
        };
        let before = PEAK.swap(IN_USE.load(Ordering::Relaxed), Ordering::Relaxed);
        let base = IN_USE.load(Ordering::Relaxed);
        let mut kept = LevelledPool::default();
        let time = best_of(budget, || {
            let _ = black_box(if into {
                measured_cpupolicy_level_into(&hosts, explain, &mut kept)
            } else {
                measured_cpupolicy_level(&hosts, explain)
            });
        });
        drop(kept);
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        PEAK.fetch_max(before, Ordering::Relaxed);
        println!(
            "{:<40} {:>26} {:>20} {:>20}",
            format!("{n} hosts{}", if explain { ", explained" } else { "" }),
            if into { "level into a kept pool" } else { "level" },
            format!("{per_host} [{:.0}]", time.as_nanos() as f64 / n as f64),
            format!("heap peak {:.1} MiB", peak as f64 / (1 << 20) as f64)
        );
    }
    println!(
        "\ntargets (issue 16): deserialise and serialise <= 1.0x libxenguest on every input; check <= 300; \
         level <= 5,000 for a 2-host pool, <= 600 per host at 64 hosts, <= 540 per host at 10,000, \
         <= 2,000 per host explained; a 10,000-host pool in <= 10 MB beyond its input"
    );
}
