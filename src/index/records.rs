//! One Service's answers, compiled once per change from its Service and EndpointSlices.
//!
//! [`ServiceRecords::build`] is pure: same inputs, same value. It merges every slice of the
//! Service (several slices, one or two IP families), keeps only ready endpoints (R1: readiness is
//! `conditions.ready` and nothing else), deduplicates addresses, and indexes each endpoint under
//! each of its names (hostname, pod name; a dashed IP is found by binary search; R2).
//!
//! Invariants:
//! - `endpoints` is sorted by address and holds each address once;
//! - `hostnames` holds the index of every endpoint with a hostname, once, sorted by (hostname,
//!   index); `pod_names` holds (pod name, index) for each endpoint whose pod name differs from
//!   its hostname, sorted; together they name each endpoint by each of its labels;
//! - `srv_order` holds the index of every endpoint, once, sorted by ([`srv_label_order`] of
//!   its SRV label, index): StatefulSet peers by ordinal (`web-2` before `web-10`), then the
//!   rest by label (R15); and
//!   `srv_targets_alone` is true only when each SRV label names its own endpoint and no other
//!   (so an SRV answer needs no label lookup: see [`ServiceRecords::srv_targets_alone`]);
//! - the value is immutable once built: the writer publishes it whole behind an `Arc`; the one
//!   exception is the retired mark, which the writer sets (once, never cleared) after it has
//!   published the value replacing this one or removed it, and which dropping the value sets
//!   too, so caches of answers computed from it ([`Retirement`]) can tell they are stale.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::label::{Label, dashed_ip, undashed_ip};
use super::stored::{StoredEndpoint, StoredService, StoredSlice};
use crate::config::SrvTargetStyle;
use crate::model::{Port, ServiceKind};
use crate::sys::prefetch::{prefetch_arc, prefetch_slice};

/// A ready endpoint address with what its names need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyEndpoint {
    /// The address.
    pub ip: IpAddr,
    /// The label its SRV records point at: its hostname when it has one, else its pod name or
    /// dashed IP (per config). Inline, so reading it costs no other memory access.
    srv_label: Label,
    /// Whether `srv_label` is the endpoint's hostname (else it has none).
    has_hostname: bool,
    /// The ports of the slice the endpoint came from.
    pub ports: Arc<[Port]>,
}

impl ReadyEndpoint {
    /// The endpoint's hostname, if any.
    pub fn hostname(&self) -> Option<&Label> {
        self.has_hostname.then_some(&self.srv_label)
    }

    /// The label its SRV records point at.
    pub fn srv_label(&self) -> &Label {
        &self.srv_label
    }

    /// Whether its hostname is `label`.
    fn hostname_is(&self, label: &[u8]) -> bool {
        self.has_hostname && self.srv_label.is(label)
    }
}

/// Everything the answer rules need to know about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecords {
    /// Headless, ClusterIP or ExternalName.
    pub kind: ServiceKind,
    /// The Service's own ports (ClusterIP SRV answers), shared with the writer's copy.
    pub service_ports: Arc<[Port]>,
    /// Ready endpoints, sorted by address, one entry per address.
    pub endpoints: Vec<ReadyEndpoint>,
    /// Indexes into `endpoints` of those with a hostname, sorted by (hostname, index): the
    /// label is the endpoint's own `hostname`, so it costs four bytes here.
    pub hostnames: Box<[u32]>,
    /// (pod name, index into `endpoints`) for the endpoints whose pod name is not also their
    /// hostname, sorted (StatefulSet pods have none here). Dashed IPs are not stored either:
    /// they are parsed back into an address and found by binary search.
    pub pod_names: Box<[(Arc<str>, u32)]>,
    /// Indexes into `endpoints` sorted by (SRV label, index): the order SRV answers list
    /// targets in, computed once here instead of sorted per query.
    pub srv_order: Box<[u32]>,
    /// Whether every SRV label is carried by one endpoint only and names that endpoint alone
    /// (no other endpoint has it as hostname, pod name or dashed address). The common case;
    /// when false, SRV answers look each target's addresses up by label.
    srv_targets_alone: bool,
    /// Endpoints that are not ready (nor terminating) and answer their own names (R15), when
    /// the Service's annotation or `dns.not_ready_names` asks; never in Service-wide answers.
    /// `None` when not asked or there are none.
    pub own_names: Option<Box<ServiceRecords>>,
    /// `seeds.<svc>` (R15): the endpoints of the first N ordinals that exist, when the
    /// Service asks for seeds.
    pub seeds: Option<Box<ServiceRecords>>,
    /// The TXT record's character strings at the Service's name (R15); empty: none.
    pub txt: Box<[Box<str>]>,
    /// Set when the writer stops publishing this value.
    retired: RetiredMark,
}

