//! Exercises `cpupolicy-hypercall` against a real Xen. Run as root in dom0:
//!
//! ```text
//! cargo build --release -p cpupolicy-hypercall --example xen-selftest
//! sudo target/release/examples/xen-selftest
//! ```
//!
//! It reads the version, interface versions, every featureset and system policy; creates a
//! bare, never-run domain; sets a policy with one feature bit removed and checks Xen applied it;
//! provokes each error `set_cpu_policy` can return and checks the entry Xen names; destroys the
//! domain; and checks a restricted descriptor is refused. Every check prints one `PASS` or
//! `FAIL` line (`NOTE` lines are information); the last line is `N passed, M failed`, and the
//! exit status is 0 only when nothing failed.
//!
//! Two helper modes leave a domain behind for other tools to look at:
//! `xen-selftest create-domain pv|hvm|hvm-shadow` creates a bare domain and prints its id;
//! `xen-selftest destroy-domain DOMID` destroys it.

use std::process::ExitCode;

use cpupolicy_featureset::FeatureId;
use cpupolicy_hypercall::{
    DomainId, DomainKind, Error, HostCapabilities, PolicyRejection, SerialisedPolicy, SystemPolicy, Unavailable,
    XenCpuidLeaf, XenHandle, XenMsrEntry, XEN_CPUID_NO_SUBLEAF,
};

