//! This machine's CPU as a raw policy: the `cpuid` instruction, walked leaf by leaf, and the
//! MSRs Xen's policy holds where `/dev/cpu/0/msr` can be read.
//!
//! The only I/O of this crate, kept here. The walk reads what the hardware (or the hypervisor
//! below) reports on the CPU the thread happens to run on: per-CPU fields such as the APIC ID
//! in leaves 1, 0xb and 0x1f are that CPU's.

use crate::{
    subleaf_leaf, CpuPolicy, CpuidKey, Vendor, MSR_ARCH_CAPABILITIES, MSR_PLATFORM_INFO, PLATFORM_INFO_CPUID_FAULTING,
};
use cpupolicy_featureset::ids;

/// A raw policy read from this machine, with notes on what could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativePolicy {
    /// The policy.
    pub policy: CpuPolicy,
    /// What was skipped and why (MSRs unreadable without the `msr` module and root, …).
    pub notes: Vec<String>,
}

/// Why this machine's CPU cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeError {
    /// Not an x86 machine.
    #[error("this machine is not x86: there is no cpuid instruction to read")]
    NotX86,
}

/// Highest leaf read in any range, a bound against garbage limits.
const MAX_LEAVES_PER_RANGE: u32 = 0xff;

/// MSR_CORE_CAPABILITIES (Intel), which libvirt dumps too; enumerated by CPUID 7:0 `EDX[30]`.
const MSR_CORE_CAPABILITIES: u32 = 0xcf;

impl CpuPolicy {
    /// Reads this machine's CPU (see the module documentation): every basic, hypervisor,
    /// extended and (Centaur/Zhaoxin) 0xc0000000 leaf up to the limit each range reports,
    /// sub-leaves per [`SUBLEAF_LEAVES`](crate::SUBLEAF_LEAVES); MSR_ARCH_CAPABILITIES and
    /// MSR_CORE_CAPABILITIES when CPUID enumerates them, and the CPUID faulting bit of
    /// PLATFORM_INFO on Intel (its other bits are frequency ratios no policy describes).
    pub fn read_native() -> Result<NativePolicy, NativeError> {
        let cpuid = instruction::cpuid().ok_or(NativeError::NotX86)?;
        let mut policy = CpuPolicy::new();
        let read_range = |policy: &mut CpuPolicy, base: u32| {
            let max = cpuid(base, 0).eax;
            if max < base || max - base > MAX_LEAVES_PER_RANGE {
                return;
            }
            for leaf in base..=max {
                match subleaf_leaf(leaf) {
                    Some(row) => {
                        for (subleaf, registers) in row.walk.walk(|subleaf| cpuid(leaf, subleaf)) {
                            policy.set_cpuid(CpuidKey::indexed(leaf, subleaf), registers);
                        }
                    }
                    None => policy.set_cpuid(CpuidKey::plain(leaf), cpuid(leaf, 0)),
                }
            }
        };
        read_range(&mut policy, 0);
        if policy.has_feature(ids::HYPERVISOR) {
            read_range(&mut policy, 0x4000_0000);
            read_range(&mut policy, 0x4000_0100);
        }
        read_range(&mut policy, 0x8000_0000);
        if matches!(policy.vendor(), Vendor::Centaur | Vendor::Shanghai) {
            read_range(&mut policy, 0xc000_0000);
        }

        let mut notes = Vec::new();
        read_msrs(&mut policy, &mut notes);
        Ok(NativePolicy { policy, notes })
    }
}

fn read_msrs(policy: &mut CpuPolicy, notes: &mut Vec<String>) {
    let edx7 = policy.subleaf(7, 0).edx;
    let mut wanted: Vec<(u32, u64)> = Vec::new();
    if policy.vendor() == Vendor::Intel {
        wanted.push((MSR_PLATFORM_INFO, PLATFORM_INFO_CPUID_FAULTING));
    }
    if edx7 & (1 << 30) != 0 {
        wanted.push((MSR_CORE_CAPABILITIES, u64::MAX));
    }
    if edx7 & (1 << 29) != 0 {
        wanted.push((MSR_ARCH_CAPABILITIES, u64::MAX));
    }
    if wanted.is_empty() {
        return;
    }
    let path = "/dev/cpu/0/msr";
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            let names: Vec<String> = wanted.iter().map(|(index, _)| format!("{index:#x}")).collect();
            notes.push(format!("MSRs {} not read: {path}: {error} (needs the msr module and root)", names.join(", ")));
            return;
        }
    };
    for (index, mask) in wanted {
        match read_msr(&file, index) {
            Ok(value) => policy.set_msr(index, value & mask),
            Err(error) => notes.push(format!("MSR {index:#x} not read: {error}")),
        }
    }
}

#[cfg(unix)]
fn read_msr(file: &std::fs::File, index: u32) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0; 8];
    file.read_exact_at(&mut bytes, u64::from(index))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(not(unix))]
fn read_msr(_file: &std::fs::File, _index: u32) -> std::io::Result<u64> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "MSR device reads need Unix"))
}

/// The `cpuid` instruction, where there is one. Safe to call since Rust 1.94 (the
/// instruction exists on every x86-64 CPU and every x86 one Rust supports).
mod instruction {
    use crate::Registers;

    #[cfg(target_arch = "x86_64")]
    pub(super) fn cpuid() -> Option<fn(u32, u32) -> Registers> {
        fn read(leaf: u32, subleaf: u32) -> Registers {
            let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
            Registers::new(r.eax, r.ebx, r.ecx, r.edx)
        }
        Some(read)
    }

    #[cfg(target_arch = "x86")]
    pub(super) fn cpuid() -> Option<fn(u32, u32) -> Registers> {
        fn read(leaf: u32, subleaf: u32) -> Registers {
            let r = core::arch::x86::__cpuid_count(leaf, subleaf);
            Registers::new(r.eax, r.ebx, r.ecx, r.edx)
        }
        Some(read)
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    pub(super) fn cpuid() -> Option<fn(u32, u32) -> Registers> {
        None
    }
}
