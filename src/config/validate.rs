//! [`Config::validate`]: every setting in range and consistent with the others.

use std::collections::BTreeMap;

use super::{
    Config, ConfigError, MAX_ARENA_NPCS, MAX_IO_THREADS, MAX_OUTBOX_MESSAGES, MIN_OWNER_QUIET_MS, PRESENCE_MAX_BYTES,
    SimulationKind, urls,
};

impl Config {
    /// What follows the naming of an unknown room type `name`: the nearest type, if
    /// one is near, and every type.
    fn room_type_hint(&self, name: &str) -> String {
        let mut types: Vec<&str> = self.room_types.keys().map(String::as_str).collect();
        types.sort_unstable();
        let near = crate::engine::rooms::nearest_name(name, types.iter().copied());
        let near = near.map_or_else(String::new, |near| format!(" (did you mean `{near}`?)"));
        format!("{near}; the room types are: {}", types.join(", "))
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return invalid("tls.cert and tls.key (--tls-cert and --tls-key) must be given together".into());
        }
        if !(self.room_creations_per_minute > 0.0 && self.room_creation_burst >= 1.0) {
            return invalid("room_creations_per_minute must be > 0 and room_creation_burst >= 1".into());
        }
        if !(self.room_searches_per_second > 0.0 && self.room_search_burst >= 1.0) {
            return invalid("room_searches_per_second must be > 0 and room_search_burst >= 1".into());
        }
        if self.io_threads > MAX_IO_THREADS {
            return invalid(format!("io_threads must be at most {MAX_IO_THREADS} (0: one per core)"));
        }
        if !self.room_types.contains_key(&self.default_room_type) {
            return invalid(format!(
                "default_room_type `{}` is not a room type{}",
                self.default_room_type,
                self.room_type_hint(&self.default_room_type)
            ));
        }
        let at_least_one = [
            ("sim_queue_capacity", self.sim_queue_capacity),
            ("max_rooms", self.max_rooms),
            ("session.max_rooms_per_session", self.session.max_rooms_per_session),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return invalid(format!(
                "{name} must be at least 1 (0 leaves the relay refusing every join)"
            ));
        }
        for (name, t) in &self.room_types {
            if name.is_empty() || crate::session::check_room_type(name).is_err() {
                return invalid(format!(
                    "room type `{}`: a room type's name is 1-{} bytes, without control characters",
                    name.escape_debug(),
                    crate::session::MAX_ROOM_TYPE_BYTES
                ));
            }
            t.room_config()
                .validate()
                .or_else(|e| invalid(format!("room type `{name}`: {e}")))?;
            if let Err(e) = t.schema() {
                return invalid(format!("room type `{name}`: {e}"));
            }
            // Ownership passing back and forth between two members a few ticks apart
            // would cost every member a presence message each time.
            if (1..MIN_OWNER_QUIET_MS).contains(&t.owner_quiet_ms) {
                return invalid(format!(
                    "room type `{name}`: owner_quiet_ms must be 0 (off) or at least {MIN_OWNER_QUIET_MS}"
                ));
            }
            // Each room holds them all: a typo of a few zeros would take the memory of
            // the machine at the first join.
            if t.simulation == SimulationKind::Arena && t.arena_npcs > MAX_ARENA_NPCS {
                return invalid(format!(
                    "room type `{name}`: arena_npcs must be at most {MAX_ARENA_NPCS}"
                ));
            }
            if !t.params.is_empty() && !matches!(t.simulation, SimulationKind::Registered(_)) {
                return invalid(format!(
                    "room type `{name}`: `params` are for simulations a program registers; relay and arena rooms take the settings above"
                ));
            }
            // One tick's presence for a member: a leave and a join per seat, with room
            // for its own `Joined` (or a `RoomUpdated`: a member owed a `Joined` is told
            // the room's metadata by it alone) and an error (events wait for the next
            // tick), and the room's metadata once.
            let listing = crate::engine::listing::MAX_ROOM_UPDATED_BYTES;
            let (messages, bytes) = (2 * t.max_members + 2, 2 * t.max_members * PRESENCE_MAX_BYTES + listing);
            if messages > self.session.outbox_max_messages || bytes > self.session.outbox_max_bytes {
                return invalid(format!(
                    "room type `{name}`: max_members {} needs session.outbox_max_messages of at least {messages} and outbox_max_bytes of at least {bytes} (one tick's presence can be a leave and a join per seat, and the room's metadata)",
                    t.max_members,
                ));
            }
        }
        let mut rooms = BTreeMap::new();
        for room in &self.rooms {
            if !crate::engine::room::valid_room_id(&room.id) {
                return invalid(format!(
                    "room `{}`: a room id is 1-{} bytes, without control characters",
                    room.id.escape_debug(),
                    crate::engine::room::MAX_ROOM_ID_BYTES
                ));
            }
            if !self.room_types.contains_key(&room.room_type) {
                return invalid(format!(
                    "room `{}` has unknown type `{}`{}",
                    room.id,
                    room.room_type,
                    self.room_type_hint(&room.room_type)
                ));
            }
            if let Err(e) = crate::engine::listing::check(&room.metadata) {
                return invalid(format!("room `{}`: metadata: {e}", room.id));
            }
            if let Some(other) = rooms
                .insert(&room.id, &room.room_type)
                .filter(|&t| t != &room.room_type)
            {
                return invalid(format!(
                    "room `{}` is listed twice, as `{other}` and as `{}`",
                    room.id, room.room_type
                ));
            }
        }
        if rooms.len() > self.max_rooms {
            return invalid(format!(
                "{} rooms kept open, more than max_rooms ({})",
                rooms.len(),
                self.max_rooms
            ));
        }
        crate::session::auth::Authenticator::new(&self.auth).map_err(ConfigError::Invalid)?;
        self.origins.validate().map_err(ConfigError::Invalid)?;
        if self.connections.max_connections == 0 || self.connections.max_per_ip == 0 {
            return invalid(
                "connections.max_connections and max_per_ip must be at least 1 (0 refuses every connection, /healthz too)"
                    .into(),
            );
        }
        for (name, token) in [("api.token", &self.api.token), ("metrics.token", &self.metrics.token)] {
            if token.as_deref().is_some_and(|t| t.chars().any(char::is_control)) {
                return invalid(format!(
                    "{name} holds a control character (a line break?), which no Authorization header can carry"
                ));
            }
            if token.as_deref().is_some_and(|t| !t.is_ascii()) {
                return invalid(format!(
                    "{name} holds a character beyond ASCII, which an Authorization header cannot carry as text"
                ));
            }
            if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
                let unset = match name {
                    "api.token" => "leave it unset to turn the HTTP API off",
                    _ => "leave it unset to serve /metrics without a token",
                };
                return invalid(format!("{name} is empty: no request could present it ({unset})"));
            }
            if token.as_deref().is_some_and(|t| t.trim() != t) {
                return invalid(format!(
                    "{name} starts or ends with white space, which no Authorization header can carry"
                ));
            }
        }
        let s = &self.session;
        let positive = [
            ("session.heartbeat_interval_secs", s.heartbeat_interval_secs),
            ("session.heartbeat_timeout_secs", s.heartbeat_timeout_secs),
            ("session.slow_consumer_secs", s.slow_consumer_secs),
            ("session.messages_per_second", s.messages_per_second),
            ("session.message_burst", s.message_burst),
            ("session.bytes_per_second", s.bytes_per_second),
            ("session.byte_burst", s.byte_burst),
            (
                "connections.handshakes_per_ip_per_second",
                self.connections.handshakes_per_ip_per_second,
            ),
            ("connections.handshake_burst", self.connections.handshake_burst),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return invalid(format!("{name} must be a positive number"));
            }
        }
        // Times: a day at most (beyond, a typo of a few zeros; and a time too large for
        // a `Duration` would stop the start).
        let times = [
            ("session.heartbeat_interval_secs", s.heartbeat_interval_secs),
            ("session.heartbeat_timeout_secs", s.heartbeat_timeout_secs),
            ("session.slow_consumer_secs", s.slow_consumer_secs),
            ("session.resume_grace_secs", s.resume_grace_secs),
        ];
        if let Some((name, _)) = times.iter().find(|(_, secs)| !(0.0..=86_400.0).contains(secs)) {
            return invalid(format!("{name} must be at most 86400 (a day)"));
        }
        // Told to clients as whole numbers (`Welcome.limits`), where 0 means "not
        // announced": a client would then pace to the defaults, not to these.
        let announced = [
            ("session.messages_per_second", s.messages_per_second),
            ("session.message_burst", s.message_burst),
            ("session.bytes_per_second", s.bytes_per_second),
        ];
        for (name, value) in announced {
            if value < 1.0 {
                return invalid(format!(
                    "{name} must be at least 1 (clients are told it as a whole number, and 0 means unset)"
                ));
            }
        }
        // Clients take a gap in message numbers wider than this for a broken relay
        // (PROTOCOL.md); a resume never skips more than the queue holds.
        if s.outbox_max_messages > MAX_OUTBOX_MESSAGES {
            return invalid(format!(
                "session.outbox_max_messages must be at most {MAX_OUTBOX_MESSAGES} (clients take a wider gap in message numbers for a broken relay)"
            ));
        }
        // A message the size limit admits must fit the byte bucket, or it is refused
        // however slowly it is sent.
        if s.byte_burst < s.max_message_bytes as f64 {
            return invalid(format!(
                "session.byte_burst ({}) must be at least session.max_message_bytes ({})",
                s.byte_burst, s.max_message_bytes
            ));
        }
        if !(s.resume_grace_secs >= 0.0 && s.resume_grace_secs.is_finite()) {
            return invalid("session.resume_grace_secs must be 0 or more".into());
        }
        let c = &self.cluster;
        if c.redis_cert_file.is_some() != c.redis_key_file.is_some() {
            return invalid(
                "cluster.redis_cert_file and cluster.redis_key_file go together: set both or neither".into(),
            );
        }
        let tls_files = c.redis_ca_file.is_some() || c.redis_cert_file.is_some();
        let tls_url = c.redis_url.as_deref().is_some_and(|url| url.starts_with("rediss"));
        if tls_files && !tls_url {
            return invalid(
                "cluster.redis_ca_file / redis_cert_file are for TLS to Redis: the redis_url must then be rediss://… or rediss-sentinel://…".into(),
            );
        }
        if c.sentinel_username.is_some() && c.sentinel_password.is_none() {
            return invalid("cluster.sentinel_username needs cluster.sentinel_password".into());
        }
        let sentinels = c.redis_url.as_deref().is_some_and(|url| url.contains("-sentinel://"));
        if (c.sentinel_username.is_some() || c.sentinel_password.is_some()) && !sentinels {
            return invalid(
                "cluster.sentinel_username / sentinel_password are for Redis Sentinel: the redis_url must then be redis-sentinel://… or rediss-sentinel://…".into(),
            );
        }
        if self.tls.reload_secs > 86_400 {
            return invalid("tls.reload_secs must be at most 86400 (a day; 0: on SIGHUP only)".into());
        }
        if self.cluster.redis_url.is_some() && self.cluster.lease_ms < 300 {
            return invalid("cluster.lease_ms must be at least 300".into());
        }
        if self.cluster.checkpoint_bytes_per_second < 1024 {
            return invalid("cluster.checkpoint_bytes_per_second must be at least 1024".into());
        }
        if self.cluster.checkpoint_ttl_secs == 0 {
            return invalid("cluster.checkpoint_ttl_secs must be at least 1".into());
        }
        if self.cluster.redis_url.is_some() && self.cluster.public_url.is_none() && self.listen.ip().is_unspecified() {
            return invalid(format!(
                "cluster mode listening on {}: set cluster.public_url (--public-url), the URL other machines reach this node at",
                self.listen
            ));
        }
        if let Some(url) = c.public_url.as_deref().filter(|url| {
            // The path after the host, before any query: more than `/`.
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            let path = rest.trim_start_matches(|c| !matches!(c, '/' | '?' | '#'));
            let path = path.split(['?', '#']).next().unwrap_or("");
            urls::http_base(url).is_none() || path.len() < 2
        }) {
            return invalid(format!(
                "cluster.public_url `{url}` is not a ws:// or wss:// URL with a host and the WebSocket path (for example wss://node1.example.com/ws)"
            ));
        }
        if c.node_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return invalid("cluster.node_id must be 1-128 bytes, without control characters".into());
        }
        if self.metrics.listen.is_some_and(|m| m == self.listen && m.port() != 0) {
            return invalid(format!(
                "metrics.listen is listen's own address ({}): leave it unset to serve /metrics there",
                self.listen
            ));
        }
        // No credit at all would stall every QUIC client's control stream.
        if self.quic.stream_receive_window_bytes < 1024 {
            return invalid("quic.stream_receive_window_bytes must be at least 1024".into());
        }
        if self.session.max_message_bytes < 64 || self.websocket.read_buffer_bytes < 256 {
            return invalid("session.max_message_bytes must be >= 64 and websocket.read_buffer_bytes >= 256".into());
        }
        Ok(())
    }
}
