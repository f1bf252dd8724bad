//! Asking the CPU to start loading memory that will be read soon (a software prefetch).
//!
//! The UDP path answers a batch of datagrams in stages (`dns::udp::answer_batch`): it asks
//! here for what every datagram will read (its answer-cache set, its Service's map entry, the
//! records, their arrays), a step for the whole batch at a time, before it reads any of it.
//! On a large cluster that memory is rarely in the CPU's caches; asked for together, the loads
//! overlap instead of stalling one answer after another.
//!
//! A prefetch is a hint: it never faults, has no effect a program can observe but timing, and
//! is free to be ignored. So any address may be named, even one computed into a structure
//! another crate owns or the counts that sit before an `Arc`'s value; a wrong guess costs a
//! useless load, never a wrong answer. On targets other than x86-64 these do nothing.

/// Bytes per cache line (x86-64).
const LINE: usize = 64;

/// Asks for the first `max_lines` cache lines of `items` (all of them when shorter).
pub fn prefetch_slice<T>(items: &[T], max_lines: usize) {
    prefetch_lines(
        items.as_ptr().cast::<u8>(),
        std::mem::size_of_val(items).min(max_lines * LINE),
    );
}

/// Asks for what an `Arc` points at: its reference counts (which a clone writes; they sit
/// right before the value) and the first cache lines of the value.
pub fn prefetch_arc<T>(shared: &std::sync::Arc<T>) {
    let value = std::sync::Arc::as_ptr(shared).cast::<u8>();
    prefetch_address(value.wrapping_sub(2 * std::mem::size_of::<usize>()));
    prefetch_lines(value, std::mem::size_of::<T>().clamp(1, 4 * LINE));
}

/// Every cache line of the `bytes` bytes from `start`.
fn prefetch_lines(start: *const u8, bytes: usize) {
    let mut offset = 0;
    while offset < bytes {
        prefetch_address(start.wrapping_add(offset));
        offset += LINE;
    }
}

/// Asks for the cache line at `address`, which may point anywhere (see the module's doc).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub fn prefetch_address(address: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: PREFETCHT0 does not access memory architecturally: it cannot fault, whatever the
    // address, and changes nothing but the cache.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>()) }
}

/// Asks for the cache line at `address`: nothing on this target.
#[cfg(not(target_arch = "x86_64"))]
pub fn prefetch_address(_address: *const u8) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_slice_is_harmless_and_leaves_it_unchanged() {
        let empty: [u64; 0] = [];
        prefetch_slice(&empty, 8);
        let values: Vec<u64> = (0..1000).collect();
        prefetch_slice(&values, 0);
        prefetch_slice(&values, 4);
        prefetch_slice(&values, usize::MAX / LINE);
        prefetch_slice(&values[999..], 8);
        prefetch_address(std::ptr::null());
        prefetch_address(values.as_ptr().wrapping_add(usize::MAX / 16).cast());
        let shared = std::sync::Arc::new([7u64; 100]);
        prefetch_arc(&shared);
        prefetch_arc(&std::sync::Arc::new(()));
        assert_eq!(*shared, [7u64; 100]);
        assert_eq!(values, (0..1000).collect::<Vec<u64>>());
    }
}
