//! The publishes of a confirm-mode channel that await the broker's
//! `basic.ack` or `basic.nack`: one slot per sequence number, so that a
//! confirm finds its publish by arithmetic and settling one out of order
//! moves nothing.
//!
//! RabbitMQ numbers the publishes of a channel in confirm mode 1, 2, 3, …
//! and confirms them "in any order" (its publisher-confirms guide; a message
//! routed to a slow queue is confirmed after later ones routed elsewhere).
//! A window of a million publishes confirmed out of order must cost the
//! same per confirm as one confirmed in order: no search, no shift.

use super::Tag;
use std::collections::VecDeque;

/// Settled slots kept beyond twice the waiting ones before the window
/// compacts: a few, so that compaction is rare and cheap.
const SLACK: usize = 64;

/// A publish awaiting its confirm, or a settled one not yet dropped.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    /// `None` once settled out of order.
    tag: Option<Tag>,
}

/// Publishes awaiting confirms, by sequence number.
///
/// A confirm for the front settles it and drops it; one out of order
/// marks its slot settled (no shift). Its slot is at `seq - front` while
/// nothing was compacted; a binary search finds it otherwise. Settled
/// slots are dropped when they reach the front, and all at once (one pass,
/// amortised over the settles that made them) when they outnumber the
/// waiting ones by more than [`SLACK`]: a publish never confirmed while
/// later ones are cannot make the window grow past about twice what
/// awaits confirms.
#[derive(Debug, Default)]
pub(super) struct ConfirmWindow {
    /// The last sequence number given out (0: none yet).
    last: u64,
    /// Ascending by `seq`; the front slot, if any, is a waiting one.
    slots: VecDeque<Slot>,
    /// Slots still waiting.
    waiting: usize,
}

impl ConfirmWindow {
    /// Gives the next publish its sequence number and holds `tag` until
    /// its confirm.
    pub fn push(&mut self, tag: Tag) -> u64 {
        self.last += 1;
        self.slots.push_back(Slot {
            seq: self.last,
            tag: Some(tag),
        });
        self.waiting += 1;
        self.last
    }

    /// Publishes awaiting confirms.
    pub fn len(&self) -> usize {
        self.waiting
    }

    /// Whether no publish awaits a confirm.
    pub fn is_empty(&self) -> bool {
        self.waiting == 0
    }

    /// Where `seq`'s slot is, if it is held.
    fn find(&self, seq: u64) -> Option<usize> {
        let front = self.slots.front()?.seq;
        let guess = usize::try_from(seq.checked_sub(front)?).ok()?;
        match self.slots.get(guess) {
            Some(s) if s.seq == seq => Some(guess),
            // Compacted: the slot, if held, is nearer the front.
            _ => self.slots.binary_search_by_key(&seq, |s| s.seq).ok(),
        }
    }

    /// Settles `seq`, and with `multiple` every earlier publish still
    /// waiting, in sequence order: `settle(seq, tag)` for each. A sequence
    /// number not waiting (settled already, or never given out) settles
    /// nothing.
    pub fn settle(&mut self, seq: u64, multiple: bool, mut settle: impl FnMut(u64, Tag)) {
        if multiple {
            while let Some(s) = self.slots.front() {
                if s.seq > seq {
                    break;
                }
                let s = *s;
                self.slots.pop_front();
                if let Some(tag) = s.tag {
                    self.waiting -= 1;
                    settle(s.seq, tag);
                }
            }
        } else if let Some(i) = self.find(seq) {
            if let Some(tag) = self.slots[i].tag.take() {
                self.waiting -= 1;
                settle(seq, tag);
            }
        }
        // The front slot stays a waiting one.
        while self.slots.front().is_some_and(|s| s.tag.is_none()) {
            self.slots.pop_front();
        }
        if self.slots.len() > 2 * self.waiting + SLACK {
            self.slots.retain(|s| s.tag.is_some());
        }
    }

    /// Every waiting publish's tag, oldest first.
    pub fn into_tags(self) -> impl Iterator<Item = Tag> {
        self.slots.into_iter().filter_map(|s| s.tag)
    }

    /// Takes every waiting publish's tag, oldest first, leaving the window
    /// empty (sequence numbers keep counting).
    pub fn take_all(&mut self) -> impl Iterator<Item = Tag> {
        self.waiting = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|s| s.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: u64) -> ConfirmWindow {
        let mut w = ConfirmWindow::default();
        for t in 0..n {
            // Tags 100, 101, … for sequence numbers 1, 2, …
            assert_eq!(w.push(100 + t), t + 1);
        }
        w
    }

