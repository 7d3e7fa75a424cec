//! Bounded memory: byte budgets ([`Budget`]: request bodies in flight, batches carried to
//! detection) and the allocator's tuning for large request bodies.
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

/// Bytes that a kind of held data (request bodies, carried batches) may take at once: a holder
/// reserves its bytes before it holds them and gives them back when the [`Reserved`] drops.
#[derive(Clone, Debug)]
pub struct Budget {
    sem: std::sync::Arc<tokio::sync::Semaphore>,
    bytes: usize,
}

/// Reserved bytes; given back on drop.
#[derive(Debug)]
pub struct Reserved(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

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
        self.sem
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(Reserved)
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.bytes - self.sem.available_permits()
    }
}
