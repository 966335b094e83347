//! The socket side: readiness (`on_read`, `on_write`, `on_event`, `on_timer`), registration with a caller's `mio` registry, flushing, and moving the connection's events to promises.

use super::*;

impl Client {
    /// The socket's file descriptor, to watch in a select/poll loop. Only
    /// watch it: reads and writes go through [`Client::on_read`] and
    /// [`Client::on_write`]. (A connected plain TCP socket is in blocking
    /// mode, so that [`Client::wait`] can sleep in `recv`; the client's own
    /// reads and writes pass `MSG_DONTWAIT` and never block.)
    pub fn fileno(&self) -> RawFd {
        self.as_raw_fd()
    }

    /// Whether frames wait to be written: watch the socket for writability.
    pub fn needs_write(&self) -> bool {
        match &self.sock {
            Some(s) => {
                self.writing == Writing::Connecting || self.conn.wants_write() || s.wants_write()
            }
            None => false,
        }
    }

    /// When the heartbeat, handshake or TCP connect timer next needs
    /// [`Client::on_timer`].
    ///
    /// It is `now` while [`Client::wants_read`]: bytes are left in the
    /// socket that no readiness event will report again.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.reading == Reading::MoreToRead {
            return Some(Instant::now());
        }
        let mut t = self.conn.poll_timeout();
        for d in [
            self.addresses
                .connect_deadline()
                .filter(|_| self.writing == Writing::Connecting),
            self.recovery_deadline(),
        ]
        .into_iter()
        .flatten()
        {
            t = Some(t.map_or(d, |t| t.min(d)));
        }
        t
    }

    /// Whether bytes may be left in the socket that no new readiness event
    /// will announce: `on_read` stopped at its budget (64 reads, about
    /// 4 MiB, so one busy connection cannot starve the rest of your loop),
    /// or reading resumed after [`Options::max_buffered_bytes`] paused it.
    /// Call [`Client::on_read`] (or `on_timer`, which does it) again soon;
    /// [`Client::poll_timeout`] says so too.
    pub fn wants_read(&self) -> bool {
        self.reading == Reading::MoreToRead
    }

    /// Call when the socket is readable: reads until it would block or its
    /// budget of 64 reads is spent (then [`Client::wants_read`] is true),
    /// handles the frames, and queues the results (callbacks run in
    /// [`Client::run_any_callbacks`]).
    pub fn on_read(&mut self) {
        self.read_ready(false);
        self.after_io();
    }

    /// Handles one readiness event of your `mio::Poll` for this client's
    /// token: reads when readable (or closed, or in error), writes when
    /// writable. The whole reactor contract is then: `on_event` for each
    /// event, `on_timer` once [`Client::poll_timeout`] passes,
    /// [`Client::run_any_callbacks`], and
    /// [`Client::update_registration`] after each turn in which
    /// [`Client::wants_registration_update`].
    ///
    /// Prefer it to [`Client::on_read`]: knowing the event, it stops at a
    /// plain TCP read that left the socket empty, where `on_read` reads
    /// again to hear `WouldBlock` (one `recv` fewer per wakeup). It reads
    /// to the end when the event also reports the peer's close or an
    /// error, which no later event would report again.
    ///
    /// ```no_run
    /// # use mio::{Events, Poll, Token};
    /// # use std::time::Instant;
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// let mut poll = Poll::new()?;
    /// let mut events = Events::with_capacity(64);
    /// client.update_registration(poll.registry(), Token(0))?;
    /// loop {
    ///     let timeout = client.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
    ///     poll.poll(&mut events, timeout)?;
    ///     for event in events.iter() {
    ///         client.on_event(event);
    ///     }
    ///     if client.poll_timeout().is_some_and(|t| Instant::now() >= t) {
    ///         client.on_timer();
    ///     }
    ///     client.run_any_callbacks();
    ///     if client.wants_registration_update() {
    ///         client.update_registration(poll.registry(), Token(0))?;
    ///     }
    /// #   break;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_event(&mut self, event: &mio::event::Event) {
        if event.is_writable() || event.is_error() {
            self.write_ready();
        }
        let ended = event.is_read_closed() || event.is_error();
        if event.is_readable() || ended {
            // A short read ends the reading only on a fresh readiness event
            // that reported no end of stream and no error (an end of stream
            // that came with the data gets no event of its own), and not
            // after a budget cut (bytes left then have no event either).
            // That saves the `recv` that would only say `WouldBlock`.
            self.read_ready(!ended && self.reading != Reading::MoreToRead);
        }
        self.after_io();
    }

    /// `on_read` without handing results to their promises. With
    /// `short_is_drained`, a plain read that does not fill the buffer ends
    /// the reading: the caller's poll reported neither end of stream nor an
    /// error (either would need a read of its own, and no new readiness
    /// event would come for it).
    pub(super) fn read_ready(&mut self, short_is_drained: bool) {
        in_span!(self);
        if !self.check_connected() {
            return;
        }
        // Set only when the budget runs out with the socket maybe not
        // drained: the next turn then reads again without sleeping. (Left
        // set after a read that ended in `WouldBlock`, it cost every wakeup
        // a spare `epoll_wait` and `recv`.)
        if self.reading == Reading::MoreToRead {
            self.reading = Reading::UpToDate;
        }
        for round in 1..=READ_BUDGET {
            if self.promises.buffered_bytes() >= self.options.max_buffered_bytes {
                // Held deliveries are at their bound: leave the rest in the
                // socket (TCP holds the broker back) until they are taken.
                self.reading = Reading::Paused;
                break;
            }
            let Some(sock) = self.sock.as_mut() else {
                break;
            };
            match sock.read_into(&mut self.conn) {
                Ok((0, _)) => {
                    self.conn.handle_eof();
                    break;
                }
                Ok((_, drained)) => {
                    self.conn.handle_input(Instant::now());
                    if drained && short_is_drained {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn.handle_io_error(e);
                    break;
                }
            }
            if self.conn.is_closed() {
                break;
            }
            if round == READ_BUDGET {
                self.reading = Reading::MoreToRead;
            }
        }
    }

    /// Reading stopped at [`Options::max_buffered_bytes`] resumes once half
    /// of it has been taken: the next turn reads without waiting for a
    /// readiness event (none comes for bytes already in the socket).
    pub(super) fn resume_reading(&mut self) {
        if self.reading == Reading::Paused
            && self.promises.buffered_bytes() <= self.options.max_buffered_bytes / 2
        {
            self.reading = Reading::MoreToRead;
        }
    }

    /// Call when the socket is writable: writes queued frames until the
    /// socket would block.
    pub fn on_write(&mut self) {
        self.write_ready();
        self.after_io();
    }

    /// `on_write` without handing results to their promises.
    pub(super) fn write_ready(&mut self) {
        self.writing.unblock();
        if self.check_connected() {
            self.flush_queued();
        }
    }

    /// Call when [`Client::poll_timeout`] has passed: sends heartbeats and
    /// detects a dead peer. A TCP connect that timed out moves on to the
    /// next address (a new socket: see [`Client::update_registration`]).
    pub fn on_timer(&mut self) {
        in_span!(self);
        if self.reading == Reading::MoreToRead {
            self.read_ready(false);
        }
        self.handle_connect_timeout(Instant::now());
        self.conn.handle_timeout(Instant::now());
        self.flush_queued();
        self.after_io();
        // A reconnection due now (its new socket: see update_registration).
        self.poll_recovery(Instant::now());
    }

    /// Registers the socket with a caller's mio `registry` under `token`
    /// (or updates its registration), with WRITABLE interest only while
    /// [`Client::needs_write`]. Call it once to start and again when
    /// [`Client::wants_registration_update`] says so after a turn of your
    /// loop (or after every turn: each call is one `epoll_ctl`); it
    /// registers a socket the client replaced (the next address after a
    /// failed connect, a reconnection) on its own.
    ///
    /// # Errors
    /// What mio's `register`/`reregister` return.
    pub fn update_registration(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        let Some(sock) = self.sock.as_mut().map(Transport::tcp_mut) else {
            return Ok(());
        };
        let done = match registry.reregister(sock, token, interest) {
            // Not registered yet (the first call), or the socket was
            // replaced: register it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                registry.register(sock, token, interest)
            }
            other => other,
        };
        self.registered = done.as_ref().ok().map(|_| interest);
        done
    }

    /// Whether [`Client::update_registration`] has work to do: the client
    /// has a socket that it did not register (the first call, or a socket
    /// the client replaced: the next address, a reconnection), or WRITABLE
    /// interest must be turned on or off. A loop over many clients calls
    /// `update_registration` only then, sparing an `epoll_ctl` per client
    /// and turn; it is a field comparison, no system call.
    ///
    /// It knows only the registrations `update_registration` made: after
    /// you register the client yourself (as a `mio::event::Source`) it is
    /// true until `update_registration` runs. A client moved to another
    /// `Poll` needs `update_registration` with the new registry whatever
    /// this says.
    ///
    /// ```no_run
    /// # use mio::{Poll, Token};
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// # let poll = Poll::new()?;
    /// // After the client's events of this turn were handled:
    /// client.run_any_callbacks();
    /// if client.wants_registration_update() {
    ///     client.update_registration(poll.registry(), Token(0))?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wants_registration_update(&self) -> bool {
        self.sock.is_some() && self.registered != Some(self.interest())
    }

    /// The interest the socket needs now: READABLE always, WRITABLE while
    /// [`Client::needs_write`].
    fn interest(&self) -> Interest {
        if self.needs_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Whether the TCP connect finished; starts the next address or fails
    /// the connection when it did not.
    pub(super) fn check_connected(&mut self) -> bool {
        if self.writing != Writing::Connecting {
            return self.sock.is_some();
        }
        let Some(sock) = self.sock.as_ref().map(Transport::tcp) else {
            return false;
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return self.connect_failed(e);
        }
        match sock.peer_addr() {
            Ok(_) => {
                self.writing = Writing::Ready;
                if let Some(sock) = self.sock.as_mut() {
                    sock.handle_connected();
                }
                self.tcp_connected();
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => false,
            Err(e) => self.connect_failed(e),
        }
    }

    pub(super) fn connect_failed(&mut self, e: io::Error) -> bool {
        self.tcp_failed(e);
        false
    }

    pub(super) fn drop_socket(&mut self) {
        if let Some(sock) = self.sock.take() {
            let sock = sock.into_tcp();
            if let Some(poll) = &self.poll {
                let fd = sock.as_raw_fd();
                let _ = poll.registry().deregister(&mut mio::unix::SourceFd(&fd));
            }
            let _ = sock.shutdown(std::net::Shutdown::Both);
            self.closed_sock = Some(sock);
        }
        self.registered = None;
        self.writing = Writing::Ready;
    }

    pub(super) fn flush_queued(&mut self) {
        in_span!(self);
        if self.writing != Writing::Ready {
            return;
        }
        // Acks that waited their time go out before control returns to the
        // user, who may not call back for a while.
        if self
            .conn
            .ack_deadline()
            .is_some_and(|d| Instant::now() >= d)
        {
            self.conn.release_acks();
        }
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        if !self.conn.wants_write() && !sock.wants_write() {
            return;
        }
        let result = sock.write_from(&mut self.conn);
        // `write_from` returns with bytes still queued only when the socket
        // would block.
        self.writing = if result.is_ok() && (self.conn.wants_write() || sock.wants_write()) {
            Writing::Blocked
        } else {
            Writing::Ready
        };
        if let Err(e) = result {
            // A broker that closes the connection (connection.close, then
            // the socket) makes our next write fail with a reset while its
            // close frame is still readable: read what is there first, so
            // the user sees the broker's reason rather than the reset.
            self.drain_reads();
            if !self.conn.is_closed() {
                self.conn.handle_io_error(e);
            }
        }
    }

    /// Reads and handles what the socket already holds, until it would
    /// block, ends or fails (errors here are left to the caller's).
    pub(super) fn drain_reads(&mut self) {
        for _ in 0..READ_BUDGET {
            let Some(sock) = self.sock.as_mut() else {
                return;
            };
            match sock.read_into(&mut self.conn) {
                Ok((0, _)) | Err(_) => break,
                Ok(_) => self.conn.handle_input(Instant::now()),
            }
            if self.conn.is_closed() {
                break;
            }
        }
        self.conn.handle_input(Instant::now());
    }

    /// What a completion does on its way to its promise: the connect
    /// promise's completion marks the connection up, and recovery records
    /// what it will restore (or keeps the result: `None`).
    fn sees_completion(
        &mut self,
        tag: Tag,
        result: Result<crate::protocol::Outcome, Error>,
    ) -> Option<Result<crate::protocol::Outcome, Error>> {
        if tag == self.connect_promise.id.tag() && result.is_ok() {
            self.recovery_connected();
        }
        self.recovery_sees(tag, result)
    }

    /// The completion of `tag` taken straight from the head of the
    /// connection's events (see [`Connection::poll_completion`]), seen as
    /// [`Client::after_io`] sees it.
    pub(super) fn take_completion(
        &mut self,
        tag: Tag,
    ) -> Option<Result<crate::protocol::Outcome, Error>> {
        let result = self.conn.poll_completion(tag)?;
        self.sees_completion(tag, result)
    }

    /// Moves the connection's events into promise slots, and drops the
    /// socket once the connection has ended.
    pub(super) fn after_io(&mut self) -> usize {
        let mut n = 0;
        while let Some(tag) = self.conn.poll_written() {
            n += 1;
            self.promises.publish_ok(self.promises.id_of(tag));
        }
        loop {
            // A delivery goes to its promise without the `Event` around it
            // (one move of the message fewer).
            if let Some(tag) = self.conn.next_delivery_consumer() {
                if let Some(d) = self.conn.poll_delivery(tag) {
                    n += 1;
                    let id = self.promises.id_of(tag);
                    self.promises.push(id, Ok(Raw::Delivery(d)), false);
                    continue;
                }
            }
            let Some(ev) = self.conn.poll_event() else {
                break;
            };
            n += 1;
            match ev {
                Event::Complete { tag, result } => {
                    let Some(result) = self.sees_completion(tag, result) else {
                        continue;
                    };
                    let id = self.promises.id_of(tag);
                    self.promises.push(id, result.map(Raw::Outcome), true);
                }
                Event::Delivery { tag, delivery } => {
                    let id = self.promises.id_of(tag);
                    self.promises.push(id, Ok(Raw::Delivery(delivery)), false);
                }
                Event::ConsumerEnded { tag } => {
                    self.recovery_consumer_ended(tag);
                    self.promises.end(self.promises.id_of(tag))
                }
                Event::Returned(r) => self.conn_events.push_back(ConnectionEvent::Returned(r)),
                Event::PublishChannelClosed(e) => self
                    .conn_events
                    .push_back(ConnectionEvent::PublishChannelClosed(e)),
                Event::Blocked(reason) => {
                    self.conn_events.push_back(ConnectionEvent::Blocked(reason))
                }
                Event::Unblocked => self.conn_events.push_back(ConnectionEvent::Unblocked),
                Event::HandshakeFailed(e) => {
                    // The work queued before the handshake is held: the
                    // first connect takes it to the next address when
                    // another broker might do; else it fails (`Closed`
                    // follows, and a reconnection's recovery takes that).
                    if !self.recovering() && self.addresses.has_pending() && addresses::moves_on(&e)
                    {
                        tr_warn!(error = %e, "handshake failed; trying the next address");
                        self.addresses.handshake_failed(&e);
                        // Best effort: a close for a protocol violation.
                        if let Some(sock) = self.sock.as_mut() {
                            let _ = sock.write_from(&mut self.conn);
                        }
                        self.drop_socket();
                        let now = Instant::now();
                        self.conn.restart_handshake(now);
                        self.connect_elsewhere();
                    } else {
                        self.conn.release_held();
                    }
                }
                Event::Closed(e) => {
                    // Best effort: let a close or close-ok reach the broker.
                    if let Some(sock) = self.sock.as_mut() {
                        let _ = sock.write_from(&mut self.conn);
                    }
                    self.drop_socket();
                    if !self.recovery_takes_over(&e) {
                        self.recovery_fail_consumers(&e);
                        self.conn_events.push_back(ConnectionEvent::Closed(e));
                    }
                }
            }
        }
        n
    }
}
