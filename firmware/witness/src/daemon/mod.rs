//! `witness serve`: the daemon — the listeners and proxies' brokers, the console, the panel and
//! the serve loop. It builds on the foundations (the data dir, archive, evidence, views) and
//! never on the commands.

pub mod broker;
pub mod console;
pub mod panel;
pub mod rdp;
pub mod serve;
pub mod supervisor;
pub mod systemd;
pub mod video;
