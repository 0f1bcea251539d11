//! Room types as the configuration declares them: the simulation, rates and limits,
//! the arena's settings, declared entity kinds and their fields; rooms created at
//! start-up.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Simulations;
use crate::engine::room::RoomConfig;
use crate::engine::sim_pool::RoomType;
use crate::engine::simulation::{Arena, ArenaConfig, EntityLimits, Relay};
use crate::state::{FieldSpec, FieldType, KindSchema, Schema};

/// Which simulation a room type runs: `simulation = "relay"`, `"arena"`, or the name
/// of one the program registered ([`Simulations`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum SimulationKind {
    /// Members write the entities they own.
    Relay,
    /// The example authoritative game.
    Arena,
    /// A simulation the program registered under this name (the `tickrelay` binary
    /// registers none: a game's own binary does, see [`Simulations`]).
    Registered(String),
}

impl From<String> for SimulationKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "relay" => Self::Relay,
            "arena" => Self::Arena,
            _ => Self::Registered(name),
        }
    }
}

impl From<SimulationKind> for String {
    fn from(kind: SimulationKind) -> Self {
        match kind {
            SimulationKind::Relay => "relay".into(),
            SimulationKind::Arena => "arena".into(),
            SimulationKind::Registered(name) => name,
        }
    }
}

/// A room type.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomTypeConfig {
    /// The simulation.
    pub simulation: SimulationKind,
    /// Ticks per second, 1–128.
    pub tick_rate: u32,
    /// Member cap.
    pub max_members: usize,
    /// Ticks a delta baseline may lag before a full snapshot is sent instead.
    pub history: u64,
    /// Send the state checksum every this many ticks.
    pub checksum_interval: u64,
    /// Inputs a member may queue for one tick.
    pub input_queue: usize,
    /// The room's owner counts as away (its ownership passes on) once it has sent no
    /// input for this long; 0: only when its connection has been lost for a second.
    pub owner_quiet_ms: u64,
    /// Entities one member may own (relay).
    pub max_entities_per_member: usize,
    /// Fields per entity (relay).
    pub max_fields_per_entity: usize,
    /// Bytes per bytes/string field (relay).
    pub max_field_bytes: usize,
    /// Bytes of the whole room state as it sits in memory: an entity 128, a field 88
    /// plus its value, each member a hidden entity is shown to 64 (relay).
    pub max_state_bytes: usize,
    /// Arena width (arena).
    pub arena_width: f32,
    /// Arena height (arena).
    pub arena_height: f32,
    /// Wandering NPCs (arena).
    pub arena_npcs: u32,
    /// Step positions are rounded to (arena).
    pub arena_precision: f64,
    /// Declared entity kinds (relay; the arena declares its own).
    pub kinds: Vec<KindConfig>,
    /// Settings of a registered simulation, read into its own type as the server
    /// starts (`[room_types.TYPE.params]`; see [`Simulations::add_with_params`]).
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    pub params: toml::Table,
}

/// A declared entity kind of a relay room type: `[[room_types.NAME.kinds]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// The kind number entities are created with.
    pub kind: u32,
    /// A name for tools and messages.
    #[serde(default)]
    pub name: String,
    /// The fields (at most 64).
    pub fields: Vec<FieldConfig>,
    /// Entities of the kind reach their owner only (a hand of cards, a fog of war).
    #[serde(default)]
    pub owner_only: bool,
}

/// A declared field: `{ id = 1, name = "x", type = "float", min = 0, max = 100,
/// precision = 0.01 }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The field id.
    pub id: u32,
    /// A name for tools and messages.
    #[serde(default)]
    pub name: String,
    /// `int`, `float`, `bool`, `bytes` or `string`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Int and float: the smallest value (required).
    pub min: Option<Number>,
    /// Int and float: the largest value (required).
    pub max: Option<Number>,
    /// Float: the step values are rounded to (required).
    pub precision: Option<f64>,
    /// Bytes and string: the longest value in bytes (default: `max_field_bytes`).
    pub max_len: Option<u32>,
}

