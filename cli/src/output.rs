//! Printing a command's report: as text for people, or as one JSON object
//! with `--json`, from the same typed struct.

use std::io::{self, Write};

use serde::Serialize;

use crate::failure::Failure;

/// A report a command prints.
pub trait Report: Serialize {
    /// The report as lines of text.
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Prints `report` on stdout, as JSON when `json`. A reader that went
/// away (a closed pipe) is not an error: there is no one left to tell.
pub fn print(report: &impl Report, json: bool) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = if json {
        serde_json::to_writer(&mut out, report).map_err(io::Error::from).and_then(|()| writeln!(out))
    } else {
        report.write_text(&mut out)
    };
    ignore_closed_pipe(written.and_then(|()| out.flush()))
}

/// `Ok` for a write that succeeded or met a closed pipe.
pub fn ignore_closed_pipe(written: io::Result<()>) -> Result<(), Failure> {
    match written {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(Failure::runtime("writing to stdout", error)),
        _ => Ok(()),
    }
}
