//! Serves a [`Trainer`] over TCP until SIGINT or SIGTERM: a user's own
//! actor served like `capactor worker` serves capactor's.
//!
//! ```text
//! cargo run -p capactor-trainer --bin trainer-worker -- --listen 127.0.0.1:7002 --token-file token.txt
//! capactor info 127.0.0.1:7002 --token-file token.txt
//! ```
//!
//! Prints `listening on <addr>` on stdout once it accepts connections.
//! Clients present the token from `--token-file` (or `CAPACTOR_TOKEN`);
//! `--insecure-no-auth` serves without one, on a loopback address only.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use capactor_trainer::{trainer, Model, Trainer};
use clap::Parser;

/// Serve a Trainer (a TensorWorker that trains) over TCP.
#[derive(Parser, Debug)]
#[command(name = "trainer-worker", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7002")]
    listen: String,
    /// The trainer's name, as reported by `info`.
    #[arg(long, default_value = "trainer")]
    name: String,
    /// Memory the trainer's tensors may hold, in MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mib: u64,
    /// Seconds in-flight calls get to finish at shutdown.
    #[arg(long, default_value_t = 10)]
    grace: u64,
    /// File holding the token clients must present (or set CAPACTOR_TOKEN).
    #[arg(long, conflicts_with = "insecure_no_auth")]
    token_file: Option<PathBuf>,
    /// Serve without authentication; refused unless the listen address is
    /// a loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Args) -> capactor::Result<()> {
    let token = token(&args)?;
    let rt = capactor::Runtime::new()?;
    capactor::block_on(async {
        // One model and one quota, shared by the trainer's instances on
        // every vat.
        let model = Model::new();
        let quota = capactor::Quota::new(args.memory_mib << 20);
        let mut opts = capactor::ServeOptions::default();
        opts.insecure_no_auth = token.is_none();
        opts.token = token;
        let name = args.name.clone();
        let server = rt
            .serve_tcp::<trainer::Client, _, _>(
                &args.listen,
                move || Trainer::new(name.clone(), model.clone(), quota.clone()),
                opts,
            )
            .await?;
        println!("listening on {}", server.local_addr());
        shutdown_signal().await?;
        server.shutdown(Duration::from_secs(args.grace)).await;
        Ok(())
    })
    .unwrap()
}

/// The token clients must present, or `None` with `--insecure-no-auth`.
fn token(args: &Args) -> capactor::Result<Option<Vec<u8>>> {
    if args.insecure_no_auth {
        let addrs: Vec<_> = args.listen.to_socket_addrs()?.collect();
        if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(capactor::Error::invalid(format!(
                "--insecure-no-auth is only allowed on a loopback address, not {}",
                args.listen
            )));
        }
        return Ok(None);
    }
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            capactor::Error::invalid(format!("cannot read token file {}: {e}", path.display()))
        })?,
        None => std::env::var("CAPACTOR_TOKEN").map_err(|_| {
            capactor::Error::invalid(
                "give --token-file, set CAPACTOR_TOKEN or pass --insecure-no-auth",
            )
        })?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(capactor::Error::invalid("the token is empty"));
    }
    Ok(Some(token.as_bytes().to_vec()))
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
