//! Review 16: the commands not yet run beside a writer in another process
//! (`repair`, `dump --salvage`, `stats`, `compact`): the reading ones report
//! no damage the writer's work under way could look like, and `compact`, a
//! writer, is refused naming the lock.

mod support;

use support::{EXIT_RUNTIME, path, run_annals, stderr_of};

/// `annals load` writes in another process (rolling over, writing images)
/// while this one repairs the log into a fresh directory, dumps it with
/// `--salvage`, takes its stats and tries to compact it, again and again:
/// no command reports damage, and `compact` fails as a runtime failure
/// that says the log is locked.
#[test]
fn repair_salvage_stats_and_compact_beside_a_live_writer_report_no_damage_and_compact_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["load", "--dir", path(&dir), "--records", "30000", "--payload-bytes", "1000"])
        .args(["--concurrency", "8", "--streams", "5"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while child.try_wait().unwrap().is_none() && started.elapsed() < std::time::Duration::from_secs(20) {
        if !dir.join("annals.state").exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        }
        let into = parent.path().join(format!("copy-{rounds}"));
        let out = run_annals(&["repair", path(&dir), "--into", path(&into)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "repair beside a writer: {stdout} {}", stderr_of(&out));
        assert!(stdout.contains("nothing was damaged"), "repair beside a writer: {stdout}");
        let out = run_annals(&["dump", "--salvage", path(&dir)]);
        assert!(out.status.success(), "dump --salvage beside a writer: {}", stderr_of(&out));
        let out = run_annals(&["stats", path(&dir)]);
        assert!(out.status.success(), "stats beside a writer: {}", stderr_of(&out));
        let out = run_annals(&["compact", path(&dir)]);
        // The writer releases the lock as it closes, a moment before it
        // exits: a compaction that gets it then may go through.
        if !out.status.success() && child.try_wait().unwrap().is_none() {
            assert_eq!(out.status.code(), Some(EXIT_RUNTIME), "compact beside a writer: {}", stderr_of(&out));
            assert!(stderr_of(&out).contains("locked"), "compact beside a writer: {}", stderr_of(&out));
        }
        std::fs::remove_dir_all(&into).unwrap();
        rounds += 1;
    }
    assert!(child.wait().unwrap().success(), "the writer failed beside the commands");
    assert!(rounds > 0, "the writer finished before a command ran");
    println!("{rounds} rounds");
}
