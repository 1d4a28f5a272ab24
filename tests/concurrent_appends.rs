//! Many appenders at once lose no append and duplicate no sequence: every
//! acknowledged append is readable at the sequence and LSN it was given.

mod common;

use std::collections::{BTreeMap, HashSet};

use annals::{Expectation, Lsn, StreamSeq};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_from_many_tasks_lose_and_duplicate_no_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let mut tasks = Vec::new();
    for task in 0..64u32 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100u32 {
                let stream = format!("stream-{}", (task + i) % 8);
                let payload = format!("task {task} append {i}");
                let appended = log.append(&stream, Expectation::Any, payload.clone()).await.unwrap();
                acked.push((stream, appended, payload));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let lsns: HashSet<Lsn> = acked.iter().map(|(_, a, _)| a.lsn).collect();
    assert_eq!(lsns.len(), 6400, "every append has its own LSN");
    let mut per_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (stream, appended, _) in &acked {
        per_stream.entry(stream).or_default().push(appended.seq.0);
    }
    for (stream, mut seqs) in per_stream {
        seqs.sort_unstable();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{stream}: sequences are dense and unique");
    }
    for (stream, appended, payload) in &acked {
        let record = &log.read_stream_from(stream, appended.seq).unwrap()[0];
        assert_eq!((record.lsn, record.payload.as_ref()), (appended.lsn, payload.as_bytes()));
    }
}

#[test]
fn blocking_appenders_on_plain_threads_share_groups_safely() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let appended = log
                        .append(format!("own-{t}"), Expectation::Exact(StreamSeq(i)), vec![t as u8; 50])
                        .wait()
                        .unwrap();
                    assert_eq!(appended.seq, StreamSeq(i));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for t in 0..8u64 {
        assert_eq!(log.next_seq(format!("own-{t}")).unwrap(), StreamSeq(200));
    }
    assert_eq!(log.last_lsn().unwrap(), Lsn(1600));
}
