//! The `tickrelay` command line (the `cli` feature): `tickrelay [serve]` runs the
//! relay; `tickrelay config --print-default` prints the commented default
//! configuration; `tickrelay token` mints a development token.
//!
//! A game's own server binary is this command line with its simulations added:
//!
//! ```no_run
//! # use tickrelay::engine::simulation::Arena;
//! # fn my_game() -> Arena { Arena::new(Default::default()) }
//! fn main() -> std::process::ExitCode {
//!     let simulations = tickrelay::config::Simulations::new().add("my-game", my_game);
//!     tickrelay::cli::main(simulations)
//! }
//! ```

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG, Override, Simulations, parse_socket_address};
use crate::server::{Server, ServerError};
use crate::session::auth::{AuthMode, Claims, mint_hs256};

/// tickrelay: a multiplayer game state relay. Clients connect over wss:// to /ws (or
/// QUIC on the same port), join rooms and receive delta-compressed state every tick.
/// With no options it serves on 127.0.0.1:7443 with a generated development
/// certificate.
///
/// Settings come from built-in defaults, then the TOML file (--config), then
/// TICKRELAY__SECTION__KEY variables and --set (any file setting), then the named
/// TICKRELAY_* environment variables and flags below. The `config --print-default`
/// command prints every file setting with its default; --check checks a
/// configuration.
/// Descriptors the relay keeps for itself beyond its connections (listeners, Redis,
/// files, the reserve it frees when out of them): a limit below `max_connections`
/// plus this is warned about at start.
const FILE_RESERVE: u64 = 64;

/// Of the variable names `environment`, those that look meant for the relay but are
/// neither one of its flags' (`TICKRELAY_LISTEN`) nor a file setting's
/// (`TICKRELAY__SECTION__KEY`): a warning each, for a typo that is otherwise ignored.
/// (`TICKRELAY_TOKEN` is the clients' and the bots'.)
fn unknown_variables(environment: impl Iterator<Item = String>) -> Vec<String> {
    let command = Cli::command();
    let commands = std::iter::once(&command).chain(command.get_subcommands());
    let known: Vec<String> = (commands.flat_map(|c| c.get_arguments()))
        .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned))
        .collect();
    let mut names: Vec<String> = environment
        .filter(|name| name.starts_with("TICKRELAY_") && !name.starts_with("TICKRELAY__"))
        .filter(|name| name != "TICKRELAY_TOKEN" && !known.contains(name))
        .collect();
    names.sort();
    (names.into_iter())
        .map(|name| {
            let setting = name.contains("__").then(|| {
                format!(
                    " (a file setting's is TICKRELAY__ and its keys, two underscores after TICKRELAY too: {})",
                    name.replacen("TICKRELAY_", "TICKRELAY__", 1)
                )
            });
            format!(
                "environment variable {name} is not one the relay reads: ignored{}",
                setting.unwrap_or_default()
            )
        })
        .collect()
}

