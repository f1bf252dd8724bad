//! The Grafana dashboard (`deploy/monitoring/grafana-dashboard.json`) against a live
//! `/metrics`: every metric a panel or a template variable queries is one peerdns exports, and
//! is used as its type allows (a counter or a histogram's series only through `rate`-like
//! functions, a gauge never through them).
//!
//! Two servers are scraped: one on a cluster file and one watching the test API server (the
//! watch metrics exist only there), both with zone transfers on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use peerdns::config::TransferConfig;
use serde_json::Value;

use crate::admin::{get, metric};
use crate::apiserver::TestApiServer;
use crate::controllers::StatefulSetDriver;
use crate::support::{Ask, Over, config_for, query, root, tcp_raw};
use crate::watch::{wait_for, watch_with};

const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";

/// PromQL functions and aggregations, and the few Grafana adds for template variables.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "end",
    "exp",
    "floor",
    "group",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_names",
    "label_replace",
    "label_values",
    "last_over_time",
    "limit_ratio",
    "limitk",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max",
    "max_over_time",
    "metrics",
    "min",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile",
    "quantile_over_time",
    "query_result",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "start",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "topk",
    "vector",
    "year",
];

/// Aggregations, which may take `by (..)` or `without (..)` before their arguments.
const AGGREGATIONS: &[&str] = &[
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "limit_ratio",
    "limitk",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other keywords: binary operators, modifiers, literals.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "group_left",
    "group_right",
];

/// Functions whose argument must be a counter (or a histogram's `_bucket`/`_sum`/`_count`).
const COUNTER_FUNCTIONS: &[&str] = &["rate", "irate", "increase", "resets"];

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Open,
    Close,
    Comma,
    Other,
}

/// Index just past the `close` matching the `open` at `start` (quotes inside are skipped).
fn skip_balanced(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced {open}{close} in {}",
        chars.iter().collect::<String>()
    );
}

/// Index just past the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!(
        "unterminated string in {}",
        chars.iter().collect::<String>()
    );
}

/// The tokens of a PromQL expression that can name a metric: identifiers and the structure
/// around them. Strings, label matchers (`{..}`), ranges (`[..]`), numbers, durations and
/// Grafana variables (`$x`, `${x}`) are dropped.
fn lex(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_balanced(&chars, i, '{', '}'),
            '[' => i = skip_balanced(&chars, i, '[', ']'),
            '#' => break, // a comment runs to the end (expressions here are one line)
            '$' if chars.get(i + 1) == Some(&'{') => i = skip_balanced(&chars, i + 1, '{', '}'),
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    tokens
}

/// What a parenthesis opened.
enum Paren {
    /// A call of this function; the argument index so far.
    Call(String, usize),
    /// A list of label names (`by (..)`, `on (..)`).
    Labels,
    /// Grouping.
    Group,
}

/// A metric named in an expression, and the innermost function it is an argument of.
#[derive(Debug, PartialEq)]
struct Use {
    metric: String,
    function: Option<String>,
}

/// Every metric an expression names; an error for an unknown function or an identifier that
/// is not a peerdns metric.
fn metrics_in(expr: &str) -> Result<Vec<Use>, String> {
    let tokens = lex(expr);
    let mut stack: Vec<Paren> = Vec::new();
    let mut uses = Vec::new();
    // An aggregation whose `by (..)` or `without (..)` comes before its arguments.
    let mut aggregation: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let followed_by_open = tokens.get(i + 1) == Some(&Token::Open);
        let followed_by_grouping = matches!(
            tokens.get(i + 1),
            Some(Token::Ident(next)) if next == "by" || next == "without"
        );
        match &tokens[i] {
            Token::Ident(name) if followed_by_grouping && AGGREGATIONS.contains(&name.as_str()) => {
                aggregation = Some(name.clone());
            }
            Token::Ident(name) if followed_by_open => {
                let paren = if LABEL_LISTS.contains(&name.as_str()) {
                    Paren::Labels
                } else if FUNCTIONS.contains(&name.as_str()) {
                    Paren::Call(name.clone(), 0)
                } else {
                    return Err(format!("`{name}(` is no PromQL function, in {expr}"));
                };
                stack.push(paren);
                i += 2;
                continue;
            }
            Token::Ident(name) => {
                let label = match stack.last() {
                    Some(Paren::Labels) => true,
                    // label_values(metric, label): the second argument is a label name.
                    Some(Paren::Call(function, argument)) => {
                        function == "label_values" && *argument > 0
                    }
                    _ => false,
                };
                let keyword =
                    KEYWORDS.contains(&name.as_str()) || LABEL_LISTS.contains(&name.as_str());
                if !label && !keyword {
                    if !is_peerdns_metric(name) {
                        return Err(format!(
                            "`{name}` is neither a PromQL keyword nor a peerdns metric, in {expr}"
                        ));
                    }
                    let function = stack.iter().rev().find_map(|paren| match paren {
                        Paren::Call(function, _) => Some(function.clone()),
                        _ => None,
                    });
                    uses.push(Use {
                        metric: name.clone(),
                        function,
                    });
                }
            }
            Token::Open => stack.push(match aggregation.take() {
                Some(name) => Paren::Call(name, 0),
                None => Paren::Group,
            }),
            Token::Close => {
                stack
                    .pop()
                    .ok_or_else(|| format!("unbalanced ) in {expr}"))?;
            }
            Token::Comma => {
                if let Some(Paren::Call(_, argument)) = stack.last_mut() {
                    *argument += 1;
                }
            }
            Token::Other => {}
        }
        i += 1;
    }
    if !stack.is_empty() {
        return Err(format!("unbalanced ( in {expr}"));
    }
    Ok(uses)
}

