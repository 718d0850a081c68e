//! The allocator's settings, made once at start.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed
//! (up to 32 MiB), so the tables that grow by doubling end up on the heap,
//! and what they leave behind stays resident. Under a flood of a million
//! keys `scan -j 2` was resident at twice its live heap (heaptrack: 204 MB
//! live, 398 MB resident). A fixed threshold keeps every block of 256 KiB or
//! more in its own mapping, handed back to the system when freed. No crate
//! sets this; a different allocator would add a C build to the dependency
//! tree for one setting.

/// Sets the allocator up (glibc only; elsewhere nothing to do).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// `M_MMAP_THRESHOLD` in glibc's `malloc.h`.
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes the allocator's parameters; it is
        // called before any other thread exists.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 10);
        }
    }
}
