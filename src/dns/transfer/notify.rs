//! NOTIFY (RFC 1996): tells each `transfer.notify` secondary that the zones changed, so it
//! pulls them (IXFR or AXFR) at once instead of at the SOA refresh.
//!
//! One task per secondary, with one UDP socket connected to it. The task waits for the index's
//! serial to move (or the index to turn synced), then sends a NOTIFY for every served zone with
//! the serial current at that moment, and waits for the answers. Zones that got no answer are
//! sent again, with the then current serial, after 1 s, 2 s, 4 s ... up to 30 s, until answered;
//! a secondary that answers with an error (it does not serve the zone, it refuses us) is not
//! asked again until the next change. When the serial moved while it was being told, the task
//! starts over with the newest one.
//!
//! With a TSIG key each NOTIFY is signed, and an answer that says NOERROR counts only when
//! its signature verifies (an error answer is taken as it is: it only stops the retries).
//!
//! Invariants: at most one round of NOTIFYs is outstanding per secondary, however many changes
//! arrive meanwhile (a burst is told as its newest serial); nothing here blocks the index
//! writer (it only publishes the serial on a watch channel) or the query path; nothing is sent
//! before the index is synced.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dns::answer::{Authority, ZoneId};
use crate::dns::tsig::TsigKey;
use crate::index::Index;
use crate::metrics::{Metrics, NotifyEvent};

/// The first wait for an answer; each unanswered round doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two rounds.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// Starts one notifier task per secondary; they end when `shutdown` is cancelled.
pub fn spawn_notifiers(
    secondaries: &[SocketAddr],
    authority: Arc<Authority>,
    index: Index,
    key: Option<TsigKey>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    secondaries
        .iter()
        .map(|&secondary| {
            let notifier = Notifier {
                secondary,
                authority: authority.clone(),
                index: index.clone(),
                key: key.clone(),
                metrics: metrics.clone(),
                next_id: initial_id(secondary),
            };
            tokio::spawn(notifier.run(shutdown.clone()))
        })
        .collect()
}

/// A message ID to start from: differs between secondaries and between runs.
fn initial_id(secondary: SocketAddr) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ u32::from(secondary.port()).rotate_left(7)) as u16
}

/// Tells one secondary of every change.
struct Notifier {
    secondary: SocketAddr,
    authority: Arc<Authority>,
    index: Index,
    /// Signs each NOTIFY and checks the answers' signatures, when configured.
    key: Option<TsigKey>,
    metrics: Arc<Metrics>,
    next_id: u16,
}

