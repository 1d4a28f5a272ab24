//! The `annals` command: load a log with a synthetic workload; verify, dump
//! and repair one.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::inspect::{Damage, IntactScan, scan_intact};
use annals::{Durability, Expectation, LogReader, Lsn, Options, display_stream};
use parking_lot::Mutex;

const USAGE: &str = "usage:
  annals load --dir DIR [--streams N] [--records M] [--payload-bytes B] [--concurrency C]
              [--durability sync|flush|periodic] [--ack-log FILE] [--json]
  annals verify DIR [--json]
  annals dump DIR [--stream ID] [--after LSN] [--limit N] [--salvage] [--decode]
  annals repair DIR --into NEW [--json]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("load") => load(&args[1..]),
        Some("verify") => verify(&args[1..]),
        Some("dump") => dump(&args[1..]),
        Some("repair") => repair(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("annals: {message}");
            ExitCode::from(2)
        }
    }
}

/// Command-line flags after the command: `--name value` pairs, `--flag`s and positionals.
struct Flags {
    values: Vec<(String, Option<String>)>,
    positionals: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], switches: &[&str], valued: &[&str]) -> Result<Flags, String> {
        let mut flags = Flags { values: Vec::new(), positionals: Vec::new() };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if switches.contains(&arg.as_str()) {
                flags.values.push((arg.clone(), None));
            } else if valued.contains(&arg.as_str()) {
                let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                flags.values.push((arg.clone(), Some(value.clone())));
            } else if arg.starts_with("--") {
                return Err(format!("unknown option {arg}\n{USAGE}"));
            } else {
                flags.positionals.push(arg.clone());
            }
        }
        Ok(flags)
    }

    fn has(&self, name: &str) -> bool {
        self.values.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.value(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| format!("{name} takes a whole number, not {text:?}")),
        }
    }

    fn dir(&self, flag: Option<&str>) -> Result<PathBuf, String> {
        let dir = match flag {
            Some(flag) => self.value(flag),
            None => self.positionals.first().map(String::as_str),
        };
        dir.map(PathBuf::from).ok_or_else(|| format!("a log directory is required\n{USAGE}"))
    }
}

