//! A child process appending with durability sync is killed with SIGKILL at
//! random moments; after each kill, reopening shows every append the child
//! reported acknowledged (its `--ack-log`), and every record reads back
//! checksummed. Repeated on the same log, so each child appends after the
//! last one's crash.

use std::process::{Command, Stdio};
use std::time::Duration;

use annals::{Log, Lsn, Options, StreamSeq};

const KILLS: u64 = 50;

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    println!("random state {state:#x}");
    let mut acknowledged_total = 0usize;
    for kill in 0..KILLS {
        let acks = dir.path().join(format!("acks-{kill}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(["load", "--dir", log_dir.to_str().unwrap(), "--records", "100000000", "--streams", "7"])
            .args(["--payload-bytes", "100", "--concurrency", "8", "--durability", "sync"])
            .args(["--ack-log", acks.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::thread::sleep(Duration::from_millis(30 + state % 150));
        if kill + 1 == KILLS && acknowledged_total == 0 {
            // A loaded machine may have let no child acknowledge anything
            // in its few random milliseconds: the last one is killed only
            // once it has, so that the check below has something to check.
            while !std::fs::read_to_string(&acks).unwrap_or_default().contains('\n') {
                assert!(child.try_wait().unwrap().is_none(), "the last child ended before it acknowledged anything");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "kill {kill}: the child finished before it was killed");

        let text = std::fs::read_to_string(&acks).unwrap_or_default();
        let complete = text.rsplit_once('\n').map_or("", |(lines, _)| lines);
        let log = Log::open(&log_dir, Options::default()).unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        let mut acknowledged = 0;
        for line in complete.lines() {
            let mut fields = line.split(' ');
            let (lsn, stream, seq) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            let record = log
                .read_lsn(Lsn(lsn.parse().unwrap()))
                .unwrap()
                .unwrap_or_else(|| panic!("kill {kill}: acknowledged lsn {lsn} is missing"));
            assert_eq!(
                (record.stream.as_ref(), record.seq),
                (stream.as_bytes(), StreamSeq(seq.parse().unwrap())),
                "kill {kill}"
            );
            acknowledged += 1;
        }
        // Every record reads back through its checksum, and the streams are dense.
        let everything = log.read_all(Lsn::ZERO, usize::MAX).unwrap();
        assert_eq!(everything.last().map_or(Lsn::ZERO, |r| r.lsn), log.last_lsn().unwrap());
        for stream in 0..7 {
            let name = format!("stream-{stream}");
            let entries = log.read_stream_from(&name, StreamSeq(0)).unwrap();
            assert!(entries.iter().enumerate().all(|(i, r)| r.seq == StreamSeq(i as u64)));
        }
        log.close().wait().unwrap();
        acknowledged_total += acknowledged;
    }
    println!("{KILLS} kills, {acknowledged_total} acknowledged appends checked");
    assert!(acknowledged_total > 0, "the children acknowledged appends before being killed");
}
