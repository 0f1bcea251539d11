//! A real `redis-server` (Debian's package; `.ci/test` installs it) on a free
//! loopback port (with a TLS port too, if asked), a Redis Cluster of three, or a
//! primary with a replica and a sentinel watching them, with nothing persisted,
//! stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, or the servers of a Redis Cluster, or a primary, its
/// replica and a sentinel (in that order).
pub struct RedisServer {
    children: Vec<Child>,
    ports: Vec<u16>,
    cluster: bool,
    sentinel: bool,
    dir: PathBuf,
    /// Its port on 127.0.0.1 (a cluster's first server's).
    pub port: u16,
    /// Its TLS port and certificates, when it has one.
    pub tls: Option<RedisTls>,
}

/// The TLS ports of [`RedisServer::start_tls`] (or of the servers and the sentinel
/// of [`RedisServer::start_with_sentinel_tls`]), and the certificates (PEM files) a
/// client needs there: the servers ask for a client certificate (`tls-auth-clients
/// yes`).
#[derive(Clone, Debug)]
pub struct RedisTls {
    /// The TLS ports on 127.0.0.1, one per server (as `RedisServer::port` and the
    /// others).
    pub ports: Vec<u16>,
    /// The certificate authority that signed the server's certificate and `cert`.
    pub ca: PathBuf,
    /// A client certificate the server takes.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The server's certificate and key (for 127.0.0.1).
    server: (PathBuf, PathBuf),
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_servers(1, false)
    }

    /// Starts one that also listens for TLS ([`RedisServer::tls`]; [`RedisServer::url`]
    /// is then the `rediss://` one), with certificates of a fresh CA, and waits until
    /// it answers `PING` (on its plain port).
    pub fn start_tls() -> Self {
        let mut server = Self::start_servers(1, false);
        server.listen_for_tls(1);
        server
    }

    /// Starts listening on TLS ports too (for the first `count` servers).
    fn listen_for_tls(&mut self, count: usize) {
        self.tls = Some(write_certificates(&self.dir, count));
        self.restart();
    }

    /// Starts a Redis Cluster of three primaries (no replicas), the hash slots shared
    /// among them, and waits until every one says the cluster is up.
    pub fn start_cluster() -> Self {
        Self::start_redis_cluster(false)
    }

    /// The same, over TLS too: the cluster's own bus, and the addresses it gives
    /// clients, are the TLS ones.
    pub fn start_cluster_tls() -> Self {
        Self::start_redis_cluster(true)
    }

    fn start_redis_cluster(tls: bool) -> Self {
        let mut server = Self::start_servers(3, true);
        if tls {
            server.listen_for_tls(3);
        }
        let nodes = (0..3).map(|i| format!("127.0.0.1:{}", server.named_port(i)));
        let mut create = Command::new("redis-cli");
        if let Some(tls) = &server.tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca);
            create.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
        }
        let created = create
            .args(["--cluster", "create"])
            .args(nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (Debian package redis-tools, a dependency of redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        server.wait_for(Duration::from_secs(20), "the Redis Cluster up", || {
            server.ports.iter().all(|&port| cluster_is_up(port))
        });
        server
    }

    /// Starts a primary, its replica and a sentinel that watches them (as
    /// [`SENTINEL_NAME`], down after a second without an answer), and waits until the
    /// replica is in sync and the sentinel names the primary. [`RedisServer::url`]
    /// then names the sentinel.
    pub fn start_with_sentinel() -> Self {
        Self::start_sentinel(false)
    }

    /// The same, hardened: everything over TLS too (the replica follows the primary,
    /// and the sentinel watches them, on their TLS ports, which the sentinel names; it
    /// takes clients on a TLS port of its own), and the sentinel asks for
    /// [`SENTINEL_PASSWORD`]. [`RedisServer::url`] is then `rediss-sentinel://`.
    pub fn start_with_sentinel_tls() -> Self {
        Self::start_sentinel(true)
    }

    fn start_sentinel(tls: bool) -> Self {
        let mut server = Self::start_servers(2, false);
        if tls {
            server.listen_for_tls(3);
        }
        server.sentinel = true;
        let (primary, replica) = (server.named_port(0), server.named_port(1));
        redis_cli(server.ports[1], &["replicaof", "127.0.0.1", &primary.to_string()]);
        let sentinel = free_port();
        let config = server.dir.join("sentinel.conf");
        let mut monitor = format!(
            "bind 127.0.0.1\nport {sentinel}\ndir {}\n\
             sentinel monitor {SENTINEL_NAME} 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds {SENTINEL_NAME} 1000\n\
             sentinel failover-timeout {SENTINEL_NAME} 10000\n",
            server.dir.display()
        );
        if let Some(tls) = &server.tls {
            monitor += &format!(
                "requirepass {SENTINEL_PASSWORD}\n\
                 tls-port {}\ntls-replication yes\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n",
                tls.ports[2],
                tls.server.0.display(),
                tls.server.1.display(),
                tls.ca.display()
            );
        }
        std::fs::write(&config, monitor).unwrap();
        let sentinel_process = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel runs");
        server.children.push(sentinel_process);
        server.ports.push(sentinel);
        server.wait_until_up();
        server.wait_for(Duration::from_secs(20), "the replica in sync", || {
            redis_cli(server.ports[1], &["info", "replication"]).contains("master_link_status:up")
        });
        server.wait_for(Duration::from_secs(20), "the sentinel naming the primary", || {
            server.sentinel_names(primary)
        });
        // A sentinel that does not know the replica yet cannot fail over to it.
        server.wait_for(Duration::from_secs(30), "the sentinel knowing the replica", || {
            let replicas = server.ask_sentinel(&["sentinel", "replicas", SENTINEL_NAME]);
            replicas.lines().any(|line| line == replica.to_string())
        });
        server
    }

    /// With a sentinel: kills the primary and waits until the sentinel has made the
    /// replica the primary.
    pub fn fail_over(&mut self) {
        assert!(self.sentinel, "fail_over needs RedisServer::start_with_sentinel");
        let _ = self.children[0].kill();
        let _ = self.children[0].wait();
        let replica = self.named_port(1);
        self.wait_for(Duration::from_secs(30), "the sentinel's failover", || {
            self.sentinel_names(replica)
        });
    }

    /// With a sentinel: the replica's port (on 127.0.0.1).
    pub fn replica_port(&self) -> u16 {
        assert!(self.sentinel, "replica_port needs RedisServer::start_with_sentinel");
        self.ports[1]
    }

    /// `redis-cli` at the sentinel, with its password if it has one.
    fn ask_sentinel(&self, args: &[&str]) -> String {
        match self.tls {
            Some(_) => {
                let login = ["-a", SENTINEL_PASSWORD, "--no-auth-warning"];
                redis_cli(self.ports[2], &[&login[..], args].concat())
            }
            None => redis_cli(self.ports[2], args),
        }
    }

    /// The port clients and the sentinel are told of for server `index` (its TLS
    /// port, with TLS).
    fn named_port(&self, index: usize) -> u16 {
        self.tls.as_ref().map_or(self.ports[index], |tls| tls.ports[index])
    }

    fn sentinel_names(&self, port: u16) -> bool {
        let answer = self.ask_sentinel(&["sentinel", "get-master-addr-by-name", SENTINEL_NAME]);
        answer.lines().nth(1) == Some(&port.to_string())
    }

    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_servers(count: usize, cluster: bool) -> Self {
        let ports: Vec<u16> = (0..count)
            .map(|_| if cluster { free_cluster_port() } else { free_port() })
            .collect();
        let dir = std::env::temp_dir().join(format!("tickrelay-redis-{}-{}", std::process::id(), ports[0]));
        std::fs::create_dir_all(&dir).unwrap();
        let children = ports.iter().map(|&port| spawn(port, &dir, cluster, None)).collect();
        let server = Self {
            children,
            port: ports[0],
            ports,
            cluster,
            sentinel: false,
            dir,
            tls: None,
        };
        server.wait_until_up();
        server
    }

    /// Stops it (as a crash would: clients see their connections drop).
    pub fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP), as a stall would: nothing is answered until
    /// [`RedisServer::thaw`], and then keys whose expiry passed meanwhile lapse.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Ends [`RedisServer::freeze`] (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        for child in &self.children {
            let sent = Command::new("kill").args([signal, &child.id().to_string()]).status();
            assert!(sent.is_ok_and(|s| s.success()), "kill {signal} redis-server");
        }
    }

    /// Starts it again on the same port, empty (nothing is persisted; a cluster keeps
    /// its slots, which each server's `nodes-PORT.conf` holds).
    pub fn restart(&mut self) {
        assert!(!self.sentinel, "restart a primary with a sentinel: not supported");
        self.stop();
        self.children = (self.ports.iter().enumerate())
            .map(|(i, &port)| {
                let tls = self.tls.as_ref().map(|tls| (tls, tls.ports[i]));
                spawn(port, &self.dir, self.cluster, tls)
            })
            .collect();
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        self.wait_for(Duration::from_secs(10), "redis-server answering", || {
            self.ports.iter().all(|&port| answers_ping(port))
        });
    }

    /// Its URL for redis-rs (a cluster's: every server's, comma-separated, as
    /// `[cluster] redis_url` takes them; with a sentinel, the sentinel's; with TLS,
    /// the TLS port's).
    pub fn url(&self) -> String {
        if self.sentinel {
            let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
            return format!("{scheme}-sentinel://127.0.0.1:{}#{SENTINEL_NAME}", self.named_port(2));
        }
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        let urls: Vec<String> = (0..self.ports.len())
            .map(|i| format!("{scheme}://127.0.0.1:{}/", self.named_port(i)))
            .collect();
        urls.join(",")
    }
}

