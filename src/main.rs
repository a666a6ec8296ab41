//! The `capactor` command: serve a worker, or ask one what it is.
//!
//! ```text
//! capactor worker --listen 127.0.0.1:7001 --name w1
//! capactor info 127.0.0.1:7001
//! ```

use std::process::ExitCode;
use std::time::Duration;

use capactor::actors::tensor::{Quota, TensorWorker};
use capactor::schema::actor_capnp::actor;
use capactor::schema::tensor_capnp::tensor_worker;
use clap::{Parser, Subcommand};

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
    },
    /// Connect to a worker and print what it is.
    Info {
        /// The worker's address.
        addr: String,
    },
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
        } => worker(
            &listen,
            name,
            vats,
            Duration::from_secs(grace),
            memory_mib << 20,
        ),
        Command::Info { addr } => info(&addr),
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
    memory: u64,
) -> capactor::Result<()> {
    let mut builder = capactor::Runtime::builder();
    if let Some(n) = vats {
        builder.vats(n);
    }
    let rt = builder.build()?;
    capactor::block_on(async {
        let quota = Quota::new(memory);
        let server = rt
            .serve_tcp::<tensor_worker::Client, _, _>(
                listen,
                move || TensorWorker::new(name.clone(), quota.clone()),
                capactor::ServeOptions::default(),
            )
            .await?;
        println!("listening on {}", server.local_addr());
        shutdown_signal().await?;
        tracing::info!("shutting down; in-flight calls get {grace:?}");
        if !server.shutdown(grace).await {
            tracing::warn!("some calls were still running when the grace period ended");
        }
        Ok(())
    })
}

async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

fn info(addr: &str) -> capactor::Result<()> {
    capactor::block_on(async {
        let opts = capactor::ConnectOptions::default();
        let conn: capactor::Connection<actor::Client> = capactor::connect_tcp(addr, &opts).await?;
        let reply = conn.info_request().send().promise.await?;
        let info = reply.get()?.get_info()?;
        println!("name:           {}", info.get_name()?.to_str()?);
        println!("kind:           {}", info.get_kind()?.to_str()?);
        println!("schema version: {}", info.get_schema_version());
        println!(
            "uptime:         {:.1} s",
            info.get_uptime_millis() as f64 / 1000.0
        );
        println!("live objects:   {}", info.get_live_objects());
        println!("live bytes:     {}", info.get_live_bytes());
        println!("calls served:   {}", info.get_calls_served());
        println!("interfaces:");
        for iface in info.get_interfaces()? {
            println!("  {:#018x} {}", iface.get_id(), iface.get_name()?.to_str()?);
        }
        Ok(())
    })
}
