//! A software TPM (`swtpm`, TPM 2.0 over TCP) for tests and trials on machines without one: the
//! real TPM command protocol, its state in a directory of its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Simulator {
    child: Option<Child>,
    port: u16,
    state: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Simulator {
    /// A fresh TPM (new seeds) with its state in a temporary directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut s = Self::at(dir.path());
        s._dir = Some(dir);
        s
    }

    /// A TPM whose state lives in `state` (the same seeds each time it starts there).
    pub fn at(state: &Path) -> Self {
        let mut s = Self { child: None, port: ports(), state: state.to_owned(), _dir: None };
        s.restart();
        s
    }

    /// The TCTI string that reaches it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Switches it off (the TPM is gone until [`Simulator::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with the same state.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state.display()))
            .args(["--server", &format!("type=tcp,port={},bindaddr=127.0.0.1", self.port)])
            .args(["--ctrl", &format!("type=tcp,port={},bindaddr=127.0.0.1", self.port + 1)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting swtpm (apt install swtpm)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "swtpm did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port whose next port is free too: the swtpm TCTI finds the control channel there.
fn ports() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("its address").port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}
