//! The `capactor` command: serve a worker, or ask one what it is.
//!
//! ```text
//! capactor worker --listen 127.0.0.1:7001 --name w1
//! capactor info 127.0.0.1:7001
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

#[derive(Parser, Debug)]
#[command(name = "capactor", version, about = "A Cap'n Proto actor runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a tensor worker over TCP until SIGINT or SIGTERM.
    Worker {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: String,
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
        #[command(flatten)]
        auth: ServeAuth,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        data: cli_data::ServeData,
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
}

/// How a client checks a TLS worker.
#[derive(clap::Args, Debug)]
struct ClientTlsArgs {
    /// Speak TLS, trusting the root certificates in this PEM file.
    #[arg(long, conflicts_with = "tls_pin")]
    tls_ca: Option<PathBuf>,
    /// Speak TLS, trusting exactly the certificate in this PEM file (for a
    /// self-signed worker).
    #[arg(long)]
    tls_pin: Option<PathBuf>,
    /// The name to check the worker's certificate against (default: the
    /// host of the address).
    #[arg(long)]
    tls_name: Option<String>,
}

impl ClientTlsArgs {
    fn load(&self) -> capactor::Result<Option<capactor::tls::ClientTls>> {
        let mut tls = match (&self.tls_ca, &self.tls_pin) {
            (Some(ca), _) => capactor::tls::ClientTls::roots_pem_file(ca)?,
            (None, Some(pin)) => capactor::tls::ClientTls::pinned_pem_file(pin)?,
            (None, None) => return Ok(None),
        };
        tls.server_name = self.tls_name.clone();
        Ok(Some(tls))
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
            auth,
            tls_cert,
            tls_key,
            data,
        } => worker(
            &listen,
            name,
            vats,
            Duration::from_secs(grace),
            data.plane(memory_mib << 20),
            &auth,
            tls_cert.as_deref().zip(tls_key.as_deref()),
        ),
        Command::Info {
            addr,
            token_file,
            tls,
        } => tls
            .load()
            .and_then(|tls| info(&addr, token_file.as_deref(), tls)),
        Command::Put(args) => cli_data::put(args),
        Command::Get(args) => cli_data::get(args),
        Command::Ls(args) => cli_data::ls(args),
        Command::Rm(args) => cli_data::rm(args),
        Command::Copy(args) => cli_data::copy(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capactor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn worker(
    listen: &str,
    name: String,
    vats: Option<usize>,
    grace: Duration,
    data: cli_data::DataPlane,
    auth: &ServeAuth,
    tls: Option<(&Path, &Path)>,
) -> capactor::Result<()> {
    let tls = tls
        .map(|(cert, key)| capactor::tls::ServerTls::from_pem_files(cert, key))
        .transpose()?;
    let token = serve_token(listen, auth)?;
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
        let mut opts = capactor::ServeOptions::default();
        opts.tls = tls;
        let generated = matches!(token, Token::Generate);
        opts.token = match token {
            Token::None => None,
            Token::Given(t) => Some(t),
            Token::Generate => Some(generate_token()),
        };
        // One state for every vat: named objects and resumable uploads are
        // the same whichever connection asks.
        let state = data.state.clone();
        let server = rt
            .serve_tcp::<tensor_worker::Client, _, _>(
                listen,
                move || TensorWorker::with_state(name.clone(), state.clone()),
                opts.clone(),
            )
            .await?;
        data.set_endpoint(server.local_addr(), opts.tls.as_ref());
        if generated {
            let path = write_token_file(
                server.local_addr().port(),
                opts.token.as_deref().unwrap_or_default(),
            )?;
            eprintln!("token written to {}", path.display());
        }
        println!("listening on {}", server.local_addr());
        shutdown.await;
        tracing::info!("shutting down; in-flight calls get {grace:?}");
        if !server.shutdown(grace).await {
            tracing::warn!("some calls were still running when the grace period ended");
        }
        Ok(())
    })
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

fn serve_token(listen: &str, auth: &ServeAuth) -> capactor::Result<Token> {
    if auth.insecure_no_auth {
        let addrs: Vec<_> = listen.to_socket_addrs()?.collect();
        if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(capactor::Error::invalid(format!(
                "--insecure-no-auth is only allowed on a loopback address, not {listen}"
            )));
        }
        tracing::warn!("serving without authentication (loopback only)");
        return Ok(Token::None);
    }
    match client_token(auth.token_file.as_deref())? {
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
            Err(_) => return Ok(None),
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(capactor::Error::invalid("the token is empty"));
    }
    Ok(Some(token.as_bytes().to_vec()))
}

/// 32 random bytes from the OS-seeded CSPRNG, as 64 hex digits.
fn generate_token() -> Vec<u8> {
    let mut raw = [0u8; 32];
    rand::fill(&mut raw);
    raw.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes()
}

/// Writes a generated token to a new file only the current user can read.
fn write_token_file(port: u16, token: &[u8]) -> capactor::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("capactor-{port}-{}.token", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token)?;
    f.write_all(b"\n")?;
    Ok(path)
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
        let conn: capactor::Connection<actor::Client> = capactor::connect_tcp(addr, &opts).await?;
        // Any actor answers, extended ones included: it lists its own
        // interfaces first.
        println!("{}", capactor::describe(conn.client()).await?);
        Ok(())
    })
}
