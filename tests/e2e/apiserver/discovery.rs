//! Legacy (non-aggregated) discovery documents: `/version`, `/api`, `/apis` and one
//! `APIResourceList` per group/version, built from the resource table.
//!
//! Invariant: every resource in [`Resource::ALL`] is listed under its group/version with the
//! verbs this server actually serves (`get`, `list`, `watch`). kube-rs's `Discovery` only uses
//! these legacy documents; a typed `Api<K>` watcher needs none of them.

use serde_json::{Value, json};

use super::resource::Resource;

/// The group/versions served, as (group path, groupVersion).
const GROUPS: [(&str, &str); 2] = [
    ("/api/v1", "v1"),
    ("/apis/discovery.k8s.io/v1", "discovery.k8s.io/v1"),
];

/// The discovery document at `path`, if `path` is a discovery endpoint.
pub fn document(path: &str) -> Option<Value> {
    match path {
        "/version" => Some(version()),
        "/api" => Some(core_versions()),
        "/apis" => Some(group_list()),
        _ => GROUPS
            .iter()
            .find(|(group_path, _)| *group_path == path)
            .map(|(group_path, group_version)| resource_list(group_path, group_version)),
    }
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-peerdns-test",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "", "compiler": "rustc", "platform": "linux/amd64",
    })
}

fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_list() -> Value {
    let version = json!({"groupVersion": "discovery.k8s.io/v1", "version": "v1"});
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{
            "name": "discovery.k8s.io",
            "versions": [version.clone()],
            "preferredVersion": version,
        }],
    })
}

fn resource_list(group_path: &str, group_version: &str) -> Value {
    let resources: Vec<Value> = Resource::in_group(group_path)
        .map(|r| {
            json!({
                "name": r.plural(),
                "singularName": r.kind().to_lowercase(),
                "namespaced": r.namespaced(),
                "kind": r.kind(),
                "verbs": ["get", "list", "watch"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}
