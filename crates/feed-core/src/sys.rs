//! Process helpers for Feed's binaries, benchmarks and examples: glibc
//! allocator tuning and the peak resident set (Linux; elsewhere they do
//! nothing and report nothing).

/// Tunes glibc's allocator for a small device; call first thing in `main`,
/// before any other thread exists.
///
/// - At most 2 malloc arenas (glibc's default is 8 per core). Every thread
///   that allocates may otherwise get its own arena, and memory freed in one
///   is not reused by another: searching 100k Lance vectors on two threads
///   peaked at 454 MiB with the defaults, 239 MiB with 2 arenas, and
///   186 MiB with both settings here.
/// - The mmap threshold pinned at 128 KiB. By default glibc raises it each
///   time a large block is freed, after which large per-run buffers (the
///   embedding model's: megabytes each, every run a different size) come
///   from the heap and are never handed back: embedding 1,118 fortunes
///   peaked at 673 MiB with the default and 388 MiB pinned. The price:
///   large scan buffers are mapped afresh each time, so Lance's flat and
///   filtered searches run slower than with the default (see the feed-lance
///   README).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; the caller runs
    // this before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Tunes glibc's allocator (not glibc: nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc() {}

/// Peak resident set (VmHWM) of this process, KiB; `None` where
/// `/proc/self/status` does not say.
pub fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the next
/// phase's peak is its own. Returns whether that worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
