//! The HTTP API for game backends: `POST /rooms/{room}/events?kind=NAME` publishes the
//! request body as a room event from the server (`RoomEvent.sender` 0) to every member,
//! or to the members listed in `&targets=ID,ID`; `DELETE /rooms/{room}?reason=TEXT`
//! closes the room (its members get `Left` with `ROOM_CLOSED` and the reason);
//! `DELETE /rooms/{room}/users/{user}?reason=TEXT&ban_secs=N` removes a user (a token's
//! `sub`) from the room (each of its members gets `Left` with `FORBIDDEN` and the
//! reason) and refuses its joins of the room for N seconds (0, the default: a ban it
//! had is lifted); `GET /rooms/{room}` answers who is in the room (member and user
//! ids, the seats it keeps and its bans), its type, cap and listing, as JSON; `GET
//! /rooms?after=&limit=&room_type=&open_only=&filter.KEY=VALUE` lists the rooms, a
//! page at a time, as `ListRooms` lists them to clients. It needs
//! `Authorization: Bearer` with `[api] token`; without a configured token the API is
//! off. The room must be open on this node, or in cluster mode on any node (the call is
//! handed to that node over Redis pub/sub; a room no node holds whose checkpoint Redis
//! keeps is restored on this node first, see `Cluster::route_call`); an event goes out reliably, in order with
//! the members' own events, at the room's next tick. 202 means queued for the room: a
//! room already holding twice its bound of pending events (`max_pending_events`,
//! 1,024) drops an event and logs so.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use crate::cluster::Cluster;
use crate::engine::listing::Metadata;
use crate::engine::room::{Roll, valid_room_id};
use crate::engine::rooms::{Command, MAX_ROOMS_PER_PAGE, PoolError, RoomFilter};
use crate::proto::{ErrorCode, RoomClose, SendEvent, UserRemoval};
use crate::session::auth::MAX_SUB_BYTES;
use crate::state::SERVER;
use crate::transport::http::{Http, HttpResponse, REQUEST_READ_TIMEOUT, bearer_matches, text, unauthorized};

/// The longest reason a close takes (a `Left` message's).
const MAX_REASON_BYTES: usize = 256;

/// A close's reason when the call gives none.
const DEFAULT_REASON: &str = "closed by the game's server";

/// A removal's reason when the call gives none.
const DEFAULT_REMOVAL_REASON: &str = "removed by the game's server";

/// The longest ban: 30 days.
const MAX_BAN_SECS: u32 = 30 * 24 * 3600;

/// What an API request asks, of which room.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `POST /rooms/{room}/events`
    Publish(String),
    /// `DELETE /rooms/{room}`
    Close(String),
    /// `DELETE /rooms/{room}/users/{user}`
    RemoveUser(String, String),
    /// `GET /rooms/{room}`
    Describe(String),
    /// `GET /rooms`
    List,
}

/// Why a request on one of the API's paths is not a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotACall {
    /// The path takes other methods: these (405 with `Allow`).
    Method(&'static str),
    /// A room or user id in the path is not UTF-8 once percent-decoded (400).
    NotUtf8,
    /// The room id in the path is not one: empty once decoded, over 128 bytes or
    /// holding a control character (400, without echoing it).
    RoomId,
}

