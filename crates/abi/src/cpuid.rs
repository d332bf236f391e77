//! The words of CPUID itself: a leaf and sub-leaf ([`CpuidKey`]), the four output registers
//! ([`Registers`]) and one of them ([`Register`]).

use std::fmt;

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Register {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

impl Register {
    /// All four, in `[eax, ebx, ecx, edx]` order.
    pub const ALL: [Register; 4] = [Register::Eax, Register::Ebx, Register::Ecx, Register::Edx];

    /// Position in `[eax, ebx, ecx, edx]`.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Where a CPUID result lives: the leaf (EAX input) and, for leaves that have them, the
/// sub-leaf (ECX input).
///
/// Keys sort by leaf, then sub-leaf with "no sub-leaf" first; within one leaf Xen never mixes
/// the two, so this is Xen's serialisation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuidKey {
    /// The leaf (EAX input).
    pub leaf: u32,
    /// The sub-leaf (ECX input); `None` for leaves without sub-leaves.
    pub subleaf: Option<u32>,
}

impl CpuidKey {
    /// A key from its parts.
    #[inline]
    pub const fn new(leaf: u32, subleaf: Option<u32>) -> CpuidKey {
        CpuidKey { leaf, subleaf }
    }

    /// A leaf without sub-leaves.
    #[inline]
    pub const fn plain(leaf: u32) -> CpuidKey {
        CpuidKey { leaf, subleaf: None }
    }

    /// Sub-leaf `subleaf` of `leaf`.
    #[inline]
    pub const fn indexed(leaf: u32, subleaf: u32) -> CpuidKey {
        CpuidKey { leaf, subleaf: Some(subleaf) }
    }
}

impl fmt::Display for CpuidKey {
    /// `0x00000001`, or `0x00000007:0x1` with a sub-leaf.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subleaf {
            None => write!(f, "{:#010x}", self.leaf),
            Some(subleaf) => write!(f, "{:#010x}:{subleaf:#x}", self.leaf),
        }
    }
}

/// The four output registers of one CPUID invocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Registers {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl Registers {
    /// All four zero: what CPUID returns for a leaf that says nothing.
    pub const ZERO: Registers = Registers { eax: 0, ebx: 0, ecx: 0, edx: 0 };

    /// Registers from their values.
    #[inline]
    pub const fn new(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Registers {
        Registers { eax, ebx, ecx, edx }
    }

    /// From `[eax, ebx, ecx, edx]`.
    #[inline]
    pub const fn from_array(values: [u32; 4]) -> Registers {
        Registers { eax: values[0], ebx: values[1], ecx: values[2], edx: values[3] }
    }

    /// As `[eax, ebx, ecx, edx]`.
    #[inline]
    pub const fn to_array(self) -> [u32; 4] {
        [self.eax, self.ebx, self.ecx, self.edx]
    }

    /// One register.
    #[inline]
    pub const fn get(self, register: Register) -> u32 {
        match register {
            Register::Eax => self.eax,
            Register::Ebx => self.ebx,
            Register::Ecx => self.ecx,
            Register::Edx => self.edx,
        }
    }

    /// Sets one register.
    #[inline]
    pub fn set(&mut self, register: Register, value: u32) {
        match register {
            Register::Eax => self.eax = value,
            Register::Ebx => self.ebx = value,
            Register::Ecx => self.ecx = value,
            Register::Edx => self.edx = value,
        }
    }

    /// All four are zero.
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.eax == 0 && self.ebx == 0 && self.ecx == 0 && self.edx == 0
    }
}
