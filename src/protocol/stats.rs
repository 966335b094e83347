//! Counters of one connection: plain integers bumped where the protocol
//! already does the work, read with [`super::Connection::stats`].

use std::fmt;

/// What a connection has done so far, and its state now.
///
/// Counters (`bytes_*` to `times_blocked`) only grow; the gauges below them
/// are filled in when the snapshot is taken. Cheap to keep and to take: no
/// atomics, no allocation.
///
/// ```
/// let stats = puka::Stats::default();
/// assert_eq!(stats.publishes, 0);
/// println!("{stats}"); // one `name value` line per figure
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes received from the broker.
    pub bytes_in: u64,
    /// Bytes handed to the socket.
    pub bytes_out: u64,
    /// Frames received (heartbeats included).
    pub frames_in: u64,
    /// Frames queued for the socket (heartbeats included).
    pub frames_out: u64,
    /// Messages published.
    pub publishes: u64,
    /// Publishes the broker confirmed (`basic.ack`).
    pub confirms: u64,
    /// Publishes the broker refused (`basic.nack`).
    pub nacks_received: u64,
    /// Mandatory messages the broker returned (`basic.return`).
    pub returns: u64,
    /// Messages received (consumer deliveries and `basic.get`).
    pub deliveries: u64,
    /// Deliveries settled by an ack.
    pub acks: u64,
    /// Deliveries settled by a nack or reject.
    pub rejects: u64,
    /// Times the broker blocked the connection (`connection.blocked`).
    pub times_blocked: u64,
    /// Reconnections that reached an open connection (automatic recovery;
    /// filled in by `Client::stats`). The other counters are the current
    /// connection's: they start again at each reconnection.
    pub reconnects: u64,
    /// Channels open or opening now.
    pub channels: usize,
    /// Consumers running now.
    pub consumers: usize,
    /// Promises the client holds now (filled in by `Client::stats`).
    pub promises: usize,
    /// Publishes awaiting their confirm now.
    pub unconfirmed: usize,
    /// Bytes queued for the socket now.
    pub write_buffer: usize,
    /// Whether the broker blocks the connection now.
    pub blocked: bool,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, u64); 19] = [
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("frames_in", self.frames_in),
            ("frames_out", self.frames_out),
            ("publishes", self.publishes),
            ("confirms", self.confirms),
            ("nacks_received", self.nacks_received),
            ("returns", self.returns),
            ("deliveries", self.deliveries),
            ("acks", self.acks),
            ("rejects", self.rejects),
            ("times_blocked", self.times_blocked),
            ("reconnects", self.reconnects),
            ("channels", self.channels as u64),
            ("consumers", self.consumers as u64),
            ("promises", self.promises as u64),
            ("unconfirmed", self.unconfirmed as u64),
            ("write_buffer", self.write_buffer as u64),
            ("blocked", u64::from(self.blocked)),
        ];
        for (i, (name, value)) in rows.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{name} {value}")?;
        }
        Ok(())
    }
}
