//! What the session history says each session was (shell, exec with its command, a file
//! transfer, RDP; files moved and their bytes) and the history as CSV for a spreadsheet: pure
//! functions over what the index stores, fuzzed (`fuzz/fuzz_targets/history.rs`).

use crate::rows::SessionRow;

/// What a session was, from its protocol, its recordings' channels (`shell`, `exec: CMD`,
/// `sftp`, an RDP desktop) and whether it moved files: the kinds in a fixed order (`rdp`,
/// `shell`, `exec`, `transfer`), and the commands it ran, each once.
pub fn session_kinds<'a>(
    protocol: &str,
    channels: impl IntoIterator<Item = &'a str>,
    transfers: u64,
) -> (Vec<String>, Vec<String>) {
    let (mut shell, mut exec, mut transfer) = (false, false, transfers > 0);
    let mut commands = Vec::new();
    for c in channels {
        if c == "shell" {
            shell = true;
        } else if c == "sftp" {
            transfer = true;
        } else if let Some(cmd) = c.strip_prefix("exec: ") {
            // scp runs as `scp -t`/`scp -f` on the target: a transfer, not a command of its own.
            if is_scp(cmd) {
                transfer = true;
            } else {
                exec = true;
            }
            if !commands.iter().any(|x| x == cmd) {
                commands.push(cmd.to_owned());
            }
        }
    }
    let kinds = [(protocol == "rdp", "rdp"), (shell, "shell"), (exec, "exec"), (transfer, "transfer")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| k.to_owned())
        .collect();
    (kinds, commands)
}

/// Whether an exec command is scp itself (`scp`, `scp -t …`), not one that merely starts so.
pub fn is_scp(command: &str) -> bool {
    command == "scp" || command.starts_with("scp ")
}

/// A session's recordings' channels as the index aggregates them: a JSON array of strings
/// (`null` for a session without recordings). Each channel comes back whole, whatever bytes an
/// exec command holds; anything else is no channel.
pub fn channels_of(json: Option<&str>) -> Vec<String> {
    json.and_then(|j| serde_json::from_str::<Vec<Option<String>>>(j).ok())
        .map(|v| v.into_iter().flatten().collect())
        .unwrap_or_default()
}

/// Files moved and their bytes, from a session's transfer events' details (`sftp`, `scp_file`):
/// an upload or a download counts, anything else (a listing, a removal, a detail that is not
/// JSON) does not.
pub fn transfer_tally<'a>(details: impl IntoIterator<Item = &'a str>) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    for detail in details {
        let detail: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
        if matches!(detail["direction"].as_str(), Some("upload" | "download")) {
            files += 1;
            bytes = bytes.saturating_add(detail["bytes"].as_u64().unwrap_or(0));
        }
    }
    (files, bytes)
}

/// The history CSV's first line.
pub const CSV_HEADER: &str = "session_id,started_at_utc,ended_at_utc,user,target,protocol,kind,commands,client,\
                              recording,end_reason,transfers,transfer_bytes,stored_bytes,running,held\r\n";

/// How many fields each line of the history CSV has.
pub const CSV_FIELDS: usize = 16;

