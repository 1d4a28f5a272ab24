//! Mob runs: the shape of meerkat-mob's `MobRunStore`.
//!
//! A run is a set of versioned documents (the run document itself, and any
//! others the caller names, such as a flow's frames and loops), two
//! append-only ledgers (steps and failures) and the steps' outputs.
//!
//! - `create_run` writes the run document if the run has none
//!   ([`StoreError::Duplicate`] otherwise).
//! - `update_run_if` is a compare-and-swap on the run document: it applies
//!   a change if a condition holds of the current document, and answers
//!   `false` (writing nothing) if it does not or the run does not exist.
//!   `cas_status`, `cas_flow_state` and `cas_status_and_flow_state` are that
//!   for a [`RunDocument`]'s status, flow state, or both at once.
//! - `cas_documents` is a compare-and-swap over several documents of a run
//!   in one atomic commit: every expected revision holds and every write
//!   lands, or nothing is written and the answer is `false`. A document
//!   that is only expected, not written, is checked by the same commit
//!   (the backend seam's check-only operation).
//! - `append_step` and `append_failure` add to a ledger; `append_step_if_absent`
//!   adds unless an equal entry is there (idempotent: a retry adds nothing).
//!   A ledger entry is written only while the run document exists, checked
//!   in the same commit.
//! - `put_step_output` replaces a step's output.
//! - `delete_run` forgets a run through the backend's delete.
//!
//! Answers `false` are for mismatches; an I/O problem is an error.
//!
//! # Layout
//!
//! Under `mob-run/<run id>/` (or `mob-run@<namespace>/<run id>/`), ids
//! escaped so that none can reach into another's streams:
//!
//! | stream | holds |
//! |---|---|
//! | `doc/run` | the run document, a versioned document (see below) |
//! | `doc/<name>` | another document of the run, for `cas_documents` |
//! | `steps` | the step ledger: one entry per step entry |
//! | `failures` | the failure ledger: one entry per failure entry |
//! | `output/<step id>` | the step's output, a versioned document |
//!
//! A versioned document's stream holds one live entry, its current value;
//! each write prunes the one before, so the backend reclaims old versions.
//! Its revision is its entry's sequence plus one (0: absent) and is never
//! given twice, also across a delete.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stores::backend::{Backend, Expect, StoreError, StoreOp};
use crate::stores::codec;
use crate::stores::documents::{self, ATTEMPTS_MAX, DocumentState};

/// The schema version this build writes documents, ledger entries and
/// outputs under.
pub const RUN_SCHEMA: u16 = 1;
/// The kind of the runs' streams: `mob-run/<run id>/...`.
pub const RUN_STREAM_KIND: &str = "mob-run";
/// The name of the run document among a run's documents.
pub const RUN_DOCUMENT: &str = "run";

/// A run document whose status and flow state the store can compare and
/// swap.
pub trait RunDocument: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The run's status.
    type Status: PartialEq + Send + Sync;
    /// The run's flow state.
    type FlowState: PartialEq + Send + Sync;
    /// The status.
    fn status(&self) -> &Self::Status;
    /// Sets the status.
    fn set_status(&mut self, status: Self::Status);
    /// The flow state.
    fn flow_state(&self) -> &Self::FlowState;
    /// Sets the flow state.
    fn set_flow_state(&mut self, flow_state: Self::FlowState);
}

/// A document with its revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its revision: 1 for the first write, larger after each.
    pub revision: u64,
}

/// What `cas_documents` requires of one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentExpectation {
    /// The document's name ([`RUN_DOCUMENT`] for the run document).
    pub name: String,
    /// Its revision (0: absent).
    pub revision: u64,
}

/// What `cas_documents` writes to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentWrite<T> {
    /// The document's name ([`RUN_DOCUMENT`] for the run document).
    pub name: String,
    /// Its new value; `None` deletes it.
    pub value: Option<T>,
}

/// Which ledger of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ledger {
    Steps,
    Failures,
}

impl Ledger {
    fn name(self) -> &'static str {
        match self {
            Ledger::Steps => "steps",
            Ledger::Failures => "failures",
        }
    }
}

/// Mob runs over a backend.
pub struct MobRuns<B> {
    backend: Arc<B>,
    prefix: String,
}

impl<B: Backend> MobRuns<B> {
    /// A store over `backend`, in the streams `mob-run/<run id>/...`.
    pub fn new(backend: Arc<B>) -> MobRuns<B> {
        MobRuns::in_namespace(backend, "")
    }

