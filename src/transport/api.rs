//! The HTTP API for game backends: `POST /rooms/{room}/events?kind=NAME` publishes the
//! request body as a room event from the server (`RoomEvent.sender` 0) to every member,
//! or to the members listed in `&targets=ID,ID`. It needs `Authorization: Bearer` with
//! `[api] token`; without a configured token the API is off. The room must be open on
//! this node, or in cluster mode on any node (the event is handed to that node over
//! Redis pub/sub); the event goes out reliably, in order with the members' own events,
//! at the room's next tick. 202 means queued for the room: a room already holding its
//! bound of pending events (`max_pending_events`, 1,024 a tick) drops it and logs so.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::engine::sim_pool::Command;
use crate::proto::SendEvent;
use crate::state::SERVER;
use crate::transport::http::{Http, HttpResponse, bearer_matches, text, unauthorized};

/// The longest event kind the API takes.
const MAX_KIND_BYTES: usize = crate::engine::simulation::MAX_EVENT_KIND_BYTES;

/// The room id of an API path (`/rooms/{room}/events`, the id percent-encoded).
pub(crate) fn room_of(path: &str) -> Option<String> {
    let encoded = path.strip_prefix("/rooms/")?.strip_suffix("/events")?;
    if encoded.is_empty() || encoded.contains('/') {
        return None;
    }
    let room = percent_encoding::percent_decode_str(encoded).decode_utf8().ok()?;
    Some(room.into_owned())
}

/// Answers one `POST /rooms/{room}/events`.
pub(crate) async fn publish(req: Request<Incoming>, room: String, http: &Http) -> HttpResponse {
    let Some(token) = &http.api_token else {
        return text(
            StatusCode::NOT_FOUND,
            "not found; the HTTP API is off (set [api] token)\n",
        );
    };
    if !bearer_matches(&req, token) {
        return unauthorized("the HTTP API needs its bearer token\n");
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
        return text(
            StatusCode::NOT_FOUND,
            format!("no room {room:?} is open on this node\n"),
        );
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
            Ok(None) => text(
                StatusCode::NOT_FOUND,
                format!("no room {room:?} is open in the cluster\n"),
            ),
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
        assert_eq!(room_of("/rooms/lobby/events").as_deref(), Some("lobby"));
        assert_eq!(room_of("/rooms/eu%20west%2F1/events").as_deref(), Some("eu west/1"));
        assert_eq!(room_of("/rooms/eu/1/events"), None, "a slash is encoded");
        assert_eq!(room_of("/rooms/eu%20west/events").as_deref(), Some("eu west"));
        assert_eq!(room_of("/rooms//events"), None);
        assert_eq!(room_of("/rooms/lobby"), None);
        assert_eq!(room_of("/rooms/%FF/events"), None, "not UTF-8");
    }
}
