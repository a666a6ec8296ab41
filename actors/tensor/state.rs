//! [`WorkerState`]: what every instance (vat) of one tensor worker shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ops::DType;
use super::quota::Held;
use super::spill::{Spill, Stored};
use super::transfer::Incoming;
use crate::{Error, Quota};

/// Settings of a worker's data plane.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut opts = capactor::actors::tensor::DataOptions::default();
/// opts.resume_timeout = Duration::from_secs(5);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DataOptions {
    /// How long an upload cut midway waits to be resumed before its bytes
    /// are freed. Default 60 s.
    pub resume_timeout: Duration,
    /// How long a worker-to-worker transfer ticket stays valid. Default 30 s.
    pub ticket_ttl: Duration,
    /// The largest tensor `Tensor.read` and `take` answer in one message;
    /// larger ones must be read streamed (`readTo`, which the client API
    /// uses by itself). Default 64 MiB less 64 KiB, under the default
    /// message limit.
    pub max_single_message: u64,
    /// Named objects a worker holds at most. Default 65,536.
    pub max_objects: usize,
    /// Uploads under way at most (including those waiting to be resumed).
    /// Default 1,024.
    pub max_uploads: usize,
    /// Where uploads that do not fit in the memory quota go instead, as
    /// memory-mapped files (`capactor worker --spill-dir`). Default none:
    /// such an upload is refused.
    pub spill: Option<Arc<Spill>>,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            resume_timeout: Duration::from_secs(60),
            ticket_ttl: Duration::from_secs(30),
            max_single_message: (64 << 20) - (64 << 10),
            max_objects: 1 << 16,
            max_uploads: 1024,
            spill: None,
        }
    }
}

/// Where other workers reach this one for direct transfers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Endpoint {
    pub(crate) address: String,
    pub(crate) tls_certificate: Vec<u8>,
}

/// What every instance of one tensor worker shares, across vats and
/// connections: its memory quota, its named objects, the uploads under way
/// (so that one cut midway can be resumed on any connection), and where
/// other workers reach it. `Send + Sync`, shared through an `Arc`.
///
/// A worker served on several vats (`Runtime::serve_tcp` builds one
/// instance per vat) must give every instance the same state, or each vat
/// would have its own named objects.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::{Quota, TensorWorker, WorkerState};
///
/// let state = WorkerState::new(Quota::new(1 << 30));
/// let make = move || TensorWorker::with_state("w1", state.clone());
/// # drop(make);
/// ```
#[derive(Debug)]
pub struct WorkerState {
    pub(crate) quota: Arc<Quota>,
    pub(crate) options: DataOptions,
    objects: Mutex<BTreeMap<String, Named>>,
    uploads: Mutex<HashMap<Vec<u8>, Arc<Mutex<Pending>>>>,
    endpoint: Mutex<Option<Endpoint>>,
}

/// A named object.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub(crate) stored: Stored,
    pub(crate) held: Arc<Held>,
    pub(crate) expires: Option<Instant>,
}

/// One entry of [`WorkerState::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The name it was stored under.
    pub name: String,
    /// Its dtype.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<u64>,
    /// Its size in bytes.
    pub bytes: u64,
    /// Time left before it expires, if it has a TTL.
    pub expires_in: Option<Duration>,
}

/// An upload under way: its buffer and the quota it holds, until it is
/// finished, fails, or is left alone past the resume timeout.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) incoming: Option<(Incoming, Held)>,
    /// Upload capabilities alive for it (one per connection using it).
    pub(crate) attached: u32,
    /// Bumped by each resume: only the newest capability may write, so the
    /// offset a resume reported cannot move under it (chunks of the cut
    /// connection still being processed are refused).
    pub(crate) generation: u64,
    /// When it was last written to or detached.
    pub(crate) touched: Instant,
    /// Why it failed, for the calls that come after.
    pub(crate) failed: Option<String>,
}

impl Pending {
    /// The error for a call on an upload that is no longer under way.
    pub(crate) fn gone(&self) -> Error {
        match &self.failed {
            Some(why) => Error::invalid(format!("upload failed: {why}")),
            None => Error::invalid("upload has finished or expired"),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Names are what a person types: 1 to 255 bytes, no control characters.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "an object name must be 1 to 255 bytes without control characters",
        ));
    }
    Ok(())
}

impl WorkerState {
    /// A worker's state with its tensors counted against `quota`, and the
    /// default [`DataOptions`].
    pub fn new(quota: Arc<Quota>) -> Arc<Self> {
        Self::with_options(quota, DataOptions::default())
    }

    /// The same with other data-plane settings.
    pub fn with_options(quota: Arc<Quota>, options: DataOptions) -> Arc<Self> {
        Arc::new(WorkerState {
            quota,
            options,
            objects: Mutex::default(),
            uploads: Mutex::default(),
            endpoint: Mutex::default(),
        })
    }

    /// The worker's quota.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    /// Tells the worker where other workers can reach it for direct
    /// transfers (`Tensor.handoff`): its listen address, or the address it
    /// is known by from outside (`--advertise`, behind NAT or a Kubernetes
    /// Service), and its TLS certificate (DER) if it serves TLS, which the
    /// other worker then pins. Without it, only workers of the same process
    /// read from this one directly.
    pub fn set_endpoint(&self, address: impl Into<String>, tls_certificate: Option<Vec<u8>>) {
        *lock(&self.endpoint) = Some(Endpoint {
            address: address.into(),
            tls_certificate: tls_certificate.unwrap_or_default(),
        });
    }

