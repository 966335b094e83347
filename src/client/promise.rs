//! Promises: small `Copy` ids for operations in flight, and the slab where
//! their results and callbacks wait.

use crate::codec::method::QueueDeclareOk;
use crate::error::Error;
use crate::protocol::{Delivery, Outcome, Tag};
use crate::Client;
use slab::Slab;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;

/// The id of an operation in flight, typed by what it resolves to.
///
/// It is `Copy` and 8 bytes. It carries a generation, so an id whose result
/// was already taken is reported as [`Error::UnknownPromise`], never
/// confused with a newer operation that reused its slot.
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
        write!(f, "Promise({}#{})", self.id.key, self.id.generation)
    }
}

/// An untyped promise id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromiseId {
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl PromiseId {
    pub(crate) fn tag(self) -> Tag {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }

    pub(crate) fn from_tag(tag: Tag) -> Self {
        PromiseId {
            key: tag as u32,
            generation: (tag >> 32) as u32,
        }
    }
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
    Delivery(Box<Delivery>),
}

/// A value a promise can resolve to.
pub trait Resolve: Sized + 'static {
    /// Converts the raw result of an operation.
    #[doc(hidden)]
    fn resolve(raw: RawResult) -> Result<Self, Error>;
}

/// An operation's result before conversion (opaque).
#[derive(Debug)]
pub struct RawResult(pub(crate) Result<Raw, Error>);

fn mismatch() -> Error {
    Error::InvalidArgument(crate::codec::CodecError::InvalidValue(
        "promise resolved with an unexpected result type",
    ))
}

impl Resolve for () {
    fn resolve(raw: RawResult) -> Result<(), Error> {
        match raw.0? {
            Raw::Outcome(_) => Ok(()),
            Raw::Delivery(_) => Err(mismatch()),
        }
    }
}

impl Resolve for QueueDeclareOk {
    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::QueueDeclared(ok)) => Ok(ok),
            _ => Err(mismatch()),
        }
    }
}

/// The `message_count` of `queue.purge-ok` / `queue.delete-ok`.
impl Resolve for u32 {
    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::MessageCount(n)) => Ok(n),
            _ => Err(mismatch()),
        }
    }
}

impl Resolve for Option<Delivery> {
    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Outcome(Outcome::Get(d)) => Ok(d.map(|d| *d)),
            _ => Err(mismatch()),
        }
    }
}

impl Resolve for Delivery {
    fn resolve(raw: RawResult) -> Result<Self, Error> {
        match raw.0? {
            Raw::Delivery(d) => Ok(*d),
            _ => Err(mismatch()),
        }
    }
}

pub(crate) type Callback = Box<dyn FnMut(&mut Client, RawResult)>;

pub(crate) struct Slot {
    pub generation: u32,
    pub results: VecDeque<Result<Raw, Error>>,
    pub callback: Option<Callback>,
    /// No more results will come.
    pub done: bool,
    /// A callback is running (taken out of the slot).
    pub in_callback: bool,
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

/// The promise slab.
#[derive(Debug, Default)]
pub(crate) struct Promises {
    slots: Slab<Slot>,
    generation: u32,
    /// Slots with a callback and a result waiting for it.
    pub ready: VecDeque<PromiseId>,
}

impl Promises {
    pub fn create(&mut self) -> PromiseId {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let key = self.slots.insert(Slot {
            generation,
            results: VecDeque::new(),
            callback: None,
            done: false,
            in_callback: false,
        });
        PromiseId {
            key: key as u32,
            generation,
        }
    }

    pub fn get_mut(&mut self, id: PromiseId) -> Option<&mut Slot> {
        self.slots
            .get_mut(id.key as usize)
            .filter(|s| s.generation == id.generation)
    }

    pub fn get(&self, id: PromiseId) -> Option<&Slot> {
        self.slots
            .get(id.key as usize)
            .filter(|s| s.generation == id.generation)
    }

    pub fn remove(&mut self, id: PromiseId) {
        if self.get(id).is_some() {
            self.slots.remove(id.key as usize);
        }
    }

    /// Records a result for `id`; `last` when no more will come.
    pub fn push(&mut self, id: PromiseId, result: Result<Raw, Error>, last: bool) {
        let Some(slot) = self.get_mut(id) else { return };
        slot.results.push_back(result);
        if last {
            slot.done = true;
        }
        if slot.callback.is_some() || slot.in_callback {
            self.ready.push_back(id);
        }
    }

    pub fn end(&mut self, id: PromiseId) {
        let Some(slot) = self.get_mut(id) else { return };
        slot.done = true;
        if slot.results.is_empty() && slot.callback.is_some() {
            self.slots.remove(id.key as usize);
        }
    }

    /// Takes the next result of `id`, freeing the slot when it is spent.
    pub fn take(&mut self, id: PromiseId) -> Option<Result<Raw, Error>> {
        let slot = self.get_mut(id)?;
        let r = slot.results.pop_front()?;
        if slot.done && slot.results.is_empty() && !slot.in_callback {
            self.slots.remove(id.key as usize);
        }
        Some(r)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }
}
