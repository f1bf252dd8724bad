//! Config parsing and validation: defaults, unknown keys, each field's checks.

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let config = Config::parse("").unwrap();
    assert_eq!(config, Config::default());
    config.validate().unwrap();
}

#[test]
fn receive_coalescing_defaults_on_and_can_be_turned_off() {
    assert_eq!(Config::default().dns.udp_coalesce_us, 150);
    for text in [
        "[dns]\nudp_coalesce_us = 0\n",
        "[dns]\nudp_coalesce_us = 1000\n",
    ] {
        Config::parse(text).unwrap().validate().unwrap();
    }
}

#[test]
fn watch_retries_and_idle_timeout_default_low_and_accept_their_range() {
    let kubernetes = Config::default().source.kubernetes;
    assert_eq!(kubernetes.max_backoff_ms, 3_000);
    assert_eq!(kubernetes.watch_idle_timeout_ms, 90_000);
    for text in [
        "[source.kubernetes]\nmax_backoff_ms = 100\nwatch_idle_timeout_ms = 1000\n",
        "[source.kubernetes]\nmax_backoff_ms = 300000\nwatch_idle_timeout_ms = 290000\n",
    ] {
        Config::parse(text).unwrap().validate().unwrap();
    }
}

#[test]
fn the_idle_timeout_limit_is_the_watch_timeout() {
    let watch_timeout = crate::source::kubernetes::MAX_IDLE_TIMEOUT;
    assert_eq!(u128::from(MAX_IDLE_TIMEOUT_MS), watch_timeout.as_millis());
}

#[test]
fn unknown_key_is_named() {
    let error = Config::parse("[dns]\nzonez = [\"a\"]\n").unwrap_err();
    assert!(error.to_string().contains("zonez"), "{error}");
}

#[test]
fn wrong_type_is_named() {
    let error = Config::parse("[dns]\npositive_ttl = \"five\"\n").unwrap_err();
    assert!(error.to_string().contains("positive_ttl"), "{error}");
}

#[test]
fn invalid_values_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("[dns]\nzones = []\n", "dns.zones"),
        ("[dns]\nzones = [\"a..b\"]\n", "dns.zones[0]"),
        ("[dns]\nzones = [\".\"]\n", "dns.zones[0]"),
        (
            "[dns]\nreverse_zones = [\"in addr.arpa\"]\n",
            "dns.reverse_zones",
        ),
        ("[dns]\nlisten = []\n", "dns.listen"),
        ("[dns]\nmax_udp_payload = 100\n", "dns.max_udp_payload"),
        ("[dns]\nudp_coalesce_us = 1001\n", "dns.udp_coalesce_us"),
        ("[dns]\nworkers = 1025\n", "dns.workers"),
        (
            "[source]\npoll_interval_ms = 0\n",
            "source.poll_interval_ms",
        ),
        (
            "[source.kubernetes]\nmax_backoff_ms = 99\n",
            "source.kubernetes.max_backoff_ms",
        ),
        (
            "[source.kubernetes]\nmax_backoff_ms = 300001\n",
            "source.kubernetes.max_backoff_ms",
        ),
        (
            "[source.kubernetes]\nwatch_idle_timeout_ms = 999\n",
            "source.kubernetes.watch_idle_timeout_ms",
        ),
        (
            "[source.kubernetes]\nwatch_idle_timeout_ms = 290001\n",
            "source.kubernetes.watch_idle_timeout_ms",
        ),
        (
            "[dns]\ntcp_idle_timeout_secs = 0\n",
            "dns.tcp_idle_timeout_secs",
        ),
        (
            "[limits]\ntcp_max_connections = 0\n",
            "limits.tcp_max_connections",
        ),
        (
            "[limits]\ntcp_max_connection_secs = 0\n",
            "limits.tcp_max_connection_secs",
        ),
        (
            "[limits]\ntcp_max_connection_secs = 99999999999\n",
            "limits.tcp_max_connection_secs",
        ),
    ];
    for (text, field) in cases {
        let error = Config::parse(text).unwrap().validate().unwrap_err();
        assert!(error.to_string().contains(field), "{text}: {error}");
    }
}

#[test]
fn limits_default_to_rrl_off_and_reject_unknown_keys() {
    let limits = Config::parse("").unwrap().limits;
    assert_eq!(limits.rrl_responses_per_second, 0, "RRL is off by default");
    assert_eq!(limits.tcp_max_connections, 1000);
    let error = Config::parse("[limits]\nrrl_rate = 5\n").unwrap_err();
    assert!(error.to_string().contains("rrl_rate"), "{error}");
}

#[test]
fn zone_names_are_lowercased_fqdns() {
    assert_eq!(
        parse_zone_name("Cluster.Local").unwrap().to_string(),
        "cluster.local."
    );
    assert_eq!(
        parse_zone_name("peers.example.").unwrap().to_string(),
        "peers.example."
    );
    assert_eq!(parse_zone_name("."), Err(ZoneNameError::Root));
    assert_eq!(parse_zone_name("a..b"), Err(ZoneNameError::Invalid));
    assert_eq!(parse_zone_name("bad zone"), Err(ZoneNameError::Invalid));
    let long = vec!["a".repeat(63); 4].join(".");
    assert!(matches!(
        parse_zone_name(&long),
        Err(ZoneNameError::TooLong(_))
    ));
}

#[test]
fn parse_errors_are_one_line_naming_the_key() {
    let error = Config::parse(
        "[dns]
zonez = [\"a\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("zonez") && !error.contains('\n'), "{error}");
}

/// A TOML error is `LINE:COLUMN: KEY: MESSAGE` on one line (the parser's own text has a
/// multi-line snippet), and `FILE:LINE:COLUMN: ...` once loaded from a file.
#[test]
fn parse_errors_give_line_column_and_dotted_key() {
    let cases = [
        (
            "[dns]\npositive_ttl = \"five\"\n",
            "2:16: dns.positive_ttl: invalid type: string \"five\", expected u32",
        ),
        (
            "[dns]\nzones = [\"a\", 1]\n",
            "2:15: dns.zones[1]: invalid type: integer `1`, expected a string",
        ),
        (
            "[source]\nkubernetes = { max_backoff_ms = \"x\" }\n",
            "2:33: source.kubernetes.max_backoff_ms: invalid type: string \"x\", expected u64",
        ),
        (
            "# a comment\n[source.kubernetes]\n  bogus = 2\n",
            "3:3: source.kubernetes.bogus: unknown field `bogus`, expected one of",
        ),
        ("[dns\n", "1:5: unclosed table, expected `]`"),
    ];
    for (text, want) in cases {
        let error = Config::parse(text).unwrap_err().to_string();
        assert!(
            error.starts_with(want),
            "{text:?}: got {error:?}, want {want:?}"
        );
        assert!(!error.contains('\n'), "{error:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerdns.toml");
    std::fs::write(&path, "[dns]\npositive_ttl = \"five\"\n").unwrap();
    let error = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "{}:2:16: dns.positive_ttl: invalid type: string \"five\", expected u32",
            path.display()
        )
    );
}

#[test]
fn relative_cluster_file_follows_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peerdns.toml");
    std::fs::write(&path, "[source]\nfile = \"c.yaml\"\n").unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.source.file, dir.path().join("c.yaml"));
}
