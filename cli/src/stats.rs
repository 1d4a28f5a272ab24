//! `annals stats`: where a log's disk goes, per segment and in total, read
//! without changing or locking anything (read-only media and a live writer
//! are fine, as for `verify`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use annals::LogReader;
use annals::stats::{LogStats, SpaceStats};
use serde::Serialize;

use crate::failure::{Failure, Outcome};
use crate::output::{self, Report};
use crate::{StatsArgs, progress};

/// What `stats` found.
#[derive(Serialize)]
struct StatsReport {
    dir: PathBuf,
    #[serde(flatten)]
    stats: LogStats,
    /// The lengths of every file in the directory: the segments, the state
    /// file, the lock file and any spare segment.
    directory_bytes: u64,
    /// Which frames the reader read, and so could find damage in.
    frames_checked: FramesChecked,
    /// Every corruption found. The figures then cover only the records
    /// the reader could index.
    problems: Vec<Problem>,
}

/// Which frames `stats` read. It reads no more than an open does: with a
/// valid index image, only the frames after it; damage under the image is
/// not found (its exit code is then 0), which `annals verify` checks.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum FramesChecked {
    /// Every frame: no index image was loaded.
    All,
    /// The frames after the index image only.
    AfterIndexImage,
}

/// One corruption, where it is.
#[derive(Serialize)]
struct Problem {
    file: PathBuf,
    offset: u64,
    what: String,
}

impl Report for StatsReport {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let stats = &self.stats;
        let name_width = stats.segments.iter().map(|segment| segment.file.len()).chain([7]).max().unwrap_or(7);
        writeln!(
            out,
            "{:<name_width$}  {:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  {:>12}",
            "segment", "compacted", "file bytes", "written", "live", "dead", "unused", "amplif.", "live records"
        )?;
        for segment in &stats.segments {
            let compacted = if segment.compacted { "yes" } else { "no" };
            write_space_row(out, &segment.file, compacted, &segment.space, name_width)?;
        }
        write_space_row(out, "total", "", &stats.total, name_width)?;
        writeln!(out, "streams {}", stats.streams)?;
        writeln!(out, "live records {} of {} operations on disk", stats.total.live_records, stats.operations)?;
        writeln!(out, "oldest lsn held {}\nnext lsn {}", stats.oldest_lsn, stats.next_lsn)?;
        match &stats.oldest_record {
            Some(oldest) => writeln!(out, "oldest live record lsn {}, {} old", oldest.lsn, age(oldest.age_ms))?,
            None if !self.problems.is_empty() => writeln!(out, "oldest live record unknown (damage, below)")?,
            None => writeln!(out, "oldest live record none")?,
        }
        match stats.index_image_age_ms {
            Some(age_ms) => writeln!(
                out,
                "index image {} old (the frames it covers were not read: `annals verify` checks every frame)",
                age(age_ms)
            )?,
            None => writeln!(out, "index image none loaded (open scanned every segment)")?,
        }
        writeln!(out, "directory bytes {}", self.directory_bytes)?;
        for problem in &self.problems {
            writeln!(out, "corruption in {} at offset {}: {}", problem.file.display(), problem.offset, problem.what)?;
        }
        if !self.problems.is_empty() {
            writeln!(out, "corrupt: the figures cover the intact records only; `annals verify` says more")?;
        }
        Ok(())
    }
}

fn write_space_row(
    out: &mut dyn Write,
    name: &str,
    compacted: &str,
    space: &SpaceStats,
    name_width: usize,
) -> io::Result<()> {
    let amplification = space.space_amplification.map_or_else(|| "-".to_owned(), |a| format!("{a:.2}"));
    writeln!(
        out,
        "{name:<name_width$}  {compacted:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {amplification:>8}  {:>12}",
        space.file_bytes,
        space.written_bytes,
        space.live_bytes,
        space.dead_bytes,
        space.unused_bytes,
        space.live_records
    )
}

/// A duration for people: ms, s, min, h or days.
fn age(ms: u64) -> String {
    const SECOND: u64 = 1000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let (unit, name) = match ms {
        0..SECOND => return format!("{ms} ms"),
        SECOND..MINUTE => (SECOND, "s"),
        MINUTE..HOUR => (MINUTE, "min"),
        HOUR..DAY => (HOUR, "h"),
        DAY.. => (DAY, "days"),
    };
    format!("{:.1} {name}", ms as f64 / unit as f64)
}

pub fn run(args: &StatsArgs) -> Result<Outcome, Failure> {
    let spinner = progress::spinner(format!("reading {}", args.dir.display()));
    let report = measure(&args.dir);
    spinner.finish_and_clear();
    let report = report?;
    output::print(&report, args.json)?;
    Ok(if report.problems.is_empty() { Outcome::Done } else { Outcome::CorruptionFound })
}

fn measure(dir: &Path) -> Result<StatsReport, Failure> {
    let reader = LogReader::open(dir)?;
    let stats = reader.stats()?;
    let problems = reader
        .problems()
        .iter()
        .map(|problem| Problem { file: problem.file.clone(), offset: problem.offset, what: problem.kind.to_string() })
        .collect();
    let frames_checked =
        if stats.index_image_age_ms.is_some() { FramesChecked::AfterIndexImage } else { FramesChecked::All };
    Ok(StatsReport { dir: dir.to_path_buf(), stats, directory_bytes: directory_bytes(dir)?, frames_checked, problems })
}

/// The lengths of the files directly in `dir`. A file removed while it is
/// listed (a compaction's input, a spare renamed into place) is skipped.
fn directory_bytes(dir: &Path) -> Result<u64, Failure> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| Failure::runtime(format!("listing {}", dir.display()), error))?;
    Ok(entries
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_shown_in_the_largest_unit_they_fill() {
        assert_eq!(age(0), "0 ms");
        assert_eq!(age(999), "999 ms");
        assert_eq!(age(1_500), "1.5 s");
        assert_eq!(age(90_000), "1.5 min");
        assert_eq!(age(5_400_000), "1.5 h");
        assert_eq!(age(3 * 86_400_000), "3.0 days");
        assert_eq!(age(u64::MAX), format!("{:.1} days", u64::MAX as f64 / 86_400_000.0));
    }
}
