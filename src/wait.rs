//! `peerdns wait`: waits until names resolve, for an init container (the same image as the
//! server) that must not start an app before its peers, or its own name, are in DNS.
//!
//! ```text
//!  peerdns wait NAME...                until every NAME has an A or AAAA answer
//!  peerdns wait --srv --min N NAME     until the SRV at NAME lists at least N targets
//!  peerdns wait --self                 until this pod's own name resolves
//!      [--server ADDR[:PORT]] [--timeout 300s] [--interval 1s]
//! ```
//!
//! It asks as the app will: the system's resolvers, search path and ndots from
//! `/etc/resolv.conf` (read by hickory-resolver), or the one `--server` given (with the
//! system's search path when there is one). Nothing is cached between rounds and the hosts
//! file is not read, so an answer comes from DNS, fresh. Each round asks every name; a line
//! is printed whenever what is missing (and why: NXDOMAIN, NODATA, SERVFAIL, timeout)
//! changes.
//!
//! Invariants: it writes nothing to DNS and exits 0 only once every name answered in the
//! same round; a timeout is exit 1; bad arguments exit 2 (the binary's job, before this runs).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::time::Instant;

/// What to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Every name has an A or AAAA answer.
    Addresses(Vec<String>),
    /// The SRV at the name lists at least `min` targets.
    Srv {
        /// The SRV name.
        name: String,
        /// Fewest targets.
        min: usize,
    },
}

/// How to wait.
#[derive(Clone, Debug)]
pub struct Wait {
    /// What for.
    pub goal: Goal,
    /// The one server to ask (port 53 unless given); `None`: the system's resolvers.
    pub server: Option<SocketAddr>,
    /// How long in all before giving up.
    pub timeout: Duration,
    /// Time between rounds.
    pub interval: Duration,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every name answered.
    Answered,
    /// The timeout passed first.
    TimedOut,
}

/// Why a wait could not start.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's resolver configuration (/etc/resolv.conf): {0}")]
    SystemConfig(NetError),
    /// The resolver could not be built.
    #[error("cannot build the resolver: {0}")]
    Resolver(NetError),
    /// The hostname could not be read (`--self`).
    #[error("cannot read this host's name: {0}")]
    Hostname(std::io::Error),
    /// Writing progress failed.
    #[error("cannot write progress: {0}")]
    Output(#[from] std::io::Error),
}

/// Waits for `wait.goal`, printing a line to `out` whenever what is missing changes.
pub async fn run(wait: &Wait, out: &mut impl Write) -> Result<Outcome, WaitError> {
    let resolver = resolver(wait.server)?;
    let deadline = Instant::now() + wait.timeout;
    let mut last: Option<Vec<(String, String)>> = None;
    loop {
        let missing = round(&resolver, &wait.goal).await;
        if missing.is_empty() {
            writeln!(out, "peerdns wait: ready: {}", describe_goal(&wait.goal))?;
            return Ok(Outcome::Answered);
        }
        if last.as_ref() != Some(&missing) {
            writeln!(out, "peerdns wait: waiting for {}", list(&missing))?;
            last = Some(missing.clone());
        }
        if Instant::now() + wait.interval > deadline {
            let secs = wait.timeout.as_secs_f64();
            writeln!(
                out,
                "peerdns wait: timed out after {secs}s; still missing {}",
                list(&missing)
            )?;
            return Ok(Outcome::TimedOut);
        }
        tokio::time::sleep(wait.interval).await;
    }
}

/// The names still missing after one round, each with why, sorted.
async fn round(resolver: &TokioResolver, goal: &Goal) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    match goal {
        Goal::Addresses(names) => {
            for name in names {
                match resolver.lookup_ip(name.as_str()).await {
                    Ok(found) if found.iter().next().is_some() => {}
                    Ok(_) => missing.push((name.clone(), "no address".to_string())),
                    Err(error) => missing.push((name.clone(), why(&error))),
                }
            }
        }
        Goal::Srv { name, min } => {
            let targets = match resolver.lookup(name.as_str(), RecordType::SRV).await {
                Ok(found) => {
                    let targets: BTreeSet<String> = found
                        .answers()
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::SRV(srv) => Some(srv.target.to_string()),
                            _ => None,
                        })
                        .collect();
                    Ok(targets.len())
                }
                Err(error) => Err(why(&error)),
            };
            match targets {
                Ok(count) if count >= *min => {}
                Ok(count) => missing.push((name.clone(), format!("{count} of {min} targets"))),
                Err(reason) => missing.push((name.clone(), reason)),
            }
        }
    }
    missing.sort();
    missing
}

