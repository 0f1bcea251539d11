//! Any file setting given outside the file: `--set section.key=VALUE` on the command
//! line, or a `TICKRELAY__SECTION__KEY=VALUE` environment variable (for containers,
//! where a file is one more thing to mount). The value is TOML (`10`, `true`,
//! `"text"`, `["a", "b"]`, `{ id = "lobby" }`); one that is not TOML is taken as a
//! string, so `wss://host/ws` needs no quotes (`"7"` does, where a string is wanted).

use toml::{Table, Value};

/// Prefix of the environment variables that set file settings (`__` between keys).
pub const ENV_PREFIX: &str = "TICKRELAY__";

/// One setting given outside the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The keys from the top of the file to the setting.
    path: Vec<String>,
    value: Value,
    /// Where it came from, for error messages: `--set KEY` or the variable's name.
    origin: String,
    /// A variable's keys (read in lower case) match a key of the file that differs
    /// only in case (a room type `FastArena`).
    any_case: bool,
}

impl Override {
    /// Parses a `--set` argument: `KEY=VALUE`, the key dotted as in TOML
    /// (`session.max_rooms_per_session`, `room_types."my.type".tick_rate`).
    pub fn from_set(arg: &str) -> Result<Self, String> {
        let (key, value) = arg.split_once('=').ok_or_else(|| {
            format!("--set {arg:?}: expected KEY=VALUE, for example session.max_rooms_per_session=10")
        })?;
        let path =
            dotted_key(key.trim()).ok_or_else(|| format!("--set {arg:?}: `{}` is not a TOML key", key.trim()))?;
        Ok(Self {
            path,
            value: value_of(value.trim()),
            origin: format!("--set {}", key.trim()),
            any_case: false,
        })
    }

    /// Reads a `TICKRELAY__SECTION__KEY` variable (`None` for any other name): the
    /// keys are the name's parts between `__`, in lower case.
    pub fn from_env(name: &str, value: &str) -> Option<Result<Self, String>> {
        let keys = name.strip_prefix(ENV_PREFIX)?;
        let path: Vec<String> = keys.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Some(Err(format!("{name}: empty key (keys are separated by `__`)")));
        }
        Some(Ok(Self {
            path,
            value: value_of(value.trim()),
            origin: name.to_owned(),
            any_case: true,
        }))
    }

    /// Every `TICKRELAY__*` variable of this process, in name order.
    pub fn from_environment() -> Result<Vec<Self>, String> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                name.starts_with(ENV_PREFIX)
                    .then(|| (name, value.to_string_lossy().into_owned()))
            })
            .collect();
        vars.sort();
        vars.iter()
            .filter_map(|(name, value)| Self::from_env(name, value))
            .collect()
    }

    /// Sets this value in `table` (a parsed file), making the sections on its way.
    pub fn apply(&self, table: &mut Table) -> Result<(), String> {
        let (last, sections) = self.path.split_last().expect("a path has at least one key");
        let mut at = table;
        for (depth, key) in sections.iter().enumerate() {
            let key = self.key_in(at, key);
            let entry = at.entry(key).or_insert_with(|| Value::Table(Table::new()));
            at = entry.as_table_mut().ok_or_else(|| {
                format!(
                    "{}: `{}` is a setting, not a section",
                    self.origin,
                    self.path[..=depth].join(".")
                )
            })?;
        }
        at.insert(self.key_in(at, last), self.value.clone());
        Ok(())
    }

    /// `key` as `table` spells it, for a variable's keys; `key` itself otherwise.
    fn key_in(&self, table: &Table, key: &str) -> String {
        let spelt = (self.any_case && !table.contains_key(key))
            .then(|| table.keys().find(|k| k.eq_ignore_ascii_case(key)))
            .flatten();
        spelt.map_or(key, String::as_str).to_owned()
    }

    /// The same setting under an old name's new place: `old` (a section and key) as
    /// `new` (`None`: this override sets something else).
    pub fn renamed(&self, old: [&str; 2], new: [&str; 2]) -> Option<Self> {
        (self.path == old).then(|| Self {
            path: new.map(str::to_owned).to_vec(),
            ..self.clone()
        })
    }

    /// True when the value looks like an array or a table but is not valid TOML, and
    /// so was taken as text (which is right for `listen=[::1]:7443`, and the likely
    /// cause of an error otherwise).
    pub fn read_as_text(&self) -> bool {
        matches!(&self.value, Value::String(text) if text.starts_with(['[', '{']))
    }

    /// The setting's keys joined by dots.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// Where it came from (`--set KEY` or the variable's name).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// The keys of a dotted TOML key, quoted parts unquoted (`None`: not a key).