    fn settle(w: &mut ConfirmWindow, seq: u64, multiple: bool) -> Vec<(u64, Tag)> {
        let mut got = Vec::new();
        w.settle(seq, multiple, |s, t| got.push((s, t)));
        got
    }

    #[test]
    fn in_order_confirms_settle_from_the_front() {
        let mut w = window(3);
        assert_eq!(settle(&mut w, 1, false), [(1, 100)]);
        assert_eq!(settle(&mut w, 2, false), [(2, 101)]);
        assert_eq!(w.len(), 1);
        assert_eq!(settle(&mut w, 3, false), [(3, 102)]);
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn an_out_of_order_confirm_settles_only_its_publish() {
        let mut w = window(5);
        assert_eq!(settle(&mut w, 4, false), [(4, 103)]);
        assert_eq!(settle(&mut w, 2, false), [(2, 101)]);
        assert_eq!(w.len(), 3);
        // Settled twice: nothing.
        assert_eq!(settle(&mut w, 4, false), []);
        // The front settles, and the settled slot behind it goes too.
        assert_eq!(settle(&mut w, 1, false), [(1, 100)]);
        assert_eq!((w.slots[0].seq, w.slots.len()), (3, 3));
        // `multiple` skips what was settled already.
        assert_eq!(settle(&mut w, 5, true), [(3, 102), (5, 104)]);
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn unknown_sequence_numbers_settle_nothing() {
        let mut w = window(3);
        assert_eq!(settle(&mut w, 0, false), []);
        assert_eq!(settle(&mut w, 0, true), []);
        assert_eq!(settle(&mut w, 9, false), []);
        assert_eq!(settle(&mut w, u64::MAX, false), []);
        assert_eq!(w.len(), 3);
        // `multiple` beyond the last settles all there is.
        assert_eq!(
            settle(&mut w, u64::MAX, true),
            [(1, 100), (2, 101), (3, 102)]
        );
        assert_eq!(settle(&mut w, 2, true), []);
    }

    #[test]
    fn numbering_goes_on_after_the_window_empties() {
        let mut w = window(2);
        assert_eq!(settle(&mut w, 2, true).len(), 2);
        assert_eq!(w.push(7), 3);
        assert_eq!(settle(&mut w, 2, false), []);
        assert_eq!(settle(&mut w, 3, false), [(3, 7)]);
        let mut w = window(3);
        assert_eq!(settle(&mut w, 2, false), [(2, 101)]);
        assert_eq!(w.take_all().collect::<Vec<_>>(), [100, 102]);
        assert!(w.is_empty());
        assert_eq!(w.push(9), 4);
        assert_eq!(settle(&mut w, 4, false), [(4, 9)]);
    }

    #[test]
    fn settled_slots_behind_a_waiting_front_stay_bounded() {
        // The oldest publish is never confirmed while 100,000 later ones
        // are: the window holds a bounded number of slots throughout.
        let mut w = ConfirmWindow::default();
        w.push(1);
        let mut most = 0;
        for t in 2..=100_000u64 {
            let seq = w.push(t);
            assert_eq!(settle(&mut w, seq, false), [(seq, t)]);
            most = most.max(w.slots.len());
        }
        assert!(most <= 2 + SLACK + 1, "{most} slots");
        assert_eq!(w.len(), 1);
        assert_eq!(settle(&mut w, 1, false), [(1, 1)]);
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn after_a_compaction_every_waiting_publish_is_still_found() {
        // 1..=1000 waiting; the even ones settle newest first, which
        // compacts the window on the way; then each odd one settles, out
        // of order, and each exactly once.
        let mut w = window(1000);
        for seq in (2..=1000).rev().step_by(2) {
            assert_eq!(settle(&mut w, seq, false), [(seq, 99 + seq)]);
        }
        assert!(w.slots.len() <= 2 * w.len() + SLACK);
        assert_eq!(w.len(), 500);
        for seq in (1..=999).rev().step_by(2) {
            assert_eq!(settle(&mut w, seq, false), [(seq, 99 + seq)], "seq {seq}");
            assert_eq!(settle(&mut w, seq, false), [], "seq {seq} again");
        }
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn multiple_after_a_compaction_settles_in_order() {
        let mut w = window(300);
        for seq in (101..=300).rev() {
            settle(&mut w, seq, false);
        }
        let got = settle(&mut w, 300, true);
        assert_eq!(got, (1..=100).map(|s| (s, 99 + s)).collect::<Vec<_>>());
        assert!(w.is_empty());
    }
}
