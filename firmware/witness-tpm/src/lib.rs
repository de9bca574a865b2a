//! The box's TPM 2.0: seals small secrets (the box's keys) to this TPM and unseals them, through
//! the `tpm2-tools` commands. A sealed blob is a TPM object under the owner hierarchy's storage
//! primary key (ECC P-256, recreated from the TPM's seed on every use, so nothing persistent is
//! kept in the TPM): only the TPM that sealed it can open it, so key files lifted off the disk,
//! or a disk moved to another machine, open nothing.
//!
//! Secrets go to and come from the tools through pipes, never files. The object files the tools
//! write (public part, TPM-encrypted private part, saved contexts) are not secret.
//!
//! Without a resource manager (a software TPM, or a device opened directly) transient objects
//! stay loaded between commands and the TPM has room for three: every step flushes them, and an
//! optional lock file serialises operations of several processes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use thiserror::Error;

pub mod simulator;

const MAGIC: &[u8] = b"witness-tpm/1\n";

#[derive(Debug, Error)]
pub enum TpmError {
    #[error("{tool} cannot be run ({source}): the TPM needs tpm2-tools (apt install tpm2-tools)")]
    Tools {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the TPM ({tcti}) cannot be reached: is it there and switched on?")]
    Unreachable { tcti: String },
    #[error("the TPM ({tcti}) refused to {step}: {detail}")]
    Refused { tcti: String, step: &'static str, detail: String },
    #[error("not a sealed key (no witness-tpm header, or cut short)")]
    Blob,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> TpmError {
    move |source| TpmError::Io { what, source }
}

/// A TPM reached through a TCTI string (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`).
#[derive(Debug, Clone)]
pub struct Tpm {
    tcti: String,
    lock: Option<PathBuf>,
}

impl Tpm {
    pub fn new(tcti: &str) -> Self {
        Self { tcti: tcti.to_owned(), lock: None }
    }

    /// Operations hold an exclusive lock on `path` (created if missing).
    pub fn with_lock(mut self, path: &Path) -> Self {
        self.lock = Some(path.to_owned());
        self
    }

    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Seals `secret` (at most 128 bytes) to this TPM; returns the blob to keep on disk.
    pub fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, TpmError> {
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        self.primary(dir.path())?;
        self.run(
            dir.path(),
            "seal the key",
            "tpm2_create",
            &["-Q", "-C", "primary.ctx", "-i", "-", "-u", "obj.pub", "-r", "obj.priv"],
            Some(secret),
        )?;
        self.flush(dir.path())?;
        let public = std::fs::read(dir.path().join("obj.pub")).map_err(io("reading the sealed object"))?;
        let private = std::fs::read(dir.path().join("obj.priv")).map_err(io("reading the sealed object"))?;
        let mut blob = MAGIC.to_vec();
        for part in [&public, &private] {
            let len = u16::try_from(part.len()).map_err(|_| TpmError::Blob)?;
            blob.extend(len.to_be_bytes());
            blob.extend_from_slice(part);
        }
        Ok(blob)
    }

    /// Opens a blob made by [`Tpm::seal`] on this TPM.
    pub fn unseal(&self, blob: &[u8]) -> Result<Vec<u8>, TpmError> {
        let (public, private) = parts(blob)?;
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        std::fs::write(dir.path().join("obj.pub"), public).map_err(io("writing the sealed object"))?;
        std::fs::write(dir.path().join("obj.priv"), private).map_err(io("writing the sealed object"))?;
        self.primary(dir.path())?;
        self.run(
            dir.path(),
            "load the sealed key",
            "tpm2_load",
            &["-Q", "-C", "primary.ctx", "-u", "obj.pub", "-r", "obj.priv", "-c", "obj.ctx"],
            None,
        )?;
        self.flush(dir.path())?;
        let secret = self.run(dir.path(), "unseal the key", "tpm2_unseal", &["-c", "obj.ctx"], None);
        self.flush(dir.path())?;
        secret
    }

    /// The storage primary key, as `primary.ctx` in `dir`: the same key for the same TPM.
    fn primary(&self, dir: &Path) -> Result<(), TpmError> {
        self.flush(dir)?;
        let args = ["-Q", "-C", "o", "-g", "sha256", "-G", "ecc256", "-c", "primary.ctx"];
        self.run(dir, "create its storage key", "tpm2_createprimary", &args, None)?;
        self.flush(dir)
    }

    fn flush(&self, dir: &Path) -> Result<(), TpmError> {
        self.run(dir, "flush transient objects", "tpm2_flushcontext", &["-t"], None).map(drop)
    }

    /// Runs one tool in `dir`; returns its standard output.
    fn run(
        &self,
        dir: &Path,
        step: &'static str,
        tool: &'static str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, TpmError> {
        let mut child = Command::new(tool)
            .args(args)
            .current_dir(dir)
            .env("TPM2TOOLS_TCTI", &self.tcti)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TpmError::Tools { tool, source })?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(data).map_err(io("handing the key to tpm2-tools"))?;
        }
        let out = child.wait_with_output().map_err(io("waiting for tpm2-tools"))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // The tools' own last words (handles, TPM return codes); they never print the secret.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let detail = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
        tracing::debug!(tool, %stderr, "tpm2-tools failed");
        if stderr.contains("Could not load tcti") {
            return Err(TpmError::Unreachable { tcti: self.tcti.clone() });
        }
        Err(TpmError::Refused { tcti: self.tcti.clone(), step, detail })
    }

    fn lock(&self) -> Result<Option<std::fs::File>, TpmError> {
        let Some(path) = &self.lock else { return Ok(None) };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io("opening the TPM lock"))?;
        file.lock().map_err(io("taking the TPM lock"))?;
        Ok(Some(file))
    }
}

/// The public and private parts of a blob.
fn parts(blob: &[u8]) -> Result<(&[u8], &[u8]), TpmError> {
    let rest = blob.strip_prefix(MAGIC).ok_or(TpmError::Blob)?;
    let take = |b: &'_ [u8]| -> Option<(usize, usize)> {
        let len = usize::from(u16::from_be_bytes(b.get(..2)?.try_into().ok()?));
        (b.len() >= 2 + len).then_some((2, 2 + len))
    };
    let (s, e) = take(rest).ok_or(TpmError::Blob)?;
    let (public, rest) = (&rest[s..e], &rest[e..]);
    let (s, e) = take(rest).ok_or(TpmError::Blob)?;
    if e != rest.len() || public.is_empty() {
        return Err(TpmError::Blob);
    }
    Ok((public, &rest[s..e]))
}

/// Whether `data` is a sealed blob (by its header).
pub fn is_sealed(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_parse_whole_or_not_at_all() {
        let mut blob = MAGIC.to_vec();
        blob.extend([0, 3, 1, 2, 3, 0, 2, 9, 9]);
        assert_eq!(parts(&blob).unwrap(), (&[1u8, 2, 3][..], &[9u8, 9][..]));
        assert!(is_sealed(&blob));
        for bad in [&blob[..blob.len() - 1], &blob[..MAGIC.len() + 3], b"0123abcd".as_slice()] {
            assert!(matches!(parts(bad), Err(TpmError::Blob)), "{bad:?}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(parts(&longer), Err(TpmError::Blob)));
    }
}
