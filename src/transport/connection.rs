//! The connection loop every transport shares: start or resume the session, feed it
//! what the peer sends, sleep until its next timer, write everything pending in its
//! outbox in one go (or what the transport's flusher left of it: see
//! [`Transport::flusher`]), and end with the session's [`CloseReason`]. A connection
//! that drops without a close is parked for resume. The session is shared with the
//! transport's reader, which hands it the client's inputs without the loop (see
//! [`Transport::reader`]).
//!
//! A transport ([`Transport`]: WebSocket in `ws`, QUIC in `quic`) moves bytes: it
//! reads inbound messages, writes a [`Batch`], pings and closes; the WebSocket one
//! also drains the outbox and hands inputs to the session on its own (its flusher
//! and reader).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tickrelay_proto::woken::Woken;

use crate::clock::{Now, unix_micros};
use crate::engine::outbox::{Batch, Outbox, PendingState};
use crate::engine::pacer;
use crate::error::CloseReason;
use crate::log_budget::LogBudget;
use crate::metrics::{CONNECTION_ENDS, EndLabels, Metrics};
use crate::session::auth::{AuthMode, DuplicateSessions, Identity};
use crate::session::directory::DirectoryReply;
use crate::session::heartbeat::Beat;
use crate::session::limits::address_key;
use crate::session::{Inbound, Session};
use crate::state::MemberId;
use crate::transport::context::Context;
use crate::transport::gate::Permit;
use crate::transport::registry::{Owner, Stop, StopReason};
use crate::transport::{Broken, Handoff, Inputs, Received, Sent, Transport};

/// How a session starts, decided when the connection authenticated.
pub(crate) enum Start {
    /// A new session for this identity.
    New {
        /// Who is connecting.
        identity: Identity,
        /// The client's id (`Hello.client_id`), if it sent one.
        client: Option<String>,
    },
    /// Resume the session with this resume token.
    Resume {
        /// The resume token.
        token: String,
        /// Who is connecting (with JWT, must be the session's user).
        identity: Identity,
        /// The last numbered server message the client received; none when the
        /// client did not say (see [`Session::resume`]).
        received: Option<u64>,
        /// The client's id (`Hello.client_id`), if it sent one.
        client: Option<String>,
    },
}

/// A client id as presented (`?client=`, `Hello.client_id`): 1-64 bytes, or none.
pub(crate) fn client_id(presented: &str) -> Option<String> {
    (!presented.is_empty() && presented.len() <= 64).then(|| presented.to_string())
}

