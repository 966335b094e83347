//! Promises: small `Copy` ids for operations in flight, and the slab where
//! their results and callbacks wait.

use super::results::Results;
use crate::codec::method::QueueDeclareOk;
use crate::error::Error;
use crate::protocol::{Delivery, Outcome, Tag};
use crate::Client;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

/// The id of an operation in flight, typed by what it resolves to.
///
/// It is `Copy` and 12 bytes. It carries a generation, so an id whose result
/// was already taken is reported as [`Error::UnknownPromise`], never
/// confused with a newer operation that reused its slot, and the id of the
/// client that made it, so another client refuses it with
/// [`Error::ForeignPromise`].
///
/// Publish promises are the exception that keeps publishing lean: they take
/// no slot (their id is the publish's sequence number), only failures are
/// stored, and waiting again on one that succeeded returns `Ok(())` again.
pub struct Promise<T> {
    pub(crate) id: PromiseId,
    _t: PhantomData<fn() -> T>,
}

impl<T> Promise<T> {
    pub(crate) fn new(id: PromiseId) -> Self {
        Promise {
            id,
            _t: PhantomData,
        }
    }

    /// The untyped id, for [`Client::wait_for_any`] and [`Client::wait_for_all`].
    pub fn id(&self) -> PromiseId {
        self.id
    }
}

