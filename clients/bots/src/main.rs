//! `tickrelay-bots`: runs a scenario of headless clients against a relay and prints a
//! report (a table, and JSON with `--json`). Exits 1 when an invariant was violated.
//!
//! ```sh
//! tickrelay-bots --rooms 100 --members 20 --duration-secs 600
//! ```
//!
//! One process holds at most 18,000 bots (fewer when the open-file limit is lower);
//! more are spread over worker processes of this binary (`--processes N`, or
//! automatically).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use tickrelay_bots::{Report, Scenario, run_scenario};
use tickrelay_client::Trust;
use tokio::io::AsyncReadExt;

/// mimalloc, as the relay: the bots allocate and free a frame's buffers per bot per
/// tick, and the fleet must cost the machine less than the relay it loads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bots per worker process at most (with this machine's open-file limit of 20,000).
const BOTS_PER_PROCESS: usize = 18_000;
/// Open files a bot process needs besides its bots' sockets.
const FILES_SPARE: u64 = 512;

/// Headless bot fleet for tickrelay soak and load tests.
#[derive(Parser, Debug, Clone)]
#[command(name = "tickrelay-bots", version)]
struct Args {
    /// Relay URL: `wss://host:port/ws` (WebSocket), `quic://host:port` (QUIC, state
    /// frames as datagrams), or `ws://host:port/ws` (WebSocket without TLS, to a relay
    /// run with `--insecure-plain`; --cert and --fingerprint are not read). Give it
    /// once per node of a cluster: bots spread over the nodes and fail over to the
    /// others.
    #[arg(long, default_value = "wss://127.0.0.1:7443/ws", action = clap::ArgAction::Append)]
    url: Vec<String>,
    /// A node will be lost (killed or stopped) during the run: connections lost
    /// without a close or closed with 1001 (or 1013: a resume elsewhere while the
    /// lost node's lease lives; or 4504: a session begun just before its node died),
    /// joins answered UNAVAILABLE, inputs unconfirmed because the bot's room was not
    /// back by the end, and in relay rooms the one removal refused after inputs rolled
    /// back to a checkpoint or a new member replaced the lost one, are counted apart,
    /// not as failures; the report gives how long bots took to play again.
    #[arg(long)]
    expect_node_loss: bool,
    /// The room type's game refuses some random intents by its own rules
    /// (INVALID_INTENT: a move out of turn, say): counted in the report, not a
    /// failure.
    #[arg(long)]
    game_refusals_ok: bool,
    /// Trust the certificates in this PEM file (the relay's development certificate
    /// by default).
    #[arg(long, default_value = "tickrelay-dev-cert.pem")]
    cert: PathBuf,
    /// Trust exactly the certificate with this SHA-256 fingerprint instead of --cert.
    #[arg(long)]
    fingerprint: Option<String>,
    /// JWT for every bot (when the relay requires one).
    #[arg(long, env = "TICKRELAY_BOT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Number of rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Bots per room.
    #[arg(long, default_value_t = 20)]
    members: usize,
    /// Room type: relay (entity writes), or any other (arena, or a game's own such as
    /// tag: two-byte movement intents; see --payload).
    #[arg(long, default_value = "arena")]
    room_type: String,
    /// What the bots send: entity writes for a room type whose simulation is relay
    /// (`writes`), two-byte movement intents for the others (`intents`), or by the
    /// type's name (`auto`: writes for `relay` only).
    #[arg(long, value_enum, default_value_t = Payload::Auto)]
    payload: Payload,
    /// Room ids are PREFIX-N.
    #[arg(long, default_value = "bots")]
    room_prefix: String,
    /// Inputs per second per bot; 0 for idle bots.
    #[arg(long, default_value_t = 30.0)]
    input_rate: f64,
    /// How long to run, ramp-up included.
    #[arg(long, default_value_t = 30.0)]
    duration_secs: f64,
    /// Connect the bots evenly over this many seconds.
    #[arg(long, default_value_t = 5.0)]
    ramp_up_secs: f64,
    /// Count frames, bytes, entity updates and latency only from this many seconds
    /// after the start (the steady window after the ramp-up); the report's duration
    /// is the window's.
    #[arg(long, default_value_t = 0.0)]
    warm_up_secs: f64,
    /// Share of bots that churn per minute (0.1 = a tenth each minute).
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Of the churning bots, the share that drop the connection and resume; the rest
    /// are replaced by new players.
    #[arg(long, default_value_t = 0.5)]
    churn_resume_share: f64,
    /// Worker processes (0: one per 18,000 bots, or fewer bots per process when the
    /// open-file limit is below 18,512).
    #[arg(long, default_value_t = 0)]
    processes: usize,
    /// Share of bots that mirror their room in full and verify every state checksum
    /// (that share of every room's seats, rounded up: every room is verified
    /// when it is above 0); the others follow ticks and input
    /// acknowledgements only. Below 1, the fleet spends less CPU per bot, so more of
    /// the machine is left to the relay when both share it.
    #[arg(long, default_value_t = 1.0, value_parser = share)]
    verify_share: f64,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 10.0)]
    progress_secs: f64,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: run as worker K of N and print the JSON report on stdout.
    #[arg(long, hide = true, num_args = 2, value_names = ["K", "N"])]
    worker: Option<Vec<usize>>,
}