#[derive(Parser, Debug)]
#[command(name = "tickrelay", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the relay (the default).
    Serve(Box<ServeArgs>),
    /// Configuration helpers (`config --print-default`: the only one for now).
    Config {
        /// Print the default configuration file, with every setting explained.
        #[arg(long)]
        print_default: bool,
    },
    /// Mint an HS256 token for development and tests (with the server's
    /// `auth.hs256_secret`: --secret, TICKRELAY_JWT_SECRET, or the configuration's:
    /// the file's, or TICKRELAY__AUTH__HS256_SECRET).
    Token {
        /// The shared secret.
        #[arg(long, env = "TICKRELAY_JWT_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Read the secret from this TOML configuration file (`[auth] hs256_secret`)
        /// when --secret is not given.
        #[arg(long, short, env = "TICKRELAY_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        /// Restrict the token to these rooms (repeatable; `prefix*` matches by prefix).
        #[arg(long = "room")]
        rooms: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "TICKRELAY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any file setting, over the file: `--set session.max_rooms_per_session=8`
    /// (repeatable; the key dotted as in TOML, the value TOML or else a string). Each
    /// can also be an environment variable, TICKRELAY__ and the keys in capitals
    /// joined by `__` (TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION=8), which --set
    /// outranks; the named options here outrank both.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = Override::from_set)]
    set: Vec<Override>,
    /// Check the configuration (file, variables, flags) as a start would, print what
    /// the relay would use and exit: 0 when it would start, 2 with the reason when
    /// not (1 when something it needs is out of reach: Redis, the signing keys'
    /// URL). Reads the TLS files, fetches the signing keys, reaches Redis, and warns
    /// about an address it cannot bind now (in use, perhaps by the relay itself).
    #[arg(long)]
    check: bool,
    /// Print the configuration the relay would run with (file, variables, flags,
    /// every setting written out) as a TOML file, secrets left out, and exit (with
    /// --check: then check it).
    #[arg(long)]
    print_config: bool,
    /// Address to listen on (HTTPS: /ws, /healthz, /readyz, /metrics) [default: 127.0.0.1:7443].
    #[arg(long, env = "TICKRELAY_LISTEN", value_name = "ADDR", value_parser = parse_socket_address)]
    listen: Option<SocketAddr>,
    /// PEM certificate chain (needs --tls-key). Without both, a development
    /// certificate is generated. Both files are read again every 60 s
    /// ([tls] reload_secs) and on SIGHUP: a renewed pair reaches new connections
    /// without a restart.
    #[arg(long, env = "TICKRELAY_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (needs --tls-cert).
    #[arg(long, env = "TICKRELAY_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Where the generated development certificate is written [default:
    /// tickrelay-dev-cert.pem].
    #[arg(long, env = "TICKRELAY_DEV_CERT_PATH", value_name = "FILE")]
    dev_cert_path: Option<PathBuf>,
    /// Serve plain ws:// and http:// without TLS (behind a TLS-terminating proxy, or
    /// for development on your own machine). Turns QUIC off (QUIC always needs TLS).
    #[arg(long, env = "TICKRELAY_INSECURE_PLAIN", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    insecure_plain: Option<bool>,
    /// Do not serve QUIC.
    #[arg(long, env = "TICKRELAY_NO_QUIC", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    no_quic: Option<bool>,
    /// UDP address for QUIC [default: the address and port of --listen].
    #[arg(long, env = "TICKRELAY_QUIC_LISTEN", value_name = "ADDR", value_parser = parse_socket_address)]
    quic_listen: Option<SocketAddr>,
    /// Simulation threads; 0 = one per core [default: 0].
    #[arg(long, env = "TICKRELAY_SIM_THREADS", value_name = "N")]
    sim_threads: Option<usize>,
    /// Maximum number of open rooms [default: 10000].
    #[arg(long, env = "TICKRELAY_MAX_ROOMS", value_name = "N")]
    max_rooms: Option<usize>,
    /// Room type used when a join names none [default: relay].
    #[arg(long, env = "TICKRELAY_DEFAULT_ROOM_TYPE", value_name = "NAME")]
    default_room_type: Option<String>,
    /// Largest inbound message in bytes; larger ones close with 1009 [default: 16384].
    /// Raises `[session] byte_burst` to it when smaller.
    #[arg(long, env = "TICKRELAY_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    max_message_bytes: Option<usize>,
    /// Authentication: `anonymous` (development only) or `jwt` [default: anonymous].
    #[arg(long, env = "TICKRELAY_AUTH", value_name = "MODE")]
    auth: Option<String>,
    /// HS256 shared secret for JWT authentication (prefer the environment variable).
    #[arg(long, env = "TICKRELAY_JWT_SECRET", value_name = "SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Serve /metrics on this address instead of --listen (which then answers 404 for
    /// it), over plain HTTP, for a scraper on a private network; /healthz and /readyz
    /// answer on both [default: on --listen].
    #[arg(long, env = "TICKRELAY_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_socket_address)]
    metrics_listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer TOKEN` to read /metrics (prefer the environment
    /// variable).
    #[arg(long, env = "TICKRELAY_METRICS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Turn on the HTTP API for game backends (`POST /rooms/ROOM/events?kind=NAME`,
    /// the body as the event's payload; `DELETE /rooms/ROOM?reason=TEXT` closes the
    /// room; `DELETE /rooms/ROOM/users/USER?reason=TEXT&ban_secs=N` removes a user
    /// from it; `GET /rooms/ROOM` says who is in it; `GET /rooms` lists the rooms)
    /// with this bearer token (prefer the environment variable).
    #[arg(long, env = "TICKRELAY_API_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Cluster mode: share one room directory with the other nodes in this Redis
    /// (`redis://host:port`, or a Redis Cluster's seed nodes, comma-separated: told
    /// apart by asking the server, or `redis-sentinel://host:port,host:port#name`:
    /// the sentinels watching a primary named `name`; `rediss://` and
    /// `rediss-sentinel://` over TLS, certificates in `[cluster] redis_ca_file`,
    /// `redis_cert_file`, `redis_key_file`); each room lives on one node, and joins
    /// elsewhere are redirected to it. A URL with a password: prefer the environment
    /// variable, which `ps` does not show (logs show it without the password).
    #[arg(long, env = "TICKRELAY_CLUSTER", value_name = "REDIS_URL", hide_env_values = true)]
    cluster: Option<String>,
    /// Cluster mode: this node's id, unique in the cluster [default: its public URL].
    #[arg(long, env = "TICKRELAY_NODE_ID", value_name = "ID")]
    node_id: Option<String>,
    /// Cluster mode: the URL clients reach this node at [default: wss://LISTEN/ws].
    #[arg(long, env = "TICKRELAY_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Benchmark baseline, never for players: every room sends every member a full
    /// snapshot every tick, encoded for that member alone, and each message is written
    /// separately. Compare a load run with and without it.
    #[arg(long, env = "TICKRELAY_NAIVE_FANOUT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    naive_fanout: Option<bool>,
    /// Serve the browser demo at /demo/ (open https://127.0.0.1:7443/demo/ on the
    /// defaults).
    #[arg(long, env = "TICKRELAY_DEMO", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new(), value_name = "BOOL")]
    demo: Option<bool>,
    /// Seconds to wait for sessions to close on shutdown.
    #[arg(
        long,
        env = "TICKRELAY_SHUTDOWN_GRACE_SECS",
        value_name = "SECS",
        default_value_t = 10
    )]
    shutdown_grace_secs: u64,
    /// Seconds to keep serving once asked to stop (SIGTERM, Ctrl-C), with /readyz
    /// answering 503, so that a load balancer takes the node out of rotation before
    /// its sessions are closed (0: stop at once).
    #[arg(long, env = "TICKRELAY_DRAIN_SECS", value_name = "SECS", default_value_t = 0)]
    drain_secs: u64,
    /// Log filter (tracing EnvFilter syntax, for example `info` or `tickrelay=debug`).
    #[arg(long, env = "TICKRELAY_LOG", value_name = "FILTER", default_value = "info")]
    log: String,
    /// Log format on standard error: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(long, env = "TICKRELAY_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// The configuration these arguments give, with the program's `own` simulations.
    fn config(&self, own: &Simulations) -> Result<Config, ConfigError> {
        let mut overrides = Override::from_environment().map_err(ConfigError::Invalid)?;
        overrides.extend(self.set.iter().cloned());
        let mut config = Config::load(self.config.as_deref(), &overrides, own)?;
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = &self.tls_cert {
            config.tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            config.tls.key = Some(v.clone());
        }
        if let Some(v) = &self.dev_cert_path {
            config.tls.dev_cert_path = v.clone();
        }
        if let Some(v) = self.insecure_plain {
            config.tls.insecure_plain = v;
        }
        if let Some(v) = self.no_quic {
            config.quic.enabled = !v;
        }
        if let Some(v) = self.quic_listen {
            config.quic.listen = Some(v);
        }
        if let Some(v) = self.naive_fanout {
            config.naive_fanout = v;
        }
        if let Some(v) = self.demo {
            config.demo = v;
        }
        if let Some(v) = self.sim_threads {
            config.sim_threads = v;
        }
        if let Some(v) = self.max_rooms {
            config.max_rooms = v;
        }
        if let Some(v) = &self.default_room_type {
            config.default_room_type = v.clone();
        }
        if let Some(v) = self.max_message_bytes {
            config.session.max_message_bytes = v;
            config.session.fit_byte_burst_to_message_size();
        }
        if let Some(v) = &self.auth {
            config.auth.mode = match v.to_ascii_lowercase().as_str() {
                "anonymous" => AuthMode::Anonymous,
                "jwt" => AuthMode::Jwt,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "--auth (or TICKRELAY_AUTH) must be anonymous or jwt, not `{v}`"
                    )));
                }
            };
        }
        if let Some(v) = &self.jwt_secret {
            config.auth.hs256_secret = Some(v.clone());
        }
        if let Some(v) = self.metrics_listen {
            config.metrics.listen = Some(v);
        }
        if let Some(v) = &self.metrics_token {
            config.metrics.token = Some(v.clone());
        }
        if let Some(v) = &self.api_token {
            config.api.token = Some(v.clone());
        }
        if let Some(v) = &self.cluster {
            config.cluster.redis_url = Some(v.clone());
        }
        if let Some(v) = &self.node_id {
            config.cluster.node_id = Some(v.clone());
        }
        if let Some(v) = &self.public_url {
            config.cluster.public_url = Some(v.clone());
        }
        Ok(config)
    }
}

