//! The names the direct path writes, in wire form, built once per answerer: each zone, its
//! `svc.<zone>`, and the SOA's names. (Which zone a question is in is `name::parse_labels`'s
//! decision, for both paths.)
//!
//! Invariant: each name here is the general path's name for the same thing, as hickory would
//! write it (labels with their length bytes, no root).

use hickory_proto::rr::Name;

use crate::dns::answer::{Authority, HOSTMASTER_LABEL, NAMESERVER_LABELS};

/// Names the answers need, in wire form (labels with their length bytes, no root), built once.
#[derive(Debug)]
pub(super) struct ZoneNames {
    /// Each forward zone.
    pub(super) zones: Vec<Vec<u8>>,
    /// `svc.<zone>` for each forward zone.
    pub(super) svc_zones: Vec<Vec<u8>>,
    /// The SOA's names, `ns.dns.<zone>` and `hostmaster.<zone>` of the first zone; `None`
    /// when they would be too long (the general path then answers negatives).
    pub(super) soa_names: Option<(Vec<u8>, Vec<u8>)>,
}

fn wire(labels: impl IntoIterator<Item = impl AsRef<[u8]>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in labels {
        let label = label.as_ref();
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label);
    }
    bytes
}

impl ZoneNames {
    pub(super) fn new(authority: &Authority) -> Self {
        let zone_wire = |zone: &Name| wire(zone.iter());
        let zones: Vec<Vec<u8>> = authority.zones.iter().map(zone_wire).collect();
        let svc_zones = zones
            .iter()
            .map(|zone| [&b"\x03svc"[..], zone].concat())
            .collect();
        let soa_names = zones.first().and_then(|primary| {
            let mname = [wire(NAMESERVER_LABELS).as_slice(), primary].concat();
            let rname = [wire([HOSTMASTER_LABEL]).as_slice(), primary].concat();
            (mname.len() < 255 && rname.len() < 255).then_some((mname, rname))
        });
        Self {
            zones,
            svc_zones,
            soa_names,
        }
    }
}
