//! Review 9 of the command line with absurd flags. Each test names the
//! behaviour it holds and says how the bug it guards was found.

use std::path::Path;
use std::process::{Command, Output};

fn annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).args(args).output().expect("run annals")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `load --ack-log` naming a file inside the log's own directory is
/// refused as a usage error (exit 2) before anything is written, as
/// `repair --into` inside the source is; the log stays intact. Found in
/// review 9: `load --dir L --ack-log L/annals.state` appended its lines to
/// the state file of the log it was loading, exited 0, and left the log
/// corrupt (`bad state file`); an ack log named like a segment would have
/// grown the segment.
#[test]
fn load_refuses_an_ack_log_inside_the_log_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("log");
    let loaded = annals(&["load", "--dir", path(&dir), "--records", "5"]);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    let state_before = std::fs::read(dir.join("annals.state")).unwrap();
    for inside in [dir.join("annals.state"), dir.join("00000000000000000001.seg"), dir.join("acks"), dir.join(".")] {
        let refused = annals(&["load", "--dir", path(&dir), "--records", "5", "--ack-log", path(&inside)]);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "--ack-log {}: {}",
            inside.display(),
            String::from_utf8_lossy(&refused.stderr)
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--ack-log"), "{stderr}");
    }
    assert_eq!(std::fs::read(dir.join("annals.state")).unwrap(), state_before, "the state file was changed");
    assert!(!dir.join("acks").exists());
    let verified = annals(&["verify", path(&dir)]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    // Beside the log (not inside it) is where an ack log belongs.
    let acks = parent.path().join("acks");
    let loaded = annals(&["load", "--dir", path(&dir), "--records", "5", "--ack-log", path(&acks)]);
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert_eq!(std::fs::read_to_string(&acks).unwrap().lines().count(), 5);
}
