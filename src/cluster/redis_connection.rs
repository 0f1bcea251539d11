//! The directory's and the bus's way to Redis: one Redis server (or a replicated one),
//! through redis-rs's connection manager, or a Redis Cluster, through its cluster
//! connection. Which one is asked of the server at start (`INFO cluster`), so
//! `[cluster] redis_url` is all a node is told; for a cluster it may list several
//! seed nodes, comma-separated.
//!
//! Or a primary that Redis Sentinel watches, given as
//! `redis-sentinel://[user:password@]host[:port][,host[:port]…][/db]#name` (the
//! sentinels' addresses, port 26379 unless said; the credentials and database are
//! the primary's; `name` is the one the sentinels monitor it under). The sentinels
//! are asked where the primary is at start and then every second; when a failover
//! moved it, commands go to a new connection manager at the new primary, subscribed
//! at once to what the old one was. A server the sentinels name is taken only once it
//! says it is the primary (`ROLE`): a sentinel that lags, or sits in a minority, may
//! name an old primary or a replica, and the next one is asked instead. (The
//! directory and the bus each follow the primary on their own connection.)
//!
//! Over TLS: `rediss://…` (a Redis Cluster's seeds all `rediss://`), or
//! `rediss-sentinel://…` (the sentinels and the primary both), trusting the system's
//! certificate authorities or the PEM file `[cluster] redis_ca_file` names, and
//! presenting a client certificate when `redis_cert_file` and `redis_key_file` name
//! one (Redis asks for one by default: `tls-auth-clients yes`). See [`RedisAddress`].
//! Sentinels that ask for a password of their own are given `[cluster]
//! sentinel_password` (and `sentinel_username`).
//!
//! On a Redis Cluster every key of the directory lives in one hash slot: the key
//! prefix becomes a hash tag (`tickrelay:` → `{tickrelay:}`), so each script's keys,
//! including those it computes, are on one shard, as the scripts need; pub/sub is
//! sharded (`SSUBSCRIBE`, `SPUBLISH`) on channels under the same tag, so a publish
//! counts the listeners exactly. The directory then runs on one shard of the cluster
//! (a cluster gives it failover, not more throughput: about 5 commands per room per
//! second, see BENCHMARKS.md).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture,
    TlsCertificates, Value,
};
use tokio::runtime::Handle;
use tokio::sync::Mutex;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::task::AbortOnDropHandle;

use super::directory::DirectoryError;
use crate::config::urls::without_credentials;
use crate::config::{ClusterConfig, ConfigError};
use crate::engine::pacer;

/// Where the directory's Redis is (`[cluster] redis_url`) and, over TLS, whom to
/// trust there and what to present (see the module documentation).
#[derive(Clone)]
pub struct RedisAddress {
    url: String,
    /// A CA or a client certificate other than the defaults (TLS only).
    certificates: Option<TlsCertificates>,
    /// The user and password the sentinels are asked as (Sentinel only).
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
}

impl RedisAddress {
    /// `url` as it is (over TLS, the system's certificate authorities are trusted and
    /// no client certificate is presented).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            certificates: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }

    /// `[cluster] redis_url` with the certificates `redis_ca_file`, `redis_cert_file`
    /// and `redis_key_file` name (read here: a missing file is an error at start).
    /// `None` when cluster mode is off. An error is the configuration's.
    pub fn from_config(config: &ClusterConfig) -> Result<Option<Self>, ConfigError> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        // Parsed now: a typo is an error at start (and for `tickrelay --check`), not at
        // the first connection.
        check_url(url)
            .map_err(|e| ConfigError::Invalid(format!("[cluster] redis_url {}: {e}", without_credentials(url))))?;
        let read = |key: &str, path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .map(|path| {
                    std::fs::read(path)
                        .map_err(|e| ConfigError::Invalid(format!("[cluster] {key} {}: {e}", path.display())))
                })
                .transpose()
        };
        let root_cert = read("redis_ca_file", &config.redis_ca_file)?;
        let client_tls = match (
            read("redis_cert_file", &config.redis_cert_file)?,
            read("redis_key_file", &config.redis_key_file)?,
        ) {
            (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig {
                client_cert,
                client_key,
            }),
            _ => None,
        };
        let certificates =
            (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates { client_tls, root_cert });
        Ok(Some(Self {
            url: url.clone(),
            certificates,
            sentinel_username: config.sentinel_username.clone(),
            sentinel_password: config.sentinel_password.clone(),
        }))
    }

    /// The URL, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as logs and errors show it: without the user and password any of its
    /// addresses carries.
    pub fn shown(&self) -> String {
        without_credentials(&self.url)
    }

    /// The sentinel at `url`, with the credentials it asks for.
    fn sentinel(&self, url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
        let info = url.into_connection_info()?;
        let mut login = info.redis_settings().clone();
        if let Some(username) = &self.sentinel_username {
            login = login.set_username(username);
        }
        if let Some(password) = &self.sentinel_password {
            login = login.set_password(password);
        }
        Ok(info.set_redis_settings(login))
    }

    /// A client of the server at `info` (a `rediss://` one with these certificates).
    fn client(&self, info: impl IntoConnectionInfo) -> redis::RedisResult<Client> {
        match &self.certificates {
            Some(certificates) => Client::build_with_tls(info, certificates.clone()),
            None => Client::open(info),
        }
    }
}

/// See the module documentation. Its commands run on the runtime that opened it
/// (the server's), whichever thread asks: a connection to Redis that a command made
/// again would otherwise be driven by the task that asked, and an I/O thread sleeps
/// between ticks (`engine::pacer`).
#[derive(Clone)]
pub(super) struct Connection {
    link: Link,
    runtime: Handle,
}

/// How a [`Connection`] reaches Redis.
#[derive(Clone)]
enum Link {
    /// One Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// A primary found, and followed, through Redis Sentinel.
    Sentinel(Followed),
}

/// The connection manager at the primary the sentinels name, replaced when they name
/// another (see the module documentation).
#[derive(Clone)]
pub(super) struct Followed(Arc<Primary>);

struct Primary {
    connection: RwLock<ConnectionManager>,
    /// What was subscribed to, changed before each subscribe or unsubscribe command:
    /// a new primary's connection subscribes to it.
    channels: parking_lot::Mutex<Vec<String>>,
    /// Held across each subscribe or unsubscribe command, and by the follow task
    /// while it subscribes the new primary's connection and puts it in place: a
    /// channel left during a failover is left on the connection that then hears it
    /// (a stopping node that left its call channels must hear no call after). Never
    /// held across connecting, only across commands, each given up after
    /// [`TIMEOUT`] (a connection manager's command first waits for its reconnection).
    switching: Mutex<()>,
}

impl Followed {
    fn current(&self) -> ConnectionManager {
        self.0.connection.read().clone()
    }
}

/// How long connecting, and each answer, may take: a dead Redis is noticed within
/// seconds, and reconnection is retried in the background.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Retries of a command whose connection failed.
const RETRIES: u32 = 3;

/// How often the sentinels are asked where the primary is.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The scheme of a URL naming the sentinels of a primary.
const SENTINEL_SCHEME: &str = "redis-sentinel://";

/// The same, over TLS (to the sentinels and to the primary).
const TLS_SENTINEL_SCHEME: &str = "rediss-sentinel://";