/// One session as a line of the history CSV (RFC 4180, ending in CRLF); `live`: open now.
pub fn csv_row(s: &SessionRow, live: bool) -> String {
    let cells: [String; CSV_FIELDS] = [
        s.id.clone(),
        s.started_at.clone(),
        s.ended_at.clone().unwrap_or_default(),
        s.user.clone(),
        s.target.clone(),
        s.protocol.clone(),
        s.kinds.join(" "),
        s.commands.join("; "),
        s.client.clone().unwrap_or_default(),
        if live { "recording".into() } else { s.status.clone() },
        s.end_reason.clone().unwrap_or_default(),
        s.transfers.to_string(),
        s.transfer_bytes.to_string(),
        s.bytes.to_string(),
        live.to_string(),
        s.held.to_string(),
    ];
    let mut line = cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// Whether a spreadsheet could take a cell for a formula: it starts with `=`, `+`, `-`, `@` (or
/// their full-width forms, which some spreadsheets read as them), after any leading white space
/// or control characters (which some trim on import), or with a tab or a line break.
pub fn formula_like(text: &str) -> bool {
    const TRIGGERS: [char; 8] = ['=', '+', '-', '@', '＝', '＋', '－', '＠'];
    text.starts_with(['\t', '\r', '\n'])
        || text.trim_start_matches(|c: char| c.is_whitespace() || c.is_control()).starts_with(TRIGGERS)
}

/// One CSV field (RFC 4180), safe to open in a spreadsheet: a field a spreadsheet could take for
/// a formula (a command such as `=HYPERLINK(…)` run through the box) starts with `'`.
pub fn csv_cell(text: &str) -> String {
    let text = if formula_like(text) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_what_its_channels_and_transfers_were() {
        let k = |p, c: &[&str], t| session_kinds(p, c.iter().copied(), t);
        assert_eq!(k("ssh", &["shell"], 0), (vec!["shell".to_owned()], vec![]));
        assert_eq!(k("ssh", &["exec: uptime", "exec: uptime"], 0), (vec!["exec".into()], vec!["uptime".into()]));
        assert_eq!(k("ssh", &["exec: scp -t /tmp/x"], 1), (vec!["transfer".into()], vec!["scp -t /tmp/x".into()]));
        assert_eq!(k("ssh", &["sftp"], 0).0, ["transfer"]);
        assert_eq!(k("ssh", &[], 2).0, ["transfer"], "transfer events alone make a transfer");
        assert_eq!(k("ssh", &["shell", "exec: ls"], 0).0, ["shell", "exec"]);
        assert_eq!(k("rdp", &["desktop 1024x768", "keys"], 0).0, ["rdp"]);
        assert!(k("ssh", &[], 0).0.is_empty(), "no channel, no kind");
        assert_eq!(k("ssh", &["exec: scpx"], 0).0, ["exec"], "only scp itself is a transfer");
    }

    #[test]
    fn channels_come_back_whole() {
        assert_eq!(channels_of(Some(r#"["exec: a\u001fshell","shell"]"#)), ["exec: a\u{1f}shell", "shell"]);
        assert!(channels_of(Some("[null]")).is_empty(), "a session without recordings");
        assert!(channels_of(None).is_empty());
        assert!(channels_of(Some("not json")).is_empty());
    }

    #[test]
    fn only_uploads_and_downloads_are_files_moved() {
        let details = [
            r#"{"direction":"upload","bytes":10}"#,
            r#"{"direction":"download","bytes":5}"#,
            r#"{"op":"remove"}"#,
            "not json",
            r#"{"direction":"upload","bytes":18446744073709551615}"#,
        ];
        assert_eq!(transfer_tally(details), (3, u64::MAX), "saturates, never wraps");
        assert_eq!(transfer_tally(details[..3].iter().copied()), (2, 15));
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("alice"), "alice");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for f in ["+1", "-1", "@SUM(A1)", "\tx", "\r=1", "\n=1"] {
            assert!(csv_cell(f).trim_start_matches('"').starts_with('\''), "{f:?}");
        }
        assert_eq!(csv_cell(""), "");
    }

    /// The attack: a command with white space before its `=` (trimmed by a spreadsheet on
    /// import) or a full-width `＝` went into the CSV as it was.
    #[test]
    fn a_formula_behind_white_space_or_in_full_width_is_neutralised() {
        for f in [" =HYPERLINK(\"http://x\")", "  +1", "\u{b}=1", "\u{a0}@SUM(A1)", "＝1+1", "－1", " ＠x"] {
            assert!(csv_cell(f).trim_start_matches('"').starts_with('\''), "{f:?} gives {:?}", csv_cell(f));
        }
        for plain in ["ls -la", "a=b", "1-2", "email@example.com"] {
            assert!(!csv_cell(plain).starts_with('\''), "{plain:?}");
        }
    }

    #[test]
    fn a_csv_row_has_every_field() {
        let s = SessionRow {
            id: "s1".into(),
            session_id: "s1".into(),
            user: "alice".into(),
            target: "web01".into(),
            protocol: "ssh".into(),
            client: None,
            started_at: "2026-12-06T10:00:00.000Z".into(),
            ended_at: None,
            end_reason: None,
            status: "completed".into(),
            recovered: false,
            recordings: 1,
            bytes: 42,
            kinds: vec!["exec".into()],
            commands: vec!["=cmd|' /C calc'!A0".into(), "ls, -la".into()],
            transfers: 0,
            transfer_bytes: 0,
            held: true,
        };
        let line = csv_row(&s, false);
        assert!(line.ends_with("\r\n"));
        assert_eq!(
            line,
            "s1,2026-12-06T10:00:00.000Z,,alice,web01,ssh,exec,\"'=cmd|' /C calc'!A0; ls, -la\",,completed,,0,0,42,false,true\r\n"
        );
        assert_eq!(CSV_HEADER.split(',').count(), CSV_FIELDS);
    }
}
