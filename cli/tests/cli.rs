//! The `annals` command: load appends and logs acknowledgements, verify
//! tells a torn tail from corruption, dump prints records in LSN order.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

fn annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals")).args(args).output().expect("run annals")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn load_twice_then_verify_and_dump_agree() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let acks = dir.path().join("acks");
    for _ in 0..2 {
        let out = annals(&[
            "load",
            "--dir",
            path(&log),
            "--streams",
            "4",
            "--records",
            "100",
            "--payload-bytes",
            "16",
            "--concurrency",
            "8",
            "--ack-log",
            path(&acks),
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json(&out);
        assert_eq!(report["records"], 100);
        for field in ["seconds", "appends_per_sec", "p50_us", "p99_us"] {
            assert!(report[field].is_number(), "{field}");
        }
    }
    let acked = std::fs::read_to_string(&acks).unwrap();
    assert_eq!(acked.lines().count(), 200);

    let out = annals(&["verify", path(&log), "--json"]);
    assert!(out.status.success());
    let verified = json(&out);
    assert_eq!(
        (verified["records"].as_u64(), verified["streams"].as_u64(), verified["last_lsn"].as_u64()),
        (Some(200), Some(4), Some(200))
    );
    assert_eq!(verified["problems"].as_array().unwrap().len(), 0);

    let out = annals(&["dump", path(&log), "--stream", "stream-1", "--after", "10", "--limit", "5"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_eq!(
            (line["stream"].as_str(), line["kind"].as_str(), line["len"].as_u64()),
            (Some("stream-1"), Some("entry"), Some(16))
        );
        assert!(line["lsn"].as_u64().unwrap() > 10);
        let ack = format!("{} stream-1 {}", line["lsn"], line["seq"]);
        assert!(acked.lines().any(|l| l == ack), "{ack} was acknowledged");
    }
}

#[test]
fn verify_reports_a_torn_tail_as_such_and_corruption_with_file_and_offset() {
    let live = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let log = common::open(live.path());
    for i in 0..40u8 {
        log.append("s", annals::Expectation::Any, vec![i; 400]).wait().unwrap();
    }
    common::crash_image(live.path(), image.path());
    let segments = common::segment_files(image.path());
    let last = segments.last().unwrap();
    let tail = *common::frame_offsets(last).last().unwrap();
    common::zero_range(last, tail + 100, tail + 200);

    let out = annals(&["verify", path(image.path()), "--json"]);
    assert!(out.status.success(), "a torn tail is not corruption");
    let problems = json(&out)["problems"].clone();
    assert_eq!(problems[0]["kind"], "torn_tail");
    assert_eq!(problems[0]["offset"].as_u64(), Some(tail as u64));

    let sealed_frame = common::frame_offsets(&segments[0])[3];
    common::flip_bit(&segments[0], sealed_frame + 70, 5);
    let out = annals(&["verify", path(image.path()), "--json"]);
    assert!(!out.status.success(), "corruption fails verify");
    let problems = json(&out)["problems"].clone();
    let corruption = problems.as_array().unwrap().iter().find(|p| p["kind"] == "corruption").unwrap();
    assert_eq!(corruption["file"].as_str(), segments[0].to_str());
    assert_eq!(corruption["offset"].as_u64(), Some(sealed_frame as u64));
    assert!(String::from_utf8_lossy(&annals(&["verify", path(image.path())]).stdout).contains("corrupt"));
    assert_eq!(annals(&["verify"]).status.code(), Some(2), "a usage error");
}

/// Found by the docs review of session 8: verify of a log with a damaged
/// sealed segment printed its intact records and then "index 57344 bytes
/// for 0 entries in 0 streams", the index of a log that did not open.
#[test]
fn verify_of_a_corrupt_log_printed_an_index_of_0_entries_in_0_streams() {
    let (dir, records) = common::closed_multi_segment_log();
    let segments = common::segment_files(dir.path());
    let frame = common::frame_offsets(&segments[0])[1];
    common::flip_bit(&segments[0], frame + 70, 3);
    let out = annals(&["verify", path(dir.path())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("intact records {}", records.len() - 1)), "{text}");
    assert!(!text.contains("entries in"), "an index of a log that did not open: {text}");
    let healthy = common::closed_multi_segment_log().0;
    let text = String::from_utf8_lossy(&annals(&["verify", path(healthy.path())]).stdout).into_owned();
    assert!(text.contains("entries in"), "a log that opens still shows its index: {text}");
}

/// Found by the docs review of session 8: dump of a log whose damage lies in
/// frames the index image covers (the open does not read them) printed the
/// records before it and then the bare corruption, without the advice a
/// dump refused at open gives.
#[test]
fn dump_that_met_damage_under_the_index_image_gave_no_advice() {
    let dir = tempfile::tempdir().unwrap();
    let options = annals::Options { index_image: annals::IndexImageWrites::AtClose, ..common::small_options() };
    let log = annals::Log::open(dir.path(), options).unwrap();
    // More than a page of dump (1,024 records): the damage is met on the
    // second page's read, after the first was printed.
    for i in 0..1500u32 {
        log.append(format!("s{}", i % 3), annals::Expectation::Any, vec![i as u8; 100]).wait().unwrap();
    }
    log.close().wait().unwrap();
    drop(log);
    let segments = common::segment_files(dir.path());
    assert!(segments.len() > 2 && dir.path().join("annals.index").exists());
    let damaged = &segments[segments.len() - 2];
    let frames = common::frame_offsets(damaged);
    common::flip_bit(damaged, frames[frames.len() / 2] + 70, 3);
    let out = annals(&["dump", path(dir.path())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let printed = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(printed >= 1024, "the page before the damage is printed, not left in a buffer: {printed} lines");
    assert!(stderr.contains("annals verify") && stderr.contains("--salvage"), "{stderr}");
}

/// `annals dump --decode` shows the typed stores' values as JSON (issue 10):
/// checkpoint rows, whole checkpoints, checkpoint history (compressed or
/// not, with its header); a raw payload as its escaped bytes; a payload in
/// the stores' envelope that does not decode as a `decode_error` on its
/// own record, the dump going on.
#[test]
fn dump_decode_prints_typed_store_values_as_json() {
    use annals::stores::checkpoint_history::{CheckpointHistory, Compression};
    use annals::stores::checkpoint_rows::{CheckpointRows, SequencedRow};
    use annals::stores::whole_checkpoints::WholeCheckpoints;
    use serde_json::json;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Row {
        sequence: u64,
        state: String,
    }
    impl SequencedRow for Row {
        fn sequence(&self) -> u64 {
            self.sequence
        }
    }

    let dir = tempfile::tempdir().unwrap();
    {
        let log = std::sync::Arc::new(annals::Log::open(dir.path(), annals::Options::default()).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let rows: CheckpointRows<annals::Log, Row> = CheckpointRows::new(log.clone());
        rt.block_on(rows.append("run-1", Row { sequence: 0, state: "Start".into() })).unwrap();
        log.append("raw", annals::Expectation::Any, &b"plain\x00bytes"[..]).wait().unwrap();
        let whole: WholeCheckpoints<annals::Log, Vec<u32>> = WholeCheckpoints::new(log.clone());
        rt.block_on(whole.save("run-2", &vec![1, 2, 3])).unwrap();
        let history: CheckpointHistory<annals::Log, String> =
            CheckpointHistory::in_namespace(log.clone(), "", Compression::Lz4);
        let id = rt.block_on(history.save_with_summary("exec", &"x".repeat(500), 7)).unwrap();
        // The stores' tag and codec, then a body that is not MessagePack.
        log.append("damaged", annals::Expectation::Any, &[0xA5, 1, 1, 0, 0xC1][..]).wait().unwrap();
        log.close().wait().unwrap();
        std::fs::write(dir.path().join("history-id"), id.to_string()).unwrap();
    }
    let out = annals(&["dump", path(dir.path()), "--decode"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |stream: &str| lines.iter().find(|line| line["stream"] == stream).unwrap().clone();
    let row = of("rows/run-1");
    assert_eq!((row["schema"].clone(), row["value"].clone()), (json!(1), json!({ "sequence": 0, "state": "Start" })));
    assert!(row.get("bytes").is_none() && row.get("decode_error").is_none(), "{row}");
    let raw = of("raw");
    assert_eq!(raw["bytes"], "plain\\x00bytes");
    assert!(raw.get("value").is_none(), "{raw}");
    assert_eq!(of("checkpoint/run-2")["value"], json!([1, 2, 3]));
    let history = of("history/exec");
    let id = std::fs::read_to_string(dir.path().join("history-id")).unwrap();
    assert_eq!(history["value"], json!("x".repeat(500)));
    assert_eq!(history["history"]["id"], json!(id));
    assert_eq!(history["history"]["compressed"], json!(true), "{history}");
    assert_eq!(history["history"]["summary"], json!(7));
    let damaged = of("damaged");
    assert!(damaged["decode_error"].as_str().unwrap().contains("0xc1"), "{damaged}");
    assert_eq!(damaged["bytes"], "\\xa5\\x01\\x01\\x00\\xc1");
    // Without --decode, none of it.
    let plain = annals(&["dump", path(dir.path())]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("\"value\""));
}