/// The name the sentinel of [`RedisServer::start_with_sentinel`] watches its
/// primary under.
pub const SENTINEL_NAME: &str = "tickrelay";

/// The password the sentinel of [`RedisServer::start_with_sentinel_tls`] asks for.
pub const SENTINEL_PASSWORD: &str = "sentinel-secret";

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free port for a Redis Cluster node, whose cluster bus listens 10,000 ports
/// higher: at most 55535 (redis-server refuses to start above it, and the kernel hands
/// out ports up to 60999), with that bus port free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    // A server that asks for a password is up too.
    let mut reply = [0; 7];
    tcp.write_all(b"PING\r\n").is_ok()
        && tcp.read_exact(&mut reply).is_ok()
        && [b"+PONG\r\n", b"-NOAUTH"].contains(&&reply)
}

fn cluster_is_up(port: u16) -> bool {
    redis_cli(port, &["cluster", "info"]).contains("cluster_state:ok")
}

/// A fresh CA, and certificates it signed for a Redis server on 127.0.0.1 and for a
/// client, written into `dir`.
fn write_certificates(dir: &std::path::Path, servers: usize) -> RedisTls {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    // Each with a name of its own: OpenSSL takes a certificate whose subject is its
    // issuer's for a self-signed one.
    let params = |names: Vec<String>, common_name: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params
    };
    let mut ca = params(Vec::new(), "tickrelay test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let signed = |name: &str, names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = params(names, name).signed_by(&key, &ca).unwrap();
        (
            write(&format!("{name}.pem"), cert.pem()),
            write(&format!("{name}-key.pem"), key.serialize_pem()),
        )
    };
    let server = signed("redis-server", vec!["127.0.0.1".into()]);
    let (cert, key) = signed("redis-client", vec!["tickrelay-node".into()]);
    RedisTls {
        ports: (0..servers).map(|_| free_port()).collect(),
        ca: write("redis-ca.pem", ca.pem()),
        cert,
        key,
        server,
    }
}

/// A `redis-server` on `port`, and on a TLS port with `tls`.
fn spawn(port: u16, dir: &std::path::Path, cluster: bool, tls: Option<(&RedisTls, u16)>) -> Child {
    let mut command = Command::new("redis-server");
    command
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir);
    if cluster {
        let config = format!("nodes-{port}.conf");
        command.args(["--cluster-enabled", "yes", "--cluster-config-file", &config]);
    }
    if let Some((tls, tls_port)) = tls {
        command
            .args(["--tls-port", &tls_port.to_string(), "--tls-auth-clients", "yes"])
            .args(["--tls-replication", "yes"])
            .args(["--tls-cluster", if cluster { "yes" } else { "no" }])
            .arg("--tls-cert-file")
            .arg(&tls.server.0)
            .arg("--tls-key-file")
            .arg(&tls.server.1)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca);
    }
    command
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (Debian package redis-server; .ci/test installs it)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
