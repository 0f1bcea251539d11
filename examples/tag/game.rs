//! Tag, a small authoritative game written against tickrelay's [`Simulation`] trait:
//! what a game's own server logic looks like. Each member gets a player the server
//! moves by the member's intents; one player is "it", and touching another passes it
//! on. The server announces each tag to the room as a `tagged` event, removes
//! players idle for too long, and ends the game after so many tags, if told to.
//! Played in the dark (`sight`), each player sees only the players near it: the
//! player kind is seen by its owner only, and each tick the game shows each player
//! to those within sight and hides it from the others ([`Sight`]).
//!
//! Intents are the arena's: two bytes, `dx` and `dy` as signed 8-bit integers, so
//! `tickrelay-bots --room-type tag` can play it too.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use tickrelay::engine::simulation::{Sight, SimContext, SimError, Simulation, stick_intent};
use tickrelay::proto::input;
use tickrelay::state::{EntityId, FieldSpec, FieldType, KindSchema, MemberId, SERVER, Schema, Value};

/// The kind of a player entity.
pub const KIND_PLAYER: u32 = 1;
/// A player's x (float, `0..=size`).
pub const FIELD_X: u32 = 1;
/// A player's y (float, `0..=size`).
pub const FIELD_Y: u32 = 2;
/// Whether the player is "it" (bool).
pub const FIELD_IT: u32 = 3;
/// The player's name (string): what it told as it joined (`member_data`, UTF-8), or
/// its user id.
pub const FIELD_NAME: u32 = 4;
/// The longest name shown, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// The game's settings: `[room_types.tag.params]` in the relay's configuration.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagParams {
    /// The side of the square field.
    pub size: f32,
    /// Player speed at full intent, units per second.
    pub speed: f32,
    /// How close "it" must come to tag.
    pub reach: f32,
    /// Seconds after a tag (and after the first player joins) before "it" can tag.
    pub cooldown_secs: f32,
    /// The game ends (the room closes) after this many tags; 0: never.
    pub tags: u32,
    /// A player who sends no input for this many seconds is removed; 0: never.
    pub idle_secs: f32,
    /// Players see the others within this distance only (tag in the dark); 0: every
    /// player sees every other.
    pub sight: f32,
}

