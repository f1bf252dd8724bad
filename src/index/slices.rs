//! The slices the writer stores for one Service, sorted by name.
//!
//! A Service nearly always has one slice (two when dual-stack), so they live in a vector sorted
//! by name and are found by binary search: one small allocation, where a tree node would reserve
//! room for eleven.
//!
//! Invariant: the slices are sorted by name and no two share a name, so iteration order (the
//! order [`super::ServiceRecords::build`] relies on for determinism) is by name.

use crate::model::EndpointSlice;

/// One Service's slices, sorted by name, each name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slices(Vec<EndpointSlice>);

impl Slices {
    /// Adds `slice`, replacing and returning the one of the same name.
    pub fn insert(&mut self, slice: EndpointSlice) -> Option<EndpointSlice> {
        match self.position(&slice.name) {
            Ok(position) => Some(std::mem::replace(&mut self.0[position], slice)),
            Err(position) => {
                // Grow by one: a Service has few slices, and a vector's first growth would
                // otherwise reserve room for four.
                self.0.reserve_exact(1);
                self.0.insert(position, slice);
                None
            }
        }
    }

    /// Removes and returns the slice named `name`.
    pub fn remove(&mut self, name: &str) -> Option<EndpointSlice> {
        let position = self.position(name).ok()?;
        Some(self.0.remove(position))
    }

    /// The slices, by name.
    pub fn iter(&self) -> std::slice::Iter<'_, EndpointSlice> {
        self.0.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every slice and frees the storage.
    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|slice| slice.name.as_str().cmp(name))
    }
}

impl<'a> IntoIterator for &'a Slices {
    type Item = &'a EndpointSlice;
    type IntoIter = std::slice::Iter<'a, EndpointSlice>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddressFamily, ServiceKey};

    fn slice(name: &str, ports: u16) -> EndpointSlice {
        EndpointSlice {
            name: name.into(),
            service: ServiceKey::new("default", "db"),
            family: AddressFamily::Ipv4,
            ports: vec![crate::model::Port {
                name: None,
                protocol: crate::model::Protocol::Tcp,
                port: ports,
            }],
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn sorted_by_name_and_replaced_by_name() {
        let mut slices = Slices::default();
        assert!(slices.insert(slice("b", 1)).is_none());
        assert!(slices.insert(slice("a", 1)).is_none());
        assert!(slices.insert(slice("c", 1)).is_none());
        assert_eq!(slices.insert(slice("b", 2)), Some(slice("b", 1)));
        let names: Vec<&str> = slices.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(slices.remove("a"), Some(slice("a", 1)));
        assert_eq!(slices.remove("a"), None);
        assert_eq!(slices.iter().next(), Some(&slice("b", 2)));
        slices.clear();
        assert!(slices.is_empty());
    }
}