impl<T: Resolve> Promise<T> {
    /// [`Client::wait`] in one line: starts and waits together.
    ///
    /// ```no_run
    /// # use puka::{Client, QueueDeclare};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let ok = client.queue_declare(QueueDeclare::named("jobs")).wait(&mut client)?;
    /// # let _ = ok;
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::wait`].
    pub fn wait(self, client: &mut Client) -> Result<T::Output, Error> {
        client.wait(self)
    }

    /// [`Client::wait_timeout`] in one line.
    ///
    /// # Errors
    /// As [`Client::wait_timeout`].
    pub fn wait_timeout(
        self,
        client: &mut Client,
        timeout: std::time::Duration,
    ) -> Result<T::Output, Error> {
        client.wait_timeout(self, timeout)
    }
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Promise<T> {}
impl<T> PartialEq for Promise<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl<T> Eq for Promise<T> {}
impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Promise({}#{}@{})",
            self.id.key, self.id.generation, self.id.owner
        )
    }
}

/// An untyped promise id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromiseId {
    pub(crate) key: u32,
    pub(crate) generation: u32,
    /// The [`Promises`] (so the client) that made it.
    pub(crate) owner: u32,
}

impl PromiseId {
    pub(crate) fn tag(self) -> Tag {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }
}

/// A new owner id for a client's promises: unique in the process.
fn next_owner() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static OWNERS: AtomicU32 = AtomicU32::new(1);
    OWNERS.fetch_add(1, Ordering::Relaxed)
}

impl<T> From<Promise<T>> for PromiseId {
    fn from(p: Promise<T>) -> Self {
        p.id
    }
}

/// What a promise slot holds before it is converted to the promise's type.
#[derive(Debug)]
pub(crate) enum Raw {
    Outcome(Outcome),
    Delivery(Delivery),
    /// A consumer ended as its user asked: cancelled, or the connection
    /// closed by the user.
    ConsumerEnded,
}

mod sealed {
    /// Only the crate's result types resolve promises.
    pub trait Sealed {}
    impl Sealed for () {}
    impl Sealed for u32 {}
    impl Sealed for crate::codec::method::QueueDeclareOk {}
    impl Sealed for Option<crate::protocol::Delivery> {}
    impl Sealed for crate::protocol::Delivery {}
    impl Sealed for Vec<String> {}
}

/// What a promise is typed by: each operation's result type (`()`,
/// `u32`, [`QueueDeclareOk`], `Option<Delivery>`, `Vec<String>`), or
/// [`Delivery`] for a consumer. Sealed: only this crate implements it.
///
/// [`Output`](Resolve::Output) is what [`Client::wait`] and callbacks are
/// given: the type itself, except for a consumer (`Promise<Delivery>`),
/// whose results are `Option<Delivery>`: `Some` for each delivery, then
/// `None` once when it ends as its user asked ([`Client::basic_cancel`] or
/// the user's own close) — an end that is a value, not an error.
pub trait Resolve: sealed::Sealed + Sized + 'static {
    /// What each result of the promise is.
    type Output;

    /// Converts the raw result of an operation.
    #[doc(hidden)]
    fn resolve(raw: RawResult) -> Result<Self::Output, Error>;

    /// Converts a delivery taken straight from the connection.
    #[doc(hidden)]
    fn from_delivery(d: Delivery) -> Result<Self::Output, Error> {
        Self::resolve(RawResult(Ok(Raw::Delivery(d))))
    }
}

/// An operation's result before conversion (opaque).
#[derive(Debug)]
pub struct RawResult(pub(crate) Result<Raw, Error>);

fn mismatch() -> Error {
    Error::TypeMismatch
}

impl Resolve for () {
    type Output = ();

    fn resolve(raw: RawResult) -> Result<(), Error> {
        match raw.0? {
            Raw::Outcome(_) => Ok(()),
            Raw::Delivery(_) | Raw::ConsumerEnded => Err(mismatch()),
        }
    }
}

impl Resolve for QueueDeclareOk {
    type Output = Self;

    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::QueueDeclared(ok)) => Ok(ok),
            _ => Err(mismatch()),
        }
    }
}

/// The `message_count` of `queue.purge-ok` / `queue.delete-ok`.
impl Resolve for u32 {
    type Output = Self;

    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::MessageCount(n)) => Ok(n),
            _ => Err(mismatch()),
        }
    }
}

impl Resolve for Option<Delivery> {
    type Output = Self;

    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::Get(d)) => Ok(d),
            _ => Err(mismatch()),
        }
    }
}

/// A consumer's tags, from [`Client::consumer_ready`].
impl Resolve for Vec<String> {
    type Output = Self;

    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::ConsumerTags(tags)) => {
                Ok(tags.iter().map(|t| t.to_string()).collect())
            }
            _ => Err(mismatch()),
        }
    }
}

/// A consumer: `Some` per delivery, then `None` once if it ends as its
/// user asked.
impl Resolve for Delivery {
    type Output = Option<Delivery>;

    fn resolve(raw: RawResult) -> Result<Option<Delivery>, Error> {
        match raw.0? {
            Raw::Delivery(d) => Ok(Some(d)),
            Raw::ConsumerEnded => Ok(None),
            Raw::Outcome(_) => Err(mismatch()),
        }
    }

    fn from_delivery(d: Delivery) -> Result<Option<Delivery>, Error> {
        Ok(Some(d))
    }
}

pub(crate) type Callback = Box<dyn FnMut(&mut Client, RawResult)>;

/// A callback taken out to run, with its promise and result.
pub(crate) type ReadyCallback = (PromiseId, Callback, Result<Raw, Error>);

/// Promise ids with this bit in `key` are publishes: the rest of the id is
/// the publish's sequence number, and they take no slab slot.
const PUBLISH_BIT: u32 = 1 << 31;

pub(crate) struct Slot {
    pub generation: u32,
    pub results: Results,
    pub callback: Option<Callback>,
    /// No more results will come.
    pub done: bool,
    /// A callback is running (taken out of the slot).
    pub in_callback: bool,
    /// Ready entries a nested `run_any_callbacks` (from inside this
    /// promise's own callback) met while the callback was out: put back
    /// when the callback returns, so no result is stranded.
    pub missed: usize,
    /// The user said they will not take the results: they are dropped.
    pub forgotten: bool,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("generation", &self.generation)
            .field("results", &self.results.len())
            .field("callback", &self.callback.is_some())
            .field("done", &self.done)
            .finish()
    }
}

/// What [`Promises::take`] found.
#[derive(Debug)]
// A return value, moved once: boxing the large variant would only add an
// allocation per result.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Taken {
    Ready(Result<Raw, Error>),
    Pending,
    Unknown,
    /// The id belongs to another client.
    Foreign,
}

/// Where results wait: a slab for ordinary promises; for publishes, which
/// can number millions in flight, only the sequence numbers still pending
/// and the results someone will look at (errors, or those with a callback).
pub(crate) struct Promises {
    /// Stamped on every id made here; ids of other owners are refused.
    owner: u32,
    slots: Slab<Slot>,
    generation: u32,
    /// Ids with a callback and a result waiting for it.
    ready: VecDeque<PromiseId>,
    next_publish: u64,
    /// Publishes not yet resolved: (sequence, resolved), ascending.
    publish_pending: VecDeque<(u64, bool)>,
    /// Results of resolved publishes that must be kept: failures, and
    /// those whose callback has not run.
    publish_results: HashMap<u64, Result<Raw, Error>>,
    publish_callbacks: HashMap<u64, Callback>,
    /// Pending publishes whose outcome nobody will take.
    publish_forgotten: std::collections::HashSet<u64>,
    /// Bytes of deliveries held in slots (bodies plus a fixed overhead).
    buffered_bytes: usize,
}

/// What one held result counts toward [`Promises::buffered_bytes`].
fn weight(r: &Result<Raw, Error>) -> usize {
    match r {
        Ok(Raw::Delivery(d)) => d.body.len() + std::mem::size_of::<Delivery>(),
        Ok(Raw::Outcome(Outcome::Get(Some(d)))) => d.body.len() + std::mem::size_of::<Delivery>(),
        _ => 0,
    }
}

impl fmt::Debug for Promises {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Promises")
            .field("slots", &self.slots.len())
            .field("publishes_pending", &self.publish_pending.len())
            .finish()
    }
}

impl Default for Promises {
    fn default() -> Self {
        Promises {
            owner: next_owner(),
            slots: Slab::new(),
            generation: 0,
            ready: VecDeque::new(),
            next_publish: 0,
            publish_pending: VecDeque::new(),
            publish_results: HashMap::new(),
            publish_callbacks: HashMap::new(),
            publish_forgotten: std::collections::HashSet::new(),
            buffered_bytes: 0,
        }
    }
}

/// Whether the operation `tag` is a publish (whose outcome recovery never
/// records).
pub(crate) fn is_publish_tag(tag: Tag) -> bool {
    (tag as u32) & PUBLISH_BIT != 0
}

fn publish_seq(id: PromiseId) -> Option<u64> {
    (id.key & PUBLISH_BIT != 0)
        .then(|| (u64::from(id.key & !PUBLISH_BIT) << 32) | u64::from(id.generation))
}

impl Promises {
    /// The id of this client's operation `tag` (a tag the protocol got from
    /// [`PromiseId::tag`]).
    pub fn id_of(&self, tag: Tag) -> PromiseId {
        PromiseId {
            key: tag as u32,
            generation: (tag >> 32) as u32,
            owner: self.owner,
        }
    }

    /// Whether `id` was made by this client.
    pub fn owns(&self, id: PromiseId) -> bool {
        id.owner == self.owner
    }

    /// A new ordinary promise.
    pub fn create(&mut self) -> PromiseId {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let key = self.slots.insert(Slot {
            generation,
            results: Results::new(),
            callback: None,
            done: false,
            in_callback: false,
            missed: 0,
            forgotten: false,
        });
        PromiseId {
            key: key as u32,
            generation,
            owner: self.owner,
        }
    }

    /// A new publish promise (no slab slot).
    pub fn create_publish(&mut self) -> PromiseId {
        let seq = self.next_publish;
        self.next_publish += 1;
        self.publish_pending.push_back((seq, false));
        PromiseId {
            key: PUBLISH_BIT | ((seq >> 32) as u32 & !PUBLISH_BIT),
            generation: seq as u32,
            owner: self.owner,
        }
    }

    fn slot_mut(&mut self, id: PromiseId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
    }

    fn slot(&self, id: PromiseId) -> Option<&Slot> {
        self.slots
            .get(id.key as usize)
            .filter(|s| s.generation == id.generation)
    }

    /// Where `seq` sits in `publish_pending`: its sequence numbers are
    /// contiguous (created in order, removed only from the front).
    fn publish_index(&self, seq: u64) -> Option<usize> {
        let &(front, _) = self.publish_pending.front()?;
        let i = usize::try_from(seq.checked_sub(front)?).ok()?;
        (i < self.publish_pending.len()).then_some(i)
    }

    fn publish_is_pending(&self, seq: u64) -> bool {
        self.publish_index(seq)
            .is_some_and(|i| !self.publish_pending[i].1)
    }

    /// Marks the publish `seq` resolved; false when it was not pending.
    fn settle_publish(&mut self, seq: u64) -> bool {
        let Some(i) = self.publish_index(seq) else {
            return false;
        };
        self.publish_pending[i].1 = true;
        while self.publish_pending.front().is_some_and(|&(_, done)| done) {
            self.publish_pending.pop_front();
        }
        true
    }

    /// A publish succeeded (written with confirms off): the common case,
    /// with nothing to store unless a callback waits for it.
    pub fn publish_ok(&mut self, id: PromiseId) {
        match publish_seq(id) {
            Some(seq) if self.publish_callbacks.is_empty() => {
                if self.settle_publish(seq) && !self.publish_forgotten.is_empty() {
                    self.publish_forgotten.remove(&seq);
                }
            }
            _ => self.push(id, Ok(Raw::Outcome(Outcome::Done)), true),
        }
    }

    /// Records a result for `id`; `last` when no more will come.
    pub fn push(&mut self, id: PromiseId, result: Result<Raw, Error>, last: bool) {
        if let Some(seq) = publish_seq(id) {
            if !self.settle_publish(seq) {
                return;
            }
            if !self.publish_forgotten.is_empty() && self.publish_forgotten.remove(&seq) {
                return;
            }
            let has_callback =
                !self.publish_callbacks.is_empty() && self.publish_callbacks.contains_key(&seq);
            if result.is_err() || has_callback {
                self.publish_results.insert(seq, result);
            }
            if has_callback {
                self.ready.push_back(id);
            }
            return;
        }
        let w = weight(&result);
        let Some(slot) = self
            .slots
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        if slot.forgotten {
            if last && slot.in_callback {
                // Freed when its callback returns (`restore_callback`).
                slot.done = true;
            } else if last {
                self.slots.remove(id.key as usize);
            }
            return;
        }
        slot.results.push_back(result);
        self.buffered_bytes += w;
        if last {
            slot.done = true;
        }
        if slot.callback.is_some() || slot.in_callback {
            self.ready.push_back(id);
        }
    }

    /// A consumer ended as its user asked (cancelled, or the user closed
    /// the connection): its last result is that end, as a value.
    pub fn end(&mut self, id: PromiseId) {
        if self.slot_mut(id).is_some_and(|s| !s.done) {
            self.push(id, Ok(Raw::ConsumerEnded), true);
        }
    }

    /// Takes the next result of `id`, freeing its slot when it is spent.
    pub fn take(&mut self, id: PromiseId) -> Taken {
        if !self.owns(id) {
            return Taken::Foreign;
        }
        if let Some(seq) = publish_seq(id) {
            if let Some(r) = self.publish_results.remove(&seq) {
                self.publish_callbacks.remove(&seq);
                return Taken::Ready(r);
            }
            if self.publish_is_pending(seq) {
                return Taken::Pending;
            }
            if seq < self.next_publish {
                // Resolved successfully; nothing was kept.
                return Taken::Ready(Ok(Raw::Outcome(crate::protocol::Outcome::Done)));
            }
            return Taken::Unknown;
        }
        let Some(slot) = self.slot_mut(id) else {
            return Taken::Unknown;
        };
        if slot.forgotten {
            return Taken::Unknown;
        }
        match slot.results.pop_front() {
            Some(r) => {
                if slot.done && slot.results.is_empty() && !slot.in_callback {
                    self.slots.remove(id.key as usize);
                }
                self.buffered_bytes -= weight(&r);
                Taken::Ready(r)
            }
            None if slot.done => {
                self.slots.remove(id.key as usize);
                Taken::Unknown
            }
            None => Taken::Pending,
        }
    }

    /// Whether `id` is a live promise with nothing queued and no callback:
    /// its next result may go straight to a caller waiting on it.
    pub fn is_idle(&self, id: PromiseId) -> bool {
        self.owns(id)
            && publish_seq(id).is_none()
            && self.slots.get(id.key as usize).is_some_and(|s| {
                s.generation == id.generation
                    && s.results.is_empty()
                    && s.callback.is_none()
                    && !s.in_callback
                    && !s.done
            })
    }

    /// Frees `id`, an idle promise (see [`Promises::is_idle`]) whose last
    /// result was taken without passing through its queue.
    pub fn finish_idle(&mut self, id: PromiseId) {
        if self.is_idle(id) {
            self.slots.remove(id.key as usize);
        }
    }

    /// Whether `id` has a result waiting: `None` when it is unknown.
    pub fn has_result(&self, id: PromiseId) -> Option<bool> {
        if !self.owns(id) {
            return None;
        }
        if let Some(seq) = publish_seq(id) {
            if self.publish_results.contains_key(&seq) {
                return Some(true);
            }
            if self.publish_is_pending(seq) {
                return Some(false);
            }
            return (seq < self.next_publish).then_some(true);
        }
        let slot = self.slot(id)?;
        if (slot.results.is_empty() && slot.done) || slot.forgotten {
            return None;
        }
        Some(!slot.results.is_empty())
    }

    /// Sets the callback of `id`; results already waiting become ready.
    pub fn set_callback(&mut self, id: PromiseId, cb: Callback) {
        if !self.owns(id) {
            return;
        }
        if let Some(seq) = publish_seq(id) {
            if self.publish_is_pending(seq) || self.publish_results.contains_key(&seq) {
                if self.publish_results.contains_key(&seq) {
                    self.ready.push_back(id);
                }
                self.publish_callbacks.insert(seq, cb);
            } else if seq < self.next_publish {
                // Already resolved successfully: run it with that.
                self.publish_results
                    .insert(seq, Ok(Raw::Outcome(crate::protocol::Outcome::Done)));
                self.publish_callbacks.insert(seq, cb);
                self.ready.push_back(id);
            }
            return;
        }
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        slot.callback = Some(cb);
        for _ in 0..slot.results.len() {
            self.ready.push_back(id);
        }
    }

    /// The next callback to run, taken out with its result; give it back
    /// with [`Promises::restore_callback`].
    pub fn pop_ready(&mut self) -> Option<Option<ReadyCallback>> {
        let id = self.ready.pop_front()?;
        if let Some(seq) = publish_seq(id) {
            let (Some(cb), Some(r)) = (
                self.publish_callbacks.remove(&seq),
                self.publish_results.remove(&seq),
            ) else {
                return Some(None);
            };
            return Some(Some((id, cb, r)));
        }
        let Some(slot) = self.slot_mut(id) else {
            return Some(None);
        };
        let Some(cb) = slot.callback.take() else {
            if slot.in_callback {
                // Its callback is running further up the stack (it called
                // `wait` or `run_any_callbacks`): this result waits for it
                // to return.
                slot.missed += 1;
            }
            return Some(None);
        };
        let Some(r) = slot.results.pop_front() else {
            slot.callback = Some(cb);
            return Some(None);
        };
        slot.in_callback = true;
        self.buffered_bytes -= weight(&r);
        Some(Some((id, cb, r)))
    }

    /// Puts back a callback after it ran; frees the slot when spent.
    pub fn restore_callback(&mut self, id: PromiseId, cb: Callback) {
        if publish_seq(id).is_some() {
            return;
        }
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        slot.in_callback = false;
        if slot.forgotten {
            if slot.done {
                self.slots.remove(id.key as usize);
            }
            return;
        }
        let missed = std::mem::take(&mut slot.missed);
        if slot.done && slot.results.is_empty() {
            self.slots.remove(id.key as usize);
            return;
        }
        if slot.callback.is_none() {
            slot.callback = Some(cb);
        }
        for _ in 0..missed.min(slot.results.len()) {
            self.ready.push_back(id);
        }
    }

    /// Drops `id`'s results, now and as they come (see `Client::forget`).
    pub fn forget(&mut self, id: PromiseId) {
        if !self.owns(id) {
            return;
        }
        if let Some(seq) = publish_seq(id) {
            self.publish_callbacks.remove(&seq);
            if self.publish_results.remove(&seq).is_none() && self.publish_is_pending(seq) {
                self.publish_forgotten.insert(seq);
            }
            return;
        }
        let Some(slot) = self
            .slots
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        let held: usize = slot.results.iter().map(weight).sum();
        slot.results.clear();
        slot.callback = None;
        slot.forgotten = true;
        self.buffered_bytes -= held;
        if slot.done && !slot.in_callback {
            self.slots.remove(id.key as usize);
        }
    }

    /// Bytes of received messages held for promises that have not taken
    /// them.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Number of ids with a callback ready to run.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Promises held: slab slots plus publishes in flight.
    pub fn len(&self) -> usize {
        self.slots.len() + self.publish_pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

    fn ok() -> Result<Raw, Error> {
        Ok(Raw::Outcome(Outcome::Done))
    }

    #[test]
    fn finish_idle_frees_only_an_idle_promise() {
        let mut p = Promises::default();
        let idle = p.create();
        let queued = p.create();
        p.push(queued, ok(), false);
        let with_callback = p.create();
        p.set_callback(with_callback, Box::new(|_, _| {}));
        for id in [idle, queued, with_callback] {
            p.finish_idle(id);
        }
        // Only the idle one went; the others still hold what they hold.
        assert_eq!(p.len(), 2);
        assert!(matches!(p.take(idle), Taken::Unknown));
        assert!(matches!(p.take(queued), Taken::Ready(Ok(_))));
    }

    #[test]
    fn forgotten_publishes_written_leave_nothing_behind() {
        let mut p = Promises::default();
        let id = p.create_publish();
        p.forget(id);
        p.publish_ok(id);
        assert!(p.publish_forgotten.is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn a_consumer_forgotten_in_its_callback_is_freed_when_it_ends() {
        let mut p = Promises::default();
        let id = p.create();
        p.set_callback(id, Box::new(|_, _| {}));
        p.push(id, ok(), false);
        let Some(Some((_, cb, _))) = p.pop_ready() else {
            panic!("the callback is ready");
        };
        // Inside the callback: forget, then the consumer ends (a nested
        // `wait` saw its end).
        p.forget(id);
        p.end(id);
        p.restore_callback(id, cb);
        assert_eq!(p.len(), 0, "the slot is freed");
    }

    #[test]
    fn stale_ids_are_unknown() {
        let mut p = Promises::default();
        let a = p.create();
        p.push(a, ok(), true);
        assert!(matches!(p.take(a), Taken::Ready(Ok(_))));
        assert!(matches!(p.take(a), Taken::Unknown));
        let b = p.create();
        assert_eq!(a.key, b.key, "the slot is reused");
        assert!(
            matches!(p.take(a), Taken::Unknown),
            "but the old id is stale"
        );
        assert!(matches!(p.take(b), Taken::Pending));
    }

    #[test]
    fn publishes_keep_only_pending_and_failures() {
        let mut p = Promises::default();
        let ids: Vec<_> = (0..1000).map(|_| p.create_publish()).collect();
        assert_eq!(p.len(), 1000);
        for (i, id) in ids.iter().enumerate() {
            let r = if i == 500 { Err(Error::Nacked) } else { ok() };
            p.push(*id, r, true);
        }
        assert_eq!(p.len(), 0);
        assert_eq!(p.publish_results.len(), 1);
        assert!(matches!(p.take(ids[0]), Taken::Ready(Ok(_))));
        assert!(matches!(p.take(ids[500]), Taken::Ready(Err(Error::Nacked))));
        let next = p.create_publish();
        assert!(matches!(p.take(next), Taken::Pending));
        assert_eq!(p.has_result(next), Some(false));
        let unknown = PromiseId {
            key: PUBLISH_BIT,
            generation: 5000,
            owner: p.owner,
        };
        assert!(matches!(p.take(unknown), Taken::Unknown));
    }

    #[test]
    fn results_met_while_their_callback_runs_are_not_stranded() {
        let mut p = Promises::default();
        let c = p.create();
        p.set_callback(c, Box::new(|_, _| {}));
        p.push(c, ok(), false);
        // The outer run takes the callback out with the first result.
        let Some(Some((id, cb, _))) = p.pop_ready() else {
            panic!("a ready callback")
        };
        // Inside it, a second result arrives and a nested run meets it.
        p.push(c, ok(), false);
        assert!(matches!(p.pop_ready(), Some(None)));
        assert_eq!(p.ready_len(), 0);
        // When the outer callback returns, the result is ready again.
        p.restore_callback(id, cb);
        assert_eq!(p.ready_len(), 1);
        assert!(matches!(p.pop_ready(), Some(Some(_))));
    }

    #[test]
    fn forgotten_promises_drop_their_results_and_slots() {
        let mut p = Promises::default();
        let a = p.create();
        let b = p.create();
        p.push(b, ok(), true);
        p.forget(a);
        p.forget(b);
        assert_eq!(p.len(), 1, "a waits for its result to be dropped");
        p.push(a, ok(), true);
        assert_eq!(p.len(), 0);
        assert!(matches!(p.take(a), Taken::Unknown));
        let pub1 = p.create_publish();
        p.forget(pub1);
        p.push(pub1, Err(Error::Nacked), true);
        assert!(
            p.publish_results.is_empty(),
            "a forgotten failure is not kept"
        );
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn ids_of_another_owner_are_foreign() {
        let mut a = Promises::default();
        let mut b = Promises::default();
        let pa = a.create();
        let pb = b.create();
        assert_eq!((pa.key, pa.generation), (pb.key, pb.generation));
        b.push(pb, ok(), true);
        assert!(matches!(b.take(pa), Taken::Foreign));
        assert_eq!(b.has_result(pa), None);
        assert!(matches!(b.take(pb), Taken::Ready(Ok(_))));
        let publish = a.create_publish();
        assert!(matches!(b.take(publish), Taken::Foreign));
    }

    #[test]
    fn out_of_order_publish_completion() {
        let mut p = Promises::default();
        let a = p.create_publish();
        let b = p.create_publish();
        p.push(b, ok(), true);
        assert!(matches!(p.take(a), Taken::Pending));
        assert!(matches!(p.take(b), Taken::Ready(Ok(_))));
        p.push(a, ok(), true);
        assert!(matches!(p.take(a), Taken::Ready(Ok(_))));
        assert_eq!(p.len(), 0);
    }
}
