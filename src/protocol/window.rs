//! Outstanding items keyed by rising numbers — publishes awaiting confirms
//! by sequence number, deliveries awaiting the user's ack by delivery tag —
//! that settle mostly in order but may settle in any order, at a cost per
//! settle that does not grow with how many are outstanding.
//!
//! A settle of the oldest drops its slot; one out of order marks its slot
//! settled in place (no shift). A slot is found at its key's offset from
//! the oldest key while keys are consecutive and nothing was compacted (the
//! usual case: a confirm channel numbers every publish, a consumer's
//! channel tags every delivery), by a binary search otherwise. Settled
//! slots leave when they reach the front, and all at once (one pass,
//! amortised over the settles that made them) when they outnumber the
//! outstanding ones by more than [`SLACK`]: one item never settled while
//! later ones are cannot make the window grow past about twice what is
//! outstanding.

use std::collections::VecDeque;

/// Settled slots kept beyond twice the outstanding ones before the window
/// compacts: a few, so that compaction is rare and cheap.
const SLACK: usize = 64;

/// An outstanding item, or a settled one not yet dropped.
#[derive(Debug, Clone, Copy)]
struct Slot<V> {
    key: u64,
    /// `None` once settled out of order.
    value: Option<V>,
}

/// Outstanding items with rising keys, each holding a `V`.
#[derive(Debug)]
pub(super) struct SettleWindow<V> {
    /// Ascending by `key`; the front slot, if any, is an outstanding one.
    slots: VecDeque<Slot<V>>,
    /// Slots still outstanding.
    outstanding: usize,
}

impl<V> Default for SettleWindow<V> {
    fn default() -> Self {
        SettleWindow {
            slots: VecDeque::new(),
            outstanding: 0,
        }
    }
}

impl<V: Copy> SettleWindow<V> {
    /// Holds `value` under `key`, which must be above every key held.
    pub fn push(&mut self, key: u64, value: V) {
        debug_assert!(self.slots.back().is_none_or(|s| s.key < key));
        self.slots.push_back(Slot {
            key,
            value: Some(value),
        });
        self.outstanding += 1;
    }

