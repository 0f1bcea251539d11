//! Which connection each room goes over. A client starts with one, to its configured
//! URL (its *home* node). In cluster mode a relay answers a join of a room that lives
//! on another node with `Redirect`: the room then goes over a connection to that
//! node, opened on first use and shared by every room living there; it joins them with
//! the home session's member id (the redirect's seat ticket). When that node stops or
//! cannot be reached any more (it died; its rooms move once their leases lapse), its
//! rooms go back home: they are joined again through the home connection, which is
//! redirected to wherever they live now, and the seats restored rooms kept for the
//! home member id are taken back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::driver::UNREACHABLE_FOR;
use crate::link::Target;
use crate::{Carried, ClientConfig, Command, Event, Shared, driver, proto};
use proto::ErrorCode;

/// Redirects in a row for one join before the client stops following them (nodes
/// that disagree about a room's owner settle within a lease; more means a loop).
const MAX_HOPS: u32 = 4;

/// Attempts to reconnect to a node other than home before its rooms go back home.
const NODE_ATTEMPTS: u32 = 3;

/// How long each of them may take at most: a node that answered a moment ago and
/// does not answer a handshake in this long is gone (over QUIC a dead node's port
/// sends no refusal, and each attempt would wait out `connect_timeout`).
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a driver needs to start another driver.
pub(crate) struct Spawn {
    pub config: ClientConfig,
    pub tls: Option<Arc<crate::trust::Tls>>,
    pub events: mpsc::Sender<Event>,
    pub shared: Arc<Shared>,
}

#[derive(Default)]
struct Table {
    /// `Client::close` began: no connection to another node opens any more.
    closed: bool,
    /// Connections to nodes other than home, by URL.
    nodes: HashMap<String, mpsc::UnboundedSender<Command>>,
    /// Rooms that live on another node: its URL.
    rooms: HashMap<String, String>,
    /// Redirects followed for a room since it was last joined; kept while its rooms
    /// go back home from a node that could not be reached, so that a relay naming one
    /// unreachable node after another is not followed for ever.
    hops: HashMap<String, u32>,
    /// Nodes whose rooms came back home because they could not be reached, and when:
    /// the directory names a dead node until its leases lapse, and a redirect there
    /// meanwhile is waited out, not followed (nor counted).
    lost: HashMap<String, Instant>,
}

/// The room a command is for, if it is for one (a request about a room the client
/// is in goes to the room's node: only the session there is in it).
fn room_of(command: &Command) -> Option<&str> {
    use proto::request::Kind;
    match command {
        Command::Join { room, .. } | Command::Input { room, .. } | Command::Leave { room } => Some(room),
        Command::Event(event) => Some(&event.room),
        Command::Request {
            kind: Kind::UpdateRoom(proto::UpdateRoom { room, .. }) | Kind::Resync(proto::Resync { room }),
            ..
        } => Some(room),
        _ => None,
    }
}

impl Table {
    /// The connection to the node `room` lives on, if not home's.
    fn route(&self, room: &str) -> Option<mpsc::UnboundedSender<Command>> {
        self.nodes.get(self.rooms.get(room)?).cloned()
    }

    /// Every connection, `home` first.
    fn connections<'a>(
        &'a self,
        home: &'a mpsc::UnboundedSender<Command>,
    ) -> impl Iterator<Item = &'a mpsc::UnboundedSender<Command>> {
        std::iter::once(home).chain(self.nodes.values())
    }
}

/// See the module documentation.
pub(crate) struct Routes {
    home: mpsc::UnboundedSender<Command>,
    table: Mutex<Table>,
    /// The token given by `Client::set_token` since the client started, which a
    /// connection opened from now on presents instead of the configured one (a lock
    /// of its own: drivers start while `table` is held).
    token: Mutex<Option<String>>,
    spawn: Spawn,
}

