//! Shapes fuzz bytes into JSON that looks like a Service or an EndpointSlice, so most inputs
//! get past deserialization and into `source::convert`: field names are fixed, values come
//! from pools of plausible and awkward strings (uppercase, dots, `None`, wrong-family IPs) or
//! are arbitrary.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value, json};

const NAMES: &[&str] = &[
    "web",
    "kubia",
    "db-0",
    "Web",
    "a.b",
    "-x",
    "x-",
    "",
    "default",
    "apps",
    "None",
    "a23456789012345678901234567890123456789012345678901234567890123",
    "a234567890123456789012345678901234567890123456789012345678901234",
    "é",
    "peers-0.peers",
];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.244.0.5",
    "fd00::1",
    "::ffff:10.0.0.1",
    "None",
    "",
    "300.1.1.1",
    "1.2.3",
    "fe80::1%eth0",
    "0.0.0.0",
    "::",
];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP", "tcp", "Udp", "HTTP", ""];
const ADDRESS_TYPES: &[&str] = &["IPv4", "IPv6", "FQDN", "ipv4", ""];
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "NodePort", "LoadBalancer", ""];
/// Values of the `peerdns.io/*` annotations (R15), good and bad.
const ANNOTATION_VALUES: &[&str] = &["true", "false", "yes", "3", "0", "1001", "a=b", "", "\n"];

/// A Service or EndpointSlice as JSON, from `u`.
pub fn object(u: &mut Unstructured<'_>) -> Result<Value> {
    if u.arbitrary()? {
        service(u)
    } else {
        endpoint_slice(u)
    }
}

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<Value> {
    Ok(if u.ratio(7, 8)? {
        Value::from(*u.choose(pool)?)
    } else {
        Value::from(u.arbitrary::<String>()?)
    })
}

/// Sets `key` in `map` to a value from `value` most of the time, leaving it out otherwise.
fn maybe(
    u: &mut Unstructured<'_>,
    map: &mut Map<String, Value>,
    key: &str,
    value: impl FnOnce(&mut Unstructured<'_>) -> Result<Value>,
) -> Result<()> {
    if u.ratio(5, 6)? {
        map.insert(key.to_owned(), value(u)?);
    }
    Ok(())
}

fn list(
    u: &mut Unstructured<'_>,
    item: fn(&mut Unstructured<'_>) -> Result<Value>,
) -> Result<Value> {
    let count = u.int_in_range(0..=4)?;
    (0..count)
        .map(|_| item(u))
        .collect::<Result<Vec<_>>>()
        .map(Value::from)
}

fn metadata(u: &mut Unstructured<'_>, service_label: bool) -> Result<Value> {
    let mut meta = Map::new();
    maybe(u, &mut meta, "name", |u| pick(u, NAMES))?;
    maybe(u, &mut meta, "namespace", |u| pick(u, NAMES))?;
    if service_label {
        maybe(u, &mut meta, "labels", |u| {
            Ok(json!({ "kubernetes.io/service-name": pick(u, NAMES)? }))
        })?;
    }
    Ok(Value::Object(meta))
}

fn port(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut port = Map::new();
    maybe(u, &mut port, "name", |u| pick(u, NAMES))?;
    maybe(u, &mut port, "protocol", |u| pick(u, PROTOCOLS))?;
    maybe(u, &mut port, "port", |u| {
        Ok(Value::from(if u.arbitrary()? {
            i64::from(*u.choose(&[53, 80, 0, -1, 65535, 65536])?)
        } else {
            i64::from(u.arbitrary::<i32>()?)
        }))
    })?;
    Ok(Value::Object(port))
}

fn service(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut svc = Map::new();
    svc.insert("apiVersion".into(), "v1".into());
    svc.insert("kind".into(), "Service".into());
    let mut meta = metadata(u, false)?;
    if u.arbitrary()? {
        let mut annotations = Map::new();
        for key in ["peerdns.io/not-ready-names", "peerdns.io/seeds", "peerdns.io/txt"] {
            maybe(u, &mut annotations, key, |u| pick(u, ANNOTATION_VALUES))?;
        }
        meta["annotations"] = Value::Object(annotations);
    }
    svc.insert("metadata".into(), meta);
    maybe(u, &mut svc, "spec", |u| {
        let mut spec = Map::new();
        maybe(u, &mut spec, "type", |u| pick(u, SERVICE_TYPES))?;
        maybe(u, &mut spec, "clusterIP", |u| pick(u, IPS))?;
        maybe(u, &mut spec, "clusterIPs", |u| list(u, |u| pick(u, IPS)))?;
        maybe(u, &mut spec, "externalName", |u| pick(u, NAMES))?;
        maybe(u, &mut spec, "ports", |u| list(u, port))?;
        Ok(Value::Object(spec))
    })?;
    Ok(Value::Object(svc))
}

fn endpoint(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut ep = Map::new();
    ep.insert("addresses".into(), list(u, |u| pick(u, IPS))?);
    maybe(u, &mut ep, "hostname", |u| pick(u, NAMES))?;
    maybe(u, &mut ep, "targetRef", |u| {
        Ok(json!({ "kind": pick(u, &["Pod", "Node", ""])?, "name": pick(u, NAMES)? }))
    })?;
    maybe(u, &mut ep, "conditions", |u| {
        Ok(json!({ "ready": u.arbitrary::<bool>()?, "terminating": u.arbitrary::<bool>()? }))
    })?;
    Ok(Value::Object(ep))
}

fn endpoint_slice(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut slice = Map::new();
    slice.insert("apiVersion".into(), "discovery.k8s.io/v1".into());
    slice.insert("kind".into(), "EndpointSlice".into());
    slice.insert("metadata".into(), metadata(u, true)?);
    slice.insert("addressType".into(), pick(u, ADDRESS_TYPES)?);
    slice.insert("endpoints".into(), list(u, endpoint)?);
    maybe(u, &mut slice, "ports", |u| list(u, port))?;
    Ok(Value::Object(slice))
}