impl Connection {
    /// Connects to `redis` (`redis://host:port/db`, several seed nodes of a cluster,
    /// comma-separated, or `redis-sentinel://…#name`; `rediss…` over TLS). `pushes`:
    /// where pub/sub messages go (the connection then speaks RESP3). An unreachable
    /// Redis is an error here, at start.
    pub(super) async fn open(
        redis: &RedisAddress,
        pushes: Option<UnboundedSender<PushInfo>>,
    ) -> Result<Self, DirectoryError> {
        let url = redis.url();
        let shown = redis.shown();
        let unreachable = |e: redis::RedisError| DirectoryError(format!("cannot reach Redis at {shown}: {e}"));
        if let Some((sentinels, tls)) = sentinels_of(url) {
            let sentinels = SentinelUrl::parse(sentinels, tls).map_err(|e| DirectoryError(format!("{shown}: {e}")))?;
            let followed = follow(sentinels, redis.clone(), pushes).await?;
            return Ok(Self::new(Link::Sentinel(followed)));
        }
        let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
        if is_cluster(redis, seeds[0]).await.map_err(unreachable)? {
            let mut builder = ClusterClient::builder(seeds.iter().copied())
                .connection_timeout(TIMEOUT)
                .response_timeout(TIMEOUT)
                .retries(RETRIES);
            if let Some(certificates) = &redis.certificates {
                builder = builder.certs(certificates.clone());
            }
            if let Some(pushes) = pushes {
                builder = builder.use_protocol(ProtocolVersion::RESP3).push_sender(pushes);
            }
            let client = builder.build().map_err(unreachable)?;
            let connection = client.get_async_connection().await.map_err(unreachable)?;
            return Ok(Self::new(Link::Cluster(connection)));
        }
        let [seed] = seeds[..] else {
            return Err(DirectoryError(format!(
                "{shown}: several Redis URLs, but {} is not a Redis Cluster",
                without_credentials(seeds[0])
            )));
        };
        let connection = manager(redis, seed, pushes).await.map_err(unreachable)?;
        Ok(Self::new(Link::Single(connection)))
    }

    fn new(link: Link) -> Self {
        Self {
            link,
            runtime: Handle::current(),
        }
    }

    /// The prefix of every key and channel, from the configured one: on a cluster,
    /// inside a hash tag (unless it holds one already).
    pub(super) fn key_prefix(&self, configured: &str) -> String {
        match &self.link {
            Link::Cluster(_) if !has_hash_tag(configured) => format!("{{{configured}}}"),
            _ => configured.to_string(),
        }
    }

    /// Subscribes to `channels` (sharded on a cluster), with the pushes going where
    /// [`Connection::open`] was told.
    pub(super) async fn subscribe(&mut self, channels: &[&str]) -> redis::RedisResult<()> {
        match &mut self.link {
            Link::Single(connection) => connection.subscribe(channels).await,
            Link::Cluster(connection) => connection.ssubscribe(channels).await,
            Link::Sentinel(followed) => {
                {
                    let mut known = followed.0.channels.lock();
                    for channel in channels {
                        if !known.iter().any(|k| k == channel) {
                            known.push(channel.to_string());
                        }
                    }
                }
                let _switching = followed.0.switching.lock().await;
                bounded(followed.current().subscribe(channels)).await
            }
        }
    }

