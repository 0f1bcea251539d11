//! The `tickrelay` binary as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary, started by `sh -c PREFIX` (a `ulimit`, say) on its defaults (loopback,
/// any port, no QUIC) and `args`, with what it wrote to standard error up to its
/// "listening" line.
fn start(prefix: &str, args: &[&str]) -> (std::process::Child, Vec<String>, std::path::PathBuf) {
    start_program(env!("CARGO_BIN_EXE_tickrelay").as_ref(), prefix, args)
}

/// [`start`] for another program with the `tickrelay` command line (an example).
fn start_program(
    program: &std::path::Path,
    prefix: &str,
    args: &[&str],
) -> (std::process::Child, Vec<String>, std::path::PathBuf) {
    let (mut child, dir) = spawn(program, prefix, args);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines.last().is_some_and(|l: &String| l.contains("listening on")) {
        lines.push(
            rx.recv_timeout(Duration::from_secs(20))
                .expect("a log line within 20 s"),
        );
    }
    (child, lines, dir)
}

/// `program` started by `sh -c PREFIX` on the test defaults (loopback, any port, no
/// QUIC, its certificate in a directory of its own) and `args`, its standard output
/// and error piped; and that directory.
fn spawn(program: &std::path::Path, prefix: &str, args: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let name = program.file_name().unwrap().to_string_lossy();
    let dir = std::env::temp_dir().join(format!("{name}-bin-{}-{}", std::process::id(), args.join("_")));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{prefix} exec \"$0\" \"$@\""))
        .arg(program)
        .args(["--listen", "127.0.0.1:0", "--no-quic"])
        .args(args)
        .env_remove("TICKRELAY_JWT_SECRET")
        .arg("--dev-cert-path")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    (child, dir)
}

/// The port in the binary's "listening on" line.
fn port_of(listening: &str) -> u16 {
    listening
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening}"))
}

/// [`start`] without a prefix; returns what the binary wrote to standard output and
/// standard error up to its "listening" line, then stops it.
fn first_logs(args: &[&str]) -> (String, Vec<String>) {
    let (mut child, lines, dir) = start("", args);
    child.kill().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (stdout, lines)
}

#[test]
fn logs_go_to_standard_error_without_colours_off_a_terminal_or_as_json() {
    let (stdout, lines) = first_logs(&["--log-format", "text"]);
    assert_eq!(stdout, "", "nothing on standard output");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI colours: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("INFO")));

    let (stdout, lines) = first_logs(&["--log-format", "json"]);
    assert_eq!(stdout, "");
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["level"].is_string() && object["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn jwt_authentication_names_where_the_secret_goes_and_warns_of_a_short_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(["--listen", "127.0.0.1:0", "--no-quic", "--auth", "jwt"])
        .env_remove("TICKRELAY_JWT_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a configuration refused, as --check would: {stderr}"
    );
    assert!(
        stderr.contains("--jwt-secret") && stderr.contains("TICKRELAY_JWT_SECRET"),
        "{stderr}"
    );

    let (_, lines) = first_logs(&["--auth", "jwt", "--jwt-secret", "x"]);
    let warnings = lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("shorter than 32 ("))
        .count();
    assert_eq!(warnings, 1, "warned once: {lines:?}");
    let secret = "k".repeat(32);
    let (_, lines) = first_logs(&["--auth", "jwt", "--jwt-secret", &secret]);
    assert!(!lines.iter().any(|l| l.contains("shorter than")), "{lines:?}");
}

