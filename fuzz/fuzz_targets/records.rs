//! Migration-stream records: CPUID (0x11), MSR (0x12) and the topology record. No panic; a
//! record that reads writes back byte for byte.
#![no_main]

use cpupolicy_policy::{cpuid_record_from_bytes, cpuid_record_to_bytes, msr_record_from_bytes, msr_record_to_bytes};
use cpupolicy_topology::TopologyRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(leaves) = cpuid_record_from_bytes(data) {
        assert_eq!(cpuid_record_to_bytes(&leaves), data);
    }
    if let Ok(msrs) = msr_record_from_bytes(data) {
        assert_eq!(msr_record_to_bytes(&msrs), data);
    }
    if let Ok(record) = TopologyRecord::from_bytes(data) {
        let bytes = record.to_bytes();
        assert_eq!(TopologyRecord::from_bytes(&bytes).expect("a written record reads back"), record);
    }
});
