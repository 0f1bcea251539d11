//! The directory's and the bus's way to Redis: one Redis server (or a replicated one),
//! through redis-rs's connection manager, or a Redis Cluster, through its cluster
//! connection. Which one is asked of the server at start (`INFO cluster`), so
//! `[cluster] redis_url` is all a node is told; for a cluster it may list several
//! seed nodes, comma-separated.
//!
//! On a Redis Cluster every key of the directory lives in one hash slot: the key
//! prefix becomes a hash tag (`tickrelay:` → `{tickrelay:}`), so each script's keys,
//! including those it computes, are on one shard, as the scripts need; pub/sub is
//! sharded (`SSUBSCRIBE`, `SPUBLISH`) on channels under the same tag, so a publish
//! counts the listeners exactly. The directory then runs on one shard of the cluster
//! (a cluster gives it failover, not more throughput: about 5 commands per room per
//! second, see BENCHMARKS.md).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::directory::DirectoryError;

/// See the module documentation.
#[derive(Clone)]
pub(super) enum Connection {
    /// One Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// How long connecting, and each answer, may take: a dead Redis is noticed within
/// seconds, and reconnection is retried in the background.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Retries of a command whose connection failed.
const RETRIES: u32 = 3;

impl Connection {
    /// Connects to `url` (`redis://host:port/db`, or several seed nodes of a cluster,
    /// comma-separated). `pushes`: where pub/sub messages go (the connection then
    /// speaks RESP3). An unreachable Redis is an error here, at start.
    pub(super) async fn open(url: &str, pushes: Option<UnboundedSender<PushInfo>>) -> Result<Self, DirectoryError> {
        let unreachable = |e: redis::RedisError| DirectoryError(format!("cannot reach Redis at {url}: {e}"));
        let seeds: Vec<&str> = url.split(',').map(str::trim).collect();
        if is_cluster(seeds[0]).await.map_err(unreachable)? {
            let mut builder = ClusterClient::builder(seeds.iter().copied())
                .connection_timeout(TIMEOUT)
                .response_timeout(TIMEOUT)
                .retries(RETRIES);
            if let Some(pushes) = pushes {
                builder = builder.use_protocol(ProtocolVersion::RESP3).push_sender(pushes);
            }
            let client = builder.build().map_err(unreachable)?;
            let connection = client.get_async_connection().await.map_err(unreachable)?;
            return Ok(Self::Cluster(connection));
        }
        let [seed] = seeds[..] else {
            return Err(DirectoryError(format!(
                "{url}: several Redis URLs, but {} is not a Redis Cluster",
                seeds[0]
            )));
        };
        let mut info = seed.into_connection_info().map_err(unreachable)?;
        let mut config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(RETRIES as usize);
        if let Some(pushes) = pushes {
            let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(resp3);
            config = config.set_push_sender(pushes).set_automatic_resubscription();
        }
        let client = Client::open(info).map_err(unreachable)?;
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        Ok(Self::Single(connection))
    }

    /// The prefix of every key and channel, from the configured one: on a cluster,
    /// inside a hash tag (unless it holds one already).
    pub(super) fn key_prefix(&self, configured: &str) -> String {
        match self {
            Self::Cluster(_) if !has_hash_tag(configured) => format!("{{{configured}}}"),
            _ => configured.to_string(),
        }
    }

    /// Subscribes to `channels` (sharded on a cluster), with the pushes going where
    /// [`Connection::open`] was told.
    pub(super) async fn subscribe(&mut self, channels: &[&str]) -> redis::RedisResult<()> {
        match self {
            Self::Single(connection) => connection.subscribe(channels).await,
            Self::Cluster(connection) => connection.ssubscribe(channels).await,
        }
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster: answers how many listen.
    pub(super) fn publish(&self) -> Cmd {
        redis::cmd(match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        })
    }

    /// How many listen on `channel`.
    pub(super) async fn listeners(&mut self, channel: &str) -> redis::RedisResult<u64> {
        let question = match self {
            Self::Single(_) => "NUMSUB",
            Self::Cluster(_) => "SHARDNUMSUB",
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

/// Whether the Redis at `url` runs in cluster mode.
async fn is_cluster(url: &str) -> redis::RedisResult<bool> {
    let client = Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
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

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_hash_tag;

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
