//! A driver that traces group commit under W2's shapes, to see what splits
//! a burst of appenders into more than one group (issue 13). Not timed by
//! criterion: it records, per group, when the writer took the queue, its
//! size, its fdatasync, and when each request was queued, then prints the
//! distribution. Annals' side comes from the log's own `trace` events
//! (target `annals::commit`), recorded by a small subscriber here; the
//! bench's channel group commit records the same moments itself.
//!
//! ```text
//! group_trace rounds annals|cano|channel DIR ROUNDS [WRITERS]  # cano's W2: rounds of WRITERS spawned tasks, one append each
//! group_trace loops annals|cano|channel DIR APPENDS [WRITERS]  # workloads' W2: WRITERS tasks, each APPENDS appends in a loop
//! ```
//!
//! Without arguments (as `cargo bench` runs it) it runs each mode on tiny data.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use annals::{Durability, Expectation, Log, Options, StreamSeq};
use common::{Row, runtime, scratch};

/// One moment of group commit.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// A request queued.
    Queued,
    /// The writer thread's gathering ended with this many queued of as
    /// many wanted, after waiting this long.
    Gathered(u64, u64, Duration),
    /// The writer took this many requests.
    Taken(u64),
    /// An fdatasync ended, having taken this long.
    Synced(Duration),
    /// A group of this many requests was written (and synced).
    Committed(u64),
    /// A group's waiters were woken.
    Answered,
    /// The driver started a round.
    RoundStarted,
}

type Moments = Arc<Mutex<Vec<(Instant, Moment)>>>;

/// Records the log's `annals::commit` trace events as moments.
struct Recorder {
    moments: Moments,
}

