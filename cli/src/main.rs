//! The `annals` command: load a log with a synthetic workload; verify, dump,
//! repair, measure, compact and tail one.
//!
//! Each command parses its arguments with clap (validated and bounded before
//! anything is allocated), reports through a typed struct that is printed as
//! text or, with `--json`, serialized, and ends with one of the exit codes in
//! [`failure`].

mod compact;
mod decode;
mod dump;
mod failure;
mod latency;
mod load;
mod output;
mod paths;
mod progress;
mod repair;
mod stats;
mod tail;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum, value_parser};
use serde::Serialize;

use crate::failure::EXIT_CODES_HELP;

/// The most streams `load` spreads its records over. The index keeps about
/// 190 bytes per stream besides its id (README, "Costs"), so a million take
/// about 200 MB.
const STREAMS_MAX: u64 = 1_000_000;

/// The largest payload `load` writes: the log's default record limit (16 MiB
/// of frame body) less 1 KiB, which holds the operation header and the
/// stream id with room to spare.
const PAYLOAD_BYTES_MAX: u64 = (16 << 20) - 1024;

/// The most appenders `load` runs at once: the log's request queue holds
/// 4,096 (`Options::queue_requests_max`), so more would only wait.
const CONCURRENCY_MAX: u64 = 4096;

/// Load, verify, dump, repair, measure, compact and tail an Annals log.
#[derive(Parser)]
#[command(name = "annals", version, propagate_version = true, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append a synthetic workload after whatever the log holds, and print
    /// what was measured
    #[command(after_help = EXIT_CODES_HELP)]
    Load(LoadArgs),
    /// Check every record of a log without changing or locking anything
    #[command(after_help = EXIT_CODES_HELP)]
    Verify(VerifyArgs),
    /// Print every record as one JSON object per line, in LSN order
    #[command(after_help = EXIT_CODES_HELP)]
    Dump(DumpArgs),
    /// Copy every intact record of a damaged log into a new log
    #[command(after_help = EXIT_CODES_HELP)]
    Repair(RepairArgs),
    /// Show where the log's disk goes, per segment and in total, without
    /// changing or locking anything (it reads the frames an open reads:
    /// those after the index image; `verify` checks every frame)
    #[command(after_help = EXIT_CODES_HELP)]
    Stats(StatsArgs),
    /// Rewrite the sealed segments with only their live records, and give
    /// back the disk the others took
    #[command(after_help = EXIT_CODES_HELP)]
    Compact(CompactArgs),
    /// Print records as they become durable, beside a writer that has the
    /// log open; with --follow, keep printing until SIGINT or SIGTERM
    #[command(after_help = EXIT_CODES_HELP)]
    Tail(TailArgs),
}

/// `annals load`.
#[derive(Args)]
struct LoadArgs {
    /// The log's directory, created if it does not exist
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Streams to append to, round-robin (stream-0, stream-1, ...), 1 to 1,000,000
    #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true, value_parser = value_parser!(u64).range(1..=STREAMS_MAX))]
    streams: u64,
    /// Records to append, at least 1 (memory does not grow with it)
    #[arg(long, value_name = "M", default_value_t = 10_000, allow_negative_numbers = true, value_parser = value_parser!(u64).range(1..))]
    records: u64,
    /// Bytes of each payload, 0 to 16,776,192 (16 MiB less 1 KiB for headers)
    #[arg(long, value_name = "B", default_value_t = 200, allow_negative_numbers = true, value_parser = value_parser!(u64).range(..=PAYLOAD_BYTES_MAX))]
    payload_bytes: u64,
    /// Appends in flight at once, 1 to 4,096 (the log queues at most 4,096)
    #[arg(long, value_name = "C", default_value_t = 1, allow_negative_numbers = true, value_parser = value_parser!(u64).range(1..=CONCURRENCY_MAX))]
    concurrency: u64,
    /// When an append is acknowledged
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    durability: DurabilityArg,
    /// Appends `LSN STREAM SEQ` to FILE (outside DIR) for every append, once it is acknowledged [default: none]
    #[arg(long, value_name = "FILE")]
    ack_log: Option<PathBuf>,
    /// Prints the summary as one JSON object [default: off]
    #[arg(long)]
    json: bool,
}

/// `Durability`, as `load --durability` names it.
#[derive(Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityArg {
    /// After an fdatasync: survives a power cut
    Sync,
    /// Once written to the operating system: survives a crash of the process
    Flush,
    /// Once written, synced in the background every 100 ms
    Periodic,
}

