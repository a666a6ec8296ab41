//! The data commands of the `capactor` binary: named objects on a worker,
//! sent from and read into `.npy` files, listed, deleted, and copied from
//! one worker to another.
//!
//! ```text
//! capactor put 127.0.0.1:7001 weights.npy --name weights
//! capactor ls 127.0.0.1:7001
//! capactor get 127.0.0.1:7001 weights out.npy
//! capactor copy 127.0.0.1:7001 weights 127.0.0.1:7002
//! capactor rm 127.0.0.1:7001 weights
//! ```
//!
//! Transfers show a progress bar with throughput on stderr (when it is a
//! terminal) and a one-line summary after; `--quiet` turns both off.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capactor::actors::tensor::{
    npy, Array, DataOptions, Download, ObjectInfo, Quota, Spill, Upload, Worker, WorkerState,
};
use capactor::schema::tensor_capnp::tensor_worker;
use capactor::{Connection, Error, Result};
use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

// `super`, not `crate`: tests/deploy_manifests.rs compiles main.rs as a module.
use super::{client_token, ClientTlsArgs};

/// How a data command reaches a worker.
#[derive(clap::Args, Debug)]
pub(crate) struct Reach {
    /// File holding the worker's token (or set CAPACTOR_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

/// What a data command shows while it runs.
#[derive(clap::Args, Debug)]
pub(crate) struct Show {
    /// No progress bar and no summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// `capactor put`.
#[derive(clap::Args, Debug)]
pub(crate) struct Put {
    /// The worker's address.
    addr: String,
    /// The `.npy` file to send (any dtype a worker holds but bf16, which
    /// `.npy` lacks).
    file: PathBuf,
    /// The name to store it under on the worker.
    #[arg(long)]
    name: String,
    /// Forget the object after this many seconds.
    #[arg(long)]
    ttl_secs: Option<u64>,
    #[command(flatten)]
    reach: Reach,
    #[command(flatten)]
    show: Show,
}

/// `capactor get`.
#[derive(clap::Args, Debug)]
pub(crate) struct Get {
    /// The worker's address.
    addr: String,
    /// The object's name.
    name: String,
    /// The `.npy` file to write (replaced if it exists, once every byte is
    /// in).
    file: PathBuf,
    #[command(flatten)]
    reach: Reach,
    #[command(flatten)]
    show: Show,
}

/// `capactor ls`.
#[derive(clap::Args, Debug)]
pub(crate) struct Ls {
    /// The worker's address.
    addr: String,
    #[command(flatten)]
    reach: Reach,
}

/// `capactor rm`.
#[derive(clap::Args, Debug)]
pub(crate) struct Rm {
    /// The worker's address.
    addr: String,
    /// The object's name.
    name: String,
    #[command(flatten)]
    reach: Reach,
}

/// `capactor copy`.
#[derive(clap::Args, Debug)]
pub(crate) struct Copy {
    /// The address of the worker holding the object.
    src_addr: String,
    /// The object's name, on both workers.
    name: String,
    /// The address of the worker to copy it to.
    dst_addr: String,
    /// How to reach the source (and the destination, unless the `--dest-`
    /// flags say otherwise).
    #[command(flatten)]
    reach: Reach,
    /// File holding the destination's token (default: the source's).
    #[arg(long)]
    dest_token_file: Option<PathBuf>,
    /// Speak TLS to the destination, trusting the roots in this PEM file
    /// (default: as for the source).
    #[arg(long, conflicts_with = "dest_tls_pin")]
    dest_tls_ca: Option<PathBuf>,
    /// Speak TLS to the destination, trusting exactly this certificate
    /// (default: as for the source).
    #[arg(long)]
    dest_tls_pin: Option<PathBuf>,
    /// The name to check the destination's certificate against.
    #[arg(long)]
    dest_tls_name: Option<String>,
    #[command(flatten)]
    show: Show,
}

/// The data-plane flags of `capactor worker`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeData {
    /// The address other workers reach this one at for direct
    /// worker-to-worker copies, when it is not the listen address (behind
    /// NAT or a Kubernetes Service, or when listening on 0.0.0.0).
    #[arg(long)]
    advertise: Option<String>,
    /// Seconds an upload cut midway waits to be resumed before its bytes
    /// are freed.
    #[arg(long, default_value_t = 60)]
    resume_secs: u64,
    /// Keep uploads and copies that do not fit --memory-mib in
    /// memory-mapped files in this directory (which must exist); the
    /// worker removes them when the tensors are freed, and what a crashed
    /// worker left here at start-up.
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// Bytes the spill directory may hold, in MiB.
    #[arg(long, default_value_t = 16 << 10, requires = "spill_dir")]
    spill_mib: u64,
}

/// What every vat of a `capactor worker` shares: one [`WorkerState`], so
/// that named objects and resumable uploads are the same on every
/// connection.
#[derive(Debug)]
pub(crate) struct DataPlane {
    pub(crate) state: Arc<WorkerState>,
    advertise: Option<String>,
}

impl ServeData {
    /// The worker's shared state, its tensors limited to `memory` bytes.
    ///
    /// # Errors
    ///
    /// A spill directory that does not exist or cannot be written.
    pub(crate) fn plane(&self, memory: u64) -> Result<DataPlane> {
        let mut opts = DataOptions::default();
        opts.resume_timeout = Duration::from_secs(self.resume_secs);
        if let Some(dir) = &self.spill_dir {
            opts.spill = Some(Spill::open(dir, self.spill_mib << 20)?);
        }
        Ok(DataPlane {
            state: WorkerState::with_options(Quota::new(memory), opts),
            advertise: self.advertise.clone(),
        })
    }
}

impl DataPlane {
    /// Where clients and other workers reach this worker: the advertised
    /// address, else `listening`.
    pub(crate) fn advertised(&self, listening: &capactor::Address) -> String {
        // TCP and TLS workers register as host:port, as they always have.
        self.advertise.clone().unwrap_or_else(|| {
            listening
                .host_port()
                .map_or_else(|| listening.to_string(), str::to_string)
        })
    }

