//! The command line as people already know it from other tools: values are
//! validated (never coerced) and bounded before anything is allocated,
//! typos get suggestions, `--flag=value` works, every `--help` shows every
//! default and the exit codes, and the exit codes keep "corruption found",
//! "usage error" and "runtime failure" apart.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{EXIT_CORRUPTION, EXIT_RUNTIME, EXIT_USAGE, path, run_annals, stderr_of, text};

/// Runs `annals load` into `dir` with `flags`.
fn load(dir: &std::path::Path, flags: &[&str]) -> std::process::Output {
    let mut args = vec!["load", "--dir", path(dir)];
    args.extend_from_slice(flags);
    run_annals(&args)
}

/// Checks a usage error: exit 2, clap's message naming `flag`, and no log
/// created (nothing was opened or allocated before the arguments were checked).
fn assert_usage_error(out: &std::process::Output, flag: &str, dir: &std::path::Path) {
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", stderr_of(out));
    assert!(stderr_of(out).contains(flag), "the message does not name {flag}: {}", stderr_of(out));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(!dir.exists(), "a usage error created {}", dir.display());
}

/// `--streams 0` used to become 1 silently.
#[test]
fn zero_streams_is_a_usage_error_not_one_stream() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    assert_usage_error(&load(&dir, &["--streams", "0"]), "--streams", &dir);
    assert_usage_error(&load(&dir, &["--streams", "1000001"]), "--streams", &dir);
    assert_usage_error(&load(&dir, &["--records", "0"]), "--records", &dir);
}

