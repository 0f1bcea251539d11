//! What a clustered session asks of the room directory, and what it is answered: the
//! session queues [`DirectoryOp`]s (see `Session::poll_directory`), its driver runs
//! them on the cluster and hands each [`DirectoryReply`] back (`Session::on_directory`).
//! The session owns this vocabulary; the cluster (`crate::cluster`) speaks it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::listing::{ListingState, Metadata};
use crate::engine::rooms::PoolError;
use crate::proto;

use super::joins::Waiting;
use super::*;

/// Work a clustered session needs from the room directory. The driver takes it from
/// [`Session::poll_directory`](super::Session::poll_directory), runs it (asynchronously) and hands the answer to
/// [`Session::on_directory`](super::Session::on_directory).
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryOp {
    /// Take the room for this node, or learn which node holds it: a join of a room
    /// not open here.
    Claim {
        /// The room id.
        room: String,
        /// The room type the join named (empty: the default).
        room_type: String,
        /// The seat ticket the join presented (empty: none).
        seat: String,
        /// Who joins: the member id and user a redirect's ticket carries on.
        member: proto::Seat,
        /// The room's listing, should the claim create it.
        listing: ListingState,
        /// The join's request id: its answer finishes that join, not a later one.
        request_id: u64,
    },
    /// Find an open room for a quick join on another node (none fit here).
    QuickJoin {
        /// The quick join's request id.
        request_id: u64,
        /// The room type (empty: the default).
        room_type: String,
        /// The metadata the room must hold.
        filters: Metadata,
        /// Rooms the session is in (or joining): not these.
        skip: Vec<String>,
        /// The token's room patterns (none: any room).
        allowed: Option<Vec<String>>,
        /// Who joins: the member id and user the redirect's ticket carries on.
        member: proto::Seat,
    },
    /// Give up a room this node claimed and did not open (the join was refused, or
    /// left before the claim answered), unless it is open here by then: its entry
    /// would list a room that runs nowhere.
    Release {
        /// The room id.
        room: String,
    },
    /// One page of the cluster's rooms, for `ListRooms`.
    List {
        /// The request to answer.
        request_id: u64,
        /// List the ids after this one.
        after: String,
        /// At most this many.
        limit: usize,
        /// Only rooms of this type (empty: any).
        room_type: String,
        /// Only rooms whose metadata holds every one of these entries.
        filters: Metadata,
        /// Only rooms a quick join may pick.
        open_only: bool,
    },
}

/// Why a room that another process with this node's id holds is not joined here
/// ([`Claim::Superseded`] of a room not open here).
pub(crate) const ANOTHER_START: &str =
    "another process started with this node's id holds the room (it was cut off from Redis); retry shortly";

/// The answer to a join whose room, open here as its claim began, closed before the
/// claim answered.
pub(crate) fn closed_as_joined() -> PoolError {
    PoolError::Unavailable("the room closed as you joined; join again".into())
}

/// The directory's answer to a [`DirectoryOp`] (a refusal as the [`PoolError`] to
/// answer with).
#[derive(Debug)]
pub enum DirectoryReply {
    /// To [`DirectoryOp::Claim`].
    Claim {
        /// The room id.
        room: String,
        /// Whether this node owns it now, or which node does.
        outcome: Result<Claim, PoolError>,
        /// The room was open here as the claim began (the claim renewed its entry):
        /// the join must find it still open, not open it anew.
        was_open: bool,
        /// Redirected: the seat ticket for the owner (empty: none).
        ticket: String,
        /// The seat the join's ticket carried: join as that member.
        seat: Option<proto::Seat>,
        /// The claim's [`DirectoryOp::Claim::request_id`].
        request_id: u64,
        /// A claim of a room not open here: counted as opening it until the reply is
        /// done with (the room opened, or given up).
        opening: Option<Opening>,
    },
    /// To [`DirectoryOp::List`].
    List {
        /// The request.
        request_id: u64,
        /// A page of rooms, and where the next starts (none: this is the last).
        outcome: Result<(Vec<proto::RoomInfo>, Option<String>), PoolError>,
    },
    /// To [`DirectoryOp::QuickJoin`].
    QuickJoin {
        /// The quick join's request id.
        request_id: u64,
        /// The room found (none: create one), or the refusal.
        outcome: Result<Option<Found>, PoolError>,
    },
    /// To [`DirectoryOp::Release`] (done, or failed: the lease lapses then).
    Released {
        /// The room id.
        room: String,
    },
}

