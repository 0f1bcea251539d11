//! Sessions across nodes: ids and resume tokens, the records in Redis that let a
//! session continue on another node, and taking one over from there.

use super::*;

impl Cluster {
    /// The first session id of this node: ids are unique in the cluster, so a session
    /// can continue on another node as the same member.
    pub fn first_session_id(&self) -> u64 {
        (self.settings.number << SESSION_ID_BITS) + 1
    }

    /// A new resume token: this node start's number, a dot, 32 random hex digits.
    pub fn resume_token(&self) -> String {
        format!("{}.{}", self.settings.number, crate::session::auth::resume_token())
    }

    /// Records a new session, so that it can continue on another node (written to
    /// Redis in the background).
    pub fn save_session(self: &Arc<Self>, token: &str, session_id: u64, user_id: &str) {
        let record = proto::SessionRecord {
            session_id,
            user_id: user_id.to_string(),
        };
        let encoded = record.encode_to_vec();
        self.sessions.lock().insert(token.to_string(), record);
        let (cluster, token, user) = (self.clone(), token.to_string(), user_id.to_string());
        tokio::spawn(async move {
            let (number, ttl) = (cluster.settings.number, cluster.session_ttl());
            let saved = cluster.directory.save_session(number, &token, &encoded, &user, ttl);
            if cluster.call(saved).await.is_err() {
                cluster.rewrite_sessions.store(true, Ordering::Relaxed);
            }
            // Ended meanwhile, its forgetting perhaps written first: forgotten again.
            if !cluster.sessions.lock().contains_key(&token) {
                let _ = cluster.call(cluster.directory.forget_session(number, &token)).await;
            }
        });
    }

    /// Tells every node that a client (`family`) of `user` went live at `since_us`
    /// (with the `replace` duplicate-session policy): they close the user's sessions
    /// of other clients that went live before.
    pub async fn announce_live(&self, user: &str, family: u64, since_us: u64) {
        let _ = self.call(self.bus.announce_live(user, family, since_us)).await;
    }

    /// Forgets a session that ended (in Redis in the background).
    pub fn forget_session(self: &Arc<Self>, token: &str) {
        self.sessions.lock().remove(token);
        let (cluster, token) = (self.clone(), token.to_string());
        tokio::spawn(async move { cluster.forget_in_redis(token).await });
    }

    /// Forgets an ended session's record in Redis, or keeps its token for the next
    /// renewal to try again. Returns whether Redis forgot it.
    async fn forget_in_redis(&self, token: String) -> bool {
        let forgotten = self.directory.forget_session(self.settings.number, &token);
        if self.call(forgotten).await.is_ok() {
            return true;
        }
        let mut unforgotten = self.unforgotten.lock();
        if unforgotten.len() < MAX_UNFORGOTTEN {
            unforgotten.push(token);
        }
        false
    }

    /// Forgets `tokens` in Redis in turn until one fails: that one and the rest wait
    /// in `unforgotten` for the next renewal (they used to be dropped).
    async fn forget_all(&self, tokens: Vec<String>) {
        let mut tokens = tokens.into_iter();
        while let Some(token) = tokens.next() {
            if !self.forget_in_redis(token).await {
                let mut unforgotten = self.unforgotten.lock();
                let room = MAX_UNFORGOTTEN.saturating_sub(unforgotten.len());
                unforgotten.extend(tokens.take(room));
                return;
            }
        }
    }

    /// Keeps this node's sessions resumable elsewhere (every third of a lease, see
    /// [`Cluster::keep_session_records`]); writes their
    /// records again when Redis lost them (restarted empty, say) or a write failed.
    pub(super) async fn keep_sessions(&self) {
        // A few a round (the leases wait behind them), until one fails.
        let retry: Vec<String> = {
            let mut unforgotten = self.unforgotten.lock();
            let n = unforgotten.len().min(FORGETS_PER_RENEWAL);
            unforgotten.drain(..n).collect()
        };
        self.forget_all(retry).await;
        let continued: Vec<u64> = {
            let sessions = self.sessions.lock();
            let numbers = sessions.values().map(|r| r.session_id >> SESSION_ID_BITS);
            let others: HashSet<u64> = numbers.filter(|&n| n != self.settings.number).collect();
            others.into_iter().collect()
        };
        let kept = self
            .directory
            .keep_sessions(self.settings.number, &continued, self.session_ttl());
        let rewrite = self.rewrite_sessions.swap(false, Ordering::Relaxed);
        if self.call(kept).await != Ok(SessionsKept::Retaken) && !rewrite {
            return;
        }
        let records: Vec<(String, Vec<u8>, String)> = (self.sessions.lock().iter())
            .map(|(token, record)| (token.clone(), record.encode_to_vec(), record.user_id.clone()))
            .collect();
        if records.is_empty() {
            return;
        }
        let saved = self
            .directory
            .save_sessions(self.settings.number, &records, self.session_ttl());
        match self.call(saved).await {
            Ok(()) => {
                tracing::warn!(
                    sessions = records.len(),
                    "session records written again (Redis had lost them, or a write failed)"
                );
                // A session that ended while they were written came back with them.
                let ended: Vec<String> = {
                    let sessions = self.sessions.lock();
                    (records.into_iter())
                        .map(|(token, ..)| token)
                        .filter(|token| !sessions.contains_key(token))
                        .collect()
                };
                self.forget_all(ended).await;
            }
            Err(e) => {
                self.rewrite_sessions.store(true, Ordering::Relaxed);
                tracing::warn!("writing the session records again failed ({e}); tried again at the next renewal");
            }
        }
    }

    /// Takes the record of a session of another node (it died, or stopped), to
    /// continue it here: its id and user. `Ok(None)` for a token of this node, an
    /// unknown one, or one already taken. While the session's node lives (a session
    /// is continued on one node at a time) it waits, up to a lease but at most
    /// 4 s (`TAKE_SESSION_WAIT`): a node that died a moment ago is live in the directory
    /// until its own lease lapses, and its clients reconnect at once.
    /// `Err(CloseReason::TryAgainLater)` when the node still lives then (the client
    /// is to resume there, or try again), or Redis does not answer. With `user`, a
    /// session of another user is `Ok(None)`, and left in place: a token presented by
    /// someone else (stolen) does not end its session.
    pub async fn take_session(
        &self,
        token: &str,
        user: Option<&str>,
    ) -> Result<Option<proto::SessionRecord>, CloseReason> {
        let Some(number) = token_node(token).filter(|&number| number != self.settings.number) else {
            return Ok(None);
        };
        let deadline = Instant::now() + (self.settings.lease + self.settings.lease / 4).min(TAKE_SESSION_WAIT);
        loop {
            match self
                .call(self.directory.take_session(number, token, user, self.session_ttl()))
                .await
            {
                Ok(SessionTake::Taken(record)) => {
                    let decoded = proto::SessionRecord::decode(&record[..]).ok();
                    // (A record an earlier version wrote names no user in Redis.)
                    return Ok(decoded.filter(|taken| user.is_none_or(|user| taken.user_id == user)));
                }
                Ok(SessionTake::Unknown | SessionTake::OtherUser) => return Ok(None),
                Ok(SessionTake::Live) if Instant::now() < deadline => {
                    tokio::time::sleep(self.settings.lease / 12).await;
                }
                Ok(SessionTake::Live) | Err(_) => return Err(CloseReason::TryAgainLater),
            }
        }
    }

    /// How long a session record outlives its node's last renewal: a lease (the node
    /// may be dead), then the resume grace.
    fn session_ttl(&self) -> Duration {
        self.settings.lease + self.settings.resume_grace
    }
}
