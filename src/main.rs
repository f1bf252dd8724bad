//! The `peerdns` binary: parse flags, load the config, start, wait for a signal, stop.
//!
//! With no flags it serves `config/peerdns.toml` (the built-in demo cluster) when that file
//! exists, and built-in defaults otherwise (which serve `cluster.yaml` in the working
//! directory; when that is missing too, the error says no config file was found and what to
//! pass). A flag clap refuses exits 2 with clap's usage message; every other startup error (a
//! bad file, field or credential) exits 1 with one line, `peerdns: <message>`, on stderr.
//! Logs are coloured only when stderr is a terminal and `NO_COLOR` is unset or empty.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use peerdns::config::{Config, LogFormat, SourceKind};

/// mimalloc: faster small allocations on the query path; blocks of 128 KiB and more get
/// pages of their own (`peerdns::sys::alloc`). Built without transparent huge pages, and
/// asked to return freed pages at once, and what a load freed right after it
/// (`peerdns::sys::memory`), so the memory a large load (the cluster file's parse, a
/// Kubernetes list) used does not stay in the process.
#[global_allocator]
static ALLOCATOR: peerdns::sys::alloc::Allocator = peerdns::sys::alloc::Allocator;

/// Default config file, relative to the working directory.
const DEFAULT_CONFIG: &str = "config/peerdns.toml";

/// A startup problem of the command line itself (not of a file it names).
#[derive(Debug, thiserror::Error)]
enum UsageError {
    /// No `--config`, no default config file, no source flag, and no cluster file at the
    /// built-in default path either.
    #[error(
        "no config file found at {DEFAULT_CONFIG} (in {}) and no {} there to serve: pass --config PATH, --file CLUSTER.yaml or --kubernetes",
        dir.display(),
        file.display()
    )]
    NoConfig {
        /// The working directory the default paths are relative to.
        dir: PathBuf,
        /// The default cluster file that is missing.
        file: PathBuf,
    },
}

/// Authoritative DNS for Kubernetes headless Services and StatefulSet peers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Default: config/peerdns.toml when it exists, else built-in defaults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Cluster file (Kubernetes YAML) to serve, overriding source.file; selects the file source.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["kubernetes", "kubeconfig", "namespace", "selector"])]
    file: Option<PathBuf>,
    /// Watch the Kubernetes API (in-cluster credentials, else KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubernetes: bool,
    /// Kubeconfig file for the Kubernetes API; selects the Kubernetes source.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Namespace to watch (repeatable; default every namespace); selects the Kubernetes source.
    #[arg(long, value_name = "NS")]
    namespace: Vec<String>,
    /// Label selector for watched Services and EndpointSlices; selects the Kubernetes source.
    #[arg(long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Address to serve UDP and TCP on (repeatable), overriding dns.listen.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Zone to serve (repeatable), overriding dns.zones.
    #[arg(long, value_name = "ZONE")]
    zone: Vec<String>,
    /// Admin HTTP address (/livez, /readyz, /metrics), overriding admin.listen.
    #[arg(long, value_name = "ADDR:PORT")]
    admin_listen: Option<SocketAddr>,
    /// Validate the config and the cluster file (or Kubernetes credentials), then exit.
    #[arg(long)]
    check_config: bool,
    /// Worker threads (0: one per core), overriding dns.workers.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Wait until names resolve (for an init container): exit 0 once they do, 1 on timeout,
    /// 2 on bad arguments.
    Wait(WaitArgs),
}

/// `peerdns wait NAME...`, `peerdns wait --srv --min N NAME`, `peerdns wait --self`.
#[derive(Debug, clap::Args)]
struct WaitArgs {
    /// Names that must have an A or AAAA answer (with --srv: the one SRV name).
    #[arg(value_name = "NAME", required_unless_present = "own")]
    names: Vec<String>,
    /// Wait for an SRV record set instead: at NAME, at least --min targets.
    #[arg(long, requires = "names", conflicts_with = "own")]
    srv: bool,
    /// With --srv: the fewest targets the SRV must list.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "srv")]
    min: usize,
    /// Wait for this pod's own name (from its hostname and /etc/hosts, else the search path).
    #[arg(long = "self", id = "own", conflicts_with = "names")]
    own: bool,
    /// Ask this server (ADDR or ADDR:PORT, port 53 by default) instead of /etc/resolv.conf's.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = peerdns::wait::parse_server)]
    server: Option<SocketAddr>,
    /// Give up after this long (e.g. 300s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = peerdns::wait::parse_duration)]
    timeout: std::time::Duration,
    /// Time between rounds of queries.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = peerdns::wait::parse_duration)]
    interval: std::time::Duration,
}

