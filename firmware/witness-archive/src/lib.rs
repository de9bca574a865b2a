//! A recording's after-life, from "session ended" to "pruned": the decisions the seal, upload,
//! verify and prune steps are made of, as pure functions without I/O (unit-tested here): where
//! a recording and its manifests go in the store ([`keys`]), how long a failed step waits
//! ([`backoff`]), which local copies may go ([`prune`]) and what a session's manifest says
//! ([`manifest`]). The binary does the I/O around them.

pub mod backoff;
pub mod keys;
pub mod manifest;
pub mod prune;

pub use keys::Format;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the session manifest cannot be written: {0}")]
    Manifest(#[from] serde_json::Error),
}