impl Notifier {
    async fn run(mut self, shutdown: CancellationToken) {
        let socket = match self.socket().await {
            Ok(socket) => socket,
            Err(error) => {
                warn!(secondary = %self.secondary, %error, "cannot open a socket for NOTIFY: this secondary is not notified");
                return;
            }
        };
        let mut changes = self.index.serial_changes();
        let mut told: Option<u32> = None;
        loop {
            while !self.index.is_synced() || told == Some(self.index.serial()) {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                serial = self.tell_every_zone(&socket) => told = Some(serial),
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn socket(&self) -> std::io::Result<UdpSocket> {
        let local: SocketAddr = match self.secondary {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(self.secondary).await?;
        Ok(socket)
    }

    /// Sends NOTIFYs until every zone is answered; returns the serial last told.
    async fn tell_every_zone(&mut self, socket: &UdpSocket) -> u32 {
        let zones = self.zones();
        let mut unanswered: BTreeSet<usize> = (0..zones.len()).collect();
        let mut wait = FIRST_WAIT;
        loop {
            let serial = self.index.serial();
            // Each NOTIFY sent: its ID, its zone and its MAC (empty when unsigned).
            let mut sent: Vec<(u16, usize, Vec<u8>)> = Vec::with_capacity(unanswered.len());
            for &zone in &unanswered {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                let mut message = self.notify_message(id, zones[zone], serial);
                let mac = match &self.key {
                    Some(key) => key.sign(&mut message, None, true, None, Vec::new()),
                    None => Vec::new(),
                };
                match socket.send(&message).await {
                    Ok(_) => {
                        self.metrics.record_notify(NotifyEvent::Sent);
                        sent.push((id, zone, mac));
                    }
                    Err(error) => debug!(secondary = %self.secondary, %error, "NOTIFY not sent"),
                }
            }
            let deadline = Instant::now() + wait;
            while !sent.is_empty() {
                let (id, rcode, answer) =
                    match tokio::time::timeout_at(deadline, read_answer(socket)).await {
                        Ok(Ok(Some(answer))) => answer,
                        Ok(Ok(None)) => continue,     // not a NOTIFY answer
                        Ok(Err(_)) | Err(_) => break, // unreachable (ICMP), or the wait is over
                    };
                let Some(position) = sent.iter().position(|(sent_id, ..)| *sent_id == id) else {
                    continue; // an answer to an earlier round, or a stray datagram
                };
                if let Some(key) = &self.key
                    && rcode == ResponseCode::NoError
                    && let Err(error) = key.verify_response(&answer, &sent[position].2)
                {
                    // Not from the secondary we share the key with: as good as no answer.
                    debug!(secondary = %self.secondary, ?error, "NOTIFY answer with a bad TSIG ignored");
                    continue;
                }
                let (_, zone, _) = sent.swap_remove(position);
                unanswered.remove(&zone);
                let name = self.authority.zone_name(zones[zone]);
                if rcode == ResponseCode::NoError {
                    self.metrics.record_notify(NotifyEvent::Acknowledged);
                    debug!(secondary = %self.secondary, zone = %name, serial, "NOTIFY acknowledged");
                } else {
                    self.metrics.record_notify(NotifyEvent::Refused);
                    info!(secondary = %self.secondary, zone = %name, %rcode, "NOTIFY refused: the secondary does not take this zone from us");
                }
            }
            if unanswered.is_empty() {
                return serial;
            }
            for _ in &sent {
                self.metrics.record_notify(NotifyEvent::TimedOut);
            }
            if wait == FIRST_WAIT {
                warn!(secondary = %self.secondary, zones = unanswered.len(), "NOTIFY not answered; retrying with backoff");
            }
            tokio::time::sleep_until(deadline).await;
            wait = (wait * 2).min(LONGEST_WAIT);
        }
    }

    fn zones(&self) -> Vec<ZoneId> {
        let forward = (0..self.authority.zones.len()).map(ZoneId::Forward);
        let reverse = (0..self.authority.reverse_zones.len()).map(ZoneId::Reverse);
        forward.chain(reverse).collect()
    }

    /// A NOTIFY for `zone` carrying its SOA at `serial` (RFC 1996 section 3.7).
    fn notify_message(&self, id: u16, zone: ZoneId, serial: u32) -> Vec<u8> {
        let name = self.authority.zone_name(zone);
        let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
        message.metadata.authoritative = true;
        message.add_query(Query::query(name.clone(), RecordType::SOA));
        message.add_answer(self.authority.soa_at(name, serial));
        message.to_vec().unwrap_or_default()
    }
}

/// Reads one datagram: the ID, rcode and bytes of a NOTIFY answer, `None` for anything else.
async fn read_answer(socket: &UdpSocket) -> std::io::Result<Option<(u16, ResponseCode, Vec<u8>)>> {
    let mut buffer = vec![0u8; 4096];
    let length = socket.recv(&mut buffer).await?;
    buffer.truncate(length);
    let Ok(answer) = Message::from_vec(&buffer) else {
        return Ok(None);
    };
    let is_answer = answer.metadata.message_type == MessageType::Response
        && answer.metadata.op_code == OpCode::Notify;
    Ok(is_answer.then_some((answer.metadata.id, answer.metadata.response_code, buffer)))
}
