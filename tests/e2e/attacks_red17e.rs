//! Red team `h-red17e`, end to end, closed: with stock `xfreerdp` through the box to the real
//! xrdp, what the attack did before and what the box does now.

use crate::harness::eventually;
use crate::rdp::{RdpBox, Xrdp, Xvfb, audit_of};
use std::time::Duration;

/// A client asking for its own program ends the connection and nothing runs on the target
/// (unit test `a_client_info_asking_for_a_program_of_its_own_ends_the_connection`). Before,
/// `xfreerdp /shell:CMD` put a command line in the Client Info, which survived the box's
/// rewrite; xrdp handed it to sesman, which started the session with `sh -c CMD` instead of the
/// desktop (sesman/session.c) under the credential the box injected: the command ran as the
/// target account, unseen by the recording and the audit. Now the Client Info never reaches
/// the target, the audit names the refusal, and the same client without `/shell:` gets its
/// session.
#[test]
fn an_alternate_shell_from_the_client_ends_the_connection_and_runs_nothing() {
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
    let (_, log) = client.wait(Duration::from_secs(30));
    let reason = eventually(20, "the refusal in the audit log", || {
        let events = rb.b.audit();
        audit_of(&events, "rdp_policy_refused").iter().map(|e| e["detail"]["reason"].to_string()).next()
    });
    assert!(reason.contains("alternate shell"), "{reason}");
    // Had the target started the program, it would have written the marker within seconds.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!marker.exists(), "the command ran on the target; xfreerdp said: {log}");
    // Control: without `/shell:` the same user's session comes up and stays.
    let mut client = rb.client(&screen, "alice@xrdp01", "alice-pw", 20, &[]);
    std::thread::sleep(Duration::from_secs(8));
    assert!(client.running(), "the session without an alternate shell did not stay up");
    let _ = client.wait(Duration::from_secs(30));
    assert!(!marker.exists());
}
