//! The `capactor` command: serve a worker, or ask one what it is.
//!
//! ```text
//! capactor worker --listen 127.0.0.1:7001 --name w1
//! capactor worker --listen unix:/run/capactor/w2.sock --name w2
//! capactor info 127.0.0.1:7001
//! capactor describe 127.0.0.1:7001
//! capactor health 127.0.0.1:7001
//! capactor put 127.0.0.1:7001 weights.npy --name weights
//! ```

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use capactor::actors::tensor::TensorWorker;
use capactor::schema::actor_capnp::actor;
use capactor::schema::tensor_capnp::tensor_worker;
use clap::{Parser, Subcommand};

mod cli_data;
mod cli_fleet;

#[derive(Parser, Debug)]
#[command(name = "capactor", version, about = "A Cap'n Proto actor runtime")]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the worker's flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a tensor worker over TCP, TLS or a Unix socket until SIGINT or SIGTERM.
    Worker {
        /// Address to listen on: host:port (port 0 picks a free one),
        /// tcp://host:port, tls://host:port or unix:/path/to.sock.
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: capactor::Address,
        /// The worker's name, as reported by `info`.
        #[arg(long, default_value = "worker")]
        name: String,
        /// Vat threads (default: one per core).
        #[arg(long)]
        vats: Option<usize>,
        /// Seconds in-flight calls get to finish at shutdown.
        #[arg(long, default_value_t = 10)]
        grace: u64,
        /// Memory the worker's tensors may hold, in MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mib: u64,
        /// Threads the tensor kernels share (default: one per core).
        #[arg(long)]
        compute_threads: Option<usize>,
        #[command(flatten)]
        auth: ServeAuth,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        limits: WorkerLimits,
        #[command(flatten)]
        data: cli_data::ServeData,
        #[command(flatten)]
        fleet: cli_fleet::JoinArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Connect to a worker and print what it is.
    Info {
        /// The worker's address.
        addr: String,
        /// File holding the worker's token (or set CAPACTOR_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Connect to an actor and list each interface it implements, with its
    /// methods and their parameter and result fields.
    Describe {
        /// The actor's address.
        addr: String,
        /// File holding the actor's token (or set CAPACTOR_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Check that an actor serves: open its gate and ping it. Exits 0 if it
    /// answered, 1 (saying why) if not: for readiness probes.
    Health {
        /// The actor's address.
        addr: String,
        /// File holding the actor's token (or set CAPACTOR_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// How long connecting and the ping may take together.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Off<Duration>,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
    /// Send a .npy file to a worker and store it there under a name.
    Put(cli_data::Put),
    /// Read a named object from a worker into a .npy file.
    Get(cli_data::Get),
    /// List a worker's named objects.
    Ls(cli_data::Ls),
    /// Delete a named object from a worker.
    Rm(cli_data::Rm),
    /// Copy a named object from one worker to another, directly between
    /// them.
    Copy(cli_data::Copy),
    /// Serve a fleet registry: workers register with it (`worker --join`),
    /// clients find, watch and route to them; it signs fleet tokens.
    Registry(cli_fleet::RegistryArgs),
    /// Print a registry's workers: name, address, kind, health, calls/s,
    /// memory, uptime.
    Status(cli_fleet::StatusArgs),
    /// Have a registry issue a signed token (needs its admin token).
    Token(cli_fleet::TokenArgs),
}

/// Every limit of `docs/PROTOCOL.md`'s table, as a flag of `capactor
/// worker`. Sizes take a unit (`64MiB`, `512KiB`, `1GiB`, bytes without
/// one); durations too (`5s`, `200ms`, `2m`), and `off` for none.
#[derive(clap::Args, Debug)]
struct WorkerLimits {
    /// Connections served at once, authenticated or not. The open-file limit
    /// is raised to fit; the worker refuses to start if it cannot be.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Connections that have not yet opened the gate; a new one over it
    /// closes the oldest of them.
    #[arg(long, default_value_t = 256)]
    max_unauthenticated: usize,
    /// Unauthenticated connections from one address (IPv6: one /64).
    #[arg(long, default_value_t = 64)]
    max_unauthenticated_per_address: usize,
    /// Failed `open` attempts evaluated per second across the worker
    /// (0: no worker-wide limit; each address has its own back-off anyway).
    #[arg(long, default_value_t = 20)]
    gate_failures_per_second: u32,
    /// The largest message a client may send.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    max_message_size: u64,
    /// How deeply structs and lists may nest in a message.
    #[arg(long, default_value_t = 64)]
    max_nesting: i32,
    /// The largest message a client may send before it has opened the gate.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    max_preauth_message_size: u64,
    /// Bytes a client may send in all before it has opened the gate.
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    max_preauth_bytes: u64,
    /// Questions a client may have unfinished before it has opened the gate.
    #[arg(long, default_value_t = 16)]
    max_preauth_questions: u32,
    /// Bytes of received messages all connections may hold at once.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    max_buffered: u64,
    /// Calls one connection may have in flight.
    #[arg(long, default_value_t = 1024)]
    max_calls_in_flight: u32,
    /// Memory the tensors one connection creates may hold (`off`: only the
    /// worker's --memory-mib applies).
    #[arg(long, default_value = "off", value_parser = parse_optional_size)]
    connection_memory: Off<u64>,
    /// Reply bytes queued for a client that is not reading them.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_outgoing: u64,
    /// Disconnect a client that reads nothing of what it is sent for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    write_stall_timeout: Off<Duration>,
    /// Longest one call may run.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    call_deadline: Off<Duration>,
    /// Close a connection that sends nothing for this long.
    #[arg(long, default_value = "off", value_parser = parse_duration)]
    idle_timeout: Off<Duration>,
    /// TCP keepalive idle time.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    keepalive: Off<Duration>,
    /// Time a new connection has for its TLS handshake and opening the gate,
    /// together.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    handshake_timeout: Off<Duration>,
    /// Show every client worker-wide totals in `info` and `memory` (other
    /// clients' activity included); by default each sees its own connection's.
    #[arg(long)]
    report_worker_totals: bool,
}

impl WorkerLimits {
    fn apply(&self, opts: &mut capactor::ServeOptions) -> capactor::Result<()> {
        opts.max_connections = self.max_connections;
        opts.max_unauthenticated = self.max_unauthenticated;
        opts.max_unauthenticated_per_address = self.max_unauthenticated_per_address;
        opts.gate_failures_per_second = self.gate_failures_per_second;
        let l = &mut opts.limits;
        l.max_message_bytes = usize::try_from(self.max_message_size)
            .map_err(|_| capactor::Error::invalid("--max-message-size is too large"))?;
        l.max_nesting = self.max_nesting;
        l.max_preauth_message_bytes = usize::try_from(self.max_preauth_message_size)
            .map_err(|_| capactor::Error::invalid("--max-preauth-message-size is too large"))?;
        l.max_preauth_bytes = self.max_preauth_bytes;
        l.max_preauth_questions = self.max_preauth_questions;
        l.max_buffered_bytes = self.max_buffered;
        l.max_calls_in_flight = self.max_calls_in_flight;
        l.max_connection_memory = self.connection_memory.0;
        l.max_outgoing_bytes = self.max_outgoing;
        l.write_stall_timeout = self.write_stall_timeout.0;
        opts.call_deadline = self.call_deadline.0;
        opts.idle_timeout = self.idle_timeout.0;
        opts.tcp.keepalive = self.keepalive.0;
        opts.handshake_timeout = self.handshake_timeout.0;
        opts.report_worker_totals = self.report_worker_totals;
        Ok(())
    }
}

/// `64MiB`, `512KiB`, `1GiB`, `4096` (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64MiB, 512KiB, 4096)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A flag's value that may be `off`.
#[derive(Clone, Copy, Debug)]
struct Off<T>(Option<T>);

/// A size, or `off` for none.
fn parse_optional_size(s: &str) -> Result<Off<u64>, String> {
    if s.trim() == "off" {
        return Ok(Off(None));
    }
    parse_size(s).map(|n| Off(Some(n)))
}

/// `5s`, `200ms`, `2m`, or `off` for none.
fn parse_duration(s: &str) -> Result<Off<Duration>, String> {
    let s = s.trim();
    if s == "off" {
        return Ok(Off(None));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 5s, 200ms, 2m, off)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{s:?} needs a unit: ms, s or m (or off)")),
    };
    Ok(Off(Some(d)))
}

/// How a client checks a TLS worker.
#[derive(clap::Args, Debug)]
struct ClientTlsArgs {
    /// Speak TLS, trusting the root certificates in this PEM file.
    #[arg(long, conflicts_with = "tls_pin", group = "tls_trust")]
    tls_ca: Option<PathBuf>,
    /// Speak TLS, trusting exactly the certificate in this PEM file (for a
    /// self-signed worker).
    #[arg(long, group = "tls_trust")]
    tls_pin: Option<PathBuf>,
    /// The name to check the worker's certificate against (default: the
    /// host of the address). Needs --tls-ca or --tls-pin.
    #[arg(long, requires = "tls_trust")]
    tls_name: Option<String>,
}

impl ClientTlsArgs {
    fn load(&self) -> capactor::Result<Option<capactor::tls::ClientTls>> {
        let mut tls = match (&self.tls_ca, &self.tls_pin) {
            (Some(ca), _) => capactor::tls::ClientTls::roots_pem_file(ca)?,
            (None, Some(pin)) => capactor::tls::ClientTls::pinned_pem_file(pin)?,
            // Never plaintext when a TLS name was asked for.
            (None, None) if self.tls_name.is_some() => {
                return Err(capactor::Error::invalid(
                    "--tls-name needs --tls-ca or --tls-pin",
                ))
            }
            (None, None) => return Ok(None),
        };
        tls.server_name = self.tls_name.clone();
        Ok(Some(tls))
    }
}

/// `--metrics ADDR`, for every command that serves (flatten it in).
#[derive(clap::Args, Debug)]
struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a
    /// free port; the address is printed as `metrics on ADDR`).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

/// Metrics and the endpoint serving them, when `--metrics` was given.
type ServedMetrics = Option<(capactor::metrics::Metrics, capactor::metrics::MetricsServer)>;

impl MetricsArgs {
    /// New metrics and their endpoint, bound now, if `--metrics` was
    /// given: bind before serving, so a taken port fails the start. Give
    /// the metrics to `ServeOptions::metrics` (and a registry's membership
    /// to `Metrics::registry_members`), then print where they are with
    /// [`announce`](Self::announce).
    fn serve(&self) -> capactor::Result<ServedMetrics> {
        let Some(addr) = &self.metrics else {
            return Ok(None);
        };
        let metrics = capactor::metrics::Metrics::new();
        let server = metrics.serve(addr)?;
        Ok(Some((metrics, server)))
    }

    /// Prints `metrics on ADDR` (after the `listening on` line).
    fn announce(served: &ServedMetrics) {
        if let Some((_, server)) = served {
            println!("metrics on {}", server.local_addr());
        }
    }
}

/// How a worker authenticates its clients.
#[derive(clap::Args, Debug)]
struct ServeAuth {
    /// File holding the token clients must present. Without it (and without
    /// CAPACTOR_TOKEN) the worker generates a token and writes it to a new
    /// file readable only by you, whose path it prints on stderr.
    #[arg(long, conflicts_with = "insecure_no_auth")]
    token_file: Option<PathBuf>,
    /// Serve without authentication. Refused unless the listen address is
    /// a loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker {
            listen,
            name,
            vats,
            grace,
            memory_mib,
            compute_threads,
            auth,
            tls_cert,
            tls_key,
            limits,
            data,
            fleet,
            metrics,
        } => data.plane(memory_mib << 20).and_then(|plane| {
            compute_pool(compute_threads)?;
            worker(
                &listen,
                name,
                vats,
                Duration::from_secs(grace),
                plane,
                &auth,
                tls_cert.as_deref().zip(tls_key.as_deref()),
                &limits,
                &fleet,
                &metrics,
            )
        }),
        Command::Info {
            addr,
            token_file,
            tls,
        } => tls
            .load()
            .and_then(|tls| info(&addr, token_file.as_deref(), tls)),
        Command::Describe {
            addr,
            token_file,
            tls,
        } => tls
            .load()
            .and_then(|tls| describe(&addr, token_file.as_deref(), tls)),
        Command::Health {
            addr,
            token_file,
            timeout,
            tls,
        } => tls
            .load()
            .and_then(|tls| health(&addr, token_file.as_deref(), timeout.0, tls)),
        Command::Put(args) => cli_data::put(args),
        Command::Get(args) => cli_data::get(args),
        Command::Ls(args) => cli_data::ls(args),
        Command::Rm(args) => cli_data::rm(args),
        Command::Copy(args) => cli_data::copy(args),
        Command::Registry(args) => cli_fleet::registry(args),
        Command::Status(args) => cli_fleet::status(args),
        Command::Token(args) => cli_fleet::token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capactor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    listen: &capactor::Address,
    name: String,
    vats: Option<usize>,
    grace: Duration,
    data: cli_data::DataPlane,
    auth: &ServeAuth,
    tls: Option<(&Path, &Path)>,
    limits: &WorkerLimits,
    fleet: &cli_fleet::JoinArgs,
    metrics: &MetricsArgs,
) -> capactor::Result<()> {
    let tls = tls
        .map(|(cert, key)| capactor::tls::ServerTls::from_pem_files(cert, key))
        .transpose()?;
    let mut opts = capactor::ServeOptions::default();
    limits.apply(&mut opts)?;
    opts.tls = tls;
    // The token, and a generated token's file, before anything is bound:
    // a worker that cannot write it never serves.
    let mut token_file = None;
    match serve_token(listen, auth)? {
        Token::None => opts.insecure_no_auth = true,
        Token::Given(t) => opts.token = Some(t),
        // A worker that trusts a registry's tokens needs no token of its own.
        Token::Generate if fleet.trusts() => {}
        Token::Generate => {
            let token = generate_token();
            token_file = Some(TokenFile::create(&token)?);
            opts.token = Some(token);
        }
    }
    let metrics = metrics.serve()?;
    if let Some((m, _)) = &metrics {
        m.track_quota(data.state.quota());
        opts.metrics = Some(m.clone());
    }
    let mut builder = capactor::Runtime::builder();
    if let Some(n) = vats {
        builder.vats(n);
    }
    let rt = builder.build()?;
    capactor::block_on(async {
        // Before anything is served, so that a signal sent as soon as the
        // worker says where it listens shuts it down cleanly rather than
        // killing it.
        let shutdown = shutdown_signal()?;
        opts.trust = fleet.trust(&name).await?;
        // One state for every vat: named objects and resumable uploads are
        // the same whichever connection asks.
        let state = data.state.clone();
        let worker_name = name.clone();
        let server = rt
            .serve::<tensor_worker::Client, _, _>(
                listen,
                move || TensorWorker::with_state(name.clone(), state.clone()),
                opts.clone(),
            )
            .await?;
        data.set_endpoint(server.address(), opts.tls.as_ref());
        if let Some(file) = &token_file {
            eprintln!("token written to {}", file.path.display());
        }
        // host:port for TCP and TLS (as before addresses had schemes),
        // unix:/path for a socket.
        let address = server.address();
        match address.host_port() {
            Some(host_port) => println!("listening on {host_port}"),
            None => println!("listening on {address}"),
        }
        let server = std::rc::Rc::new(server);
        let health = cli_fleet::health_of(&server, data.state.quota().clone());
        let joiner = fleet.join(&worker_name, data.advertised(server.address()), health)?;
        MetricsArgs::announce(&metrics);
        shutdown.await;
        // Leave the registry first: clients stop being routed here.
        drop(joiner);
        let Ok(server) = std::rc::Rc::try_unwrap(server) else {
            return Err(capactor::Error::internal(
                "the server is still shared at shutdown",
            ));
        };
        tracing::info!("shutting down; in-flight calls get {grace:?}");
        if !server.shutdown(grace).await {
            tracing::warn!("some calls were still running when the grace period ended");
        }
        Ok(())
    })?
}

/// Catches SIGINT and SIGTERM from now on; the future completes at the
/// first of them.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Where a worker's token comes from.
enum Token {
    None,
    Given(Vec<u8>),
    Generate,
}

fn serve_token(listen: &capactor::Address, auth: &ServeAuth) -> capactor::Result<Token> {
    if auth.insecure_no_auth {
        // A Unix socket is local by nature (and its file mode 0600).
        let Some(host) = listen.host_port() else {
            tracing::warn!("serving without authentication (Unix socket)");
            return Ok(Token::None);
        };
        let addrs: Vec<_> = host.to_socket_addrs()?.collect();
        if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(capactor::Error::invalid(format!(
                "--insecure-no-auth is only allowed on a loopback address, not {listen}"
            )));
        }
        tracing::warn!("serving without authentication (loopback only)");
        return Ok(Token::None);
    }
    match client_token(auth.token_file.as_deref())? {
        Some(t) if t.len() < capactor::MIN_TOKEN_BYTES => {
            let from = match &auth.token_file {
                Some(path) => format!("the token in {}", path.display()),
                None => "CAPACTOR_TOKEN".to_string(),
            };
            Err(capactor::Error::invalid(format!(
                "{from} is {} bytes long; a worker's token must have at least {}",
                t.len(),
                capactor::MIN_TOKEN_BYTES
            )))
        }
        Some(t) => Ok(Token::Given(t)),
        None => Ok(Token::Generate),
    }
}

