//! Making a data directory and resetting it: `init`'s files, keys and first admin, and the
//! factory reset (what it will do, told first; then the wipe and a fresh admin). Printing is the
//! commands' part; this returns what they show.

use crate::datadir::{self};
use anyhow::Result;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::path::Path;
use witness_core::Role;
use witness_index::UserRecord;
use witness_keys::write_private;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// What a factory reset keeps or removes beyond users, targets, the store and the box's identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResetOptions {
    /// Delete recordings not yet in the store (callers pass it only after two confirmations).
    pub delete_unuploaded: bool,
    /// Keep the keys that open past recordings (the KEKs, the search key) and the store's read
    /// settings: the new admin then plays, exports and searches everything recorded so far.
    pub keep_recording_access: bool,
}

/// What a reset will do, in words, told before it is confirmed.
pub fn factory_reset_consequences(root: &Path, opts: &ResetOptions) -> Result<String> {
    let dir = crate::datadir::DataDir::open(root)?;
    let recordings = dir.index.recordings()?.len();
    let backlog = dir.index.backlog()?;
    let mut text = format!(
        "factory reset of {}:\n\
         - removed: every user, target and target credential and grant, the store settings \
         (store.toml, store-read.toml), the journal collector (journal-upload.env), the SSH host \
         key, the console's and RDP's certificates, witness.toml\n",
        root.display()
    );
    if opts.keep_recording_access {
        text.push_str(&format!(
            "- KEPT (--keep-recording-access): the keys of the {recordings} recordings made so far and \
             the store's read settings: the new admin can play, export and search all of them, on the \
             box and in the store\n"
        ));
    } else {
        text.push_str(&format!(
            "- destroyed: the key-encryption keys and the search key: the {recordings} recordings made \
             so far ({} in the store, {} not yet uploaded) can never again be played, exported or \
             searched, by anyone, here or from the store (keep them with --keep-recording-access)\n",
            backlog.uploaded, backlog.pending
        ));
    }
    if opts.delete_unuploaded {
        text.push_str(&format!(
            "- deleted: the {} recordings not yet uploaded (held sessions excepted)\n",
            backlog.pending
        ));
    } else {
        text.push_str(&format!("- kept on the box: the {} recordings not yet uploaded\n", backlog.pending));
    }
    text.push_str("- a new admin user with a new password, shown on this console only\n");
    Ok(text)
}

/// Wipes keys, credentials and configuration and creates a fresh admin; returns the new admin
/// password, for the local console only. Without `keep_recording_access` every key that opens a
/// past recording goes too.
pub fn factory_reset(root: &Path, opts: &ResetOptions) -> Result<String> {
    let dir = crate::datadir::DataDir::open(root)?;
    let backlog = dir.index.backlog()?;
    dir.index.wipe_identities()?;
    let mut deleted = 0;
    if opts.delete_unuploaded {
        for path in dir.index.wipe_recordings()? {
            if std::fs::remove_file(root.join(&path)).is_ok() {
                deleted += 1;
            }
        }
    }
    let mut wiped: Vec<&str> = vec![
        datadir::HOST_KEY,
        crate::sync::STORE_FILE,
        crate::egress::JOURNAL_UPLOAD_FILE,
        datadir::WEB_CERT,
        datadir::WEB_KEY,
    ];
    if !opts.keep_recording_access {
        wiped.push(crate::sync::READ_STORE_FILE);
    }
    for f in wiped {
        let _ = std::fs::remove_file(root.join(f));
    }
    let destroyed = if opts.keep_recording_access { vec![] } else { witness_keys::destroy_recording_keys(root)? };
    let host_key = witness_ssh::generate_host_key()?;
    write_private(&root.join(datadir::HOST_KEY), host_key.as_bytes())?;
    crate::identity::ensure_certificate(root)?;
    crate::identity::replace_identity(root)?;
    let config = default_config(&dir.config.box_id);
    witness_keys::replace_private(&root.join(datadir::CONFIG), config.as_bytes())?;
    let password = random_hex(9);
    dir.index.add_user(&UserRecord {
        name: "admin".into(),
        role: Role::Admin,
        password_hash: Some(witness_gate::password::hash_password(&password)?),
        ssh_keys: vec![],
    })?;
    dir.index.set_nt_hash("admin", &witness_rdp::nt_hash(&password))?;
    dir.index.audit(
        "factory_reset",
        None,
        None,
        None,
        &serde_json::json!({
            "kept_unuploaded": if opts.delete_unuploaded { 0 } else { backlog.pending },
            "deleted_recordings": deleted,
            "recording_access_kept": opts.keep_recording_access,
            "keys_destroyed": destroyed,
        }),
    )?;
    // No targets and no store any more: nothing to connect to.
    crate::egress::refresh(&dir);
    Ok(password)
}