/// The family of a session (see [`Session::family`]): one per client id of a user
/// (FNV-1a of the id: the same on every node, whatever it was built with); without
/// one, the session's own id.
fn family(client: Option<&str>, session: MemberId) -> u64 {
    let Some(client) = client else {
        return session;
    };
    (client.bytes()).fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Connection opened and closed lines: at most 20 a second (`suppressed` counts the
/// rest).
static CONNECTION_LOGS: LogBudget = LogBudget::new("connections", 20);

/// How long a resume waits for a connection it takes over to park its session.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(2);

/// How long a write may stay blocked before what it holds counts against
/// `BlockedWrites` (a large message to a client that reads blocks a moment too).
const BLOCKED_WRITE_GRACE: Duration = Duration::from_millis(500);

/// Finds the session for a resume token, for the connection that `stop` stops:
/// parked, or still held by a connection the server has not yet noticed is dead
/// (that connection is told to end and park it). None: no session has the token here.
/// A session whose reliable queue overflowed while it waited (room mates' messages
/// past the queue's bounds) cannot be resumed: it ends, and the resume fails (4504).
/// `Err(Replaced)`: a newer resume took the session while this one waited for it.
async fn find_session(
    ctx: &Context,
    token: &str,
    identity: &Identity,
    stop: &Stop,
) -> Result<Option<Session>, CloseReason> {
    let Some(mut session) = take_session(ctx, token, identity, stop).await? else {
        return Ok(None);
    };
    if session.outbox().is_overflowed() {
        ctx.registry.unregister_token(token, stop);
        ctx.end_session(&mut session);
        return Ok(None);
    }
    Ok(Some(session))
}

/// [`find_session`]'s search. Parked: taken at once (and the token is this
/// connection's from then on). Live: the connection holding it is asked to park it,
/// and the resume waits for that. A newer resume of the token coming meanwhile takes
/// the session: this one is told so (4002), as a connection taken over is.
async fn take_session(
    ctx: &Context,
    token: &str,
    identity: &Identity,
    stop: &Stop,
) -> Result<Option<Session>, CloseReason> {
    // Anonymous sessions are identified by the resume token alone.
    let user = (ctx.session.auth.mode() == AuthMode::Jwt).then_some(&*identity.user_id);
    // Resumes are counted per user: another user's resume with the token (a stolen
    // one, refused) does not make the owner's lose.
    let key = user.map_or_else(|| token.to_string(), |user| format!("{user}\n{token}"));
    let resume = ctx.registry.resume_begins(key);
    let take = || {
        resume
            .take(token, user, Instant::now(), stop)
            .map_err(|_| CloseReason::Replaced)
    };
    let mut asked: Option<Instant> = None;
    loop {
        if let Some(session) = take()? {
            return Ok(Some(session));
        }
        if !resume.take_over(token, user) {
            // Neither live nor parked (a connection parks before it lets the token
            // go, and a resume takes the token with the session: this look sees a
            // session its holder parked since the last one).
            return take();
        }
        // Asked again at each look: a resume that took the session from the holder
        // asked first is asked in turn.
        let asked = *asked.get_or_insert_with(Instant::now);
        if asked.elapsed() >= TAKE_OVER_WAIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How the connection ended.
enum End {
    /// The server closes with this reason.
    Close(CloseReason),
    /// The client closed normally: it is done, nothing to resume.
    ClientClosed,
    /// The client closed with another code: answer the close, keep the seat.
    ClientLeft(u16),
    /// The connection was lost or the client went away: keep the seat for resume.
    Lost,
    /// Another connection resumed this session: tell this one (4002), keep the
    /// session for the new connection.
    TakenOver,
}

impl End {
    /// Whether the session is parked for a resume: the peer stopped answering or
    /// reading, went away or moved, but lost nothing.
    fn parks(&self) -> bool {
        match self {
            End::Close(reason) => matches!(reason, CloseReason::HeartbeatTimeout | CloseReason::SlowConsumer),
            End::ClientClosed => false,
            End::ClientLeft(_) | End::Lost | End::TakenOver => true,
        }
    }

    /// Its label in `tickrelay_connection_ends_total` (one of [`CONNECTION_ENDS`]).
    fn label(&self) -> &'static str {
        let label = match self {
            End::Close(_) => "server",
            End::ClientClosed => "client_normal",
            End::ClientLeft(1001) => "client_going_away",
            End::ClientLeft(_) => "client_other_code",
            End::Lost => "lost",
            End::TakenOver => "taken_over",
        };
        debug_assert!(CONNECTION_ENDS.contains(&label));
        label
    }
}

/// The session a connection starts with: a new one, or the one it resumes (here, or
/// continued from another node). None when the connection was refused (and closed).
/// (Apart from `serve`, which boxes it: what it holds while it waits is not kept in
/// every connection's task for the connection's life.)
async fn open_session<T: Transport>(
    transport: &mut T,
    ctx: &Arc<Context>,
    start: Start,
    stop: &Stop,
) -> Option<Session> {
    let now = Now::system();
    let metrics = &ctx.metrics;
    let session = match start {
        Start::New { identity, client } => {
            new_session::<T>(ctx, ctx.next_session_id(), identity, client.as_deref(), now)
        }
        Start::Resume {
            token,
            identity,
            received,
            client,
        } => {
            let resumed = match find_session(ctx, &token, &identity, stop).await {
                Err(reason) => Err(reason),
                Ok(Some(mut session)) => {
                    // The client resuming it may be another process than the one that
                    // started it (a restarted game, a reloaded page): its sessions on
                    // other nodes are this one's family from now on.
                    if let Some(client) = client.as_deref() {
                        session.set_family(family(Some(client), session.id()));
                    }
                    let identity = (ctx.session.auth.mode() == AuthMode::Jwt).then_some(identity);
                    let replay = session.resume(identity, T::DELIVERY, received, Now::system());
                    metrics.resumes.inc();
                    metrics.messages_replayed.inc_by(replay.sent_again as u64);
                    metrics.messages_lost.inc_by(replay.missing);
                    Ok(session)
                }
                // Boxed: rare (a cluster's session moving nodes), and large.
                Ok(None) => {
                    Box::pin(continue_elsewhere_session::<T>(
                        ctx,
                        &token,
                        identity,
                        client.as_deref(),
                        now,
                    ))
                    .await
                }
            };
            match resumed {
                Ok(session) => session,
                Err(reason) => {
                    if let Some(suppressed) = CONNECTION_LOGS.take(Instant::now()) {
                        tracing::info!(transport = T::NAME, suppressed, "resume refused: {}", reason.reason());
                    }
                    metrics.count_close(reason);
                    transport.close(reason).await;
                    return None;
                }
            }
        }
    };
    Some(session)
}

/// The session, as the connection loop and its transport's reader share it (see
/// [`Transport::reader`]).
struct SharedSession {
    session: Session,
    /// The session's messages refused over the rate limits, as last counted.
    rate_limited: u64,
}

impl SharedSession {
    /// Handles what the client sent: None, or how the connection ends.
    fn on_received(&mut self, metrics: &Metrics, received: Received) -> Option<End> {
        let now = Now::system();
        let result = match received {
            Received::Binary(bytes) => {
                count_in(metrics, &bytes);
                self.session.handle(Inbound::Binary(&bytes), now)
            }
            Received::Other(inbound) => self.session.handle(inbound, now),
            Received::ProtocolError => Err(CloseReason::ProtocolError),
            Received::InvalidPayload => Err(CloseReason::Undecodable),
            Received::ClientClosed => return Some(End::ClientClosed),
            Received::ClientLeft(code) => return Some(End::ClientLeft(code)),
            Received::Lost => return Some(End::Lost),
            Received::Flood => Err(CloseReason::RateLimited),
            Received::Ended(reason) => Err(reason),
        };
        self.counted(metrics, result).err().map(End::Close)
    }

    /// `handled`, a message's result, once the messages the session refused over the
    /// rate limits meanwhile are counted (looked up only when it moved: the counter
    /// is a cache line of its own).
    fn counted(&mut self, metrics: &Metrics, handled: Result<(), CloseReason>) -> Result<(), CloseReason> {
        let now_limited = self.session.rate_limited();
        if now_limited != self.rate_limited {
            metrics.messages_rate_limited.inc_by(now_limited - self.rate_limited);
            self.rate_limited = now_limited;
        }
        handled
    }
}

/// What the loop waits on beside a ping or a write that is held up (by a client that
/// does not read): the stop signal (a resume elsewhere, or shutdown, must not wait for
/// it), and what the transport's reader leaves meanwhile (see [`Handoff::take_left`]):
/// a client that does not read is still read, and ends its session at once by a fault
/// or a flood.
struct Beside<'a> {
    stop: &'a Stop,
    handoff: Option<&'a dyn Handoff>,
    live: &'a parking_lot::Mutex<SharedSession>,
    metrics: &'a Metrics,
    reader: Option<&'a std::task::Waker>,
}

impl Beside<'_> {
    /// `held_up`'s output, or how the connection ended meanwhile.
    async fn wait<F: Future>(&self, held_up: F) -> Result<F::Output, End> {
        tokio::pin!(held_up);
        loop {
            tokio::select! {
                output = &mut held_up => return Ok(output),
                () = self.stop.registered() => return Err(stopped(self.stop)),
                received = self.left_by_reader(), if self.reader.is_some() => {
                    // Handled, then the reader is set reading again (it stopped there).
                    if let Some(end) = self.live.lock().on_received(self.metrics, received) {
                        return Err(end);
                    }
                    if let Some(reader) = self.reader {
                        reader.wake_by_ref();
                    }
                }
            }
        }
    }

    /// What the reader left to the loop, once it did (it wakes the task then).
    fn left_by_reader(&self) -> impl Future<Output = Received> + '_ {
        std::future::poll_fn(|_| {
            self.handoff
                .and_then(|h| h.take_left())
                .map_or(Poll::Pending, Poll::Ready)
        })
    }
}

/// Counts a binary message from the client.
fn count_in(metrics: &Metrics, message: &[u8]) {
    metrics.messages_in.inc();
    metrics.bytes_in.inc_by(message.len() as u64);
}

/// Where the transport's reader hands the client's inputs: to the session, as the
/// loop would (see [`Session::handle_inputs`]).
struct SessionInputs {
    live: std::sync::Weak<parking_lot::Mutex<SharedSession>>,
    metrics: Arc<Metrics>,
}

