//! The publishes of a confirm-mode channel that await the broker's
//! `basic.ack` or `basic.nack`.
//!
//! RabbitMQ numbers the publishes of a channel in confirm mode 1, 2, 3, …
//! and confirms them "in any order" (its publisher-confirms guide; a message
//! routed to a slow queue is confirmed after later ones routed elsewhere).
//! A window of a million publishes confirmed out of order must cost the
//! same per confirm as one confirmed in order: see [`SettleWindow`].

use super::window::SettleWindow;
use super::Tag;

/// Publishes awaiting confirms, by sequence number.
#[derive(Debug, Default)]
pub(super) struct ConfirmWindow {
    /// The last sequence number given out (0: none yet).
    last: u64,
    /// Each waiting publish's tag under its sequence number.
    waiting: SettleWindow<Tag>,
}

impl ConfirmWindow {
    /// Gives the next publish its sequence number and holds `tag` until
    /// its confirm.
    pub fn push(&mut self, tag: Tag) -> u64 {
        self.last += 1;
        self.waiting.push(self.last, tag);
        self.last
    }

    /// Publishes awaiting confirms.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no publish awaits a confirm.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Settles `seq`, and with `multiple` every earlier publish still
    /// waiting, in sequence order: `settle(seq, tag)` for each. A sequence
    /// number not waiting (settled already, or never given out) settles
    /// nothing.
    pub fn settle(&mut self, seq: u64, multiple: bool, settle: impl FnMut(u64, Tag)) {
        self.waiting.settle(seq, multiple, settle);
    }

    /// Takes every waiting publish's tag, oldest first, leaving the window
    /// empty (sequence numbers keep counting).
    pub fn take_all(&mut self) -> impl Iterator<Item = Tag> {
        self.waiting.take_all().map(|(_, tag)| tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_go_on_after_the_window_empties() {
        let mut w = ConfirmWindow::default();
        assert_eq!((w.push(100), w.push(101)), (1, 2));
        let mut got = Vec::new();
        w.settle(2, true, |s, t| got.push((s, t)));
        assert_eq!(got, [(1, 100), (2, 101)]);
        assert!(w.is_empty());
        assert_eq!(w.push(7), 3);
        w.settle(2, false, |_, _| panic!("settled twice"));
        assert_eq!(w.push(8), 4);
        assert_eq!(w.take_all().collect::<Vec<_>>(), [7, 8]);
        assert_eq!(w.push(9), 5);
        assert_eq!(w.len(), 1);
        assert_eq!(w.take_all().collect::<Vec<_>>(), [9]);
    }
}
