//! A fake hypervisor for unit tests: it reads and writes the same bytes Xen would, including
//! faults for memory that is not a hypercall buffer, and can be told to misbehave in ways a
//! real Xen rarely does (ENOBUFS races, unknown versions, restricted descriptors).

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::bindings::{createdomain_4_14 as v12, createdomain_4_17 as v15, xen};
use crate::buffer::{BufferSource, HypercallBuffer, Pod};
use crate::error::{Errno, Error};
use crate::numbers::*;
use crate::transport::Transport;
use crate::types::{DomainId, SerialisedPolicy, XenCpuidLeaf, XenMsrEntry};

const NONE: u32 = !0;

/// What a featureset index answers.
#[derive(Clone, Debug)]
pub(crate) enum FakeFeatureset {
    Words(Vec<u32>),
    /// Index unknown to this Xen (EINVAL).
    Invalid,
    /// Built without this guest type (EOPNOTSUPP).
    Unsupported,
}

#[derive(Clone, Debug)]
pub(crate) struct FakeDomain {
    pub policy: SerialisedPolicy,
    pub hvm: bool,
    pub ran: bool,
    pub config_flags: u32,
    pub emulation_flags: u32,
}

/// The fake's configuration and state.
pub(crate) struct FakeXen {
    pub version: (u16, u16, &'static str),
    pub sysctl_version: u32,
    pub domctl_version: u32,
    pub featuresets: Vec<FakeFeatureset>,
    /// By policy index; `None` = EOPNOTSUPP.
    pub policies: Vec<Option<SerialisedPolicy>>,
    /// NULL-handle answer (compile-time maxima).
    pub max_leaves: u32,
    pub max_msrs: u32,
    /// The next this many data fetches fail with ENOBUFS whatever the size.
    pub enobufs: u32,
    /// EPERM for every hypercall, as a restricted descriptor gets.
    pub restricted: bool,
    pub levelling_caps: Option<u32>,
    pub physinfo_caps: u32,
    /// Times destroydomain answers EAGAIN before it succeeds.
    pub destroy_eagain: u32,
    /// The calling domain.
    pub self_domid: DomainId,
    pub domains: BTreeMap<DomainId, FakeDomain>,
    /// `(hypercall, cmd, interface version)` of every call, for asserting probe behaviour.
    pub log: Vec<(u64, u32, u32)>,
    next_domid: DomainId,
}

impl FakeXen {
    /// A Xen 4.20 host with small but plausible data.
    pub(crate) fn xen_4_20() -> FakeXen {
        let policy = |max_leaf: u32, feat: u32| SerialisedPolicy {
            leaves: vec![
                leaf(0, NONE, [max_leaf, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
                leaf(1, NONE, [0x663, 0x800, 0x8020_0001, feat]),
                leaf(7, 0, [0, 0x209, 0, 0]),
                leaf(0xd, 0, [7, 0x340, 0x340, 0]),
                leaf(0xd, 1, [1, 0, 0, 0]),
                leaf(0x8000_0000, NONE, [0x8000_000a, 0, 0, 0]),
            ],
            msrs: vec![
                XenMsrEntry { idx: 0xce, flags: 0, val: 0x8000_0000 },
                XenMsrEntry { idx: 0x10a, flags: 0, val: 0 },
            ],
        };
        FakeXen {
            version: (4, 20, ".3-fake"),
            sysctl_version: 0x15,
            domctl_version: 0x17,
            featuresets: (0..6).map(|i| FakeFeatureset::Words(vec![0x0781_abfd + i; 19])).collect(),
            policies: (0..6).map(|i| Some(policy(0xd, 0x0781_abfd + i))).collect(),
            max_leaves: 120,
            max_msrs: 2,
            enobufs: 0,
            restricted: false,
            levelling_caps: Some(0x1),
            physinfo_caps: 0b10011, // hvm, pv, shadow
            destroy_eagain: 0,
            self_domid: 0,
            domains: BTreeMap::new(),
            log: Vec::new(),
            next_domid: 1,
        }
    }

    fn sysctl(&mut self, mem: &Arena, addr: u64) -> Result<u64, Errno> {
        let cmd: u32 = mem.read(addr)?;
        let version: u32 = mem.read(addr + 4)?;
        self.log.push((HYPERCALL_SYSCTL, cmd, version));
        if version != self.sysctl_version {
            return Err(Errno(libc::EACCES));
        }
        let u = addr + offset_of!(xen::xen_sysctl, u) as u64;
        match cmd {
            SYSCTL_GET_CPU_FEATURESET => {
                let mut fs: xen::xen_sysctl_cpu_featureset = mem.read(u)?;
                if fs.features.p.is_null() {
                    fs.nr_features = 19;
                    return mem.write(u, fs).map(|_| 0);
                }
                let words = match self.featuresets.get(fs.index as usize) {
                    None | Some(FakeFeatureset::Invalid) => return Err(Errno(libc::EINVAL)),
                    Some(FakeFeatureset::Unsupported) => return Err(Errno(libc::EOPNOTSUPP)),
                    Some(FakeFeatureset::Words(w)) => w.clone(),
                };
                let forced = self.take_enobufs();
                let nr = (fs.nr_features as usize).min(words.len());
                mem.write_slice(fs.features.p as u64, &words[..nr])?;
                fs.nr_features = nr as u32;
                mem.write(u, fs)?;
                if forced || nr < words.len() {
                    return Err(Errno(libc::ENOBUFS));
                }
                Ok(0)
            }
            SYSCTL_GET_CPU_POLICY => {
                let mut p: xen::xen_sysctl_cpu_policy = mem.read(u)?;
                if p._rsvd != 0 || p.index >= 6 {
                    return Err(Errno(libc::EINVAL));
                }
                let Some(policy) = self.policies[p.index as usize].clone() else {
                    return Err(Errno(libc::EOPNOTSUPP));
                };
                let forced = !p.leaves.p.is_null() && self.take_enobufs();
                (p.nr_leaves, p.nr_msrs) =
                    self.copy_out(mem, &policy, p.leaves.p as u64, p.msrs.p as u64, p.nr_leaves, p.nr_msrs, forced)?;
                mem.write(u, p).map(|_| 0)
            }
            SYSCTL_PHYSINFO => {
                let mut info: xen::xen_sysctl_physinfo = mem.read(u)?;
                info.capabilities = self.physinfo_caps;
                info.nr_cpus = 2;
                mem.write(u, info).map(|_| 0)
            }
            SYSCTL_GET_CPU_LEVELLING_CAPS => match self.levelling_caps {
                Some(caps) => mem.write(u, xen::xen_sysctl_cpu_levelling_caps { caps }).map(|_| 0),
                None => Err(Errno(libc::EOPNOTSUPP)),
            },
            _ => Err(Errno(libc::ENOSYS)),
        }
    }

    fn domctl(&mut self, mem: &Arena, addr: u64) -> Result<u64, Errno> {
        let cmd: u32 = mem.read(addr)?;
        let version: u32 = mem.read(addr + 4)?;
        let domid: u16 = mem.read(addr + offset_of!(xen::xen_domctl, domain) as u64)?;
        self.log.push((HYPERCALL_DOMCTL, cmd, version));
        if version != self.domctl_version {
            return Err(Errno(libc::EACCES));
        }
        let u = addr + offset_of!(xen::xen_domctl, u) as u64;
        if cmd == DOMCTL_CREATEDOMAIN {
            let (flags, emulation_flags, max_vcpus, grant_opts) = match self.domctl_version {
                0x12 => {
                    let c: v12::xen_domctl_createdomain = mem.read(u)?;
                    (c.flags, c.arch.emulation_flags, c.max_vcpus, None)
                }
                0x15 | 0x16 => {
                    let c: v15::xen_domctl_createdomain = mem.read(u)?;
                    (c.flags, c.arch.emulation_flags, c.max_vcpus, Some(c.grant_opts))
                }
                _ => {
                    let c: xen::xen_domctl_createdomain = mem.read(u)?;
                    (c.flags, c.arch.emulation_flags, c.max_vcpus, Some(c.grant_opts))
                }
            };
            let hvm = flags & xen::XEN_DOMCTL_CDF_hvm != 0;
            let emu_ok = if hvm {
                emulation_flags == xen::XEN_X86_EMU_ALL & !xen::XEN_X86_EMU_VPCI
            } else {
                emulation_flags == 0
            };
            if max_vcpus < 1 || grant_opts == Some(0) || !emu_ok {
                return Err(Errno(libc::EINVAL));
            }
            let new = self.next_domid;
            self.next_domid += 1;
            let template = self.policies[if hvm { 5 } else { 4 }].clone().ok_or(Errno(libc::EINVAL))?;
            self.domains
                .insert(new, FakeDomain { policy: template, hvm, ran: false, config_flags: flags, emulation_flags });
            return mem.write(addr + offset_of!(xen::xen_domctl, domain) as u64, new).map(|_| 0);
        }
        let Some(domain) = self.domains.get(&domid).cloned() else {
            return Err(Errno(libc::ESRCH));
        };
        match cmd {
            DOMCTL_DESTROYDOMAIN => {
                if self.destroy_eagain > 0 {
                    self.destroy_eagain -= 1;
                    return Err(Errno(libc::EAGAIN));
                }
                self.domains.remove(&domid);
                Ok(0)
            }
            DOMCTL_GET_CPU_POLICY => {
                let mut p: xen::xen_domctl_cpu_policy = mem.read(u)?;
                let forced = !p.leaves.p.is_null() && self.take_enobufs();
                (p.nr_leaves, p.nr_msrs) = self.copy_out(
                    mem,
                    &domain.policy,
                    p.leaves.p as u64,
                    p.msrs.p as u64,
                    p.nr_leaves,
                    p.nr_msrs,
                    forced,
                )?;
                mem.write(u, p).map(|_| 0)
            }
            DOMCTL_SET_CPU_POLICY => {
                if domid == self.self_domid {
                    return Err(Errno(libc::EINVAL));
                }
                if domain.ran {
                    return Err(Errno(libc::EEXIST));
                }
                let mut p: xen::xen_domctl_cpu_policy = mem.read(u)?;
                let max = self.policies[if domain.hvm { 3 } else { 2 }].clone().ok_or(Errno(libc::EOPNOTSUPP))?;
                let result = self.set_policy(mem, &p, domain.policy.clone(), &max);
                match result {
                    Ok(policy) => {
                        self.domains.get_mut(&domid).expect("exists").policy = policy;
                        Ok(0)
                    }
                    Err((errno, (l, s, m))) => {
                        (p.err_leaf, p.err_subleaf, p.err_msr) = (l, s, m);
                        mem.write(u, p)?;
                        Err(errno)
                    }
                }
            }
            _ => Err(Errno(libc::ENOSYS)),
        }
    }

    /// Xen's x86_cpuid/msr_copy_from_buffer and the max-policy audit, in miniature.
    #[allow(clippy::type_complexity)]
    fn set_policy(
        &self,
        mem: &Arena,
        p: &xen::xen_domctl_cpu_policy,
        mut policy: SerialisedPolicy,
        max: &SerialisedPolicy,
    ) -> Result<SerialisedPolicy, (Errno, (u32, u32, u32))> {
        let fail = |errno: i32, l, s, m| Err((Errno(errno), (l, s, m)));
        if p.nr_leaves > self.max_leaves || p.nr_msrs > self.max_msrs {
            return fail(libc::E2BIG, NONE, NONE, NONE);
        }
        let leaves: Vec<XenCpuidLeaf> =
            mem.read_vec(p.leaves.p as u64, p.nr_leaves as usize).map_err(|e| (e, (NONE, NONE, NONE)))?;
        for l in leaves {
            let ok = match l.leaf {
                4 | 0xb => l.subleaf < 8,
                7 => l.subleaf < 3,
                0xd => l.subleaf < 63,
                0..=0x1f | 0x4000_0000 | 0x4000_0100 | 0x8000_0000..=0x8000_0021 => l.subleaf == NONE,
                _ => false,
            };
            if !ok {
                return fail(libc::ERANGE, l.leaf, l.subleaf, NONE);
            }
            match policy.leaves.iter_mut().find(|x| (x.leaf, x.subleaf) == (l.leaf, l.subleaf)) {
                Some(x) => *x = l,
                None => policy.leaves.push(l),
            }
        }
        let msrs: Vec<XenMsrEntry> =
            mem.read_vec(p.msrs.p as u64, p.nr_msrs as usize).map_err(|e| (e, (NONE, NONE, NONE)))?;
        for m in msrs {
            if m.flags != 0 {
                return fail(libc::EINVAL, NONE, NONE, m.idx);
            }
            match m.idx {
                0xce if m.val > u32::MAX as u64 => return fail(libc::EOVERFLOW, NONE, NONE, m.idx),
                0xce | 0x10a => {}
                _ => return fail(libc::ERANGE, NONE, NONE, m.idx),
            }
            match policy.msrs.iter_mut().find(|x| x.idx == m.idx) {
                Some(x) => *x = m,
                None => policy.msrs.push(m),
            }
        }
        let max_leaf = |p: &SerialisedPolicy| p.leaves.iter().find(|l| l.leaf == 0).map_or(0, |l| l.a);
        if max_leaf(&policy) > max_leaf(max) {
            return fail(libc::EINVAL, 0, NONE, NONE);
        }
        policy.leaves.sort();
        Ok(policy)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_out(
        &self,
        mem: &Arena,
        policy: &SerialisedPolicy,
        leaves: u64,
        msrs: u64,
        nr_leaves: u32,
        nr_msrs: u32,
        forced_enobufs: bool,
    ) -> Result<(u32, u32), Errno> {
        let out_leaves = if leaves == 0 {
            self.max_leaves
        } else {
            if forced_enobufs || (nr_leaves as usize) < policy.leaves.len() {
                return Err(Errno(libc::ENOBUFS));
            }
            mem.write_slice(leaves, &policy.leaves)?;
            policy.leaves.len() as u32
        };
        let out_msrs = if msrs == 0 {
            self.max_msrs
        } else {
            if (nr_msrs as usize) < policy.msrs.len() {
                return Err(Errno(libc::ENOBUFS));
            }
            mem.write_slice(msrs, &policy.msrs)?;
            policy.msrs.len() as u32
        };
        Ok((out_leaves, out_msrs))
    }

    fn take_enobufs(&mut self) -> bool {
        let forced = self.enobufs > 0;
        self.enobufs = self.enobufs.saturating_sub(1);
        forced
    }
}

pub(crate) fn leaf(leaf: u32, subleaf: u32, [a, b, c, d]: [u32; 4]) -> XenCpuidLeaf {
    XenCpuidLeaf { leaf, subleaf, a, b, c, d }
}

/// The fake's memory: every buffer it ever handed out, kept until the fake is dropped, so any
/// address can be checked against it like Xen's copy_from_guest would fault on a bad one.
#[derive(Default)]
struct Arena {
    blocks: Vec<Box<[u64]>>,
}

impl Arena {
    /// The address range [addr, addr + len) if it lies in one block.
    fn check(&self, addr: u64, len: usize) -> Result<*mut u8, Errno> {
        for block in &self.blocks {
            let start = block.as_ptr() as u64;
            let end = start + (block.len() * 8) as u64;
            if addr >= start && addr.checked_add(len as u64).is_some_and(|e| e <= end) {
                return Ok(addr as *mut u8);
            }
        }
        Err(Errno(libc::EFAULT))
    }

    fn read<T: Pod>(&self, addr: u64) -> Result<T, Errno> {
        let p = self.check(addr, size_of::<T>())?;
        // SAFETY: `check` proved the range lies inside a live arena block; during a hypercall
        // no Rust reference to that memory exists (Transport::hypercall's contract); T is Pod;
        // read_unaligned needs no alignment.
        Ok(unsafe { p.cast::<T>().read_unaligned() })
    }

    fn write<T: Pod>(&self, addr: u64, value: T) -> Result<(), Errno> {
        let p = self.check(addr, size_of::<T>())?;
        // SAFETY: as for `read`; the block is writable heap memory.
        unsafe { p.cast::<T>().write_unaligned(value) };
        Ok(())
    }

    fn read_vec<T: Pod>(&self, addr: u64, count: usize) -> Result<Vec<T>, Errno> {
        (0..count).map(|i| self.read(addr + (i * size_of::<T>()) as u64)).collect()
    }

    fn write_slice<T: Pod>(&self, addr: u64, values: &[T]) -> Result<(), Errno> {
        for (i, v) in values.iter().enumerate() {
            self.write(addr + (i * size_of::<T>()) as u64, *v)?;
        }
        Ok(())
    }
}

/// A [`Transport`] backed by [`FakeXen`]; clones share the fake, so a test can keep one to
/// inspect and reconfigure while a [`crate::XenHandle`] owns another.
#[derive(Clone)]
pub(crate) struct FakeTransport(Arc<FakeInner>);

struct FakeInner {
    xen: Mutex<FakeXen>,
    arena: Mutex<Arena>,
}

impl FakeTransport {
    pub(crate) fn new(xen: FakeXen) -> FakeTransport {
        FakeTransport(Arc::new(FakeInner { xen: Mutex::new(xen), arena: Mutex::new(Arena::default()) }))
    }

    /// Runs `f` on the fake's state.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut FakeXen) -> R) -> R {
        f(&mut self.0.xen.lock().unwrap())
    }
}

impl Transport for FakeTransport {
    fn alloc(&self, len: usize) -> Result<HypercallBuffer, Error> {
        let mut block = vec![0u64; len.div_ceil(8).max(1)].into_boxed_slice();
        let ptr = NonNull::new(block.as_mut_ptr().cast::<u8>()).expect("boxed slice");
        self.0.arena.lock().unwrap().blocks.push(block);
        // SAFETY: the block lives in the arena until the fake is dropped, which outlives every
        // buffer (buffers are locals of XenHandle methods); it is 8-aligned and `len` bytes fit.
        Ok(unsafe { HypercallBuffer::borrowed(ptr, len) })
    }

    unsafe fn hypercall(&self, op: u64, args: [u64; 5]) -> Result<u64, Errno> {
        let mut xen = self.0.xen.lock().unwrap();
        if xen.restricted {
            return Err(Errno(libc::EPERM));
        }
        let arena = self.0.arena.lock().unwrap();
        match op {
            HYPERCALL_XEN_VERSION => match args[0] {
                XENVER_VERSION => Ok(((xen.version.0 as u64) << 16) | xen.version.1 as u64),
                XENVER_EXTRAVERSION => {
                    let mut extra = [0u8; 16];
                    extra[..xen.version.2.len()].copy_from_slice(xen.version.2.as_bytes());
                    arena.write(args[1], extra).map(|_| 0)
                }
                _ => Err(Errno(libc::ENOSYS)),
            },
            HYPERCALL_SYSCTL => xen.sysctl(&arena, args[0]),
            HYPERCALL_DOMCTL => xen.domctl(&arena, args[0]),
            _ => Err(Errno(libc::ENOSYS)),
        }
    }

    fn buffer_source(&self) -> BufferSource {
        BufferSource::Fake
    }

    fn restrict(&self, _domid: DomainId) -> Result<(), Errno> {
        self.with(|x| x.restricted = true);
        Ok(())
    }
}

#[test]
fn memory_outside_hypercall_buffers_faults() {
    let fake = FakeTransport::new(FakeXen::xen_4_20());
    let on_stack = [0u64; 32];
    // SAFETY: the fake only dereferences addresses inside its own arena; this one is not, so it
    // must answer EFAULT without touching it.
    let r = unsafe { fake.hypercall(HYPERCALL_SYSCTL, [on_stack.as_ptr() as u64, 0, 0, 0, 0]) };
    assert_eq!(r, Err(Errno(libc::EFAULT)));
    let buf = fake.alloc(size_of::<xen::xen_sysctl>()).unwrap();
    assert_eq!(buf.len(), size_of::<xen::xen_sysctl>());
    // SAFETY: the address is a live buffer of the fake's own.
    let r = unsafe { fake.hypercall(HYPERCALL_SYSCTL, [buf.address(), 0, 0, 0, 0]) };
    assert_eq!(r, Err(Errno(libc::EACCES)), "zeroed op: interface version 0 is rejected");
}