/// A TOML number, integer or float.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Self::Int(v) => v as f64,
            Self::Float(v) => v,
        }
    }
}

/// Whether a name other than the empty one stands twice in `names` (names are
/// optional; given, each names one thing: clients and messages go by them).
fn repeats<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let mut named: Vec<&str> = names.filter(|n| !n.is_empty()).collect();
    named.sort_unstable();
    named.windows(2).any(|w| w[0] == w[1])
}

impl FieldConfig {
    fn spec(&self, max_field_bytes: usize) -> Result<FieldSpec, String> {
        let need = |v: Option<Number>, what: &str| v.ok_or(format!("field {} needs `{what}`", self.id));
        let max_field_bytes = max_field_bytes.min(u32::MAX as usize) as u32;
        let bounded = |max_len: Option<u32>| match max_len {
            // The rest could never be written: every value is bounded by the room's
            // max_field_bytes first.
            Some(len) if len > max_field_bytes => Err(format!(
                "field {}: max_len = {len} is more than the room type's max_field_bytes ({max_field_bytes})",
                self.id
            )),
            len => Ok(len.unwrap_or(max_field_bytes)),
        };
        let ty = match self.ty.as_str() {
            "int" => match (need(self.min, "min")?, need(self.max, "max")?) {
                (Number::Int(min), Number::Int(max)) => FieldType::int(min, max),
                _ => return Err(format!("field {}: an int's min and max must be integers", self.id)),
            },
            "float" => {
                let precision = self.precision.ok_or(format!("field {} needs `precision`", self.id))?;
                FieldType::float(
                    need(self.min, "min")?.as_f64(),
                    need(self.max, "max")?.as_f64(),
                    precision,
                )
            }
            "bool" => Ok(FieldType::Bool),
            "bytes" => Ok(FieldType::Bytes {
                max_len: bounded(self.max_len)?,
            }),
            "string" => Ok(FieldType::String {
                max_len: bounded(self.max_len)?,
            }),
            other => {
                return Err(format!(
                    "field {}: unknown type `{other}` (one of: int, float, bool, bytes, string)",
                    self.id
                ));
            }
        };
        // A setting the type does not take would be silently ignored.
        let numeric = matches!(self.ty.as_str(), "int" | "float");
        let given = [
            ("min", self.min.is_some() && !numeric),
            ("max", self.max.is_some() && !numeric),
            ("precision", self.precision.is_some() && self.ty != "float"),
            (
                "max_len",
                self.max_len.is_some() && !matches!(self.ty.as_str(), "bytes" | "string"),
            ),
        ];
        if let Some((setting, _)) = given.iter().find(|(_, misplaced)| *misplaced) {
            return Err(format!(
                "field {}: type = \"{}\" takes no `{setting}`",
                self.id, self.ty
            ));
        }
        let ty = ty.map_err(|e| format!("field {}: {e}", self.id))?;
        Ok(FieldSpec::new(self.id, self.name.clone(), ty))
    }
}

/// A room created at start-up and kept open (see `[[rooms]]` in the README).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrecreatedRoom {
    /// Room id.
    pub id: String,
    /// Room type name.
    #[serde(rename = "type")]
    pub room_type: String,
    /// Its listing's metadata (matched by quick joins' filters), within the limits
    /// a join's is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: crate::engine::listing::Metadata,
}

impl Default for RoomTypeConfig {
    fn default() -> Self {
        let room = RoomConfig::default();
        let arena = ArenaConfig::default();
        Self {
            simulation: SimulationKind::Relay,
            tick_rate: room.tick_rate,
            max_members: room.max_members,
            history: room.history,
            checksum_interval: room.checksum_interval,
            input_queue: room.input_queue,
            owner_quiet_ms: 0,
            max_entities_per_member: room.limits.max_entities_per_member,
            max_fields_per_entity: room.limits.max_fields_per_entity,
            max_field_bytes: room.limits.max_field_bytes,
            max_state_bytes: room.limits.max_state_bytes,
            arena_width: arena.width,
            arena_height: arena.height,
            arena_npcs: arena.npcs,
            arena_precision: arena.precision,
            kinds: Vec::new(),
            params: toml::Table::new(),
        }
    }
}