fn load(args: &[String]) -> Result<ExitCode, String> {
    let valued = ["--dir", "--streams", "--records", "--payload-bytes", "--concurrency", "--durability", "--ack-log"];
    let flags = Flags::parse(args, &["--json"], &valued)?;
    let dir = flags.dir(Some("--dir"))?;
    let streams = flags.number("--streams", 100)?.max(1);
    let records = flags.number("--records", 10_000)?;
    let payload_bytes = usize::try_from(flags.number("--payload-bytes", 200)?).map_err(|e| e.to_string())?;
    let concurrency = flags.number("--concurrency", 1)?.max(1);
    let durability = match flags.value("--durability").unwrap_or("sync") {
        "sync" => Durability::Sync,
        "flush" => Durability::Flush,
        "periodic" => Durability::Periodic,
        other => {
            return Err(format!("--durability takes sync, flush or periodic, not {other:?}"));
        }
    };
    let ack_log = match flags.value("--ack-log") {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{path}: {e}"))?;
            Some(Arc::new(Mutex::new(file)))
        }
        None => None,
    };
    let log = annals::Log::open(&dir, Options { durability, ..Options::default() }).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let payload = bytes::Bytes::from(pseudo_random_bytes(payload_bytes));
    // Named once, not formatted per append: load measures the log, not itself.
    let names: Arc<Vec<String>> = Arc::new((0..streams).map(|i| format!("stream-{i}")).collect());
    let started = Instant::now();
    let latencies = runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..concurrency {
            let (log, payload, ack_log, names) = (log.clone(), payload.clone(), ack_log.clone(), names.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut k = task;
                while k < records {
                    let stream = &names[usize::try_from(k % streams).expect("streams are named in memory")];
                    let begun = Instant::now();
                    let appended = log.append(stream, Expectation::Any, payload.clone()).await?;
                    latencies.push(begun.elapsed());
                    if let Some(ack_log) = &ack_log {
                        let line = format!("{} {} {}\n", appended.lsn, stream, appended.seq);
                        ack_log
                            .lock()
                            .write_all(line.as_bytes())
                            .map_err(|e| annals::Error::InvalidArgument(e.to_string()))?;
                    }
                    k += concurrency;
                }
                Ok::<_, annals::Error>(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(all)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    log.close().wait().map_err(|e| e.to_string())?;
    print_load(&flags, latencies, seconds);
    Ok(ExitCode::SUCCESS)
}

fn print_load(flags: &Flags, mut latencies: Vec<Duration>, seconds: f64) {
    let records = latencies.len();
    // Selected, not sorted: a sort of every latency cost more than the
    // appends' own bookkeeping in the engine.
    let mut percentile = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((records as f64 * p).ceil() as usize).clamp(1, records);
        let (_, latency, _) = latencies.select_nth_unstable(rank - 1);
        u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
    };
    let rate = if seconds > 0.0 { records as f64 / seconds } else { 0.0 };
    let (p50, p99) = (percentile(0.50), percentile(0.99));
    if flags.has("--json") {
        let out = serde_json::json!({
            "records": records, "seconds": seconds, "appends_per_sec": rate, "p50_us": p50, "p99_us": p99,
        });
        println!("{out}");
    } else {
        println!("records {records}\nseconds {seconds:.3}\nappends/s {rate:.0}\np50 {p50} us\np99 {p99} us");
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

fn verify(args: &[String]) -> Result<ExitCode, String> {
    let flags = Flags::parse(args, &["--json"], &[])?;
    let dir = flags.dir(None)?;
    let reader = LogReader::open(&dir).map_err(|e| e.to_string())?;
    let report = reader.report();
    let mut problems = Vec::new();
    if let Some(torn) = &report.torn_tail {
        problems.push(serde_json::json!({
            "kind": "torn_tail", "file": torn.file, "offset": torn.offset, "bytes": torn.bytes,
            "what": format!("torn tail from lsn {} ({}); open would cut it", torn.from_lsn, torn.reason),
        }));
    }
    for problem in reader.problems() {
        problems.push(serde_json::json!({
            "kind": "corruption", "file": problem.file, "offset": problem.offset, "what": problem.kind.to_string(),
        }));
    }
    let corrupt = !reader.problems().is_empty();
    // Under damage, count what is actually readable: every intact frame,
    // past the damage too.
    let (records, streams, last_lsn, damage) = if corrupt {
        let scan = scan_intact(&annals::fs::RealFs, &dir, |_, _, _| {}).map_err(|e| e.to_string())?;
        (scan.records, scan.streams, scan.last_lsn, scan.damage)
    } else {
        (report.records, reader.stream_count(), reader.last_lsn(), Vec::new())
    };
    if flags.has("--json") {
        let out = serde_json::json!({
            "segments": report.segments, "streams": streams, "records": records,
            "bytes": report.bytes, "last_lsn": last_lsn, "format_version": report.format_version,
            "problems": problems, "damage": damage, "index": reader.index_stats(),
        });
        println!("{out}");
    } else {
        let readable = if corrupt { "intact " } else { "" };
        println!(
            "segments {}\n{readable}streams {streams}\n{readable}records {records}\nbytes {}\nlast lsn {last_lsn}\nformat version {}",
            report.segments, report.bytes, report.format_version
        );
        let index = reader.index_stats();
        let index_bytes = index.entry_bytes + index.stream_overhead_bytes + index.checkpoint_bytes;
        println!(
            "index {index_bytes} bytes for {} entries in {} streams (stream ids {} bytes more)",
            index.entries, index.streams, index.stream_id_bytes
        );
        for problem in &problems {
            println!(
                "{} in {} at offset {}: {}",
                problem["kind"].as_str().unwrap_or(""),
                problem["file"].as_str().unwrap_or(""),
                problem["offset"],
                problem["what"].as_str().unwrap_or("")
            );
        }
        for Damage { file, offset, bytes, what } in &damage {
            println!("damaged {bytes} bytes in {} at offset {offset}: {what}", file.display());
        }
        if corrupt {
            println!("corrupt: `annals repair {} --into NEW` copies every intact record out", dir.display());
        } else {
            println!("clean");
        }
    }
    Ok(if corrupt { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn dump(args: &[String]) -> Result<ExitCode, String> {
    let flags = Flags::parse(args, &["--salvage", "--decode"], &["--stream", "--after", "--limit"])?;
    let decode = flags.has("--decode");
    let dir = flags.dir(None)?;
    let mut after = Lsn(flags.number("--after", 0)?);
    let mut remaining = flags.number("--limit", u64::MAX)?;
    let stream = flags.value("--stream").map(str::as_bytes);
    if flags.has("--salvage") {
        return dump_salvage(&dir, after, remaining, stream, decode);
    }
    let reader = LogReader::open(&dir).map_err(|e| e.to_string())?;
    if let Some(problem) = reader.problems().first() {
        return Err(format!(
            "{problem}; run `annals verify` for every problem, or `annals dump --salvage` for the intact records"
        ));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut page: VecDeque<annals::Record> = VecDeque::new();
    while remaining > 0 {
        if page.is_empty() {
            page.extend(reader.read_all(after, 1024).map_err(|e| e.to_string())?);
            if page.is_empty() {
                break;
            }
        }
        let record = page.pop_front().expect("page is not empty");
        after = record.lsn;
        if stream.is_some_and(|s| s != record.stream.as_ref()) {
            continue;
        }
        let line = record_line(record.lsn, &record.stream, record.seq, record.kind, &record.payload, decode);
        if writeln!(out, "{line}").is_err() {
            break; // the reader went away (a closed pipe)
        }
        remaining -= 1;
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

fn record_line(
    lsn: Lsn,
    stream: &[u8],
    seq: annals::StreamSeq,
    kind: annals::RecordKind,
    payload: &[u8],
    decode: bool,
) -> serde_json::Value {
    let mut line = serde_json::json!({
        "lsn": lsn, "stream": display_stream(stream), "seq": seq, "kind": kind.name(), "len": payload.len(),
    });
    if decode {
        // A typed store's value (MessagePack behind the stores' envelope) as
        // JSON; anything else is shown as not decoded.
        let decoded = annals::stores::codec::split_envelope(payload)
            .and_then(|(schema, body)| Some((schema, rmp_serde::from_slice::<serde_json::Value>(body).ok()?)));
        match decoded {
            Some((schema, value)) => {
                line["schema"] = schema.into();
                line["value"] = value;
            }
            None => line["value"] = serde_json::Value::Null,
        }
    }
    line
}

/// `dump --salvage`: every intact record, past damage, with the damage on stderr.
fn dump_salvage(
    dir: &std::path::Path,
    after: Lsn,
    limit: u64,
    stream: Option<&[u8]>,
    decode: bool,
) -> Result<ExitCode, String> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut remaining = limit;
    let scan = scan_intact(&annals::fs::RealFs, dir, |_, _, frame| {
        for op in frame.ops() {
            if remaining == 0 || op.lsn <= after || stream.is_some_and(|s| s != op.stream) {
                continue;
            }
            let line = record_line(op.lsn, op.stream, op.seq, op.kind, op.payload, decode);
            if writeln!(out, "{line}").is_err() {
                remaining = 0; // the reader went away (a closed pipe)
                return;
            }
            remaining -= 1;
        }
    })
    .map_err(|e| e.to_string())?;
    let _ = out.flush();
    warn_damage(&scan);
    Ok(ExitCode::SUCCESS)
}

fn warn_damage(scan: &IntactScan) {
    if scan.damage.is_empty() {
        return;
    }
    eprintln!("annals: warning: the log is damaged; only intact records were read");
    for Damage { file, offset, bytes, what } in &scan.damage {
        eprintln!("annals: damaged {bytes} bytes in {} at offset {offset}: {what}", file.display());
    }
}

fn repair(args: &[String]) -> Result<ExitCode, String> {
    let flags = Flags::parse(args, &["--json"], &["--into"])?;
    let from = flags.dir(None)?;
    let into = flags.dir(Some("--into"))?;
    if inside(&into, &from) {
        return Err(format!(
            "repair never modifies the source: --into must be outside {}, not {}",
            from.display(),
            into.display()
        ));
    }
    let report = annals::inspect::repair(&from, &into, Options::default()).map_err(|e| e.to_string())?;
    if flags.has("--json") {
        println!("{}", serde_json::to_value(&report).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("copied {} records into {}", report.records_copied, into.display());
    for Damage { file, offset, bytes, what } in &report.scan.damage {
        println!("dropped {bytes} damaged bytes in {} at offset {offset}: {what}", file.display());
    }
    for dropped in &report.records_dropped {
        println!(
            "dropped the record at lsn {} ({} at offset {}): {}",
            dropped.lsn,
            dropped.file.display(),
            dropped.offset,
            dropped.why
        );
    }
    if report.scan.damage.is_empty() && report.records_dropped.is_empty() {
        println!("nothing was damaged; the copy is complete");
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `path` is `dir` or inside it, however either is spelled (`path`
/// need not exist yet: its nearest existing ancestor is resolved).
fn inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    let Ok(dir) = dir.canonicalize() else { return false };
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while existing.canonicalize().is_err() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => return false,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    resolved.extend(rest.iter().rev());
    resolved.starts_with(&dir)
}