impl Inputs for SessionInputs {
    fn offer(&self, message: &Bytes) -> Option<Result<(), CloseReason>> {
        let live = self.live.upgrade()?;
        let mut live = live.try_lock()?;
        let handled = live.session.handle_inputs(message, Now::system())?;
        count_in(&self.metrics, message);
        Some(live.counted(&self.metrics, handled))
    }
}

/// Runs one authenticated connection to its end.
pub(crate) async fn serve<T: Transport>(
    mut transport: T,
    peer: SocketAddr,
    ctx: Arc<Context>,
    start: Start,
    permit: Permit,
) {
    let metrics = &ctx.metrics;
    let resume = matches!(start, Start::Resume { .. });
    // Shutdown, a newer session replacing this one, or a resume taking it over (from
    // the moment a resume takes its session).
    let stop = Stop::new();
    // Boxed: what opening waits on is large, and done with once the session runs.
    let Some(session) = Box::pin(open_session(&mut transport, &ctx, start, &stop)).await else {
        return;
    };
    let id = session.id();
    let user = session.identity().user_id.clone();
    let replace = ctx.settings.duplicate_sessions == DuplicateSessions::Replace;
    let since_us = (ctx.registry).go_live(&user, id, session.family(), unix_micros(), stop.clone(), replace);
    if replace {
        // The user's parked sessions this one replaced end now, not at the reaper's
        // next round: their seats are free before this session's first join reaches
        // a room (a player whose game crashed and restarted takes its seat back).
        for mut ended in ctx.registry.expire(Instant::now()) {
            ctx.end_session(&mut ended);
        }
    }
    if let Some(cluster) = ctx.cluster.as_ref().filter(|_| replace) {
        let (cluster, user, family) = (cluster.clone(), user.clone(), session.family());
        tokio::spawn(async move { cluster.announce_live(&user, family, since_us).await });
    }
    let token = session.resume_token().to_string();
    // (A session a resume took here has it registered already: again is harmless.)
    ctx.registry.register_token(&token, user.clone(), stop.clone());
    metrics.connections.inc();
    metrics.connections_accepted.inc();
    if let Some(suppressed) = CONNECTION_LOGS.take(Instant::now()) {
        tracing::info!(%peer, session = id, user = %user, transport = T::NAME, resume, suppressed, "connection opened");
    }

    let outbox = session.outbox().clone();
    let slow = ctx.settings.slow_consumer;
    let naive = ctx.settings.naive_fanout;
    let mut batch = Batch::default();
    let mut single = Batch::default();
    // One timer for the connection's life too. The session's deadline moves later with
    // every message (the heartbeat), so the timer is moved only when the deadline comes
    // sooner than it; a timer that fires early finds nothing due and is re-armed.
    let timer = tokio::time::sleep_until(session.poll_timeout().into());
    tokio::pin!(timer);
    // The socket, the outbox, the timer and the stop signal wake the task through
    // wakers of their own, so a wake-up polls the one that woke it (see `Woken`; a
    // reset timer is marked woken, so its next poll registers it). The stop signal
    // keeps the waker it was given: reading its flag at every wake-up cost a cache
    // miss per message (its own allocation, made long before the others).
    let task = Woken::task().await;
    let [socket, outbox_woken, timer_woken, stop_woken] = std::array::from_fn(|_| Woken::new(&task));
    stop.register(stop_woken.waker());
    // The outbox wakes the transport's flusher, when it has one: it writes what it can
    // without the loop (WebSocket: a tick's frames), and leaves the rest in `handoff`.
    let flusher = (!naive)
        .then(|| transport.flusher(outbox_woken.waker(), &outbox, metrics))
        .flatten();
    let (outbox_waker, handoff) = match flusher {
        Some((waker, handoff)) => (waker, Some(handoff)),
        None => (outbox_woken.waker().clone(), None),
    };
    // The session, shared with the transport's reader when it has one: it hands the
    // session the client's inputs without the loop (WebSocket: a tick's inputs).
    let live = Arc::new(parking_lot::Mutex::new(SharedSession {
        rate_limited: session.rate_limited(),
        session,
    }));
    let inputs = Arc::new(SessionInputs {
        live: Arc::downgrade(&live),
        metrics: metrics.clone(),
    });
    let reader = (!naive).then(|| transport.reader(socket.waker(), inputs)).flatten();
    // What a held-up ping or write waits beside.
    let beside = Beside {
        stop: &stop,
        handoff: handoff.as_deref(),
        live: &live,
        metrics,
        reader: reader.as_ref(),
    };
    // Cluster mode: the session's directory work under way (claims, listings).
    let mut directory: FuturesUnordered<Pin<Box<dyn Future<Output = DirectoryReply> + Send>>> = FuturesUnordered::new();
    let end = 'session: loop {
        let deadline = {
            let mut live = live.lock();
            if let Some(cluster) = &ctx.cluster {
                while let Some(op) = live.session.poll_directory() {
                    let cluster = cluster.clone();
                    directory.push(Box::pin(async move { cluster.run(op).await }));
                }
            }
            live.session.poll_timeout().into()
        };
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
            timer_woken.set();
        }
        // Biased: shutdown and timers first, then inbound before outbound, so a
        // client whose writes back up is still read (and its inputs applied).
        tokio::select! {
            biased;
            () = stop_woken.poll(stop.registered()) => break stopped(&stop),
            () = timer_woken.poll(timer.as_mut()) => {
                let (beat, deadline) = {
                    let mut live = live.lock();
                    (live.session.handle_timeout(Instant::now()), live.session.poll_timeout())
                };
                timer.as_mut().reset(deadline.into());
                match beat {
                    // A ping stuck behind a peer that stopped reading gives way to a
                    // resume elsewhere (or shutdown), as a write does.
                    Ok(Beat::Ping) => {
                        let ping = tokio::time::timeout(slow, transport.ping());
                        let pinged = match beside.wait(ping).await {
                            Ok(pinged) => pinged,
                            Err(end) => break end,
                        };
                        match pinged {
                            Ok(Ok(())) => {}
                            Ok(Err(Broken)) => break End::Lost,
                            Err(_) => break End::Close(CloseReason::SlowConsumer),
                        }
                    }
                    Ok(_) => {}
                    Err(reason) => break End::Close(reason),
                }
            }
            Some(reply) = directory.next(), if !directory.is_empty() => live.lock().session.on_directory(reply),
            received = socket.poll(transport.recv()) => {
                if let Some(end) = live.lock().on_received(metrics, received) {
                    break end;
                }
            }
            () = outbox_woken.poll(std::future::poll_fn(|_| match &handoff {
                Some(handoff) if handoff.take(&mut batch) => Poll::Ready(()),
                _ => outbox.poll_drain(&mut std::task::Context::from_waker(&outbox_waker), &mut batch),
            })) => {
                if batch.overflowed {
                    break End::Close(CloseReason::SlowConsumer);
                }
                metrics.frames_superseded.inc_by(batch.superseded);
                let sending = async {
                    if naive {
                        send_separately(&mut transport, &batch, &mut single, &outbox).await
                    } else {
                        transport.send(&batch, &outbox).await
                    }
                };
                tokio::pin!(sending);
                // Most writes complete at once. One that does not gets `slow` to finish
                // (a write still blocked then means the client is not reading), and a
                // resume elsewhere (or shutdown) must not wait for it.
                let first = std::future::poll_fn(|cx| Poll::Ready(sending.as_mut().poll(cx))).await;
                let sent = match first {
                    Poll::Ready(sent) => Ok(sent),
                    Poll::Pending => {
                        // The socket drains as fast as the network takes it, not once
                        // per tick (see `pacer::hurry`).
                        let _hurry = pacer::hurry();
                        // Past a moment (a large message to a client that reads takes
                        // a few writes), what it holds counts against what every blocked
                        // write may hold together (see `BlockedWrites`).
                        let blocked_at = tokio::time::Instant::now();
                        let grace = slow.min(BLOCKED_WRITE_GRACE);
                        let mut held = None;
                        loop {
                            let until = blocked_at + if held.is_some() { slow } else { grace };
                            let sent = match beside.wait(tokio::time::timeout_at(until, &mut sending)).await {
                                Ok(sent) => sent,
                                Err(end) => break 'session end,
                            };
                            if sent.is_ok() || held.is_some() || grace == slow {
                                break sent;
                            }
                            // (A write the flusher began holds what it left unwritten.)
                            let holds = batch.bytes().max(handoff.as_ref().map_or(0, |h| h.unwritten()));
                            match ctx.blocked_writes.hold(peer.ip(), holds) {
                                Some(holding) => held = Some(holding),
                                None => break 'session End::Close(CloseReason::SlowConsumer),
                            }
                        }
                    }
                };
                match sent {
                    Ok(Ok(sent)) => sent.record(metrics, &batch.states),
                    Ok(Err(Broken)) => break End::Lost,
                    Err(_) => break End::Close(CloseReason::SlowConsumer),
                }
            }
        }
    };
    // Directory work still under way is given up here, not when the connection is
    // done closing: a claim granted after the session ended would hold the room's
    // entry, and count as opening it, with nothing left to open or release it.
    drop(directory);
    if let Some(handoff) = &handoff {
        handoff.retire();
    }
    // The reader holds the session only while it runs.
    let SharedSession { mut session, .. } = Arc::into_inner(live).expect("the session is the loop's").into_inner();
    let end = as_the_client_ended_it(&mut transport, end);
    // A stopping cluster node's last word: where to continue.
    if let (End::Close(CloseReason::ShuttingDown), Some(cluster)) = (&end, &ctx.cluster)
        && let Some(url) = cluster.destination(session.rooms())
    {
        session.going_away(url);
        write_pending(&mut transport, &outbox, handoff.as_deref(), &mut batch, slow).await;
    }
    metrics.connections.dec();
    metrics
        .connection_ends
        .get_or_create(&EndLabels { end: end.label() })
        .inc();
    metrics.frames_superseded.inc_by(outbox.take_superseded());
    drop(permit);
    if let Some(suppressed) = CONNECTION_LOGS.take(Instant::now()) {
        // `code`: the close code the server sends of its own (1000 answering a normal
        // close); `client_code`: the client's other code.
        let (code, client_code, reason) = match end {
            End::Close(reason) => (Some(reason.code()), None, reason.reason()),
            End::ClientClosed => (Some(CloseReason::Normal.code()), None, "closed by the client"),
            End::ClientLeft(1001) => (None, Some(1001), "closed by the client: going away"),
            End::ClientLeft(code) => (None, Some(code), "closed by the client with a code other than 1000"),
            End::Lost => (None, None, "connection lost"),
            End::TakenOver => (
                Some(CloseReason::Replaced.code()),
                None,
                "resumed on another connection",
            ),
        };
        // (Per-address limits stay with the address it connected from.)
        let now_at = transport
            .moved_to()
            .filter(|&at| at != peer)
            .map(tracing::field::display);
        tracing::info!(%peer, now_at, session = id, code, client_code, reason, suppressed, "connection closed");
    }
    // The session is parked (or ended) before the transport is closed: a resume
    // taking it over waits for it (`TAKE_OVER_WAIT`), and closing a connection whose
    // peer is gone can take seconds (the close frame's write, then the shutdown).
    let grace = ctx.session.settings.resume_grace;
    if !end.parks() || grace.is_zero() || outbox.is_overflowed() || ctx.shutdown.is_cancelled() {
        ctx.registry.leave_live(&user, id);
        ctx.end_session(&mut session);
    } else {
        let address = address_key(peer.ip());
        // Its rooms tell their members it is away (its seats held) once that has
        // lasted a second (a resume taking it over this moment clears it sooner).
        outbox.set_away(true);
        let owner = Owner {
            user,
            family: session.family(),
            address,
            live: Some((id, since_us)),
        };
        match ctx.registry.park(token.clone(), owner, session, Instant::now() + grace) {
            None => tracing::debug!(session = id, "parked for resume"),
            // Another parked session made room (of this address, or of the one holding
            // the most), or nothing may be parked: it ends now (it leaves its rooms).
            Some(mut ended) => ctx.end_session(&mut ended),
        }
    }
    // Only now: a resume finds the token live (and waits for the park) or parked,
    // never neither.
    ctx.registry.unregister_token(&token, &stop);
    match end {
        End::Close(reason) => {
            metrics.count_close(reason);
            transport.close(reason).await;
        }
        End::ClientClosed | End::ClientLeft(_) => transport.finish().await,
        End::Lost => {}
        End::TakenOver => transport.close(CloseReason::Replaced).await,
    }
}