/// How records are compiled, from the config: the SRV target style (R3) and whether every
/// Service's not-ready endpoints answer their own names (R15, `dns.not_ready_names`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSettings {
    /// How SRV targets of endpoints without hostname are named.
    pub srv_target: SrvTargetStyle,
    /// Whether not-ready endpoints answer their own names in every Service.
    pub not_ready_names: bool,
}

impl From<SrvTargetStyle> for RecordSettings {
    fn from(srv_target: SrvTargetStyle) -> Self {
        Self {
            srv_target,
            not_ready_names: false,
        }
    }
}

/// Whether the writer has replaced or removed a published [`ServiceRecords`]. It is not part of
/// the value: a clone starts unretired, and two records that differ only here are equal.
///
/// The flag is shared ([`ServiceRecords::retirement`]), so a cache of answers computed from the
/// records can check it with one plain load, without upgrading a `Weak` to the records (two
/// atomic read-modify-writes per check) and without keeping the records alive.
#[derive(Debug, Default)]
struct RetiredMark(Arc<AtomicBool>);

impl Clone for RetiredMark {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for RetiredMark {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RetiredMark {}

impl Drop for RetiredMark {
    /// Records that are gone are not published either: a handle that outlives them says
    /// retired, whether or not the writer got to mark them.
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A handle on the retired mark of one [`ServiceRecords`] value: it outlives the records and
/// says whether they are still published.
#[derive(Clone, Debug)]
pub struct Retirement(Arc<AtomicBool>);

impl Retirement {
    /// Whether the records have been replaced or removed (see [`ServiceRecords::is_retired`]).
    pub fn is_retired(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Asks the CPU for the mark (for a check soon after).
    pub fn prefetch(&self) {
        prefetch_arc(&self.0);
    }
}

impl ServiceRecords {
    /// Compiles a Service and its slices (in any order) into its answers: its ready
    /// endpoints, and the bootstrap names it asks for (R15).
    pub(crate) fn build<'a>(
        service: &StoredService,
        slices: impl IntoIterator<Item = &'a StoredSlice>,
        settings: impl Into<RecordSettings>,
    ) -> Self {
        let settings: RecordSettings = settings.into();
        let slices: Vec<&StoredSlice> = slices.into_iter().collect();
        let style = settings.srv_target;
        let mut records = Self::answering(service, &slices, style, |e, _| e.ready);
        let own_names = settings.not_ready_names || service.bootstrap.not_ready_names;
        let own = |e: &StoredEndpoint, ip: &IpAddr| {
            own_names && !e.ready && !e.terminating && !records.has_address(ip)
        };
        let own_records = own_names
            .then(|| Self::answering(service, &slices, style, own))
            .filter(|own| !own.endpoints.is_empty());
        if let Some(count) = service.bootstrap.seeds {
            let seed = seed_labels(&records, own_records.as_ref(), count);
            let chosen = |e: &StoredEndpoint, ip: &IpAddr| {
                (e.ready || own(e, ip))
                    && seed.contains(&srv_label(
                        e.hostname.as_ref(),
                        e.pod_name.as_ref(),
                        ip,
                        style,
                    ))
            };
            let seeds = Self::answering(service, &slices, style, chosen);
            records.seeds = Some(Box::new(seeds));
        }
        records.own_names = own_records.map(Box::new);
        records.txt = service
            .bootstrap
            .txt
            .iter()
            .map(|s| s.as_str().into())
            .collect();
        records
    }