    /// `UNSUBSCRIBE`, or `SUNSUBSCRIBE` on a cluster. What arrived on `channels`
    /// before it is on the push channel when it returns (Redis sends in order, and
    /// the connection hands pushes on as it reads them).
    pub(super) async fn unsubscribe(&mut self, channels: &[&str]) -> redis::RedisResult<()> {
        match &mut self.link {
            Link::Single(connection) => connection.unsubscribe(channels).await,
            Link::Cluster(connection) => connection.sunsubscribe(channels).await,
            Link::Sentinel(followed) => {
                (followed.0.channels.lock()).retain(|known| !channels.contains(&known.as_str()));
                let _switching = followed.0.switching.lock().await;
                bounded(followed.current().unsubscribe(channels)).await
            }
        }
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster: answers how many listen.
    pub(super) fn publish(&self) -> Cmd {
        redis::cmd(match &self.link {
            Link::Single(_) | Link::Sentinel(_) => "PUBLISH",
            Link::Cluster(_) => "SPUBLISH",
        })
    }

    /// How many listen on `channel`.
    pub(super) async fn listeners(&mut self, channel: &str) -> redis::RedisResult<u64> {
        let question = match &self.link {
            Link::Single(_) | Link::Sentinel(_) => "NUMSUB",
            Link::Cluster(_) => "SHARDNUMSUB",
        };
        let answer: Value = redis::cmd("PUBSUB")
            .arg(question)
            .arg(channel)
            .query_async(self)
            .await?;
        // A flat [channel, count] array, or a map (a cluster adds up its nodes').
        let count = match answer {
            Value::Array(items) => items.get(1).cloned(),
            Value::Map(pairs) => pairs.into_iter().next().map(|(_, count)| count),
            _ => None,
        };
        Ok(count.map_or(Ok(0), redis::from_redis_value)?)
    }
}

/// A connection manager at `url` (trusting as `redis` says); with `pushes`, speaking
/// RESP3 and sending pub/sub messages there (and subscribing again after
/// reconnecting).
async fn manager(
    redis: &RedisAddress,
    url: impl IntoConnectionInfo,
    pushes: Option<UnboundedSender<PushInfo>>,
) -> redis::RedisResult<ConnectionManager> {
    let mut info = url.into_connection_info()?;
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(RETRIES as usize);
    if let Some(pushes) = pushes {
        let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        info = info.set_redis_settings(resp3);
        config = config.set_push_sender(pushes).set_automatic_resubscription();
    }
    ConnectionManager::new_with_config(redis.client(info)?, config).await
}

/// `redis-sentinel://…#name`, taken apart (see the module documentation).
#[derive(Debug, PartialEq)]
struct SentinelUrl {
    /// The sentinels, `host:port` each.
    sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under.
    name: String,
    /// `user:password@` for the primary, as written (percent-encoded), or empty.
    credentials: String,
    /// The primary's database number, as written, or empty.
    db: String,
    /// Whether the sentinels and the primary are reached over TLS.
    tls: bool,
}

/// What follows the scheme of a sentinels' URL, and whether it is over TLS (`None`:
/// not a sentinels' URL).
fn sentinels_of(url: &str) -> Option<(&str, bool)> {
    (url.strip_prefix(SENTINEL_SCHEME).map(|rest| (rest, false)))
        .or_else(|| url.strip_prefix(TLS_SENTINEL_SCHEME).map(|rest| (rest, true)))
}

/// Whether `url` (`[cluster] redis_url`) parses: a sentinels' URL, or one Redis URL or
/// several comma-separated.
fn check_url(url: &str) -> Result<(), String> {
    if let Some((sentinels, tls)) = sentinels_of(url) {
        return SentinelUrl::parse(sentinels, tls).map(drop);
    }
    for seed in url.split(',').map(str::trim) {
        seed.into_connection_info().map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl SentinelUrl {
    /// Takes apart what follows `redis-sentinel://` (`rediss-sentinel://`: `tls`).
    fn parse(rest: &str, tls: bool) -> Result<Self, String> {
        let Some((rest, name)) = rest.split_once('#').filter(|(_, name)| !name.is_empty()) else {
            return Err("no primary name: end the URL with #NAME, the name the sentinels monitor it under".into());
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let (hosts, db) = rest.split_once('/').unwrap_or((rest, ""));
        let sentinels: Vec<String> = (hosts.split(','))
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| match host.rsplit_once(':') {
                Some((_, port)) if !host.ends_with(']') && !port.contains(']') => host.to_string(),
                _ => format!("{host}:26379"),
            })
            .collect();
        if sentinels.is_empty() {
            return Err("no sentinel address".into());
        }
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!("`{db}` is not a database number"));
        }
        Ok(Self {
            sentinels,
            name: name.to_string(),
            credentials,
            db: db.to_string(),
            tls,
        })
    }

    /// `redis` or `rediss`.
    fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }

    /// The primary's URL, at `address` (`host:port`, as the sentinels name it).
    fn primary(&self, (host, port): &(String, u16)) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        format!("{}://{}{host}:{port}/{}", self.scheme(), self.credentials, self.db)
    }
}