#[derive(Default)]
struct Fields {
    numbers: Vec<(&'static str, u64)>,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.numbers.push((field.name(), value));
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl Fields {
    fn get(&self, name: &str) -> u64 {
        self.numbers.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "annals::commit"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let now = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let has = |name: &str| event.metadata().fields().field(name).is_some();
        let moment = if has("queued") && !has("wanted") {
            Moment::Queued
        } else if has("wanted") {
            Moment::Gathered(
                fields.get("queued"),
                fields.get("wanted"),
                Duration::from_micros(fields.get("waited_micros")),
            )
        } else if has("depth") {
            Moment::Taken(fields.get("depth"))
        } else if has("micros") {
            Moment::Synced(Duration::from_micros(fields.get("micros")))
        } else if has("records") {
            Moment::Committed(fields.get("requests"))
        } else if has("requests") {
            Moment::Answered
        } else {
            return;
        };
        self.moments.lock().unwrap().push((now, moment));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// What an appender sends the channel's writer: its bytes, when it sent
/// them, and where the writer replies.
type ChannelRequest = (Vec<u8>, Instant, tokio::sync::oneshot::Sender<()>);

/// The bench's channel group commit (`benches/workloads.rs`), recording
/// the same moments: each request carries the instant it was sent.
struct Channel {
    sender: Option<mpsc::Sender<ChannelRequest>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Channel {
    fn new(dir: &Path, moments: Moments) -> Channel {
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(dir.join("raw")).unwrap();
        let bytes_max = 64u64 << 20;
        let zeros = vec![0u8; 1 << 20];
        for at in (0..bytes_max).step_by(zeros.len()) {
            std::os::unix::fs::FileExt::write_all_at(&file, &zeros, at).unwrap();
        }
        file.sync_all().unwrap();
        let (sender, receiver) = mpsc::channel::<ChannelRequest>();
        let writer = std::thread::spawn(move || {
            let (mut buf, mut replies, mut offset) = (Vec::new(), Vec::new(), 0u64);
            let mut local = Vec::new();
            while let Ok(first) = receiver.recv() {
                for (bytes, sent, reply) in std::iter::once(first).chain(receiver.try_iter()) {
                    local.push((sent, Moment::Queued));
                    buf.extend_from_slice(&bytes);
                    replies.push(reply);
                }
                local.push((Instant::now(), Moment::Taken(replies.len() as u64)));
                if offset + buf.len() as u64 > bytes_max {
                    offset = 0;
                }
                std::os::unix::fs::FileExt::write_all_at(&file, &buf, offset).unwrap();
                offset += buf.len() as u64;
                let started = Instant::now();
                file.sync_data().unwrap();
                local.push((Instant::now(), Moment::Synced(started.elapsed())));
                local.push((Instant::now(), Moment::Committed(replies.len() as u64)));
                buf.clear();
                for reply in replies.drain(..) {
                    let _ = reply.send(());
                }
                local.push((Instant::now(), Moment::Answered));
            }
            moments.lock().unwrap().extend(local);
        });
        Channel { sender: Some(sender), writer: Some(writer) }
    }

    async fn append(&self, bytes: Vec<u8>) {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.sender.as_ref().unwrap().send((bytes, Instant::now(), reply)).unwrap();
        done.await.unwrap();
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.sender.take();
        self.writer.take().unwrap().join().unwrap();
    }
}

/// What the driver appends through: Annals or the channel.
#[derive(Clone)]
enum System {
    Annals(Log),
    Cano(Arc<annals_cano::AnnalsCheckpointStore>),
    Channel(Arc<Channel>),
}

impl System {
    async fn append(&self, writer: u64, sequence: u64) {
        let row = Row::new(sequence, writer);
        match self {
            System::Annals(log) => {
                let expected = Expectation::Exact(StreamSeq(sequence));
                log.append(format!("writer-{writer}"), expected, row.encode()).await.unwrap();
            }
            System::Cano(store) => {
                use cano::recovery::CheckpointStore;
                let mut cano_row = cano::recovery::CheckpointRow::new(sequence, row.state, row.task_id);
                cano_row.output_blob = Some(row.blob);
                store.append(&format!("workflow-{writer}"), cano_row).await.unwrap();
            }
            System::Channel(channel) => {
                let mut bytes = vec![0xA5; 40];
                bytes.extend_from_slice(&row.encode());
                channel.append(bytes).await;
            }
        }
    }
}

fn open(system: &str, dir: &Path, moments: &Moments) -> System {
    match system {
        "annals" => {
            System::Annals(Log::open(dir, Options { durability: Durability::Sync, ..Options::default() }).unwrap())
        }
        "cano" => System::Cano(Arc::new(annals_cano::AnnalsCheckpointStore::open(dir).unwrap())),
        "channel" => System::Channel(Arc::new(Channel::new(dir, moments.clone()))),
        _ => panic!("annals, cano or channel"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let moments: Moments = Arc::default();
    // `GROUP_TRACE=off` times the shape untraced (count fdatasyncs with strace then).
    if std::env::var("GROUP_TRACE").as_deref() != Ok("off") {
        tracing::subscriber::set_global_default(Recorder { moments: moments.clone() }).unwrap();
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (shape, system, dir, count, writers) = match args[..] {
        [shape, system, dir, count] => (shape, system, dir.into(), count.parse().unwrap(), 64),
        [shape, system, dir, count, writers] => {
            (shape, system, dir.into(), count.parse().unwrap(), writers.parse().unwrap())
        }
        [] => {
            for (shape, system) in
                [("rounds", "annals"), ("rounds", "channel"), ("loops", "annals"), ("loops", "channel")]
            {
                let dir = scratch(&format!("group-trace-{shape}-{system}"));
                run(shape, system, &dir, 3, 4, &moments);
                std::fs::remove_dir_all(&dir).unwrap();
            }
            return;
        }
        _ => panic!("usage: group_trace rounds|loops annals|cano|channel DIR COUNT [WRITERS]"),
    };
    let dir: std::path::PathBuf = dir;
    std::fs::create_dir_all(&dir).unwrap();
    run(shape, system, &dir, count, writers, &moments);
}

fn run(shape: &str, system: &str, dir: &Path, count: u64, writers: u64, moments: &Moments) {
    let rt = runtime();
    let store = open(system, dir, moments);
    // The first segment's spare is zeroed in the background: let it finish.
    common::settle();
    moments.lock().unwrap().clear();
    let started = Instant::now();
    match shape {
        "rounds" => {
            for round in 0..count {
                moments.lock().unwrap().push((Instant::now(), Moment::RoundStarted));
                rt.block_on(async {
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let store = store.clone();
                            tokio::spawn(async move { store.append(w, round).await })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                });
            }
        }
        "loops" => {
            let store = store.clone();
            common::concurrent(&rt, writers, count, move |w, i| {
                let store = store.clone();
                async move { store.append(w, i).await }
            });
        }
        _ => panic!("rounds or loops"),
    }
    let elapsed = started.elapsed();
    drop(store);
    let mut moments = std::mem::take(&mut *moments.lock().unwrap());
    moments.sort_by_key(|(at, _)| *at);
    report(shape, system, count, writers, elapsed, &moments);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The value at `q` (0..=1) of sorted `values`.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn spread(name: &str, mut values: Vec<f64>) {
    let n = values.len();
    println!(
        "  {name}: n {n}, p10 {:.1}, median {:.1}, p90 {:.1}",
        quantile(&mut values, 0.1),
        quantile(&mut values, 0.5),
        quantile(&mut values, 0.9)
    );
}

fn report(shape: &str, system: &str, count: u64, writers: u64, elapsed: Duration, moments: &[(Instant, Moment)]) {
    let syncs = moments.iter().filter(|(_, m)| matches!(m, Moment::Synced(_))).count();
    let appends = count * writers;
    println!(
        "{shape} {system}: {writers} writers, {appends} appends in {:.1} ms; {syncs} fdatasyncs, {:.2} per {writers} appends; {:.1} µs per {writers} appends",
        micros(elapsed) / 1e3,
        syncs as f64 * writers as f64 / appends as f64,
        micros(elapsed) * writers as f64 / appends as f64
    );
    let sizes: Vec<f64> =
        moments.iter().filter_map(|(_, m)| if let Moment::Committed(n) = m { Some(*n as f64) } else { None }).collect();
    spread("group sizes", sizes);
    let syncs: Vec<f64> =
        moments.iter().filter_map(|(_, m)| if let Moment::Synced(d) = m { Some(micros(*d)) } else { None }).collect();
    spread("fdatasync µs", syncs);
    let waited: Vec<f64> = moments
        .iter()
        .filter_map(|(_, m)| if let Moment::Gathered(_, _, d) = m { Some(micros(*d)) } else { None })
        .collect();
    spread("gathering, µs", waited);
    match shape {
        "rounds" => report_rounds(moments),
        _ => report_loops(moments),
    }
}

/// Per round: how many groups, and for a split round when the second
/// group's requests came against the first group's take and sync.
fn report_rounds(moments: &[(Instant, Moment)]) {
    let starts: Vec<usize> =
        moments.iter().enumerate().filter(|(_, (_, m))| matches!(m, Moment::RoundStarted)).map(|(i, _)| i).collect();
    let mut per_round = std::collections::BTreeMap::<usize, usize>::new();
    let (mut first_sizes, mut first_taken, mut first_synced, mut second_sizes) = (vec![], vec![], vec![], vec![]);
    let (mut last_queued, mut gathered_at_first, mut cut_early) = (vec![], vec![], vec![]);
    let (mut last_answered, mut round_ended) = (vec![], vec![]);
    let mut gather_ends = std::collections::BTreeMap::<(&str, bool), usize>::new();
    let mut split_wanted = vec![];
    let mut second_came = [0usize; 2]; // during the first group's write and sync, after it
    for (r, &start) in starts.iter().enumerate() {
        let end = starts.get(r + 1).copied().unwrap_or(moments.len());
        let round = &moments[start..end];
        let t0 = round[0].0;
        let takes: Vec<(Instant, u64)> =
            round.iter().filter_map(|(at, m)| if let Moment::Taken(n) = m { Some((*at, *n)) } else { None }).collect();
        let takes: Vec<_> = takes.into_iter().filter(|(_, n)| *n > 0).collect();
        *per_round.entry(takes.len()).or_default() += 1;
        let queued: Vec<Instant> =
            round.iter().filter_map(|(at, m)| matches!(m, Moment::Queued).then_some(*at)).collect();
        if let Some(last) = queued.last() {
            last_queued.push(micros(*last - t0));
        }
        if let Some(gathered) =
            round.iter().find_map(|(_, m)| if let Moment::Gathered(n, _, _) = m { Some(*n) } else { None })
        {
            gathered_at_first.push(gathered as f64);
        }
        if let Some((answered, _)) = round.iter().rev().find(|(_, m)| matches!(m, Moment::Answered)) {
            last_answered.push(micros(*answered - t0));
        }
        if let Some(next) = starts.get(r + 1) {
            round_ended.push(micros(moments[*next].0 - t0));
        }
        let first_gather = round.iter().find_map(|(_, m)| match m {
            Moment::Gathered(queued, wanted, waited) => Some((*queued, *wanted, *waited)),
            _ => None,
        });
        let ended = match first_gather {
            None => "no gathering (the blocking path, or shuttle)",
            Some((_, wanted, _)) if wanted < 8 => "not gathered: the last group was small",
            Some((queued, wanted, waited)) if queued >= wanted && waited.is_zero() => {
                "not gathered: as many queued as wanted"
            }
            Some((queued, wanted, _)) if queued >= wanted => "gathered as many as wanted",
            Some((_, _, waited)) if waited >= Duration::from_micros(40) => "gathering timed out",
            Some(_) => "gathering ended quiet",
        };
        let split = takes.len() > 1;
        *gather_ends.entry((ended, split)).or_default() += 1;
        if split && let Some((_, wanted, _)) = first_gather {
            split_wanted.push(wanted as f64);
        }
        let Some(&(taken, size)) = takes.first() else { continue };
        first_sizes.push(size as f64);
        first_taken.push(micros(taken - t0));
        let synced = round.iter().find(|(at, m)| *at > taken && matches!(m, Moment::Synced(_))).map(|(at, _)| *at);
        if let Some(synced) = synced {
            first_synced.push(micros(synced - t0));
        }
        if let Some(&(second, size)) = takes.get(1) {
            second_sizes.push(size as f64);
            for at in queued.iter().filter(|at| **at > taken && **at <= second) {
                second_came[usize::from(synced.is_some_and(|s| *at > s))] += 1;
            }
            if let Some(last) = queued.last() {
                cut_early.push(micros(*last - taken));
            }
        }
    }
    println!("  groups per round: {per_round:?}");
    spread("first group's size", first_sizes);
    spread("first take, µs after the round started", first_taken);
    spread("first fdatasync's end, µs after the round started", first_synced);
    spread("last request queued, µs after the round started", last_queued);
    spread("last group's waiters woken, µs after the round started", last_answered);
    spread("next round started, µs after the round started", round_ended);
    spread("queued when the first gathering ended", gathered_at_first);
    spread("second group's size (split rounds)", second_sizes);
    spread("split rounds: last request queued, µs after the first take", cut_early);
    spread("split rounds: wanted at the first gathering", split_wanted);
    for ((ended, split), rounds) in gather_ends {
        println!("  first gathering: {ended}, {}: {rounds} rounds", if split { "split" } else { "whole" });
    }
    println!(
        "  second group's requests were queued: {} during the first group's write and fdatasync, {} after it",
        second_came[0], second_came[1]
    );
}

/// In a steady loop: how the groups alternate, and how long after a
/// group's waiters were woken its appenders' next requests came.
fn report_loops(moments: &[(Instant, Moment)]) {
    let mut waited_after_answer = vec![];
    let (mut gathered, mut last_answer, mut queued_since_take) = (vec![], None, 0u64);
    let mut at_take_vs_answer = vec![];
    for (at, moment) in moments {
        match moment {
            Moment::Answered => last_answer = Some(*at),
            Moment::Queued => {
                queued_since_take += 1;
                if let Some(answered) = last_answer {
                    waited_after_answer.push(micros(*at - answered));
                }
            }
            Moment::Gathered(n, _, _) => gathered.push(*n as f64),
            Moment::Taken(n) if *n > 0 => {
                if let Some(answered) = last_answer {
                    at_take_vs_answer.push(micros(*at - answered));
                }
                queued_since_take = 0;
            }
            _ => {}
        }
    }
    let _ = queued_since_take;
    spread("request queued, µs after the last group's waiters were woken", waited_after_answer);
    spread("take, µs after the last group's waiters were woken", at_take_vs_answer);
    spread("queued when gathering ended", gathered);
}
