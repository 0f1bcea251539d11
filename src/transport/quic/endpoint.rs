//! The QUIC endpoint: one UDP socket and `quinn-proto`'s endpoint, driven by one task
//! (the router). The router reads every datagram and hands each connection's packets
//! to that connection's own task ([`Conn`]), which drives its
//! `quinn_proto::Connection` and sends its packets on the shared socket itself. A
//! state frame is built, encrypted and sent by the task that wrote it, and an input
//! crosses one channel from the router to the task that reads it: no driver task
//! per connection to wake in between (what the `quinn` crate's layer costs, see
//! BENCHMARKS.md, "QUIC at W1a: what a transport of our own would save").

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use quinn_proto::{ConnectionHandle, DatagramEvent, EndpointEvent, Incoming};
use rustc_hash::FxHashMap;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ToConn};
use crate::transport::context::Context;

/// The UDP socket every QUIC connection shares.
pub(crate) struct Socket {
    io: tokio::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
}

impl Socket {
    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
        })
    }

    /// How many packets one send may carry (GSO), at most `cap`.
    pub(crate) fn max_segments(&self, cap: usize) -> usize {
        self.state.max_gso_segments().clamp(1, cap)
    }

    /// Sends `contents` as `transmit` says; `WouldBlock` when the kernel's buffer is
    /// full. Other errors are dropped (logged by `quinn-udp`): QUIC retransmits.
    pub(crate) fn try_send(&self, transmit: &quinn_proto::Transmit, contents: &[u8]) -> io::Result<()> {
        let transmit = quinn_udp::Transmit {
            destination: transmit.destination,
            ecn: transmit
                .ecn
                .and_then(|ecn| quinn_udp::EcnCodepoint::from_bits(ecn as u8)),
            contents,
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        self.io
            .try_io(Interest::WRITABLE, || self.state.send((&self.io).into(), &transmit))
    }

    /// Waits until the socket may take a send again.
    pub(crate) async fn writable(&self) {
        // An error here is the socket's own; the next send reports it.
        let _ = self.io.writable().await;
    }
}

/// What the router and the connections' tasks share.
pub(crate) struct Shared {
    pub(crate) socket: Socket,
    /// Connections' events for the endpoint (new connection ids, drained).
    pub(crate) endpoint_events: mpsc::UnboundedSender<(ConnectionHandle, EndpointEvent)>,
}

/// A bound QUIC endpoint, not yet serving: [`Endpoint::serve`] starts its router.
pub(crate) struct Endpoint {
    shared: Arc<Shared>,
    inner: quinn_proto::Endpoint,
    events: mpsc::UnboundedReceiver<(ConnectionHandle, EndpointEvent)>,
    /// Connections not yet drained, for [`Closer::close`].
    open: watch::Sender<usize>,
    /// Set by [`Closer::close`]: close every connection left (1001).
    close_all: CancellationToken,
    /// Set once every connection drained or the close's deadline passed.
    stop: CancellationToken,
}

/// Closes an [`Endpoint`] that serves.
#[derive(Clone)]
pub(crate) struct Closer {
    open: watch::Receiver<usize>,
    close_all: CancellationToken,
    stop: CancellationToken,
}

