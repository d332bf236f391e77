//! [`SlotIndex`]: a slot number ([`crate::layout::slot_of`]) as a type whose values the
//! compiler knows to be below [`SLOTS`], so that indexing a policy's slot array with one needs
//! no bounds check.

use crate::layout::SLOTS;

/// A slot number below [`SLOTS`], one byte. The variants are the numbers themselves (`S0` is
/// slot 0); the type exists for its range, which lets a store through it skip the bounds
/// check (a policy deserialised from Xen's format stores every entry so).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SlotIndex {
    S0 = 0,
    S1 = 1,
    S2 = 2,
    S3 = 3,
    S4 = 4,
    S5 = 5,
    S6 = 6,
    S7 = 7,
    S8 = 8,
    S9 = 9,
    S10 = 10,
    S11 = 11,
    S12 = 12,
    S13 = 13,
    S14 = 14,
    S15 = 15,
    S16 = 16,
    S17 = 17,
    S18 = 18,
    S19 = 19,
    S20 = 20,
    S21 = 21,
    S22 = 22,
    S23 = 23,
    S24 = 24,
    S25 = 25,
    S26 = 26,
    S27 = 27,
    S28 = 28,
    S29 = 29,
    S30 = 30,
    S31 = 31,
    S32 = 32,
    S33 = 33,
    S34 = 34,
    S35 = 35,
    S36 = 36,
    S37 = 37,
    S38 = 38,
    S39 = 39,
    S40 = 40,
    S41 = 41,
    S42 = 42,
    S43 = 43,
    S44 = 44,
    S45 = 45,
    S46 = 46,
    S47 = 47,
    S48 = 48,
    S49 = 49,
    S50 = 50,
    S51 = 51,
    S52 = 52,
    S53 = 53,
    S54 = 54,
    S55 = 55,
    S56 = 56,
    S57 = 57,
    S58 = 58,
    S59 = 59,
    S60 = 60,
    S61 = 61,
    S62 = 62,
    S63 = 63,
    S64 = 64,
    S65 = 65,
    S66 = 66,
    S67 = 67,
    S68 = 68,
    S69 = 69,
    S70 = 70,
    S71 = 71,
    S72 = 72,
    S73 = 73,
    S74 = 74,
    S75 = 75,
    S76 = 76,
    S77 = 77,
    S78 = 78,
    S79 = 79,
    S80 = 80,
    S81 = 81,
    S82 = 82,
    S83 = 83,
    S84 = 84,
    S85 = 85,
    S86 = 86,
    S87 = 87,
    S88 = 88,
    S89 = 89,
    S90 = 90,
    S91 = 91,
    S92 = 92,
    S93 = 93,
    S94 = 94,
    S95 = 95,
    S96 = 96,
    S97 = 97,
    S98 = 98,
    S99 = 99,
    S100 = 100,
    S101 = 101,
    S102 = 102,
    S103 = 103,
    S104 = 104,
    S105 = 105,
    S106 = 106,
    S107 = 107,
    S108 = 108,
    S109 = 109,
    S110 = 110,
    S111 = 111,
    S112 = 112,
    S113 = 113,
    S114 = 114,
    S115 = 115,
    S116 = 116,
    S117 = 117,
    S118 = 118,
    S119 = 119,
    S120 = 120,
    S121 = 121,
    S122 = 122,
    S123 = 123,
}

// One variant per slot, no more.
const _: () = assert!(SlotIndex::S123 as usize + 1 == SLOTS);

/// Every byte's [`SlotIndex`]: itself below [`SLOTS`], the last slot above (never asked for).
const OF_BYTE: [SlotIndex; 256] = {
    let mut table = [SlotIndex::S123; 256];
    let mut i = 0;
    while i < SLOTS {
        table[i] = VARIANTS[i];
        i += 1;
    }
    table
};

