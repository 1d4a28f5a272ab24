//! The commands on odd inputs (a file, a missing path, an empty directory,
//! absurd flags, no permission, `--into` the source or an existing log) and
//! beside a writer in another process: each fails clearly and changes
//! nothing, or reads what was acknowledged (issue 9's adversarial tests).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use annals::{Error, Log, Lsn, Options, Record};
use support::{
    EXIT_RUNTIME, EXIT_USAGE, chmod, dump_lines, is_root, path, run_annals, run_annals_as_nobody, stderr_of,
};

const STATE_FILE: &str = "annals.state";

fn all_records(log: &Log) -> Vec<Record> {
    log.read_all(Lsn::ZERO, usize::MAX).unwrap()
}

#[test]
fn verify_and_dump_on_a_file_a_missing_path_and_an_empty_directory_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a log").unwrap();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for target in [&file, &missing, &empty] {
        for command in [&["verify"][..], &["dump"][..], &["dump", "--salvage"][..]] {
            let mut args = command.to_vec();
            args.insert(1, path(target));
            let out = run_annals(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{args:?}: stdout {stdout} stderr {}", stderr_of(&out));
            assert!(!stdout.contains("clean"), "{args:?}: {stdout}");
            assert!(!stderr_of(&out).is_empty(), "{args:?}: no message");
        }
    }
    // Nothing was created.
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    let out = run_annals(&["verify", path(&empty)]);
    assert!(stderr_of(&out).contains("not an Annals log"), "{}", stderr_of(&out));
}

#[test]
fn absurd_flags_are_refused_with_exit_2_and_change_nothing() {
    let (dir, _records) = common::closed_multi_segment_log();
    let before = common::dir_snapshot(dir.path());
    let d = path(dir.path());
    let cases: Vec<Vec<&str>> = vec![
        vec!["verify"],
        vec!["verify", d, "--bogus"],
        vec!["dump", d, "--limit", "-1"],
        vec!["dump", d, "--after", "18446744073709551616"],
        vec!["dump", d, "--limit"],
        vec!["repair", d],
        vec!["repair", "--into", d],
        vec!["frobnicate", d],
        vec![],
    ];
    for args in cases {
        let out = run_annals(&args);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{args:?}: {}", stderr_of(&out));
    }
    // Extreme but valid values.
    let out = run_annals(&["dump", d, "--after", "18446744073709551615", "--limit", "0"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());
    common::assert_dir_unchanged(dir.path(), &before, "the commands");
}

/// A user who may only read: verify and dump work; with no permission to
/// read the directory they fail with an error (exit 3, a runtime failure), never "clean" nor
/// "not an Annals log".
#[test]
fn verify_and_dump_as_another_user_with_read_only_or_no_permission() {
    if !is_root() {
        println!("skipped: not root");
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    chmod(parent.path(), 0o755);
    let dir = parent.path().join("log");
    let records = common::write_closed_log(&dir, common::small_options(), 40, 100);
    for entry in std::fs::read_dir(&dir).unwrap() {
        chmod(&entry.unwrap().path(), 0o444);
    }
    chmod(&dir, 0o555);
    let before = common::dir_snapshot(&dir);
    let Some(out) = run_annals_as_nobody(&["verify", path(&dir)]) else {
        println!("skipped: no setpriv");
        return;
    };
    assert!(out.status.success(), "read-only verify: {} {}", String::from_utf8_lossy(&out.stdout), stderr_of(&out));
    let out = run_annals_as_nobody(&["dump", path(&dir)]).unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(dump_lines(&out).len(), records.len());
    common::assert_dir_unchanged(&dir, &before, "read-only inspection");
    // No permission at all on the directory.
    chmod(&dir, 0o700);
    for args in [&["verify", path(&dir)][..], &["dump", path(&dir)][..], &["dump", path(&dir), "--salvage"][..]] {
        let out = run_annals_as_nobody(args).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{args:?}: {stdout} {}", stderr_of(&out));
        assert!(!stdout.contains("clean") && !stderr_of(&out).contains("not an Annals log"), "{args:?}");
    }
    // The state file unreadable, the segments readable.
    chmod(&dir, 0o755);
    chmod(&dir.join(STATE_FILE), 0o000);
    let out = run_annals_as_nobody(&["verify", path(&dir)]).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && !stdout.contains("clean"), "{stdout} {}", stderr_of(&out));
    chmod(&dir, 0o755);
}

#[test]
fn repair_of_an_empty_directory_fails_and_creates_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let into = parent.path().join("into");
    let out = run_annals(&["repair", path(&empty), "--into", path(&into)]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr_of(&out).contains("not an Annals log"), "{}", stderr_of(&out));
    assert!(!into.exists(), "repair created {}", into.display());
}

