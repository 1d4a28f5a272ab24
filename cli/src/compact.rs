//! `annals compact`: opens a log for writing, compacts it now
//! (`Log::compact`: every sealed segment rewritten with only its live
//! records, their LSNs kept), closes it cleanly and prints what was done.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use annals::segment::{parse_compacted_file_name, parse_segment_file_name};
use annals::state::STATE_FILE_NAME;
use annals::{CompactionReport, Log, Options};
use serde::Serialize;

use crate::failure::{Failure, Outcome};
use crate::output::{self, Report};
use crate::{CompactArgs, progress};

/// What `compact` did.
#[derive(Serialize)]
struct CompactSummary {
    dir: PathBuf,
    #[serde(flatten)]
    report: CompactionReport,
}

impl Report for CompactSummary {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let report = &self.report;
        if report.generation == 0 {
            return writeln!(
                out,
                "nothing to compact in {}: its sealed segments hold nothing dead and nothing to trim \
                 (the segment being appended to is never compacted)",
                self.dir.display()
            );
        }
        writeln!(out, "compacted {} (compaction generation {})", self.dir.display(), report.generation)?;
        writeln!(
            out,
            "read {} ({} bytes), wrote {} ({} bytes)",
            count(report.inputs as u64, "segment"),
            report.input_bytes,
            count(report.outputs as u64, "compacted segment"),
            report.output_bytes
        )?;
        writeln!(
            out,
            "kept {}, dropped {}, wrote {}",
            count(report.records_kept, "record"),
            count(report.operations_dropped, "operation"),
            count(report.bases_written, "stream base")
        )?;
        writeln!(out, "reclaimed {} bytes", report.reclaimed_bytes)?;
        for leftover in &report.leftovers {
            writeln!(out, "left {}: no longer part of the log; the next open removes it", leftover.display())?;
        }
        Ok(())
    }
}

/// `1 segment`, `2 segments`.
fn count(n: u64, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

pub fn run(args: &CompactArgs) -> Result<Outcome, Failure> {
    let spinner = progress::spinner(format!("compacting {}", args.dir.display()));
    let report = compact(args);
    spinner.finish_and_clear();
    let summary = CompactSummary { dir: args.dir.clone(), report: report? };
    output::print(&summary, args.json)?;
    Ok(Outcome::Done)
}

/// Opens, compacts and closes the log. The log is closed whether the
/// compaction went through or not; a compaction's own failure is the one
/// reported.
fn compact(args: &CompactArgs) -> Result<CompactionReport, Failure> {
    refuse_what_is_not_a_log(&args.dir)?;
    let log = Log::open(&args.dir, Options::default())?;
    let compacted = log.compact();
    let closed = log.close().wait();
    let report = compacted?;
    closed.map_err(|error| {
        Failure::runtime(
            format!("compaction generation {} committed, but closing the log failed", report.generation),
            error,
        )
    })?;
    Ok(report)
}

/// `Log::open` makes a new log where there is none; compacting must not, so
/// a directory without a segment or a state file (or no directory) is
/// refused first, as the read-only commands refuse it.
fn refuse_what_is_not_a_log(dir: &Path) -> Result<(), Failure> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| Failure::runtime(format!("reading {}", dir.display()), error))?;
    let of_a_log = |name: &str| {
        name == STATE_FILE_NAME || parse_segment_file_name(name).is_some() || parse_compacted_file_name(name).is_some()
    };
    if entries.filter_map(Result::ok).any(|entry| entry.file_name().to_str().is_some_and(of_a_log)) {
        Ok(())
    } else {
        Err(annals::Error::NotALog { dir: dir.to_owned() }.into())
    }
}