impl Routes {
    /// Routes with only the home connection; starts its driver.
    pub fn start(spawn: Spawn, home: Target) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let routes = Arc::new(Self {
            home: tx,
            table: Mutex::default(),
            token: Mutex::default(),
            spawn,
        });
        routes.run_driver(home, rx, None);
        routes
    }

    fn run_driver(self: &Arc<Self>, target: Target, commands: mpsc::UnboundedReceiver<Command>, node: Option<u32>) {
        let s = &self.spawn;
        let mut config = s.config.clone();
        config.url = target.url.clone();
        if let Some(token) = self.token.lock().clone() {
            config.token = Some(token);
        }
        if let Some(attempts) = node {
            // A node that cannot be reached gives its rooms back home, whose session
            // joins them again wherever they live now (as the member that had their
            // seats: a node connection joins with home's member id, by seat ticket).
            config.fallback_urls.clear();
            let most = config.backoff.max_attempts.map_or(attempts, |m| m.min(attempts));
            config.backoff.max_attempts = Some(most);
            config.connect_timeout = config.connect_timeout.min(NODE_CONNECT_TIMEOUT);
        }
        let link = driver::Routing {
            routes: Arc::downgrade(self),
            home: node.is_none(),
        };
        let run = driver::run(
            config,
            target,
            s.tls.clone(),
            commands,
            s.events.clone(),
            s.shared.clone(),
            link,
        );
        tokio::spawn(run);
    }

    /// Sends a command of the application's over the connection it belongs to: a
    /// room's over the room's (home for rooms not redirected; a leave also ends the
    /// room's route), a request or quick join over home, a token or a dropped
    /// connection over every connection. Under the table's lock, as every move of a
    /// room between connections is ([`Routes::redirect`], [`Routes::give_back`]), so
    /// the commands for a room reach it in the order they were sent.
    pub fn send(&self, command: Command) {
        let mut table = self.table.lock();
        // A closed home means the client is finished; callers learn it from events.
        let everywhere = |make: &dyn Fn() -> Command| {
            for to in table.connections(&self.home) {
                let _ = to.send(make());
            }
        };
        match command {
            Command::SetToken(token) => {
                // For connections opened from now on too.
                *self.token.lock() = Some(token.clone());
                everywhere(&|| Command::SetToken(token.clone()));
            }
            Command::DropConnection => everywhere(&|| Command::DropConnection),
            command => {
                let room = room_of(&command);
                let to = room.and_then(|room| table.route(room));
                if let (Command::Leave { .. }, Some(room)) = (&command, room) {
                    table.rooms.remove(room);
                    table.hops.remove(room);
                }
                let _ = to.as_ref().unwrap_or(&self.home).send(command);
            }
        }
    }

    /// The rooms that live on other nodes than home's.
    pub fn rooms_elsewhere(&self) -> Vec<String> {
        self.table.lock().rooms.keys().cloned().collect()
    }

    /// Every connection, home first, and none opened from now on (the client is
    /// closing: a redirect home reads after this is not followed).
    pub fn close_all(&self) -> Vec<mpsc::UnboundedSender<Command>> {
        let mut table = self.table.lock();
        table.closed = true;
        table.connections(&self.home).cloned().collect()
    }

    /// A relay redirected the join of `room` to `url`: joins it there (over a new
    /// connection unless one to that node is open; also when `url` is the configured
    /// URL and home has failed over from it, and it is back). The commands for the
    /// room that the redirected connection (`from`, home: `None`) had not read yet
    /// (`waiting`) follow the join, ahead of any sent later; its other commands stay,
    /// in order. An error says why not.
    pub fn redirect(
        self: &Arc<Self>,
        room: &str,
        room_type: &str,
        carried: Carried,
        url: &str,
        from: Option<&str>,
        waiting: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), (ErrorCode, String)> {
        let mut table = self.table.lock();
        if table.closed {
            return Err((ErrorCode::Unavailable, "the client is closed".to_string()));
        }
        let hops = table.hops.get(room).copied().unwrap_or(0) + 1;
        if hops > MAX_HOPS {
            table.rooms.remove(room);
            table.hops.remove(room);
            let message = format!("redirected {MAX_HOPS} times in a row; not following to {url}");
            return Err((ErrorCode::LimitExceeded, message));
        }
        let target = Target::parse(url).map_err(|e| (ErrorCode::Forbidden, e.to_string()))?;
        if target.scheme.uses_tls() != self.spawn.tls.is_some() {
            let message = format!(
                "redirected to {url}, which does not use the same kind of transport security as {}",
                self.spawn.config.url
            );
            return Err((ErrorCode::Forbidden, message));
        }
        table.rooms.insert(room.to_string(), url.to_string());
        table.hops.insert(room.to_string(), hops);
        let sender = match table.nodes.get(url) {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (tx, rx) = mpsc::unbounded_channel();
                table.nodes.insert(url.to_string(), tx.clone());
                self.run_driver(target, rx, Some(NODE_ATTEMPTS));
                tx
            }
        };
        let join = Command::Join {
            room: room.to_string(),
            room_type: room_type.to_string(),
            carried,
        };
        (sender.send(join)).map_err(|_| (ErrorCode::Unavailable, "the client is closed".to_string()))?;
        let own = match from {
            None => Some(&self.home),
            Some(from) => table.nodes.get(from),
        };
        let mut rest = Vec::new();
        while let Ok(command) = waiting.try_recv() {
            if room_of(&command) == Some(room) {
                let _ = sender.send(command);
            } else {
                rest.push(command);
            }
        }
        // Back at the end of the same queue: nothing else was sent to it meanwhile.
        for command in rest {
            let _ = own.unwrap_or(&self.home).send(command);
        }
        Ok(())
    }

    /// The room was joined: its redirects stop counting.
    pub fn joined(&self, room: &str) {
        self.table.lock().hops.remove(room);
    }

    /// Whether the node at `url` gave its rooms back home lately (see `Table::lost`).
    pub fn lost_lately(&self, url: &str) -> bool {
        (self.table.lock().lost.get(url)).is_some_and(|at| at.elapsed() < UNREACHABLE_FOR)
    }

    /// The room was left: it goes home again.
    pub fn left(&self, room: &str) {
        let mut table = self.table.lock();
        table.rooms.remove(room);
        table.hops.remove(room);
    }

    /// The node at `url` could not be reached again (`lost`), or stopped, or its
    /// connection has a new session there (which holds none of the seats): its rooms
    /// are joined again through home (which redirects them to their new owner, with
    /// home's member id), and the commands for them that its connection had not taken
    /// yet (`waiting`) follow, in order. (Each room with its type and what it takes
    /// along.)
    pub fn give_back(
        &self,
        url: &str,
        rooms: Vec<(String, String, Carried)>,
        waiting: &mut mpsc::UnboundedReceiver<Command>,
        lost: bool,
    ) {
        let mut table = self.table.lock();
        table.nodes.remove(url);
        table.lost.retain(|_, at| at.elapsed() < UNREACHABLE_FOR);
        if lost {
            table.lost.insert(url.to_string(), Instant::now());
        }
        // Rooms whose join there was not read yet go home with the commands below.
        table.rooms.retain(|_, node| node != url);
        for (room, room_type, carried) in rooms {
            table.rooms.remove(&room);
            let _ = self.home.send(Command::Join {
                room,
                room_type,
                carried,
            });
        }
        while let Ok(command) = waiting.try_recv() {
            // The rest (a token, a dropped connection, a close) went to home as well.
            if room_of(&command).is_some() {
                let _ = self.home.send(command);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientConfig, Stats, Trust};

    const NODE: &str = "wss://node-b.test/ws";

    /// Routes whose home connection is the returned receiver (no driver runs).
    fn routes() -> (Routes, mpsc::UnboundedReceiver<Command>) {
        let (home, home_rx) = mpsc::unbounded_channel();
        let (events, _) = mpsc::channel(1);
        let spawn = Spawn {
            config: ClientConfig::new("wss://home.test/ws", Trust::CertPem(String::new())),
            tls: None,
            events,
            shared: Arc::new(Shared {
                mirrors: Mutex::default(),
                ended: Mutex::default(),
                previous: Mutex::default(),
                told: Mutex::default(),
                stats: Stats::default(),
                client_id: "c".into(),
                input_seqs: Mutex::default(),
                closing: Default::default(),
                resume_token: Mutex::default(),
            }),
        };
        let routes = Routes {
            home,
            table: Mutex::default(),
            token: Mutex::default(),
            spawn,
        };
        (routes, home_rx)
    }

    fn input(room: &str, byte: u8) -> Command {
        Command::Input {
            room: room.into(),
            seq: u64::from(byte),
            payload: crate::proto::input::Payload::Intent(bytes::Bytes::from(vec![byte])),
        }
    }

    /// What each command in `rx` is, in order.
    fn drained(rx: &mut mpsc::UnboundedReceiver<Command>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|command| match command {
                Command::Join { room, .. } => format!("join {room}"),
                Command::Input {
                    room,
                    payload: crate::proto::input::Payload::Intent(intent),
                    ..
                } => format!("input {room} {}", intent[0]),
                Command::Leave { room } => format!("leave {room}"),
                _ => "other".into(),
            })
            .collect()
    }

    /// A node connection that gives its rooms back hands on the commands sent to it
    /// that it had not taken yet: after the rooms' joins, before anything sent later.
    #[test]
    fn commands_a_node_connection_had_not_taken_follow_its_rooms_home_in_order() {
        let (routes, mut home) = routes();
        let (node, mut node_rx) = mpsc::unbounded_channel();
        {
            let mut table = routes.table.lock();
            table.nodes.insert(NODE.into(), node);
            table.rooms.insert("r".into(), NODE.into());
        }
        routes.send(input("r", 1));
        routes.send(input("home-room", 2));
        routes.send(input("r", 3));
        assert_eq!(drained(&mut home), ["input home-room 2"]);

        routes.give_back(
            NODE,
            vec![("r".into(), String::new(), Carried::default())],
            &mut node_rx,
            true,
        );
        routes.send(input("r", 4));
        routes.send(Command::Leave { room: "r".into() });
        assert_eq!(
            drained(&mut home),
            ["join r", "input r 1", "input r 3", "input r 4", "leave r"]
        );
    }

    /// A relay that redirects a room to one unreachable node after another is followed
    /// `MAX_HOPS` times, not for ever: the room's count survives its trips back home.
    /// A join answered starts it again.
    /// A request about a room on another node (its listing, a resync) goes there:
    /// the session at home is not in it. Others go home.
    #[test]
    fn requests_about_a_room_go_to_its_node() {
        let (routes, mut home) = routes();
        let (node, mut node_rx) = mpsc::unbounded_channel();
        {
            let mut table = routes.table.lock();
            table.nodes.insert(NODE.into(), node);
            table.rooms.insert("r".into(), NODE.into());
        }
        let request = |kind| Command::Request {
            kind,
            reply: tokio::sync::oneshot::channel().0,
        };
        use proto::request::Kind;
        let update = |room: &str| {
            Kind::UpdateRoom(proto::UpdateRoom {
                room: room.into(),
                ..Default::default()
            })
        };
        routes.send(request(update("r")));
        routes.send(request(Kind::Resync(proto::Resync { room: "r".into() })));
        routes.send(request(update("home-room")));
        routes.send(request(Kind::ListRooms(proto::ListRooms::default())));
        let count = |rx: &mut mpsc::UnboundedReceiver<Command>| std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!((count(&mut node_rx), count(&mut home)), (2, 2));
    }

    #[test]
    fn redirects_count_across_rooms_given_back_home_until_a_join_is_answered() {
        let (routes, mut home) = routes();
        let routes = Arc::new(routes);
        let mut follow = |hop: u32| {
            let url = format!("ws://node-{hop}.test/ws"); // no TLS, as the routes here
            let (node, mut node_rx) = mpsc::unbounded_channel();
            routes.table.lock().nodes.insert(url.clone(), node);
            let followed = routes.redirect("r", "", Carried::default(), &url, None, &mut home);
            let back = vec![("r".to_string(), String::new(), Carried::default())];
            routes.give_back(&url, back, &mut node_rx, true);
            followed
        };
        for hop in 1..=MAX_HOPS {
            follow(hop).unwrap();
        }
        // (A redirect to one of them again would be waited out, see `lost_lately`.)
        assert!(routes.lost_lately("ws://node-1.test/ws"));
        assert!(!routes.lost_lately("ws://node-9.test/ws"));
        assert!(follow(MAX_HOPS + 1).is_err());
        follow(1).unwrap();
        routes.joined("r");
        for hop in 1..=MAX_HOPS {
            follow(hop).unwrap();
        }
    }

    /// A redirect moves the commands for its room that the redirected connection had
    /// not read yet to the room's new connection, behind the join and ahead of any
    /// sent later; the connection's other commands stay, in order.
    #[test]
    fn commands_waiting_for_a_redirected_room_follow_it_in_order() {
        const PLAIN_NODE: &str = "ws://node-b.test/ws"; // no TLS, as the routes here
        let (routes, mut home) = routes();
        let routes = Arc::new(routes);
        let (node, mut node_rx) = mpsc::unbounded_channel();
        routes.table.lock().nodes.insert(PLAIN_NODE.into(), node);
        routes.send(input("r", 1));
        routes.send(input("other", 2));
        routes.send(input("r", 3));
        // Home reads the redirect of r before those.
        routes
            .redirect("r", "", Carried::default(), PLAIN_NODE, None, &mut home)
            .unwrap();
        routes.send(input("r", 4));
        assert_eq!(drained(&mut node_rx), ["join r", "input r 1", "input r 3", "input r 4"]);
        assert_eq!(drained(&mut home), ["input other 2"]);
    }
}
