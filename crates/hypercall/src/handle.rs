//! The safe API: [`XenHandle`] and the operations it offers.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};

use cpupolicy_featureset::Featureset;

use crate::bindings::xen;
use crate::buffer::{BufferSource, HypercallBuffer, Pod};
use crate::createdomain::CreateDomainConfig;
use crate::error::{Errno, Error, Interface, Operation, PolicyRejection, Unavailable};
use crate::numbers::*;
use crate::transport::{Privcmd, Transport};
use crate::types::*;

/// How often a fetch is retried when Xen answers ENOBUFS (its data grew between the size query
/// and the fetch, or it under-reported the size), doubling the buffer each time.
const FETCH_ATTEMPTS: usize = 4;

/// How often `destroydomain` is re-issued while Xen answers EAGAIN (it tears a domain down in
/// steps and asks the caller to come back).
const DESTROY_ATTEMPTS: usize = 10_000;

/// An open connection to Xen through the privcmd driver.
///
/// Owns the privcmd and hypercall-buffer descriptors (closed on drop) and caches the probed
/// interface versions.
///
/// `XenHandle` is `Send + Sync`, and its methods take `&self`: every call allocates its own
/// hypercall buffers, the sysctl/domctl structure included, so concurrent calls never share
/// memory Xen writes to. The price is a `mmap` per call, and a cap on concurrency: each open
/// `/dev/xen/hypercall` gives at most 64 pages (a call uses one to three), beyond which calls
/// fail with [`Error::BufferAllocation`]. The cached versions are atomics; two threads probing
/// at once both find the same answer.
pub struct XenHandle {
    transport: Box<dyn Transport>,
    /// Probed `XEN_SYSCTL_INTERFACE_VERSION`, 0 = not yet known.
    sysctl_version: AtomicU32,
    /// Probed `XEN_DOMCTL_INTERFACE_VERSION`, 0 = not yet known.
    domctl_version: AtomicU32,
}

impl XenHandle {
    /// Opens `/dev/xen/privcmd` (or `/proc/xen/privcmd`) and `/dev/xen/hypercall` if present.
    ///
    /// Nothing is sent to Xen yet; interface versions are probed on first use.
    pub fn open() -> Result<XenHandle, Error> {
        Ok(XenHandle::with_transport(Box::new(Privcmd::open()?)))
    }

    pub(crate) fn with_transport(transport: Box<dyn Transport>) -> XenHandle {
        XenHandle { transport, sysctl_version: AtomicU32::new(0), domctl_version: AtomicU32::new(0) }
    }

    /// Where hypercall buffers come from on this system.
    pub fn buffer_source(&self) -> BufferSource {
        self.transport.buffer_source()
    }

    /// Restricts this handle to hypercalls about `domid` (`IOCTL_PRIVCMD_RESTRICT`).
    ///
    /// This cannot be undone. A restricted handle cannot make the sysctls and domctls this
    /// crate uses: they then fail with [`Error::NotPermitted`]. Meant for deprivileged helpers.
    pub fn restrict(self, domid: DomainId) -> Result<XenHandle, Error> {
        self.transport
            .restrict(domid)
            .map_err(|errno| Error::Hypercall { operation: Operation::Restrict(domid), errno })?;
        Ok(self)
    }

