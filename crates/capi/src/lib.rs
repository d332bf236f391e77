//! The C ABI of cpupolicy: `libcpupolicy.so` / `libcpupolicy.a`, declared in `include/cpupolicy.h`.
//!
//! Existing toolstacks (xapi/xenopsd through OCaml C stubs, libxl, libvirt's libxl driver) are C.
//! This crate gives them the whole library behind a small set of conventions, the same for every
//! function, so a caller learns them once:
//!
//! - Every function returns a [`cpupolicy_status`] (stable numbers, never reused) and writes
//!   results through out-pointers; on failure nothing is written to them.
//! - [`cpupolicy_strerror`] names a status; [`cpupolicy_last_error`] gives the calling thread's
//!   last detailed message (which leaf, which feature, which token).
//! - Caller-allocated buffers use the size-query convention: pass `NULL`/0 to learn the size
//!   through `*needed`; a short buffer gets `CPUPOLICY_BUFFER_TOO_SMALL` and is never written past.
//! - Objects are opaque handles created by `cpupolicy_*_new`/`_parse`/… and released by the
//!   matching `_free`. Each handle carries a type tag: passing the wrong kind of handle gets
//!   `CPUPOLICY_WRONG_HANDLE`, not undefined behaviour.
//! - No panic crosses the boundary: each exported function runs inside `catch_unwind`, and a
//!   panic becomes `CPUPOLICY_INTERNAL_ERROR`.
//! - Thread safety: distinct handles may be used from different threads at once; one handle may
//!   be read from several threads at once but not written concurrently (like a C `const`).

mod featureset;
mod ffi;

pub use featureset::*;

pub use ffi::{cpupolicy_last_error, cpupolicy_status, cpupolicy_strerror, cpupolicy_version};