    /// The records of the endpoints `include` takes (by endpoint and address), without any
    /// bootstrap names.
    fn answering(
        service: &StoredService,
        slices: &[&StoredSlice],
        srv_target: SrvTargetStyle,
        include: impl Fn(&StoredEndpoint, &IpAddr) -> bool,
    ) -> Self {
        let mut by_ip: BTreeMap<IpAddr, (ReadyEndpoint, Option<Arc<str>>)> = BTreeMap::new();
        if !matches!(service.kind, ServiceKind::ExternalName(_)) {
            for slice in slices {
                for endpoint in slice.endpoints.iter() {
                    for ip in endpoint.addresses.as_slice() {
                        if !include(endpoint, ip) {
                            continue;
                        }
                        let hostname = endpoint.hostname.as_ref();
                        let pod_name = endpoint.pod_name.clone();
                        let entry = ReadyEndpoint {
                            ip: *ip,
                            srv_label: srv_label(hostname, pod_name.as_ref(), ip, srv_target),
                            has_hostname: hostname.is_some(),
                            ports: slice.ports.clone(),
                        };
                        // The same address in two slices (a pod moving between slices): keep
                        // the first, deterministically, since slices arrive sorted by name.
                        by_ip.entry(*ip).or_insert((entry, pod_name));
                    }
                }
            }
        }
        let mut endpoints = Vec::with_capacity(by_ip.len());
        let mut hostnames: Vec<u32> = Vec::new();
        let mut pod_names: Vec<(Arc<str>, u32)> = Vec::new();
        for (position, (_, (endpoint, pod_name))) in by_ip.into_iter().enumerate() {
            let position = position as u32;
            if endpoint.has_hostname {
                hostnames.push(position);
            }
            if let Some(pod_name) = pod_name
                && !endpoint.hostname_is(pod_name.as_bytes())
            {
                pod_names.push((pod_name, position));
            }
            endpoints.push(endpoint);
        }
        hostnames.sort_unstable_by(|a, b| {
            (hostname_of(&endpoints, *a), a).cmp(&(hostname_of(&endpoints, *b), b))
        });
        pod_names.sort_unstable();
        // Targets in answer order (R15): sorted by `srv_order_of` once here, not per query.
        // Hostnames are nearly sorted already when they are (StatefulSet pods under 10).
        let mut srv_order = if hostnames.len() == endpoints.len() {
            hostnames.clone()
        } else {
            (0..endpoints.len() as u32).collect()
        };
        sort_srv_order(&mut srv_order, &endpoints);
        let mut records = Self {
            kind: service.kind.clone(),
            service_ports: service.ports.clone(),
            endpoints,
            hostnames: hostnames.into_boxed_slice(),
            pod_names: pod_names.into_boxed_slice(),
            srv_order: srv_order.into_boxed_slice(),
            srv_targets_alone: false,
            own_names: None,
            seeds: None,
            txt: Box::default(),
            retired: RetiredMark::default(),
        };
        records.srv_targets_alone = records.srv_labels_name_themselves();
        records
    }

    /// Marks these records as no longer published: the writer calls it after publishing their
    /// replacement (or removing the Service), before it moves the serial.
    pub(crate) fn retire(&self) {
        self.retired.0.store(true, Ordering::Release);
    }

    /// A handle on the retired mark: it says whether these records are still published,
    /// without keeping them alive.
    pub fn retirement(&self) -> Retirement {
        Retirement(Arc::clone(&self.retired.0))
    }

    /// Whether the writer has replaced or removed these records: an answer computed from them
    /// may be stale.
    pub fn is_retired(&self) -> bool {
        self.retired.0.load(Ordering::Acquire)
    }

    /// Asks the CPU to start loading what an answer from these records reads first: the
    /// endpoints (up to `PREFETCHED_LINES` cache lines of them) and, for an SRV answer, their
    /// SRV order. A hint for a batch that looks up every Service before it writes any answer.
    pub fn prefetch(&self, srv: bool) {
        prefetch_slice(&self.endpoints, PREFETCHED_LINES);
        if srv {
            prefetch_slice(&self.srv_order, 1);
        }
    }

    /// Asks for the ports an SRV answer lists (those of the first and last endpoints' slices:
    /// a Service's slices usually share them), once [`Self::prefetch`]'s loads have arrived.
    pub fn prefetch_ports(&self) {
        if let (Some(first), Some(last)) = (self.endpoints.first(), self.endpoints.last()) {
            prefetch_slice(&first.ports, 2);
            if !Arc::ptr_eq(&first.ports, &last.ports) {
                prefetch_slice(&last.ports, 2);
            }
        }
    }

    /// Whether each endpoint's SRV label names that endpoint and no other, so an SRV target's
    /// addresses are its own endpoint's and need no lookup by label.
    pub fn srv_targets_alone(&self) -> bool {
        self.srv_targets_alone
    }

