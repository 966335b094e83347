//! Many clients' next deadlines in one min-heap, for a loop that drives
//! them all (`Deadlines`).

use super::Client;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The next deadline ([`Client::poll_timeout`]) of each of many clients,
/// earliest first, so that a loop over N clients sleeps until the earliest
/// and wakes only the clients that came due: a turn costs O(log N) per
/// client touched, not a scan of all N.
///
/// Clients are numbered by the caller (`0..`, the index of a `Vec<Client>`,
/// the `mio::Token` of each). After anything happens to client `i` (an
/// event, `on_timer`, an operation), [`Deadlines::schedule`] it again. A
/// deadline later than the one held is not pushed (a busy client would
/// push one on every event): the one held comes due first, [`pop_due`]
/// returns the client, and the loop, finding it not due yet, schedules it
/// again. So check `poll_timeout` before calling [`Client::on_timer`], as
/// below.
///
/// Bounded: the heap holds at most about twice as many entries as clients
/// (plus 64); past that it is rebuilt from the deadlines held, in O(N),
/// which spreads to O(1) per `schedule`.
///
/// [`pop_due`]: Deadlines::pop_due
///
/// ```no_run
/// # use mio::{Events, Poll, Token};
/// # use std::time::{Duration, Instant};
/// # let mut clients: Vec<puka::Client> = Vec::new();
/// # let mut poll = Poll::new()?;
/// # let mut events = Events::with_capacity(1024);
/// let mut deadlines = puka::Deadlines::new();
/// for (i, c) in clients.iter_mut().enumerate() {
///     c.update_registration(poll.registry(), Token(i))?;
///     deadlines.schedule_client(i, c);
/// }
/// loop {
///     let now = Instant::now();
///     poll.poll(&mut events, Some(deadlines.timeout(now, Duration::from_secs(1))))?;
///     for event in events.iter() {
///         let i = event.token().0;
///         clients[i].on_event(event);
///         clients[i].run_any_callbacks();
///         if clients[i].wants_registration_update() {
///             clients[i].update_registration(poll.registry(), Token(i))?;
///         }
///         deadlines.schedule_client(i, &clients[i]);
///     }
///     let now = Instant::now();
///     while let Some(i) = deadlines.pop_due(now) {
///         let c = &mut clients[i];
///         if c.poll_timeout().is_some_and(|t| t <= now) {
///             c.on_timer();
///             c.run_any_callbacks();
///             if c.wants_registration_update() {
///                 c.update_registration(poll.registry(), Token(i))?;
///             }
///         }
///         deadlines.schedule_client(i, c);
///     }
/// #   break;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Deadlines {
    /// (deadline, client); an entry whose deadline is not `held[client]`
    /// is stale and skipped when it comes up.
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The deadline each client has in `heap`, if any.
    held: Vec<Option<Instant>>,
}

/// Entries past twice the clients (plus this) make [`Deadlines`] rebuild.
const SLACK: usize = 64;

impl Deadlines {
    /// No client, no deadline.
    ///
    /// ```
    /// let d = puka::Deadlines::new();
    /// assert_eq!(d.next(), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that client `i`'s next deadline is `deadline` (`None`: it has
    /// none). Held when it is earlier than the one held for `i` (or none is
    /// held); a later one waits until the held one comes due.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let t = Instant::now();
    /// let mut d = puka::Deadlines::new();
    /// d.schedule(3, Some(t + Duration::from_secs(5)));
    /// d.schedule(3, Some(t + Duration::from_secs(1)));
    /// assert_eq!(d.next(), Some(t + Duration::from_secs(1)));
    /// ```
    pub fn schedule(&mut self, i: usize, deadline: Option<Instant>) {
        let Some(t) = deadline else {
            return;
        };
        if self.held.len() <= i {
            self.held.resize(i + 1, None);
        }
        if self.held[i].is_some_and(|h| h <= t) {
            return;
        }
        self.held[i] = Some(t);
        self.heap.push(Reverse((t, i)));
        if self.heap.len() > 2 * self.held.len() + SLACK {
            self.rebuild();
        }
    }

    /// [`Deadlines::schedule`] with the client's own
    /// [`Client::poll_timeout`].
    pub fn schedule_client(&mut self, i: usize, client: &Client) {
        self.schedule(i, client.poll_timeout());
    }

    /// Forgets client `i` (it was closed or dropped): its entries are
    /// skipped from now on.
    pub fn remove(&mut self, i: usize) {
        if let Some(h) = self.held.get_mut(i) {
            *h = None;
        }
    }

