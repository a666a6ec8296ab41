//! [`Spill`]: where a worker keeps tensors that do not fit its memory
//! limit, as memory-mapped files.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::MmapMut;

use super::ops::{Array, DType};
use super::transfer::Chunks;
use crate::{Error, Quota};

/// Prefix of the directory each worker process makes in the spill
/// directory; the rest of its name is the process id.
const PREFIX: &str = "capactor-spill-";

/// A spill directory: tensors past a worker's memory limit are written
/// to files here and memory-mapped, so the worker can hold and serve more
/// than its RAM (uploads and copies land here when memory is full, and
/// are read back as they are served).
///
/// Each worker process works in a directory of its own inside it, made
/// private (0700); every file is removed when its tensor is freed, the
/// process's directory when the `Spill` is dropped, and directories left
/// by worker processes that are no longer running when one is opened.
///
/// # Examples
///
/// ```
/// use capactor::actors::tensor::Spill;
///
/// let dir = tempfile::tempdir().unwrap();
/// let spill = Spill::open(dir.path(), 1 << 30).unwrap();
/// assert!(spill.path().starts_with(dir.path()));
/// assert_eq!(spill.quota().limit(), 1 << 30);
/// ```
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    quota: Arc<Quota>,
    next: AtomicU64,
}

impl Spill {
    /// Spills into `parent`, up to `limit` bytes on disk.
    ///
    /// # Errors
    ///
    /// Fails, naming the directory, if it does not exist or cannot be
    /// written.
    pub fn open(parent: impl AsRef<Path>, limit: u64) -> Result<Arc<Spill>, Error> {
        let parent = parent.as_ref();
        let cannot = |what: &str, e: std::io::Error| {
            Error::invalid(format!(
                "spill directory {}: cannot {what}: {e}",
                parent.display()
            ))
        };
        remove_stale(parent).map_err(|e| cannot("be read", e))?;
        let dir = parent.join(format!("{PREFIX}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| cannot("be cleaned", e))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| cannot("be written", e))?;
        Ok(Arc::new(Spill {
            dir,
            quota: Quota::new(limit),
            next: AtomicU64::new(0),
        }))
    }

    /// This process's directory inside the spill directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The bytes on disk the spill allows, and those in use.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    /// Files in this process's directory (tensors spilled now).
    pub fn files(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }

    /// A new file of `bytes`, mapped read-write.
    pub(crate) fn create(self: &Arc<Self>, bytes: usize) -> Result<MappedFile, Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n}.tensor"));
        // The path is the worker's business: the caller learns only that
        // the spill failed, the worker's log says where.
        let fail =
            |e: std::io::Error| Error::internal(format_args!("spill file {}: {e}", path.display()));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        let mut file = MappedFile {
            path: path.clone(),
            len: bytes,
            map: None,
            _spill: self.clone(),
        };
        // From here on, dropping `file` removes it.
        f.set_len(bytes.max(1) as u64).map_err(fail)?;
        // SAFETY: the file is ours alone (created new, 0600, in a 0700
        // directory only this process writes), so nothing else changes it
        // while it is mapped.
        file.map = Some(unsafe { MmapMut::map_mut(&f) }.map_err(fail)?);
        Ok(file)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the directories of worker processes that are gone.
fn remove_stale(parent: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(parent)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(
                "removing {}, left by a worker that is gone",
                entry.path().display()
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// One spilled tensor's file, removed when dropped.
pub(crate) struct MappedFile {
    path: PathBuf,
    len: usize,
    map: Option<MmapMut>,
    _spill: Arc<Spill>,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile").finish_non_exhaustive()
    }
}

impl MappedFile {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.map.as_deref().map_or(&[], |m| &m[..self.len])
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        self.map.as_deref_mut().map_or(&mut [], |m| &mut m[..len])
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        self.map = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A tensor's contents, in memory or spilled to disk.
#[derive(Clone, Debug)]
pub(crate) enum Stored {
    /// An array in memory.
    Mem(Arc<Array>),
    /// Little-endian bytes in a mapped file.
    Disk(Arc<Spilled>),
}

/// A spilled tensor.
#[derive(Debug)]
pub(crate) struct Spilled {
    pub(crate) dtype: DType,
    pub(crate) dims: Vec<usize>,
    pub(crate) file: MappedFile,
}

impl Stored {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Stored::Mem(a) => a.dtype(),
            Stored::Disk(d) => d.dtype,
        }
    }

    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Stored::Mem(a) => a.shape(),
            Stored::Disk(d) => &d.dims,
        }
    }

    pub(crate) fn nbytes(&self) -> usize {
        match self {
            Stored::Mem(a) => a.nbytes(),
            Stored::Disk(d) => d.file.bytes().len(),
        }
    }

    /// A cursor over its bytes from `offset`.
    pub(crate) fn chunks(&self, offset: u64) -> Result<Chunks<'_>, Error> {
        match self {
            Stored::Mem(a) => Chunks::new(a, offset),
            Stored::Disk(d) => Chunks::of_bytes(d.file.bytes(), d.dtype.size(), offset),
        }
    }
}