    /// Tells the state where other workers reach this one: the advertised
    /// address, else `listening`, with the TLS certificate they must pin.
    pub(crate) fn set_endpoint(
        &self,
        listening: &capactor::Address,
        tls: Option<&capactor::tls::ServerTls>,
    ) {
        let address = self
            .advertise
            .clone()
            .unwrap_or_else(|| listening.to_string());
        let unspecified = listening
            .host_port()
            .and_then(|h| h.parse::<std::net::SocketAddr>().ok())
            .is_some_and(|a| a.ip().is_unspecified());
        if self.advertise.is_none() && unspecified {
            tracing::warn!(
                "listening on {listening}: other workers may not reach this one for direct \
                 copies; give --advertise ADDR"
            );
        }
        let cert = tls.map(|t| t.certificate().to_vec());
        self.state.set_endpoint(address, cert);
    }
}

async fn connect(
    addr: &str,
    token_file: Option<&Path>,
    tls: Option<capactor::tls::ClientTls>,
) -> Result<(Connection<tensor_worker::Client>, Worker)> {
    let mut opts = capactor::ConnectOptions::default();
    opts.token = client_token(token_file)?.unwrap_or_default();
    opts.tls = tls;
    let conn: Connection<tensor_worker::Client> = capactor::connect(addr, &opts).await?;
    let worker = Worker::new(conn.client().clone());
    Ok((conn, worker))
}

impl Reach {
    async fn connect(&self, addr: &str) -> Result<(Connection<tensor_worker::Client>, Worker)> {
        connect(addr, self.token_file.as_deref(), self.tls.load()?).await
    }
}

/// A progress bar of `total` bytes on stderr, or nothing if `quiet`.
fn bar(show: &Show, total: u64, what: String) -> ProgressBar {
    if show.quiet {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(style);
    pb.set_message(what);
    pb
}

/// After a transfer: the summary line, unless quiet.
fn summary(show: &Show, what: &str, bytes: u64, started: Instant) {
    if show.quiet {
        return;
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    eprintln!(
        "{what}: {} in {secs:.2} s ({}/s)",
        BinaryBytes(bytes),
        BinaryBytes(rate as u64)
    );
}

/// Fails early, before any byte moves, if `name` is missing (`want`) or
/// taken (`!want`) on `worker`; returns its entry if it exists.
async fn check_name(
    worker: &Worker,
    addr: &str,
    name: &str,
    want: bool,
) -> Result<Option<ObjectInfo>> {
    let found = worker.list().await?.into_iter().find(|o| o.name == name);
    match (&found, want) {
        (None, true) => Err(Error::invalid(format!(
            "no object named {name:?} on {addr}"
        ))),
        (Some(_), false) => Err(Error::invalid(format!(
            "an object named {name:?} exists already on {addr}"
        ))),
        _ => Ok(found),
    }
}

/// `capactor put`: sends a `.npy` file and stores it under a name.
pub(crate) fn put(args: Put) -> Result<()> {
    let array = read_npy(&args.file)?;
    capactor::block_on(async {
        let (_conn, worker) = args.reach.connect(&args.addr).await?;
        check_name(&worker, &args.addr, &args.name, false).await?;
        let total = array.nbytes() as u64;
        let pb = bar(&args.show, total, format!("put {}", args.name));
        let started = Instant::now();
        let mut upload = Upload::new(array);
        let progress = pb.clone();
        upload.on_progress(move |done, _| progress.set_position(done));
        let t = upload.run(&worker).await;
        pb.finish_and_clear();
        let t = t?;
        let ttl = args.ttl_secs.map(Duration::from_secs);
        worker.store(&args.name, &t, ttl).await?;
        summary(&args.show, &format!("put {}", args.name), total, started);
        Ok(())
    })?
}

/// `capactor get`: reads a named object into a `.npy` file.
pub(crate) fn get(args: Get) -> Result<()> {
    let array = capactor::block_on(async {
        let (_conn, worker) = args.reach.connect(&args.addr).await?;
        let info = check_name(&worker, &args.addr, &args.name, true).await?;
        let total = info.map_or(0, |o| o.bytes);
        let pb = bar(&args.show, total, format!("get {}", args.name));
        let started = Instant::now();
        let mut download = Download::new();
        let progress = pb.clone();
        download.on_progress(move |done, total| {
            progress.set_length(total);
            progress.set_position(done);
        });
        let array = download.run(&worker.load(&args.name)).await;
        pb.finish_and_clear();
        let array = array?;
        summary(
            &args.show,
            &format!("get {}", args.name),
            array.nbytes() as u64,
            started,
        );
        Ok::<_, Error>(array)
    })??;
    write_npy(&args.file, &array)
}

/// `capactor ls`: the named objects, one a line.
pub(crate) fn ls(args: Ls) -> Result<()> {
    let objects = capactor::block_on(async {
        let (_conn, worker) = args.reach.connect(&args.addr).await?;
        worker.list().await
    })??;
    print!("{}", table(&objects));
    Ok(())
}

/// The `ls` table: a header, then one aligned line per object.
fn table(objects: &[ObjectInfo]) -> String {
    let rows: Vec<[String; 5]> = objects
        .iter()
        .map(|o| {
            let dims: Vec<String> = o.shape.iter().map(u64::to_string).collect();
            [
                o.name.clone(),
                o.dtype.to_string(),
                format!("[{}]", dims.join(", ")),
                o.bytes.to_string(),
                o.expires_in
                    .map_or_else(|| "-".into(), |d| format!("{}s", d.as_secs())),
            ]
        })
        .collect();
    let head = ["NAME", "DTYPE", "SHAPE", "BYTES", "EXPIRES"].map(String::from);
    let mut widths = head.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `capactor rm`: forgets a named object.
pub(crate) fn rm(args: Rm) -> Result<()> {
    capactor::block_on(async {
        let (_conn, worker) = args.reach.connect(&args.addr).await?;
        check_name(&worker, &args.addr, &args.name, true).await?;
        worker.delete(&args.name).await
    })?
}

/// `capactor copy`: the destination worker fetches the object straight
/// from the source and stores it under the same name; its bytes do not
/// pass through this process.
pub(crate) fn copy(args: Copy) -> Result<()> {
    let dest_tls = match (&args.dest_tls_ca, &args.dest_tls_pin) {
        (None, None) => ClientTlsArgs {
            tls_ca: args.reach.tls.tls_ca.clone(),
            tls_pin: args.reach.tls.tls_pin.clone(),
            tls_name: args.dest_tls_name.clone(),
        },
        (ca, pin) => ClientTlsArgs {
            tls_ca: ca.clone(),
            tls_pin: pin.clone(),
            tls_name: args.dest_tls_name.clone(),
        },
    }
    .load()?;
    let dest_token = args
        .dest_token_file
        .as_deref()
        .or(args.reach.token_file.as_deref());
    capactor::block_on(async {
        let (_src_conn, src) = args.reach.connect(&args.src_addr).await?;
        let (_dst_conn, dst) = connect(&args.dst_addr, dest_token, dest_tls).await?;
        let info = check_name(&src, &args.src_addr, &args.name, true).await?;
        check_name(&dst, &args.dst_addr, &args.name, false).await?;
        let total = info.map_or(0, |o| o.bytes);
        let pb = if args.show.quiet {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                pb.set_style(style);
            }
            pb.set_message(format!(
                "copy {} ({}) worker to worker",
                args.name,
                BinaryBytes(total)
            ));
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        };
        let started = Instant::now();
        let copied = src.load(&args.name).copy_to_named(&dst, &args.name);
        // Answers once the destination holds every byte, checked.
        let done = copied.shape().await;
        pb.finish_and_clear();
        done?;
        summary(&args.show, &format!("copy {}", args.name), total, started);
        Ok(())
    })?
}

/// Reads a `.npy` file of any dtype the worker holds.
fn read_npy(path: &Path) -> Result<Array> {
    let cannot =
        |e: &dyn std::fmt::Display| Error::invalid(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(|e| cannot(&e))?;
    npy::read_npy(BufReader::new(file)).map_err(|e| cannot(&e))
}

/// Writes `array` to `path` through a temporary file beside it, so that
/// `path` is either untouched or complete.
fn write_npy(path: &Path, array: &Array) -> Result<()> {
    let cannot =
        |e: &dyn std::fmt::Display| Error::invalid(format!("cannot write {}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{} is not a file name", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.part", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut w = BufWriter::new(File::create(&tmp).map_err(|e| cannot(&e))?);
        npy::write_npy(&mut w, array).map_err(|e| cannot(&e))?;
        let file = w.into_inner().map_err(|e| cannot(e.error()))?;
        file.sync_all().map_err(|e| cannot(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| cannot(&e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn npy_files_of_every_dtype_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let arrays = [
            Array::F32(ArrayD::from_shape_fn(vec![3, 4], |d| {
                d[0] as f32 - d[1] as f32
            })),
            Array::F64(ArrayD::from_shape_fn(vec![5], |d| d[0] as f64 / 3.0)),
            Array::I32(ArrayD::from_shape_fn(vec![2, 2, 2], |d| d[2] as i32 - 7)),
            Array::I64(ArrayD::from_shape_fn(vec![0, 3], |_| 1)),
            Array::Bool(ArrayD::from_shape_fn(vec![4], |d| d[0] % 2 == 0)),
            Array::U8(ArrayD::from_shape_fn(vec![2, 3], |d| (d[1] * 100) as u8)),
            Array::F16(ArrayD::from_shape_fn(vec![3], |d| {
                capactor::actors::tensor::f16::from_f32(d[0] as f32 / 3.0)
            })),
            Array::U64(ArrayD::from_shape_fn(vec![1], |_| u64::MAX)),
            Array::I8(ArrayD::from_shape_fn(vec![2], |d| -(d[0] as i8))),
        ];
        for a in arrays {
            write_npy(&path, &a).unwrap();
            assert_eq!(read_npy(&path).unwrap(), a);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn an_npy_of_another_dtype_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c8.npy");
        let mut file = Vec::new();
        ndarray_npy::npy::header::Header {
            type_descriptor: py_literal::Value::String("<c8".into()),
            layout: ndarray_npy::npy::header::Layout::Standard,
            shape: vec![1],
        }
        .write(&mut file)
        .unwrap();
        file.extend_from_slice(&[0; 8]);
        std::fs::write(&path, file).unwrap();
        let e = read_npy(&path).unwrap_err().to_string();
        assert!(e.contains("<c8") && e.contains("f32, f64"), "{e}");
        std::fs::write(&path, b"not an npy file").unwrap();
        let e = read_npy(&path).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
