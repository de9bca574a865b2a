//! What the filter lets through on a dynamic channel it reads message by message (display
//! control, touch input, sound) is whole messages its reader accepts, in the order it accepts
//! them: fuzzed DVC PDUs, in fuzzed static chunks, both ways, after a real session (captured from
//! freerdp-shadow) opened `drdynvc`. The passed frames are put back together as a client would
//! and read again with a fresh reader: every message must read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_rdp_core::channels::{Redirection, Switches, channel_name};
use witness_rdp_core::filter::{Filter, Injection, Verdict};
use witness_rdp_core::messages::{Protocol, Reader};

const CAPTURE: &[u8] = include_bytes!("../../firmware/witness-rdp-core/src/testdata/shadow_gfx.cap");
const CHANNEL: u8 = 200;

fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = data.split_first()?;
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let bytes = rest.get(4..4 + len)?;
        data = &rest[4 + len..];
        Some((tag, bytes))
    })
}

/// An MCS Send Data Request (client) or Indication (target) on `channel`, in X.224 and TPKT.
fn frame(from_client: bool, channel: u16, data: &[u8]) -> Vec<u8> {
    let mut mcs = vec![if from_client { 0x64 } else { 0x68 }, 0, 6];
    mcs.extend(channel.to_be_bytes());
    mcs.push(0x70);
    if data.len() < 0x80 {
        mcs.push(data.len() as u8);
    } else {
        mcs.extend((0x8000 | data.len() as u16).to_be_bytes());
    }
    mcs.extend(data);
    let total = (4 + 3 + mcs.len()) as u16;
    let mut out = vec![3, 0];
    out.extend(total.to_be_bytes());
    out.extend([2, 0xF0, 0x80]);
    out.extend(mcs);
    out
}

/// The user data of a frame built as [`frame`] builds it (what the filter passes on drdynvc).
fn user_data(pdu: &[u8]) -> Option<&[u8]> {
    let at = if pdu.get(13)? & 0x80 != 0 { 15 } else { 14 };
    pdu.get(at..)
}

/// A client's reading of one direction: static chunks into DVC PDUs, DVC fragments into messages.
#[derive(Default)]
struct Side {
    chunks: Vec<u8>,
    stated: usize,
    message: Vec<u8>,
    total: usize,
}

