//! A recording's after-life, from "session ended" to "pruned": the decisions the seal, upload,
//! verify and prune steps are made of, as pure functions without I/O (unit-tested here): where
//! a recording and its manifests go in the store ([`keys`]), how long a failed step waits
//! ([`backoff`]), which local copies may go ([`prune`]) and what a session's manifest says
//! ([`manifest`]), and whether a kept confirmation from the store covers what verify vouches
//! for ([`receipt`]). Playback and export read a recording part by part wherever it is stored
//! ([`playback`], behind the [`playback::Stored`] trait). The after-life runs as durable jobs
//! ([`jobs`]: the graph, and a worker pool over the index's job rows, behind [`jobs::Steps`]).
//! The binary does the rest of the I/O.

pub mod backoff;
pub mod jobs;
pub mod keys;
pub mod manifest;
pub mod playback;
pub mod prune;
pub mod receipt;

pub use keys::Format;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the session manifest cannot be written: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("the index: {0}")]
    Index(#[from] witness_index::IndexError),
    #[error("no key {0} to decrypt the recording")]
    NoKey(String),
    #[error("reading the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    AtRest(#[from] witness_core::atrest::AtRestError),
    #[error(
        "the recording does not match its recorded sha256 (index {expected}, stored {got}); refusing to play or export a changed recording"
    )]
    Changed { expected: String, got: String },
}