    /// The earliest deadline held (an entry of a removed client may make
    /// it early; waking for it costs one turn).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// How long a loop may sleep at `now`: until the earliest deadline, and
    /// at most `max`.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let mut d = puka::Deadlines::new();
    /// assert_eq!(d.timeout(now, Duration::from_secs(1)), Duration::from_secs(1));
    /// d.schedule(0, Some(now + Duration::from_millis(20)));
    /// assert_eq!(d.timeout(now, Duration::from_secs(1)), Duration::from_millis(20));
    /// ```
    pub fn timeout(&self, now: Instant, max: Duration) -> Duration {
        self.next()
            .map_or(max, |t| max.min(t.saturating_duration_since(now)))
    }

    /// The next client whose held deadline is at or before `now`, taken
    /// out (schedule it again once it is handled); `None` when no deadline
    /// has come.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let mut d = puka::Deadlines::new();
    /// d.schedule(1, Some(now));
    /// d.schedule(2, Some(now + Duration::from_secs(9)));
    /// assert_eq!(d.pop_due(now), Some(1));
    /// assert_eq!(d.pop_due(now), None);
    /// ```
    pub fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((t, i))) = self.heap.peek() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.held.get(i).copied().flatten() == Some(t) {
                self.held[i] = None;
                return Some(i);
            }
        }
        None
    }

    /// Entries in the heap, stale ones included (at most about twice the
    /// clients, plus 64).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops the stale entries: one per client that holds a deadline.
    fn rebuild(&mut self) {
        self.heap = self
            .held
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.map(|t| Reverse((t, i))))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Option<Instant> {
        Some(base + Duration::from_millis(ms))
    }

    #[test]
    fn clients_come_due_earliest_first_each_once() {
        let t = Instant::now();
        let mut d = Deadlines::new();
        d.schedule(0, at(t, 30));
        d.schedule(1, at(t, 10));
        d.schedule(2, None);
        d.schedule(3, at(t, 20));
        assert_eq!(d.next(), at(t, 10));
        assert_eq!(d.pop_due(t + Duration::from_millis(5)), None);
        let now = t + Duration::from_millis(25);
        assert_eq!(d.pop_due(now), Some(1));
        assert_eq!(d.pop_due(now), Some(3));
        assert_eq!(d.pop_due(now), None);
        assert_eq!(d.pop_due(t + Duration::from_millis(30)), Some(0));
        assert_eq!(d.pop_due(t + Duration::from_secs(60)), None);
        assert!(d.is_empty());
    }

    #[test]
    fn an_earlier_deadline_replaces_the_held_one_and_a_later_one_waits() {
        let t = Instant::now();
        let mut d = Deadlines::new();
        d.schedule(0, at(t, 50));
        d.schedule(0, at(t, 10));
        // Later than held: not pushed.
        d.schedule(0, at(t, 90));
        assert_eq!(d.len(), 2);
        assert_eq!(d.pop_due(t + Duration::from_millis(10)), Some(0));
        // The replaced 50 ms entry is stale: skipped, not returned.
        assert_eq!(d.pop_due(t + Duration::from_millis(60)), None);
        assert!(d.is_empty());
        // Scheduled again after it came due: the later deadline is held.
        d.schedule(0, at(t, 90));
        assert_eq!(d.next(), at(t, 90));
    }

    #[test]
    fn a_removed_client_never_comes_due() {
        let t = Instant::now();
        let mut d = Deadlines::new();
        d.schedule(4, at(t, 1));
        d.remove(4);
        d.remove(99);
        assert_eq!(d.pop_due(t + Duration::from_secs(1)), None);
    }

    #[test]
    fn stale_entries_stay_bounded() {
        // Each client's deadline moves earlier on every turn (the worst
        // case: each move leaves a stale entry): the heap stays within
        // twice the clients plus the slack, and every client still comes
        // due once, at its last deadline.
        let t = Instant::now();
        let mut d = Deadlines::new();
        let clients = 100;
        for step in 0..1000u64 {
            for i in 0..clients {
                d.schedule(i, at(t, 10_000 - step));
                assert!(d.len() <= 2 * clients + SLACK, "{} entries", d.len());
            }
        }
        // Late enough for every entry, stale ones included.
        let now = t + Duration::from_millis(10_000);
        let mut due: Vec<usize> = std::iter::from_fn(|| d.pop_due(now)).collect();
        due.sort_unstable();
        assert_eq!(due, (0..clients).collect::<Vec<_>>());
        assert!(d.is_empty());
    }
}
