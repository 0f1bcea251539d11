//! The simulation threads: a fixed pool of dedicated OS threads (not the async
//! runtime), each owning a set of rooms and ticking each on its own
//! [`TickSchedule`](crate::engine::schedule::TickSchedule), all on one phase per thread (rooms of a tick rate are due
//! together, so a thread wakes once per period rather than once per room).
//!
//! Transports talk to rooms through [`SimPool`]: every call turns into a [`Command`]
//! on the owning thread's crossbeam channel. The channel is bounded by a count of
//! waiting commands rather than by a preallocated ring (so an idle thread's queue
//! costs no memory); a send never blocks, and one over the bound is answered with
//! [`PoolError::Busy`]. Sending does not wake the thread either (only a join, a
//! close, a checkpoint request and shutdown do): it sleeps until its next tick and
//! takes what is queued then. Rooms answer through the members'
//! outboxes. A room lives on one thread for its whole life, so a
//! heavy room delays only rooms on its own thread, and a panicking simulation takes
//! down only its own room.
//!
//! Here: the pool (opening, finding, listing rooms; sending commands). In `shard`:
//! what one simulation thread does with its rooms, sans IO (on a clock passed in);
//! in `thread`: the thread's loop around it (sleeping, receiving commands); in
//! `checkpoints`: rooms' checkpoints in cluster mode; in `creation`: the room
//! creation limits per creator. What the pool offers sessions (the [`Rooms`] trait, handles, commands, errors) is in
//! [`crate::engine::rooms`].

mod checkpoints;
mod creation;
mod shard;
mod thread;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::engine::listing::{self, ListingState, Metadata};
use crate::engine::pacer::Pacer;
use crate::engine::room::{Room, RoomConfig};
use crate::engine::rooms::{
    Command, LIST_SCAN, MAX_ROOMS_PER_PAGE, PoolError, RoomFilter, RoomHandle, RoomShared, Rooms,
};
use crate::engine::simulation::Simulation;
use crate::log_budget::LogBudget;
use crate::metrics::SimMetrics;
use crate::proto::{self, input};
use crate::state::Tick;

pub use checkpoints::{Checkpoint, Checkpoints};
pub use creation::CreationLimits;
use creation::Creators;
use shard::{PoolSide, Shard, SystemClock};
use thread::SimThread;

/// Room created and closed lines: at most 20 a second (`suppressed` counts the rest).
static ROOM_LOGS: LogBudget = LogBudget::new("rooms", 20);

/// Builds the simulation of a new room.
pub type SimFactory = Arc<dyn Fn() -> Box<dyn Simulation> + Send + Sync>;

/// A room type: its settings and how to build its simulation.
#[derive(Clone)]
pub struct RoomType {
    /// Settings of rooms of this type.
    pub config: RoomConfig,
    /// Builds a room's simulation.
    pub factory: SimFactory,
}

impl std::fmt::Debug for RoomType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomType").field("config", &self.config).finish()
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of simulation threads (default: one per core).
    pub threads: usize,
    /// Commands that may wait for one thread.
    pub channel_capacity: usize,
    /// Maximum number of rooms on the server.
    pub max_rooms: usize,
    /// Ticks a late room may run back to back before dropping the backlog.
    pub max_catch_up: u32,
    /// An empty room is closed after this long.
    pub empty_room_ttl: Duration,
    /// The room type used when a join names none.
    pub default_room_type: String,
    /// Known room types by name.
    pub room_types: HashMap<String, RoomType>,
    /// Room creations per creator.
    pub creation: CreationLimits,
    /// Cluster mode: where rooms' checkpoints go, and how often.
    pub checkpoints: Option<Checkpoints>,
    /// Ids of the rooms the configuration creates: they stay open while empty, also
    /// when a join or a restore opens them (cluster mode: on a node other than the one
    /// that created them).
    pub configured_rooms: HashSet<String>,
    /// The I/O threads' pacer: told when each thread ticks next, and handed the
    /// wake-ups of each turn in one batch (none: wake-ups happen as they come).
    pub pacer: Option<Arc<Pacer>>,
}

