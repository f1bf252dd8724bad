//! The binary's startup errors, run as a user would: every error other than a flag clap
//! refuses exits 1 with one line, `peerdns: <message>`, that names the file, line or field at
//! fault and says what to do; log lines carry no colour codes when stderr is not a terminal.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{first_log_line, root};

/// The binary, started in `dir`, with no Kubernetes credentials from the environment.
fn peerdns_in(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerdns"));
    command
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("RUST_LOG")
        .env("HOME", dir);
    command
}

/// Runs `command` to its end, expecting a failed start: one that still runs after ten
/// seconds (it started serving) is killed and fails the test.
fn run_to_failure(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("{command:?} started instead of failing: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The one line a failed start printed, checking exit status 1 and the `peerdns: ` prefix.
fn startup_error(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("peerdns: "), "{stderr:?}");
    stderr.trim_end().to_string()
}

#[test]
fn no_config_file_says_so_and_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_failure(&mut peerdns_in(dir.path()));
    let error = startup_error(&output);
    let want = format!(
        "peerdns: no config file found at config/peerdns.toml (in {}) and no cluster.yaml there to serve: pass --config PATH, --file CLUSTER.yaml or --kubernetes",
        dir.path().display()
    );
    assert_eq!(error, want);
    // A cluster.yaml in the working directory is served with the built-in defaults, as before.
    std::fs::copy(
        root().join("config/cluster.yaml"),
        dir.path().join("cluster.yaml"),
    )
    .unwrap();
    let output = peerdns_in(dir.path())
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn toml_errors_name_file_line_column_and_key_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerdns.toml");
    std::fs::write(
        &path,
        "[dns]\nzones = [\"cluster.local\"]\npositive_ttl = \"five\"\n",
    )
    .unwrap();
    let output = peerdns_in(dir.path())
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        startup_error(&output),
        format!(
            "peerdns: {}:3:16: dns.positive_ttl: invalid type: string \"five\", expected u32",
            path.display()
        )
    );
}

#[test]
fn kubeconfig_paths_are_shown_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent");
    let output = peerdns_in(dir.path())
        .args(["--kubeconfig", missing.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(
        startup_error(&output),
        format!(
            "peerdns: kubeconfig {}: cannot read the file: No such file or directory (os error 2)",
            missing.display()
        )
    );
    let output = peerdns_in(dir.path())
        .env("KUBECONFIG", &missing)
        .args(["--kubernetes", "--check-config"])
        .output()
        .unwrap();
    let error = startup_error(&output);
    assert!(
        error.starts_with("peerdns: no Kubernetes credentials: not in a cluster (")
            && error.ends_with(&format!(
                "and no kubeconfig (cannot read {}: No such file or directory (os error 2))",
                missing.display()
            ))
            && !error.contains("'\""),
        "{error}"
    );
}

/// One rule: clap's own refusals exit 2 with clap's usage; every other startup error exits 1
/// with one line.
#[test]
fn every_startup_error_but_clap_exits_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let bad_syntax = write("syntax.toml", "[dns\n");
    let bad_field = write("field.toml", "[dns]\nzones = [\"bad zone\"]\n");
    let bad_level = write("level.toml", "[log]\nlevel = \"peerdns=loud\"\n");
    let bad_cluster = write(
        "cluster.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: Web_Bad, port: 80}]\n",
    );
    let bad_kubeconfig = write("kubeconfig", "a: [\n");
    let listen = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--config", &bad_syntax], &["syntax.toml:1:5: "]),
        (vec!["--config", &bad_field], &["config field dns.zones[0]"]),
        (vec!["--config", &bad_level], &["config field log.level"]),
        (
            vec!["--config", "/nonexistent/peerdns.toml"],
            &["/nonexistent/peerdns.toml: cannot read"],
        ),
        (
            vec!["--file", &bad_cluster],
            &[
                "cluster.yaml:1",
                "field spec.ports[0].name: \"Web_Bad\" is not a port name: '_' is not allowed",
            ],
        ),
        (
            vec!["--file", "/nonexistent/cluster.yaml"],
            &["/nonexistent/cluster.yaml"],
        ),
        (
            vec!["--kubeconfig", &bad_kubeconfig, "--check-config"],
            &["kubeconfig ", "line 1 column 4"],
        ),
    ];
    for (args, wants) in cases {
        let output = run_to_failure(peerdns_in(dir.path()).args(&args).args(listen));
        let error = startup_error(&output);
        for want in wants {
            assert!(error.contains(want), "{args:?}: {error}");
        }
    }
    let output = peerdns_in(dir.path()).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage:"));
}

#[test]
fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let first = first_log_line(peerdns_in(&root()).args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]));
    assert!(first.contains("INFO"), "{first:?}");
    assert!(!first.contains('\u{1b}'), "colour codes in {first:?}");
}
