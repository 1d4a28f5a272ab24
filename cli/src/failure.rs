//! How a command ends: its exit code, and the error it prints.

use std::fmt;
use std::process::ExitCode;

/// The command did what was asked (verify: the log is clean).
pub const EXIT_OK: u8 = 0;
/// Corruption found: verify or stats found damage, or a command refused a
/// damaged log.
pub const EXIT_CORRUPTION: u8 = 1;
/// Usage error: what clap exits with for an unknown command or flag, a
/// missing or invalid value; also arguments that cannot work together.
pub const EXIT_USAGE: u8 = 2;
/// Runtime failure: the log could not be read or written.
pub const EXIT_RUNTIME: u8 = 3;
/// `load` stopped on SIGINT or SIGTERM, closed the log and printed its
/// summary; `tail --follow` stopped on one, after printing every durable
/// record it had read (128 + SIGINT, as shells report an interrupted command).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit codes as every `--help` shows them (the README repeats them).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (verify: the log is clean; a torn tail that opening would cut is not corruption)
  1    corruption found: verify or stats found damage, or dump, load, compact or tail refused a damaged log
  2    usage error: an unknown command or flag, a missing or invalid value, arguments that cannot work together
  3    runtime failure: the log could not be read or written (no such directory, not an Annals log,
       no permission, an I/O error, a log locked by another process, a full disk)
  130  load was interrupted (SIGINT or SIGTERM): it closed the log cleanly and printed its summary;
       tail --follow was stopped the same way";

/// How a command that ran to its end finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked was done.
    Done,
    /// The report was printed, and it found corruption.
    CorruptionFound,
    /// Stopped early on a signal, cleanly.
    Interrupted,
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Done => EXIT_OK,
            Outcome::CorruptionFound => EXIT_CORRUPTION,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        })
    }
}

/// Why a command stopped short, with the message it prints.
#[derive(Debug)]
pub enum Failure {
    /// The log is damaged, and the command does not go past damage.
    Corruption(String),
    /// The arguments cannot work, found after parsing.
    Usage(String),
    /// Reading or writing failed.
    Runtime(String),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Corruption(_) => EXIT_CORRUPTION,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Runtime(_) => EXIT_RUNTIME,
        })
    }

    /// A runtime failure while doing `what`.
    pub fn runtime(what: impl fmt::Display, error: impl fmt::Display) -> Failure {
        Failure::Runtime(format!("{what}: {error}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Corruption(message) | Failure::Usage(message) | Failure::Runtime(message) => f.write_str(message),
        }
    }
}

impl From<annals::Error> for Failure {
    fn from(error: annals::Error) -> Failure {
        match error {
            annals::Error::Corruption(_) => Failure::Corruption(error.to_string()),
            annals::Error::InvalidArgument(_) => Failure::Usage(error.to_string()),
            _ => Failure::Runtime(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_codes_are_distinct_and_the_help_lists_each() {
        let codes = [EXIT_OK, EXIT_CORRUPTION, EXIT_USAGE, EXIT_RUNTIME, EXIT_INTERRUPTED];
        for (i, code) in codes.iter().enumerate() {
            assert!(!codes[..i].contains(code), "exit code {code} has two meanings");
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {code} ")), "the help does not list exit code {code}");
        }
    }

    #[test]
    fn library_errors_map_to_corruption_usage_or_runtime() {
        let not_a_log = annals::Error::NotALog { dir: "x".into() };
        assert!(matches!(Failure::from(not_a_log), Failure::Runtime(_)));
        let invalid = annals::Error::InvalidArgument("into is not empty".into());
        assert!(matches!(Failure::from(invalid), Failure::Usage(_)));
    }
}