    /// Whether each endpoint's SRV label finds exactly that endpoint (then no two endpoints
    /// share a label either). Run once per build, so it is linear in the common case: no pod
    /// name apart from a hostname (StatefulSet pods; endpoints known by hostname or address).
    fn srv_labels_name_themselves(&self) -> bool {
        if !self.pod_names.is_empty() {
            return self.endpoints.iter().all(|endpoint| {
                let mut named = self.endpoints_labelled(endpoint.srv_label.as_str());
                named.next().is_some_and(|e| std::ptr::eq(e, endpoint)) && named.next().is_none()
            });
        }
        // Names are then hostnames and dashed addresses only. Hostnames must be unique
        // (`hostnames` is sorted by them, so a repeat is adjacent).
        let repeated = self
            .hostnames
            .windows(2)
            .any(|pair| self.hostname(pair[0]) == self.hostname(pair[1]));
        !repeated
            && self.endpoints.iter().all(|endpoint| {
                // A label that reads as an address must be this endpoint's own, or no
                // endpoint's. (That also covers a dashed-address label that is another
                // endpoint's hostname: that hostname then reads as this address, not its own.)
                undashed_ip(endpoint.srv_label.as_str()).is_none_or(|ip| {
                    ip == endpoint.ip || self.endpoints.binary_search_by(|e| e.ip.cmp(&ip)).is_err()
                })
            })
    }

    /// The endpoints known by `label` (R2): by hostname or pod name, then by dashed IP; then
    /// the not-ready endpoints that answer their own names (R15), the same way.
    pub fn endpoints_labelled<'a>(
        &'a self,
        label: &'a str,
    ) -> impl Iterator<Item = &'a ReadyEndpoint> + 'a {
        let own_names = self
            .own_names
            .iter()
            .flat_map(move |own| own.endpoints_labelled_here(label));
        self.endpoints_labelled_here(label).chain(own_names)
    }

    /// Whether an endpoint of these records has the address `ip`.
    fn has_address(&self, ip: &IpAddr) -> bool {
        self.endpoints.binary_search_by(|e| e.ip.cmp(ip)).is_ok()
    }

    /// [`Self::endpoints_labelled`] among these records' own endpoints only.
    fn endpoints_labelled_here<'a>(
        &'a self,
        label: &str,
    ) -> impl Iterator<Item = &'a ReadyEndpoint> + 'a {
        let hostnames = self.with_hostname(label.as_bytes());
        let pod_names = equal_range(
            &self.pod_names,
            |(name, _)| (**name).cmp(label),
            |(name, _)| same_label(name, label),
        );
        let named = |position: u32| {
            hostnames.contains(position) || pod_names.iter().any(|(_, p)| *p == position)
        };
        let dashed = undashed_ip(label)
            .and_then(|ip| self.endpoints.binary_search_by(|e| e.ip.cmp(&ip)).ok())
            .map(|position| position as u32)
            .filter(|position| !named(*position));
        // Both are ascending by index: merge them, each index once.
        let mut by_hostname = hostnames.iter().peekable();
        let mut by_pod_name = pod_names.iter().map(|(_, p)| *p).peekable();
        let merged = std::iter::from_fn(move || match (by_hostname.peek(), by_pod_name.peek()) {
            (Some(&a), Some(&b)) if a == b => {
                by_pod_name.next();
                by_hostname.next()
            }
            (Some(&a), Some(&b)) if b < a => by_pod_name.next(),
            (Some(_), _) => by_hostname.next(),
            (None, _) => by_pod_name.next(),
        });
        merged
            .chain(dashed)
            .filter_map(|position| self.endpoints.get(position as usize))
    }

    /// Whether a name below this Service answers although no endpoint is ready: an own name
    /// before ready, or `seeds` (R15).
    pub fn has_names_below(&self) -> bool {
        let holds = |records: &Option<Box<ServiceRecords>>| {
            records.as_ref().is_some_and(|r| !r.endpoints.is_empty())
        };
        holds(&self.own_names) || holds(&self.seeds)
    }

    /// Whether some name at or below this Service answers: every ClusterIP and ExternalName
    /// Service, a headless one with a ready endpoint or a name below (own names, seeds).
    pub fn holds_names(&self) -> bool {
        !matches!(self.kind, ServiceKind::Headless)
            || !self.endpoints.is_empty()
            || self.has_names_below()
    }

    /// Names answerable below this Service: hostnames and pod names, and dashed IPs.
    pub fn name_count(&self) -> usize {
        let hostnames = self
            .hostnames
            .chunk_by(|a, b| self.hostname(*a) == self.hostname(*b))
            .count();
        let pod_names = self
            .pod_names
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|same| self.with_hostname(same[0].0.as_bytes()).is_empty())
            .count();
        hostnames + pod_names + self.endpoints.len()
    }

