//! The resource types the test API server knows: one table row per kind, giving its API
//! group/version, plural, list kind and scope.
//!
//! Invariants: a kind is identified by (apiVersion, kind) when written and by (group path, plural)
//! when requested over HTTP; both lookups go through [`Resource::ALL`], so adding a kind is adding
//! one variant and one row.

/// A resource type served by the test API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Services,
    EndpointSlices,
    Namespaces,
    Pods,
}

impl Resource {
    /// Every served resource type.
    pub const ALL: [Resource; 4] = [
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Namespaces,
        Resource::Pods,
    ];

    /// The object's `apiVersion`, e.g. `discovery.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            Resource::EndpointSlices => "discovery.k8s.io/v1",
            Resource::Services | Resource::Namespaces | Resource::Pods => "v1",
        }
    }

    /// The URL prefix of the group/version, e.g. `/api/v1`.
    pub fn group_path(self) -> &'static str {
        match self {
            Resource::EndpointSlices => "/apis/discovery.k8s.io/v1",
            Resource::Services | Resource::Namespaces | Resource::Pods => "/api/v1",
        }
    }

    /// The object's `kind`, e.g. `Service`.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Services => "Service",
            Resource::EndpointSlices => "EndpointSlice",
            Resource::Namespaces => "Namespace",
            Resource::Pods => "Pod",
        }
    }

    /// The URL plural, e.g. `services`.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
            Resource::Namespaces => "namespaces",
            Resource::Pods => "pods",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Namespaces)
    }

    /// The `kind` of a list response, e.g. `ServiceList`.
    pub fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }

    /// The resource for a written object's `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Resource> {
        Self::ALL
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind() == kind)
    }

    /// The resource served under `group_path` as `plural`.
    pub fn from_path(group_path: &str, plural: &str) -> Option<Resource> {
        Self::ALL
            .into_iter()
            .find(|r| r.group_path() == group_path && r.plural() == plural)
    }

    /// The resources of one group/version, for discovery.
    pub fn in_group(group_path: &str) -> impl Iterator<Item = Resource> + '_ {
        Self::ALL
            .into_iter()
            .filter(move |r| r.group_path() == group_path)
    }
}
