use crate::engine::simulation::EntityLimits;
use crate::state::Tick;

/// A room's settings. Defaults: 30 Hz, 64 members, a 32-tick history.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomConfig {
    /// Ticks per second, 1–128.
    pub tick_rate: u32,
    /// Member cap (seats held for resume count).
    pub max_members: usize,
    /// How many ticks back a delta baseline may be; older baselines get a full snapshot.
    pub history: Tick,
    /// Send the state checksum every this many ticks (1: every tick).
    pub checksum_interval: Tick,
    /// A member whose room is idle still gets a (tiny) frame every this many ticks, so
    /// it sees the tick advance and a checksum. 0: once per second. At most the history
    /// in any case, so that a quiet member's baseline does not leave the window (the
    /// next change would cost it a full snapshot).
    pub idle_frame_every: Tick,
    /// Inputs a member may have queued for the next tick.
    pub input_queue: usize,
    /// Room events that may wait for the next tick.
    pub max_pending_events: usize,
    /// Caps on entities, fields and field sizes.
    pub limits: EntityLimits,
    /// The room's owner counts as away once it has sent no input for this many
    /// ticks (ownership passes on, see [`crate::engine::room::Room`]), for games
    /// whose owner sends inputs every tick and must be replaced fast when it freezes.
    /// 0: off (only a lost connection counts).
    pub owner_quiet: Tick,
    /// Benchmark baseline, never for players: every member gets a full snapshot every
    /// tick, changed or not, encoded separately for each member (no shared bodies, no
    /// deltas). It measures what delta compression and encode-once fan-out save.
    pub naive_fanout: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            tick_rate: 30,
            max_members: 64,
            history: 32,
            checksum_interval: 1,
            idle_frame_every: 0,
            // At least the default message burst (100), so a client within its rate limit
            // never overflows the queue of one tick.
            input_queue: 128,
            max_pending_events: 1024,
            limits: EntityLimits::default(),
            owner_quiet: 0,
            naive_fanout: false,
        }
    }
}

/// A room setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid room setting `{field}`: {problem}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl RoomConfig {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, field, problem| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError { field, problem })
            }
        };
        check((1..=128).contains(&self.tick_rate), "tick_rate", "must be 1-128")?;
        check(self.max_members >= 1, "max_members", "must be at least 1")?;
        check((1..=1024).contains(&self.history), "history", "must be 1-1024")?;
        check(self.checksum_interval >= 1, "checksum_interval", "must be at least 1")?;
        check(self.input_queue >= 1, "input_queue", "must be at least 1")?;
        check(self.max_pending_events >= 1, "max_pending_events", "must be at least 1")
    }

    /// `idle_frame_every` with 0 resolved to one second's worth of ticks, and at most
    /// the history.
    pub fn idle_frame_interval(&self) -> Tick {
        let every = if self.idle_frame_every == 0 {
            Tick::from(self.tick_rate.max(1))
        } else {
            self.idle_frame_every
        };
        every.min(self.history.max(1))
    }
}