/// Where the sentinels say the primary is: they are asked in turn until one answers,
/// over a connection kept to the last one that did.
struct Watch {
    url: SentinelUrl,
    /// The certificates to trust and present (TLS only).
    redis: RedisAddress,
    connection: Option<MultiplexedConnection>,
    next: usize,
}

impl Watch {
    async fn primary(&mut self) -> Result<(String, u16), String> {
        let mut why = String::new();
        for _ in 0..self.url.sentinels.len() {
            match self.ask().await {
                Ok(Some((host, port))) => match port.parse() {
                    Ok(port) => return Ok((host, port)),
                    Err(_) => why = format!("sentinel {}: `{port}` is no port", self.url.sentinels[self.next]),
                },
                Ok(None) => why = format!("the sentinels do not know `{}`", self.url.name),
                Err(e) => why = format!("sentinel {}: {e}", self.url.sentinels[self.next]),
            }
            self.distrust();
        }
        Err(why)
    }

    /// The sentinel asked last did not answer, or named no primary: ask the next.
    fn distrust(&mut self) {
        self.connection = None;
        self.next = (self.next + 1) % self.url.sentinels.len();
    }

    /// A connection manager at `at`, once it says it is the primary (a sentinel that
    /// lags, or sits in a minority, may name an old primary or a replica: the next
    /// sentinel is asked next time), subscribed to `channels`.
    async fn connect(
        &mut self,
        at: &(String, u16),
        pushes: Option<UnboundedSender<PushInfo>>,
        channels: &[String],
    ) -> Result<ConnectionManager, String> {
        let url = self.url.primary(at);
        let shown = without_credentials(&url);
        let failed = |e: redis::RedisError| format!("the Redis primary at {shown}: {e}");
        let mut connection = manager(&self.redis, url.as_str(), pushes).await.map_err(failed)?;
        let role: Value = redis::cmd("ROLE").query_async(&mut connection).await.map_err(failed)?;
        let primary = matches!(&role, Value::Array(fields)
            if matches!(fields.first(), Some(Value::BulkString(role)) if role == b"master"));
        if !primary {
            self.distrust();
            return Err(format!("{shown}, named by a sentinel, is not a primary"));
        }
        if !channels.is_empty() {
            let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
            connection.subscribe(&channels).await.map_err(failed)?;
        }
        Ok(connection)
    }

    async fn ask(&mut self) -> redis::RedisResult<Option<(String, String)>> {
        if self.connection.is_none() {
            let sentinel = format!("{}://{}", self.url.scheme(), self.url.sentinels[self.next]);
            self.connection = Some(one_connection(&self.redis, self.redis.sentinel(&sentinel)?).await?);
        }
        let connection = self.connection.as_mut().expect("connected above");
        redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.url.name)
            .query_async(connection)
            .await
    }
}

/// Connects to the primary the sentinels name, and follows it from then on (a task
/// that ends with the last clone of what this returns).
async fn follow(
    url: SentinelUrl,
    redis: RedisAddress,
    pushes: Option<UnboundedSender<PushInfo>>,
) -> Result<Followed, DirectoryError> {
    let mut watch = Watch {
        url,
        redis,
        connection: None,
        next: 0,
    };
    let mut why = String::new();
    let mut found = None;
    for _ in 0..watch.url.sentinels.len() {
        match watch.primary().await {
            Ok(at) => match watch.connect(&at, pushes.clone(), &[]).await {
                Ok(connection) => {
                    found = Some((at, connection));
                    break;
                }
                Err(e) => why = e,
            },
            Err(e) => why = e,
        }
    }
    let Some((mut at, connection)) = found else {
        return Err(DirectoryError(why));
    };
    let followed = Followed(Arc::new(Primary {
        connection: RwLock::new(connection),
        channels: parking_lot::Mutex::default(),
        switching: Mutex::default(),
    }));
    let weak = Arc::downgrade(&followed.0);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FOLLOW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = true;
        loop {
            every.tick().await;
            if weak.strong_count() == 0 {
                return;
            }
            let now = match watch.primary().await {
                Ok(now) => now,
                Err(why) => {
                    if std::mem::replace(&mut answered, false) {
                        tracing::warn!(
                            "no sentinel answers ({why}); staying with the primary at {}:{}",
                            at.0,
                            at.1
                        );
                    }
                    continue;
                }
            };
            answered = true;
            if now == at {
                continue;
            }
            match watch.connect(&now, pushes.clone(), &[]).await {
                Ok(connection) => {
                    let Some(primary) = weak.upgrade() else { return };
                    if let Err(e) = take_over(&primary, connection).await {
                        tracing::warn!("not following the sentinels to {}:{} yet: {e}", now.0, now.1);
                        continue;
                    }
                    tracing::warn!(from = %format!("{}:{}", at.0, at.1), to = %format!("{}:{}", now.0, now.1), "the Redis primary moved (a Sentinel failover): following it");
                    at = now;
                }
                Err(e) => tracing::warn!("not following the sentinels to {}:{} yet: {e}", now.0, now.1),
            }
        }
    });
    Ok(followed)
}

