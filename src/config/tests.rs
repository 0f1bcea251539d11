//! The configuration's loading, defaults and checks.

use super::*;
use crate::engine::simulation::{Arena, ArenaConfig};
use crate::state::FieldType;

#[test]
fn the_printed_default_is_the_default() {
    let parsed = Config::from_toml(DEFAULT_CONFIG).unwrap();
    assert_eq!(parsed, Config::default());
    parsed.validate().unwrap();
}

#[test]
fn the_printed_configuration_reads_back_as_itself_but_for_secrets() {
    let mut c = Config::default();
    c.room_types.get_mut("relay").unwrap().kinds.push(KindConfig {
        kind: 3,
        name: "dot".into(),
        fields: vec![FieldConfig {
            id: 1,
            name: "x".into(),
            ty: "float".into(),
            min: Some(Number::Int(0)),
            max: Some(Number::Float(10.5)),
            precision: Some(0.5),
            max_len: None,
        }],
        owner_only: true,
    });
    c.room_types.insert(
        "tag".into(),
        RoomTypeConfig {
            simulation: SimulationKind::Registered("tag".into()),
            ..RoomTypeConfig::default()
        },
    );
    c.rooms.push(PrecreatedRoom {
        id: "lobby".into(),
        room_type: "relay".into(),
        metadata: Default::default(),
    });
    let printed = c.to_toml_redacted();
    assert_eq!(Config::from_toml(&printed).unwrap(), c, "{printed}");
    assert_eq!(
        printed.matches("arena_width").count(),
        1,
        "the arena's alone: {printed}"
    );

    c.auth.hs256_secret = Some("k".repeat(32));
    c.api.token = Some("api-token-of-the-backend".into());
    c.cluster.redis_url = Some("redis://user:hunter2@redis:6379".into());
    let printed = c.to_toml_redacted();
    for secret in ["kkkk", "api-token", "hunter2"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.starts_with("# Set, not shown: auth.hs256_secret, api.token.\n"),
        "{printed}"
    );
    let read = Config::from_toml(&printed).unwrap();
    assert_eq!((read.auth.hs256_secret, read.api.token), (None, None));
    assert_eq!(read.cluster.redis_url.as_deref(), Some("redis://***@redis:6379"));
}