/// `--into` naming the source, spelled in other ways: refused, the source unchanged.
#[test]
fn repair_into_the_source_itself_is_refused_however_it_is_spelled() {
    let (dir, _records) = common::closed_multi_segment_log();
    let before = common::dir_snapshot(dir.path());
    let d = path(dir.path()).to_owned();
    let spellings = [
        d.clone(),
        format!("{d}/"),
        format!("{d}/."),
        format!("{d}/../{}", dir.path().file_name().unwrap().to_str().unwrap()),
    ];
    for into in &spellings {
        let out = run_annals(&["repair", &d, "--into", into]);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "--into {into}: {}", String::from_utf8_lossy(&out.stdout));
    }
    common::assert_dir_unchanged(dir.path(), &before, "repair into itself");
}

#[test]
fn repair_into_a_non_empty_directory_or_an_existing_log_is_refused() {
    let (dir, _records) = common::closed_multi_segment_log();
    let (other, other_records) = common::closed_multi_segment_log();
    let before = common::dir_snapshot(other.path());
    let out = run_annals(&["repair", path(dir.path()), "--into", path(other.path())]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", String::from_utf8_lossy(&out.stdout));
    common::assert_dir_unchanged(other.path(), &before, "repair into an existing log");
    let log = Log::open(other.path(), common::small_options()).unwrap();
    assert_eq!(all_records(&log), other_records);
    // A directory with one unrelated file.
    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("notes.txt"), b"keep me").unwrap();
    let out = run_annals(&["repair", path(dir.path()), "--into", path(junk.path())]);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(std::fs::read_dir(junk.path()).unwrap().count(), 1);
}

/// `--into` a new directory inside the source: repair "never modifies the
/// source", yet it creates the copy's directory in it.
#[test]
fn repair_into_a_directory_inside_the_source_modifies_the_source() {
    let (dir, records) = common::closed_multi_segment_log();
    let into = dir.path().join("copy");
    let out = run_annals(&["repair", path(dir.path()), "--into", path(&into)]);
    let created = into.exists();
    // Whatever repair did, the source still opens with every record.
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert_eq!(all_records(&log), records);
    drop(log);
    assert!(
        !out.status.success() && !created,
        "repair wrote its copy inside the source directory (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A file given as `--into`.
#[test]
fn repair_into_a_file_fails_and_leaves_the_file() {
    let (dir, _records) = common::closed_multi_segment_log();
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("file");
    std::fs::write(&file, b"precious").unwrap();
    let out = run_annals(&["repair", path(dir.path()), "--into", path(&file)]);
    assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

/// `annals load` writes in another process while this one inspects the log
/// again and again and tries to open it: verify never reports corruption,
/// dump never fails, a second writer gets `Locked`, and nothing the reader
/// does disturbs the writer; after it finishes every acknowledged LSN (its
/// ack log) reads back.
#[test]
fn verify_and_dump_beside_a_live_writer_in_another_process_report_false_corruption() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let ack = parent.path().join("acks");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["load", "--dir", path(&dir), "--records", "15000", "--payload-bytes", "3000"])
        .args(["--concurrency", "8", "--streams", "5", "--ack-log", path(&ack)])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut inspections = 0;
    let mut locked = 0;
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < std::time::Duration::from_secs(20) {
        if !dir.join(STATE_FILE).exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        }
        let out = run_annals(&["verify", path(&dir), "--json"]);
        if out.status.code() == Some(EXIT_RUNTIME) && child.try_wait().unwrap().is_some() {
            break;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "verify beside a writer: {stdout} {}", stderr_of(&out));
        let out = run_annals(&["dump", path(&dir), "--limit", "5"]);
        assert!(out.status.success(), "dump beside a writer: {}", stderr_of(&out));
        match Log::open(&dir, Options::default()) {
            Err(Error::Locked { .. }) => locked += 1,
            Err(other) => panic!("a second opener got {other}"),
            Ok(_) if child.try_wait().unwrap().is_some() => {}
            // The writer closes its log, and so releases the lock, before it
            // prints its summary and exits: in that window an open succeeds
            // while the process is still alive. It is a second writer beside
            // a live one only if the writer had appends left to acknowledge.
            Ok(_) => {
                let acknowledged = std::fs::read_to_string(&ack).unwrap().lines().count();
                assert_eq!(acknowledged, 15000, "a second writer opened the log beside a live one");
            }
        }
        assert!(!dir.join("LOCK.tmp").exists());
        inspections += 1;
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the writer failed beside the readers");
    println!("{inspections} inspections, {locked} locked");
    let log = Log::open(&dir, Options::default()).unwrap();
    let acks = std::fs::read_to_string(&ack).unwrap();
    let mut count = 0;
    for line in acks.lines() {
        let mut fields = line.split(' ');
        let lsn = Lsn(fields.next().unwrap().parse().unwrap());
        let stream = fields.next().unwrap();
        let record = log.read_lsn(lsn).unwrap().unwrap_or_else(|| panic!("acknowledged lsn {lsn} is missing"));
        assert_eq!(record.stream.as_ref(), stream.as_bytes());
        count += 1;
    }
    assert_eq!(count, 15000);
}
