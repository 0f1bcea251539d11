//! A real `redis-server` (Debian's package; `.ci/test` installs it) on a free
//! loopback port, or a Redis Cluster of three, with nothing persisted, stopped when
//! dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, or the servers of a Redis Cluster.
pub struct RedisServer {
    children: Vec<Child>,
    ports: Vec<u16>,
    cluster: bool,
    dir: PathBuf,
    /// Its port on 127.0.0.1 (a cluster's first server's).
    pub port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_servers(1, false)
    }

    /// Starts a Redis Cluster of three primaries (no replicas), the hash slots shared
    /// among them, and waits until every one says the cluster is up.
    pub fn start_cluster() -> Self {
        let server = Self::start_servers(3, true);
        let nodes = server.ports.iter().map(|port| format!("127.0.0.1:{port}"));
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (Debian package redis-tools, a dependency of redis-server)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.ports.iter().all(|&port| cluster_is_up(port)) {
            assert!(Instant::now() < deadline, "the Redis Cluster was not up within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn start_servers(count: usize, cluster: bool) -> Self {
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!("tickrelay-redis-{}-{}", std::process::id(), ports[0]));
        std::fs::create_dir_all(&dir).unwrap();
        let children = ports.iter().map(|&port| spawn(port, &dir, cluster)).collect();
        let server = Self {
            children,
            port: ports[0],
            ports,
            cluster,
            dir,
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
        self.stop();
        self.children = (self.ports.iter())
            .map(|&port| spawn(port, &self.dir, self.cluster))
            .collect();
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ports.iter().all(|&port| answers_ping(port)) {
            assert!(Instant::now() < deadline, "redis-server did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its URL for redis-rs (a cluster's: every server's, comma-separated, as
    /// `[cluster] redis_url` takes them).
    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect();
        urls.join(",")
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut reply = [0; 7];
    tcp.write_all(b"PING\r\n").is_ok() && tcp.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn cluster_is_up(port: u16) -> bool {
    let info = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok")
}

fn spawn(port: u16, dir: &std::path::Path, cluster: bool) -> Child {
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