    /// The endpoints whose hostname is `label`. A small Service's endpoints are scanned in
    /// place (their labels are inline, so that reads nothing else); a large one's are found
    /// by binary search in `hostnames`.
    fn with_hostname(&self, label: &[u8]) -> Positions<'_> {
        if self.endpoints.len() <= SCANNED_ENDPOINTS {
            let mask = self
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, endpoint)| endpoint.hostname_is(label))
                .fold(0, |mask, (position, _)| mask | 1 << position);
            return Positions { run: &[], mask };
        }
        let run = equal_range(
            &self.hostnames,
            |p| self.hostname(*p).cmp(label),
            |p| {
                self.endpoints
                    .get(*p as usize)
                    .is_some_and(|e| e.hostname_is(label))
            },
        );
        Positions { run, mask: 0 }
    }

    fn hostname(&self, position: u32) -> &[u8] {
        hostname_of(&self.endpoints, position)
    }
}

/// Cache lines of endpoints [`ServiceRecords::prefetch`] asks for: a small Service's all (16
/// endpoints of 72 bytes); a larger one's first ones, after which the reads are sequential
/// and the CPU's own prefetcher follows.
const PREFETCHED_LINES: usize = 18;

/// Services with at most this many endpoints are searched by scanning them (no more than 32:
/// a [`Positions`] mask holds their matches).
const SCANNED_ENDPOINTS: usize = 16;

/// Positions of endpoints, ascending: a run of `hostnames`, or a bit per endpoint of a small
/// Service (one of the two is empty).
#[derive(Clone, Copy, Debug)]
struct Positions<'a> {
    run: &'a [u32],
    mask: u32,
}

impl<'a> Positions<'a> {
    fn contains(&self, position: u32) -> bool {
        self.run.contains(&position) || (position < 32 && self.mask >> position & 1 == 1)
    }

    fn is_empty(&self) -> bool {
        self.run.is_empty() && self.mask == 0
    }

    fn iter(self) -> impl Iterator<Item = u32> + 'a {
        let mut mask = self.mask;
        let from_mask = std::iter::from_fn(move || {
            let position = (mask != 0).then(|| mask.trailing_zeros())?;
            mask &= mask - 1;
            Some(position)
        });
        self.run.iter().copied().chain(from_mask)
    }
}

/// The hostname of `endpoints[position]` (empty when it has none).
/// The order SRV answers list their targets in (R15), by SRV label: StatefulSet peers first
/// (a label `<name>-<ordinal>`: `web-2` before `web-10`, by name then ordinal), then every
/// other target (pod names, dashed addresses) by label. A total order, a function of the
/// labels alone, equal only for equal labels.
pub fn srv_label_order(a: &str, b: &str) -> std::cmp::Ordering {
    SrvOrderKey::of(a.as_bytes()).cmp(&SrvOrderKey::of(b.as_bytes()))
}

/// Sorts endpoint positions by [`srv_label_order`] of their SRV labels, then position. The
/// common case, one StatefulSet's peers and nothing else, sorts by ordinal alone (a rebuild
/// of a 1000-pod Service sorts its labels on every change).
fn sort_srv_order(order: &mut [u32], endpoints: &[ReadyEndpoint]) {
    let label = |p: u32| endpoints[p as usize].srv_label.as_bytes();
    let first = order.first().and_then(|&p| ordinal_of(label(p)));
    if let Some((name, _)) = first {
        let ordinals: Option<Vec<(u64, u32)>> = order
            .iter()
            .map(|&p| match ordinal_of(label(p)) {
                Some((other, ordinal)) if other == name => Some((ordinal, p)),
                _ => None,
            })
            .collect();
        if let Some(mut ordinals) = ordinals {
            if !place_dense(order, &ordinals) {
                ordinals.sort_unstable();
                for (slot, (_, position)) in order.iter_mut().zip(ordinals) {
                    *slot = position;
                }
            }
            return;
        }
    }
    let mut keyed: Vec<(SrvOrderKey<'_>, u32)> = order
        .iter()
        .map(|&p| (SrvOrderKey::of(label(p)), p))
        .collect();
    keyed.sort_unstable();
    for (slot, (_, position)) in order.iter_mut().zip(keyed) {
        *slot = position;
    }
}

/// The SRV labels of the first `count` ordinals among the endpoints of `ready` and `own`
/// (R15 seeds): StatefulSet peers by (ordinal, name), then, when there are fewer, nothing else.
fn seed_labels(ready: &ServiceRecords, own: Option<&ServiceRecords>, count: u32) -> Vec<Label> {
    let own = own.map_or(&[][..], |own| own.endpoints.as_slice());
    let mut peers: Vec<(u64, &[u8], &Label)> = ready
        .endpoints
        .iter()
        .chain(own)
        .filter_map(|e| {
            let (name, ordinal) = ordinal_of(e.srv_label.as_bytes())?;
            Some((ordinal, name, &e.srv_label))
        })
        .collect();
    peers.sort_unstable();
    peers.dedup_by(|a, b| a.2 == b.2);
    peers
        .into_iter()
        .take(count as usize)
        .map(|(_, _, label)| label.clone())
        .collect()
}

/// Puts each position at its ordinal when the ordinals are exactly `0..n` (a StatefulSet at
/// rest); false (and `order` untouched) otherwise.
fn place_dense(order: &mut [u32], ordinals: &[(u64, u32)]) -> bool {
    let mut placed = vec![u32::MAX; order.len()];
    for &(ordinal, position) in ordinals {
        match usize::try_from(ordinal)
            .ok()
            .and_then(|o| placed.get_mut(o))
        {
            Some(slot) if *slot == u32::MAX => *slot = position,
            _ => return false,
        }
    }
    order.copy_from_slice(&placed);
    true
}

/// A label's place in [`srv_label_order`], computed once to sort many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SrvOrderKey<'l> {
    /// Peers (0) before the rest (1).
    class: u8,
    /// The StatefulSet's name (empty for the rest).
    name: &'l [u8],
    /// The ordinal (0 for the rest).
    ordinal: u64,
    /// The whole label: the order among the rest, and a tie-breaker.
    label: &'l [u8],
}