    /// The hypervisor's version. Needs no interface version.
    pub fn xen_version(&self) -> Result<XenVersion, Error> {
        let operation = Operation::XenVersion;
        let fail = |errno| Error::from_hypercall(operation, errno);
        // SAFETY: XENVER_version takes no buffer (the second argument is NULL); the result is
        // the return value.
        let version =
            unsafe { self.transport.hypercall(HYPERCALL_XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]) }.map_err(fail)?;
        let buf = self.alloc(size_of::<xen::xen_extraversion_t>())?;
        // SAFETY: XENVER_extraversion writes a xen_extraversion_t (16 bytes) at the given
        // address, which is `buf`: a live hypercall buffer of that size.
        unsafe { self.transport.hypercall(HYPERCALL_XEN_VERSION, [XENVER_EXTRAVERSION, buf.address(), 0, 0, 0]) }
            .map_err(fail)?;
        let raw: [u8; 16] = buf.read(0);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(XenVersion {
            major: ((version >> 16) & 0xffff) as u32,
            minor: (version & 0xffff) as u32,
            extra: String::from_utf8_lossy(&raw[..end]).into_owned(),
        })
    }

    /// The sysctl and domctl interface versions Xen accepts, probing them if not yet known.
    pub fn interface_versions(&self) -> Result<InterfaceVersions, Error> {
        Ok(InterfaceVersions {
            sysctl: self.interface_version(Interface::Sysctl)?,
            domctl: self.interface_version(Interface::Domctl)?,
        })
    }

    /// What kinds of guests the host can run (`sysctl physinfo`).
    pub fn host_capabilities(&self) -> Result<HostCapabilities, Error> {
        let operation = Operation::Physinfo;
        let mut op = self.sysctl(SYSCTL_PHYSINFO)?;
        op.set_payload(xen::xen_sysctl_physinfo::default());
        // SAFETY: physinfo has no guest handles; Xen writes only inside the op buffer.
        unsafe { op.issue(self, &[]) }.map_err(|e| Error::from_hypercall(operation, e))?;
        // Only the prefix up to `capabilities` (offset 28) is read: it is the same in every
        // version, while what follows moved (4.17 inserted `arch_capabilities` at 32; the struct
        // went from 104 to 112 bytes). Both sizes fit the 128-byte union Xen copies back.
        let info: xen::xen_sysctl_physinfo = op.payload();
        Ok(HostCapabilities::from_bits(info.capabilities))
    }

    /// Which CPUID levelling mechanisms the hardware offers (`get_cpu_levelling_caps`).
    ///
    /// Xen 4.22 removed the sysctl: then [`Error::NotAvailable`].
    pub fn cpu_levelling_caps(&self) -> Result<LevellingCaps, Error> {
        let operation = Operation::LevellingCaps;
        let mut op = self.sysctl(SYSCTL_GET_CPU_LEVELLING_CAPS)?;
        op.set_payload(xen::xen_sysctl_cpu_levelling_caps::default());
        // SAFETY: no guest handles; Xen writes `caps` inside the op buffer.
        match unsafe { op.issue(self, &[]) } {
            Ok(()) => Ok(LevellingCaps { bits: op.payload::<xen::xen_sysctl_cpu_levelling_caps>().caps }),
            Err(Errno(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)) => Err(Error::NotAvailable {
                what: Unavailable::LevellingCaps,
                reason: "this Xen does not have the sysctl (removed in Xen 4.22)",
            }),
            Err(errno) => Err(Error::from_hypercall(operation, errno)),
        }
    }

    /// A system featureset.
    ///
    /// Asks Xen for its word count first (the count depends on the build, not only the
    /// version), then fetches; ENOBUFS is retried with a larger buffer. `PvMax`/`HvmMax` exist
    /// from Xen 4.18 and in some backports without a version bump: elsewhere they are
    /// [`Error::NotAvailable`].
    pub fn system_featureset(&self, which: SystemPolicy) -> Result<Featureset, Error> {
        let operation = Operation::Featureset(which);
        let fail = |errno| Error::from_hypercall(operation, errno);

        // A NULL handle asks for the count. Xen answers this before it looks at the index.
        let mut op = self.sysctl(SYSCTL_GET_CPU_FEATURESET)?;
        op.set_payload(xen::xen_sysctl_cpu_featureset { index: which.featureset_index().get(), ..Default::default() });
        // SAFETY: the features handle is NULL; Xen writes only nr_features in the op buffer.
        unsafe { op.issue(self, &[]) }.map_err(fail)?;
        let mut words = op.payload::<xen::xen_sysctl_cpu_featureset>().nr_features.max(1) as usize;

        for _ in 0..FETCH_ATTEMPTS {
            let array = self.alloc(words * size_of::<u32>())?;
            let mut op = self.sysctl(SYSCTL_GET_CPU_FEATURESET)?;
            op.set_payload(xen::xen_sysctl_cpu_featureset {
                index: which.featureset_index().get(),
                nr_features: words as u32,
                features: xen::__guest_handle_uint32 { p: array.address() as *mut u32 },
            });
            // SAFETY: the only handle is `array`, live for the call and `words` u32s long,
            // which is the count we tell Xen it may write.
            let result = unsafe { op.issue(self, &[&array]) };
            let written = op.payload::<xen::xen_sysctl_cpu_featureset>().nr_features as usize;
            match result {
                Ok(()) => return Ok(Featureset::from_words(array.read_slice::<u32>(written.min(words)))),
                // Xen has more words than it said: ask again with more room.
                Err(Errno(libc::ENOBUFS)) => words *= 2,
                Err(Errno(libc::EINVAL)) => {
                    return Err(Error::NotAvailable {
                        what: Unavailable::Featureset(which),
                        reason: "Xen does not know this featureset index (pv_max/hvm_max came \
                                 with Xen 4.18 and the 4.14.6/4.15.5/4.16.5/4.17.2 backports)",
                    })
                }
                Err(Errno(libc::EOPNOTSUPP)) => {
                    return Err(Error::NotAvailable {
                        what: Unavailable::Featureset(which),
                        reason: "Xen was built without support for this guest type",
                    })
                }
                Err(errno) => return Err(fail(errno)),
            }
        }
        Err(Error::BufferTooSmall { operation, entries: words / 2, attempts: FETCH_ATTEMPTS })
    }

    /// A system CPU policy: its CPUID leaves and MSRs as Xen serialises them.
    ///
    /// A policy the host does not have (an HVM policy without HVM support) is
    /// [`Error::NotAvailable`].
    pub fn system_policy(&self, which: SystemPolicy) -> Result<SerialisedPolicy, Error> {
        let operation = Operation::SystemPolicy(which);
        let request = |leaves: Option<&HypercallBuffer>, msrs: Option<&HypercallBuffer>, nr: (u32, u32)| {
            let mut op = self.sysctl(SYSCTL_GET_CPU_POLICY)?;
            op.set_payload(xen::xen_sysctl_cpu_policy {
                index: which.policy_index().get(),
                nr_leaves: nr.0,
                nr_msrs: nr.1,
                _rsvd: 0,
                leaves: xen::__guest_handle_xen_cpuid_leaf_t { p: handle(leaves) },
                msrs: xen::__guest_handle_xen_msr_entry_t { p: handle(msrs) },
            });
            Ok::<_, Error>(op)
        };
        let counts = |op: &Op| {
            let p: xen::xen_sysctl_cpu_policy = op.payload();
            (p.nr_leaves, p.nr_msrs)
        };
        self.fetch_policy(operation, request, counts, |errno| match errno {
            Errno(libc::EOPNOTSUPP) => Error::NotAvailable {
                what: Unavailable::Policy(which),
                reason: "Xen has no such policy (no support for this guest type on this host \
                         or in this build)",
            },
            errno => Error::from_hypercall(operation, errno),
        })
    }

    /// The CPU policy of domain `domid`.
    pub fn domain_policy(&self, domid: DomainId) -> Result<SerialisedPolicy, Error> {
        let operation = Operation::DomainPolicy(domid);
        let request = |leaves: Option<&HypercallBuffer>, msrs: Option<&HypercallBuffer>, nr: (u32, u32)| {
            let mut op = self.domctl(DOMCTL_GET_CPU_POLICY, domid)?;
            op.set_payload(domctl_policy(leaves, msrs, nr));
            Ok::<_, Error>(op)
        };
        let counts = |op: &Op| {
            let p: xen::xen_domctl_cpu_policy = op.payload();
            (p.nr_leaves, p.nr_msrs)
        };
        self.fetch_policy(operation, request, counts, |errno| Error::from_hypercall(operation, errno))
    }

    /// Sets the CPU policy of domain `domid`, which must not have run yet.
    ///
    /// Xen merges the given leaves and MSRs onto the domain's current policy, so a partial
    /// list changes only what it names. Xen silently clears feature bits the host cannot give
    /// (read the policy back to see what was applied); it refuses malformed input and max
    /// leaves beyond the max policy with [`Error::SetPolicy`], naming the entry.
    pub fn set_domain_policy(
        &self,
        domid: DomainId,
        leaves: &[XenCpuidLeaf],
        msrs: &[XenMsrEntry],
    ) -> Result<(), Error> {
        let operation = Operation::SetDomainPolicy(domid);
        let leaf_buf = self.array(leaves)?;
        let msr_buf = self.array(msrs)?;
        let mut op = self.domctl(DOMCTL_SET_CPU_POLICY, domid)?;
        let mut payload = domctl_policy(leaf_buf.as_ref(), msr_buf.as_ref(), (leaves.len() as u32, msrs.len() as u32));
        // Xen fills these only when deserialising fails; ~0 reads as "no entry named".
        (payload.err_leaf, payload.err_subleaf, payload.err_msr) = (!0, !0, !0);
        op.set_payload(payload);
        let keep: Vec<&HypercallBuffer> = leaf_buf.iter().chain(msr_buf.iter()).collect();
        // SAFETY: the handles are NULL or the buffers in `keep`, which hold exactly the counts
        // given; Xen only reads them, and writes err_* back into the op buffer.
        match unsafe { op.issue(self, &keep) } {
            Ok(()) => Ok(()),
            Err(errno @ Errno(libc::E2BIG | libc::ERANGE | libc::EINVAL | libc::EOVERFLOW | libc::EEXIST)) => {
                let back: xen::xen_domctl_cpu_policy = op.payload();
                let mut rejection =
                    PolicyRejection::from_xen(errno, back.err_leaf, back.err_subleaf, back.err_msr, msrs);
                if let PolicyRejection::TooManyEntries { leaves: l, msrs: m, limit } = &mut rejection {
                    (*l, *m) = (leaves.len(), msrs.len());
                    *limit = self.domain_policy_limits(domid).ok();
                }
                Err(Error::SetPolicy { domid, rejection })
            }
            Err(errno) => Err(Error::from_hypercall(operation, errno)),
        }
    }

    /// Creates a bare domain of `kind`: one vCPU, no memory, never run. Returns its id.
    ///
    /// Meant for probing what Xen does with a policy (set it, read it back, destroy). The
    /// createdomain layout differs between Xen versions and is picked by the probed domctl
    /// interface version.
    pub fn create_domain(&self, kind: DomainKind) -> Result<DomainId, Error> {
        let operation = Operation::CreateDomain;
        let domctl = self.interface_version(Interface::Domctl)?;
        let config = CreateDomainConfig::bare(domctl, kind)?;
        // Domain 0 in the request means "pick a free id".
        let mut op = self.domctl(DOMCTL_CREATEDOMAIN, 0)?;
        match config {
            CreateDomainConfig::V12(c) => op.set_payload(c),
            CreateDomainConfig::V15(c) => op.set_payload(c),
            CreateDomainConfig::V17(c) => op.set_payload(c),
        }
        // SAFETY: createdomain's payload has no guest handles; Xen writes the new domain id
        // into the op buffer.
        unsafe { op.issue(self, &[]) }.map_err(|e| Error::from_hypercall(operation, e))?;
        let domid: u16 = op.buf.read(offset_of!(xen::xen_domctl, domain));
        if domid == 0 || domid >= DOMID_FIRST_RESERVED {
            return Err(Error::Hypercall { operation, errno: Errno(libc::EINVAL) });
        }
        Ok(domid)
    }

    /// Destroys domain `domid`, re-issuing the call while Xen asks to come back (EAGAIN).
    pub fn destroy_domain(&self, domid: DomainId) -> Result<(), Error> {
        let operation = Operation::DestroyDomain(domid);
        for _ in 0..DESTROY_ATTEMPTS {
            let mut op = self.domctl(DOMCTL_DESTROYDOMAIN, domid)?;
            // SAFETY: destroydomain has no payload and no guest handles.
            match unsafe { op.issue(self, &[]) } {
                Ok(()) => return Ok(()),
                Err(Errno(libc::EAGAIN)) => std::thread::yield_now(),
                Err(errno) => return Err(Error::from_hypercall(operation, errno)),
            }
        }
        Err(Error::Hypercall { operation, errno: Errno(libc::EAGAIN) })
    }

    /// Size query, then fetch with retries: the shared body of the system and domain policy
    /// getters. `request` builds the op with the given buffers (None = NULL handle) and counts.
    fn fetch_policy(
        &self,
        operation: Operation,
        request: impl Fn(Option<&HypercallBuffer>, Option<&HypercallBuffer>, (u32, u32)) -> Result<Op, Error>,
        counts: impl Fn(&Op) -> (u32, u32),
        fail: impl Fn(Errno) -> Error,
    ) -> Result<SerialisedPolicy, Error> {
        // NULL handles: Xen answers with the most it could ever serialise (a compile-time
        // maximum, not this policy's count).
        let mut op = request(None, None, (0, 0))?;
        // SAFETY: both handles are NULL; Xen writes the counts into the op buffer only.
        unsafe { op.issue(self, &[]) }.map_err(&fail)?;
        let (mut nr_leaves, mut nr_msrs) = counts(&op);
        (nr_leaves, nr_msrs) = (nr_leaves.max(1), nr_msrs.max(1));

        for _ in 0..FETCH_ATTEMPTS {
            let leaves = self.alloc(nr_leaves as usize * size_of::<XenCpuidLeaf>())?;
            let msrs = self.alloc(nr_msrs as usize * size_of::<XenMsrEntry>())?;
            let mut op = request(Some(&leaves), Some(&msrs), (nr_leaves, nr_msrs))?;
            // SAFETY: the handles are `leaves` and `msrs`, live for the call and sized for the
            // counts we pass, which bound what Xen writes.
            match unsafe { op.issue(self, &[&leaves, &msrs]) } {
                Ok(()) => {
                    let (l, m) = counts(&op);
                    return Ok(SerialisedPolicy {
                        leaves: leaves.read_slice(l.min(nr_leaves) as usize),
                        msrs: msrs.read_slice(m.min(nr_msrs) as usize),
                    });
                }
                Err(Errno(libc::ENOBUFS)) => (nr_leaves, nr_msrs) = (nr_leaves * 2, nr_msrs * 2),
                Err(errno) => return Err(fail(errno)),
            }
        }
        Err(Error::BufferTooSmall {
            operation,
            entries: (nr_leaves / 2 + nr_msrs / 2) as usize,
            attempts: FETCH_ATTEMPTS,
        })
    }

    /// The most leaves and MSRs a domain's policy can take (NULL-handle query).
    fn domain_policy_limits(&self, domid: DomainId) -> Result<(u32, u32), Error> {
        let mut op = self.domctl(DOMCTL_GET_CPU_POLICY, domid)?;
        op.set_payload(domctl_policy(None, None, (0, 0)));
        // SAFETY: NULL handles; Xen writes the counts into the op buffer.
        unsafe { op.issue(self, &[]) }.map_err(|e| Error::from_hypercall(Operation::DomainPolicy(domid), e))?;
        let p: xen::xen_domctl_cpu_policy = op.payload();
        Ok((p.nr_leaves, p.nr_msrs))
    }

    /// The cached interface version, probing it on first use.
    fn interface_version(&self, interface: Interface) -> Result<u32, Error> {
        let cell = match interface {
            Interface::Sysctl => &self.sysctl_version,
            Interface::Domctl => &self.domctl_version,
        };
        match cell.load(Ordering::Acquire) {
            0 => {}
            known => return Ok(known),
        }
        // The version hypercall needs no interface version; its answer says which to try first.
        let xen = self.xen_version();
        if let Err(e @ Error::NotPermitted { .. }) = xen {
            return Err(e);
        }
        let xen = xen.ok();
        let mut tried = Vec::new();
        for version in probe_order(interface, xen.as_ref().map(|v| (v.major as u16, v.minor as u16))) {
            tried.push(version);
            match self.probe(interface, version) {
                Ok(true) => {
                    cell.store(version, Ordering::Release);
                    return Ok(version);
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::UnknownInterfaceVersion { interface, tried, xen: xen.map(|v| v.to_string()) })
    }

    /// Whether Xen accepts `version` for `interface`, by a call with no effect: Xen checks the
    /// version before anything else, so any answer but EACCES means it was accepted.
    fn probe(&self, interface: Interface, version: u32) -> Result<bool, Error> {
        let operation = Operation::Probe(interface);
        let mut op = match interface {
            // A featureset size query (NULL handle): reads a constant.
            Interface::Sysctl => {
                let mut op = Op::new(self, HYPERCALL_SYSCTL, SYSCTL_GET_CPU_FEATURESET, version, None)?;
                op.set_payload(xen::xen_sysctl_cpu_featureset::default());
                op
            }
            // A policy query for DOMID_INVALID: fails with ESRCH right after the version check.
            Interface::Domctl => {
                let mut op = Op::new(self, HYPERCALL_DOMCTL, DOMCTL_GET_CPU_POLICY, version, Some(DOMID_INVALID))?;
                op.set_payload(domctl_policy(None, None, (0, 0)));
                op
            }
        };
        // SAFETY: NULL handles only; Xen reads and writes the op buffer alone.
        match unsafe { op.issue(self, &[]) } {
            Err(Errno(libc::EACCES)) => Ok(false),
            // Answers from before (or instead of) Xen's version check: not evidence either way.
            Err(errno @ Errno(libc::EPERM | libc::EFAULT | libc::ENOSYS | libc::ENOTTY)) => {
                Err(Error::from_hypercall(operation, errno))
            }
            Ok(()) | Err(_) => Ok(true),
        }
    }

    fn sysctl(&self, cmd: u32) -> Result<Op, Error> {
        let version = self.interface_version(Interface::Sysctl)?;
        Op::new(self, HYPERCALL_SYSCTL, cmd, version, None)
    }

    fn domctl(&self, cmd: u32, domid: DomainId) -> Result<Op, Error> {
        let version = self.interface_version(Interface::Domctl)?;
        Op::new(self, HYPERCALL_DOMCTL, cmd, version, Some(domid))
    }

    fn alloc(&self, len: usize) -> Result<HypercallBuffer, Error> {
        self.transport.alloc(len)
    }

    /// `values` copied into a hypercall buffer; `None` (a NULL handle) when empty.
    fn array<T: Pod>(&self, values: &[T]) -> Result<Option<HypercallBuffer>, Error> {
        if values.is_empty() {
            return Ok(None);
        }
        let mut buf = self.alloc(size_of_val(values))?;
        buf.write_slice(values);
        Ok(Some(buf))
    }
}

/// A sysctl or domctl structure in its own hypercall buffer.
struct Op {
    buf: HypercallBuffer,
    hypercall: u64,
    payload_offset: usize,
}

impl Op {
    /// A zeroed op with `cmd`, `interface_version` and (domctl) `domain` filled in.
    fn new(handle: &XenHandle, hypercall: u64, cmd: u32, version: u32, domain: Option<DomainId>) -> Result<Op, Error> {
        let (size, payload_offset) = match domain {
            None => (size_of::<xen::xen_sysctl>(), offset_of!(xen::xen_sysctl, u)),
            Some(_) => (size_of::<xen::xen_domctl>(), offset_of!(xen::xen_domctl, u)),
        };
        let mut buf = handle.alloc(size)?;
        buf.write(offset_of!(xen::xen_sysctl, cmd), cmd);
        buf.write(offset_of!(xen::xen_sysctl, interface_version), version);
        if let Some(domid) = domain {
            buf.write(offset_of!(xen::xen_domctl, domain), domid);
        }
        Ok(Op { buf, hypercall, payload_offset })
    }

    fn set_payload<T: Pod>(&mut self, payload: T) {
        self.buf.write(self.payload_offset, payload);
    }

    fn payload<T: Pod>(&self) -> T {
        self.buf.read(self.payload_offset)
    }

    /// Issues the hypercall on this op.
    ///
    /// # Safety
    ///
    /// Every guest handle set in the payload must be NULL or the address of one of `arrays`,
    /// sized for the counts in the payload.
    unsafe fn issue(&mut self, handle: &XenHandle, arrays: &[&HypercallBuffer]) -> Result<(), Errno> {
        let _ = arrays; // Borrowed only to keep them alive (and unaliased) for the call.
                        // SAFETY: the op itself is in `self.buf`, a hypercall buffer we hold mutably (so no
                        // reference into it exists during the call); the handles inside it point at `arrays`
                        // (our caller's contract).
        unsafe { handle.transport.hypercall(self.hypercall, [self.buf.address(), 0, 0, 0, 0]) }.map(|_| ())
    }
}

// SAFETY: repr(C) structs of integers and guest handles (raw pointers), valid for every bit
// pattern; reading one never dereferences the pointers.
unsafe impl Pod for xen::xen_sysctl_cpu_featureset {}
// SAFETY: as above.
unsafe impl Pod for xen::xen_sysctl_cpu_policy {}
// SAFETY: as above.
unsafe impl Pod for xen::xen_sysctl_cpu_levelling_caps {}
// SAFETY: integers only.
unsafe impl Pod for xen::xen_sysctl_physinfo {}
// SAFETY: as above.
unsafe impl Pod for xen::xen_domctl_cpu_policy {}
// SAFETY: an integer.
unsafe impl Pod for u16 {}

fn handle<T>(buf: Option<&HypercallBuffer>) -> *mut T {
    buf.map_or(std::ptr::null_mut(), |b| b.address() as *mut T)
}

fn domctl_policy(
    leaves: Option<&HypercallBuffer>,
    msrs: Option<&HypercallBuffer>,
    nr: (u32, u32),
) -> xen::xen_domctl_cpu_policy {
    xen::xen_domctl_cpu_policy {
        nr_leaves: nr.0,
        nr_msrs: nr.1,
        leaves: xen::__guest_handle_xen_cpuid_leaf_t { p: handle(leaves) },
        msrs: xen::__guest_handle_xen_msr_entry_t { p: handle(msrs) },
        ..Default::default()
    }
}

/// Versions to try for `interface`: the one this Xen release is known to use first, then every
/// known version newest first (a distribution may patch its Xen's versions).
pub(crate) fn probe_order(interface: Interface, xen: Option<(u16, u16)>) -> Vec<u32> {
    let pick = |&(_, _, sysctl, domctl): &(u16, u16, u32, u32)| match interface {
        Interface::Sysctl => sysctl,
        Interface::Domctl => domctl,
    };
    let mut order: Vec<u32> = INTERFACE_VERSIONS.iter().filter(|row| xen == Some((row.0, row.1))).map(pick).collect();
    for version in INTERFACE_VERSIONS.iter().rev().map(pick) {
        if !order.contains(&version) {
            order.push(version);
        }
    }
    order
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<XenHandle>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{leaf, FakeFeatureset, FakeTransport, FakeXen};

    fn handle_on(xen: FakeXen) -> (XenHandle, FakeTransport) {
        let fake = FakeTransport::new(xen);
        (XenHandle::with_transport(Box::new(fake.clone())), fake)
    }

    fn probes(fake: &FakeTransport) -> Vec<(u64, u32)> {
        fake.with(|x| x.log.iter().map(|&(h, _, v)| (h, v)).collect())
    }

    #[test]
    fn probe_order_tries_the_known_version_first_then_newest_first() {
        assert_eq!(probe_order(Interface::Domctl, Some((4, 17))), [0x15, 0x18, 0x17, 0x16, 0x14, 0x13, 0x12]);
        assert_eq!(probe_order(Interface::Sysctl, Some((4, 14))), [0x13, 0x16, 0x15, 0x14]);
        assert_eq!(probe_order(Interface::Sysctl, None), [0x16, 0x15, 0x14, 0x13]);
        assert_eq!(probe_order(Interface::Domctl, Some((4, 99))), [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12]);
    }

    #[test]
    fn known_xen_needs_one_probe_per_interface_and_caches_it() {
        let (xen, fake) = handle_on(FakeXen::xen_4_20());
        assert_eq!(xen.xen_version().unwrap().to_string(), "4.20.3-fake");
        assert_eq!(xen.interface_versions().unwrap(), InterfaceVersions { sysctl: 0x15, domctl: 0x17 });
        assert_eq!(probes(&fake), [(HYPERCALL_SYSCTL, 0x15), (HYPERCALL_DOMCTL, 0x17)]);
        xen.system_policy(SystemPolicy::Host).unwrap();
        xen.interface_versions().unwrap();
        assert!(probes(&fake)[2..].iter().all(|&(h, v)| h == HYPERCALL_SYSCTL && v == 0x15), "no re-probe");
    }

    #[test]
    fn patched_xen_is_found_by_trying_newest_first() {
        // A distribution's 4.20 with a bumped domctl version we know from 4.22.
        let mut x = FakeXen::xen_4_20();
        x.domctl_version = 0x18;
        let (xen, fake) = handle_on(x);
        assert_eq!(xen.interface_versions().unwrap().domctl, 0x18);
        let domctl: Vec<u32> = probes(&fake).iter().filter(|p| p.0 == HYPERCALL_DOMCTL).map(|p| p.1).collect();
        assert_eq!(domctl, [0x17, 0x18], "4.20's own version first, then newest first");
    }

    #[test]
    fn unknown_version_lists_what_was_tried() {
        let mut x = FakeXen::xen_4_20();
        x.version = (4, 30, "");
        x.sysctl_version = 0x40;
        let (xen, _) = handle_on(x);
        let err = xen.system_policy(SystemPolicy::Raw).unwrap_err();
        match &err {
            Error::UnknownInterfaceVersion { interface: Interface::Sysctl, tried, xen } => {
                assert_eq!(tried, &[0x16, 0x15, 0x14, 0x13]);
                assert_eq!(xen.as_deref(), Some("4.30"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("update cpupolicy"), "{err}");
    }

    #[test]
    fn restricted_descriptor_says_so() {
        let (xen, _) = handle_on(FakeXen::xen_4_20());
        let xen = xen.restrict(5).unwrap();
        let err = xen.system_featureset(SystemPolicy::Host).unwrap_err();
        assert!(matches!(err, Error::NotPermitted { .. }), "{err:?}");
        assert!(err.to_string().contains("restricted"), "{err}");
    }

    #[test]
    fn featureset_takes_the_hypervisors_count() {
        let (xen, _) = handle_on(FakeXen::xen_4_20());
        let fs = xen.system_featureset(SystemPolicy::HvmMax).unwrap();
        assert_eq!(fs.words().len(), 19);
        assert_eq!(fs.words()[0], 0x0781_abfd + 5);
    }

    #[test]
    fn featureset_enobufs_race_is_retried_with_more_room() {
        let (xen, fake) = handle_on(FakeXen::xen_4_20());
        fake.with(|x| x.enobufs = 2);
        assert_eq!(xen.system_featureset(SystemPolicy::Raw).unwrap().words().len(), 19);
        fake.with(|x| x.enobufs = 100);
        let err = xen.system_featureset(SystemPolicy::Raw).unwrap_err();
        assert!(matches!(err, Error::BufferTooSmall { attempts: FETCH_ATTEMPTS, .. }), "{err:?}");
    }

    #[test]
    fn featureset_grown_after_the_size_query_is_fetched_whole() {
        // Xen under-reports (say, a count cached before a live update): ENOBUFS, then retry.
        let (xen, fake) = handle_on(FakeXen::xen_4_20());
        fake.with(|x| x.featuresets[1] = FakeFeatureset::Words((0..30).collect()));
        assert_eq!(xen.system_featureset(SystemPolicy::Host).unwrap().words(), (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn missing_max_featuresets_are_not_available() {
        let mut x = FakeXen::xen_4_20();
        x.featuresets[4] = FakeFeatureset::Invalid;
        x.featuresets[3] = FakeFeatureset::Unsupported;
        let (xen, _) = handle_on(x);
        for which in [SystemPolicy::PvMax, SystemPolicy::HvmDefault] {
            match xen.system_featureset(which) {
                Err(Error::NotAvailable { what: Unavailable::Featureset(w), .. }) => assert_eq!(w, which),
                other => panic!("{which}: {other:?}"),
            }
        }
    }

    #[test]
    fn policy_size_query_gives_the_maximum_and_the_fetch_the_real_count() {
        let (xen, _) = handle_on(FakeXen::xen_4_20());
        let p = xen.system_policy(SystemPolicy::HvmDefault).unwrap();
        assert_eq!((p.leaves.len(), p.msrs.len()), (6, 2));
        assert_eq!(p.leaves[1].d, 0x0781_abfd + 5, "index 5 is hvm_default in policy numbering");
    }

    #[test]
    fn policy_enobufs_is_retried_and_missing_policy_is_not_available() {
        let mut x = FakeXen::xen_4_20();
        x.policies[3] = None;
        x.enobufs = 1;
        let (xen, _) = handle_on(x);
        assert_eq!(xen.system_policy(SystemPolicy::Raw).unwrap().leaves.len(), 6);
        let err = xen.system_policy(SystemPolicy::HvmMax).unwrap_err();
        assert!(matches!(err, Error::NotAvailable { what: Unavailable::Policy(SystemPolicy::HvmMax), .. }), "{err:?}");
    }

    #[test]
    fn levelling_caps_and_their_absence() {
        let (xen, fake) = handle_on(FakeXen::xen_4_20());
        assert!(xen.cpu_levelling_caps().unwrap().faulting());
        fake.with(|x| x.levelling_caps = None);
        assert!(matches!(xen.cpu_levelling_caps(), Err(Error::NotAvailable { what: Unavailable::LevellingCaps, .. })));
    }

    #[test]
    fn domain_lifecycle_on_every_carried_layout() {
        for (major, minor, domctl) in [(4, 14, 0x12), (4, 17, 0x15), (4, 18, 0x16), (4, 20, 0x17), (4, 22, 0x18)] {
            let mut x = FakeXen::xen_4_20();
            x.version = (major, minor, "");
            x.domctl_version = domctl;
            x.destroy_eagain = 3;
            let (xen, fake) = handle_on(x);
            let kind = xen.host_capabilities().unwrap().preferred_domain_kind().unwrap();
            assert_eq!(kind, DomainKind::Hvm { hap: false });
            let domid = xen.create_domain(kind).unwrap();
            let created = fake.with(|x| x.domains[&domid].clone());
            assert!(created.hvm, "{major}.{minor}: flags read at the right offset");
            assert_eq!(created.config_flags, xen::XEN_DOMCTL_CDF_hvm);
            assert_eq!(created.emulation_flags, 0x3ff, "{major}.{minor}: arch config at the right offset");
            let before = xen.domain_policy(domid).unwrap();
            let mut leaf1 = *before.leaves.iter().find(|l| l.leaf == 1).unwrap();
            leaf1.d &= !(1 << 4);
            xen.set_domain_policy(domid, &[leaf1], &[]).unwrap();
            let after = xen.domain_policy(domid).unwrap();
            assert_eq!(after.leaves.iter().find(|l| l.leaf == 1).unwrap().d, leaf1.d);
            xen.destroy_domain(domid).unwrap();
            assert!(fake.with(|x| x.domains.is_empty()));
            assert!(matches!(xen.domain_policy(domid), Err(Error::NoSuchDomain { .. })));
        }
    }

    #[test]
    fn create_domain_refuses_layouts_it_does_not_carry() {
        let mut x = FakeXen::xen_4_20();
        x.version = (4, 16, "");
        x.domctl_version = 0x14;
        x.sysctl_version = 0x14;
        let (xen, _) = handle_on(x);
        assert!(matches!(
            xen.create_domain(DomainKind::Pv),
            Err(Error::UnsupportedCreateDomainLayout { domctl: 0x14 })
        ));
    }

    #[test]
    fn set_policy_errors_name_the_entry() {
        let (xen, fake) = handle_on(FakeXen::xen_4_20());
        let domid = xen.create_domain(DomainKind::Pv).unwrap();
        let reject = |leaves: &[XenCpuidLeaf], msrs: &[XenMsrEntry]| match xen.set_domain_policy(domid, leaves, msrs) {
            Err(Error::SetPolicy { domid: d, rejection }) => {
                assert_eq!(d, domid);
                rejection
            }
            other => panic!("{other:?}"),
        };
        let too_many = vec![leaf(1, !0, [0; 4]); 121];
        assert_eq!(
            reject(&too_many, &[]),
            PolicyRejection::TooManyEntries { leaves: 121, msrs: 0, limit: Some((120, 2)) }
        );
        assert_eq!(reject(&[leaf(7, 9, [0; 4])], &[]), PolicyRejection::LeafOutOfRange { leaf: 7, subleaf: Some(9) });
        assert_eq!(reject(&[leaf(1, 0, [0; 4])], &[]), PolicyRejection::LeafOutOfRange { leaf: 1, subleaf: Some(0) });
        assert_eq!(
            reject(&[], &[XenMsrEntry { idx: 0x10, flags: 0, val: 0 }]),
            PolicyRejection::MsrOutOfRange { index: 0x10 }
        );
        assert_eq!(
            reject(&[], &[XenMsrEntry { idx: 0xce, flags: 1, val: 0 }]),
            PolicyRejection::MsrFlagsNotZero { index: 0xce }
        );
        assert_eq!(
            reject(&[], &[XenMsrEntry { idx: 0xce, flags: 0, val: 1 << 32 }]),
            PolicyRejection::ValueTooWide { index: 0xce }
        );
        assert_eq!(
            reject(&[leaf(0, !0, [0xff, 0, 0, 0])], &[]),
            PolicyRejection::LeafExceedsMax { leaf: 0, subleaf: None }
        );
        fake.with(|x| x.domains.get_mut(&domid).unwrap().ran = true);
        assert_eq!(reject(&[], &[]), PolicyRejection::DomainHasRun);
        fake.with(|x| x.self_domid = domid);
        assert_eq!(reject(&[], &[]), PolicyRejection::CallingDomain);
    }

    #[test]
    fn handle_is_usable_from_many_threads() {
        let (xen, _) = handle_on(FakeXen::xen_4_20());
        std::thread::scope(|s| {
            for which in SystemPolicy::ALL {
                let xen = &xen;
                s.spawn(move || assert_eq!(xen.system_policy(which).unwrap().msrs.len(), 2));
            }
        });
    }
}