/// An open room on another node, for a quick join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The room id.
    pub room: String,
    /// Where the owning node's clients connect.
    pub url: String,
    /// The seat ticket for the join there.
    pub seat: String,
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the room now (or already did).
    Ours,
    /// Another node owns it; its URL, if the node is alive (a node whose own lease
    /// lapsed has no URL until it renews).
    Theirs {
        /// The owner's id.
        node: String,
        /// Where its clients connect.
        url: Option<String>,
    },
    /// Nobody holds the room's lease, but Redis has just come back from a stall or an
    /// outage (every lease lapsed) and the room has a checkpoint, or Redis came back
    /// empty: its node, if alive, takes it back at its next renewal. Ask again in a
    /// moment.
    Settling,
    /// The copy of the room this node runs is out of date: its lease lapsed (the node
    /// was cut off from the directory) and another claim took the room since, whether
    /// or not that claim's node still holds it. Or another start of this node's id
    /// holds the room. Not taken; the copy here must close. (Only the Redis directory
    /// numbers claims: one process's never answers this.)
    Superseded,
}

/// A claim of a room not open here, under way: counted in the cluster's rooms
/// opening while it lives. A join's claim is held until its session opened the room
/// (or gave up): until then the room is not released for another join that left
/// meanwhile, and calls for it wait for it to open.
pub struct Opening {
    rooms: Arc<parking_lot::Mutex<HashMap<String, usize>>>,
    room: String,
}

impl Opening {
    /// Counts `room` in `rooms` (by the claims opening it) while the guard lives.
    pub(crate) fn new(rooms: &Arc<parking_lot::Mutex<HashMap<String, usize>>>, room: &str) -> Self {
        *rooms.lock().entry(room.to_string()).or_default() += 1;
        Self {
            rooms: rooms.clone(),
            room: room.to_string(),
        }
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Opening").field(&self.room).finish()
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut rooms = self.rooms.lock();
        if let Some(claims) = rooms.get_mut(&self.room) {
            *claims -= 1;
            if *claims == 0 {
                rooms.remove(&self.room);
            }
        }
    }
}

impl Session {
    /// Keeps an input or event for a room whose join waits for the directory; at
    /// most a burst's worth (the client should wait for `Joined`).
    pub(super) fn wait_for_claim(&mut self, room: &str, waiting: Waiting, request_id: u64) {
        let burst = self.limiter.limits().message_burst as usize;
        let Some(claim) = self.claims.get_mut(room) else {
            return;
        };
        if claim.waiting.len() >= burst.max(1) {
            let message = "the join still waits for the room directory; wait for Joined before sending more";
            return self.reply(error_message(ErrorCode::LimitExceeded, message, request_id, room));
        }
        claim.waiting.push(waiting);
    }

    /// The next piece of directory work, for the driver to run (cluster mode).
    pub fn poll_directory(&mut self) -> Option<DirectoryOp> {
        let op = self.directory_ops.pop()?;
        self.in_flight.push(op.clone());
        Some(op)
    }