impl Args {
    fn scenario(&self, worker: usize, workers: usize) -> Scenario {
        Scenario {
            urls: self.url.clone(),
            node_loss_expected: self.expect_node_loss,
            refusals_expected: self.game_refusals_ok,
            trust: match &self.fingerprint {
                Some(f) => Trust::Fingerprint(f.clone()),
                None => Trust::CertFile(self.cert.clone()),
            },
            token: self.token.clone(),
            rooms: self.rooms,
            members: self.members,
            room_type: self.room_type.clone(),
            writes: match self.payload {
                Payload::Auto => self.room_type == "relay",
                Payload::Writes => true,
                Payload::Intents => false,
            },
            room_prefix: self.room_prefix.clone(),
            input_rate: self.input_rate,
            duration: Duration::from_secs_f64(self.duration_secs),
            ramp_up: Duration::from_secs_f64(self.ramp_up_secs),
            warm_up: Duration::from_secs_f64(self.warm_up_secs),
            churn_per_minute: self.churn,
            churn_resume_share: self.churn_resume_share,
            progress: (self.progress_secs > 0.0).then(|| Duration::from_secs_f64(self.progress_secs)),
            worker,
            workers,
            verify_share: self.verify_share,
        }
    }
}

/// See `Args::payload`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum Payload {
    Auto,
    Writes,
    Intents,
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a share between 0 and 1")),
    }
}

impl Args {
    /// Mistakes a run would otherwise report only at its end.
    fn check(&self) -> Result<(), String> {
        if self.rooms == 0 || self.members == 0 {
            return Err("--rooms and --members must be at least 1".into());
        }
        if self.duration_secs <= 0.0 {
            return Err("--duration-secs must be more than 0".into());
        }
        if self.warm_up_secs > 0.0 && self.warm_up_secs >= self.duration_secs {
            return Err("--warm-up-secs must be shorter than --duration-secs".into());
        }
        let plain_only = self.url.iter().all(|url| url.starts_with("ws://"));
        if self.fingerprint.is_none()
            && !plain_only
            && let Err(e) = std::fs::metadata(&self.cert)
        {
            return Err(format!(
                "cannot read the certificate to trust, {}: {e}; run where the relay made \
                 its development certificate (the directory it started in), or pass \
                 --cert PATH or --fingerprint HEX (the relay logs both as it starts)",
                self.cert.display()
            ));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(usage) = args.check() {
        eprintln!("tickrelay-bots: {usage}");
        return ExitCode::from(2);
    }
    // Every bot holds a socket: raise the soft limit, and fit the bots per process to it.
    let open_files = match tickrelay::fd_limit::raise() {
        Ok(raised) => raised.to.unwrap_or(u64::MAX),
        Err(e) => {
            eprintln!("tickrelay-bots: cannot raise the open file limit: {e}");
            1024
        }
    };
    let per_process = BOTS_PER_PROCESS.min((open_files.saturating_sub(FILES_SPARE) as usize).max(1));
    if let Some(worker) = &args.worker {
        let report = run_scenario(args.scenario(worker[0], worker[1])).await;
        println!("{}", serde_json::to_string(&report).expect("report serializes"));
        return ExitCode::SUCCESS;
    }
    let bots = args.rooms * args.members;
    let processes = match args.processes {
        0 => bots.div_ceil(per_process).max(1),
        n => n,
    };
    let rooms = args.rooms;
    eprintln!(
        "tickrelay-bots: {bots} bots in {rooms} room{} of {} ({}) against {}, {} s, {processes} process{}",
        if rooms == 1 { "" } else { "s" },
        args.members,
        args.room_type,
        args.url.join(" "),
        args.duration_secs,
        if processes == 1 { "" } else { "es" },
    );
    let report = if processes == 1 {
        run_scenario(args.scenario(0, 1)).await
    } else {
        match run_workers(processes).await {
            Ok(report) => report,
            Err(e) => {
                eprintln!("tickrelay-bots: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    println!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("tickrelay-bots: cannot write {}: {e}", path.display());
        }
    }
    let violations = report.violations();
    if violations.is_empty() {
        println!("OK: no invariant violated");
        ExitCode::SUCCESS
    } else {
        for v in &violations {
            println!("VIOLATED: {v}");
        }
        ExitCode::from(1)
    }
}

/// Runs this binary as `n` workers with the same arguments and merges their reports.
async fn run_workers(n: usize) -> Result<Report, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut children = Vec::new();
    for k in 0..n {
        let child = tokio::process::Command::new(&exe)
            .args(&args)
            .args(["--worker", &k.to_string(), &n.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start worker {k}: {e}"))?;
        children.push(child);
    }
    let mut merged = Report::default();
    for (k, mut child) in children.into_iter().enumerate() {
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        let report: Report =
            serde_json::from_str(out.trim()).map_err(|e| format!("worker {k} ({status}) printed no report: {e}"))?;
        merged.merge(&report);
    }
    Ok(merged)
}
