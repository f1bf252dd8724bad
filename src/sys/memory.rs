//! Giving freed memory back to the operating system after a large load.
//!
//! The binary allocates with mimalloc (`main.rs`). Loading a cluster (the file's text, the
//! Kubernetes objects it is parsed into, the index's build) frees far more than it keeps, and
//! mimalloc returns freed pages to the OS only after a delay and only when the allocating
//! thread runs into them again. A DNS server that then answers from the direct path allocates
//! almost nothing, so without help the load's peak would stay resident for good.
//! [`release_freed`] forces that collection: call it after each complete state is applied.
//!
//! Transparent huge pages are off for the process: mimalloc is built not to ask for them (Cargo
//! feature `no_thp`), and [`disable_huge_pages`] turns them off where the kernel would use them
//! anyway (`/sys/kernel/mm/transparent_hugepage/enabled` set to `always`). With them, a 2 MiB
//! page stays resident as long as one small object in it lives, which kept tens of MiB of freed
//! memory resident on the large benchmark cluster.
//!
//! Invariant: [`release_freed`] only returns memory that nothing uses; it never changes what
//! any allocation holds, so it is safe to call at any time, from any thread. It walks the
//! calling thread's heap, so it is called after whole loads only, never per query (the large
//! cluster's load, this call included, takes 0.55 s).

#![allow(unsafe_code)]

/// Turns transparent huge pages off for this process and its children (`prctl`); call it
/// first thing, before the allocator has touched much memory. An error (a kernel without the
/// setting) leaves them as they were, which costs memory, not correctness.
pub fn disable_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

/// Frees the calling thread's empty allocator pages and returns every freed, not yet
/// returned page of the process to the operating system now, instead of after mimalloc's
/// purge delay.
///
/// Harmless when mimalloc is not the global allocator (tests): it then has nothing to return.
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers and only frees memory the allocator itself
    // knows to be unused; mimalloc documents it as callable from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's resident memory, in bytes.
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse().ok())
            .expect("statm's second field");
        pages * 4096
    }

    #[test]
    fn huge_pages_can_be_turned_off() {
        disable_huge_pages().expect("prctl(PR_SET_THP_DISABLE)");
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
    }

    /// Allocates and frees 64 MiB in small blocks directly from mimalloc (the test binary's
    /// global allocator is the system one, so nothing else here uses mimalloc), then checks
    /// that `release_freed` makes most of it non-resident at once, where mimalloc alone would
    /// wait for its purge delay (a second) and for its next allocation.
    #[test]
    fn release_freed_returns_a_freed_load_at_once() {
        const BLOCK: usize = 200;
        const BLOCKS: usize = (64 << 20) / BLOCK;
        // SAFETY: every pointer comes from `mi_malloc`, is written within its size, and is
        // freed exactly once, below.
        let blocks: Vec<*mut u8> = (0..BLOCKS)
            .map(|_| unsafe { libmimalloc_sys::mi_malloc(BLOCK).cast::<u8>() })
            .collect();
        assert!(blocks.iter().all(|b| !b.is_null()));
        for block in &blocks {
            // SAFETY: see above; touching the block makes its page resident.
            unsafe { block.write_bytes(1, BLOCK) };
        }
        let loaded = resident();
        for block in blocks {
            // SAFETY: see above.
            unsafe { libmimalloc_sys::mi_free(block.cast()) };
        }
        release_freed();
        let released = resident();
        assert!(
            released + (40 << 20) < loaded,
            "freed memory should leave at once: resident {loaded} loaded, {released} released"
        );
    }
}