/// The token from `file`, else from `CAPACTOR_TOKEN`, else none.
fn client_token(file: Option<&Path>) -> capactor::Result<Option<Vec<u8>>> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            capactor::Error::invalid(format!("cannot read token file {}: {e}", path.display()))
        })?,
        None => match std::env::var("CAPACTOR_TOKEN") {
            Ok(t) => t,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(capactor::Error::invalid(
                    "CAPACTOR_TOKEN is not valid UTF-8",
                ))
            }
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(capactor::Error::invalid(match file {
            Some(path) => format!("the token file {} is empty", path.display()),
            None => "CAPACTOR_TOKEN is empty".to_string(),
        }));
    }
    Ok(Some(token.as_bytes().to_vec()))
}

/// 32 random bytes (256 bits) from the OS-seeded CSPRNG, as 64 hex digits.
fn generate_token() -> Vec<u8> {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    hex(&raw).into_bytes()
}

/// A generated token's file: `token` in a new directory only the current
/// user can enter (0700), named `capactor-` and 128 random bits, in
/// `$XDG_RUNTIME_DIR` or the temporary directory. Removed when the worker
/// exits.
struct TokenFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TokenFile {
    fn create(token: &[u8]) -> capactor::Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let mut name = [0u8; 16];
        rand::fill(&mut name);
        let dir = base.join(format!("capactor-{}", hex(&name)));
        let failed = |what: &str, path: &Path, e: std::io::Error| {
            capactor::Error::invalid(format!("cannot {what} {}: {e}", path.display()))
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| failed("create the token directory", &dir, e))?;
        let path = dir.join("token");
        let file = TokenFile { dir, path };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.path)
            .map_err(|e| failed("create the token file", &file.path, e))?;
        f.write_all(token)
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| failed("write the token file", &file.path, e))?;
        Ok(file)
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn info(
    addr: &str,
    token_file: Option<&Path>,
    tls: Option<capactor::tls::ClientTls>,
) -> capactor::Result<()> {
    let token = client_token(token_file)?.unwrap_or_default();
    capactor::block_on(async {
        let mut opts = capactor::ConnectOptions::default();
        opts.token = token;
        opts.tls = tls;
        let conn: capactor::Connection<actor::Client> = capactor::connect(addr, &opts).await?;
        // Any actor answers, extended ones included: it lists its own
        // interfaces first.
        println!("{}", capactor::describe(conn.client()).await?);
        Ok(())
    })?
}

