//! # The rules peerdns implements
//!
//! This page is the reference the code cites: a comment that says "R3" or "S2" or "P4" means
//! the rule of that number here. It holds no code; `cargo doc --open` renders it. The rules
//! follow the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0) and what the
//! CoreDNS `kubernetes` plugin answers, which every cluster runs; where both are silent the
//! rule says "ours" and picks what a clustered app needs at bootstrap.
//!
//! ## Records (R1-R15)
//!
//! `Z` is a served zone (`dns.zones`, default `cluster.local`). Names match whatever their
//! case, and the question is echoed exactly as it was sent. An endpoint is *ready* when its
//! EndpointSlice condition `ready` is true or missing (that already reflects
//! `publishNotReadyAddresses`); `serving` and `terminating` never decide membership. A
//! Service's endpoints are merged over all its slices and deduplicated.
//!
//! - **R1** `<svc>.<ns>.svc.Z` A/AAAA of a headless Service: each ready endpoint address of
//!   that family. No ready endpoint at all: NXDOMAIN. None of this family while the other
//!   family has some: NODATA.
//! - **R2** `<label>.<svc>.<ns>.svc.Z` A/AAAA: the endpoints known by that label. An endpoint
//!   is known by its `hostname` (a StatefulSet pod's name when its `subdomain` is the Service),
//!   by its pod name (`targetRef.name`) and by its dashed address (`10-244-1-5`; IPv6 with `:`
//!   as `-`, and a `0` appended when it would end in `-`). Several endpoints sharing a label all
//!   answer. ClusterIP Services have these names too.
//! - **R3** `_<port>._<proto>.<svc>.<ns>.svc.Z` SRV for each named port. Headless: one record
//!   per ready endpoint and port, target `<label>.<svc>.<ns>.svc.Z.` (label: the hostname, else
//!   the dashed address, or the pod name when `dns.srv_target` asks), port from the slice.
//!   ClusterIP: one record, target `<svc>.<ns>.svc.Z.`, the Service's port. Priority 0, weight
//!   `max(1, 100 / N)`; the targets' A/AAAA go in the additional section. Unnamed ports have no
//!   such name; an unknown port or protocol is NXDOMAIN.
//! - **R4** `<svc>.<ns>.svc.Z` SRV (CoreDNS answers it; peer finders use it): every port, named
//!   or not, as in R3. Ours: a headless Service without ports still lists each peer, port 0.
//! - **R5** `<svc>.<ns>.svc.Z` A/AAAA of a ClusterIP Service: its cluster IPs of that family,
//!   endpoints or not.
//! - **R6** An ExternalName Service answers a CNAME to its external name; a target inside our
//!   zones is followed within the answer (at most 8 links, loops stopped). Any name below an
//!   ExternalName is NXDOMAIN.
//! - **R7** PTR in the reverse zones (`dns.reverse_zones`, by default `in-addr.arpa` and
//!   `ip6.arpa`): a cluster IP points at `<svc>.<ns>.svc.Z.`; an endpoint address at exactly one
//!   name (ours; CoreDNS gives one per Service), chosen by preferring its hostname in the
//!   headless Service that governs it, then other headless Services, then the rest, ties by
//!   namespace and name. An unknown address in a reverse zone is NXDOMAIN.
//! - **R8** At the apex: SOA `ns.dns.Z. hostmaster.Z. <serial> 7200 1800 86400 <negative TTL>`,
//!   its serial moving whenever any answer changes and agreeing between replicas that serve
//!   the same state (see R14); NS `ns.dns.Z.` with `dns.nameserver_addresses` as its glue;
//!   `dns-version.Z` TXT `"1.1.0"`.
//! - **R9** Negative answers: NXDOMAIN when the name does not exist, NODATA (NOERROR, empty)
//!   when it exists without that type, both with the zone's SOA in the authority section.
//!   `svc.Z`, `<ns>.svc.Z` of a known namespace, and every name of R1-R8 exist. Ours: the
//!   negative TTL (`dns.negative_ttl`, default 1 s, also the SOA minimum) is apart from the
//!   positive TTL (default 5 s), so a peer that appears is seen within a second.
//! - **R10** Outside every served zone: REFUSED. No recursion ever (RA clear); AA set in our
//!   zones. An opcode other than QUERY: NOTIMP. Not exactly one question, or a body that does
//!   not parse: FORMERR when the header can be read, else the packet is dropped (as is any
//!   response: no reflection). An EDNS version other than 0: BADVERS.
//! - **R11** Until the source has delivered its first complete state, a negative answer turns
//!   into SERVFAIL (positive ones are served) and `/readyz` says not ready: nobody caches an
//!   NXDOMAIN that only means "not loaded yet".
//! - **R12** A UDP answer fits 512 bytes, or the client's EDNS size capped by
//!   `dns.max_udp_payload` (default 1232). To fit, additional records go first; TC is set only
//!   when answer records had to go, and then whole RRsets go. TCP answers are complete, up to
//!   65535 bytes.
//! - **R13** Another type at an existing name: NODATA. ANY: one HINFO record (RFC 8482).
//!   AXFR/IXFR: REFUSED unless transfers are configured (R14).
//! - **R14** Zone transfers (ours). With `[transfer]`: AXFR (RFC 5936) and IXFR (RFC 1995) of
//!   each served zone over TCP, to clients in `transfer.allow`, and with `tsig_key_file` only
//!   to requests signed with that key (RFC 8945). The zone holds every record some query gets
//!   a positive answer for (R1-R8 and R15, every alias), so a secondary loaded from it answers
//!   as peerdns does, negatives included. NOTIFY (RFC 1996) goes to each `transfer.notify`
//!   address when the serial moves: one round outstanding per secondary, the newest serial
//!   wins, retried until answered, signed when a key is set. IXFR comes from a bounded history
//!   (`transfer.ixfr_history`); an older serial gets the whole zone. The serial depends only on
//!   the state served (the API's resourceVersion, or the cluster file's modification time).
//! - **R15** Bootstrap names (ours), for apps that must reach their peers (or resolve
//!   themselves) before they can turn ready:
//!   - *own name before ready*: with the annotation `peerdns.io/not-ready-names: "true"` on the
//!     Service (or `dns.not_ready_names` for all), a not-ready endpoint that is not terminating
//!     answers its own `<label>.<svc>` A/AAAA; the Service-wide A and SRV stay ready-only;
//!   - *ordinal order*: SRV answers list a StatefulSet's peers by ordinal (`web-2` before
//!     `web-10`), the additional section in the same order;
//!   - *seeds*: `peerdns.io/seeds: "N"` adds `seeds.<svc>.<ns>.svc.Z` A/AAAA and SRV (as R4)
//!     for the first N ordinals that exist;
//!   - *app TXT*: `peerdns.io/txt: "<text>"` is served as TXT at `<svc>.<ns>.svc.Z`.
//!
//! ## Sources (S1-S3)
//!
//! - **S1** Kubernetes: watches of Services and EndpointSlices, cluster-wide or per namespace,
//!   optionally by label selector, with in-cluster credentials or a kubeconfig. The first
//!   complete list replaces the state in one step; events then apply one by one; a relist after
//!   a lost watch replaces the state and removes what vanished. While the API is away the last
//!   good state is served. Read-only: list and watch, nothing else.
//! - **S2** The cluster file: Kubernetes YAML or JSON (several documents, or a `List`) with
//!   Services and EndpointSlices as the API returns them, and workloads (StatefulSets and the
//!   others `src/source/file.rs` lists) expanded into pods and endpoints the way the
//!   controllers would, with addresses from `source.pod_cidrs`. Edits are picked up live; a
//!   broken edit keeps the last good state. `config/cluster.yaml` is the built-in demo.
//!   Both sources produce the same model and feed the same index, so one cluster described
//!   either way answers the same (a test proves it).
//! - **S3** Never deaf to the API: one retry policy for every watch, fast first retries capped
//!   low (`source.kubernetes.max_backoff_ms`), reset as soon as a watch delivers again; a watch
//!   that delivers nothing (not even a bookmark) for `source.kubernetes.watch_idle_timeout_ms`
//!   is dropped and resumed; errors are counted apart from events.
//!
//! ## Goals (P1-P8)
//!
//! Measured by the benchmarks under `tests/bench/`, against Knot DNS, NSD and hickory-dns in
//! the same run (these machines are shared: ratios, not absolute figures).
//!
//! - **P1** Throughput: queries answered per server CPU-second on the standard mix, nothing
//!   lost, at least 1.3 times Knot's.
//! - **P2** Latency: p99 at a fixed 5k queries per second within 0.05 ms of Knot's.
//! - **P3** Memory: 100k endpoints in 20k Services within 60 MB RSS.
//! - **P4** Freshness: a watch event for a 1000-endpoint Service served within 1 ms p99; an API
//!   write to a changed answer within 50 ms p99, also in the minute after API trouble.
//! - **P5** Cold start: 100k endpoints served within 2 s of the first list.
//! - **P6** Robustness: no input panics (fuzzed); outages, lost watches and 410 Gone lose no
//!   record; floods keep being answered.
//! - **P7** Transfers: AXFR of the 100k-endpoint zone into a Knot secondary under 2 s; a pod
//!   change on the secondary's answers under 100 ms p99, by an IXFR of a few records.
//! - **P8** Under 100 EndpointSlice changes per second, queries per CPU-second stay at least
//!   0.9 times the static figure.