fn main() {
    // Before the allocator grows: see peerdns::sys::memory.
    peerdns::sys::memory::purge_freed_at_once();
    if let Err(error) = peerdns::sys::memory::disable_huge_pages() {
        eprintln!(
            "peerdns: cannot turn transparent huge pages off ({error}); memory use may be higher"
        );
    }
    if let Err(error) = run() {
        eprintln!("peerdns: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, skipping causes a message already quotes; a cause
/// whose text has line breaks (a library's snippet) has them folded into spaces.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Wait(args)) = &cli.command {
        wait(args);
    }
    let config = load_config(&cli)?;
    config.validate()?;
    init_logging(&config, cli.log_json)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(peerdns::app::worker_count(config.dns.workers))
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    if cli.check_config {
        return runtime.block_on(check(config));
    }
    runtime.block_on(serve(config))
}

/// `peerdns wait`: exits 0 when every name answers, 1 on timeout or error, 2 for an argument
/// clap could not check (an SRV wait for several names).
fn wait(args: &WaitArgs) -> ! {
    use peerdns::wait::{Goal, Outcome, Wait};
    let goal = match (args.own, args.srv) {
        (true, _) => match peerdns::wait::read_own_name() {
            Ok(name) => Goal::Addresses(vec![name]),
            Err(error) => exit_with(1, &error.to_string()),
        },
        (false, true) => match args.names.as_slice() {
            [name] => Goal::Srv {
                name: name.clone(),
                min: args.min,
            },
            _ => exit_with(2, "--srv takes exactly one NAME"),
        },
        (false, false) => Goal::Addresses(args.names.clone()),
    };
    let wait = Wait {
        goal,
        server: args.server,
        timeout: args.timeout,
        interval: args.interval,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(peerdns::wait::run(&wait, &mut std::io::stdout())),
        Err(error) => exit_with(1, &format!("cannot start the runtime: {error}")),
    };
    match outcome {
        Ok(Outcome::Answered) => std::process::exit(0),
        Ok(Outcome::TimedOut) => std::process::exit(1),
        Err(error) => exit_with(1, &error.to_string()),
    }
}

fn exit_with(code: i32, message: &str) -> ! {
    eprintln!("peerdns wait: {message}");
    std::process::exit(code)
}

/// `--check-config`: everything `start` would refuse, without binding or watching anything.
async fn check(config: Config) -> Result<()> {
    peerdns::app::authority(&config)?;
    peerdns::app::transfer_settings(&config)?;
    match config.source.kind {
        SourceKind::File => {
            let path = &config.source.file;
            let loaded = peerdns::source::file::load_report(path, &config.source.pod_cidrs)?;
            println!(
                "config ok: {} Services and {} EndpointSlices in {}",
                loaded.state.services.len(),
                loaded.state.slices.len(),
                path.display()
            );
            if !loaded.ignored.is_empty() {
                println!("ignored {} objects:", loaded.ignored.len());
                for ignored in &loaded.ignored {
                    println!("  {ignored}");
                }
            }
        }
        SourceKind::Kubernetes => {
            let settings = &config.source.kubernetes;
            peerdns::source::kubernetes::client(settings.kubeconfig.as_deref()).await?;
            println!("config ok: Kubernetes credentials found (the API itself was not contacted)");
        }
    }
    Ok(())
}

fn load_config(cli: &Cli) -> Result<Config> {
    let default_config = Path::new(DEFAULT_CONFIG);
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None if default_config.exists() => Config::load(default_config)?,
        None => Config::default(),
    };
    if let Some(file) = &cli.file {
        config.source.kind = SourceKind::File;
        config.source.file = file.clone();
    }
    let kubernetes = &mut config.source.kubernetes;
    if let Some(path) = &cli.kubeconfig {
        kubernetes.kubeconfig = Some(path.clone());
    }
    if !cli.namespace.is_empty() {
        kubernetes.namespaces = cli.namespace.clone();
    }
    if let Some(selector) = &cli.selector {
        kubernetes.label_selector = Some(selector.clone());
    }
    let wants_kubernetes =
        cli.kubeconfig.is_some() || !cli.namespace.is_empty() || cli.selector.is_some();
    if cli.kubernetes || wants_kubernetes {
        config.source.kind = SourceKind::Kubernetes;
    }
    if !cli.listen.is_empty() {
        config.dns.listen = cli.listen.clone();
    }
    if !cli.zone.is_empty() {
        config.dns.zones = cli.zone.clone();
    }
    if let Some(admin) = cli.admin_listen {
        config.admin.listen = admin;
    }
    if let Some(workers) = cli.workers {
        config.dns.workers = workers;
    }
    let nothing_to_serve = cli.config.is_none()
        && !default_config.exists()
        && config.source.kind == SourceKind::File
        && cli.file.is_none()
        && !config.source.file.exists();
    if nothing_to_serve {
        return Err(UsageError::NoConfig {
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            file: config.source.file,
        }
        .into());
    }
    Ok(config)
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

fn init_logging(config: &Config, json_flag: bool) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let (text, field) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => (value, "RUST_LOG".to_string()),
        _ => (
            config.log.level.clone(),
            format!("config field log.level: {:?}", config.log.level),
        ),
    };
    let mut filter = EnvFilter::try_new(&text).context(field)?;
    if !text.contains("kube_client") {
        // kube's HTTP layer logs every failed request at ERROR without saying where or why;
        // the watch supervisor logs each failure once, with the server and the cause chain.
        filter = filter.add_directive("kube_client::client::builder=off".parse()?);
    }
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = if json_flag || config.log.format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|error| anyhow::anyhow!("cannot start logging: {error}"))
}

async fn serve(config: Config) -> Result<()> {
    let running = peerdns::app::start(&config).await?;
    for address in &running.addresses {
        println!(
            "peerdns serving {} on udp+tcp {address}",
            config.dns.zones.join(", ")
        );
    }
    println!(
        "admin: http://{}/readyz, /metrics, /debug/explain?name=..., /debug/source",
        running.admin_address
    );
    match config.source.kind {
        SourceKind::File => println!("cluster file: {}", config.source.file.display()),
        SourceKind::Kubernetes => println!("watching the Kubernetes API"),
    }
    if !running.examples.is_empty() {
        println!("try:");
        for example in &running.examples {
            println!("  {example}");
        }
    }
    wait_for_signal().await?;
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn one_line_folds_line_breaks_and_skips_quoted_causes() {
        let error = anyhow::anyhow!("inner\n  | snippet\n  ^ here").context("outer: inner");
        assert_eq!(one_line(&error), "outer: inner: inner | snippet ^ here");
    }
}