/// The API call a request makes, if it is one (the room id percent-encoded in the
/// path); `Err` when the path is the API's but the method is not one it takes, or an
/// id in it is not UTF-8.
pub(crate) fn call_of(method: &Method, path: &str) -> Option<Result<Call, NotACall>> {
    if path == "/rooms" || path == "/rooms/" {
        return Some(if method == Method::GET {
            Ok(Call::List)
        } else {
            Err(NotACall::Method("GET"))
        });
    }
    let rest = path.strip_prefix("/rooms/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (room, user) = match segments[..] {
        [room] => (room_segment(room)?, None),
        [room, "events"] => {
            let room = room_segment(room)?;
            return Some(match room {
                Ok(room) if method == Method::POST => Ok(Call::Publish(room)),
                Ok(_) => Err(NotACall::Method("POST")),
                Err(e) => Err(e),
            });
        }
        [room, "users", user] => (room_segment(room)?, Some(path_segment(user)?)),
        _ => return None,
    };
    let (room, user) = match (room, user.transpose()) {
        (Ok(room), Ok(user)) => (room, user),
        (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
    };
    Some(match (method, user) {
        (&Method::DELETE, Some(user)) => Ok(Call::RemoveUser(room, user)),
        (_, Some(_)) => Err(NotACall::Method("DELETE")),
        (&Method::DELETE, None) => Ok(Call::Close(room)),
        (&Method::GET, None) => Ok(Call::Describe(room)),
        (_, None) => Err(NotACall::Method("GET, DELETE")),
    })
}

/// One segment of a path, percent-decoded (a slash in it is encoded): `None` when it
/// is empty or holds a slash (not one of the API's paths).
fn path_segment(encoded: &str) -> Option<Result<String, NotACall>> {
    if encoded.is_empty() || encoded.contains('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8();
    Some(decoded.map(|id| id.into_owned()).map_err(|_| NotACall::NotUtf8))
}

/// A room id in the path, percent-decoded and checked as a join checks it (see
/// [`path_segment`]).
fn room_segment(encoded: &str) -> Option<Result<String, NotACall>> {
    Some(path_segment(encoded)?.and_then(|id| {
        if valid_room_id(&id) {
            Ok(id)
        } else {
            Err(NotACall::RoomId)
        }
    }))
}

/// The answer to any API path with the API off.
pub(crate) fn off() -> HttpResponse {
    text(
        StatusCode::NOT_FOUND,
        "not found; the HTTP API is off (set [api] token)\n",
    )
}

/// Refuses a request without the API's token (or any, with the API off).
fn refused(req: &Request<Incoming>, http: &Http) -> Option<HttpResponse> {
    let Some(token) = &http.api_token else {
        return Some(off());
    };
    (!bearer_matches(req, token)).then(|| unauthorized("the HTTP API needs its bearer token\n"))
}

/// Answers one `DELETE /rooms/{room}`.
pub(crate) async fn close(req: Request<Incoming>, room: String, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let reason = match reason(&req, DEFAULT_REASON) {
        Ok(reason) => reason,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let ctx = &http.ctx;
    let done = format!("closing {room:?}");
    match ctx.session.rooms.close(&room, ErrorCode::RoomClosed, &reason) {
        Some(taken) => {
            tracing::info!(%room, "closing the room, as the HTTP API asked");
            answer_taken(taken, done)
        }
        None => {
            let close = RoomClose { room, reason };
            let elsewhere = async |cluster: &Cluster| cluster.close_elsewhere(&close).await;
            answer_elsewhere(http, &close.room, done, elsewhere).await
        }
    }
}

/// Answers one `DELETE /rooms/{room}/users/{user}`.
pub(crate) async fn remove_user(req: Request<Incoming>, room: String, user_id: String, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let reason = match reason(&req, DEFAULT_REMOVAL_REASON) {
        Ok(reason) => reason,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let query = req.uri().query().unwrap_or("").as_bytes();
    let ban_secs = match form_urlencoded::parse(query).find(|(key, _)| key == "ban_secs") {
        None => 0,
        Some((_, secs)) => match whole(&secs) {
            Some(secs) if secs <= u64::from(MAX_BAN_SECS) => secs as u32,
            _ => {
                let message = format!("ban_secs: whole seconds, at most {MAX_BAN_SECS} (30 days)\n");
                return text(StatusCode::BAD_REQUEST, message);
            }
        },
    };
    if user_id.len() > MAX_SUB_BYTES || user_id.chars().any(char::is_control) {
        let message = format!("the user id: at most {MAX_SUB_BYTES} bytes, without control characters\n");
        return text(StatusCode::BAD_REQUEST, message);
    }
    let ctx = &http.ctx;
    let banned = if ban_secs == 0 {
        " (a ban it had is lifted)".to_string()
    } else {
        format!(", banned for {ban_secs} s while the room stays open")
    };
    let done = format!("removing user {user_id:?} from {room:?}{banned}");
    match ctx.session.rooms.remove_user(&room, &user_id, &reason, ban_secs) {
        Some(taken) => {
            tracing::info!(%room, user = %user_id, %reason, ban_secs, "removing the user from the room, as the HTTP API asked");
            answer_taken(taken, done)
        }
        None => {
            let removal = UserRemoval {
                room,
                user_id,
                reason,
                ban_secs,
            };
            let elsewhere = async |cluster: &Cluster| cluster.remove_elsewhere(&removal).await;
            answer_elsewhere(http, &removal.room, done, elsewhere).await
        }
    }
}

/// How long `GET /rooms/{room}` waits for the room's thread.
const DESCRIBE_WAIT: Duration = Duration::from_secs(2);

/// `GET /rooms/{room}`'s answer.
#[derive(Serialize)]
struct RoomView {
    room: String,
    room_type: String,
    max_members: u32,
    #[serde(flatten)]
    roll: Roll,
    metadata: Metadata,
    locked: bool,
    private: bool,
    /// The room's owner's member id (0: none).
    owner: u64,
}

/// Answers one `GET /rooms/{room}`: in cluster mode, a room open on another node is a
/// redirect (307) to the same path on that node.
pub(crate) async fn describe(req: Request<Incoming>, room: String, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let ctx = &http.ctx;
    let handle = match (ctx.session.rooms.find(&room), &ctx.cluster) {
        (Some(handle), _) => handle,
        (None, None) => return not_open(&room, "on this node"),
        (None, Some(cluster)) => match cluster.route_call(&room, false).await {
            // Opening here (a join is restoring it), or open since.
            Ok(Some(node)) if node == cluster.node().id => match ctx.session.rooms.find(&room) {
                Some(handle) => handle,
                None => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the room is opening on this node; retry\n",
                    );
                }
            },
            Ok(Some(node)) => return redirect_to(cluster, &node, &room, req.uri().path()).await,
            Ok(None) => return not_open(&room, "in the cluster"),
            Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
    };
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let command = Command::Roll {
        room: handle.key,
        reply,
    };
    if let Err(e) = ctx.session.rooms.send(&handle, command) {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
    }
    // The room's thread answers between ticks; the wait runs off the I/O threads.
    let roll = match tokio::task::spawn_blocking(move || answer.recv_timeout(DESCRIBE_WAIT)).await {
        Ok(Ok(roll)) => roll,
        // The command dropped unanswered: the room closed meanwhile.
        Ok(Err(RecvTimeoutError::Disconnected)) => return not_open(&room, "any more"),
        _ => {
            let message = format!("the room's thread did not answer within {DESCRIBE_WAIT:?}; retry\n");
            return text(StatusCode::SERVICE_UNAVAILABLE, message);
        }
    };
    let listing = handle.shared.listing.get();
    let body = RoomView {
        room,
        room_type: handle.shared.room_type.to_string(),
        max_members: handle.shared.max_members,
        roll,
        metadata: listing.metadata,
        locked: listing.locked,
        private: listing.private,
        owner: listing.owner,
    };
    json(&body)
}

/// 307 to the same `path` on `node`.
async fn redirect_to(cluster: &Cluster, node: &str, room: &str, path: &str) -> HttpResponse {
    match cluster.node_base(node).await {
        Ok(Some(base)) => {
            // (The path as the request gave it, its bytes beyond ASCII encoded.)
            let location = format!(
                "{base}{}",
                percent_encoding::utf8_percent_encode(path, percent_encoding::CONTROLS)
            );
            let mut response = text(
                StatusCode::TEMPORARY_REDIRECT,
                format!("{room:?} is open on another node: {location}\n"),
            );
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        Ok(None) => {
            let message = format!("the room lives on node `{node}`, which is not answering; retry shortly\n");
            text(StatusCode::SERVICE_UNAVAILABLE, message)
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Rooms a `GET /rooms` page holds when the call does not say.
const DEFAULT_LIST_LIMIT: usize = 100;

/// The most bytes of rooms one `GET /rooms` page holds (a page of rooms with large
/// metadata is cut short, its `next_after` saying where the rest starts).
const MAX_LIST_BYTES: usize = 1024 * 1024;

/// A room in a `GET /rooms` page.
#[derive(Serialize)]
struct Listed {
    room: String,
    room_type: String,
    members: u32,
    max_members: u32,
    metadata: Metadata,
    locked: bool,
    owner: u64,
}

/// `GET /rooms`'s answer.
#[derive(Serialize)]
struct Page {
    rooms: Vec<Listed>,
    /// Where the next page starts (`after=`), if there is one.
    next_after: Option<String>,
}

/// Answers one `GET /rooms?after=&limit=&room_type=&open_only=&filter.KEY=VALUE`: a
/// page of the listed rooms (not private ones) in id order, on this node or, in
/// cluster mode, in the whole cluster's directory, as `ListRooms` answers a client.
pub(crate) async fn list(req: Request<Incoming>, http: &Http) -> HttpResponse {
    if let Some(refusal) = refused(&req, http) {
        return refusal;
    }
    let (mut after, mut limit, mut room_type, mut open_only) =
        (String::new(), DEFAULT_LIST_LIMIT, String::new(), false);
    let mut filters = Metadata::new();
    for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match (&*key, key.strip_prefix("filter.")) {
            ("after", _) => after = value.into_owned(),
            ("limit", _) => match whole(&value).map(|n| n as usize) {
                Some(n @ 1..=MAX_ROOMS_PER_PAGE) => limit = n,
                _ => {
                    let message = format!("limit: rooms per page, 1 to {MAX_ROOMS_PER_PAGE}\n");
                    return text(StatusCode::BAD_REQUEST, message);
                }
            },
            ("room_type", _) => room_type = value.into_owned(),
            ("open_only", _) => match &*value {
                "true" | "1" => open_only = true,
                "false" | "0" => open_only = false,
                _ => return text(StatusCode::BAD_REQUEST, "open_only: true or false\n"),
            },
            (_, Some(name)) => {
                filters.insert(name.to_string(), value.into_owned());
            }
            _ => {}
        }
    }
    if let Err(e) = crate::engine::listing::check(&filters) {
        return text(StatusCode::BAD_REQUEST, format!("filters: {e}\n"));
    }
    let filter = RoomFilter {
        room_type: &room_type,
        metadata: &filters,
        open_only,
    };
    let ctx = &http.ctx;
    let (rooms, next_after) = match &ctx.cluster {
        None => ctx.session.rooms.list(&filter, &after, limit, MAX_LIST_BYTES),
        Some(cluster) => match cluster.list(&filter, after, limit).await {
            Ok(page) => page,
            Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
    };
    let rooms = (rooms.into_iter())
        .map(|r| Listed {
            room: r.room,
            room_type: r.room_type,
            members: r.members,
            max_members: r.max_members,
            metadata: r.metadata.into_iter().collect(),
            locked: r.locked,
            owner: r.owner,
        })
        .collect();
    json(&Page { rooms, next_after })
}

/// A whole number written in digits only (no sign, no spaces), if it is one.
fn whole(value: &str) -> Option<u64> {
    value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse().ok())
        .flatten()
}

/// 200 with `body` as JSON.
fn json(body: &impl Serialize) -> HttpResponse {
    let mut response = text(StatusCode::OK, serde_json::to_string(body).unwrap_or_default() + "\n");
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The call's `reason`, `default` when it gives none; why not when it is too long or
/// holds control characters.
fn reason(req: &Request<Incoming>, default: &str) -> Result<String, String> {
    let query = req.uri().query().unwrap_or("").as_bytes();
    let given = form_urlencoded::parse(query).find(|(key, value)| key == "reason" && !value.is_empty());
    let reason = given.map_or_else(|| default.to_string(), |(_, reason)| reason.into_owned());
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err(format!(
            "reason: at most {MAX_REASON_BYTES} bytes, without control characters\n"
        ));
    }
    Ok(reason)
}

/// 202 (`done`) when the room's thread took the call, 503 when it did not.
fn answer_taken(taken: Result<(), PoolError>, done: String) -> HttpResponse {
    match taken {
        Ok(()) => text(StatusCode::ACCEPTED, format!("{done}\n")),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Answers a call for a room not open on this node: handed to the node that holds
/// it (`elsewhere`) in cluster mode, 404 when no node does.
async fn answer_elsewhere(
    http: &Http,
    room: &str,
    done: String,
    elsewhere: impl AsyncFnOnce(&Cluster) -> Result<Option<String>, PoolError>,
) -> HttpResponse {
    let Some(cluster) = &http.ctx.cluster else {
        return not_open(room, "on this node");
    };
    match elsewhere(cluster).await {
        Ok(Some(node)) => text(StatusCode::ACCEPTED, format!("{done} on node {node:?}\n")),
        Ok(None) => not_open(room, "in the cluster"),
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
    if kind.is_empty() || !crate::engine::simulation::valid_event_kind(&kind) {
        return text(
            StatusCode::BAD_REQUEST,
            "kind=NAME is required, at most 256 bytes, without control characters\n",
        );
    }
    let ctx = &http.ctx;
    // Looked up before the payload is read (no upload for a room not open) and again
    // after it: the room may have closed (or closed and opened again) meanwhile.
    let here = || ctx.session.rooms.find(&room);
    if ctx.cluster.is_none() && here().is_none() {
        return not_open(&room, "on this node");
    }
    // The same bound as a client's message. A declared length over it is refused
    // before anything is read (and no `100 Continue` asks for the upload).
    let limit = ctx.session.settings.max_message_bytes as usize;
    if req.body().size_hint().lower() > limit as u64 {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the payload is over {limit} bytes\n"),
        );
    }
    let upload = tokio::time::timeout(REQUEST_READ_TIMEOUT, Limited::new(req.into_body(), limit).collect());
    let payload: Bytes = match upload.await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            let message = format!("the payload is over {limit} bytes, or its upload failed\n");
            return text(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Err(_) => {
            let message = format!("the payload did not arrive within {REQUEST_READ_TIMEOUT:?}\n");
            return text(StatusCode::REQUEST_TIMEOUT, message);
        }
    };
    let handle = here();
    if handle.is_none() && ctx.cluster.is_none() {
        return not_open(&room, "on this node");
    }
    let done = format!("published {} bytes to {room:?}", payload.len());
    let event = SendEvent {
        room,
        kind,
        payload,
        targets,
    };
    let Some(handle) = handle else {
        // Cluster mode: the room may live on another node.
        let elsewhere = async |cluster: &Cluster| cluster.publish_elsewhere(&event).await;
        return answer_elsewhere(http, &event.room, done, elsewhere).await;
    };
    let command = Command::Event {
        room: handle.key,
        member: SERVER,
        event,
    };
    let taken = ctx.session.rooms.send(&handle, command);
    if taken.is_ok() {
        ctx.metrics.events_published.inc();
    }
    answer_taken(taken, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_name_one_room() {
        let publish = |path| call_of(&Method::POST, path).and_then(Result::ok);
        let close = |path| call_of(&Method::DELETE, path).and_then(Result::ok);
        let room = |room: &str| Some(Call::Publish(room.into()));
        assert_eq!(publish("/rooms/lobby/events"), room("lobby"));
        assert_eq!(publish("/rooms/eu%20west%2F1/events"), room("eu west/1"));
        assert_eq!(publish("/rooms/eu/1/events"), None, "a slash is encoded");
        assert_eq!(publish("/rooms/eu%20west/events"), room("eu west"));
        assert_eq!(publish("/rooms//events"), None);
        assert_eq!(publish("/rooms/lobby"), None);
        assert_eq!(
            call_of(&Method::POST, "/rooms/%FF/events"),
            Some(Err(NotACall::NotUtf8))
        );
        assert_eq!(call_of(&Method::GET, "/rooms/%FF"), Some(Err(NotACall::NotUtf8)));
        // Room ids as a join takes them: 1-128 bytes, no control characters.
        let long = format!("/rooms/{}", "a".repeat(129));
        assert_eq!(call_of(&Method::GET, &long), Some(Err(NotACall::RoomId)));
        assert_eq!(
            call_of(&Method::GET, &long[..long.len() - 1]),
            Some(Ok(Call::Describe("a".repeat(128))))
        );
        assert_eq!(
            call_of(&Method::POST, "/rooms/a%0Ab/events"),
            Some(Err(NotACall::RoomId))
        );
        assert_eq!(
            call_of(&Method::DELETE, &format!("{long}/users/ann")),
            Some(Err(NotACall::RoomId))
        );
        assert_eq!(
            call_of(&Method::DELETE, "/rooms/a/users/%C3"),
            Some(Err(NotACall::NotUtf8))
        );
        assert_eq!(close("/rooms/eu%20west%2F1"), Some(Call::Close("eu west/1".into())));
        assert_eq!(close("/rooms/lobby/events"), None);
        assert_eq!(close("/rooms/"), None);
        let remove = |room: &str, user: &str| Some(Call::RemoveUser(room.into(), user.into()));
        assert_eq!(close("/rooms/eu%2F1/users/ann%20b"), remove("eu/1", "ann b"));
        assert_eq!(close("/rooms/lobby/users/a/b"), None, "a slash in the user is encoded");
        assert_eq!(close("/rooms/lobby/users/"), None);
        assert_eq!(close("/rooms//users/ann"), None);
        assert_eq!(publish("/rooms/lobby/users/ann"), None);
        // A user may be called `events`.
        assert_eq!(close("/rooms/lobby/users/events"), remove("lobby", "events"));
        assert_eq!(close("/rooms/events/users/users"), remove("events", "users"));
        let describe = |path| call_of(&Method::GET, path);
        assert_eq!(describe("/rooms/eu%20west"), Some(Ok(Call::Describe("eu west".into()))));
        assert_eq!(describe("/rooms/events"), Some(Ok(Call::Describe("events".into()))));
        // The API's paths with another method: 405, naming the methods they take.
        assert_eq!(describe("/rooms/lobby/events"), Some(Err(NotACall::Method("POST"))));
        assert_eq!(
            describe("/rooms/lobby/users/ann"),
            Some(Err(NotACall::Method("DELETE")))
        );
        assert_eq!(
            call_of(&Method::PUT, "/rooms/lobby"),
            Some(Err(NotACall::Method("GET, DELETE")))
        );
        assert_eq!(describe("/rooms/lobby/members"), None);
        assert_eq!(describe("/rooms"), Some(Ok(Call::List)));
        assert_eq!(describe("/rooms/"), Some(Ok(Call::List)));
        assert_eq!(call_of(&Method::POST, "/rooms"), Some(Err(NotACall::Method("GET"))));
        assert_eq!(describe("/roomsx"), None);
    }
}
