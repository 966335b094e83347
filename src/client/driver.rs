//! Driving the connection for the caller: `wait` and its kin, `run_loop`, callbacks, and `flush`.

use super::*;

impl Client {
    /// One turn of the built-in loop: write, sleep until the socket is ready
    /// or `timeout` (and the heartbeat timer) passes, read, fire timers.
    ///
    /// With `drain`, results are then handed to their promises; without, a
    /// caller waiting on a consumer takes its deliveries straight from the
    /// connection's events first ([`Client::wait`]'s fast lane).
    pub(super) fn turn(&mut self, timeout: Option<Duration>, drain: bool) -> Result<(), Error> {
        in_span!(self);
        self.flush_queued();
        // The flush may have resolved something (a publish without
        // confirms): let the caller look before sleeping. (Without `drain`
        // the results stay in the connection's events; sleeping on them
        // would wait for the timeout, since no reply will wake us.)
        let resolved = if drain {
            self.after_io() > 0
        } else {
            self.conn.has_events()
        };
        // A callback waiting to run (e.g. a result that arrived while its
        // own callback was running a nested `wait`) must not sleep either.
        if resolved || self.promises.ready_len() > 0 {
            return Ok(());
        }
        if self.sock.is_none() {
            // Lost, with recovery on: sleep until the next attempt is due
            // (or the caller's timeout), then start it.
            if let Some(at) = self.recovery_deadline() {
                let now = Instant::now();
                let mut d = at.saturating_duration_since(now);
                if let Some(t) = timeout {
                    d = d.min(t);
                }
                std::thread::sleep(d);
                self.poll_recovery(Instant::now());
                if drain {
                    self.after_io();
                }
            }
            return Ok(());
        }
        if self.poll.is_none() {
            let poll = Poll::new().map_err(Error::io)?;
            if let Some(sock) = &self.sock {
                let fd = sock.tcp().as_raw_fd();
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&fd),
                        OWN_TOKEN,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(Error::io)?;
            }
            self.poll = Some(poll);
            self.events = Some(Events::with_capacity(8));
            // Level state is unknown after registering: try both.
            self.write_ready();
            self.read_ready(false);
            if drain {
                self.after_io();
            }
            return Ok(());
        }
        let now = Instant::now();
        let mut wait = timeout;
        if let Some(t) = self.poll_timeout() {
            let d = t.saturating_duration_since(now);
            wait = Some(wait.map_or(d, |w| w.min(d)));
        }
        if self.reading == Reading::MoreToRead {
            wait = Some(Duration::ZERO);
        }
        if self.sleep_in_recv(wait) {
            self.after_sleep(drain);
            return Ok(());
        }
        let (readable, writable, ended) = {
            let (Some(poll), Some(events)) = (self.poll.as_mut(), self.events.as_mut()) else {
                return Ok(());
            };
            match poll.poll(events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(e)),
            }
            let mut r = false;
            let mut w = false;
            let mut end = false;
            for ev in events.iter() {
                r |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                w |= ev.is_writable() || ev.is_error();
                end |= ev.is_read_closed() || ev.is_error();
            }
            (r, w, end)
        };
        if writable {
            self.write_ready();
        }
        if readable || self.reading == Reading::MoreToRead {
            // A short read ends the reading only on a fresh readiness event
            // that reported no end of stream and no error.
            self.read_ready(readable && !ended && self.reading != Reading::MoreToRead);
        }
        self.after_sleep(drain);
        Ok(())
    }

    /// The end of a turn, after its sleep and I/O: timers, a restore step
    /// due, the writes that caused, and (with `drain`) results to promises.
    fn after_sleep(&mut self, drain: bool) {
        let now = Instant::now();
        self.handle_connect_timeout(now);
        if self.conn.poll_timeout().is_some_and(|t| now >= t) {
            self.conn.handle_timeout(now);
        }
        // A restore step waiting for its time (a queue still locked).
        self.poll_recovery(now);
        self.flush_queued();
        if drain {
            self.after_io();
        }
    }

    /// Sleeps for the turn in the socket's own `recv` instead of
    /// `epoll_wait`, reading what arrives (one system call fewer per round
    /// trip: see `plain`). Only a connected plain socket with nothing to
    /// write (the broker may wait for it), nothing left to read and room
    /// for more deliveries does so; else returns false and the turn polls.
    fn sleep_in_recv(&mut self, wait: Option<Duration>) -> bool {
        if self.reading != Reading::UpToDate
            || self.writing != Writing::Ready
            || self.needs_write()
            || self.promises.buffered_bytes() >= self.options.max_buffered_bytes
        {
            return false;
        }
        let Some(sock) = self.sock.as_mut().and_then(|s| s.recv_waiter(wait)) else {
            return false;
        };
        match sock.recv_waiting(&mut self.conn, wait) {
            Ok(Waited::Read { n: 0, .. }) => self.conn.handle_eof(),
            Ok(Waited::Read { full, .. }) => {
                self.conn.handle_input(Instant::now());
                if full {
                    // More may wait: the next turn reads without sleeping.
                    self.reading = Reading::MoreToRead;
                }
            }
            Ok(Waited::Woken) => {}
            Err(e) => self.conn.handle_io_error(e),
        }
        true
    }

    /// Blocks until `promise` resolves and returns its result. Callbacks of
    /// other promises run meanwhile.
    ///
    /// For a consumer's promise, each call returns the next delivery.
    ///
    /// When frames leave: everything queued before the call (acks
    /// included) is in the socket's send buffer when it returns — with the
    /// default [`AckTiming::Prompt`]; the kernel may still hold it, and a
    /// send buffer that stays full (a broker not reading) is the one case
    /// where bytes remain queued: [`Client::flush`] waits for them. With
    /// [`AckTiming::Deferred`], a consumer's acks may wait across calls (see
    /// there), and while more deliveries are already buffered the write is
    /// left to the call that returns the last of them.
    ///
    /// # Errors
    /// The operation's error; [`Error::UnknownPromise`] for a promise whose
    /// results were all taken; [`Error::ForeignPromise`] for a promise of
    /// another client.
    pub fn wait<T: Resolve>(&mut self, promise: Promise<T>) -> Result<T::Output, Error> {
        self.wait_deadline(promise, None)
    }

    /// As [`Client::wait`], giving up with [`Error::Timeout`] after
    /// `timeout` (the promise stays valid).
    ///
    /// # Errors
    /// As [`Client::wait`], or [`Error::Timeout`].
    pub fn wait_timeout<T: Resolve>(
        &mut self,
        promise: Promise<T>,
        timeout: Duration,
    ) -> Result<T::Output, Error> {
        self.wait_deadline(promise, Some(Instant::now() + timeout))
    }

    pub(super) fn wait_deadline<T: Resolve>(
        &mut self,
        promise: Promise<T>,
        deadline: Option<Instant>,
    ) -> Result<T::Output, Error> {
        loop {
            // The fast lane of a consumer: its next delivery is at the head
            // of the connection's events and nothing of it is queued here.
            let tag = promise.id.tag();
            if self.promises.is_idle(promise.id) {
                if self.conn.delivery_is_next(tag) {
                    // As below: acks go out (with deferred acks: unless the
                    // caller is about to come back for the next delivery
                    // already here). Decided before the delivery is taken,
                    // so that it moves once, from the queue to the caller.
                    if !self.defer_acks() || !self.conn.delivery_is_next_but_one(tag) {
                        self.flush_queued();
                    }
                    if let Some(d) = self.conn.poll_delivery(tag) {
                        return T::from_delivery(d);
                    }
                } else if self.conn.completion_is_next(tag) {
                    // The same for an operation's one result (a get, an
                    // RPC): it goes from the events to the caller, not
                    // through the promise's queue. Its promise is spent.
                    if let Some(r) = self.take_completion(tag) {
                        self.promises.finish_idle(promise.id);
                        self.flush_queued();
                        self.resume_reading();
                        return T::resolve(RawResult(r.map(Raw::Outcome)));
                    }
                }
            }
            self.after_io();
            match self.promises.take(promise.id) {
                Taken::Ready(r) => {
                    // Frames queued so far (acks of earlier deliveries) go out
                    // now — with deferred acks, unless more results are
                    // already here: the caller is about to come back and the
                    // write is batched with the next ones.
                    if !self.defer_acks() || self.promises.has_result(promise.id) != Some(true) {
                        self.flush_queued();
                    }
                    self.resume_reading();
                    return T::resolve(RawResult(r));
                }
                Taken::Unknown => return Err(Error::UnknownPromise),
                Taken::Foreign => return Err(Error::ForeignPromise),
                Taken::Pending => {}
            }
            self.run_any_callbacks();
            if self.promises.has_result(promise.id) == Some(true) {
                continue;
            }
            if self.sock.is_none() && self.conn.is_closed() && !self.recovering() {
                // Everything pending was failed; nothing more can arrive.
                self.after_io();
                if let Taken::Ready(r) = self.promises.take(promise.id) {
                    return T::resolve(RawResult(r));
                }
                return Err(self
                    .conn
                    .error()
                    .cloned()
                    .unwrap_or(Error::ConnectionClosed));
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.flush_queued();
                        return Err(Error::Timeout);
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.turn(timeout, false)?;
        }
    }

    /// Blocks until one of `ids` has a result; returns that id (its result
    /// is then taken with [`Client::wait`]).
    ///
    /// # Errors
    /// [`Error::UnknownPromise`] when none of the ids is known;
    /// [`Error::ForeignPromise`] when one belongs to another client.
    pub fn wait_for_any(&mut self, ids: &[PromiseId]) -> Result<PromiseId, Error> {
        self.wait_for_any_deadline(ids, None)
    }

    /// As [`Client::wait_for_any`], giving up with [`Error::Timeout`] after
    /// `timeout`.
    ///
    /// # Errors
    /// As [`Client::wait_for_any`], or [`Error::Timeout`].
    pub fn wait_for_any_timeout(
        &mut self,
        ids: &[PromiseId],
        timeout: Duration,
    ) -> Result<PromiseId, Error> {
        self.wait_for_any_deadline(ids, Some(Instant::now() + timeout))
    }

    pub(super) fn wait_for_any_deadline(
        &mut self,
        ids: &[PromiseId],
        deadline: Option<Instant>,
    ) -> Result<PromiseId, Error> {
        self.check_own(ids)?;
        loop {
            self.after_io();
            let mut known = false;
            for &id in ids {
                match self.promises.has_result(id) {
                    Some(true) => {
                        self.flush_queued();
                        return Ok(id);
                    }
                    Some(false) => known = true,
                    None => {}
                }
            }
            if !known {
                return Err(Error::UnknownPromise);
            }
            self.run_any_callbacks();
            if self.sock.is_none() && self.conn.is_closed() && !self.recovering() {
                self.after_io();
                continue;
            }
            let timeout = self.time_left(deadline)?;
            self.turn(timeout, true)?;
        }
    }

    /// Blocks until every one of `ids` has a result (or is unknown).
    ///
    /// # Errors
    /// An I/O error of the poller; [`Error::ForeignPromise`] when an id
    /// belongs to another client.
    pub fn wait_for_all(&mut self, ids: &[PromiseId]) -> Result<(), Error> {
        self.wait_for_all_deadline(ids, None)
    }

    /// As [`Client::wait_for_all`], giving up with [`Error::Timeout`] after
    /// `timeout` (the results that arrived stay with their promises).
    ///
    /// # Errors
    /// As [`Client::wait_for_all`], or [`Error::Timeout`].
    pub fn wait_for_all_timeout(
        &mut self,
        ids: &[PromiseId],
        timeout: Duration,
    ) -> Result<(), Error> {
        self.wait_for_all_deadline(ids, Some(Instant::now() + timeout))
    }

    pub(super) fn wait_for_all_deadline(
        &mut self,
        ids: &[PromiseId],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        self.check_own(ids)?;
        let mut from = 0;
        loop {
            self.after_io();
            // Results stay until taken, so ids before `from` stay resolved.
            while from < ids.len() && self.promises.has_result(ids[from]) != Some(false) {
                from += 1;
            }
            if from == ids.len() {
                self.flush_queued();
                return Ok(());
            }
            self.run_any_callbacks();
            if self.sock.is_none() && self.conn.is_closed() && !self.recovering() {
                self.after_io();
                continue;
            }
            let timeout = self.time_left(deadline)?;
            self.turn(timeout, true)?;
        }
    }

    /// What is left until `deadline` (`None`: no deadline); at the deadline,
    /// flushes and fails with [`Error::Timeout`].
    pub(super) fn time_left(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Duration>, Error> {
        let Some(d) = deadline else {
            return Ok(None);
        };
        let now = Instant::now();
        if now >= d {
            self.flush_queued();
            return Err(Error::Timeout);
        }
        Ok(Some(d - now))
    }

    /// Fails with [`Error::ForeignPromise`] when an id was made by another
    /// client.
    pub(super) fn check_own(&self, ids: &[PromiseId]) -> Result<(), Error> {
        if ids.iter().all(|&id| self.promises.owns(id)) {
            Ok(())
        } else {
            Err(Error::ForeignPromise)
        }
    }

    /// Whether a consumer's acks may wait across calls.
    pub(super) fn defer_acks(&self) -> bool {
        self.options.ack_timing == AckTiming::Deferred
    }

    /// Writes every queued frame — acks (deferred ones too) and publishes —
    /// to the socket, blocking until they are all in the kernel's send
    /// buffer or `timeout` passes. Reads meanwhile (so a broker that waits
    /// for us to read never deadlocks us) but runs no callbacks.
    ///
    /// ```no_run
    /// # use puka::Client;
    /// # use std::time::Duration;
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// # let d: puka::Delivery = unimplemented!();
    /// client.basic_ack(&d)?;
    /// client.flush(Duration::from_secs(1))?; // the ack is on its way
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Timeout`] when bytes are still queued at the deadline; the
    /// connection's error when it has ended with bytes unsent.
    pub fn flush(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        self.conn.release_acks();
        loop {
            self.writing.unblock();
            self.flush_queued();
            if !self.needs_write() {
                return Ok(());
            }
            if (self.sock.is_none() || self.conn.is_closed()) && !self.recovering() {
                return Err(self
                    .conn
                    .error()
                    .cloned()
                    .unwrap_or(Error::ConnectionClosed));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            self.turn(Some(deadline - now), true)?;
        }
    }

    /// Runs the callbacks whose promises have results; returns how many ran.
    pub fn run_any_callbacks(&mut self) -> usize {
        self.after_io();
        let mut ran = 0;
        let budget = self.promises.ready_len();
        for _ in 0..budget {
            let Some(next) = self.promises.pop_ready() else {
                break;
            };
            let Some((id, mut cb, result)) = next else {
                continue;
            };
            cb(self, RawResult(result));
            ran += 1;
            self.promises.restore_callback(id, cb);
        }
        if self.reading == Reading::Paused {
            self.resume_reading();
            if self.reading == Reading::MoreToRead {
                // In a user's reactor no readiness event comes for bytes
                // left in the socket: read them now.
                self.read_ready(false);
                self.after_io();
            }
        }
        while let Some(ev) = self.conn_events.pop_front() {
            let Some(mut cb) = self.conn_callback.take() else {
                self.conn_events.push_front(ev);
                break;
            };
            cb(self, ev);
            ran += 1;
            if self.conn_callback.is_none() {
                self.conn_callback = Some(cb);
            }
        }
        self.flush_queued();
        ran
    }

    /// Runs the loop: I/O, timers and callbacks, until [`Client::loop_break`]
    /// is called from a callback, `timeout` passes, or the connection ends
    /// (the loop of Python puka; `loop` is a Rust keyword).
    ///
    /// # Errors
    /// An I/O error of the poller.
    pub fn run_loop(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.loop_break = false;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.run_any_callbacks();
            if self.loop_break {
                self.loop_break = false;
                self.flush_queued();
                return Ok(());
            }
            if self.sock.is_none() && self.conn.is_closed() && !self.recovering() {
                self.run_any_callbacks();
                return Ok(());
            }
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.flush_queued();
                        return Ok(());
                    }
                    Some(d - now)
                }
                None => None,
            };
            self.turn(wait, true)?;
        }
    }

    /// Makes [`Client::run_loop`] return after the current callback.
    pub fn loop_break(&mut self) {
        self.loop_break = true;
    }

    /// Sets the callback for `promise`. It runs (from `run_loop`, `wait` or
    /// `run_any_callbacks`) once per result: once for most operations, once
    /// per delivery for a consumer.
    pub fn set_callback<T, F>(&mut self, promise: Promise<T>, mut f: F)
    where
        T: Resolve,
        F: FnMut(&mut Client, Result<T::Output, Error>) + 'static,
    {
        self.promises
            .set_callback(promise.id, Box::new(move |c, raw| f(c, T::resolve(raw))));
    }

    /// Sets the callback for connection events (blocked, unblocked, returned
    /// messages, close). Without one, they queue for
    /// [`Client::next_connection_event`].
    pub fn set_connection_callback<F>(&mut self, f: F)
    where
        F: FnMut(&mut Client, ConnectionEvent) + 'static,
    {
        self.conn_callback = Some(Box::new(f));
    }

    /// The next connection event not handled by a callback.
    pub fn next_connection_event(&mut self) -> Option<ConnectionEvent> {
        self.after_io();
        self.conn_events.pop_front()
    }
}
