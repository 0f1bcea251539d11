//! The background task behind a [`crate::Client`]: connects, runs one connection at a
//! time, and reconnects with backoff, resuming the session when the server kept it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tickrelay_proto::bucket::TokenBucket;
use tickrelay_proto::clock::unix_micros;
use tickrelay_proto::error::reconnect_allowed;
use tickrelay_proto::frame::decode_server;
use tickrelay_proto::mirror::StateMirror;
use tickrelay_proto::packed;
use tickrelay_proto::state::Schema;
use tickrelay_proto::v1::{self as proto, client_message::Kind as Out, server_message::Kind as In};
use tickrelay_proto::woken::Woken;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::link::{self, Broken, Failure, Link, MESSAGE_FRAMING, Received as Incoming, Target};
use crate::numbering::{Arrival, Received};
use crate::routes::Routes;
use crate::trust::Tls;
use crate::{Carried, ClientConfig, Command, Event, QUICK_JOIN_FULL_TRIES, QuickAsk, RoomTold, Shared};

/// How long a room redirected to a node this client failed over from waits before it
/// is joined again (the directory names the dead node until its leases lapse).
const STALE_REDIRECT_WAIT: Duration = Duration::from_millis(500);

/// How a driver reaches the client's other connections (see [`Routes`]).
pub(crate) struct Routing {
    /// Weak: the routes hold every driver's command sender, and a driver must end
    /// once the last `Client` handle is gone.
    pub routes: std::sync::Weak<Routes>,
    /// The connection to the configured URL (others give their rooms back to it
    /// instead of giving up).
    pub home: bool,
}

type Reply = oneshot::Sender<Result<proto::Response, proto::Error>>;

struct RoomState {
    room_type: String,
    /// Whether the current server session answered this room's join (`Joined`); a
    /// resume joins again the rooms that it did not.
    joined: bool,
    next_seq: u64,
    unacked: VecDeque<(u64, proto::input::Payload)>,
    /// The highest input number that may have been sent (queued while the room was
    /// joined, here or on the connection it came from): inputs above it waited for a
    /// join's answer and never left the client.
    sent_upto: u64,
    /// Events for the room sent before its join was answered: they wait for `Joined`
    /// (a redirected join takes them to the room's node).
    held_events: VecDeque<proto::SendEvent>,
    /// Over QUIC: the last state tick applied, and whether it was acknowledged.
    applied_tick: u64,
    applied_acked: bool,
    /// The join was answered `UNAVAILABLE` (cluster mode: the room's node died and its
    /// lease has not lapsed yet, or Redis is away) or `RATE_LIMITED` (left a moment
    /// ago): join again at this time.
    retry_join_at: Option<Instant>,
    /// A redirect's seat ticket, presented in this room's next join (then dropped).
    seat: String,
    /// The room's declared kinds, from its first `Joined` (needed to decode its
    /// frames). Until it arrives the room has no mirror: frames are not applied, nor
    /// acknowledged over QUIC, so the server sends its full snapshot again.
    schema: Option<Arc<Schema>>,
    /// The options of a join that creates the room.
    create: Option<proto::RoomOptions>,
    /// The request id of the last join sent: an `Error` carrying it refuses the join.
    join_request: u64,
    /// The request id of this state's first join: a `Joined` with a lower one answers
    /// a join made before the room was left (and joined again), and is not this one's.
    first_join: u64,
    /// The quick join that picked the room, until its join is answered: a `ROOM_FULL`
    /// refusal sends it again (see [`QuickAsk`]).
    quick: Option<QuickAsk>,
}

impl RoomState {
    fn new(room_type: &str) -> Self {
        Self {
            room_type: room_type.into(),
            joined: false,
            next_seq: 0,
            unacked: VecDeque::new(),
            sent_upto: 0,
            held_events: VecDeque::new(),
            applied_tick: 0,
            applied_acked: false,
            retry_join_at: None,
            seat: String::new(),
            schema: None,
            create: None,
            join_request: 0,
            first_join: 0,
            quick: None,
        }
    }

    /// The server applied this room's inputs up to `seq`: they need no replay. With
    /// `renumber` (a join's answer), new inputs are numbered above it: a seat resumed
    /// by a client that restarted, or restored from a checkpoint, may have applied
    /// more than this client sent, and the room drops lower numbers as repeats. A
    /// number above any an input may have (2^53 - 1), or a frame's above every number
    /// this client gave, is no acknowledgement (no relay sends one): ignored, so that
    /// a broken relay cannot make the numbering wrap. (The browser client's rules.)
    fn acknowledged(&mut self, seq: u64, renumber: bool) {
        if seq >= FIRST_REQUEST_ID || (!renumber && seq > self.next_seq) {
            return;
        }
        if renumber {
            self.renumber_unsent_above(seq);
        }
        while self.unacked.front().is_some_and(|(n, _)| *n <= seq) {
            self.unacked.pop_front();
        }
        if renumber {
            self.next_seq = self.next_seq.max(seq);
        }
    }

    /// Inputs that waited for the join and never left the client are not among those
    /// a seat applied, whatever their numbers: numbered at or below `applied` (the
    /// seat is an earlier process's, which numbered on before this one started),
    /// they are numbered on above it, in order, instead of being taken as applied.
    /// (The numbers `Client::send_input` returned for them are then below the new
    /// ones: `last_input_seq` passes them once these are applied.)
    fn renumber_unsent_above(&mut self, applied: u64) {
        let sent_upto = self.sent_upto;
        if !self.unacked.iter().any(|(n, _)| (sent_upto + 1..=applied).contains(n)) {
            return;
        }
        let mut next = applied;
        for (n, _) in self.unacked.iter_mut().filter(|(n, _)| *n > sent_upto) {
            next += 1;
            *n = next;
        }
        self.next_seq = self.next_seq.max(next);
    }

    /// What a join of the room on another connection continues from.
    fn carried(self, seat: String) -> Carried {
        Carried {
            next_seq: self.next_seq,
            unacked: self.unacked,
            sent_upto: self.sent_upto,
            events: self.held_events,
            seat,
            create: self.create,
            quick: self.quick,
        }
    }
}

/// A token refresh waiting for its answer.
struct Refresh {
    request_id: u64,
    /// Refused for now (`UNAVAILABLE`: the relay does not hold the token's signing
    /// key yet): sent again at this time.
    retry_at: Option<Instant>,
}

/// The least and most a refresh refused for now waits before it is sent again,
/// whatever the relay's `retry_after_ms` says.
const REFRESH_RETRY_WAIT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// How a connection ended.
enum End {
    /// Reconnect (after backoff unless `now`). `unreached`: the connection was lost
    /// without a close from the server (which a live node sends), and not dropped
    /// here.
    Reconnect { reason: String, now: bool, unreached: bool },
    /// Stop the client.
    Stop,
    /// Close the connection normally, then stop (only `serve` sees it).
    CloseAndStop,
}

/// Why a connection attempt made no connection.
enum NotConnected {
    /// The token source gave no token: no node was asked.
    NoToken(String),
    /// The node at the current URL was tried.
    Failed(Failure),
}

struct Driver {
    config: ClientConfig,
    /// The configured URL, then the fallback URLs.
    targets: Vec<Target>,
    /// The one the next attempt connects to.
    current: usize,
    /// TLS for `wss://` and `quic://` (none for `ws://`).
    tls: Option<Arc<Tls>>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    rooms: BTreeMap<String, RoomState>,
    /// Non-input messages sent while disconnected, in order.
    buffer: VecDeque<Out>,
    requests: HashMap<u64, Reply>,
    /// Quick joins not answered yet, by request id: sent again at every `Welcome` (a
    /// resumed session ignores one it took already, a new one runs it).
    quick_joins: BTreeMap<u64, QuickAsk>,
    /// Quick joins refused for now (`RATE_LIMITED`, `UNAVAILABLE`), sent again at these
    /// times (under new ids).
    quick_join_retries: BTreeMap<u64, Instant>,
    /// Leaves not answered yet (room, by request id): sent again after a resume (the
    /// lost connection may not have delivered them; one that did is answered
    /// `NOT_A_MEMBER`, taken as its answer).
    leaves: BTreeMap<u64, String>,
    /// Of those, the ones sent again at this session's last resume: a
    /// `NOT_A_MEMBER` for one is its answer, even after the first one's `Left`
    /// came with the resume's messages sent again.
    resent_leaves: HashSet<u64>,
    /// The token refresh not answered yet (`set_token`), and when to send it again
    /// if the relay refused it for now.
    refresh: Option<Refresh>,
    next_request: u64,
    /// The resume token of the last session (at first, home only, the one an earlier
    /// process stored: `ClientConfig::resume_token`).
    session: Option<String>,
    /// Home only: the client took over an earlier process's session
    /// (`ClientConfig::resume_token`), whose rooms, requests and message numbers it
    /// learns from the relay (see `Driver::took_resumed_room`).
    inherited: bool,
    /// The first request id this driver gives (see `Driver::issued`).
    first_request: u64,
    /// The last numbered server message received in this session (see
    /// `ServerEnvelope.first_seq`): reported when resuming and in every ping.
    received: Received,
    /// The number of the last event written in this session (events are numbered,
    /// see `ClientEnvelope.first_event_seq`).
    events_sent: u64,
    /// Events written and not yet acknowledged (`Pong.events_received`), with their
    /// numbers: sent again after a reconnect, as the connection that took them may
    /// have died first. At most `buffer_limit`.
    events_unacked: VecDeque<(u64, proto::SendEvent)>,
    connected_before: bool,
    /// When a full snapshot was last requested, per room.
    resync_asked: HashMap<String, Instant>,
    /// Messages waiting to be sent on the live connection, paced to the server's
    /// announced rate limits so that a replay after a reconnect is never refused.
    queue: VecDeque<Out>,
    pacer: TokenBucket,
    /// The same for bytes: the server limits both. Its burst holds the largest
    /// envelope, so every message is charged its full size.
    byte_pacer: TokenBucket,
    /// Most messages per envelope (the server's burst).
    max_batch: u64,
    /// Most bytes of messages per envelope: the server's `max_message_bytes` less an
    /// eighth, left for the envelope's framing and the acks that ride along.
    max_batch_bytes: usize,
    rng: fastrand::Rng,
    routing: Routing,
    /// URLs this connection lost or could not reach, and when: a redirect there soon
    /// after names a node that died, until its leases lapse.
    unreachable: HashMap<String, Instant>,
    /// The URLs of the configured `targets` (the others came in `GoingAway`s).
    configured: Vec<String>,
    /// The current connection: when its `Welcome` came, whether a state frame was
    /// applied on it, whether it presented a resume token, and whether it has been
    /// told `GoingAway` (acted on once).
    welcomed_at: Option<Instant>,
    played: bool,
    presented_resume: bool,
    going_away_seen: bool,
    /// The URL of the connection being made or served (`GoingAway` changes the next
    /// one's before this one ends).
    connection_url: String,
    /// When this connection's last state frame arrived.
    frame_at: Option<Instant>,
    /// This connection's share of `Stats::queued`.
    queued_reported: usize,
}

