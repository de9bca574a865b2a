//! `witness`: the appliance daemon and its admin CLI. This is the only crate that knows every
//! other one; it wires the index, the recorder and the proxies together and owns process-level
//! concerns (signals, logging, exit codes).

mod admin;
mod audit_checkpoint;
mod broker;
mod cli;
mod console;
mod datadir;
mod egress;
mod evidence;
mod gate;
mod keys;
mod local_console;
mod ocr;
mod panel;
mod pipeline;
mod playback;
mod rdp_broker;
mod retention;
mod search;
mod serve;
mod sync;
mod sync_cli;
mod systemd;
mod video;
mod views;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The daemon logs what it does; admin commands print their results and log only problems.
    init_logging(if matches!(cli.command, cli::Command::Serve(_)) { "info,russh=warn" } else { "warn" });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "what failed: why".
            eprintln!("witness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    use cli::Command;
    match cli.command {
        Command::Init => admin::init(&cli.data),
        Command::User(cmd) => admin::user(&cli.data, cmd),
        Command::Metrics(cli::MetricsCmd::Token { rotate }) => admin::metrics_token(&cli.data, rotate),
        Command::Target(cmd) => admin::target(&cli.data, cmd),
        Command::Grant(cli::GrantCmd { command: Some(cli::GrantSub::List { json }), .. }) => {
            admin::grant_list(&cli.data, json)
        }
        Command::Grant(cli::GrantCmd { grant: Some(args), .. }) => admin::grant(&cli.data, args),
        Command::Grant(cli::GrantCmd { command: None, grant: None }) => {
            anyhow::bail!("witness grant needs USER TARGET, or list")
        }
        Command::Revoke { user, target } => admin::revoke(&cli.data, &user, &target),
        Command::Sessions { json } => admin::sessions(&cli.data, json),
        Command::Recordings(args) => admin::recordings(&cli.data, args),
        Command::Search { words, json } => search::search_cli(&cli.data, &words.join(" "), json),
        Command::Audit { json, limit, verify: false } => admin::audit(&cli.data, json, limit),
        Command::Audit { verify: true, .. } => admin::verify_audit(&cli.data),
        Command::Serve(args) => serve::run(&cli.data, args),
        Command::Store(cmd) => sync_cli::store(&cli.data, cmd),
        Command::Sync(cmd) => sync_cli::sync(&cli.data, cmd),
        Command::Index(cli::IndexCmd::Rebuild { from_store: _, box_id }) => sync_cli::rebuild(&cli.data, box_id),
        Command::Index(cli::IndexCmd::ReadText { recording_id, json }) => {
            ocr::read_text_cli(&cli.data, recording_id, json)
        }
        Command::Panel { json } => panel::show(&cli.data, json),
        Command::Evidence(cli::EvidenceCmd::Export { session_id, out }) => {
            evidence::export(&cli.data, &session_id, &out)
        }
        Command::Evidence(cli::EvidenceCmd::Key) => {
            println!("{}", evidence::public_key_hex(&cli.data)?);
            Ok(())
        }
        Command::Verify { bundle, key, key_file } => evidence::verify(&bundle, key, key_file.as_deref()),
        Command::Keys(cli::KeysCmd::Rotate) => {
            crate::datadir::DataDir::open(&cli.data)?;
            let id = keys::rotate(&cli.data)?;
            println!("new recordings are encrypted under key {id}; older ones keep theirs");
            Ok(())
        }
        Command::Keys(cli::KeysCmd::Seal { tpm }) => {
            let dir = crate::datadir::DataDir::open(&cli.data)?;
            let sealed = match keys::seal_to_tpm(&cli.data, &tpm) {
                Ok(sealed) => sealed,
                Err(error) => {
                    let detail = serde_json::json!({ "tpm": tpm, "error": format!("{error:#}") });
                    dir.index.audit("tpm_seal_failed", None, None, None, &detail)?;
                    return Err(error);
                }
            };
            dir.index.audit("keys_sealed", None, None, None, &serde_json::json!({ "tpm": tpm, "keys": sealed }))?;
            println!(
                "sealed to the TPM ({tpm}): {}",
                if sealed.is_empty() { "nothing left to seal".to_owned() } else { sealed.join(", ") }
            );
            Ok(())
        }
        Command::Keys(cli::KeysCmd::Reseal { slot, root_hash }) => {
            let sealed = keys::reseal_for_slot(&cli.data, &slot, &root_hash)?;
            println!("sealed for slot {slot}: {}", sealed.join(", "));
            // Audited once the index opens (its key is among those sealed).
            if let Ok(dir) = crate::datadir::DataDir::open(&cli.data) {
                let detail = serde_json::json!({ "slot": slot, "root_hash": root_hash, "keys": sealed });
                dir.index.audit("keys_sealed_for_slot", None, None, None, &detail)?;
            }
            Ok(())
        }
        Command::Keys(cli::KeysCmd::MeasureBoot { tpm }) => {
            let slot = keys::measure_boot(&tpm)?;
            println!("measured slot {slot} into PCR {}", keys::SLOT_PCR);
            Ok(())
        }
        Command::Hold(cmd) => retention::hold(&cli.data, cmd),
        Command::Retention(cli::RetentionCmd::Run { dry_run }) => retention::run_now(&cli.data, dry_run),
        Command::FactoryReset(args) => admin::factory_reset_cli(&cli.data, args),
        Command::Egress(cli::EgressCmd::Show { json }) => egress::show(&cli.data, json),
        Command::Egress(cli::EgressCmd::Render) => egress::render_cmd(&cli.data),
        Command::Egress(cli::EgressCmd::Load) => egress::load(&cli.data),
        Command::Encoders { probe_one: Some(element), .. } => video::probe_one_child(&element),
        Command::Encoders { json, probe_one: None } => video::encoders(&cli.data, json),
    }
}

/// Dependencies that handle credentials and log them (or the structures holding them) in their
/// own debug and trace output; whatever `WITNESS_LOG` asks, they speak at info and above only.
const CREDENTIAL_HANDLERS: &[&str] =
    &["sspi", "ironrdp_connector", "ironrdp_acceptor", "picky", "russh::client::encrypted"];

fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("WITNESS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !CREDENTIAL_HANDLERS.iter().any(|t| meta.target().starts_with(t))
    });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(no_secrets))
        .with(filter)
        .try_init();
}
