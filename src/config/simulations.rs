//! The simulations a program can run besides the built-in two, by name: a game's own
//! authoritative logic ([`Simulation`]), registered in its `main` and chosen per room
//! type in the configuration (`simulation = "NAME"`, with its settings in
//! `[room_types.TYPE.params]`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::engine::sim_pool::SimFactory;
use crate::engine::simulation::Simulation;

/// Names a program cannot register: the built-in simulations'.
pub const BUILT_IN: [&str; 2] = ["relay", "arena"];

/// Given a room type's `params`, the factory of its rooms' simulations (or why the
/// params do not fit).
type Maker = Arc<dyn Fn(&toml::Table) -> Result<SimFactory, String> + Send + Sync>;

/// A program's own simulations, by the name room types give in `simulation = "…"`.
///
/// A room's simulation is made (and its [`Simulation::schema`] asked, or its
/// [`Simulation::restore`] run) on the I/O thread of the join that opens the room,
/// which the other connections that thread serves wait for: keep that short, and
/// load what every room shares (a map, say) once, in the registered closure's
/// captured state.
///
/// ```
/// use tickrelay::config::Simulations;
/// # use tickrelay::engine::simulation::{SimContext, SimError, Simulation};
/// # use tickrelay::proto::input;
/// # use tickrelay::state::MemberId;
/// # #[derive(Default)]
/// # struct Duel;
/// # impl Simulation for Duel {
/// #     fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
/// #     fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
/// #     fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> { Ok(()) }
/// #     fn step(&mut self, _: &mut SimContext<'_>) {}
/// # }
/// #[derive(serde::Deserialize)]
/// #[serde(default)] // a type without `params` runs with the defaults
/// struct Race {
///     laps: u32,
/// }
/// impl Default for Race {
///     fn default() -> Self {
///         Self { laps: 3 }
///     }
/// }
/// # struct Racing(u32);
/// # impl Simulation for Racing {
/// #     fn join(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
/// #     fn leave(&mut self, _: &mut SimContext<'_>, _: MemberId) {}
/// #     fn input(&mut self, _: &mut SimContext<'_>, _: MemberId, _: &input::Payload) -> Result<(), SimError> { Ok(()) }
/// #     fn step(&mut self, _: &mut SimContext<'_>) {}
/// # }
///
/// let simulations = Simulations::new()
///     .add("duel", Duel::default)
///     // [room_types.race] simulation = "race", [room_types.race.params] laps = 3
///     .add_with_params("race", |race: &Race| Racing(race.laps));
/// ```
#[derive(Clone, Default)]
pub struct Simulations {
    makers: BTreeMap<String, Maker>,
}

/// What a simulation registered with [`Simulations::add`] accepts: no params.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

impl Simulations {
    /// No simulations beside the built-in ones.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a simulation without settings: each room of a type that names it
    /// runs `new()`. Panics when `name` is taken (by a built-in or an earlier
    /// registration).
    pub fn add<S: Simulation>(self, name: &str, new: impl Fn() -> S + Send + Sync + 'static) -> Self {
        self.add_with_params(name, move |_: &NoParams| new())
    }

    /// Registers a simulation with settings: each room type that names it gives
    /// them in `[room_types.TYPE.params]`, read into `P` once as the server starts
    /// (a table that does not fit `P` stops the start with serde's reason), and each
    /// of its rooms runs `new(&params)`. Panics when `name` is taken.
    ///
    /// A type without a `params` table reads an empty one, and the simulation's own
    /// type (of its `name`) has none unless the configuration gives it: for the
    /// program to start without a configuration file, `P` must accept `{}` (put
    /// `#[serde(default)]` on it, or on every field; a missing field otherwise stops
    /// the start with "room type `NAME`: params: missing field …").
    pub fn add_with_params<P, S>(mut self, name: &str, new: impl Fn(&P) -> S + Send + Sync + 'static) -> Self
    where
        P: DeserializeOwned + Send + Sync + 'static,
        S: Simulation,
    {
        assert!(
            !BUILT_IN.contains(&name) && !self.makers.contains_key(name),
            "simulation `{name}` is registered twice (`relay` and `arena` are built in)"
        );
        let new = Arc::new(new);
        let maker: Maker = Arc::new(move |params: &toml::Table| {
            let params: P = toml::Table::try_into(params.clone()).map_err(|e| e.message().to_string())?;
            let (params, new) = (Arc::new(params), new.clone());
            Ok(Arc::new(move || Box::new(new(&params)) as Box<dyn Simulation>) as SimFactory)
        });
        self.makers.insert(name.to_string(), maker);
        self
    }

    /// The factory of rooms running simulation `name` with `params`.
    pub(crate) fn factory(&self, name: &str, params: &toml::Table) -> Result<SimFactory, String> {
        let Some(maker) = self.makers.get(name) else {
            let registered: Vec<&str> = BUILT_IN.into_iter().chain(self.names()).collect();
            return Err(format!(
                "simulation `{name}` is not one this program has (it has: {})",
                registered.join(", ")
            ));
        };
        maker(params).map_err(|e| format!("params: {e}"))
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.makers.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Simulations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
