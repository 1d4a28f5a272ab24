//! What the conformance chapter does not reach: a realm closed and reopened
//! from its directory (the fence, its lease, heads, row maps), the limits a
//! batch meets in one Annals record, and row maps through truncation and
//! drops, checked against a plain model.

use std::path::Path;
use std::sync::Arc;

use annals_meerkat::AnnalsHostStore;
use meerkat_core::host_store::{
    AcquireMode, CommitBatch, CommitId, FenceToken, HostStore, HostStoreError, Row, RowIndex, ScopeKind, ScopeName,
    ScopeRef, ScopeUpdate, ScopeVersion,
};

fn scope(name: &str) -> ScopeRef {
    ScopeRef::new(ScopeKind::Session, ScopeName::try_new(name).unwrap())
}

fn rows(items: &[&str]) -> Vec<Row> {
    items.iter().map(|item| Row::try_new(item.as_bytes().to_vec()).unwrap()).collect()
}

fn update(scope: &ScopeRef, previous: Option<u64>) -> ScopeUpdate {
    ScopeUpdate {
        scope: scope.clone(),
        previous: previous.map(ScopeVersion::new),
        next: ScopeVersion::new(previous.map_or(1, |previous| previous + 1)),
        head: previous.is_none().then(|| b"created".to_vec()),
        append: Vec::new(),
        truncate_after: None,
        drop_before: None,
        delete: false,
    }
}

async fn commit(store: &AnnalsHostStore, id: &str, token: FenceToken, updates: Vec<ScopeUpdate>) {
    let batch = CommitBatch::try_new(CommitId::try_new(id).unwrap(), token, updates).unwrap();
    store.commit(&batch).await.unwrap();
}

async fn all_rows(store: &AnnalsHostStore, scope: &ScopeRef, from: u64) -> Vec<String> {
    let read = store.read_rows(scope, RowIndex::new(from), 10_000).await.unwrap();
    read.into_iter().map(|row| String::from_utf8(row.into_bytes()).unwrap()).collect()
}

fn open(dir: &Path) -> AnnalsHostStore {
    AnnalsHostStore::open(dir).unwrap()
}

/// A process that closed (or died) leaves the next one everything it
/// committed, the token it held and what remains of its lease: the next
/// process's exclusive acquire answers Held with the old token, and its
/// token after a takeover is higher.
#[tokio::test]
async fn heads_rows_fence_and_lease_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = scope("reopened");
    let first = {
        let store = open(dir.path());
        let grant = store.acquire_fence(AcquireMode::Exclusive).await.unwrap();
        commit(&store, "c1", grant.token, vec![ScopeUpdate { append: rows(&["a", "b", "c"]), ..update(&s, None) }])
            .await;
        let trimmed = ScopeUpdate {
            head: Some(b"second".to_vec()),
            truncate_after: Some(RowIndex::new(1)),
            drop_before: Some(RowIndex::new(1)),
            append: rows(&["d"]),
            ..update(&s, Some(1))
        };
        commit(&store, "c2", grant.token, vec![trimmed]).await;
        store.close().await.unwrap();
        grant.token
    };
    let store = open(dir.path());
    let head = store.load_head(&s).await.unwrap().unwrap();
    assert_eq!((head.version, head.commit_id.as_str(), &head.head[..]), (ScopeVersion::new(2), "c2", &b"second"[..]));
    assert_eq!(all_rows(&store, &s, 1).await, ["d"]);
    assert!(matches!(store.read_rows(&s, RowIndex::new(0), 10).await, Err(HostStoreError::Invalid(_))));
    let held = store.acquire_fence(AcquireMode::Exclusive).await;
    assert!(matches!(held, Err(HostStoreError::Held { holder, .. }) if holder == first), "{held:?}");
    let grant = store.acquire_fence(AcquireMode::Takeover).await.unwrap();
    assert!(grant.token > first && !grant.superseded_lease.is_zero(), "{grant:?}");
    assert_eq!(store.renew_fence(first).await, Err(HostStoreError::FencedOut { current: grant.token }));
}

