//! Red team `h-red17e`, end to end: attacks that PASS while the hole is open, with stock
//! `xfreerdp` through the box to the real xrdp.

use crate::harness::eventually;
use crate::rdp::{RdpBox, XRDP_USER, Xrdp, Xvfb};
use std::time::Duration;

/// HOLE: the Client Info's alternate shell survives the box's rewrite (unit test
/// `red17e_the_client_info_alternate_shell_runs_on_the_target`). `xfreerdp /shell:CMD` puts a
/// command line there; xrdp hands it to sesman, which starts the new session with `sh -c CMD`
/// instead of the desktop (sesman/session.c) under the credential the box injected. The command
/// runs as the target account; the recorded screen shows nothing of it and no audit event names
/// it.
#[test]
fn red17e_an_alternate_shell_runs_a_command_on_the_target_unseen() {
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01", "--no-clipboard"], None);
    let rb = RdpBox::serve(b);
    let marker = std::env::temp_dir().join(format!("red17e-shell-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let command = format!("id -un > {}; sleep 30", marker.display());
    let shell = format!("/shell:{command}");
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", 20, &[&shell]);
    let ran = eventually(20, "the alternate shell to run on the target", || std::fs::read_to_string(&marker).ok());
    assert_eq!(ran.trim(), XRDP_USER, "the command ran as the target account");
    let _ = client.wait(Duration::from_secs(30));
    // Nothing the box keeps names the command.
    let audit = serde_json::to_string(&rb.b.audit()).unwrap();
    assert!(!audit.contains("red17e-shell"), "{audit}");
    let _ = std::fs::remove_file(&marker);
}
