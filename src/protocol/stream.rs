//! Bytes in and out: reading into the buffer, writing queued frames, and the event queue the caller polls.

use super::*;
use std::cell::RefCell;

thread_local! {
    /// What [`Connection::read_from`] reads into before the bytes are
    /// appended to the connection's read buffer: one per thread, made at
    /// its first read.
    static SCRATCH: RefCell<Option<Box<[u8]>>> = const { RefCell::new(None) };
}

impl Connection {
    /// Reads once from `r` into the read buffer. Returns what `read` returned
    /// (0 means the peer closed; call [`Connection::handle_eof`]).
    ///
    /// # Errors
    /// Whatever `r.read` returns, including `WouldBlock`.
    pub fn read_from(&mut self, r: &mut dyn Read) -> io::Result<usize> {
        // Read into a scratch buffer zeroed once (no `unsafe`, so no reads
        // into uninitialised capacity), then append only what arrived. The
        // scratch is the thread's, not the connection's: a thousand idle
        // connections in one thread do not hold 64 KiB each.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let scratch = scratch.get_or_insert_with(|| vec![0; READ_CHUNK].into_boxed_slice());
                self.append_read(r, scratch)
            }
            // A `Read` that itself reads another connection (only a
            // caller's own reader could): a scratch of its own.
            Err(_) => self.append_read(r, &mut vec![0; READ_CHUNK]),
        })
    }

    /// Reads once from `r` through `scratch` and appends what arrived.
    fn append_read(&mut self, r: &mut dyn Read, scratch: &mut [u8]) -> io::Result<usize> {
        let n = r.read(scratch)?;
        if n > 0 {
            if self.read_buf.capacity() - self.read_buf.len() < n {
                // Grow by a frame and a read at once, so a frame split
                // across reads is moved rarely; the frame counted as no
                // larger than what is buffered plus a read (memory follows
                // the bytes that arrive, not frame_max).
                let frame = (self.tuned.frame_max as usize).min(self.read_buf.len() + READ_CHUNK);
                self.read_buf.reserve(n.max(frame + READ_CHUNK));
            }
            self.read_buf.extend_from_slice(&scratch[..n]);
            self.heard.note_input();
            self.stats.bytes_in += n as u64;
        }
        Ok(n)
    }

    /// How many bytes one [`Connection::read_from`] asks for: a read that
    /// returns fewer took everything the socket had.
    pub fn read_capacity(&self) -> usize {
        READ_CHUNK
    }

    /// Appends received bytes (for callers that read elsewhere, and tests).
    pub fn handle_bytes(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.read_buf.extend_from_slice(data);
            self.heard.note_input();
            self.stats.bytes_in += data.len() as u64;
        }
    }

    /// Decodes and handles every complete frame in the read buffer.
    pub fn handle_input(&mut self, now: Instant) {
        self.heard.stamp(now);
        if self.state == State::AwaitStart && !self.not_amqp_check() {
            return;
        }
        // The read buffer is split once per batch of whole frames (not once
        // per frame); payloads are parsed in place.
        'batches: while !self.state.is_over() {
            let frame_max = self.tuned.frame_max;
            let result = match frame::split_frames(&mut self.read_buf, frame_max) {
                Ok(whole) if whole.is_empty() => break,
                Ok(whole) => {
                    let mut result = Ok(());
                    let mut rest = frame::frames(&whole);
                    while let Some(f) = rest.next() {
                        if self.state.is_over() {
                            break 'batches;
                        }
                        self.stats.frames_in += 1;
                        if f.frame_type == frame::FRAME_METHOD {
                            let taken = match f.reader().peek_u32() {
                                Some(Self::BASIC_DELIVER_ID) => self.whole_delivery(&f, &mut rest),
                                Some(Self::BASIC_GET_OK_ID) => self.whole_get_ok(&f, &mut rest),
                                _ => false,
                            };
                            if taken {
                                continue;
                            }
                        }
                        result = self.handle_frame(f);
                        if result.is_err() {
                            break;
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.read_buf.clear();
                if self.state == State::Closing {
                    // Garbage after our close: give up waiting for close-ok.
                    self.finish(Error::Protocol(e));
                } else {
                    let code = e.reply_code();
                    self.violation(code, e.to_string(), Error::Protocol(e));
                }
                break;
            }
        }
        self.poll_drain(now);
    }

    /// Whether frames are waiting for the socket.
    pub fn wants_write(&self) -> bool {
        !self.write_buf.is_empty() || (self.acks == AckWait::Due && !self.ack_channels.is_empty())
    }

    /// Writes queued frames to `w` until it would block or the queue is
    /// empty. Publishes without confirms complete once their bytes are taken.
    ///
    /// # Errors
    /// The first error `w.write` returns other than `WouldBlock` and
    /// `Interrupted`.
    pub fn write_to(&mut self, w: &mut dyn Write) -> io::Result<usize> {
        self.emit_pending_acks();
        let mut total = 0;
        while !self.write_buf.is_empty() {
            match w.write(&self.write_buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n == self.write_buf.len() => {
                    // All of it (the usual case): the buffer is emptied in
                    // place and the next frames are encoded where these
                    // were, in memory still in cache. A split would make
                    // the buffer shared (an atomic count up and down per
                    // write) and move the next frames further along it.
                    self.write_buf.clear();
                    total += n;
                    self.stats.bytes_out += n as u64;
                    self.written_total += n as u64;
                }
                Ok(n) => {
                    // `split_to`, not `advance`: the written front is let
                    // go, so a buffer that keeps some bytes queued does not
                    // grow by doubling (`advance` cost 2× the peak memory
                    // publishing 1 M × 1 KiB).
                    let _ = self.write_buf.split_to(n);
                    total += n;
                    self.stats.bytes_out += n as u64;
                    self.written_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.write_buf.is_empty() && self.write_buf.capacity() > 4 * READ_CHUNK {
            // Give back a buffer a burst grew.
            self.write_buf = BytesMut::with_capacity(READ_CHUNK);
        }
        while let Some(&(pos, tag)) = self.flush_marks.front() {
            if pos > self.written_total {
                break;
            }
            self.flush_marks.pop_front();
            self.written.push_back(tag);
        }
        if matches!(self.state, State::Draining { .. }) && self.flush_marks.is_empty() {
            self.poll_drain(self.heard.last());
        }
        Ok(total)
    }

    /// Takes every queued byte (for tests and callers that write elsewhere);
    /// counts as written.
    pub fn take_output(&mut self) -> Bytes {
        let mut out = Vec::new();
        let _ = self.write_to(&mut out);
        Bytes::from(out)
    }

    /// The next event for the caller.
    ///
    /// Publishes made while confirms are off complete once written; they
    /// come first, as `Event::Complete` with `Ok(Outcome::Done)`, unless
    /// [`Connection::poll_written`] took them.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(tag) = self.written.pop_front() {
            return Some(Event::Complete {
                tag,
                result: Ok(Outcome::Done),
            });
        }
        self.events.pop()
    }

    /// The next publish made while confirms are off whose bytes were all
    /// written (it succeeded as far as the client can know): the cheap way
    /// to take what [`Connection::poll_event`] would otherwise report as an
    /// `Event::Complete`, for a caller publishing millions.
    pub fn poll_written(&mut self) -> Option<Tag> {
        self.written.pop_front()
    }

    /// The next event, only if it is a delivery to the consumer `tag`: a
    /// caller waiting on that consumer takes it straight from the queue.
    #[inline]
    pub fn poll_delivery(&mut self, tag: Tag) -> Option<Delivery> {
        self.events.pop_delivery(tag)
    }

    /// Whether anything waits for [`Connection::poll_event`] (written
    /// publishes included).
    pub fn has_events(&self) -> bool {
        !self.written.is_empty() || !self.events.is_empty()
    }

    /// The next event's result, only if it is the completion of the
    /// operation `tag`: a caller waiting on that operation takes it
    /// straight from the queue.
    #[inline]
    pub fn poll_completion(&mut self, tag: Tag) -> Option<Result<Outcome, Error>> {
        self.events.pop_completion(tag)
    }

    /// Whether the next event is the completion of the operation `tag`.
    pub fn completion_is_next(&self, tag: Tag) -> bool {
        self.events.completion_is_next(tag)
    }

    /// The consumer of the next event, if that event is a delivery (then
    /// [`Connection::poll_delivery`] takes it without the [`Event`] around
    /// it).
    #[inline]
    pub fn next_delivery_consumer(&self) -> Option<Tag> {
        self.events.next_delivery()
    }

    /// Whether the event after the next one is a delivery to the consumer
    /// `tag` (one more is already here behind the next).
    pub fn delivery_is_next_but_one(&self, tag: Tag) -> bool {
        self.events.delivery_is_second(tag)
    }

    /// Whether the next event is a delivery to the consumer `tag`.
    pub fn delivery_is_next(&self, tag: Tag) -> bool {
        self.events.delivery_is_next(tag)
    }

    /// Encodes a method where [`Connection::out`] says, counting the frame.
    pub(super) fn encode_out(&mut self, ch: u16, method: &Method) -> Result<(), CodecError> {
        encode_method(self.out(), ch, method)?;
        self.stats.frames_out += 1;
        Ok(())
    }

    /// Encodes a method straight into the write buffer (connection methods
    /// of the handshake and close), counting the frame.
    pub(super) fn encode_now(&mut self, ch: u16, method: &Method) -> Result<(), CodecError> {
        encode_method(&mut self.write_buf, ch, method)?;
        self.stats.frames_out += 1;
        Ok(())
    }

    pub(super) fn out(&mut self) -> &mut BytesMut {
        self.beat.note_sent();
        if self.state.is_live() || self.state == State::Closing {
            &mut self.write_buf
        } else {
            &mut self.deferred
        }
    }

    pub(super) fn send_method(&mut self, ch: u16, method: &Method) -> Result<(), CodecError> {
        self.emit_pending_ack(ch);
        self.encode_out(ch, method)
    }

    pub(super) fn complete(&mut self, tag: Tag, result: Result<Outcome, Error>) {
        self.events.push_complete(tag, result);
    }
}
