//! The answer rules (R1-R15): one decision (`find`) and the general path's answer built
//! from it.
//!
//! ```text
//!  name -> name::parse -> Parsed --+-- records of the Service it names (index) --+
//!                                  v                                              v
//!                                find (find.rs): Finding  <-----------------------+
//!                                  |  general path: records.rs -> Answer (this file: SOA,
//!                                  |                CNAME chase) -> message.rs encodes
//!                                  +  direct UDP path: direct/ writes the bytes itself
//! ```
//!
//! [`Authority::answer`] turns (name, type) into an [`Answer`]: an rcode and three record
//! sections. It knows nothing of the wire: EDNS, truncation and the header are
//! [`super::message`]'s business. Each rule reads one Service's published records, never a scan
//! of the index. `srv` lists a Service's SRV entries, for both paths.
//!
//! Invariants:
//! - a name outside every zone is REFUSED and not authoritative (R10);
//! - every negative answer (NXDOMAIN or NODATA) carries the zone's SOA in authority, with the
//!   negative TTL (R9), and becomes SERVFAIL while the index is not synced (R11);
//! - an ExternalName chain is followed at most [`MAX_CNAME_CHAIN`] links, loop-safe (R6).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod find;
mod records;
mod srv;
mod zone;

use super::name::{Parsed, parse};
use crate::index::Index;
pub use find::SEEDS_LABEL;
pub(crate) use find::{Finding, find, service_of};
use records::Lookup;
pub(crate) use srv::{SrvEntry, srv_entries, srv_weight};
pub use zone::{PTR_PART, ZoneId};

/// The SOA's refresh, retry and expire, in seconds (R8); the direct path writes the same.
pub(crate) const SOA_TIMERS: [i32; 3] = [7200, 1800, 86400];
/// The nameserver's labels below the primary zone: `ns.dns.<zone>`.
pub(crate) const NAMESERVER_LABELS: [&str; 2] = ["ns", "dns"];
/// The SOA mailbox's label below the primary zone: `hostmaster.<zone>`.
pub(crate) const HOSTMASTER_LABEL: &str = "hostmaster";

/// Longest ExternalName chain followed inside the answer.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The schema version served at `dns-version.<zone>` (R8).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// A computed answer, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// Whether the AA bit is set (inside our zones).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of negative answers, the NS at the apex).
    pub authority: Vec<Record>,
    /// Additional section (SRV targets' and NS glue addresses).
    pub additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            authoritative: true,
            ..Self::refused()
        }
    }
}

/// Settings the rules need, built once from the config.
#[derive(Clone, Debug)]
pub struct Authority {
    /// Forward zones, lowercase FQDNs.
    pub zones: Vec<Name>,
    /// Reverse zones, lowercase FQDNs.
    pub reverse_zones: Vec<Name>,
    /// TTL of positive records.
    pub positive_ttl: u32,
    /// TTL (and SOA minimum) of negative answers.
    pub negative_ttl: u32,
    /// Glue addresses of `ns.dns.<zone>`.
    pub nameserver_addresses: Vec<IpAddr>,
}

impl Authority {
    /// Answers one question. Records are owned by the lowercased name: the question section
    /// alone echoes the client's case, so an answer depends on the case of nothing but the
    /// question (which lets the fast path replay it exactly).
    pub fn answer(&self, index: &Index, qname: &Name, qtype: RecordType) -> Answer {
        self.answer_at_depth(index, &qname.to_lowercase(), qtype, 0)
    }

    /// Answers `qname` (lowercase), reached through `depth` CNAMEs.
    fn answer_at_depth(
        &self,
        index: &Index,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let parsed = parse(qname, &self.zones, &self.reverse_zones);
        let zone = match parsed {
            Parsed::Forward { zone, .. } => &self.zones[zone],
            Parsed::Reverse { zone, .. } => &self.reverse_zones[zone],
            Parsed::Outside => return Answer::refused(),
        };
        let records = service_of(&parsed).and_then(|(ns, svc)| index.service(ns, svc));
        let finding = find(self, index, &parsed, records.as_deref(), qtype);
        let lookup = match finding {
            Finding::Refused => return Answer::refused(),
            Finding::ServFail => return Answer::servfail(),
            finding => self.records(index, zone, qname, qtype, finding),
        };
        self.finish(index, zone, lookup, qname, qtype, depth)
    }

    /// Turns a lookup into an answer: the SOA of negative answers, CNAME chasing.
    fn finish(
        &self,
        index: &Index,
        zone: &Name,
        lookup: Lookup,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let (rcode, answers, additional) = match lookup {
            Lookup::Found {
                answers,
                additional,
            } => (ResponseCode::NoError, answers, additional),
            Lookup::NoData => (ResponseCode::NoError, Vec::new(), Vec::new()),
            Lookup::NxDomain => (ResponseCode::NXDomain, Vec::new(), Vec::new()),
        };
        let mut answer = Answer {
            rcode,
            authoritative: true,
            answers,
            authority: Vec::new(),
            additional,
        };
        if answer.answers.is_empty() {
            answer.authority.push(self.soa(index, zone));
            return answer;
        }
        self.chase_cname(index, &mut answer, qname, qtype, depth);
        answer
    }

    /// Follows an in-zone CNAME target (R6), appending its answer.
    fn chase_cname(
        &self,
        index: &Index,
        answer: &mut Answer,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) {
        let Some(RData::CNAME(CNAME(target))) = answer.answers.last().map(|r| &r.data) else {
            return;
        };
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) || depth + 1 >= MAX_CNAME_CHAIN {
            return;
        }
        let seen = answer.answers.iter().any(|r| r.name.eq_case(target))
            || qname.to_lowercase() == target.to_lowercase();
        if seen {
            return;
        }
        let target = target.to_lowercase();
        let in_forward_zone = matches!(
            parse(&target, &self.zones, &self.reverse_zones),
            Parsed::Forward { .. }
        );
        if !in_forward_zone {
            return; // outside our zones (or a reverse name): the client resolves it itself
        }
        let next = self.answer_at_depth(index, &target, qtype, depth + 1);
        if next.rcode == ResponseCode::Refused {
            return; // out of our zones: the client resolves the target itself
        }
        answer.rcode = next.rcode;
        answer.answers.extend(next.answers);
        answer.authority = next.authority;
        answer.additional.extend(next.additional);
    }
}
