//! A counting global allocator: `std::alloc::System` plus two relaxed counters, so `bench` can
//! show that the steady-state frame loop allocates nothing.
//!
//! Every allocation in the process goes through here (the GL thread, the writers, everything
//! Rust allocates); Mesa's own C allocations do not, which is why `bench` reports resident memory
//! as well. Counting is off until `bench` turns it on ([`start_counting`]); then it costs two
//! relaxed atomic adds per allocation, which is nothing beside the
//! allocation itself. This is the one place outside `gl/` with `unsafe`: a `GlobalAlloc` impl
//! cannot be written without it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether allocations are counted: only while `bench` runs ([`start_counting`]). Every other
/// job pays one relaxed load per allocation and nothing else.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Allocations (including reallocations) since counting started.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations.
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Turns counting on, for the rest of the process (`bench` calls it before it measures).
pub fn start_counting() {
    COUNTING.store(true, Ordering::Relaxed);
}

/// Allocations made inside [`housekeeping`], counted apart from the frame loop's.
static HOUSEKEEPING: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is inside [`housekeeping`]. Const-initialised and without a
    /// destructor, so reading it never allocates (which an allocator must not).
    static IN_HOUSEKEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `work`, counting its allocations as housekeeping rather than as the frame loop's: periodic
/// work whose timing depends on the machine's load (a sweep for dead iceoryx2 nodes), which
/// `bench` reports apart so that its per-frame figure does not depend on when a sweep happened.
pub fn housekeeping<R>(work: impl FnOnce() -> R) -> R {
    let outer = IN_HOUSEKEEPING.with(|flag| flag.replace(true));
    let result = work();
    IN_HOUSEKEEPING.with(|flag| flag.set(outer));
    result
}

/// Allocations made inside [`housekeeping`] since counting started.
pub fn housekeeping_allocations() -> u64 {
    HOUSEKEEPING.load(Ordering::Relaxed)
}

/// Counts one allocation of `bytes`, when counting is on.
#[inline]
fn count(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        if IN_HOUSEKEEPING.with(std::cell::Cell::get) {
            HOUSEKEEPING.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// The system allocator, counting while [`start_counting`] says so.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `Counting`
// upholds exactly the contract `System` does; the counters have no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller guarantees `layout` has a non-zero size (GlobalAlloc contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with `layout`, and that `new_size` is non-zero and fits `isize`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What the counters said at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Allocations and reallocations so far.
    pub allocations: u64,
    /// Bytes they asked for.
    pub bytes: u64,
}

impl Snapshot {
    /// Reads the counters; reading allocates nothing.
    pub fn now() -> Self {
        Self {
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
            bytes: ALLOCATED_BYTES.load(Ordering::Relaxed),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Snapshot) -> Snapshot {
        Snapshot {
            allocations: self.allocations - earlier.allocations,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Counting, Snapshot};

    // The binary installs the counter in main.rs; the library's own test binary needs its own.
    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    #[test]
    fn a_box_is_counted() {
        super::start_counting();
        let before = Snapshot::now();
        let boxed = std::hint::black_box(Box::new([7u8; 64]));
        let after = Snapshot::now();
        drop(boxed);
        // Other test threads may allocate too, so this is a lower bound.
        assert!(after.since(before).allocations >= 1);
        assert!(after.since(before).bytes >= 64);
    }

    #[test]
    fn housekeeping_is_counted_apart() {
        super::start_counting();
        let before = super::housekeeping_allocations();
        let boxed = super::housekeeping(|| std::hint::black_box(Box::new([7u8; 64])));
        drop(boxed);
        assert!(super::housekeeping_allocations() > before);
    }
}
