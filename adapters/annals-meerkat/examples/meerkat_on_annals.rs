//! meerkat's `HostStore` on Annals: a realm's exclusive fence, an atomic
//! commit that creates a session scope with its head and rows, a second
//! commit that moves the head and appends, and the reads meerkat makes when
//! it opens the realm again.
//!
//! ```text
//! cargo run --release -p annals-meerkat --example meerkat_on_annals [DIR]
//! ```
//!
//! With `DIR` the log is kept there (look at it with
//! `annals dump DIR --decode`); without, in a temporary directory.

use std::sync::Arc;

use annals_meerkat::AnnalsHostStore;
use meerkat_core::host_store::{
    AcquireMode, CommitBatch, CommitId, HostStore, Row, RowIndex, ScopeKind, ScopeName, ScopeRef, ScopeUpdate,
    ScopeVersion,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let dir = std::env::args_os().nth(1).map_or_else(|| scratch.path().join("realm"), Into::into);

    {
        // The one line that changes: the store behind the realm, handed to
        // `meerkat::HostStoreProvider::open(name, store, ..)`.
        let store: Arc<dyn HostStore> = Arc::new(AnnalsHostStore::open(&dir)?);
        let grant = store.acquire_fence(AcquireMode::Exclusive).await?;
        let scope = ScopeRef::new(ScopeKind::Session, ScopeName::try_new("session-7")?);
        let create = ScopeUpdate {
            scope: scope.clone(),
            previous: None,
            next: ScopeVersion::FIRST,
            head: Some(b"turn 1".to_vec()),
            append: vec![Row::try_new(b"user: hello".to_vec())?, Row::try_new(b"agent: hi".to_vec())?],
            truncate_after: None,
            drop_before: None,
            delete: false,
        };
        store.commit(&CommitBatch::try_new(CommitId::try_new("c-1")?, grant.token, vec![create])?).await?;
        let next = ScopeUpdate {
            scope: scope.clone(),
            previous: Some(ScopeVersion::FIRST),
            next: ScopeVersion::FIRST.next().expect("far from the last version"),
            head: Some(b"turn 2".to_vec()),
            append: vec![Row::try_new(b"user: summarise".to_vec())?],
            truncate_after: None,
            drop_before: None,
            delete: false,
        };
        store.commit(&CommitBatch::try_new(CommitId::try_new("c-2")?, grant.token, vec![next])?).await?;
        println!("committed two batches to {scope:?} under fence {:?}", grant.token);
    }

    // A new process opening the realm: heads and rows as committed.
    let store: Arc<dyn HostStore> = Arc::new(AnnalsHostStore::open(&dir)?);
    for listed in store.list_heads(ScopeKind::Session, None, 100).await?.heads {
        println!("head of session {:?}: version {:?}", listed.name, listed.head.version);
        let scope = ScopeRef::new(ScopeKind::Session, listed.name);
        for row in store.read_rows(&scope, RowIndex::new(0), 100).await? {
            println!("  row {}", String::from_utf8_lossy(row.as_bytes()));
        }
    }
    if std::env::args_os().nth(1).is_some() {
        println!("log in {}", dir.display());
    } else {
        println!("log in a temporary directory, removed on exit (give a DIR to keep it)");
    }
    Ok(())
}
