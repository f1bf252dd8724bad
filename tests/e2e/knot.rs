//! Knot DNS (`knotd`) as a real peer: a secondary of peerdns, or a primary serving a zone file
//! (the transfer benchmark's peer). Each instance runs in a temporary directory, logs there,
//! and is killed when dropped. Shared by the transfer tests and `tests/bench/transfer.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running knotd, killed when dropped.
pub struct Knot {
    child: Child,
    /// Where it answers (UDP and TCP).
    pub address: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `knotd` is installed; else says why `test` is skipped.
pub fn knot_available(test: &str) -> bool {
    let found = Command::new("knotd")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED {test}: knotd is not installed (.ci/run installs the knot package)");
    }
    found
}

/// A free TCP and UDP port on 127.0.0.1 (bound, then let go).
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Knot {
    /// A secondary of `zones`, pulling from `primary` (and taking its NOTIFYs).
    pub fn secondary(primary: SocketAddr, zones: &[&str]) -> Knot {
        Knot::secondary_on(free_port(), primary, zones)
    }

    /// [`Knot::secondary`] on `port`.
    pub fn secondary_on(port: u16, primary: SocketAddr, zones: &[&str]) -> Knot {
        Knot::secondary_keyed(port, primary, zones, None)
    }

    /// [`Knot::secondary_on`], and with `key` (its name and base64 hmac-sha256 secret) every
    /// transfer and SOA check is signed with TSIG, and only NOTIFYs signed with it are taken.
    pub fn secondary_keyed(
        port: u16,
        primary: SocketAddr,
        zones: &[&str],
        key: Option<(&str, &str)>,
    ) -> Knot {
        let zone_list: String = zones
            .iter()
            .map(|zone| format!("  - domain: {zone}\n"))
            .collect();
        let (key_section, use_key) = match key {
            Some((name, secret)) => (
                format!("key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n"),
                format!("    key: {name}\n"),
            ),
            None => (String::new(), String::new()),
        };
        let template = format!(
            "{key_section}\
             remote:\n  - id: primary\n    address: {}@{}\n    block-notify-after-transfer: on\n{use_key}\
             acl:\n  - id: notify_from_primary\n    address: 127.0.0.1\n    action: notify\n{use_key}\
             template:\n  - id: default\n    storage: \"@RUN@/zones\"\n    master: primary\n    acl: notify_from_primary\n    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: changes\n    semantic-checks: off\n\
             zone:\n{zone_list}",
            primary.ip(),
            primary.port(),
        );
        Knot::run(port, &template)
    }

    /// A primary serving `zone` from `zone_file`, transfers allowed to 127.0.0.1, NOTIFY sent
    /// to `notify`, changes (made with [`Knot::knotc`]) kept for IXFR (the transfer benchmark's
    /// peer).
    #[allow(dead_code)]
    pub fn primary_of(zone: &str, zone_file: &Path, notify: SocketAddr) -> Knot {
        let template = format!(
            "remote:\n  - id: secondary\n    address: {}@{}\n\
             acl:\n  - id: transfer_to_local\n    address: 127.0.0.1\n    action: transfer\n\
             template:\n  - id: default\n    storage: \"@RUN@/zones\"\n    acl: transfer_to_local\n    notify: secondary\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: changes\n    semantic-checks: off\n\
             zone:\n  - domain: {zone}\n    file: \"{}\"\n",
            notify.ip(),
            notify.port(),
            zone_file.display()
        );
        Knot::run(free_port(), &template)
    }

    /// Runs `knotc` against this knotd; panics with its output when it fails.
    #[allow(dead_code)]
    pub fn knotc(&self, args: &[&str]) {
        let output = Command::new("knotc")
            .arg("-s")
            .arg(self.dir.path().join("knot.sock"))
            .args(args)
            .output()
            .expect("knotc runs");
        assert!(
            output.status.success(),
            "knotc {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts knotd on `port` with the server and log sections and `rest` (`@RUN@`: its
    /// directory).
    fn run(port: u16, rest: &str) -> Knot {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().display().to_string();
        for folder in ["db", "zones"] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        }
        let config = format!(
            "server:\n    rundir: \"{run}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n\
             database:\n    storage: \"{run}/db\"\n\
             {}\
             log:\n  - target: \"{run}/knot.log\"\n    any: info\n",
            rest.replace("@RUN@", &run),
        );
        let config_path = dir.path().join("knot.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("knotd starts");
        Knot {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.log")).unwrap_or_default()
    }

    /// Waits until it serves `zone` at `serial`; panics with its log after `within`.
    pub async fn wait_for_serial(&self, zone: &str, serial: u32, within: Duration) {
        let started = Instant::now();
        loop {
            if soa_serial(self.address, zone).await == Some(serial) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "knot never served {zone} at serial {serial}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The SOA serial `server` answers for `zone` over TCP, if it answers one (a server that
/// does not listen yet answers none).
pub async fn soa_serial(server: SocketAddr, zone: &str) -> Option<u32> {
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(zone).ok()?, RecordType::SOA));
    let bytes = message.to_vec().ok()?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server).await.ok()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await.ok()?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.ok()?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .ok()??;
    let reply = Message::from_vec(&reply).ok()?;
    reply.answers.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}
