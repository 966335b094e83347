//! The queue of events the caller polls.
//!
//! Deliveries are nearly every event a consumer sees, and an [`Event`] is
//! larger than the [`Delivery`] it carries (other variants hold a whole
//! [`Outcome`](super::Outcome)). So deliveries wait in a queue of their own
//! beside the other events, each entry stamped with its place in arrival
//! order: a delivery is copied into its slot once and out of it once, and
//! the order the caller sees is exactly the order of the pushes.

use super::{Delivery, Error, Event, Outcome, Tag};
use std::collections::VecDeque;

/// Events in arrival order: deliveries apart from the rest, each with its
/// sequence number (a `u64` counting pushes cannot wrap).
#[derive(Debug, Default)]
pub(super) struct EventQueue {
    next: u64,
    deliveries: VecDeque<(u64, Tag, Delivery)>,
    others: VecDeque<(u64, Event)>,
}

impl EventQueue {
    fn stamp(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }

    /// Queues `event` behind everything queued before it.
    pub(super) fn push(&mut self, event: Event) {
        match event {
            Event::Delivery { tag, delivery } => self.push_delivery(tag, delivery),
            other => {
                let seq = self.stamp();
                self.others.push_back((seq, other));
            }
        }
    }

    /// Queues the completion of the operation `tag` (what `push` of an
    /// [`Event::Complete`] does, built in its slot).
    #[inline]
    pub(super) fn push_complete(&mut self, tag: Tag, result: Result<Outcome, Error>) {
        let seq = self.stamp();
        self.others
            .push_back((seq, Event::Complete { tag, result }));
    }

    /// Queues a delivery to the consumer `tag` (what `push` of an
    /// [`Event::Delivery`] does, without building the event).
    #[inline]
    pub(super) fn push_delivery(&mut self, tag: Tag, delivery: Delivery) {
        let seq = self.stamp();
        self.deliveries.push_back((seq, tag, delivery));
    }

