//! A plain TCP socket, and how the client's own `wait` sleeps on it.
//!
//! While connecting the descriptor is non-blocking, as mio made it. Once
//! connected it is switched to blocking, and every read and write that must
//! not wait says so itself (`MSG_DONTWAIT`): the reactor contract (no call
//! blocks) holds as before, and the one place that may sleep,
//! [`PlainSocket::recv_waiting`], sleeps inside `recv` itself, bounded by
//! `SO_RCVTIMEO`. A round trip (`basic.get`, an RPC) then costs two system
//! calls, `send` and `recv`, instead of `send`, `epoll_wait` and `recv`.

use crate::protocol::Connection;
use mio::net::TcpStream;
use rustix::net::{RecvFlags, SendFlags};
use std::io::{self, Read, Write};
use std::time::Duration;

/// Shortest wait that sleeps in `recv`: `SO_RCVTIMEO` counts in scheduler
/// ticks (up to 10 ms), so a shorter deadline waits in `epoll_wait` (whole
/// milliseconds) instead, to keep timers on time.
pub(crate) const MIN_RECV_WAIT: Duration = Duration::from_millis(20);

/// A plain TCP socket and how it may wait.
#[derive(Debug)]
pub(crate) struct PlainSocket {
    pub(crate) sock: TcpStream,
    mode: Mode,
}

/// Whether the descriptor blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Connecting, or switching failed: only `epoll_wait` sleeps.
    NonBlocking,
    /// Connected and blocking: `recv_waiting` may sleep, for at most the
    /// receive timeout last set on the socket (`None`: no limit).
    Blocking { recv_timeout: Option<Duration> },
}

/// How one [`PlainSocket::recv_waiting`] ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// Bytes arrived (0: the peer closed); `full` when the read filled the
    /// buffer, so more may wait in the socket.
    Read { n: usize, full: bool },
    /// The receive timeout or a signal ended the sleep: nothing arrived.
    Woken,
}

impl PlainSocket {
    /// A socket whose connect is under way (or done).
    pub fn new(sock: TcpStream) -> Self {
        PlainSocket {
            sock,
            mode: Mode::NonBlocking,
        }
    }

    /// The connect finished: from now on the socket may block in
    /// [`PlainSocket::recv_waiting`]. When the switch fails the socket
    /// stays as it was and waits go through `epoll_wait`.
    pub fn handle_connected(&mut self) {
        if self.mode == Mode::NonBlocking
            && socket2::SockRef::from(&self.sock)
                .set_nonblocking(false)
                .is_ok()
        {
            self.mode = Mode::Blocking { recv_timeout: None };
        }
    }

    /// Whether [`PlainSocket::recv_waiting`] may be used for a wait of
    /// `timeout` (`None`: until something arrives).
    pub fn wants_recv_wait(&self, timeout: Option<Duration>) -> bool {
        matches!(self.mode, Mode::Blocking { .. }) && timeout.is_none_or(|t| t >= MIN_RECV_WAIT)
    }

    /// Reads once into the connection without waiting; `(n, drained)` as
    /// [`super::Transport::read_into`].
    pub fn read_into(&mut self, conn: &mut Connection) -> io::Result<(usize, bool)> {
        let room = conn.read_capacity();
        let n = conn.read_from(&mut Recv {
            sock: &self.sock,
            flags: RecvFlags::DONTWAIT,
        })?;
        Ok((n, n < room))
    }

    /// Writes the connection's queued frames until the socket would block.
    pub fn write_from(&mut self, conn: &mut Connection) -> io::Result<()> {
        conn.write_to(&mut Send(&self.sock)).map(drop)
    }

    /// Sleeps in `recv` until bytes arrive or about `timeout` passes
    /// (`None`: no limit), then reads once into the connection. The
    /// caller has checked [`PlainSocket::wants_recv_wait`] and that nothing
    /// waits to be written (the broker may be waiting for it).
    ///
    /// The receive timeout is kept while it lies between half of `timeout`
    /// and `timeout`, else set to half of `timeout`: waking early only
    /// costs a turn of the caller's loop, waking late would miss a timer.
    /// So a loop of round trips, whose deadline (the next heartbeat) comes
    /// closer with every wait, sets it a few times per heartbeat interval,
    /// not once per wait.
    pub fn recv_waiting(
        &mut self,
        conn: &mut Connection,
        timeout: Option<Duration>,
    ) -> io::Result<Waited> {
        let Mode::Blocking { recv_timeout } = self.mode else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let keep = match (recv_timeout, timeout) {
            (None, None) => true,
            (Some(set), Some(t)) => set <= t && set >= t / 2,
            _ => false,
        };
        if !keep {
            // SO_RCVTIMEO of zero means no limit: never set a zero one.
            let t = timeout.map(|t| (t / 2).max(Duration::from_millis(1)));
            rustix::net::sockopt::set_socket_timeout(
                &self.sock,
                rustix::net::sockopt::Timeout::Recv,
                t,
            )?;
            self.mode = Mode::Blocking { recv_timeout: t };
        }
        let room = conn.read_capacity();
        let mut recv = Recv {
            sock: &self.sock,
            flags: RecvFlags::empty(),
        };
        match conn.read_from(&mut recv) {
            Ok(n) => Ok(Waited::Read { n, full: n == room }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Waited::Woken)
            }
            Err(e) => Err(e),
        }
    }
}

