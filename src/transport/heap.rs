//! Memory goes back: after connections die, what they held (frame buffers,
//! tensors, replies) must return to the operating system, not stay in the
//! allocator's free lists.
//!
//! glibc serves allocations from 128 KiB up with their own mapping, which
//! `free` unmaps, but it raises that threshold to the size of every such
//! block freed (up to 32 MiB). After the first 8 MiB frame is freed, every
//! later one comes from the heap arenas, and a wave of dead clients leaves
//! their freed megabytes in each vat thread's arena: measured at 4.75x the
//! worker's baseline RSS. Fixing the threshold at 128 KiB (what
//! `MALLOC_MMAP_THRESHOLD_=131072` does) keeps every large block in a
//! mapping of its own, handed back the moment it is freed; the cost is a
//! `mmap`/`munmap` and fresh page faults per large block, small beside
//! moving a megabyte over the network.
//!
//! Set once per process, the first time anything is served. An operator's
//! own `MALLOC_MMAP_THRESHOLD_` is left as it is.
//!
//! Smaller blocks (each connection's read buffer, capnp-rpc's tables, a
//! body's first 64 KiB) still come from the arenas, and a dead crowd's
//! leaves free pages scattered through them that `free` cannot give back.
//! So once connections have closed and the worker has had [`QUIET`] without
//! another close (or [`MAX_DELAY`] of continuous churn), a thread of its
//! own calls `malloc_trim(0)`, which returns every whole free page of every
//! arena. It costs a walk of the arenas' free lists, at most once per
//! [`QUIET`].
//!
//! Elsewhere than on glibc nothing is done (musl and the BSDs' allocators
//! already unmap large blocks and purge free pages themselves).

use std::time::Duration;

/// How long after the last connection closed the arenas are trimmed.
const QUIET: Duration = Duration::from_millis(250);
/// Longest a trim waits while connections keep closing.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// The largest block the heap arenas keep; larger ones get a mapping each.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 << 10;

/// Fixes the allocator's mmap threshold (see the module docs), once.
pub(crate) fn give_large_frees_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
                return;
            }
            // SAFETY: mallopt only changes allocator parameters; glibc
            // takes its own lock, so concurrent allocations are fine.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; freed memory may linger");
            }
        });
    }
}

/// A connection has closed: trim the arenas once closes have stopped for a
/// moment (see the module docs).
pub(crate) fn connection_closed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::mpsc;
        static TRIMMER: std::sync::OnceLock<Option<mpsc::Sender<()>>> = std::sync::OnceLock::new();
        let trimmer = TRIMMER.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("capactor-trim".into())
                .spawn(move || trim_after_closes(&rx));
            // Without the thread, memory lingers; nothing else breaks.
            spawned.ok().map(|_| tx)
        });
        if let Some(tx) = trimmer {
            let _ = tx.send(());
        }
    }
}

/// The trimming thread: after each burst of closes, one `malloc_trim`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_after_closes(closes: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::Instant;
    while closes.recv().is_ok() {
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let wait = QUIET.min(deadline.saturating_duration_since(Instant::now()));
            match closes.recv_timeout(wait) {
                Ok(()) if Instant::now() < deadline => {}
                Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        // SAFETY: malloc_trim only returns free pages to the kernel; glibc
        // locks each arena while it walks it.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Calls [`connection_closed`] when dropped: held by each served
/// connection, whichever way it ends.
pub(crate) struct TrimOnClose;

impl Drop for TrimOnClose {
    fn drop(&mut self) {
        connection_closed();
    }
}
