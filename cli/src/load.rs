//! `annals load`: appends a synthetic workload and prints what it measured.
//! SIGINT or SIGTERM stops the appending; the log is closed cleanly and the
//! summary of what was acknowledged is printed all the same.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use annals::{Appended, Expectation, Log, Lsn, Options};
use bytes::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::failure::{EXIT_INTERRUPTED, Failure, Outcome};
use crate::latency::Histogram;
use crate::output::{self, Report};
use crate::{DurabilityArg, LoadArgs, progress};

/// What `load` measured.
#[derive(Serialize)]
struct LoadSummary {
    dir: PathBuf,
    durability: DurabilityArg,
    streams: u64,
    payload_bytes: u64,
    concurrency: u64,
    /// Records the log held when it was opened.
    records_before: u64,
    /// Records asked for.
    records_requested: u64,
    /// Records appended and acknowledged by this run.
    records: u64,
    /// A signal stopped the run before every record was appended.
    interrupted: bool,
    /// The log was closed cleanly (its next open finds a clean close).
    closed_cleanly: bool,
    last_lsn: Lsn,
    seconds: f64,
    appends_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

impl Report for LoadSummary {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "dir {}", self.dir.display())?;
        writeln!(out, "durability {}", self.durability.name())?;
        writeln!(
            out,
            "streams {}\npayload bytes {}\nconcurrency {}",
            self.streams, self.payload_bytes, self.concurrency
        )?;
        writeln!(out, "records before {}", self.records_before)?;
        writeln!(out, "records {} of {}", self.records, self.records_requested)?;
        writeln!(out, "last lsn {}", self.last_lsn)?;
        writeln!(out, "seconds {:.3}\nappends/s {:.0}", self.seconds, self.appends_per_sec)?;
        writeln!(out, "p50 {} us\np99 {} us", self.p50_us, self.p99_us)?;
        if self.interrupted {
            let closed = if self.closed_cleanly { "the log was closed cleanly" } else { "the log failed to close" };
            writeln!(out, "interrupted: stopped appending on a signal; {closed}")?;
        }
        Ok(())
    }
}

/// What the appenders share.
struct Workload {
    log: Log,
    /// Each stream's id, made once rather than formatted for every append:
    /// load measures the log, not itself. Only as many as there are
    /// records (at most `STREAMS_MAX`, a few tens of MB beside the index's
    /// own hundred).
    names: Vec<String>,
    records: u64,
    payload: Bytes,
    /// The next record to append, counted from 0.
    next: AtomicU64,
    /// Set by SIGINT or SIGTERM.
    interrupted: Arc<AtomicBool>,
    /// Set by the first appender that fails, to stop the others.
    failed: AtomicBool,
    ack_log: Option<Mutex<File>>,
    /// The progress bar, only when it is drawn (stderr is a terminal): a
    /// hidden bar's bookkeeping would still cost every append a lock and a
    /// clock read, which is load measuring itself.
    progress: Option<ProgressBar>,
}

pub fn run(args: &LoadArgs) -> Result<Outcome, Failure> {
    // Appending to a file of the log itself (its state file, a segment)
    // would damage the log being loaded.
    if let Some(ack_log) = &args.ack_log
        && crate::paths::inside(ack_log, &args.dir)
    {
        return Err(Failure::Usage(format!(
            "--ack-log must be outside the log's directory {}, not {}",
            args.dir.display(),
            ack_log.display()
        )));
    }
    let ack_log = args.ack_log.as_deref().map(open_ack_log).transpose()?;
    let log = Log::open(&args.dir, Options { durability: args.durability.into(), ..Options::default() })?;
    let records_before = log.recovery_report().records;
    let interrupted = stop_on_signals()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::runtime("starting the runtime", error))?;
    let payload_bytes = usize::try_from(args.payload_bytes)
        .map_err(|_| Failure::Usage(format!("--payload-bytes {} does not fit in memory", args.payload_bytes)))?;
    let workload = Arc::new(Workload {
        log,
        names: (0..args.streams.min(args.records)).map(|i| format!("stream-{i}")).collect(),
        records: args.records,
        payload: Bytes::from(pseudo_random_bytes(payload_bytes)),
        next: AtomicU64::new(0),
        interrupted,
        failed: AtomicBool::new(false),
        ack_log,
        progress: Some(progress::bar(args.records, "load")).filter(|bar| !bar.is_hidden()),
    });
    let started = Instant::now();
    let appended = runtime.block_on(append_all(&workload, args.concurrency));
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bar) = &workload.progress {
        bar.finish_and_clear();
    }
    // The log is open until the close below: a handle that is not closed
    // always has a last LSN.
    let last_lsn = workload.log.last_lsn()?;
    let closed = workload.log.close().wait();
    let (latencies, failure) = appended;
    let records = latencies.len();
    let interrupted = workload.interrupted.load(Ordering::SeqCst) && records < args.records;
    let summary = LoadSummary {
        dir: args.dir.clone(),
        durability: args.durability,
        streams: args.streams,
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        records_before,
        records_requested: args.records,
        records,
        interrupted,
        closed_cleanly: closed.is_ok(),
        last_lsn,
        seconds,
        appends_per_sec: if seconds > 0.0 { records as f64 / seconds } else { 0.0 },
        p50_us: latencies.percentile(0.50),
        p99_us: latencies.percentile(0.99),
    };
    output::print(&summary, args.json)?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    closed.map_err(|error| Failure::runtime("closing the log", error))?;
    Ok(if interrupted { Outcome::Interrupted } else { Outcome::Done })
}

