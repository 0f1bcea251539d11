//! The `tickrelay` binary as a user runs it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Starts the binary on its defaults (loopback, any port, no QUIC) with `--log-format
/// FORMAT`, returns what it wrote to standard output and standard error up to its
/// "listening" line, then stops it.
fn first_logs(format: &str) -> (String, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("tickrelay-logs-{}-{format}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args(["--listen", "127.0.0.1:0", "--no-quic", "--log-format", format])
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
    let (stdout, lines) = first_logs("text");
    assert_eq!(stdout, "", "nothing on standard output");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI colours: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("INFO")));

    let (stdout, lines) = first_logs("json");
    assert_eq!(stdout, "");
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["level"].is_string() && object["fields"]["message"].is_string(),
            "{line}"
        );
    }
}