impl Rooms for SimPool {
    fn open(&self, id: &str, room_type: &str, creator: &str, listing: ListingState) -> Result<RoomHandle, PoolError> {
        self.open_room(id, room_type, false, Some(creator), OpenAs::New(listing))
            .map(|(handle, _)| handle)
    }

    fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle> {
        SimPool::pick(self, room_type, filters, skip)
    }

    fn find(&self, id: &str) -> Option<RoomHandle> {
        self.room(id)
    }

    fn send(&self, room: &RoomHandle, command: Command) -> Result<(), PoolError> {
        SimPool::send(self, room, command)
    }

    fn send_owed(&self, room: &RoomHandle, command: Command) {
        // (False only when the thread is gone, with its rooms.)
        let _ = self.workers[room.thread].send_unbounded(command);
    }

    fn handed_off(&self) -> bool {
        self.handed_off.load(Ordering::Acquire)
    }

    fn list(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>) {
        self.list_rooms(filter, after, limit, max_bytes)
    }
}

/// How [`SimPool::open_room`] opens a room that is not open.
enum OpenAs<'a> {
    /// A new room with this listing.
    New(ListingState),
    /// As its checkpoint left it.
    Restore(&'a proto::RoomCheckpoint),
}

/// Rooms by id, in id order (so listings page).
type RoomsById = BTreeMap<Arc<str>, RoomHandle>;

/// Payload bytes (inputs, events) that may wait in one simulation thread's queue:
/// the queue's count bound alone would let large events (published through the HTTP
/// API, say) hold a gigabyte while the thread is late.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What waits in one simulation thread's queue: sent and not yet received.
#[derive(Debug, Default)]
struct Queued {
    commands: AtomicUsize,
    bytes: AtomicUsize,
}

/// Payloads smaller than this are not counted against [`MAX_QUEUED_BYTES`] (the
/// count bound holds them to a few MiB), so the common small input costs no shared
/// counter.
const COUNTED_PAYLOAD_BYTES: usize = 256;

impl Command {
    /// The payload bytes it carries, when they count against [`MAX_QUEUED_BYTES`].
    fn counted_bytes(&self) -> usize {
        let bytes = match self {
            Command::Input { payload, .. } => match payload {
                input::Payload::Intent(intent) => intent.len(),
                input::Payload::Writes(writes) => prost::Message::encoded_len(writes),
            },
            Command::Event { event, .. } => event.payload.len() + event.kind.len(),
            _ => 0,
        };
        if bytes >= COUNTED_PAYLOAD_BYTES { bytes } else { 0 }
    }
}

/// A command on its way to a thread, with its counted bytes.
type Queuing = (Command, usize);

struct Worker {
    tx: Sender<Queuing>,
    queued: Arc<Queued>,
    rooms: Arc<AtomicU32>,
    /// How busy the thread is (see `PoolSide::load`).
    load: Arc<AtomicU32>,
    join: Option<JoinHandle<()>>,
    /// Held (read) while an event, a user's removal or a close for this thread is
    /// checked against `SimPool::handed_off` and sent, and (write) while the thread is
    /// sent its `HandOff`: such a command is either queued before it (and in the
    /// checkpoint) or refused. One per thread: commands for other threads do not touch
    /// it.
    hand_off_gate: RwLock<()>,
}

impl Worker {
    /// Queues a command unless `capacity` commands, or [`MAX_QUEUED_BYTES`] of
    /// payloads, already wait.
    fn send(&self, command: Command, capacity: usize) -> Result<(), PoolError> {
        let bytes = command.counted_bytes();
        if self.queued.commands.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.queued.commands.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Busy);
        }
        if bytes > 0 && self.queued.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes > MAX_QUEUED_BYTES {
            self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.queued.commands.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::Busy);
        }
        self.tx.send((command, bytes)).map_err(|_| PoolError::ShutDown)
    }

    /// Queues a command of the pool's own (a stop, a checkpoint), whatever waits;
    /// false when the thread is gone.
    fn send_unbounded(&self, command: Command) -> bool {
        // Counted like any command: the thread uncounts what it receives.
        self.queued.commands.fetch_add(1, Ordering::AcqRel);
        self.tx.send((command, 0)).is_ok()
    }
}

