//! Allocator tuning for large request bodies.
//!
//! An audit batch can be 12 MiB, and a busy webhook holds and frees many of them. glibc's malloc
//! raises its mmap threshold each time such a block is freed (up to 32 MiB), after which 12 MiB
//! buffers come from the heap arenas, one per thread, and what they free there stays in the
//! process: under overload `scripts/bench-durability` measured a peak RSS of 466-574 MiB with the
//! default behaviour and 306 MiB with the threshold pinned at 1 MiB (large blocks mapped and
//! returned to the system on free). kaudit pins it at start, unless `MALLOC_MMAP_THRESHOLD_` is
//! set in the environment (the operator's choice wins).

/// The size from which allocations are mapped on their own and given back when freed.
pub const MMAP_THRESHOLD: usize = 1024 * 1024;

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD`] (a no-op on other C libraries, and when the
/// environment sets it). Call it first thing in `main`, before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; the values are in range, and glibc
        // serialises it with allocation internally.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
    }
}