    /// Items outstanding.
    pub fn len(&self) -> usize {
        self.outstanding
    }

    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.outstanding == 0
    }

    /// The lowest key outstanding.
    pub fn lowest(&self) -> Option<u64> {
        self.slots.front().map(|s| s.key)
    }

    /// Where `key`'s slot is, if it is held.
    fn find(&self, key: u64) -> Option<usize> {
        let front = self.slots.front()?.key;
        let guess = usize::try_from(key.checked_sub(front)?).ok()?;
        match self.slots.get(guess) {
            Some(s) if s.key == key => Some(guess),
            // Keys with gaps, or compacted: nearer the front, if held.
            _ => self.slots.binary_search_by_key(&key, |s| s.key).ok(),
        }
    }

    /// Whether `key` is outstanding.
    pub fn contains(&self, key: u64) -> bool {
        self.find(key)
            .is_some_and(|i| self.slots[i].value.is_some())
    }

    /// Settles `key`, and with `multiple` every item below it too, in key
    /// order: `settled(key, value)` for each. Returns how many settled (0
    /// when `key` is not outstanding and, with `multiple`, nothing below it
    /// is either).
    pub fn settle(&mut self, key: u64, multiple: bool, mut settled: impl FnMut(u64, V)) -> usize {
        let mut count = 0;
        if multiple {
            while let Some(&s) = self.slots.front() {
                if s.key > key {
                    break;
                }
                self.slots.pop_front();
                if let Some(v) = s.value {
                    count += 1;
                    settled(s.key, v);
                }
            }
        } else if let Some(i) = self.find(key) {
            if let Some(v) = self.slots[i].value.take() {
                count = 1;
                settled(key, v);
            }
        }
        self.outstanding -= count;
        // The front slot stays an outstanding one.
        while self.slots.front().is_some_and(|s| s.value.is_none()) {
            self.slots.pop_front();
        }
        if self.slots.len() > 2 * self.outstanding + SLACK {
            self.slots.retain(|s| s.value.is_some());
        }
        count
    }

    /// Drops every item.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.outstanding = 0;
    }

    /// Every outstanding item, lowest key first, leaving the window empty.
    pub fn take_all(&mut self) -> impl Iterator<Item = (u64, V)> {
        self.outstanding = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter_map(|s| Some((s.key, s.value?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys 1..=n holding 100, 101, …
    fn window(n: u64) -> SettleWindow<u64> {
        let mut w = SettleWindow::default();
        for k in 1..=n {
            w.push(k, 99 + k);
        }
        w
    }

    fn settle(w: &mut SettleWindow<u64>, key: u64, multiple: bool) -> Vec<(u64, u64)> {
        let mut got = Vec::new();
        let n = w.settle(key, multiple, |k, v| got.push((k, v)));
        assert_eq!(n, got.len());
        got
    }

    #[test]
    fn in_order_settles_drop_from_the_front() {
        let mut w = window(3);
        assert_eq!(settle(&mut w, 1, false), [(1, 100)]);
        assert_eq!(settle(&mut w, 2, false), [(2, 101)]);
        assert_eq!((w.len(), w.lowest()), (1, Some(3)));
        assert_eq!(settle(&mut w, 3, false), [(3, 102)]);
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn an_out_of_order_settle_settles_only_its_item() {
        let mut w = window(5);
        assert_eq!(settle(&mut w, 4, false), [(4, 103)]);
        assert_eq!(settle(&mut w, 2, false), [(2, 101)]);
        assert_eq!(w.len(), 3);
        assert!(!w.contains(4) && w.contains(3));
        // Settled twice: nothing.
        assert_eq!(settle(&mut w, 4, false), []);
        // The front settles, and the settled slot behind it goes too.
        assert_eq!(settle(&mut w, 1, false), [(1, 100)]);
        assert_eq!((w.lowest(), w.slots.len()), (Some(3), 3));
        // `multiple` skips what was settled already.
        assert_eq!(settle(&mut w, 5, true), [(3, 102), (5, 104)]);
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn unknown_keys_settle_nothing() {
        let mut w = window(3);
        assert_eq!(settle(&mut w, 0, false), []);
        assert_eq!(settle(&mut w, 0, true), []);
        assert_eq!(settle(&mut w, 9, false), []);
        assert_eq!(settle(&mut w, u64::MAX, false), []);
        assert!(!w.contains(0) && !w.contains(9) && !w.contains(u64::MAX));
        assert_eq!(w.len(), 3);
        // `multiple` beyond the last settles all there is.
        assert_eq!(
            settle(&mut w, u64::MAX, true),
            [(1, 100), (2, 101), (3, 102)]
        );
        assert_eq!(settle(&mut w, 2, true), []);
    }

    #[test]
    fn keys_with_gaps_are_found() {
        let mut w = SettleWindow::default();
        for k in [3, 4, 9, 10, 40, 41, 42] {
            w.push(k, k);
        }
        assert!(!w.contains(5) && !w.contains(39));
        assert_eq!(settle(&mut w, 41, false), [(41, 41)]);
        assert_eq!(settle(&mut w, 9, false), [(9, 9)]);
        assert_eq!(settle(&mut w, 10, true), [(3, 3), (4, 4), (10, 10)]);
        assert_eq!(w.lowest(), Some(40));
        let rest: Vec<_> = w.take_all().collect();
        assert_eq!(rest, [(40, 40), (42, 42)]);
        assert!(w.is_empty() && w.lowest().is_none());
    }

    #[test]
    fn settled_slots_behind_an_outstanding_front_stay_bounded() {
        // The oldest item never settles while 100,000 later ones do: the
        // window holds a bounded number of slots throughout.
        let mut w = SettleWindow::default();
        w.push(1, 1);
        let mut most = 0;
        for k in 2..=100_000u64 {
            w.push(k, k);
            assert_eq!(settle(&mut w, k, false), [(k, k)]);
            most = most.max(w.slots.len());
        }
        assert!(most <= 2 + SLACK + 1, "{most} slots");
        assert_eq!(w.len(), 1);
        assert_eq!(settle(&mut w, 1, false), [(1, 1)]);
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn after_a_compaction_every_outstanding_item_is_still_found() {
        // 1..=1000 outstanding; the even ones settle newest first, which
        // compacts the window on the way; then each odd one settles, out
        // of order, and each exactly once.
        let mut w = window(1000);
        for k in (2..=1000).rev().step_by(2) {
            assert_eq!(settle(&mut w, k, false), [(k, 99 + k)]);
        }
        assert!(w.slots.len() <= 2 * w.len() + SLACK);
        assert_eq!(w.len(), 500);
        for k in (1..=999).rev().step_by(2) {
            assert!(w.contains(k), "key {k}");
            assert_eq!(settle(&mut w, k, false), [(k, 99 + k)], "key {k}");
            assert_eq!(settle(&mut w, k, false), [], "key {k} again");
        }
        assert!(w.is_empty());
        assert_eq!(w.slots.len(), 0);
    }

    #[test]
    fn multiple_after_a_compaction_settles_in_order() {
        let mut w = window(300);
        for k in (101..=300).rev() {
            settle(&mut w, k, false);
        }
        let got = settle(&mut w, 300, true);
        assert_eq!(got, (1..=100).map(|k| (k, 99 + k)).collect::<Vec<_>>());
        assert!(w.is_empty());
    }
}
