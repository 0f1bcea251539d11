//! Messages between nodes, over Redis pub/sub: each node listens on a channel of its
//! own, `<prefix>node:<id>:inbox`, for room events published through another node's
//! HTTP API for a room that lives here (a protobuf `SendEvent`, the same message a
//! client sends), on `<prefix>node:<id>:closes` for the rooms that API closes (a
//! protobuf `RoomClose`), on `<prefix>node:<id>:removals` for the users it removes
//! from rooms (a protobuf `UserRemoval`), and on `<prefix>users` for sessions going
//! live with the `replace` duplicate-session policy (a protobuf `UserLive`: every
//! node closes the user's sessions of other clients).
//!
//! Pub/sub keeps nothing: a message published while the owner is not listening (it is
//! reconnecting to Redis: up to a third of a lease after Redis came back; or it is
//! stopping, see [`Bus::stop_calls`]) is lost, and the publisher learns it from
//! `PUBLISH`'s count of listeners (0), which the API answers with 503.
//!
//! The subscription lives on a RESP3 connection of its own (redis-rs's connection
//! manager, or its cluster connection, which reconnect and subscribe again by
//! themselves, once used: see [`Bus::keep_listening`]; through Redis Sentinel, a
//! new primary's connection subscribes at once). On a Redis Cluster the channels are
//! sharded (`SSUBSCRIBE`), under the directory's hash tag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prost::Message;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::directory::DirectoryError;
use super::redis_connection::{Connection, RedisAddress};
use crate::proto::{RoomClose, SendEvent, UserLive, UserRemoval};

/// What arrived for this node.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// A room event to publish in a room open here.
    Event(SendEvent),
    /// A room open here to close.
    Close(RoomClose),
    /// A user to remove from a room open here.
    Removal(UserRemoval),
    /// A client of this user went live: its other clients' sessions go.
    UserLive(UserLive),
    /// Every call published before [`Bus::stop_calls`] has been delivered before this.
    CallsStopped,
}

