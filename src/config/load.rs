//! Loading a configuration: the defaults, a TOML file, `--set` and
//! `TICKRELAY__*` overrides, the named variables and flags; printing one back.

use super::{Config, ConfigError, Override, SimulationKind, Simulations, urls};

/// Settings that moved from `[websocket]` to `[session]` (they govern QUIC too).
const OLD_NAMES: [&str; 3] = ["max_message_bytes", "outbox_max_messages", "outbox_max_bytes"];

impl Config {
    /// Reads a TOML file; settings it leaves out keep their defaults. A program with
    /// simulations of its own reads it with [`Config::load`] and them, so that a
    /// `[room_types.NAME]` of one may leave its `simulation` out.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), &[], &Simulations::new())
    }

    /// Reads the file (none: the defaults) and sets `overrides` over it, in order.
    /// Room types are those of the file added to the built-in `relay` and `arena`
    /// and to one per simulation of the program's `own` (named after it): a file's
    /// or an override's `[room_types.NAME]` of one of those changes the settings it
    /// names, the others keep the type's.
    pub fn load(
        path: Option<&std::path::Path>,
        overrides: &[Override],
        own: &Simulations,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_parts(&text, path, overrides, own)
    }

    /// [`Config::load`] of a file that holds `text` (`path`: where it was read).
    pub(super) fn from_parts(
        text: &str,
        path: Option<&std::path::Path>,
        overrides: &[Override],
        own: &Simulations,
    ) -> Result<Self, ConfigError> {
        // The file alone first, so that an error in it names its line.
        let file_error = |source| match path {
            Some(path) => ConfigError::Parse {
                path: path.into(),
                source: Box::new(source),
            },
            None => ConfigError::Invalid(source.to_string()),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(file_error)?;
        toml::from_str::<Config>(text).map_err(file_error)?;
        move_old_settings(&mut table)?;
        // Each simulation has a room type of its name (written out before the
        // overrides, so that a variable's key finds it whatever its case).
        let simulations: Vec<&str> = ["relay", "arena"].into_iter().chain(own.names()).collect();
        let types = room_types_mut(&mut table)?;
        for name in &simulations {
            types.entry(*name).or_insert_with(|| toml::Table::new().into());
        }
        // The types known so far: an override that makes another must say what it
        // runs (a typo in a type's name would otherwise make a new relay type).
        let known: Vec<String> = types.keys().cloned().collect();
        for o in overrides {
            // An old `[websocket]` name sets the new one, in its turn.
            let moved = OLD_NAMES
                .iter()
                .find_map(|key| o.renamed(["websocket", key], ["session", key]));
            moved
                .as_ref()
                .unwrap_or(o)
                .apply(&mut table)
                .map_err(ConfigError::Invalid)?;
        }
        let types = room_types_mut(&mut table)?;
        for (name, room_type) in types.iter().filter(|(name, _)| !known.contains(name)) {
            if room_type.get("simulation").is_none() {
                return Err(ConfigError::Invalid(format!(
                    "room type `{name}` is not in the file, built in or the program's: a new one given by {} needs its `simulation` too (relay, arena, or the program's)",
                    overrides_of(overrides, &format!("room_types.{name}")).join(", "),
                )));
            }
        }
        // A section whose name misses a simulation's by a letter or two, with no
        // `simulation` of its own, is more often a typo than a relay type: warned about.
        let unnamed = |(name, t): &(&String, &toml::Value)| {
            !simulations.contains(&name.as_str()) && t.get("simulation").is_none()
        };
        let mut lookalikes = Vec::new();
        for (name, _) in types.iter().filter(unnamed) {
            let near = |sim: &str| {
                let distance = strsim::damerau_levenshtein(&sim.to_lowercase(), &name.to_lowercase());
                distance <= if sim.len().min(name.len()) < 5 { 1 } else { 2 }
            };
            if let Some(sim) = simulations.iter().find(|&&sim| sim != "relay" && near(sim)) {
                lookalikes.push(format!(
                    "room type `{name}` names no `simulation`, so it is a relay room type: did you mean `{sim}`? \
                     (give it `simulation = \"relay\"` to say it is meant)"
                ));
            }
        }
        // Each simulation's type runs it unless told otherwise: a section (or override)
        // of one changes the settings it names, and one given whole (which may have
        // dropped the built-in types) leaves them there.
        for name in simulations {
            let room_type = types.entry(name).or_insert_with(|| toml::Table::new().into());
            if let Some(room_type) = room_type.as_table_mut() {
                room_type.entry("simulation").or_insert_with(|| name.into());
            }
        }
        // The arena's settings on a type running a game's own simulation do nothing
        // (a relay type's are allowed: the default file has them).
        for (name, room_type) in types.iter() {
            let runs = room_type
                .get("simulation")
                .and_then(toml::Value::as_str)
                .unwrap_or("relay");
            if matches!(runs, "relay" | "arena") {
                continue;
            }
            let arena: Vec<&str> = (room_type.as_table().into_iter().flatten())
                .map(|(key, _)| key.as_str())
                .filter(|key| key.starts_with("arena_"))
                .collect();
            if !arena.is_empty() {
                lookalikes.push(format!(
                    "room type `{name}` runs `{runs}`, not the arena: {} ignored (a game's own settings go in \
                     [room_types.{name}.params])",
                    arena.join(", ")
                ));
            }
        }
        let mut config: Config = toml::Value::Table(table.clone()).try_into().map_err(|e| {
            // The file alone deserialized: the overrides are in it.
            let e = e.to_string().trim().replace('\n', " ");
            let key = e
                .rsplit_once("in `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map_or("", |(key, _)| key);
            let by = overrides_of(overrides, key);
            // A value meant as an array or a table that is not TOML was read as text.
            let doubts = (overrides.iter())
                .filter(|o| by.contains(&o.origin()) && o.read_as_text())
                .map(|o| {
                    format!(
                        "; the value of {} is not valid TOML, so it was read as text (quote the strings \
                         inside it, as in name = \"card\", and the whole flag for the shell)",
                        o.origin()
                    )
                });
            let doubts: String = doubts.collect();
            ConfigError::Invalid(format!("{e} (set by {}){doubts}", by.join(", ")))
        })?;
        // A message of the size allowed must fit the byte bucket: a configuration
        // that raises the size and leaves the burst out raises the burst with it
        // (one that sets both inconsistently is refused by `validate`).
        if (table.get("session")).is_none_or(|s| s.get("byte_burst").is_none()) {
            config.session.fit_byte_burst_to_message_size();
        }
        config.lookalikes = lookalikes;
        Ok(config)
    }

    /// This configuration as a TOML file (`tickrelay --print-config`), every setting
    /// written out but secrets: the HS256 secret, the API and metrics tokens and the
    /// sentinels' password are left out (a comment first names those that are set),
    /// credentials in the Redis URL shown as `***`.
    pub fn to_toml_redacted(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("a configuration is a TOML table");
        let mut hidden = Vec::new();
        for (section, key) in [
            ("auth", "hs256_secret"),
            ("api", "token"),
            ("metrics", "token"),
            ("cluster", "sentinel_password"),
        ] {
            let section_table = table.get_mut(section).and_then(toml::Value::as_table_mut);
            if section_table.and_then(|t| t.remove(key)).is_some() {
                hidden.push(format!("{section}.{key}"));
            }
        }
        if let Some(url) = self.cluster.redis_url.as_deref() {
            table["cluster"]["redis_url"] = urls::without_credentials(url).into();
        }
        // The arena's settings only where they apply.
        let types = table.get_mut("room_types").and_then(toml::Value::as_table_mut);
        for (name, room_type) in types.into_iter().flatten() {
            if let Some(room_type) = room_type.as_table_mut()
                && self.room_types[name].simulation != SimulationKind::Arena
            {
                room_type.retain(|key, _| !key.starts_with("arena_"));
            }
        }
        let mut out = String::new();
        if !hidden.is_empty() {
            out = format!("# Set, not shown: {}.\n", hidden.join(", "));
        }
        out + &toml::to_string(&table).expect("a table prints")
    }

    /// Parses a TOML configuration, as [`Config::load`] reads a file.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_parts(text, None, &[], &Simulations::new())
    }
}