impl Default for TagParams {
    fn default() -> Self {
        Self {
            size: 100.0,
            speed: 12.0,
            reach: 3.0,
            cooldown_secs: 1.0,
            tags: 0,
            idle_secs: 0.0,
            sight: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Player {
    entity: EntityId,
    x: f32,
    y: f32,
    /// The latest intent, each in `-1.0..=1.0`.
    dx: f32,
    dy: f32,
    /// Seconds since its last input (`None` once it is being removed).
    idle: Option<f32>,
}

/// One room of tag.
#[derive(Debug)]
pub struct Tag {
    params: TagParams,
    schema: Arc<Schema>,
    players: BTreeMap<MemberId, Player>,
    it: Option<MemberId>,
    /// Seconds until "it" may tag.
    cooldown: f32,
    next_entity: EntityId,
    joined: u32,
    /// Tags so far.
    tagged: u32,
    /// Who sees whom, when played in the dark.
    sight: Option<Sight>,
}

impl Tag {
    /// A new room with `params`.
    pub fn new(params: &TagParams) -> Self {
        let position = FieldType::float(0.0, f64::from(params.size), 0.01).expect("a valid field size");
        let fields = vec![
            FieldSpec::new(FIELD_X, "x", position),
            FieldSpec::new(FIELD_Y, "y", position),
            FieldSpec::new(FIELD_IT, "it", FieldType::Bool),
            FieldSpec::new(
                FIELD_NAME,
                "name",
                FieldType::String {
                    max_len: MAX_NAME_BYTES as u32,
                },
            ),
        ];
        let mut player = KindSchema::new(KIND_PLAYER, "player", fields).expect("a valid kind");
        // (An infinite sight is no darkness.)
        let sight = (params.sight > 0.0 && params.sight.is_finite()).then(|| Sight::new(params.sight));
        if sight.is_some() {
            player = player.seen_by_owner_only();
        }
        Self {
            params: *params,
            schema: Arc::new(Schema::new(vec![player]).expect("a valid schema")),
            players: BTreeMap::new(),
            it: None,
            cooldown: 0.0,
            next_entity: 1,
            joined: 0,
            tagged: 0,
            sight,
        }
    }

    /// Makes `member` "it" (and whoever was, not), and tells the room who tagged whom
    /// (`from` 0: the server chose, because "it" left).
    fn pass_it(&mut self, ctx: &mut SimContext<'_>, from: MemberId, to: MemberId) {
        for (member, value) in [(self.it, false), (Some(to), true)] {
            if let Some(player) = member.and_then(|m| self.players.get(&m)) {
                let _ = ctx.world.set(player.entity, FIELD_IT, Value::Bool(value));
            }
        }
        self.it = Some(to);
        self.cooldown = self.params.cooldown_secs;
        ctx.send_event("tagged", format!("{{\"from\":{from},\"to\":{to}}}"), &[]);
    }

    /// Shows each player to the others within sight, and hides it from the rest.
    fn light(&mut self, ctx: &mut SimContext<'_>) {
        if let Some(sight) = &mut self.sight {
            let players = || self.players.iter();
            sight.update(
                ctx.world,
                players().map(|(&member, p)| (member, p.x, p.y)),
                players().map(|(_, p)| (p.entity, p.x, p.y)),
            );
        }
    }
}

/// `member`'s name: what it told as it joined if that is text, else its user id; cut to
/// [`MAX_NAME_BYTES`] (at a character's edge).
fn name(ctx: &SimContext<'_>, member: MemberId) -> String {
    let told = std::str::from_utf8(ctx.members.data(member)).ok();
    let name = told
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or(ctx.members.user(member))
        .unwrap_or_default();
    let end = (0..=name.len().min(MAX_NAME_BYTES))
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0);
    name[..end].to_string()
}

impl Simulation for Tag {
    fn schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    fn join(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        // Players join on alternate sides of the field, a row apart.
        let size = self.params.size;
        let x = if self.joined.is_multiple_of(2) {
            size / 4.0
        } else {
            size * 0.75
        };
        let y = (size / 2.0 + (self.joined / 2) as f32 * 7.0) % size;
        self.joined += 1;
        let entity = self.next_entity;
        self.next_entity += 1;
        let first = self.it.is_none();
        let fields = [
            (FIELD_X, Value::Float(x)),
            (FIELD_Y, Value::Float(y)),
            (FIELD_IT, Value::Bool(first)),
            (FIELD_NAME, Value::String(name(ctx, member))),
        ];
        if ctx.world.spawn(entity, member, KIND_PLAYER, fields).is_err() {
            return; // the room's entity limits: this member plays without a player
        }
        let player = Player {
            entity,
            x,
            y,
            dx: 0.0,
            dy: 0.0,
            idle: Some(0.0),
        };
        self.players.insert(member, player);
        if first {
            self.it = Some(member);
            self.cooldown = self.params.cooldown_secs;
        }
    }

    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        if let Some(player) = self.players.remove(&member) {
            let _ = ctx.world.despawn(player.entity);
        }
        if self.it == Some(member) {
            self.it = None;
            if let Some(&next) = self.players.keys().next() {
                self.pass_it(ctx, SERVER, next);
            }
        }
    }

    fn input(&mut self, _: &mut SimContext<'_>, member: MemberId, payload: &input::Payload) -> Result<(), SimError> {
        let (dx, dy) = stick_intent(payload)?;
        if let Some(player) = self.players.get_mut(&member) {
            (player.dx, player.dy) = (dx, dy);
            player.idle = player.idle.map(|_| 0.0);
        }
        Ok(())
    }

    fn step(&mut self, ctx: &mut SimContext<'_>) {
        let (size, step) = (self.params.size, self.params.speed * ctx.dt);
        let idle_limit = self.params.idle_secs;
        for (&member, player) in &mut self.players {
            if let Some(idle) = &mut player.idle {
                *idle += ctx.dt;
                if idle_limit > 0.0 && *idle >= idle_limit {
                    // It leaves at the next tick ([`Simulation::leave`]).
                    player.idle = None;
                    ctx.remove_member(member, &format!("no input for {idle_limit} s"));
                }
            }
            if player.dx == 0.0 && player.dy == 0.0 {
                continue;
            }
            player.x = (player.x + player.dx * step).clamp(0.0, size);
            player.y = (player.y + player.dy * step).clamp(0.0, size);
            let _ = ctx.world.set(player.entity, FIELD_X, Value::Float(player.x));
            let _ = ctx.world.set(player.entity, FIELD_Y, Value::Float(player.y));
        }
        self.light(ctx);
        self.cooldown -= ctx.dt;
        let Some(it) = self.it.filter(|_| self.cooldown <= 0.0) else {
            return;
        };
        let chaser = self.players[&it];
        let distance = |p: &Player| (p.x - chaser.x).hypot(p.y - chaser.y);
        let nearest = (self.players.iter())
            .filter(|&(&m, p)| m != it && distance(p) <= self.params.reach)
            .min_by(|a, b| distance(a.1).total_cmp(&distance(b.1)));
        if let Some((&tagged, _)) = nearest {
            self.pass_it(ctx, it, tagged);
            self.tagged += 1;
            if self.tagged == self.params.tags {
                ctx.close_room(&format!("game over after tag {}", self.tagged));
            }
        }
    }

    /// The tags so far (the rest of the game is in the world), for a room restored
    /// on another node to end after the same number of tags.
    fn save(&self) -> Vec<u8> {
        self.tagged.to_le_bytes().to_vec()
    }

    fn load(&mut self, saved: &[u8]) {
        if let Ok(tagged) = saved.try_into() {
            self.tagged = u32::from_le_bytes(tagged);
        }
    }

    fn restore(&mut self, ctx: &mut SimContext<'_>, _members: &[MemberId]) {
        // Everything else the game needs is in the world: positions, and who is "it"
        // (the tags so far came with `load`).
        self.players.clear();
        self.it = None;
        for e in ctx.world.entities().filter(|e| e.kind() == KIND_PLAYER) {
            let float = |field| match e.get(field) {
                Some(Value::Float(v)) => *v,
                _ => 0.0,
            };
            let (x, y) = (float(FIELD_X), float(FIELD_Y));
            let player = Player {
                entity: e.id(),
                x,
                y,
                dx: 0.0,
                dy: 0.0,
                idle: Some(0.0),
            };
            self.players.insert(e.owner(), player);
            if e.get(FIELD_IT) == Some(&Value::Bool(true)) {
                self.it = Some(e.owner());
            }
            self.next_entity = self.next_entity.max(e.id() + 1);
        }
        self.joined = self.players.len() as u32;
        self.cooldown = self.params.cooldown_secs;
    }
}
