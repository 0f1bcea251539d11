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

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::link::Target;
use crate::{Carried, ClientConfig, Command, Event, Shared, driver};

/// Redirects in a row for one join before the client stops following them (nodes
/// that disagree about a room's owner settle within a lease; more means a loop).
const MAX_HOPS: u32 = 4;

/// Attempts to reconnect to a node other than home before its rooms go back home.
const NODE_ATTEMPTS: u32 = 3;

/// What a driver needs to start another driver.
pub(crate) struct Spawn {
    pub config: ClientConfig,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub events: mpsc::Sender<Event>,
    pub shared: Arc<Shared>,
}

#[derive(Default)]
struct Table {
    /// Connections to nodes other than home, by URL.
    nodes: HashMap<String, mpsc::UnboundedSender<Command>>,
    /// Rooms that live on another node: its URL, and redirects followed in a row.
    rooms: HashMap<String, (String, u32)>,
}

/// The room a command is for, if it is for one.
fn room_of(command: &Command) -> Option<&str> {
    match command {
        Command::Join { room, .. } | Command::Input { room, .. } | Command::Leave { room } => Some(room),
        Command::Event(event) => Some(&event.room),
        _ => None,
    }
}

impl Table {
    /// The connection to the node `room` lives on, if not home's.
    fn route(&self, room: &str) -> Option<mpsc::UnboundedSender<Command>> {
        let (url, _) = self.rooms.get(room)?;
        self.nodes.get(url).cloned()
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

    /// Sends a command for `room` over the room's connection (home for rooms not
    /// redirected); a leave also ends the room's route. Sent under the table's lock,
    /// so a node connection giving its rooms back ([`Routes::give_back`]) hands on
    /// every command sent to it before, and gets none after.
    pub fn send_for_room(&self, command: Command) {
        let mut table = self.table.lock();
        let room = room_of(&command);
        let to = room.and_then(|room| table.route(room));
        if let (Command::Leave { .. }, Some(room)) = (&command, room) {
            table.rooms.remove(room);
        }
        // A closed home means the client is finished; callers learn it from events.
        let _ = to.as_ref().unwrap_or(&self.home).send(command);
    }

    /// A command the connection to `from` (home: `None`) read for a room it does not
    /// have: sent on to the room's connection if the room moved there meanwhile (a
    /// redirect, or a node giving its rooms back), else given back (the room was
    /// left, or never joined). Under the table's lock, like [`Routes::send_for_room`],
    /// so it follows the join that moved the room.
    pub fn hand_on(&self, command: Command, from: Option<&str>) -> Option<Command> {
        let table = self.table.lock();
        let Some(room) = room_of(&command) else {
            return Some(command);
        };
        let to = table.rooms.get(room).map(|(url, _)| url.as_str());
        if to == from {
            return Some(command);
        }
        let sender = to.and_then(|url| table.nodes.get(url)).unwrap_or(&self.home);
        let _ = sender.send(command);
        None
    }

    /// Replaces the token for connections opened from now on (the open ones are
    /// told with `Command::SetToken`).
    pub fn set_token(&self, token: &str) {
        *self.token.lock() = Some(token.to_string());
    }

    /// The home connection.
    pub fn home(&self) -> &mpsc::UnboundedSender<Command> {
        &self.home
    }

    /// The rooms that live on other nodes than home's.
    pub fn rooms_elsewhere(&self) -> Vec<String> {
        self.table.lock().rooms.keys().cloned().collect()
    }

    /// Every connection, home first.
    pub fn all(&self) -> Vec<mpsc::UnboundedSender<Command>> {
        let table = self.table.lock();
        std::iter::once(self.home.clone())
            .chain(table.nodes.values().cloned())
            .collect()
    }

    /// A relay redirected the join of `room` to `url`: joins it there (over a new
    /// connection unless one to that node is open; also when `url` is the configured
    /// URL and home has failed over from it, and it is back). An error says why not.
    pub fn redirect(self: &Arc<Self>, room: &str, room_type: &str, carried: Carried, url: &str) -> Result<(), String> {
        let mut table = self.table.lock();
        let hops = table.rooms.get(room).map_or(0, |(_, hops)| *hops) + 1;
        if hops > MAX_HOPS {
            table.rooms.remove(room);
            return Err(format!("redirected {MAX_HOPS} times in a row; not following to {url}"));
        }
        let target = Target::parse(url).map_err(|e| e.to_string())?;
        if target.scheme.uses_tls() != self.spawn.tls.is_some() {
            return Err(format!(
                "redirected to {url}, which does not use the same kind of transport security as {}",
                self.spawn.config.url
            ));
        }
        table.rooms.insert(room.to_string(), (url.to_string(), hops));
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
        sender.send(join).map_err(|_| "the client is closed".to_string())
    }

    /// The room was joined: its redirects stop counting.
    pub fn joined(&self, room: &str) {
        if let Some((_, hops)) = self.table.lock().rooms.get_mut(room) {
            *hops = 0;
        }
    }

    /// The room was left: it goes home again.
    pub fn left(&self, room: &str) {
        self.table.lock().rooms.remove(room);
    }

    /// The node at `url` could not be reached again, or stopped: its rooms are joined
    /// again through home (which redirects them to their new owner), and the commands
    /// for them that its connection had not taken yet (`waiting`) follow, in order.
    /// (Each room with its type and what it takes along.)
    pub fn give_back(
        &self,
        url: &str,
        rooms: Vec<(String, String, Carried)>,
        waiting: &mut mpsc::UnboundedReceiver<Command>,
    ) {
        let mut table = self.table.lock();
        table.nodes.remove(url);
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
                stats: Stats::default(),
                client_id: "c".into(),
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
            table.rooms.insert("r".into(), (NODE.into(), 0));
        }
        routes.send_for_room(input("r", 1));
        routes.send_for_room(input("home-room", 2));
        routes.send_for_room(input("r", 3));
        assert_eq!(drained(&mut home), ["input home-room 2"]);

        routes.give_back(
            NODE,
            vec![("r".into(), String::new(), Carried::default())],
            &mut node_rx,
        );
        routes.send_for_room(input("r", 4));
        routes.send_for_room(Command::Leave { room: "r".into() });
        assert_eq!(
            drained(&mut home),
            ["join r", "input r 1", "input r 3", "input r 4", "leave r"]
        );
    }

    /// A command a connection read for a room that had moved on (a redirect it had
    /// not read yet when the command was sent) goes where the room is now; one for a
    /// room the client left is given back, never passed back and forth.
    #[test]
    fn a_command_for_a_room_that_moved_on_follows_it() {
        let (routes, mut home) = routes();
        let (node, mut node_rx) = mpsc::unbounded_channel();
        {
            let mut table = routes.table.lock();
            table.nodes.insert(NODE.into(), node);
            table.rooms.insert("r".into(), (NODE.into(), 0));
        }
        // Home read it after the redirect: on to the node.
        assert!(routes.hand_on(input("r", 1), None).is_none());
        // The node no longer has it, and the route still says the node: left.
        assert!(routes.hand_on(input("r", 2), Some(NODE)).is_some());
        assert_eq!(drained(&mut node_rx), ["input r 1"]);
        // Given back home meanwhile: home.
        routes.table.lock().rooms.remove("r");
        assert!(routes.hand_on(input("r", 3), Some(NODE)).is_none());
        assert_eq!(drained(&mut home), ["input r 3"]);
        // Home without the room and without a route: left (or never joined).
        assert!(routes.hand_on(input("r", 4), None).is_some());
        assert!(drained(&mut home).is_empty() && drained(&mut node_rx).is_empty());
    }
}
