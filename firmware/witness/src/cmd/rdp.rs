//! The RDP parts of the admin commands: RDP targets and their NT hashes, a target's own
//! listening port, and the redirections a grant allows.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use witness_core::{Protocol, names::validate_name};
use witness_index::{RdpRedirection, Secret, TargetRecord};

/// `witness target add NAME --rdp HOST:PORT --login USER [--domain D] [--listen-port P]
/// --password-stdin`.
pub fn add_target(
    dir: &DataDir,
    name: &str,
    address: &str,
    login: &str,
    domain: Option<&str>,
    listen_port: Option<u16>,
) -> Result<()> {
    validate_name(name).context("target name")?;
    let (host, port) = crate::cmd::admin::parse_host_port(address)?;
    if let Some(p) = listen_port {
        check_listen_port(dir, name, p)?;
    }
    let password = crate::cmd::admin::read_secret_stdin("target password")?;
    dir.index.add_target(&TargetRecord {
        name: name.to_owned(),
        protocol: Protocol::Rdp,
        host,
        port,
        login: login.to_owned(),
        secret: Secret::Password(password),
        host_key: None,
    })?;
    dir.index.set_target_domain(name, domain)?;
    dir.index.set_target_rdp_port(name, listen_port)?;
    dir.index.audit(
        "target_added",
        None,
        Some(name),
        None,
        &serde_json::json!({
            "protocol": "rdp", "address": address, "certificate_pinned": false, "listen_port": listen_port
        }),
    )?;
    println!("added target {name} (rdp {address}); its certificate is pinned on first connection");
    if let Some(p) = listen_port {
        println!("logins on port {p} of the box lead to {name} (serve --rdp-listen opens it)");
    }
    Ok(())
}

fn check_listen_port(dir: &DataDir, name: &str, port: u16) -> Result<()> {
    if port == 0 {
        bail!("listener port 0 is not a port");
    }
    if let Some((_, holder)) = dir.index.target_rdp_ports()?.into_iter().find(|(p, t)| *p == port && t != name) {
        bail!("port {port} already leads to target {holder}");
    }
    Ok(())
}

/// `witness target listen-port NAME [PORT | --none]`.
pub fn listen_port(dir: &DataDir, name: &str, port: Option<u16>, none: bool) -> Result<()> {
    let target = dir.index.target(name)?.with_context(|| format!("no target named {name:?}"))?;
    if target.protocol != Protocol::Rdp {
        bail!("{name} is not an rdp target; listener ports are for rdp targets");
    }
    if port.is_none() && !none {
        match dir.index.target_rdp_ports()?.into_iter().find(|(_, t)| t == name) {
            Some((p, _)) => println!("{p}"),
            None => println!("none (logins name the target: USER@{name})"),
        }
        return Ok(());
    }
    if let Some(p) = port {
        check_listen_port(dir, name, p)?;
    }
    dir.index.set_target_rdp_port(name, port)?;
    dir.index.audit("target_listen_port_set", None, Some(name), None, &serde_json::json!({ "port": port }))?;
    match port {
        Some(p) => println!("logins on port {p} of the box lead to {name}"),
        None => println!("{name} has no listener port of its own now"),
    }
    Ok(())
}

/// The RDP redirections `witness grant` asks for; refused for a target that is not RDP, before
/// anything is granted.
pub fn redirection_of(dir: &DataDir, args: &crate::cmd::cli::GrantArgs) -> Result<RdpRedirection> {
    let r = RdpRedirection {
        clipboard: !args.no_clipboard,
        drives: args.drives,
        usb: args.usb,
        camera: args.camera,
        audio_input: args.audio_input,
        audio: args.audio,
    };
    // An unknown target is left to the grant itself to refuse, by name.
    let not_rdp = dir.index.target(&args.target)?.is_some_and(|t| t.protocol != Protocol::Rdp);
    if not_rdp && r != RdpRedirection::default() {
        bail!(
            "--no-clipboard, --drives, --usb, --camera, --audio-input and --audio apply to RDP targets only; {} is not one",
            args.target
        );
    }
    Ok(r)
}

/// Stores the RDP redirections of a grant just made.
pub fn set_redirection(dir: &DataDir, user: &str, target: &str, r: RdpRedirection) -> Result<()> {
    dir.index.set_rdp_redirection(user, target, r)?;
    if dir.index.target(target)?.is_some_and(|t| t.protocol == Protocol::Rdp) {
        dir.index.audit("rdp_redirection_set", Some(user), Some(target), None, &redirection_json(&r))?;
    }
    Ok(())
}

/// A grant's RDP redirections as the audit log and `grant list --json` show them.
pub fn redirection_json(r: &RdpRedirection) -> serde_json::Value {
    serde_json::json!({
        "clipboard": r.clipboard,
        "drives": r.drives,
        "usb": r.usb,
        "camera": r.camera,
        "audio_input": r.audio_input,
        "audio": r.audio,
    })
}
