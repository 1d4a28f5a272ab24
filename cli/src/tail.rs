//! `annals tail`: prints the log's records as they become durable, beside
//! a writer that has the log open (in another process, or none).
//!
//! It reads with a `LogReader` (no lock, nothing written) and, with
//! `--follow`, polls: each round applies what the writer appended since
//! (`LogReader::refresh`) and prints the records the log's own frames say
//! are durable (`LogReader::read_durable`). A process cannot see another's
//! fdatasync; every frame records the writer's durable end when it was
//! written, a sealed segment is wholly durable and the clean-close marker
//! vouches for everything before it. So `tail` never prints a record a
//! power cut could take (nor, after one, an LSN that could stand for other
//! content), and prints the writer's last group once the next one, a
//! rollover or the close says it is durable.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use annals::{LogReader, Lsn, Record, StreamSeq, display_stream};
use serde::Serialize;

use crate::TailArgs;
use crate::failure::{Failure, Outcome};

/// A record as `tail` prints it.
#[derive(Serialize)]
struct TailLine {
    lsn: Lsn,
    stream: String,
    seq: StreamSeq,
    kind: &'static str,
    len: usize,
    timestamp_ms: u64,
}

impl TailLine {
    fn new(record: &Record) -> TailLine {
        TailLine {
            lsn: record.lsn,
            stream: display_stream(&record.stream),
            seq: record.seq,
            kind: record.kind.name(),
            len: record.payload.len(),
            timestamp_ms: record.timestamp_ms,
        }
    }

    fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let TailLine { lsn, stream, seq, kind, len, timestamp_ms } = self;
        writeln!(out, "lsn {lsn} stream {stream} seq {seq} {kind} {len} bytes at {timestamp_ms} ms")
    }
}

pub fn run(args: &TailArgs) -> Result<Outcome, Failure> {
    let interrupted = if args.follow { Some(stop_on_signal()?) } else { None };
    let mut reader = LogReader::open(&args.dir)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let stream = args.stream.as_deref().map(str::as_bytes);
    let mut after = Lsn(args.after);
    let mut batch = Vec::new();
    loop {
        if let Some(problem) = reader.problems().first() {
            return Err(Failure::Corruption(format!("{problem}; run `annals verify` for every problem")));
        }
        // Everything durable that the reader sees now.
        loop {
            batch.clear();
            // A record indexed from the persisted image has its checksum
            // checked as it is read: damage shows here, not at open.
            let read_to = reader.read_durable(after, &mut batch).map_err(|error| match error {
                annals::Error::Corruption(_) => {
                    Failure::Corruption(format!("{error}; run `annals verify` for every problem"))
                }
                other => other.into(),
            })?;
            for record in batch.iter().filter(|record| stream.is_none_or(|id| id == &record.stream[..])) {
                let line = TailLine::new(record);
                let written = if args.json {
                    serde_json::to_writer(&mut out, &line).map_err(io::Error::from).and_then(|()| writeln!(out))
                } else {
                    line.write_text(&mut out)
                };
                if !keep_writing(written)? {
                    return Ok(Outcome::Done);
                }
            }
            if read_to == after {
                break;
            }
            after = read_to;
        }
        if !keep_writing(out.flush())? {
            return Ok(Outcome::Done);
        }
        let Some(interrupted) = &interrupted else { return Ok(Outcome::Done) };
        if interrupted.load(Ordering::SeqCst) {
            return Ok(Outcome::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
        reader.refresh()?;
    }
}

/// `Ok(false)` once whoever read stdout went away (a closed pipe): there
/// is no one left to print for.
fn keep_writing(written: io::Result<()>) -> Result<bool, Failure> {
    match written {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(Failure::runtime("writing to stdout", error)),
    }
}

/// A flag SIGINT and SIGTERM set: `--follow` stops at its next round.
fn stop_on_signal() -> Result<Arc<AtomicBool>, Failure> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|error| Failure::runtime("installing the SIGINT and SIGTERM handler", error))?;
    Ok(interrupted)
}