impl<'l> SrvOrderKey<'l> {
    fn of(label: &'l [u8]) -> Self {
        match ordinal_of(label) {
            Some((name, ordinal)) => Self {
                class: 0,
                name,
                ordinal,
                label,
            },
            None => Self {
                class: 1,
                name: b"",
                ordinal: 0,
                label,
            },
        }
    }
}

/// `(name, ordinal)` of a label that names a StatefulSet pod (`web-10`: `("web", 10)`): a
/// name, a dash, and a decimal ordinal without leading zeros; never a dashed address.
fn ordinal_of(label: &[u8]) -> Option<(&[u8], u64)> {
    let dash = label.iter().rposition(|&b| b == b'-')?;
    let (name, digits) = (&label[..dash], &label[dash + 1..]);
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    if name.is_empty() || digits.is_empty() || digits.len() > 18 || leading_zero {
        return None;
    }
    let mut ordinal = 0u64;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        ordinal = ordinal * 10 + u64::from(digit - b'0');
    }
    // Only a name of hex digits and dashes can be part of a dashed address (10-1-0-2).
    let hex = name.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-');
    if hex
        && std::str::from_utf8(label)
            .ok()
            .and_then(undashed_ip)
            .is_some()
    {
        return None;
    }
    Some((name, ordinal))
}

fn hostname_of(endpoints: &[ReadyEndpoint], position: u32) -> &[u8] {
    endpoints
        .get(position as usize)
        .and_then(ReadyEndpoint::hostname)
        .map_or(&[], Label::as_bytes)
}

/// Whether two labels are equal, checking first what tells sibling names apart cheaply: the
/// length and the last byte (a StatefulSet's pods differ in their ordinal at the end).
fn same_label(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().last() == b.as_bytes().last() && a == b
}

/// Below this many entries a run is found by a linear scan with the cheap equality.
const LINEAR_SCAN: usize = 16;

/// The run of `sorted` for which `order` is `Equal` (`equal` says the same, more cheaply).
fn equal_range<T>(
    sorted: &[T],
    order: impl Fn(&T) -> std::cmp::Ordering,
    equal: impl Fn(&T) -> bool,
) -> &[T] {
    if sorted.len() <= LINEAR_SCAN {
        let Some(start) = sorted.iter().position(&equal) else {
            return &[];
        };
        let length = sorted[start..]
            .iter()
            .take_while(|item| equal(item))
            .count();
        return &sorted[start..start + length];
    }
    let start = sorted.partition_point(|item| order(item).is_lt());
    let length = sorted[start..]
        .iter()
        .take_while(|item| order(item).is_eq())
        .count();
    &sorted[start..start + length]
}