/// Where a new room goes, of threads given as (load in thousandths of their time,
/// rooms): the least busy, in tenths of its time (a thread's rooms differ in cost: one
/// kept busy by a few large rooms would otherwise take the next rooms as readily as
/// an idle one with more), then the one with fewest rooms, then the first.
fn least_busy(threads: impl Iterator<Item = (u32, u32)>) -> usize {
    (threads.enumerate())
        .min_by_key(|&(i, (load, rooms))| (load / 100, rooms, i))
        .map_or(0, |(i, _)| i)
}

/// The pool; see the module documentation.
pub struct SimPool {
    workers: Vec<Worker>,
    directory: Arc<Mutex<RoomsById>>,
    creators: Arc<Creators>,
    next_key: AtomicU64,
    config: PoolConfig,
    metrics: Arc<SimMetrics>,
    /// Set by [`SimPool::hand_off`]: the rooms take no more events (see
    /// `Worker::hand_off_gate`).
    handed_off: AtomicBool,
}

impl std::fmt::Debug for SimPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPool")
            .field("threads", &self.workers.len())
            .field("rooms", &self.directory.lock().len())
            .finish()
    }
}

impl SimPool {
    /// Starts the simulation threads.
    pub fn start(config: PoolConfig) -> std::io::Result<Self> {
        let metrics = Arc::new(SimMetrics::default());
        let directory = Arc::new(Mutex::new(RoomsById::new()));
        let creators = Arc::new(Creators::default());
        let workers = (0..config.threads.max(1))
            .map(|i| {
                let (tx, rx) = crossbeam_channel::unbounded();
                let queued = Arc::new(Queued::default());
                let rooms = Arc::new(AtomicU32::new(0));
                let load = Arc::new(AtomicU32::new(0));
                let pool = PoolSide {
                    room_count: rooms.clone(),
                    directory: directory.clone(),
                    creators: creators.clone(),
                    metrics: metrics.clone(),
                    load: load.clone(),
                };
                let (catch_up, ttl, checkpoints) =
                    (config.max_catch_up, config.empty_room_ttl, config.checkpoints.clone());
                let shard = Shard::new(pool, catch_up, ttl, checkpoints, Box::new(SystemClock));
                let thread = SimThread {
                    rx,
                    queued: queued.clone(),
                    shard,
                    pacer: config.pacer.clone(),
                    number: i,
                };
                let join = std::thread::Builder::new()
                    .name(format!("tickrelay-sim-{i}"))
                    .spawn(move || thread.run())?;
                Ok(Worker {
                    tx,
                    queued,
                    rooms,
                    load,
                    join: Some(join),
                    hand_off_gate: RwLock::new(()),
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            workers,
            directory,
            creators,
            next_key: AtomicU64::new(1),
            config,
            metrics,
            handed_off: AtomicBool::new(false),
        })
    }

    /// Server-wide simulation counters.
    pub fn metrics(&self) -> &Arc<SimMetrics> {
        &self.metrics
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Whether the pool holds its maximum number of rooms (a new one would be refused).
    pub fn is_full(&self) -> bool {
        self.directory.lock().len() >= self.config.max_rooms
    }

    /// The room with this id, if open.
    pub fn room(&self, id: &str) -> Option<RoomHandle> {
        self.directory.lock().get(id).cloned()
    }

    /// The room with this id, created with `room_type` (or the default type when
    /// empty) if it does not exist. The new room goes to the least busy thread.
    /// (Counted against no creator: for the server itself and tests.)
    pub fn get_or_create(&self, id: &str, room_type: &str) -> Result<RoomHandle, PoolError> {
        self.open_room(id, room_type, false, None, OpenAs::New(ListingState::default()))
            .map(|(handle, _)| handle)
    }

    /// Creates a room that stays open while empty (rooms from the configuration),
    /// listed with `metadata`.
    pub fn create_persistent(&self, id: &str, room_type: &str, metadata: &Metadata) -> Result<RoomHandle, PoolError> {
        self.open_room(
            id,
            room_type,
            true,
            None,
            OpenAs::New(ListingState::listed_as(metadata)),
        )
        .map(|(handle, _)| handle)
    }

    /// Opens a room as its checkpoint left it (cluster mode: the node that held it
    /// died or stopped), unless a room with its id is open already (then `None`: two
    /// joins may race to restore it). Counted against no creator.
    pub fn restore(&self, checkpoint: &proto::RoomCheckpoint) -> Result<Option<RoomHandle>, PoolError> {
        let opening = OpenAs::Restore(checkpoint);
        let (handle, opened) = self.open_room(&checkpoint.room, &checkpoint.room_type, false, None, opening)?;
        Ok(opened.then_some(handle))
    }

    /// See [`Rooms::pick`].
    pub fn pick(&self, room_type: &str, filters: &Metadata, skip: &dyn Fn(&RoomShared) -> bool) -> Option<RoomHandle> {
        let filter = RoomFilter {
            room_type: if room_type.is_empty() {
                &self.config.default_room_type
            } else {
                room_type
            },
            metadata: filters,
            open_only: true,
        };
        if !self.config.room_types.contains_key(filter.room_type) {
            return None; // opening one will say why
        }
        // Under the directory's lock (everyone's), the rooms of the asked type that
        // are neither private, locked nor full and whose metadata may match the
        // filters (told by atomics: however many other rooms there are, they take
        // nothing of the scan); `LIST_SCAN` of them from a random one on, wrapping, so
        // that rooms whose ids sort first cannot hide the others. The filters run
        // exactly outside the lock.
        let wanted = listing::Wanted::of(filters);
        let scan: Vec<RoomHandle> = {
            let directory = self.directory.lock();
            let open: Vec<&RoomHandle> = (directory.values())
                .filter(|h| {
                    *h.shared.room_type == *filter.room_type
                        && h.shared.pickable()
                        && h.shared.listing.may_match(&wanted)
                })
                .collect();
            let start = if open.len() > LIST_SCAN {
                fastrand::usize(..open.len())
            } else {
                0
            };
            let (later, first) = open.split_at(start);
            (first.iter().chain(later))
                .take(LIST_SCAN)
                .map(|&h| h.clone())
                .collect()
        };
        let mut open: Vec<(u32, RoomHandle)> = (scan.into_iter())
            .filter(|h| h.shared.listed(&filter) && !skip(&h.shared))
            .map(|h| (h.shared.seats_taken(), h))
            .collect();
        // The fullest first (the first in id order on a tie); a seat is reserved only
        // while one is free, so two quick joins never take the last seat twice.
        open.sort_by_key(|(taken, _)| std::cmp::Reverse(*taken));
        open.into_iter().map(|(_, h)| h).find(|h| h.shared.reserve_seat())
    }

    fn open_room(
        &self,
        id: &str,
        room_type: &str,
        persistent: bool,
        creator: Option<&str>,
        opening: OpenAs<'_>,
    ) -> Result<(RoomHandle, bool), PoolError> {
        // An open room is joined as it is; a new one is built outside the directory's
        // lock (the simulation's factory, schema and restore may take a while), and
        // looked for again before it is entered: of two joins racing to open one id,
        // the second finds the first's room and drops its own.
        if let Some(open) = self.open_already(&self.directory.lock(), id, room_type)? {
            return Ok((open, false));
        }
        let type_name = if room_type.is_empty() {
            self.config.default_room_type.as_str()
        } else {
            room_type
        };
        let spec = self
            .config
            .room_types
            .get(type_name)
            .ok_or_else(|| PoolError::unknown_room_type(type_name, self.config.room_types.keys()))?;
        let creator = creator
            .map(|c| self.creators.take(&self.config.creation, c, Instant::now()))
            .transpose()?;
        let give_back = || {
            if let Some(creator) = &creator {
                self.creators.release(creator);
            }
        };
        let refuse = |e: PoolError| {
            give_back();
            Err(e)
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = id.into();
        let type_name: Arc<str> = type_name.into();
        // The simulation's own code runs here (its factory, schema, restore): a panic
        // refuses this join, as a panic in a tick closes only its room.
        let built = catch_unwind(AssertUnwindSafe(|| match opening {
            OpenAs::New(listing) => {
                let mut room = Room::new(
                    key,
                    id.clone(),
                    type_name.clone(),
                    spec.config.clone(),
                    (spec.factory)(),
                );
                room.set_listing(listing);
                Ok(room)
            }
            OpenAs::Restore(checkpoint) => {
                let grace = self
                    .config
                    .checkpoints
                    .as_ref()
                    .map_or(Duration::ZERO, |c| c.seat_grace);
                let seat_ticks = (grace.as_secs_f64() * f64::from(spec.config.tick_rate)).ceil() as Tick;
                let restored = Room::restore(key, spec.config.clone(), (spec.factory)(), checkpoint, seat_ticks);
                restored.map_err(|e| PoolError::Unrestorable(e.to_string()))
            }
        }));
        let room = match built {
            Ok(Ok(room)) => room,
            Ok(Err(e)) => return refuse(e),
            Err(_) => {
                tracing::error!(room = %id, room_type = %type_name, "simulation panicked as the room opened");
                self.metrics.room_panics.inc();
                return refuse(PoolError::SimulationFailed);
            }
        };
        let mut directory = self.directory.lock();
        match self.open_already(&directory, &id, room_type) {
            Ok(None) => {}
            Ok(Some(open)) => {
                drop(directory);
                give_back();
                return Ok((open, false));
            }
            Err(e) => return refuse(e),
        }
        let shared = Arc::new(RoomShared::of(id.clone(), type_name, &room, creator.clone()));
        let thread = least_busy(
            (self.workers.iter()).map(|w| (w.load.load(Ordering::Relaxed), w.rooms.load(Ordering::Relaxed))),
        );
        let handle = RoomHandle {
            key,
            shared: shared.clone(),
            thread,
        };
        // Sent under the lock: whoever finds the room in the directory sends its
        // commands after the thread has it.
        let sent = self.workers[thread].send(
            Command::Create(
                Box::new(room),
                shared,
                persistent || self.config.configured_rooms.contains(&*id),
            ),
            self.config.channel_capacity,
        );
        if let Err(e) = sent {
            return refuse(e);
        }
        self.workers[thread].rooms.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = ROOM_LOGS.take(Instant::now()) {
            tracing::info!(room = %id, room_type = %handle.shared.room_type, thread, suppressed, "room created");
        }
        directory.insert(id, handle.clone());
        Ok((handle, true))
    }

    /// The room `id` if it is open (and `room_type` is its type, or empty), or `None`
    /// if the directory has room for it.
    fn open_already(&self, directory: &RoomsById, id: &str, room_type: &str) -> Result<Option<RoomHandle>, PoolError> {
        match directory.get(id) {
            // An empty type joins whatever the room is; another type is a mistake to
            // report, not to paper over.
            Some(handle) if !room_type.is_empty() && *handle.shared.room_type != *room_type => {
                Err(PoolError::RoomTypeMismatch {
                    room: id.to_string(),
                    existing: handle.shared.room_type.to_string(),
                })
            }
            Some(handle) => Ok(Some(handle.clone())),
            None if directory.len() >= self.config.max_rooms => Err(PoolError::TooManyRooms),
            None => Ok(None),
        }
    }

    /// One page of the rooms `filter` lists, in id order: at most `limit` (capped at
    /// [`MAX_ROOMS_PER_PAGE`]) whose ids sort after `after` (empty: from the start),
    /// and where the next page starts (none: this is the last). A page looks at
    /// [`LIST_SCAN`] rooms at most, so a selective filter may answer a short page
    /// (even an empty one) that is not the last. It stops once its rooms are past
    /// `max_bytes` (see [`listing::listed_bytes`]). Under the directory's lock it only
    /// takes handles of the rooms it will look at; the filters run outside it.
    pub fn list_rooms(
        &self,
        filter: &RoomFilter<'_>,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<proto::RoomInfo>, Option<String>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let limit = limit.min(MAX_ROOMS_PER_PAGE);
        let lower = if after.is_empty() { Unbounded } else { Excluded(after) };
        // Taken under the directory's lock (everyone's), filtered outside it.
        let scan: Vec<Arc<RoomShared>> = (self.directory.lock().range::<str, _>((lower, Unbounded)))
            .take(LIST_SCAN + 1)
            .map(|(_, handle)| handle.shared.clone())
            .collect();
        let mut rooms = Vec::new();
        let (mut last, mut bytes) = (None, 0);
        for (scanned, shared) in scan.iter().enumerate() {
            if rooms.len() == limit || scanned == LIST_SCAN || bytes > max_bytes {
                return (rooms, last.map(|shared: &Arc<RoomShared>| shared.id.to_string()));
            }
            last = Some(shared);
            if shared.listed(filter) {
                let info = shared.info();
                bytes += listing::listed_bytes(&info);
                rooms.push(info);
            }
        }
        (rooms, None)
    }

    /// Every open room, in id order (a snapshot for the cluster's leases).
    pub fn all_rooms(&self) -> Vec<Arc<RoomShared>> {
        self.directory.lock().values().map(|h| h.shared.clone()).collect()
    }

    /// The node is stopping: asks every thread to checkpoint all its rooms now and
    /// then tick them no more (so a room's checkpoint holds every input it
    /// acknowledged); each thread then sends [`Checkpoint::Flushed`]. Returns how many
    /// threads were asked (the number of `Flushed` to wait for). Cluster mode only
    /// (without a sink: 0, and the rooms run on until shutdown).
    pub fn hand_off(&self) -> usize {
        if self.config.checkpoints.is_none() {
            return 0;
        }
        // Before the rooms are told: an event taken after this would be acknowledged
        // to its sender and never relayed.
        self.handed_off.store(true, Ordering::Release);
        let mut asked = 0;
        for worker in &self.workers {
            let _gate = worker.hand_off_gate.write();
            if worker.send_unbounded(Command::HandOff) {
                asked += 1;
                if let Some(join) = &worker.join {
                    join.thread().unpark();
                }
            }
        }
        asked
    }

    /// Sends a command to the room's thread without blocking. A command that may find
    /// the room empty (anything but what its members send) wakes the thread: a thread
    /// whose rooms are all empty sleeps until the first of them expires.
    pub fn send(&self, room: &RoomHandle, command: Command) -> Result<(), PoolError> {
        let from_member = matches!(
            command,
            Command::Input { .. }
                | Command::Event { .. }
                | Command::Leave { .. }
                | Command::Resync { .. }
                | Command::UpdateRoom { .. }
        );
        let worker = &self.workers[room.thread];
        // What the checkpoint must hold if taken: refused once the rooms are handed off.
        let gated = matches!(
            command,
            Command::Event { .. }
                | Command::RemoveUser { .. }
                | Command::Close { .. }
                | Command::Join { .. }
                | Command::UpdateRoom { .. }
        );
        let gate = gated.then(|| worker.hand_off_gate.read());
        if gate.is_some() && self.handed_off.load(Ordering::Acquire) {
            return Err(PoolError::Unavailable("this node is stopping".into()));
        }
        worker.send(command, self.config.channel_capacity)?;
        if !from_member && let Some(join) = &worker.join {
            join.thread().unpark();
        }
        Ok(())
    }

    /// The last checkpoint of the room with this id did not reach the directory (see
    /// [`Command::CheckpointAgain`]); nothing for a room no longer open.
    pub fn checkpoint_again(&self, id: &str) {
        if let Some(room) = self.room(id) {
            self.send_owed(&room, Command::CheckpointAgain { room: room.key });
        }
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(&mut self) {
        for worker in &self.workers {
            let _ = worker.send_unbounded(Command::Shutdown);
            // A thread sleeping until its next tick takes the command now.
            if let Some(join) = &worker.join {
                join.thread().unpark();
            }
        }
        for worker in &mut self.workers {
            if let Some(join) = worker.join.take() {
                let _ = join.join();
            }
        }
        self.directory.lock().clear();
    }
}

impl Drop for SimPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