    /// The directory answered: finishes the join (the room is ours: it opens here),
    /// redirects it (another node owns the room) or answers the refusal; or answers
    /// the listing.
    pub fn on_directory(&mut self, reply: DirectoryReply) {
        // The one operation answered: a client may have several under way with the
        // same room and request id (joined and left again), each counted against the
        // bounds on claims and listings until its own answer.
        let answered = self.in_flight.iter().position(|op| match (op, &reply) {
            (
                DirectoryOp::Claim { room, request_id, .. },
                DirectoryReply::Claim {
                    room: answered,
                    request_id: answered_id,
                    ..
                },
            ) => (room, request_id) == (answered, answered_id),
            (DirectoryOp::Release { room }, DirectoryReply::Released { room: answered }) => room == answered,
            (
                DirectoryOp::List { request_id, .. },
                DirectoryReply::List {
                    request_id: answered, ..
                },
            )
            | (
                DirectoryOp::QuickJoin { request_id, .. },
                DirectoryReply::QuickJoin {
                    request_id: answered, ..
                },
            ) => request_id == answered,
            _ => false,
        });
        if let Some(i) = answered {
            self.in_flight.remove(i);
        }
        match reply {
            DirectoryReply::Released { .. } => {}
            DirectoryReply::List { request_id, outcome } => match outcome {
                Ok((rooms, next)) => self.reply_rooms(request_id, rooms, next),
                Err(e) => self.pool_error(&e, request_id, ""),
            },
            DirectoryReply::QuickJoin { request_id, outcome } => {
                // The session closed (or the request was answered) meanwhile.
                let Some(pending) = self.quick_joins.remove(&request_id) else {
                    return;
                };
                match outcome {
                    Ok(Some(Found { room, url, seat })) => self.redirect(request_id, room, url, seat),
                    Ok(None) => self.create_for_quick_join(request_id, pending),
                    Err(e) => self.pool_error(&e, request_id, ""),
                }
            }
            DirectoryReply::Claim {
                room,
                outcome,
                was_open,
                ticket,
                seat,
                request_id,
                // Held to the end of this arm: the room is open by then, or given up.
                opening: _opening,
            } => {
                let pending = match self.claims.get(&room) {
                    Some(pending) if pending.request_id == request_id => self.claims.remove(&room),
                    // Left while the claim ran, then joined again: the newer join's
                    // claim (of the same room, for this node too) decides.
                    Some(_) => return,
                    None => None,
                };
                // Left while the claim ran: nothing to finish, and a room claimed for
                // the join is given up.
                let Some(pending) = pending else {
                    if matches!(outcome, Ok(Claim::Ours)) {
                        self.release_unopened(room);
                    }
                    return;
                };
                // A redirected member's ticket (with JWT, only the ticket's own user's).
                let jwt = self.ctx.auth.mode() == AuthMode::Jwt;
                let seat = seat.filter(|seat| !jwt || *seat.user_id == *self.identity.user_id);
                match outcome {
                    // It closed since (the directory checks too, as the claim ends):
                    // opened anew here it would run without its entry, which its close
                    // takes away (a join through another node would open a second
                    // copy). Joined again (clients do so on UNAVAILABLE), it is claimed
                    // afresh.
                    Ok(Claim::Ours) if was_open && self.ctx.rooms.find(&room).is_none() => {
                        self.pool_error(&closed_as_joined(), request_id, &room);
                        self.release_unopened(room);
                    }
                    // A quick join on another node picked the room as the directory
                    // last listed it (up to a third of a lease old): one locked, filled
                    // or changed since is not one it may join.
                    Ok(Claim::Ours) if seat.as_ref().is_some_and(|seat| !self.still_picks(&room, seat)) => {
                        let message =
                            "the room a quick join picked was locked, filled or changed since; quick-join again";
                        self.reply(error_message(ErrorCode::RoomFull, message, request_id, &room));
                    }
                    Ok(Claim::Ours) => {
                        // A redirected member joins with the member id its ticket carries.
                        let (member, user_id) = match seat {
                            Some(seat) => (seat.member_id, Arc::from(seat.user_id)),
                            None => (self.id, self.identity.user_id.clone()),
                        };
                        let joiner = Joiner {
                            member,
                            user_id,
                            data: pending.member_data,
                        };
                        let listing = ListingState::created(pending.create.as_ref(), member, true);
                        let Some(handle) =
                            self.open_and_join(room.clone(), &pending.room_type, request_id, joiner, listing)
                        else {
                            self.release_unopened(room);
                            return;
                        };
                        for waiting in pending.waiting {
                            let command = match waiting {
                                Waiting::Input { seq, payload } => Command::Input {
                                    room: handle.key,
                                    member,
                                    seq,
                                    payload,
                                },
                                Waiting::Event(event) => Command::Event {
                                    room: handle.key,
                                    member,
                                    event,
                                },
                            };
                            self.send(&handle, command, 0);
                        }
                    }
                    Ok(Claim::Theirs { url: Some(url), .. }) => self.redirect(request_id, room, url, ticket),
                    Ok(Claim::Theirs { node, url: None }) => {
                        let message = format!("the room lives on node `{node}`, which is not answering; retry shortly");
                        self.pool_error(&PoolError::Unavailable(message), request_id, &room);
                    }
                    Ok(Claim::Superseded) => {
                        let message = ANOTHER_START;
                        self.pool_error(&PoolError::Unavailable(message.into()), request_id, &room);
                    }
                    Ok(Claim::Settling) => {
                        let message = "the room's node may be taking it back after a Redis outage; retry shortly";
                        self.pool_error(&PoolError::Unavailable(message.into()), request_id, &room);
                    }
                    Err(e) => self.pool_error(&e, request_id, &room),
                }
            }
        }
    }

    /// Gives up the claim of `room` (see [`DirectoryOp::Release`]) unless it is open
    /// here.
    pub(super) fn release_unopened(&mut self, room: String) {
        if self.ctx.rooms.find(&room).is_none() {
            self.directory_ops.push(DirectoryOp::Release { room });
        }
    }

    /// Answers a join or quick join: the room lives on the node at `url`.
    fn redirect(&self, request_id: u64, room: String, url: String, seat: String) {
        let redirect = Kind::Redirect(proto::Redirect {
            request_id,
            room,
            url: self.url_to_follow(url),
            seat,
        });
        self.reply(encode_message(redirect));
    }

    /// Another node's public URL as this client is to follow it: over QUIC, with
    /// `quic_redirects`, the `quic://` URL of its host and port.
    pub(super) fn url_to_follow(&self, url: String) -> String {
        let over_quic = self.outbox.delivery() == Delivery::Acknowledged;
        match url.strip_prefix("wss://") {
            Some(rest) if over_quic && self.ctx.settings.quic_redirects => {
                let authority = rest.split(['/', '?']).next().unwrap_or(rest);
                format!("quic://{authority}")
            }
            _ => url,
        }
    }
}
