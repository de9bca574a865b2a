//! Live view of a running SSH session: the recording's file is tailed (the recorder writes every
//! event before the user sees it, so the file is the live source; nothing on the relay's path
//! changes) and streamed as server-sent events in the shape asciinema-player's `eventsource`
//! driver takes: a reset carrying what the screen printed so far, then one event per message.
//! A stream lasts no longer than its viewer's right to it: it ends when the login ends (logout,
//! idle or absolute expiry; streaming alone does not keep a login alive) or the account is
//! removed or no longer an admin, checked at every poll. Live views are bounded in number (per
//! person and for the box), and one whose reader takes nothing for a minute ends.

use crate::api::{Auth, STALL, State, error, now, valid_id};
use crate::{ConsoleError, Role};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;
use tracing::debug;

const POLL: Duration = Duration::from_millis(200);

pub async fn stream(
    axum::extract::State(state): axum::extract::State<State>,
    auth: Auth,
    Path(id): Path<String>,
) -> Response {
    if auth.0.role != Role::Admin {
        return error(StatusCode::FORBIDDEN, "live view needs the admin role");
    }
    if !valid_id(&id) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let detail = match state.console.session(&id) {
        Ok(d) => d,
        Err(ConsoleError::NotFound) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    // The newest terminal channel is what the user looks at.
    let Some(rec) = detail.recordings.iter().rev().find(|r| r.format == "cast").map(|r| r.recording.id.clone()) else {
        return error(StatusCode::CONFLICT, "this session has no terminal recording yet");
    };
    // Bounded: a view whose reader lingers holds its catch-up.
    let Some(slot) = state.live_views.enter(&auth.0.user) else {
        tracing::warn!(user = %auth.0.user, "a live view refused: too many open");
        return error(StatusCode::SERVICE_UNAVAILABLE, "too many live views open at once; close one");
    };
    state.viewed(&auth.0, "web_live_viewed", &id, &rec, json!({}));
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let (console, cancel, logins) = (state.console.clone(), state.cancel.clone(), state.sessions.clone());
    let viewer = auth.0;
    tokio::spawn(async move {
        let _slot = slot;
        let mut cursor = crate::TailCursor::default();
        let mut first = true;
        let allowed = || {
            logins.alive(&viewer.id, now()).is_some()
                && console.account(&viewer.user).is_some_and(|a| a.role == Role::Admin && a.epoch == viewer.epoch)
        };
        while allowed()
            && let Ok(tail) = {
                let (console, rec, from) = (console.clone(), rec.clone(), cursor.clone());
                // File reads and decryption: off the async threads.
                tokio::task::spawn_blocking(move || console.tail(&rec, &from))
                    .await
                    .unwrap_or_else(|e| Err(ConsoleError::Internal(e.to_string())))
            }
        {
            cursor = tail.next;
            let text = String::from_utf8_lossy(&tail.lines);
            let messages = if first { catch_up(&text) } else { events(&text) };
            if first && messages.is_empty() {
                // The header is not written yet.
            } else {
                first = false;
            }
            for m in messages {
                // A reader that takes nothing for a while is gone: its view ends (and a login
                // ended meanwhile is seen at once, not when the reader comes back).
                match tokio::time::timeout(STALL, tx.send(Event::default().data(m.to_string()))).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            if tail.finished {
                let _ = tx.send(Event::default().event("done").data("{}")).await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => return,
                _ = cancel.cancelled() => return,
            }
        }
        debug!(user = %viewer.user, session_id = %id, "live view ended");
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = futures_util::StreamExt::map(stream, Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))).into_response()
}

/// The first messages of a stream from the cast so far: a reset with the terminal size, the time
/// of the last event and everything printed (so the screen is rebuilt at once), then nothing
/// more; later lines go through [`events`].
pub fn catch_up(cast: &str) -> Vec<Value> {
    let mut lines = cast.lines();
    let Some(header) = lines.next().and_then(|l| serde_json::from_str::<Value>(l).ok()) else { return vec![] };
    let size = |v: &Value, default| v.as_u64().filter(|&n| n > 1).unwrap_or(default);
    let (mut cols, mut rows) = (size(&header["width"], 80), size(&header["height"], 24));
    let (mut time, mut init) = (0.0, String::new());
    for line in lines {
        let Ok(Value::Array(e)) = serde_json::from_str::<Value>(line) else { continue };
        time = e.first().and_then(Value::as_f64).unwrap_or(time);
        match (e.get(1).and_then(Value::as_str), e.get(2).and_then(Value::as_str)) {
            (Some("o"), Some(data)) => init.push_str(data),
            (Some("r"), Some(size)) => {
                if let Some((c, r)) = size.split_once('x').and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?))) {
                    (cols, rows) = (c, r);
                }
            }
            _ => {}
        }
    }
    vec![json!({ "cols": cols, "rows": rows, "time": time, "init": init })]
}

/// Later lines, one message per output or resize event (input is not shown).
pub fn events(lines: &str) -> Vec<Value> {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| matches!(e.get(1).and_then(Value::as_str), Some("o" | "r")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catching_up_rebuilds_the_screen_at_the_last_size() {
        let cast = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"hello \"]\n[0.7,\"i\",\"x\"]\n[1.0,\"r\",\"100x30\"]\n[1.5,\"o\",\"world\"]\n";
        let m = catch_up(cast);
        assert_eq!(m, vec![json!({ "cols": 100, "rows": 30, "time": 1.5, "init": "hello world" })]);
        assert!(catch_up("").is_empty());
        assert_eq!(events("[2.0,\"o\",\"a\"]\n[2.1,\"i\",\"b\"]\n"), vec![json!([2.0, "o", "a"])]);
    }
}