impl BusMessage {
    /// The room it is for (none: a user's session going live, for every room).
    pub fn room(&self) -> Option<&str> {
        match self {
            BusMessage::Event(event) => Some(&event.room),
            BusMessage::Close(close) => Some(&close.room),
            BusMessage::Removal(removal) => Some(&removal.room),
            BusMessage::UserLive(_) | BusMessage::CallsStopped => None,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Bus {
    connection: Connection,
    prefix: String,
    /// This node's inbox channel.
    inbox: String,
    /// This node's channel for rooms to close.
    closes: String,
    /// This node's channel for users to remove from rooms.
    removals: String,
    /// Every node's channel for sessions going live.
    users: String,
    /// Set by [`Bus::stop_calls`]: the calls' channels are not subscribed again.
    calls_stopped: Arc<AtomicBool>,
    /// Held across a look at the subscription and its change ([`Bus::keep_listening`],
    /// [`Bus::stop_calls`]), so that a renewal under way cannot subscribe again
    /// behind a stop.
    subscribing: Arc<tokio::sync::Mutex<()>>,
}

impl Bus {
    /// Connects, subscribes to this node's inbox, and returns the bus with the stream
    /// of what arrives.
    pub async fn connect(
        redis: &RedisAddress,
        prefix: &str,
        node: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<BusMessage>), DirectoryError> {
        let (pushes, mut pushed) = mpsc::unbounded_channel::<PushInfo>();
        let mut connection = Connection::open(redis, Some(pushes)).await?;
        let prefix = connection.key_prefix(prefix);
        let [inbox, closes, removals] = ["inbox", "closes", "removals"].map(|name| node_channel(&prefix, node, name));
        let users = format!("{prefix}users");
        connection
            .subscribe(&[&inbox, &closes, &removals, &users])
            .await
            .map_err(|e| DirectoryError(format!("cannot subscribe at {}: {e}", redis.shown())))?;
        let (deliveries, delivered) = mpsc::unbounded_channel();
        let channels = [inbox.clone(), closes.clone(), removals.clone(), users.clone()];
        let calls_stopped = Arc::new(AtomicBool::new(false));
        let stopped = calls_stopped.clone();
        tokio::spawn(async move {
            while let Some(push) = pushed.recv().await {
                if let Some(delivery) = decode(push, &channels, &stopped)
                    && deliveries.send(delivery).is_err()
                {
                    return;
                }
            }
        });
        let bus = Self {
            connection,
            prefix,
            inbox,
            closes,
            removals,
            users,
            calls_stopped,
            subscribing: Arc::default(),
        };
        Ok((bus, delivered))
    }

    /// Subscribes to the inbox again if Redis does not count this node as listening
    /// (the connection manager resubscribes when it reconnects, but it reconnects a
    /// connection that only listens only when it is used: this is that use). Called
    /// every lease renewal.
    pub async fn keep_listening(&self) -> Result<(), DirectoryError> {
        let _subscribing = self.subscribing.lock().await;
        if self.calls_stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        let failed = |e: redis::RedisError| DirectoryError(e.to_string());
        let mut connection = self.connection.clone();
        if connection.listeners(&self.inbox).await.map_err(failed)? == 0 {
            tracing::info!(channel = %self.inbox, "subscribing to this node's inbox again");
            connection
                .subscribe(&[&self.inbox, &self.closes, &self.removals, &self.users])
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// A node about to hand its rooms off stops taking calls from other nodes (room
    /// events, closes, removals): it unsubscribes from their channels, so a call
    /// published from then on counts no listener and its API answers 503 (retry: the
    /// room is on its way to another node). [`BusMessage::CallsStopped`] follows the
    /// calls published before, which reach the rooms ahead of their last checkpoint:
    /// it is Redis's confirmation that the last of those channels is left, which
    /// comes on the same connection, and the same way, as the calls before it. Tried
    /// again until `deadline` when Redis does not answer.
    pub async fn stop_calls(&self, deadline: tokio::time::Instant) -> Result<(), DirectoryError> {
        let _subscribing = self.subscribing.lock().await;
        self.calls_stopped.store(true, Ordering::Release);
        let channels = [self.inbox.as_str(), self.closes.as_str(), self.removals.as_str()];
        let mut connection = self.connection.clone();
        loop {
            let attempt = connection.unsubscribe(&channels);
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if tokio::time::Instant::now() + RETRY_UNSUBSCRIBE < deadline => {
                    tracing::debug!("unsubscribing from this node's call channels: {e}; trying again");
                    tokio::time::sleep(RETRY_UNSUBSCRIBE).await;
                }
                Ok(Err(e)) => return Err(DirectoryError(e.to_string())),
                Err(_) => return Err(DirectoryError("Redis did not answer the unsubscribe".into())),
            }
        }
    }

    /// Tells every node that a client (`family`) of `user_id` went live at `since_us`.
    pub async fn announce_live(&self, user_id: &str, family: u64, since_us: u64) -> Result<(), DirectoryError> {
        let message = UserLive {
            user_id: user_id.to_string(),
            family,
            since_us,
        };
        let _: u64 = (self.connection.publish())
            .arg(&self.users)
            .arg(message.encode_to_vec())
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| DirectoryError(e.to_string()))?;
        Ok(())
    }

    /// Sends a room event to `node`; whether a node was listening.
    pub async fn send_event(&self, node: &str, event: &SendEvent) -> Result<bool, DirectoryError> {
        self.send(node_channel(&self.prefix, node, "inbox"), event.encode_to_vec())
            .await
    }

    /// Asks `node` to close a room; whether a node was listening.
    pub async fn send_close(&self, node: &str, close: &RoomClose) -> Result<bool, DirectoryError> {
        self.send(node_channel(&self.prefix, node, "closes"), close.encode_to_vec())
            .await
    }

    /// Asks `node` to remove a user from a room; whether a node was listening.
    pub async fn send_removal(&self, node: &str, removal: &UserRemoval) -> Result<bool, DirectoryError> {
        self.send(node_channel(&self.prefix, node, "removals"), removal.encode_to_vec())
            .await
    }

    async fn send(&self, channel: String, message: Vec<u8>) -> Result<bool, DirectoryError> {
        let listeners: u64 = (self.connection.publish())
            .arg(channel)
            .arg(message)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| DirectoryError(e.to_string()))?;
        Ok(listeners > 0)
    }
}

/// How soon [`Bus::stop_calls`] tries again.
const RETRY_UNSUBSCRIBE: std::time::Duration = std::time::Duration::from_millis(100);

/// The channel `name` of `node` (see the module documentation).
fn node_channel(prefix: &str, node: &str, name: &str) -> String {
    format!("{prefix}node:{node}:{name}")
}

/// A pushed message on one of `[inbox, closes, removals, users]`, if it is one this
/// node understands.
fn decode(push: PushInfo, [inbox, closes, removals, users]: &[String; 4], stopped: &AtomicBool) -> Option<BusMessage> {
    match &push.kind {
        PushKind::Message | PushKind::SMessage => {}
        // Leaving the removals channel, the last of the calls' (see `Bus::stop_calls`).
        PushKind::Unsubscribe | PushKind::SUnsubscribe => {
            let left = matches!(push.data.first(), Some(Value::BulkString(channel)) if channel == removals.as_bytes());
            return (left && stopped.load(Ordering::Acquire)).then_some(BusMessage::CallsStopped);
        }
        _ => return None,
    }
    let [Value::BulkString(channel), Value::BulkString(payload)] = &push.data[..] else {
        return None;
    };
    let decoded = if channel == inbox.as_bytes() {
        SendEvent::decode(&payload[..]).map(BusMessage::Event)
    } else if channel == closes.as_bytes() {
        RoomClose::decode(&payload[..]).map(BusMessage::Close)
    } else if channel == removals.as_bytes() {
        UserRemoval::decode(&payload[..]).map(BusMessage::Removal)
    } else if channel == users.as_bytes() {
        UserLive::decode(&payload[..]).map(BusMessage::UserLive)
    } else {
        return None;
    };
    decoded
        .inspect_err(|e| tracing::warn!("undecodable message on {}: {e}", String::from_utf8_lossy(channel)))
        .ok()
}
