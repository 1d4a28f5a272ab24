//! Mob specs: the shape of meerkat-mob's `MobSpecStore`.
//!
//! Each mob id has one spec (a definition) and a revision. `put_spec`
//! writes a new definition if the caller's expected revision is the stored
//! one (or unconditionally with `None`) and returns the new revision;
//! `get_spec` returns the definition with its revision; `list_specs` the
//! ids; `delete_spec` removes one under the same expectation. A revision
//! mismatch is [`StoreError::RevisionConflict`] carrying what the caller
//! expected and what is stored, and nothing is written.
//!
//! Each spec is a versioned document (see the `documents` module): the
//! stream `mob-spec/<id>` (or `mob-spec@<namespace>/<id>`), whose old
//! values are pruned as they are replaced. Revisions start at 1, 0 means
//! absent, and a revision is never given twice for one id, also across a
//! delete: a writer holding a revision read before a delete conflicts with
//! a spec created after it.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{Backend, StoreError};
use crate::stores::codec;
use crate::stores::documents::{self, ATTEMPTS_MAX};

/// The schema version this build writes specs under.
pub const SPEC_SCHEMA: u16 = 1;
/// The kind of the specs' streams: `mob-spec/<id>`.
pub const SPEC_STREAM_KIND: &str = "mob-spec";

/// Mob specs over a backend.
pub struct MobSpecs<B, S> {
    backend: Arc<B>,
    prefix: String,
    _specs: std::marker::PhantomData<fn() -> S>,
}

impl<B: Backend, S: Serialize + DeserializeOwned + Send + Sync + 'static> MobSpecs<B, S> {
    /// A store over `backend`, in the streams `mob-spec/<id>`.
    pub fn new(backend: Arc<B>) -> MobSpecs<B, S> {
        MobSpecs::in_namespace(backend, "")
    }

    /// A store over `backend` in its own namespace (the streams
    /// `mob-spec@<namespace>/<id>`), apart from other stores on it.
    pub fn in_namespace(backend: Arc<B>, namespace: &str) -> MobSpecs<B, S> {
        MobSpecs { backend, prefix: documents::prefix(SPEC_STREAM_KIND, namespace), _specs: std::marker::PhantomData }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn stream(&self, id: &str) -> String {
        format!("{}{}", self.prefix, documents::escape(id))
    }

    /// Writes `definition` as the spec of `id`, durably, if `expected` is
    /// its revision (`Some(0)`: absent; `None`: whatever it is), and
    /// returns the new revision.
    ///
    /// # Errors
    /// [`StoreError::RevisionConflict`] with the stored revision if it is
    /// not `expected` (nothing is written); [`StoreError::Encode`];
    /// [`StoreError::Contention`]; [`StoreError::Backend`].
    pub async fn put_spec(&self, id: &str, definition: &S, expected: Option<u64>) -> Result<u64, StoreError> {
        let stream = self.stream(id);
        let payload = codec::encode(&stream, SPEC_SCHEMA, definition)?;
        for _ in 0..ATTEMPTS_MAX {
            let state = documents::load(&*self.backend, &stream).await?;
            state.expect_revision(id, expected)?;
            let mut ops = Vec::with_capacity(2);
            state.write(&stream, payload.clone(), &mut ops);
            // Moved since the read: read again (and report the new revision).
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(state.next_revision());
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }

    /// The spec of `id` with its revision, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Decode`] naming the stream and sequence;
    /// [`StoreError::Backend`].
    pub async fn get_spec(&self, id: &str) -> Result<Option<(S, u64)>, StoreError> {
        let stream = self.stream(id);
        let state = documents::load(&*self.backend, &stream).await?;
        let revision = state.revision();
        match state.entry {
            None => Ok(None),
            Some(entry) => {
                let (definition, _) = codec::decode(&stream, entry.seq, SPEC_SCHEMA, &entry.payload)?;
                Ok(Some((definition, revision)))
            }
        }
    }

    /// The ids that have a spec, in id order.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn list_specs(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for (stream, _) in self.backend.streams(&self.prefix).await? {
            let Some(id) = stream.strip_prefix(&self.prefix).and_then(documents::unescape) else { continue };
            // A deleted spec's stream keeps its sequence, with nothing live.
            if documents::load(&*self.backend, &stream).await?.entry.is_some() {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Deletes the spec of `id`, durably, if `expected` is its revision
    /// (`None`: whatever it is). Returns `false` if there is none.
    ///
    /// # Errors
    /// [`StoreError::RevisionConflict`] with the stored revision if it is
    /// not `expected` (nothing is written); [`StoreError::Contention`];
    /// [`StoreError::Backend`].
    pub async fn delete_spec(&self, id: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let stream = self.stream(id);
        for _ in 0..ATTEMPTS_MAX {
            let state = documents::load(&*self.backend, &stream).await?;
            if state.entry.is_none() {
                return Ok(false);
            }
            state.expect_revision(id, expected)?;
            let mut ops = Vec::with_capacity(2);
            state.delete(&stream, &mut ops);
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }
}