/// `tickrelay token` reads the secret from the configuration file the relay runs
/// with, so it need not be typed (and shown by `ps`).
#[test]
fn tokens_are_minted_with_the_config_files_secret() {
    let dir = std::env::temp_dir().join(format!("tickrelay-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    let secret = "s".repeat(32);
    std::fs::write(&file, format!("[auth]\nmode = \"jwt\"\nhs256_secret = \"{secret}\"\n")).unwrap();
    let mint = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
            .arg("token")
            .args(args)
            .env_remove("TICKRELAY_JWT_SECRET")
            .env_remove("TICKRELAY_CONFIG")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
        )
    };
    let (ok, from_file) = mint(&["-c", file.to_str().unwrap(), "--sub", "ann", "--ttl-secs", "60"]);
    assert!(ok);
    let auth = tickrelay::session::auth::Authenticator::new(&tickrelay::session::auth::AuthConfig {
        mode: tickrelay::session::auth::AuthMode::Jwt,
        hs256_secret: Some(secret.clone()),
        ..Default::default()
    })
    .unwrap();
    let now = tickrelay::clock::unix_micros() / 1_000_000;
    assert_eq!(&*auth.authenticate(Some(&from_file), now).unwrap().user_id, "ann");
    assert!(!mint(&["--sub", "ann"]).0, "no secret anywhere");
    // Nothing the relay would refuse: an empty secret, an empty or overlong user id.
    assert!(!mint(&["--secret", "", "--sub", "ann"]).0, "an empty secret");
    let overlong = "x".repeat(tickrelay::session::auth::MAX_SUB_BYTES + 1);
    for sub in ["", overlong.as_str()] {
        assert!(!mint(&["-c", file.to_str().unwrap(), "--sub", sub]).0, "sub {sub:?}");
    }
    // The relay's variable for its file setting serves too.
    let output = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(["token", "--sub", "bob"])
        .env_clear()
        .env("TICKRELAY__AUTH__HS256_SECRET", &secret)
        .output()
        .unwrap();
    let from_variable = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(&*auth.authenticate(Some(&from_variable), now).unwrap().user_id, "bob");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An example program of this package: `cargo test` builds them next to the tests
/// (`cargo test --test relay` alone does not).
fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo test` without --test",
        path.display()
    );
    path
}

#[test]
fn the_watch_example_explains_itself_and_names_a_missing_certificate_file() {
    let help = Command::new(example("watch")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{help:?}");
    for option in ["--url", "--cert", "--token", "--room", "--seconds"] {
        assert!(text.contains(option), "{option} in {text}");
    }
    let missing = Command::new(example("watch"))
        .args(["--cert", "/nonexistent/relay-cert.pem"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("/nonexistent/relay-cert.pem"), "{stderr}");
    assert!(
        stderr.starts_with("error: certificate file") && stderr.contains("--cert"),
        "{stderr}"
    );

    // A join the relay refuses (the token allows another room) ends it with the reason.
    let secret = "k".repeat(32);
    let (mut relay, lines, dir) = start("", &["--auth", "jwt", "--jwt-secret", &secret]);
    let token = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(["token", "--secret", &secret, "--sub", "ann", "--room", "other"])
        .output()
        .unwrap();
    let refused = Command::new(example("watch"))
        .arg("--url")
        .arg(format!("wss://127.0.0.1:{}/ws", port_of(lines.last().unwrap())))
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .args(["--room", "demo", "--seconds", "5", "--token"])
        .arg(String::from_utf8(token.stdout).unwrap().trim())
        .output()
        .unwrap();
    relay.kill().unwrap();
    relay.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(stderr.contains("the relay refused the join: FORBIDDEN"), "{stderr}");
}

/// The Tag example is the `tickrelay` command line with a room type of its own: rooms
/// of type `tag` are what the plain binary refuses to start with.
#[test]
fn the_tag_example_is_the_relay_with_a_room_type_of_its_own() {
    let tag = ["--default-room-type", "tag"];
    let (mut child, lines, dir) = start_program(&example("tag"), "", &tag);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(lines.last().unwrap().contains("listening on"), "{lines:?}");
    let plain = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(tag)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success(), "{stderr}");
    assert!(
        stderr.contains("default_room_type `tag` is not a room type; the room types are: arena, relay"),
        "{stderr}"
    );
    // Its help and its default configuration name its own room type.
    let output = |args: &[&str]| {
        let out = Command::new(example("tag")).args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(output(&["--help"]).contains("own simulations (each a room type of its name"));
    let config = output(&["config", "--print-default"]);
    assert!(
        config.contains("# [room_types.tag]\n# simulation = \"tag\""),
        "{config}"
    );
    let relay = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&relay.stdout).contains("own simulations"));

    // Params the game's constructor refuses (it panics): `--check` warns that no room
    // of the type can open, and refuses (2, as a start does) when `[[rooms]]` keeps one
    // open.
    let check = |extra: &[&str]| {
        let args = [&["--check", "--set", "room_types.tag.params.size=0"], extra].concat();
        Command::new(example("tag")).args(args).output().unwrap()
    };
    let warned = check(&[]);
    let stdout = String::from_utf8_lossy(&warned.stdout);
    assert!(warned.status.success(), "{warned:?}");
    assert!(
        stdout.contains("warning: room type `tag`: its simulation panicked"),
        "{stdout}"
    );
    let kept = ["--set", r#"rooms=[{id="t", type="tag"}]"#];
    let refused = check(&kept);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`[[rooms]]` `t` included"), "{stderr}");
    let started = Command::new(example("tag"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-plain",
            "--set",
            "room_types.tag.params.size=0",
        ])
        .args(kept)
        .output()
        .unwrap();
    assert_eq!(started.status.code(), Some(2), "{started:?}");
}

/// Out of file descriptors, the relay closes new connections at once (a descriptor kept
/// in reserve accepts and closes them) instead of leaving them waiting in the backlog,
/// and serves again once descriptors are free.
#[test]
fn out_of_file_descriptors_new_connections_are_closed_at_once() {
    use std::io::Write;
    use std::net::TcpStream;
    let (child, lines, dir) = start("ulimit -n 64 &&", &["--insecure-plain"]);
    // Stopped however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Stop(child);
    let port = port_of(lines.last().unwrap());
    // Idle connections (their header timeout is 10 s) until the relay is out of
    // descriptors.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut probe = TcpStream::connect(("127.0.0.1", port)).unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let read = probe.read(&mut [0; 16]);
    assert!(
        matches!(&read, Ok(0)) || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed at once, not left waiting: {read:?}"
    );
    drop(idle);
    let healthy = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = tcp.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    });
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(healthy, "serving again once the idle connections closed");
}

/// A relay whose log reader went away (a logging pipe or sidecar that died) still
/// stops on SIGTERM: a log line it cannot write is lost, and does not take the task
/// that wrote it down (here the signal handler's).
#[test]
fn the_relay_stops_on_sigterm_after_its_log_reader_is_gone() {
    let (mut child, dir) = spawn(env!("CARGO_BIN_EXE_tickrelay").as_ref(), "", &["--log", "info"]);
    // Reads up to the "listening" line, then closes the pipe.
    let stderr = child.stderr.take().unwrap();
    let (listening, heard) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let found = lines.any(|line| line.contains("listening on"));
        drop(lines); // the pipe closed before the test goes on
        if found {
            let _ = listening.send(());
        }
    });
    heard
        .recv_timeout(Duration::from_secs(20))
        .expect("the relay listening within 20 s");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A socket that never starts its TLS handshake does not hold a stop: the relay
/// exits at once on SIGTERM (it waited out the handshake's 10 s).
#[test]
fn a_socket_without_a_handshake_does_not_hold_a_stop() {
    let (mut child, lines, dir) = start("", &[]);
    let idle = std::net::TcpStream::connect(("127.0.0.1", port_of(lines.last().unwrap()))).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // accepted
    let asked = std::time::Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(8) {
            child.kill().unwrap();
            panic!("still running 8 s after SIGTERM, held by a socket without a handshake");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(idle);
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tickrelay --check` checks what a start would use (the file, `TICKRELAY__*`
/// variables, `--set`, the named flags) without binding or writing anything.
#[test]
fn check_reports_the_configuration_a_start_would_use_and_warns_about_an_address_in_use() {
    let dir = std::env::temp_dir().join(format!("tickrelay-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        "[room_types.arena]\nsimulation = \"arena\"\ntick_rate = 10\n[room_types.arnea]\nmax_members = 8\n",
    )
    .unwrap();
    // An address in use: a start would fail on it, a check warns (the relay being
    // checked may hold it) and still exits 0.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let cert = dir.join("cert.pem");
    let check = |env: &[(&str, &str)], args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
            .args(["--check", "-c", file.to_str().unwrap(), "--listen", &listen])
            .arg("--dev-cert-path")
            .arg(&cert)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };

    let (code, stdout, _) = check(
        &[("TICKRELAY__ROOM_TYPES__RELAY__MAX_MEMBERS", "12")],
        &["--set", "room_types.arena.tick_rate=15"],
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("configuration OK\n"), "{stdout}");
    assert!(stdout.contains(&format!("listen: wss://{listen}/ws")), "{stdout}");
    assert!(
        stdout.contains(&format!("warning: cannot listen on TCP {listen}: ")),
        "the address in use: {stdout}"
    );
    assert!(
        stdout.contains("kinds of arena: avatar (1): x (1) float 0..=100 in steps of 0.01, y (2) float"),
        "the declared kinds: {stdout}"
    );
    assert!(
        stdout.contains("arena (arena, 15 Hz, 64 seats)"),
        "--set over the file: {stdout}"
    );
    let hidden = r#"room_types.relay.kinds=[{kind=2, name="card", owner_only=true, fields=[]}]"#;
    let (code, hidden, _) = check(&[], &["--set", hidden]);
    assert_eq!(code, Some(0), "{hidden}");
    assert!(
        hidden.contains("kinds of relay: card (2) (seen by its owner only): "),
        "a hidden kind, said so: {hidden}"
    );
    assert!(
        stdout.contains("relay (relay, 30 Hz, 12 seats)"),
        "the variable over the built-in type: {stdout}"
    );
    assert!(stdout.contains("warning: auth.mode = \"anonymous\""), "{stdout}");
    assert!(
        stdout.contains("warning: room type `arnea` names no `simulation`") && stdout.contains("did you mean `arena`?"),
        "a type named like a simulation, running none: {stdout}"
    );
    assert!(!cert.exists(), "no development certificate written");

    let (code, stdout, stderr) = check(&[("TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION", "many")], &[]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stderr.starts_with("configuration refused:") && stderr.contains("TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION"),
        "{stderr}"
    );
    let (code, stdout, _) = check(&[], &["--auth", "jwt", "--jwt-secret", "short", "--api-token", "short"]);
    assert_eq!(code, Some(0), "weak secrets are warnings, as at start: {stdout}");
    assert!(stdout.contains("warning: the HS256 secret is 5 bytes"), "{stdout}");
    assert!(stdout.contains("warning: the HTTP API's token is 5 bytes"), "{stdout}");
    assert!(
        stdout.contains("auth: jwt") && stdout.contains("http api: on"),
        "{stdout}"
    );
    let (code, _, stderr) = check(&[], &["--set", "connections.max_per_ip=0"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("max_per_ip must be at least 1"), "{stderr}");
    let (code, stdout, _) = check(&[], &["--no-quic", "--quic-listen", "127.0.0.1:9"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: [quic] listen (--quic-listen) is set but QUIC is off"),
        "{stdout}"
    );

    // What the relay would run with, printed as a file (then checked): secrets
    // hidden, and read back it is the same configuration.
    let printed_part = |stdout: &str| stdout.split("configuration OK").next().unwrap().to_string();
    let (code, stdout, _) = check(
        &[("TICKRELAY__ROOM_TYPES__RELAY__MAX_MEMBERS", "12")],
        &["--print-config", "--api-token", "a-long-secret-api-token"],
    );
    assert_eq!(code, Some(0));
    let printed = printed_part(&stdout);
    assert!(
        printed.contains("max_members = 12") && printed.contains("not shown: api.token"),
        "{printed}"
    );
    assert!(
        !printed.contains("a-long-secret") && stdout.contains("configuration OK"),
        "{stdout}"
    );
    std::fs::write(&file, &printed).unwrap();
    let (code, again, _) = check(&[], &["--print-config", "--api-token", "a-long-secret-api-token"]);
    assert_eq!(code, Some(0));
    assert_eq!(printed_part(&again), printed, "the printed file reads back as itself");
    drop(taken);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The systemd unit in `docs/` runs: its commands' flags and variables are the
/// binary's (each command run with `--check`), and `systemd-analyze verify` (where
/// it is installed) finds nothing to say about it.
#[test]
fn the_systemd_unit_in_the_docs_is_one_this_binary_runs_under() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tickrelay.service")).unwrap();
    let binary = env!("CARGO_BIN_EXE_tickrelay");
    let dir = std::env::temp_dir().join(format!("tickrelay-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("relay.toml");
    std::fs::write(
        &config,
        format!("[tls]\ndev_cert_path = \"{}\"\n", dir.join("cert.pem").display()),
    )
    .unwrap();
    let local = |line: &str| {
        line.replace("/usr/local/bin/tickrelay", binary)
            .replace("/etc/tickrelay/relay.toml", config.to_str().unwrap())
    };
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .collect()
    };
    let environment: Vec<(String, String)> = values("Environment")
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap())
        .collect();
    for command in values("ExecStartPre").into_iter().chain(values("ExecStart")) {
        let command = local(&command);
        let mut words = command.split_whitespace();
        let output = Command::new(words.next().unwrap())
            .args(words.filter(|&word| word != "--check"))
            .arg("--check")
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command}: {stderr}");
    }
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(_) => {
            let local_unit = dir.join("tickrelay.service");
            let as_root = local(&unit)
                .replace("User=tickrelay", "User=root")
                .replace("Group=tickrelay", "Group=root");
            std::fs::write(&local_unit, as_root).unwrap();
            let output = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&local_unit)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success() && said.trim().is_empty(), "{said}");
        }
        Err(e) => eprintln!("systemd-analyze not installed ({e}): the unit's syntax is not verified"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tickrelay --check` reaches what a start needs and cannot start without: the
/// cluster's Redis and the identity provider's signing keys. Out of reach, it says
/// the relay would not start and exits 1 (a configuration refused: 2).
#[test]
fn check_reaches_redis_and_fetches_the_signing_keys() {
    let check = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
            .args(["--check", "--listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let redis = tickrelay_testkit::redis::RedisServer::start();
    let url = redis.url();
    let (code, stdout, stderr) = check(&["--cluster", &url]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("cluster: {url} (one Redis server answered)")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("not checkpointed"),
        "every default room fits a checkpoint: {stdout}"
    );
    let (code, stdout, _) = check(&["--cluster", &url, "--set", "cluster.max_checkpoint_bytes=1048576"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("warning: room type `relay`: a room may hold 4194304 bytes of state"),
        "{stdout}"
    );
    drop(redis);
    let (code, _, stderr) = check(&["--cluster", &url]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("the relay would not start:") && stderr.contains("cannot reach Redis"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["--cluster", "redis://no such host"]);
    assert_eq!(
        code,
        Some(2),
        "a URL that does not parse is the configuration's: {stderr}"
    );

    // The identity provider: one key, served to every fetch.
    let key = crate::protection::SigningKey::new("a", jsonwebtoken::Algorithm::ES256);
    let body = serde_json::json!({ "keys": [key.jwk] }).to_string();
    let provider = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let keys_url = format!("http://{}/jwks.json", provider.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut socket in provider.incoming().flatten() {
            let mut request = [0; 4096];
            let _ = socket.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut socket, (head + &body).as_bytes());
        }
    });
    let jwt = |url: &str| check(&["--auth", "jwt", "--set", &format!("auth.jwks_url={url}")]);
    let (code, stdout, stderr) = jwt(&keys_url);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("auth: jwt (1 signing keys fetched from {keys_url})")),
        "{stdout}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, stderr) = jwt(&format!("http://{closed}/jwks.json"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot fetch the signing keys"), "{stderr}");
}
