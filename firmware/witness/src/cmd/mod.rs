//! The commands: one module per command group, and the only place that prints for a person.
//! Nothing imports this layer; it builds on the daemon and the foundations below it.

pub mod admin;
pub mod cli;
pub mod egress;
pub mod encoders;
pub mod panel;
pub mod rdp;
pub mod retention;
pub mod search;
pub mod sync;

pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
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
        Command::Search { words, json } => search::search(&cli.data, &words.join(" "), json),
        Command::Audit { json, limit, verify: false } => admin::audit(&cli.data, json, limit),
        Command::Audit { verify: true, .. } => admin::verify_audit(&cli.data),
        Command::Serve(args) => crate::daemon::serve::run(&cli.data, args),
        Command::Store(cmd) => sync::store(&cli.data, cmd),
        Command::Sync(cmd) => sync::sync(&cli.data, cmd),
        Command::Index(cli::IndexCmd::Rebuild { from_store: _, box_id, key }) => sync::rebuild(&cli.data, box_id, key),
        Command::Index(cli::IndexCmd::ReadText { recording_id, json }) => {
            search::read_text(&cli.data, recording_id, json)
        }
        Command::Panel { json } => panel::show(&cli.data, json),
        Command::BoardDevices => panel::board_devices(&cli.data),
        Command::Evidence(cli::EvidenceCmd::Export { session_id, out }) => {
            let recordings = crate::evidence::export(&cli.data, &session_id, &out)?;
            println!(
                "exported {recordings} recordings of session {session_id} with manifests, signatures and the box key to {}",
                out.display()
            );
            Ok(())
        }
        Command::Evidence(cli::EvidenceCmd::Key) => {
            println!("{}", crate::evidence::public_key_hex(&cli.data)?);
            Ok(())
        }
        Command::Verify { bundle, key, key_file } => {
            crate::evidence::verify(&bundle, key, key_file.as_deref(), &mut |line| println!("{line}"))
        }
        Command::Keys(cli::KeysCmd::Rotate) => {
            crate::datadir::DataDir::open(&cli.data)?;
            let id = witness_keys::rotate(&cli.data)?;
            println!("new recordings are encrypted under key {id}; older ones keep theirs");
            Ok(())
        }
        Command::Keys(cli::KeysCmd::Seal { tpm }) => {
            let dir = crate::datadir::DataDir::open(&cli.data)?;
            let sealed = match witness_keys::seal_to_tpm(&cli.data, &tpm) {
                Ok(sealed) => sealed,
                Err(error) => {
                    let error = anyhow::Error::from(error);
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
            let sealed = witness_keys::reseal_for_slot(&cli.data, &slot, &root_hash)?;
            println!("sealed for slot {slot}: {}", sealed.join(", "));
            // Audited once the index opens (its key is among those sealed).
            if let Ok(dir) = crate::datadir::DataDir::open(&cli.data) {
                let detail = serde_json::json!({ "slot": slot, "root_hash": root_hash, "keys": sealed });
                dir.index.audit("keys_sealed_for_slot", None, None, None, &detail)?;
            }
            Ok(())
        }
        Command::Keys(cli::KeysCmd::MeasureBoot { tpm }) => {
            let slot = witness_keys::measure_boot(&tpm)?;
            println!("measured slot {slot} into PCR {}", witness_keys::SLOT_PCR);
            Ok(())
        }
        Command::Hold(cmd) => retention::hold(&cli.data, cmd),
        Command::Retention(cli::RetentionCmd::Run { dry_run }) => retention::run_now(&cli.data, dry_run),
        Command::FactoryReset(args) => admin::factory_reset_cli(&cli.data, args),
        Command::Egress(cli::EgressCmd::Show { json }) => egress::show(&cli.data, json),
        Command::Egress(cli::EgressCmd::Render) => crate::egress::render_cmd(&cli.data),
        Command::Egress(cli::EgressCmd::Load) => crate::egress::load(&cli.data),
        Command::Encoders { probe_one: Some(element), .. } => encoders::probe_one_child(&element),
        Command::Encoders { json, probe_one: None } => encoders::encoders(&cli.data, json),
    }
}
