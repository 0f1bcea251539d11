//! The `tickrelay` binary as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Starts the binary on its defaults (loopback, any port, no QUIC) and `args`, returns
/// what it wrote to standard output and standard error up to its "listening" line,
/// then stops it.
fn first_logs(args: &[&str]) -> (String, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("tickrelay-logs-{}-{}", std::process::id(), args.join("_")));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(["--listen", "127.0.0.1:0", "--no-quic"])
        .args(args)
        .env_remove("TICKRELAY_JWT_SECRET")
        .arg("--dev-cert-path")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
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
    assert!(!output.status.success());
    assert!(
        stderr.contains("--jwt-secret") && stderr.contains("TICKRELAY_JWT_SECRET"),
        "{stderr}"
    );

    let (_, lines) = first_logs(&["--auth", "jwt", "--jwt-secret", "x"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("shorter than 32 bytes")),
        "{lines:?}"
    );
    let secret = "k".repeat(32);
    let (_, lines) = first_logs(&["--auth", "jwt", "--jwt-secret", &secret]);
    assert!(!lines.iter().any(|l| l.contains("shorter than")), "{lines:?}");
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
}
