//! The box's TPM 2.0: seals small secrets (the box's keys) to this TPM and unseals them, through
//! the `tpm2-tools` commands. A sealed blob is a TPM object under the owner hierarchy's storage
//! primary key (ECC P-256, recreated from the TPM's seed on every use, so nothing persistent is
//! kept in the TPM): only the TPM that sealed it can open it, so key files lifted off the disk,
//! or a disk moved to another machine, open nothing.
//!
//! Secrets go to and come from the tools through pipes, never files. The object files the tools
//! write (public part, TPM-encrypted private part, saved contexts) are not secret.
//!
//! A key may be bound to the boot state as well ([`PcrPolicy`]): sealed with a policy over
//! chosen PCRs of the SHA-256 bank and the values they must hold, it opens only while the TPM's
//! PCRs hold exactly those values. One key file then holds one sealing per expected boot state,
//! each under a label (the box's A/B slot): an update seals every key for the new slot's state
//! before the box switches to it, and the old slot's sealing stays for a fallback.
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
/// A sealing bound to PCRs, with its label; a key file holds one or more of them back to back.
const MAGIC2: &[u8] = b"witness-tpm/2\n";

#[derive(Debug, Error)]
pub enum TpmError {
    #[error("{tool} cannot be run ({source}): the TPM needs tpm2-tools (apt install tpm2-tools)")]
    Tools {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the TPM ({tcti}) cannot be reached{why}: is it there and switched on?")]
    Unreachable { tcti: String, why: String },
    #[error("the TPM ({tcti}) refused to {step}: {detail}")]
    Refused { tcti: String, step: &'static str, detail: String },
    #[error(
        "the TPM ({tcti}) will not open the key in this boot state: PCRs {pcrs} differ from the state it was \
         sealed to ({labels}): another firmware, kernel, boot chain or root, or the key was never sealed for this slot"
    )]
    Policy { tcti: String, pcrs: String, labels: String },
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
        let (public, private) = self.create(secret, None)?;
        let mut blob = MAGIC.to_vec();
        push_parts(&mut blob, &public, &private)?;
        Ok(blob)
    }

    /// Seals `secret` to this TPM with a policy over `policy`'s PCRs: the TPM opens it only while
    /// they hold `policy`'s values. Returns one labelled sealing (see [`with_sealing`]).
    pub fn seal_to(&self, secret: &[u8], policy: &PcrPolicy) -> Result<Vec<u8>, TpmError> {
        let label = policy.label.as_bytes();
        if policy.values.is_empty() || label.is_empty() || label.len() > 64 || policy.values.len() > 24 {
            return Err(TpmError::Blob);
        }
        let (public, private) = self.create(secret, Some(policy))?;
        let mut blob = MAGIC2.to_vec();
        blob.push(label.len() as u8);
        blob.extend_from_slice(label);
        blob.push(policy.values.len() as u8);
        blob.extend(policy.values.iter().map(|(pcr, _)| *pcr));
        push_parts(&mut blob, &public, &private)?;
        Ok(blob)
    }

    /// The sealed object's public and private parts; bound to `policy` if given. A sealed
    /// object with a policy has no `userwithauth`: only the policy opens it, not an empty
    /// password. It is `noda`: with no password to guess, a boot in another state failing its
    /// policy (again and again, as a service restarts) must not put the TPM into dictionary-attack
    /// lockout, which would refuse every key, in every state, for hours.
    fn create(&self, secret: &[u8], policy: Option<&PcrPolicy>) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        self.primary(dir.path(), policy.is_some())?;
        let mut args = vec!["-Q", "-C", "primary.ctx", "-i", "-", "-u", "obj.pub", "-r", "obj.priv"];
        let selection;
        if let Some(policy) = policy {
            let values: Vec<u8> = policy.values.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            std::fs::write(dir.path().join("pcrs.bin"), values).map_err(io("writing the PCR values"))?;
            selection = policy.selection();
            let make = ["-Q", "--policy-pcr", "-l", &selection, "-f", "pcrs.bin", "-L", "policy.digest"];
            let made = self.run(dir.path(), "make the PCR policy", "tpm2_createpolicy", &make, None);
            self.flush_sessions(dir.path())?;
            made?;
            args.extend_from_slice(&["-L", "policy.digest", "-a", "fixedtpm|fixedparent|noda"]);
        }
        let created = self.run(dir.path(), "seal the key", "tpm2_create", &args, Some(secret));
        self.flush(dir.path())?;
        self.flush_sessions(dir.path())?;
        created?;
        let public = std::fs::read(dir.path().join("obj.pub")).map_err(io("reading the sealed object"))?;
        let private = std::fs::read(dir.path().join("obj.priv")).map_err(io("reading the sealed object"))?;
        Ok((public, private))
    }

    /// The SHA-256 values of `pcrs` now.
    pub fn pcrs(&self, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
        let mut pcrs = pcrs.to_vec();
        pcrs.sort_unstable();
        pcrs.dedup();
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        let selection = selection(&pcrs);
        self.run(dir.path(), "read its PCRs", "tpm2_pcrread", &["-Q", &selection, "-o", "pcrs.bin"], None)?;
        let data = std::fs::read(dir.path().join("pcrs.bin")).map_err(io("reading the PCR values"))?;
        if data.len() != 32 * pcrs.len() {
            return Err(TpmError::Refused {
                tcti: self.tcti.clone(),
                step: "read its PCRs",
                detail: format!("{} bytes for {} PCRs (is the SHA-256 bank active?)", data.len(), pcrs.len()),
            });
        }
        Ok(pcrs.iter().zip(data.chunks(32)).map(|(p, v)| (*p, v.try_into().expect("32 bytes"))).collect())
    }

    /// Extends `pcr` (SHA-256 bank) with `digest`: its value becomes [`extended`]`(old, digest)`.
    pub fn extend(&self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        let arg = format!("{pcr}:sha256={}", hex(digest));
        self.run(dir.path(), "extend a PCR", "tpm2_pcrextend", &[&arg], None).map(drop)
    }

    /// Opens a key file made by [`Tpm::seal`], or one or more sealings made by [`Tpm::seal_to`]
    /// (the first that opens in this boot state), on this TPM.
    pub fn unseal(&self, data: &[u8]) -> Result<Vec<u8>, TpmError> {
        if data.starts_with(MAGIC2) {
            let sealings = sealings(data)?;
            let mut refused = None;
            for s in &sealings {
                match self.open(s.public, s.private, Some(&s.pcrs)) {
                    Ok(secret) => return Ok(secret),
                    Err(e @ (TpmError::Policy { .. } | TpmError::Refused { .. })) => refused = Some(e),
                    Err(e) => return Err(e),
                }
            }
            return Err(match refused {
                Some(TpmError::Policy { tcti, pcrs, .. }) => {
                    let labels = sealings.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ");
                    TpmError::Policy { tcti, pcrs, labels: format!("sealed for: {labels}") }
                }
                Some(e) => e,
                None => TpmError::Blob,
            });
        }
        let (public, private) = parts(data)?;
        self.open(public, private, None)
    }

    fn open(&self, public: &[u8], private: &[u8], pcrs: Option<&[u8]>) -> Result<Vec<u8>, TpmError> {
        let _lock = self.lock()?;
        let dir = tempfile::tempdir().map_err(io("making a work directory"))?;
        std::fs::write(dir.path().join("obj.pub"), public).map_err(io("writing the sealed object"))?;
        std::fs::write(dir.path().join("obj.priv"), private).map_err(io("writing the sealed object"))?;
        self.primary(dir.path(), pcrs.is_some())?;
        self.run(
            dir.path(),
            "load the sealed key",
            "tpm2_load",
            &["-Q", "-C", "primary.ctx", "-u", "obj.pub", "-r", "obj.priv", "-c", "obj.ctx"],
            None,
        )?;
        self.flush(dir.path())?;
        let auth = pcrs.map(|p| format!("pcr:{}", selection(p)));
        let mut args = vec!["-c", "obj.ctx"];
        if let Some(auth) = &auth {
            args.extend_from_slice(&["-p", auth]);
        }
        let secret = self.run(dir.path(), "unseal the key", "tpm2_unseal", &args, None);
        self.flush(dir.path())?;
        self.flush_sessions(dir.path())?;
        match secret {
            Err(TpmError::Refused { tcti, detail, .. })
                if detail.contains("0x99D") || detail.to_lowercase().contains("policy check failed") =>
            {
                Err(TpmError::Policy { tcti, pcrs: selection(pcrs.unwrap_or_default()), labels: String::new() })
            }
            other => other,
        }
    }

    /// The storage primary key, as `primary.ctx` in `dir`: the same key for the same TPM.
    /// Sealings bound to PCRs live under a `noda` primary: loading under it is then no
    /// authorization the TPM counts (each power cut without an orderly shutdown counts as a
    /// failed one for DA-protected keys, and a few lock the TPM out for hours). Policy-less blobs
    /// (made before) live under the default primary.
    fn primary(&self, dir: &Path, noda: bool) -> Result<(), TpmError> {
        self.flush(dir)?;
        let mut args = vec!["-Q", "-C", "o", "-g", "sha256", "-G", "ecc256", "-c", "primary.ctx"];
        if noda {
            args.extend_from_slice(&[
                "-a",
                "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda",
            ]);
        }
        self.run(dir, "create its storage key", "tpm2_createprimary", &args, None)?;
        self.flush(dir)
    }

    fn flush(&self, dir: &Path) -> Result<(), TpmError> {
        self.run(dir, "flush transient objects", "tpm2_flushcontext", &["-t"], None).map(drop)
    }

    /// Sessions a tool left behind, loaded or saved (policy sessions, and the sessions the
    /// tools open for parameter encryption): the TPM has room for only a few.
    fn flush_sessions(&self, dir: &Path) -> Result<(), TpmError> {
        for kind in ["-l", "-s"] {
            self.run(dir, "flush sessions", "tpm2_flushcontext", &[kind], None)?;
        }
        Ok(())
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
        // The line with the TPM's return code where there is one (`ERROR: Esys_Unseal(0x99D) -
        // tpm:session(1):a policy check failed`), not the closing "Unable to run".
        let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let detail = lines
            .iter()
            .rev()
            .find(|l| l.contains("(0x") || l.contains("ErrorCode"))
            .or(lines.last())
            .unwrap_or(&"no message")
            .to_string();
        tracing::debug!(tool, %stderr, "tpm2-tools failed");
        if stderr.contains("Could not load tcti") {
            // A device node says why it cannot be opened (missing, or not allowed: permissions,
            // a sandbox's device list), which the tools do not.
            let why = match self.tcti.strip_prefix("device:") {
                Some(node) => match std::fs::OpenOptions::new().read(true).write(true).open(node) {
                    Ok(_) => String::new(),
                    Err(e) => format!(" (opening {node}: {e})"),
                },
                None => String::new(),
            };
            return Err(TpmError::Unreachable { tcti: self.tcti.clone(), why });
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

fn push_parts(blob: &mut Vec<u8>, public: &[u8], private: &[u8]) -> Result<(), TpmError> {
    for part in [public, private] {
        let len = u16::try_from(part.len()).map_err(|_| TpmError::Blob)?;
        blob.extend(len.to_be_bytes());
        blob.extend_from_slice(part);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PCR selection in tpm2-tools' syntax: `sha256:0,1,15`.
fn selection(pcrs: &[u8]) -> String {
    let list: Vec<String> = pcrs.iter().map(|p| p.to_string()).collect();
    format!("sha256:{}", list.join(","))
}

/// The boot state a key is sealed to: PCRs of the SHA-256 bank and the values they must hold,
/// under a label (which boot state it is, e.g. the slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPolicy {
    pub label: String,
    /// Ascending by PCR.
    pub values: Vec<(u8, [u8; 32])>,
}

impl PcrPolicy {
    fn selection(&self) -> String {
        selection(&self.values.iter().map(|(p, _)| *p).collect::<Vec<_>>())
    }
}

/// A PCR's value after extending `old` with `digest`: SHA-256(old || digest).
pub fn extended(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

/// One labelled sealing of a key file.
struct Sealing<'a> {
    label: String,
    pcrs: Vec<u8>,
    public: &'a [u8],
    private: &'a [u8],
}

/// The sealings of a key file of [`Tpm::seal_to`] blobs, whole or an error.
fn sealings(mut data: &[u8]) -> Result<Vec<Sealing<'_>>, TpmError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (s, rest) = sealing(data).ok_or(TpmError::Blob)?;
        out.push(s);
        data = rest;
    }
    if out.is_empty() {
        return Err(TpmError::Blob);
    }
    Ok(out)
}

fn sealing(data: &[u8]) -> Option<(Sealing<'_>, &[u8])> {
    let rest = data.strip_prefix(MAGIC2)?;
    let (&n, rest) = rest.split_first()?;
    let (label, rest) = rest.split_at_checked(usize::from(n))?;
    let label = std::str::from_utf8(label).ok().filter(|l| !l.is_empty())?.to_owned();
    let (&n, rest) = rest.split_first()?;
    let (pcrs, rest) = rest.split_at_checked(usize::from(n))?;
    if pcrs.is_empty() || pcrs.iter().any(|p| *p > 23) {
        return None;
    }
    let part = |b: &'_ [u8]| -> Option<(usize, usize)> {
        let len = usize::from(u16::from_be_bytes(b.get(..2)?.try_into().ok()?));
        (b.len() >= 2 + len).then_some((2, 2 + len))
    };
    let (s, e) = part(rest)?;
    let (public, rest) = (&rest[s..e], &rest[e..]);
    let (s, e) = part(rest)?;
    if public.is_empty() {
        return None;
    }
    Some((Sealing { label, pcrs: pcrs.to_vec(), public, private: &rest[s..e] }, &rest[e..]))
}