    /// Whether the oldest delivery came before the oldest other event.
    #[inline]
    fn delivery_first(&self) -> bool {
        match (self.deliveries.front(), self.others.front()) {
            (Some((d, ..)), Some((o, _))) => d < o,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The oldest event.
    pub(super) fn pop(&mut self) -> Option<Event> {
        if self.delivery_first() {
            let (_, tag, delivery) = self.deliveries.pop_front()?;
            Some(Event::Delivery { tag, delivery })
        } else {
            self.others.pop_front().map(|(_, e)| e)
        }
    }

    /// The oldest event, only if it is a delivery to the consumer `tag`.
    #[inline]
    pub(super) fn pop_delivery(&mut self, tag: Tag) -> Option<Delivery> {
        if !self.delivery_is_next(tag) {
            return None;
        }
        self.deliveries.pop_front().map(|(_, _, d)| d)
    }

    /// The consumer of the oldest event, if it is a delivery.
    #[inline]
    pub(super) fn next_delivery(&self) -> Option<Tag> {
        if self.delivery_first() {
            self.deliveries.front().map(|(_, t, _)| *t)
        } else {
            None
        }
    }

    /// Whether the oldest event is a delivery to the consumer `tag`.
    #[inline]
    pub(super) fn delivery_is_next(&self, tag: Tag) -> bool {
        self.delivery_first() && self.deliveries.front().is_some_and(|(_, t, _)| *t == tag)
    }

    /// Whether the oldest event is the completion of the operation `tag`.
    #[inline]
    pub(super) fn completion_is_next(&self, tag: Tag) -> bool {
        !self.delivery_first()
            && matches!(self.others.front(), Some((_, Event::Complete { tag: t, .. })) if *t == tag)
    }

    /// The oldest event's result, only if it is the completion of `tag`.
    #[inline]
    pub(super) fn pop_completion(&mut self, tag: Tag) -> Option<Result<Outcome, Error>> {
        if !self.completion_is_next(tag) {
            return None;
        }
        match self.others.pop_front() {
            Some((_, Event::Complete { result, .. })) => Some(result),
            _ => None,
        }
    }

    /// Whether the event after the oldest is a delivery to the consumer
    /// `tag`.
    pub(super) fn delivery_is_second(&self, tag: Tag) -> bool {
        // The second is the older of what remains once the oldest is out.
        let (d, o) = if self.delivery_first() {
            (self.deliveries.get(1), self.others.front())
        } else {
            (self.deliveries.front(), self.others.get(1))
        };
        match (d, o) {
            (Some((d, t, _)), o) => *t == tag && o.is_none_or(|(o, _)| d < o),
            (None, _) => false,
        }
    }

    /// How many events wait.
    pub(super) fn len(&self) -> usize {
        self.deliveries.len() + self.others.len()
    }

    /// Whether none waits.
    pub(super) fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.others.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(delivery_tag: u64) -> Delivery {
        Delivery {
            delivery_tag,
            ..Delivery::PLACEHOLDER
        }
    }

    fn done(tag: Tag) -> Event {
        Event::Complete {
            tag,
            result: Ok(Outcome::Done),
        }
    }

    #[test]
    fn events_come_out_in_the_order_they_went_in() {
        let mut q = EventQueue::default();
        q.push(done(1));
        q.push_delivery(7, delivery(1));
        q.push(Event::Delivery {
            tag: 8,
            delivery: delivery(2),
        });
        q.push(Event::ConsumerEnded { tag: 7 });
        q.push_delivery(8, delivery(3));
        assert_eq!(q.len(), 5);
        let tags: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|e| match e {
                Event::Complete { tag, .. } => format!("done {tag}"),
                Event::Delivery { tag, delivery } => format!("{tag}:{}", delivery.delivery_tag),
                Event::ConsumerEnded { tag } => format!("ended {tag}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(tags, ["done 1", "7:1", "8:2", "ended 7", "8:3"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_delivery_is_taken_only_when_it_is_next_and_for_that_consumer() {
        let mut q = EventQueue::default();
        q.push(done(1));
        q.push_delivery(7, delivery(1));
        q.push_delivery(8, delivery(2));
        // Behind another event: not taken, but second.
        assert_eq!(q.next_delivery(), None);
        assert!(!q.delivery_is_next(7));
        assert!(q.delivery_is_second(7) && !q.delivery_is_second(8));
        assert_eq!(q.pop_delivery(7), None);
        assert!(matches!(q.pop(), Some(Event::Complete { tag: 1, .. })));
        // Another consumer's: not taken.
        assert_eq!(q.next_delivery(), Some(7));
        assert_eq!(q.pop_delivery(8), None);
        assert!(q.delivery_is_second(8) && !q.delivery_is_second(7));
        assert_eq!(q.pop_delivery(7).map(|d| d.delivery_tag), Some(1));
        assert_eq!(q.pop_delivery(8).map(|d| d.delivery_tag), Some(2));
        assert_eq!(q.pop_delivery(8), None);
        assert!(q.pop().is_none());

        // A delivery, another event, a delivery: the second is not one.
        q.push_delivery(7, delivery(3));
        q.push_complete(2, Ok(Outcome::Done));
        q.push_delivery(7, delivery(4));
        assert!(q.delivery_is_next(7) && !q.delivery_is_second(7));
        assert_eq!(q.pop_delivery(7).map(|d| d.delivery_tag), Some(3));
        assert!(!q.delivery_is_next(7) && q.delivery_is_second(7));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_completion_is_taken_only_when_it_is_next_and_for_that_operation() {
        let mut q = EventQueue::default();
        q.push_delivery(7, delivery(1));
        q.push_complete(2, Ok(Outcome::MessageCount(5)));
        q.push(Event::ConsumerEnded { tag: 3 });
        q.push_complete(3, Ok(Outcome::Done));
        // Behind a delivery: not taken.
        assert!(!q.completion_is_next(2));
        assert!(q.pop_completion(2).is_none());
        assert_eq!(q.pop_delivery(7).map(|d| d.delivery_tag), Some(1));
        // Another operation's: not taken.
        assert!(q.pop_completion(3).is_none());
        assert!(matches!(
            q.pop_completion(2),
            Some(Ok(Outcome::MessageCount(5)))
        ));
        // Not a completion (though its tag): not taken.
        assert!(!q.completion_is_next(3));
        assert!(matches!(q.pop(), Some(Event::ConsumerEnded { tag: 3 })));
        assert!(matches!(q.pop_completion(3), Some(Ok(Outcome::Done))));
        assert!(q.is_empty());
    }
}
