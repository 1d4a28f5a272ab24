//! The log's `tracing` events: a warning naming the file, offset and first
//! LSN when recovery cuts a torn tail, an error naming the cause when the
//! log is poisoned, a trace event per group commit and per fsync, a debug
//! event per rollover, an info event per compaction; and never a payload or
//! a stream id in any of them. A subscriber installed for the whole process
//! sees the writer thread's events too; the tests take turns with it.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use annals::{Expectation, Log, Lsn, StreamSeq};
use common::FaultyFs;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as the subscriber saw it: every field as text.
#[derive(Clone, Debug)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or_else(|| panic!("no field {name} in {self:?}"), String::as_str)
    }
}

/// Every event (and span) of every thread since the current turn began.
static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());

/// The process's subscriber: keeps everything in [`EVENTS`].
struct Capture {
    spans: AtomicU64,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        // Span fields (the open's directory) are kept as events of their own.
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let target = span.metadata().target().to_owned();
        EVENTS.lock().unwrap().push(Captured { level: *span.metadata().level(), target, fields });
        Id::from_u64(self.spans.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let target = event.metadata().target().to_owned();
        EVENTS.lock().unwrap().push(Captured { level: *event.metadata().level(), target, fields });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Sole use of the process's subscriber, its events cleared.
struct Turn {
    _turn: MutexGuard<'static, ()>,
}

impl Turn {
    fn take() -> Turn {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        static TURN: Mutex<()> = Mutex::new(());
        INSTALLED.get_or_init(|| {
            let capture = Capture { spans: AtomicU64::new(0) };
            tracing::subscriber::set_global_default(capture).expect("the only subscriber of this binary");
        });
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        EVENTS.lock().unwrap().clear();
        Turn { _turn: turn }
    }

    /// Forgets what was captured so far (a test's setup).
    fn clear(&self) {
        EVENTS.lock().unwrap().clear();
    }

    fn events(&self) -> Vec<Captured> {
        EVENTS.lock().unwrap().clone()
    }

    fn matching(&self, target: &str, message: &str) -> Vec<Captured> {
        self.events().into_iter().filter(|e| e.target == target && e.message().starts_with(message)).collect()
    }
}

#[test]
fn a_cut_torn_tail_is_a_warning_naming_the_file_offset_and_first_lsn_lost() {
    let turn = Turn::take();
    let live = tempfile::tempdir().unwrap();
    let log = common::open(live.path());
    for i in 0..4 {
        log.append("s", Expectation::Exact(StreamSeq(i)), format!("record {i} {}", "x".repeat(80))).wait().unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    common::crash_image(live.path(), image.path());
    drop(log);
    let segment = common::segment_files(image.path()).pop().unwrap();
    let last = *common::frame_offsets(&segment).last().unwrap();
    common::zero_range(&segment, last + 50, last + 60);

    turn.clear();
    let reopened = Log::open(image.path(), common::small_options()).unwrap();
    assert_eq!(reopened.last_lsn().unwrap(), Lsn(3), "LSNs start at 1: the fourth record was cut");
    let cuts = turn.matching("annals::recovery", "torn tail cut");
    assert_eq!(cuts.len(), 1, "{:?}", turn.events());
    let cut = &cuts[0];
    assert_eq!(cut.level, Level::WARN);
    assert_eq!(cut.field("file"), segment.display().to_string());
    assert_eq!(cut.field("offset"), last.to_string());
    assert_eq!(cut.field("from_lsn"), "4");
    assert_eq!(cut.field("access"), "read-write");
    assert!(!cut.field("reason").is_empty());
    let recovered = turn.matching("annals::open", "log recovered");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].field("records"), "3");

    // A second open finds nothing to cut: no warning.
    drop(reopened);
    let turn_events = turn.events().len();
    let again = Log::open(image.path(), common::small_options()).unwrap();
    assert!(turn.events()[turn_events..].iter().all(|e| e.level != Level::WARN), "{:?}", turn.events());
    drop(again);
}

#[test]
fn a_poisoned_log_is_an_error_event_naming_the_cause_once() {
    let turn = Turn::take();
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::default();
    let log = Log::open(dir.path(), fs.options()).unwrap();
    log.append("s", Expectation::Any, &b"durable"[..]).wait().unwrap();
    fs.faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(log.append("s", Expectation::Any, &b"in doubt"[..]).wait().is_err());
    for _ in 0..3 {
        assert!(log.append("s", Expectation::Any, &b"refused"[..]).wait().is_err());
    }
    let poisoned = turn.matching("annals::commit", "log poisoned");
    assert_eq!(poisoned.len(), 1, "the first cause, once: {:?}", turn.events());
    assert_eq!(poisoned[0].level, Level::ERROR);
    assert!(poisoned[0].field("cause").contains("fdatasync"), "{:?}", poisoned[0]);
    assert_eq!(poisoned[0].field("dir"), dir.path().display().to_string());
}

#[test]
fn group_commits_rollovers_and_compactions_are_reported_without_payloads_or_stream_ids() {
    let turn = Turn::take();
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let payload = |i: u64| format!("PAYLOAD-SECRET-{i}-{}", "p".repeat(300));
    for i in 0..40u64 {
        log.append("STREAM-SECRET", Expectation::Exact(StreamSeq(i)), payload(i)).wait().unwrap();
    }
    assert!(log.append("STREAM-SECRET", Expectation::NoStream, &b"PAYLOAD-SECRET-conflict"[..]).wait().is_err());
    log.clear("STREAM-SECRET", Expectation::Any).wait().unwrap();
    let report = log.compact().unwrap();
    log.close().wait().unwrap();

    let groups = turn.matching("annals::commit", "group committed");
    let records: u64 = groups.iter().map(|g| g.field("records").parse::<u64>().unwrap()).sum();
    assert_eq!(records, 41, "40 appends and a clear");
    let conflicts: u64 = groups.iter().map(|g| g.field("conflicts").parse::<u64>().unwrap()).sum();
    assert_eq!(conflicts, 1);
    assert!(groups.iter().all(|g| g.level == Level::TRACE));
    assert!(groups.iter().any(|g| g.field("synced") == "true" && g.field("bytes").parse::<u64>().unwrap() > 300));
    let fsyncs = turn.matching("annals::commit", "fdatasync");
    assert!(fsyncs.len() >= 41, "each Sync append is synced: {}", fsyncs.len());
    let rollovers = turn.matching("annals::commit", "rolled over");
    assert!(rollovers.len() >= 2, "40 records of 300 bytes fill 8 KiB segments");
    assert!(rollovers.iter().all(|r| r.level == Level::DEBUG && r.field("file").ends_with(".seg")));
    let compactions = turn.matching("annals::compact", "compaction committed");
    assert_eq!(compactions.len(), 1);
    assert_eq!(compactions[0].level, Level::INFO);
    assert_eq!(compactions[0].field("reclaimed_bytes"), report.reclaimed_bytes.to_string());
    assert_eq!(compactions[0].field("inputs"), report.inputs.to_string());

    for event in turn.events() {
        for (name, value) in &event.fields {
            assert!(!value.contains("SECRET"), "{name} of {event:?} shows a payload or a stream id");
        }
    }
}
