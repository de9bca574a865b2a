//! The data directory's layout and the opening of everything in it.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use witness_core::config::{Config, ConfigFile};
use witness_index::Index;

pub const CONFIG: &str = "witness.toml";
pub const INDEX: &str = "index.sqlite";
pub const HOST_KEY: &str = "keys/ssh_host_ed25519_key";
/// Seed of the Ed25519 key that signs recording manifests (hex, 0600).
pub const SIGNING_KEY: &str = "keys/evidence_ed25519";
pub const RECORDINGS: &str = "recordings";
/// The console's TLS certificate and key (PEM): generated self-signed, replaceable by the
/// operator's own (restart to load).
pub const WEB_CERT: &str = "keys/web-cert.pem";
pub const WEB_KEY: &str = "keys/web-key.pem";

/// An opened data directory.
pub struct DataDir {
    pub root: PathBuf,
    pub config: Config,
    pub index: Index,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join(CONFIG).exists() {
            bail!(
                "{} is not a witness data directory (no {CONFIG}); create it with: witness init --data {}",
                root.display(),
                root.display()
            );
        }
        let text = std::fs::read_to_string(root.join(CONFIG))
            .with_context(|| format!("reading {}", root.join(CONFIG).display()))?;
        let config = ConfigFile::parse(&text)?.validate()?;
        let key = witness_index::IndexKey(witness_keys::index_key(root)?);
        let index = Index::open_encrypted(&root.join(INDEX), &key)
            .with_context(|| format!("opening the index in {}", root.display()))?;
        // Audit events recorded while the index would not open (a key the TPM refused).
        // (Moved aside before it is read, so a line appended meanwhile waits for the next open.)
        let pending = witness_keys::pending_audit(root)?;
        for (kind, event) in &pending.events {
            index.audit(kind, None, None, None, event)?;
        }
        witness_keys::clear_pending_audit(&pending)?;
        Ok(Self { root: root.to_owned(), config, index })
    }

    pub fn recordings_dir(&self) -> PathBuf {
        self.root.join(RECORDINGS)
    }
}

/// Today's date (UTC) as the name of a recordings sub-folder.
pub fn today() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
