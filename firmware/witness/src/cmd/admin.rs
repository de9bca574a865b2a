//! Admin commands: `init`, users, targets, grants, and the session/recording listings.

use crate::cmd::cli::{GrantArgs, RecordingsArgs, RecordingsCmd, TargetCmd, UserCmd, UserKeyCmd};
use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::io::Read;
use std::path::Path;
use witness_core::names::validate_name;
use witness_core::policy::GrantFacts;
use witness_core::{Protocol, Role};
use witness_index::{Secret, TargetRecord, UserRecord};

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

pub fn factory_reset_cli(root: &Path, args: crate::cmd::cli::FactoryResetArgs) -> Result<()> {
    let delete = args.delete_unuploaded_recordings && args.confirm_delete_unuploaded_recordings;
    if args.delete_unuploaded_recordings && !delete {
        bail!("deleting recordings that are not uploaded needs --confirm-delete-unuploaded-recordings as well");
    }
    let opts =
        crate::provision::ResetOptions { delete_unuploaded: delete, keep_recording_access: args.keep_recording_access };
    // The consequences come first, whatever confirms them.
    let consequences = crate::provision::factory_reset_consequences(root, &opts)?;
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
    let password = crate::provision::factory_reset(root, &opts)?;
    console.show("factory-reset", &crate::provision::reset_console_message(&password, &consequences))?;
    println!("factory reset done; the new admin password is shown on the console only");
    if !delete {
        println!("recordings not yet uploaded are kept; set a store again (witness store set …) to forward them");
    }
    Ok(())
}

/// `witness init`: makes the data directory and shows the first admin's password once.
pub fn init(root: &Path) -> Result<()> {
    let made = crate::provision::create(root)?;
    println!("initialized {} (box id {})", root.display(), made.box_id);
    println!("admin user: admin  password: {}  (shown once; store it now)", made.admin_password);
    println!("ssh host key: {}", made.ssh_host_key);
    println!("rdp certificate: {}", made.rdp_certificate);
    if let Some(fp) = crate::identity::certificate_fingerprint(root) {
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
            let password_hash = password.as_deref().map(witness_gate::password::hash_password).transpose()?;
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
            let removed = dir.index.remove_user_keys(&name, |stored| {
                keys.iter().any(|(k, _)| crate::daemon::broker::same_key(stored, k))
            })?;
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
            let hash = witness_gate::password::hash_password(&password)?;
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
            crate::cmd::rdp::add_target(&dir, &name, &rdp, &login, domain.as_deref(), listen_port)?;
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
        TargetCmd::ListenPort { name, port, none } => crate::cmd::rdp::listen_port(&dir, &name, port, none)?,
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
        TargetCmd::Retention { name, days, none } => crate::cmd::retention::target_retention(&dir, &name, days, none)?,
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
    let redirection = crate::cmd::rdp::redirection_of(&dir, &args)?;
    dir.index.grant(&args.user, &args.target, GrantFacts { expires_at, allow_forwarding })?;
    dir.index.set_grant_forwards(&args.user, &args.target, &forward)?;
    crate::cmd::rdp::set_redirection(&dir, &args.user, &args.target, redirection)?;
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
                    v["rdp"] = crate::cmd::rdp::redirection_json(&g.rdp);
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
                (r.audio, "audio"),
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
            let exported = crate::views::export_recording(&dir, &id, &out, view)?;
            let (note, summary) = exported.told(&id, &out);
            if let Some(note) = note {
                eprintln!("{note}");
            }
            println!("{summary}");
            Ok(())
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

/// `audit --verify` could check the box's own disk but not compare it with the store: exit code
/// [`NotCompared::EXIT_CODE`], never "verified".
#[derive(Debug)]
pub struct NotCompared;

impl NotCompared {
    pub const EXIT_CODE: u8 = 3;
}

impl std::fmt::Display for NotCompared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the audit log was not compared with the store")
    }
}

impl std::error::Error for NotCompared {}

