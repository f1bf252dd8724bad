//! The binary's global allocator: mimalloc for blocks under 128 KiB, pages of their own from
//! the operating system (`mmap`) for larger ones.
//!
//! mimalloc keeps blocks of 10 KiB to 512 KiB in pages it shares among blocks of one size: 512
//! KiB pages for the medium ones, 4 MiB pages for the large ones. Such a page goes back to the
//! operating system only when all its blocks are free, so one long-lived block keeps its freed
//! neighbours resident. The large blocks of a server are few and mostly transient: the
//! Kubernetes lists' response bodies (a 500-object page is 370 KB of JSON), an HTTP connection's
//! read buffer (grown to 448 KiB by those pages, and kept as long as the watch connection
//! lives), the index's tables while they grow. Through the Kubernetes source the read buffers
//! kept 2.5 MiB of freed list bodies resident on the large benchmark cluster. A block of its
//! own pages is returned whole by `munmap` when freed, and grown by `mremap` without a copy, as
//! glibc's allocator does above its own threshold; at these sizes the system calls cost little
//! next to writing the block.
//!
//! Invariant: a block's owner follows from its layout alone: own pages when
//! [`has_own_pages`] holds for it, mimalloc otherwise. Rust hands `dealloc` and `realloc` the
//! layout the block was allocated with, so each block is freed by the allocator that made it,
//! and `realloc` moves a block between the two when its new size crosses the threshold.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::{NonNull, null_mut};

/// Blocks of at least this many bytes get pages of their own.
pub const OWN_PAGES_FROM: usize = 128 * 1024;

/// The smallest page size of the platforms peerdns runs on; blocks aligned more strictly than
/// this stay with mimalloc (none of peerdns's large blocks is).
const PAGE: usize = 4096;

/// mimalloc below [`OWN_PAGES_FROM`], the operating system's pages from there up.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

/// Whether a block of `layout` lives in pages of its own (else in mimalloc's).
pub fn has_own_pages(layout: Layout) -> bool {
    layout.size() >= OWN_PAGES_FROM && layout.align() <= PAGE
}

/// `size` rounded up to whole pages.
fn mapped_length(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

/// Fresh zeroed pages for `size` bytes, or null when the system has none.
///
/// This and the other functions of the large-block path are cold and out of line, and so are
/// the allocator's methods themselves: every allocation and free of the program calls them,
/// and inlined there they added 0.9 MB of code to the binary.
#[cold]
#[inline(never)]
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no
    // existing memory; the result is checked for MAP_FAILED.
    let address = unsafe {
        libc::mmap(
            null_mut(),
            mapped_length(size),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if address == libc::MAP_FAILED {
        null_mut()
    } else {
        address.cast()
    }
}

/// Returns the pages of a block of `size` bytes made by [`map`].
///
/// # Safety
/// `block` came from [`map`] (or [`remap`]) for `size` bytes and is not used again.
#[cold]
#[inline(never)]
unsafe fn unmap(block: *mut u8, size: usize) {
    // SAFETY: the caller's promise: the range is exactly one mapping of ours, no longer used.
    // munmap fails only for ranges that are not page-aligned mappings, which this is not.
    unsafe { libc::munmap(block.cast(), mapped_length(size)) };
}

/// Grows or shrinks a block made by [`map`] from `old` to `new` bytes, moving it if it must;
/// null when the system refuses (the block is then unchanged).
///
/// # Safety
/// `block` came from [`map`] (or [`remap`]) for `old` bytes.
#[cold]
#[inline(never)]
unsafe fn remap(block: *mut u8, old: usize, new: usize) -> *mut u8 {
    // SAFETY: the caller's promise: the range is one mapping of ours; MREMAP_MAYMOVE lets the
    // kernel move it, and the old address is not used again when it did.
    let address = unsafe {
        libc::mremap(
            block.cast(),
            mapped_length(old),
            mapped_length(new),
            libc::MREMAP_MAYMOVE,
        )
    };
    if address == libc::MAP_FAILED {
        null_mut()
    } else {
        address.cast()
    }
}

// SAFETY: every block is served and taken back by one allocator, chosen by its layout (see the
// module's invariant); mapped blocks are page-aligned, which meets every alignment
// `has_own_pages` admits, and hold at least the layout's size.
unsafe impl GlobalAlloc for Allocator {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if has_own_pages(layout) {
            map(layout.size())
        } else {
            // SAFETY: passed through with the caller's layout.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if has_own_pages(layout) {
            // Anonymous pages are zeroed by the kernel.
            map(layout.size())
        } else {
            // SAFETY: passed through with the caller's layout.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if has_own_pages(layout) {
            // SAFETY: a block of this layout was made by `map` (the invariant).
            unsafe { unmap(block, layout.size()) }
        } else {
            // SAFETY: a block of this layout was made by mimalloc (the invariant).
            unsafe { mimalloc::MiMalloc.dealloc(block, layout) }
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, does not
        // overflow `isize`, which is all `Layout` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (has_own_pages(layout), has_own_pages(new_layout)) {
            // SAFETY: mimalloc's block, mimalloc's realloc, the caller's arguments.
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(block, layout, new_size) },
            // SAFETY: a mapped block of `layout.size()` bytes (the invariant).
            (true, true) => unsafe { remap(block, layout.size(), new_size) },
            // SAFETY: the caller's arguments, passed on.
            _ => unsafe { realloc_across(block, layout, new_layout) },
        }
    }
}