    pub(crate) fn endpoint(&self) -> Option<Endpoint> {
        lock(&self.endpoint).clone()
    }

    /// The named objects, sorted by name.
    pub fn list(&self) -> Vec<ObjectInfo> {
        let now = Instant::now();
        lock(&self.objects)
            .iter()
            .filter(|(_, o)| o.expires.is_none_or(|e| e > now))
            .map(|(name, o)| ObjectInfo {
                name: name.clone(),
                dtype: o.stored.dtype(),
                shape: o.stored.shape().iter().map(|&d| d as u64).collect(),
                bytes: o.stored.nbytes() as u64,
                expires_in: o.expires.map(|e| e.saturating_duration_since(now)),
            })
            .collect()
    }

    /// Keeps an object under `name`, failing if the name is taken.
    pub(crate) fn store(&self, name: &str, object: Named) -> Result<(), Error> {
        check_name(name)?;
        let mut objects = lock(&self.objects);
        let now = Instant::now();
        objects.retain(|_, o| o.expires.is_none_or(|e| e > now));
        if objects.contains_key(name) {
            return Err(Error::invalid(format!(
                "an object named {name:?} exists already"
            )));
        }
        if objects.len() >= self.options.max_objects {
            return Err(Error::limit(
                "named objects",
                objects.len() + 1,
                self.options.max_objects,
            ));
        }
        objects.insert(name.to_owned(), object);
        Ok(())
    }

    /// Keeps `object` under `name`, for `ttl_millis` if that is not 0 (a
    /// timer on the current vat then frees it).
    pub(crate) fn store_with_ttl(
        self: &Arc<Self>,
        name: &str,
        object: &mut Named,
        ttl_millis: u64,
    ) -> Result<(), Error> {
        let ttl = Duration::from_millis(ttl_millis);
        if ttl_millis > 0 {
            object.expires = Some(Instant::now() + ttl);
        }
        self.store(name, object.clone())?;
        if ttl_millis > 0 {
            let state = self.clone();
            let name = name.to_owned();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(ttl).await;
                state.expire(&name);
            });
        }
        Ok(())
    }

    /// The object under `name`, if it has not expired.
    pub(crate) fn load(&self, name: &str) -> Result<Named, Error> {
        let now = Instant::now();
        let objects = lock(&self.objects);
        match objects.get(name) {
            Some(o) if o.expires.is_none_or(|e| e > now) => Ok(o.clone()),
            _ => Err(Error::invalid(format!("no object named {name:?}"))),
        }
    }

    /// Forgets `name`.
    pub(crate) fn delete(&self, name: &str) -> Result<(), Error> {
        match lock(&self.objects).remove(name) {
            Some(o) if o.expires.is_none_or(|e| e > Instant::now()) => Ok(()),
            _ => Err(Error::invalid(format!("no object named {name:?}"))),
        }
    }

    /// Drops `name` if it has expired (a TTL timer).
    pub(crate) fn expire(&self, name: &str) {
        let now = Instant::now();
        let mut objects = lock(&self.objects);
        if objects
            .get(name)
            .is_some_and(|o| o.expires.is_some_and(|e| e <= now))
        {
            objects.remove(name);
        }
    }

    /// Registers a new upload under a fresh, unguessable id.
    pub(crate) fn begin_upload(
        &self,
        incoming: Incoming,
        held: Held,
    ) -> Result<(Vec<u8>, Arc<Mutex<Pending>>), Error> {
        let mut uploads = lock(&self.uploads);
        if uploads.len() >= self.options.max_uploads {
            return Err(Error::limit(
                "uploads under way",
                uploads.len() + 1,
                self.options.max_uploads,
            ));
        }
        let mut id = vec![0u8; 16];
        rand::fill(&mut id[..]);
        let pending = Arc::new(Mutex::new(Pending {
            incoming: Some((incoming, held)),
            attached: 1,
            generation: 0,
            touched: Instant::now(),
            failed: None,
        }));
        uploads.insert(id.clone(), pending.clone());
        Ok((id, pending))
    }

    /// Attaches another capability to the upload `id`.
    pub(crate) fn resume_upload(&self, id: &[u8]) -> Result<Arc<Mutex<Pending>>, Error> {
        let pending = lock(&self.uploads).get(id).cloned();
        let unknown =
            || Error::invalid("no upload under way has that id (finished, failed or expired)");
        let pending = pending.ok_or_else(unknown)?;
        {
            let mut p = lock(&pending);
            if p.incoming.is_none() {
                return Err(unknown());
            }
            p.attached += 1;
            p.generation += 1;
            p.touched = Instant::now();
        }
        Ok(pending)
    }

    /// Forgets the upload `id` (finished or failed).
    pub(crate) fn end_upload(&self, id: &[u8]) {
        lock(&self.uploads).remove(id);
    }

    /// Frees the upload `id` if no capability is attached to it and it has
    /// been left alone for the resume timeout (a timer's check).
    pub(crate) fn reap_upload(&self, id: &[u8]) {
        let mut uploads = lock(&self.uploads);
        let stale = uploads.get(id).is_some_and(|p| {
            let p = lock(p);
            p.attached == 0 && p.touched.elapsed() >= self.options.resume_timeout
        });
        if stale {
            if let Some(p) = uploads.remove(id) {
                lock(&p).incoming = None;
            }
        }
    }
}