#[test]
fn overrides_set_single_settings_over_the_file() {
    let none = Simulations::new();
    assert_eq!(Config::load(None, &[], &none).unwrap(), Config::default());
    let dir = std::env::temp_dir().join(format!("tickrelay-overrides-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        "max_rooms = 5\n[session]\nmax_rooms_per_session = 7\n[websocket]\nmax_message_bytes = 65536\n",
    )
    .unwrap();
    let set = |arg: &str| Override::from_set(arg).unwrap();
    let env = |name: &str, value: &str| Override::from_env(name, value).unwrap().unwrap();
    let c = Config::load(
        Some(&file),
        &[
            env("TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION", "9"),
            env("TICKRELAY__ROOM_TYPES__ARENA__TICK_RATE", "30"),
            set("session.max_rooms_per_session=11"),
            set("session.max_message_bytes=100000"),
        ],
        &none,
    )
    .unwrap();
    assert_eq!(c.max_rooms, 5, "the file's other settings kept");
    assert_eq!(c.session.max_rooms_per_session, 11, "later overrides win");
    assert_eq!(
        c.session.max_message_bytes, 100_000,
        "over the file's old [websocket] name too"
    );
    let c2 = Config::load(None, &[set("session.max_message_bytes=200000")], &none).unwrap();
    assert_eq!(c2.session.byte_burst, 200_000.0, "the byte burst raised with the size");
    // One setting of a built-in room type changed, the type otherwise as built in.
    let arena = &c.room_types["arena"];
    assert_eq!(arena.tick_rate, 30);
    assert_eq!(arena.simulation, SimulationKind::Arena);
    // A whole table given for it too; and one for every type keeps the built-in ones.
    let c = Config::load(None, &[set("room_types.arena={max_members=8}")], &none).unwrap();
    let arena = &c.room_types["arena"];
    assert_eq!((arena.max_members, &arena.simulation), (8, &SimulationKind::Arena));
    let c = Config::load(None, &[set("room_types={fast={simulation=\"arena\"}}")], &none).unwrap();
    let types: Vec<&str> = c.room_types.keys().map(String::as_str).collect();
    assert_eq!(types, ["arena", "fast", "relay"]);
    // An old [websocket] name given as an override outranks the file's new one.
    let c = Config::load(
        Some(&file),
        &[env("TICKRELAY__WEBSOCKET__MAX_MESSAGE_BYTES", "70000")],
        &none,
    )
    .unwrap();
    assert_eq!(c.session.max_message_bytes, 70_000);
    let c = Config::load(
        None,
        &[
            env("TICKRELAY__WEBSOCKET__MAX_MESSAGE_BYTES", "70000"),
            set("session.max_message_bytes=90000"),
        ],
        &none,
    )
    .unwrap();
    assert_eq!(c.session.max_message_bytes, 90_000, "in the order given");
    // A variable finds the program's own type whatever the case of its name.
    let capitals = Simulations::new().add("Plain", || Arena::new(ArenaConfig::default()));
    let c = Config::load(None, &[env("TICKRELAY__ROOM_TYPES__PLAIN__TICK_RATE", "60")], &capitals).unwrap();
    assert_eq!(c.room_types["Plain"].tick_rate, 60);
    assert!(!c.room_types.contains_key("plain"));
    // So is a type of the program's own simulation.
    let own = Simulations::new().add("plain", || Arena::new(ArenaConfig::default()));
    let c = Config::load(None, &[set("room_types.plain.tick_rate=60")], &own).unwrap();
    let plain = &c.room_types["plain"];
    assert_eq!(
        (plain.tick_rate, &plain.simulation),
        (60, &SimulationKind::Registered("plain".into()))
    );
    // A new type must say what it runs (a typo in a name would make one).
    let e = Config::load(None, &[set("room_types.arean.tick_rate=60")], &none)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("room type `arean`") && e.contains("--set room_types.arean.tick_rate"),
        "{e}"
    );
    let c = Config::load(
        None,
        &[
            set("room_types.duel.simulation=\"arena\""),
            set("room_types.duel.max_members=2"),
        ],
        &none,
    )
    .unwrap();
    assert_eq!(c.room_types["duel"].max_members, 2);
    // A typo or a wrong type is refused, naming the override that set it.
    let e = Config::load(Some(&file), &[set("session.max_rooms_per_sessio=1")], &none)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_rooms_per_sessio") && e.ends_with("(set by --set session.max_rooms_per_sessio)"),
        "{e}"
    );
    let e = Config::load(
        None,
        &[set("max_rooms_per_creator=3"), env("TICKRELAY__MAX_ROOMS", "many")],
        &none,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`max_rooms`") && e.ends_with("(set by TICKRELAY__MAX_ROOMS)"),
        "{e}"
    );
    // A value meant as an array that is not TOML (its strings unquoted) is text,
    // and the refusal says so; an address in brackets is text, rightly.
    let e = Config::load(
        None,
        &[set("room_types.relay.kinds=[{kind=2, name=card, fields=[]}]")],
        &none,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not valid TOML, so it was read as text"), "{e}");
    let c = Config::load(None, &[set("listen=[::1]:7443")], &none).unwrap();
    assert_eq!(c.listen.to_string(), "[::1]:7443");
    // An error in the file names the file and its line, whatever overrides there are.
    std::fs::write(&file, "max_rooms = 5\nmax_roms = 6\n").unwrap();
    let e = Config::load(Some(&file), &[env("TICKRELAY__MAX_ROOMS", "7")], &none).unwrap_err();
    assert!(
        matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("line 2"),
        "{e}"
    );
    // An old name and its new one both set: which one was meant is not clear.
    std::fs::write(
        &file,
        "[websocket]\noutbox_max_bytes = 1\n[session]\noutbox_max_bytes = 2\n",
    )
    .unwrap();
    let e = Config::load(Some(&file), &[], &none).unwrap_err().to_string();
    assert!(e.contains("[websocket] outbox_max_bytes is the old name"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rooms_kept_open_are_checked_as_a_start_would_open_them() {
    let refused = |toml: &str| Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
    let e =
        refused("max_rooms = 1\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"b\"\ntype = \"relay\"\n");
    assert!(e.contains("2 rooms kept open, more than max_rooms (1)"), "{e}");
    let e = refused("[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"a\"\ntype = \"arena\"\n");
    assert!(e.contains("listed twice"), "{e}");
    let e = refused("[[rooms]]\nid = \"a\\nb\"\ntype = \"relay\"\n");
    assert!(e.contains("without control characters"), "{e}");
    let e = refused("[[rooms]]\nid = \"a\"\ntype = \"relay\"\nmetadata = { \"\" = \"v\" }\n");
    assert!(e.contains("room `a`: metadata: metadata keys"), "{e}");
    let e = refused("[[rooms]]\nid = \"a\"\ntype = \"arnea\"\n");
    assert!(
        e.contains("unknown type `arnea` (did you mean `arena`?); the room types are: arena, relay"),
        "{e}"
    );
    // A simulation's name mistyped in a type declaring kinds: the message names it.
    let e = refused("[room_types.duel]\nsimulation = \"relya\"\nkinds = [{ kind = 1, name = \"dot\", fields = [] }]\n");
    assert!(e.contains("runs simulation `relya`"), "{e}");
    let twice = "max_rooms = 1\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n[[rooms]]\nid = \"a\"\ntype = \"relay\"\n";
    Config::from_toml(twice).unwrap().validate().unwrap();
}

#[test]
fn a_files_built_in_room_type_changes_the_settings_it_names() {
    let c = Config::from_toml("[room_types.arena]\ntick_rate = 10\n").unwrap();
    let arena = &c.room_types["arena"];
    assert_eq!((arena.tick_rate, &arena.simulation), (10, &SimulationKind::Arena));
    // A section that is not a table is an error, not a crash.
    let e = Config::from_toml("session = []\n[websocket]\nmax_message_bytes = 1000\n").unwrap_err();
    assert!(e.to_string().contains("session must be a table"), "{e}");
}

#[test]
fn partial_files_keep_defaults_and_typos_are_refused() {
    let c = Config::from_toml("listen = \"0.0.0.0:9000\"\n[room_types.fast]\ntick_rate = 60\n").unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.room_types["fast"].tick_rate, 60);
    assert_eq!(c.room_types["fast"].max_members, 64);
    // Defining one room type keeps the built-in ones.
    assert!(c.room_types.contains_key("relay") && c.room_types.contains_key("arena"));
    c.validate().unwrap();
    let c = Config::from_toml("[room_types.arena]\nsimulation = \"arena\"\ntick_rate = 10\n").unwrap();
    assert_eq!(c.room_types["arena"].tick_rate, 10);
    c.validate().unwrap();
    assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
}

#[test]
fn a_room_type_named_like_a_simulation_but_running_none_is_warned_about() {
    let own = Simulations::new()
        .add("ctf", || Arena::new(ArenaConfig::default()))
        .add("go", || Arena::new(ArenaConfig::default()));
    let warned = |text: &str| Config::from_parts(text, None, &[], &own).unwrap().lookalikes;
    for typo in [
        "[room_types.cft]\ntick_rate = 10\n",
        "[room_types.Arnea]\n",
        "[room_types.arenaa]\n",
    ] {
        let warned = warned(typo);
        assert!(
            warned.len() == 1 && warned[0].contains("did you mean"),
            "{typo}: {warned:?}"
        );
    }
    // Meant, or too far from any simulation's name (short names need a closer miss).
    assert!(
        warned("[room_types.cft]\nsimulation = \"relay\"\n").is_empty(),
        "named: meant"
    );
    for name in ["lobby", "dm", "ui", "tdm", "game", "ctf"] {
        assert!(warned(&format!("[room_types.{name}]\n")).is_empty(), "{name}");
    }
    // The arena's settings on a game's own type are ignored, and said so; on a
    // relay type (as in the default file) they are not worth a word.
    let arena_on_ctf = warned("[room_types.ctf]\narena_npcs = 3\n");
    assert!(
        arena_on_ctf.len() == 1 && arena_on_ctf[0].contains("runs `ctf`, not the arena: arena_npcs ignored"),
        "{arena_on_ctf:?}"
    );
    assert!(warned("[room_types.lobby]\narena_npcs = 3\n").is_empty());
    assert!(warned("[room_types.arena]\narena_npcs = 3\n").is_empty());
}

#[test]
fn invalid_settings_are_explained() {
    let mut c = Config::default();
    c.room_types.get_mut("relay").unwrap().tick_rate = 500;
    assert!(c.validate().unwrap_err().to_string().contains("tick_rate"));
    let mut c = Config::default();
    c.session.resume_grace_secs = 1e20;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("resume_grace_secs must be at most 86400")
    );
    let mut c = Config::default();
    c.room_types.get_mut("relay").unwrap().owner_quiet_ms = 40;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("owner_quiet_ms must be 0 (off) or at least 100")
    );
    c.room_types.get_mut("relay").unwrap().owner_quiet_ms = MIN_OWNER_QUIET_MS;
    assert!(c.validate().is_ok());
    let c = Config {
        default_room_type: "nope".into(),
        ..Config::default()
    };
    assert!(c.validate().is_err());
    let mut c = Config::default();
    c.session.outbox_max_messages = 100;
    assert!(c.validate().unwrap_err().to_string().contains("outbox_max_messages"));
    let mut c = Config::default();
    c.session.outbox_max_messages = 100_000;
    assert!(c.validate().unwrap_err().to_string().contains("at most 65536"));
    let mut c = Config::default();
    c.session.messages_per_second = 0.5;
    assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
    let mut c = Config::default();
    c.session.byte_burst = c.session.max_message_bytes as f64 - 1.0;
    assert!(c.validate().unwrap_err().to_string().contains("byte_burst"));
    c.session.byte_burst += 1.0;
    assert!(c.validate().is_ok());
    // A file raising the message size alone raises the burst with it; one setting
    // both inconsistently is refused.
    let c = Config::from_toml("[session]\nmax_message_bytes = 200000\n").unwrap();
    assert_eq!(c.session.byte_burst, 200_000.0);
    let c = Config::from_toml("[session]\nmax_message_bytes = 200000\nbyte_burst = 1000.0\n").unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("byte_burst"));
    // A token no request could present (`TICKRELAY_API_TOKEN=` left empty).
    let mut c = Config::default();
    c.api.token = Some(" ".into());
    assert!(c.validate().unwrap_err().to_string().contains("api.token is empty"));
    c.api.token = None;
    c.metrics.token = Some(String::new());
    assert!(c.validate().unwrap_err().to_string().contains("metrics.token is empty"));
    c.metrics.token = Some("secret ".into());
    assert!(c.validate().unwrap_err().to_string().contains("white space"));
    c.metrics.token = Some("line\nbreak".into());
    assert!(c.validate().unwrap_err().to_string().contains("control character"));
    // Settings that would leave the relay up but useless.
    let refused = |set: &str| {
        let c = Config::load(None, &[Override::from_set(set).unwrap()], &Simulations::new()).unwrap();
        c.validate().unwrap_err().to_string()
    };
    for set in ["sim_queue_capacity=0", "max_rooms=0", "session.max_rooms_per_session=0"] {
        assert!(refused(set).contains("at least 1"), "{set}");
    }
    assert!(refused("quic.stream_receive_window_bytes=0").contains("at least 1024"));
    assert!(refused("cluster.public_url=notaurl").contains("not a ws:// or wss:// URL"));
    for url in [
        "wss://node1.example.com",
        "wss://node1.example.com/",
        "wss://node1.example.com?x=/ws",
    ] {
        assert!(
            refused(&format!("cluster.public_url={url}")).contains("the WebSocket path"),
            "{url}"
        );
    }
    assert!(refused("cluster.node_id=\"\"").contains("cluster.node_id"));
    assert!(refused("metrics.listen=\"127.0.0.1:7443\"").contains("listen's own address"));
    assert!(refused("room_types.\"a\\tb\".simulation=\"relay\"").contains("a room type's name"));
    let mut c = Config::default();
    c.connections.max_per_ip = 0;
    assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
}

