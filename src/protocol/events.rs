//! The queue of events the caller polls.
//!
//! Deliveries are nearly every event a consumer sees, and an [`Event`] is
//! larger than the [`Delivery`] it carries (other variants hold a whole
//! [`Outcome`](super::Outcome)). So deliveries wait in a queue of their own
//! and only a 16-byte mark keeps their place among the other events: a
//! delivery is copied into its slot once and out of it once, at its own
//! size, and the order the caller sees is exactly the order of `push`.

use super::{Delivery, Event, Tag};
use std::collections::VecDeque;

/// What comes next, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// The front of `deliveries`, for the consumer with this tag.
    Delivery(Tag),
    /// The front of `others`.
    Other,
}

/// Events in arrival order: deliveries apart from the rest.
#[derive(Debug, Default)]
pub(super) struct EventQueue {
    order: VecDeque<Mark>,
    deliveries: VecDeque<Delivery>,
    others: VecDeque<Event>,
}

impl EventQueue {
    /// Queues `event` behind everything queued before it.
    pub(super) fn push(&mut self, event: Event) {
        match event {
            Event::Delivery { tag, delivery } => self.push_delivery(tag, delivery),
            other => {
                self.others.push_back(other);
                self.order.push_back(Mark::Other);
            }
        }
    }

    /// Queues a delivery to the consumer `tag` (what `push` of an
    /// [`Event::Delivery`] does, without building the event).
    #[inline]
    pub(super) fn push_delivery(&mut self, tag: Tag, delivery: Delivery) {
        self.deliveries.push_back(delivery);
        self.order.push_back(Mark::Delivery(tag));
    }

    /// The oldest event.
    pub(super) fn pop(&mut self) -> Option<Event> {
        match self.order.pop_front()? {
            Mark::Delivery(tag) => {
                let delivery = self.deliveries.pop_front()?;
                Some(Event::Delivery { tag, delivery })
            }
            Mark::Other => self.others.pop_front(),
        }
    }

    /// The oldest event, only if it is a delivery to the consumer `tag`.
    #[inline]
    pub(super) fn pop_delivery(&mut self, tag: Tag) -> Option<Delivery> {
        if !self.delivery_is_next(tag) {
            return None;
        }
        self.order.pop_front();
        self.deliveries.pop_front()
    }

    /// Whether the oldest event is a delivery to the consumer `tag`.
    #[inline]
    pub(super) fn delivery_is_next(&self, tag: Tag) -> bool {
        self.order.front() == Some(&Mark::Delivery(tag))
    }

    /// Whether the event after the oldest is a delivery to the consumer
    /// `tag`.
    pub(super) fn delivery_is_second(&self, tag: Tag) -> bool {
        self.order.get(1) == Some(&Mark::Delivery(tag))
    }

    /// How many events wait.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none waits.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

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
        // Behind another event: not taken.
        assert!(!q.delivery_is_next(7));
        assert_eq!(q.pop_delivery(7), None);
        assert!(matches!(q.pop(), Some(Event::Complete { tag: 1, .. })));
        // Another consumer's: not taken.
        assert_eq!(q.pop_delivery(8), None);
        assert!(q.delivery_is_second(8) && !q.delivery_is_second(7));
        assert_eq!(q.pop_delivery(7).map(|d| d.delivery_tag), Some(1));
        assert_eq!(q.pop_delivery(8).map(|d| d.delivery_tag), Some(2));
        assert_eq!(q.pop_delivery(8), None);
        assert!(q.pop().is_none());
    }
}
