//! The compute pool: the one place where kernels run on more than one
//! core.
//!
//! Large kernels (at least [`PAR_ELEMENTS`] elements) split their work over
//! a dedicated rayon pool, never rayon's global one, so the parallelism is
//! bounded by a configured number of threads ([`set_compute_threads`];
//! by default one per core). Its threads run at a lower scheduling priority
//! (nice 10 on Linux), so the vat threads that answer calls preempt them at
//! once: a big matmul uses every idle core without delaying a `ping`.
//! Small kernels stay on the calling thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Kernels over fewer elements than this run on the calling thread.
pub const PAR_ELEMENTS: usize = 1 << 16;

/// The requested size; 0 means one thread per core.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// `None` if the threads could not be spawned: kernels then run on the
/// calling thread.
static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();

/// Why [`set_compute_threads`] refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// The pool already runs with another size.
    #[error("the compute pool already runs {running} threads")]
    Started {
        /// Its size.
        running: usize,
    },
    /// Zero threads.
    #[error("the compute pool needs at least one thread")]
    Zero,
}

/// Sets the number of compute threads the tensor kernels share in this
/// process. Call it before the first big op (a worker calls it at start,
/// from `--compute-threads`); once the pool runs, asking for another size
/// fails.
///
/// # Errors
///
/// [`PoolError::Zero`] for 0, [`PoolError::Started`] if the pool already
/// runs with another size.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::ops::{compute_threads, set_compute_threads};
///
/// set_compute_threads(2).unwrap();
/// assert_eq!(compute_threads(), 2);
/// assert!(set_compute_threads(3).is_err());
/// ```
pub fn set_compute_threads(n: usize) -> Result<(), PoolError> {
    if n == 0 {
        return Err(PoolError::Zero);
    }
    if POOL.get().is_none() {
        THREADS.store(n, Ordering::Relaxed);
    }
    let running = compute_threads();
    if running == n {
        Ok(())
    } else {
        Err(PoolError::Started { running })
    }
}

/// The number of compute threads (starting the pool if it is not yet).
///
/// # Examples
///
/// ```
/// assert!(capactor::actors::tensor::ops::compute_threads() >= 1);
/// ```
pub fn compute_threads() -> usize {
    pool().map_or(1, rayon::ThreadPool::current_num_threads)
}

fn pool() -> Option<&'static rayon::ThreadPool> {
    let pool = POOL.get_or_init(|| {
        let n = match THREADS.load(Ordering::Relaxed) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("capactor-compute-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| tracing::warn!("no compute pool, kernels run on one thread: {e}"))
            .ok()
    });
    pool.as_ref()
}

/// Runs `f` in the compute pool, whose parallel iterators it then uses.
pub(super) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Whether a kernel over `len` elements is worth splitting.
pub(super) fn worth(len: usize) -> bool {
    len >= PAR_ELEMENTS
}

/// Nice 10 for the calling thread, so the vats preempt the kernels.
fn lower_priority() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only
    // the priority of that thread (Linux's per-thread nice); no memory is
    // touched.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