/// `recv(2)` with the given flags, as a [`Read`].
struct Recv<'a> {
    sock: &'a TcpStream,
    flags: RecvFlags,
}

impl Read for Recv<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(self.sock, buf, self.flags)?.0)
    }
}

/// The flags of every send: never wait, and never raise `SIGPIPE` (Apple
/// systems have no such flag: mio sets `SO_NOSIGPIPE` on the socket there).
#[cfg(not(target_vendor = "apple"))]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT.union(SendFlags::NOSIGNAL);
#[cfg(target_vendor = "apple")]
const SEND_FLAGS: SendFlags = SendFlags::DONTWAIT;

/// `send(2)` that never waits and never raises `SIGPIPE`, as a [`Write`].
struct Send<'a>(&'a TcpStream);

impl Write for Send<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(self.0, buf, SEND_FLAGS)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    fn pair() -> (PlainSocket, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        s.set_nonblocking(true).unwrap();
        let (peer, _) = l.accept().unwrap();
        (PlainSocket::new(TcpStream::from_std(s)), peer)
    }

    #[test]
    fn a_blocking_socket_still_never_waits_outside_recv_waiting() {
        let (mut s, _peer) = pair();
        s.handle_connected();
        assert!(matches!(s.mode, Mode::Blocking { recv_timeout: None }));
        let mut conn = Connection::new(crate::protocol::Config::default(), 1, Instant::now());
        // Nothing to read: WouldBlock at once, not a sleep.
        let t = Instant::now();
        let e = s.read_into(&mut conn).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t.elapsed() < Duration::from_secs(1));
        // A peer that never reads: writes stop with WouldBlock once the
        // buffers are full instead of blocking.
        let mut w = Send(&s.sock);
        let chunk = vec![0u8; 1 << 16];
        let mut blocked = false;
        for _ in 0..10_000 {
            match w.write(&chunk) {
                Ok(n) => assert!(n > 0),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    blocked = true;
                    break;
                }
            }
        }
        assert!(blocked, "640 MB went into a socket nobody reads");
    }

    #[test]
    fn recv_waiting_sleeps_until_bytes_or_its_timeout() {
        let (mut s, mut peer) = pair();
        s.handle_connected();
        let mut conn = Connection::new(crate::protocol::Config::default(), 1, Instant::now());
        let t = Instant::now();
        let w = s
            .recv_waiting(&mut conn, Some(Duration::from_millis(100)))
            .unwrap();
        let slept = t.elapsed();
        assert!(matches!(w, Waited::Woken), "{w:?}");
        // Half the wait: the caller's loop comes back for the rest.
        assert!(
            slept >= Duration::from_millis(45) && slept < Duration::from_secs(2),
            "slept {slept:?} for a 100 ms wait"
        );
        // The timeout in place (50 ms) is kept for a wait of 90 ms and
        // replaced for one of 500 ms.
        let Mode::Blocking {
            recv_timeout: Some(set),
        } = s.mode
        else {
            panic!("{:?}", s.mode)
        };
        assert_eq!(set, Duration::from_millis(50));
        peer.write_all(b"AMQP").unwrap();
        let w = s
            .recv_waiting(&mut conn, Some(Duration::from_millis(90)))
            .unwrap();
        assert!(matches!(w, Waited::Read { n: 4, full: false }), "{w:?}");
        assert_eq!(
            s.mode,
            Mode::Blocking {
                recv_timeout: Some(set)
            }
        );
        peer.write_all(b"!").unwrap();
        s.recv_waiting(&mut conn, Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(
            s.mode,
            Mode::Blocking {
                recv_timeout: Some(Duration::from_millis(250))
            }
        );
        // The peer closes: a read of 0.
        drop(peer);
        let w = s.recv_waiting(&mut conn, None).unwrap();
        assert!(matches!(w, Waited::Read { n: 0, .. }), "{w:?}");
    }

    #[test]
    fn only_a_connected_socket_and_a_long_enough_wait_use_recv() {
        let (mut s, _peer) = pair();
        assert!(!s.wants_recv_wait(None));
        s.handle_connected();
        assert!(s.wants_recv_wait(None));
        assert!(s.wants_recv_wait(Some(MIN_RECV_WAIT)));
        assert!(!s.wants_recv_wait(Some(Duration::from_millis(1))));
    }
}