impl Closer {
    /// Closes the connections left with 1001 and waits until `deadline`, but at least
    /// a second, for every one to drain: QUIC closes are datagrams, so the endpoint
    /// must stay up until then (a client whose close was lost gets it again when it
    /// next sends), or clients see a timeout instead. Then the router stops.
    pub(crate) async fn close(&self, deadline: tokio::time::Instant) {
        self.close_all.cancel();
        let drained = deadline.max(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        let mut open = self.open.clone();
        let _ = tokio::time::timeout_at(drained, open.wait_for(|n| *n == 0)).await;
        self.stop.cancel();
    }
}

impl Endpoint {
    /// An endpoint on an already bound, non-blocking UDP `socket`.
    pub(crate) fn new(socket: std::net::UdpSocket, server: quinn_proto::ServerConfig) -> io::Result<Self> {
        let (endpoint_events, events) = mpsc::unbounded_channel();
        let socket = Socket::new(socket)?;
        // Path MTU discovery needs packets the kernel will not fragment.
        let mtu_discovery = !socket.state.may_fragment();
        let config = Arc::new(quinn_proto::EndpointConfig::default());
        let inner = quinn_proto::Endpoint::new(config, Some(Arc::new(server)), mtu_discovery, None);
        Ok(Self {
            shared: Arc::new(Shared {
                socket,
                endpoint_events,
            }),
            inner,
            events,
            open: watch::Sender::new(0),
            close_all: CancellationToken::new(),
            stop: CancellationToken::new(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.io.local_addr()
    }

    /// The handle that closes the endpoint once it serves.
    pub(crate) fn closer(&self) -> Closer {
        Closer {
            open: self.open.subscribe(),
            close_all: self.close_all.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Serves until [`Closer::close`]: reads datagrams, routes them, and hands each
    /// new connection `accept` decides to take to `serve` (on a task of its own).
    pub(crate) async fn serve(mut self, ctx: Arc<Context>, accept: impl Fn(&Incoming, &Context) -> Admission) {
        let mut router = Router {
            connections: FxHashMap::default(),
            response: Vec::new(),
        };
        let mut buffer = vec![0; RECV_SLOT_BYTES * quinn_udp::BATCH_SIZE];
        let mut closing = false;
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = self.close_all.cancelled(), if !closing => {
                    closing = true;
                    for sender in router.connections.values() {
                        let _ = sender.send(ToConn::Close);
                    }
                }
                Some((handle, event)) = self.events.recv() => {
                    self.endpoint_event(&mut router, handle, event);
                    while let Ok((handle, event)) = self.events.try_recv() {
                        self.endpoint_event(&mut router, handle, event);
                    }
                }
                readable = self.shared.socket.io.readable() => {
                    if let Err(e) = readable {
                        tracing::error!("QUIC socket failed: {e}");
                        break;
                    }
                    if self.receive(&mut router, &mut buffer, &ctx, &accept) {
                        // More may wait: after the other branches had their turn.
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }

    fn endpoint_event(&mut self, router: &mut Router, handle: ConnectionHandle, event: EndpointEvent) {
        let drained = event.is_drained();
        if let Some(event) = self.inner.handle_event(handle, event)
            && let Some(sender) = router.connections.get(&handle)
        {
            let _ = sender.send(ToConn::Proto(event));
        }
        if drained && router.connections.remove(&handle).is_some() {
            self.open.send_modify(|n| *n -= 1);
        }
    }

    /// Reads what the socket holds, a bounded number of batches; true when more may
    /// wait (read after a yield, so the connections' events are not starved).
    fn receive(
        &mut self,
        router: &mut Router,
        buffer: &mut [u8],
        ctx: &Arc<Context>,
        accept: &impl Fn(&Incoming, &Context) -> Admission,
    ) -> bool {
        let mut metas = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        for _ in 0..RECV_BATCHES_PER_WAKE {
            let mut slots = buffer.chunks_mut(RECV_SLOT_BYTES).map(IoSliceMut::new);
            let mut iovs: [IoSliceMut; quinn_udp::BATCH_SIZE] =
                std::array::from_fn(|_| slots.next().expect("BATCH_SIZE slots"));
            let socket = &self.shared.socket;
            let received = socket.io.try_io(Interest::READABLE, || {
                socket.state.recv((&socket.io).into(), &mut iovs, &mut metas)
            });
            let count = match received {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // ICMP errors reported on the socket: no use to QUIC.
                Err(_) => continue,
            };
            let now = Instant::now();
            for (meta, slot) in metas.iter().zip(iovs.iter()).take(count) {
                for datagram in slot[..meta.len].chunks(meta.stride.max(1)) {
                    let ecn = meta.ecn.and_then(|e| quinn_proto::EcnCodepoint::from_bits(e as u8));
                    let event = self.inner.handle(
                        now,
                        meta.addr,
                        meta.dst_ip,
                        ecn,
                        BytesMut::from(datagram),
                        &mut router.response,
                    );
                    match event {
                        Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                            if let Some(sender) = router.connections.get(&handle) {
                                let _ = sender.send(ToConn::Proto(event));
                            }
                        }
                        Some(DatagramEvent::NewConnection(incoming)) => {
                            self.new_connection(router, incoming, now, ctx, accept);
                        }
                        Some(DatagramEvent::Response(transmit)) => router.respond(&self.shared, &transmit),
                        None => {}
                    }
                    router.response.clear();
                }
            }
        }
        true
    }

    fn new_connection(
        &mut self,
        router: &mut Router,
        incoming: Incoming,
        now: Instant,
        ctx: &Arc<Context>,
        accept: &impl Fn(&Incoming, &Context) -> Admission,
    ) {
        let permit = match accept(&incoming, ctx) {
            Admission::Retry => {
                match self.inner.retry(incoming, &mut router.response) {
                    Ok(transmit) => router.respond(&self.shared, &transmit),
                    Err(e) => self.inner.ignore(e.into_incoming()),
                }
                return;
            }
            Admission::Refuse => {
                let transmit = self.inner.refuse(incoming, &mut router.response);
                router.respond(&self.shared, &transmit);
                return;
            }
            Admission::Accept(permit) => permit,
        };
        match self
            .inner
            .accept(incoming, now, &mut router.response, None)
        {
            Ok((handle, connection)) => {
                let (sender, receiver) = mpsc::unbounded_channel();
                router.connections.insert(handle, sender);
                self.open.send_modify(|n| *n += 1);
                let conn = Conn::new(connection, handle, receiver, self.shared.clone());
                ctx.tracker.spawn(super::serve(conn, ctx.clone(), permit));
            }
            Err(e) => {
                if let Some(transmit) = e.response {
                    router.respond(&self.shared, &transmit);
                }
            }
        }
    }
}

/// What the router does with a new connection.
pub(crate) enum Admission {
    /// Handshake with it (holding the connection caps' permit).
    Accept(crate::transport::gate::Permit),
    /// Ask it to prove its address first (a Retry packet).
    Retry,
    /// Turn it away.
    Refuse,
}

/// The router's side of the connections: where each one's packets go.
struct Router {
    connections: FxHashMap<ConnectionHandle, mpsc::UnboundedSender<ToConn>>,
    /// A response the endpoint builds (a Retry, a refusal, a stateless reset).
    response: Vec<u8>,
}

impl Router {
    fn respond(&self, shared: &Shared, transmit: &quinn_proto::Transmit) {
        // A response the kernel cannot take now is dropped: the peer sends again.
        let _ = shared.socket.try_send(transmit, &self.response[..transmit.size]);
    }
}

/// One receive slot: a whole datagram, or what GRO coalesced (at most 64 KiB).
const RECV_SLOT_BYTES: usize = 64 * 1024;

/// Receive batches read per wake-up of the router.
const RECV_BATCHES_PER_WAKE: usize = 16;
