//! Whole checkpoints by run id: the shape of blazen-persist's
//! `CheckpointStore`.
//!
//! Each run has one checkpoint. `save` replaces it, in one atomic commit
//! that clears the run's stream and appends the new checkpoint, so the old
//! version is dead on disk (and reclaimable once compaction exists) and no
//! reader ever sees the run without a checkpoint. `load` returns it, `list`
//! returns every run's checkpoint, the most recently saved first, and
//! `delete` forgets a run. Each run is the stream `checkpoint/<run id>`.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{Backend, Cursor, EntryKind, EntryRef, Expect, StoreError, StoreOp};
use crate::stores::codec;

/// The schema version this build writes checkpoints under.
pub const CHECKPOINT_SCHEMA: u16 = 1;
/// Prefix of a run's stream name.
pub const CHECKPOINT_STREAM_PREFIX: &str = "checkpoint/";

/// Whole checkpoints by run id over a backend.
pub struct WholeCheckpoints<B, C> {
    backend: Arc<B>,
    /// Prefix of this store's streams: two stores of different checkpoint
    /// types on one backend each keep to their own.
    prefix: String,
    _checkpoints: std::marker::PhantomData<fn() -> C>,
}

impl<B: Backend, C: Serialize + DeserializeOwned + Send + Sync + 'static> WholeCheckpoints<B, C> {
    /// A store over `backend`, in the streams `checkpoint/<run id>`.
    pub fn new(backend: Arc<B>) -> WholeCheckpoints<B, C> {
        WholeCheckpoints::in_namespace(backend, "")
    }

    /// A store over `backend` in its own namespace: the streams
    /// `checkpoint@<namespace>/<run id>` (or `checkpoint/<run id>` for an
    /// empty one), apart from other stores on the same backend. `%` and `/`
    /// in the namespace are escaped (`%25`, `%2F`), so no namespace reaches
    /// into another's runs.
    pub fn in_namespace(backend: Arc<B>, namespace: &str) -> WholeCheckpoints<B, C> {
        // Escaped: a namespace with a `/` must not reach into another's
        // streams (`tenant/b` and the keys `b/...` of `tenant`).
        let prefix = crate::stores::documents::prefix("checkpoint", namespace);
        WholeCheckpoints { backend, prefix, _checkpoints: std::marker::PhantomData }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn stream(&self, run_id: &str) -> String {
        format!("{}{run_id}", self.prefix)
    }

    /// Saves `checkpoint` as the run's only one, durably, replacing any
    /// earlier one.
    ///
    /// # Errors
    /// [`StoreError::Encode`], [`StoreError::Backend`].
    pub async fn save(&self, run_id: &str, checkpoint: &C) -> Result<(), StoreError> {
        let stream = self.stream(run_id);
        let payload = codec::encode(&stream, CHECKPOINT_SCHEMA, checkpoint)?;
        let ops = vec![StoreOp::clear(stream.clone(), Expect::Any), StoreOp::append(stream, Expect::Empty, payload)];
        self.backend.commit(ops).await?;
        Ok(())
    }

    /// The run's checkpoint, if it has one.
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the run; [`StoreError::Backend`].
    pub async fn load(&self, run_id: &str) -> Result<Option<C>, StoreError> {
        Ok(self.load_stream(&self.stream(run_id)).await?.map(|(_, checkpoint)| checkpoint))
    }

    /// The checkpoint of `stream` and where it was committed, decoded from the
    /// backend's own bytes ([`Backend::visit`]). A save leaves one entry;
    /// the last is the checkpoint.
    async fn load_stream(&self, stream: &str) -> Result<Option<(Cursor, C)>, StoreError> {
        let mut last = None;
        let decode = |entry: EntryRef<'_>| {
            if entry.kind == EntryKind::Entry {
                let checkpoint = codec::decode(stream, entry.seq, CHECKPOINT_SCHEMA, entry.payload)?.0;
                last = Some((entry.cursor, checkpoint));
            }
            Ok(())
        };
        self.backend.visit(stream, decode).await?;
        Ok(last)
    }

    /// Every run's checkpoint with its run id, the most recently saved first.
    /// Each run is read on its own: a save or delete that runs meanwhile may
    /// or may not be seen, but never half.
    ///
    /// # Errors
    /// As [`WholeCheckpoints::load`].
    pub async fn list(&self) -> Result<Vec<(String, C)>, StoreError> {
        let mut found = Vec::new();
        for (stream, _) in self.backend.streams(&self.prefix).await? {
            if let Some((cursor, checkpoint)) = self.load_stream(&stream).await? {
                found.push((cursor, stream[self.prefix.len()..].to_owned(), checkpoint));
            }
        }
        found.sort_by_key(|(cursor, _, _)| std::cmp::Reverse(*cursor));
        Ok(found.into_iter().map(|(_, run_id, checkpoint)| (run_id, checkpoint)).collect())
    }

    /// Forgets the run's checkpoint; an unknown run is a no-op.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn delete(&self, run_id: &str) -> Result<(), StoreError> {
        let stream = self.stream(run_id);
        if self.backend.read(&stream).await?.next_seq == 0 {
            return Ok(());
        }
        self.backend.commit(vec![StoreOp::clear(stream, Expect::Any)]).await?;
        Ok(())
    }
}
