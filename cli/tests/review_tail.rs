//! Review of `annals tail` (cli/src/tail.rs): odd arguments and odd
//! directories end with the documented exit codes, and the help lists
//! `tail` among the commands that refuse a damaged log.

mod support;

use support::{EXIT_CORRUPTION, EXIT_RUNTIME, EXIT_USAGE, path, run_annals, text};

/// Found in review: `tail` refuses a damaged log with exit code 1, but
/// the exit codes in every `--help` (and the README) named only `dump`,
/// `load` and `compact` as refusing one.
#[test]
fn the_help_names_tail_among_the_commands_that_refuse_a_damaged_log() {
    let help = run_annals(&["tail", "--help"]);
    assert!(help.status.success());
    let row = text(&help.stdout)
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{EXIT_CORRUPTION} ")) && line.contains("corruption found"))
        .map(str::to_owned);
    assert!(row.as_deref().is_some_and(|row| row.contains("tail")), "{row:?}");
}

/// Odd values and directories: the largest LSN prints nothing and
/// succeeds; an LSN past u64 is a usage error; a directory that is not a
/// log, and a file, are runtime failures with a message; an empty stream
/// id selects nothing.
#[test]
fn tail_answers_odd_arguments_and_directories_with_the_documented_exit_codes() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let out = run_annals(&["load", "--dir", path(&dir), "--records", "20", "--streams", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let last = run_annals(&["tail", path(&dir), "--after", &u64::MAX.to_string()]);
    assert!(last.status.success(), "{}", text(&last.stderr));
    assert!(last.stdout.is_empty());
    let past = run_annals(&["tail", path(&dir), "--after", "18446744073709551616"]);
    assert_eq!(past.status.code(), Some(EXIT_USAGE), "{}", text(&past.stderr));
    let none = run_annals(&["tail", path(&dir), "--stream", ""]);
    assert!(none.status.success() && none.stdout.is_empty(), "{}", text(&none.stderr));

    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_annals(&["tail", path(&empty)]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not an Annals log"), "{}", text(&out.stderr));
    let file = parent.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_annals(&["tail", path(&file)]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).is_empty());
}