fn connect_options(
    token_file: Option<&Path>,
    tls: Option<capactor::tls::ClientTls>,
) -> capactor::Result<capactor::ConnectOptions> {
    let mut opts = capactor::ConnectOptions::default();
    opts.token = client_token(token_file)?.unwrap_or_default();
    opts.tls = tls;
    Ok(opts)
}

/// Prints each interface the actor at `addr` implements, most derived
/// first, as the schema compiled into this binary describes it.
fn describe(
    addr: &str,
    token_file: Option<&Path>,
    tls: Option<capactor::tls::ClientTls>,
) -> capactor::Result<()> {
    let opts = connect_options(token_file, tls)?;
    capactor::block_on(async {
        let conn: capactor::Connection<actor::Client> = capactor::connect_tcp(addr, &opts).await?;
        let about = capactor::describe(conn.client()).await?;
        let runtime = if about.runtime.is_empty() {
            "an unknown runtime"
        } else {
            &about.runtime
        };
        println!(
            "{} (kind {}, schema version {}, {runtime})",
            about.name, about.kind, about.schema_version
        );
        let catalog = capactor::catalog::Catalog::builtin();
        for iface in &about.interfaces {
            println!();
            match catalog.interface(iface.id) {
                Some(schema) => println!("{schema}"),
                None => println!(
                    "interface {} ({:#018x})\n  (its schema is not compiled into this capactor)",
                    iface.name, iface.id
                ),
            }
        }
        let ids: Vec<u64> = about.interfaces.iter().map(|i| i.id).collect();
        let reached = catalog.reachable(&ids);
        if !reached.is_empty() {
            println!("\n# The capabilities its methods take or hand out:");
        }
        for schema in reached {
            println!("\n{schema}");
        }
        Ok(())
    })?
}

