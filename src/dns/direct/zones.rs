//! The zones' names in wire form, built once per answerer, and where a question's name falls
//! among them: the direct path's counterpart of `name::parse`'s zone choice, done on the
//! lowercased wire bytes without building a name.
//!
//! Invariant: [`ZoneNames::locate`] picks the zone `name::parse` picks (the longest forward
//! zone, a reverse zone only when strictly longer), so the direct path never answers a name
//! the general path would place elsewhere.

use hickory_proto::rr::Name;

use crate::dns::answer::{Authority, HOSTMASTER_LABEL, NAMESERVER_LABELS};

/// Names the answers need, in wire form (labels with their length bytes, no root), built once.
#[derive(Debug)]
pub(super) struct ZoneNames {
    /// Each forward zone.
    pub(super) zones: Vec<Vec<u8>>,
    /// Each forward zone's label count.
    zone_labels: Vec<usize>,
    /// Each reverse zone, and its label count.
    reverse: Vec<(Vec<u8>, usize)>,
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
            zone_labels: authority.zones.iter().map(|z| z.iter().len()).collect(),
            reverse: authority
                .reverse_zones
                .iter()
                .map(|z| (zone_wire(z), z.iter().len()))
                .collect(),
            zones,
            svc_zones,
            soa_names,
        }
    }

    /// The forward zone `name` (lowercase wire form, root included; labels start at `starts`)
    /// falls in, and how many labels are left of it; `None` when it is in no forward zone or
    /// deeper in a reverse one. The same choice as `name::parse`: the longest zone wins, and a
    /// reverse zone only when strictly longer.
    pub(super) fn locate(&self, name: &[u8], starts: &[usize]) -> Option<(usize, usize)> {
        let relative = |wire: &[u8], labels: usize| {
            let at = starts.len().checked_sub(labels)?;
            let from = starts.get(at).copied().unwrap_or(name.len() - 1);
            (name.get(from..name.len() - 1) == Some(wire)).then_some(at)
        };
        let (zone, left) = self
            .zones
            .iter()
            .zip(&self.zone_labels)
            .enumerate()
            .filter_map(|(zone, (wire, &labels))| Some((zone, relative(wire, labels)?)))
            .min_by_key(|&(_, left)| left)?;
        let deeper_reverse = self
            .reverse
            .iter()
            .filter_map(|(wire, labels)| relative(wire, *labels))
            .any(|reverse_left| reverse_left < left);
        (!deeper_reverse).then_some((zone, left))
    }
}

/// Splits a lowercased, uncompressed wire name (checked by `plain`) into `labels` and their
/// offsets `starts`; returns how many, or `None` when there are too many to be ours.
pub(super) fn split_labels<'a>(
    name: &'a [u8],
    labels: &mut [&'a [u8]],
    starts: &mut [usize],
) -> Option<usize> {
    let mut at = 0;
    let mut count = 0;
    loop {
        let length = usize::from(*name.get(at)?);
        if length == 0 {
            return Some(count);
        }
        *labels.get_mut(count)? = name.get(at + 1..at + 1 + length)?;
        *starts.get_mut(count)? = at;
        count += 1;
        at += 1 + length;
    }
}