/// A connection that ends sooner than this after its `Welcome` (or before one), and
/// on which no state frame was applied, is a failed attempt: the backoff grows and
/// the client gives up after `Backoff::max_attempts` of them in a row, against a
/// relay that accepts and then closes at once as against one that cannot be reached.
/// (A connection that played, even briefly, was a healthy one: a rolling restart
/// may close a few such in a row.)
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// State frames that stopped for this long on a connection that was receiving them
/// are a stall: the client pings at once (see `ClientConfig::stall_timeout`).
const STALL_AFTER: Duration = Duration::from_secs(1);

/// A numbered message more than this far above the last one received is not a gap a
/// relay can make (it keeps far fewer for a resume, see PROTOCOL.md): the connection
/// is dropped and a new session started.
const MAX_MESSAGE_GAP: u64 = 1 << 16;

/// The highest number an earlier process's session is taken to be at (as for inputs,
/// 2^53).
const MAX_FIRST_MESSAGE: u64 = 1 << 53;

/// How long a URL this connection lost counts as a dead node's (redirects there are
/// retried rather than followed): longer than a room lease, by default 6 s.
pub(crate) const UNREACHABLE_FOR: Duration = Duration::from_secs(20);

/// How long a close waits for the pacer to let out what it holds (see
/// `Driver::send_queued`), and how often it looks.
const CLOSE_SENDS_FOR: Duration = Duration::from_secs(1);
const PACE_STEP: Duration = Duration::from_millis(10);

pub(crate) async fn run(
    config: ClientConfig,
    target: Target,
    tls: Option<Arc<Tls>>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    routing: Routing,
) {
    // Parsed (and checked) by `Client::connect` already.
    let fallbacks = config.fallback_urls.iter().filter_map(|url| Target::parse(url).ok());
    let targets: Vec<Target> = std::iter::once(target).chain(fallbacks).collect();
    let mut d = Driver {
        routing,
        config,
        current: 0,
        tls,
        commands,
        events,
        shared,
        rooms: BTreeMap::new(),
        buffer: VecDeque::new(),
        requests: HashMap::new(),
        quick_joins: BTreeMap::new(),
        quick_join_retries: BTreeMap::new(),
        leaves: BTreeMap::new(),
        resent_leaves: HashSet::new(),
        refresh: None,
        next_request: FIRST_REQUEST_ID - 1,
        first_request: FIRST_REQUEST_ID,
        inherited: false,
        session: None,
        received: Received::default(),
        events_sent: 0,
        events_unacked: VecDeque::new(),
        connected_before: false,
        resync_asked: HashMap::new(),
        queue: VecDeque::new(),
        pacer: TokenBucket::new(40.0, 80.0, std::time::Instant::now()),
        byte_pacer: TokenBucket::new(0.8 * 65_536.0, 65_536.0, std::time::Instant::now()),
        max_batch: 80,
        max_batch_bytes: batch_bytes(16 * 1024),
        rng: fastrand::Rng::new(),
        unreachable: HashMap::new(),
        configured: targets.iter().map(|t| t.url.clone()).collect(),
        targets,
        welcomed_at: None,
        played: false,
        presented_resume: false,
        going_away_seen: false,
        connection_url: String::new(),
        frame_at: None,
        queued_reported: 0,
    };
    if let Some(token) = d.config.resume_token.clone().filter(|_| d.routing.home) {
        *d.shared.resume_token.lock() = Some(token.clone());
        d.session = Some(token);
        d.inherited = true;
        d.received.forget();
        // Request ids of their own: the session may still answer, or remember, the
        // earlier process's (quick joins are run once per id).
        d.first_request = FIRST_REQUEST_ID + (fastrand::u64(1..1 << 32) << 16);
        d.next_request = d.first_request - 1;
    }
    d.reconnecting().await;
    d.report_queued(0);
    // Home stopped (it gave up, or the client closed): the connections to other
    // nodes stop with it, as their rooms could not go home any more.
    if d.routing.home
        && let Some(routes) = d.routing.routes.upgrade()
    {
        for to in routes.close_all() {
            let (done, _) = oneshot::channel();
            let _ = to.send(Command::Close(done));
        }
    }
}

impl Driver {
    /// Connects, serves and reconnects until the client stops or gives up.
    async fn reconnecting(&mut self) {
        let mut attempt = 0u32;
        // Whether an attempt of this run asked the node (a token source that failed
        // did not ask it).
        let mut asked = false;
        loop {
            let closing = self.shared.clone();
            let connected = tokio::select! {
                biased;
                () = closing.closing.cancelled() => return,
                connected = self.connect() => connected,
            };
            asked |= !matches!(connected, Err(NotConnected::NoToken(_)));
            let reason = match connected {
                Ok(link) => {
                    self.unreachable.remove(&self.targets[self.current].url);
                    let end = self.serve(link).await;
                    self.report_queued(self.queue.len());
                    if self.played || self.welcomed_at.is_some_and(|at| at.elapsed() >= STABLE_AFTER) {
                        (attempt, asked) = (0, false);
                    }
                    match end {
                        End::Stop | End::CloseAndStop => return,
                        End::Reconnect { now: true, .. } => continue,
                        // Closed before its `Welcome` (1013: the session's node is still
                        // alive, say): a failed attempt at that URL, and the next tries the
                        // next one (back towards the session's own node).
                        End::Reconnect { reason, unreached, .. } if self.welcomed_at.is_none() => {
                            self.failed_at_current(&reason, unreached)
                        }
                        End::Reconnect { reason, .. } => reason,
                    }
                }
                // The node was not asked: the next attempt goes to the same URL.
                Err(NotConnected::NoToken(reason)) => reason,
                Err(NotConnected::Failed(failure)) if failure.fatal => {
                    self.give_up(attempt + 1, failure.reason, true).await;
                    return;
                }
                Err(NotConnected::Failed(failure)) => self.failed_at_current(&failure.reason, failure.unreached),
            };
            attempt += 1;
            if !self.config.backoff.allows(attempt) {
                self.give_up(attempt, reason, asked).await;
                return;
            }
            let delay = self.config.backoff.delay(attempt, &mut self.rng);
            self.emit(Event::Reconnecting { attempt, delay, reason }).await;
            if !self.wait_offline(delay).await {
                return;
            }
        }
    }

    /// Queues a ping, unless one waits in the send queue already: behind a backlog
    /// the pacer holds back, pings would pile up (one per interval), each costing a
    /// message of the rate limit when it goes. Stamped again as it is written, so the
    /// round-trip time does not count the wait.
    fn queue_ping(&mut self) {
        if !self.queue.iter().any(|m| matches!(m, Out::Ping(_))) {
            // Stamped now too, so that the pacer counts the size it will have.
            self.queue.push_back(Out::Ping(proto::Ping {
                nonce: 0,
                sent_time_us: unix_micros(),
                received_seq: self.received.last(),
            }));
        }
    }

    /// Keeps `Stats::queued` (every connection's messages waiting for the pacer)
    /// up to date with this connection's `queued`.
    fn report_queued(&mut self, queued: usize) {
        if queued != self.queued_reported {
            // The difference, either way (the atomic's addition wraps).
            let change = (queued as u64).wrapping_sub(self.queued_reported as u64);
            self.shared.stats.queued.fetch_add(change, Ordering::Relaxed);
            self.queued_reported = queued;
        }
    }
}

impl Driver {
    /// An attempt at the current URL failed: the next attempt tries the next node
    /// (home only: a node connection has no others, and gives its rooms back instead).
    /// A node that could not be reached (`unreached`: no connection, or one lost
    /// without a word) is marked unreachable: a redirect there soon after names a
    /// node that died. One that answered (closed the connection itself, as a live node
    /// does with 1013 while the session's own node lives, or refused the upgrade with
    /// an HTTP status) is not. Returns the reason, naming the URL.
    fn failed_at_current(&mut self, reason: &str, unreached: bool) -> String {
        let url = &self.targets[self.current].url;
        if unreached {
            self.unreachable.insert(url.clone(), Instant::now());
        } else {
            self.unreachable.remove(url);
        }
        let reason = format!("{url}: {reason}");
        self.current = (self.current + 1) % self.targets.len();
        reason
    }

    async fn emit(&self, event: Event) {
        // A client being closed may have stopped reading its events (it awaits
        // `close()` in its event loop): an event that does not fit then is dropped
        // rather than hold the close up.
        tokio::select! {
            biased;
            _ = self.events.send(event) => {}
            () = self.shared.closing.cancelled() => {}
        }
    }