/// A renew or a commit with a token the store never issued is refused as
/// invalid, not taken as current.
#[tokio::test]
async fn a_token_never_issued_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = scope("never");
    let unissued = FenceToken::new(7);
    assert!(matches!(store.renew_fence(unissued).await, Err(HostStoreError::Invalid(_))));
    let batch = CommitBatch::try_new(CommitId::try_new("c").unwrap(), unissued, vec![update(&s, None)]).unwrap();
    assert!(matches!(store.commit(&batch).await, Err(HostStoreError::Invalid(_))));
    let grant = store.acquire_fence(AcquireMode::Exclusive).await.unwrap();
    let above = FenceToken::new(grant.token.get() + 1);
    assert!(matches!(store.renew_fence(above).await, Err(HostStoreError::Invalid(_))));
    assert_eq!(store.load_head(&s).await.unwrap(), None);
}

/// A batch that does not fit one record of the log answers Invalid and
/// writes nothing; the same batch fits a log opened by `open`.
#[tokio::test]
async fn a_batch_over_the_logs_record_limit_is_invalid_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = annals::Options { record_bytes_max: 1 << 20, ..Default::default() };
    let store = AnnalsHostStore::from_log(Arc::new(annals::Log::open(dir.path(), options).unwrap()));
    let grant = store.acquire_fence(AcquireMode::Exclusive).await.unwrap();
    let s = scope("large");
    let big = ScopeUpdate { append: vec![Row::try_new(vec![7; 1 << 20]).unwrap()], ..update(&s, None) };
    let batch = CommitBatch::try_new(CommitId::try_new("big").unwrap(), grant.token, vec![big]).unwrap();
    assert!(matches!(store.commit(&batch).await, Err(HostStoreError::Invalid(_))));
    assert_eq!(store.load_head(&s).await.unwrap(), None);
    store.close().await.unwrap();

    let roomy = tempfile::tempdir().unwrap();
    let store = open(roomy.path());
    let grant = store.acquire_fence(AcquireMode::Exclusive).await.unwrap();
    let batch = CommitBatch::try_new(CommitId::try_new("big").unwrap(), grant.token, batch.updates().to_vec()).unwrap();
    store.commit(&batch).await.unwrap();
    assert_eq!(store.read_rows(&s, RowIndex::new(0), 1).await.unwrap()[0].len(), 1 << 20);
}

/// Row maps through many truncations, drops and appends, checked against a
/// plain model after every batch and again after a reopen. A head-only
/// stretch longer than the snapshot interval keeps the head.
#[tokio::test]
async fn rows_follow_a_model_through_truncations_drops_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = scope("model");
    // The model: index -> row, and the first visible index.
    let mut model: Vec<Option<String>> = Vec::new();
    let mut start = 0usize;
    let mut version = 1u64;
    {
        let store = open(dir.path());
        let token = store.acquire_fence(AcquireMode::Exclusive).await.unwrap().token;
        commit(&store, "create", token, vec![update(&s, None)]).await;
        for step in 0..150u64 {
            let mut change = update(&s, Some(version));
            if step % 7 == 3 {
                let at = (step as usize * 5) % (model.len() + 1);
                change.truncate_after = Some(RowIndex::new(at as u64));
                if at < model.len() {
                    model.truncate(at);
                    start = start.min(at);
                }
            }
            if step % 11 == 5 {
                let at = start + (step as usize % 4);
                change.drop_before = Some(RowIndex::new(at as u64));
                start = start.max(at.min(model.len()));
            }
            let added: Vec<String> = (0..(step % 3)).map(|i| format!("r{step}-{i}")).collect();
            change.append = added.iter().map(|row| Row::try_new(row.clone().into_bytes()).unwrap()).collect();
            model.extend(added.into_iter().map(Some));
            commit(&store, &format!("step-{step}"), token, vec![change]).await;
            version += 1;
            let expected: Vec<String> = model[start..].iter().flatten().cloned().collect();
            assert_eq!(all_rows(&store, &s, start as u64).await, expected, "after step {step}");
        }
        store.close().await.unwrap();
    }
    let store = open(dir.path());
    let expected: Vec<String> = model[start..].iter().flatten().cloned().collect();
    assert_eq!(all_rows(&store, &s, start as u64).await, expected);
    let head = store.load_head(&s).await.unwrap().unwrap();
    assert_eq!((head.version.get(), &head.head[..]), (version, &b"created"[..]));
}
