//! The front panel and the hardware watchdog: picks the board profile, drives the LEDs from the
//! box's state, reads the button, checks health (index, recorder, listener) and pets the
//! watchdog only while all of it is healthy, so a hung recorder resets the box. What the panel
//! shows is published to `DATA/run/panel.json` for `witness panel`.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};
use witness_board::button::{ButtonEvent, ButtonTracker};
use witness_board::panel::{self, BoxStatus};
use witness_board::profile::{self, Profile};
use witness_board::{Board, Led};

pub const PANEL_FILE: &str = "run/panel.json";
const TICK: Duration = Duration::from_millis(50);
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// A recorder probe (write + fsync) slower than this counts as hung.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// Picks the profile: config, then device tree / DMI, then `sim`.
pub fn choose_profile(dir: &DataDir) -> Result<(Profile, String)> {
    choose_profile_named(dir.config.board_profile.as_deref())
}

/// [`choose_profile`] from the configured profile name (or file) alone.
pub fn choose_profile_named(configured: Option<&str>) -> Result<(Profile, String)> {
    if let Some(name) = configured {
        if let Some(p) = Profile::builtin(name) {
            return Ok((p?, format!("configured ({name})")));
        }
        let text = std::fs::read_to_string(name)
            .with_context(|| format!("board profile {name:?} is neither built in nor a readable file"))?;
        return Ok((Profile::parse(name, &text)?, format!("configured file {name}")));
    }
    let dt: Vec<String> = std::fs::read("/proc/device-tree/compatible")
        .map(|b| {
            b.split(|c| *c == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
        })
        .unwrap_or_default();
    let dmi = std::fs::read_to_string("/sys/class/dmi/id/product_name").ok().map(|s| s.trim().to_owned());
    if let Some(name) = profile::detect(&dt, dmi.as_deref()) {
        return Ok((Profile::builtin(name).expect("detect returns built-in names")?, format!("detected ({name})")));
    }
    Ok((
        Profile::builtin("sim").expect("sim is built in")?,
        "no profile matched this machine; using the simulated board".into(),
    ))
}

/// Opens the board; a hardware part that fails to open leaves the box recording on the sim
/// board, with the reason logged and shown as a fault.
pub fn open_board(profile: Profile) -> (Board, Option<String>) {
    if profile.sim {
        return (witness_board::sim::Sim::default().board(profile), None);
    }
    let name = profile.name.clone();
    match witness_board_linux::build(profile) {
        Ok(b) => (b, None),
        Err(e) => {
            error!(profile = %name, error = %e, "board parts cannot be opened; the panel is simulated");
            let sim = Profile::builtin("sim").expect("sim is built in").expect("sim is valid");
            (witness_board::sim::Sim::default().board(sim), Some(e.to_string()))
        }
    }
}

/// What the panel thread needs from the daemon.
pub struct Inputs {
    pub dir: Arc<DataDir>,
    pub live: Arc<AtomicU32>,
    /// Set once the listeners are up.
    pub ready: Arc<AtomicBool>,
    /// Cleared if the SSH listener stops.
    pub listener_alive: Arc<AtomicBool>,
    /// Cancelled when the stop reaches the panel (the last stage).
    pub stop: tokio_util::sync::CancellationToken,
}

#[derive(Debug, Clone, Serialize, Default)]
struct Health {
    index: Option<String>,
    recorder: Option<String>,
    listener: Option<String>,
    board: Option<String>,
}

impl Health {
    fn ok(&self) -> bool {
        self.index.is_none() && self.recorder.is_none() && self.listener.is_none() && self.board.is_none()
    }
}

#[derive(Serialize)]
struct Published<'a> {
    profile: &'a str,
    description: &'a str,
    profile_reason: &'a str,
    state: &'static str,
    green: bool,
    red: bool,
    pattern: panel::Pattern,
    live_sessions: u32,
    healthy: bool,
    health: &'a Health,
    watchdog: WatchdogInfo,
    sensors: Vec<(String, Option<f32>)>,
    last_button: Option<&'static str>,
    encoders: &'a [String],
    updated_at: String,
}

