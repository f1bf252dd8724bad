//! The only code that talks to the operating system or the allocator below the standard
//! library: the one module allowed `unsafe` (every other module is `deny(unsafe_code)`).
//!
//! - [`alloc`]: the binary's global allocator (mimalloc, and pages of their own for large
//!   blocks);
//! - [`batch`]: batched UDP receive and send (`recvmmsg` / `sendmmsg`);
//! - [`memory`]: handing memory freed by a large load back to the operating system;
//! - [`prefetch`]: software prefetch hints, for the UDP path's batched lookups;
//! - [`timer`]: the calling thread's timer slack, for the UDP workers' short holds.
//!
//! Each file states the safety argument for its `unsafe` blocks and is tested on its own.

pub mod alloc;
pub mod batch;
pub mod memory;
pub mod prefetch;
pub mod timer;

/// What the tests that measure the process's resident memory share.
#[cfg(test)]
mod resident {
    use std::sync::{Mutex, MutexGuard};

    /// Held by each test that compares the process's resident memory before and after its
    /// own work, so that two of them do not count each other's allocations.
    static MEASURING: Mutex<()> = Mutex::new(());

    /// Waits for the other resident-measuring tests to finish; hold it for the whole test.
    pub fn measuring() -> MutexGuard<'static, ()> {
        MEASURING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The process's resident memory, in bytes.
    pub fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse().ok())
            .expect("statm's second field");
        pages * 4096
    }
}
