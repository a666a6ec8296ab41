//! The `capactor` fleet commands: `registry`, `status`, `token`, `health`,
//! and what `worker` needs to join a registry and trust its tokens.
//!
//! Who may have tokens issued: only a caller holding the registry's admin
//! token (`capactor registry --admin-token-file`, by default the registry's
//! own gate token); `capactor token --admin-token-file` presents it.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use capactor::actors::registry::{Registry, RegistryOptions, RegistryState};
use capactor::fleet::{
    Health, Joiner, PublicKey, Registration, RegistryClient, TokenSigner, Trust,
};
use capactor::schema::registry_capnp::registry;
use capactor::{Error, Result};

use super::{client_token, parse_duration, Off};

/// `capactor registry`: serve a fleet registry.
#[derive(clap::Args, Debug)]
pub(crate) struct RegistryArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    /// The registry's name, as reported by `info` (and the audience name
    /// its own gate accepts signed tokens for).
    #[arg(long, default_value = "registry")]
    name: String,
    #[command(flatten)]
    auth: super::ServeAuth,
    /// File holding the token `issueToken` callers must present (`capactor
    /// token --admin-token-file`); default: the registry's gate token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// File holding the registry's Ed25519 signing key (128 hex digits),
    /// created if missing, so its tokens outlive a restart. Without it a
    /// fresh key is generated at every start.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Write the registry's public key (64 hex digits) to this file, for
    /// workers started with --trust-key.
    #[arg(long)]
    public_key_file: Option<PathBuf>,
    /// A worker silent longer than this is unhealthy.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ttl: Off<Duration>,
    /// How long an unhealthy worker stays listed before it is removed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    grace: Off<Duration>,
    /// How often workers are told to report.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    report_interval: Off<Duration>,
    /// Workers registered at once.
    #[arg(long, default_value_t = 10_000)]
    max_workers: usize,
    /// Labels per worker.
    #[arg(long, default_value_t = 32)]
    max_labels: usize,
    /// Watches at once.
    #[arg(long, default_value_t = 1024)]
    max_watchers: usize,
    /// Events queued for one watcher before it is dropped.
    #[arg(long, default_value_t = 1024)]
    watch_backlog: usize,
    /// The longest validity of a token the registry issues.
    #[arg(long, default_value = "24h", value_parser = parse_long_duration)]
    max_token_ttl: Duration,
    #[command(flatten)]
    metrics: super::MetricsArgs,
}

/// How a worker joins a registry and which tokens it trusts (flags of
/// `capactor worker`).
#[derive(clap::Args, Debug)]
pub(crate) struct JoinArgs {
    /// Register with the registry at this address and keep the lease,
    /// registering again if the registry restarts.
    #[arg(long, value_name = "REGISTRY_ADDR")]
    join: Option<String>,
    /// File holding the token for the registry's gate (or set
    /// CAPACTOR_REGISTRY_TOKEN); a token the registry signed works too.
    #[arg(long)]
    registry_token_file: Option<PathBuf>,
    /// The kind the worker registers as.
    #[arg(long, default_value = "tensor-worker")]
    kind: String,
    /// A label `KEY=VALUE` the worker registers with (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Accept tokens signed by the registry at this address (its public key
    /// is fetched with `Registry.publicKey` at start).
    #[arg(long, value_name = "REGISTRY_ADDR", conflicts_with = "trust_key")]
    trust: Option<String>,
    /// Accept tokens signed by the key in this file (64 hex digits, as
    /// `capactor registry --public-key-file` writes).
    #[arg(long, value_name = "FILE")]
    trust_key: Option<PathBuf>,
}

/// `capactor status`: the registry's table.
#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The registry's address.
    addr: String,
    /// File holding the registry's token (or set CAPACTOR_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// `capactor token`: have the registry issue a token.
#[derive(clap::Args, Debug)]
pub(crate) struct TokenArgs {
    /// The registry's address.
    #[arg(long)]
    registry: String,
    /// Who the token is for.
    #[arg(long)]
    subject: String,
    /// How long it is valid (`90s`, `30m`, `1h`, `2d`).
    #[arg(long, default_value = "1h", value_parser = parse_long_duration)]
    ttl: Duration,
    /// The workers it is good at (comma-separated names); default all.
    #[arg(long, value_delimiter = ',')]
    audience: Vec<String>,
    /// File holding the registry's admin token.
    #[arg(long)]
    admin_token_file: PathBuf,
    /// File holding the token for the registry's gate (or set
    /// CAPACTOR_TOKEN); default: the admin token.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// `KEY=VALUE`.
fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not a label; write KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// `90s`, `30m`, `1h`, `2d`.
fn parse_long_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 1h, 2d)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} needs a unit: s, m, h or d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(scale)))
}

