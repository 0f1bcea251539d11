use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{SimContext, SimError, Simulation};
use crate::proto::input;
use crate::state::{EntityId, FieldId, FieldSpec, FieldType, KindSchema, MemberId, SERVER, Schema, SchemaError, Value};

/// Field id of an arena entity's x position (float).
pub const FIELD_X: FieldId = 1;
/// Field id of an arena entity's y position (float).
pub const FIELD_Y: FieldId = 2;
/// Entity kind of a member's avatar.
pub const KIND_AVATAR: u32 = 1;
/// Entity kind of a server-owned wandering NPC.
pub const KIND_NPC: u32 = 2;

/// Arena parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArenaConfig {
    /// Width of the arena; x is in `0..=width`.
    pub width: f32,
    /// Height of the arena; y is in `0..=height`.
    pub height: f32,
    /// Server-owned NPCs that wander around.
    pub npcs: u32,
    /// Avatar speed at full intent, units per second.
    pub avatar_speed: f32,
    /// NPC speed, units per second.
    pub npc_speed: f32,
    /// Share of the NPCs that wander (0.0–1.0); the others stand still, like guards.
    /// Benchmarks use it to set how much of the world changes per tick.
    pub npc_moving_share: f32,
    /// Seed of the NPCs' random walk (deterministic per seed).
    pub seed: u64,
    /// Positions are sent (and checksummed) rounded to this step.
    pub precision: f64,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        Self {
            width: 100.0,
            height: 100.0,
            npcs: 16,
            avatar_speed: 10.0,
            npc_speed: 4.0,
            npc_moving_share: 1.0,
            seed: 1,
            precision: 0.01,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mover {
    id: EntityId,
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
}

/// An example authoritative game: each member gets an avatar that the server moves
/// according to the member's latest movement intent, inside the arena's bounds, while
/// server-owned NPCs wander at random.
///
/// Intent format: exactly two bytes, `dx` and `dy` as signed 8-bit integers; the
/// avatar moves at `avatar_speed * (dx, dy) / 127` (-128 as -127) until the next
/// intent.
#[derive(Debug)]
pub struct Arena {
    config: ArenaConfig,
    rng: fastrand::Rng,
    avatars: FxHashMap<MemberId, Mover>,
    npcs: Vec<Mover>,
    next_id: EntityId,
    /// Avatars spawned so far: where the next one goes (see `join`).
    spawned: u32,
}

impl ArenaConfig {
    /// Where x and y stop: `width` and `height` down to the last point of the
    /// precision's grid (a wall off the grid would hold positions that do not fit
    /// the declaration).
    pub fn walls(&self) -> (f32, f32) {
        let on_grid = |extent: f32| ((f64::from(extent) / self.precision + 1e-9).floor() * self.precision) as f32;
        (on_grid(self.width), on_grid(self.height))
    }

    /// The declared kinds: avatars and NPCs, each with x in `0..=width` and y in
    /// `0..=height` at `precision`.
    pub fn schema(&self) -> Result<Schema, SchemaError> {
        let p = self.precision;
        let position = [
            FieldSpec::new(FIELD_X, "x", FieldType::float(0.0, f64::from(self.width), p)?),
            FieldSpec::new(FIELD_Y, "y", FieldType::float(0.0, f64::from(self.height), p)?),
        ];
        Schema::new(vec![
            KindSchema::new(KIND_AVATAR, "avatar", position.to_vec())?,
            KindSchema::new(KIND_NPC, "npc", position.to_vec())?,
        ])
    }
}

impl Arena {
    /// A new arena; NPCs spawn on the first tick. Its configuration must give a valid
    /// schema ([`ArenaConfig::schema`]; the server's configuration checks it).
    pub fn new(config: ArenaConfig) -> Self {
        Self {
            config,
            rng: fastrand::Rng::with_seed(config.seed),
            avatars: FxHashMap::default(),
            npcs: Vec::new(),
            next_id: 1,
            spawned: 0,
        }
    }

    fn allocate_id(&mut self) -> EntityId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn random_heading(&mut self, speed: f32) -> (f32, f32) {
        let angle = self.rng.f32() * std::f32::consts::TAU;
        (angle.cos() * speed, angle.sin() * speed)
    }

    fn spawn_npcs(&mut self, ctx: &mut SimContext<'_>) {
        let (width, height) = self.config.walls();
        for _ in 0..self.config.npcs {
            let id = self.allocate_id();
            let (x, y) = (self.rng.f32() * width, self.rng.f32() * height);
            let (vx, vy) = self.random_heading(self.config.npc_speed);
            let _ = ctx.world.spawn(
                id,
                SERVER,
                KIND_NPC,
                [(FIELD_X, Value::Float(x)), (FIELD_Y, Value::Float(y))],
            );
            self.npcs.push(Mover { id, x, y, vx, vy });
        }
    }
}

/// Moves `m` by one tick, bouncing off the walls, and writes its position.
fn advance(m: &mut Mover, dt: f32, width: f32, height: f32, ctx: &mut SimContext<'_>) {
    m.x += m.vx * dt;
    m.y += m.vy * dt;
    if !(0.0..=width).contains(&m.x) {
        m.vx = -m.vx;
        m.x = m.x.clamp(0.0, width);
    }
    if !(0.0..=height).contains(&m.y) {
        m.vy = -m.vy;
        m.y = m.y.clamp(0.0, height);
    }
    if let Some(mut entity) = ctx.world.entity_mut(m.id) {
        // In range by construction: inside the walls, which are on the grid.
        let set = [(FIELD_X, m.x), (FIELD_Y, m.y)].map(|(field, v)| entity.set(field, Value::Float(v)));
        debug_assert!(set.iter().all(Result::is_ok), "{set:?}");
    }
}

impl Simulation for Arena {
    fn schema(&self) -> Arc<Schema> {
        Arc::new(self.config.schema().expect("arena settings checked at start-up"))
    }

    fn join(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        let id = self.allocate_id();
        // The first avatar at the centre, the others around it (the golden angle
        // apart), so that two players who just joined see each other.
        let (w, h) = (self.config.width, self.config.height);
        let k = self.spawned as f32;
        self.spawned += 1;
        let (radius, angle) = (w.min(h) / 10.0 * k.min(1.0), k * 2.399_963);
        let (x, y) = (w / 2.0 + radius * angle.cos(), h / 2.0 + radius * angle.sin());
        let _ = ctx.world.spawn(
            id,
            member,
            KIND_AVATAR,
            [(FIELD_X, Value::Float(x)), (FIELD_Y, Value::Float(y))],
        );
        self.avatars.insert(
            member,
            Mover {
                id,
                x,
                y,
                vx: 0.0,
                vy: 0.0,
            },
        );
    }

    fn restore(&mut self, ctx: &mut SimContext<'_>, _members: &[MemberId]) {
        self.avatars.clear();
        self.npcs.clear();
        self.next_id = 1;
        let float = |e: &crate::state::Entity, field| match e.get(field) {
            Some(Value::Float(v)) => *v,
            _ => 0.0,
        };
        for e in ctx.world.entities() {
            self.next_id = self.next_id.max(e.id() + 1);
            let (x, y) = (float(e, FIELD_X), float(e, FIELD_Y));
            match e.kind() {
                // Headings are not in the state: NPCs set off in new directions.
                KIND_NPC => {
                    let (vx, vy) = self.random_heading(self.config.npc_speed);
                    self.npcs.push(Mover {
                        id: e.id(),
                        x,
                        y,
                        vx,
                        vy,
                    });
                }
                KIND_AVATAR => {
                    let avatar = Mover {
                        id: e.id(),
                        x,
                        y,
                        vx: 0.0,
                        vy: 0.0,
                    };
                    self.avatars.insert(e.owner(), avatar);
                }
                _ => {}
            }
        }
        // The next avatar goes beside those restored, not on the centre again.
        self.spawned = self.avatars.len() as u32;
    }

    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        if let Some(avatar) = self.avatars.remove(&member) {
            let _ = ctx.world.despawn(avatar.id);
        }
    }

    fn input(&mut self, _ctx: &mut SimContext<'_>, member: MemberId, payload: &input::Payload) -> Result<(), SimError> {
        let (dx, dy) = super::stick_intent(payload)?;
        let speed = self.config.avatar_speed;
        // Joins are applied before inputs in a tick, so the avatar exists.
        if let Some(avatar) = self.avatars.get_mut(&member) {
            (avatar.vx, avatar.vy) = (dx * speed, dy * speed);
        }
        Ok(())
    }

    fn step(&mut self, ctx: &mut SimContext<'_>) {
        if self.npcs.is_empty() && self.config.npcs > 0 {
            self.spawn_npcs(ctx);
        }
        let ((w, h), dt) = (self.config.walls(), ctx.dt);
        let moving = (self.npcs.len() as f32 * self.config.npc_moving_share.clamp(0.0, 1.0)).round() as usize;
        for i in 0..moving {
            // Turn now and then: about once every two seconds on average.
            if self.rng.f32() < dt / 2.0 {
                let (vx, vy) = self.random_heading(self.config.npc_speed);
                self.npcs[i].vx = vx;
                self.npcs[i].vy = vy;
            }
            advance(&mut self.npcs[i], dt, w, h, ctx);
        }
        for avatar in self.avatars.values_mut() {
            advance(avatar, dt, w, h, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::listing::Listing;
    use crate::engine::simulation::{EntityLimits, Requests, Roster};
    use crate::state::World;

    static LISTING: Listing = Listing::unlisted();
    static ROSTER: Roster = Roster::new();

    fn ctx<'a>(world: &'a mut World, requests: &'a mut Requests, tick: u64) -> SimContext<'a> {
        world.begin_tick(tick);
        SimContext {
            room: "arena",
            world,
            tick,
            dt: 1.0 / 30.0,
            limits: EntityLimits::default(),
            listing: &LISTING,
            requests,
            members: &ROSTER,
        }
    }

    #[test]
    fn avatars_that_join_together_do_not_overlap() {
        let mut arena = Arena::new(ArenaConfig {
            npcs: 0,
            ..Default::default()
        });
        let mut world = World::with_schema(32, arena.schema());
        let mut events = Requests::default();
        for member in 1..=5 {
            arena.join(&mut ctx(&mut world, &mut events, 1), member);
        }
        let mut spots: Vec<(i64, i64)> = (world.entities())
            .map(|e| match (e.get(FIELD_X), e.get(FIELD_Y)) {
                (Some(Value::Float(x)), Some(Value::Float(y))) => {
                    assert!((0.0..=100.0).contains(x) && (0.0..=100.0).contains(y), "{x},{y}");
                    ((x * 100.0) as i64, (y * 100.0) as i64)
                }
                _ => panic!("entity {} lacks a position", e.id()),
            })
            .collect();
        spots.sort_unstable();
        spots.dedup();
        assert_eq!(spots.len(), 5, "{spots:?}");
    }

    #[test]
    fn avatars_follow_intents_and_stay_in_bounds() {
        let mut arena = Arena::new(ArenaConfig {
            npcs: 4,
            ..Default::default()
        });
        let mut world = World::with_schema(32, arena.schema());
        let mut events = Requests::default();
        arena.join(&mut ctx(&mut world, &mut events, 1), 7);
        let right = input::Payload::Intent(vec![127u8, 0].into());
        arena.input(&mut ctx(&mut world, &mut events, 1), 7, &right).unwrap();
        for tick in 1..=30 {
            arena.step(&mut ctx(&mut world, &mut events, tick));
            world.finish_tick();
        }
        // One second at full speed to the right: 10 units from the centre.
        let avatar = world.entities().find(|e| e.owner() == 7).unwrap();
        let Some(Value::Float(x)) = avatar.get(FIELD_X) else {
            panic!("no x")
        };
        assert!((x - 60.0).abs() <= 0.005, "x = {x}");
        assert_eq!(avatar.get(FIELD_Y), Some(&Value::Float(50.0)));
        for tick in 31..=3000 {
            arena.step(&mut ctx(&mut world, &mut events, tick));
            world.finish_tick();
        }
        assert_eq!(world.len(), 5);
        for e in world.entities() {
            let (Some(Value::Float(x)), Some(Value::Float(y))) = (e.get(FIELD_X), e.get(FIELD_Y)) else {
                panic!("entity {} lacks a position", e.id());
            };
            assert!((0.0..=100.0).contains(x) && (0.0..=100.0).contains(y), "{x},{y}");
        }
        arena.leave(&mut ctx(&mut world, &mut events, 3001), 7);
        assert_eq!(world.len(), 4);
    }

    /// An arena whose size is not on its precision's grid: every position written
    /// fits the declaration (the walls are the grid's last points).
    #[test]
    fn walls_off_the_grid_hold_every_position() {
        for (width, precision) in [(33.3, 0.01), (10.35, 0.7)] {
            let config = ArenaConfig {
                width,
                height: width,
                precision,
                npcs: 8,
                npc_speed: 40.0,
                ..Default::default()
            };
            let mut arena = Arena::new(config);
            let mut world = World::with_schema(32, arena.schema());
            let mut events = Requests::default();
            arena.join(&mut ctx(&mut world, &mut events, 1), 7);
            let corner = input::Payload::Intent(vec![127u8, 127].into());
            arena.input(&mut ctx(&mut world, &mut events, 1), 7, &corner).unwrap();
            // Each write is checked as it is made (`advance`); the avatar meets the wall.
            let mut furthest = 0.0f32;
            for tick in 1..=300 {
                arena.step(&mut ctx(&mut world, &mut events, tick));
                world.finish_tick();
                let avatar = world.entities().find(|e| e.owner() == 7).unwrap();
                let Some(&Value::Float(x)) = avatar.get(FIELD_X) else {
                    panic!("no x")
                };
                furthest = furthest.max(x);
            }
            let schema = arena.schema();
            let ty = &schema.kinds()[0].fields()[0].ty;
            assert!(
                ty.code(&Value::Float(config.walls().0)).is_ok(),
                "{width} at {precision}"
            );
            assert!((furthest - config.walls().0).abs() < 1e-3, "furthest x {furthest}");
        }
    }

    #[test]
    fn only_the_moving_share_of_npcs_changes() {
        let mut world = World::new(32);
        let mut events = Requests::default();
        let mut arena = Arena::new(ArenaConfig {
            npcs: 8,
            npc_moving_share: 0.25,
            ..Default::default()
        });
        arena.step(&mut ctx(&mut world, &mut events, 1));
        world.finish_tick();
        for tick in 2..=10 {
            arena.step(&mut ctx(&mut world, &mut events, tick));
            world.finish_tick();
        }
        let moved = world.entities().filter(|e| e.changed() > 1).count();
        assert_eq!((world.len(), moved), (8, 2));
    }

    #[test]
    fn bad_intents_are_typed_errors() {
        let mut world = World::new(32);
        let mut events = Requests::default();
        let mut arena = Arena::new(ArenaConfig::default());
        let c = &mut ctx(&mut world, &mut events, 1);
        assert!(matches!(
            arena.input(c, 1, &input::Payload::Intent(vec![1].into())),
            Err(SimError::InvalidIntent(_))
        ));
        assert!(matches!(
            arena.input(c, 1, &input::Payload::Writes(Default::default())),
            Err(SimError::WrongPayload { .. })
        ));
    }
}
