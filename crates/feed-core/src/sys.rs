//! Process helpers for Feed's binaries, benchmarks and examples: glibc
//! allocator tuning and the peak resident set (Linux; elsewhere they do
//! nothing and report nothing).

/// Tunes glibc's allocator for a small device; call first thing in `main`,
/// before any other thread exists.
///
/// At most 2 malloc arenas (glibc's default is 8 per core). Every thread
/// that allocates may otherwise get its own arena, and memory freed in one
/// is not reused by another: searching 100k Lance vectors on two threads
/// peaked at 454 MiB with the defaults and 239 MiB with 2 arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; the caller runs
    // this before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Tunes glibc's allocator (not glibc: nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc() {}

/// The mmap threshold while a [`MmapPin`] is held: blocks of 128 KiB and
/// more are mapped on their own and handed back when freed.
pub const PINNED_MMAP_THRESHOLD: usize = 128 * 1024;

/// The mmap threshold once the last [`MmapPin`] is dropped (glibc's
/// dynamic threshold cannot be restored): scan buffers of a few MiB, which
/// Lance allocates again on every search, come from the heap and are
/// reused. Searching 100k vectors on two threads peaked at 212 MiB with
/// 4 MiB, 199 MiB with 1 MiB and 295 MiB with 32 MiB (glibc's ceiling for
/// its dynamic threshold) at the same queries/s; flat scans were slower
/// with 1 MiB.
pub const UNPINNED_MMAP_THRESHOLD: usize = 4 * 1024 * 1024;

/// Holds glibc's mmap threshold at [`PINNED_MMAP_THRESHOLD`] while alive
/// (guards nest; the last one dropped sets [`UNPINNED_MMAP_THRESHOLD`]).
///
/// For work whose large buffers are a different size every time — the
/// embedding model's, megabytes each: with glibc's default they come from
/// the heap and are never handed back. Embedding 3,000 fortunes (2
/// arenas) peaked at 1,124 MiB unpinned, 508 MiB pinned for the whole
/// process and 515 MiB pinned only while the embedder runs. Pinning for the
/// whole process would make every Lance search map its scan buffers afresh
/// (exact p50 125 → 281 ms on 100k vectors), so the embedder pins only
/// while it runs.
#[must_use = "the threshold is pinned only while the guard lives"]
pub struct MmapPin(());

static PINS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl MmapPin {
    /// Pins the threshold (or joins a pin already held).
    pub fn hold() -> MmapPin {
        let mut n = PINS.lock().unwrap_or_else(|p| p.into_inner());
        if *n == 0 {
            set_mmap_threshold(PINNED_MMAP_THRESHOLD);
        }
        *n += 1;
        MmapPin(())
    }
}

impl Drop for MmapPin {
    fn drop(&mut self) {
        let mut n = PINS.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            set_mmap_threshold(UNPINNED_MMAP_THRESHOLD);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes an allocator parameter; glibc takes its
    // own lock to do so.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_bytes: usize) {}

/// Hands the heap's free memory back to the system (glibc's
/// `malloc_trim`), for after a one-off burst of allocation: training the
/// LanceDB index over 100,000 vectors left 206–230 MiB resident, 122 MiB
/// after a trim (and the queries that followed peaked at 200 MiB instead
/// of 222–256).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free memory to the system; glibc
    // takes its own locks to do so.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Hands the heap's free memory back (not glibc: nothing to do).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() {}

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

/// The resident set now, KiB, in two parts: pages of mapped files (the
/// program and its shared libraries, mostly code) and anonymous memory
/// (heap, buffers: the data). `None` where `/proc/self/status` does not
/// say.
pub fn rss_parts_kib() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("RssFile:")?, field("RssAnon:")?))
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the next
/// phase's peak is its own. Returns whether that worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn anonymous_rss_counts_touched_heap() {
        let (file, before) = rss_parts_kib().expect("/proc/self/status has RssFile and RssAnon");
        assert!(file > 0, "the test binary's own pages are file-backed");
        let block = std::hint::black_box(vec![1u8; 32 << 20]);
        let (_, after) = rss_parts_kib().expect("read again");
        assert!(
            after >= before + (24 << 10),
            "32 MiB touched: anonymous {before} → {after} KiB"
        );
        drop(block);
    }

    #[test]
    fn pins_nest_and_release() {
        let held = || *PINS.lock().unwrap_or_else(|p| p.into_inner());
        let a = MmapPin::hold();
        let b = MmapPin::hold();
        assert_eq!(held(), 2);
        drop(a);
        assert_eq!(held(), 1);
        drop(b);
        assert_eq!(held(), 0);
    }
}
