//! Asking the CPU to start loading memory that will be read soon (a software prefetch).
//!
//! The UDP path answers a batch of datagrams in two stages: it first looks up every
//! datagram's Service and asks for the records' arrays here, then writes the answers. On a
//! large cluster those arrays are rarely in the CPU's caches; asked for together, their loads
//! overlap instead of stalling one answer after another.
//!
//! A prefetch is a hint: it never faults, has no effect a program can observe but timing, and
//! is free to be ignored. The functions take references, so they only ever name memory the
//! caller may read anyway. On targets other than x86-64 they do nothing.

/// Bytes per cache line (x86-64).
const LINE: usize = 64;

/// Asks for the first `max_lines` cache lines of `items` (all of them when shorter).
pub fn prefetch_slice<T>(items: &[T], max_lines: usize) {
    let bytes = std::mem::size_of_val(items).min(max_lines * LINE);
    let start = items.as_ptr().cast::<u8>();
    let mut offset = 0;
    while offset < bytes {
        prefetch_address(start.wrapping_add(offset));
        offset += LINE;
    }
}

/// Asks for the cache line holding `value`.
pub fn prefetch<T: ?Sized>(value: &T) {
    prefetch_address(std::ptr::from_ref(value).cast::<u8>());
}

/// Asks for what an `Arc` points at: its reference counts (which a clone writes) and the
/// first cache lines of the value.
pub fn prefetch_arc<T>(shared: &std::sync::Arc<T>) {
    let value = std::sync::Arc::as_ptr(shared).cast::<u8>();
    // The counts sit right before the value, in the same allocation.
    prefetch_address(value.wrapping_sub(2 * std::mem::size_of::<usize>()));
    let mut offset = 0;
    while offset < std::mem::size_of::<T>().min(4 * LINE) {
        prefetch_address(value.wrapping_add(offset));
        offset += LINE;
    }
}

/// Asks for the cache line at `address`, which may point anywhere (even at memory freed
/// since): a prefetch reads nothing the program sees. For addresses computed into a structure
/// another crate owns (a hash table's bucket), where no reference can name them.
pub fn prefetch_address_hint(address: *const u8) {
    prefetch_address(address);
}

/// Asks for the reference counts and first cache line of what a `Weak` points at (without
/// upgrading it: the allocation lives while the `Weak` does, the value perhaps not).
pub fn prefetch_weak<T>(weak: &std::sync::Weak<T>) {
    let value = weak.as_ptr().cast::<u8>();
    prefetch_address(value.wrapping_sub(2 * std::mem::size_of::<usize>()));
    prefetch_address(value);
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn prefetch_address(address: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: PREFETCHT0 does not access memory architecturally: it cannot fault, whatever the
    // address, and changes nothing but the cache. (Callers pass addresses inside, or one
    // line past the end of, memory they hold a reference to.)
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>()) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_address(_address: *const u8) {}

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
        prefetch(&values[500]);
        prefetch("text");
        let shared = std::sync::Arc::new([7u64; 100]);
        prefetch_arc(&shared);
        let weak = std::sync::Arc::downgrade(&shared);
        prefetch_weak(&weak);
        drop(shared);
        prefetch_weak(&weak);
        prefetch_weak(&std::sync::Weak::<u64>::new());
        assert!(weak.upgrade().is_none());
        assert_eq!(values, (0..1000).collect::<Vec<u64>>());
    }
}
