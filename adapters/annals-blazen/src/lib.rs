//! blazen-persist's `CheckpointStore` on Annals.