/// A new session of the client `client` (see [`family`]; cluster mode: recorded in
/// Redis, so it can continue on another node).
fn new_session<T: Transport>(
    ctx: &Arc<Context>,
    id: MemberId,
    identity: Identity,
    client: Option<&str>,
    now: Now,
) -> Session {
    let outbox = Arc::new(Outbox::with_delivery(ctx.settings.outbox, T::DELIVERY));
    let token = ctx.new_resume_token();
    if let Some(cluster) = &ctx.cluster {
        cluster.save_session(&token, id, &identity.user_id);
    }
    let mut session = Session::new(id, identity, token, outbox, ctx.session.clone(), now);
    session.set_family(family(client, id));
    session
}

/// Cluster mode: a resume token of another node's session (the node died or
/// stopped) continues as a new session here with the same id (so the same member id:
/// restored rooms kept its seats) and user. Its `Welcome` says `resumed: false`: the
/// client joins its rooms again. With JWT the token's user must be the session's.
/// Refused with [`CloseReason::TryAgainLater`] while the session's node lives (the
/// client is to resume there), else with [`CloseReason::ResumeFailed`].
async fn continue_elsewhere_session<T: Transport>(
    ctx: &Arc<Context>,
    token: &str,
    mut identity: Identity,
    client: Option<&str>,
    now: Now,
) -> Result<Session, CloseReason> {
    let cluster = ctx.cluster.as_ref().ok_or(CloseReason::ResumeFailed)?;
    // With JWT the token's user must be the session's (another's record stays);
    // anonymous, the session's user is taken on.
    let jwt = matches!(ctx.session.auth.mode(), AuthMode::Jwt);
    let record = cluster
        .take_session(token, jwt.then_some(&*identity.user_id))
        .await?
        .ok_or(CloseReason::ResumeFailed)?;
    if !jwt {
        identity.user_id = record.user_id.as_str().into();
    }
    ctx.metrics.sessions_moved.inc();
    tracing::info!(session = record.session_id, user = %identity.user_id, "session continued from another node");
    Ok(new_session::<T>(ctx, record.session_id, identity, client, now))
}