    async fn connect(&mut self) -> Result<Link, NotConnected> {
        // An earlier process's session: what it received is not known here.
        let resume = self.session.as_ref().map(|token| link::Resume {
            token,
            received: self.received.known(),
        });
        (self.welcomed_at, self.played) = (None, false);
        (self.presented_resume, self.going_away_seen) = (resume.is_some(), false);
        self.connection_url.clone_from(&self.targets[self.current].url);
        if let Some(source) = &self.config.token_source {
            let fetched = tokio::time::timeout(self.config.connect_timeout, source.fetch()).await;
            let fetched = fetched.unwrap_or(Err("no token in time".into()));
            self.config.token = Some(fetched.map_err(|e| NotConnected::NoToken(format!("token source: {e}")))?);
        }
        let presented = link::Presented {
            token: self.config.token.as_deref(),
            resume,
            client_id: &self.shared.client_id,
        };
        let connecting = link::connect(
            &self.targets[self.current],
            self.tls.as_deref(),
            presented,
            self.config.quiet_timeout,
            self.config.quic_endpoint.as_ref(),
        );
        tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    reason: format!("no answer within {:?}", self.config.connect_timeout),
                    fatal: false,
                    unreached: true,
                })
            })
            .map_err(NotConnected::Failed)
    }

    /// Handles commands while waiting to reconnect. Returns false if the client
    /// should stop.
    async fn wait_offline(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                command = self.commands.recv() => match command {
                    None | Some(Command::Close(_)) => return false,
                    Some(command) => {
                        if let Some(out) = self.unless_queue_full(command, false).await.and_then(|c| self.command(c)) {
                            self.buffer_offline(out);
                        }
                    }
                },
            }
        }
    }

    fn buffer_offline(&mut self, out: Out) {
        // Joins and inputs are restored from `rooms` (joins, unacknowledged inputs)
        // when the connection is up; buffering them too would send them twice.
        if matches!(out, Out::Join(_) | Out::Input(_)) {
            return;
        }
        // Events and requests beyond `buffer_limit` were refused (see
        // `unless_queue_full`); leaves, quick joins and token refreshes, a few per room,
        // are never dropped.
        self.buffer.push_back(out);
    }

    /// Applies a command to the local state; returns the message to send, if any.
    /// Inputs for a room whose join this session has not had answered are not
    /// returned: they are sent from `unacked` at its `Joined`.
    fn command(&mut self, command: Command) -> Option<Out> {
        match command {
            Command::Join {
                room,
                room_type,
                carried,
            } => {
                // A leave of the room before this join is not sent again after a
                // resume: the join follows it on the connection (arriving after it, or
                // lost with it), and a leave sent again would undo the join.
                self.leaves.retain(|_, left| *left != room);
                let state = self
                    .rooms
                    .entry(room.clone())
                    .or_insert_with(|| RoomState::new(&room_type));
                state.next_seq = state.next_seq.max(carried.next_seq);
                state.sent_upto = state.sent_upto.max(carried.sent_upto);
                // Numbered by the handle, which goes on above what this room took along.
                self.shared.inputs_above(&room, state.next_seq);
                if !carried.seat.is_empty() {
                    state.seat = carried.seat;
                }
                if carried.create.is_some() {
                    state.create = carried.create;
                }
                if carried.quick.is_some() {
                    state.quick = carried.quick;
                }
                let newest = state.unacked.back().map_or(0, |(seq, _)| *seq);
                state
                    .unacked
                    .extend(carried.unacked.into_iter().filter(|(seq, _)| *seq > newest));
                state.held_events.extend(carried.events);
                Some(self.join_message(&room, &room_type))
            }
            Command::QuickJoin(mut ask) => {
                let quick = &mut ask.message;
                quick.request_id = self.request_id();
                quick.member_data = self.config.member_data.clone();
                // Not a room that refused it, nor one this client is in on another node.
                quick.exclude = (ask.full_rooms.iter()).filter(|r| !r.is_empty()).cloned().collect();
                if let Some(routes) = self.routing.routes.upgrade() {
                    quick.exclude.extend(routes.rooms_elsewhere());
                }
                quick.exclude.truncate(proto::MAX_QUICK_JOIN_EXCLUDED);
                // The last try takes a room of the node asked (or a new one there):
                // rooms elsewhere that keep changing cannot refuse every try.
                quick.local_only = ask.full_rooms.len() >= QUICK_JOIN_FULL_TRIES;
                let out = Out::QuickJoin(quick.clone());
                self.quick_joins.insert(quick.request_id, ask);
                Some(out)
            }
            Command::Leave { room } => {
                self.shared.forget_room(&room);
                // A room this client is not in (never joined, or its join refused):
                // nothing to ask the server, which would only answer `NotAMember`.
                // Unless the session is an earlier process's: it may be in rooms this
                // client has not learnt of yet (their `Joined` comes after the resume).
                if self.rooms.remove(&room).is_none() && !self.inherited {
                    return None;
                }
                let request_id = self.request_id();
                self.leaves.insert(request_id, room.clone());
                Some(Out::Leave(proto::LeaveRoom { request_id, room }))
            }
            Command::Input { room, seq, payload } => {
                let limit = self.config.unacked_input_limit;
                let state = self.rooms.get_mut(&room)?;
                // Numbered by the handle; one numbered just before a join's answer
                // raised the numbering above it goes above it too.
                state.next_seq = if seq > state.next_seq {
                    seq
                } else {
                    self.shared.inputs_above(&room, state.next_seq + 1);
                    state.next_seq + 1
                };
                if state.unacked.len() >= limit {
                    state.unacked.pop_front();
                }
                state.unacked.push_back((state.next_seq, payload.clone()));
                // Until this session's join is answered, inputs wait (sent at `Joined`).
                state.joined.then(|| {
                    state.sent_upto = state.next_seq;
                    Out::Input(proto::Input {
                        room,
                        seq: state.next_seq,
                        payload: Some(payload),
                    })
                })
            }
            Command::Event(event) => self.hold_until_joined(event).map(Out::Event),
            Command::Request { kind, reply } => {
                let request_id = self.request_id();
                self.drop_abandoned_requests();
                self.requests.insert(request_id, reply);
                Some(Out::Request(proto::Request {
                    request_id,
                    kind: Some(kind),
                }))
            }
            Command::SetToken(token) => {
                self.config.token = Some(token);
                Some(self.refresh_message())
            }
            Command::DropConnection | Command::Close(_) => None,
        }
    }

    /// Keeps an event for a room whose join is not answered yet (sent at `Joined`);
    /// gives any other back, to be sent.
    fn hold_until_joined(&mut self, event: proto::SendEvent) -> Option<proto::SendEvent> {
        let limit = self.config.buffer_limit;
        match self.rooms.get_mut(&event.room).filter(|s| !s.joined) {
            Some(state) => {
                hold(&mut state.held_events, event, limit);
                None
            }
            None => Some(event),
        }
    }

    fn new_mirror(&self, schema: &Arc<Schema>) -> StateMirror {
        if self.config.mirror_contents {
            StateMirror::with_schema(schema.clone()).limit_entities(self.config.max_entities_per_room)
        } else {
            StateMirror::headers_only()
        }
    }

    /// The room gets a mirror that knows its kinds. A mirror made at a reconnect's
    /// `Welcome` for the same kinds is kept: over QUIC it may already hold (and have
    /// acknowledged) the join's full snapshot, which overtook this `Joined`.
    fn joined(&mut self, joined: &proto::Joined) {
        let Some(state) = self.rooms.get_mut(&joined.room) else {
            return; // left meanwhile
        };
        if state.joined && joined.request_id == 0 {
            // Sent again after a resume that lost messages (who is in the room, who
            // owns it): the inputs went out again at the resume already.
            state.acknowledged(joined.last_input_seq, false);
            return;
        }
        state.joined = true;
        state.retry_join_at = None;
        state.seat.clear();
        // The seat may have applied inputs already (a resume, or a seat restored from
        // a checkpoint on another node): those are done with, and new inputs are
        // numbered above them.
        state.acknowledged(joined.last_input_seq, true);
        self.shared.inputs_above(&joined.room, state.next_seq);
        // Inputs that waited for the join (the room drops what it applied already),
        // once: a `Joined` again (a join sent twice) does not queue them twice.
        let room = joined.room.as_str();
        self.queue
            .retain(|m| !matches!(m, Out::Input(input) if input.room == room));
        for (seq, payload) in &state.unacked {
            state.sent_upto = *seq;
            self.queue.push_back(Out::Input(proto::Input {
                room: joined.room.clone(),
                seq: *seq,
                payload: Some(payload.clone()),
            }));
        }
        self.queue.extend(state.held_events.drain(..).map(Out::Event));
        // A schema this client cannot use leaves the mirror without it: frames with
        // packed blocks then fail to apply and are reported as desyncs.
        let schema = Arc::new(Schema::from_proto(&joined.schema).unwrap_or_default());
        let known = state.schema.replace(schema.clone()).is_some_and(|old| old == schema);
        let mut mirrors = self.shared.mirrors.lock();
        if !known || !mirrors.contains_key(&joined.room) {
            mirrors.insert(joined.room.clone(), self.new_mirror(&schema));
        }
        self.shared.ended.lock().retain(|(room, _)| *room != joined.room);
    }

    /// Forgets a room the server removed this client from, or refused: its state,
    /// its mirror and its route (joined again, it may live elsewhere).
    fn forget_room(&mut self, room: &str) {
        self.rooms.remove(room);
        self.shared.forget_room(room);
        self.shared.inputs_open(room, false);
        if let Some(routes) = self.routing.routes.upgrade() {
            routes.left(room);
        }
    }

    /// [`Driver::forget_room`] for a room the server closed or removed this client
    /// from: its last state stays readable ([`Shared::room_ended`]).
    fn room_ended(&mut self, room: &str) {
        self.shared.room_ended(room);
        self.forget_room(room);
    }

    fn request_id(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// A refresh of the session's token with the current one (`set_token`'s), now
    /// the one waiting for its answer.
    fn refresh_message(&mut self) -> Out {
        let request_id = self.request_id();
        self.refresh = Some(Refresh {
            request_id,
            retry_at: None,
        });
        let token = self.config.token.clone().unwrap_or_default();
        Out::RefreshToken(proto::RefreshToken { request_id, token })
    }

    /// Sends the token refresh again once a refusal for now has waited its time.
    fn retry_refresh(&mut self) {
        if (self.refresh.as_ref()).is_some_and(|r| r.retry_at.is_some_and(|at| at <= Instant::now())) {
            let refresh = self.refresh_message();
            self.queue.push_back(refresh);
        }
    }

    fn join_message(&mut self, room: &str, room_type: &str) -> Out {
        let request_id = self.request_id();
        if let Some(state) = self.rooms.get_mut(room) {
            state.join_request = request_id;
            if state.first_join == 0 {
                state.first_join = request_id;
            }
        }
        let state = self.rooms.get(room);
        Out::Join(proto::JoinRoom {
            request_id,
            room: room.into(),
            room_type: room_type.into(),
            seat: state.map(|s| s.seat.clone()).unwrap_or_default(),
            create: state.and_then(|s| s.create.clone()),
            member_data: self.config.member_data.clone(),
        })
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, mut link: Link) -> End {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        let mut last_inbound = Instant::now();
        // When a stall's ping went (see `STALL_AFTER`).
        let mut probed: Option<Instant> = None;
        self.frame_at = None;
        let mut welcomed = false;
        // What the last connection had not sent yet goes out after this one's welcome:
        // leaves, events, requests and token refreshes, before what was buffered
        // offline since (joins and inputs come back from `rooms`; pings are fresh).
        let unsent: Vec<Out> = (self.queue.drain(..))
            .filter(|m| {
                !matches!(
                    m,
                    Out::Join(_) | Out::Input(_) | Out::Ping(_) | Out::Pong(_) | Out::Ack(_)
                )
            })
            .collect();
        for message in unsent.into_iter().rev() {
            self.buffer.push_front(message);
        }
        // One timer each for the connection's life: a timer made per turn of the loop
        // cost a registration in tokio's timer wheel per message. The quiet timer is
        // moved later only when it fires early (every inbound message moves the
        // deadline); the pace and retry timers are moved when their branch is on.
        let quiet_timer = tokio::time::sleep_until(last_inbound + self.config.quiet_timeout);
        let pace_timer = tokio::time::sleep_until(last_inbound);
        let retry_timer = tokio::time::sleep_until(last_inbound);
        tokio::pin!(quiet_timer, pace_timer, retry_timer);
        // Each source wakes the task through a waker of its own, and a wake-up polls
        // the sources that woke it (see `Woken`); a timer reset outside its branch is
        // marked woken, so its next poll registers it.
        let task = Woken::task().await;
        let [
            pace_woken,
            retry_woken,
            quiet_woken,
            ping_woken,
            commands_woken,
            link_woken,
        ] = std::array::from_fn(|_| Woken::new(&task));
        loop {
            self.report_queued(self.queue.len());
            let pacing = welcomed && !self.queue.is_empty();
            if pacing {
                let now = std::time::Instant::now();
                self.byte_pacer.charge(link.take_datagram_ack_bytes() as f64, now);
                // What `flush` charges for it: the acks waiting ride along.
                let next_bytes = (self.queue.front().map_or(0, |m| m.encoded_len() + MESSAGE_FRAMING)
                    + link.waiting_ack_bytes()) as f64;
                let wait = (self.pacer.wait_for_one(now)).max(self.byte_pacer.wait_for(next_bytes, now));
                pace_timer.as_mut().reset(Instant::now() + wait);
                pace_woken.set();
            }
            // Joins and quick joins refused for now (UNAVAILABLE, RATE_LIMITED, a stale
            // redirect) and a token refresh refused for now (UNAVAILABLE) are tried
            // again then.
            let refresh_at = self.refresh.as_ref().and_then(|r| r.retry_at);
            let retry = welcomed
                .then(|| {
                    (self.rooms.values().filter_map(|s| s.retry_join_at))
                        .chain(refresh_at)
                        .chain(self.quick_join_retries.values().copied())
                        .min()
                })
                .flatten();
            if let Some(at) = retry.filter(|at| *at != retry_timer.deadline()) {
                retry_timer.as_mut().reset(at);
                retry_woken.set();
            }
            let outcome = tokio::select! {
                () = pace_woken.poll(pace_timer.as_mut()), if pacing => self.flush(&mut link).await,
                () = retry_woken.poll(retry_timer.as_mut()), if retry.is_some() => {
                    self.retry_joins();
                    self.retry_quick_joins();
                    self.retry_refresh();
                    self.flush(&mut link).await
                }
                () = quiet_woken.poll(quiet_timer.as_mut()) => {
                    let now = Instant::now();
                    let quiet = last_inbound + self.config.quiet_timeout;
                    if now >= quiet {
                        return self.lost("server went quiet".into()).await;
                    }
                    let probe = probed.filter(|&at| at >= last_inbound);
                    let stalled = last_inbound + STALL_AFTER;
                    let mut outcome = Ok(());
                    let next = match probe {
                        Some(at) if now >= at + self.config.stall_timeout => {
                            let timeout = self.config.stall_timeout;
                            let reason = format!("state frames stopped and a ping got no answer within {timeout:?}");
                            return self.lost(reason).await;
                        }
                        Some(at) => at + self.config.stall_timeout,
                        // Frames were arriving up to the silence: ask at once.
                        None if welcomed && self.frame_at.is_some_and(|at| at + STALL_AFTER > last_inbound) => {
                            if now >= stalled {
                                probed = Some(now);
                                self.queue_ping();
                                outcome = self.flush(&mut link).await;
                                now + self.config.stall_timeout
                            } else {
                                stalled
                            }
                        }
                        None => quiet,
                    };
                    quiet_timer.as_mut().reset(next.min(quiet));
                    outcome
                }
                _ = ping_woken.poll(ping.tick()), if welcomed => {
                    self.queue_ping();
                    self.flush(&mut link).await
                }
                command = commands_woken.poll(self.commands.recv()) => match command {
                    None => {
                        self.send_queued(&mut link).await;
                        link.close().await;
                        return End::Stop;
                    }
                    Some(Command::Close(done)) => {
                        self.send_queued(&mut link).await;
                        link.close().await;
                        // `close().await` returns now.
                        drop(done);
                        return End::Stop;
                    }
                    // Told as a network failure is (the node was reached, though).
                    Some(Command::DropConnection) => {
                        return self.disconnected("connection dropped by the application".into(), false).await;
                    }
                    Some(command) => match self.unless_queue_full(command, welcomed).await.and_then(|c| self.command(c)) {
                        Some(out) if welcomed => {
                            self.queue.push_back(out);
                            self.flush(&mut link).await
                        }
                        Some(out) => { self.buffer_offline(out); Ok(()) }
                        None => Ok(()),
                    },
                },
                received = link_woken.poll(link.recv()) => {
                    last_inbound = Instant::now();
                    let outcome = match self.inbound(received, &mut link, &mut welcomed).await {
                        Ok(None) => Ok(()),
                        Ok(Some(End::CloseAndStop)) => {
                            link.close().await;
                            return End::Stop;
                        }
                        Ok(Some(end)) => return end,
                        Err(e) => Err(e),
                    };
                    // Frames arriving: the quiet timer comes a stall's length after
                    // them (moved here once; it moves itself on when it fires).
                    let stall_check = last_inbound + STALL_AFTER;
                    if self.frame_at.is_some_and(|at| at >= last_inbound) && quiet_timer.deadline() > stall_check {
                        quiet_timer.as_mut().reset(stall_check);
                        quiet_woken.set();
                    }
                    outcome
                }
            };
            if let Err(e) = outcome {
                // A write that failed on the server's close reports the close.
                if let Some((code, reason)) = link.closed_by_server() {
                    return self.closed_by_server(code, reason).await;
                }
                return self.lost(e.to_string()).await;
            }
        }
    }

    /// This connection cannot come back. Home: the client is finished. Another
    /// node: its rooms are joined again through home.
    async fn give_up(&mut self, attempts: u32, reason: String, asked: bool) {
        if self.routing.home {
            return self.emit(Event::GaveUp { attempts, reason }).await;
        }
        tracing::info!(url = %self.config.url, "node unreachable ({reason}); joining its rooms again through the first URL");
        // A node never asked (its token source failed) is not marked lost.
        self.rooms_home(asked);
    }

    /// A connection to another node than home: its rooms are joined again through
    /// home (see `Routes::give_back`; `lost`: the node could not be reached).
    fn rooms_home(&mut self, lost: bool) {
        let Some(routes) = self.routing.routes.upgrade() else {
            return;
        };
        let mut rooms = std::mem::take(&mut self.rooms);
        // Events this node may not have taken go with their rooms (at least once).
        let limit = self.config.buffer_limit;
        // Then those not sent yet: waiting for the pacer, or sent while offline.
        let unacked = std::mem::take(&mut self.events_unacked)
            .into_iter()
            .map(|(_, event)| event);
        let unsent = (std::mem::take(&mut self.queue).into_iter())
            .chain(std::mem::take(&mut self.buffer))
            .filter_map(|out| match out {
                Out::Event(event) => Some(event),
                _ => None,
            });
        for event in unacked.chain(unsent) {
            if let Some(state) = rooms.get_mut(&event.room) {
                hold(&mut state.held_events, event, limit);
            }
        }
        let rooms = (rooms.into_iter())
            .map(|(room, state)| {
                // Told again when home's join is answered.
                self.shared.forget_room(&room);
                (room, state.room_type.clone(), state.carried(String::new()))
            })
            .collect();
        routes.give_back(&self.config.url, rooms, &mut self.commands, lost);
    }

    /// The server sent what no relay sends: the connection goes (as lost), and so does
    /// the session (a new one follows, its rooms joined again).
    async fn broken_by_server(&mut self, reason: String) -> End {
        tracing::warn!(url = %self.connection_url, "{reason}; starting a new session");
        self.session = None;
        self.lost(reason).await
    }

    async fn lost(&mut self, reason: String) -> End {
        self.disconnected(reason, true).await
    }

    /// The connection ended without a close from the server: told, and reconnected.
    async fn disconnected(&mut self, reason: String, unreached: bool) -> End {
        self.emit(Event::Disconnected {
            code: 1006,
            reason: reason.clone(),
            will_reconnect: true,
            url: self.connection_url.clone(),
            redirected: !self.routing.home,
        })
        .await;
        End::Reconnect {
            reason,
            now: false,
            unreached,
        }
    }

    async fn inbound(
        &mut self,
        received: Incoming,
        link: &mut Link,
        welcomed: &mut bool,
    ) -> Result<Option<End>, Broken> {
        let bytes = match received {
            Incoming::Envelope(bytes) => bytes,
            Incoming::Closed { code, reason } => {
                link.answer_close().await;
                return Ok(Some(self.closed_by_server(code, reason).await));
            }
            Incoming::Lost(reason) => return Ok(Some(self.lost(reason).await)),
            Incoming::Nothing => return Ok(None),
        };
        let stats = self.shared.clone();
        let stats = &stats.stats;
        stats.messages_in.fetch_add(1, Ordering::Relaxed);
        stats.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let received_us = unix_micros();
        let envelope = match decode_server(&bytes) {
            Ok(envelope) => envelope,
            Err(e) => return Ok(Some(self.lost(format!("undecodable server message: {e}")).await)),
        };
        // Every message but state frames and the `Welcome` is numbered from `first_seq`
        // (0: none is): skip what a resume sent again, and report a gap.
        let mut seq = envelope.first_seq;
        // The answer to this envelope's last ping.
        let mut pong: Option<proto::Pong> = None;
        for message in envelope.messages {
            // A kind this version does not know is numbered too (only frames and
            // welcomes are not).
            let numbered = !matches!(message.kind, Some(In::State(_) | In::Welcome(_)));
            if seq != 0 && numbered {
                let n = seq;
                // Numbering unknown (an earlier process's session): from a number a
                // session reaches.
                let known = self.received.known();
                if n > known.map_or(MAX_FIRST_MESSAGE, |last| last.saturating_add(MAX_MESSAGE_GAP)) {
                    let after = known.map_or_else(|| "first of the session".into(), |last| format!("after {last}"));
                    return Ok(Some(
                        self.broken_by_server(format!("message number {n} {after}: more than a relay can skip"))
                            .await,
                    ));
                }
                seq += 1;
                match self.received.arrive(n) {
                    Arrival::Repeat => {
                        stats.messages_repeated.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Arrival::New { missing: 0 } => {}
                    Arrival::New { missing } => {
                        stats.messages_lost.fetch_add(missing, Ordering::Relaxed);
                        self.emit(Event::MessagesLost { count: missing }).await;
                    }
                }
            }
            let Some(kind) = message.kind else { continue };
            match kind {
                // A node connection (a redirect) that reconnected to a new session
                // there (the node restarted, say) holds none of its seats, and would
                // join again as that session, not as home's member: its rooms go
                // home, which joins them again as the member that had the seats.
                // Not something a relay does: each connection has one.
                In::Welcome(_) if *welcomed => {
                    return Ok(Some(
                        self.broken_by_server("a second Welcome on one connection".into()).await,
                    ));
                }
                In::Welcome(welcome)
                    if !welcome.resumed && !self.routing.home && self.connected_before && !self.rooms.is_empty() =>
                {
                    tracing::info!(url = %self.config.url, "a new session on this node; joining its rooms again through the first URL");
                    self.rooms_home(false);
                    return Ok(Some(End::CloseAndStop));
                }
                // A relay of another protocol version computes other checksums (every
                // frame would be a desync): said once, not retried. (0: not announced.)
                In::Welcome(welcome)
                    if welcome.protocol_version != 0 && welcome.protocol_version != proto::PROTOCOL_VERSION =>
                {
                    let reason = format!(
                        "the relay speaks protocol version {}, this client version {}: upgrade the older one",
                        welcome.protocol_version,
                        proto::PROTOCOL_VERSION
                    );
                    self.give_up(0, reason, true).await;
                    return Ok(Some(End::CloseAndStop));
                }
                In::Welcome(welcome) => {
                    *welcomed = true;
                    self.welcomed(welcome, link).await?;
                }
                // Over QUIC a state datagram can overtake the `Welcome` on the control
                // stream; the mirrors are reset at the `Welcome`, so an earlier frame
                // must not be applied (or acknowledged). The server repeats the full
                // snapshot until one is acknowledged.
                In::State(_) if !*welcomed => {}
                In::State(frame) => {
                    self.frame_at = Some(Instant::now());
                    self.state(frame, received_us, link).await?
                }
                // The answer to a join this client made before the room was left and
                // joined again (the server answers a join before a leave that follows
                // it): that membership ended; the new join's answer (or refusal)
                // follows. (An earlier process's join is answered once, and the
                // session is in the room then.)
                In::Joined(joined)
                    if self.issued(joined.request_id)
                        && (self.rooms.get(&joined.room)).is_some_and(|s| joined.request_id < s.first_join) => {}
                In::Joined(joined) => {
                    self.took_quick_join(joined.request_id, &joined.room, false);
                    if let Some(state) = self.rooms.get_mut(&joined.room) {
                        state.quick = None;
                    }
                    self.took_resumed_room(&joined);
                    self.joined(&joined);
                    if self.rooms.contains_key(&joined.room) {
                        let told = RoomTold {
                            owner: joined.owner,
                            listing: proto::RoomUpdated {
                                room: joined.room.clone(),
                                metadata: joined.metadata.clone(),
                                locked: joined.locked,
                            },
                        };
                        self.shared.told.lock().insert(joined.room.clone(), told);
                    }
                    if let Some(routes) = self.routing.routes.upgrade() {
                        routes.joined(&joined.room);
                    }
                    self.emit(Event::Joined(joined)).await;
                }
                In::Redirect(redirect) => {
                    self.took_quick_join(redirect.request_id, &redirect.room, true);
                    self.redirected(redirect).await
                }
                In::Left(left) => {
                    self.leaves.remove(&left.request_id);
                    // The server removed us (the room closed, the game removed us),
                    // unless a join of the room waits for its answer: then this ended
                    // the membership before it, and the join's answer follows.
                    let joining = self.rooms.get(&left.room).is_some_and(|s| !s.joined);
                    if left.reason != 0 && !joining {
                        self.room_ended(&left.room);
                    }
                    self.emit(Event::Left(left)).await;
                }
                In::Presence(p) => {
                    if p.change == proto::PresenceChange::Owner as i32
                        && let Some(member) = &p.member
                        && let Some(told) = self.shared.told.lock().get_mut(&p.room)
                    {
                        told.owner = member.member_id;
                    }
                    self.emit(Event::Presence(p)).await
                }
                In::RoomUpdated(update) => {
                    if let Some(told) = self.shared.told.lock().get_mut(&update.room) {
                        told.listing = update.clone();
                    }
                    self.emit(Event::RoomUpdated(update)).await
                }
                In::Event(e) => self.emit(Event::RoomEvent(e)).await,
                In::Response(response) => {
                    if let Some(reply) = self.requests.remove(&response.request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
                In::Error(error) => {
                    // Refused for now: the relay's node or directory is away, or the
                    // session asks too often (it says when to ask again).
                    let for_now = [proto::ErrorCode::Unavailable, proto::ErrorCode::RateLimited]
                        .iter()
                        .any(|&code| error.code == code as i32);
                    let wait = Duration::from_millis(u64::from(error.retry_after_ms));
                    let retry_at = Instant::now() + wait.clamp(Duration::from_millis(100), Duration::from_secs(5));
                    // A quick join refused so is sent again then, as a new one (the
                    // session remembers the ids of those that ran, and one that ran
                    // before it found the directory away would be ignored).
                    let full = error.code == proto::ErrorCode::RoomFull as i32;
                    if let Some(mut quick) = self.quick_joins.remove(&error.request_id) {
                        if for_now {
                            quick.message.request_id = self.request_id();
                            self.quick_join_retries.insert(quick.message.request_id, retry_at);
                            self.quick_joins.insert(quick.message.request_id, quick);
                        } else if full && self.quick_join_again(quick, &error.room) {
                            continue; // its pick filled before the join
                        }
                    }
                    let not_a_member = error.code == proto::ErrorCode::NotAMember as i32;
                    // A leave sent again after a resume that the lost connection had
                    // delivered: it was done.
                    let leave = self.leaves.remove(&error.request_id).is_some();
                    if not_a_member && (leave || self.resent_leaves.remove(&error.request_id)) {
                        continue;
                    }
                    // A room this client is in by its last `Joined` that the relay says
                    // it is not in: the relay removed it, and the `Left` saying so was
                    // lost (messages lost across a resume, see PROTOCOL.md). Told as
                    // that `Left` (the room's last state kept readable, as after one).
                    if not_a_member
                        && self.rooms.get(&error.room).is_some_and(|s| s.joined)
                        && !self.leaves.values().any(|room| *room == error.room)
                    {
                        self.room_ended(&error.room);
                        let left = proto::Left {
                            request_id: 0,
                            room: error.room.clone(),
                            reason: error.code,
                            message: "the relay no longer has this member in the room (its Left was lost)".into(),
                        };
                        self.emit(Event::Left(left)).await;
                    }
                    if let Some(refresh) = self.refresh.as_mut().filter(|r| r.request_id == error.request_id) {
                        // A key the relay does not hold yet (its identity provider's
                        // new one), or refreshes too often: send it again when told.
                        // Refused for good: not.
                        if for_now {
                            let (least, most) = REFRESH_RETRY_WAIT;
                            refresh.retry_at = Some(Instant::now() + wait.clamp(least, most));
                        } else {
                            self.refresh = None;
                        }
                    }
                    if let Some(reply) = self.requests.remove(&error.request_id) {
                        let _ = reply.send(Err(error.clone()));
                    }
                    // The room's node is away for now, or this member left the room a
                    // moment ago (one full snapshot per second): the join is tried again.
                    if for_now && let Some(state) = self.rooms.get_mut(&error.room).filter(|s| !s.joined) {
                        state.retry_join_at = Some(retry_at);
                    }
                    // A join sent again (after a resume) while the session's first one is
                    // still being answered: that answer follows, nothing went wrong.
                    let joining = self.rooms.get(&error.room).is_some_and(|s| !s.joined);
                    if joining && error.code == proto::ErrorCode::AlreadyMember as i32 {
                        tracing::debug!(room = %error.room, "join already being answered");
                        continue;
                    }
                    // Any other refusal of the join (an unknown room type, a full room, a
                    // token that does not allow it) is final: the room is forgotten with
                    // what waited for it, and not joined again at the next connection.
                    // (Not an error for another message about the room meanwhile.)
                    let refused =
                        (self.rooms.get(&error.room)).is_some_and(|s| !s.joined && s.join_request == error.request_id);
                    if refused && !for_now {
                        let quick = self.rooms.get_mut(&error.room).and_then(|s| s.quick.take());
                        self.forget_room(&error.room);
                        // A room a quick join picked on another node, refused there.
                        if let Some(quick) = quick.filter(|_| full)
                            && self.quick_join_again(quick, &error.room)
                        {
                            continue;
                        }
                    }
                    self.emit(Event::Error(error)).await;
                }
                In::Pong(pong) => {
                    let rtt = received_us.saturating_sub(pong.ping_sent_time_us);
                    stats.rtt_us.store(rtt.max(1), Ordering::Relaxed);
                    self.events_acknowledged(pong.events_received);
                }
                In::Ping(ping) => {
                    pong = Some(proto::Pong {
                        nonce: ping.nonce,
                        ping_sent_time_us: ping.sent_time_us,
                        time_us: received_us,
                        events_received: 0,
                    });
                }
                In::TokenRefreshed(refreshed) => {
                    if self
                        .refresh
                        .as_ref()
                        .is_some_and(|r| r.request_id == refreshed.request_id)
                    {
                        self.refresh = None;
                    }
                }
                In::GoingAway(away) => self.going_away(&away.url),
            }
        }
        // One answer waits at most: the newest ping's replaces one still queued (the
        // queue is searched once per envelope, however many pings it held), and goes
        // once the envelope is read.
        if let Some(pong) = pong {
            match self.queue.iter_mut().rev().find(|m| matches!(m, Out::Pong(_))) {
                Some(waiting) => *waiting = Out::Pong(pong),
                None => self.queue.push_back(Out::Pong(pong)),
            }
            self.flush(link).await?;
        }
        Ok(None)
    }

    /// The answer to a quick join names its room: from now on the room is one of this
    /// client's like any other (joined again by id after a reconnect).
    /// A `Redirect` keeps the quick join with the room, until the room's node answers
    /// the join (see [`QuickAsk`]).
    fn took_quick_join(&mut self, request_id: u64, room: &str, redirected: bool) {
        if let Some(quick) = self.quick_joins.remove(&request_id) {
            self.take_room(room, &quick.message.room_type);
            if let Some(state) = self.rooms.get_mut(room).filter(|_| redirected) {
                state.quick = Some(quick);
            }
        }
    }

    /// A quick join refused `ROOM_FULL` by `room`: sent again, over home, leaving the
    /// room out, unless it was refused so [`QUICK_JOIN_FULL_TRIES`] times already
    /// (then false: the refusal is its answer).
    fn quick_join_again(&mut self, mut quick: QuickAsk, room: &str) -> bool {
        if quick.full_rooms.len() >= QUICK_JOIN_FULL_TRIES {
            return false;
        }
        quick.full_rooms.push(room.to_string());
        tracing::debug!(%room, "a quick join's room refused it: quick-joining again");
        match self.routing.routes.upgrade() {
            Some(routes) if !self.routing.home => routes.send(Command::QuickJoin(quick)),
            _ => {
                if let Some(out) = self.command(Command::QuickJoin(quick)) {
                    self.queue.push_back(out);
                }
            }
        }
        true
    }

    /// A `Joined` this client did not ask for (sent again at a resume, `request_id`
    /// 0, or answering a join the session made before) for a room it does not know
    /// and is not leaving: the session was an earlier process's
    /// (`ClientConfig::resume_token`), and the room is one of this client's now, its
    /// inputs numbered above the seat's last.
    fn took_resumed_room(&mut self, joined: &proto::Joined) {
        let leaving = self.leaves.values().any(|room| *room == joined.room);
        if !self.issued(joined.request_id) && !leaving && !self.rooms.contains_key(&joined.room) {
            // Before the room's inputs open (`Driver::joined` sets this too, after):
            // no input is numbered at or below the seat's last meanwhile.
            self.shared.inputs_above(&joined.room, joined.last_input_seq);
            self.take_room(&joined.room, &joined.room_type);
        }
    }

    fn take_room(&mut self, room: &str, room_type: &str) {
        self.rooms
            .entry(room.to_string())
            .or_insert_with(|| RoomState::new(room_type));
        self.shared.inputs_open(room, true);
    }

    /// Whether `request_id` is one this driver gave.
    fn issued(&self, request_id: u64) -> bool {
        (self.first_request..=self.next_request).contains(&request_id)
    }

    /// Joins again the rooms whose join was refused for now, once their wait is over.
    fn retry_joins(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = (self.rooms.iter_mut())
            .filter(|(_, s)| s.retry_join_at.is_some_and(|at| at <= now))
            .map(|(room, s)| {
                s.retry_join_at = None;
                (room.clone(), s.room_type.clone())
            })
            .collect();
        for (room, room_type) in due {
            let join = self.join_message(&room, &room_type);
            self.queue.push_back(join);
        }
    }

    /// Sends again the quick joins refused for now, once their wait is over.
    fn retry_quick_joins(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = (self.quick_join_retries.iter())
            .filter(|(_, at)| **at <= now)
            .map(|(&request_id, _)| request_id)
            .collect();
        for request_id in due {
            self.quick_join_retries.remove(&request_id);
            if let Some(quick) = self.quick_joins.get(&request_id) {
                self.queue.push_back(Out::QuickJoin(quick.message.clone()));
            }
        }
    }

    /// The room lives on another node: it is joined there, and forgotten here. A
    /// redirect to a node this connection lost in the last moments means the directory
    /// still names the dead node: the room stays (with its input numbering: the seat
    /// kept for this session continues it) and is joined again shortly.
    async fn redirected(&mut self, redirect: proto::Redirect) {
        let proto::Redirect {
            request_id,
            room,
            url,
            seat,
        } = redirect;
        // A node this connection failed over from, or one whose rooms came back home
        // (the directory names it until its leases lapse): the room stays here and is
        // joined again shortly.
        let lost = self
            .routing
            .routes
            .upgrade()
            .is_some_and(|routes| routes.lost_lately(&url));
        if lost || (self.unreachable.get(&url)).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR) {
            if let Some(state) = self.rooms.get_mut(&room) {
                state.retry_join_at = Some(Instant::now() + STALE_REDIRECT_WAIT);
            }
            self.shared.told.lock().remove(&room);
            return;
        }
        let Some(state) = self.rooms.remove(&room) else {
            return; // left meanwhile
        };
        self.shared.forget_room(&room);
        let room_type = state.room_type.clone();
        let followed = match self.routing.routes.upgrade() {
            Some(routes) => {
                let from = (!self.routing.home).then_some(self.config.url.as_str());
                routes.redirect(&room, &room_type, state.carried(seat), &url, from, &mut self.commands)
            }
            None => Err((proto::ErrorCode::Unavailable, "the client is closed".into())),
        };
        match followed {
            Ok(()) => self.emit(Event::Redirected { room, url }).await,
            // Not followed (too many hops, a URL refused): the join is refused for good,
            // what waited for it dropped.
            Err((code, message)) => {
                self.shared.inputs_open(&room, false);
                if let Some(routes) = self.routing.routes.upgrade() {
                    routes.left(&room);
                }
                let error = proto::Error {
                    code: code as i32,
                    message,
                    request_id,
                    room,
                    retry_after_ms: 0,
                };
                self.emit(Event::Error(error)).await;
            }
        }
    }

    /// The node is stopping (a 1001 close follows) and names a live node of its
    /// cluster: the home connection continues its session there. A connection to
    /// another node gives its rooms back home at the close instead. A URL that does not
    /// parse, or does not use TLS exactly when the current one does, is ignored; so is
    /// every `GoingAway` after a connection's first.
    fn going_away(&mut self, url: &str) {
        if std::mem::replace(&mut self.going_away_seen, true) {
            return;
        }
        let Ok(target) = Target::parse(url) else { return };
        if !self.routing.home || target.scheme.uses_tls() != self.targets[self.current].scheme.uses_tls() {
            return;
        }
        self.current = learn(&mut self.targets, self.current, &self.configured, target);
    }

    async fn closed_by_server(&mut self, code: u16, reason: String) -> End {
        use tickrelay_proto::error::CloseReason;
        let resume_failed = code == CloseReason::ResumeFailed.code();
        // The server no longer has our session (a session whose token expired is
        // over too): start a new one and rejoin.
        if resume_failed || code == CloseReason::TokenExpired.code() {
            self.session = None;
        }
        // A node other than home that stops hands its rooms back at once.
        let shutting_down = code == CloseReason::ShuttingDown.code();
        let will_reconnect = reconnect_allowed(code) && (self.routing.home || !shutting_down);
        self.emit(Event::Disconnected {
            code,
            reason: reason.clone(),
            will_reconnect,
            url: self.connection_url.clone(),
            redirected: !self.routing.home,
        })
        .await;
        if !will_reconnect {
            self.give_up(0, format!("closed by the server with {code}: {reason}"), true)
                .await;
            return End::Stop;
        }
        // At once only after a resume the server refused: a new session follows. A
        // 4504 to a connection that presented no token goes through the backoff.
        End::Reconnect {
            reason,
            now: resume_failed && self.presented_resume,
            unreached: false,
        }
    }

    /// A new connection is established: restore rooms, replay inputs, flush the
    /// buffer, in that order.
    async fn welcomed(&mut self, welcome: proto::Welcome, link: &mut Link) -> Result<(), Broken> {
        let resumed = welcome.resumed;
        if self.connected_before {
            self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            if resumed {
                self.shared.stats.resumes.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.connected_before = true;
        self.welcomed_at = Some(Instant::now());
        if !resumed {
            // A new session numbers its messages from 1 again, and is this client's
            // own.
            self.received.reset();
            self.inherited = false;
        }
        // Events the session took are done with; the rest go out again, numbered on
        // from what it took (a new session took none: every one goes out again, as
        // the old session may have relayed it or not).
        self.events_acknowledged(welcome.events_received);
        self.events_sent = welcome.events_received;
        let unacked = std::mem::take(&mut self.events_unacked);
        self.session = Some(welcome.resume_token.clone());
        if self.routing.home {
            *self.shared.resume_token.lock() = Some(welcome.resume_token.clone());
        }
        // Pace below the server's limits, with headroom for pings and for messages
        // that the network delivers bunched together (the server's bucket sees them
        // arrive at once): 80 % of the rate, half the burst.
        if let Some(limits) = &welcome.limits {
            let rate = f64::from(announced(limits.messages_per_second, DEFAULT_MESSAGES_PER_SECOND)) * 0.8;
            let burst = f64::from(announced(limits.message_burst, DEFAULT_MESSAGE_BURST)) * 0.5;
            let now = std::time::Instant::now();
            let mut pacer = TokenBucket::new(rate, burst.max(1.0), now);
            self.max_batch = burst.max(1.0) as u64;
            let max_message_bytes = announced(limits.max_message_bytes, DEFAULT_MESSAGE_BYTES).max(1024);
            self.max_batch_bytes = batch_bytes(max_message_bytes as usize);
            let mut byte_pacer = byte_pacer(limits, self.max_batch_bytes);
            if resumed {
                // The session's buckets on the server go on as they were: so do ours.
                pacer.no_fuller_than(&mut self.pacer, now);
                byte_pacer.no_fuller_than(&mut self.byte_pacer, now);
            }
            (self.pacer, self.byte_pacer) = (pacer, byte_pacer);
        }
        // Never assume deltas suffice after a reconnect: every mirror waits for a
        // full snapshot (the server sends one on resume and on join).
        self.resync_asked.clear();
        {
            // This connection's rooms only: the mirrors are shared with the client's
            // connections to other nodes.
            let mut mirrors = self.shared.mirrors.lock();
            let mut previous = self.shared.previous.lock();
            for (room, state) in &self.rooms {
                // The state the client had is read until the snapshot comes.
                if let Some(mirror) = mirrors.remove(room).filter(StateMirror::is_synced) {
                    previous.insert(room.clone(), mirror);
                }
                if let Some(schema) = &state.schema {
                    mirrors.insert(room.clone(), self.new_mirror(schema));
                }
            }
        }
        let mut out = Vec::new();
        // A new session has no seats; a resumed one has those whose join it answered.
        let mut rejoin = Vec::new();
        for (room, state) in &mut self.rooms {
            state.joined &= resumed;
            if !state.joined {
                // Joined now: a retry that waited would join it a second time.
                state.retry_join_at = None;
                rejoin.push((room.clone(), state.room_type.clone()));
            }
        }
        {
            // Their owner and listing are told again with their join's answer.
            let mut told = self.shared.told.lock();
            for (room, _) in &rejoin {
                told.remove(room);
            }
        }
        // A new session is in no room: the leaves that waited are done with (sent,
        // they would only be answered NOT_A_MEMBER). A resumed one gets again those
        // the lost connection took but perhaps did not deliver.
        if !resumed {
            self.buffer.retain(|m| !matches!(m, Out::Leave(_)));
            self.leaves.clear();
        }
        let waiting: HashSet<u64> = (self.buffer.iter())
            .filter_map(|m| match m {
                Out::Leave(leave) => Some(leave.request_id),
                Out::QuickJoin(quick) => Some(quick.request_id),
                _ => None,
            })
            .collect();
        let leaves: Vec<proto::LeaveRoom> = (self.leaves.iter())
            .filter(|(request_id, _)| !waiting.contains(request_id))
            .map(|(&request_id, room)| proto::LeaveRoom {
                request_id,
                room: room.clone(),
            })
            .collect();
        self.resent_leaves = leaves.iter().map(|leave| leave.request_id).collect();
        // (Those waiting to be sent again go now.)
        self.quick_join_retries.clear();
        let quick_joins = (self.quick_joins.values()).filter(|quick| !waiting.contains(&quick.message.request_id));
        let again: Vec<Out> = (leaves.into_iter().map(Out::Leave))
            .chain(quick_joins.map(|quick| Out::QuickJoin(quick.message.clone())))
            .collect();
        for message in again.into_iter().rev() {
            self.buffer.push_front(message);
        }
        // A room left and joined again offline is joined after the leave (sent with
        // what waited offline): before it, the leave would undo the join.
        let leaving: HashSet<String> = (self.buffer.iter())
            .filter_map(|m| match m {
                Out::Leave(leave) => Some(leave.room.clone()),
                _ => None,
            })
            .collect();
        let mut joins_after = Vec::new();
        for (room, room_type) in rejoin {
            let join = self.join_message(&room, &room_type);
            if leaving.contains(&room) {
                joins_after.push(join);
            } else {
                out.push(join);
            }
        }
        // Rooms still joined (a resumed session) get their unacknowledged inputs now;
        // the others when their join is answered.
        for (room, state) in self.rooms.iter().filter(|(_, s)| s.joined) {
            for (seq, payload) in &state.unacked {
                out.push(Out::Input(proto::Input {
                    room: room.clone(),
                    seq: *seq,
                    payload: Some(payload.clone()),
                }));
            }
        }
        // Then what waited offline. Events for rooms joined again wait for their
        // `Joined` (the room may live on another node now).
        let unacked = unacked.into_iter().map(|(_, event)| Out::Event(event));
        for message in unacked.chain(std::mem::take(&mut self.buffer)) {
            match message {
                Out::Event(event) => out.extend(self.hold_until_joined(event).map(Out::Event)),
                message => out.push(message),
            }
        }
        out.extend(joins_after);
        self.emit(Event::Connected {
            session_id: welcome.session_id,
            user_id: welcome.user_id,
            resumed,
        })
        .await;
        self.queue.extend(out);
        self.flush(link).await
    }

    async fn state(&mut self, frame: proto::StateFrame, received_us: u64, link: &mut Link) -> Result<(), Broken> {
        let applied = {
            let mut mirrors = self.shared.mirrors.lock();
            let Some(mirror) = mirrors.get_mut(&frame.room) else {
                return Ok(()); // a room we left
            };
            let (verified, synced) = (mirror.checksums_verified(), mirror.is_synced());
            // Over QUIC, frames may be lost or reordered: a frame that cannot be used
            // is skipped (the server repeats full snapshots until one is acknowledged).
            let result = if link.acknowledged() {
                mirror.apply_unordered(&frame)
            } else {
                mirror.apply(&frame).map(|()| true)
            };
            if mirror.checksums_verified() > verified {
                self.shared.stats.checksums.fetch_add(1, Ordering::Relaxed);
            }
            if !synced && mirror.is_synced() {
                self.shared.previous.lock().remove(&frame.room);
                // The next time it is out of sync (a rejoin) waits a second again.
                self.resync_asked.remove(&frame.room);
            }
            result
        };
        if let Some(state) = self.rooms.get_mut(&frame.room) {
            state.acknowledged(frame.last_input_seq, false);
        }
        match applied {
            Ok(false) => {
                self.shared.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
                // Still no snapshot after a second of deltas: ask for one.
                let unsynced = self
                    .shared
                    .mirrors
                    .lock()
                    .get(&frame.room)
                    .is_some_and(|m| !m.is_synced());
                if unsynced {
                    self.resync_if_due(&frame.room, link).await?;
                }
            }
            Ok(true) => {
                self.played = true;
                if let Some(state) = self.rooms.get_mut(&frame.room) {
                    // Acknowledge every other frame of a steady stream (the server's
                    // delta then covers one more tick), and always a full snapshot or
                    // a frame after a gap (at once), so the baseline never falls far
                    // behind; and a frame whose room still has an ack waiting for a
                    // write to ride on (a client sending no inputs).
                    let steady = frame.baseline_tick != 0 && frame.tick == state.applied_tick + 1;
                    let ack = !(steady && state.applied_acked) || link.ack_waiting(&frame.room);
                    if ack {
                        link.ack(&frame.room, frame.tick, !steady);
                    }
                    state.applied_tick = frame.tick;
                    state.applied_acked = ack;
                }
                self.shared.stats.frames.fetch_add(1, Ordering::Relaxed);
                let packed: u64 = (frame.packed.iter())
                    .filter_map(|block| packed::header(block).ok())
                    .map(|(_, added, changed)| added.saturating_add(changed))
                    .fold(0, u64::saturating_add);
                let updates = (frame.added.len() + frame.changed.len() + frame.removed.len()) as u64 + packed;
                (self.shared.stats.entity_updates).fetch_add(updates, Ordering::Relaxed);
                let event = Event::State {
                    room: frame.room,
                    tick: frame.tick,
                    full: frame.baseline_tick == 0,
                    server_time_us: frame.server_time_us,
                    received_us,
                };
                if self.events.try_send(event).is_err() {
                    self.shared.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Waiting for a snapshot: the server sends one after a join or resume; ask
            // again if it is slow to come (at most once a second).
            Err(tickrelay_proto::mirror::Desync::AwaitingSnapshot) => self.resync_if_due(&frame.room, link).await?,
            Err(error) => {
                self.shared.stats.desyncs.fetch_add(1, Ordering::Relaxed);
                self.request_resync(&frame.room, link).await?;
                self.emit(Event::Desync {
                    room: frame.room,
                    error,
                })
                .await;
            }
        }
        Ok(())
    }
}

impl Driver {
    /// [`Driver::request_resync`], but the first time a second passes first (the
    /// snapshot may be on its way).
    async fn resync_if_due(&mut self, room: &str, link: &mut Link) -> Result<(), Broken> {
        self.resync_asked.entry(room.to_string()).or_insert_with(Instant::now);
        self.request_resync(room, link).await
    }

    /// Asks for a full snapshot unless one was asked for in the last second.
    async fn request_resync(&mut self, room: &str, link: &mut Link) -> Result<(), Broken> {
        if (self.resync_asked.get(room)).is_some_and(|at| at.elapsed() < RESYNC_EVERY) {
            return Ok(());
        }
        self.resync_asked.insert(room.to_string(), Instant::now());
        let request_id = self.request_id();
        let resync = Out::Request(proto::Request {
            request_id,
            kind: Some(proto::request::Kind::Resync(proto::Resync { room: room.into() })),
        });
        self.queue.push_back(resync);
        self.flush(link).await
    }

    /// Forgets the requests whose caller stopped waiting (timed out, and told so), and
    /// does not send those still waiting to be: an `UpdateRoom` sent after its caller
    /// was told it failed would still lock the room, say.
    fn drop_abandoned_requests(&mut self) {
        let abandoned: HashSet<u64> = (self.requests.iter())
            .filter(|(_, waiting)| waiting.is_closed())
            .map(|(&request_id, _)| request_id)
            .collect();
        if abandoned.is_empty() {
            return;
        }
        self.requests.retain(|request_id, _| !abandoned.contains(request_id));
        let unsent = |m: &Out| !matches!(m, Out::Request(r) if abandoned.contains(&r.request_id));
        self.queue.retain(unsent);
        self.buffer.retain(unsent);
    }

    /// Sends what the pacers allow now (messages and bytes), as one envelope of at most
    /// `max_batch` messages and `max_batch_bytes`.
    async fn flush(&mut self, link: &mut Link) -> Result<(), Broken> {
        self.drop_abandoned_requests();
        // A message too large for any envelope the server takes would close the
        // connection (1009) and end the client: it is refused here instead.
        while let Some(message) = self.queue.front()
            && message.encoded_len() + MESSAGE_FRAMING > self.max_batch_bytes
        {
            let message = self.queue.pop_front().expect("the front");
            self.refuse_too_big(&message).await;
        }
        let now = std::time::Instant::now();
        // Acknowledgements sent as datagrams (QUIC) are never held back, but the server
        // counts their bytes: they are paid for first.
        self.byte_pacer.charge(link.take_datagram_ack_bytes() as f64, now);
        let wanted = (self.queue.len() as u64).min(self.max_batch);
        let allowed = self.pacer.take_up_to(wanted, now) as usize;
        let (mut n, mut size) = (0, 0);
        // Acks waiting to ride along (QUIC) take their room in the envelope; when the
        // first message does not fit beside them, they go now on their own.
        let mut budget = self.max_batch_bytes.saturating_sub(link.waiting_ack_bytes());
        for message in self.queue.iter().take(allowed) {
            let len = message.encoded_len() + MESSAGE_FRAMING;
            if n == 0 && len > budget {
                link.send_waiting_acks();
                self.byte_pacer.charge(link.take_datagram_ack_bytes() as f64, now);
                budget = self.max_batch_bytes;
            }
            // The server closes a connection whose envelope exceeds its message size
            // (1009).
            if size + len > budget {
                break;
            }
            // The server counts the acks riding along too (QUIC): the first message
            // pays for them.
            let acks = if n == 0 { link.waiting_ack_bytes() } else { 0 };
            if self.byte_pacer.try_take((len + acks) as f64, now).is_err() {
                break;
            }
            (n, size) = (n + 1, size + len);
        }
        self.pacer.give_back((allowed - n) as f64);
        if n == 0 {
            return Ok(());
        }
        let mut batch: Vec<Out> = self.queue.drain(..n).collect();
        for message in &mut batch {
            if let Out::Ping(ping) = message {
                ping.sent_time_us = unix_micros();
                ping.received_seq = self.received.last();
            }
        }
        // Saturating: a relay's `Welcome` may claim any count (a hostile one, the
        // largest), and that must not panic the driver.
        let first_event_seq = self.events_sent.saturating_add(1);
        let mut numbered = false;
        for message in &batch {
            if let Out::Event(event) = message {
                numbered = true;
                self.events_sent = self.events_sent.saturating_add(1);
                if self.events_unacked.len() >= self.config.buffer_limit {
                    self.events_unacked.pop_front();
                }
                self.events_unacked.push_back((self.events_sent, event.clone()));
            }
        }
        // What only this batch holds (leaves, requests, token refreshes: joins and
        // inputs come back from `rooms`, events from `events_unacked`) goes back to the
        // queue's front if the write fails, for the next connection.
        let again: Vec<Out> = (batch.iter())
            .filter(|m| {
                !matches!(
                    m,
                    Out::Join(_) | Out::Input(_) | Out::Event(_) | Out::Ping(_) | Out::Pong(_) | Out::Ack(_)
                )
            })
            .cloned()
            .collect();
        let first = if numbered { first_event_seq } else { 0 };
        let sent = link.send(batch, first, self.config.write_timeout).await;
        if sent.is_err() {
            for message in again.into_iter().rev() {
                self.queue.push_front(message);
            }
        }
        sent
    }

    /// Sends what the pacer still holds before a close, for [`CLOSE_SENDS_FOR`] at
    /// most (the relay reads a connection's last messages before its close; what is
    /// left then is dropped).
    async fn send_queued(&mut self, link: &mut Link) {
        let until = Instant::now() + CLOSE_SENDS_FOR;
        while self.queue.iter().any(|m| !matches!(m, Out::Ping(_))) && Instant::now() < until {
            if self.flush(link).await.is_err() {
                return;
            }
            if !self.queue.is_empty() {
                tokio::time::sleep(PACE_STEP).await;
            }
        }
    }

    /// Reports a message larger than an envelope may carry (see `max_batch_bytes`)
    /// as an `Error` with `LIMIT_EXCEEDED`, and answers its request, if it is one.
    async fn refuse_too_big(&mut self, message: &Out) {
        let (room, request_id) = match message {
            Out::Input(input) => {
                // Not kept for a replay either: it would be refused again.
                if let Some(state) = self.rooms.get_mut(&input.room) {
                    state.unacked.retain(|(seq, _)| *seq != input.seq);
                }
                (input.room.clone(), input.seq)
            }
            Out::Event(event) => (event.room.clone(), 0),
            Out::Join(join) => (join.room.clone(), join.request_id),
            Out::Request(request) => (String::new(), request.request_id),
            _ => (String::new(), 0),
        };
        let error = local_error(
            proto::ErrorCode::LimitExceeded,
            format!(
                "not sent: a message of {} bytes, over the {} an envelope may carry (seven eighths of the server's max_message_bytes)",
                message.encoded_len(),
                self.max_batch_bytes
            ),
            room,
            request_id,
        );
        let reply = (request_id != 0).then(|| self.requests.remove(&request_id)).flatten();
        self.refuse(error, reply).await;
    }

    /// Gives `command` back, unless it is an input, event or request handed to a full
    /// send queue (see `ClientConfig::send_queue_limit`) while connected: refused
    /// then, not kept (an input's error carries the number `send_input` gave it).
    async fn unless_queue_full(&mut self, command: Command, welcomed: bool) -> Option<Command> {
        // Online, the send queue; offline, the buffer (inputs wait in `rooms` then,
        // within `unacked_input_limit`).
        let (waiting, limit, why) = if welcomed {
            (
                self.queue.len(),
                self.config.send_queue_limit,
                "send_queue_limit: the application sends faster than the server's limits allow",
            )
        } else {
            (
                self.buffer.len(),
                self.config.buffer_limit,
                "buffer_limit: the client is offline",
            )
        };
        if waiting < limit {
            return Some(command);
        }
        let (room, request_id, reply) = match command {
            // An input for a room not joined here is dropped by `command`, as ever.
            Command::Input { room, seq, .. } if welcomed && self.rooms.contains_key(&room) => (room, seq, None),
            Command::Event(event) => (event.room, 0, None),
            Command::Request { reply, .. } => (String::new(), 0, Some(reply)),
            command => return Some(command),
        };
        let message = format!("not sent: {waiting} messages already wait to be sent ({why})");
        self.refuse(
            local_error(proto::ErrorCode::RateLimited, message, room, request_id),
            reply,
        )
        .await;
        None
    }

    /// Tells the application (and a request's caller) that something was not sent.
    async fn refuse(
        &mut self,
        error: proto::Error,
        reply: Option<oneshot::Sender<Result<proto::Response, proto::Error>>>,
    ) {
        if let Some(reply) = reply {
            let _ = reply.send(Err(error.clone()));
        }
        self.emit(Event::Error(error)).await;
    }

    /// The session took every event numbered up to `seq`.
    fn events_acknowledged(&mut self, seq: u64) {
        while self.events_unacked.front().is_some_and(|(n, _)| *n <= seq) {
            self.events_unacked.pop_front();
        }
    }
}

/// An error the client makes itself (nothing was sent).
fn local_error(code: proto::ErrorCode, message: String, room: String, request_id: u64) -> proto::Error {
    proto::Error {
        code: code as i32,
        message,
        request_id,
        room,
        retry_after_ms: 0,
    }
}

/// Puts a URL that the stopping node at `current` named (`GoingAway`) into `targets`
/// (the `configured` URLs and those learned so) and returns where to connect next. A
/// known URL is simply gone to. A new one takes the place of a stopping node that was
/// itself learned so (learned URLs never pile up), or goes just after a configured
/// one: should it fail too, the next attempt tries the URL that came after the
/// stopping node's, not that node.
fn learn(targets: &mut Vec<Target>, current: usize, configured: &[String], named: Target) -> usize {
    if let Some(known) = targets.iter().position(|t| t.url == named.url) {
        return known;
    }
    if !configured.contains(&targets[current].url) {
        targets[current] = named;
        return current;
    }
    targets.insert(current + 1, named);
    current + 1
}

/// Keeps `event` until its room's join is answered, the oldest dropped over `limit`.
fn hold(held: &mut VecDeque<proto::SendEvent>, event: proto::SendEvent, limit: usize) {
    if held.len() >= limit {
        held.pop_front();
    }
    held.push_back(event);
}

/// Full snapshots are asked for at most this often per room, whatever asks.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// The server's defaults (PROTOCOL.md), for the limits a `Welcome` leaves at 0.
const DEFAULT_MESSAGES_PER_SECOND: u32 = 50;
const DEFAULT_MESSAGE_BURST: u32 = 100;
const DEFAULT_MESSAGE_BYTES: u32 = 16 * 1024;
const DEFAULT_BYTES_PER_SECOND: u32 = 65_536;

/// A limit as `Welcome.limits` gives it: 0 is "not announced", the default stands (a
/// limit of nothing would mute the client). A message size under 1 KiB is taken as
/// 1 KiB by the caller.
fn announced(value: u32, default: u32) -> u32 {
    if value == 0 { default } else { value }
}

/// The bytes of messages an envelope may carry for a server whose message limit is
/// `max_message_bytes` (see `Driver::max_batch_bytes`).
fn batch_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes - max_message_bytes / 8
}

/// Paces bytes below the server's byte bucket (`Welcome.limits`): 80 % of its rate,
/// with half its burst at once (messages the network delivers bunched reach the server
/// at once), but never less than one envelope of `max_batch_bytes`, which the server
/// admits whole (its burst is at least its message size). A server older than
/// `byte_burst` (0) is taken to have the default burst, 128 KiB, or twice its rate if
/// that is less.
fn byte_pacer(limits: &proto::Limits, max_batch_bytes: usize) -> TokenBucket {
    let rate = f64::from(announced(limits.bytes_per_second, DEFAULT_BYTES_PER_SECOND));
    let burst = match limits.byte_burst {
        0 => (2.0 * rate).min(131_072.0),
        burst => f64::from(burst),
    };
    let ours = (burst / 2.0).max(max_batch_bytes as f64);
    TokenBucket::new(rate * 0.8, ours, std::time::Instant::now())
}

/// Request ids (joins, leaves, requests) count from here, above every input number
/// (at most 2^53 - 1): the server answers a refused input with an `Error` whose
/// `request_id` is the input's `seq`, which must not be taken for a request's answer.
const FIRST_REQUEST_ID: u64 = 1 << 53;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_learned_from_going_away_take_each_others_place() {
        let target = |host: &str| Target::parse(&format!("wss://{host}.test/ws")).unwrap();
        let mut targets = vec![target("a"), target("f")];
        let configured: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
        let hosts = |targets: &[Target]| targets.iter().map(|t| t.host.clone()).collect::<Vec<_>>();
        // a stops and names b; b stops and names c, which takes b's place.
        let at = learn(&mut targets, 0, &configured, target("b"));
        assert_eq!(at, 1);
        assert_eq!(hosts(&targets), ["a.test", "b.test", "f.test"]);
        let at = learn(&mut targets, at, &configured, target("c"));
        assert_eq!(at, 1);
        assert_eq!(hosts(&targets), ["a.test", "c.test", "f.test"]);
        // A known URL is gone to; a configured node that stops gets the new one after it.
        assert_eq!(learn(&mut targets, at, &configured, target("f")), 2);
        assert_eq!(learn(&mut targets, 2, &configured, target("d")), 3);
        assert_eq!(hosts(&targets), ["a.test", "c.test", "f.test", "d.test"]);
    }
}
