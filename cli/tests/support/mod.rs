//! Helpers for the tests that run the `annals` command.
#![allow(dead_code)] // each test binary uses its own subset

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The documented exit codes (`annals --help`, the README).
pub const EXIT_CORRUPTION: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_RUNTIME: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs the `annals` command built by cargo.
pub fn run_annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).args(args).output().expect("run annals")
}

/// Runs `annals` as the unprivileged user `nobody` (uid and gid 65534), if
/// this machine can; `None` (and a line saying the part is skipped) if not.
pub fn run_annals_as_nobody(args: &[&str]) -> Option<Output> {
    let run = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_annals")])
            .args(args)
            .output()
            .ok()
    };
    match run(&["--help"]) {
        Some(out) if out.status.success() => run(args),
        Some(out) => {
            println!("skipped the unprivileged part: setpriv failed: {}", text(&out.stderr).trim());
            None
        }
        None => {
            println!("skipped the unprivileged part: setpriv is not available");
            None
        }
    }
}

/// Whether the tests run as root (who may read and write whatever the
/// permissions say).
pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The JSON lines `annals dump` printed.
pub fn dump_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A record as `annals dump` prints it.
pub fn dump_line_of(record: &annals::Record) -> serde_json::Value {
    serde_json::json!({
        "lsn": record.lsn, "stream": annals::display_stream(&record.stream), "seq": record.seq,
        "kind": record.kind.name(), "len": record.payload.len(),
    })
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Bytes a command printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a command printed on stderr.
pub fn stderr_of(out: &Output) -> String {
    text(&out.stderr)
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes a log's directory read-only (0555, its files 0444), as on
/// read-only media; the guard returned makes them writable again.
pub fn make_read_only(dir: &Path) -> Writable {
    let writable = Writable(dir.to_path_buf());
    for entry in std::fs::read_dir(dir).unwrap() {
        chmod(&entry.unwrap().path(), 0o444);
    }
    chmod(dir, 0o555);
    writable
}

/// Restores write permission on a log so the temporary directory can be
/// removed, also when the test fails.
pub struct Writable(pub PathBuf);

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
            }
        }
    }
}
