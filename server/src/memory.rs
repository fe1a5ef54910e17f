//! Giving memory back to the system after a burst.
//!
//! glibc's allocator keeps freed memory in its per-thread arenas: after a
//! flood of relayed messages the process stayed hundreds of MiB larger than
//! before, although nothing held the memory any more. Every few seconds the
//! free pages are returned (`malloc_trim`, on a blocking thread: it takes
//! about a millisecond per hundred MiB of heap).

use std::time::Duration;

const EVERY: Duration = Duration::from_secs(5);

pub async fn trim_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim only releases free pages of the allocator's
            // own arenas; it is thread-safe.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    }
}