/// `--payload-bytes 100000000000` used to abort the process allocating
/// 100 GB; the bound is checked first, and the largest allowed payload is a
/// record the log accepts.
#[test]
fn an_absurd_payload_size_is_a_usage_error_before_anything_is_allocated() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    for bytes in ["100000000000", "16776193"] {
        let out = load(&dir, &["--payload-bytes", bytes]);
        assert_usage_error(&out, "--payload-bytes", &dir);
        assert!(stderr_of(&out).contains("0..=16776192"), "the message does not give the bound: {}", stderr_of(&out));
    }
    for bytes in ["-1", "18446744073709551616", "1e9", ""] {
        assert_usage_error(&load(&dir, &["--payload-bytes", bytes]), "--payload-bytes", &dir);
    }
    let out = load(&dir, &["--payload-bytes", "16776192", "--records", "1", "--streams", "1000000", "--json"]);
    assert!(out.status.success(), "the largest payload is refused: {}", stderr_of(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records"], 1);
    let log = annals::LogReader::open(&dir).unwrap();
    assert_eq!(log.read_all(annals::Lsn::ZERO, 2).unwrap()[0].payload.len(), 16_776_192);
}

/// A huge `--concurrency` used to hang the process spawning appenders; it is
/// refused at once, and the largest allowed one runs.
#[test]
fn an_absurd_concurrency_is_a_usage_error_and_returns_at_once() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    for concurrency in ["18446744073709551615", "4097", "0"] {
        let started = Instant::now();
        let out = load(&dir, &["--concurrency", concurrency]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "--concurrency {concurrency} took {:?}",
            started.elapsed()
        );
        assert_usage_error(&out, "--concurrency", &dir);
    }
    let out = load(&dir, &["--concurrency", "4096", "--records", "8192", "--durability", "flush", "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["records"].as_u64(), summary["concurrency"].as_u64()), (Some(8192), Some(4096)));
}

/// Values outside a flag's set are refused with the set, never mapped to a default.
#[test]
fn an_unknown_durability_or_a_negative_lsn_is_a_usage_error() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = load(&dir, &["--durability", "fast"]);
    assert_usage_error(&out, "--durability", &dir);
    assert!(stderr_of(&out).contains("sync, flush, periodic"), "{}", stderr_of(&out));
    let out = run_annals(&["dump", path(&dir), "--after", "-1"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", stderr_of(&out));
}

#[test]
fn an_unknown_flag_or_command_is_refused_with_a_suggestion() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = load(&dir, &["--stream", "3"]);
    assert_usage_error(&out, "--stream", &dir);
    assert!(stderr_of(&out).contains("a similar argument exists: '--streams'"), "{}", stderr_of(&out));
    let out = run_annals(&["verfy", path(&dir)]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(stderr_of(&out).contains("a similar subcommand exists: 'verify'"), "{}", stderr_of(&out));
    let out = run_annals(&["dump", path(&dir), "--salvge"]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE));
    assert!(stderr_of(&out).contains("'--salvage'"), "{}", stderr_of(&out));
}

#[test]
fn flag_equals_value_is_the_same_as_flag_then_value() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = run_annals(&["load", &format!("--dir={}", path(&dir)), "--records=7", "--streams=2", "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["records"].as_u64(), summary["streams"].as_u64()), (Some(7), Some(2)));
    let out = run_annals(&["dump", path(&dir), "--limit=3", "--stream=stream-1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(support::dump_lines(&out).len(), 3);
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    for args in [&["--version"][..], &["-V"], &["verify", "--version"]] {
        let out = run_annals(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let version = text(&out.stdout);
        assert!(version.starts_with("annals"), "{args:?}: {version}");
        assert!(version.trim_end().ends_with(&format!(" {}", env!("CARGO_PKG_VERSION"))), "{args:?}: {version}");
    }
}

/// The options of a `--help` text: each `--flag` line with the lines that
/// describe it, up to the next option.
fn options_of(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("  ")
            && (trimmed.starts_with("--") || trimmed.starts_with("-h,") || trimmed.starts_with("-V,"))
        {
            let name = trimmed.split([' ', ',']).find(|word| word.starts_with("--")).unwrap_or(trimmed).to_owned();
            options.push((name, format!("{trimmed}\n")));
        } else if line.starts_with("Exit codes:") {
            break;
        } else if let Some((_, description)) = options.last_mut() {
            description.push_str(line);
            description.push('\n');
        }
    }
    options
}

/// Every flag's default is in its command's `--help`, and so are the exit
/// codes.
#[test]
fn every_command_help_shows_each_flag_default_and_the_exit_codes() {
    let required = ["--dir", "--into", "--help", "--version"];
    let mut defaults = Vec::new();
    for command in ["load", "verify", "dump", "repair", "stats", "compact"] {
        let out = run_annals(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command}");
        let help = text(&out.stdout);
        let options = options_of(&help);
        assert!(options.len() >= 3, "{command}: {help}");
        for (name, description) in &options {
            if !required.contains(&name.as_str()) {
                assert!(description.contains("[default: "), "{command} --help: {name} shows no default:\n{help}");
                defaults.push(format!("{command} {name}"));
            }
        }
        for line in
            ["  1    corruption found", "  2    usage error", "  3    runtime failure", "  130  load was interrupted"]
        {
            assert!(help.contains(line), "{command} --help does not say `{line}`");
        }
    }
    for expected in
        ["load --streams", "load --records", "load --payload-bytes", "load --concurrency", "load --durability"]
    {
        assert!(defaults.iter().any(|d| d == expected), "{expected} is missing from the help");
    }
    let out = run_annals(&["load", "--help"]);
    for default in ["[default: 100]", "[default: 10000]", "[default: 200]", "[default: 1]", "[default: sync]"] {
        assert!(text(&out.stdout).contains(default), "load --help lacks {default}");
    }
}

/// Damage found (1), bad arguments (2) and a log that cannot be read (3)
/// end with different codes, so that a script can tell them apart.
#[test]
fn exit_codes_keep_corruption_usage_and_runtime_failure_apart() {
    let dir = tempfile::tempdir().unwrap();
    let records = common::write_closed_log(dir.path(), common::small_options(), 40, 300);
    assert_eq!(records.len(), 40);
    assert_eq!(run_annals(&["verify", path(dir.path())]).status.code(), Some(0));

    let sealed = common::segment_files(dir.path()).remove(0);
    common::flip_bit(&sealed, common::frame_offsets(&sealed)[2] + 60, 1);
    let out = run_annals(&["verify", path(dir.path())]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPTION), "corruption found: {}", text(&out.stdout));
    let out = run_annals(&["dump", path(dir.path())]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPTION), "dump refuses a damaged log: {}", stderr_of(&out));
    let out = run_annals(&["load", "--dir", path(dir.path()), "--records", "1"]);
    assert_eq!(out.status.code(), Some(EXIT_CORRUPTION), "load refuses a damaged log: {}", stderr_of(&out));

    assert_eq!(run_annals(&["verify", path(dir.path()), "--jsn"]).status.code(), Some(EXIT_USAGE));

    let missing = dir.path().join("missing");
    let out = run_annals(&["verify", path(&missing)]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "a directory that does not exist: {}", stderr_of(&out));
    assert!(stderr_of(&out).starts_with("annals: error: "), "{}", stderr_of(&out));
    let out = run_annals(&["load", "--dir", path(&sealed), "--records", "1"]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "a file as the log's directory: {}", stderr_of(&out));
}

/// indicatif draws only to a terminal: with stderr piped nothing is written
/// there, while under a pseudo-terminal (`script`) the bar is drawn.
#[test]
fn progress_bars_are_drawn_on_a_terminal_and_hidden_when_stderr_is_not_one() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = load(&dir, &["--records", "3000", "--durability", "flush"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out.stderr.is_empty(), "load wrote to a piped stderr: {}", stderr_of(&out));
    for args in [
        &["verify", path(&dir)][..],
        &["dump", path(&dir)],
        &["dump", path(&dir), "--salvage"],
        &["stats", path(&dir)],
        &["compact", path(&dir)],
    ] {
        let out = run_annals(args);
        assert!(out.status.success() && out.stderr.is_empty(), "{args:?} wrote to a piped stderr: {}", stderr_of(&out));
    }
    let command = format!(
        "{} load --dir {} --records 20000 --durability flush >/dev/null",
        env!("CARGO_BIN_EXE_annals"),
        path(&dir)
    );
    let Ok(out) = Command::new("script").args(["-qfec", &command, "/dev/null"]).stdin(Stdio::null()).output() else {
        println!("skipped the terminal part: `script` is not available");
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("load ["), "no progress bar on a terminal: {:?}", text(&out.stdout));
}