#[derive(Serialize, Clone, Default)]
struct WatchdogInfo {
    present: bool,
    petting: bool,
    pets: u64,
    last_pet_at: Option<String>,
}

/// Waits out a button held at boot: held for the long-press time requests a factory reset.
pub fn held_at_boot(board: &mut Board) -> bool {
    let Some(button) = board.button.as_mut() else { return false };
    let long_ms = board.profile.button.as_ref().map(|b| b.long_press_ms).unwrap_or(10_000);
    let debounce = board.profile.button.as_ref().map(|b| b.debounce_ms).unwrap_or(30);
    let mut tracker = ButtonTracker::new(debounce, long_ms);
    let start = Instant::now();
    loop {
        let now = start.elapsed().as_millis() as u64;
        let raw = button.is_pressed().unwrap_or(false);
        if let Some(ButtonEvent::Long) = tracker.sample(raw, now) {
            return true;
        }
        // Not pressed at all once debounced: no reset requested.
        if now > debounce * 4 && !tracker.is_held() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the panel until `stop`; returns when asked.
pub fn run(mut board: Board, profile_reason: String, board_fault: Option<String>, inputs: Inputs) {
    let start = Instant::now();
    let mut tracker = board
        .profile
        .button
        .as_ref()
        .map(|b| ButtonTracker::new(b.debounce_ms, b.long_press_ms))
        .unwrap_or_else(|| ButtonTracker::new(30, 10_000));
    let pet_every = board
        .profile
        .watchdog
        .as_ref()
        .map(|w| Duration::from_secs(u64::from(w.timeout_s).div_ceil(3)))
        .unwrap_or(Duration::from_secs(1));
    let mut health = Health { board: board_fault, ..Default::default() };
    let mut last_health = Instant::now() - HEALTH_EVERY;
    let mut last_pet = Instant::now() - pet_every;
    // systemd's watchdog, when the unit sets WatchdogSec=: same health gate as the hardware one.
    let service_pet_every = crate::daemon::systemd::watchdog_every();
    let mut last_service_pet = Instant::now();
    let mut last_publish = Instant::now() - Duration::from_secs(1);
    let mut status = BoxStatus { booting: true, ..Default::default() };
    let mut wd = WatchdogInfo { present: board.watchdog.is_some(), ..Default::default() };
    let mut last_button = None;
    let mut probe: Option<(Instant, mpsc::Receiver<Result<(), String>>)> = None;
    let mut last_state = None;
    let mut sensors: Vec<(String, Option<f32>)> = Vec::new();
    while !inputs.stop.is_cancelled() {
        if last_health.elapsed() >= HEALTH_EVERY {
            last_health = Instant::now();
            check_health(&inputs, &mut health, &mut probe);
            status = box_status(&inputs, &health);
            sensors = board.sensors.iter_mut().map(|(n, s)| (n.clone(), s.celsius().ok())).collect();
        }
        let state = panel::panel_state(&status);
        if last_state != Some(state) {
            info!(state = state.as_str(), "front panel");
            last_state = Some(state);
        }
        let pattern = panel::pattern(state);
        let (g, r) = panel::levels(pattern, start.elapsed().as_millis() as u64);
        let set = board.indicator.set(Led::Green, g).and_then(|_| board.indicator.set(Led::Red, r));
        if let Err(e) = set {
            health.board.get_or_insert(e.to_string());
        }
        if let Some(button) = board.button.as_mut() {
            let raw = button.is_pressed().unwrap_or(false);
            if let Some(ev) = tracker.sample(raw, start.elapsed().as_millis() as u64) {
                last_button = Some(match ev {
                    ButtonEvent::Short => "short",
                    ButtonEvent::Long => "long",
                });
                info!(button = ?ev, state = state.as_str(), live_sessions = status.live_sessions, "button pressed; status shown");
            }
        }
        // Pet only while healthy: a hung recorder, index or listener lets the box reset.
        wd.petting = health.ok();
        if wd.petting && last_pet.elapsed() >= pet_every {
            if let Some(w) = board.watchdog.as_mut() {
                match w.pet() {
                    Ok(()) => {
                        wd.pets += 1;
                        wd.last_pet_at = Some(witness_index::now_text());
                    }
                    Err(e) => warn!(error = %e, "watchdog"),
                }
            }
            last_pet = Instant::now();
        }
        if let Some(every) = service_pet_every
            && wd.petting
            && inputs.ready.load(Ordering::Acquire)
            && last_service_pet.elapsed() >= every
        {
            crate::daemon::systemd::notify("WATCHDOG=1");
            last_service_pet = Instant::now();
        }
        if last_publish.elapsed() >= Duration::from_millis(500) {
            last_publish = Instant::now();
            let p = Published {
                profile: &board.profile.name,
                description: &board.profile.description,
                profile_reason: &profile_reason,
                state: state.as_str(),
                green: g,
                red: r,
                pattern,
                live_sessions: status.live_sessions,
                healthy: health.ok(),
                health: &health,
                watchdog: wd.clone(),
                sensors: sensors.clone(),
                last_button,
                encoders: &board.profile.encoders,
                updated_at: witness_index::now_text(),
            };
            publish(&inputs.dir.root, &p);
        }
        std::thread::sleep(TICK);
    }
}

fn box_status(inputs: &Inputs, health: &Health) -> BoxStatus {
    let dir = &inputs.dir;
    let backlog = dir.index.backlog().unwrap_or_default();
    let store = dir.index.store_health().unwrap_or_default();
    let store_down = match (&store.last_error_at, &store.last_success_at) {
        (Some(err), Some(ok)) => err > ok,
        (Some(_), None) => true,
        _ => false,
    };
    let rec = dir.recordings_dir();
    let used = witness_recorder::used_percent(&rec).unwrap_or(0);
    let free = witness_recorder::free_space(&rec).unwrap_or(u64::MAX);
    BoxStatus {
        booting: !inputs.ready.load(Ordering::Acquire),
        live_sessions: inputs.live.load(Ordering::Relaxed),
        uploading: backlog.pending > 0 && !store_down,
        offline_with_backlog: backlog.pending > 0 && store_down,
        refusing_sessions: used > dir.config.high_watermark_percent || free < dir.config.min_free_bytes,
        fault: !health.ok(),
    }
}

fn check_health(
    inputs: &Inputs,
    health: &mut Health,
    probe: &mut Option<(Instant, mpsc::Receiver<Result<(), String>>)>,
) {
    health.index = inputs.dir.index.backlog().err().map(|e| e.to_string());
    health.listener = (inputs.ready.load(Ordering::Acquire) && !inputs.listener_alive.load(Ordering::Acquire))
        .then(|| "the ssh listener stopped".to_owned());
    // The recorder's disk must take a write and an fsync in time. The probe runs on its own
    // thread: a hung disk blocks that thread, not the panel.
    if let Some((started, rx)) = probe.take() {
        match rx.try_recv() {
            Ok(Ok(())) => health.recorder = None,
            Ok(Err(e)) => health.recorder = Some(e),
            Err(mpsc::TryRecvError::Empty) => {
                if started.elapsed() > PROBE_DEADLINE {
                    health.recorder =
                        Some(format!("recording storage did not answer within {}s", PROBE_DEADLINE.as_secs()));
                }
                *probe = Some((started, rx));
                return;
            }
            Err(mpsc::TryRecvError::Disconnected) => health.recorder = Some("recorder probe died".into()),
        }
    }
    let (tx, rx) = mpsc::channel();
    let path = inputs.dir.recordings_dir().join(".health");
    std::thread::spawn(move || {
        let r = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(b"ok")?;
            f.sync_all()
        })();
        let _ = tx.send(r.map_err(|e| format!("recording storage cannot be written: {e}")));
    });
    *probe = Some((Instant::now(), rx));
}

fn publish(root: &Path, p: &Published<'_>) {
    let path = root.join(PANEL_FILE);
    let tmp = path.with_extension("tmp");
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(text) = serde_json::to_vec_pretty(p)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, &path);
    }
}