#[test]
fn settings_moved_to_session_are_still_read_under_their_old_names() {
    let old = "[websocket]\nmax_message_bytes = 2048\noutbox_max_messages = 10\noutbox_max_bytes = 999\n";
    let c = Config::from_toml(old).unwrap();
    assert_eq!(c.session_settings().max_message_bytes, 2048);
    assert_eq!((c.outbox_limits().max_messages, c.outbox_limits().max_bytes), (10, 999));
    let new = "[session]\nmax_message_bytes = 4096\n";
    assert_eq!(
        Config::from_toml(new).unwrap().session_settings().max_message_bytes,
        4096
    );
}

#[test]
fn naive_fanout_reaches_every_room_type() {
    let c = Config::from_toml("naive_fanout = true\n[room_types.fast]\ntick_rate = 60\n").unwrap();
    let pool = c.pool_config(&Simulations::new()).unwrap();
    assert_eq!(pool.room_types.len(), 3);
    assert!(pool.room_types.values().all(|t| t.config.naive_fanout));
    assert!(
        Config::default()
            .pool_config(&Simulations::new())
            .unwrap()
            .room_types
            .values()
            .all(|t| !t.config.naive_fanout)
    );
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Size {
    width: f32,
}

#[test]
fn room_types_run_the_simulations_a_program_registers_with_their_params() {
    let simulations = Simulations::new()
        .add("plain", || Arena::new(ArenaConfig::default()))
        .add_with_params("sized", |size: &Size| {
            Arena::new(ArenaConfig {
                width: size.width,
                ..ArenaConfig::default()
            })
        });
    let types = |toml: &str| {
        let c = Config::from_toml(toml).unwrap();
        c.validate().map_err(|e| e.to_string())?;
        c.pool_config(&simulations)
            .map(|p| p.room_types)
            .map_err(|e| e.to_string())
    };
    let sized = "[room_types.wide]\nsimulation = \"sized\"\n[room_types.wide.params]\nwidth = 500.0\n";
    let wide = &types(sized).unwrap()["wide"];
    let schema = (wide.factory)().schema();
    let x = &schema.kinds()[0].fields()[0];
    assert_eq!(x.ty, FieldType::float(0.0, 500.0, 0.01).unwrap());
    types("[room_types.p]\nsimulation = \"plain\"\n").unwrap();

    for (toml, problem) in [
        (
            "[room_types.x]\nsimulation = \"chess\"\n",
            "`chess` is not one this program has (it has: relay, arena, plain, sized)",
        ),
        (
            "[room_types.x]\nsimulation = \"sized\"\n",
            "params: missing field `width`",
        ),
        (
            "[room_types.x]\nsimulation = \"sized\"\nparams = { width = \"wide\" }\n",
            "params: invalid type",
        ),
        (
            "[room_types.x]\nsimulation = \"plain\"\nparams = { width = 1.0 }\n",
            "params: unknown field `width`",
        ),
        (
            "[room_types.x]\nsimulation = \"arena\"\nparams = { width = 1.0 }\n",
            "`params` are for simulations a program registers",
        ),
        (
            "[room_types.x]\nsimulation = \"plain\"\n[[room_types.x.kinds]]\nkind = 1\nfields = []\n",
            "declare their own",
        ),
    ] {
        let e = types(toml).unwrap_err();
        assert!(e.contains("room type `x`") && e.contains(problem), "{e}");
    }
}

#[test]
fn a_registered_simulation_has_a_room_type_of_its_name_unless_one_is_configured() {
    let simulations = Simulations::new().add("plain", || Arena::new(ArenaConfig::default()));
    let mut c = Config::default();
    c.add_room_types(&simulations).unwrap();
    assert_eq!(
        c.room_types["plain"].simulation,
        SimulationKind::Registered("plain".into())
    );
    c.pool_config(&simulations).unwrap();

    let tuned = "[room_types.plain]\nsimulation = \"plain\"\ntick_rate = 20\n";
    let mut c = Config::from_toml(tuned).unwrap();
    c.add_room_types(&simulations).unwrap();
    assert_eq!(c.room_types["plain"].tick_rate, 20);

    let forgot = Config::from_toml("[room_types.plain]\ntick_rate = 20\n");
    let e = forgot.unwrap().add_room_types(&simulations).unwrap_err().to_string();
    assert!(e.contains("add simulation = \"plain\" to [room_types.plain]"), "{e}");
}

#[test]
#[should_panic(expected = "simulation `arena` is registered twice")]
fn a_built_in_name_cannot_be_registered() {
    let _ = Simulations::new().add("arena", || Arena::new(ArenaConfig::default()));
}

#[test]
fn redis_certificates_and_sentinel_passwords_need_their_kind_of_url() {
    let check = |toml: &str| Config::from_toml(toml).unwrap().validate().map_err(|e| e.to_string());
    let plain = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_ca_file = \"ca.pem\"\n";
    assert!(check(plain).unwrap_err().contains("rediss://"));
    let tls = "[cluster]\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_ca_file = \"ca.pem\"\n";
    check(tls).unwrap();
    let sentinels = "[cluster]\nredis_url = \"rediss-sentinel://127.0.0.1#m\"\nredis_cert_file = \"c.pem\"\nredis_key_file = \"k.pem\"\n";
    check(sentinels).unwrap();
    let half = "[cluster]\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_cert_file = \"c.pem\"\n";
    assert!(check(half).unwrap_err().contains("set both or neither"));
    let no_sentinels = "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nsentinel_password = \"x\"\n";
    assert!(check(no_sentinels).unwrap_err().contains("redis-sentinel://"));
    check("[cluster]\nredis_url = \"redis-sentinel://127.0.0.1#m\"\nsentinel_password = \"x\"\n").unwrap();
    let user_alone = "[cluster]\nredis_url = \"redis-sentinel://127.0.0.1#m\"\nsentinel_username = \"u\"\n";
    assert!(
        check(user_alone)
            .unwrap_err()
            .contains("needs cluster.sentinel_password")
    );
}

#[test]
fn an_arena_of_too_many_npcs_is_refused_at_start() {
    let arena = |npcs: u32| {
        let text = format!("[room_types.arena]\nsimulation = \"arena\"\narena_npcs = {npcs}\n");
        Config::from_toml(&text).unwrap().validate().map_err(|e| e.to_string())
    };
    assert_eq!(arena(MAX_ARENA_NPCS), Ok(()));
    let e = arena(MAX_ARENA_NPCS + 1).unwrap_err();
    assert!(e.contains("arena_npcs must be at most 10000"), "{e}");
}

#[test]
fn relay_kinds_are_declared_in_toml_and_checked() {
    // The example in the default file, uncommented.
    let example: String = DEFAULT_CONFIG
        .lines()
        .skip_while(|l| !l.starts_with("# [[room_types.relay.kinds]]"))
        .take_while(|l| l.starts_with('#') && !l.starts_with("# Rooms"))
        .filter(|l| !l.starts_with("#   ") || l.contains('{'))
        .map(|l| l.trim_start_matches("# ").trim_start_matches('#'))
        // Its prose between the examples left out.
        .filter(|l| l.starts_with(['[', ' ', ']']) || l.contains(" = ") || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml(&example).unwrap();
    c.validate().unwrap();
    let schema = c.room_types["relay"].schema().unwrap();
    let player = &schema.kinds()[0];
    assert_eq!((player.kind(), player.name(), player.fields().len()), (1, "player", 5));
    assert!(!player.is_owner_only());
    let card = &schema.kinds()[1];
    assert_eq!((card.kind(), card.name(), card.is_owner_only()), (2, "card", true));
    assert_eq!(c.room_types["arena"].schema().unwrap().kinds().len(), 2);

    for (toml, problem) in [
        ("{ id = 1, type = \"float\", min = 0, max = 1 }", "needs `precision`"),
        ("{ id = 1, type = \"int\", min = 0.5, max = 1 }", "must be integers"),
        ("{ id = 1, type = \"vec3\" }", "unknown type"),
        (
            "{ id = 1, type = \"f32\", min = 0, max = 1, precision = 0.1 }",
            "unknown type `f32` (one of: int, float, bool, bytes, string)",
        ),
        (
            "{ id = 1, type = \"int\", min = 0, max = 9, precision = 1 }",
            "type = \"int\" takes no `precision`",
        ),
        ("{ id = 1, type = \"bool\", max = 1 }", "type = \"bool\" takes no `max`"),
        (
            "{ id = 1, type = \"float\", min = 0, max = 1, precision = 0.1, max_len = 4 }",
            "no `max_len`",
        ),
        (
            "{ id = 1, type = \"string\", max_len = 5000 }",
            "more than the room type's max_field_bytes (1024)",
        ),
        (
            "{ id = 1, name = \"hp\", type = \"bool\" }, { id = 2, name = \"hp\", type = \"bool\" }",
            "two fields have one name",
        ),
        (
            "{ id = 1, type = \"float\", min = 0, max = 1e9, precision = 1 }",
            "2^24 steps",
        ),
    ] {
        let text = format!("[[room_types.relay.kinds]]\nkind = 1\nfields = [{toml}]\n");
        let e = Config::from_toml(&text).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains(problem) && e.contains("room type `relay`"), "{e}");
    }
    let three = "{ id = 1, type = \"bool\" }, { id = 2, type = \"bool\" }, { id = 3, type = \"bool\" }";
    let text = format!(
        "[room_types.relay]\nmax_fields_per_entity = 2\n[[room_types.relay.kinds]]\nkind = 1\nfields = [{three}]\n"
    );
    let e = Config::from_toml(&text).unwrap().validate().unwrap_err().to_string();
    assert!(e.contains("declares 3 fields"), "{e}");
    // Names are optional; given, no two kinds share one (nor two fields of a kind).
    let kinds = |a: &str, b: &str| {
        let kind =
            |n: u32, name: &str| format!("[[room_types.relay.kinds]]\nkind = {n}\nname = \"{name}\"\nfields = []\n");
        Config::from_toml(&(kind(1, a) + &kind(2, b))).unwrap().validate()
    };
    assert!(kinds("", "").is_ok() && kinds("ship", "rock").is_ok());
    let e = kinds("ship", "ship").unwrap_err().to_string();
    assert!(e.contains("two kinds have one name"), "{e}");
}

/// Every address setting read from a file says what it expects, as its flag does: a
/// host name or a port alone is the likely mistake.
#[test]
fn a_file_address_that_is_not_ip_and_port_says_what_is_expected() {
    for toml in [
        "listen = \"localhost:7443\"\n",
        "[quic]\nlisten = \"7443\"\n",
        "[metrics]\nlisten = \"metrics.internal:9100\"\n",
    ] {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(
            e.contains("expected IP:PORT") && e.contains("host name is not resolved"),
            "{toml}: {e}"
        );
    }
    let c = Config::from_toml("[quic]\nlisten = \"[::1]:7444\"\n[metrics]\nlisten = \"127.0.0.1:9100\"\n").unwrap();
    assert_eq!(c.quic.listen, Some("[::1]:7444".parse().unwrap()));
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9100".parse().unwrap()));
}

/// The development certificate directories of test processes that ended (their
/// lock file free) are removed as a process makes its own; one whose process holds
/// its lock is kept, whatever `/proc` says (a process in another PID namespace), and
/// so is one changed within the quiet time.
#[test]
fn loopback_configurations_remove_the_directories_of_ended_processes() {
    let temp = std::env::temp_dir();
    let dir = |pid: u32| {
        let dir = temp.join(format!("tickrelay-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join(super::LOOPBACK_LOCK_FILE)).unwrap();
        dir
    };
    let (ended, running) = (dir(4_294_967_295), dir(4_294_967_294));
    let held = std::fs::File::open(running.join(super::LOOPBACK_LOCK_FILE)).unwrap();
    held.lock().unwrap();
    super::remove_ended_processes_dirs(&temp, Duration::from_secs(3600));
    assert!(ended.exists(), "changed within the quiet time: kept");
    super::remove_ended_processes_dirs(&temp, Duration::ZERO);
    assert!(!ended.exists(), "an ended process's directory is removed");
    assert!(running.exists(), "a running process's is kept");
    drop(held);
    let _ = std::fs::remove_dir_all(&running);
}
