//! What the RDP jump path keeps beyond the SSH tables: users' NT hashes (NTLM checks passwords
//! against them), targets' Windows domains, and which redirections a grant allows.

use crate::{Index, IndexError, Result};
use rusqlite::{OptionalExtension, params};

/// Which RDP redirections a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdpRedirection {
    pub clipboard: bool,
    pub drives: bool,
    pub usb: bool,
    pub camera: bool,
    pub audio_input: bool,
    /// Sound out, from the target to the client.
    pub audio: bool,
}

impl Default for RdpRedirection {
    /// Clipboard on; drives (and with them printers), USB, camera, audio input and sound off.
    fn default() -> Self {
        Self { clipboard: true, drives: false, usb: false, camera: false, audio_input: false, audio: false }
    }
}

impl RdpRedirection {
    /// The six columns `g.rdp_clipboard, g.rdp_drives, g.rdp_usb, g.rdp_camera,
    /// g.rdp_audio_input, g.rdp_audio` from `at` on.
    pub(crate) fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(Self {
            clipboard: r.get(at)?,
            drives: r.get(at + 1)?,
            usb: r.get(at + 2)?,
            camera: r.get(at + 3)?,
            audio_input: r.get(at + 4)?,
            audio: r.get(at + 5)?,
        })
    }
}

