//! Giving freed memory back to the operating system after a large load.
//!
//! The binary allocates with mimalloc (`main.rs`; blocks of 128 KiB and more get pages of
//! their own, `sys::alloc`). Loading a cluster (the file's text, the
//! Kubernetes objects it is parsed into, the index's build) frees far more than it keeps, and
//! mimalloc returns freed pages to the OS only after a delay and only when the allocating
//! thread runs into them again. A DNS server that then answers from the direct path allocates
//! almost nothing, so without help the load's peak would stay resident for good.
//! [`release_freed`] forces that collection: call it after each complete state is applied
//! (`IndexWriter::load_all` does).
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
//!
//! [`release_freed`] only reaches what is free when it runs. Memory freed later, or on another
//! thread (a Kubernetes list's buffers on a runtime worker, the file watcher's read of the file),
//! waits for mimalloc's purge delay, a second by default, and is returned only when some thread
//! next allocates past it; a server that then answers from the direct path allocates almost
//! nothing, so it could stay resident for good (3-4 MiB on the large benchmark cluster).
//! [`purge_freed_at_once`] sets the delay to zero for the process: a page is returned when it
//! empties. Pages empty rarely once loaded (the serving path does not allocate; an update
//! replaces one Service's records), so the extra `madvise` calls cost nothing measurable.
//!
//! A page is returned only when all of it is free. An index built on the thread that parsed
//! or gathered the objects it is built from fills the holes between them, and when those
//! objects are freed most pages stay part-used: about 2 MiB more on the large cluster through
//! the Kubernetes source, whose objects arrive over seconds between the decoders' garbage.
//! [`on_fresh_heap`] runs such a build on a thread of its own: what the build keeps is packed
//! into that thread's new pages, and the pages of what it was built from empty entirely.

#![allow(unsafe_code)]

/// Turns transparent huge pages off for this process and its children (`prctl`); call it
/// first thing, before the allocator has touched much memory. An error (a kernel without the
/// setting) leaves them as they were, which costs memory, not correctness.
pub fn disable_huge_pages() -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

/// mimalloc's `mi_option_purge_delay` (the index in `mi_option_e`, mimalloc.h, the same in
/// mimalloc 2 and 3): how long a freed page waits before it is returned, in milliseconds.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable by which an operator sets the purge delay (mimalloc's own).
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc return a freed page to the operating system when it empties, instead of a
/// second later (see the module doc); call it first thing. An operator's own
/// `MIMALLOC_PURGE_DELAY` wins: then nothing is changed.
pub fn purge_freed_at_once() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        // SAFETY: sets one of mimalloc's integer options; any thread, any time (mimalloc.h).
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    }
}

/// Runs `build` on a new thread, whose allocator heap starts empty, so that what it keeps is
/// packed into pages of its own (see the module doc); then returns what that thread freed.
/// Whatever `build` frees that the calling thread allocated goes back to the caller's pages:
/// call [`release_freed`] after it. If no thread can be started, `build` runs here.
///
/// A panic in `build` is resumed on the calling thread.
pub fn on_fresh_heap<R: Send>(build: impl FnOnce() -> R + Send) -> R {
    let mut build = Some(build);
    let built = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("peerdns-build".into())
            .spawn_scoped(scope, || {
                let built = build.take().map(|build| build());
                release_freed();
                built
            });
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        }
    });
    match (built, build) {
        (Some(built), _) => built,
        (None, Some(build)) => build(),
        (None, None) => unreachable!("a build that ran returned its result"),
    }
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
    use crate::sys::resident::{measuring, resident};

    #[test]
    fn huge_pages_can_be_turned_off() {
        disable_huge_pages().expect("prctl(PR_SET_THP_DISABLE)");
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
    }

    #[test]
    fn a_fresh_heap_build_runs_on_a_thread_of_its_own_and_returns_its_result() {
        let caller = std::thread::current().id();
        let mut state = vec![1, 2, 3];
        let (sum, thread, name) = on_fresh_heap(|| {
            state.push(4);
            let current = std::thread::current();
            (
                state.iter().sum::<i32>(),
                current.id(),
                current.name().map(str::to_owned),
            )
        });
        assert_eq!(sum, 10);
        assert_eq!(state, [1, 2, 3, 4], "the build borrows the caller's state");
        assert_ne!(thread, caller);
        assert_eq!(name.as_deref(), Some("peerdns-build"));
    }

    #[test]
    fn a_panic_in_a_fresh_heap_build_reaches_the_caller() {
        let outcome = std::panic::catch_unwind(|| on_fresh_heap(|| -> u8 { panic!("bad build") }));
        let panic = outcome.expect_err("the build's panic is resumed");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"bad build"));
    }

    /// `PURGE_DELAY` names mimalloc's purge delay: the option at that index holds its
    /// documented default, a second (or what the environment set), and nothing here changes it
    /// (the test below relies on the default).
    #[test]
    fn the_purge_delay_option_index_is_mimallocs() {
        // SAFETY: reads an integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        let expected = std::env::var(PURGE_DELAY_VARIABLE)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1000);
        assert_eq!(delay, expected);
    }

    /// Allocates and frees 64 MiB in small blocks directly from mimalloc (the test binary's
    /// global allocator is the system one, so nothing else here uses mimalloc), then checks
    /// that `release_freed` makes most of it non-resident at once, where mimalloc alone would
    /// wait for its purge delay (a second) and for its next allocation.
    #[test]
    fn release_freed_returns_a_freed_load_at_once() {
        let _measuring = measuring();
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