/// Moves a block to the other allocator when a realloc takes its size across the threshold:
/// a new block from the allocator of `new_layout`, the contents copied, the old one freed.
/// Null when no new block can be had (the old one is then unchanged).
///
/// # Safety
/// `block` is alive with `layout`; `new_layout` has `layout`'s alignment and a non-zero size.
#[cold]
#[inline(never)]
unsafe fn realloc_across(block: *mut u8, layout: Layout, new_layout: Layout) -> *mut u8 {
    // SAFETY: `new_layout` is valid and of non-zero size (the caller's).
    let moved = unsafe { Allocator.alloc(new_layout) };
    if let Some(moved) = NonNull::new(moved) {
        // SAFETY: both blocks hold at least the smaller size and do not overlap; the old
        // block is freed by its own allocator and not used again.
        unsafe {
            std::ptr::copy_nonoverlapping(
                block,
                moved.as_ptr(),
                layout.size().min(new_layout.size()),
            );
            Allocator.dealloc(block, layout);
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::resident::{measuring, resident};

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("a valid layout")
    }

    /// Writes `value` into all `size` bytes of `block` (alive, at least that large).
    fn fill(block: *mut u8, size: usize, value: u8) {
        // SAFETY: the tests below pass blocks of at least `size` bytes.
        unsafe { block.write_bytes(value, size) };
    }

    fn all(block: *const u8, size: usize, value: u8) -> bool {
        // SAFETY: as for `fill`.
        unsafe { std::slice::from_raw_parts(block, size) }
            .iter()
            .all(|&byte| byte == value)
    }

    #[test]
    fn the_threshold_and_alignment_decide_the_owner() {
        assert!(!has_own_pages(layout(OWN_PAGES_FROM - 1)));
        assert!(has_own_pages(layout(OWN_PAGES_FROM)));
        let strict = Layout::from_size_align(OWN_PAGES_FROM, 2 * PAGE).expect("valid");
        assert!(!has_own_pages(strict), "stricter than a page: mimalloc");
    }

    #[test]
    fn blocks_on_either_side_hold_what_is_written_and_are_aligned() {
        for size in [
            16,
            4000,
            OWN_PAGES_FROM - 1,
            OWN_PAGES_FROM,
            3 * OWN_PAGES_FROM + 5,
        ] {
            let layout = layout(size);
            // SAFETY: non-zero size; freed once with the same layout.
            let block = unsafe { Allocator.alloc(layout) };
            assert!(!block.is_null());
            assert_eq!(block as usize % layout.align(), 0);
            if has_own_pages(layout) {
                assert_eq!(block as usize % PAGE, 0, "own pages start on a page");
            }
            fill(block, size, 0xa5);
            assert!(all(block, size, 0xa5));
            // SAFETY: allocated above with `layout`.
            unsafe { Allocator.dealloc(block, layout) };
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_either_side() {
        for size in [64, OWN_PAGES_FROM + 100] {
            let layout = layout(size);
            // SAFETY: as above.
            let block = unsafe { Allocator.alloc_zeroed(layout) };
            assert!(!block.is_null());
            assert!(all(block, size, 0));
            // SAFETY: as above.
            unsafe { Allocator.dealloc(block, layout) };
        }
    }

    /// Grows a block across the threshold and back, within each side, and checks that the
    /// contents survive every move.
    #[test]
    fn realloc_keeps_the_contents_across_and_within_both_sides() {
        let sizes = [
            1000,
            OWN_PAGES_FROM - 8,
            OWN_PAGES_FROM + 8,
            4 * OWN_PAGES_FROM,
            OWN_PAGES_FROM + 4096,
            500,
            40,
        ];
        let mut size = 100;
        let first = layout(size);
        // SAFETY: as above; every realloc below passes the block's current layout.
        let mut block = unsafe { Allocator.alloc(first) };
        fill(block, size, 7);
        for (step, &new_size) in sizes.iter().enumerate() {
            let kept = size.min(new_size);
            // SAFETY: `block` is alive with layout (size, 8).
            block = unsafe { Allocator.realloc(block, layout(size), new_size) };
            assert!(!block.is_null(), "step {step}");
            assert!(all(block, kept, 7), "step {step}: contents lost");
            fill(block, new_size, 7);
            size = new_size;
        }
        // SAFETY: the block's current layout.
        unsafe { Allocator.dealloc(block, layout(size)) };
    }

    /// A freed large block leaves the process at once, even when a live one was allocated
    /// next to it (in mimalloc they would share a page and stay resident together).
    #[test]
    fn freed_large_blocks_leave_at_once_beside_live_ones() {
        const SIZE: usize = 448 * 1024;
        const COUNT: usize = 64;
        let _measuring = measuring();
        let layout = layout(SIZE);
        // SAFETY: as above; each block is freed once with `layout`.
        let blocks: Vec<*mut u8> = (0..COUNT)
            .map(|_| unsafe { Allocator.alloc(layout) })
            .collect();
        assert!(blocks.iter().all(|block| !block.is_null()));
        for &block in &blocks {
            fill(block, SIZE, 1);
        }
        let loaded = resident();
        // Keep every eighth block, free the rest.
        for (i, &block) in blocks.iter().enumerate() {
            if i % 8 != 0 {
                // SAFETY: allocated above, freed once.
                unsafe { Allocator.dealloc(block, layout) };
            }
        }
        let freed = resident();
        let expected = SIZE * (COUNT - COUNT / 8);
        assert!(
            freed + expected * 9 / 10 <= loaded,
            "the freed blocks should leave at once: resident {loaded} before, {freed} after"
        );
        for &block in blocks.iter().step_by(8) {
            assert!(all(block, SIZE, 1), "a kept block is intact");
            // SAFETY: allocated above, freed once.
            unsafe { Allocator.dealloc(block, layout) };
        }
    }
}