impl Index {
    /// Sets the NT hash (hex) of a user's password.
    pub fn set_nt_hash(&self, user: &str, nt_hash: &str) -> Result<()> {
        let n = self.conn().execute("UPDATE users SET nt_hash = ?2 WHERE name = ?1", params![user, nt_hash])?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "user", name: user.to_owned() });
        }
        Ok(())
    }

    /// Sets whether `user` may log in over RDP (`None`: the default, allowed unless the user has
    /// a one-time code).
    pub fn set_rdp_policy(&self, user: &str, allow: Option<bool>) -> Result<()> {
        let value = allow.map(|a| if a { "allow" } else { "deny" });
        let n = self.conn().execute("UPDATE users SET rdp_policy = ?2 WHERE name = ?1", params![user, value])?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "user", name: user.to_owned() });
        }
        Ok(())
    }

    /// Whether `user` may log in over RDP: the explicit policy, else only without a one-time code.
    pub fn rdp_allowed(&self, user: &str) -> Result<bool> {
        let row: Option<(Option<String>, bool)> = self
            .conn()
            .query_row("SELECT rdp_policy, totp_secret IS NOT NULL FROM users WHERE name = ?1", [user], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(match row {
            None => false,
            Some((Some(p), _)) => p == "allow",
            Some((None, totp)) => !totp,
        })
    }

    /// The NT hash of a user's password; `None` for an unknown user or one without.
    pub fn nt_hash(&self, user: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT nt_hash FROM users WHERE name = ?1", [user], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    pub fn set_target_domain(&self, target: &str, domain: Option<&str>) -> Result<()> {
        let n = self.conn().execute("UPDATE targets SET domain = ?2 WHERE name = ?1", params![target, domain])?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "target", name: target.to_owned() });
        }
        Ok(())
    }

    pub fn target_domain(&self, target: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT domain FROM targets WHERE name = ?1", [target], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Gives an RDP target its own listener port (`None` takes it away). A port another target
    /// has is refused.
    pub fn set_target_rdp_port(&self, target: &str, port: Option<u16>) -> Result<()> {
        if let Some(p) = port {
            let holder: Option<String> = self
                .conn()
                .query_row("SELECT name FROM targets WHERE rdp_port = ?1 AND name <> ?2", params![p, target], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(holder) = holder {
                return Err(IndexError::PortTaken { port: p, target: holder });
            }
        }
        let n = self.conn().execute("UPDATE targets SET rdp_port = ?2 WHERE name = ?1", params![target, port])?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "target", name: target.to_owned() });
        }
        Ok(())
    }

    /// RDP targets with their own listener port, by port.
    pub fn target_rdp_ports(&self) -> Result<Vec<(u16, String)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT rdp_port, name FROM targets WHERE rdp_port IS NOT NULL ORDER BY rdp_port")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets the RDP redirections of an existing grant.
    pub fn set_rdp_redirection(&self, user: &str, target: &str, r: RdpRedirection) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE grants SET rdp_clipboard = ?3, rdp_drives = ?4, rdp_usb = ?5, rdp_camera = ?6,
               rdp_audio_input = ?7, rdp_audio = ?8
             WHERE user_id = (SELECT id FROM users WHERE name = ?1)
               AND target_id = (SELECT id FROM targets WHERE name = ?2)",
            params![user, target, r.clipboard, r.drives, r.usb, r.camera, r.audio_input, r.audio],
        )?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "grant", name: format!("{user} → {target}") });
        }
        Ok(())
    }

    /// The RDP redirections of a grant; `None` when there is no grant.
    pub fn rdp_redirection(&self, user: &str, target: &str) -> Result<Option<RdpRedirection>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT g.rdp_clipboard, g.rdp_drives, g.rdp_usb, g.rdp_camera, g.rdp_audio_input, g.rdp_audio
                 FROM grants g
                 JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
                 WHERE u.name = ?1 AND t.name = ?2",
                params![user, target],
                |r| RdpRedirection::from_row(r, 0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Secret, TargetRecord, UserRecord};
    use witness_core::policy::GrantFacts;
    use witness_core::{Protocol, Role};

    #[test]
    fn rdp_facts_round_trip() {
        let dir = std::env::temp_dir().join(format!("witness-index-rdp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let index = Index::open(&dir.join("i.sqlite")).unwrap();
        index
            .add_user(&UserRecord { name: "alice".into(), role: Role::User, password_hash: None, ssh_keys: vec![] })
            .unwrap();
        assert_eq!(index.nt_hash("alice").unwrap(), None);
        index.set_nt_hash("alice", "8846f7eaee8fb117ad06bdd830b7586c").unwrap();
        assert_eq!(index.nt_hash("alice").unwrap().as_deref(), Some("8846f7eaee8fb117ad06bdd830b7586c"));
        assert!(index.set_nt_hash("bob", "00").is_err());
        index
            .add_target(&TargetRecord {
                name: "win01".into(),
                protocol: Protocol::Rdp,
                host: "127.0.0.1".into(),
                port: 3389,
                login: "Administrator".into(),
                secret: Secret::Password("x".into()),
                host_key: None,
            })
            .unwrap();
        index.set_target_domain("win01", Some("CORP")).unwrap();
        assert_eq!(index.target_domain("win01").unwrap().as_deref(), Some("CORP"));
        assert_eq!(index.rdp_redirection("alice", "win01").unwrap(), None);
        index.grant("alice", "win01", GrantFacts { expires_at: None, allow_forwarding: false }).unwrap();
        assert_eq!(index.rdp_redirection("alice", "win01").unwrap(), Some(RdpRedirection::default()));
        // Each switch is kept on its own.
        for r in [
            RdpRedirection { clipboard: false, drives: true, ..RdpRedirection::default() },
            RdpRedirection { usb: true, ..RdpRedirection::default() },
            RdpRedirection { camera: true, ..RdpRedirection::default() },
            RdpRedirection { audio_input: true, clipboard: false, ..RdpRedirection::default() },
            RdpRedirection { audio: true, ..RdpRedirection::default() },
            RdpRedirection { clipboard: true, drives: true, usb: true, camera: true, audio_input: true, audio: true },
        ] {
            index.set_rdp_redirection("alice", "win01", r).unwrap();
            assert_eq!(index.rdp_redirection("alice", "win01").unwrap(), Some(r));
            let listed = index.grants().unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!((listed[0].user.as_str(), listed[0].target.as_str(), listed[0].rdp), ("alice", "win01", r));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