/// `command`, given up after [`TIMEOUT`].
async fn bounded<T>(command: impl Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
    match tokio::time::timeout(TIMEOUT, command).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// Subscribes `connection` to what the primary's is subscribed to and puts it in its
/// place, under the switching lock (see [`Primary::switching`]); channels joined
/// meanwhile are joined on it before. Channels left meanwhile are left on it once it
/// is in place (their own commands, waiting for the lock, may have given up): the
/// bus then hears that the calls stopped after every call it heard.
async fn take_over(primary: &Primary, mut connection: ConnectionManager) -> redis::RedisResult<()> {
    let _switching = primary.switching.lock().await;
    let mut subscribed: Vec<String> = Vec::new();
    let left = loop {
        let joined: Vec<String> = {
            let channels = primary.channels.lock();
            let joined: Vec<String> = (channels.iter()).filter(|c| !subscribed.contains(c)).cloned().collect();
            if joined.is_empty() {
                *primary.connection.write() = connection.clone();
                break (subscribed.iter())
                    .filter(|c| !channels.contains(c))
                    .cloned()
                    .collect::<Vec<_>>();
            }
            joined
        };
        let joining: Vec<&str> = joined.iter().map(String::as_str).collect();
        bounded(connection.subscribe(&joining)).await?;
        subscribed.extend(joined);
    };
    // (In place already: a failure here is the failure of a command on it.)
    let leaving: Vec<&str> = left.iter().map(String::as_str).collect();
    if !leaving.is_empty()
        && let Err(e) = bounded(connection.unsubscribe(&leaving)).await
    {
        tracing::warn!("leaving {leaving:?} on the new Redis primary failed: {e}");
    }
    Ok(())
}

/// Reaches `redis` as a node's start does and asks it for a `PONG`: what answered
/// ("one Redis server", "a Redis Cluster", "a primary found through Sentinel"), or
/// why nothing did. For `tickrelay --check`.
pub async fn probe(redis: &RedisAddress) -> Result<&'static str, DirectoryError> {
    let mut connection = Connection::open(redis, None).await?;
    let what = match connection.link {
        Link::Single(_) => "one Redis server",
        Link::Cluster(_) => "a Redis Cluster",
        Link::Sentinel(_) => "a primary found through Sentinel",
    };
    let pong: String = (redis::cmd("PING").query_async(&mut connection).await)
        .map_err(|e| DirectoryError(format!("Redis at {} did not answer PING: {e}", redis.shown())))?;
    match pong.as_str() {
        "PONG" => Ok(what),
        other => Err(DirectoryError(format!(
            "Redis at {} answered PING with {other:?}",
            redis.shown()
        ))),
    }
}

