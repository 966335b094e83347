//! The results a promise holds until they are taken: a queue that keeps
//! its first entry inline.
//!
//! Most promises (every operation but a consumer) get one result in their
//! life. A `VecDeque` allocated its buffer on that first push and freed it
//! on the take: an allocation per `basic.get` or RPC. Here the first
//! result sits in the slot itself; only a second one waiting at the same
//! time (a consumer's burst of deliveries) spills into the deque.

use super::promise::Raw;
use crate::error::Error;
use std::collections::VecDeque;

/// One promise's result.
type Entry = Result<Raw, Error>;

/// A FIFO queue of results, the first without an allocation.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// The oldest result, while it is older than everything in `rest`.
    head: Option<Entry>,
    rest: VecDeque<Entry>,
}

impl Results {
    /// An empty queue (allocates nothing).
    pub fn new() -> Results {
        Results::default()
    }

    /// Adds `r` at the back.
    pub fn push_back(&mut self, r: Entry) {
        if self.head.is_none() && self.rest.is_empty() {
            self.head = Some(r);
        } else {
            self.rest.push_back(r);
        }
    }

    /// Takes the oldest result.
    pub fn pop_front(&mut self) -> Option<Entry> {
        self.head.take().or_else(|| self.rest.pop_front())
    }

    /// How many results wait.
    pub fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.head.is_none() && self.rest.is_empty()
    }

    /// The results, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.head.iter().chain(self.rest.iter())
    }

    /// Drops every result.
    pub fn clear(&mut self) {
        self.head = None;
        self.rest.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

    fn n(i: u32) -> Entry {
        Ok(Raw::Outcome(Outcome::MessageCount(i)))
    }

    fn get(r: Option<Entry>) -> Option<u32> {
        match r {
            Some(Ok(Raw::Outcome(Outcome::MessageCount(i)))) => Some(i),
            _ => None,
        }
    }

    #[test]
    fn first_in_first_out_across_the_inline_head() {
        let mut q = Results::new();
        assert!(q.is_empty());
        q.push_back(n(1));
        assert_eq!(q.rest.capacity(), 0, "one result allocates nothing");
        q.push_back(n(2));
        q.push_back(n(3));
        assert_eq!(q.len(), 3);
        assert_eq!(get(q.pop_front()), Some(1));
        // The head is free but 2 and 3 are older than anything new.
        q.push_back(n(4));
        assert_eq!(q.iter().count(), 3);
        assert_eq!(get(q.pop_front()), Some(2));
        assert_eq!(get(q.pop_front()), Some(3));
        q.push_back(n(5));
        assert_eq!(get(q.pop_front()), Some(4));
        assert_eq!(get(q.pop_front()), Some(5));
        assert!(q.pop_front().is_none());
        assert!(q.is_empty());
        q.push_back(n(6));
        q.push_back(n(7));
        q.clear();
        assert_eq!(q.len(), 0);
    }
}
