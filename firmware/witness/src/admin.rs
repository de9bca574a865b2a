//! Admin commands: `init`, users, targets, grants, and the session/recording listings.

use crate::cli::{GrantArgs, RecordingsArgs, RecordingsCmd, TargetCmd, UserCmd, UserKeyCmd};
use crate::datadir::{self, DataDir};
use anyhow::{Context, Result, bail};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use witness_core::names::validate_name;
use witness_core::policy::GrantFacts;
use witness_core::{Protocol, Role};
use witness_index::{Index, Secret, TargetRecord, UserRecord};
use witness_keys::write_private;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn hash_password(password: &str) -> Result<String> {
    use argon2::PasswordHasher;
    let salt = argon2::password_hash::SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Reads a secret from stdin: the first line, without its newline. Never echoed, never logged.
pub fn read_secret_stdin(what: &str) -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).with_context(|| format!("reading the {what} from stdin"))?;
    let secret = text.lines().next().unwrap_or("").to_owned();
    if secret.is_empty() {
        bail!("the {what} on stdin is empty");
    }
    Ok(secret)
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
    crate::console::ensure_certificate(root)?;
    crate::rdp_broker::replace_identity(root)?;
    let config = default_config(&dir.config.box_id);
    witness_keys::replace_private(&root.join(datadir::CONFIG), config.as_bytes())?;
    let password = random_hex(9);
    dir.index.add_user(&UserRecord {
        name: "admin".into(),
        role: Role::Admin,
        password_hash: Some(hash_password(&password)?),
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

pub fn factory_reset_cli(root: &Path, args: crate::cli::FactoryResetArgs) -> Result<()> {
    let delete = args.delete_unuploaded_recordings && args.confirm_delete_unuploaded_recordings;
    if args.delete_unuploaded_recordings && !delete {
        bail!("deleting recordings that are not uploaded needs --confirm-delete-unuploaded-recordings as well");
    }
    let opts = ResetOptions { delete_unuploaded: delete, keep_recording_access: args.keep_recording_access };
    // The consequences come first, whatever confirms them.
    let consequences = factory_reset_consequences(root, &opts)?;
    eprint!("{consequences}");
    if !args.yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("not resetting without a confirmation: read the above, then add --yes");
        }
        eprint!("type reset to go on: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the confirmation")?;
        if answer.trim() != "reset" {
            bail!("not confirmed; nothing changed");
        }
    }
    // Found before anything changes: a password nobody sees would lock everyone out.
    let console = crate::local_console::LocalConsole::open()?;
    let password = factory_reset(root, &opts)?;
    console.show("factory-reset", &reset_console_message(&password, &consequences))?;
    println!("factory reset done; the new admin password is shown on the console only");
    if !delete {
        println!("recordings not yet uploaded are kept; set a store again (witness store set …) to forward them");
    }
    Ok(())
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

pub fn init(root: &Path) -> Result<()> {
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
    crate::console::ensure_certificate(root)?;
    let rdp_certificate = crate::rdp_broker::ensure_identity(root)?;
    let index =
        Index::open_encrypted(&root.join(datadir::INDEX), &witness_index::IndexKey(witness_keys::index_key(root)?))?;
    std::fs::set_permissions(root.join(datadir::INDEX), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let password = random_hex(9);
    index.add_user(&UserRecord {
        name: "admin".into(),
        role: Role::Admin,
        password_hash: Some(hash_password(&password)?),
        ssh_keys: vec![],
    })?;
    index.set_nt_hash("admin", &witness_rdp::nt_hash(&password))?;
    index.audit("box_initialized", Some("admin"), None, None, &serde_json::json!({}))?;
    let box_id = format!("witness-{}", random_hex(4));
    let config = default_config(&box_id);
    // Written last: its presence marks a complete data directory.
    write_private(&root.join(datadir::CONFIG), config.as_bytes())?;
    let key = witness_ssh::HostKey::from_openssh(&host_key)?;
    println!("initialized {} (box id {box_id})", root.display());
    println!("admin user: admin  password: {password}  (shown once; store it now)");
    println!("ssh host key: {}", key.fingerprint());
    println!("rdp certificate: {rdp_certificate}");
    if let Some(fp) = crate::console::certificate_fingerprint(root) {
        println!("web console certificate (SHA-256): {fp}");
    }
    Ok(())
}

pub fn user(root: &Path, cmd: UserCmd) -> Result<()> {
    let dir = DataDir::open(root)?;
    match cmd {
        UserCmd::Add { name, password_stdin, ssh_keys, role, reuse_name } => {
            validate_name(&name).context("user name")?;
            let history = dir.index.session_count_of(&name)?;
            if history > 0 && !reuse_name && dir.index.user(&name)?.is_none() {
                bail!(
                    "{name} was a user before ({history} sessions on record under that name); a new user with it would see them: choose another name, or give --reuse-name"
                );
            }
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            if !password_stdin && ssh_keys.is_empty() {
                bail!("give the user a way to log in: --password-stdin and/or --ssh-key PUBKEY_FILE");
            }
            let password = if password_stdin { Some(read_secret_stdin("password")?) } else { None };
            if let Some(p) = &password {
                witness_core::gate::check_new_password(&name, p).map_err(anyhow::Error::msg)?;
            }
            let password_hash = password.as_deref().map(hash_password).transpose()?;
            let mut keys = Vec::new();
            for file in &ssh_keys {
                for (key, fp) in read_public_keys(file)? {
                    println!("key {fp}");
                    keys.push(key);
                }
            }
            dir.index.add_user(&UserRecord { name: name.clone(), role, password_hash, ssh_keys: keys })?;
            if let Some(p) = &password {
                // NTLM (RDP) checks passwords against the NT hash.
                dir.index.set_nt_hash(&name, &witness_rdp::nt_hash(p))?;
            }
            dir.index.audit("user_added", Some(&name), None, None, &serde_json::json!({ "role": role }))?;
            println!("added user {name} ({role})");
        }
        UserCmd::Remove { name } => {
            if !dir.index.remove_user(&name)? {
                bail!("no user {name:?}");
            }
            dir.index.audit("user_removed", Some(&name), None, None, &serde_json::json!({}))?;
            println!("removed user {name}; their live sessions end within seconds, their recordings stay");
        }
        UserCmd::Key(UserKeyCmd::Add { name, pubkey_file }) => {
            let keys = read_public_keys(&pubkey_file)?;
            for (key, fp) in &keys {
                dir.index.add_user_key(&name, key)?;
                dir.index.audit(
                    "user_key_added",
                    Some(&name),
                    None,
                    None,
                    &serde_json::json!({ "fingerprint": fp }),
                )?;
                println!("added key {fp} to {name}");
            }
        }
        UserCmd::Key(UserKeyCmd::Remove { name, pubkey_file }) => {
            let keys = read_public_keys(&pubkey_file)?;
            let removed = dir
                .index
                .remove_user_keys(&name, |stored| keys.iter().any(|(k, _)| crate::broker::same_key(stored, k)))?;
            if removed == 0 {
                bail!("{name} has none of the keys in {}", pubkey_file.display());
            }
            let fps: Vec<&str> = keys.iter().map(|(_, fp)| fp.as_str()).collect();
            dir.index.audit(
                "user_key_removed",
                Some(&name),
                None,
                None,
                &serde_json::json!({ "fingerprints": fps }),
            )?;
            println!("removed {removed} key(s) from {name}; their live sessions end within seconds");
        }
        UserCmd::Passwd { name, .. } => {
            let password = read_secret_stdin("password")?;
            witness_core::gate::check_new_password(&name, &password).map_err(anyhow::Error::msg)?;
            let hash = hash_password(&password)?;
            dir.index.set_password(&name, &hash, &witness_rdp::nt_hash(&password))?;
            dir.index.audit("user_password_changed", Some(&name), None, None, &serde_json::json!({}))?;
            println!("changed {name}'s password; their live sessions end within seconds");
        }
        UserCmd::Role { name, role } => {
            let role: Role = role.parse().map_err(anyhow::Error::msg)?;
            dir.index.set_role(&name, role)?;
            dir.index.audit("user_role_changed", Some(&name), None, None, &serde_json::json!({ "role": role }))?;
            println!("{name} is now {role}; their live sessions end within seconds");
        }
        UserCmd::Rdp { name, policy } => {
            let allow = match policy.as_str() {
                "allow" => Some(true),
                "deny" => Some(false),
                "default" => None,
                other => bail!("unknown RDP policy {other:?}, expected allow, deny or default"),
            };
            dir.index.set_rdp_policy(&name, allow)?;
            if allow == Some(false) {
                dir.index.bump_access_epoch(&name)?;
            }
            dir.index.audit("user_rdp_policy", Some(&name), None, None, &serde_json::json!({ "policy": policy }))?;
            println!("{name}: RDP {policy}");
        }
        UserCmd::List => {
            for (name, role) in dir.index.user_names()? {
                println!("{name}\t{role}");
            }
        }
        UserCmd::Totp { name, disable } => {
            if disable {
                if !dir.index.set_totp(&name, None)? {
                    bail!("no user {name:?}");
                }
                dir.index.audit("totp_disabled", Some(&name), None, None, &serde_json::json!({}))?;
                println!("user {name} logs in to the console with a password only");
            } else {
                let mut secret = [0u8; 20];
                OsRng.fill_bytes(&mut secret);
                if !dir.index.set_totp(&name, Some(&secret))? {
                    bail!("no user {name:?}");
                }
                // Sessions opened with one factor end; RDP (no second prompt) is off by default now.
                dir.index.bump_access_epoch(&name)?;
                dir.index.audit("totp_enrolled", Some(&name), None, None, &serde_json::json!({}))?;
                println!("secret: {}", witness_web::totp::base32(&secret));
                println!("uri: {}", witness_web::totp::uri(&name, &secret));
                println!(
                    "user {name} now needs a one-time code at console logins (shown once; add it to an authenticator app now)"
                );
            }
        }
    }
    Ok(())
}

pub fn parse_host_port(text: &str) -> Result<(String, u16)> {
    let (host, port) = text.rsplit_once(':').with_context(|| format!("{text:?} is not HOST:PORT"))?;
    let port: u16 = port.parse().with_context(|| format!("{port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        bail!("{text:?} is not HOST:PORT");
    }
    Ok((host.to_owned(), port))
}

pub fn target(root: &Path, cmd: TargetCmd) -> Result<()> {
    let dir = DataDir::open(root)?;
    // A new target's address goes into the firewall's egress allow-list at once.
    let adds = matches!(cmd, TargetCmd::Add { .. });
    match cmd {
        TargetCmd::Add { name, rdp: Some(rdp), login, domain, listen_port, .. } => {
            crate::rdp_broker::add_target(&dir, &name, &rdp, &login, domain.as_deref(), listen_port)?;
        }
        TargetCmd::Add { name, ssh: Some(ssh), login, identity, password_stdin, host_key, .. } => {
            validate_name(&name).context("target name")?;
            let (host, port) = parse_host_port(&ssh)?;
            let secret = match identity {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                    witness_ssh::check_private_key(&text).with_context(|| format!("identity {}", file.display()))?;
                    Secret::PrivateKey(text)
                }
                None if password_stdin => Secret::Password(read_secret_stdin("target password")?),
                None => bail!("give the box a credential for the target: --identity KEY_FILE or --password-stdin"),
            };
            let host_key = match host_key {
                Some(file) => {
                    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                    let (key, fp) =
                        witness_ssh::parse_public_key(line).with_context(|| format!("host key {}", file.display()))?;
                    println!("pinned host key {fp}");
                    Some(key)
                }
                None => None,
            };
            let pinned = host_key.is_some();
            dir.index.add_target(&TargetRecord {
                name: name.clone(),
                protocol: Protocol::Ssh,
                host,
                port,
                login,
                secret,
                host_key,
            })?;
            dir.index.audit(
                "target_added",
                None,
                Some(&name),
                None,
                &serde_json::json!({ "address": ssh, "host_key_pinned": pinned }),
            )?;
            println!(
                "added target {name} ({ssh}){}",
                if pinned { "" } else { "; its host key is pinned on first connection" }
            );
        }
        TargetCmd::Add { .. } => bail!("give the target an address: --ssh HOST:PORT or --rdp HOST:PORT"),
        TargetCmd::ListenPort { name, port, none } => crate::rdp_broker::listen_port(&dir, &name, port, none)?,
        TargetCmd::Transfers { name, policy } => match policy {
            Some(policy) => {
                dir.index.set_transfers(&name, policy).with_context(|| format!("target {name}"))?;
                dir.index.audit(
                    "target_transfers_set",
                    None,
                    Some(&name),
                    None,
                    &serde_json::json!({ "transfers": policy.as_str() }),
                )?;
                println!("target {name}: transfers {policy}");
            }
            None => println!("{}", dir.index.transfers(&name).with_context(|| format!("target {name}"))?),
        },
        TargetCmd::Retention { name, days, none } => crate::retention::target_retention(&dir, &name, days, none)?,
        TargetCmd::List => {
            for (name, protocol, address) in dir.index.target_names()? {
                println!("{name}\t{protocol}\t{address}");
            }
        }
    }
    if adds {
        crate::egress::refresh(&dir);
    }
    Ok(())
}

pub fn metrics_token(root: &Path, rotate: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let token = match witness_keys::metrics_token(root)? {
        Some(t) if !rotate => t,
        _ => {
            let t = witness_keys::new_metrics_token(root)?;
            dir.index.audit("metrics_token_rotated", None, None, None, &serde_json::json!({}))?;
            t
        }
    };
    println!("{token}");
    Ok(())
}

/// The keys of an OpenSSH public key file, each with its fingerprint.
fn read_public_keys(file: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| witness_ssh::parse_public_key(line).with_context(|| format!("in {}", file.display())))
        .collect()
}

pub fn grant(root: &Path, args: GrantArgs) -> Result<()> {
    let dir = DataDir::open(root)?;
    let expires_at = match &args.duration {
        Some(d) => {
            let d = witness_core::duration::parse_duration(d)?;
            Some(time::OffsetDateTime::now_utc().unix_timestamp() + d.as_secs() as i64)
        }
        None => None,
    };
    let forward = args
        .forward
        .iter()
        .map(|d| witness_core::policy::parse_destination(d).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let allow_forwarding = args.forwarding || !forward.is_empty();
    let redirection = crate::rdp_broker::redirection_of(&dir, &args)?;
    dir.index.grant(&args.user, &args.target, GrantFacts { expires_at, allow_forwarding })?;
    dir.index.set_grant_forwards(&args.user, &args.target, &forward)?;
    crate::rdp_broker::set_redirection(&dir, &args.user, &args.target, redirection)?;
    dir.index.audit(
        "grant_added",
        Some(&args.user),
        Some(&args.target),
        None,
        &serde_json::json!({ "expires_at": expires_at, "forwarding": allow_forwarding, "forward": forward }),
    )?;
    match args.duration {
        Some(d) => println!("granted {} access to {} for {d}", args.user, args.target),
        None => println!("granted {} access to {}", args.user, args.target),
    }
    Ok(())
}

/// `witness grant list [--json]`: every grant, with what it opens over RDP for RDP targets.
pub fn grant_list(root: &Path, json: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let rows = dir.index.grants()?;
    let expires = |at: Option<i64>| {
        at.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
    };
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|g| {
                let mut v = serde_json::json!({
                    "user": g.user,
                    "target": g.target,
                    "protocol": g.protocol,
                    "expires_at": expires(g.expires_at),
                    "forwarding": g.allow_forwarding,
                    "forward": g.forward,
                });
                if g.protocol == Protocol::Rdp.as_str() {
                    v["rdp"] = crate::rdp_broker::redirection_json(&g.rdp);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no grants");
    }
    for g in rows {
        let until = expires(g.expires_at).map(|t| format!("until {t}")).unwrap_or_else(|| "no end".into());
        let mut allows = Vec::new();
        if g.protocol == Protocol::Rdp.as_str() {
            let r = g.rdp;
            for (on, name) in [
                (r.clipboard, "clipboard"),
                (r.drives, "drives"),
                (r.usb, "usb"),
                (r.camera, "camera"),
                (r.audio_input, "audio-input"),
            ] {
                if on {
                    allows.push(name.to_owned());
                }
            }
        } else if !g.forward.is_empty() {
            allows.push(format!("forwarding to {}", g.forward.join(", ")));
        } else if g.allow_forwarding {
            allows.push("forwarding".into());
        }
        let allows = if allows.is_empty() { "-".to_owned() } else { allows.join(" ") };
        println!("{}  {}  {}  {until}  {allows}", g.user, g.target, g.protocol);
    }
    Ok(())
}

pub fn revoke(root: &Path, user: &str, target: &str) -> Result<()> {
    let dir = DataDir::open(root)?;
    if !dir.index.revoke(user, target)? {
        bail!("{user} has no grant for {target}");
    }
    dir.index.audit("grant_revoked", Some(user), Some(target), None, &serde_json::json!({}))?;
    println!("revoked {user}'s access to {target}; open sessions end within seconds");
    Ok(())
}

pub fn sessions(root: &Path, json: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let rows = dir.index.sessions()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no sessions yet");
    }
    for r in rows {
        println!(
            "{}  {:<10} {:<12} {:<4} {}  {:<10} {} bytes  {}",
            r.id,
            r.user,
            r.target,
            r.protocol,
            r.started_at,
            r.status,
            r.bytes,
            r.end_reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub fn recordings(root: &Path, args: RecordingsArgs) -> Result<()> {
    let dir = DataDir::open(root)?;
    match args.command {
        Some(RecordingsCmd::Export { id, out, raw }) => {
            let view = if raw { crate::views::View::Raw } else { crate::views::View::Player };
            export_recording(&dir, &id, &out, view)
        }
        None => {
            let rows = dir.index.recordings()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no recordings yet");
            }
            for r in rows {
                let unsealed = r.seal_error.as_deref().map(|e| format!("  not sealed: {e}")).unwrap_or_default();
                println!(
                    "{}  {}  {}@{}  {:<10} {} bytes{unsealed}",
                    r.id, r.started_at, r.user, r.target, r.status, r.bytes
                );
            }
            Ok(())
        }
    }
}

/// `witness recordings export ID [--raw] --out FILE` (and the files of an evidence bundle).
pub fn export_recording(dir: &DataDir, id: &str, out: &Path, view: crate::views::View) -> Result<()> {
    let row = dir.index.recording(id)?.with_context(|| format!("no recording with id {id:?}"))?;
    if row.sha256.is_none() {
        eprintln!("note: recording {id} is still {}: exporting what is written so far", row.status);
    }
    let tmp = out.with_extension("part");
    let written = (|| {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?);
        let n = crate::views::write(dir, &row, &mut file, view)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        anyhow::Ok(n)
    })();
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp); // a partial export is no export
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    let how = match view {
        crate::views::View::Stored => "stored",
        crate::views::View::Player => "player",
        crate::views::View::Raw => "raw",
    };
    dir.index.audit(
        "recording_exported",
        None,
        None,
        Some(&row.session_id),
        &serde_json::json!({ "recording": id, "view": how }),
    )?;
    println!("exported recording {id} ({n} bytes) to {}", out.display());
    Ok(())
}

pub fn verify_audit(root: &Path) -> Result<()> {
    let dir = DataDir::open(root)?;
    match dir.index.verify_audit()? {
        Ok(n) => {
            let (checkpoints, newest) = crate::audit_checkpoint::verify(&dir)?;
            let signed = match newest {
                Some(id) => format!("{checkpoints} signed checkpoints hold, the newest up to event {id}"),
                None => "no signed checkpoint yet".to_owned(),
            };
            println!("audit log intact: {n} events, hash chain unbroken; {signed}");
            Ok(())
        }
        Err((id, why)) => bail!("audit log broken at event {id}: {why}"),
    }
}

pub fn audit(root: &Path, json: bool, limit: u32) -> Result<()> {
    let dir = DataDir::open(root)?;
    let rows = dir.index.audit_events(limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    // What users typed (names, paths, commands) never reaches the admin's terminal raw: control
    // characters are escaped, so no escape sequence in an event can drive the terminal.
    let shown = |t: &str| {
        t.chars()
            .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
            .collect::<String>()
    };
    for r in rows {
        println!(
            "{}  {:<22} user={} target={} {}",
            r.at,
            r.kind,
            shown(r.user.as_deref().unwrap_or("-")),
            shown(r.target.as_deref().unwrap_or("-")),
            shown(&r.detail.to_string())
        );
    }
    Ok(())
}