impl DurabilityArg {
    fn name(self) -> &'static str {
        match self {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Flush => "flush",
            DurabilityArg::Periodic => "periodic",
        }
    }
}

impl From<DurabilityArg> for annals::Durability {
    fn from(arg: DurabilityArg) -> annals::Durability {
        match arg {
            DurabilityArg::Sync => annals::Durability::Sync,
            DurabilityArg::Flush => annals::Durability::Flush,
            DurabilityArg::Periodic => annals::Durability::Periodic,
        }
    }
}

/// `annals verify`.
#[derive(Args)]
struct VerifyArgs {
    /// The log's directory
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Prints the report as one JSON object [default: off]
    #[arg(long)]
    json: bool,
}

/// `annals dump`.
#[derive(Args)]
struct DumpArgs {
    /// The log's directory
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Prints only the records of stream ID [default: every stream]
    #[arg(long, value_name = "ID")]
    stream: Option<String>,
    /// Prints only records after LSN
    #[arg(long, value_name = "LSN", default_value_t = 0, allow_negative_numbers = true)]
    after: u64,
    /// Prints at most N records [default: no limit]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    limit: Option<u64>,
    /// Prints every intact record of a damaged log, and the damage on stderr [default: off]
    #[arg(long)]
    salvage: bool,
    /// Shows what each payload holds: a typed store's value as JSON (`value`, `schema`, `history`), other bytes escaped (`bytes`), a value that does not decode with its reason (`decode_error`) [default: off]
    #[arg(long)]
    decode: bool,
}

/// `annals repair`.
#[derive(Args)]
struct RepairArgs {
    /// The damaged log's directory, only ever read
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// A new directory for the copy, outside DIR (missing or empty)
    #[arg(long, value_name = "NEW")]
    into: PathBuf,
    /// Prints the report as one JSON object [default: off]
    #[arg(long)]
    json: bool,
}

/// `annals stats`.
#[derive(Args)]
struct StatsArgs {
    /// The log's directory
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Prints the report as one JSON object [default: off]
    #[arg(long)]
    json: bool,
}

/// `annals compact`.
#[derive(Args)]
struct CompactArgs {
    /// The log's directory (opened for writing: no other process may have it open)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Prints the report as one JSON object [default: off]
    #[arg(long)]
    json: bool,
}

/// The longest `tail --follow` waits between two looks at the log, in ms.
const POLL_MS_MAX: u64 = 60_000;

/// `annals tail`.
#[derive(Args)]
struct TailArgs {
    /// The log's directory (only ever read: a writer may have it open)
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Keeps printing records as they become durable, until SIGINT or SIGTERM [default: off]
    #[arg(long)]
    follow: bool,
    /// Prints only records after LSN (0: from the oldest record)
    #[arg(long, value_name = "LSN", default_value_t = 0, allow_negative_numbers = true)]
    after: u64,
    /// Prints only the records of stream ID [default: every stream]
    #[arg(long, value_name = "ID")]
    stream: Option<String>,
    /// With --follow, milliseconds between two looks at the log, 1 to 60,000
    #[arg(long, value_name = "MS", default_value_t = 100, allow_negative_numbers = true, value_parser = value_parser!(u64).range(1..=POLL_MS_MAX))]
    poll_ms: u64,
    /// Prints each record as one JSON object per line [default: off]
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // a usage error exits 2 here, --help and --version 0
    let outcome = match cli.command {
        Command::Load(args) => load::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Dump(args) => dump::run(&args),
        Command::Repair(args) => repair::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Compact(args) => compact::run(&args),
        Command::Tail(args) => tail::run(&args),
    };
    match outcome {
        Ok(outcome) => outcome.exit_code(),
        Err(failure) => {
            eprintln!("annals: error: {failure}");
            failure.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own checks of the definitions (conflicting names, bad defaults).
    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A payload of the largest size fits a record of the default limit with
    /// the longest stream id `load` makes.
    #[test]
    fn the_largest_payload_fits_a_default_record() {
        let longest_stream = format!("stream-{}", STREAMS_MAX - 1).len();
        let body = PAYLOAD_BYTES_MAX as usize + annals::frame::OP_HEADER_BYTES + longest_stream;
        assert!(body <= annals::Options::default().record_bytes_max);
    }
}