fn is_peerdns_metric(name: &str) -> bool {
    name.strip_prefix("peerdns_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Every PromQL expression in the dashboard: panel targets (rows' nested panels included) and
/// query variables, with where each is.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
                out.push((format!("panel {title:?}"), expr.to_string()));
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), &mut out);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap();
        let query = match &variable["query"] {
            Value::String(query) => query.clone(),
            Value::Object(object) => object["query"].as_str().unwrap().to_string(),
            other => panic!("variable {name}: query {other}"),
        };
        out.push((format!("variable ${name}"), query));
    }
    out
}

/// The panels that show data (not rows), nested ones included.
fn data_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for panel in std::iter::once(panel).chain(panel["panels"].as_array().into_iter().flatten())
        {
            if panel["type"] != "row" {
                out.push(panel);
            }
        }
    }
    out
}

/// A scrape's series names (`peerdns_x_bucket` included) and each family's `# TYPE`.
struct Scrape {
    series: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(bodies: &[&str]) -> Self {
        let (mut series, mut types) = (BTreeSet::new(), BTreeMap::new());
        for line in bodies.iter().flat_map(|body| body.lines()) {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').unwrap();
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                series.insert(line[..end].to_string());
            }
        }
        Self { series, types }
    }

    /// `counter` for counters and a histogram's `_bucket`/`_sum`/`_count`, else the type.
    fn kind(&self, name: &str) -> &str {
        if let Some(kind) = self.types.get(name) {
            return kind;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix)
                && self.types.get(family).map(String::as_str) == Some("histogram")
            {
                return "counter";
            }
        }
        "untyped"
    }
}

