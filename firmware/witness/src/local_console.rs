//! The box's local console (its screen and serial line): the only place a new admin password
//! is shown. Never stdout, never the journal, never a log line.
//!
//! Under the image's `witness.service` the daemon cannot reach a console device (its sandbox
//! hides them): it leaves the text in `WITNESS_CONSOLE_DIR` (`/run/witness-console`, a tmpfs
//! directory only its user can read) and `witness-console.path` starts a root oneshot that copies
//! it to `/dev/console` and removes it. Elsewhere the controlling terminal (`/dev/tty`) is the
//! console. With neither, nothing that would create a password is done.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;

/// Where the daemon leaves text for the console (set by the image's unit).
pub const DIR_ENV: &str = "WITNESS_CONSOLE_DIR";

/// An opened local console.
pub enum LocalConsole {
    /// A folder the image's root oneshot shows on `/dev/console`.
    Dir(PathBuf),
    /// The controlling terminal.
    Tty(std::fs::File),
}

impl LocalConsole {
    /// Finds the console before anything is changed, so no password is made that nobody sees.
    pub fn open() -> Result<Self> {
        if let Some(dir) = std::env::var_os(DIR_ENV) {
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                bail!("{DIR_ENV} names {}, which is not a folder", dir.display());
            }
            return Ok(LocalConsole::Dir(dir));
        }
        match std::fs::OpenOptions::new().write(true).open("/dev/tty") {
            Ok(tty) => Ok(LocalConsole::Tty(tty)),
            Err(_) => bail!(
                "no local console to show the new admin password on: run this at a terminal (the password is never printed to stdout or the journal)"
            ),
        }
    }

    /// Shows `text` on the console. In a folder it appears whole (`NAME.msg`, renamed into
    /// place) for the root oneshot to pick up.
    pub fn show(self, name: &str, text: &str) -> Result<()> {
        match self {
            LocalConsole::Dir(dir) => {
                let tmp = dir.join(format!("{name}.tmp"));
                let _ = std::fs::remove_file(&tmp);
                witness_keys::write_private(&tmp, text.as_bytes())?;
                std::fs::rename(&tmp, dir.join(format!("{name}.msg")))
                    .with_context(|| format!("placing {name}.msg for the console"))
            }
            LocalConsole::Tty(mut tty) => tty.write_all(text.as_bytes()).context("writing to the terminal"),
        }
    }
}

/// Shows that a sealed key would not open on the box's console (the daemon's folder), so the
/// person at the box sees why nothing opens. Registered with `witness_keys::on_unseal_failure`.
pub fn keys_will_not_open(name: &str, error: &str) {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        let text = format!(
            "\n=================== WITNESS: KEYS WILL NOT OPEN ===================\n\
             The box's TPM will not open {name}: {error}\n\
             Recordings, the index and signatures stay closed until the box boots the state its keys\n\
             were sealed to. Recovery: README, \"Keys sealed to the TPM\".\n\
             ===================================================================\n\n"
        );
        let _ = LocalConsole::Dir(PathBuf::from(dir)).show("tpm-unseal", &text);
    }
}
