//! Timers: heartbeats, a silent peer, the handshake, close and blocked deadlines, and deferred acks.

use super::*;

impl Connection {
    /// Moves the handshake deadline (set by [`Connection::new`] from
    /// [`Config::connect_timeout`]): `None` stops the timer while the
    /// transport is still being set up (a TCP connect under its own
    /// timeout, maybe to the next of several addresses); a deadline
    /// restarts it, e.g. once the transport is up. Does nothing once the
    /// broker has spoken.
    pub fn set_handshake_deadline(&mut self, deadline: Option<Instant>) {
        if self.state == State::AwaitStart && self.read_buf.is_empty() {
            self.handshake_deadline = deadline;
        }
    }

    /// When [`Connection::handle_timeout`] next needs to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.is_over() {
            return None;
        }
        let mut t = self.handshake_deadline;
        let mut earliest = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        earliest(self.close_deadline);
        earliest(self.ack_deadline());
        if let State::Draining { deadline, .. } = self.state {
            earliest(Some(deadline));
        }
        earliest(self.blocked_deadline());
        if self.tuned.heartbeat > 0 && (self.state.is_live() || self.state == State::Closing) {
            earliest(Some(self.beat.due().unwrap_or(self.heard.last())));
            earliest(Some(self.heard.last() + self.dead_after()));
        }
        t
    }

    /// When a blocked connection is given up ([`Config::blocked_timeout`]).
    pub(super) fn blocked_deadline(&self) -> Option<Instant> {
        Some(self.blocked? + self.config.blocked_timeout?)
    }

    pub(super) fn dead_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.tuned.heartbeat) * 2)
    }

    /// Fires the timers due at `now`: heartbeats to send, a peer silent for
    /// two heartbeat intervals, a handshake or close that took too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state.is_over() {
            return;
        }
        self.heard.stamp(now);
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.finish(Error::ConnectTimeout);
            return;
        }
        if self.blocked_deadline().is_some_and(|d| now >= d) {
            // The broker is not reading: a connection.close would not be
            // read either. The socket is dropped.
            let limit = self.config.blocked_timeout.unwrap_or_default();
            tr_warn!(?limit, "blocked for too long; dropping the connection");
            self.finish(Error::BlockedTimeout(limit));
            return;
        }
        if matches!(self.acks, AckWait::Until(d) if now >= d) {
            self.emit_pending_acks();
        }
        self.poll_drain(now);
        if self.close_deadline.is_some_and(|d| now >= d) {
            let e = if self.close_tag.is_some() {
                Error::ConnectionClosed
            } else {
                self.dead.clone().unwrap_or(Error::ConnectionClosed)
            };
            self.finish(e);
            return;
        }
        if self.tuned.heartbeat == 0 || !(self.state.is_live() || self.state == State::Closing) {
            return;
        }
        if now >= self.heard.last() + self.dead_after() {
            tr_warn!(silent_for = ?self.dead_after(), "heartbeat timeout");
            self.finish(Error::HeartbeatTimeout(self.dead_after()));
            return;
        }
        let interval = Duration::from_millis(u64::from(self.tuned.heartbeat) * 500);
        match self.beat {
            Beat::Quiet(t) | Beat::Busy(t) if now < t => {}
            beat => {
                // `Off`: heartbeats were tuned but the handshake is not
                // done; its own frames are the traffic.
                if let Beat::Quiet(_) = beat {
                    frame::encode_heartbeat(&mut self.write_buf);
                    self.stats.frames_out += 1;
                }
                self.beat = Beat::Quiet(now + interval);
            }
        }
    }
}
