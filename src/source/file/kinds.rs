//! What the cluster file does not use, and why: every object whose (apiVersion, kind) the
//! loader does not read becomes an [`Ignored`], never a silent skip.
//!
//! Three reasons, decided by [`classify`] from the type fields alone:
//! - a kind peerdns reads, under an apiVersion it does not (`apps/v1beta1` StatefulSet);
//! - a Kubernetes kind DNS has no use for (ConfigMap, Namespace, Secret, …; the list is
//!   [`NOT_USED`]): "ignored (not used for DNS)";
//! - any other kind: unknown, with the kind meant when one known kind matches it ignoring
//!   case (`Statefulset`) or within two typos (`Deploymnet`).
//!
//! Invariant: classifying never fails and never depends on anything but the type fields.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// The (apiVersion, kind) pairs the loader reads.
pub const USED: [(&str, &str); 6] = [
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("v1", "Pod"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "Deployment"),
];

/// Kubernetes kinds that say nothing DNS answers from. (DaemonSet, Job and
/// ReplicationController pods could back a Service, but their pods cannot be derived from the
/// object alone: list their Pods, with `status.podIP`, instead.)
pub const NOT_USED: &[&str] = &[
    "APIService",
    "Binding",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "ConfigMap",
    "ControllerRevision",
    "CronJob",
    "CSIDriver",
    "CSINode",
    "CSIStorageCapacity",
    "CustomResourceDefinition",
    "DaemonSet",
    "Endpoints",
    "Event",
    "FlowSchema",
    "HorizontalPodAutoscaler",
    "Ingress",
    "IngressClass",
    "Job",
    "Lease",
    "LimitRange",
    "MutatingWebhookConfiguration",
    "Namespace",
    "NetworkPolicy",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "PodTemplate",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ReplicationController",
    "ResourceQuota",
    "Role",
    "RoleBinding",
    "RuntimeClass",
    "Secret",
    "ServiceAccount",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Why an object was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// A Kubernetes kind DNS does not need.
    NotUsed,
    /// A kind peerdns reads, under another apiVersion.
    ApiVersion {
        /// The apiVersion peerdns reads it under.
        expected: &'static str,
    },
    /// Not a kind peerdns knows.
    Unknown {
        /// The known kind it was probably meant to be.
        suggestion: Option<&'static str>,
    },
}

/// An object of the file that was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of its document.
    pub line: usize,
    /// Its index in the `items` of a List document.
    pub item: Option<usize>,
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`, as written.
    pub kind: String,
    /// Its namespace (`default` when it names none).
    pub namespace: String,
    /// Its name (empty when it has none).
    pub name: String,
    /// Why it was not used.
    pub reason: IgnoreReason,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        if let Some(item) = self.item {
            write!(f, "items[{item}]: ")?;
        }
        write!(f, "{} {}/{} ", self.kind, self.namespace, self.name)?;
        match &self.reason {
            IgnoreReason::NotUsed => write!(f, "ignored (not used for DNS)"),
            IgnoreReason::ApiVersion { expected } => write!(
                f,
                "ignored: apiVersion {:?} is not read (peerdns reads {} as {expected})",
                self.api_version, self.kind
            ),
            IgnoreReason::Unknown { suggestion: None } => {
                write!(f, "ignored: unknown kind {:?}", self.kind)
            }
            IgnoreReason::Unknown {
                suggestion: Some(kind),
            } => write!(
                f,
                "ignored: unknown kind {:?} (did you mean {kind}?)",
                self.kind
            ),
        }
    }
}

/// Why an object of this kind is not used, given that the loader does not read its
/// (apiVersion, kind) pair (it reads the pairs in [`USED`]).
pub fn classify(kind: &str) -> IgnoreReason {
    if let Some((expected, _)) = USED.iter().find(|(_, k)| *k == kind) {
        return IgnoreReason::ApiVersion { expected };
    }
    if NOT_USED.contains(&kind) {
        return IgnoreReason::NotUsed;
    }
    let known = || USED.iter().map(|(_, k)| *k).chain(NOT_USED.iter().copied());
    let suggestion = known().find(|k| k.eq_ignore_ascii_case(kind)).or_else(|| {
        let lower = kind.to_ascii_lowercase();
        known()
            .filter(|k| k.len() >= 6)
            .map(|k| (distance(&k.to_ascii_lowercase(), &lower), k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| k)
    });
    IgnoreReason::Unknown { suggestion }
}

/// Levenshtein distance (bytes), for suggestions between short kind names.
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// An object's name and namespace, read leniently: any shape of `metadata` is accepted (an
/// ignored object must not fail the file).
#[derive(Debug, Default, Deserialize)]
pub struct Names {
    #[serde(default)]
    name: Lenient,
    #[serde(default)]
    namespace: Lenient,
}

/// A string field, or anything else (kept as nothing).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Lenient {
    Text(String),
    #[default]
    #[serde(skip)]
    Missing,
    Other(serde::de::IgnoredAny),
}

impl Lenient {
    fn text(&self) -> Option<&str> {
        match self {
            Lenient::Text(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

impl Names {
    /// The name, or empty.
    pub fn name(&self) -> String {
        self.name.text().unwrap_or_default().to_owned()
    }

    /// The namespace, or `default`.
    pub fn namespace(&self) -> String {
        self.namespace
            .text()
            .unwrap_or(super::convert::DEFAULT_NAMESPACE)
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let unknown = |s| IgnoreReason::Unknown { suggestion: s };
        let cases = [
            ("v1", "ConfigMap", IgnoreReason::NotUsed),
            ("networking.k8s.io/v1", "Ingress", IgnoreReason::NotUsed),
            ("apps/v1", "Statefulset", unknown(Some("StatefulSet"))),
            ("apps/v1", "deployment", unknown(Some("Deployment"))),
            ("apps/v1", "Deploymnet", unknown(Some("Deployment"))),
            ("v1", "Servce", unknown(Some("Service"))),
            ("v1", "configmap", unknown(Some("ConfigMap"))),
            ("cert-manager.io/v1", "Certificate", unknown(None)),
            ("v1", "Pd", unknown(None)),
            (
                "apps/v1beta1",
                "StatefulSet",
                IgnoreReason::ApiVersion {
                    expected: "apps/v1",
                },
            ),
            (
                "extensions/v1beta1",
                "Deployment",
                IgnoreReason::ApiVersion {
                    expected: "apps/v1",
                },
            ),
        ];
        for (api_version, kind, want) in cases {
            assert_eq!(classify(kind), want, "{api_version} {kind}");
        }
    }

    #[test]
    fn names_are_read_from_any_metadata() {
        let read = |yaml: &str| -> Names { serde_yaml::from_str(yaml).expect(yaml) };
        let n = read("{name: cm, namespace: shop, labels: {a: b}}");
        assert_eq!((n.name(), n.namespace()), ("cm".into(), "shop".into()));
        let n = read("{name: 12, namespace: [x]}");
        assert_eq!((n.name(), n.namespace()), (String::new(), "default".into()));
        let n = read("{}");
        assert_eq!((n.name(), n.namespace()), (String::new(), "default".into()));
    }
}