/// The labels a key file is sealed under (`[]` for a file sealed without a policy).
pub fn labels(data: &[u8]) -> Result<Vec<String>, TpmError> {
    if data.starts_with(MAGIC2) {
        return Ok(sealings(data)?.into_iter().map(|s| s.label).collect());
    }
    parts(data).map(|_| vec![])
}

/// A key file with `sealing` (one [`Tpm::seal_to`] blob) in place of any sealing of the same
/// label; other labelled sealings stay, a sealing without policy goes.
pub fn with_sealing(data: &[u8], sealing: &[u8]) -> Result<Vec<u8>, TpmError> {
    let new = sealings(sealing)?;
    let [new_one] = new.as_slice() else { return Err(TpmError::Blob) };
    let mut out = sealing.to_vec();
    if data.starts_with(MAGIC2) {
        let mut rest = data;
        while !rest.is_empty() {
            let (s, tail) = self::sealing(rest).ok_or(TpmError::Blob)?;
            if s.label != new_one.label {
                out.extend_from_slice(&rest[..rest.len() - tail.len()]);
            }
            rest = tail;
        }
    }
    Ok(out)
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
    data.starts_with(MAGIC) || data.starts_with(MAGIC2)
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

    fn fake(label: &str, pcrs: &[u8], public: &[u8]) -> Vec<u8> {
        let mut b = MAGIC2.to_vec();
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
        b.push(pcrs.len() as u8);
        b.extend_from_slice(pcrs);
        push_parts(&mut b, public, &[7, 7]).unwrap();
        b
    }

    #[test]
    fn labelled_sealings_are_replaced_by_label_and_parse_whole_or_not_at_all() {
        let a = fake("a", &[0, 15], &[1]);
        let b = fake("b", &[0, 15], &[2]);
        let file = with_sealing(&a, &b).unwrap();
        assert_eq!(labels(&file).unwrap(), ["b", "a"]);
        let a2 = fake("a", &[0, 15], &[3]);
        let file = with_sealing(&file, &a2).unwrap();
        assert_eq!(labels(&file).unwrap(), ["a", "b"]);
        assert_eq!(sealings(&file).unwrap()[0].public, &[3]);
        // A sealing without policy is dropped once a labelled one comes.
        let mut v1 = MAGIC.to_vec();
        v1.extend([0, 1, 9, 0, 0]);
        assert_eq!(labels(&with_sealing(&v1, &a).unwrap()).unwrap(), ["a"]);
        assert!(is_sealed(&file));
        for cut in 1..file.len() {
            assert!(sealings(&file[..cut]).is_err() || cut == a2.len(), "cut at {cut}");
        }
        assert!(sealings(&fake("a", &[24], &[1])).is_err(), "no PCR past 23");
        assert!(sealings(&fake("", &[1], &[1])).is_err(), "a label");
        assert!(with_sealing(&a, &file).is_err(), "one sealing at a time");
    }

    #[test]
    fn an_extended_pcr_is_the_hash_of_old_and_digest() {
        // SHA-256 of 64 zero bytes: a PCR at zero extended with zeros.
        assert_eq!(
            hex(&extended(&[0; 32], &[0; 32])),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
    }
}
