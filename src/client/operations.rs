//! The AMQP operations a caller starts, each returning a promise.

use super::*;

impl Client {
    /// Starts an operation: a new promise whose tag `start` hands to the
    /// protocol, then the events that produced (e.g. an immediate failure).
    pub(super) fn operation<T>(&mut self, start: impl FnOnce(&mut Connection, Tag)) -> Promise<T> {
        in_span!(self);
        let id = self.promises.create();
        start(&mut self.conn, id.tag());
        self.after_io();
        Promise::new(id)
    }

    /// A promise resolved at once with `result` (a close with nothing left to
    /// close, or an operation refused before anything was sent).
    pub(super) fn resolved<T>(&mut self, result: Result<(), Error>) -> Promise<T> {
        let id = self.promises.create();
        let raw = result.map(|()| Raw::Outcome(protocol::Outcome::Done));
        self.promises.push(id, raw, true);
        Promise::new(id)
    }

    pub(super) fn with_callback<T: Resolve>(
        &mut self,
        p: Promise<T>,
        f: impl FnMut(&mut Client, Result<T::Output, Error>) + 'static,
    ) -> Promise<T> {
        self.set_callback(p, f);
        p
    }

    /// The promise of the connection handshake, which [`Client::new`]
    /// started: it resolves when the broker has opened the connection.
    ///
    /// ```no_run
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// client.handshake().wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn handshake(&self) -> Promise<()> {
        self.connect_promise
    }

    /// Closes the connection gracefully. New operations fail at once with
    /// [`Error::ConnectionClosed`]; the operations in flight — publisher
    /// confirms included — are awaited and resolve as the broker answers;
    /// then `connection.close` goes out and the promise resolves on the
    /// broker's `close-ok`. [`Options::close_timeout`] bounds the whole:
    /// what is still unsettled then fails with [`Error::OutcomeUnknown`]
    /// (never a failure that did not happen), and the close goes out (with
    /// up to [`crate::CLOSE_OK_GRACE`] more for `close-ok`). Consumers
    /// end as asked: their last result is `Ok(None)`, not an error.
    ///
    /// ```no_run
    /// # use puka::Client;
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let p = client.basic_publish("", "tasks", b"job");
    /// let closed = client.close();
    /// client.wait(closed)?;
    /// client.wait(p)?; // confirmed before the close went out
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn close(&mut self) -> Promise<()> {
        if self.recovery_stop() {
            return self.resolved(Ok(()));
        }
        let timeout = self.options.close_timeout;
        let p = self.operation(|conn, tag| conn.close(tag, Instant::now(), timeout));
        self.flush_queued();
        p
    }

    /// Closes the connection without waiting for operations in flight:
    /// `connection.close` goes out now and the promise resolves on
    /// `close-ok` (or after [`Options::close_timeout`]). Unconfirmed
    /// publishes fail with [`Error::OutcomeUnknown`], other pending
    /// operations with [`Error::ConnectionClosed`]; consumers end with
    /// `Ok(None)`. After [`Client::close`], it cuts the wait short.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn close_now(&mut self) -> Promise<()> {
        if self.recovery_stop() {
            return self.resolved(Ok(()));
        }
        let timeout = self.options.close_timeout;
        let p = self.operation(|conn, tag| conn.close_now(tag, Instant::now(), timeout));
        self.flush_queued();
        p
    }

    /// A pooled-channel operation (the protocol sends it without `no_wait`:
    /// every operation completes on its reply).
    pub(super) fn rpc<T>(&mut self, method: Method) -> Promise<T> {
        in_span!(self);
        let id = self.promises.create();
        self.note_rpc(id.tag(), &method);
        self.conn.rpc(id.tag(), method);
        self.after_io();
        Promise::new(id)
    }

    /// Declares an exchange (`exchange.declare`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_declare(&mut self, args: ExchangeDeclare) -> Promise<()> {
        self.rpc(Method::ExchangeDeclare(args))
    }

    /// Deletes an exchange (`exchange.delete`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_delete(&mut self, args: ExchangeDelete) -> Promise<()> {
        self.rpc(Method::ExchangeDelete(args))
    }

    /// Binds exchange `destination` to `source` (`exchange.bind`, a RabbitMQ
    /// extension).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_bind(&mut self, args: ExchangeBind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes an exchange-to-exchange binding (`exchange.unbind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn exchange_unbind(&mut self, args: ExchangeUnbind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Declares a queue (`queue.declare`); an empty name asks the broker to
    /// choose one, returned in [`QueueDeclareOk::queue`].
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_declare(&mut self, args: QueueDeclare) -> Promise<QueueDeclareOk> {
        self.rpc(Method::QueueDeclare(args))
    }

    /// Binds a queue to an exchange (`queue.bind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_bind(&mut self, args: QueueBind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes a binding (`queue.unbind`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_unbind(&mut self, args: QueueUnbind) -> Promise<()> {
        self.rpc(args.into())
    }

    /// Removes every ready message of a queue (`queue.purge`); resolves with
    /// how many were removed.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_purge(&mut self, queue: &str) -> Promise<u32> {
        self.rpc(Method::QueuePurge(QueuePurge {
            queue: queue.into(),
            no_wait: false,
        }))
    }

    /// Deletes a queue (`queue.delete`); resolves with how many messages it
    /// held.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn queue_delete(&mut self, args: QueueDelete) -> Promise<u32> {
        self.rpc(Method::QueueDelete(args))
    }

    /// Publishes `body` to `exchange` with `routing_key` and no properties.
    ///
    /// With publisher confirms (the default when the broker has them) the
    /// promise resolves on the broker's ack and fails with
    /// [`Error::Nacked`] on a nack; without, once the frames reach the
    /// socket.
    ///
    /// Blocks only when the client is full (see [`Options::when_full`]):
    /// with the default [`WhenFull::Block`] it then drives the connection
    /// until there is room; with [`WhenFull::Refuse`] it never blocks and
    /// the promise fails with [`Error::WouldBlock`].
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_publish(&mut self, exchange: &str, routing_key: &str, body: &[u8]) -> Promise<()> {
        self.basic_publish_with(
            exchange,
            routing_key,
            body,
            &NO_PROPERTIES,
            Unroutable::Drop,
        )
    }

    /// Publishes with properties, saying what happens when no queue takes
    /// it: [`Unroutable::Drop`] (the broker drops it silently), or
    /// [`Unroutable::Return`] (`mandatory`: the promise fails with
    /// [`Error::NoRoute`] when confirms are on, or it comes back as
    /// [`ConnectionEvent::Returned`]). Blocks as [`Client::basic_publish`]
    /// says.
    ///
    /// ```no_run
    /// # use puka::{BasicProperties, Client, Unroutable};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let props = BasicProperties::default().with_content_type("text/plain");
    /// let p = client.basic_publish_with("logs", "info", b"hi", &props, Unroutable::Return);
    /// p.wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_publish_with(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        unroutable: Unroutable,
    ) -> Promise<()> {
        let mandatory = unroutable == Unroutable::Return;
        if !self.can_publish() {
            match self.options.when_full {
                WhenFull::Block => self.drain_until_room(),
                WhenFull::Refuse => return self.resolved(Err(Error::WouldBlock)),
            }
        }
        self.publish_now(exchange, routing_key, body, properties, mandatory)
    }

    /// Publishes without ever blocking: `Err(Error::WouldBlock)` when the
    /// client is full (nothing is queued; retry once
    /// [`Client::can_publish`] is true), whatever [`Options::when_full`]
    /// says.
    ///
    /// ```no_run
    /// # use puka::{BasicProperties, Client, Error, Unroutable};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let props = BasicProperties::default();
    /// match client.try_basic_publish("", "tasks", b"job", &props, Unroutable::Drop) {
    ///     Ok(promise) => { let _ = promise; }
    ///     Err(Error::WouldBlock) => { /* keep the message; retry after on_write */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when full.
    pub fn try_basic_publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        unroutable: Unroutable,
    ) -> Result<Promise<()>, Error> {
        if !self.can_publish() {
            return Err(Error::WouldBlock);
        }
        let mandatory = unroutable == Unroutable::Return;
        Ok(self.publish_now(exchange, routing_key, body, properties, mandatory))
    }

    /// Whether a publish now would go ahead: fewer than
    /// [`Options::write_high_water`] bytes are queued and fewer than
    /// [`Options::max_unconfirmed`] publishes await their confirms. In a
    /// reactor, check it after `on_write` (bytes drained) and `on_read`
    /// (confirms arrived).
    pub fn can_publish(&self) -> bool {
        self.conn.pending_write_bytes() <= self.options.write_high_water
            && self
                .options
                .max_unconfirmed
                .is_none_or(|max| self.conn.unconfirmed_count() < max)
    }

    pub(super) fn publish_now(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: &BasicProperties,
        mandatory: bool,
    ) -> Promise<()> {
        in_span!(self);
        let id = self.promises.create_publish();
        let p = Promise::new(id);
        self.conn.publish(
            id.tag(),
            exchange,
            routing_key,
            mandatory,
            false,
            properties,
            body,
        );
        if self.conn.pending_write_bytes() >= WRITE_BATCH {
            // Hand the socket full batches early, without blocking.
            self.flush_queued();
        }
        self.after_io();
        p
    }

    /// [`WhenFull::Block`]: drives the connection (no callbacks) until
    /// half the high-water mark is queued and a publish is allowed, or the
    /// connection ends.
    pub(super) fn drain_until_room(&mut self) {
        // During the handshake the bytes wait for open-ok; turns drive that too.
        let level = self.options.write_high_water / 2;
        while (self.conn.pending_write_bytes() > level || !self.can_publish())
            && self.sock.is_some()
        {
            if self.turn(Some(Duration::from_millis(100)), true).is_err() || self.conn.is_closed() {
                break;
            }
        }
    }

    /// Replaces the secret this connection authenticated with
    /// (`connection.update-secret`, RabbitMQ 3.10+), e.g. a refreshed OAuth 2
    /// token; resolves when the broker accepts it. A secret the broker
    /// refuses ends the connection with its error (RabbitMQ:
    /// [`Error::NotAllowed`], 530). The new secret is never printed.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn update_secret(&mut self, new_secret: &str, reason: &str) -> Promise<()> {
        let p = self.operation(|conn, tag| conn.update_secret(tag, new_secret, reason));
        self.flush_queued();
        p
    }

    /// Says you will not take `promise`'s result: it is dropped when it
    /// arrives (or now, if it is here), and the promise is forgotten — a
    /// later `wait` on it fails with [`Error::UnknownPromise`]. For
    /// fire-and-forget operations, so their results do not accumulate.
    /// Forgetting a consumer drops its deliveries as they come (unacked
    /// ones stay unacked until the channel closes): cancel it instead.
    pub fn forget<T>(&mut self, promise: Promise<T>) {
        self.promises.forget(promise.id);
    }

    /// Fetches one message (`basic.get`) that must be acked; resolves with
    /// `None` when the queue is empty.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_get(&mut self, queue: &str) -> Promise<Option<Delivery>> {
        self.operation(|conn, tag| {
            conn.basic_get(tag, queue, false);
        })
    }

    /// Fetches one message the broker counts as acknowledged once sent
    /// (`basic.get` with `no-ack`): nothing to settle, and lost if this
    /// process dies before handling it.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_get_no_ack(&mut self, queue: &str) -> Promise<Option<Delivery>> {
        self.operation(|conn, tag| {
            conn.basic_get(tag, queue, true);
        })
    }

    /// Consumes from `queue` with manual acks; the promise resolves once per
    /// delivery (`Some`), and with `None` when the consumer ends as asked
    /// (cancelled, or the connection closed by this client).
    ///
    /// ```no_run
    /// # let mut client = puka::Client::new("amqp://127.0.0.1/")?;
    /// let consumer = client.basic_consume("jobs");
    /// while let Some(d) = client.wait(consumer)? {
    ///     println!("{:?}", d.body_str());
    ///     client.basic_ack(&d)?;
    /// }
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume(&mut self, queue: &str) -> Promise<Delivery> {
        self.basic_consume_with(Consume::queue(queue))
    }

    /// Consumes from several queues on one channel under one promise.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume_multi(&mut self, queues: &[&str]) -> Promise<Delivery> {
        let mut c = Consume::default();
        for q in queues {
            c = c.and_queue(q);
        }
        self.basic_consume_with(c)
    }

    /// Consumes as described by [`Consume`] (queues, `no_ack`, prefetch,
    /// exclusive, consumer tags, arguments).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_consume_with(&mut self, consume: Consume) -> Promise<Delivery> {
        in_span!(self);
        let id = self.promises.create();
        let queues = self.recovery.is_some().then(|| consume.queues.clone());
        self.conn.consume(
            id.tag(),
            consume.queues,
            consume.no_ack,
            consume.prefetch_count,
        );
        if let Some(queues) = queues {
            self.note_consumer(id.tag(), queues, consume.no_ack, consume.prefetch_count);
        }
        self.after_io();
        Promise::new(id)
    }

    /// Resolves once the broker has registered every queue of `consumer`
    /// (each `basic.consume-ok` arrived), with the consumer tags — the
    /// moment from which exclusive, single-active and priority consumers
    /// hold, with no sleep needed. Fails with the consumer's error when it
    /// fails first.
    ///
    /// ```no_run
    /// # use puka::{Client, Consume};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let consumer = client.basic_consume_with(Consume::queue("jobs").exclusive());
    /// let ready = client.consumer_ready(consumer);
    /// let tags: Vec<String> = client.wait(ready)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn consumer_ready(&mut self, consumer: Promise<Delivery>) -> Promise<Vec<String>> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| conn.consumer_ready(tag, consumer.id.tag()))
    }

    /// A promise failed with [`Error::ForeignPromise`] when `consumer` was
    /// made by another client (whose consumer ids mean nothing here).
    pub(super) fn refuse_foreign<T>(&mut self, consumer: Promise<Delivery>) -> Option<Promise<T>> {
        if self.promises.owns(consumer.id) {
            return None;
        }
        Some(self.resolved(Err(Error::ForeignPromise)))
    }

    /// Sets the prefetch window of a consumer's channel (`basic.qos`).
    ///
    /// RabbitMQ applies a per-consumer limit only to consumers started after
    /// it, so on a running consumer it changes nothing the broker does.
    /// [`Qos::global`] sets a limit for the whole channel, which applies at
    /// once (to every queue of a multi-queue consumer together; quorum queues
    /// do not support it). To change a running consumer's own window, cancel
    /// it and consume again (or start it with [`Consume::prefetch`]).
    ///
    /// ```no_run
    /// # use puka::{Client, Qos};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// let consumer = client.basic_consume("jobs");
    /// client.basic_qos(consumer, Qos::prefetch(10).global()).wait(&mut client)?;
    /// # Ok::<(), puka::Error>(())
    /// ```
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_qos(&mut self, consumer: Promise<Delivery>, qos: Qos) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        in_span!(self);
        let id = self.promises.create();
        if qos.global {
            // Recorded before it can complete (at once, for a consumer
            // that is gone).
            self.note_channel_qos(
                id.tag(),
                consumer.id.tag(),
                qos.prefetch_size,
                qos.prefetch_count,
            );
        }
        self.conn.qos(
            id.tag(),
            consumer.id.tag(),
            qos.prefetch_size,
            qos.prefetch_count,
            qos.global,
        );
        self.after_io();
        Promise::new(id)
    }

    /// Cancels a consumer (`basic.cancel`). Deliveries already received stay
    /// valid to ack; the consumer's promise then ends with `Ok(None)`.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_cancel(&mut self, consumer: Promise<Delivery>) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| {
            conn.cancel(tag, consumer.id.tag());
        })
    }

    /// Asks the broker to redeliver a consumer's unacked messages
    /// (`basic.recover`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn basic_recover(&mut self, consumer: Promise<Delivery>, requeue: Requeue) -> Promise<()> {
        if let Some(p) = self.refuse_foreign(consumer) {
            return p;
        }
        self.operation(|conn, tag| {
            conn.recover(tag, consumer.id.tag(), requeue == Requeue::Yes);
        })
    }

    /// Acknowledges one delivery. Queued; sent by the next flush (every
    /// `wait`, loop turn and `on_write`).
    ///
    /// # Errors
    /// [`Error::UnknownDeliveryTag`] when the delivery is not outstanding
    /// (already settled, or its channel closed); nothing is sent then.
    pub fn basic_ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.conn.ack(delivery, false)
    }

    /// Acknowledges a delivery and every earlier one on its channel.
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_ack_multiple(&mut self, delivery: &Delivery) -> Result<(), Error> {
        self.conn.ack(delivery, true)
    }

    /// Negatively acknowledges a delivery (`basic.nack`), putting it back
    /// in the queue or not ([`Requeue::No`]: dropped or dead-lettered).
    ///
    /// ```no_run
    /// # use puka::{Client, Requeue};
    /// # let mut client = Client::new("amqp://127.0.0.1/")?;
    /// # let d: puka::Delivery = unimplemented!();
    /// client.basic_nack(&d, Requeue::No)?; // to the dead-letter exchange
    /// # Ok::<(), puka::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_nack(&mut self, delivery: &Delivery, requeue: Requeue) -> Result<(), Error> {
        self.conn.nack(delivery, false, requeue == Requeue::Yes)
    }

    /// [`Client::basic_nack`] of a delivery and every earlier one on its
    /// channel.
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_nack_multiple(
        &mut self,
        delivery: &Delivery,
        requeue: Requeue,
    ) -> Result<(), Error> {
        self.conn.nack(delivery, true, requeue == Requeue::Yes)
    }

    /// Rejects one delivery (`basic.reject`).
    ///
    /// # Errors
    /// As [`Client::basic_ack`].
    pub fn basic_reject(&mut self, delivery: &Delivery, requeue: Requeue) -> Result<(), Error> {
        self.conn.reject(delivery, requeue == Requeue::Yes)
    }

    /// Makes the publish channel transactional (`tx.select`). Needs
    /// publisher confirms off ([`Confirms::Off`]): RabbitMQ refuses both on
    /// one channel.
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_select(&mut self) -> Promise<()> {
        in_span!(self);
        let id = self.promises.create();
        self.note_tx_select(id.tag());
        self.conn.tx_select(id.tag());
        self.after_io();
        Promise::new(id)
    }

    /// Commits the publishes and acks since the last commit (`tx.commit`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_commit(&mut self) -> Promise<()> {
        self.operation(|conn, tag| {
            conn.tx_commit(tag);
        })
    }

    /// Discards the publishes since the last commit (`tx.rollback`).
    #[must_use = "the result is kept until taken: wait on the promise, set a callback, or `Client::forget` it"]
    pub fn tx_rollback(&mut self) -> Promise<()> {
        self.operation(|conn, tag| {
            conn.tx_rollback(tag);
        })
    }

    /// [`Client::queue_declare`] with a callback.
    pub fn queue_declare_then(
        &mut self,
        args: QueueDeclare,
        f: impl FnMut(&mut Client, Result<QueueDeclareOk, Error>) + 'static,
    ) -> Promise<QueueDeclareOk> {
        let p = self.queue_declare(args);
        self.with_callback(p, f)
    }

    /// [`Client::basic_publish`] with a callback.
    pub fn basic_publish_then(
        &mut self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        f: impl FnMut(&mut Client, Result<(), Error>) + 'static,
    ) -> Promise<()> {
        let p = self.basic_publish(exchange, routing_key, body);
        self.with_callback(p, f)
    }

    /// [`Client::basic_consume_with`] with a callback run per delivery.
    pub fn basic_consume_then(
        &mut self,
        consume: Consume,
        f: impl FnMut(&mut Client, Result<Option<Delivery>, Error>) + 'static,
    ) -> Promise<Delivery> {
        let p = self.basic_consume_with(consume);
        self.with_callback(p, f)
    }
}
