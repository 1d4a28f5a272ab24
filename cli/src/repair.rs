//! `annals repair`: copies every intact record of a damaged log into a new
//! log, and reports exactly what it dropped. Never modifies the source.

use std::io::{self, Write};
use std::path::PathBuf;

use annals::Options;
use annals::inspect::{Damage, RepairReport};
use serde::Serialize;

use crate::failure::{Failure, Outcome};
use crate::output::{self, Report};
use crate::{RepairArgs, paths, progress};

/// Records dropped that the text report names one by one; a damaged
/// segment can cost every record after the damage in its streams, which
/// would bury the report's other lines. `--json` lists them all.
const DROPPED_RECORDS_SHOWN_MAX: usize = 20;

/// What `repair` copied and dropped.
#[derive(Serialize)]
struct RepairSummary {
    from: PathBuf,
    into: PathBuf,
    #[serde(flatten)]
    report: RepairReport,
}

impl Report for RepairSummary {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let report = &self.report;
        writeln!(out, "copied {} records into {}", report.records_copied, self.into.display())?;
        for Damage { file, offset, bytes, what } in &report.scan.damage {
            writeln!(out, "dropped {bytes} damaged bytes in {} at offset {offset}: {what}", file.display())?;
        }
        for dropped in report.records_dropped.iter().take(DROPPED_RECORDS_SHOWN_MAX) {
            writeln!(
                out,
                "dropped the record at lsn {} ({} at offset {}): {}",
                dropped.lsn,
                dropped.file.display(),
                dropped.offset,
                dropped.why
            )?;
        }
        if let Some(more) = report.records_dropped.len().checked_sub(DROPPED_RECORDS_SHOWN_MAX).filter(|&more| more > 0)
        {
            writeln!(out, "dropped {more} more records (`--json` lists every one)")?;
        }
        if report.scan.damage.is_empty() && report.records_dropped.is_empty() {
            writeln!(out, "nothing was damaged; the copy is complete")?;
        }
        Ok(())
    }
}

pub fn run(args: &RepairArgs) -> Result<Outcome, Failure> {
    if paths::inside(&args.into, &args.dir) {
        return Err(Failure::Usage(format!(
            "repair never modifies the source: --into must be outside {}, not {}",
            args.dir.display(),
            args.into.display()
        )));
    }
    let spinner =
        progress::spinner(format!("copying the intact records of {} into {}", args.dir.display(), args.into.display()));
    let report = annals::inspect::repair(&args.dir, &args.into, Options::default());
    spinner.finish_and_clear();
    let summary = RepairSummary { from: args.dir.clone(), into: args.into.clone(), report: report? };
    output::print(&summary, args.json)?;
    Ok(Outcome::Done)
}
