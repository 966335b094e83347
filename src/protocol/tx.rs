//! Transactions that span the publish channel and every channel holding deliveries.

use super::*;

impl Connection {
    /// `tx.select`: publishes, and the acks, nacks and rejects of every
    /// delivery received, become transactional until the connection ends
    /// (`tx_commit` applies them, `tx_rollback` discards them). The broker
    /// refuses it on a channel already in confirm mode, so use it with
    /// [`Confirms::Off`].
    ///
    /// It selects the publish channel, and once that succeeds every channel
    /// holding deliveries (consumers' and `basic.get`'s) before `tag`
    /// completes; consumers started later are selected as they open, and
    /// `basic.get` then runs on the publish channel.
    pub fn tx_select(&mut self, tag: Tag) {
        if self.refuse(tag) {
            return;
        }
        let Some(ch) = self.publish_channel() else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let _ = self.send_method(ch, &Method::TxSelect(TxSelect {}));
        // Transaction mode starts with tx.select-ok: a refused select
        // (e.g. on a confirm channel) leaves publishing as it was.
        self.chan(ch)
            .expect
            .push_back(Expect::TxSelectOk(Some(tag)));
    }

    /// The publish channel is transactional: so become the channels that
    /// hold deliveries.
    pub(super) fn on_tx_select_ok(&mut self, tag: Tag) {
        self.tx = TxState::Active;
        if let Some(ch) = self.publish_channel {
            self.chan(ch).tx = true;
        }
        let others: Vec<u16> = self
            .channels
            .iter()
            .flatten()
            .filter(|c| {
                !c.tx
                    && !c.closing
                    && match &c.role {
                        Role::Consumer(k) => !k.no_ack && !k.ended,
                        Role::Pool => c.held_get.is_some(),
                        Role::Publish => false,
                    }
            })
            .map(|c| c.id)
            .collect();
        for ch in others {
            self.select_tx(ch);
        }
        self.complete(tag, Ok(Outcome::Done));
    }

    /// Sends `tx.select` on a channel that holds deliveries.
    pub(super) fn select_tx(&mut self, ch: u16) {
        let _ = self.send_method(ch, &Method::TxSelect(TxSelect {}));
        let c = self.chan(ch);
        c.tx = true;
        c.expect.push_back(Expect::TxSelectOk(None));
    }

    /// `tx.commit` on every transactional channel; `tag` completes when all
    /// have committed (or fails with the first error).
    pub fn tx_commit(&mut self, tag: Tag) {
        self.tx_end(tag, Method::TxCommit(TxCommit {}), false);
    }

    /// `tx.rollback` on every transactional channel. Acks made in the
    /// transaction are undone: those deliveries are outstanding again (the
    /// broker keeps them unacked; ack them again, or they are requeued when
    /// their channel closes).
    pub fn tx_rollback(&mut self, tag: Tag) {
        self.tx_end(tag, Method::TxRollback(TxRollback {}), true);
    }

    pub(super) fn tx_end(&mut self, tag: Tag, method: Method, rollback: bool) {
        if self.refuse(tag) {
            return;
        }
        let Some(publish) = self.publish_channel() else {
            self.complete(tag, Err(self.no_channel_error()));
            return;
        };
        let mut chans: Vec<u16> = vec![publish];
        chans.extend(
            self.channels
                .iter()
                .flatten()
                .filter(|c| c.tx && !c.closing && c.id != publish)
                .map(|c| c.id),
        );
        let group = self.next_tx_group;
        self.next_tx_group += 1;
        self.tx_groups.push(TxGroup {
            group,
            tag,
            remaining: chans.len(),
            error: None,
        });
        for ch in chans {
            let _ = self.send_method(ch, &method);
            self.chan(ch)
                .expect
                .push_back(Expect::TxEnd { group, rollback });
        }
    }

    /// One channel of the commit or rollback `group` finished (`err`: it
    /// failed); the operation completes with the last.
    pub(super) fn tx_part_done(&mut self, group: u64, err: Option<Error>) {
        let Some(i) = self.tx_groups.iter().position(|g| g.group == group) else {
            return;
        };
        let g = &mut self.tx_groups[i];
        g.remaining -= 1;
        if g.error.is_none() {
            g.error = err;
        }
        if g.remaining == 0 {
            let g = self.tx_groups.swap_remove(i);
            let result = match g.error {
                Some(e) => Err(e),
                None => Ok(Outcome::Done),
            };
            self.complete(g.tag, result);
        }
    }
}
