//! The module graph has no cycles: between the crate's top-level modules, and between the
//! modules of `dns` (the query side, where cycles crept in before). Read from the sources:
//! every `crate::<module>` (and, inside `dns`, `super::<module>` and `crate::dns::<module>`)
//! outside comments and test code is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The lines of a source file that are code outside its tests (a file's tests come last, or
/// in a file of their own).
fn code_lines(path: &Path) -> Vec<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).expect("readable source");
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .map(|line| line.split("//").next().unwrap_or_default().to_string())
        .collect()
}

/// The identifiers that follow `prefix` in `line`.
fn after<'l>(line: &'l str, prefix: &str) -> Vec<&'l str> {
    line.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &line[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The module a file belongs to, one level below `root` (`root/x.rs` and `root/x/...` are x).
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(root).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.trim_end_matches(".rs").to_string())
}

/// The edges between the modules directly below `root`, found by `prefixes`.
fn graph(root: &Path, prefixes: &[&str], skip: &[&str]) -> Graph {
    let mut graph = Graph::new();
    for file in sources(root) {
        let Some(module) = module_of(root, &file) else {
            continue;
        };
        if skip.contains(&module.as_str()) {
            continue;
        }
        let siblings = graph.entry(module.clone()).or_default();
        for line in code_lines(&file) {
            for prefix in prefixes {
                for target in after(&line, prefix) {
                    let known =
                        root.join(format!("{target}.rs")).exists() || root.join(target).is_dir();
                    if known && target != module && !skip.contains(&target) {
                        siblings.insert(target.to_string());
                    }
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search).
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_top_level_modules_form_no_cycle_and_metrics_is_at_the_bottom() {
    let graph = graph(&src(), &["crate::"], &["main", "lib", "layout_tests"]);
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    assert_eq!(graph.get("metrics"), Some(&BTreeSet::new()), "{graph:#?}");
    assert!(
        graph["dns"].contains("index"),
        "the graph is read: {graph:#?}"
    );
}

#[test]
fn the_dns_modules_form_no_cycle() {
    let dns = src().join("dns");
    let graph = graph(&dns, &["super::", "crate::dns::"], &["mod", "rules_tests"]);
    assert_eq!(cycle(&graph), None, "{graph:#?}");
    assert!(
        graph["udp"].contains("cache"),
        "the graph is read: {graph:#?}"
    );
}

#[test]
fn a_cycle_is_found() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(
        cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