/// `--help` names each option's variable (`[env: TICKRELAY_LISTEN]`) without its value:
/// clap would print an unset one as `TICKRELAY_LISTEN=`, and a set one in full.
fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// Parses the command line and does what it says (runs the relay, by default, with
/// the built-in simulations and `simulations`) until a signal stops it.
pub fn main(simulations: Simulations) -> ExitCode {
    let own: Vec<&str> = simulations.names().collect();
    let mut command = hide_env_values(Cli::command());
    if !own.is_empty() {
        command = command.after_help(format!(
            "This program's own simulations (each a room type of its name; see `config --print-default`): {}",
            own.join(", ")
        ));
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    let args = match cli.command {
        Some(Command::Config { print_default }) => {
            if print_default {
                out(DEFAULT_CONFIG);
                out(&own_room_types(&own));
                return ExitCode::SUCCESS;
            }
            eprintln!("nothing to do: try `config --print-default` (and `tickrelay --check` to check a configuration)");
            return ExitCode::from(2);
        }
        Some(Command::Token {
            secret,
            config,
            sub,
            ttl_secs,
            rooms,
        }) => {
            // Else the relay's own: its file and TICKRELAY__* variables.
            let configured = || {
                let overrides = Override::from_environment().map_err(ConfigError::Invalid)?;
                Config::load(config.as_deref(), &overrides, &simulations).map(|c| c.auth.hs256_secret)
            };
            let secret = match secret {
                Some(secret) => Some(secret),
                None => match configured() {
                    Ok(secret) => secret,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::from(2);
                    }
                },
            };
            // The relay refuses an empty secret, and tokens for a user id it refuses.
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                eprintln!(
                    "no secret to sign with: give --secret, set TICKRELAY_JWT_SECRET, or set [auth] hs256_secret \
                     in --config FILE or TICKRELAY__AUTH__HS256_SECRET (the relay's own secret)"
                );
                return ExitCode::from(2);
            };
            if let Err(e) = crate::session::auth::check_sub(&sub) {
                eprintln!("--sub: {e} (the relay would refuse the token)");
                return ExitCode::from(2);
            }
            if let Some(warning) = crate::session::auth::short_secret_warning(secret.len()) {
                eprintln!("warning: {warning}");
            }
            let exp = crate::clock::unix_micros() / 1_000_000 + ttl_secs;
            let rooms = (!rooms.is_empty()).then_some(rooms);
            out(&format!("{}\n", mint_hs256(&secret, &Claims { sub, exp, rooms })));
            return ExitCode::SUCCESS;
        }
        Some(Command::Serve(args)) => *args,
        None => cli.serve,
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!(
                "--log {:?}: {e} (for example `info`, or `tickrelay=debug,info`)",
                args.log
            );
            return ExitCode::from(2);
        }
    };
    // Logs go to standard error (standard output is for what a command prints). A
    // log line that cannot be written (its reader gone) is lost, nothing more: by
    // default the subscriber would report it with `eprintln!`, which panics on that
    // same closed pipe, in whichever task was logging (the signal handler's, and the
    // relay no longer stopped on SIGTERM).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut config = match args.config(&simulations) {
        Ok(config) => config,
        Err(e) if args.check || args.print_config => {
            eprintln!("configuration refused: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        out("# The configuration tickrelay would run with.\n");
        out(&config.to_toml_redacted());
        if !args.check {
            return ExitCode::SUCCESS;
        }
    }
    // The process the relay runs in, as a start sets it up.
    let mut warnings = Vec::new();
    match crate::fd_limit::raise() {
        Ok(crate::fd_limit::Raised { from, to: Some(limit) }) => {
            // Each connection is a descriptor, and the relay needs some of its own.
            // The default cap is lowered to what the limit holds; one configured
            // above it is kept, with a warning.
            let fits = limit.saturating_sub(FILE_RESERVE).max(1);
            let default = crate::transport::gate::ConnectionLimits::default().max_connections;
            let connections = &mut config.connections.max_connections;
            if *connections == default && *connections as u64 > fits {
                *connections = fits as usize;
            }
            let max_connections = *connections;
            if !args.check {
                let from = from.filter(|&from| from != limit);
                tracing::info!(
                    open_files = limit,
                    raised_from = from,
                    max_connections,
                    "open file limit"
                );
            }
            if max_connections as u64 + FILE_RESERVE > limit {
                warnings.push(format!(
                    "the open file limit ({limit}) is below [connections] max_connections ({max_connections}) plus \
                     {FILE_RESERVE}: connections beyond it are refused at accept (raise `ulimit -n` / LimitNOFILE, or \
                     lower max_connections)"
                ));
            }
        }
        Ok(_) => {}
        Err(e) => warnings.push(format!("cannot raise the open file limit: {e}")),
    }
    warnings.extend(config.lookalikes.iter().cloned());
    if (!config.quic.enabled || config.tls.insecure_plain) && config.quic.listen.is_some() {
        warnings.push("[quic] listen (--quic-listen) is set but QUIC is off: nothing listens there".into());
    }
    let environment = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    warnings.extend(unknown_variables(environment));
    if config.naive_fanout {
        warnings
            .push("naive_fanout: a full snapshot per member per tick, encoded per member (benchmark baseline)".into());
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        return match runtime.block_on(Server::check(config, &simulations)) {
            Ok(lines) => {
                out("configuration OK\n");
                let warnings = warnings.iter().map(|w| format!("warning: {w}"));
                warnings.chain(lines).for_each(|line| out(&format!("  {line}\n")));
                ExitCode::SUCCESS
            }
            Err(e) if refuses_configuration(&e) => {
                eprintln!("configuration refused: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("the relay would not start: {e}");
                ExitCode::from(1)
            }
        };
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    runtime.block_on(async {
        let server = match Server::bind_with(config, &simulations).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                // 2 for a configuration refused (as `--check` says), 1 for the rest.
                return ExitCode::from(if refuses_configuration(&e) { 2 } else { 1 });
            }
        };
        // In place before the relay says it listens: a signal sent from then on is
        // handled, not the process killed.
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone());
        #[cfg(unix)]
        reload_tls_on_hangup(server.tls_reloader());
        server
            .drain(Duration::from_secs(args.drain_secs))
            .run(shutdown, Duration::from_secs(args.shutdown_grace_secs))
            .await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Whether a start failed on its configuration (exit code 2), not on something out
/// of reach or in use (1).
fn refuses_configuration(e: &ServerError) -> bool {
    use crate::engine::rooms::PoolError;
    matches!(
        e,
        ServerError::Config(_) | ServerError::Tls(_) | ServerError::Room(_, PoolError::SimulationFailed)
    )
}

/// Writes `text` to standard output; a reader gone (`tickrelay --check | head -1`)
/// loses the rest, nothing more (`print!` would panic).
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM (their handlers in place on return).
#[cfg(unix)]
fn stop_on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    tokio::spawn(async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            },
            (Err(e), _) | (_, Err(e)) => {
                return tracing::warn!("cannot listen for SIGINT and SIGTERM ({e}): only SIGKILL stops the relay");
            }
        }
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
}

