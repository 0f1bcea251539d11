//! Relay nodes of one cluster on loopback: a fresh `redis-server`, and nodes that
//! share one development certificate (as nodes started from one directory do), so a
//! client trusting one node trusts them all.

use std::path::PathBuf;
use std::time::Duration;

use tickrelay::cluster::{Directory, Node, RedisAddress, RedisDirectory};
use tickrelay::config::Config;

use crate::redis::RedisServer;
use crate::server::{TestServer, start_config};

/// Leases short enough for a test to wait one out, long enough that a loaded machine
/// renews in time (every third of it).
pub const LEASE: Duration = Duration::from_millis(1_500);

/// The leases of [`TestCluster::directory_as`]: longer than any test.
pub const SCENERY_LEASE: Duration = Duration::from_secs(120);

/// See the module documentation.
pub struct TestCluster {
    /// The directory's Redis.
    pub redis: RedisServer,
    cert: PathBuf,
}

impl TestCluster {
    /// A cluster with no node yet, on one Redis.
    pub fn start() -> Self {
        Self::on(RedisServer::start())
    }

    /// A cluster with no node yet, on a Redis Cluster of three.
    pub fn start_on_redis_cluster() -> Self {
        Self::on(RedisServer::start_cluster())
    }

    /// A cluster with no node yet, on a Redis Cluster of three reached over TLS, with
    /// a client certificate.
    pub fn start_on_redis_cluster_tls() -> Self {
        Self::on(RedisServer::start_cluster_tls())
    }

    /// A cluster with no node yet, on one Redis reached over TLS, with a client
    /// certificate.
    pub fn start_tls() -> Self {
        Self::on(RedisServer::start_tls())
    }

    /// A cluster with no node yet, on a primary and replica that a sentinel watches.
    pub fn start_with_sentinel() -> Self {
        Self::on(RedisServer::start_with_sentinel())
    }

    /// The same, hardened: everything over TLS (`rediss-sentinel://`, with a client
    /// certificate), the sentinel asking for a password.
    pub fn start_with_sentinel_tls() -> Self {
        Self::on(RedisServer::start_with_sentinel_tls())
    }

    fn on(redis: RedisServer) -> Self {
        let cert = Config::loopback(60).tls.dev_cert_path;
        Self { redis, cert }
    }

    /// Starts a node ([`Config::loopback`] at 60 Hz, leases of [`LEASE`]).
    pub async fn node(&self) -> TestServer {
        self.node_with(|_| {}).await
    }

    /// Starts a node after `adjust` changed its configuration.
    pub async fn node_with(&self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        start_config(self.config(adjust)).await
    }

    /// Starts a node on a runtime of its own, which [`Killable::kill`] stops dead: no
    /// hand-off, no close frames, no lease released, every task and socket dropped,
    /// as `kill -9` would.
    pub async fn killable_node(&self, adjust: impl FnOnce(&mut Config)) -> Killable {
        let config = self.config(adjust);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the node");
        let server = runtime.spawn(start_config(config)).await.expect("the node starts");
        Killable {
            server,
            runtime: Some(runtime),
        }
    }

    /// Waits until `nodes` nodes are live in the directory (each has renewed once since
    /// it started: a stopping node sends its clients only to those).
    pub async fn wait_for_live_nodes(&self, nodes: usize) {
        let directory = self.directory_as("observer", "").await;
        crate::eventually("the nodes live in the directory", || async {
            let live = directory.node_loads().await.map_or(0, |loads| loads.len());
            if live == nodes { Ok(()) } else { Err(live) }
        })
        .await;
    }

    /// The cluster's directory as node `id` at `url` sees it: no relay runs behind it,
    /// so what it claims is a test's scenery, and it never renews; its leases of
    /// [`SCENERY_LEASE`] stand for a node that does, however long a loaded machine
    /// takes to set the scene.
    pub async fn directory_as(&self, id: &str, url: &str) -> RedisDirectory {
        let node = Node {
            id: id.into(),
            url: url.into(),
        };
        let cluster = self.config(|_| {}).cluster;
        let redis = RedisAddress::from_config(&cluster).expect("the certificates read");
        let redis = redis.expect("cluster mode");
        RedisDirectory::connect(&redis, node, SCENERY_LEASE, &cluster.key_prefix)
            .await
            .expect("Redis answers")
    }

    /// A node's configuration in this cluster, after `adjust`.
    pub fn config(&self, adjust: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config::loopback(60);
        config.tls.dev_cert_path = self.cert.clone();
        config.cluster.redis_url = Some(self.redis.url());
        if let Some(tls) = &self.redis.tls {
            config.cluster.redis_ca_file = Some(tls.ca.clone());
            config.cluster.redis_cert_file = Some(tls.cert.clone());
            config.cluster.redis_key_file = Some(tls.key.clone());
            if config
                .cluster
                .redis_url
                .as_deref()
                .is_some_and(|url| url.contains("-sentinel://"))
            {
                config.cluster.sentinel_password = Some(crate::redis::SENTINEL_PASSWORD.into());
            }
        }
        config.cluster.lease_ms = LEASE.as_millis() as u64;
        adjust(&mut config);
        config
    }
}

/// A node that can die (see [`TestCluster::killable_node`]).
pub struct Killable {
    /// The node.
    pub server: TestServer,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Killable {
    /// Stops the node dead.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The token secret of [`jwt_replacing`] nodes.
pub const JWT_SECRET: &str = "cluster-secret";

/// Configures a node for JWT users (HS256 with [`JWT_SECRET`]) and the `replace`
/// duplicate-session policy.
pub fn jwt_replacing(config: &mut Config) {
    use tickrelay::session::auth::{AuthMode, DuplicateSessions};
    config.auth.mode = AuthMode::Jwt;
    config.auth.hs256_secret = Some(JWT_SECRET.into());
    config.auth.duplicate_sessions = DuplicateSessions::Replace;
}

/// A token of `user` for [`jwt_replacing`] nodes, good for ten minutes.
pub fn user_token(user: &str) -> String {
    user_token_for(user, 600)
}

/// A token of `user` for [`jwt_replacing`] nodes, good for `secs`.
pub fn user_token_for(user: &str, secs: u64) -> String {
    let claims = tickrelay::session::auth::Claims {
        sub: user.into(),
        exp: tickrelay::clock::unix_micros() / 1_000_000 + secs,
        rooms: None,
    };
    tickrelay::session::auth::mint_hs256(JWT_SECRET, &claims)
}