fn dotted_key(key: &str) -> Option<Vec<String>> {
    let mut table: Table = toml::from_str(&format!("{key} = 0")).ok()?;
    let mut path = Vec::new();
    loop {
        if table.len() != 1 {
            return None;
        }
        let (name, value) = table.into_iter().next()?;
        path.push(name);
        match value {
            Value::Table(inner) => table = inner,
            _ => return Some(path),
        }
    }
}

/// `text` as a TOML value, or as a string when it is not one.
fn value_of(text: &str) -> Value {
    let parsed: Option<Table> = toml::from_str(&format!("v = {text}")).ok();
    match parsed {
        Some(table) if table.len() == 1 => table.into_iter().next().map(|(_, v)| v).expect("one entry"),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(overrides: &[Override], file: &str) -> Result<Table, String> {
        let mut table: Table = toml::from_str(file).unwrap();
        for o in overrides {
            o.apply(&mut table)?;
        }
        Ok(table)
    }

    #[test]
    fn set_takes_a_dotted_key_and_a_toml_value() {
        let o = Override::from_set("session.max_rooms_per_session=10").unwrap();
        let t = applied(&[o], "[session]\nresume_grace_secs = 5.0\n").unwrap();
        assert_eq!(t["session"]["max_rooms_per_session"].as_integer(), Some(10));
        assert_eq!(
            t["session"]["resume_grace_secs"].as_float(),
            Some(5.0),
            "the rest of the section kept"
        );

        let o = Override::from_set(r#"room_types."my.type".tick_rate = 30"#).unwrap();
        assert_eq!(o.path, ["room_types", "my.type", "tick_rate"]);
        let o = Override::from_set(r#"origins.allowed=["https://a.example", "https://b.example"]"#).unwrap();
        assert_eq!(o.value.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_value_that_is_not_toml_is_a_string() {
        let o = Override::from_set("cluster.public_url=wss://node1.example/ws").unwrap();
        assert_eq!(o.value.as_str(), Some("wss://node1.example/ws"));
        assert_eq!(Override::from_set("x=true").unwrap().value.as_bool(), Some(true));
        assert_eq!(Override::from_set(r#"x="7""#).unwrap().value.as_str(), Some("7"));
        // A value cannot smuggle a second setting in.
        let o = Override::from_set("x=1\ny = 2").unwrap();
        assert_eq!(o.value.as_str(), Some("1\ny = 2"));
    }

    #[test]
    fn malformed_settings_are_refused_with_their_origin() {
        assert!(
            Override::from_set("session.max_rooms_per_session")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(Override::from_set("a..b=1").unwrap_err().contains("not a TOML key"));
        assert!(Override::from_env("TICKRELAY__SESSION____X", "1").unwrap().is_err());
        let o = Override::from_set("listen.port=1").unwrap();
        let e = applied(&[o], "listen = \"127.0.0.1:1\"").unwrap_err();
        assert_eq!(e, "--set listen.port: `listen` is a setting, not a section");
    }

    #[test]
    fn environment_names_become_lower_case_paths() {
        assert!(
            Override::from_env("TICKRELAY_LISTEN", "x").is_none(),
            "the named variables are clap's"
        );
        let o = Override::from_env("TICKRELAY__ROOM_TYPES__ARENA__TICK_RATE", "30")
            .unwrap()
            .unwrap();
        assert_eq!(o.path, ["room_types", "arena", "tick_rate"]);
        assert_eq!(o.origin(), "TICKRELAY__ROOM_TYPES__ARENA__TICK_RATE");
        let t = applied(&[o], "").unwrap();
        assert_eq!(t["room_types"]["arena"]["tick_rate"].as_integer(), Some(30));
        // A type named with capitals in the file is the one a variable sets.
        let o = Override::from_env("TICKRELAY__ROOM_TYPES__FASTARENA__TICK_RATE", "10")
            .unwrap()
            .unwrap();
        let t = applied(&[o], "[room_types.FastArena]\ntick_rate = 20\n").unwrap();
        assert_eq!(t["room_types"]["FastArena"]["tick_rate"].as_integer(), Some(10));
        assert_eq!(t["room_types"].as_table().unwrap().len(), 1);
    }
}
