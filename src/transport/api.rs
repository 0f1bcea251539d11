//! The HTTP API for game backends: `POST /rooms/{room}/events?kind=NAME` publishes the
//! request body as a room event from the server (`RoomEvent.sender` 0) to every member,
//! or to the members listed in `&targets=ID,ID`; `DELETE /rooms/{room}?reason=TEXT`
//! closes the room (its members get `Left` with `ROOM_CLOSED` and the reason). It needs
//! `Authorization: Bearer` with `[api] token`; without a configured token the API is
//! off. The room must be open on this node, or in cluster mode on any node (the call is
//! handed to that node over Redis pub/sub); an event goes out reliably, in order with
//! the members' own events, at the room's next tick. 202 means queued for the room: a
//! room already holding its bound of pending events (`max_pending_events`, 1,024 a
//! tick) drops an event and logs so.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::engine::sim_pool::Command;
use crate::proto::{ErrorCode, RoomClose, SendEvent};
use crate::state::SERVER;
use crate::transport::http::{Http, HttpResponse, bearer_matches, text, unauthorized};

/// The longest event kind the API takes.
const MAX_KIND_BYTES: usize = crate::engine::simulation::MAX_EVENT_KIND_BYTES;

/// The longest reason a close takes (a `Left` message's).
const MAX_REASON_BYTES: usize = 256;

/// A close's reason when the call gives none.
const DEFAULT_REASON: &str = "closed by the game's server";

/// What an API request asks, of which room.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `POST /rooms/{room}/events`
    Publish(String),
    /// `DELETE /rooms/{room}`
    Close(String),
}

/// The API call a request makes, if it is one (the room id percent-encoded in the path).
pub(crate) fn call_of(method: &Method, path: &str) -> Option<Call> {
    let rest = path.strip_prefix("/rooms/")?;
    let (encoded, call): (_, fn(String) -> Call) = match (method, rest.strip_suffix("/events")) {
        (&Method::POST, Some(encoded)) => (encoded, Call::Publish),
        (&Method::DELETE, None) => (rest, Call::Close),
        _ => return None,
    };
    if encoded.is_empty() || encoded.contains('/') {
        return None;
    }
    let room = percent_encoding::percent_decode_str(encoded).decode_utf8().ok()?;
    Some(call(room.into_owned()))
}

/// Refuses a request without the API's token (or any, with the API off).
fn refused(req: &Request<Incoming>, http: &Http) -> Option<HttpResponse> {
    let Some(token) = &http.api_token else {
        return Some(text(
            StatusCode::NOT_FOUND,
            "not found; the HTTP API is off (set [api] token)\n",
        ));
    };
    (!bearer_matches(req, token)).then(|| unauthorized("the HTTP API needs its bearer token\n"))
}

/// Answers one `DELETE /rooms/{room}`.
pub(crate) async fn close(req: Request<Incoming>, room: String, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let query = req.uri().query().unwrap_or("").as_bytes();
    let given = form_urlencoded::parse(query).find(|(key, value)| key == "reason" && !value.is_empty());
    let reason = given.map_or_else(|| DEFAULT_REASON.to_string(), |(_, reason)| reason.into_owned());
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        let message = format!("reason: at most {MAX_REASON_BYTES} bytes, without control characters\n");
        return text(StatusCode::BAD_REQUEST, message);
    }
    let ctx = &http.ctx;
    let Some(handle) = ctx.session.rooms.find(&room) else {
        let close = RoomClose { room, reason };
        return match &ctx.cluster {
            Some(cluster) => match cluster.close_elsewhere(&close).await {
                Ok(Some(node)) => text(
                    StatusCode::ACCEPTED,
                    format!("closing {:?} on node {node:?}\n", close.room),
                ),
                Ok(None) => not_open(&close.room, "in the cluster"),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            },
            None => not_open(&close.room, "on this node"),
        };
    };
    let command = Command::Close {
        room: handle.key,
        code: ErrorCode::RoomClosed,
        message: reason,
    };
    match ctx.session.rooms.send(&handle, command) {
        Ok(()) => {
            tracing::info!(%room, "closing the room, as the HTTP API asked");
            text(StatusCode::ACCEPTED, format!("closing {room:?}\n"))
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

fn not_open(room: &str, place: &str) -> HttpResponse {
    text(StatusCode::NOT_FOUND, format!("no room {room:?} is open {place}\n"))
}

/// Answers one `POST /rooms/{room}/events`.
pub(crate) async fn publish(req: Request<Incoming>, room: String, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let mut kind = String::new();
    let mut targets = Vec::new();
    for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*key {
            "kind" => kind = value.into_owned(),
            "targets" => {
                for id in value.split(',').filter(|s| !s.is_empty()) {
                    match id.parse() {
                        Ok(id) => targets.push(id),
                        Err(_) => return text(StatusCode::BAD_REQUEST, "targets: member ids separated by commas\n"),
                    }
                }
            }
            _ => {}
        }
    }
    if kind.is_empty() || kind.len() > MAX_KIND_BYTES {
        return text(StatusCode::BAD_REQUEST, "kind=NAME is required, at most 256 bytes\n");
    }
    let ctx = &http.ctx;
    let handle = ctx.session.rooms.find(&room);
    if handle.is_none() && ctx.cluster.is_none() {
        return not_open(&room, "on this node");
    }
    // The same bound as a client's message.
    let limit = ctx.session.settings.max_message_bytes as usize;
    let payload: Bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            let message = format!("the payload is over {limit} bytes, or its upload failed\n");
            return text(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
    };
    let bytes = payload.len();
    let event = SendEvent {
        room: room.clone(),
        kind,
        payload,
        targets,
    };
    let Some(handle) = handle else {
        // Cluster mode: the room may live on another node.
        let cluster = ctx.cluster.as_ref().expect("checked above");
        return match cluster.publish_elsewhere(&event).await {
            Ok(Some(node)) => text(
                StatusCode::ACCEPTED,
                format!("published {bytes} bytes to {room:?} on node {node:?}\n"),
            ),
            Ok(None) => not_open(&room, "in the cluster"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        };
    };
    let command = Command::Event {
        room: handle.key,
        member: SERVER,
        event,
    };
    match ctx.session.rooms.send(&handle, command) {
        Ok(()) => {
            ctx.metrics.events_published.inc();
            text(StatusCode::ACCEPTED, format!("published {bytes} bytes to {room:?}\n"))
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_name_one_room() {
        let publish = |path| call_of(&Method::POST, path);
        let close = |path| call_of(&Method::DELETE, path);
        let room = |room: &str| Some(Call::Publish(room.into()));
        assert_eq!(publish("/rooms/lobby/events"), room("lobby"));
        assert_eq!(publish("/rooms/eu%20west%2F1/events"), room("eu west/1"));
        assert_eq!(publish("/rooms/eu/1/events"), None, "a slash is encoded");
        assert_eq!(publish("/rooms/eu%20west/events"), room("eu west"));
        assert_eq!(publish("/rooms//events"), None);
        assert_eq!(publish("/rooms/lobby"), None);
        assert_eq!(publish("/rooms/%FF/events"), None, "not UTF-8");
        assert_eq!(close("/rooms/eu%20west%2F1"), Some(Call::Close("eu west/1".into())));
        assert_eq!(close("/rooms/lobby/events"), None);
        assert_eq!(close("/rooms/"), None);
        assert_eq!(call_of(&Method::GET, "/rooms/lobby"), None);
    }
}