/// The variants in order.
const VARIANTS: [SlotIndex; SLOTS] = [
    SlotIndex::S0,
    SlotIndex::S1,
    SlotIndex::S2,
    SlotIndex::S3,
    SlotIndex::S4,
    SlotIndex::S5,
    SlotIndex::S6,
    SlotIndex::S7,
    SlotIndex::S8,
    SlotIndex::S9,
    SlotIndex::S10,
    SlotIndex::S11,
    SlotIndex::S12,
    SlotIndex::S13,
    SlotIndex::S14,
    SlotIndex::S15,
    SlotIndex::S16,
    SlotIndex::S17,
    SlotIndex::S18,
    SlotIndex::S19,
    SlotIndex::S20,
    SlotIndex::S21,
    SlotIndex::S22,
    SlotIndex::S23,
    SlotIndex::S24,
    SlotIndex::S25,
    SlotIndex::S26,
    SlotIndex::S27,
    SlotIndex::S28,
    SlotIndex::S29,
    SlotIndex::S30,
    SlotIndex::S31,
    SlotIndex::S32,
    SlotIndex::S33,
    SlotIndex::S34,
    SlotIndex::S35,
    SlotIndex::S36,
    SlotIndex::S37,
    SlotIndex::S38,
    SlotIndex::S39,
    SlotIndex::S40,
    SlotIndex::S41,
    SlotIndex::S42,
    SlotIndex::S43,
    SlotIndex::S44,
    SlotIndex::S45,
    SlotIndex::S46,
    SlotIndex::S47,
    SlotIndex::S48,
    SlotIndex::S49,
    SlotIndex::S50,
    SlotIndex::S51,
    SlotIndex::S52,
    SlotIndex::S53,
    SlotIndex::S54,
    SlotIndex::S55,
    SlotIndex::S56,
    SlotIndex::S57,
    SlotIndex::S58,
    SlotIndex::S59,
    SlotIndex::S60,
    SlotIndex::S61,
    SlotIndex::S62,
    SlotIndex::S63,
    SlotIndex::S64,
    SlotIndex::S65,
    SlotIndex::S66,
    SlotIndex::S67,
    SlotIndex::S68,
    SlotIndex::S69,
    SlotIndex::S70,
    SlotIndex::S71,
    SlotIndex::S72,
    SlotIndex::S73,
    SlotIndex::S74,
    SlotIndex::S75,
    SlotIndex::S76,
    SlotIndex::S77,
    SlotIndex::S78,
    SlotIndex::S79,
    SlotIndex::S80,
    SlotIndex::S81,
    SlotIndex::S82,
    SlotIndex::S83,
    SlotIndex::S84,
    SlotIndex::S85,
    SlotIndex::S86,
    SlotIndex::S87,
    SlotIndex::S88,
    SlotIndex::S89,
    SlotIndex::S90,
    SlotIndex::S91,
    SlotIndex::S92,
    SlotIndex::S93,
    SlotIndex::S94,
    SlotIndex::S95,
    SlotIndex::S96,
    SlotIndex::S97,
    SlotIndex::S98,
    SlotIndex::S99,
    SlotIndex::S100,
    SlotIndex::S101,
    SlotIndex::S102,
    SlotIndex::S103,
    SlotIndex::S104,
    SlotIndex::S105,
    SlotIndex::S106,
    SlotIndex::S107,
    SlotIndex::S108,
    SlotIndex::S109,
    SlotIndex::S110,
    SlotIndex::S111,
    SlotIndex::S112,
    SlotIndex::S113,
    SlotIndex::S114,
    SlotIndex::S115,
    SlotIndex::S116,
    SlotIndex::S117,
    SlotIndex::S118,
    SlotIndex::S119,
    SlotIndex::S120,
    SlotIndex::S121,
    SlotIndex::S122,
    SlotIndex::S123,
];

impl SlotIndex {
    /// The index of a slot number below [`SLOTS`] held in a byte (one table load). A larger
    /// number is a bug in the caller: it is caught in debug builds and gives the last slot
    /// otherwise.
    #[inline]
    pub const fn from_byte(slot: u8) -> SlotIndex {
        debug_assert!((slot as usize) < SLOTS);
        OF_BYTE[slot as usize]
    }

    /// The slot number.
    #[inline]
    pub const fn get(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_is_its_own_index() {
        for slot in 0..SLOTS {
            assert_eq!(SlotIndex::from_byte(slot as u8).get(), slot);
        }
    }
}