fn srv_label(
    hostname: Option<&Arc<str>>,
    pod_name: Option<&Arc<str>>,
    ip: &IpAddr,
    style: SrvTargetStyle,
) -> Label {
    match (hostname, pod_name, style) {
        (Some(hostname), _, _) => Label::from_shared(hostname),
        (None, Some(pod), SrvTargetStyle::PodName) => Label::from_shared(pod),
        _ => Label::new(&dashed_ip(ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddressFamily, Endpoint, EndpointSlice, Protocol, Service, ServiceKey};

    fn endpoint(ip: &str, ready: bool, hostname: Option<&str>, pod: Option<&str>) -> Endpoint {
        Endpoint {
            terminating: false,
            addresses: vec![ip.parse().unwrap()],
            ready,
            hostname: hostname.map(str::to_string),
            pod_name: pod.map(str::to_string),
        }
    }

    fn slice(name: &str, family: AddressFamily, endpoints: Vec<Endpoint>) -> StoredSlice {
        StoredSlice::from(EndpointSlice {
            name: name.into(),
            service: ServiceKey::new("default", "db"),
            family,
            ports: vec![Port {
                name: Some("pg".into()),
                protocol: Protocol::Tcp,
                port: 5432,
            }],
            endpoints,
        })
    }

    fn headless() -> StoredService {
        StoredService::from(Service {
            bootstrap: Default::default(),
            key: ServiceKey::new("default", "db"),
            kind: ServiceKind::Headless,
            ports: vec![],
        })
    }

    #[test]
    fn srv_targets_are_ordered_by_ordinal_then_label() {
        let mut labels = vec![
            "web-10",
            "10-1-0-2",
            "web-2",
            "db-1",
            "web-0",
            "helper-abc",
            "web-02",
            "web-9",
            "fd00-10--5",
            "db-0",
            "web-1",
        ];
        labels.sort_by(|a, b| srv_label_order(a, b));
        assert_eq!(
            labels,
            [
                "db-0",
                "db-1",
                "web-0",
                "web-1",
                "web-2",
                "web-9",
                "web-10",
                "10-1-0-2",
                "fd00-10--5",
                "helper-abc",
                "web-02"
            ]
        );
        for a in &labels {
            for b in &labels {
                assert_eq!(srv_label_order(a, b) == std::cmp::Ordering::Equal, a == b);
                assert_eq!(srv_label_order(a, b), srv_label_order(b, a).reverse());
            }
        }
    }

    #[test]
    fn merges_slices_dedups_and_drops_not_ready() {
        let a = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![
                endpoint("10.0.0.2", true, Some("db-1"), Some("db-1")),
                endpoint("10.0.0.9", false, Some("db-9"), Some("db-9")),
            ],
        );
        let b = slice(
            "db-b",
            AddressFamily::Ipv4,
            vec![
                endpoint("10.0.0.1", true, Some("db-0"), Some("db-0")),
                endpoint("10.0.0.2", true, Some("db-1"), Some("db-1")),
            ],
        );
        let records = ServiceRecords::build(&headless(), [&a, &b], SrvTargetStyle::Hostname);
        let ips: Vec<String> = records.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        assert!(records.endpoints_labelled("db-9").next().is_none());
        assert_eq!(records.endpoints_labelled("db-1").count(), 1);
        assert_eq!(records.endpoints_labelled("10-0-0-1").count(), 1);
    }

    #[test]
    fn dual_stack_hostname_answers_both_families() {
        let v4 = slice(
            "db-v4",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, Some("db-0"), Some("db-0"))],
        );
        let v6 = slice(
            "db-v6",
            AddressFamily::Ipv6,
            vec![endpoint("fd00::1", true, Some("db-0"), Some("db-0"))],
        );
        let records = ServiceRecords::build(&headless(), [&v4, &v6], SrvTargetStyle::Hostname);
        let ips: Vec<String> = records
            .endpoints_labelled("db-0")
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.1", "fd00::1"]);
    }

    #[test]
    fn srv_label_follows_style() {
        let s = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, None, Some("web-abc"))],
        );
        let by_ip = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::Hostname);
        assert_eq!(by_ip.endpoints[0].srv_label().as_str(), "10-0-0-1");
        let by_pod = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::PodName);
        assert_eq!(by_pod.endpoints[0].srv_label().as_str(), "web-abc");
    }

    #[test]
    fn labels_naming_several_endpoints_answer_all_once() {
        let s = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![
                endpoint("10.0.0.3", true, Some("db"), Some("web-c")),
                endpoint("10.0.0.1", true, Some("db"), Some("web-a")),
                endpoint("10.0.0.2", true, Some("10-0-0-2"), Some("10-0-0-2")),
                endpoint("10.0.0.4", true, Some("web-a"), Some("web-a")),
            ],
        );
        let records = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::Hostname);
        let ips = |label: &str| -> Vec<String> {
            records
                .endpoints_labelled(label)
                .map(|e| e.ip.to_string())
                .collect()
        };
        assert_eq!(ips("db"), ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(ips("web-c"), ["10.0.0.3"]);
        // A pod name of one endpoint and the hostname of another: both, by address.
        assert_eq!(ips("web-a"), ["10.0.0.1", "10.0.0.4"]);
        assert_eq!(ips("10-0-0-2"), ["10.0.0.2"]);
        assert_eq!(ips("10-0-0-3"), ["10.0.0.3"]);
        assert!(ips("d").is_empty() && ips("dbx").is_empty());
        // Labels db, web-a, web-c, 10-0-0-2, and one dashed IP per endpoint.
        assert_eq!(records.name_count(), 4 + 4);
    }

    #[test]
    fn labels_match_a_scan_of_the_endpoints() {
        let names = ["a", "b", "c", "10-0-0-3"];
        let mut seed = 7u32;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as usize % n
        };
        let (mut alone, mut not_alone) = (0, 0);
        for round in 0..400 {
            // Up to 40 endpoints: runs found by linear scan and by binary search. Every other
            // round is StatefulSet-like (pod name = hostname, or none; many distinct names).
            let stateful = round % 2 == 1;
            let endpoints: Vec<Endpoint> = (0..next(40))
                .map(|_| {
                    let ip = format!("10.0.0.{}", next(30));
                    if stateful {
                        let hostname = match next(8) {
                            0 => None,
                            1 => Some(format!("10-0-0-{}", next(30))),
                            _ => Some(format!("web-{}", next(80))),
                        };
                        let pod = hostname.clone().filter(|_| next(2) == 0);
                        return endpoint(&ip, next(8) > 0, hostname.as_deref(), pod.as_deref());
                    }
                    let name = |i: usize| (i < names.len()).then(|| names[i]);
                    endpoint(&ip, next(4) > 0, name(next(6)), name(next(6)))
                })
                .collect();
            let s = slice("db-a", AddressFamily::Ipv4, endpoints.clone());
            let records = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::Hostname);
            // The first ready endpoint of each address is the one kept.
            let mut kept: Vec<&Endpoint> = Vec::new();
            for e in endpoints.iter().filter(|e| e.ready) {
                if !kept.iter().any(|k| k.addresses == e.addresses) {
                    kept.push(e);
                }
            }
            kept.sort_by_key(|e| e.addresses[0]);
            let mut labels: Vec<&str> = Vec::new();
            for e in &kept {
                labels.extend(e.hostname.as_deref());
                labels.extend(e.pod_name.as_deref());
            }
            labels.sort_unstable();
            labels.dedup();
            assert_eq!(records.name_count(), labels.len() + kept.len());
            // By hostname or pod name, ascending; then by dashed IP if not already named.
            let scan = |label: &str| -> Vec<IpAddr> {
                let mut expected: Vec<IpAddr> = kept
                    .iter()
                    .filter(|e| {
                        e.hostname.as_deref() == Some(label) || e.pod_name.as_deref() == Some(label)
                    })
                    .map(|e| e.addresses[0])
                    .collect();
                let dashed = kept.iter().map(|e| e.addresses[0]);
                let dashed = dashed.filter(|ip| dashed_ip(ip) == *label && !expected.contains(ip));
                expected.extend(dashed.collect::<Vec<_>>());
                expected
            };
            let asked = labels.iter().copied().chain(names).chain(["d", "10-0-0-1"]);
            for label in asked {
                let found: Vec<IpAddr> = records.endpoints_labelled(label).map(|e| e.ip).collect();
                assert_eq!(found, scan(label), "{label} in {endpoints:?}");
            }
            // SRV targets stand alone when each endpoint's SRV label names it and nothing else.
            let srv_label = |e: &Endpoint| {
                e.hostname
                    .clone()
                    .unwrap_or_else(|| dashed_ip(&e.addresses[0]))
            };
            let expected_alone = kept.iter().all(|e| scan(&srv_label(e)) == [e.addresses[0]]);
            assert_eq!(records.srv_targets_alone(), expected_alone, "{endpoints:?}");
            if expected_alone {
                alone += 1
            } else {
                not_alone += 1
            }
            let order: Vec<String> = records
                .srv_order
                .iter()
                .map(|p| records.endpoints[*p as usize].srv_label().to_string())
                .collect();
            assert!(
                order.is_sorted_by(|a, b| srv_label_order(a, b).is_le()),
                "{order:?}"
            );
            assert_eq!(order.len(), kept.len());
        }
        assert!(
            alone > 50 && not_alone > 50,
            "{alone} alone, {not_alone} not"
        );
    }

    #[test]
    fn external_name_has_no_endpoints() {
        let s = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, None, None)],
        );
        let service = StoredService {
            kind: ServiceKind::ExternalName("example.com".into()),
            ..headless()
        };
        let records = ServiceRecords::build(&service, [&s], SrvTargetStyle::Hostname);
        assert!(records.endpoints.is_empty());
    }
}
