//! The command line, as documented in the README. Names and flags are an interface: checks
//! outside this repository drive the box through them.

use crate::daemon::serve::ServeArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "witness", version, about = "Recording jump host: SSH sessions through the box, recorded on the box")]
pub struct Cli {
    /// Data directory (index, keys, recordings, witness.toml).
    #[arg(long, env = "WITNESS_DATA", default_value = "/var/lib/witness", global = true)]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory: index, SSH host key, default witness.toml, an admin user.
    Init,
    /// Manage box users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage targets and their vaulted credentials.
    #[command(subcommand)]
    Target(TargetCmd),
    /// Allow a user to reach a target (for a while, with --for), or list the grants.
    Grant(GrantCmd),
    /// Take a grant away; open sessions on it end within seconds.
    Revoke { user: String, target: String },
    /// List sessions.
    Sessions {
        #[arg(long)]
        json: bool,
    },
    /// List recordings, or export one.
    Recordings(RecordingsArgs),
    /// Find sessions by what was on screen or typed (SSH output, RDP key tracks): every word is
    /// required; one hit per session, with the recording, the moment and the line.
    Search {
        /// Words to find (case-insensitive, whole words).
        #[arg(required = true)]
        words: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the audit log (newest last).
    Audit {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Check the audit log's hash chain instead of listing it.
        #[arg(long, conflicts_with = "json")]
        verify: bool,
    },
    /// Run the appliance.
    Serve(ServeArgs),
    /// The bearer token Prometheus needs for /metrics.
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// Where recordings are forwarded (S3/MinIO, Azure Blob, a folder).
    #[command(subcommand)]
    Store(StoreCmd),
    /// The upload backlog: status, or upload now.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Index maintenance.
    #[command(subcommand)]
    Index(IndexCmd),
    /// The device nodes the chosen board profile uses (GPIO chips, I2C buses), one per line.
    BoardDevices,
    /// What the front panel shows now (board, LED pattern, health, watchdog).
    Panel {
        #[arg(long)]
        json: bool,
    },
    /// Wipe keys, credentials and configuration; recordings not yet uploaded are kept.
    FactoryReset(FactoryResetArgs),
    /// Recordings as evidence: export a verifiable bundle, show the signing key.
    #[command(subcommand)]
    Evidence(EvidenceCmd),
    /// Verify an evidence bundle offline (no data dir, no network). Prints the signing key's
    /// fingerprint; with --key or --key-file, fails unless the bundle was signed by that key.
    Verify {
        bundle: PathBuf,
        /// The box's public key (hex, as `witness evidence key` prints it) the bundle must be signed by.
        #[arg(long, conflicts_with = "key_file")]
        key: Option<String>,
        /// A file holding that key (hex), e.g. a box.pub obtained from the box itself.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Keys that encrypt recordings at rest.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Legal holds: a held session's recordings are never deleted, locally or in the store.
    #[command(subcommand)]
    Hold(HoldCmd),
    /// Deletes recordings past their target's retention (the daemon also does this by itself).
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Where the box may connect to: targets, the store and the journal collector, as the
    /// firewall's egress allow-list.
    #[command(subcommand)]
    Egress(EgressCmd),
    /// H.264 encoders for RDP video: what was found, which one is used, why others were skipped.
    Encoders {
        #[arg(long)]
        json: bool,
        /// Probe one encoder and print the result (used by the box itself, in a child process).
        #[arg(long, hide = true, value_name = "ELEMENT")]
        probe_one: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EgressCmd {
    /// What the box may connect to now (targets, the store, the journal collector), with the
    /// addresses names resolve to, and whether the published DATA/run/egress.json is current.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Print the nft script for DATA/run/egress.json: what `load` would put into the firewall.
    Render,
    /// Load DATA/run/egress.json into the firewall's sets (as root: witness-egress.service runs
    /// it whenever the file changes). Reads only that file, never the index.
    Load,
}

#[derive(Debug, Subcommand)]
pub enum HoldCmd {
    /// Hold a session: none of its recordings is deleted until the hold is cleared.
    Set {
        session_id: String,
        /// Why (a case number, a request): kept with the hold and in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Lift a session's hold; its retention applies again.
    Clear { session_id: String },
    /// Held sessions.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Delete, locally and in the store, every uploaded recording past its target's retention
    /// that is not held.
    Run {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Start encrypting new recordings under a new key (old recordings are not re-encrypted).
    Rotate,
    /// Seal every key of the box (key-encryption keys, the index key, the search key, the
    /// evidence signing key) to a TPM 2.0 and remove the plain key files: the data dir then opens
    /// nothing without this box's TPM.
    Seal {
        /// The TPM, as a TCTI: `device:/dev/tpmrm0` (the kernel's resource manager), or
        /// `swtpm:host=127.0.0.1,port=2321` (a software TPM).
        #[arg(long)]
        tpm: String,
    },
    /// Seal every key for the boot state of another slot (its root hash as the box will measure
    /// it), beside the sealings the keys have: run by an update before it switches slots.
    Reseal {
        #[arg(long)]
        slot: String,
        /// The slot's dm-verity root hash (64 hex digits).
        #[arg(long)]
        root_hash: String,
    },
    /// Extend the slot PCR with this boot's slot and root hash (once per boot, before the data
    /// partition is mounted; run by witness-measure.service).
    MeasureBoot {
        #[arg(long, default_value = "device:/dev/tpmrm0")]
        tpm: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCmd {
    /// Write a self-contained bundle: recordings, signed manifests, the box's public key, a README.
    Export {
        session_id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the box's public signing key (hex): what bundles are verified against.
    Key,
}

#[derive(Debug, Args)]
pub struct FactoryResetArgs {
    /// Go on without asking (the consequences are printed first either way); without it the
    /// reset asks on the terminal. It cannot be undone.
    #[arg(long)]
    pub yes: bool,
    /// Keep the keys that open past recordings (and the store's read settings): the new admin
    /// can then play every recording made so far. Without it they are destroyed.
    #[arg(long)]
    pub keep_recording_access: bool,
    /// Also delete recordings that are not in the store yet (needs the confirmation below too).
    #[arg(long)]
    pub delete_unuploaded_recordings: bool,
    /// Second confirmation for --delete-unuploaded-recordings.
    #[arg(long, requires = "delete_unuploaded_recordings")]
    pub confirm_delete_unuploaded_recordings: bool,
}

#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Rebuild sessions and recordings from the manifests in the store (after losing the index).
    Rebuild {
        #[arg(long, required = true)]
        from_store: bool,
        /// Whose manifests to read (default: this box's id; boxes may share a bucket).
        #[arg(long = "box")]
        box_id: Option<String>,
        /// The Ed25519 public key (hex) the recordings must be signed with (default: this
        /// box's; another box's when rebuilding its sessions).
        #[arg(long)]
        key: Option<String>,
    },
    /// Read the on-screen text of session videos now (the daemon does it in the background
    /// after each RDP session) and print what it cost; one recording, or every one waiting.
    ReadText {
        recording_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Set the destination (replaces the previous one; pending uploads go to the new one).
    #[command(subcommand)]
    Set(StoreSetCmd),
    /// Set the read-only credentials the box fetches recordings back with for playback, kept
    /// apart from the upload credentials (default: the upload ones).
    #[command(subcommand)]
    SetRead(StoreSetCmd),
    /// Show the destination (never its secrets).
    Show,
}

#[derive(Debug, Subcommand)]
pub enum StoreSetCmd {
    /// S3 or MinIO.
    S3 {
        #[arg(long, value_name = "URL")]
        endpoint: String,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        region: Option<String>,
        /// Key prefix inside the bucket (e.g. "site1/").
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        access_key_id: String,
        /// Read the secret key from stdin.
        #[arg(long, required = true)]
        secret_key_stdin: bool,
        /// S3 Object Lock: write every object locked in this mode (GOVERNANCE or COMPLIANCE);
        /// the bucket must have object lock enabled.
        #[arg(long, value_name = "MODE", requires = "object_lock_days")]
        object_lock_mode: Option<String>,
        /// S3 Object Lock: days each object stays locked after its upload.
        #[arg(long, value_name = "DAYS", requires = "object_lock_mode")]
        object_lock_days: Option<u32>,
    },
    /// Azure Blob container, by a container SAS URL read from stdin.
    Azure {
        #[arg(long, required = true)]
        sas_url_stdin: bool,
    },
    /// A local or NFS folder (the embedded default is DATA/store).
    Dir { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SyncCmd {
    /// Backlog, oldest pending, last error, state (online/offline/failing).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Upload everything pending now; exits non-zero with the reason if the store cannot be reached.
    Now {
        /// Also wait for uploads another process (the daemon) has under way.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user who logs in with a password (read from stdin) and/or SSH keys.
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// OpenSSH public key file (repeatable).
        #[arg(long = "ssh-key", value_name = "PUBKEY_FILE")]
        ssh_keys: Vec<PathBuf>,
        #[arg(long, default_value = "user")]
        role: String,
        /// Allow a name that a removed user had: the sessions on record under it become
        /// visible to the new user (the history is kept by name).
        #[arg(long)]
        reuse_name: bool,
    },
    /// List users.
    List,
    /// Require a one-time code (TOTP) at console logins: prints the secret for an authenticator app.
    Totp {
        name: String,
        /// Remove the second factor instead.
        #[arg(long)]
        disable: bool,
    },
    /// Remove a user: their keys and grants go, their live sessions end within seconds; their
    /// past sessions and recordings stay.
    Remove { name: String },
    /// Add or remove one of a user's SSH keys (removing one ends their live sessions).
    #[command(subcommand)]
    Key(UserKeyCmd),
    /// Change a user's password (read from stdin); their live sessions end.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a user's role (admin, auditor, user); their live sessions end.
    Role { name: String, role: String },
    /// Whether the user may log in over RDP, which cannot ask for a one-time code: `allow`,
    /// `deny`, or `default` (allowed unless the user has a one-time code).
    Rdp { name: String, policy: String },
}

#[derive(Debug, Subcommand)]
pub enum MetricsCmd {
    /// Prints the token (made on first use); with --rotate, replaces it (the old one stops
    /// working at once).
    Token {
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserKeyCmd {
    /// Add the keys in an OpenSSH public key file.
    Add { name: String, pubkey_file: PathBuf },
    /// Remove the keys in an OpenSSH public key file.
    Remove { name: String, pubkey_file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum TargetCmd {
    /// Add a target server and the credential the box logs in with.
    Add {
        name: String,
        /// SSH address of the target, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT", required_unless_present = "rdp", conflicts_with = "rdp")]
        ssh: Option<String>,
        /// RDP address of the target, HOST:PORT (password credentials only).
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["identity", "host_key"])]
        rdp: Option<String>,
        /// Windows domain of the RDP login.
        #[arg(long, requires = "rdp")]
        domain: Option<String>,
        /// The target's own RDP listener port on the box: logins there need not name the target.
        #[arg(long, requires = "rdp", value_name = "PORT")]
        listen_port: Option<u16>,
        /// Login name on the target.
        #[arg(long)]
        login: String,
        /// Private key file the box logs in with.
        #[arg(
            long,
            value_name = "KEY_FILE",
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        identity: Option<PathBuf>,
        /// Read the target password from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// The target's host public key; without it the first connection pins what it sees.
        #[arg(long, value_name = "PUBKEY_FILE")]
        host_key: Option<PathBuf>,
    },
    /// List targets (never their credentials).
    List,
    /// The RDP target's own listener port on the box (on the --rdp-listen address): PORT, or
    /// --none to take it away; without either, shows it. `serve` picks changes up within seconds.
    ListenPort {
        name: String,
        #[arg(conflicts_with = "none", value_name = "PORT")]
        port: Option<u16>,
        #[arg(long)]
        none: bool,
    },
    /// What the target's file transfers (SFTP, scp) leave in its recordings: `content` (every
    /// byte, the default) or `hashes` (each file's operations and SHA-256, not its bytes; the
    /// interactive part of a session is always recorded whole). Without a value, shows it.
    Transfers {
        name: String,
        #[arg(value_name = "content|hashes")]
        policy: Option<witness_core::Transfers>,
    },
    /// How long the target's recordings are kept: DAYS after they end, or --none (for ever, the
    /// default); without either, shows it. Held sessions are kept regardless.
    Retention {
        name: String,
        #[arg(conflicts_with = "none", value_name = "DAYS")]
        days: Option<u32>,
        #[arg(long)]
        none: bool,
    },
}

/// `witness grant USER TARGET …` or `witness grant list [--json]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct GrantCmd {
    #[command(subcommand)]
    pub command: Option<GrantSub>,
    #[command(flatten)]
    pub grant: Option<GrantArgs>,
}

#[derive(Debug, Subcommand)]
pub enum GrantSub {
    /// Every grant with what it allows (a user named `list`: `witness grant -- list TARGET`).
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    pub user: String,
    pub target: String,
    /// Just-in-time access: the grant expires by itself (e.g. 30m, 8h, 2d).
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Also allow -L/-W port forwards through the target, to the target itself unless --forward
    /// names other destinations.
    #[arg(long)]
    pub forwarding: bool,
    /// Where forwards through the target may go, HOST:PORT or HOST:* (repeatable; implies
    /// --forwarding). Anything else is refused.
    #[arg(long = "forward", value_name = "HOST:PORT")]
    pub forward: Vec<String>,
    /// RDP: strip clipboard redirection (allowed by default).
    #[arg(long)]
    pub no_clipboard: bool,
    /// RDP: allow drive redirection, and with it printers, ports and smart cards (off by default).
    #[arg(long)]
    pub drives: bool,
    /// RDP: allow USB device redirection (URBDRC, Plug and Play devices; off by default).
    #[arg(long)]
    pub usb: bool,
    /// RDP: allow camera redirection (off by default).
    #[arg(long)]
    pub camera: bool,
    /// RDP: allow audio input, the client's microphone (off by default).
    #[arg(long)]
    pub audio_input: bool,
    /// RDP: allow sound from the target to the client (rdpsnd, AUDIO_PLAYBACK_DVC; off by
    /// default). Its messages are read strictly; the sound itself is free-form.
    #[arg(long)]
    pub audio: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RecordingsArgs {
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<RecordingsCmd>,
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCmd {
    /// Write the playable recording (.cast for SSH, .mp4 for RDP) to a file.
    Export {
        id: String,
        #[arg(long)]
        out: PathBuf,
        /// SSH: write exactly the bytes the user received (stdout and stderr in arrival order).
        #[arg(long)]
        raw: bool,
    },
}