fn need(d: Off<Duration>, flag: &str) -> Result<Duration> {
    d.0.ok_or_else(|| Error::invalid(format!("{flag} cannot be off")))
}

async fn connect_registry(
    addr: &str,
    token: Vec<u8>,
) -> Result<capactor::Connection<registry::Client>> {
    let mut opts = capactor::ConnectOptions::default();
    opts.token = token;
    capactor::connect_tcp(addr, &opts).await
}

pub(crate) fn registry(args: RegistryArgs) -> Result<()> {
    let mut options = RegistryOptions::default();
    options.ttl = need(args.ttl, "--ttl")?;
    options.grace = need(args.grace, "--grace")?;
    options.report_interval = need(args.report_interval, "--report-interval")?;
    options.max_workers = args.max_workers;
    options.max_labels = args.max_labels;
    options.max_watchers = args.max_watchers;
    options.watch_backlog = args.watch_backlog;
    options.max_token_ttl = args.max_token_ttl;
    let signer = match &args.key_file {
        Some(path) => TokenSigner::load_or_create(path)?,
        None => TokenSigner::generate()?,
    };
    let public = signer.public_key();
    if let Some(path) = &args.public_key_file {
        std::fs::write(path, format!("{}\n", public.to_hex()))
            .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
    }
    let mut opts = capactor::ServeOptions::default();
    let mut token_file = None;
    let gate_token = match super::serve_token(&args.listen.parse()?, &args.auth)? {
        super::Token::None => {
            opts.insecure_no_auth = true;
            None
        }
        super::Token::Given(t) => Some(t),
        super::Token::Generate => {
            let token = super::generate_token();
            token_file = Some(super::TokenFile::create(&token)?);
            Some(token)
        }
    };
    let admin = match &args.admin_token_file {
        Some(path) => client_token(Some(path))?,
        None => gate_token.clone(),
    };
    if admin.is_none() {
        tracing::warn!("no admin token: this registry issues no tokens");
    }
    opts.token = gate_token;
    let metrics = args.metrics.serve()?;
    if let Some((m, _)) = &metrics {
        opts.metrics = Some(m.clone());
    }
    // The registry's own gate accepts the tokens it signs, too.
    opts.trust = Some(Trust::new(public, args.name.clone()));
    let state = RegistryState::with_signer(options, Some(signer), admin);
    // One vat: the table is shared anyway, and workers' capabilities, which
    // cannot leave their vat, are then always at hand for `route`.
    let rt = capactor::Runtime::builder().vats(1).build()?;
    capactor::block_on(async {
        let shutdown = super::shutdown_signal()?;
        let name = args.name.clone();
        let s = state.clone();
        let server = rt
            .serve_tcp::<registry::Client, _, _>(
                &args.listen,
                move || Registry::new(name.clone(), s.clone()),
                opts,
            )
            .await?;
        if let Some(file) = &token_file {
            eprintln!("token written to {}", file.path.display());
        }
        println!("listening on {}", server.local_addr());
        super::MetricsArgs::announce(&metrics);
        if let Some((m, _)) = &metrics {
            // Membership, as the table holds it, once a second.
            let (members, state) = (m.registry_members(), state.clone());
            tokio::task::spawn_local(async move {
                loop {
                    let t = state.status().totals;
                    let healthy = u64::from(t.healthy);
                    members.set(healthy, u64::from(t.workers) - healthy);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        shutdown.await;
        server.shutdown(Duration::from_secs(2)).await;
        Ok(())
    })?
}

impl JoinArgs {
    /// Whether the worker accepts signed tokens (then it needs no static
    /// token of its own).
    pub(crate) fn trusts(&self) -> bool {
        self.trust.is_some() || self.trust_key.is_some()
    }

    fn registry_token(&self) -> Result<Vec<u8>> {
        if let Some(path) = &self.registry_token_file {
            return Ok(client_token(Some(path))?.unwrap_or_default());
        }
        match std::env::var("CAPACTOR_REGISTRY_TOKEN") {
            Ok(t) => Ok(t.trim().as_bytes().to_vec()),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The trust the worker's gate gets, fetched from the registry if asked.
    pub(crate) async fn trust(&self, name: &str) -> Result<Option<Trust>> {
        let key = if let Some(path) = &self.trust_key {
            PublicKey::from_file(path)?
        } else if let Some(addr) = &self.trust {
            let conn = connect_registry(addr, self.registry_token()?).await?;
            RegistryClient::new(conn.client().clone())
                .public_key()
                .await
                .map_err(|e| {
                    Error::invalid(format!("cannot fetch the public key of {addr}: {e}"))
                })?
        } else {
            return Ok(None);
        };
        tracing::info!("accepting tokens signed by {}", key.to_hex());
        Ok(Some(Trust::new(key, name)))
    }

    /// Starts keeping the worker registered, if --join was given.
    pub(crate) fn join(
        &self,
        name: &str,
        address: String,
        health: impl Fn() -> Health + 'static,
    ) -> Result<Option<Joiner>> {
        let Some(addr) = self.join.clone() else {
            return Ok(None);
        };
        let token = self.registry_token()?;
        let mut registration = Registration::new(name, self.kind.clone(), address);
        registration.labels = self.labels.clone();
        registration.interfaces = vec![
            capactor::actors::tensor::TENSOR_WORKER,
            capactor::actor::ACTOR,
        ];
        let connect = move || {
            let (addr, token) = (addr.clone(), token.clone());
            async move {
                let conn = connect_registry(&addr, token).await?;
                Ok(RegistryClient::from_connection(conn))
            }
        };
        Ok(Some(Joiner::spawn(connect, registration, None, health)))
    }
}

/// The health a `capactor worker` reports: calls from its server, memory
/// from its quota, calls per second over the interval since the last
/// report.
///
/// Holds the server weakly: shutting down needs it back.
pub(crate) fn health_of<A: 'static>(
    server: &Rc<capactor::Server<A>>,
    quota: std::sync::Arc<capactor::Quota>,
) -> impl Fn() -> Health {
    let server = Rc::downgrade(server);
    let started = Instant::now();
    let last = Cell::new((Instant::now(), 0u64));
    move || {
        let now = Instant::now();
        let (served, in_flight) = server
            .upgrade()
            .map_or((0, 0), |s| (s.calls_served(), s.calls_in_flight()));
        let (then, before) = last.replace((now, served));
        let secs = now.duration_since(then).as_secs_f64();
        let in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX);
        let (used, limit) = (quota.used(), quota.limit());
        let fill = if limit == 0 {
            0.0
        } else {
            used as f64 / limit as f64
        };
        Health {
            calls_in_flight: in_flight,
            calls_per_second: if secs > 0.0 {
                served.saturating_sub(before) as f64 / secs
            } else {
                0.0
            },
            live_objects: quota.live_tensors(),
            live_bytes: used,
            quota_used: used,
            quota_limit: limit,
            load: f64::from(in_flight) + fill,
            uptime: now.duration_since(started),
        }
    }
}

pub(crate) fn status(args: StatusArgs) -> Result<()> {
    let token = client_token(args.token_file.as_deref())?.unwrap_or_default();
    capactor::block_on(async {
        let conn = connect_registry(&args.addr, token).await?;
        let status = RegistryClient::new(conn.client().clone()).status().await?;
        print!("{}", status_table(&status));
        Ok(())
    })?
}

/// The table `capactor status` prints.
fn status_table(s: &capactor::fleet::Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<22} {:<14} {:<9} {:>9} {:>12} {:>10}",
        "NAME", "ADDRESS", "KIND", "HEALTHY", "CALLS/S", "MEMORY", "UPTIME"
    );
    for w in &s.workers {
        let _ = writeln!(
            out,
            "{:<20} {:<22} {:<14} {:<9} {:>9.1} {:>12} {:>10}",
            w.name,
            w.address,
            w.kind,
            if w.healthy { "yes" } else { "no" },
            w.health.calls_per_second,
            mib(w.health.quota_used),
            uptime(w.health.uptime),
        );
    }
    let t = &s.totals;
    let _ = writeln!(
        out,
        "{} workers, {} healthy; {:.1} calls/s, {} of {} used",
        t.workers,
        t.healthy,
        t.calls_per_second,
        mib(t.quota_used),
        mib(t.quota_limit)
    );
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub(crate) fn token(args: TokenArgs) -> Result<()> {
    let admin = client_token(Some(&args.admin_token_file))?.unwrap_or_default();
    let gate = match &args.token_file {
        Some(path) => client_token(Some(path))?.unwrap_or_default(),
        None => match client_token(None)? {
            Some(t) => t,
            None => admin.clone(),
        },
    };
    capactor::block_on(async {
        let conn = connect_registry(&args.registry, gate).await?;
        let issued = RegistryClient::new(conn.client().clone())
            .issue_token(&admin, &args.subject, args.ttl, &args.audience)
            .await?;
        println!("{}", issued.token);
        Ok(())
    })?
}