fn uint(b: &[u8], at: usize, n: usize) -> usize {
    b[at..at + n].iter().rev().fold(0, |v, &x| (v << 8) | usize::from(x))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let (name, protocol) = match mode % 3 {
        0 => ("Microsoft::Windows::RDS::DisplayControl", Protocol::DisplayControl),
        1 => ("Microsoft::Windows::RDS::Input", Protocol::Input),
        _ => ("AUDIO_PLAYBACK_DVC", Protocol::Audio),
    };
    let redirection = Redirection::from_grant(Switches { audio: true, ..Switches::default() });
    let injection = Injection { username: "root".into(), domain: None, password: "target-secret".into() };
    let mut f = Filter::new(ironrdp_pdu::nego::SecurityProtocol::HYBRID, redirection, injection);
    for (tag, frame) in records(CAPTURE) {
        let _ = match tag {
            b'C' => f.from_client(frame),
            b'T' => f.from_target(frame),
            _ => continue,
        };
    }
    let Some(drdynvc) = f.decisions().iter().find(|d| d.name == "drdynvc").map(|d| d.id) else { return };
    let svc = |flags: u32, total: u32, bytes: &[u8]| {
        let mut out = total.to_le_bytes().to_vec();
        out.extend(flags.to_le_bytes());
        out.extend(bytes);
        out
    };
    let mut create = vec![0x10, CHANNEL];
    create.extend(name.as_bytes());
    create.push(0);
    if f.from_target(&frame(false, drdynvc, &svc(3, create.len() as u32, &create))).ok() != Some(Verdict::Forward) {
        return;
    }
    let yes = [0x10, CHANNEL, 0, 0, 0, 0];
    if f.from_client(&frame(true, drdynvc, &svc(3, 6, &yes))).ok() != Some(Verdict::Forward) {
        return;
    }
    let mut reader = Reader::new(protocol);
    let mut parsed = true;
    let (mut client, mut target) = (Side::default(), Side::default());
    // Chunks: a byte (direction, first, last), the static message's stated length (u16), the
    // chunk's length (u16), the chunk.
    while rest.len() >= 5 {
        let (head, total, len) =
            (rest[0], u16::from_le_bytes([rest[1], rest[2]]), u16::from_le_bytes([rest[3], rest[4]]));
        let chunk = &rest[5..(5 + usize::from(len)).min(rest.len())];
        rest = &rest[(5 + usize::from(len)).min(rest.len())..];
        let from_client = head & 1 == 0;
        let flags = u32::from(head >> 1 & 3);
        let pdu = frame(from_client, drdynvc, &svc(flags, total.into(), chunk));
        let verdict = if from_client { f.from_client(&pdu) } else { f.from_target(&pdu) };
        let passed = match verdict {
            Ok(Verdict::Forward) => pdu,
            Ok(Verdict::Replace(out)) => out,
            Ok(Verdict::Drop) => continue,
            Ok(Verdict::Refuse(_)) | Err(_) => return,
        };
        // What passed, read as a client (or the target) reads it.
        let side = if from_client { &mut client } else { &mut target };
        let mut out = &passed[..];
        while !out.is_empty() {
            let n = usize::from(u16::from_be_bytes([out[2], out[3]]));
            let data = user_data(&out[..n]).expect("a frame as built");
            out = &out[n..];
            let (stated, flags) = (uint(data, 0, 4), uint(data, 4, 4));
            if flags & 1 != 0 {
                // The first chunk's stated length is the message's (FreeRDP reads no other).
                side.chunks.clear();
                side.stated = stated;
            }
            side.chunks.extend(&data[8..]);
            if flags & 2 == 0 {
                continue;
            }
            assert_eq!(side.chunks.len(), side.stated, "chunks that do not add up passed");
            let dvc = std::mem::take(&mut side.chunks);
            let (cmd, sp) = (dvc[0] >> 4, usize::from(dvc[0] >> 2 & 3));
            // cbChId 3 is no size: no Data PDU the filter passes has it (Capability PDUs may).
            let Some(&id_len) = [1, 2, 4].get(usize::from(dvc[0] & 3)) else {
                assert!(!matches!(cmd, 2 | 3), "a data pdu with no channel id size passed");
                continue;
            };
            let ours = dvc.len() > id_len && uint(&dvc, 1, id_len) == usize::from(CHANNEL);
            if cmd == 1 && !from_client && ours {
                // The channel opened anew, under this name (read) or another (not read here).
                reader = Reader::new(protocol);
                parsed = channel_name(&dvc[1 + id_len..]).is_some_and(|n| n == name.to_ascii_lowercase());
            }
            if !matches!(cmd, 2 | 3) || !ours || !parsed {
                continue;
            }
            let mut body = 1 + id_len;
            if cmd == 2 {
                let n = [1, 2, 4][sp];
                assert_eq!(side.total, 0, "a data first passed inside a message");
                side.total = uint(&dvc, body, n);
                body += n;
            } else if side.total == 0 {
                side.total = dvc.len() - body;
            }
            side.message.extend(&dvc[body..]);
            assert!(side.message.len() <= side.total, "a message overran its length");
            if side.message.len() == side.total {
                let message = std::mem::take(&mut side.message);
                side.total = 0;
                assert!(reader.judge(from_client, &message).is_ok(), "a message its reader refuses passed");
            }
        }
        // A frame passes only with the message it ends: nothing of one is left half-read.
        assert!(side.message.is_empty(), "part of a message passed");
        if let Some(&head) = side.chunks.first() {
            let id_len = [1, 2, 4].get(usize::from(head & 3)).copied().unwrap_or(usize::MAX);
            let ours = side.chunks.len() > id_len && uint(&side.chunks, 1, id_len) == usize::from(CHANNEL);
            assert!(!(parsed && ours && matches!(head >> 4, 2 | 3)), "part of a message passed");
        }
    }
});
