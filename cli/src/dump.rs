//! `annals dump`: one JSON object per record, in LSN order; with
//! `--salvage`, every intact record of a damaged log.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use annals::inspect::{Damage, scan_intact};
use annals::{LogReader, Lsn, RecordKind, StreamSeq, display_stream};
use serde::Serialize;

use crate::decode::Decoded;
use crate::failure::{Failure, Outcome};
use crate::output::ignore_closed_pipe;
use crate::{DumpArgs, progress};

/// Records read from the log at a time.
const PAGE_RECORDS: usize = 1024;

/// A record as `dump` prints it.
#[derive(Serialize)]
struct DumpLine {
    lsn: Lsn,
    stream: String,
    seq: StreamSeq,
    kind: &'static str,
    len: usize,
    /// With `--decode`, what the payload holds ([`crate::decode`]).
    #[serde(flatten)]
    decoded: Option<Decoded>,
}

impl DumpLine {
    fn new(lsn: Lsn, stream: &[u8], seq: StreamSeq, kind: RecordKind, payload: &[u8], decode: bool) -> DumpLine {
        // Only entries and snapshots carry a caller's value.
        let carries_value = matches!(kind, RecordKind::Entry | RecordKind::Snapshot);
        DumpLine {
            lsn,
            stream: display_stream(stream),
            seq,
            kind: kind.name(),
            len: payload.len(),
            decoded: (decode && carries_value).then(|| crate::decode::decode(payload)),
        }
    }
}

/// Which records to print.
struct Selection<'a> {
    after: Lsn,
    remaining: u64,
    stream: Option<&'a [u8]>,
    decode: bool,
}

pub fn run(args: &DumpArgs) -> Result<Outcome, Failure> {
    let selection = Selection {
        after: Lsn(args.after),
        remaining: args.limit.unwrap_or(u64::MAX),
        stream: args.stream.as_deref().map(str::as_bytes),
        decode: args.decode,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let dumped = if args.salvage {
        dump_salvage(&args.dir, selection, &mut out)
    } else {
        dump_intact_log(&args.dir, selection, &mut out)
    };
    // What was printed before a failure (damage a read found) is flushed
    // before its message, not left in the buffer.
    ignore_closed_pipe(out.flush())?;
    dumped?;
    Ok(Outcome::Done)
}

/// What a dump that meets damage tells its user to do.
const DAMAGE_ADVICE: &str = "run `annals verify` for every problem, or `annals dump --salvage` for the intact records";

/// Prints the selected records of a log that reads whole; refuses a damaged one.
fn dump_intact_log(dir: &Path, mut selection: Selection<'_>, out: &mut impl Write) -> Result<(), Failure> {
    let reader = LogReader::open(dir)?;
    if let Some(problem) = reader.problems().first() {
        return Err(Failure::Corruption(format!("{problem}; {DAMAGE_ADVICE}")));
    }
    let first = selection.after;
    let progress = progress::bar(reader.last_lsn().0.saturating_sub(first.0), "dump");
    let mut page: VecDeque<annals::Record> = VecDeque::new();
    let mut page_records = PAGE_RECORDS;
    while selection.remaining > 0 {
        if page.is_empty() {
            // No more than is left to print (every record read is, without
            // a stream to select): damage past the last record asked for
            // is not this dump's to report.
            let left = match selection.stream {
                None => usize::try_from(selection.remaining).unwrap_or(usize::MAX),
                Some(_) => usize::MAX,
            };
            let wanted = left.min(page_records);
            match reader.read_all(selection.after, wanted) {
                Ok(read) => page.extend(read),
                // Damage in frames the index image covers is found only
                // when read, somewhere in this page: the records before it
                // are read one at a time, so that each is printed before
                // the failure.
                Err(annals::Error::Corruption(_)) if wanted > 1 => {
                    page_records = 1;
                    continue;
                }
                // The same advice as damage the open found.
                Err(error @ annals::Error::Corruption(_)) => {
                    return Err(Failure::Corruption(format!("{error}; {DAMAGE_ADVICE}")));
                }
                Err(error) => return Err(error.into()),
            }
        }
        let Some(record) = page.pop_front() else { break };
        selection.after = record.lsn;
        progress.set_position(record.lsn.0 - first.0);
        if selection.stream.is_some_and(|stream| stream != record.stream.as_ref()) {
            continue;
        }
        let line =
            DumpLine::new(record.lsn, &record.stream, record.seq, record.kind, &record.payload, selection.decode);
        if !print_line(out, &line)? {
            break;
        }
        selection.remaining -= 1;
    }
    progress.finish_and_clear();
    Ok(())
}

/// `dump --salvage`: every selected intact record, past damage, with the
/// damage on stderr.
fn dump_salvage(dir: &Path, mut selection: Selection<'_>, out: &mut impl Write) -> Result<(), Failure> {
    let progress = progress::spinner(format!("salvaging the intact records of {}", dir.display()));
    let mut failure = None;
    let scan = scan_intact(&annals::fs::RealFs, dir, |_, _, frame| {
        progress.inc(1);
        for op in frame.ops() {
            if selection.remaining == 0 || op.lsn <= selection.after {
                continue;
            }
            if selection.stream.is_some_and(|stream| stream != op.stream) {
                continue;
            }
            let line = DumpLine::new(op.lsn, op.stream, op.seq, op.kind, op.payload, selection.decode);
            match print_line(out, &line) {
                Ok(true) => selection.remaining -= 1,
                Ok(false) => selection.remaining = 0,
                Err(error) => (selection.remaining, failure) = (0, Some(error)),
            }
        }
    });
    progress.finish_and_clear();
    let scan = scan?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if !scan.damage.is_empty() {
        eprintln!("annals: warning: the log is damaged; only intact records were read");
        for Damage { file, offset, bytes, what } in &scan.damage {
            eprintln!("annals: damaged {bytes} bytes in {} at offset {offset}: {what}", file.display());
        }
    }
    Ok(())
}

/// Prints one line; `false` once the reader has gone away (a closed pipe).
fn print_line(out: &mut impl Write, line: &DumpLine) -> Result<bool, Failure> {
    let written = serde_json::to_writer(&mut *out, line).map_err(io::Error::from).and_then(|()| writeln!(out));
    match written {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(Failure::runtime("writing to stdout", error)),
    }
}
