//! The package's own promises: the `rust-version` in Cargo.toml is at least what every locked
//! dependency declares (a toolchain that old builds the whole tree), the license is stated in
//! Cargo.toml and in the README alike, and no file in the repository points at a document
//! outside it (the rules the code cites live in `src/rules.rs`).

use std::path::{Path, PathBuf};

use crate::support::root;

/// A `key = "value"` line's value in a TOML text (top-level keys of one section are enough
/// here).
fn value<'t>(toml: &'t str, key: &str) -> Option<&'t str> {
    toml.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"'))
    })
}

/// A version's (major, minor, patch); a missing part is 0 (`1.89` is `1.89.0`).
fn version(text: &str) -> [u32; 3] {
    let mut parts = text.split('.').map(|n| n.parse().unwrap_or(0));
    [0; 3].map(|_| parts.next().unwrap_or(0))
}

/// Where cargo keeps the sources of downloaded crates.
fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    std::fs::read_dir(home.join("registry/src"))
        .map(|dirs| dirs.flatten().map(|d| d.path()).collect())
        .unwrap_or_default()
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let ours = version(value(&manifest, "rust-version").expect("rust-version is set"));
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let registries = registry_sources();
    let (mut checked, mut packages) = (0, 0);
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("name = ") else {
            continue;
        };
        let name = name.trim_matches('"');
        let Some(locked) = lines.next().and_then(|l| l.strip_prefix("version = ")) else {
            continue;
        };
        packages += 1;
        let folder = format!("{name}-{}", locked.trim_matches('"'));
        let Some(theirs) = registries
            .iter()
            .map(|registry| registry.join(&folder).join("Cargo.toml"))
            .find_map(|path| std::fs::read_to_string(path).ok())
        else {
            continue; // peerdns itself, or a crate not downloaded on this machine
        };
        checked += 1;
        if let Some(needed) = value(&theirs, "rust-version") {
            assert!(
                version(needed) <= ours,
                "{folder} needs Rust {needed}; Cargo.toml says rust-version {ours:?}"
            );
        }
    }
    assert!(
        checked * 2 > packages,
        "only {checked} of {packages} locked packages found in {registries:?}: nothing to check"
    );
}

#[test]
fn the_license_is_stated_in_the_manifest_and_the_readme() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let license = value(&manifest, "license").expect("license is set");
    assert_eq!(license, "MIT OR Apache-2.0");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("## License") && readme.contains(license),
        "the README states the license ({license})"
    );
}

/// Text files of the repository (what git would track: build output and dot folders skipped).
fn repository_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            repository_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[test]
fn no_file_points_at_a_document_outside_the_repository() {
    let mut files = Vec::new();
    for top in [
        "src",
        "tests",
        "config",
        "deploy",
        "README.md",
        "Cargo.toml",
    ] {
        let path = root().join(top);
        if path.is_dir() {
            repository_files(&path, &mut files);
        } else {
            files.push(path);
        }
    }
    // Spelt in parts, so that this file does not hold the words it looks for.
    let pointers = [
        ["DES", "IGN"].concat(),
        ["design", " notes"].concat(),
        ["..", "/", "shared"].concat(),
    ];
    let mut offenders = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue; // not text
        };
        for (number, line) in text.lines().enumerate() {
            if pointers
                .iter()
                .any(|pointer| line.contains(pointer.as_str()))
            {
                offenders.push(format!("{}:{}: {line}", file.display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outside references:\n{}",
        offenders.join("\n")
    );
}
