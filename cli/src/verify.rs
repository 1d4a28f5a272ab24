//! `annals verify`: checks every record of a log without changing or
//! locking anything, and reports what it found.

use std::io::{self, Write};
use std::path::PathBuf;

use annals::inspect::{Damage, scan_intact};
use annals::{IndexStats, LogReader, Lsn};
use serde::Serialize;

use crate::failure::{Failure, Outcome};
use crate::output::{self, Report};
use crate::{VerifyArgs, progress};

/// What `verify` found.
#[derive(Serialize)]
struct VerifyReport {
    dir: PathBuf,
    segments: usize,
    /// Streams; under damage, those of the intact records.
    streams: usize,
    /// Records; under damage, the intact ones.
    records: u64,
    bytes: u64,
    last_lsn: Lsn,
    format_version: u32,
    /// A torn tail (which opening would cut) and every corruption.
    problems: Vec<Problem>,
    /// Under damage, every damaged range.
    damage: Vec<Damage>,
    /// The index of a log that opened clean; `null` for a corrupt one,
    /// whose index says nothing of the intact records counted above.
    index: Option<IndexStats>,
}

/// One thing wrong with the log.
#[derive(Serialize)]
struct Problem {
    kind: ProblemKind,
    file: PathBuf,
    offset: u64,
    /// Bytes affected, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    what: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ProblemKind {
    /// Damage past the durable end of the newest segment, which opening
    /// cuts: not corruption.
    TornTail,
    Corruption,
}

impl VerifyReport {
    fn corrupt(&self) -> bool {
        self.problems.iter().any(|problem| problem.kind == ProblemKind::Corruption)
    }
}

impl Report for VerifyReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let intact = if self.corrupt() { "intact " } else { "" };
        writeln!(out, "segments {}", self.segments)?;
        writeln!(out, "{intact}streams {}\n{intact}records {}", self.streams, self.records)?;
        writeln!(out, "bytes {}\nlast lsn {}\nformat version {}", self.bytes, self.last_lsn, self.format_version)?;
        // A corrupt log's index says nothing of the records counted above
        // (they are the intact frames'), so it is left out rather than
        // shown as "0 entries in 0 streams".
        if let Some(index) = &self.index {
            let index_bytes = index.entry_bytes + index.stream_overhead_bytes + index.checkpoint_bytes;
            writeln!(
                out,
                "index {index_bytes} bytes for {} entries in {} streams (stream ids {} bytes more)",
                index.entries, index.streams, index.stream_id_bytes
            )?;
        }
        for problem in &self.problems {
            let kind = match problem.kind {
                ProblemKind::TornTail => "torn_tail",
                ProblemKind::Corruption => "corruption",
            };
            writeln!(out, "{kind} in {} at offset {}: {}", problem.file.display(), problem.offset, problem.what)?;
        }
        for Damage { file, offset, bytes, what } in &self.damage {
            writeln!(out, "damaged {bytes} bytes in {} at offset {offset}: {what}", file.display())?;
        }
        if self.corrupt() {
            writeln!(out, "corrupt: `annals repair {} --into NEW` copies every intact record out", self.dir.display())
        } else {
            writeln!(out, "clean")
        }
    }
}

pub fn run(args: &VerifyArgs) -> Result<Outcome, Failure> {
    let spinner = progress::spinner(format!("verifying {}", args.dir.display()));
    let report = check(args);
    spinner.finish_and_clear();
    let report = report?;
    output::print(&report, args.json)?;
    Ok(if report.corrupt() { Outcome::CorruptionFound } else { Outcome::Done })
}

fn check(args: &VerifyArgs) -> Result<VerifyReport, Failure> {
    // Every frame read and checked: not from the index image.
    let reader = LogReader::open_scanning(&args.dir, &annals::Options::default())?;
    let recovery = reader.report();
    let mut problems = Vec::new();
    if let Some(torn) = &recovery.torn_tail {
        problems.push(Problem {
            kind: ProblemKind::TornTail,
            file: torn.file.clone(),
            offset: torn.offset,
            bytes: Some(torn.bytes),
            what: format!("torn tail from lsn {} ({}); open would cut it", torn.from_lsn, torn.reason),
        });
    }
    for corruption in reader.problems() {
        problems.push(Problem {
            kind: ProblemKind::Corruption,
            file: corruption.file.clone(),
            offset: corruption.offset,
            bytes: None,
            what: corruption.kind.to_string(),
        });
    }
    let mut report = VerifyReport {
        dir: args.dir.clone(),
        segments: recovery.segments,
        streams: reader.stream_count(),
        records: recovery.records,
        bytes: recovery.bytes,
        last_lsn: reader.last_lsn(),
        format_version: recovery.format_version,
        problems,
        damage: Vec::new(),
        index: Some(reader.index_stats()),
    };
    if report.corrupt() {
        report.index = None;
        // Count what is actually readable: every intact frame, past the
        // damage too.
        let scan = scan_intact(&annals::fs::RealFs, &args.dir, |_, _, _| {})?;
        (report.records, report.streams, report.last_lsn, report.damage) =
            (scan.records, scan.streams, scan.last_lsn, scan.damage);
    }
    Ok(report)
}
