//! What the history says a session was, and its CSV export, from arbitrary channels, transfer
//! events and session fields: the kinds follow from the channels (in their fixed order, each
//! once; an exec command is one command whatever bytes it holds), every CSV line parses back
//! (RFC 4180, read here independently of the writer) to exactly its fields with the cells' text,
//! and no field a spreadsheet could take for a formula is left without its `'`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::history::{
    CSV_FIELDS, CSV_HEADER, channels_of, csv_cell, csv_row, formula_like, session_kinds, transfer_tally,
};
use witness_core::rows::SessionRow;

/// Reads RFC 4180 records (CRLF or LF between records; quotes double inside quoted fields).
fn parse(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                assert!(field.is_empty(), "a quote inside an unquoted field: {text:?}");
                quoted = true;
            }
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => assert_eq!(chars.next(), Some('\n'), "a bare CR outside quotes: {text:?}"),
            '\n' => panic!("a bare LF outside quotes: {text:?}"),
            c => field.push(c),
        }
        if c == '\r' {
            record.push(std::mem::take(&mut field));
            records.push(std::mem::take(&mut record));
        }
    }
    assert!(!quoted, "an unclosed quote: {text:?}");
    assert!(field.is_empty() && record.is_empty(), "a record without its CRLF: {text:?}");
    records
}

/// A cell as written: its text, with a `'` before it when a spreadsheet could take it for a
/// formula.
fn expected_cell(text: &str) -> String {
    if formula_like(text) { format!("'{text}") } else { text.to_owned() }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.split('\u{0}').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");

    // Kinds from channels (split on U+0001: any other byte, U+001F included, is a channel's own).
    let protocol = if part(0).starts_with('r') { "rdp" } else { "ssh" };
    let channels: Vec<&str> = part(1).split('\u{1}').filter(|c| !c.is_empty()).collect();
    let transfers = part(2).len() as u64 % 3;
    let (kinds, commands) = session_kinds(protocol, channels.iter().copied(), transfers);
    let order = ["rdp", "shell", "exec", "transfer"];
    let places: Vec<usize> = kinds.iter().map(|k| order.iter().position(|o| o == k).expect("a known kind")).collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]), "kinds in order, each once: {kinds:?}");
    let has = |k: &str| kinds.iter().any(|x| x == k);
    assert_eq!(has("rdp"), protocol == "rdp");
    assert_eq!(has("shell"), channels.contains(&"shell"));
    let execs: Vec<&str> = channels.iter().filter_map(|c| c.strip_prefix("exec: ")).collect();
    let scp = |c: &str| c == "scp" || c.starts_with("scp ");
    assert_eq!(has("exec"), execs.iter().any(|c| !scp(c)));
    assert_eq!(has("transfer"), transfers > 0 || channels.contains(&"sftp") || execs.iter().any(|c| scp(c)));
    for (i, c) in commands.iter().enumerate() {
        assert!(execs.contains(&c.as_str()), "{c:?} was not run");
        assert!(!commands[..i].contains(c), "{c:?} twice");
    }
    assert!(execs.iter().all(|e| commands.iter().any(|c| c == e)), "every command listed");

    // The channels as the index aggregates them come back whole.
    let json = serde_json::to_string(&channels).unwrap();
    assert_eq!(channels_of(Some(&json)), channels);
    let _ = channels_of(Some(part(3)));

    // Transfer events: no panic, no more files than events.
    let details: Vec<&str> = part(4).split('\u{1}').collect();
    let (files, _bytes) = transfer_tally(details.iter().copied());
    assert!(files <= details.len() as u64);

    // One cell: parses back to one field with the cell's text, never a formula.
    for cell in &parts {
        let line = format!("{}\r\n", csv_cell(cell));
        let records = parse(&line);
        assert_eq!(records, vec![vec![expected_cell(cell)]], "{cell:?}");
        let field = &records[0][0];
        assert!(field.starts_with('\'') || !formula_like(field), "{field:?} could run as a formula");
    }

    // A history line of arbitrary fields: the header's number of fields, each the cell's text.
    let s = SessionRow {
        id: part(5).into(),
        session_id: part(5).into(),
        user: part(6).into(),
        target: part(7).into(),
        protocol: protocol.into(),
        client: Some(part(8).into()).filter(|c: &String| !c.is_empty()),
        started_at: part(9).into(),
        ended_at: Some(part(10).into()),
        end_reason: Some(part(11).into()),
        status: part(12).into(),
        recovered: false,
        recordings: channels.len() as u64,
        bytes: data.len() as u64,
        kinds: kinds.clone(),
        commands: commands.clone(),
        transfers: files,
        transfer_bytes: u64::MAX,
        held: part(13).is_empty(),
    };
    let live = part(14).is_empty();
    let csv = format!("{CSV_HEADER}{}", csv_row(&s, live));
    let records = parse(&csv);
    assert_eq!(records.len(), 2, "{csv:?}");
    assert!(records.iter().all(|r| r.len() == CSV_FIELDS), "{records:?}");
    assert_eq!(records[1][0], expected_cell(&s.id));
    assert_eq!(records[1][3], expected_cell(&s.user));
    assert_eq!(records[1][7], expected_cell(&commands.join("; ")));
    assert_eq!(records[1][10], expected_cell(part(11)));
    assert!(records[1].iter().all(|f| f.starts_with('\'') || !formula_like(f)), "{records:?}");
});