/// `/metrics` once `done` holds for it (for at most five seconds).
async fn scrape_until(admin: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let mut body = String::new();
    for _ in 0..500 {
        let (status, text) = get(admin, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        body = text;
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/metrics never got there:\n{body}");
}

/// A few queries over both transports, and one AXFR refused (transfers are allowed only to
/// a network the test is not in).
async fn exercise(dns: SocketAddr, names: &[&str]) {
    for name in names {
        query(dns, &Ask::new(name, RecordType::A), Over::Udp).await;
        query(dns, &Ask::new(name, RecordType::SRV), Over::Tcp).await;
    }
    let axfr = Ask::new("cluster.local.", RecordType::AXFR).message(0x4a58);
    let reply = tcp_raw(dns, &axfr.to_vec().unwrap())
        .await
        .expect("an answer to the AXFR");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "AXFR from outside transfer.allow"
    );
}

fn transfers_elsewhere() -> Option<TransferConfig> {
    Some(TransferConfig {
        allow: vec!["192.0.2.0/24".parse().unwrap()],
        ixfr_history: 16,
        ..TransferConfig::default()
    })
}

/// Whether the scrape counted `queries` queries and the refused AXFR.
fn counted(body: &str, queries: f64) -> bool {
    metric(body, "peerdns_request_duration_seconds_count") >= queries
        && metric(
            body,
            "peerdns_transfers_total{kind=\"axfr\",outcome=\"refused\"}",
        ) >= 1.0
}

#[tokio::test]
async fn every_dashboard_query_names_an_exported_metric() {
    let text = std::fs::read_to_string(root().join(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        !dashboard["title"].as_str().unwrap_or("").is_empty(),
        "a title"
    );
    assert!(!dashboard["uid"].as_str().unwrap_or("").is_empty(), "a uid");
    let panels = data_panels(&dashboard);
    assert!(panels.len() >= 8, "{} panels", panels.len());

    // Importable as is: every panel and query variable reads the ${datasource} variable, a
    // Prometheus data source picked at import.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a ${{datasource}} variable of type prometheus"
    );
    let mut ids = BTreeSet::new();
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
            "{title}: {grid}"
        );
    }

    let mut named: BTreeMap<String, BTreeSet<(String, Option<String>)>> = BTreeMap::new();
    for (place, expr) in expressions(&dashboard) {
        let uses = metrics_in(&expr).unwrap_or_else(|error| panic!("{place}: {error}"));
        assert!(!uses.is_empty(), "{place}: names no metric: {expr}");
        for Use { metric, function } in uses {
            named
                .entry(metric)
                .or_default()
                .insert((place.clone(), function));
        }
    }

    // The file source, with transfers on.
    let mut config = config_for(&root().join("tests/clusters/rules.yaml"));
    config.transfer = transfers_elsewhere();
    let file = peerdns::app::start(&config).await.unwrap();
    exercise(
        file.addresses[0],
        &[
            "peers.apps.svc.cluster.local.",
            "nosuch.apps.svc.cluster.local.",
        ],
    )
    .await;
    let file_metrics = scrape_until(file.admin_address, |body| counted(body, 4.0)).await;
    file.stop().await;

    // The Kubernetes source, watching the test API server, with transfers on.
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "team-a", "pg", "pg");
    sts.create(2);
    let watching = watch_with(&api, dir.path(), |config| {
        config.transfer = transfers_elsewhere();
    })
    .await;
    let dns = watching.addresses[0];
    wait_for(dns, "pg.team-a.svc.cluster.local.", &sts.ready_ips(), false).await;
    exercise(dns, &["pg.team-a.svc.cluster.local."]).await;
    let watch_metrics = scrape_until(watching.admin_address, |body| {
        counted(body, 2.0) && metric(body, "peerdns_source_synced{source=\"kubernetes\"}") == 1.0
    })
    .await;
    watching.stop().await;

    let scrape = Scrape::parse(&[&file_metrics, &watch_metrics]);
    let mut problems = Vec::new();
    for (metric, places) in &named {
        if !scrape.series.contains(metric) {
            let places: Vec<&str> = places.iter().map(|(p, _)| p.as_str()).collect();
            problems.push(format!("{metric} is not exported (used by {places:?})"));
            continue;
        }
        let counter = scrape.kind(metric) == "counter";
        for (place, function) in places {
            let through_rate = function
                .as_deref()
                .is_some_and(|f| COUNTER_FUNCTIONS.contains(&f));
            if counter && !through_rate {
                problems.push(format!(
                    "{place}: counter {metric} is not read through rate, irate, increase or resets"
                ));
            }
            if !counter && through_rate {
                problems.push(format!(
                    "{place}: {metric} is a {} and read through {}",
                    scrape.kind(metric),
                    function.as_deref().unwrap_or("")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
}

#[test]
fn the_expression_reader_finds_metrics_and_rejects_strangers() {
    let uses = metrics_in(
        r#"histogram_quantile(0.99, sum by (pod, le) (rate(peerdns_request_duration_seconds_bucket{job=~"$job", le!="+Inf"}[$__rate_interval]))) > bool 0.5"#,
    )
    .unwrap();
    assert_eq!(
        uses,
        [Use {
            metric: "peerdns_request_duration_seconds_bucket".into(),
            function: Some("rate".into()),
        }]
    );
    let uses = metrics_in(
        r#"sum(peerdns_source_synced) / on (pod) group_left (version) peerdns_build_info offset 5m"#,
    )
    .unwrap();
    let names: Vec<&str> = uses.iter().map(|u| u.metric.as_str()).collect();
    assert_eq!(names, ["peerdns_source_synced", "peerdns_build_info"]);
    assert_eq!(uses[0].function.as_deref(), Some("sum"));
    assert_eq!(uses[1].function, None);
    let uses = metrics_in(r#"label_values(peerdns_build_info{job=~"$job"}, pod)"#).unwrap();
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert!(metrics_in("rate(up[5m])").is_err(), "not a peerdns metric");
    assert!(metrics_in("process_resident_memory_bytes").is_err());
    assert!(metrics_in("ratee(peerdns_queries_total[5m])").is_err());
    assert!(metrics_in("sum(peerdns_queries_total").is_err());
}