/// What the console shows after a reset: the new admin login, once.
pub fn reset_console_message(password: &str, consequences: &str) -> String {
    format!(
        "\n=================== WITNESS FACTORY RESET ===================\n{consequences}\
         admin user: admin  password: {password}  (shown once; store it now)\n\
         =============================================================\n\n"
    )
}

fn default_config(box_id: &str) -> String {
    format!(
        "# Witness configuration. Every key is optional; see README.md for all of them.\n\
         box_id = \"{box_id}\"\n\n[ssh]\nlisten = \"0.0.0.0:2222\"\n\n[recording]\n\
         # record_input = false   # also record keystrokes (they include passwords typed in the session)\n\
         # rdp_keystrokes = false # also record what RDP users type (passwords typed into the target too)\n\
         # min_free_mb = 256      # refuse new sessions below this much free space\n"
    )
}

/// What `init` made, for the command to show once.
pub struct Created {
    pub box_id: String,
    /// The first admin's password: shown once by the command, stored nowhere in the clear.
    pub admin_password: String,
    pub ssh_host_key: String,
    pub rdp_certificate: String,
}

/// Makes a data directory at `root`: folders, the SSH host key, the signing key and the first
/// KEK, the console's and RDP's certificates, the index with its first admin, and the config
/// last (its presence marks a complete data directory).
pub fn create(root: &Path) -> Result<Created> {
    use anyhow::{Context, bail};
    use std::os::unix::fs::DirBuilderExt;
    if root.join(datadir::CONFIG).exists() {
        bail!("{} is already a witness data directory; nothing changed", root.display());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_context(|| format!("creating {}", root.display()))?;
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(root.join("keys"))?;
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(root.join(datadir::RECORDINGS))?;
    let host_key = witness_ssh::generate_host_key()?;
    write_private(&root.join(datadir::HOST_KEY), host_key.as_bytes())?;
    crate::evidence::signing_key(root)?;
    witness_keys::active(root)?;
    crate::identity::ensure_certificate(root)?;
    let rdp_certificate = crate::identity::ensure_identity(root)?;
    let index = witness_index::Index::open_encrypted(
        &root.join(datadir::INDEX),
        &witness_index::IndexKey(witness_keys::index_key(root)?),
    )?;
    std::fs::set_permissions(root.join(datadir::INDEX), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let password = random_hex(9);
    index.add_user(&UserRecord {
        name: "admin".into(),
        role: Role::Admin,
        password_hash: Some(witness_gate::password::hash_password(&password)?),
        ssh_keys: vec![],
    })?;
    index.set_nt_hash("admin", &witness_rdp::nt_hash(&password))?;
    index.audit("box_initialized", Some("admin"), None, None, &serde_json::json!({}))?;
    let box_id = format!("witness-{}", random_hex(4));
    write_private(&root.join(datadir::CONFIG), default_config(&box_id).as_bytes())?;
    let ssh_host_key = witness_ssh::HostKey::from_openssh(&host_key)?.fingerprint().to_string();
    Ok(Created { box_id, admin_password: password, ssh_host_key, rdp_certificate })
}