/// The file's `[websocket]` settings of [`OLD_NAMES`] moved in `table` to their place
/// in `[session]` (the old names still work); a file with both names is refused.
fn move_old_settings(table: &mut toml::Table) -> Result<(), ConfigError> {
    let Some(websocket) = table.get_mut("websocket").and_then(toml::Value::as_table_mut) else {
        return Ok(());
    };
    let moved: Vec<(&str, toml::Value)> = OLD_NAMES
        .into_iter()
        .filter_map(|key| Some((key, websocket.remove(key)?)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let session = table.entry("session").or_insert_with(|| toml::Table::new().into());
    let session = session
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid("session must be a table".into()))?;
    for (key, value) in moved {
        if session.contains_key(key) {
            return Err(ConfigError::Invalid(format!(
                "[websocket] {key} is the old name of [session] {key}, and both are set: keep [session]'s"
            )));
        }
        session.insert(key.into(), value);
    }
    Ok(())
}

/// The `[room_types]` table of a configuration being read (made when missing).
fn room_types_mut(table: &mut toml::Table) -> Result<&mut toml::Table, ConfigError> {
    let types = table.entry("room_types").or_insert_with(|| toml::Table::new().into());
    types
        .as_table_mut()
        .ok_or_else(|| ConfigError::Invalid("room_types must be a table".into()))
}

/// The origins of the overrides that set `key` (a dotted path), or a setting in or
/// around it; all of them when none does.
fn overrides_of<'a>(overrides: &'a [Override], key: &str) -> Vec<&'a str> {
    let related: Vec<&str> = (overrides.iter())
        .filter(|o| {
            let path = o.dotted();
            let within = |inner: &str, outer: &str| {
                inner
                    .strip_prefix(outer)
                    .is_some_and(|r| r.is_empty() || r.starts_with('.'))
            };
            within(&path, key) || within(key, &path)
        })
        .map(Override::origin)
        .collect();
    if related.is_empty() {
        overrides.iter().map(Override::origin).collect()
    } else {
        related
    }
}
