// Shared by the targets (included with `include!`): building policies from raw bytes.

use cpupolicy_policy::{CpuPolicy, CpuidKey, Registers};

/// A policy from bytes: each 20-byte chunk is (leaf, sub-leaf or none, eax, ebx, ecx, edx),
/// with the leaf folded into the ranges that mean something, so the fuzzer reaches them.
#[allow(dead_code)]
fn policy_from(bytes: &[u8]) -> CpuPolicy {
    let mut policy = CpuPolicy::new();
    for chunk in bytes.chunks_exact(20) {
        let word = |i: usize| u32::from_le_bytes(chunk[i * 4..i * 4 + 4].try_into().unwrap());
        let raw = word(0);
        let leaf = match raw >> 30 {
            0 => raw & 0x1f,
            1 => 0x8000_0000 | (raw & 0x2f),
            2 => 0x4000_0000 | (raw & 0x100),
            _ => raw,
        };
        let subleaf = (raw & 0x0100_0000 != 0).then_some((raw >> 16) & 0x3f);
        policy.set_cpuid(CpuidKey::new(leaf, subleaf), Registers::new(word(1), word(2), word(3), word(4)));
    }
    policy
}