/// Why a lookup found nothing, in a word or two.
fn why(error: &NetError) -> String {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NoError => "NODATA".to_string(),
            other => mnemonic(other),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => mnemonic(*code),
        NetError::Timeout => "timeout".to_string(),
        other => other.to_string(),
    }
}

/// A response code as dig shows it.
fn mnemonic(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::NXDomain => "NXDOMAIN".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        other => format!("rcode {}", u16::from(other)),
    }
}

fn list(missing: &[(String, String)]) -> String {
    missing
        .iter()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_goal(goal: &Goal) -> String {
    match goal {
        Goal::Addresses(names) => format!("{} answer{}", names.join(", "), plural(names.len())),
        Goal::Srv { name, min } => format!("{name} lists at least {min} target(s)"),
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "s" } else { "" }
}

/// A resolver that asks `server` (else the system's resolvers), caches nothing and reads no
/// hosts file.
fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, WaitError> {
    let system = hickory_resolver::system_conf::read_system_conf();
    let (config, mut options) = match server {
        Some(server) => {
            let (search, options) = match system {
                Ok((config, options)) => (config.search().to_vec(), options),
                Err(_) => (Vec::new(), ResolverOpts::default()),
            };
            let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut name_server.connections {
                connection.port = server.port();
            }
            let config = ResolverConfig::from_parts(None, search, vec![name_server]);
            (config, options)
        }
        None => system.map_err(WaitError::SystemConfig)?,
    };
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.attempts = 1;
    options.timeout = options.timeout.min(Duration::from_secs(2));
    Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(WaitError::Resolver)
}

/// This pod's own name: its fully qualified name from `hosts` (the kubelet writes
/// `<ip> <hostname>.<subdomain>.<ns>.svc.<zone> <hostname>` for a pod with a subdomain), as an
/// absolute name; else the bare `hostname`, which the search path completes.
pub fn own_name(hostname: &str, hosts: &str) -> String {
    let hostname = hostname.trim();
    let prefix = format!("{hostname}.");
    let qualified = hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter(|line| line.split_whitespace().skip(1).any(|n| n == hostname))
        .flat_map(|line| line.split_whitespace().skip(1))
        .filter(|name| name.starts_with(&prefix))
        .max_by_key(|name| name.len());
    match qualified {
        Some(name) => format!("{}.", name.trim_end_matches('.')),
        None => hostname.to_string(),
    }
}

/// This host's name and its own name ([`own_name`]) from `/etc/hosts`.
pub fn read_own_name() -> Result<String, WaitError> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map_err(WaitError::Hostname)?;
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    Ok(own_name(&hostname, &hosts))
}

/// Parses a duration such as `300s`, `5m`, `1h`, `500ms` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 300s, 5m, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (ms, s, m or h)"
            ));
        }
    };
    if !(0.0..=86_400.0 * 7.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range (at most a week)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `ADDR` or `ADDR:PORT` (port 53 when left out; IPv6 as `[::1]:53` or bare).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an address (ADDR or ADDR:PORT)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_name_is_the_qualified_name_the_kubelet_wrote() {
        let hosts = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
            10.244.1.5\tweb-0.web.db.svc.cluster.local\tweb-0\n";
        assert_eq!(
            own_name("web-0\n", hosts),
            "web-0.web.db.svc.cluster.local."
        );
        assert_eq!(own_name("web-1", hosts), "web-1", "not in the file: bare");
        assert_eq!(own_name("web", hosts), "web");
    }

    #[test]
    fn durations_and_servers_parse() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("1000h").is_err());
        assert_eq!(
            parse_server("10.96.0.53"),
            Ok("10.96.0.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_server("[::1]:53"), Ok("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("::1"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_server("dns.example").is_err());
    }
}
