//! [`SlotIndex`]: a slot number ([`crate::layout::slot_of`]) as a type whose values the
//! compiler knows to be below [`SLOTS`], so that indexing a policy's slot array with one needs
//! no bounds check.

use crate::layout::SLOTS;

/// Defines [`SlotIndex`] with one variant per name, numbered from 0, and `VARIANTS`, the
/// variants in order (so the list of names is written once).
macro_rules! slot_index {
    ($($name:ident),* $(,)?) => {
        /// A slot number below [`SLOTS`], one byte. The variants are the numbers themselves
        /// (`S0` is slot 0); the type exists for its range, which lets a store through it skip
        /// the bounds check (a policy deserialised from Xen's format stores every entry so).
        #[allow(missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum SlotIndex {
            $($name),*
        }

        /// The variants in order.
        const VARIANTS: [SlotIndex; SLOTS] = [$(SlotIndex::$name),*];
    };
}

#[rustfmt::skip]
slot_index!(
    S0, S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13, S14, S15,
    S16, S17, S18, S19, S20, S21, S22, S23, S24, S25, S26, S27, S28, S29, S30, S31,
    S32, S33, S34, S35, S36, S37, S38, S39, S40, S41, S42, S43, S44, S45, S46, S47,
    S48, S49, S50, S51, S52, S53, S54, S55, S56, S57, S58, S59, S60, S61, S62, S63,
    S64, S65, S66, S67, S68, S69, S70, S71, S72, S73, S74, S75, S76, S77, S78, S79,
    S80, S81, S82, S83, S84, S85, S86, S87, S88, S89, S90, S91, S92, S93, S94, S95,
    S96, S97, S98, S99, S100, S101, S102, S103, S104, S105, S106, S107, S108, S109, S110, S111,
    S112, S113, S114, S115, S116, S117, S118, S119, S120, S121, S122, S123,
);

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