/// How a connection ends that broke (a failed read, write or ping), or that the
/// server ends for a client that stopped answering or reading (`end`): a client whose
/// close was already received (behind what it sent before, or read by the
/// transport's reader while the loop was busy and not yet looked at) closed it
/// itself, and its session is not kept for a resume that never comes.
fn as_the_client_ended_it<T: Transport>(transport: &mut T, end: End) -> End {
    if !(end.parks() && matches!(end, End::Lost | End::Close(_))) {
        return end;
    }
    // What is already there, and no more: messages before the close are dropped
    // with the connection.
    for _ in 0..64 {
        match transport.recv().now_or_never() {
            Some(Received::Binary(_) | Received::Other(_)) => {}
            Some(Received::ClientClosed) => return End::ClientClosed,
            Some(Received::ClientLeft(code)) => return End::ClientLeft(code),
            // The session ended itself on a message the reader handed over (a flood,
            // say) while the loop was busy: that is the end.
            Some(Received::Ended(reason)) => return End::Close(reason),
            _ => return end,
        }
    }
    end
}

/// Writes what the outbox holds now, after what the transport's flusher left to the
/// loop, waiting at most `slow` (before a close): in several writes when rooms closed
/// while their last frames waited (a drain stops at each such room's `Left`,
/// [`Outbox::close_room`]), at most [`PENDING_WRITES`].
async fn write_pending<T: Transport>(
    transport: &mut T,
    outbox: &Outbox,
    handoff: Option<&dyn Handoff>,
    batch: &mut Batch,
    slow: Duration,
) {
    let write = async {
        if let Some(handoff) = handoff
            && handoff.take(batch)
            && (batch.overflowed || transport.send(batch, outbox).await.is_err())
        {
            return;
        }
        for _ in 0..PENDING_WRITES {
            let drained = std::future::poll_fn(|cx| outbox.poll_drain(cx, batch)).now_or_never();
            if drained.is_none() || batch.overflowed || transport.send(batch, outbox).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(slow, write).await;
}

/// The most writes [`write_pending`] makes: one more than the rooms a session is in
/// at most by default (`max_rooms_per_session`), all closing at once.
const PENDING_WRITES: usize = 17;

/// How a connection ends when its [`Stop`] fired.
fn stopped(stop: &Stop) -> End {
    match stop.reason() {
        StopReason::Shutdown => End::Close(CloseReason::ShuttingDown),
        StopReason::Replaced => End::Close(CloseReason::Replaced),
        // A resume on another connection: this one is dead to the client.
        StopReason::TakenOver => End::TakenOver,
    }
}

/// The naive baseline's writes (`naive_fanout`, for benchmarks only): every message
/// of `batch` in a write of its own, as a relay without coalescing would do.
async fn send_separately<T: Transport>(
    transport: &mut T,
    batch: &Batch,
    single: &mut Batch,
    outbox: &Outbox,
) -> Result<Sent, Broken> {
    enum One<'a> {
        Welcome(&'a Bytes),
        Reliable(u64, &'a Bytes),
        State(&'a PendingState),
    }
    let mut total = Sent::default();
    let writes = (batch.welcome.iter().map(One::Welcome))
        .chain(
            (batch.first_seq..)
                .zip(&batch.reliable)
                .map(|(seq, m)| One::Reliable(seq, m)),
        )
        .chain(batch.states.iter().map(One::State));
    for one in writes {
        single.clear();
        match one {
            One::Welcome(m) => single.welcome = Some(m.clone()),
            One::Reliable(seq, m) => {
                single.first_seq = seq;
                single.reliable.push(m.clone());
            }
            One::State(s) => single.states.push(s.clone()),
        }
        let sent = transport.send(single, outbox).await?;
        total.messages += sent.messages;
        total.bytes += sent.bytes;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    //! The connection loop over an in-memory transport: no sockets, the real session
    //! and simulation threads.

    use std::net::{IpAddr, Ipv4Addr};

    use bytes::BytesMut;
    use prost::Message;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::Config;
    use crate::engine::envelope::encode_batch;
    use crate::engine::outbox::Delivery;
    use crate::engine::sim_pool::SimPool;
    use crate::frame::decode_server;
    use crate::metrics::Metrics;
    use crate::proto::{ClientEnvelope, ClientMessage, JoinRoom, client_message, server_message::Kind};
    use crate::session::SessionContext;
    use crate::session::auth::Authenticator;
    use crate::transport::context::ConnectionSettings;
    use crate::transport::gate::Gate;
    use crate::transport::registry::Registry;

    /// The server's end of an in-memory connection.
    struct Memory {
        inbound: mpsc::UnboundedReceiver<Received>,
        outbound: mpsc::UnboundedSender<Vec<Kind>>,
        closed: mpsc::UnboundedSender<Option<CloseReason>>,
        /// How long a close takes (a peer that stopped reading: the close frame's
        /// write waits).
        close_takes: Duration,
        /// How long a ping's write takes (the same).
        ping_takes: Duration,
        /// Told when a ping's write starts.
        pinging: Arc<tokio::sync::Notify>,
        /// Where a reader would leave what it read, as a WebSocket's does (none: the
        /// loop reads everything).
        left: Option<Arc<LeftSlot>>,
    }

    /// What a reader left to the loop, and the loop's waker it wakes then.
    #[derive(Default)]
    struct LeftSlot {
        left: parking_lot::Mutex<Option<Received>>,
        loop_waker: parking_lot::Mutex<Option<std::task::Waker>>,
    }

    impl LeftSlot {
        /// Leaves `received` to the loop, as a reader does.
        fn leave(&self, received: Received) {
            *self.left.lock() = Some(received);
            self.loop_waker.lock().as_ref().expect("a reader").wake_by_ref();
        }
    }

    impl Handoff for LeftSlot {
        fn take(&self, _: &mut Batch) -> bool {
            false
        }
        fn unwritten(&self) -> usize {
            0
        }
        fn retire(&self) {}
        fn take_left(&self) -> Option<Received> {
            self.left.lock().take()
        }
    }

    impl Transport for Memory {
        const DELIVERY: Delivery = Delivery::Reliable;
        const NAME: &'static str = "memory";

        async fn recv(&mut self) -> Received {
            self.inbound.recv().await.unwrap_or(Received::Lost)
        }

        async fn send(&mut self, batch: &Batch, _: &Outbox) -> Result<Sent, Broken> {
            let mut buf = BytesMut::new();
            encode_batch(batch, &mut buf);
            let envelope = decode_server(&buf).map_err(|_| Broken)?;
            let kinds = envelope.messages.into_iter().filter_map(|m| m.kind).collect();
            self.outbound.send(kinds).map_err(|_| Broken)?;
            Ok(Sent {
                messages: 1,
                bytes: buf.len() as u64,
                ..Sent::default()
            })
        }

        async fn ping(&mut self) -> Result<(), Broken> {
            self.pinging.notify_one();
            tokio::time::sleep(self.ping_takes).await;
            Ok(())
        }

        async fn close(&mut self, reason: CloseReason) {
            tokio::time::sleep(self.close_takes).await;
            let _ = self.closed.send(Some(reason));
        }

        async fn finish(&mut self) {
            let _ = self.closed.send(None);
        }

        fn flusher(
            &self,
            loop_waker: &std::task::Waker,
            _: &Arc<Outbox>,
            _: &Arc<Metrics>,
        ) -> Option<(std::task::Waker, Arc<dyn Handoff>)> {
            let slot = self.left.clone()?;
            Some((loop_waker.clone(), slot))
        }

        fn reader(&mut self, loop_waker: &std::task::Waker, _: Arc<dyn Inputs>) -> Option<std::task::Waker> {
            *self.left.as_ref()?.loop_waker.lock() = Some(loop_waker.clone());
            Some(std::task::Waker::noop().clone())
        }
    }

    /// A write that failed after the transport's reader had ended the session (a flood
    /// it read during the write) ends with the session's reason, not as a lost
    /// connection (which would be parked for resume).
    #[test]
    fn an_end_the_reader_left_is_not_a_lost_connection() {
        let (client, inbound) = mpsc::unbounded_channel();
        let mut memory = Memory {
            inbound,
            outbound: mpsc::unbounded_channel().0,
            closed: mpsc::unbounded_channel().0,
            close_takes: Duration::ZERO,
            ping_takes: Duration::ZERO,
            pinging: Default::default(),
            left: None,
        };
        client.send(Received::Binary(Bytes::from_static(b"input"))).unwrap();
        client.send(Received::Ended(CloseReason::RateLimited)).unwrap();
        assert!(matches!(
            as_the_client_ended_it(&mut memory, End::Lost),
            End::Close(CloseReason::RateLimited)
        ));
    }

    /// What the transport's flusher left to the loop goes out before what the outbox
    /// holds when a stopping node writes its last messages (`write_pending`).
    #[tokio::test]
    async fn the_last_writes_begin_with_what_the_flusher_left() {
        struct Left(parking_lot::Mutex<Option<Batch>>);
        impl Handoff for Left {
            fn take(&self, batch: &mut Batch) -> bool {
                self.0.lock().take().map(|left| *batch = left).is_some()
            }
            fn unwritten(&self) -> usize {
                0
            }
            fn retire(&self) {}
            fn take_left(&self) -> Option<Received> {
                None
            }
        }
        let error = |request_id| {
            crate::frame::encode_message(Kind::Error(crate::proto::Error {
                request_id,
                ..Default::default()
            }))
        };
        let (mut memory, mut peer) = pair();
        let outbox = Outbox::new(crate::engine::outbox::OutboxLimits::default());
        outbox.push_reliable(error(1)).unwrap();
        let mut left = Batch::default();
        assert!(outbox.drain(&mut left));
        outbox.push_reliable(error(2)).unwrap();
        let handoff = Left(parking_lot::Mutex::new(Some(left)));
        let mut batch = Batch::default();
        write_pending(&mut memory, &outbox, Some(&handoff), &mut batch, Duration::from_secs(1)).await;
        for expected in [1, 2] {
            let request_id = peer
                .expect(|kind| match kind {
                    Kind::Error(e) => Some(e.request_id),
                    _ => None,
                })
                .await;
            assert_eq!(request_id, expected);
        }
    }

    /// The client's end.
    struct Peer {
        inbound: mpsc::UnboundedSender<Received>,
        outbound: mpsc::UnboundedReceiver<Vec<Kind>>,
        /// Messages of a batch not looked at yet.
        pending: std::collections::VecDeque<Kind>,
        closed: mpsc::UnboundedReceiver<Option<CloseReason>>,
    }

    impl Peer {
        fn send(&self, kind: client_message::Kind) {
            let envelope = ClientEnvelope {
                messages: vec![ClientMessage { kind: Some(kind) }],
                first_event_seq: 0,
            };
            let _ = self.inbound.send(Received::Binary(envelope.encode_to_vec().into()));
        }

        /// The next server message matching `pick`, skipping the ones before it
        /// (bounded). Messages after it in the same write stay for the next call.
        async fn expect<T>(&mut self, mut pick: impl FnMut(&Kind) -> Option<T>) -> T {
            let wait = async {
                loop {
                    while let Some(kind) = self.pending.pop_front() {
                        if let Some(found) = pick(&kind) {
                            return found;
                        }
                    }
                    let kinds = self.outbound.recv().await.expect("the connection ended");
                    self.pending.extend(kinds);
                }
            };
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .expect("timed out")
        }

        async fn closed(&mut self) -> Option<CloseReason> {
            let wait = self.closed.recv();
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .unwrap()
                .unwrap()
        }
    }

    fn pair() -> (Memory, Peer) {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let server = Memory {
            inbound: in_rx,
            outbound: out_tx,
            closed: closed_tx,
            close_takes: Duration::ZERO,
            ping_takes: Duration::ZERO,
            pinging: Default::default(),
            left: None,
        };
        let client = Peer {
            inbound: in_tx,
            outbound: out_rx,
            pending: Default::default(),
            closed: closed_rx,
        };
        (server, client)
    }

    fn context() -> Arc<Context> {
        context_with(Config::default())
    }

    fn context_with(config: Config) -> Arc<Context> {
        let pool = Arc::new(SimPool::start(config.pool_config(&Default::default()).unwrap()).unwrap());
        let session = SessionContext {
            rooms: pool.clone(),
            auth: Arc::new(Authenticator::new(&config.auth).unwrap()),
            settings: Arc::new(config.session_settings()),
            clustered: false,
            room_ids: Arc::new(crate::session::auth::random_hex::<8>),
            searches: Arc::new(config.search_rate()),
            refreshes: Arc::new(crate::session::limits::refresh_rate()),
        };
        let settings = ConnectionSettings {
            outbox: config.outbox_limits(),
            slow_consumer: Duration::from_secs(5),
            max_blocked_write_bytes: usize::MAX,
            duplicate_sessions: config.auth.duplicate_sessions,
            naive_fanout: false,
        };
        let metrics = Arc::new(Metrics::new(pool.metrics().clone(), Default::default()));
        let gate = Gate::new(config.connections.clone());
        Arc::new(Context::new(session, settings, Registry::new(16, 16), gate, metrics))
    }

    /// Serves `transport` on its own task, as a listener would.
    fn connect(ctx: &Arc<Context>, transport: Memory, start: Start) -> tokio::task::JoinHandle<()> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let permit = ctx.gate.admit(ip, Instant::now()).unwrap();
        let peer = SocketAddr::new(ip, 1);
        tokio::spawn(serve(transport, peer, ctx.clone(), start, permit))
    }

    fn identity(ctx: &Context) -> Identity {
        ctx.session.auth.authenticate(None, 0).unwrap()
    }

    /// A new anonymous session.
    fn anonymous(ctx: &Context) -> Start {
        Start::New {
            identity: identity(ctx),
            client: None,
        }
    }

    fn join(room: &str) -> client_message::Kind {
        client_message::Kind::Join(JoinRoom {
            room: room.into(),
            request_id: 1,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_session_joins_gets_state_and_ends_when_the_client_closes() {
        let ctx = context();
        let (server, mut client) = pair();
        let task = connect(&ctx, server, anonymous(&ctx));
        client.expect(|k| matches!(k, Kind::Welcome(_)).then_some(())).await;
        client.send(join("lobby"));
        client.expect(|k| matches!(k, Kind::Joined(_)).then_some(())).await;
        let state = client.expect(|k| match k {
            Kind::State(s) => Some(s.clone()),
            _ => None,
        });
        assert_eq!(state.await.baseline_tick, 0, "a full snapshot first");
        assert_eq!(ctx.metrics.connections.get(), 1);
        let _ = client.inbound.send(Received::ClientClosed);
        assert_eq!(client.closed().await, None, "the server completes the client's close");
        task.await.unwrap();
        assert_eq!((ctx.registry.parked(), ctx.metrics.connections.get()), (0, 0));
    }

    /// Starts a new anonymous session on `server` and joins "lobby" from `client`:
    /// the connection's task and the session's resume token.
    async fn join_the_lobby(
        ctx: &Arc<Context>,
        server: Memory,
        client: &mut Peer,
    ) -> (tokio::task::JoinHandle<()>, String) {
        let task = connect(ctx, server, anonymous(ctx));
        let token = client
            .expect(|k| match k {
                Kind::Welcome(w) => Some(w.resume_token.clone()),
                _ => None,
            })
            .await;
        client.send(join("lobby"));
        client.expect(|k| matches!(k, Kind::Joined(_)).then_some(())).await;
        (task, token)
    }

    /// Resumes `token` on a new connection: its client end once the `Welcome` came,
    /// and whether that says resumed.
    async fn resume(ctx: &Arc<Context>, token: String) -> (Peer, bool) {
        let (server, mut client) = pair();
        let start = Start::Resume {
            token,
            identity: identity(ctx),
            received: None,
            client: None,
        };
        connect(ctx, server, start);
        let resumed = client
            .expect(|k| match k {
                Kind::Welcome(w) => Some(w.resumed),
                _ => None,
            })
            .await;
        (client, resumed)
    }

    #[tokio::test]
    async fn a_lost_connection_is_parked_and_resumed_on_another() {
        let ctx = context();
        let (server, mut client) = pair();
        let (task, token) = join_the_lobby(&ctx, server, &mut client).await;
        let _ = client.inbound.send(Received::Lost);
        task.await.unwrap();
        assert_eq!(ctx.registry.parked(), 1);

        let (mut client, resumed) = resume(&ctx, token).await;
        assert!(resumed);
        // Still in the room: a full snapshot of it follows.
        let state = client.expect(|k| match k {
            Kind::State(s) => Some((s.room.clone(), s.baseline_tick)),
            _ => None,
        });
        assert_eq!(state.await, ("lobby".to_string(), 0));
        assert_eq!((ctx.registry.parked(), ctx.metrics.resumes.get()), (0, 1));
    }

    /// A resume that finds the session in another resume's hands asks that one to give
    /// it up and waits, rather than say it is unknown; and when a newer resume of it
    /// comes meanwhile, the older one is told it lost (4002), and the newer one gets
    /// the session.
    #[tokio::test]
    async fn the_newest_resume_gets_a_session_in_transit() {
        let ctx = context();
        let (server, mut client) = pair();
        let (task, token) = join_the_lobby(&ctx, server, &mut client).await;
        let _ = client.inbound.send(Received::Lost);
        task.await.unwrap();
        // In another resume's hands for a moment.
        let holder = Stop::new();
        let session = ctx.registry.take(&token, None, Instant::now(), &holder).unwrap();
        let identity = identity(&ctx);
        let resume = |identity| {
            let (ctx, token) = (ctx.clone(), token.clone());
            tokio::spawn(async move {
                take_session(&ctx, &token, &identity, &Stop::new())
                    .await
                    .map(|s| s.is_some())
            })
        };
        let older = resume(identity.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!older.is_finished(), "still looking, not 4504");
        assert_eq!(holder.reason(), StopReason::TakenOver, "the holder was asked for it");
        let newer = resume(identity);
        assert_eq!(older.await.unwrap(), Err(CloseReason::Replaced));
        let owner = Owner {
            user: session.identity().user_id.clone(),
            family: session.family(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            live: None,
        };
        assert!(
            ctx.registry
                .park(token, owner, session, Instant::now() + Duration::from_secs(20))
                .is_none()
        );
        assert_eq!(newer.await.unwrap(), Ok(true), "the newest resume takes it");
    }

    /// A resume of a token no session has here is refused at once (on the paused
    /// clock: no wait at all).
    #[tokio::test(start_paused = true)]
    async fn an_unknown_token_is_refused_at_once() {
        let ctx = context();
        let identity = identity(&ctx);
        let started = tokio::time::Instant::now();
        let found = take_session(&ctx, "0.unknown", &identity, &Stop::new()).await;
        assert_eq!(found.map(|s| s.is_some()), Ok(false));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// A resume that takes over a connection the server still holds (its peer gone
    /// unnoticed, so closing it takes longer than the resume waits) gets the session:
    /// the old connection parks it before it closes.
    #[tokio::test]
    async fn a_resume_takes_over_a_connection_that_is_slow_to_close() {
        let ctx = context();
        let (mut server, mut client) = pair();
        server.close_takes = TAKE_OVER_WAIT * 2;
        let (_old, token) = join_the_lobby(&ctx, server, &mut client).await;
        let (_client, resumed) = resume(&ctx, token).await;
        assert!(resumed, "resumed, not refused with 4504");
    }

    /// A resume is not held up by the old connection's heartbeat ping stuck in a
    /// write to a peer that stopped reading: the old connection gives the session up.
    #[tokio::test]
    async fn a_resume_takes_over_a_connection_stuck_in_a_ping() {
        let mut config = Config::default();
        config.session.heartbeat_interval_secs = 0.05;
        let ctx = context_with(config);
        let (mut server, mut client) = pair();
        server.ping_takes = TAKE_OVER_WAIT * 3;
        let pinging = server.pinging.clone();
        connect(&ctx, server, anonymous(&ctx));
        let token = client
            .expect(|k| match k {
                Kind::Welcome(w) => Some(w.resume_token.clone()),
                _ => None,
            })
            .await;
        pinging.notified().await; // a ping is under way
        let (_client, resumed) = resume(&ctx, token).await;
        assert!(resumed, "resumed, not refused with 4504");
    }

    /// Nothing but the connection's timer wakes a session in no room whose client is
    /// silent: it is pinged, then closed when the timeout passes, on time.
    #[tokio::test]
    async fn a_silent_client_in_no_room_is_closed_by_the_heartbeat() {
        let mut config = Config::default();
        config.session.heartbeat_interval_secs = 0.1;
        config.session.heartbeat_timeout_secs = 0.1;
        let ctx = context_with(config);
        let (server, mut client) = pair();
        let started = Instant::now();
        let task = connect(&ctx, server, anonymous(&ctx));
        client.expect(|k| matches!(k, Kind::Welcome(_)).then_some(())).await;
        assert_eq!(client.closed().await, Some(CloseReason::HeartbeatTimeout));
        let after = started.elapsed();
        assert!(after >= Duration::from_millis(200), "closed too early: {after:?}");
        assert!(after < Duration::from_secs(3), "closed late: {after:?}");
        task.await.unwrap();
    }

    /// A client that closed normally while the loop was busy (here: a ping its
    /// transport took long to write, after which the heartbeat's timeout is past)
    /// ended its session: it is not parked for a resume, and its close is answered.
    #[tokio::test]
    async fn a_close_received_before_the_heartbeat_ran_out_ends_the_session() {
        let mut config = Config::default();
        config.session.heartbeat_interval_secs = 0.05;
        config.session.heartbeat_timeout_secs = 0.05;
        let ctx = context_with(config);
        let (mut server, mut client) = pair();
        server.ping_takes = Duration::from_millis(300);
        let pinging = server.pinging.clone();
        let task = connect(&ctx, server, anonymous(&ctx));
        client.expect(|k| matches!(k, Kind::Welcome(_)).then_some(())).await;
        pinging.notified().await; // the ping is under way
        let _ = client.inbound.send(Received::ClientClosed);
        assert_eq!(client.closed().await, None, "the client's close is answered");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ctx.registry.parked(), 0);
    }

    /// What the transport's reader leaves while the loop's heartbeat ping is held up
    /// (a client that does not read) is handled then: a text frame closes with its
    /// code, not with the heartbeat's once the ping is out.
    #[tokio::test]
    async fn what_the_reader_leaves_during_a_held_up_ping_is_handled_then() {
        let mut config = Config::default();
        config.session.heartbeat_interval_secs = 0.05;
        let ctx = context_with(config);
        let (mut server, mut client) = pair();
        server.ping_takes = Duration::from_secs(3);
        let slot = Arc::new(LeftSlot::default());
        server.left = Some(slot.clone());
        let pinging = server.pinging.clone();
        let task = connect(&ctx, server, anonymous(&ctx));
        client.expect(|k| matches!(k, Kind::Welcome(_)).then_some(())).await;
        pinging.notified().await; // the ping is under way
        slot.leave(Received::Other(Inbound::Text));
        assert_eq!(client.closed().await, Some(CloseReason::TextFrame));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn protocol_faults_and_shutdown_close_with_their_reason() {
        let ctx = context();
        let (server, mut client) = pair();
        let task = connect(&ctx, server, anonymous(&ctx));
        let _ = client.inbound.send(Received::Other(Inbound::Text));
        assert_eq!(client.closed().await, Some(CloseReason::TextFrame));
        task.await.unwrap();
        assert_eq!(ctx.registry.parked(), 0, "a session closed for a fault is not kept");

        let (server, mut client) = pair();
        let task = connect(&ctx, server, anonymous(&ctx));
        client.expect(|k| matches!(k, Kind::Welcome(_)).then_some(())).await;
        ctx.shut_down();
        assert_eq!(client.closed().await, Some(CloseReason::ShuttingDown));
        task.await.unwrap();

        let (server, mut client) = pair();
        let start = Start::Resume {
            token: "unknown".into(),
            identity: identity(&ctx),
            received: Some(0),
            client: None,
        };
        connect(&ctx, server, start).await.unwrap();
        assert_eq!(client.closed().await, Some(CloseReason::ResumeFailed));
    }
}