    /// A store over `backend` in its own namespace (the streams
    /// `mob-run@<namespace>/<run id>/...`), apart from other stores on it.
    pub fn in_namespace(backend: Arc<B>, namespace: &str) -> MobRuns<B> {
        MobRuns { backend, prefix: documents::prefix(RUN_STREAM_KIND, namespace) }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    fn run_prefix(&self, run_id: &str) -> String {
        format!("{}{}/", self.prefix, documents::escape(run_id))
    }

    fn document_stream(&self, run_id: &str, name: &str) -> String {
        format!("{}doc/{}", self.run_prefix(run_id), documents::escape(name))
    }

    fn ledger_stream(&self, run_id: &str, ledger: Ledger) -> String {
        format!("{}{}", self.run_prefix(run_id), ledger.name())
    }

    fn output_stream(&self, run_id: &str, step_id: &str) -> String {
        format!("{}output/{}", self.run_prefix(run_id), documents::escape(step_id))
    }

    fn decode<T: DeserializeOwned>(stream: &str, state: DocumentState) -> Result<Option<Versioned<T>>, StoreError> {
        let revision = state.revision();
        match state.entry {
            None => Ok(None),
            Some(entry) => {
                let (value, _) = codec::decode(stream, entry.seq, RUN_SCHEMA, &entry.payload)?;
                Ok(Some(Versioned { value, revision }))
            }
        }
    }

    /// Writes the run document of a run that has none, durably.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] if the run has one (nothing is written);
    /// [`StoreError::Encode`]; [`StoreError::Contention`]; [`StoreError::Backend`].
    pub async fn create_run<D: Serialize>(&self, run_id: &str, document: &D) -> Result<(), StoreError> {
        let stream = self.document_stream(run_id, RUN_DOCUMENT);
        let payload = codec::encode(&stream, RUN_SCHEMA, document)?;
        for _ in 0..ATTEMPTS_MAX {
            let state = documents::load(&*self.backend, &stream).await?;
            if state.entry.is_some() {
                return Err(StoreError::Duplicate { stream, what: format!("run {run_id}") });
            }
            let mut ops = Vec::with_capacity(1);
            state.write(&stream, payload.clone(), &mut ops);
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(());
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }

    /// The run document with its revision, if the run has one.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Backend`].
    pub async fn get_run<D: DeserializeOwned>(&self, run_id: &str) -> Result<Option<Versioned<D>>, StoreError> {
        self.get_document(run_id, RUN_DOCUMENT).await
    }

    /// A document of a run with its revision, if it exists.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Backend`].
    pub async fn get_document<T: DeserializeOwned>(
        &self,
        run_id: &str,
        name: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let stream = self.document_stream(run_id, name);
        let state = documents::load(&*self.backend, &stream).await?;
        Self::decode(&stream, state)
    }

    /// Every run's id and run document, in run id order.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Backend`].
    pub async fn list_runs<D: DeserializeOwned>(&self) -> Result<Vec<(String, Versioned<D>)>, StoreError> {
        let suffix = format!("/doc/{RUN_DOCUMENT}");
        let mut runs = Vec::new();
        for (stream, _) in self.backend.streams(&self.prefix).await? {
            let Some(run_id) = stream
                .strip_prefix(&self.prefix)
                .and_then(|rest| rest.strip_suffix(&suffix))
                .filter(|escaped| !escaped.contains('/'))
                .and_then(documents::unescape)
            else {
                continue;
            };
            let state = documents::load(&*self.backend, &stream).await?;
            if let Some(document) = Self::decode(&stream, state)? {
                runs.push((run_id, document));
            }
        }
        Ok(runs)
    }

    /// Applies `change` to the run document if `condition` holds of it,
    /// durably, as one compare-and-swap: `false` (nothing written) if the
    /// run has no document or the condition does not hold. If another
    /// writer changed the document meanwhile, the condition is checked
    /// again on what it wrote.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Encode`];
    /// [`StoreError::Contention`]; [`StoreError::Backend`].
    pub async fn update_run_if<D: Serialize + DeserializeOwned>(
        &self,
        run_id: &str,
        condition: impl Fn(&D) -> bool,
        mut change: impl FnMut(&mut D),
    ) -> Result<bool, StoreError> {
        let stream = self.document_stream(run_id, RUN_DOCUMENT);
        for _ in 0..ATTEMPTS_MAX {
            let state = documents::load(&*self.backend, &stream).await?;
            let Some(mut current) = Self::decode::<D>(&stream, state.clone())? else { return Ok(false) };
            if !condition(&current.value) {
                return Ok(false);
            }
            change(&mut current.value);
            let mut ops = Vec::with_capacity(2);
            state.write(&stream, codec::encode(&stream, RUN_SCHEMA, &current.value)?, &mut ops);
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }

    /// Sets the run's status to `next` if it is `expected`.
    ///
    /// # Errors
    /// As [`MobRuns::update_run_if`].
    pub async fn cas_status<D: RunDocument>(
        &self,
        run_id: &str,
        expected: &D::Status,
        next: D::Status,
    ) -> Result<bool, StoreError>
    where
        D::Status: Clone,
    {
        self.update_run_if::<D>(run_id, |run| run.status() == expected, |run| run.set_status(next.clone())).await
    }

    /// Sets the run's flow state to `next` if it is `expected`.
    ///
    /// # Errors
    /// As [`MobRuns::update_run_if`].
    pub async fn cas_flow_state<D: RunDocument>(
        &self,
        run_id: &str,
        expected: &D::FlowState,
        next: D::FlowState,
    ) -> Result<bool, StoreError>
    where
        D::FlowState: Clone,
    {
        self.update_run_if::<D>(run_id, |run| run.flow_state() == expected, |run| run.set_flow_state(next.clone()))
            .await
    }

    /// Sets the run's status and flow state if both are as expected, in
    /// one compare-and-swap.
    ///
    /// # Errors
    /// As [`MobRuns::update_run_if`].
    pub async fn cas_status_and_flow_state<D: RunDocument>(
        &self,
        run_id: &str,
        expected: (&D::Status, &D::FlowState),
        next: (D::Status, D::FlowState),
    ) -> Result<bool, StoreError>
    where
        D::Status: Clone,
        D::FlowState: Clone,
    {
        let condition = |run: &D| run.status() == expected.0 && run.flow_state() == expected.1;
        let change = |run: &mut D| {
            run.set_status(next.0.clone());
            run.set_flow_state(next.1.clone());
        };
        self.update_run_if::<D>(run_id, condition, change).await
    }

    /// Writes `writes` to the run's documents if every document in
    /// `expected` is at its revision, all in one atomic commit; `false`
    /// (nothing written) if one is not. A written document not in
    /// `expected` is written whatever its revision. Returns the new
    /// revision of each write, in order, on success.
    ///
    /// # Errors
    /// [`StoreError::InvalidArgument`] for nothing to write, or a document
    /// named twice in `writes`; [`StoreError::Encode`];
    /// [`StoreError::Contention`]; [`StoreError::Backend`].
    pub async fn cas_documents<T: Serialize>(
        &self,
        run_id: &str,
        expected: &[DocumentExpectation],
        writes: &[DocumentWrite<T>],
    ) -> Result<Option<Vec<u64>>, StoreError> {
        if writes.is_empty() {
            return Err(StoreError::InvalidArgument("a compare-and-swap writes at least one document".to_owned()));
        }
        for (at, write) in writes.iter().enumerate() {
            if writes[..at].iter().any(|earlier| earlier.name == write.name) {
                return Err(StoreError::InvalidArgument(format!("document {} is written twice", write.name)));
            }
        }
        let mut payloads = Vec::with_capacity(writes.len());
        for write in writes {
            let stream = self.document_stream(run_id, &write.name);
            payloads.push(match &write.value {
                Some(value) => Some(codec::encode(&stream, RUN_SCHEMA, value)?),
                None => None,
            });
        }
        // Each document once: one planned operation (and one guard) per
        // stream, however often `expected` names it.
        let mut names: Vec<&str> = Vec::with_capacity(expected.len() + writes.len());
        for name in expected.iter().map(|e| e.name.as_str()).chain(writes.iter().map(|w| w.name.as_str())) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for _ in 0..ATTEMPTS_MAX {
            let mut states = Vec::with_capacity(names.len());
            for name in &names {
                states.push(documents::load(&*self.backend, &self.document_stream(run_id, name)).await?);
            }
            let state_of = |name: &str| &states[names.iter().position(|n| *n == name).expect("every name was read")];
            if expected.iter().any(|e| state_of(&e.name).revision() != e.revision) {
                return Ok(None);
            }
            let mut ops = Vec::with_capacity(names.len() * 2);
            let mut revisions = Vec::with_capacity(writes.len());
            for name in &names {
                let stream = self.document_stream(run_id, name);
                let state = state_of(name);
                match writes.iter().position(|w| w.name == *name) {
                    None => ops.push(state.check(&stream)),
                    Some(at) => match &payloads[at] {
                        Some(payload) => {
                            state.write(&stream, payload.clone(), &mut ops);
                            revisions.push((at, state.next_revision()));
                        }
                        None if state.entry.is_some() => {
                            state.delete(&stream, &mut ops);
                            revisions.push((at, 0));
                        }
                        None => {
                            ops.push(state.check(&stream));
                            revisions.push((at, 0));
                        }
                    },
                }
            }
            // Something moved: its expectation is checked again.
            if documents::commit_planned(&*self.backend, ops).await? {
                revisions.sort_unstable();
                return Ok(Some(revisions.into_iter().map(|(_, revision)| revision).collect()));
            }
        }
        Err(StoreError::Contention { stream: self.run_prefix(run_id), attempts: ATTEMPTS_MAX })
    }

    /// Appends `entry` to the run's step ledger, durably.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the run has no document; as
    /// [`MobRuns::create_run`] otherwise.
    pub async fn append_step<L: Serialize + DeserializeOwned>(
        &self,
        run_id: &str,
        entry: &L,
    ) -> Result<(), StoreError> {
        self.append_ledger(run_id, Ledger::Steps, entry, None::<fn(&L) -> bool>).await.map(|_| ())
    }

    /// Appends `entry` to the run's step ledger unless an entry `same`
    /// calls equal to it is there: `true` if it was appended. Retrying it
    /// appends nothing more, however many race.
    ///
    /// # Errors
    /// As [`MobRuns::append_step`]; [`StoreError::Decode`] for a ledger
    /// entry that does not decode.
    pub async fn append_step_if_absent<L: Serialize + DeserializeOwned>(
        &self,
        run_id: &str,
        entry: &L,
        same: impl Fn(&L, &L) -> bool,
    ) -> Result<bool, StoreError> {
        self.append_ledger(run_id, Ledger::Steps, entry, Some(|existing: &L| same(existing, entry))).await
    }

    /// Appends `entry` to the run's failure ledger, durably.
    ///
    /// # Errors
    /// As [`MobRuns::append_step`].
    pub async fn append_failure<L: Serialize + DeserializeOwned>(
        &self,
        run_id: &str,
        entry: &L,
    ) -> Result<(), StoreError> {
        self.append_ledger(run_id, Ledger::Failures, entry, None::<fn(&L) -> bool>).await.map(|_| ())
    }

    /// Appends to a ledger while the run document exists (checked in the
    /// same commit), unless `duplicate` finds an equal entry there.
    async fn append_ledger<L: Serialize + DeserializeOwned>(
        &self,
        run_id: &str,
        ledger: Ledger,
        entry: &L,
        duplicate: Option<impl Fn(&L) -> bool>,
    ) -> Result<bool, StoreError> {
        let run_stream = self.document_stream(run_id, RUN_DOCUMENT);
        let stream = self.ledger_stream(run_id, ledger);
        let payload = codec::encode(&stream, RUN_SCHEMA, entry)?;
        for _ in 0..ATTEMPTS_MAX {
            let run = documents::load(&*self.backend, &run_stream).await?;
            if run.entry.is_none() {
                return Err(StoreError::NotFound { key: format!("run {run_id}") });
            }
            let expect = match &duplicate {
                None => Expect::Any,
                Some(duplicate) => {
                    let contents = self.backend.read(&stream).await?;
                    for existing in &contents.entries {
                        let (existing, _) = codec::decode::<L>(&stream, existing.seq, RUN_SCHEMA, &existing.payload)?;
                        if duplicate(&existing) {
                            return Ok(false);
                        }
                    }
                    // An equal entry appended meanwhile moves the ledger;
                    // so does a delete and re-creation of the run that
                    // refills it to the same length (its next life).
                    contents.unchanged()
                }
            };
            let ops = vec![run.check(&run_stream), StoreOp::append(&stream, expect, payload.clone())];
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(true);
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }

    /// The run's step ledger, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Backend`].
    pub async fn step_ledger<L: DeserializeOwned>(&self, run_id: &str) -> Result<Vec<L>, StoreError> {
        self.read_ledger(run_id, Ledger::Steps).await
    }

    /// The run's failure ledger, oldest first.
    ///
    /// # Errors
    /// As [`MobRuns::step_ledger`].
    pub async fn failure_ledger<L: DeserializeOwned>(&self, run_id: &str) -> Result<Vec<L>, StoreError> {
        self.read_ledger(run_id, Ledger::Failures).await
    }

    async fn read_ledger<L: DeserializeOwned>(&self, run_id: &str, ledger: Ledger) -> Result<Vec<L>, StoreError> {
        let stream = self.ledger_stream(run_id, ledger);
        let contents = self.backend.read(&stream).await?;
        contents
            .entries
            .iter()
            .map(|entry| Ok(codec::decode(&stream, entry.seq, RUN_SCHEMA, &entry.payload)?.0))
            .collect()
    }

    /// Replaces the output of step `step_id` of the run, durably.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the run has no document; as
    /// [`MobRuns::create_run`] otherwise.
    pub async fn put_step_output<O: Serialize>(
        &self,
        run_id: &str,
        step_id: &str,
        output: &O,
    ) -> Result<(), StoreError> {
        let run_stream = self.document_stream(run_id, RUN_DOCUMENT);
        let stream = self.output_stream(run_id, step_id);
        let payload = codec::encode(&stream, RUN_SCHEMA, output)?;
        for _ in 0..ATTEMPTS_MAX {
            let run = documents::load(&*self.backend, &run_stream).await?;
            if run.entry.is_none() {
                return Err(StoreError::NotFound { key: format!("run {run_id}") });
            }
            let output = documents::load(&*self.backend, &stream).await?;
            let mut ops = vec![run.check(&run_stream)];
            output.write(&stream, payload.clone(), &mut ops);
            if documents::commit_planned(&*self.backend, ops).await? {
                return Ok(());
            }
        }
        Err(StoreError::Contention { stream, attempts: ATTEMPTS_MAX })
    }

    /// The run's step outputs, in step id order.
    ///
    /// # Errors
    /// [`StoreError::Decode`]; [`StoreError::Backend`].
    pub async fn step_outputs<O: DeserializeOwned>(&self, run_id: &str) -> Result<Vec<(String, O)>, StoreError> {
        let prefix = format!("{}output/", self.run_prefix(run_id));
        let mut outputs = Vec::new();
        for (stream, _) in self.backend.streams(&prefix).await? {
            let Some(step_id) = stream.strip_prefix(&prefix).and_then(documents::unescape) else { continue };
            let state = documents::load(&*self.backend, &stream).await?;
            if let Some(output) = Self::decode::<O>(&stream, state)? {
                outputs.push((step_id, output.value));
            }
        }
        outputs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(outputs)
    }

    /// Forgets the run: every stream of it is deleted through the backend
    /// (which reclaims their space), in one atomic commit, then any stream
    /// another writer started while they were listed. Returns `false`
    /// if the run had nothing, also when a racing delete removed it
    /// first. A run created again afterwards starts over,
    /// its revisions from 1: delete a run only once nothing holds a
    /// revision of it.
    ///
    /// # Errors
    /// [`StoreError::Contention`] if other writers kept starting streams of
    /// the run as it cleared them; [`StoreError::Backend`].
    pub async fn delete_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let prefix = self.run_prefix(run_id);
        let mut deleted = false;
        for _ in 0..ATTEMPTS_MAX {
            // A stream another writer started after the listing (a first
            // step, a first output) outlives the clear: list again. Once the
            // run document is cleared, no ledger or output write planned
            // before lands (each checks the run document in its commit).
            let streams = self.backend.streams(&prefix).await?;
            if streams.is_empty() {
                return Ok(deleted);
            }
            let ops = streams.into_iter().map(|(stream, _)| StoreOp::clear(stream, Expect::Any)).collect();
            // A clear says the stream's next sequence before it: 0 only if
            // it had nothing (every listed stream has state, so a next
            // sequence above 0). A racing delete that cleared the run first
            // leaves this one nothing to delete.
            let committed = self.backend.commit(ops).await?;
            deleted |= committed.iter().any(|cleared| cleared.seq > 0);
        }
        Err(StoreError::Contention { stream: prefix, attempts: ATTEMPTS_MAX })
    }
}
