//! cano's `recovery::CheckpointStore` on Annals.
