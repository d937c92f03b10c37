//! The allocator the daemon runs on: mimalloc, declared as the global allocator by the
//! `kairos` binary and by the benches, which call [`tune`] first. The library declares
//! none: a program embedding kairos keeps its own (docs/architecture.md, "The
//! allocator").

/// mimalloc's number for its purge delay option (`mi_option_purge_delay` in its
/// `mimalloc.h`), which libmimalloc-sys does not name; mimalloc keeps the numbers of
/// its options in place across versions, retired ones included.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed in mimalloc's pages stays with the process before it goes
/// back to the system, in milliseconds. mimalloc's default is a second; a job table
/// that had just grown then kept its old buffers resident a second longer (5 of
/// the 104 bytes a pending job measured), where glibc gives a large block back as it
/// is freed.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets mimalloc's options for the daemon; call it first in `main`.
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: `mi_option_set` stores the value in mimalloc's option table, which any
    // thread may do at any time; mimalloc reads the purge delay each time it purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}