/// Cancels `shutdown` on Ctrl-C (registered when the task first runs).
#[cfg(not(unix))]
fn stop_on_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
}

/// Reads the certificate files again on each SIGHUP (which, without configured
/// files, does nothing: it does not stop the relay); the handler in place on return.
#[cfg(unix)]
fn reload_tls_on_hangup(reloader: Option<crate::transport::tls::TlsReloader>) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => return tracing::warn!("cannot listen for SIGHUP (certificate reloads): {e}"),
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match &reloader {
                Some(reloader) => {
                    tracing::info!("SIGHUP: reading the TLS certificate files again");
                    reloader.reload_in_background().await;
                }
                None => tracing::info!("SIGHUP: no configured certificate files to read again"),
            }
        }
    });
}

/// The default configuration's part for the program's own simulations: a commented
/// room type for each (nothing for the `tickrelay` binary itself).
fn own_room_types(names: &[&str]) -> String {
    let defaults = crate::config::RoomTypeConfig::default();
    let mut text = String::new();
    if !names.is_empty() {
        text.push_str(
            "\n# This program's own simulations. Each is a room type of its name with the\n\
             # default room settings; a section of its name tunes it (`simulation` may be\n\
             # left out there; a section of another name running it needs it), and its\n\
             # `params` table holds the game's own settings.\n",
        );
    }
    for name in names {
        text.push_str(&format!(
            "\n# [room_types.{name}]\n# simulation = \"{name}\"\n# tick_rate = {}\n# max_members = {}\n# [room_types.{name}.params]\n",
            defaults.tick_rate, defaults.max_members
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_meant_for_the_relay_that_it_does_not_read_are_named() {
        let names = [
            "TICKRELAY_LISTEN",
            "TICKRELAY_TOKEN",
            "TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION",
            "TICKRELAY_SESSION__MAX_ROOMS_PER_SESSION",
            "TICKRELAY_LISTN",
            "PATH",
        ];
        let warned = unknown_variables(names.into_iter().map(String::from));
        assert_eq!(warned.len(), 2, "{warned:?}");
        assert!(
            warned[0].contains("TICKRELAY_LISTN is not one the relay reads"),
            "{warned:?}"
        );
        assert!(
            warned[1].contains("two underscores after TICKRELAY too: TICKRELAY__SESSION__MAX_ROOMS_PER_SESSION"),
            "{warned:?}"
        );
    }
}