const NO_SUBLEAF: u32 = XEN_CPUID_NO_SUBLEAF;
/// MSR_INTEL_PLATFORM_INFO: in every policy since 4.14, 32 bits wide in Xen's policy.
const MSR_PLATFORM_INFO: u32 = 0xce;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => self_test(),
        ["create-domain", kind] => {
            let kind = match *kind {
                "pv" => DomainKind::Pv,
                "hvm" => DomainKind::Hvm { hap: true },
                "hvm-shadow" => DomainKind::Hvm { hap: false },
                other => return usage(&format!("unknown domain kind '{other}'")),
            };
            match XenHandle::open().and_then(|xen| xen.create_domain(kind)) {
                Ok(domid) => {
                    println!("{domid}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage(&format!("create {kind} domain: {e}")),
            }
        }
        ["destroy-domain", domid] => match domid.parse::<DomainId>() {
            Ok(domid) => match XenHandle::open().and_then(|xen| xen.destroy_domain(domid)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => usage(&format!("destroy domain {domid}: {e}")),
            },
            Err(_) => usage(&format!("bad domain id '{domid}'")),
        },
        _ => usage("unknown arguments"),
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("xen-selftest: {error}");
    eprintln!("usage: xen-selftest | xen-selftest create-domain pv|hvm|hvm-shadow | xen-selftest destroy-domain DOMID");
    ExitCode::from(2)
}

fn self_test() -> ExitCode {
    let mut t = Tally::default();
    let xen = match XenHandle::open() {
        Ok(xen) => xen,
        Err(e) => {
            t.fail("open privcmd", e);
            return t.finish();
        }
    };
    t.pass("open privcmd", format!("buffers from {:?}", xen.buffer_source()));

    let version = match xen.xen_version() {
        Ok(v) => {
            t.pass("xen_version", &v);
            v
        }
        Err(e) => {
            t.fail("xen_version", e);
            return t.finish();
        }
    };
    match xen.interface_versions() {
        Ok(v) => t.pass("interface versions", v),
        Err(e) => {
            t.fail("interface versions", e);
            return t.finish();
        }
    }
    let caps = match xen.host_capabilities() {
        Ok(c) => {
            t.pass("physinfo", format!("{c:?}"));
            c
        }
        Err(e) => {
            t.fail("physinfo", e);
            return t.finish();
        }
    };
    match xen.cpu_levelling_caps() {
        Ok(c) => t.pass("levelling caps", format!("{:#x} [{}]", c.bits, c.names().join(" "))),
        Err(Error::NotAvailable { .. }) if (version.major, version.minor) >= (4, 22) => {
            t.pass("levelling caps", "not available, as expected from Xen 4.22")
        }
        Err(e) => t.fail("levelling caps", e),
    }

    let featuresets = featuresets(&xen, &mut t, caps);
    let policies = policies(&xen, &mut t, caps);
    featureset_matches_policy(&mut t, &featuresets, &policies);

    match caps.preferred_domain_kind() {
        Some(kind) => domain_tests(&xen, &mut t, kind),
        None => t.fail("create domain", "host reports neither HVM nor PV support"),
    }

    match XenHandle::open().and_then(|h| h.restrict(1)) {
        Ok(restricted) => match restricted.system_policy(SystemPolicy::Host) {
            Err(Error::NotPermitted { .. }) => t.pass("restricted descriptor", "EPERM -> NotPermitted"),
            other => t.fail("restricted descriptor", format!("expected NotPermitted, got {other:?}")),
        },
        Err(e) => t.fail("restricted descriptor", e),
    }
    t.finish()
}

fn featuresets(xen: &XenHandle, t: &mut Tally, caps: HostCapabilities) -> Vec<(SystemPolicy, Vec<u32>)> {
    let mut out = Vec::new();
    for which in SystemPolicy::ALL {
        let name = format!("featureset {which}");
        match xen.system_featureset(which) {
            Ok(fs) if fs.words().is_empty() => t.fail(&name, "no words"),
            Ok(fs) => {
                let words: Vec<String> = fs.words().iter().map(|w| format!("{w:08x}")).collect();
                t.pass(&name, format!("{} words: {}", words.len(), words.join(":")));
                out.push((which, fs.words().to_vec()));
            }
            // pv_max/hvm_max: only from 4.18 or with the backport; HVM ones need HVM.
            Err(Error::NotAvailable { what: Unavailable::Featureset(w), reason })
                if matches!(w, SystemPolicy::PvMax | SystemPolicy::HvmMax)
                    || (!caps.hvm && matches!(w, SystemPolicy::HvmDefault)) =>
            {
                t.note(&name, format!("not available: {reason}"))
            }
            Err(e) => t.fail(&name, e),
        }
    }
    out
}

fn policies(xen: &XenHandle, t: &mut Tally, caps: HostCapabilities) -> Vec<(SystemPolicy, SerialisedPolicy)> {
    let mut out = Vec::new();
    for which in SystemPolicy::ALL {
        let name = format!("policy {which}");
        match xen.system_policy(which) {
            Ok(p) if find(&p, 0, NO_SUBLEAF).is_none() => t.fail(&name, "no leaf 0"),
            Ok(p) => {
                t.pass(
                    &name,
                    format!(
                        "{} leaves, {} MSRs, max leaf {:#x}",
                        p.leaves.len(),
                        p.msrs.len(),
                        find(&p, 0, NO_SUBLEAF).map_or(0, |l| l.a)
                    ),
                );
                out.push((which, p));
            }
            Err(Error::NotAvailable { what: Unavailable::Policy(w), reason })
                if !caps.hvm && matches!(w, SystemPolicy::HvmMax | SystemPolicy::HvmDefault) =>
            {
                t.note(&name, format!("not available (no HVM): {reason}"))
            }
            Err(e) => t.fail(&name, e),
        }
    }
    out
}

/// Xen builds both from the same structure: featureset word 0 is leaf 1 EDX, word 1 leaf 1 ECX,
/// word 5 leaf 7.0 EBX. Comparing them proves the two index numberings were not mixed up.
fn featureset_matches_policy(t: &mut Tally, fs: &[(SystemPolicy, Vec<u32>)], pol: &[(SystemPolicy, SerialisedPolicy)]) {
    let pairs = [
        (SystemPolicy::Raw, SystemPolicy::Raw),
        (SystemPolicy::Host, SystemPolicy::Host),
        (SystemPolicy::PvDefault, SystemPolicy::PvDefault),
        (SystemPolicy::HvmDefault, SystemPolicy::HvmDefault),
        (SystemPolicy::PvMax, SystemPolicy::PvMax),
        (SystemPolicy::HvmMax, SystemPolicy::HvmMax),
    ];
    for (f, p) in pairs {
        let (Some((_, words)), Some((_, policy))) = (fs.iter().find(|x| x.0 == f), pol.iter().find(|x| x.0 == p))
        else {
            continue;
        };
        let leaf1 = find(policy, 1, NO_SUBLEAF).copied().unwrap_or_default();
        let leaf7 = find(policy, 7, 0).copied().unwrap_or_default();
        let want = [(0, leaf1.d), (1, leaf1.c), (5, leaf7.b)];
        let bad: Vec<String> = want
            .iter()
            .filter(|&&(w, v)| words.get(w).copied().unwrap_or(0) != v)
            .map(|&(w, v)| format!("word {w} {:08x} != policy {v:08x}", words.get(w).copied().unwrap_or(0)))
            .collect();
        let name = format!("featureset {f} == policy {p}");
        if bad.is_empty() {
            t.pass(&name, "words 0, 1, 5 agree with leaves 1.EDX, 1.ECX, 7.0.EBX");
        } else {
            t.fail(&name, bad.join("; "));
        }
    }
}

fn domain_tests(xen: &XenHandle, t: &mut Tally, kind: DomainKind) {
    let domid = match xen.create_domain(kind) {
        Ok(d) => {
            t.pass("create domain", format!("{kind} domain {d}"));
            d
        }
        Err(e) => return t.fail("create domain", format!("{kind}: {e}")),
    };
    let guard = Destroy { xen, domid };

    let before = match xen.domain_policy(domid) {
        Ok(p) => {
            t.pass("get domain policy", format!("{} leaves, {} MSRs", p.leaves.len(), p.msrs.len()));
            p
        }
        Err(e) => return t.fail("get domain policy", e),
    };

    // Remove one feature present in the domain's leaf data.
    let candidates = [
        (1, NO_SUBLEAF, 'c', 13),
        (1, NO_SUBLEAF, 'c', 0),
        (1, NO_SUBLEAF, 'c', 23),
        (0x8000_0001, NO_SUBLEAF, 'c', 0),
        (1, NO_SUBLEAF, 'd', 8),
    ];
    let chosen = candidates.iter().find_map(|&(leaf, sub, reg, bit)| {
        let l = *find(&before, leaf, sub)?;
        (reg_of(&l, reg) & (1 << bit) != 0).then_some((l, reg, bit))
    });
    let after = match chosen {
        None => {
            t.fail("set domain policy", "none of the candidate feature bits is present");
            before.clone()
        }
        Some((mut l, reg, bit)) => {
            let word = match (l.leaf, reg) {
                (1, 'd') => 0,
                (1, 'c') => 1,
                _ => 3,
            };
            let feature = FeatureId::new(word, bit).map(|f| f.to_string()).unwrap_or_default();
            *reg_mut(&mut l, reg) &= !(1 << bit);
            match xen.set_domain_policy(domid, &[l], &[]) {
                Err(e) => {
                    t.fail("set domain policy", e);
                    before.clone()
                }
                Ok(()) => match xen.domain_policy(domid) {
                    Err(e) => {
                        t.fail("read back domain policy", e);
                        before.clone()
                    }
                    Ok(after) => {
                        let got = find(&after, l.leaf, l.subleaf).map_or(0, |x| reg_of(x, reg));
                        if got & (1 << bit) == 0 {
                            t.pass(
                                "set domain policy",
                                format!("removed {feature} (leaf {:#x} {reg}X bit {bit}); read back cleared", l.leaf),
                            );
                        } else {
                            t.fail("set domain policy", format!("{feature} still set after set_cpu_policy"));
                        }
                        let other_changed = before
                            .leaves
                            .iter()
                            .filter(|b| (b.leaf, b.subleaf) != (l.leaf, l.subleaf) && b.leaf != 0xd)
                            .filter(|b| find(&after, b.leaf, b.subleaf) != Some(b))
                            .count();
                        t.note("set domain policy", format!("{other_changed} other leaves changed (Xen clears dependent features and recomputes derived leaves)"));
                        after
                    }
                },
            }
        }
    };

    let leaf0 = find(&after, 0, NO_SUBLEAF).copied().unwrap_or_default();
    type Expect = fn(&PolicyRejection) -> bool;
    let rejects: Vec<(&str, Vec<XenCpuidLeaf>, Vec<XenMsrEntry>, Expect)> = vec![
        ("E2BIG too many leaves", vec![leaf0; 1000], vec![], |r| {
            matches!(r, PolicyRejection::TooManyEntries { leaves: 1000, limit: Some(_), .. })
        }),
        ("ERANGE leaf 7 sub-leaf 99", vec![XenCpuidLeaf { leaf: 7, subleaf: 99, ..Default::default() }], vec![], |r| {
            *r == PolicyRejection::LeafOutOfRange { leaf: 7, subleaf: Some(99) }
        }),
        (
            "ERANGE leaf 1 with a sub-leaf",
            vec![XenCpuidLeaf { leaf: 1, subleaf: 0, ..Default::default() }],
            vec![],
            |r| *r == PolicyRejection::LeafOutOfRange { leaf: 1, subleaf: Some(0) },
        ),
        (
            "ERANGE leaf 0x50000000",
            vec![XenCpuidLeaf { leaf: 0x5000_0000, subleaf: NO_SUBLEAF, ..Default::default() }],
            vec![],
            |r| *r == PolicyRejection::LeafOutOfRange { leaf: 0x5000_0000, subleaf: None },
        ),
        ("ERANGE unknown MSR 0x10", vec![], vec![XenMsrEntry { idx: 0x10, flags: 0, val: 0 }], |r| {
            *r == PolicyRejection::MsrOutOfRange { index: 0x10 }
        }),
        ("EINVAL MSR flags", vec![], vec![XenMsrEntry { idx: MSR_PLATFORM_INFO, flags: 1, val: 0 }], |r| {
            *r == PolicyRejection::MsrFlagsNotZero { index: MSR_PLATFORM_INFO }
        }),
        ("EOVERFLOW MSR value", vec![], vec![XenMsrEntry { idx: MSR_PLATFORM_INFO, flags: 0, val: 1 << 32 }], |r| {
            *r == PolicyRejection::ValueTooWide { index: MSR_PLATFORM_INFO }
        }),
        ("EINVAL max leaf beyond max policy", vec![XenCpuidLeaf { a: 0xff, ..leaf0 }], vec![], |r| {
            *r == PolicyRejection::LeafExceedsMax { leaf: 0, subleaf: None }
        }),
    ];
    for (name, leaves, msrs, expected) in rejects {
        match xen.set_domain_policy(domid, &leaves, &msrs) {
            Err(Error::SetPolicy { rejection, .. }) if expected(&rejection) => t.pass(name, &rejection),
            Err(Error::SetPolicy { rejection, .. }) => t.fail(name, format!("unexpected rejection: {rejection:?}")),
            other => t.fail(name, format!("expected a rejection, got {other:?}")),
        }
        // A refused policy must leave the domain's as it was.
        match xen.domain_policy(domid) {
            Ok(now) if now == after => {}
            Ok(_) => t.fail(name, "domain policy changed although Xen refused the update"),
            Err(e) => t.fail(name, e),
        }
    }
    // The caller's own domain (dom0 here): EINVAL with no entry named.
    match xen.set_domain_policy(0, &[], &[]) {
        Err(Error::SetPolicy { rejection: PolicyRejection::CallingDomain, .. }) => {
            t.pass("EINVAL own domain", "CallingDomain")
        }
        other => t.fail("EINVAL own domain", format!("{other:?}")),
    }

    drop(guard);
    match xen.domain_policy(domid) {
        Err(Error::NoSuchDomain { .. }) => t.pass("destroy domain", format!("domain {domid} gone")),
        other => t.fail("destroy domain", format!("domain {domid} still answers: {other:?}")),
    }
}

/// Destroys the test domain however the tests end.
struct Destroy<'a> {
    xen: &'a XenHandle,
    domid: DomainId,
}

impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.xen.destroy_domain(self.domid) {
            println!("FAIL destroy domain {}: {e}", self.domid);
        }
    }
}

fn find(p: &SerialisedPolicy, leaf: u32, subleaf: u32) -> Option<&XenCpuidLeaf> {
    p.leaves.iter().find(|l| l.leaf == leaf && l.subleaf == subleaf)
}

fn reg_of(l: &XenCpuidLeaf, reg: char) -> u32 {
    match reg {
        'a' => l.a,
        'b' => l.b,
        'c' => l.c,
        _ => l.d,
    }
}

fn reg_mut(l: &mut XenCpuidLeaf, reg: char) -> &mut u32 {
    match reg {
        'a' => &mut l.a,
        'b' => &mut l.b,
        'c' => &mut l.c,
        _ => &mut l.d,
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn pass(&mut self, name: &str, detail: impl std::fmt::Display) {
        self.passed += 1;
        println!("PASS {name}: {detail}");
    }

    fn fail(&mut self, name: &str, detail: impl std::fmt::Display) {
        self.failed += 1;
        println!("FAIL {name}: {detail}");
    }

    fn note(&mut self, name: &str, detail: impl std::fmt::Display) {
        println!("NOTE {name}: {detail}");
    }

    fn finish(self) -> ExitCode {
        println!("xen-selftest: {} passed, {} failed", self.passed, self.failed);
        if self.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
