//! Versioned documents: one stream per document, shared by the mob stores.
//!
//! A document's stream holds at most one live entry, its current value.
//! A write appends the new value guarded by the stream's next sequence and
//! prunes the older value in the same commit; a delete appends an empty
//! marker and prunes through it, so nothing stays live. The backend
//! reclaims what the prunes removed.
//!
//! A document's **revision** is its live entry's sequence plus one, and 0
//! while it is absent. A delete does not clear the stream, so its
//! sequences only grow: a revision is never given twice for one document,
//! even after a delete, and a caller holding an old revision cannot mistake a
//! re-created document for the one it read. Only `MobRuns::delete_run`
//! clears a run's streams (its revisions start over): a store's guards name
//! the stream's incarnation too, so that a write decided on what it read
//! never lands on the run created again.

use bytes::Bytes;

use crate::stores::backend::{Backend, Entry, Expect, StoreError, StoreOp};

/// How often a store plans a write again after another writer moved one
/// of its streams between the read and the commit.
pub(crate) const ATTEMPTS_MAX: usize = 64;

/// A document as read: its current entry, if any, and where its stream is.
#[derive(Clone, Debug)]
pub(crate) struct DocumentState {
    /// The live entry: the current value.
    pub(crate) entry: Option<Entry>,
    /// The stream's next sequence: every write and delete moves it.
    pub(crate) next_seq: u64,
    /// The stream as read: at `next_seq`, in the same incarnation (a
    /// clear and a refill to as many entries is another one).
    pub(crate) unchanged: Expect,
}

impl DocumentState {
    /// The current revision (0: absent).
    pub(crate) fn revision(&self) -> u64 {
        self.entry.as_ref().map_or(0, |entry| entry.seq + 1)
    }

    /// The revision the next write gives.
    pub(crate) fn next_revision(&self) -> u64 {
        self.next_seq + 1
    }

    /// Whether the document is at `expected` (`None`: any revision), as a
    /// [`StoreError::RevisionConflict`] naming `key` if it is not.
    pub(crate) fn expect_revision(&self, key: &str, expected: Option<u64>) -> Result<(), StoreError> {
        match expected {
            Some(expected) if expected != self.revision() => Err(StoreError::RevisionConflict {
                key: key.to_owned(),
                expected: Some(expected),
                actual: self.revision(),
            }),
            _ => Ok(()),
        }
    }

    /// A check that the document is still as read.
    pub(crate) fn check(&self, stream: &str) -> StoreOp {
        StoreOp::check(stream, self.unchanged)
    }

    /// The operations that replace the document with `payload`, if it is
    /// still as read.
    pub(crate) fn write(&self, stream: &str, payload: Bytes, ops: &mut Vec<StoreOp>) {
        ops.push(StoreOp::append(stream, self.unchanged, payload));
        if self.entry.is_some() {
            ops.push(StoreOp::prune(stream, self.next_seq));
        }
    }

    /// The operations that delete the document, if it is still as read.
    pub(crate) fn delete(&self, stream: &str, ops: &mut Vec<StoreOp>) {
        ops.push(StoreOp::append(stream, self.unchanged, Bytes::new()));
        ops.push(StoreOp::prune(stream, self.next_seq + 1));
    }
}

/// Commits `ops`: `true` if they landed, `false` if a stream moved since
/// it was read (the caller reads again and decides again).
///
/// # Errors
/// Any other failure of the commit.
pub(crate) async fn commit_planned<B: Backend>(backend: &B, ops: Vec<StoreOp>) -> Result<bool, StoreError> {
    match backend.commit(ops).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Reads the document in `stream`.
///
/// # Errors
/// [`StoreError::Backend`].
pub(crate) async fn load<B: Backend>(backend: &B, stream: &str) -> Result<DocumentState, StoreError> {
    let contents = backend.read(stream).await?;
    // A write prunes the value before it in the same commit: one live entry.
    let unchanged = contents.unchanged();
    Ok(DocumentState { entry: contents.entries.into_iter().last(), next_seq: contents.next_seq, unchanged })
}

/// A name made safe to stand inside a stream name: `%` and `/` escaped, so
/// that no id can reach into another's streams.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The name [`escape`] was given, if `escaped` is one of its results.
pub(crate) fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A namespace's stream prefix: `<kind>/` or `<kind>@<namespace>/`.
pub(crate) fn prefix(kind: &str, namespace: &str) -> String {
    if namespace.is_empty() { format!("{kind}/") } else { format!("{kind}@{}/", escape(namespace)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_names_round_trip_and_never_hold_a_slash() {
        for name in ["plain", "a/b", "100%", "%2F", "/%/", ""] {
            let escaped = escape(name);
            assert!(!escaped.contains('/'), "{escaped}");
            assert_eq!(unescape(&escaped).as_deref(), Some(name));
        }
        assert_eq!(unescape("bad%"), None);
        assert_eq!(unescape("bad%41"), None);
    }
}
