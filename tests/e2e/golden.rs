//! Golden cases: plain-text files under `tests/golden/`, each a cluster file and a list of
//! queries with the exact records expected, run over real UDP and TCP sockets.
//!
//! Format (blank lines separate cases, `#` starts a comment):
//!
//! ```text
//! cluster tests/clusters/rules.yaml
//!
//! query kubia.default.svc.cluster.local. SRV [udp|tcp] [noedns|edns=N]
//! rcode NOERROR
//! flags aa               # exactly which of aa, tc are set (default: aa)
//! answer <record as hickory prints it>
//! authority <record>     # SOA serials are written as SERIAL
//! additional <record>
//! count answer 100       # instead of listing records
//! ordered                # records compare in the order listed (else as sets)
//! ```
//!
//! A section with no lines must be empty. Records compare as sets (order is free) unless the
//! case says `ordered`.

use std::collections::BTreeMap;
use std::path::Path;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::support::{Ask, Over, query, root, serve_file};

#[derive(Debug, Default)]
struct Case {
    line: usize,
    ask: Option<Ask>,
    transports: Vec<Over>,
    rcode: Option<String>,
    flags: Option<Vec<String>>,
    sections: BTreeMap<&'static str, Vec<String>>,
    counts: BTreeMap<&'static str, usize>,
    ordered: bool,
}

const SECTIONS: [&str; 3] = ["answer", "authority", "additional"];

fn section_name(word: &str) -> Option<&'static str> {
    SECTIONS.into_iter().find(|s| *s == word)
}

fn parse_query(rest: &str, case: &mut Case, where_: &str) {
    let mut words = rest.split_whitespace();
    let name = words
        .next()
        .unwrap_or_else(|| panic!("{where_}: query needs a name"));
    let rtype: RecordType = words
        .next()
        .unwrap_or_else(|| panic!("{where_}: query needs a type"))
        .parse()
        .unwrap_or_else(|_| panic!("{where_}: unknown type"));
    let mut ask = Ask::new(name, rtype);
    for word in words {
        match word {
            "udp" => case.transports.push(Over::Udp),
            "tcp" => case.transports.push(Over::Tcp),
            "noedns" => ask.edns = None,
            other => match other.strip_prefix("edns=") {
                Some(size) => ask.edns = Some(size.parse().expect("edns size")),
                None => panic!("{where_}: unknown query option {other:?}"),
            },
        }
    }
    case.ask = Some(ask);
}

fn parse(path: &Path) -> (String, Vec<Case>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cluster = None;
    let mut cases = Vec::new();
    let mut current = Case::default();
    for (number, raw) in text.lines().enumerate() {
        let where_ = format!("{}:{}", path.display(), number + 1);
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if current.ask.is_some() {
                cases.push(std::mem::take(&mut current));
            }
            continue;
        }
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        match keyword {
            "cluster" => cluster = Some(rest.trim().to_string()),
            "query" => {
                current.line = number + 1;
                parse_query(rest, &mut current, &where_);
            }
            "rcode" => current.rcode = Some(rest.trim().to_string()),
            "ordered" => current.ordered = true,
            "flags" => current.flags = Some(rest.split_whitespace().map(str::to_string).collect()),
            "count" => {
                let (section, count) = rest.split_once(' ').expect("count SECTION N");
                let section = section_name(section).unwrap_or_else(|| panic!("{where_}: section"));
                current
                    .counts
                    .insert(section, count.trim().parse().expect("count"));
            }
            word => match section_name(word) {
                Some(section) => current
                    .sections
                    .entry(section)
                    .or_default()
                    .push(normalize_text(rest)),
                None => panic!("{where_}: unknown keyword {word:?}"),
            },
        }
    }
    if current.ask.is_some() {
        cases.push(current);
    }
    (cluster.expect("a `cluster` line"), cases)
}

fn normalize_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn render(record: &Record) -> String {
    let text = match &record.data {
        RData::SOA(soa) => {
            let serial = soa.serial.to_string();
            record
                .to_string()
                .replacen(&format!(" {serial} "), " SERIAL ", 1)
        }
        _ => record.to_string(),
    };
    normalize_text(&text)
}

fn rcode_name(message: &Message) -> String {
    let code: u16 = message.metadata.response_code.into();
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

fn check(case: &Case, reply: &Message, over: Over, file: &Path) -> Vec<String> {
    let ask = case.ask.as_ref().unwrap();
    let label = format!(
        "{}:{} {} {} over {over:?}",
        file.display(),
        case.line,
        ask.name,
        ask.rtype
    );
    let mut failures = Vec::new();
    let rcode = rcode_name(reply);
    let expected_rcode = case.rcode.clone().unwrap_or_else(|| "NOERROR".into());
    if rcode != expected_rcode {
        failures.push(format!("{label}: rcode {rcode}, expected {expected_rcode}"));
    }
    let mut flags = Vec::new();
    if reply.metadata.authoritative {
        flags.push("aa".to_string());
    }
    if reply.metadata.truncation {
        flags.push("tc".to_string());
    }
    let expected_flags = case.flags.clone().unwrap_or_else(|| vec!["aa".into()]);
    if flags != expected_flags {
        failures.push(format!(
            "{label}: flags {flags:?}, expected {expected_flags:?}"
        ));
    }
    let actual = [&reply.answers, &reply.authorities, &reply.additionals];
    for (section, records) in SECTIONS.into_iter().zip(actual) {
        let mut got: Vec<String> = records.iter().map(render).collect();
        if let Some(count) = case.counts.get(section) {
            if got.len() != *count {
                failures.push(format!(
                    "{label}: {section} has {} records, expected {count}",
                    got.len()
                ));
            }
            continue;
        }
        let mut want = case.sections.get(section).cloned().unwrap_or_default();
        if !case.ordered {
            got.sort();
            want.sort();
        }
        if got != want {
            failures.push(format!(
                "{label}: {section} differs\n  got:\n    {}\n  expected:\n    {}",
                got.join("\n    "),
                want.join("\n    ")
            ));
        }
    }
    failures
}

async fn run_golden_file(path: &Path) {
    let (cluster, cases) = parse(path);
    assert!(!cases.is_empty(), "{}: no cases", path.display());
    let server = serve_file(&root().join(cluster)).await;
    let address = server.addresses[0];
    let mut failures = Vec::new();
    for case in &cases {
        let transports = if case.transports.is_empty() {
            vec![Over::Udp, Over::Tcp]
        } else {
            case.transports.clone()
        };
        for over in transports {
            let reply = query(address, case.ask.as_ref().unwrap(), over).await;
            failures.extend(check(case, &reply, over, path));
        }
    }
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} golden failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn golden_demo_cluster() {
    run_golden_file(&root().join("tests/golden/demo.golden")).await;
}

#[tokio::test]
async fn golden_rules() {
    run_golden_file(&root().join("tests/golden/rules.golden")).await;
}

#[tokio::test]
async fn golden_bootstrap_names() {
    run_golden_file(&root().join("tests/golden/bootstrap.golden")).await;
}

#[test]
fn every_golden_file_is_run() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/golden"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["bootstrap.golden", "demo.golden", "rules.golden"],
        "add a #[tokio::test] for each golden file"
    );
}