fn open_ack_log(path: &Path) -> Result<Mutex<File>, Failure> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| Failure::runtime(format_args!("--ack-log {}", path.display()), error))?;
    Ok(Mutex::new(file))
}

/// Installs the handler of SIGINT and SIGTERM: the first sets the returned
/// flag, which stops the appenders; a second exits at once (like a crash,
/// which recovery handles: every acknowledged record is kept).
fn stop_on_signals() -> Result<Arc<AtomicBool>, Failure> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("annals: interrupted: closing the log after the appends in flight (again to stop at once)");
    })
    .map_err(|error| Failure::runtime("installing the SIGINT and SIGTERM handler", error))?;
    Ok(interrupted)
}

/// Runs `concurrency` appenders until every record is appended, a signal
/// comes or one fails; returns their latencies and the first failure.
async fn append_all(workload: &Arc<Workload>, concurrency: u64) -> (Histogram, Option<Failure>) {
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let workload = workload.clone();
        tasks.push(tokio::spawn(async move { workload.append_until_stopped().await }));
    }
    let mut latencies = Histogram::new();
    let mut first_failure = None;
    for task in tasks {
        let (histogram, failure) = match task.await {
            Ok(result) => result,
            Err(error) => (Histogram::new(), Some(Failure::runtime("an appender", error))),
        };
        latencies.merge(&histogram);
        first_failure = first_failure.or(failure);
    }
    (latencies, first_failure)
}

impl Workload {
    /// The streams the records go round-robin over (those they can reach).
    fn streams(&self) -> u64 {
        self.names.len() as u64
    }

    fn stopped(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst) || self.failed.load(Ordering::SeqCst)
    }

    async fn append_until_stopped(&self) -> (Histogram, Option<Failure>) {
        let mut latencies = Histogram::new();
        let mut begun = Instant::now();
        while !self.stopped() {
            let k = self.next.fetch_add(1, Ordering::SeqCst);
            if k >= self.records {
                break;
            }
            // Records go round-robin over the streams; the names cover every
            // stream a record can reach (`k` < records).
            let stream = &self.names[usize::try_from(k % self.streams()).expect("streams are named in memory")];
            let appended = match self.log.append(stream, Expectation::Any, self.payload.clone()).await {
                Ok(appended) => appended,
                Err(error) => {
                    self.failed.store(true, Ordering::SeqCst);
                    return (latencies, Some(error.into()));
                }
            };
            let acknowledged = Instant::now();
            latencies.record(acknowledged - begun);
            // One clock read per append: the next one starts now, unless
            // logging this one's acknowledgement or drawing the bar takes
            // time that is not the log's.
            begun = acknowledged;
            if self.ack_log.is_some() || self.progress.is_some() {
                if let Err(failure) = self.log_ack(stream, appended) {
                    self.failed.store(true, Ordering::SeqCst);
                    return (latencies, Some(failure));
                }
                if let Some(bar) = &self.progress {
                    bar.inc(1);
                }
                begun = Instant::now();
            }
        }
        (latencies, None)
    }

    /// Logs an acknowledgement to `--ack-log`, if asked to.
    fn log_ack(&self, stream: &str, appended: Appended) -> Result<(), Failure> {
        if let Some(ack_log) = &self.ack_log {
            let line = format!("{} {} {}\n", appended.lsn, stream, appended.seq);
            let mut file = ack_log.lock().unwrap_or_else(PoisonError::into_inner);
            file.write_all(line.as_bytes()).map_err(|error| Failure::runtime("writing --ack-log", error))?;
        }
        Ok(())
    }
}

/// Incompressible bytes from a fixed xorshift sequence.
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}
