//! The smallest authoritative game: each member gets a dot the server moves by the
//! member's intents (two bytes, `dx` and `dy` as signed 8-bit integers, as the
//! arena's). A starting point for a game's own server; `examples/tag` adds rules,
//! events, settings and a restore.
//!
//! ```sh
//! cargo run --release --example skeleton -- --default-room-type dots
//! ```

use std::collections::HashMap;
use std::process::ExitCode;

use tickrelay::engine::simulation::{SimContext, SimError, Simulation, stick_intent};
use tickrelay::proto::input;
use tickrelay::state::{EntityId, MemberId, Value};

/// The kind of a dot, and its fields (undeclared: the generic encoding; declare
/// them in `Simulation::schema` for packed, quantized frames, as `examples/tag`
/// does).
const DOT: u32 = 1;
const X: u32 = 1;
const Y: u32 = 2;

/// One room of the game.
#[derive(Default)]
struct Dots {
    /// Each member's dot and its last intent.
    dots: HashMap<MemberId, (EntityId, f32, f32)>,
    next_id: EntityId,
}

impl Simulation for Dots {
    fn join(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        self.next_id += 1;
        let fields = [(X, Value::Float(0.0)), (Y, Value::Float(0.0))];
        if ctx.world.spawn(self.next_id, member, DOT, fields).is_ok() {
            self.dots.insert(member, (self.next_id, 0.0, 0.0));
        }
    }

    fn leave(&mut self, ctx: &mut SimContext<'_>, member: MemberId) {
        if let Some((id, ..)) = self.dots.remove(&member) {
            let _ = ctx.world.despawn(id);
        }
    }

    fn input(&mut self, _: &mut SimContext<'_>, member: MemberId, payload: &input::Payload) -> Result<(), SimError> {
        let (dx, dy) = stick_intent(payload)?;
        if let Some(dot) = self.dots.get_mut(&member) {
            (dot.1, dot.2) = (dx, dy);
        }
        Ok(())
    }

    /// The room restored from a cluster checkpoint on another node: the dots are in
    /// the world, the intents are not.
    fn restore(&mut self, ctx: &mut SimContext<'_>, _members: &[MemberId]) {
        self.dots = (ctx.world.entities())
            .map(|e| (e.owner(), (e.id(), 0.0, 0.0)))
            .collect();
        self.next_id = ctx.world.entities().map(|e| e.id()).max().unwrap_or(0);
    }

    fn step(&mut self, ctx: &mut SimContext<'_>) {
        let speed = 10.0 * ctx.dt;
        for &(id, dx, dy) in self.dots.values() {
            let Some(mut dot) = ctx.world.entity_mut(id) else {
                continue;
            };
            let at = |field| match dot.get().get(field) {
                Some(Value::Float(v)) => *v,
                _ => 0.0,
            };
            let (x, y) = (at(X) + dx * speed, at(Y) + dy * speed);
            // Each change reaches the members in the tick's delta.
            let _ = dot.set(X, Value::Float(x));
            let _ = dot.set(Y, Value::Float(y));
        }
    }
}

fn main() -> ExitCode {
    // A room type `dots` running it, with every flag and setting of `tickrelay`.
    let simulations = tickrelay::config::Simulations::new().add("dots", Dots::default);
    tickrelay::cli::main(simulations)
}
