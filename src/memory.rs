//! Bounded memory: byte budgets ([`Budget`]: request bodies in flight, batches carried to
//! detection), the allocator ([`Allocator`]) and the C library's tuning for large request
//! bodies.
//!
//! An audit batch can be 12 MiB, and a busy webhook holds and frees many of them. glibc's malloc
//! raises its mmap threshold each time such a block is freed (up to 32 MiB), after which 12 MiB
//! buffers come from the heap arenas, one per thread, and what they free there stays in the
//! process: under overload `scripts/bench-durability` measured a peak RSS of 466-574 MiB with the
//! default behaviour and 306 MiB with the threshold pinned at 1 MiB (large blocks mapped and
//! returned to the system on free). kaudit pins it at start, unless `MALLOC_MMAP_THRESHOLD_` is
//! set in the environment (the operator's choice wins), and caps the heap arenas (below) unless
//! `MALLOC_ARENA_MAX` is set.

/// The size from which allocations are mapped on their own and given back when freed.
pub const MMAP_THRESHOLD: usize = 1024 * 1024;

/// Heap arenas per core. glibc's default (8 per core) gave each of the threads that evaluate
/// large batches one of its own, and what each freed stayed there: the 12 MiB overload of
/// `scripts/bench-durability` peaked at 1,053 MiB with the default and 492 MiB with 2 arenas
/// on 2 cores.
pub const ARENAS_PER_CORE: usize = 1;

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD`] and its arenas at [`ARENAS_PER_CORE`] per
/// core (a no-op on other C libraries, and for each one the environment sets). Call it first
/// thing in `main`, before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; the values are in range, and glibc
        // serialises it with allocation internally.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let arenas = (cores * ARENAS_PER_CORE).max(2);
        // SAFETY: as above; a cap on arenas only stops new ones being created.
        let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int) };
    }
}

/// kaudit's allocator: mimalloc below [`MMAP_THRESHOLD`], the C library's malloc from there.
///
/// Small blocks (events, alerts, request bodies of an ordinary batch) are allocated on one
/// thread and freed on another; glibc's arenas, capped for the sake of the large ones (above),
/// then contended on their locks: malloc, free and the futex waits between them were about a
/// fifth of kaudit's CPU under `scripts/bench-ingest`, and mimalloc took most of that away.
/// Large blocks (12 MiB batches) stay with glibc, which maps each on its own and unmaps it when
/// freed: with mimalloc for every size, the 12 MiB overload of `scripts/bench-durability` held
/// freed bodies and peaked at 585 MiB, over the 512 MiB bound (305 MiB when mimalloc purged at
/// once, which cost the small blocks' speed).
pub struct Allocator;

impl Allocator {
    fn large(size: usize) -> bool {
        size >= MMAP_THRESHOLD
    }
}

// SAFETY: each block is allocated and freed by the same allocator, chosen by its size, which
// the `GlobalAlloc` contract passes unchanged to `dealloc` (and as `new_size` to `realloc`'s
// next owner); a block that changes sides is moved by allocate, copy and free.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if Self::large(layout.size()) {
            unsafe { std::alloc::System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if Self::large(layout.size()) {
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if Self::large(layout.size()) {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        match (Self::large(layout.size()), Self::large(new_size)) {
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            (true, true) => unsafe { std::alloc::System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `realloc`'s caller guarantees `new_size`, rounded up to the
                // alignment, does not overflow `isize`.
                let new = unsafe {
                    std::alloc::Layout::from_size_align_unchecked(new_size, layout.align())
                };
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

/// Bytes that a kind of held data (request bodies, carried batches) may take at once: a holder
/// reserves its bytes before it holds them and gives them back when the [`Reserved`] drops.
#[derive(Clone, Debug)]
pub struct Budget {
    sem: std::sync::Arc<tokio::sync::Semaphore>,
    bytes: usize,
}

/// Reserved bytes; given back on drop.
#[derive(Debug)]
pub struct Reserved {
    _permit: tokio::sync::OwnedSemaphorePermit,
    large: bool,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.large {
            large_held(false);
        }
    }
}

/// A reservation this large is a large batch's (12 MiB request bodies under overload).
pub const LARGE_RESERVATION: usize = MMAP_THRESHOLD;

/// How many [`LARGE_RESERVATION`]s are held now.
static LARGE_HELD: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Counts a large reservation taken (`true`) or given back. While any is held, mimalloc gives
/// the memory its blocks free back to the system at once (its purge delay 0) instead of after
/// its delay (1 s in mimalloc 3): evaluating large batches frees many small
/// blocks, and kept for reuse they took the 12 MiB overload of `scripts/bench-durability` to a
/// peak of 498-515 MiB (328 MiB purged at once). Ordinary traffic keeps the delay: purging at
/// once all the time cost 13 % of the events/s of `scripts/bench-ingest`.
fn large_held(taken: bool) {
    let mut held = LARGE_HELD.lock().unwrap_or_else(|p| p.into_inner());
    let before = *held;
    *held = if taken {
        before + 1
    } else {
        before.saturating_sub(1)
    };
    if let Some(delay) = purge_delay_change(before, *held) {
        set_purge_delay(delay);
    }
}

/// The purge delay to set when the large reservations held go from `before` to `after`:
/// `Some(Some(0))` at the first, `Some(None)` (back to the default) when the last is given back.
fn purge_delay_change(before: usize, after: usize) -> Option<Option<std::ffi::c_long>> {
    match (before, after) {
        (0, 1..) => Some(Some(0)),
        (1.., 0) => Some(None),
        _ => None,
    }
}

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc's purge delay in milliseconds, or back to what it was at first call (its
/// default or `MIMALLOC_PURGE_DELAY`). A process whose allocator is not mimalloc (the tests)
/// only changes an option nothing reads.
fn set_purge_delay(ms: Option<std::ffi::c_long>) {
    static DEFAULT: std::sync::OnceLock<std::ffi::c_long> = std::sync::OnceLock::new();
    // SAFETY: reading and setting an option are plain loads and stores of its value; mimalloc
    // reads the delay each time it schedules a purge.
    let default =
        *DEFAULT.get_or_init(|| unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) });
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms.unwrap_or(default)) };
}

impl Budget {
    /// A budget of `bytes` (at most the semaphore's maximum, 2^61 bytes).
    pub fn new(bytes: usize) -> Budget {
        let bytes = bytes.min(tokio::sync::Semaphore::MAX_PERMITS);
        Budget {
            sem: std::sync::Arc::new(tokio::sync::Semaphore::new(bytes)),
            bytes,
        }
    }

    /// Reserves `bytes` (one reservation counts at most 4 GiB), or `None` when the budget has
    /// not that much left.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reserved> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        let permit = self.sem.clone().try_acquire_many_owned(n).ok()?;
        let large = bytes >= LARGE_RESERVATION;
        if large {
            large_held(true);
        }
        Some(Reserved {
            _permit: permit,
            large,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.bytes - self.sem.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn freed_memory_goes_back_at_once_while_a_large_reservation_is_held() {
        // The option's place in mimalloc.h's enum: just before one the sys crate names.
        assert_eq!(
            MI_OPTION_PURGE_DELAY,
            libmimalloc_sys::mi_option_use_numa_nodes - 1
        );
        // (Reservations themselves are counted by every test of this binary at once, so the
        // global option is not asserted here; `scripts/bench-durability` shows its effect.)
        let counts = [0, 1, 2, 1, 0, 0];
        let changes: Vec<_> = counts
            .windows(2)
            .map(|w| purge_delay_change(w[0], w[1]))
            .collect();
        assert_eq!(changes, [Some(Some(0)), None, None, Some(None), None]);
        let b = Budget::new(4 * LARGE_RESERVATION);
        assert!(!b.try_reserve(LARGE_RESERVATION - 1).unwrap().large);
        assert!(b.try_reserve(LARGE_RESERVATION).unwrap().large);
    }

    #[test]
    fn blocks_keep_their_bytes_when_they_change_allocator() {
        let a = Allocator;
        let small = 1000;
        let large = MMAP_THRESHOLD + 4096;
        unsafe {
            let l = Layout::from_size_align(small, 16).unwrap();
            let p = a.alloc(l);
            assert!(!p.is_null());
            for i in 0..small {
                *p.add(i) = i as u8;
            }
            // Small to large (mimalloc to the C library), then back.
            let p = a.realloc(p, l, large);
            assert!(!p.is_null());
            assert!((0..small).all(|i| *p.add(i) == i as u8));
            *p.add(large - 1) = 7;
            let l = Layout::from_size_align(large, 16).unwrap();
            let p = a.realloc(p, l, small / 2);
            assert!(!p.is_null());
            assert!((0..small / 2).all(|i| *p.add(i) == i as u8));
            a.dealloc(p, Layout::from_size_align(small / 2, 16).unwrap());
            let z = a.alloc_zeroed(l);
            assert!(!z.is_null() && (0..large).all(|i| *z.add(i) == 0));
            a.dealloc(z, l);
        }
    }
}
