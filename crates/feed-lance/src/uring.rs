//! Whether this process may use io_uring (Linux 5.1+, and not forbidden by
//! a seccomp profile such as Docker's default or Android's).

/// Ring entries Lance asks for (`DEFAULT_URING_QUEUE_DEPTH` in lance-io),
/// so the probe needs what Lance's ring threads will.
#[cfg(target_os = "linux")]
const ENTRIES: u32 = 16 * 1024;

/// Whether a ring of Lance's size can be set up, probed once per process.
#[cfg(target_os = "linux")]
pub(crate) fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        // struct io_uring_params: 120 bytes, zeroed for a default ring.
        let mut params = [0u64; 15];
        // SAFETY: io_uring_setup reads and writes exactly one
        // io_uring_params, which `params` is sized and aligned for; the
        // descriptor it returns is ours and closed at once.
        let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, ENTRIES, params.as_mut_ptr()) };
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is a descriptor this function just opened.
        unsafe { libc::close(fd as libc::c_int) };
        true
    })
}

/// Not Linux: no io_uring.
#[cfg(not(target_os = "linux"))]
pub(crate) fn available() -> bool {
    false
}