/// A plain connection to `url` (no reconnection; trusting as `redis` says), within
/// the usual timeouts.
async fn one_connection(
    redis: &RedisAddress,
    url: impl IntoConnectionInfo,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    (redis.client(url)?)
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Whether the Redis at `url` runs in cluster mode.
async fn is_cluster(redis: &RedisAddress, url: &str) -> redis::RedisResult<bool> {
    let mut connection = one_connection(redis, url).await?;
    let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut connection).await?;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

/// Whether a key starting with `prefix` hashes by a tag inside it (a `{`, then a `}`
/// with something between).
fn has_hash_tag(prefix: &str) -> bool {
    prefix
        .find('{')
        .is_some_and(|open| prefix[open + 1..].find('}').is_some_and(|close| close > 0))
}

impl Link {
    fn request<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
            Self::Sentinel(followed) => {
                let mut connection = followed.current();
                Box::pin(async move { connection.req_packed_command(cmd).await })
            }
        }
    }

    fn requests<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(followed) => {
                let mut connection = followed.current();
                Box::pin(async move { connection.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }
}

impl Connection {
    /// Whether commands asked here run on the connection's runtime instead: on an
    /// I/O thread (see [`Connection`]).
    fn hops() -> bool {
        pacer::home() != pacer::NO_HOME
    }

    /// Runs `ask` on the connection's runtime; what it answers wakes the asking task
    /// (and its I/O thread) at once. Dropped unanswered, it is aborted there, as the
    /// command's own future would be.
    fn hop<T: Send + 'static>(
        &self,
        ask: impl Future<Output = redis::RedisResult<T>> + Send + 'static,
    ) -> RedisFuture<'static, T> {
        let answer = AbortOnDropHandle::new(self.runtime.spawn(ask));
        Box::pin(pacer::poked(async move {
            answer
                .await
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?
        }))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if !Self::hops() {
            return self.link.request(cmd);
        }
        let (mut link, cmd) = (self.link.clone(), cmd.clone());
        self.hop(async move { link.request(&cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if !Self::hops() {
            return self.link.requests(pipeline, offset, count);
        }
        let (mut link, pipeline) = (self.link.clone(), pipeline.clone());
        self.hop(async move { link.requests(&pipeline, offset, count).await })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
            Link::Sentinel(followed) => followed.current().get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SentinelUrl, has_hash_tag};

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_primary_and_its_credentials() {
        let url = SentinelUrl::parse("app:s%40cret@10.0.0.5,10.0.0.6:26380,[::1]/2#game", false).unwrap();
        assert_eq!(url.sentinels, ["10.0.0.5:26379", "10.0.0.6:26380", "[::1]:26379"]);
        assert_eq!(url.name, "game");
        assert_eq!(
            url.primary(&("10.0.0.7".into(), 6379)),
            "redis://app:s%40cret@10.0.0.7:6379/2"
        );
        assert_eq!(url.primary(&("::1".into(), 6380)), "redis://app:s%40cret@[::1]:6380/2");
        let bare = SentinelUrl::parse("[::1]:26381#game", false).unwrap();
        assert_eq!(bare.sentinels, ["[::1]:26381"]);
        assert_eq!(bare.primary(&("127.0.0.1".into(), 6379)), "redis://127.0.0.1:6379/");
        let tls = SentinelUrl::parse("10.0.0.5#game", true).unwrap();
        assert_eq!(tls.primary(&("10.0.0.7".into(), 6379)), "rediss://10.0.0.7:6379/");
        for wrong in ["10.0.0.5", "10.0.0.5#", "#game", "10.0.0.5/x#game"] {
            assert!(SentinelUrl::parse(wrong, false).is_err(), "{wrong}");
        }
    }

    #[test]
    fn a_prefix_holds_a_hash_tag_only_with_something_between_the_braces() {
        assert!(has_hash_tag("{game}:"));
        assert!(has_hash_tag("tickrelay:{eu}:"));
        assert!(!has_hash_tag("tickrelay:"));
        assert!(!has_hash_tag("{}tickrelay:"));
        assert!(!has_hash_tag("tickrelay:{"));
        assert!(!has_hash_tag("}{"));
    }
}
