//! Sans-IO domain logic of Witness: everything that can be decided or parsed without touching a
//! socket, a file or a clock. Callers feed bytes and facts (such as "now") in; this crate never
//! does I/O, never spawns, and never depends on tokio, SQLite or russh, so it is unit-tested and
//! fuzzed on its own.

pub mod atrest;
pub mod audit_anchor;
pub mod cast;
pub mod channel;
pub mod clock;
pub mod config;
pub mod duration;
pub mod echo;
pub mod egress;
pub mod evidence;
pub mod fmp4;
pub mod gate;
pub mod history;
pub mod model;
pub mod names;
pub mod ocr;
pub mod ocr_lines;
pub mod policy;
pub mod rawrec;
pub mod rows;
pub mod scp;
pub mod sftp;
pub mod tar;
pub mod text;

pub use model::{JobState, JobStep, Protocol, RDP_KEYS_CHANNEL, RecordingStatus, Role, Transfers, rdp_desktop_channel};