impl RoomTypeConfig {
    /// The room settings of this type.
    pub fn room_config(&self) -> RoomConfig {
        RoomConfig {
            tick_rate: self.tick_rate,
            max_members: self.max_members,
            history: self.history,
            checksum_interval: self.checksum_interval,
            input_queue: self.input_queue,
            // In whole ticks, rounded up.
            owner_quiet: (self.owner_quiet_ms.saturating_mul(u64::from(self.tick_rate))).div_ceil(1000),
            limits: EntityLimits {
                max_entities_per_member: self.max_entities_per_member,
                max_fields_per_entity: self.max_fields_per_entity,
                max_field_bytes: self.max_field_bytes,
                max_state_bytes: self.max_state_bytes,
            },
            ..RoomConfig::default()
        }
    }

    fn arena(&self) -> ArenaConfig {
        ArenaConfig {
            width: self.arena_width,
            height: self.arena_height,
            npcs: self.arena_npcs,
            precision: self.arena_precision,
            ..ArenaConfig::default()
        }
    }

    /// The kinds rooms of this type declare in the configuration (relay), or that
    /// the arena declares; empty for a registered simulation, which declares its
    /// own ([`crate::engine::simulation::Simulation::schema`]).
    pub fn schema(&self) -> Result<Schema, String> {
        match &self.simulation {
            SimulationKind::Arena | SimulationKind::Registered(_) if !self.kinds.is_empty() => Err(format!(
                "`kinds` are for relay rooms, and this one runs simulation `{}` (the arena and registered \
                 simulations declare their own; is that name right?)",
                String::from(self.simulation.clone())
            )),
            SimulationKind::Arena => self.arena().schema().map_err(|e| e.to_string()),
            // Declared by the simulation itself (`Simulation::schema`).
            SimulationKind::Registered(_) => Ok(Schema::default()),
            SimulationKind::Relay => {
                let kinds = self.kinds.iter().map(|k| {
                    // The rest could never be written.
                    if k.fields.len() > self.max_fields_per_entity {
                        return Err(format!(
                            "kind {} declares {} fields, more than an entity may have (max_fields_per_entity = {})",
                            k.kind,
                            k.fields.len(),
                            self.max_fields_per_entity
                        ));
                    }
                    let fields = k
                        .fields
                        .iter()
                        .map(|f| f.spec(self.max_field_bytes))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("kind {}: {e}", k.kind))?;
                    if repeats(k.fields.iter().map(|f| f.name.as_str())) {
                        return Err(format!("kind {}: two fields have one name", k.kind));
                    }
                    let kind =
                        KindSchema::new(k.kind, k.name.clone(), fields).map_err(|e| format!("kind {}: {e}", k.kind))?;
                    Ok(if k.owner_only { kind.seen_by_owner_only() } else { kind })
                });
                let kinds = kinds.collect::<Result<_, _>>()?;
                if repeats(self.kinds.iter().map(|k| k.name.as_str())) {
                    return Err("two kinds have one name".into());
                }
                Schema::new(kinds).map_err(|e| e.to_string())
            }
        }
    }

    pub(super) fn room_type(&self, simulations: &Simulations) -> Result<RoomType, String> {
        let factory: crate::engine::sim_pool::SimFactory = match &self.simulation {
            SimulationKind::Relay => {
                let schema = Arc::new(self.schema().expect("checked by Config::validate"));
                Arc::new(move || Box::new(Relay::with_schema(schema.clone())))
            }
            SimulationKind::Arena => {
                let arena = self.arena();
                Arc::new(move || Box::new(Arena::new(arena)))
            }
            SimulationKind::Registered(name) => simulations.factory(name, &self.params)?,
        };
        Ok(RoomType {
            config: self.room_config(),
            factory,
        })
    }
}