/// `witness audit --verify`: the hash chain, the signed checkpoints and their chain on this
/// disk, then the checkpoints against the store's copy. Exit 0: verified against the store; 1:
/// broken, or rolled back (named); 3: intact on this disk, not compared with the store.
pub fn verify_audit(root: &Path) -> Result<()> {
    use crate::audit_checkpoint::{Compared, Remote, rollback_text};
    use witness_core::audit_anchor::Verdict;
    let dir = DataDir::open(root)?;
    let n = match dir.index.verify_audit()? {
        Ok(n) => n,
        Err((id, why)) => bail!("audit log broken at event {id}: {why}"),
    };
    let cps = crate::audit_checkpoint::verify(&dir)?;
    let signed = match cps.newest {
        Some(id) => format!("{} signed checkpoints hold, the newest up to event {id}", cps.count),
        None => "no signed checkpoint yet".to_owned(),
    };
    let torn = match cps.torn_tail {
        Some(line) => format!(
            "; line {line} on is a torn checkpoint (a crash while it was written?), set aside at the box's next checkpoint"
        ),
        None => String::new(),
    };
    let local = format!("{n} events, hash chain unbroken; {signed}{torn}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match rt.block_on(crate::audit_checkpoint::compare(&dir))? {
        Remote::Compared(compared) => {
            let Compared {
                comparison: c,
                store,
                on_this_box,
                oversized,
                earlier_store,
                sent_missing,
                unnamed_store,
                changed_outside,
                oldest_unsent,
            } = *compared;
            // A store lacking checkpoints the log records it took (removed there, or another
            // store answering at its address: red team h-red18d) confirms nothing.
            let missing = sent_missing.map(|(sent, held)| crate::audit_checkpoint::sent_missing_text(sent, held));
            if let Some(text) = rollback_text(&c.verdict).or(missing) {
                let big = if oversized > 0 {
                    format!("; {oversized} objects under checkpoints' names too large to be one, not read whole")
                } else {
                    String::new()
                };
                bail!("{text} (store: {store}; this disk: {local}{big})");
            }
            println!("audit log intact: {local}");
            let Verdict::Agrees { store_newest, not_sent } = c.verdict else {
                unreachable!("not agreement is said above")
            };
            let held = match store_newest {
                Some(seq) => format!("it holds this box's checkpoints up to {seq}, each the one here"),
                None => "it holds none of this box's checkpoints yet".to_owned(),
            };
            let pending = if not_sent > 0 { format!("; {not_sent} not sent yet") } else { String::new() };
            // The store compared with, not the one uploads go to.
            let same_disk = if on_this_box {
                " (a folder on this box's disk: a rollback of the disk takes it back too)"
            } else {
                ""
            };
            // Verified only when nothing below makes it no verification: otherwise what the store
            // showed is said as compared, not verified.
            let mut not_compared: Vec<String> = Vec::new();
            // Checkpoints that name no store (a copy made before they did) pin none: the store
            // compared with is only what a file on this disk names.
            if let Some(seq) = unnamed_store {
                not_compared
                    .push(format!("NOT COMPARED with the store: {}", crate::audit_checkpoint::unnamed_store_text(seq)));
            }
            // What the store does not hold is not covered: checkpoints left unsent longer than
            // a send takes (a note made a folder, a failing store: red team h-red18e) make the
            // comparison no verification.
            if let Some((seq, at)) = oldest_unsent
                && crate::audit_checkpoint::unsent_too_long(&at, time::OffsetDateTime::now_utc())
            {
                not_compared.push(format!(
                    "NOT COMPARED with the store: checkpoint {seq} (signed {at}) and those after it are not in the store {} min after they were signed; what they cover is not compared (see `witness sync status`)",
                    crate::audit_checkpoint::UNSENT_MAX.as_secs() / 60
                ));
            }
            // An earlier store (checkpoints sent there, or recorded by `store set` or found
            // configured before this one): what went there is compared only there (red team
            // h-red18d; issue 18, `h-fix18g`).
            if let Some(earlier) = earlier_store {
                not_compared.push(format!("NOT COMPARED with the store {}", earlier.cli()));
            }
            // A store changed outside `witness store set` (found by the box and recorded) is never
            // a verification afterwards (issue 18, `h-arc18j`).
            if let Some(why) = changed_outside {
                not_compared.push(format!("NOT COMPARED: {why}"));
            }
            let verb = if not_compared.is_empty() { "verified against" } else { "compared with" };
            println!("{verb} the store {store}{same_disk}: {held}{pending}");
            if !c.passed_over.is_empty() {
                println!(
                    "passed over {} objects under the box's checkpoints in the store that are not checkpoints: {}",
                    c.passed_over.len(),
                    c.passed_over.join(", ")
                );
            }
            for line in &not_compared {
                println!("{line}");
            }
            let compared = not_compared.is_empty();
            if !compared {
                return Err(NotCompared.into());
            }
            Ok(())
        }
        Remote::NotCompared(why) => {
            println!("audit log intact on this disk: {local}");
            println!(
                "NOT COMPARED with the store: {why}; a rollback of this disk (index and checkpoints put back from an earlier copy) is not ruled out"
            );
            Err(NotCompared.into())
        }
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
