//! The RDP jump path's logic without I/O, like IronRDP's core tier: what the proxy
//! (`witness-rdp`) decides about the bytes it relays, as pure functions over byte buffers. The
//! policy filter and capability trimming ([`filter`]), channel classes and names ([`channels`]),
//! the graphics pipeline's ZGFX transport as the filter reads it ([`gfx`]), the `alice@web01`
//! login ([`login`]), the passive decoder that turns the target's PDUs into screen images for the
//! recording ([`decode`]) and the key track ([`keys`]). No tokio, no sockets, no files (checked
//! by `xtask/src/deps.rs`); each is unit-tested and fuzzed.

pub mod channels;
pub mod decode;
pub mod filter;
pub mod gfx;
pub mod keys;
pub mod login;
pub mod messages;
pub mod pointer;