/// Opens the gate of the actor at `addr` and pings it, all within
/// `timeout`.
fn health(
    addr: &str,
    token_file: Option<&Path>,
    timeout: Option<Duration>,
    tls: Option<capactor::tls::ClientTls>,
) -> capactor::Result<()> {
    let mut opts = connect_options(token_file, tls)?;
    if let Some(t) = timeout {
        opts.connect_timeout = t;
    }
    capactor::block_on(async {
        let check = async {
            let conn: capactor::Connection<actor::Client> =
                capactor::connect_tcp(addr, &opts).await?;
            conn.ping_request().send().promise.await?;
            Ok::<_, capactor::Error>(())
        };
        let answered = match timeout {
            Some(t) => tokio::time::timeout(t, check).await.map_err(|_| {
                capactor::Error::invalid(format!("{addr} did not answer within {t:?}"))
            })?,
            None => check.await,
        };
        match answered {
            Ok(()) => {
                println!("{addr} is serving");
                Ok(())
            }
            Err(e) => Err(capactor::Error::invalid(format!(
                "{addr} is not serving: {e}"
            ))),
        }
    })?
}

/// Sizes the tensor kernels' compute pool (`--compute-threads`).
fn compute_pool(threads: Option<usize>) -> Result<(), capactor::Error> {
    threads
        .map_or(Ok(()), capactor::actors::tensor::ops::set_compute_threads)
        .map_err(|e| capactor::Error::invalid(format!("--compute-threads: {e}")))
}
